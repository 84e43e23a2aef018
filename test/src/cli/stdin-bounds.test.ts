/**
 * Standard input read by the CLI is bounded: a stream without end (`yes |`, `cat /dev/zero |`)
 * is refused once past what could be meant, not read into memory until it runs out (found in
 * review: `yes | citadel dns zone import example.com -` reached 5 GB in 5 s). Files: input-files.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const FIXTURE = join(import.meta.dir, "../../fixtures/read-stdin.ts");

/** What the fixture's `reader` made of `bytes` bytes of `source` (a command writing to standard output) on its standard input. */
async function readFrom(reader: string, source: string, bytes: number): Promise<{ length?: number; error?: string; usage?: boolean }> {
  const proc = Bun.spawn(["sh", "-c", `${source} | head -c ${bytes} | "$0" "$1" "$2"`, process.execPath, FIXTURE, reader], { stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return JSON.parse(out);
}

const MiB = 1024 * 1024;

describe("bounded standard input", () => {
  test("a file read from standard input (dns zone import, intel policy set, mesh acl --set, dns tsig --secret-file): up to 64 MiB, the most a server takes", async () => {
    expect(await readFrom("file", "yes", 64 * MiB)).toEqual({ length: 64 * MiB });
    expect(await readFrom("file", "yes", 64 * MiB + 1)).toEqual({
      error: "standard input: larger than 64 MiB, the most a Citadel server takes in one request (http.body_limit_bytes at its most): nothing was read further or sent",
      usage: true,
    });
  }, 30_000);

  test("--passphrase-file -: up to 1 MiB", async () => {
    expect(await readFrom("passphrase", "yes", MiB)).toEqual({ length: MiB - 1 }); // its final newline dropped
    expect(await readFrom("passphrase", "yes", MiB + 1)).toEqual({ error: "--passphrase-file -: larger than 1 MiB, more than any passphrase (is it the right file?): nothing was read further", usage: true });
  });

  test("an answer or a key share read as a line: up to 65536 characters, refused past that without waiting for a newline", async () => {
    const tooLong = { error: "a line of standard input is longer than 65536 characters, more than any answer: nothing was read further", usage: true };
    for (const reader of ["answer", "share"]) {
      expect(await readFrom(reader, "tr '\\0' x < /dev/zero", 65_536)).toEqual({ length: 65_536 });
      expect(await readFrom(reader, "cat /dev/zero", 65_537)).toEqual(tooLong);
      expect(await readFrom(reader, "cat /dev/zero", 10 * MiB)).toEqual(tooLong);
    }
  }, 30_000);
});
