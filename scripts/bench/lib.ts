/**
 * What the benchmarks share: the compiled binary on a fresh data directory (the owner's
 * one-time password changed, a PAT made), the bare Bun.serve reference, wrk with the
 * server's CPU time per request read from /proc, medians.
 */
import { $ } from "bun";
import { mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BINARY = process.env.BENCH_BINARY ?? join(ROOT, "dist/citadel");
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Rate limits out of the way: a benchmark from one address is not an attack. */
export const UNLIMITED = {
  CITADEL_RATE_LIMIT_PER_ADDRESS_PER_SECOND: "1000000",
  CITADEL_RATE_LIMIT_PER_ADDRESS_BURST: "1000000",
  CITADEL_RATE_LIMIT_PER_ORGANIZATION_PER_SECOND: "1000000",
  CITADEL_RATE_LIMIT_PER_ORGANIZATION_BURST: "1000000",
  CITADEL_RATE_LIMIT_AUTH_PER_SECOND: "1000000",
  CITADEL_RATE_LIMIT_AUTH_BURST: "1000000",
};

export interface Server {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  url: string;
}

export interface Sample {
  rps: number;
  p50: string;
  p99: string;
  cpuUsPerRequest: number;
}

export async function ensureTools(): Promise<void> {
  if (!(await Bun.file(BINARY).exists())) await $`bun ${join(ROOT, "scripts/build.ts")}`;
  if (Bun.which("wrk")) return;
  if (process.getuid?.() !== 0) throw new Error("wrk is missing: apt-get install wrk (as root)");
  console.log("installing wrk with apt-get");
  await $`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk`.quiet();
}

export function freshDataDir(): string {
  return mkdtempSync(join(tmpdir(), "citadel-bench-"));
}

/** Starts the binary (BENCH_BINARY's unless given); resolves once it listens. Its access log goes to a file in the data dir. */
export async function startCitadel(data: string, tls: boolean, env: Record<string, string> = {}, binary = BINARY): Promise<Server & { stderr: () => string }> {
  const log = openSync(join(data, `access-${Date.now()}.log`), "w");
  const errFile = join(data, `stderr-${Date.now()}.log`);
  const proc = Bun.spawn([binary, "serve", "--data", data], {
    env: { ...process.env, ...UNLIMITED, CITADEL_HTTP_PORT: "0", CITADEL_HTTP_TLS_ENABLED: String(tls), ...env },
    stdout: log,
    stderr: Bun.file(errFile),
  });
  const read = () => {
    try {
      return readFileSync(errFile, "utf8");
    } catch {
      return "";
    }
  };
  for (let i = 0; i < 1000; i++) {
    const m = read().match(/serving (https?:\/\/127\.0\.0\.1:(\d+))/);
    if (m) return { proc, port: Number(m[2]), url: m[1]!, stderr: read };
    await Bun.sleep(10);
  }
  throw new Error(`citadel did not start: ${read()}`);
}

export async function startBare(args: string[] = [], env: Record<string, string> = {}): Promise<Server> {
  const proc = Bun.spawn(["bun", join(ROOT, "scripts/bench/bare-server.ts"), "0", ...args], { stdout: "pipe", stderr: "inherit", env: { ...process.env, ...env } });
  let text = "";
  for await (const chunk of proc.stdout) {
    text += new TextDecoder().decode(chunk);
    const m = text.match(/listening (\d+)/);
    if (m) return { proc, port: Number(m[1]), url: `${args.some((a) => a.endsWith(".pem")) ? "https" : "http"}://127.0.0.1:${m[1]}` };
  }
  throw new Error(`bare server did not start: ${text}`);
}

/** An HTTP call to the instance (its self-signed certificate accepted: this is loopback). */
export async function call(url: string, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { rejectUnauthorized: false },
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** Logs in as the first owner, changes the one-time password, makes a PAT with `scopes`. */
export async function ownerWithPat(citadel: Server & { stderr: () => string }, scopes: string[]) {
  const oneTime = citadel.stderr().match(/One-time password for \S+: (\S+)/)?.[1];
  if (!oneTime) throw new Error("no one-time password printed");
  const password = "bench-owner-passphrase";
  const session = (await call(citadel.url, "POST", "/v1/iam/login", { email: "admin@localhost", password: oneTime })).body.token;
  await call(citadel.url, "POST", "/v1/iam/me/password", { current_password: oneTime, new_password: password }, session);
  const pat = (await call(citadel.url, "POST", "/v1/iam/me/tokens", { name: "bench", scopes }, session)).body.token as string;
  return { password, session, pat };
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** `warmUp` seconds of load first (JIT, TLS sessions), not measured; 0 for none. */
export async function wrk(server: Server, url: string, label: string, { duration, connections, headers = [], warmUp = 2 }: { duration: number; connections: number; headers?: string[]; warmUp?: number }): Promise<Sample> {
  const headerArgs = headers.flatMap((h) => ["-H", h]);
  if (warmUp > 0) await $`wrk -t1 -c${connections} -d${warmUp}s ${headerArgs} ${url}`.quiet();
  const cpuBefore = cpuSeconds(server.proc.pid);
  const out = await $`wrk -t1 -c${connections} -d${duration}s --latency ${headerArgs} ${url}`.text();
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

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export function medianSample(samples: Sample[]): Sample {
  return [...samples].sort((a, b) => a.rps - b.rps)[Math.floor(samples.length / 2)]!;
}

export function sampleRow(name: string, samples: Sample[]): string {
  const m = medianSample(samples);
  return `| ${name} | ${Math.round(m.rps).toLocaleString("en")} | ${m.p50} | ${m.p99} | ${m.cpuUsPerRequest.toFixed(1)} µs |`;
}

export async function stopAll(...servers: Server[]): Promise<void> {
  for (const s of servers) s.proc.kill("SIGTERM");
  await Promise.all(servers.map((s) => s.proc.exited));
}
