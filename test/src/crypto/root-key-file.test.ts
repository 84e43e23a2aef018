/**
 * Reading the root key file: owner-only, a regular file, and what is read is what was checked.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateRootKey, readRootKeyFile, writeRootKeyFile } from "../../../src/crypto/root-key.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-root-key-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("readRootKeyFile", () => {
  test("reads an owner-only key file, also through a link (a key file may be one)", () => {
    const key = generateRootKey();
    const path = join(dir, "root.key");
    writeRootKeyFile(path, key);
    expect(readRootKeyFile(path).equals(key)).toBe(true);
    symlinkSync(path, join(dir, "linked.key"));
    expect(readRootKeyFile(join(dir, "linked.key")).equals(key)).toBe(true);
    chmodSync(path, 0o640);
    expect(() => readRootKeyFile(path)).toThrow(`root key file ${path} is readable by group or others (mode 640); run: chmod 600 ${path}`);
  });

  test("a FIFO in its place is refused at once, not waited on (found in review: root reading another user's directory hung)", () => {
    const fifo = join(dir, "fifo.key");
    expect(Bun.spawnSync(["mkfifo", "-m", "600", fifo]).exitCode).toBe(0);
    expect(() => readRootKeyFile(fifo)).toThrow(`root key file ${fifo} is not a regular file`);
    expect(() => readRootKeyFile(join(dir, "missing.key"))).toThrow(`root key file ${join(dir, "missing.key")}:`);
  });
});
