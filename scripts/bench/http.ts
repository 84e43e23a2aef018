/**
 * HTTP benchmark: the compiled binary's GET /v1/system/info (every edge middleware on, the
 * access log written to a file) against a bare Bun.serve answering the same JSON, in the same
 * run, with wrk on loopback, over TLS and over plain HTTP. Rounds alternate between the two
 * servers and the medians are reported, with each server's CPU time per request (read from
 * /proc), which is steadier than requests/s on a small machine. Also: start-up of the
 * compiled binary to its first answered request.
 *
 * Usage: bun scripts/bench/http.ts [--duration 10] [--connections 32] [--rounds 3] [--starts 20]
 */
import { $ } from "bun";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    starts: { type: "string", default: "20" },
  },
});
const ROOT = new URL("../..", import.meta.url).pathname;
const BINARY = join(ROOT, "dist/citadel");
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Server {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
}

interface Sample {
  rps: number;
  p50: string;
  p99: string;
  cpuUsPerRequest: number;
}

await ensureWrk();
if (!(await Bun.file(BINARY).exists())) await $`bun ${join(ROOT, "scripts/build.ts")}`;
const data = mkdtempSync(join(tmpdir(), "citadel-bench-"));
try {
  await $`${BINARY} init --data ${data}`.quiet();
  const tlsFiles = [join(data, "tls/cert.pem"), join(data, "tls/key.pem")];
  const results: Array<{ scheme: string; citadel: Sample[]; bare: Sample[]; bareWithHeaders: Sample[] }> = [];

  for (const scheme of ["https", "http"]) {
    const citadel = await startCitadel(data, scheme === "https");
    const bare = await startBare(scheme === "https" ? tlsFiles : []);
    const bareWithHeaders = await startBare(["--headers", ...(scheme === "https" ? tlsFiles : [])]);
    const result = { scheme, citadel: [] as Sample[], bare: [] as Sample[], bareWithHeaders: [] as Sample[] };
    try {
      for (let round = 0; round < Number(values.rounds); round++) {
        result.citadel.push(await wrk(citadel, `${scheme}://127.0.0.1:${citadel.port}/v1/system/info`, `citadel ${scheme} round ${round + 1}`));
        result.bare.push(await wrk(bare, `${scheme}://127.0.0.1:${bare.port}/`, `bare ${scheme} round ${round + 1}`));
        result.bareWithHeaders.push(await wrk(bareWithHeaders, `${scheme}://127.0.0.1:${bareWithHeaders.port}/`, `bare+headers ${scheme} round ${round + 1}`));
      }
    } finally {
      for (const s of [citadel, bare, bareWithHeaders]) s.proc.kill("SIGTERM");
      await Promise.all([citadel.proc.exited, bare.proc.exited, bareWithHeaders.proc.exited]);
    }
    results.push(result);
  }
  const startup = await measureStartup(data, Number(values.starts));

  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, loopback, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}, median of ${values.rounds} alternating rounds\n`);
  console.log("| server | requests/s | p50 | p99 | server CPU per request |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of results) {
    for (const [name, samples] of [
      [`citadel GET /v1/system/info (${r.scheme})`, r.citadel],
      [`bare Bun.serve (${r.scheme})`, r.bare],
      [`bare Bun.serve + Citadel's response headers (${r.scheme})`, r.bareWithHeaders],
    ] as const) {
      const m = medianSample(samples);
      console.log(`| ${name} | ${Math.round(m.rps).toLocaleString("en")} | ${m.p50} | ${m.p99} | ${m.cpuUsPerRequest.toFixed(1)} µs |`);
    }
  }
  console.log("");
  for (const r of results) {
    const c = medianSample(r.citadel);
    const b = medianSample(r.bare);
    const h = medianSample(r.bareWithHeaders);
    console.log(
      `${r.scheme}: citadel reaches ${((100 * c.rps) / b.rps).toFixed(1)}% of bare Bun's requests/s (target ≥ 80%), ` +
        `${((100 * c.rps) / h.rps).toFixed(1)}% of bare Bun sending the same headers; CPU per request ${(c.cpuUsPerRequest / b.cpuUsPerRequest).toFixed(2)}× bare`,
    );
  }
  console.log(`start-up to first answered request (compiled binary, ${startup.length} starts): median ${median(startup).toFixed(1)} ms, max ${Math.max(...startup).toFixed(1)} ms (target ≤ 100 ms)`);
} finally {
  rmSync(data, { recursive: true, force: true });
}

async function wrk(server: Server, url: string, label: string): Promise<Sample> {
  await $`wrk -t1 -c${values.connections} -d2s ${url}`.quiet(); // warm-up: JIT, TLS sessions
  const cpuBefore = cpuSeconds(server.proc.pid);
  const out = await $`wrk -t1 -c${values.connections} -d${values.duration}s --latency ${url}`.text();
  const cpu = cpuSeconds(server.proc.pid) - cpuBefore;
  const requests = Number(out.match(/(\d+) requests in/)?.[1]);
  const bad = out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1];
  if (bad) throw new Error(`${label}: ${bad} failed responses`);
  const sample = {
    rps: Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1]),
    p50: out.match(/^\s+50%\s+(\S+)/m)?.[1] ?? "?",
    p99: out.match(/^\s+99%\s+(\S+)/m)?.[1] ?? "?",
    cpuUsPerRequest: (cpu * 1e6) / requests,
  };
  console.log(`${label}: ${Math.round(sample.rps)} req/s, p99 ${sample.p99}, ${sample.cpuUsPerRequest.toFixed(1)} µs CPU/request`);
  return sample;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function startCitadel(data: string, tls: boolean): Promise<Server> {
  const log = openSync(join(data, `access-${tls ? "https" : "http"}.log`), "w");
  const proc = Bun.spawn([BINARY, "serve", "--data", data], {
    env: { ...process.env, CITADEL_HTTP_PORT: "0", CITADEL_HTTP_TLS_ENABLED: String(tls) },
    stdout: log,
    stderr: "pipe",
  });
  return { proc, port: await portFrom(proc.stderr, /serving https?:\/\/127\.0\.0\.1:(\d+)/) };
}

async function startBare(tlsFiles: string[]): Promise<Server> {
  const proc = Bun.spawn(["bun", join(ROOT, "scripts/bench/bare-server.ts"), "0", ...tlsFiles], { stdout: "pipe", stderr: "inherit" });
  return { proc, port: await portFrom(proc.stdout, /listening (\d+)/) };
}

async function portFrom(stream: ReadableStream<Uint8Array>, pattern: RegExp): Promise<number> {
  let text = "";
  for await (const chunk of stream) {
    text += new TextDecoder().decode(chunk);
    const m = text.match(pattern);
    if (m) return Number(m[1]);
  }
  throw new Error(`server exited before listening: ${text}`);
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function medianSample(samples: Sample[]): Sample {
  return [...samples].sort((a, b) => a.rps - b.rps)[Math.floor(samples.length / 2)]!;
}

async function ensureWrk() {
  if (Bun.which("wrk")) return;
  if (process.getuid?.() !== 0) throw new Error("wrk is missing: apt-get install wrk (as root)");
  console.log("installing wrk with apt-get");
  await $`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk`.quiet();
}
