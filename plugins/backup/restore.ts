/**
 * Restoring a backup into a stopped Citadel's data directory, and checking a backup offline.
 *
 * The backup is decrypted and checked in full (every chunk, the SHA-256, SQLite's integrity
 * check) into a temporary file beside the database before anything is touched; only then is
 * the current database renamed aside (never deleted) and the restored one renamed into its
 * place, mode 0600. A running Citadel is detected by the data directory's lock (citadel.lock,
 * held by `citadel serve` for as long as it runs; the restore holds it too, so none starts
 * meanwhile) and by its lock on the database, so a restore never pulls the file out from under
 * a live server.
 */
import { Database } from "bun:sqlite";
import { randomUUID } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { constants as osConstants, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseWiping, verifies } from "../../src/crypto/root-key.ts";
import { lockDataDirectory } from "../../src/file-lock.ts";
import { checkMigrations, MigrationError, type MigrationSet } from "../../src/store/migrate.ts";
import { openReadOnly } from "../../src/store/read-only.ts";
import { prepareDataDir } from "../../src/data-dir.ts";
import { BackupError, ConfirmationNeeded } from "./errors.ts";
import { compactUtcTime, syncDirectory } from "./files.ts";
import { openBackup, type OpenedBackup } from "./format.ts";
import type { KeySupply } from "./keys.ts";
import { readRestoreMarker, RESTORE_MARKER, type RestoreMarker, type RestoreNote } from "./service.ts";

export const DATABASE_FILE = "citadel.db";
/** SQLite's companions of a database in WAL mode: they move with it. */
const COMPANIONS = ["-wal", "-shm"];

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
  if ("refused" in lock) throw new BackupError(`${lock.refused} (${options.dataDir}): stop it first (for example systemctl stop citadel), then restore`);
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
    if (databaseInUse(database)) throw new BackupError(`the database in ${dataDir} is in use: stop Citadel first (for example systemctl stop citadel), then restore`);
  };
  refuseIfRunning();
  const present = [DATABASE_FILE, ...COMPANIONS.map((c) => DATABASE_FILE + c)].filter((name) => existsSync(join(dataDir, name)));
  if (present.length > 0 && !options.replace) {
    throw new ConfirmationNeeded(`${dataDir} already holds a database: run again with --yes to keep it aside (renamed, not deleted) and restore over it`);
  }

  // What a killed restore left (a decrypted copy of its backup) goes first.
  for (const name of readdirSync(dataDir)) if (name.startsWith(`${DATABASE_FILE}.restoring-`)) rmSync(join(dataDir, name), { force: true });
  const incoming = join(dataDir, `${DATABASE_FILE}.restoring-${process.pid}`);
  try {
    const opened = await openBackup(options.file, options.supply, incoming);
    const integrity = integrityOf(incoming);
    if (integrity !== "ok") throw new BackupError(`the database in the backup fails SQLite's integrity check: ${integrity}`);
    refuseUnknownMigrations(incoming, options.migrations, opened.manifest.citadel);

    refuseIfRunning(); // again: a server may have started while we decrypted
    let previous: string | null = null;
    if (present.length > 0) {
      previous = join(dataDir, `${DATABASE_FILE}.before-restore-${compactUtcTime(new Date(options.now()))}`);
      if (existsSync(previous)) throw new BackupError(`${previous} exists already: wait a second and try again`);
      for (const suffix of ["", ...COMPANIONS]) {
        if (existsSync(database + suffix)) renameSync(database + suffix, previous + suffix);
      }
    }
    renameSync(incoming, database); // made 0600 by openBackup
    writeRestoreMarker(dataDir, {
      backup: basename(options.file),
      created_at: opened.manifest.created_at,
      audit_head_seq: opened.manifest.audit_head?.seq ?? null,
      previous: previous && basename(previous),
    });
    syncDirectory(dataDir);
    return { opened, database, previous, rootKeyMatches: options.unsealKeyFile ? rootKeyMatches(database, options.unsealKeyFile) : null };
  } finally {
    rmSync(incoming, { force: true });
  }
}

/**
 * Records a restore for the next start. When a marker is there already, Citadel has not
 * started since the last restore: the database this one put aside never ran. The marker then
 * keeps its `previous` (the database that last ran, where erasures made after the backup are)
 * and gains this restore, so the start audits every restore and carries those erasures over.
 */
function writeRestoreMarker(dataDir: string, note: RestoreNote): void {
  const earlier = readRestoreMarker(dataDir);
  // A new id for each restore (src/restore-marker.ts): the carry-over steps run once per restore.
  const id = randomUUID();
  const marker: RestoreMarker =
    earlier === null || earlier === "damaged" ? { id, previous: note.previous, restores: [note] } : { id, previous: earlier.previous, restores: [...earlier.restores, note] };
  const path = join(dataDir, RESTORE_MARKER);
  // Made anew, never written through whatever holds the name (a link would lead the write elsewhere).
  rmSync(path, { force: true });
  writeFileSync(path, JSON.stringify(marker), { mode: 0o600, flag: "wx" });
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
