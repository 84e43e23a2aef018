/**
 * A passphrase, key or shares file that cannot be read is a usage error (exit 2), as any input
 * file the CLI is given (docs/cli.md): "FAILED", exit 1, is for a backup that fails its check
 * (found in review: `backup verify --passphrase-file /missing` said FAILED).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backupCommands } from "../../../plugins/backup/commands.ts";
import { hashFile, sealBackup } from "../../../plugins/backup/format.ts";
import { newPassphraseBackupKeys, newRootKeyBackupKeys } from "../../../plugins/backup/keys.ts";
import type { Manifest } from "../../../plugins/backup/manifest.ts";
import { UsageError } from "../../../src/cli/command-line.ts";
import { generateRootKey, rootKeyId, rootKeyVerifier, writeRootKeyFile } from "../../../src/crypto/root-key.ts";
import { encodeShare, splitSecret } from "../../../src/crypto/shamir.ts";
import { DATA_DIRECTORY_LOCK, lockDataDirectory } from "../../../src/file-lock.ts";
import { runCommand } from "../../helpers/command.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-backup-inputs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const missing = join(dir, "missing");

/** A backup file whose header asks for what `keys` were made from; its content is never opened here. */
async function backupUnder(name: string, keys: Parameters<typeof sealBackup>[2]): Promise<string> {
  const plain = join(dir, `${name}.plain`);
  writeFileSync(plain, Buffer.alloc(4096, 7));
  const manifest: Manifest = { created_at: new Date(0).toISOString(), reason: "on_demand", citadel: { version: "1.2.3", commit: "abc" }, instance_id: null, root_key_id: null, migrations: {}, audit_head: null, database: await hashFile(plain) };
  const file = join(dir, `${name}.backup`);
  await sealBackup(plain, file, keys, manifest, 1024);
  return file;
}

/** A usage error naming `named`, with no FAILED line: exit 2. */
function expectUsageError(run: Awaited<ReturnType<typeof runCommand>>, named: string): void {
  expect(run.error).toBeInstanceOf(UsageError);
  expect([run.code, run.error?.message]).toEqual([2, `${named}: no such file`]);
  expect(run.stderr).not.toContain("FAILED");
  expect(run.requests).toEqual([]);
}

describe("an input file that cannot be read (found in review)", () => {
  test("--passphrase-file: backup and backup verify", async () => {
    const file = await backupUnder("passphrase", await newPassphraseBackupKeys("a long enough passphrase", { memoryKiB: 8192, iterations: 1, parallelism: 1 }));
    expectUsageError(await runCommand(backupCommands, "backup", { options: { "passphrase-file": missing } }), `--passphrase-file ${missing}`);
    expectUsageError(await runCommand(backupCommands, "backup verify", { args: [file], options: { "passphrase-file": missing } }), `--passphrase-file ${missing}`);
  });

  test("--key-file and --shares-file: backup verify", async () => {
    const file = await backupUnder("root-key", newRootKeyBackupKeys(generateRootKey()));
    expectUsageError(await runCommand(backupCommands, "backup verify", { args: [file], options: { "key-file": missing } }), `--key-file: root key file ${missing}`);
    expectUsageError(await runCommand(backupCommands, "backup verify", { args: [file], options: { "shares-file": missing } }), `--shares-file ${missing}`);
  });
});

describe("a --shares-file that reads but holds no usable shares (found in review: exit 1, FAILED, where a bad --key-file is exit 2)", () => {
  const rootKey = generateRootKey();
  const idOf = (key: Buffer) => rootKeyId(rootKeyVerifier(key));
  const shares = splitSecret(rootKey, 3, 3).map((share) => encodeShare(idOf(rootKey), share));
  const otherKey = generateRootKey();
  const otherShare = encodeShare(idOf(otherKey), splitSecret(otherKey, 3, 3)[1]!);

  test("a usage error naming the file, with no FAILED line: backup verify", async () => {
    const file = await backupUnder("shares", newRootKeyBackupKeys(rootKey));
    const sharesFile = join(dir, "shares.txt");
    for (const [text, problem] of [
      ["# nothing but a comment\n", "give at least the threshold of key shares, one per line"],
      [`${shares[0]}\n`, "give at least the threshold of key shares, one per line"],
      [`${shares[0]}\nnot a share\n`, "key share 2: not a Citadel key share (expected citadel-share-<id>-<n>-<64 hex digits>-<checksum>)"],
      [`${shares[0]}\n${otherShare}\n`, `the shares belong to different keys (${idOf(rootKey)}, ${idOf(otherKey)})`],
      [`${shares[0]}\n${shares[0]}\n`, "the key shares do not combine: duplicate share"],
    ]) {
      writeFileSync(sharesFile, text!);
      const run = await runCommand(backupCommands, "backup verify", { args: [file], options: { "shares-file": sharesFile } });
      expect(run.error).toBeInstanceOf(UsageError);
      expect([run.code, run.error?.message]).toEqual([2, `--shares-file ${sharesFile}: ${problem}`]);
      expect(run.stderr).not.toContain("FAILED");
    }
  });

  test("well-formed shares that do not rebuild the key (fewer than the threshold) stay a failure: exit 1, FAILED", async () => {
    const file = await backupUnder("shares-too-few", newRootKeyBackupKeys(rootKey));
    const sharesFile = join(dir, "shares-too-few.txt");
    writeFileSync(sharesFile, `${shares[0]}\n${shares[1]}\n`);
    const run = await runCommand(backupCommands, "backup verify", { args: [file], options: { "shares-file": sharesFile } });
    expect([run.code, run.error]).toEqual([1, null]);
    expect(run.stderr).toContain(`citadel: FAILED: the shares do not rebuild root key ${idOf(rootKey)}`);
  });
});

describe("a --shares-file without end or far too large (found in review: /dev/zero grew to gigabytes)", () => {
  test("is refused once past 64 KiB, naming the file: exit 2, no FAILED", async () => {
    const file = await backupUnder("shares-bound", newRootKeyBackupKeys(generateRootKey()));
    const huge = join(dir, "shares-huge.txt");
    writeFileSync(huge, "# a comment\n".repeat(6000)); // 72,000 bytes: past the bound, though it parses
    for (const sharesFile of ["/dev/zero", huge]) {
      const run = await runCommand(backupCommands, "backup verify", { args: [file], options: { "shares-file": sharesFile } });
      expect(run.error).toBeInstanceOf(UsageError);
      expect([run.code, run.error?.message]).toEqual([2, `--shares-file ${sharesFile}: larger than 64 KiB, more than any set of key shares (is it the right file?): nothing was read further`]);
      expect(run.stderr).not.toContain("FAILED");
    }
  });
});

/** `citadel ARGS` run as the CLI is (bun src/main.ts): its exit code and standard error. */
async function citadel(args: string[]): Promise<{ code: number; stderr: string }> {
  const child = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), ...args], { stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { code, stderr };
}

describe("the backup FILE itself (found in review)", () => {
  test("one that cannot be read is a usage error, no FAILED: backup verify", async () => {
    const run = await runCommand(backupCommands, "backup verify", { args: [missing] });
    expect(run.error).toBeInstanceOf(UsageError);
    expect([run.code, run.error?.message, run.stderr]).toEqual([2, `cannot read ${missing}: no such file`, ""]);
    const folder = await runCommand(backupCommands, "backup verify", { args: [dir] });
    expect([folder.code, folder.error?.message]).toEqual([2, `${dir} is not a backup file (it is a directory or another kind of file)`]);
  });

  test("one that cannot be read is a usage error, no FAILED: restore", async () => {
    const dataDir = join(dir, "restore-missing");
    const run = await citadel(["--data", dataDir, "restore", missing]);
    expect(run.code).toBe(2);
    expect(run.stderr).toStartWith(`citadel: cannot read ${missing}: no such file\n`);
  });

  test("restoring into a data directory another Citadel serves is refused, exit 1, without FAILED: the backup is not at fault", async () => {
    const rootKey = generateRootKey();
    const file = await backupUnder("busy", newRootKeyBackupKeys(rootKey));
    const dataDir = join(dir, "busy-data");
    mkdirSync(dataDir, { mode: 0o700 });
    writeRootKeyFile(join(dataDir, "root.key"), rootKey);
    const serving = lockDataDirectory(dataDir, "serve");
    if ("refused" in serving) throw new Error("the lock was refused");
    try {
      const run = await citadel(["--data", dataDir, "restore", file, "--yes"]);
      expect(run).toEqual({ code: 1, stderr: `citadel: another Citadel is serving this data directory (pid ${process.pid}) (${dataDir}): stop it first (for example systemctl stop citadel), then restore\n` });
      expect(readdirSync(dataDir).sort()).toEqual([DATA_DIRECTORY_LOCK, "root.key"]);
    } finally {
      serving.release();
    }
  });
});
