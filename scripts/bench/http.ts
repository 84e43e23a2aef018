/**
 * HTTP benchmark: the compiled binary against a bare Bun.serve answering the same JSON, in
 * the same run, with wrk on loopback, over TLS and over plain HTTP:
 *
 * - citadel GET /healthz: the edge and every middleware (request id, client address,
 *   security headers, response schema, access log written to a file), no authentication;
 * - citadel GET /v1/system/info with a PAT: the same plus token authentication;
 * - bare Bun.serve (the issues' reference), bare Bun.serve sending Citadel's response headers,
 *   and two floors (bare-server.ts): the least work issue 2 requires of every request, and that
 *   plus a token check that sees revocations. The floors say how much of a target is
 *   reachable at all, and how far Citadel is from what is reachable.
 *
 * Rounds alternate between servers; medians are reported, with each server's CPU time per
 * request (from /proc). Also: start-up of the compiled binary to its first answer.
 *
 * Usage: bun scripts/bench/http.ts [--duration 10] [--connections 32] [--rounds 3] [--starts 20]
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BINARY, ensureTools, freshDataDir, median, medianSample, ownerWithPat, sampleRow, startBare, startCitadel, stopAll, wrk, type Sample } from "./lib.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    starts: { type: "string", default: "20" },
  },
});
const load = { duration: Number(values.duration), connections: Number(values.connections) };

/** The rows, by name; the references are bare-server.ts's modes, in this order. */
const ROWS = {
  health: "citadel GET /healthz",
  info: "citadel GET /v1/system/info with a PAT",
  bare: "bare Bun.serve",
  headers: "bare Bun.serve + Citadel's headers",
  floor: "bare floor: headers, URL, request id, client address",
  floorAuth: "bare floor + token check (SHA-256, lookup in memory)",
};
const REFERENCES = ["--plain", "--headers", "--floor", "--floor-auth"];
const REFERENCE_ROWS = [ROWS.bare, ROWS.headers, ROWS.floor, ROWS.floorAuth];

await ensureTools();
const data = freshDataDir();
try {
  const results: Array<{ scheme: string; samples: Map<string, Sample[]> }> = [];
  let pat = "";
  for (const scheme of ["https", "http"]) {
    const citadel = await startCitadel(data, scheme === "https");
    if (!pat) pat = (await ownerWithPat(citadel, ["read"])).pat;
    const tlsFiles = scheme === "https" ? [join(data, "tls/cert.pem"), join(data, "tls/key.pem")] : [];
    const authorization = [`Authorization: Bearer ${pat}`];
    const references = await Promise.all(REFERENCES.map((mode) => startBare([mode, ...tlsFiles], { BENCH_TOKEN: pat })));
    const targets = [
      { name: ROWS.health, server: citadel, url: `${citadel.url}/healthz`, headers: [] as string[] },
      { name: ROWS.info, server: citadel, url: `${citadel.url}/v1/system/info`, headers: authorization },
      ...references.map((server, i) => ({ name: REFERENCE_ROWS[i]!, server, url: `${server.url}/`, headers: authorization })),
    ];
    const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
    try {
      for (let round = 1; round <= Number(values.rounds); round++) {
        for (const t of targets) samples.get(t.name)!.push(await wrk(t.server, t.url, `${t.name} (${scheme}) #${round}`, { ...load, headers: t.headers }));
      }
    } finally {
      await stopAll(citadel, ...references);
    }
    results.push({ scheme, samples });
  }
  const startup = await measureStartup(data, Number(values.starts));

  console.log(`\nwrk -t1 -c${load.connections} -d${load.duration}s, loopback, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}, median of ${values.rounds} alternating rounds\n`);
  console.log("| server | requests/s | p50 | p99 | server CPU per request |");
  console.log("|---|---:|---:|---:|---:|");
  for (const { scheme, samples } of results) for (const [name, s] of samples) console.log(sampleRow(`${name} (${scheme})`, s));
  console.log("");
  for (const { scheme, samples } of results) {
    const rps = (name: string) => medianSample(samples.get(name)!).rps;
    const pct = (name: string, of: string) => `${((100 * rps(name)) / rps(of)).toFixed(1)}%`;
    console.log(
      `${scheme}: /healthz ${pct(ROWS.health, ROWS.bare)} of bare Bun (target ≥ 80%; the floor of what every request must do reaches ${pct(ROWS.floor, ROWS.bare)}, and /healthz is ${pct(ROWS.health, ROWS.floor)} of it); ` +
        `/v1/system/info with a PAT ${pct(ROWS.info, ROWS.bare)} (issue 4 target ≥ 50%; the floor with a token check reaches ${pct(ROWS.floorAuth, ROWS.bare)}, and the PAT read is ${pct(ROWS.info, ROWS.floorAuth)} of it)`,
    );
  }
  console.log(`start-up to first answered request (compiled binary, ${startup.length} starts): median ${median(startup).toFixed(1)} ms, max ${Math.max(...startup).toFixed(1)} ms (target ≤ 100 ms)`);
} finally {
  rmSync(data, { recursive: true, force: true });
}

async function measureStartup(data: string, starts: number): Promise<number[]> {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const times: number[] = [];
  for (let i = 0; i < starts; i++) {
    const started = performance.now();
    const proc = Bun.spawn([BINARY, "serve", "--data", data], { env: { ...process.env, CITADEL_HTTP_PORT: String(port) }, stdout: "ignore", stderr: "ignore" });
    for (;;) {
      try {
        if ((await fetch(`https://127.0.0.1:${port}/healthz`, { tls: { rejectUnauthorized: false } })).ok) break;
      } catch {
        await Bun.sleep(1);
      }
    }
    times.push(performance.now() - started);
    proc.kill("SIGTERM");
    await proc.exited;
  }
  return times;
}
