/**
 * Audit benchmark: durable audited mutations per second (a row insert plus its audit event
 * with encrypted personal data, in one transaction, each caller answered only after its
 * transaction is on disk; group commit allowed) against plain unaudited inserts through the
 * same store, in the same run, on a real file with synchronous=FULL. Also AES-256-GCM
 * envelope encrypt/decrypt per second through the keyring, and audit forwarding (audit.forward) of
 * every event written, to a JSON-lines file, which must keep up with the writer.
 *
 * Usage: bun scripts/bench/audit.ts [--seconds 5] [--concurrency 256]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KERNEL_ACTIONS } from "../../src/audit/actions.ts";
import { fileSink, startAuditForwarder } from "../../src/audit/forward.ts";
import { AuditLog } from "../../src/audit/log.ts";
import { verifyAuditChain } from "../../src/audit/verify.ts";
import { aesGcmDecrypt, aesGcmEncrypt, randomKey } from "../../src/crypto/aead.ts";
import { Keyring } from "../../src/crypto/keyring.ts";
import { generateRootKey } from "../../src/crypto/root-key.ts";
import { Seal } from "../../src/crypto/seal.ts";
import { createLogger } from "../../src/log.ts";
import { kernelMigrations } from "../../src/store/kernel-migrations.ts";
import { migrate } from "../../src/store/migrate.ts";
import { openStore, type Store } from "../../src/store/store.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, concurrency: { type: "string", default: "256" } } });
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const dir = mkdtempSync(join(tmpdir(), "citadel-bench-audit-"));

function freshStore(name: string): Store {
  const store = openStore({ path: join(dir, `${name}.db`) });
  migrate(store.db, [{ owner: "kernel", migrations: kernelMigrations }]);
  store.db.run("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL)");
  return store;
}

/** Forwards every event of the store to a fresh file from the start of the log; returns events/s. */
async function forwardAll(store: Store, seal: Seal, personalData: boolean): Promise<number> {
  const file = join(dir, `forward-${personalData ? "personal" : "plain"}.jsonl`);
  store.db.run("INSERT OR REPLACE INTO audit_forward_cursor (singleton, seq) VALUES (1, 0)");
  const head = store.db.query<{ seq: number }, []>("SELECT max(seq) AS seq FROM audit_events").get()!.seq;
  const cursor = () => store.db.query<{ seq: number }, []>("SELECT seq FROM audit_forward_cursor").get()!.seq;
  const log = createLogger({ level: "error" });
  const started = performance.now();
  const stop = startAuditForwarder({ store, seal, sink: fileSink(file), personalData, log, intervalMs: 1 });
  while (cursor() < head) await Bun.sleep(5);
  const rate = head / ((performance.now() - started) / 1000);
  await stop();
  const lines = (await Bun.file(file).text()).split("\n").length - 1;
  if (lines !== head) throw new Error(`forwarding wrote ${lines} lines for ${head} events`);
  return rate;
}

/** Runs `concurrency` callers that each await one write after another; returns writes/s. */
async function measure(store: Store, write: (i: number) => Promise<unknown>): Promise<number> {
  let done = 0;
  let running = true;
  const deadline = performance.now() + seconds * 1000;
  const caller = async (c: number) => {
    for (let i = c; running; i += concurrency) {
      await write(i);
      done++;
      if (performance.now() > deadline) running = false;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, c) => caller(c)));
  return done / ((performance.now() - started) / 1000);
}

try {
  // Plain inserts, one durable transaction per insert (no grouping): the floor.
  const single = freshStore("single");
  const insert = single.db.query("INSERT INTO widgets (name, owner) VALUES (?, ?)");
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < Math.min(2, seconds) * 1000) {
    single.db.transaction(() => insert.run(`w${n}`, "u_1")).immediate();
    n++;
  }
  const singleRate = n / ((performance.now() - t0) / 1000);
  single.close();

  // Plain inserts through store.write (group commit), no audit.
  const plain = freshStore("plain");
  const plainInsert = plain.db.query("INSERT INTO widgets (name, owner) VALUES (?, ?)");
  const plainRate = await measure(plain, (i) => plain.write(() => plainInsert.run(`w${i}`, `u_${i % 1000}`)));
  plain.close();

  // Audited: the same insert plus its audit event (hash chain, personal data encrypted per subject).
  const audited = freshStore("audited");
  const root = generateRootKey();
  audited.db.transaction(() => Keyring.initialize(audited.db, root, "key_file", Date.now()))();
  const seal = new Seal(audited.db);
  seal.unsealWithKey(root);
  const audit = new AuditLog({ now: Date.now, keyring: () => seal.keyringIfUnsealed() });
  audit.register([...KERNEL_ACTIONS, { type: "bench.widget.create", description: "bench" }]);
  const auditedInsert = audited.db.query("INSERT INTO widgets (name, owner) VALUES (?, ?) RETURNING id");
  const auditedRate = await measure(audited, (i) =>
    audited.write((tx) => {
      const { id } = auditedInsert.get(`w${i}`, `u_${i % 1000}`) as { id: number };
      audit.record(tx, {
        action: "bench.widget.create",
        actor: { kind: "user", organization: "org_1", user: `u_${i % 1000}`, token: "pat_abcd" },
        outcome: "success",
        resource: { type: "widget", id: String(id) },
        request: { id: `req-${i}`, source: "192.0.2.10", userAgent: "bench/1.0" },
      });
    }),
  );
  // The same without personal data (no encryption): what the chain itself costs.
  const bareAuditRate = await measure(audited, (i) =>
    audited.write((tx) => {
      const { id } = auditedInsert.get(`w${i}`, `u_${i % 1000}`) as { id: number };
      audit.record(tx, { action: "bench.widget.create", actor: { kind: "system" }, outcome: "success", resource: { type: "widget", id: String(id) } });
    }),
  );
  const events = audited.db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events").get()!.n;
  const verifyStarted = performance.now();
  const report = verifyAuditChain(audited.db);
  const verifyRate = report.events / ((performance.now() - verifyStarted) / 1000);
  if (!report.ok) throw new Error("the benchmark's own chain does not verify");

  // Forwarding (audit.forward): every event written above, to a JSON-lines file, without and
  // with personal data (decrypted). It must keep up with the writer (the audited rate above).
  const forwardRate = await forwardAll(audited, seal, false);
  const forwardPersonalRate = await forwardAll(audited, seal, true);

  // AES-256-GCM through the keyring (64-byte values) and raw.
  const keyring = seal.keyring();
  const value = Buffer.alloc(64, 7);
  const N = 200_000;
  let started = performance.now();
  const sealed: Buffer[] = [];
  for (let i = 0; i < N; i++) sealed.push(keyring.encrypt(audited.db, "bench/owner", `row/${i & 1023}`, value));
  const encRate = N / ((performance.now() - started) / 1000);
  started = performance.now();
  for (let i = 0; i < N; i++) keyring.decrypt("bench/owner", `row/${i & 1023}`, sealed[i]!);
  const decRate = N / ((performance.now() - started) / 1000);
  const key = randomKey();
  const nonce = Buffer.alloc(12);
  started = performance.now();
  for (let i = 0; i < N; i++) aesGcmDecrypt(key, nonce, aesGcmEncrypt(key, nonce, value, nonce), nonce);
  const rawRate = N / ((performance.now() - started) / 1000);
  audited.close();

  const fmt = (x: number) => Math.round(x).toLocaleString("en");
  console.log(`\n${seconds} s per measurement, ${concurrency} concurrent callers, synchronous=FULL on ${dir}, Bun ${Bun.version}\n`);
  console.log("| workload | per second |");
  console.log("|---|---:|");
  console.log(`| plain insert, one transaction each (no grouping) | ${fmt(singleRate)} |`);
  console.log(`| plain insert through store.write (group commit) | ${fmt(plainRate)} |`);
  console.log(`| audited insert: row + hash-chained event + encrypted personal data (group commit) | ${fmt(auditedRate)} |`);
  console.log(`| audited insert without personal data (no encryption) | ${fmt(bareAuditRate)} |`);
  console.log(`| audit chain verification (events checked) | ${fmt(verifyRate)} |`);
  console.log(`| audit forwarding to a JSON-lines file (events) | ${fmt(forwardRate)} |`);
  console.log(`| audit forwarding with personal data, decrypted (events) | ${fmt(forwardPersonalRate)} |`);
  console.log(`| keyring encrypt, 64-byte value (AES-256-GCM envelope) | ${fmt(encRate)} |`);
  console.log(`| keyring decrypt, 64-byte value | ${fmt(decRate)} |`);
  console.log(`| raw AES-256-GCM encrypt+decrypt pair, 64 bytes | ${fmt(rawRate)} |`);
  console.log(`\naudited mutations: ${fmt(auditedRate)}/s (target ≥ 20,000); audit costs ${(plainRate / auditedRate).toFixed(2)}× a bare insert (target ≤ 2×); ${fmt(events)} events written and verified`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
