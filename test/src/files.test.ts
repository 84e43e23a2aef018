import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeOwnerOnlyFile } from "../../src/files.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

describe("writeOwnerOnlyFile", () => {
  test("a new file is 0600; an existing world-readable one becomes 0600 before it holds the data (found in review)", () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-files-"));
    dirs.push(dir);
    const fresh = join(dir, "new.ndjson");
    writeOwnerOnlyFile(fresh, "one\n");
    expect([statSync(fresh).mode & 0o777, readFileSync(fresh, "utf8")]).toEqual([0o600, "one\n"]);
    const existing = join(dir, "existing.ndjson");
    writeFileSync(existing, "old content that is longer\n");
    chmodSync(existing, 0o644);
    writeOwnerOnlyFile(existing, "two\n");
    expect([statSync(existing).mode & 0o777, readFileSync(existing, "utf8")]).toEqual([0o600, "two\n"]);
  });

  test("a device is written in place, not replaced", () => {
    expect(() => writeOwnerOnlyFile("/dev/null", "discarded")).not.toThrow();
    expect(statSync("/dev/null").isCharacterDevice()).toBe(true);
  });
});
