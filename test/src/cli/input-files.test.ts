/** Bounded reading of what a command stores (the pipes without end: test/e2e/secrets-cli.test.ts). */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../../src/cli/command-line.ts";
import { boundedInput } from "../../../src/cli/input-files.ts";

describe("boundedInput (found in review: a value or an import file was read whole, however large)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-input-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const bound = { bytes: 100_000, tooLarge: "larger than 100000 bytes" };

  test("a file up to the bound is read whole, across blocks; one byte more is refused as a usage error", async () => {
    const file = join(dir, "big");
    writeFileSync(file, "x".repeat(100_000));
    expect((await boundedInput(file, file, bound)).length).toBe(100_000);
    writeFileSync(file, "x".repeat(100_001));
    await expect(boundedInput(file, file, bound)).rejects.toEqual(new UsageError("larger than 100000 bytes"));
  });

  test("a device without end stops at the bound", async () => {
    await expect(boundedInput("/dev/zero", "/dev/zero", bound)).rejects.toEqual(new UsageError("larger than 100000 bytes"));
  });

  test("a file that cannot be read is a usage error naming it and why, not ENOENT or EISDIR", async () => {
    await expect(boundedInput(join(dir, "nope.env"), "nope.env", bound)).rejects.toEqual(new UsageError("nope.env: no such file"));
    await expect(boundedInput(dir, "the directory", bound)).rejects.toEqual(new UsageError("the directory: is a directory"));
  });
});
