/**
 * `citadel backup --out FILE`: a file that cannot be written is refused before the server is
 * asked (found in review: the backup was made, audited and counted against `keep`, then the
 * command failed with a raw ENOENT naming its temporary file); a write that fails after names
 * the backup that was made, and the file, in words.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backupCommands } from "../../../plugins/backup/commands.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-backup-out-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const BYTES = Buffer.from("an encrypted backup");
const NAME = "citadel-20260601T000000Z.backup";
const created = { name: NAME, bytes: BYTES.length, sha256: new Bun.CryptoHasher("sha256").update(BYTES).digest("hex"), key: { kind: "passphrase" }, manifest: {}, pruned: [] };
const server = (onCreate: () => void = () => {}) => (request: SentRequest) => {
  if (request.method === "POST") {
    onCreate();
    return created;
  }
  return BYTES.toString("base64");
};

test("an --out whose directory does not exist, or that is a directory, is refused before any backup is made", async () => {
  for (const [out, problem] of [
    [join(root, "nonexistent", "x.backup"), `the directory ${join(root, "nonexistent")} does not exist`],
    [root, "is a directory: give the file's name in it"],
  ]) {
    const run = await runCommand(backupCommands, "backup", { options: { out }, answer: server() });
    expect([run.code, run.error?.message]).toEqual([2, `--out ${out}: ${problem}; no backup was made`]);
    expect(run.requests).toEqual([]);
  }
});

test("a write that fails once the backup is made names the backup, where it is, and the file, in words (no temporary name)", async () => {
  const going = join(root, "going");
  mkdirSync(going);
  const out = join(going, "x.backup");
  // The directory goes while the server makes the backup.
  const run = await runCommand(backupCommands, "backup", { options: { out }, answer: server(() => rmSync(going, { recursive: true })) });
  expect([run.code, run.error?.message]).toEqual([1, `the backup ${NAME} was made, and is in the server's backup directory (citadel backup list), but it could not be written to ${out}: no such file`]);
});

test("a writable --out receives the backup", async () => {
  const out = join(root, "ok.backup");
  const run = await runCommand(backupCommands, "backup", { options: { out }, json: true, answer: server() });
  expect(run.code).toBe(0);
  expect(readFileSync(out)).toEqual(BYTES);
});
