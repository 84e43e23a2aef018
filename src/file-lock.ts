/**
 * Locks between processes, with flock(2): `withFileLock(path, fn)` runs `fn` holding the lock
 * on `<path>.lock`, around a short read-modify-write of a file (the CLI's pin file);
 * `lockDataDirectory` holds a data directory's lock for as long as a command writes its
 * database (`citadel serve` and `init` for their whole run, `citadel restore` while it restores).
 *
 * The kernel holds the lock for the open file and drops it when the file is closed or the
 * process ends, however it ends: there is no stale lock to judge, no clock or pid to trust,
 * and no window in which two processes hold it (a lock made of directories and holder files
 * had all three problems). The lock file stays between runs; removing it would let two runs
 * lock two different files.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "./config/error.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const WAIT_STEP_MS = 10;

export class FileLockTimeout extends Error {
  override readonly name = "FileLockTimeout";
}

/** `fn` must be synchronous: the lock is let go when it returns, so an await inside it would run unlocked. */
export function withFileLock<T>(path: string, fn: () => NotAPromise<T>, { waitMs = 10_000 }: { waitMs?: number } = {}): T {
  const libc = loadLibc();
  const fd = openSync(`${path}.lock`, "a", 0o600);
  try {
    const started = performance.now();
    // Without a C library to ask (neither glibc nor musl), the pins are updated without the lock: two runs
    // at the same moment may then lose one's update, nothing worse.
    while (libc !== null && !libc.tryLock(fd)) {
      if (performance.now() - started > waitMs) throw new FileLockTimeout(`${path}.lock has been held for more than ${waitMs} ms by another process: try again`);
      Bun.sleepSync(WAIT_STEP_MS);
    }
    const result = fn() as T;
    if (typeof (result as { then?: unknown } | null)?.then === "function") {
      throw new TypeError("withFileLock: the function returned a promise; what it awaits would run after the lock is let go");
    }
    return result;
  } finally {
    closeSync(fd); // releases the lock
  }
}

export type NotAPromise<T> = T extends PromiseLike<unknown> ? never : T;

/** In the data directory: held by whichever command writes the database. */
export const DATA_DIRECTORY_LOCK = "citadel.lock";

/** The commands that take a data directory's lock, as the one refused is told. */
export type DataDirectoryWriter = "serve" | "init" | "restore";

export interface HeldLock {
  /** Lets the lock go (the process ending does too). Safe to call twice. */
  release(): void;
}

/**
 * Takes the data directory's lock without waiting, and writes this process's id and command
 * into the lock file for the one refused; `{ refused }` says who holds it. Two `citadel serve`
 * on one directory would each seal, rotate keys, forward the audit log and send webhooks, and
 * neither would see the other's writes in its memo (a token revoked through one would still
 * work on the other). Without a C library to ask, nothing is locked (as withFileLock).
 */
export function lockDataDirectory(dataDir: string, command: DataDirectoryWriter): HeldLock | { refused: string } {
  const libc = loadLibc();
  const path = join(dataDir, DATA_DIRECTORY_LOCK);
  // Read and write, created if missing, never truncated before the lock is ours: it names the holder.
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  } catch (error) {
    // Another user's (root's, after a copy as root): a bare EACCES, exit 1, retried for ever by systemd.
    if ((error as NodeJS.ErrnoException).code !== "EACCES") throw error;
    throw new ConfigError(`${path} cannot be opened by this user (uid ${process.getuid?.()}): give it to the data directory's owner (chown ${process.getuid?.()} ${path}) or remove it`);
  }
  let locked = false;
  try {
    if (libc !== null && !tryLockPatiently(libc, fd)) return { refused: describeHolder(readFileSync(path, "utf8")) };
    locked = true;
  } finally {
    if (!locked) closeSync(fd);
  }
  nameHolder(fd, `${process.pid} ${command}\n`);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      nameHolder(fd, ""); // a holder named after it let go would mislead
      closeSync(fd); // releases the lock
    },
  };
}

/**
 * A lock that stands for something outside the file system — the host's exit routing, say —
 * taken without waiting: held (with `line` written into the file for whoever is refused, and the
 * file removed again at release), `{ heldBy }` with the holder's line when another open file
 * holds it (another process, or another holder in this one: flock locks an open file, not a
 * process), or null without a C library to ask. The holder removes the file while it still holds
 * it, so a taker that opened it just before finds, once it has the lock, that the path no longer
 * names its file, and opens again: two can never hold two different files of one path. The file
 * is opened without following a link.
 */
export function holdFileLock(path: string, line: string): HeldFileLock | { heldBy: string } | null {
  const libc = loadLibc();
  if (libc === null) return null;
  for (;;) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    let kept = false;
    try {
      if (!libc.tryLock(fd)) return { heldBy: readHolder(fd) };
      if (!namesFile(path, fd)) continue; // removed by the holder that let go meanwhile: open again
      kept = true;
    } finally {
      if (!kept) closeSync(fd);
    }
    nameHolder(fd, line);
    let released = false;
    return {
      intact: () => !released && namesFile(path, fd),
      release() {
        if (released) return;
        released = true;
        // While still held (see above), and only when the path still names this file: removed
        // or replaced behind the holder's back, the file there now may be another holder's.
        if (namesFile(path, fd)) rmSync(path, { force: true });
        closeSync(fd);
      },
    };
  }
}

export interface HeldFileLock extends HeldLock {
  /**
   * Whether the lock still stands for its path: false once the file was removed or replaced
   * (`rm -rf` of its directory, say). Then another open of the path is another file, which a
   * second holder can lock while this one still holds the old: let it go and take it again.
   */
  intact(): boolean;
}

/** The holder's line, read from the file open as `fd` (its path may be gone already). */
function readHolder(fd: number): string {
  try {
    return readFileSync(fd, "utf8");
  } catch {
    return "";
  }
}

/** Whether `path` is still the file open as `fd` (not removed, nor replaced). */
function namesFile(path: string, fd: number): boolean {
  try {
    const named = lstatSync(path);
    const open = fstatSync(fd);
    return named.ino === open.ino && named.dev === open.dev;
  } catch {
    return false;
  }
}

/**
 * The lock, tried for up to LOCK_PATIENCE_MS: a probe (dataDirectoryHolder, a client's
 * dataDirectoryLockHeld) takes it for an instant to learn whether it is held, and a start at
 * that instant must not be refused for it (found in review). A real holder holds it for longer.
 */
function tryLockPatiently(libc: NonNullable<ReturnType<typeof loadLibc>>, fd: number): boolean {
  for (let waited = 0; ; waited += 10) {
    if (libc.tryLock(fd)) return true;
    if (waited >= LOCK_PATIENCE_MS) return false;
    Bun.sleepSync(10);
  }
}

const LOCK_PATIENCE_MS = 100;

/**
 * The command that holds the data directory's lock now (its flock asked, not only the line it
 * wrote: a holder killed left its line behind), "unknown" when held without a line, null when
 * free. For a command that works beside a running server but not beside a restore (recover).
 */
export function dataDirectoryHolder(dataDir: string): DataDirectoryWriter | "unknown" | null {
  const libc = loadLibc();
  const path = join(dataDir, DATA_DIRECTORY_LOCK);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch {
    return null; // no lock file: never locked
  }
  try {
    if (libc === null || libc.tryLock(fd)) return null; // free (closing lets the probe's lock go)
    const match = /^\d+ (serve|init|restore)\n/.exec(readFileSync(path, "utf8"));
    return match ? (match[1] as DataDirectoryWriter) : "unknown";
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a running Citadel command holds the data directory's lock, asked with a lock taken
 * without waiting and let go at once: for a client command, whether the working directory's
 * `.citadel` is an instance running here — a checked-out repository or an unpacked tarball can
 * carry a lock file, never a held lock. The lock file is opened without following a link and
 * must be a regular file of this user's: a link to another instance's lock would be held by
 * that instance. Without a C library to ask, false: nothing holds a lock then (as lockDataDirectory).
 */
export function dataDirectoryLockHeld(dataDir: string): boolean {
  const libc = loadLibc();
  if (libc === null) return false;
  let fd: number;
  try {
    fd = openSync(join(dataDir, DATA_DIRECTORY_LOCK), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return false; // none (never locked), a link, or not this user's to open
  }
  try {
    const stat = fstatSync(fd);
    const uid = process.getuid?.();
    if (!stat.isFile() || (uid !== undefined && stat.uid !== uid)) return false;
    return !libc.tryLock(fd);
  } finally {
    closeSync(fd); // lets the probe's lock go, when it took it
  }
}

/**
 * Writes who holds the lock, for the one refused. Best effort: the lock is the flock, and a full
 * disk (the pid line may need a block) must be reported where the database is written, naming
 * the directory and the cause, not here as a bare ENOSPC.
 */
function nameHolder(fd: number, line: string): void {
  try {
    ftruncateSync(fd, 0);
    if (line) writeSync(fd, line, 0);
  } catch {
    // the refused are told "another Citadel command is using this data directory"
  }
}

/** "another Citadel is serving this data directory (pid 123)", from what the holder wrote. */
function describeHolder(text: string): string {
  const match = /^(\d+) (serve|init|restore)\n/.exec(text);
  // Empty while the holder has locked and not yet written its line.
  if (!match) return "another Citadel command is using this data directory";
  const [, pid, command] = match;
  if (command === "serve") return `another Citadel is serving this data directory (pid ${pid})`;
  return `citadel ${command} is running on this data directory (pid ${pid})`;
}

/** glibc, then musl (Alpine and other musl systems name their C library after the architecture). */
const LIBC_NAMES = ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`];

const EINTR = 4;
const EWOULDBLOCK = 11;

interface Libc {
  /** True when locked; false while another holds it; throws on any other failure (such as ENOLCK on some network file systems). */
  tryLock(fd: number): boolean;
}

let loaded: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (loaded === undefined) {
    loaded = null;
    for (const name of LIBC_NAMES) {
      try {
        const libc = dlopen(name, {
          flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
          __errno_location: { args: [], returns: FFIType.ptr },
        });
        loaded = {
          tryLock(fd) {
            if (libc.symbols.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
            const errno = read.i32(libc.symbols.__errno_location()!, 0);
            if (errno === EWOULDBLOCK || errno === EINTR) return false;
            throw new Error(`flock failed (errno ${errno}): the lock file's file system may not support locks`);
          },
        };
        break;
      } catch {
        // not this C library: try the next
      }
    }
  }
  return loaded;
}
