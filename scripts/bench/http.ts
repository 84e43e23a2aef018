/**
 * HTTP benchmark: the compiled binary against a bare Bun.serve answering the same JSON, in
 * the same run, with wrk on loopback, over TLS and over plain HTTP:
 *
 * - citadel GET /healthz: the edge and every middleware (request id, client address,
 *   security headers, response schema, access log written to a file), no authentication;
 * - citadel GET /v1/system/info with a PAT: the same plus token authentication;
 * - bare Bun.serve, and bare Bun.serve sending Citadel's response headers (to tell Bun's
 *   cost of writing headers apart from Citadel's own work).
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

await ensureTools();
const data = freshDataDir();
try {
  const results: Array<{ scheme: string; health: Sample[]; info: Sample[]; bare: Sample[]; bareHeaders: Sample[] }> = [];
  let pat = "";
  for (const scheme of ["https", "http"]) {
    const citadel = await startCitadel(data, scheme === "https");
    if (!pat) pat = (await ownerWithPat(citadel, ["read"])).pat;
    const tlsFiles = scheme === "https" ? [join(data, "tls/cert.pem"), join(data, "tls/key.pem")] : [];
    const bare = await startBare(tlsFiles);
    const bareHeaders = await startBare(["--headers", ...tlsFiles]);
    const r = { scheme, health: [] as Sample[], info: [] as Sample[], bare: [] as Sample[], bareHeaders: [] as Sample[] };
    try {
      for (let round = 1; round <= Number(values.rounds); round++) {
        r.health.push(await wrk(citadel, `${citadel.url}/healthz`, `citadel /healthz ${scheme} #${round}`, load));
        r.info.push(await wrk(citadel, `${citadel.url}/v1/system/info`, `citadel /v1/system/info + PAT ${scheme} #${round}`, { ...load, headers: [`Authorization: Bearer ${pat}`] }));
        r.bare.push(await wrk(bare, `${bare.url}/`, `bare ${scheme} #${round}`, load));
        r.bareHeaders.push(await wrk(bareHeaders, `${bareHeaders.url}/`, `bare+headers ${scheme} #${round}`, load));
      }
    } finally {
      await stopAll(citadel, bare, bareHeaders);
    }
    results.push(r);
  }
  const startup = await measureStartup(data, Number(values.starts));

  console.log(`\nwrk -t1 -c${load.connections} -d${load.duration}s, loopback, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}, median of ${values.rounds} alternating rounds\n`);
  console.log("| server | requests/s | p50 | p99 | server CPU per request |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of results) {
    console.log(sampleRow(`citadel GET /healthz (${r.scheme})`, r.health));
    console.log(sampleRow(`citadel GET /v1/system/info with a PAT (${r.scheme})`, r.info));
    console.log(sampleRow(`bare Bun.serve (${r.scheme})`, r.bare));
    console.log(sampleRow(`bare Bun.serve + Citadel's headers (${r.scheme})`, r.bareHeaders));
  }
  console.log("");
  for (const r of results) {
    const pct = (s: Sample[], ref: Sample[]) => ((100 * medianSample(s).rps) / medianSample(ref).rps).toFixed(1);
    console.log(`${r.scheme}: /healthz ${pct(r.health, r.bare)}% of bare Bun (target ≥ 80%), ${pct(r.health, r.bareHeaders)}% of bare Bun with the same headers; /v1/system/info with a PAT ${pct(r.info, r.bare)}% (issue 4 target ≥ 50%)`);
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
