/**
 * Backups made by the server: a consistent snapshot while writes go on, what the manifest
 * says about it, the audit events, the schedule and pruning on a fixed clock, and failures.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { KERNEL_ACTIONS } from "../../../src/audit/actions.ts";
import { AuditLog } from "../../../src/audit/log.ts";
import { verifyAuditChain } from "../../../src/audit/verify.ts";
import { Keyring, promoteRootKey } from "../../../src/crypto/keyring.ts";
import { generateRootKey, rootKeyId, rootKeyVerifier } from "../../../src/crypto/root-key.ts";
import { Seal } from "../../../src/crypto/seal.ts";
import { ConflictError, SealedError, UnavailableError } from "../../../src/errors.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";
import { openStore } from "../../../src/store/store.ts";
import { backupPlugin } from "../../../plugins/backup/index.ts";
import { newestBackup } from "../../../plugins/backup/files.ts";
import { openBackup } from "../../../plugins/backup/format.ts";
import { BackupSchedule, newestNotAhead } from "../../../plugins/backup/schedule.ts";
import { BackupService, RESTORE_MARKER, type BackupDeps } from "../../../plugins/backup/service.ts";
import { newKeyringBackupKeys, type BackupKeys } from "../../../plugins/backup/keys.ts";
import type { BackupSettings } from "../../../plugins/backup/settings.ts";
import { captureLog, fixedClock } from "../../helpers/http.ts";

const dirs: string[] = [];
const closers: Array<() => void> = [];
afterAll(() => {
  for (const close of closers) close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const HOUR = 3_600_000;

/** A data directory with a real database file, keys and an audit log, as `serve` has them. */
function instance(settings: Partial<BackupSettings> = {}, overrides: Partial<BackupDeps> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "citadel-backup-service-"));
  dirs.push(dataDir);
  const clock = fixedClock(Date.UTC(2026, 5, 1, 12, 0, 0));
  const store = openStore({ path: join(dataDir, "citadel.db") });
  closers.push(() => store.close());
  migrate(store.db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const instanceId = crypto.randomUUID();
  store.db.run("INSERT INTO instance (singleton, id, created_at) VALUES (1, ?, ?)", [instanceId, clock.now()]); // as serve's first start does
  const rootKey = generateRootKey();
  store.db.transaction(() => Keyring.initialize(store.db, rootKey, "key_file", clock.now()))();
  const seal = new Seal(store.db, clock.now);
  seal.unsealWithKey(rootKey);
  const audit = new AuditLog({ now: clock.now, keyring: () => seal.keyringIfUnsealed() });
  audit.register([...KERNEL_ACTIONS, ...backupPlugin.actions]);
  const log = captureLog();
  const deps: BackupDeps = {
    store,
    audit,
    clock,
    build: { version: "1.2.3", commit: "abc1234", buildTime: null, compiled: false },
    log: log.logger,
    dataDir,
    settings: { enabled: true, interval_hours: 1, keep: 3, dir: "backups", ...settings },
    keyring: () => seal.keyring(),
    rootKeyBackupKeys: () => newKeyringBackupKeys(seal.keyring()),
    chunkBytes: 4096,
    onSeal: (listener) => seal.onSeal(listener),
    ...overrides,
  };
  const service = new BackupService(deps);
  const note = (text: string) => store.write((tx) => audit.record(tx, { action: "audit.note.create", actor: { kind: "operator" }, outcome: "success", reason: text }));
  const actions = (prefix: string) =>
    store.db
      .query<{ action: string; outcome: string; resource_id: string | null; reason: string | null }, [string]>("SELECT action, outcome, resource_id, reason FROM audit_events WHERE action LIKE ? ORDER BY seq")
      .all(`${prefix}%`);
  return { dataDir, instanceId, clock, store, seal, rootKey, log, deps, service, note, actions };
}

/** Decrypts a backup into a database file and opens it. */
async function restored(path: string, rootKey: Buffer) {
  const dir = mkdtempSync(join(tmpdir(), "citadel-backup-open-"));
  dirs.push(dir);
  const plain = join(dir, "citadel.db");
  const { manifest } = await openBackup(path, { rootKey }, plain);
  const db = new Database(plain, { readonly: true });
  closers.push(() => db.close());
  return { db, manifest };
}

describe("a backup on demand", () => {
  test("sealing while it runs abandons it: its keys are wiped, no file is left, the failure is audited", async () => {
    let made: BackupKeys | undefined;
    let sealNow = () => {};
    const c = instance({}, {
      rootKeyBackupKeys: () => {
        made = newKeyringBackupKeys(c.seal.keyring());
        queueMicrotask(() => sealNow()); // at the backup's first await: the snapshot is being taken
        return made;
      },
    });
    sealNow = () => c.seal.seal();
    for (let i = 0; i < 20; i++) await c.note(`before ${i}`);
    await expect(c.service.create({ reason: "on_demand", actor: { kind: "operator" } })).rejects.toThrow("the backup was abandoned: Citadel was sealed while it was being written");
    expect(made!.wiped).toBe(true);
    expect(made!.encryption.every((b) => b === 0)).toBe(true);
    expect(readdirSync(join(c.dataDir, "backups"))).toEqual([]);
    expect(readdirSync(c.dataDir).filter((n) => n.startsWith(".backup-snapshot-"))).toEqual([]);
    expect(c.actions("backup")).toEqual([{ action: "backup.create", outcome: "failure", resource_id: expect.stringMatching(/^citadel-.*\.backup$/), reason: expect.stringContaining("sealed while it was being written") }]);
  });

  test("a key file rekey between the backup's key and its snapshot: taken again under the new key, so the file and the database in it open with the same key (found in review)", async () => {
    const newRoot = generateRootKey();
    let calls = 0;
    const c = instance({}, {
      rootKeyBackupKeys: () => {
        const keys = newKeyringBackupKeys(c.seal.keyring());
        if (++calls === 1) {
          // As `citadel keys rekey` does with a key file, right after this backup took its key.
          c.store.db.transaction(() => {
            c.seal.keyring().beginRekey(c.store.db, newRoot, "key_file", c.clock.now());
            promoteRootKey(c.store.db, rootKeyId(rootKeyVerifier(newRoot)));
          })();
          c.seal.unsealWithKey(newRoot);
        }
        return keys;
      },
    });
    const made = await c.service.create({ reason: "on_demand", actor: { kind: "operator" } });
    const newId = rootKeyId(rootKeyVerifier(newRoot));
    expect([calls, made.key, made.manifest.root_key_id]).toEqual([2, { kind: "root_key", root_key_id: newId }, newId]);
    expect((await restored(made.path, newRoot)).manifest.root_key_id).toBe(newId);
  });

  test("refused while sealed, and audited as every other failure (found in review: not audited)", async () => {
    const c = instance();
    c.seal.seal();
    await expect(c.service.create({ reason: "on_demand", actor: { kind: "operator" } })).rejects.toThrow(SealedError);
    expect(c.actions("backup")).toEqual([{ action: "backup.create", outcome: "failure", resource_id: null, reason: "Citadel is sealed" }]);
    expect(readdirSync(c.dataDir).filter((n) => n.startsWith(".backup-snapshot-") || n === "backups")).toEqual([]);
  });

  test("a passphrase backup asked for while its key was derived and Citadel sealed meanwhile is refused", async () => {
    const c = instance();
    const asked = c.service.create({ reason: "on_demand", actor: { kind: "operator" }, passphrase: "a passphrase long enough" });
    await Bun.sleep(5); // argon2id (64 MiB, three passes) runs on its own threads for far longer than this
    c.seal.seal();
    await expect(asked).rejects.toThrow(SealedError);
    expect(readdirSync(c.dataDir).filter((n) => n.startsWith(".backup-snapshot-") || n === "backups")).toEqual([]);
  });

  test("is a complete, consistent copy, named by the clock, described by its manifest, and audited", async () => {
    const c = instance();
    for (let i = 0; i < 20; i++) await c.note(`before ${i}`);
    const created = await c.service.create({ reason: "on_demand", actor: { kind: "user", user: "u_ops" } });

    expect(created.name).toBe("citadel-20260601T120000Z.backup");
    expect(created.path).toBe(join(c.dataDir, "backups", created.name));
    expect(statSync(created.path).mode & 0o777).toBe(0o600);
    expect(statSync(join(c.dataDir, "backups")).mode & 0o777).toBe(0o700);
    expect(created.key).toEqual({ kind: "root_key", root_key_id: rootKeyId(rootKeyVerifier(c.rootKey)) });
    expect(created.sha256).toBe(new Bun.CryptoHasher("sha256").update(readFileSync(created.path)).digest("hex"));
    // Nothing but the backup is left in the directory (no plaintext snapshot, no partial file).
    expect(readdirSync(join(c.dataDir, "backups"))).toEqual([created.name]);

    const { db, manifest } = await restored(created.path, c.rootKey);
    expect(manifest).toEqual(created.manifest);
    expect(manifest).toMatchObject({
      created_at: "2026-06-01T12:00:00.000Z",
      reason: "on_demand",
      citadel: { version: "1.2.3", commit: "abc1234" },
      root_key_id: rootKeyId(rootKeyVerifier(c.rootKey)),
      migrations: { kernel: kernelMigrations.at(-1)!.id },
      audit_head: { seq: 20 },
    });
    // The copy's audit chain verifies and ends exactly where the manifest says.
    const report = verifyAuditChain(db);
    expect(report.ok).toBe(true);
    expect(report.head).toEqual(manifest.audit_head);
    expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events").get()!.n).toBe(20);

    // The backup's own event comes after the snapshot (it records what the snapshot holds).
    expect(c.actions("backup")).toEqual([{ action: "backup.create", outcome: "success", resource_id: created.name, reason: expect.stringContaining("on demand, root key") }]);
    expect(c.actions("backup")[0]!.reason).toContain("audit head 20");
  });

  test("writes keep committing while the snapshot is taken, and the copy is a prefix of them", async () => {
    const c = instance({}, { chunkBytes: 64 * 1024 });
    // Enough data that the copy takes a moment.
    await c.store.write((tx) => {
      tx.run("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)");
      const insert = tx.query("INSERT INTO filler (data) VALUES (?)");
      for (let i = 0; i < 4000; i++) insert.run(Buffer.alloc(1024, i % 251));
    });
    let writing = true;
    let acknowledged = 0;
    const writer = (async () => {
      while (writing) {
        await c.note(`during ${acknowledged}`);
        acknowledged++;
      }
    })();
    // A loaded machine may take a while for the first commits.
    for (const until = Date.now() + 10_000; acknowledged < 3 && Date.now() < until; ) await Bun.sleep(1);
    expect(acknowledged).toBeGreaterThanOrEqual(3);
    const before = acknowledged;
    const created = await c.service.create({ reason: "on_demand", actor: { kind: "system" } });
    const after = acknowledged;
    writing = false;
    await writer;
    expect(after).toBeGreaterThan(before); // the server was not blocked while the backup ran

    const { db, manifest } = await restored(created.path, c.rootKey);
    const notes = db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'audit.note.create' ORDER BY seq").all().map((r) => r.reason);
    // Every write acknowledged before the backup began is there, in order, with nothing missing between.
    expect(notes.length).toBeGreaterThanOrEqual(before);
    expect(notes.length).toBeLessThanOrEqual(after + 1);
    expect(notes).toEqual(Array.from({ length: notes.length }, (_, i) => `during ${i}`));
    expect(verifyAuditChain(db).ok).toBe(true);
    expect(manifest.audit_head!.seq).toBe(notes.length);
  });

  test("with a passphrase, it opens with the passphrase and not with the root key", async () => {
    const c = instance();
    await c.note("x");
    const created = await c.service.create({ reason: "on_demand", actor: { kind: "system" }, passphrase: "a passphrase for the auditors" });
    expect(created.key).toEqual({ kind: "passphrase" });
    await expect(openBackup(created.path, { rootKey: c.rootKey })).rejects.toThrow("this backup is encrypted with a passphrase");
    const { manifest } = await openBackup(created.path, { passphrase: "a passphrase for the auditors" });
    expect(manifest.audit_head?.seq).toBe(1);
    expect(c.actions("backup.create")[0]!.reason).toContain("passphrase");
  });

  test("sealed, nothing is made or written", async () => {
    const c = instance();
    c.seal.seal();
    await expect(c.service.create({ reason: "on_demand", actor: { kind: "system" } })).rejects.toBeInstanceOf(SealedError);
    expect(newestBackup(c.dataDir, "backups")).toBeNull();
  });

  test("a failure is audited with its reason and leaves nothing behind", async () => {
    const c = instance({}, {
      rootKeyBackupKeys: () => {
        throw new ConflictError("the key derivation failed");
      },
    });
    await expect(c.service.create({ reason: "scheduled", actor: { kind: "system" } })).rejects.toBeInstanceOf(ConflictError);
    expect(c.actions("backup")).toEqual([{ action: "backup.create", outcome: "failure", resource_id: null, reason: "the key derivation failed" }]);
    expect(newestBackup(c.dataDir, "backups")).toBeNull();
  });

  test("a backup directory that cannot be written is a 503-like UnavailableError naming it and the code, audited so, never a bare 500 (found in review)", async () => {
    const blocker = join(mkdtempSync(join(tmpdir(), "citadel-backup-blocked-")), "a-file");
    dirs.push(dirname(blocker));
    writeFileSync(blocker, "not a directory");
    for (const [dir, code] of [[join(blocker, "backups"), "ENOTDIR"], [blocker, "EEXIST"]] as const) {
      const c = instance({ dir });
      const error = await c.service.create({ reason: "on_demand", actor: { kind: "operator" } }).catch((e) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error.message).toStartWith(`cannot write the backup directory ${dir}: ${code} (`);
      expect(error.message).not.toContain("    at ");
      expect(c.actions("backup")).toEqual([{ action: "backup.create", outcome: "failure", resource_id: null, reason: error.message }]);
    }
  });

  test("two at once run one after the other, and a second within the same second takes the next name", async () => {
    const c = instance();
    const [a, b] = await Promise.all([c.service.create({ reason: "on_demand", actor: { kind: "system" } }), c.service.create({ reason: "on_demand", actor: { kind: "system" } })]);
    expect([a.name, b.name]).toEqual(["citadel-20260601T120000Z.backup", "citadel-20260601T120001Z.backup"]);
  });

  test("what an interrupted backup left (a plaintext snapshot, a partial file) is removed", async () => {
    const c = instance();
    await c.service.create({ reason: "on_demand", actor: { kind: "system" } });
    const dir = join(c.dataDir, "backups");
    writeFileSync(join(dir, ".snapshot-1234.db"), "plaintext");
    writeFileSync(join(dir, `.citadel-20260601T130000Z.backup.${c.instanceId}.partial`), "half");
    writeFileSync(join(dir, "notes.txt"), "the operator's own file");
    // The directory may be a mount other tools write to: their files stay (found in review).
    writeFileSync(join(dir, ".rsync-upload.partial"), "another tool's");
    writeFileSync(join(c.dataDir, ".backup-snapshot-0b5e7c1a-1b2c-4d5e-8f90-123456789abc.db"), "plaintext");
    // Killed inside VACUUM INTO: its journal (plaintext pages too) is left beside the snapshot (found in review).
    for (const companion of ["-journal", "-wal", "-shm"]) {
      writeFileSync(join(c.dataDir, `.backup-snapshot-1b5e7c1a-1b2c-4d5e-8f90-123456789abc.db${companion}`), "plaintext");
      writeFileSync(join(dir, `.snapshot-1234.db${companion}`), "plaintext");
    }
    writeFileSync(join(c.dataDir, ".backup-snapshot-1b5e7c1a-1b2c-4d5e-8f90-123456789abc.db-journal.keep"), "not ours");
    await c.service.removeLeftovers();
    expect(readdirSync(dir).sort()).toEqual([".rsync-upload.partial", "citadel-20260601T120000Z.backup", "notes.txt"]);
    expect(readdirSync(c.dataDir).filter((n) => n.startsWith(".backup-snapshot-"))).toEqual([".backup-snapshot-1b5e7c1a-1b2c-4d5e-8f90-123456789abc.db-journal.keep"]);
  });
});


describe("scheduled backups (fixed clock)", () => {
  test("one per interval from the newest backup, the oldest pruned beyond keep, each prune audited", async () => {
    const c = instance({ interval_hours: 1, keep: 3 });
    const schedule = new BackupSchedule({
      intervalMs: HOUR,
      now: c.clock.now,
      newest: async () => (await c.service.list())[0]?.time ?? null,
      sealed: () => c.seal.sealed,
      run: () => c.service.create({ reason: "scheduled", actor: { kind: "system" } }),
      log: c.log.logger,
    });
    const made: boolean[] = [];
    for (let minutes = 0; minutes <= 5 * 60; minutes += 30) {
      await c.note(`at ${minutes} min`);
      made.push(await schedule.tick());
      c.clock.advance(30 * 60_000);
    }
    // Due at 0 (none yet), then every hour after the newest: 0, 60, 120, ... 300 minutes.
    expect(made).toEqual([true, false, true, false, true, false, true, false, true, false, true]);
    expect((await c.service.list()).map((f) => f.name)).toEqual(["citadel-20260601T170000Z.backup", "citadel-20260601T160000Z.backup", "citadel-20260601T150000Z.backup"]);
    expect(newestBackup(c.dataDir, "backups")).toEqual({ path: join(c.dataDir, "backups", "citadel-20260601T170000Z.backup"), time: new Date(Date.UTC(2026, 5, 1, 17)) });
    expect(c.actions("backup.prune").map((e) => e.resource_id)).toEqual(["citadel-20260601T120000Z.backup", "citadel-20260601T130000Z.backup", "citadel-20260601T140000Z.backup"]);
    expect(c.actions("backup.create").every((e) => e.outcome === "success" && e.reason!.startsWith("scheduled"))).toBe(true);

    // The newest backup holds the events up to the note just before it.
    const { manifest } = await openBackup((await c.service.list())[0]!.path, { rootKey: c.rootKey });
    expect(manifest.reason).toBe("scheduled");
  });

  test("backups named while the clock was ahead neither get the new one pruned nor hold the schedule off (found in review)", async () => {
    const c = instance({ interval_hours: 1, keep: 2 });
    // Two made while the clock was a year ahead; then NTP set it right.
    const YEAR_AHEAD = Date.UTC(2027, 0, 1) - c.clock.now();
    c.clock.step(YEAR_AHEAD);
    await c.service.create({ reason: "scheduled", actor: { kind: "system" } });
    c.clock.step(24 * HOUR);
    await c.service.create({ reason: "scheduled", actor: { kind: "system" } });
    c.clock.step(-YEAR_AHEAD - 24 * HOUR);
    const schedule = new BackupSchedule({
      intervalMs: HOUR,
      now: c.clock.now,
      newest: async () => newestNotAhead(await c.service.list(), c.clock.now()),
      sealed: () => c.seal.sealed,
      run: () => c.service.create({ reason: "scheduled", actor: { kind: "system" } }),
      log: c.log.logger,
    });
    expect(await schedule.tick()).toBe(true); // due now, not in 2027
    const made = (await c.service.list()).find((f) => f.name.startsWith("citadel-2026"))!;
    expect(made.name).toBe("citadel-20260601T120000Z.backup"); // kept, though two names sort after it
    c.clock.advance(HOUR);
    expect(await schedule.tick()).toBe(true);
    c.clock.advance(HOUR);
    expect(await schedule.tick()).toBe(true);
    // The two ahead of the clock neither count against keep nor go; of the real ones, the newest two stay.
    expect((await c.service.list()).map((f) => f.name)).toEqual(["citadel-20270102T000000Z.backup", "citadel-20270101T000000Z.backup", "citadel-20260601T140000Z.backup", "citadel-20260601T130000Z.backup"]);
  });

  test("keep = 0 keeps every backup", async () => {
    const c = instance({ keep: 0 });
    for (let i = 0; i < 4; i++) {
      await c.service.create({ reason: "scheduled", actor: { kind: "system" } });
      c.clock.advance(HOUR);
    }
    expect(await c.service.list()).toHaveLength(4);
    expect(c.actions("backup.prune")).toEqual([]);
  });

  test("nothing is due while sealed; a failure waits before the next try", async () => {
    const c = instance();
    let fail = true;
    let runs = 0;
    const schedule = new BackupSchedule({
      intervalMs: 24 * HOUR,
      now: c.clock.now,
      newest: async () => (await c.service.list())[0]?.time ?? null,
      sealed: () => c.seal.sealed,
      run: async () => {
        runs++;
        if (fail) throw new Error("disk full");
        return c.service.create({ reason: "scheduled", actor: { kind: "system" } });
      },
      log: c.log.logger,
      retryMs: HOUR,
    });
    c.seal.seal();
    expect(await schedule.tick()).toBe(false);
    expect(runs).toBe(0);
    c.seal.unsealWithKey(c.rootKey);
    expect(await schedule.tick()).toBe(false); // tried and failed
    expect(runs).toBe(1);
    expect(c.log.lines.some((l) => l.msg === "scheduled backup failed; will try again")).toBe(true);
    c.clock.advance(HOUR / 2);
    expect(await schedule.tick()).toBe(false);
    expect(runs).toBe(1);
    fail = false;
    c.clock.advance(HOUR / 2);
    expect(await schedule.tick()).toBe(true);
    expect(await schedule.dueAt()).toBe(c.clock.now() + 24 * HOUR);
  });
});

describe("a backup directory shared by two Citadels (found in review)", () => {
  /** Two instances, A and B, whose [backup] dir is one directory. */
  function twoInstances(settings: Partial<BackupSettings> = {}) {
    const shared = mkdtempSync(join(tmpdir(), "citadel-backup-shared-"));
    dirs.push(shared);
    return { shared, A: instance({ dir: shared, ...settings }), B: instance({ dir: shared, ...settings }) };
  }
  const backUp = (c: ReturnType<typeof instance>) => c.service.create({ reason: "on_demand", actor: { kind: "system" } });

  test("each lists and serves only its own backups, and prunes only its own beyond keep", async () => {
    const { shared, A, B } = twoInstances({ keep: 1 });
    const a = await backUp(A);
    B.clock.advance(1000);
    const b = await backUp(B);
    expect(b.pruned).toEqual([]); // A's was counted against B's keep, and deleted
    expect(readdirSync(shared).sort()).toEqual([a.name, b.name]);
    expect((await A.service.list()).map((f) => f.name)).toEqual([a.name]);
    expect((await B.service.list()).map((f) => f.name)).toEqual([b.name]);
    await expect(B.service.file(a.name)).rejects.toThrow(`no backup named ${a.name}`);

    A.clock.advance(2000);
    const again = await backUp(A);
    expect(again.pruned).toEqual([a.name]);
    expect(readdirSync(shared).sort()).toEqual([b.name, again.name]);
    expect(B.actions("backup.prune")).toEqual([]);
  });

  test("the other's newer backup does not hold off this one's schedule", async () => {
    const { A, B } = twoInstances();
    const schedule = new BackupSchedule({
      intervalMs: HOUR,
      now: A.clock.now,
      newest: async () => newestNotAhead(await A.service.list(), A.clock.now()),
      sealed: () => false,
      run: () => backUp(A),
      log: A.log.logger,
    });
    await backUp(B);
    expect(await schedule.tick()).toBe(true); // B's backup of a moment ago is not A's
    expect(await schedule.tick()).toBe(false); // A's own is
  });

  test("at start, each removes its own unfinished backups, never the other's being written", async () => {
    const { shared, A, B } = twoInstances();
    const finished = await backUp(A);
    // An earlier version named them without the instance: its manifest says whose (one that does not read, nobody can tell).
    const oldNamed = (time: string) => `.citadel-${time}.backup.partial`;
    copyFileSync(finished.path, join(shared, oldNamed("20260601T120100Z")));
    writeFileSync(join(shared, oldNamed("20260601T120200Z")), "");
    const aIsWriting = `.citadel-20260601T120300Z.backup.${A.instanceId}.partial`;
    writeFileSync(join(shared, aIsWriting), "A is writing it");
    await B.service.removeLeftovers();
    const partials = () => readdirSync(shared).filter((name) => name.endsWith(".partial")).sort();
    expect(partials()).toEqual([oldNamed("20260601T120100Z"), oldNamed("20260601T120200Z"), aIsWriting].sort());

    const bIsWriting = `.citadel-20260601T120400Z.backup.${B.instanceId}.partial`;
    writeFileSync(join(shared, bIsWriting), "B is writing it");
    await A.service.removeLeftovers(); // A restarted: what it was writing is a leftover now
    expect(partials()).toEqual([oldNamed("20260601T120200Z"), bIsWriting].sort());
  });

  test("an earlier version's partial whose header does not read is removed once an hour old; a newer one, or one naming the other, stays (found in review: kept forever)", async () => {
    const { shared, A, B } = twoInstances();
    const oldNamed = (time: string) => `.citadel-${time}.backup.partial`;
    const bMade = await backUp(B);
    copyFileSync(bMade.path, join(shared, oldNamed("20260601T110000Z"))); // the other's, its manifest reads
    writeFileSync(join(shared, oldNamed("20260601T110100Z")), ""); // made, nothing written yet
    writeFileSync(join(shared, oldNamed("20260601T110200Z")), readFileSync(bMade.path).subarray(0, 50)); // cut short in its header
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR);
    for (const time of ["20260601T110000Z", "20260601T110100Z", "20260601T110200Z"]) utimesSync(join(shared, oldNamed(time)), twoHoursAgo, twoHoursAgo);
    writeFileSync(join(shared, oldNamed("20260601T120300Z")), ""); // an older version sharing the directory may be writing it now
    await A.service.removeLeftovers();
    const partials = readdirSync(shared).filter((name) => name.endsWith(".partial")).sort();
    expect(partials).toEqual([oldNamed("20260601T110000Z"), oldNamed("20260601T120300Z")]);
  });

  test("a name the other took while this one's backup was written is not written over: the next second's is taken", async () => {
    const { shared, A } = twoInstances();
    const taken = join(shared, "citadel-20260601T120000Z.backup");
    // The other finishes a backup of the same second while A's is written (after A chose its name).
    const build = A.deps.build;
    Object.defineProperty(A.deps, "build", {
      get() {
        if (!existsSync(taken)) writeFileSync(taken, "the other's backup");
        return build;
      },
    });
    const a = await backUp(A);
    expect(a.name).toBe("citadel-20260601T120001Z.backup");
    expect(readFileSync(taken, "utf8")).toBe("the other's backup");
    expect(readdirSync(shared).sort()).toEqual([taken, a.path].map((path) => path.slice(shared.length + 1)));
    expect(A.actions("backup.create").map((e) => e.resource_id)).toEqual([a.name]);
    expect((await openBackup(a.path, { rootKey: A.rootKey })).manifest.instance_id).toBe(A.instanceId);
  });
});

describe("the plugin at start", () => {
  test("records every restore since the last start, in order (found in review: a second restore lost the first's event)", async () => {
    const c = instance();
    const note = (backup: string, previous: string) => ({ backup, created_at: "2026-05-01T00:00:00.000Z", audit_head_seq: 41, previous });
    writeFileSync(
      join(c.dataDir, RESTORE_MARKER),
      JSON.stringify({
        previous: "citadel.db.before-restore-20260601T120000Z",
        restores: [note("citadel-20260501T000000Z.backup", "citadel.db.before-restore-20260601T120000Z"), note("citadel-20260502T000000Z.backup", "citadel.db.before-restore-20260601T120005Z")],
      }),
    );
    expect(await c.service.recordRestore()).toBe(true);
    expect(c.actions("backup.restore").map((e) => [e.resource_id, e.reason])).toEqual([
      ["citadel-20260501T000000Z.backup", "restored from citadel-20260501T000000Z.backup taken 2026-05-01T00:00:00.000Z, audit head 41; previous database kept as citadel.db.before-restore-20260601T120000Z, its audit log unread"],
      ["citadel-20260502T000000Z.backup", "restored from citadel-20260502T000000Z.backup taken 2026-05-01T00:00:00.000Z, audit head 41; previous database kept as citadel.db.before-restore-20260601T120005Z, its audit log unread"],
    ]);
    expect(existsSync(join(c.dataDir, RESTORE_MARKER))).toBe(false);
  });

  test("the restore's event records where the replaced database's audit log ended: a checkpoint kept elsewhere of a later event no longer verifies after it (found in review)", async () => {
    const c = instance();
    for (let i = 0; i < 3; i++) await c.note(`before the restore ${i}`);
    const previous = "citadel.db.before-restore-20260601T120000Z";
    c.store.db.run(`VACUUM INTO '${join(c.dataDir, previous)}'`);
    const head = c.store.db.query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Uint8Array };
    writeFileSync(join(c.dataDir, RESTORE_MARKER), JSON.stringify({ id: "r-head", backup: "citadel-20260501T000000Z.backup", created_at: "2026-05-01T00:00:00.000Z", audit_head_seq: 1, previous }));
    expect(await c.service.recordRestore()).toBe(true);
    expect(c.actions("backup.restore").map((e) => e.reason)).toEqual([
      `restored from citadel-20260501T000000Z.backup taken 2026-05-01T00:00:00.000Z, audit head 1; previous database kept as ${previous}, its audit log ending at event ${head.seq} (hash ${Buffer.from(head.hash).toString("hex").slice(0, 16)})`,
    ]);
  });

  test("records a restore that citadel restore left a marker for, once", async () => {
    const c = instance();
    writeFileSync(join(c.dataDir, RESTORE_MARKER), JSON.stringify({ backup: "citadel-20260501T000000Z.backup", created_at: "2026-05-01T00:00:00.000Z", audit_head_seq: 41, previous: "citadel.db.before-restore-20260601T120000Z" }));
    expect(await c.service.recordRestore()).toBe(true);
    expect(await c.service.recordRestore()).toBe(false);
    // A start that failed before the marker went meets the same marker again: not audited twice.
    writeFileSync(join(c.dataDir, RESTORE_MARKER), JSON.stringify({ id: "r-1", backup: "citadel-20260501T000000Z.backup", created_at: "2026-05-01T00:00:00.000Z", audit_head_seq: 41, previous: "citadel.db.before-restore-20260601T120000Z" }));
    expect(await c.service.recordRestore()).toBe(true);
    writeFileSync(join(c.dataDir, RESTORE_MARKER), JSON.stringify({ id: "r-1", backup: "citadel-20260501T000000Z.backup", created_at: "2026-05-01T00:00:00.000Z", audit_head_seq: 41, previous: "citadel.db.before-restore-20260601T120000Z" }));
    expect(await c.service.recordRestore()).toBe(true);
    expect(c.actions("backup.restore")).toHaveLength(2); // the first marker's and r-1's
    expect(c.actions("backup.restore")).toEqual(expect.arrayContaining([
      {
        action: "backup.restore",
        outcome: "success",
        resource_id: "citadel-20260501T000000Z.backup",
        reason: "restored from citadel-20260501T000000Z.backup taken 2026-05-01T00:00:00.000Z, audit head 41; previous database kept as citadel.db.before-restore-20260601T120000Z, its audit log unread",
      },
    ]));
  });
});
