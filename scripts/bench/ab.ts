/**
 * A/B: two builds of Citadel side by side, to judge a change to a hot path on a shared machine
 * (docs/BENCHMARKS.md). Each build runs on a fresh data directory set up the same way, a bare
 * Bun.serve runs beside them as the reference, and the rounds alternate — the order of the two
 * builds flipped every round — with wrk over TLS. For each route it reports both builds' server
 * CPU per request (from /proc: steadier than requests/s when other work shares the cores) and
 * their requests/s as a share of bare Bun's in the same rounds, medians and every round.
 *
 * Routes: read (an audited secret read with a PAT), list (that environment's secret list),
 * info (GET /v1/system/info with a PAT), poll (a mesh node's config poll, answered 304), health
 * (/healthz). Every answer must be a 2xx or 304.
 *
 * With --paired the two builds are loaded at the same moment instead (a wrk each), so that work
 * of others on the host weighs on both alike: on a busy host, alternating rounds moved by ±15%
 * between neighbours, more than the changes being judged (docs/BENCHMARKS.md, stop 30). It then
 * also reports the median of the per-round ratios and in how many rounds B used less CPU.
 *
 * Build the old one first, for instance: cp dist/citadel /tmp/citadel-before; then, changed:
 *   bun run build && bun scripts/bench/ab.ts --a /tmp/citadel-before --b dist/citadel
 *
 * Usage: bun scripts/bench/ab.ts --a <binary> --b <binary> [--routes read,info,poll,health] [--rounds 6] [--duration 3] [--warm-up 10] [--paired]
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateKeyPair } from "../../plugins/mesh/keys.ts";
import { call, ensureTools, freshDataDir, median, ownerWithPat, startBare, startCitadel, stopAll, wrk, type Sample, type Server } from "./lib.ts";

const { values } = parseArgs({
  options: {
    a: { type: "string" },
    b: { type: "string" },
    routes: { type: "string", default: "read,info,poll,health" },
    rounds: { type: "string", default: "6" },
    duration: { type: "string", default: "3" },
    "warm-up": { type: "string", default: "10" },
    paired: { type: "boolean", default: false },
  },
});
if (!values.a || !values.b) throw new Error("usage: bun scripts/bench/ab.ts --a <binary> --b <binary> [--routes read,info,poll,health] [--rounds 6] [--duration 3] [--warm-up 10] [--paired]");
const ROUTES = ["read", "list", "info", "poll", "health"] as const;
type Route = (typeof ROUTES)[number];
const routes = values.routes.split(",") as Route[];
for (const r of routes) if (!ROUTES.includes(r)) throw new Error(`unknown route ${r}: ${ROUTES.join(", ")}`);
const load = { duration: Number(values.duration), connections: 32, warmUp: 0 };

interface Target {
  url: string;
  headers: string[];
}

/** The routes of one instance, set up as the benchmarks set theirs up (secrets.ts, auth.ts, mesh.ts). */
async function targets(citadel: Server & { stderr: () => string }): Promise<Record<Route, Target>> {
  const { session, pat } = await ownerWithPat(citadel, ["secrets:read", "mesh:admin", "mesh:read", "mesh:write"]);
  const reader = (await call(citadel.url, "POST", "/v1/iam/me/tokens", { name: "read", scopes: ["read"] }, session)).body.token as string;
  const org = (await call(citadel.url, "GET", "/v1/iam/orgs", undefined, session)).body.items[0].id as string;
  const workspace = (await call(citadel.url, "POST", `/v1/iam/orgs/${org}/workspaces`, { name: "bench" }, session)).body.id as string;
  const env = `/v1/secrets/workspaces/${workspace}/environments/development`;
  const set = await call(citadel.url, "PUT", `${env}/secrets/BENCH_DATABASE_URL`, { value: "postgres://bench:s3cr3t-value-0123456789abcdef@db.internal:5432/app?sslmode=verify-full" }, session);
  if (set.status !== 200) throw new Error(`set secret: ${set.status} ${JSON.stringify(set.body)}`);
  const networks = `/v1/mesh/orgs/${org}/networks`;
  await call(citadel.url, "POST", networks, { name: "bench" }, pat);
  const key = (await call(citadel.url, "POST", `${networks}/bench/keys`, { reusable: true }, pat)).body.key as string;
  let node = "";
  for (let i = 0; i < 10; i++) {
    const enrolled = await call(citadel.url, "POST", "/v1/mesh/enroll", { key, name: `n${i}`, public_key: (await generateKeyPair()).publicKey, endpoint: `198.51.100.${i + 1}:51820` });
    if (enrolled.status !== 200) throw new Error(`enroll: ${JSON.stringify(enrolled.body)}`);
    node = enrolled.body.token;
  }
  const config = await fetch(`${citadel.url}/v1/mesh/node/config`, { headers: { authorization: `Bearer ${node}` }, tls: { rejectUnauthorized: false } });
  await config.text();
  return {
    read: { url: `${citadel.url}${env}/secrets/BENCH_DATABASE_URL`, headers: [`Authorization: Bearer ${pat}`] },
    list: { url: `${citadel.url}${env}/secrets`, headers: [`Authorization: Bearer ${pat}`] },
    info: { url: `${citadel.url}/v1/system/info`, headers: [`Authorization: Bearer ${reader}`] },
    poll: { url: `${citadel.url}/v1/mesh/node/config`, headers: [`Authorization: Bearer ${node}`, `If-None-Match: ${config.headers.get("etag")}`] },
    health: { url: `${citadel.url}/healthz`, headers: [] },
  };
}

const line = (samples: Sample[], bare: Sample[]) => {
  const share = (100 * median(samples.map((s) => s.rps))) / median(bare.map((s) => s.rps));
  return `${median(samples.map((s) => s.cpuUsPerRequest)).toFixed(1)} µs [${samples.map((s) => s.cpuUsPerRequest.toFixed(1)).join(" ")}], ${share.toFixed(1)}% of bare`;
};

await ensureTools();
const dirs = [freshDataDir(), freshDataDir()];
const running: Server[] = [];
try {
  const builds = [await startCitadel(dirs[0]!, true, {}, values.a), await startCitadel(dirs[1]!, true, {}, values.b)];
  running.push(...builds);
  const bare = await startBare([join(dirs[0]!, "tls/cert.pem"), join(dirs[0]!, "tls/key.pem")]);
  running.push(bare);
  const routesOf = [await targets(builds[0]!), await targets(builds[1]!)];
  // Long enough for the JIT to settle: after the scripts' usual 2 s, its thread still took a
  // quarter of a secret read's CPU in the seconds measured (docs/BENCHMARKS.md, stop 29).
  const warmUp = { ...load, duration: Number(values["warm-up"]) };
  for (const r of routes) for (const i of [0, 1]) await wrk(builds[i]!, routesOf[i]![r].url, `warm-up ${r} ${"ab"[i]}`, { ...warmUp, headers: routesOf[i]![r].headers });
  await wrk(bare, `${bare.url}/`, "warm-up bare", warmUp);
  const samples = new Map(routes.map((r) => [r, [[], []] as Sample[][]]));
  const reference: Sample[] = [];
  for (let round = 0; round < Number(values.rounds); round++) {
    reference.push(await wrk(bare, `${bare.url}/`, `bare #${round + 1}`, load));
    for (const r of routes) {
      const measure = (i: number) => wrk(builds[i]!, routesOf[i]![r].url, `${r} ${"ab"[i]} #${round + 1}`, { ...load, headers: routesOf[i]![r].headers });
      if (values.paired) {
        const [a, b] = await Promise.all([measure(0), measure(1)]);
        samples.get(r)![0]!.push(a);
        samples.get(r)![1]!.push(b);
      } else for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) samples.get(r)![i]!.push(await measure(i));
    }
  }
  console.log(`\nA ${values.a}\nB ${values.b}\nwrk -t1 -c32 -d${load.duration}s over TLS, ${values.rounds} ${values.paired ? "paired rounds (both builds loaded at once)" : "alternating rounds"}, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}; server CPU per request (median [rounds]) and requests/s as a share of bare Bun's${values.paired ? " (paired: each build had the host shared with the other, so its share says little; read the CPU)" : ""}`);
  console.log(`bare Bun.serve: ${median(reference.map((s) => s.cpuUsPerRequest)).toFixed(1)} µs, ${Math.round(median(reference.map((s) => s.rps)))} req/s`);
  for (const r of routes) {
    const [a, b] = samples.get(r)!;
    const ratio = median(b!.map((s) => s.cpuUsPerRequest)) / median(a!.map((s) => s.cpuUsPerRequest));
    console.log(`${r.padEnd(6)} A ${line(a!, reference)} | B ${line(b!, reference)} | B/A CPU ${ratio.toFixed(3)}`);
    if (values.paired) {
      const perRound = a!.map((s, i) => b![i]!.cpuUsPerRequest / s.cpuUsPerRequest);
      console.log(`       per round B/A CPU: median ${median(perRound).toFixed(3)}, B lower in ${perRound.filter((x) => x < 1).length} of ${perRound.length}`);
    }
  }
} finally {
  await stopAll(...running);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
