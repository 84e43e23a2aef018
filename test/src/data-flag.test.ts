/**
 * An empty --data is refused naming the flag, as an empty CITADEL_DATA names the variable
 * (found in review: "data_dir: must not be empty (in defaults)").
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../src/main.ts";

const home = mkdtempSync(join(tmpdir(), "citadel-data-flag-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

/** main() in-process: its exit code and what it wrote to standard error. The umask it sets is put back, for the test files after this one. */
async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  const written: string[] = [];
  const write = process.stderr.write;
  const umask = process.umask(0o077);
  process.stderr.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv, { HOME: home, XDG_CONFIG_HOME: home, ...env });
    return { code, stderr: written.join("") };
  } finally {
    process.stderr.write = write;
    process.umask(umask);
  }
}

test("an empty --data: exit 2, naming --data, for a command on this machine, a client command and init alike", async () => {
  for (const command of [["doctor"], ["whoami"], ["init"], ["audit", "verify"]]) {
    expect(await run(["--data", "", ...command])).toEqual({ code: 2, stderr: "citadel: data_dir: must not be empty (in --data)\n" });
  }
  expect(await run(["--data=", "doctor"])).toEqual({ code: 2, stderr: "citadel: data_dir: must not be empty (in --data)\n" });
});

test("an empty CITADEL_DATA names the variable, as it did", async () => {
  expect(await run(["doctor"], { CITADEL_DATA: "" })).toEqual({ code: 2, stderr: "citadel: data_dir: must not be empty (in environment variable CITADEL_DATA)\n" });
});
