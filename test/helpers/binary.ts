/**
 * Drives the compiled binary (dist/citadel) for end-to-end tests: starts it on a temporary
 * data directory, waits for its "listening" log line, and stops it. Builds it when missing.
 */
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { atRunEnd } from "./run-end.ts";

export const ROOT = new URL("../..", import.meta.url).pathname;

/** The CLI's own config (its stored login) goes here, never into the real home directory. */
const CONFIG_HOME = mkdtempSync(join(tmpdir(), "citadel-e2e-config-"));
atRunEnd(() => rmSync(CONFIG_HOME, { recursive: true, force: true }));
// No DNS listener unless a test asks for one (CITADEL_DNS_UDP/TCP): runs must not compete for port 5353.
const baseEnv = () => ({ PATH: process.env.PATH ?? "", HOME: CONFIG_HOME, XDG_CONFIG_HOME: CONFIG_HOME, CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" });
export const BINARY = join(ROOT, "dist/citadel");

/** The newest modification time among the sources the binary is built from. */
function newestSource(): number {
  let newest = 0;
  for (const dir of ["src", "plugins"]) {
    for (const file of new Bun.Glob("**/*.ts").scanSync({ cwd: join(ROOT, dir), absolute: true })) newest = Math.max(newest, statSync(file).mtimeMs);
  }
  return newest;
}

/** dist/citadel, built when missing or older than the sources (a stale binary would test old code). */
export async function ensureBinary(): Promise<string> {
  if (!existsSync(BINARY) || statSync(BINARY).mtimeMs < newestSource()) {
    const build = Bun.spawn(["bun", "scripts/build.ts"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if ((await build.exited) !== 0) throw new Error("bun run build failed");
  }
  return BINARY;
}

export function tempDir(prefix = "citadel-e2e-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * For a test file of the binary: the binary built before its tests, and what they start and make
 * cleaned up after them — each server in `running` killed, each directory `dir` made (and
 * whatever else is put in `removed`) removed.
 */
export function binaryTestScope(): { running: RunningCitadel[]; removed: Array<{ remove(): void }>; dir(prefix?: string): string } {
  const running: RunningCitadel[] = [];
  const dirs: Array<{ remove(): void }> = [];
  beforeAll(ensureBinary, 120_000);
  afterAll(() => {
    for (const r of running) r.proc.kill("SIGKILL");
    for (const d of dirs) d.remove();
  });
  return {
    running,
    removed: dirs,
    dir(prefix) {
      const d = tempDir(prefix);
      dirs.push(d);
      return d.path;
    },
  };
}

/** A loopback TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the binary to completion (for commands that exit). `killAfterMs`: for one expected to
 * exit that might not (`serve` refusing to start): killed then, its code then the signal's.
 */
export async function runCitadel(args: string[], env: Record<string, string> = {}, cwd?: string, killAfterMs?: number): Promise<RunResult> {
  const proc = Bun.spawn([BINARY, ...args], { env: { ...baseEnv(), ...env }, cwd, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = killAfterMs === undefined ? null : setTimeout(() => proc.kill("SIGKILL"), killAfterMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (timer) clearTimeout(timer);
  return { code, stdout, stderr };
}

export interface RunningCitadel {
  proc: Subprocess;
  url: string;
  fingerprint: string | null;
  /** The public key pin (sha256//...) clients pin it by. */
  pin: string | null;
  /** The log lines written so far (parsed JSON), read from the file standard output goes to. */
  logs(): Array<Record<string, unknown>>;
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code and how long it took. */
  stop(): Promise<{ code: number; ms: number }>;
}

/**
 * Starts `citadel serve`. Its standard output and error go to files, not pipes: a pipe the
 * test runner is slow to drain made the process's writes (and so the tests) stall now and then.
 * It runs in `cwd` (the test runner's directory unless given): without --data, its ./.citadel.
 */
export async function startCitadel(args: string[], env: Record<string, string> = {}, timeoutMs = 10_000, cwd?: string): Promise<RunningCitadel> {
  const logDir = mkdtempSync(join(tmpdir(), "citadel-e2e-log-"));
  const outFile = join(logDir, "stdout.jsonl");
  const errFile = join(logDir, "stderr.txt");
  const proc = Bun.spawn([BINARY, "serve", ...args], {
    env: { ...baseEnv(), ...env },
    cwd,
    stdout: Bun.file(outFile),
    stderr: Bun.file(errFile),
    stdin: "ignore",
  });
  void proc.exited.then(() => setTimeout(() => rmSync(logDir, { recursive: true, force: true }), 60_000).unref());
  // A test that fails or times out before it stops its server must not leave it running.
  atRunEnd(() => {
    proc.kill("SIGKILL");
    rmSync(logDir, { recursive: true, force: true });
  });
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return "";
    }
  };
  const logs = () => {
    const text = read(outFile);
    return text
      .slice(0, text.lastIndexOf("\n") + 1)
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          return { unparsed: line };
        }
      });
  };
  const deadline = Date.now() + timeoutMs;
  let listening: Record<string, unknown> | undefined;
  while (!(listening = logs().find((l) => l.msg === "listening"))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`citadel did not start listening (exit code ${proc.exitCode}): ${read(errFile)}`);
    }
    await Bun.sleep(5);
  }
  return {
    proc,
    url: listening.url as string,
    fingerprint: (listening.tls_fingerprint_sha256 as string | null) ?? null,
    pin: (listening.tls_public_key_pin as string | null) ?? null,
    logs,
    stderr: () => read(errFile),
    async stop() {
      const started = performance.now();
      proc.kill("SIGTERM");
      const code = await proc.exited;
      return { code, ms: performance.now() - started };
    },
  };
}

/** The first owner's one-time password, as the first start (or init) prints it. */
export function oneTimePassword(output: string): string {
  const m = output.match(/One-time password for \S+: (\S+)/);
  if (!m) throw new Error(`no one-time password in: ${output}`);
  return m[1]!;
}

/** Logs in over HTTPS, trusting only the instance's certificate; resolves with a session token. */
export async function login(url: string, certificate: string, email: string, password: string): Promise<string> {
  const res = await fetch(`${url}/v1/iam/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }), tls: { ca: certificate } });
  const body = (await res.json()) as { token?: string };
  if (!body.token) throw new Error(`login failed: ${res.status} ${JSON.stringify(body)}`);
  return body.token;
}

/** A JSON call to a running Citadel as `token`, trusting its certificate. */
export async function callApi(url: string, certificate: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { ca: certificate },
  });
  return { status: res.status, body: await res.json() };
}

export const OWNER_PASSPHRASE = "owner-passphrase-2026";

/** What a fresh install's owner does first: log in with the one-time password and change it. */
export async function firstLogin(url: string, certificate: string, oneTime: string, email = "admin@localhost"): Promise<string> {
  const token = await login(url, certificate, email, oneTime);
  const res = await fetch(`${url}/v1/iam/me/password`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ current_password: oneTime, new_password: OWNER_PASSPHRASE }),
    tls: { ca: certificate },
  });
  if (res.status !== 200) throw new Error(`password change failed: ${res.status} ${await res.text()}`);
  return token;
}

/**
 * Runs `citadel <args>` at a terminal (a pseudo-terminal made by util-linux `script`), typing
 * each answer once its question is on the screen, then Enter (\r: the prompts read in raw mode).
 * The screen is what the command wrote there, standard output and error together.
 */
export async function atTerminal(args: string[], env: Record<string, string>, answers: Array<{ question: string; typed: string }>, cwd?: string): Promise<{ code: number; screen: string }> {
  const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
  const proc = Bun.spawn(["script", "-qfec", [BINARY, ...args].map(quote).join(" "), "/dev/null"], { env, cwd, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let screen = "";
  for (const { question, typed } of answers) {
    while (!screen.includes(question)) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the command ended without asking ${JSON.stringify(question)}: ${screen}`);
      screen += decoder.decode(chunk.value, { stream: true });
    }
    await Bun.sleep(200); // the question is out; the terminal goes raw right after it
    proc.stdin.write(`${typed}\r`);
    await proc.stdin.flush();
  }
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) screen += decoder.decode(chunk.value, { stream: true });
  proc.stdin.end();
  return { code: await proc.exited, screen: screen.replaceAll("\r", "") };
}

/**
 * Runs the binary's CLI as a user of the instance at `data` would: `citadel --data DIR <args>`,
 * the token in CITADEL_TOKEN, a private HOME (no stored login), standard input from `stdin`.
 */
export function cliRunner(instance: { data: string; port: () => number; token: () => string; home: string }) {
  return async (args: string[], stdin?: string): Promise<RunResult> => {
    const env = { PATH: process.env.PATH ?? "", HOME: instance.home, XDG_CONFIG_HOME: instance.home, CITADEL_HTTP_PORT: String(instance.port()), CITADEL_TOKEN: instance.token() };
    const proc = Bun.spawn([BINARY, "--data", instance.data, ...args], { env, cwd: instance.home, stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  };
}
