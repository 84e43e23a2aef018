/**
 * File helpers for what Citadel writes: written whole or not at all (temporary file, fsync,
 * rename, fsync of the directory), owner-only, and errors described in plain words.
 */
import { accessSync, type Stats, closeSync, constants, fchmodSync, fstatSync, fsyncSync, ftruncateSync, linkSync, lstatSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * Replaces `path` with `data` atomically: a crash leaves the old file or the new one, never half.
 * With `replace: false`, a file already at `path` is left alone and the write fails with EEXIST.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600, { replace = true }: { replace?: boolean } = {}): void {
  // A fresh, unguessable name, created exclusively: a link or file someone put in the
  // directory under the name we would use is never written through (O_EXCL refuses links too).
  const temporary = `${path}.tmp-${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex")}`;
  try {
    writeExclusive(temporary, data, mode);
    if (replace) renameSync(temporary, path);
    else {
      try {
        linkSync(temporary, path); // EEXIST when a file (or a link) is there
      } catch (error) {
        // A file system without hard links (vfat, some network mounts): an exclusive create,
        // which a crash can leave half written — still never over someone else's file.
        if (!["EPERM", "ENOTSUP", "EOPNOTSUPP"].includes((error as NodeJS.ErrnoException).code ?? "")) throw error;
        writeExclusive(path, data, mode);
      }
      rmSync(temporary);
    }
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Creates `path` (refused when it exists, links included), writes `data`, syncs it. */
function writeExclusive(path: string, data: string | Uint8Array, mode: number): void {
  const fd = openSync(path, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes what a user asked for into a file of their choosing (an export, a checkpoint): owner-only
 * even when the file existed with a wider mode, and written in place, so that a pipe or a
 * device (`--out /dev/stdout`) still works.
 */
export function writeOwnerOnlyFile(path: string, data: string | Uint8Array): void {
  const fd = openOwnerOnly(path);
  try {
    writeAll(fd, typeof data === "string" ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
}

/**
 * writeOwnerOnlyFile for data that comes in pieces (an export streamed from the server), each
 * written as it comes, none held longer. The file is owner-only before the first piece lands.
 * When the pieces fail, a regular file is emptied and removed: it would hold a part that could
 * pass for the whole.
 */
export async function writeOwnerOnlyFileFrom(path: string, pieces: AsyncIterable<Uint8Array>): Promise<void> {
  const fd = openOwnerOnly(path);
  const regular = fstatSync(fd).isFile();
  try {
    for await (const piece of pieces) writeAll(fd, piece);
  } catch (error) {
    if (regular) {
      ftruncateSync(fd, 0); // where it is, should `path` be a link to it
      try {
        if (lstatSync(path, { throwIfNoEntry: false })?.isFile()) rmSync(path);
      } catch {
        // A directory this user may not write (a file made ahead there): it stays, emptied; the
        // pieces' failure is what the caller must hear of.
      }
    }
    throw error;
  } finally {
    closeSync(fd);
  }
}

/** Opens `path` for writing from its start, owner-only even when it existed with a wider mode. */
function openOwnerOnly(path: string): number {
  const fd = openSync(path, "w", 0o600);
  try {
    if (fstatSync(fd).isFile()) fchmodSync(fd, 0o600); // before the first byte lands
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return fd;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
}

const DESCRIPTIONS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "a path component is not a directory",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
};

/** "no such file" rather than "ENOENT: no such file or directory, open '...'". */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return (code && DESCRIPTIONS[code]) ?? code ?? String(error);
}

/**
 * Why a file cannot be written at `path` — a directory there, its directory missing, not a
 * directory, or closed to this user — or null when it can. Asked before a server is asked to
 * make what is to be written there (a backup, an export): after, it would be made for nothing.
 * `inPlace`: the writer opens the file where it is (a device such as /dev/stdout, a file made
 * ahead in a directory not this user's), so a file there need only be writable itself; the
 * others write a file beside it and rename it, which the directory must allow. `access` is the
 * system's check; a test as root, whom no mode bits stop, gives its own.
 */
export function fileWriteProblem(
  path: string,
  {
    inPlace = false,
    access = (at: string, mode: number) => accessSync(at, mode),
    uid = process.getuid?.(),
  }: { inPlace?: boolean; access?: (at: string, mode: number) => void; uid?: number } = {},
): string | null {
  // resolve() would make "" the working directory and drop a trailing "/": neither names a file.
  if (path === "" || /\/$|(^|\/)\.{1,2}$/.test(path)) return "is not a file's name";
  if (isDirectory(path)) return "is a directory: give the file's name in it";
  const existing = statOrNull(path);
  if (inPlace && existing) {
    // The writer makes a regular file owner-only (fchmod), which only its owner (or root) may:
    // another's would be emptied, then refused (found in review).
    if (existing.isFile() && uid !== undefined && uid !== 0 && existing.uid !== uid) return `is another user's file (uid ${existing.uid}): give a new file's name, or one of yours`;
    try {
      access(path, constants.W_OK);
      return null;
    } catch (error) {
      return `cannot write ${path}: ${describeFsError(error)}`;
    }
  }
  const dir = dirname(resolve(path));
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
    access(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return `the directory ${dir} does not exist`;
    return `cannot write in ${dir}: ${describeFsError(error)}`;
  }
  return null;
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // not there, or not ours to look at: what writing there meets is said by the access check
  }
}
