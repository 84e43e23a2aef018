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
import { generateRootKey, writeRootKeyFile } from "../../../src/crypto/root-key.ts";
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
