/**
 * Whose a backup is, read as the backup plugin, the metrics and doctor read it: from a backup
 * as plugins/backup/format.ts writes it, and nothing from a file that does not read as one.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashFile, sealBackup } from "../../plugins/backup/format.ts";
import { newRootKeyBackupKeys } from "../../plugins/backup/keys.ts";
import type { Manifest } from "../../plugins/backup/manifest.ts";
import { backupMaker } from "../../src/backup-maker.ts";
import { generateRootKey } from "../../src/crypto/root-key.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-backup-maker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function backupBy(name: string, instance: string | null): Promise<string> {
  const plain = join(dir, `${name}.plain`);
  writeFileSync(plain, Buffer.alloc(4096, 7));
  const manifest: Manifest = { created_at: new Date(0).toISOString(), reason: "on_demand", citadel: { version: "1.2.3", commit: "abc" }, instance_id: instance, root_key_id: null, migrations: {}, audit_head: null, database: await hashFile(plain) };
  const file = join(dir, `${name}.backup`);
  await sealBackup(plain, file, newRootKeyBackupKeys(generateRootKey()), manifest, 1024);
  return file;
}

test("a backup names the instance that made it, or none", async () => {
  expect(backupMaker(await backupBy("ours", "0b5e7c1a-1b2c-4d5e-8f90-123456789abc"))).toBe("0b5e7c1a-1b2c-4d5e-8f90-123456789abc");
  expect(backupMaker(await backupBy("nobody", null))).toBeNull();
});

test("a file that does not read as a backup is nobody's that can be told: undefined", async () => {
  const whole = readFileSync(await backupBy("whole", "an-instance"));
  const file = (name: string, bytes: Uint8Array | string) => {
    writeFileSync(join(dir, name), bytes);
    return join(dir, name);
  };
  const newerFormat = Buffer.from(whole);
  newerFormat.writeUInt16BE(2, 8);
  for (const path of [
    file("empty", ""),
    file("not-a-backup", "not a backup's bytes, though long enough to hold a header of ninety-six bytes and more besides"),
    file("cut-in-header", whole.subarray(0, 50)),
    file("cut-in-manifest", whole.subarray(0, 120)),
    file("newer-format", newerFormat),
    join(dir, "missing"),
    dir,
  ]) {
    expect([path, backupMaker(path)]).toEqual([path, undefined]);
  }
  // Never through a link: one named like a backup could point anywhere.
  symlinkSync(join(dir, "whole.backup"), join(dir, "link.backup"));
  expect(backupMaker(join(dir, "link.backup"))).toBeUndefined();
});
