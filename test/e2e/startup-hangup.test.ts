/**
 * A SIGHUP while the compiled binary starts (systemd's `systemctl reload`, a certbot deploy hook
 * right after a restart: Type=exec counts the service started at exec) is said and ignored:
 * the process goes on to serve. Its default would end the process (exit 129), which systemd
 * does not restart (found in review: caught only once `serve` ran, after every module loaded).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, binaryTestScope } from "../helpers/binary.ts";

const { dir } = binaryTestScope();

/** SIGHUP's bit in /proc/PID/status's SigCgt (caught signals, hexadecimal; signal n is bit n-1). */
const SIGHUP_BIT = 1n;

/** What `file` holds so far ("" before it is made). */
function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** The process's caught signals and umask, as /proc/PID/status shows them; null once it is gone. */
function status(pid: number): { caught: bigint; umask: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  return { caught: BigInt(`0x${text.match(/^SigCgt:\s*([0-9a-f]+)$/m)![1]}`), umask: text.match(/^Umask:\s*(\d+)$/m)![1]! };
}

test("a SIGHUP from the first module on is ignored, before main() runs: the service goes on to serve, and stops cleanly (found in review)", async () => {
  const data = dir("citadel-e2e-hangup-");
  const out = join(dir("citadel-e2e-hangup-log-"), "stdout.jsonl");
  const logged = () => readOrEmpty(out);
  // main() sets the umask to 077 first thing: still 022 is "before main()".
  const umask = process.umask(0o022);
  let proc;
  try {
    proc = Bun.spawn([BINARY, "serve", "--data", data], {
      env: { PATH: process.env.PATH ?? "", HOME: data, CITADEL_HTTP_PORT: "0", CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" },
      stdout: Bun.file(out),
      stderr: "pipe",
      stdin: "ignore",
    });
  } finally {
    process.umask(umask);
  }
  try {
    // Sent as soon as the process catches SIGHUP at all (no sleep: the modules load meanwhile).
    let seen = status(proc.pid);
    while (seen !== null && (seen.caught & SIGHUP_BIT) === 0n) seen = status(proc.pid);
    expect(seen?.umask).toBe("0022");
    proc.kill("SIGHUP");

    while (!logged().includes('"msg":"listening"') && proc.exitCode === null) await Bun.sleep(5);
    expect(proc.exitCode).toBeNull(); // serving, not ended by the signal
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    // Said once: by the start-up handler, or by serve's when the signal is handled after it took over.
    const said = `${logged()}${await new Response(proc.stderr).text()}`.match(/SIGHUP while starting: ignored/g);
    expect(said).toEqual(["SIGHUP while starting: ignored"]);
  } finally {
    proc.kill("SIGKILL");
  }
}, 30_000);
