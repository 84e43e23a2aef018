/**
 * What a plugin needs of `citadel restore` at the first start after it: the restored database
 * went back in time, and the database it replaced (kept aside, named in the restore marker)
 * knows what happened since the backup. Plugins that must not go back with it (erasures,
 * revocations, DNS serials) read that previous database here, before the backup plugin — the
 * marker's writer, later in the plugin list — audits the restore and removes the marker.
 */
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { dataDirectoryHolder } from "./file-lock.ts";
import { openReadOnly } from "./store/read-only.ts";

/** Left in the data directory by `citadel restore`; the next start audits the restore and removes it. */
export const RESTORE_MARKER = "restored-from-backup.json";

/**
 * "none": no restore since the last start. "restored" with `previous`: the path of the
 * database that last ran, or null when there was none (a new machine) or its name does not
 * read (a damaged marker); and `id`, the restore's (see markerId).
 */
export type RestoreState = { kind: "none" } | { kind: "restored"; id: string; previous: string | null; auditHeadSeq: number | null };

export function restoreState(dataDir: string): RestoreState {
  const marker = join(dataDir, RESTORE_MARKER);
  if (!existsSync(marker)) return { kind: "none" };
  let text: Buffer = Buffer.alloc(0);
  let mtimeMs = 0;
  let fields: { previous?: unknown; id?: unknown; audit_head_seq?: unknown; restores?: unknown } = {};
  try {
    text = readFileSync(marker);
    mtimeMs = statSync(marker).mtimeMs;
    fields = JSON.parse(text.toString("utf8")) ?? {};
  } catch {
    // a damaged or unreadable marker still means a restore happened (of what, unknown)
  }
  const name = fields.previous;
  // Only a name in the data directory: the marker is not trusted to point elsewhere.
  const previous = typeof name === "string" && name !== "" && !name.includes("/") && existsSync(join(dataDir, name)) ? join(dataDir, name) : null;
  return { kind: "restored", id: markerId(fields.id, text, mtimeMs), previous, auditHeadSeq: lastAuditHead(fields) };
}

/** The audit head of the backup now in place: the marker's own, or its last restore's when several were made before a start. */
function lastAuditHead(fields: { audit_head_seq?: unknown; restores?: unknown }): number | null {
  const restores = Array.isArray(fields.restores) ? (fields.restores as Array<{ audit_head_seq?: unknown }>) : [];
  const seq = restores.length > 0 ? restores.at(-1)!.audit_head_seq : fields.audit_head_seq;
  return typeof seq === "number" && Number.isSafeInteger(seq) && seq > 0 ? seq : null;
}

/**
 * Whether the previous database grew out of the backup now in place: it holds the backup's
 * audit head, the same event (by its chained hash). Only then does a row the backup has and the
 * previous database lacks mean it was removed after the backup; a previous database of another
 * history (an older backup restored and run before this one, a fresh install the backup was
 * restored onto) lacks rows for other reasons, and only what it records explicitly is carried over.
 */
export function descendsFromBackup(restored: Database, previous: Database, auditHeadSeq: number | null): boolean {
  if (auditHeadSeq === null) return false;
  const hashIn = (db: Database) => db.query<{ hash: Uint8Array }, [number]>("SELECT hash FROM audit_events WHERE seq = ?").get(auditHeadSeq)?.hash ?? null;
  const a = hashIn(restored);
  const b = hashIn(previous);
  return a !== null && b !== null && Buffer.from(a).equals(Buffer.from(b));
}

/**
 * Which restore the marker stands for. The marker stays until the backup plugin, late in the
 * start, removes it: a start that fails before then meets it again, and each carry-over step
 * must know it ran already (claimRestoreStep). `citadel restore` writes a new random id each
 * time; a marker without one (an older version's, or a damaged one) is named by its content and
 * time, which stay the same from one start to the next.
 */
function markerId(written: unknown, text: Buffer, mtimeMs: number): string {
  if (typeof written === "string" && written !== "") return written;
  return `derived-${createHash("sha256").update(text).update(`\0${mtimeMs}`).digest("hex")}`;
}

/**
 * Records, in the transaction of the step itself, that `step` (a plugin's carry-over) ran for
 * this restore; false when it had already: the step then does nothing. Run twice, a step would
 * move DNS serials by 2^30 again, end every login again, audit the restore again.
 */
export function claimRestoreStep(tx: Database, restoreId: string, step: string, now: number): boolean {
  return tx.query("INSERT OR IGNORE INTO restore_steps (restore_id, step, done_at) VALUES (?, ?, ?)").run(restoreId, step, now).changes > 0;
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

const DATABASE = "citadel.db";

/** The decrypted database `citadel restore` writes beside citadel.db before its swap, and SQLite's companions of it. */
const RESTORE_COPY = /^(citadel\.db\.restoring-\d+)(-journal|-wal|-shm)?$/;

/**
 * Decrypted copies of a backup that a restore killed before its swap left in the data
 * directory (the restore removes its own on any failure it lives through, and the next restore
 * every one): a full database in clear — emails, password hashes, personal data — that no
 * erasure reaches. Not the one the marker names (`swapping_in`): that is the checked database a
 * start puts in place to finish the swap; nor any while a restore holds the data directory's
 * lock (its copy is in the making). A marker that does not read may name one; yet with
 * citadel.db in place a start goes on with citadel.db (it cannot tell what to swap) and the
 * backup plugin removes the marker, so no start would ever use a copy: each is abandoned. Only
 * without citadel.db (the start refuses, and the operator finishes the restore) are they kept.
 */
export function abandonedRestoreCopies(dataDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return []; // not there, or not this user's to look in
  }
  const copies = names.filter((name) => RESTORE_COPY.test(name));
  if (copies.length === 0 || dataDirectoryHolder(dataDir) === "restore") return [];
  const named = swappingIn(dataDir);
  if (named === "unknown") return existsSync(join(dataDir, DATABASE)) ? copies.sort() : [];
  return copies.filter((name) => RESTORE_COPY.exec(name)![1] !== named).sort();
}

/** The copy a restore's marker names as the database it is swapping in; null for none, "unknown" when the marker does not read. */
function swappingIn(dataDir: string): string | null | "unknown" {
  const marker = join(dataDir, RESTORE_MARKER);
  if (!existsSync(marker)) return null;
  try {
    const name = (JSON.parse(readFileSync(marker, "utf8")) as { swapping_in?: unknown } | null)?.swapping_in;
    return typeof name === "string" ? name : null;
  } catch {
    return "unknown";
  }
}
