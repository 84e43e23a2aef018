/**
 * `citadel audit export | head`: when the reader closes the pipe, the export stops and the
 * command exits (141, as a shell shows a producer killed by SIGPIPE) instead of waiting for ever
 * for a "drain" that never comes, with the request to the server left open (found in review).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken } from "../../../src/auth/tokens.ts";

const MAIN = join(import.meta.dir, "../../../src/main.ts");

test("an export whose reader goes away stops, and the request is ended", async () => {
  let cancelled = false;
  const line = new TextEncoder().encode(`${JSON.stringify({ seq: 1, action: "sys.unseal", reason: "x".repeat(400) })}\n`);
  // An export that never ends: 64 KiB at a time, for as long as it is read.
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () =>
      new Response(
        new ReadableStream({
          pull: (controller) => controller.enqueue(Buffer.concat(Array.from({ length: 160 }, () => line))),
          cancel: () => void (cancelled = true),
        }),
        { headers: { "content-type": "application/x-ndjson" } },
      ),
  });
  const home = mkdtempSync(join(tmpdir(), "citadel-export-pipe-"));
  try {
    const env = { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home, CITADEL_SERVER: `http://127.0.0.1:${server.port}`, CITADEL_TOKEN: generateToken("pat").token };
    // bash for PIPESTATUS; `timeout` ends a command that would hang (exit 124).
    const script = `timeout 30 "$0" "$1" audit export | head -c 100 > /dev/null; echo "\${PIPESTATUS[0]}"`;
    const proc = Bun.spawn(["bash", "-c", script, process.execPath, MAIN], { env, stdout: "pipe", stderr: "pipe" });
    const [status, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect([status.trim(), stderr]).toEqual(["141", ""]);
    for (let i = 0; i < 100 && !cancelled; i++) await Bun.sleep(20);
    expect(cancelled).toBe(true);
  } finally {
    server.stop(true);
    rmSync(home, { recursive: true, force: true });
  }
}, 40_000);
