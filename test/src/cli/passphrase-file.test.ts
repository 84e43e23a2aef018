/** --passphrase-file: one rule for every command that takes it (found in an operator's walkthrough: backup refused a 0644 file, share open took it). */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backupCommands } from "../../../plugins/backup/commands.ts";
import { UsageError } from "../../../src/cli/command-line.ts";
import { PassphraseFileError, readPassphraseFile } from "../../../src/cli/passphrase-file.ts";
import { runCommand } from "../../helpers/command.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-passphrase-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function passphraseFile(name: string, text: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

test("a file only its owner may read gives its passphrase, spaces kept, one trailing newline dropped", async () => {
  expect(await readPassphraseFile(passphraseFile("ok.txt", " correct horse \n", 0o600))).toBe(" correct horse ");
  expect(await readPassphraseFile(passphraseFile("crlf.txt", "battery staple\r\n", 0o400))).toBe("battery staple");
});

test("a file its group or others may read or write is refused, naming the file and the chmod to run", async () => {
  for (const mode of [0o644, 0o640, 0o604, 0o620]) {
    const path = passphraseFile(`open-${mode.toString(8)}.txt`, "correct horse\n", mode);
    const error = await readPassphraseFile(path).catch((e) => e);
    expect(error).toBeInstanceOf(PassphraseFileError);
    expect(error.message).toBe(`--passphrase-file ${path}: its group or others may read or change it (mode ${mode.toString(8)}), and it holds a passphrase; run: chmod 600 ${path}`);
  }
});

test("a missing or empty file is named, not a bare ENOENT or an empty passphrase", async () => {
  const missing = join(dir, "missing.txt");
  expect((await readPassphraseFile(missing).catch((e) => e)).message).toStartWith(`--passphrase-file ${missing}: `);
  expect((await readPassphraseFile(missing).catch((e) => e)).message).not.toEndWith("ENOENT");
  const empty = passphraseFile("empty.txt", "\n", 0o600);
  expect((await readPassphraseFile(empty).catch((e) => e)).message).toBe(`--passphrase-file ${empty}: the passphrase is empty`);
});

test("citadel backup --passphrase-file follows the rule: a 0644 file is refused with the chmod to run, before anything is asked", async () => {
  const path = passphraseFile("backup.txt", "correct horse battery\n", 0o644);
  const run = await runCommand(backupCommands, "backup", { options: { "passphrase-file": path } });
  expect(run.code).toBe(2); // an input the command does not take: a usage error, not a backup that FAILED (found in review)
  expect(run.error?.message).toBe(`--passphrase-file ${path}: its group or others may read or change it (mode 644), and it holds a passphrase; run: chmod 600 ${path}`);
  expect(run.requests).toEqual([]);
});

test("a file larger than 1 MiB is refused, not read on: a FIFO without end grew without bound (found in review); one of 5 KiB, as an earlier version took, is read (found in review: 4 KiB locked its key pair out)", async () => {
  expect(await readPassphraseFile(passphraseFile("long.txt", `${"p".repeat(5550)}\n`, 0o600))).toBe("p".repeat(5550));
  expect(await readPassphraseFile(passphraseFile("longest.txt", `${"p".repeat(1024 * 1024 - 1)}\n`, 0o600))).toBe("p".repeat(1024 * 1024 - 1));
  const tooLong = passphraseFile("too-long.txt", "p".repeat(1024 * 1024 + 1), 0o600);
  const error = await readPassphraseFile(tooLong).catch((e) => e);
  expect(error).toBeInstanceOf(UsageError);
  expect(error.message).toBe(`--passphrase-file ${tooLong}: larger than 1 MiB, more than any passphrase (is it the right file?): nothing was read further`);
});
