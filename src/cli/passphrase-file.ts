/**
 * `--passphrase-file FILE`, one rule for every command that takes it: the file holds a secret,
 * so one that its group or others may read (or write) is refused, naming the file and the chmod to run
 * (as the stored login's file is). A passphrase left readable to others is as good as told to
 * them; accepting it quietly in one command and refusing it in another taught nothing.
 */
import { closeSync, fstatSync, openSync } from "node:fs";
import { describeFsError } from "../files.ts";
import { UsageError } from "./command-line.ts";
import { boundedStdin, readUpTo, type Bound } from "./input-files.ts";

/** A usage error, exit 2, as for any input file that cannot be read or is refused (docs/cli.md). */
export class PassphraseFileError extends UsageError {}

/**
 * The passphrase in `path`, or on standard input for "-": the one trailing newline an editor
 * or `echo` adds is not part of it; spaces are. An empty one is refused: nothing was meant.
 */
export async function readPassphraseFile(path: string): Promise<string> {
  const text = path === "-" ? new TextDecoder().decode(await boundedStdin(passphraseBound(path))) : readPrivateFile(path);
  const passphrase = text.replace(/\r?\n$/, "");
  if (passphrase.length === 0) throw new PassphraseFileError(`--passphrase-file ${path}: the passphrase is empty`);
  return passphrase;
}

/**
 * The most a passphrase file is read of: far more than anyone types, and more than any earlier
 * version's passphrase in use (none was bounded when set: 4 KiB locked out a key pair sealed
 * under a longer one, found in review).
 */
const MOST_PASSPHRASE_BYTES = 1024 * 1024;

/**
 * Past MOST_PASSPHRASE_BYTES a file is refused, not read on: no passphrase is that long, and a
 * stream without end (`--passphrase-file /dev/fd/0 < /dev/zero`, a FIFO) grew without bound
 * (found in review).
 */
function passphraseBound(path: string): Bound {
  return { bytes: MOST_PASSPHRASE_BYTES, tooLarge: `--passphrase-file ${path}: larger than ${MOST_PASSPHRASE_BYTES / 1024 / 1024} MiB, more than any passphrase (is it the right file?): nothing was read further` };
}

/** The file's text, when only its owner may read it. The mode is that of the file opened, not of a name that may change meanwhile. */
function readPrivateFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new PassphraseFileError(`--passphrase-file ${path}: ${describeFsError(error)}`);
  }
  try {
    // Written by others counts too: whoever may change a backup's passphrase may read that backup.
    const mode = fstatSync(fd).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new PassphraseFileError(`--passphrase-file ${path}: its group or others may read or change it (mode ${mode.toString(8).padStart(3, "0")}), and it holds a passphrase; run: chmod 600 ${path}`);
    }
    return Buffer.from(readUpTo(fd, passphraseBound(path))).toString("utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new PassphraseFileError(`--passphrase-file ${path}: ${describeFsError(error)}`);
  } finally {
    closeSync(fd);
  }
}
