/**
 * A look at a database file from a command (doctor, audit verify, restore), which must leave
 * the data directory as it found it.
 *
 * A plain read-only open of a WAL database creates the -wal and -shm files when they are
 * missing (Citadel stopped), with the database file's mode, and a read-only connection never
 * removes them again. So `citadel doctor` run on a stopped instance whose database an
 * operator had made group-readable left two group-readable files behind it, and a look that
 * should change nothing changed the directory.
 *
 * When there is neither a -wal nor a -journal file, no process has the database open for
 * writing and no committed transaction waits outside the main file: it is the whole database.
 * It is then opened `immutable`, which takes no lock and creates nothing. When one exists
 * (Citadel is running, or was killed) the database is read the usual way, so every committed
 * write is seen. The files are looked for beside the real file, not beside a symbolic link
 * to it: SQLite puts them there.
 *
 * An immutable read is only right while nobody writes. A Citadel started during a long look
 * (the doctor's, a large audit log's) could change the file under it, so `readDatabase`
 * reads again, the usual way, when a -wal or -journal appeared meanwhile.
 */
import { constants, Database } from "bun:sqlite";
import { existsSync, realpathSync } from "node:fs";

export function openReadOnly(path: string): Database {
  return open(path).db;
}

/** Runs `read` on the database at `path`; again on a usual connection if a writer appeared while it ran immutable. */
export async function readDatabase<T>(path: string, read: (db: Database) => T | Promise<T>): Promise<T> {
  const first = open(path);
  let result: { value: T } | { error: unknown };
  try {
    result = { value: await read(first.db) };
  } catch (error) {
    result = { error };
  } finally {
    first.db.close();
  }
  if (first.immutable && inUse(first.real)) {
    const again = new Database(first.real, { readonly: true });
    try {
      return await read(again);
    } finally {
      again.close();
    }
  }
  if ("error" in result) throw result.error;
  return result.value;
}

function open(path: string): { db: Database; real: string; immutable: boolean } {
  const real = realpathSync(path); // throws for a missing file: never a new database
  if (inUse(real)) return { db: new Database(real, { readonly: true }), real, immutable: false };
  return { db: new Database(`${fileUri(real)}?immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI), real, immutable: true };
}

const inUse = (real: string) => existsSync(`${real}-wal`) || existsSync(`${real}-journal`);

/** An SQLite URI for an absolute path, with the three characters a URI path gives meaning to escaped. */
function fileUri(absolute: string): string {
  return `file://${absolute.replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}`;
}
