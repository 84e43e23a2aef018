/**
 * Reading the root key file: owner-only, a regular file, and what is read is what was checked.
 */
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateRootKey, readRootKeyFile, RootKeyError, writeRootKeyFile } from "../../../src/crypto/root-key.ts";

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

  test("the service's own key file (ownOnly) must be its user's or root's: another user's is refused, naming file and owner (found in review)", () => {
    const key = generateRootKey();
    const path = join(dir, "others.key");
    writeRootKeyFile(path, key);
    const uid = process.getuid!();
    // Another user's file: as root (CI), the file is given to nobody; otherwise the process
    // claims another uid than the file's owner (a user cannot give a file away).
    const owner = uid === 0 ? 65534 : uid;
    const getuid = uid === 0 ? null : spyOn(process, "getuid").mockReturnValue(uid + 1);
    try {
      if (uid === 0) chownSync(path, 65534, 65534);
      const self = process.getuid!();
      expect(() => readRootKeyFile(path, { ownOnly: true })).toThrow(`root key file ${path} is owned by uid ${owner}, neither this process's user (uid ${self}) nor root: that user can read or replace it; run: chown ${self} ${path}`);
      expect(readRootKeyFile(path).equals(key)).toBe(true); // a command reading the service's file (as root) is not refused
    } finally {
      getuid?.mockRestore();
    }
    expect(statSync(path).uid).toBe(owner); // the case tested was a file of another user's indeed
  });

  test("in a directory someone else controls: a FIFO is refused at once, not waited on, and a link is not followed (found in review)", () => {
    const fifo = join(dir, "fifo.key");
    expect(Bun.spawnSync(["mkfifo", "-m", "600", fifo]).exitCode).toBe(0);
    expect(() => readRootKeyFile(fifo, { planted: true })).toThrow(`root key file ${fifo} is not a regular file`);
    const key = generateRootKey();
    writeRootKeyFile(join(dir, "elsewhere.key"), key);
    symlinkSync(join(dir, "elsewhere.key"), join(dir, "planted.key"));
    expect(() => readRootKeyFile(join(dir, "planted.key"), { planted: true })).toThrow(`root key file ${join(dir, "planted.key")} is a link: not followed in a directory another user controls`);
    expect(() => readRootKeyFile(join(dir, "missing.key"))).toThrow(`root key file ${join(dir, "missing.key")}:`);
  });

  test("a directory where the key file should be is refused as not a regular file, whatever its mode and however read (found in review: EISDIR, exit 1, naming nothing)", () => {
    for (const mode of [0o700, 0o755]) {
      const path = join(dir, `directory-${mode.toString(8)}.key`);
      mkdirSync(path, { mode });
      for (const how of [{}, { ownOnly: true }, { planted: true }]) {
        expect(() => readRootKeyFile(path, how)).toThrow(RootKeyError);
        expect(() => readRootKeyFile(path, how)).toThrow(`root key file ${path} is not a regular file`);
      }
    }
  });

  test("a path the operator names may be a pipe (--key-file <(pass show citadel))", async () => {
    const key = generateRootKey();
    const keyFile = join(dir, "for-pipe.key");
    writeRootKeyFile(keyFile, key);
    const fifo = join(dir, "pipe.key");
    expect(Bun.spawnSync(["mkfifo", "-m", "600", fifo]).exitCode).toBe(0);
    const writer = Bun.spawn(["sh", "-c", `cat '${keyFile}' > '${fifo}'`]);
    expect(readRootKeyFile(fifo).equals(key)).toBe(true);
    await writer.exited;
  });
});
