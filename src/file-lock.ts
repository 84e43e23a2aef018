/**
 * A lock between processes of this machine around a short read-modify-write of a file (the
 * CLI's pin file): `withFileLock(path, fn)` runs `fn` while holding `<path>.lock`.
 *
 * The lock is a directory — `mkdir` succeeds for exactly one process — holding one file named
 * by its holder: `<pid>@<host>`. A lock is taken over only when its holder is dead: on this
 * host, its pid no longer runs (a question the kernel answers, unlike clocks, which jump); held
 * from another host (a home directory on NFS), after STALE_FOREIGN_MS; with no holder file (a
 * crash between mkdir and writing it), after STALE_EMPTY_MS. A takeover renames the lock aside
 * first (one rename wins) and checks it moved the very lock it judged dead, putting back a live
 * one it moved by mistake. A holder removes only its own lock: it unlinks its own file, and the
 * directory goes only if nothing else is in it.
 */
import { mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

const STALE_FOREIGN_MS = 60_000;
const STALE_EMPTY_MS = 5_000;
const WAIT_STEP_MS = 10;

export class FileLockTimeout extends Error {
  override readonly name = "FileLockTimeout";
}

export function withFileLock<T>(path: string, fn: () => T, { waitMs = 10_000 }: { waitMs?: number } = {}): T {
  const lock = `${path}.lock`;
  const me = `${process.pid}@${hostname()}`;
  const started = performance.now();
  while (!tryTake(lock, me)) {
    if (performance.now() - started > waitMs) throw new FileLockTimeout(`${lock} has been held for more than ${Math.round(waitMs / 1000)} s by another process: try again, or remove it if none runs`);
    Bun.sleepSync(WAIT_STEP_MS);
  }
  try {
    return fn();
  } finally {
    release(lock, me);
  }
}

/** True when this process now holds the lock. */
function tryTake(lock: string, me: string): boolean {
  try {
    mkdirSync(lock);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const holder = holderOf(lock);
    if (holder !== undefined && isDead(lock, holder)) takeOver(lock, holder);
    return false; // taken over or not, the next attempt makes it anew
  }
  writeFileSync(join(lock, me), "");
  return true;
}

/** The lock's holder file name, null when it has none yet; undefined when the lock is gone. */
function holderOf(lock: string): string | null | undefined {
  try {
    return readdirSync(lock)[0] ?? null;
  } catch {
    return undefined;
  }
}

function isDead(lock: string, holder: string | null): boolean {
  if (holder === null) return ageMs(lock) > STALE_EMPTY_MS;
  const [pid, host] = holder.split("@");
  if (host !== hostname()) return ageMs(lock) > STALE_FOREIGN_MS;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function ageMs(lock: string): number {
  try {
    return Date.now() - statSync(lock).mtimeMs;
  } catch {
    return 0;
  }
}

/** Moves the dead holder's lock aside and removes it; a lock that turns out not to be that one is put back. */
function takeOver(lock: string, deadHolder: string | null): void {
  const aside = `${lock}.taken-${crypto.randomUUID()}`;
  try {
    renameSync(lock, aside);
  } catch {
    return; // another process moved it first
  }
  if (holderOf(aside) === deadHolder) {
    rmSync(aside, { recursive: true, force: true });
    return;
  }
  try {
    renameSync(aside, lock); // a live lock, taken between the look and the rename: back it goes
  } catch {
    rmSync(aside, { recursive: true, force: true }); // a newer lock is in place: this one's holder lost it
  }
}

function release(lock: string, me: string): void {
  try {
    unlinkSync(join(lock, me));
    rmdirSync(lock); // fails when another holder's file is in it: that lock is not ours
  } catch {
    // not ours any more, or gone
  }
}
