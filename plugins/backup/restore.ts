/**
 * Restoring a backup into a stopped Citadel's data directory, and checking a backup offline.
 *
 * The backup is decrypted and checked in full (every chunk, the SHA-256, SQLite's integrity
 * check) into a temporary file beside the database before anything is touched; only then is
 * the current database renamed aside (never deleted) and the restored one renamed into its
 * place, mode 0600 — after a marker naming them is written durably, so that a restore killed
 * in between is finished by the next start instead of leaving no database at all. A running
 * Citadel is detected by the data directory's lock (citadel.lock, held by `citadel serve` for
 * as long as it runs; the restore holds it too, so none starts meanwhile) and by its lock on
 * the database, so a restore never pulls the file out from under a live server.
 */
import { Database } from "bun:sqlite";
import { randomUUID } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { constants as osConstants, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ConfigError } from "../../src/config/error.ts";
import { parseWiping, verifies } from "../../src/crypto/root-key.ts";
import { dataDirectoryHolder, lockDataDirectory } from "../../src/file-lock.ts";
import { writeFileAtomic } from "../../src/files.ts";
import type { Logger } from "../../src/log.ts";
import { abandonedRestoreCopies } from "../../src/restore-marker.ts";
import { checkMigrations, MigrationError, type MigrationSet } from "../../src/store/migrate.ts";
import { openReadOnly } from "../../src/store/read-only.ts";
import { prepareDataDir } from "../../src/data-dir.ts";
import { BackupError, ConfirmationNeeded, DataDirectoryBusy } from "./errors.ts";
import { compactUtcTime, syncDirectory } from "./files.ts";
import { openBackup, type OpenedBackup } from "./format.ts";
import type { KeySupply } from "./keys.ts";
import { readRestoreMarker, RESTORE_MARKER, type RestoreMarker, type RestoreNote } from "./service.ts";

export const DATABASE_FILE = "citadel.db";
/** SQLite's companions of a database in WAL mode: they move with it. */
const COMPANIONS = ["-wal", "-shm"];
/** What a restore renames the database it replaces to (compactUtcTime). */
const PUT_ASIDE = /^citadel\.db\.before-restore-\d{8}T\d{6}Z$/;

/**
 * True when another connection has the database open (a running Citadel, or a command
 * reading it while it runs). In WAL mode every connection holds a shared lock for as long as
 * it is open; asking for the database in exclusive locking mode, without waiting, fails while
 * one does. A command's look at a stopped database (openReadOnly: immutable) takes no lock and
 * is not seen; a rename leaves that reader on the old file, which restore keeps aside whole.
 * A file SQLite cannot read as a database (damaged: the case backups are for) is not a
 * server's either: no server runs on it.
 */
export function databaseInUse(path: string): boolean {
  if (!existsSync(path)) return false;
  const db = new Database(path, { readwrite: true, create: false });
  try {
    db.run("PRAGMA busy_timeout = 0");
    db.run("PRAGMA locking_mode = EXCLUSIVE");
    db.query("SELECT count(*) FROM sqlite_schema").get();
    return false;
  } catch (error) {
    if (/locked|busy/i.test(String(error))) return true;
    if (/^SQLITE_(NOTADB|CORRUPT)/.test(String((error as { code?: unknown }).code))) return false;
    throw error;
  } finally {
    db.close();
  }
}

/** Runs SQLite's integrity check on a decrypted database; "ok" or the first problems. */
export function integrityOf(path: string): string {
  let db: Database | undefined;
  try {
    db = new Database(path, { readonly: true });
    return db
      .query<{ integrity_check: string }, []>("PRAGMA integrity_check")
      .all()
      .map((r) => r.integrity_check)
      .slice(0, 5)
      .join("; ");
  } catch (error) {
    return `it does not open as an SQLite database (${error instanceof Error ? error.message : String(error)})`;
  } finally {
    db?.close();
  }
}

/**
 * Refuses a database this Citadel would not start on: one written by a newer version (a
 * migration this one does not know), or one whose applied migration was changed since — the
 * check every start runs before it migrates, on a look that cannot write. A migration the
 * database has yet to get (an older backup) is fine: the next start applies it.
 */
export function refuseUnknownMigrations(path: string, known: readonly MigrationSet[], madeBy: OpenedBackup["manifest"]["citadel"]): void {
  const db = openReadOnly(path);
  try {
    checkMigrations(db, known);
  } catch (error) {
    const reason = error instanceof MigrationError ? error.message : String(error);
    throw new BackupError(`this Citadel would not start on the database in the backup (made by Citadel ${madeBy.version}): ${reason}`);
  } finally {
    db.close();
  }
}

/** Everything `citadel backup verify` checks; throws BackupError at the first problem. */
export async function verifyBackup(file: string, supply: KeySupply, known: readonly MigrationSet[]): Promise<OpenedBackup> {
  // A private directory: the plaintext database exists only for the integrity check. One
  // that an earlier verify left (killed half-way) is removed first: it holds a plaintext copy.
  removeStaleVerifyDirectories();
  // A handler replaces the default exit: it has to exit itself (128 + the signal, as the
  // default would), or the verify runs on without its directory and reports a good backup bad.
  // In place before the directory is made: a signal between the two left it behind.
  let dir: string | undefined;
  const removeOnSignal = (signal: NodeJS.Signals) => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    process.exit(128 + osConstants.signals[signal]);
  };
  process.once("SIGINT", removeOnSignal);
  process.once("SIGTERM", removeOnSignal);
  try {
    dir = mkdtempSync(join(tmpdir(), VERIFY_PREFIX));
    const plain = join(dir, DATABASE_FILE);
    const opened = await openBackup(file, supply, plain);
    const integrity = integrityOf(plain);
    if (integrity !== "ok") throw new BackupError(`the database in the backup fails SQLite's integrity check: ${integrity}`);
    refuseUnknownMigrations(plain, known, opened.manifest.citadel);
    return opened;
  } finally {
    process.off("SIGINT", removeOnSignal);
    process.off("SIGTERM", removeOnSignal);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

const VERIFY_PREFIX = "citadel-verify-";

/** This user's verify directories older than an hour: what a killed verify left behind. */
function removeStaleVerifyDirectories(): void {
  const uid = process.getuid?.();
  const hourAgo = Date.now() - 3_600_000;
  let names: string[] = [];
  try {
    names = readdirSync(tmpdir()).filter((name) => name.startsWith(VERIFY_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(tmpdir(), name);
    try {
      const stat = lstatSync(path);
      if (stat.isDirectory() && stat.uid === uid && stat.mtimeMs < hourAgo) rmSync(path, { recursive: true, force: true });
    } catch {
      // gone already, or not ours to look at
    }
  }
}

export interface RestoreOptions {
  file: string;
  dataDir: string;
  supply: KeySupply;
  /** The operator agreed to put an existing database aside (--yes). */
  replace: boolean;
  /** The migrations this Citadel knows (the kernel's and every plugin's): a database it would not start on is refused. */
  migrations: readonly MigrationSet[];
  /** The key file the restored instance will unseal with, when it has one (checked, not required). */
  unsealKeyFile?: string;
  now: () => number;
}

export interface RestoreResult {
  opened: OpenedBackup;
  database: string;
  /** Where the previous database went, or null when there was none. */
  previous: string | null;
  /**
   * Whether the root key the data directory will unseal with opens the restored keyring:
   * true, false, or null when it cannot be told here (no key file, Shamir, a credential).
   */
  rootKeyMatches: boolean | null;
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  prepareDataDir(options.dataDir);
  // Held to the end: a Citadel started meanwhile would create a database, or serve the one being put aside.
  const lock = lockDataDirectory(options.dataDir, "restore");
  if ("refused" in lock) throw new DataDirectoryBusy(`${lock.refused} (${options.dataDir}): stop it first (for example systemctl stop citadel), then restore`);
  try {
    return await restoreLocked(options);
  } finally {
    lock.release();
  }
}

async function restoreLocked(options: RestoreOptions): Promise<RestoreResult> {
  const { dataDir } = options;
  const database = join(dataDir, DATABASE_FILE);
  const refuseIfRunning = () => {
    if (databaseInUse(database)) throw new DataDirectoryBusy(`the database in ${dataDir} is in use: stop Citadel first (for example systemctl stop citadel), then restore`);
  };
  refuseIfRunning();
  // A restore killed while it swapped the files is finished first: this one then restores over it.
  finishInterruptedSwap(dataDir);
  const present = [DATABASE_FILE, ...COMPANIONS.map((c) => DATABASE_FILE + c)].filter((name) => existsSync(join(dataDir, name)));
  if (present.length > 0 && !options.replace) {
    throw new ConfirmationNeeded(`${dataDir} already holds a database: run again with --yes to keep it aside (renamed, not deleted) and restore over it`);
  }

  // What a killed restore left (a decrypted copy of its backup) goes first.
  for (const name of readdirSync(dataDir)) if (name.startsWith(`${DATABASE_FILE}.restoring-`)) rmSync(join(dataDir, name), { force: true });
  const incoming = join(dataDir, `${DATABASE_FILE}.restoring-${process.pid}`);
  let handedOver = false; // to the marker: from then on a start finishes the swap with it
  try {
    const opened = await openBackup(options.file, options.supply, incoming); // synced, made 0600
    const integrity = integrityOf(incoming);
    if (integrity !== "ok") throw new BackupError(`the database in the backup fails SQLite's integrity check: ${integrity}`);
    refuseUnknownMigrations(incoming, options.migrations, opened.manifest.citadel);

    refuseIfRunning(); // again: a server may have started while we decrypted
    let previous: string | null = null;
    if (present.length > 0) {
      previous = join(dataDir, `${DATABASE_FILE}.before-restore-${compactUtcTime(new Date(options.now()))}`);
      if (existsSync(previous)) throw new BackupError(`${previous} exists already: wait a second and try again`);
      checkpoint(database);
    }
    // Durable before a file moves: killed anywhere in the swap, the next start (or restore) finds
    // the marker naming the checked database to put in place, and finishes the swap.
    const note = { backup: basename(options.file), created_at: opened.manifest.created_at, audit_head_seq: opened.manifest.audit_head?.seq ?? null, previous: previous && basename(previous) };
    writeRestoreMarker(dataDir, note, basename(incoming));
    handedOver = true;
    swapIn(dataDir, incoming, previous);
    markSwapDone(dataDir);
    return { opened, database, previous, rootKeyMatches: options.unsealKeyFile ? rootKeyMatches(database, options.unsealKeyFile) : null };
  } finally {
    if (!handedOver) rmSync(incoming, { force: true });
  }
}

/**
 * Moves everything of the current database into the WAL-less main file: a crash in the swap
 * then leaves no -wal of it lying beside a missing citadel.db (which the next open would have
 * read into a new, empty database, losing it). The restore holds the database alone. One SQLite
 * cannot open as a database (damaged) is put aside as it is, companions and all.
 */
function checkpoint(database: string): void {
  let db: Database | undefined;
  try {
    db = new Database(database, { readwrite: true, create: false });
    db.run("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch {
    // damaged: swapIn moves its -wal and -shm with it
  } finally {
    db?.close(); // the last connection: SQLite removes the (now empty) -wal and the -shm
  }
}

/**
 * Puts the current database (and any -wal, -shm) aside as `previous`, then the restored one,
 * `incoming`, in its place; the directory synced. Each step is done only if still to do, so a
 * swap killed half-way is finished by running this again.
 */
function swapIn(dataDir: string, incoming: string, previous: string | null): void {
  const database = join(dataDir, DATABASE_FILE);
  for (const suffix of ["", ...COMPANIONS]) {
    if (!existsSync(database + suffix)) continue;
    if (previous === null || existsSync(previous + suffix)) {
      throw new BackupError(`${database + suffix} is in the way of the restored database, and cannot be put aside as ${previous === null ? "nothing" : previous + suffix} (which ${previous === null ? "the restore did not plan" : "exists"}): move it away yourself`);
    }
    renameSync(database + suffix, previous + suffix);
  }
  renameSync(incoming, database);
  syncDirectory(dataDir);
}

/**
 * A restore killed while it swapped the files (its marker still names the database it was
 * putting in place): the swap is finished now, as that restore would have — the database put
 * there was checked in full before the marker was written. Run before anything opens the
 * database: by `citadel restore`, and at every start.
 */
function finishInterruptedSwap(dataDir: string): void {
  const marker = readRestoreMarker(dataDir);
  if (marker === null || marker === "damaged" || marker.swapping_in === undefined) return;
  const incoming = join(dataDir, marker.swapping_in);
  if (existsSync(incoming)) {
    const previous = marker.restores.at(-1)?.previous ?? null;
    // Only a name of the restore's own pattern: the marker is not trusted to move files elsewhere.
    if (previous !== null && !PUT_ASIDE.test(previous)) throw new BackupError(`${RESTORE_MARKER} names ${JSON.stringify(previous)} for the database to put aside, not a name restore makes: finish the restore by hand`);
    swapIn(dataDir, incoming, previous === null ? null : join(dataDir, previous));
  }
  // Without `incoming` and without a database, nothing is finished: the start refuses (refuseToStartAfresh).
  if (existsSync(join(dataDir, DATABASE_FILE))) markSwapDone(dataDir);
}

/**
 * For `citadel recover`, which works beside a running server: not beside a restore, running or
 * cut short in its swap — what it wrote would go to a database the restore then puts aside.
 */
export function refuseDuringRestore(dataDir: string): void {
  if (dataDirectoryHolder(dataDir) === "restore") throw new ConfigError(`citadel restore is running on ${dataDir}: wait for it to end, then recover`);
  const marker = readRestoreMarker(dataDir);
  if (marker !== null && marker !== "damaged" && marker.swapping_in !== undefined) {
    throw new ConfigError(`a restore into ${dataDir} was cut short: start Citadel (its first start finishes the restore) or run citadel restore again, then recover`);
  }
}

/**
 * At every start, before the database is opened: a restore's interrupted swap is finished, and
 * no new database is made where one is missing for a reason. ConfigError (exit 2) when the
 * operator must act.
 */
export function settleInterruptedRestore(dataDir: string, log?: Pick<Logger, "warn">): void {
  try {
    finishInterruptedSwap(dataDir);
  } catch (error) {
    if (!(error instanceof BackupError)) throw error;
    throw new ConfigError(`a restore into ${dataDir} was interrupted, and could not be finished: ${error.message}`);
  }
  refuseToStartAfresh(dataDir);
  removeAbandonedRestoreCopies(dataDir, log);
}

/**
 * The decrypted copies of a backup that a restore killed before its swap left behind
 * (abandonedRestoreCopies): removed, and said so. Run by the holder of the data directory's
 * lock (serve and init, at every start), so no restore is making one meanwhile; until then
 * they stayed until the next restore, personal data in clear out of reach of any erasure.
 */
function removeAbandonedRestoreCopies(dataDir: string, log?: Pick<Logger, "warn">): void {
  const copies = abandonedRestoreCopies(dataDir);
  if (copies.length === 0) return;
  for (const name of copies) rmSync(join(dataDir, name), { force: true });
  log?.warn("removed the decrypted copy of a backup that an interrupted restore left in the data directory", { data_dir: dataDir, files: copies });
}

/**
 * Refuses a start that would make a new, empty database where one is missing for a reason:
 * a restore was interrupted (its marker is there, or a database it put aside) or the database
 * file alone is gone (its -wal is there). A new instance would have a new organization and
 * owner, and its first open would take that -wal for its own.
 */
function refuseToStartAfresh(dataDir: string): void {
  if (existsSync(join(dataDir, DATABASE_FILE))) return;
  const names = readdirSync(dataDir);
  const putAside = names.filter((name) => PUT_ASIDE.test(name)).sort();
  const clues = [...(names.includes(RESTORE_MARKER) ? [RESTORE_MARKER] : []), ...putAside, ...COMPANIONS.map((c) => DATABASE_FILE + c).filter((name) => names.includes(name))];
  if (clues.length === 0) return;
  const putBack = putAside.at(-1);
  throw new ConfigError(
    `${dataDir} has no ${DATABASE_FILE} but holds ${clues.join(", ")}: a restore was interrupted or the database was removed, and Citadel will not make a new, empty one over it. ` +
      `Run citadel restore again with the backup (--yes)` +
      (putBack ? `, or put the previous database back (rename ${putBack} and its -wal and -shm, if any, to ${DATABASE_FILE}, and remove ${RESTORE_MARKER})` : "") +
      `; to start afresh on purpose, move these files out of the data directory`,
  );
}

/**
 * Records a restore for the next start, durably (written whole, synced), before its swap:
 * `swappingIn` names the database being put in place until markSwapDone. When a marker is there
 * already, Citadel has not started since the last restore: the database this one put aside
 * never ran. The marker then keeps its `previous` (the database that last ran, where erasures
 * made after the backup are) and gains this restore, so the start audits every restore and
 * carries those erasures over.
 */
function writeRestoreMarker(dataDir: string, note: RestoreNote, swappingIn: string): void {
  const earlier = readRestoreMarker(dataDir);
  // A new id for each restore (src/restore-marker.ts): the carry-over steps run once per restore.
  const id = randomUUID();
  const marker: RestoreMarker =
    earlier === null || earlier === "damaged"
      ? { id, previous: note.previous, restores: [note], swapping_in: swappingIn }
      : { id, previous: earlier.previous, restores: [...earlier.restores, note], swapping_in: swappingIn };
  // A new file renamed over the name: never written through whatever holds it (a link would lead the write elsewhere).
  writeFileAtomic(join(dataDir, RESTORE_MARKER), JSON.stringify(marker), 0o600);
}

/** The swap is done: the marker now stands for a restore the next start carries over and audits. */
function markSwapDone(dataDir: string): void {
  const marker = readRestoreMarker(dataDir);
  if (marker === null || marker === "damaged") return;
  const { swapping_in: _done, ...restored } = marker;
  writeFileAtomic(join(dataDir, RESTORE_MARKER), JSON.stringify(restored), 0o600);
}

/** Whether the key file the restored instance will meet unseals it (checked against the stored verifiers). */
function rootKeyMatches(database: string, keyFile: string): boolean | null {
  let key: Buffer;
  try {
    key = parseWiping(readFileSync(keyFile), keyFile);
  } catch {
    return null; // no key file there (Shamir, a credential), or not a key: nothing to tell
  }
  const db = openReadOnly(database);
  try {
    return db.query<{ verifier: Uint8Array }, []>("SELECT verifier FROM root_keys").all().some((r) => verifies(key, r.verifier));
  } catch {
    return null;
  } finally {
    key.fill(0);
    db.close();
  }
}
