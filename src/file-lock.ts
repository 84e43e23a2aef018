/**
 * A lock between processes around a short read-modify-write of a file (the CLI's pin file):
 * `withFileLock(path, fn)` runs `fn` holding flock(2) on `<path>.lock`.
 *
 * The kernel holds the lock for the open file and drops it when the file is closed or the
 * process ends, however it ends: there is no stale lock to judge, no clock or pid to trust,
 * and no window in which two processes hold it (a lock made of directories and holder files
 * had all three problems). The lock file stays between runs; removing it would let two runs
 * lock two different files.
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, openSync } from "node:fs";

const LOCK_EX = 2;
const LOCK_NB = 4;
const WAIT_STEP_MS = 10;

export class FileLockTimeout extends Error {
  override readonly name = "FileLockTimeout";
}

export function withFileLock<T>(path: string, fn: () => T, { waitMs = 10_000 }: { waitMs?: number } = {}): T {
  const flock = libcFlock();
  const fd = openSync(`${path}.lock`, "a", 0o600);
  try {
    const started = performance.now();
    // Without a C library to ask (not glibc), the pins are updated without the lock: two runs
    // at the same moment may then lose one's update, nothing worse.
    while (flock !== null && flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      if (performance.now() - started > waitMs) throw new FileLockTimeout(`${path}.lock has been held for more than ${Math.round(waitMs / 1000)} s by another process: try again`);
      Bun.sleepSync(WAIT_STEP_MS);
    }
    return fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}

let loaded: ((fd: number, operation: number) => number) | null | undefined;

function libcFlock(): ((fd: number, operation: number) => number) | null {
  if (loaded === undefined) {
    try {
      const libc = dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
      loaded = (fd, operation) => libc.symbols.flock(fd, operation);
    } catch {
      loaded = null;
    }
  }
  return loaded;
}
