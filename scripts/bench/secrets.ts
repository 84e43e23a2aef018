/**
 * Secrets benchmark: an authenticated, audited secret read on the compiled binary against a
 * bare Bun.serve answering the same JSON bytes, in the same run, with wrk on loopback over TLS:
 *
 * - citadel GET /v1/secrets/workspaces/:ws/environments/development/secrets/:name with a PAT:
 *   the edge, token authentication, the workspace guard, the environment check, decryption of
 *   the value, and a durable audit event (secrets.secret.read) written before the answer
 *   (group commit: reads in the same event-loop turn share one transaction and one fsync);
 * - citadel GET .../environments/development/secrets with the same PAT: the same route
 *   machinery and authentication, no audit write and no decryption (to tell the audit's cost
 *   apart from the rest);
 * - bare Bun.serve answering the exact bytes of Citadel's secret read.
 *
 * Rounds alternate between servers; medians are reported, with each server's CPU time per
 * request (from /proc). Only right answers count: wrk's non-2xx count must be 0, a checker
 * reads the secret beside wrk during each audited round and compares status, value and
 * version, and after the run the database must hold exactly one secrets.secret.read event per
 * 200 the server logged for the route (and the audit chain must verify).
 *
 * Usage: bun scripts/bench/secrets.ts [--duration 4] [--connections 32] [--rounds 3]
 * (the defaults keep a run under a minute: 3 rounds × 3 servers × (2 s warm-up + 4 s))
 */
import { Database } from "bun:sqlite";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { verifyAuditChain } from "../../src/audit/verify.ts";
import { call, ensureTools, freshDataDir, medianSample, ownerWithPat, sampleRow, startCitadel, stopAll, wrk, type Sample, type Server } from "./lib.ts";

// The reference server: this script started again with --reference <body file> <cert> <key>.
if (process.argv[2] === "--reference") {
  const [bodyFile, cert, key] = process.argv.slice(3);
  const body = readFileSync(bodyFile!, "utf8");
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: await Bun.file(cert!).text(), key: await Bun.file(key!).text() },
    development: false,
    fetch: () => new Response(body, { headers: { "content-type": "application/json" } }),
  });
  console.log(`listening ${server.port}`);
  await new Promise(() => {});
}

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "4" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
  },
});
const load = { duration: Number(values.duration), connections: Number(values.connections) };
const NAME = "BENCH_DATABASE_URL";
const VALUE = "postgres://bench:s3cr3t-value-0123456789abcdef@db.internal:5432/app?sslmode=verify-full";
const READ_ROUTE = "/v1/secrets/workspaces/:workspace/environments/:environment/secrets/:name";

await ensureTools();
const data = freshDataDir();
try {
  const citadel = await startCitadel(data, true);
  const { session, pat } = await ownerWithPat(citadel, ["secrets:read"]);
  const org = (await call(citadel.url, "GET", "/v1/iam/orgs", undefined, session)).body.items[0].id as string;
  const created = await call(citadel.url, "POST", `/v1/iam/orgs/${org}/workspaces`, { name: "bench" }, session);
  if (created.status !== 200) throw new Error(`workspace: ${created.status} ${JSON.stringify(created.body)}`);
  const env = `/v1/secrets/workspaces/${created.body.id}/environments/development`;
  const set = await call(citadel.url, "PUT", `${env}/secrets/${NAME}`, { value: VALUE }, session);
  if (set.status !== 200) throw new Error(`set secret: ${set.status} ${JSON.stringify(set.body)}`);
  const readUrl = `${citadel.url}${env}/secrets/${NAME}`;
  const listUrl = `${citadel.url}${env}/secrets`;

  // One read by hand: the answer must be right before it is measured, and is what the reference sends.
  const first = await fetch(readUrl, { headers: { authorization: `Bearer ${pat}` }, tls: { rejectUnauthorized: false } });
  const body = await first.text();
  check(first.status, body, set.body.version);
  const list = await call(citadel.url, "GET", `${env}/secrets`, undefined, pat);
  if (list.status !== 200 || list.body.items.length !== 1 || "value" in list.body.items[0]) throw new Error(`list: ${list.status} ${JSON.stringify(list.body)}`);
  const bodyFile = join(data, "reference.json");
  writeFileSync(bodyFile, body);
  const bare = await startReference(bodyFile, join(data, "tls/cert.pem"), join(data, "tls/key.pem"));

  const read: Sample[] = [];
  const listed: Sample[] = [];
  const reference: Sample[] = [];
  let checked = 0;
  const auth = [`Authorization: Bearer ${pat}`];
  try {
    for (let round = 1; round <= Number(values.rounds); round++) {
      const checker = checkWhile(readUrl, pat, set.body.version);
      read.push(await wrk(citadel, readUrl, `citadel audited secret read #${round}`, { ...load, headers: auth }).finally(checker.stop));
      checked += await checker.done;
      listed.push(await wrk(citadel, listUrl, `citadel secret list (no audit) #${round}`, { ...load, headers: auth }));
      reference.push(await wrk(bare, `${bare.url}/`, `bare #${round}`, load));
    }
  } finally {
    await stopAll(citadel, bare);
  }

  // Every 200 the server logged for the read route has its audit event, and the chain holds.
  const logged = { ok: 0, failed: 0 };
  for (const file of readdirSync(data).filter((f) => f.startsWith("access-"))) {
    for (const line of readFileSync(join(data, file), "utf8").split("\n")) {
      if (!line.includes(`"route":"${READ_ROUTE}"`) || !line.includes('"method":"GET"')) continue;
      if (line.includes('"status":200,')) logged.ok++;
      else logged.failed++;
    }
  }
  const db = new Database(join(data, "citadel.db"), { readonly: true });
  const audited = db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.read' AND outcome = 'success'").get()!.n;
  const chain = verifyAuditChain(db);
  db.close();
  if (logged.failed > 0) throw new Error(`${logged.failed} secret reads did not answer 200`);
  if (audited !== logged.ok) throw new Error(`${logged.ok} secret reads answered 200 but ${audited} secrets.secret.read events were written`);
  if (!chain.ok) throw new Error(`the audit chain does not verify: ${JSON.stringify(chain)}`);

  const ratio = (100 * medianSample(read).rps) / medianSample(reference).rps;
  console.log(`\nwrk -t1 -c${load.connections} -d${load.duration}s over TLS, loopback, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}, median of ${values.rounds} alternating rounds, ${body.length}-byte JSON answer\n`);
  console.log("| server | requests/s | p50 | p99 | server CPU per request |");
  console.log("|---|---:|---:|---:|---:|");
  console.log(sampleRow("citadel GET …/secrets/:name with a PAT (audited read)", read));
  console.log(sampleRow("citadel GET …/secrets with a PAT (list, no audit)", listed));
  console.log(sampleRow("bare Bun.serve, same JSON bytes", reference));
  console.log(`\naudited secret read: ${ratio.toFixed(1)}% of bare Bun (target ≥ 30%: ${ratio >= 30 ? "met" : "not met"}); the list without audit: ${((100 * medianSample(listed).rps) / medianSample(reference).rps).toFixed(1)}%`);
  console.log(`verified: ${logged.ok.toLocaleString("en")} reads answered 200 (warm-ups and checks included), ${audited.toLocaleString("en")} secrets.secret.read events written, chain of ${chain.events.toLocaleString("en")} events verified; ${checked.toLocaleString("en")} reads checked beside wrk, all 200 with the right value`);
} finally {
  rmSync(data, { recursive: true, force: true });
}

function check(status: number, text: string, version: number): void {
  if (status !== 200) throw new Error(`secret read: ${status} ${text}`);
  const secret = JSON.parse(text);
  if (secret.value !== VALUE || secret.name !== NAME || secret.version !== version || secret.value_version !== version) throw new Error(`secret read: wrong answer ${text}`);
}

/** Reads the secret one request after another until stopped, checking every answer. */
function checkWhile(url: string, token: string, version: number) {
  let running = true;
  const done = (async () => {
    let n = 0;
    while (running) {
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, tls: { rejectUnauthorized: false } });
      check(res.status, await res.text(), version);
      n++;
      await Bun.sleep(20);
    }
    return n;
  })();
  return { done, stop: () => void (running = false) };
}

async function startReference(bodyFile: string, cert: string, key: string): Promise<Server> {
  const proc = Bun.spawn(["bun", import.meta.path, "--reference", bodyFile, cert, key], { stdout: "pipe", stderr: "inherit" });
  let text = "";
  for await (const chunk of proc.stdout) {
    text += new TextDecoder().decode(chunk);
    const m = text.match(/listening (\d+)/);
    if (m) return { proc, port: Number(m[1]), url: `https://127.0.0.1:${m[1]}` };
  }
  throw new Error(`reference server did not start: ${text}`);
}
