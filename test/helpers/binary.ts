/**
 * Drives the compiled binary (dist/citadel) for end-to-end tests: starts it on a temporary
 * data directory, waits for its "listening" log line, and stops it. Builds it when missing.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BINARY = join(ROOT, "dist/citadel");

export async function ensureBinary(): Promise<string> {
  if (!existsSync(BINARY)) {
    const build = Bun.spawn(["bun", "scripts/build.ts"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if ((await build.exited) !== 0) throw new Error("bun run build failed");
  }
  return BINARY;
}

export function tempDir(prefix = "citadel-e2e-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
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

/** Runs the binary to completion (for commands that exit). */
export async function runCitadel(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<RunResult> {
  const proc = Bun.spawn([BINARY, ...args], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env }, cwd, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

export interface RunningCitadel {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  url: string;
  fingerprint: string | null;
  /** Log lines seen so far (parsed JSON). */
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code and how long it took. */
  stop(): Promise<{ code: number; ms: number }>;
}

export async function startCitadel(args: string[], env: Record<string, string> = {}, timeoutMs = 10_000): Promise<RunningCitadel> {
  const proc = Bun.spawn([BINARY, "serve", ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderrText = "";
  void (async () => {
    for await (const chunk of proc.stderr) stderrText += new TextDecoder().decode(chunk);
  })();
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    void (async () => {
      let buffer = "";
      for await (const chunk of proc.stdout) {
        buffer += new TextDecoder().decode(chunk);
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>;
            logs.push(parsed);
            if (parsed.msg === "listening") resolve(parsed);
          } catch {
            logs.push({ unparsed: line });
          }
        }
      }
      reject(new Error(`citadel exited before listening (code ${await proc.exited}): ${stderrText}`));
    })();
  });
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`citadel did not listen within ${timeoutMs} ms: ${stderrText}`)), timeoutMs));
  let line: Record<string, unknown>;
  try {
    line = await Promise.race([listening, timer]);
  } catch (error) {
    proc.kill("SIGKILL");
    throw error;
  }
  return {
    proc,
    url: line.url as string,
    fingerprint: (line.tls_fingerprint_sha256 as string | null) ?? null,
    logs,
    stderr: () => stderrText,
    async stop() {
      const started = performance.now();
      proc.kill("SIGTERM");
      const code = await proc.exited;
      return { code, ms: performance.now() - started };
    },
  };
}
