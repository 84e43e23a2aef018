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
 * When there is no -wal file, no process has the database open in WAL mode and no committed
 * transaction waits in a WAL: the main file is the whole database. It is then opened
 * `immutable`, which takes no lock and creates nothing. When a -wal file exists (Citadel is
 * running, or was killed) the database is read through it as usual, so every committed write
 * is seen. A Citadel that starts in the instant between the check and the reads could be
 * read inconsistently; these are one-off looks by an operator, who runs them again.
 */
import { constants, Database } from "bun:sqlite";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

export function openReadOnly(path: string): Database {
  if (existsSync(`${path}-wal`)) return new Database(path, { readonly: true });
  return new Database(`${fileUri(path)}?immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
}

/** An SQLite URI for a path: absolute, with the three characters a URI path gives meaning to escaped. */
function fileUri(path: string): string {
  return `file://${resolve(path).replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}`;
}
