/**
 * What a plugin needs of `citadel restore` at the first start after it: the restored database
 * went back in time, and the database it replaced (kept aside, named in the restore marker)
 * knows what happened since the backup. Plugins that must not go back with it (erasures,
 * revocations, DNS serials) read that previous database here, before the backup plugin — the
 * marker's writer, later in the plugin list — audits the restore and removes the marker.
 */
import type { Database } from "bun:sqlite";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { openReadOnly } from "./store/read-only.ts";

/** Left in the data directory by `citadel restore`; the next start audits the restore and removes it. */
export const RESTORE_MARKER = "restored-from-backup.json";

/**
 * "none": no restore since the last start. "restored" with `previous`: the path of the
 * database that last ran, or null when there was none (a new machine) or its name does not
 * read (a damaged marker).
 */
export type RestoreState = { kind: "none" } | { kind: "restored"; previous: string | null };

export function restoreState(dataDir: string): RestoreState {
  const marker = join(dataDir, RESTORE_MARKER);
  if (!existsSync(marker)) return { kind: "none" };
  let name: unknown = null;
  try {
    name = (JSON.parse(readFileSync(marker, "utf8")) as { previous?: unknown }).previous;
  } catch {
    // a damaged marker still means a restore happened
  }
  // Only a name in the data directory: the marker is not trusted to point elsewhere.
  const previous = typeof name === "string" && name !== "" && !name.includes("/") && existsSync(join(dataDir, name)) ? join(dataDir, name) : null;
  return { kind: "restored", previous };
}

/**
 * Runs `read` on the previous database, opened read-only; null when there is none or it does
 * not read (it may be the damaged database the restore replaced): the caller then knows
 * nothing of what happened after the backup, and must say what it does without.
 */
export function readPrevious<T>(previous: string | null, read: (db: Database) => T): T | null {
  if (previous === null) return null;
  let db: Database | undefined;
  try {
    db = openReadOnly(previous);
    return read(db);
  } catch {
    return null;
  } finally {
    db?.close();
  }
}

/** Whether `db` has the table (a previous database from an older version may lack it). */
export function hasTable(db: Database, table: string): boolean {
  return db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== null;
}
