/**
 * Making backups on the server: snapshot the live database, describe it, encrypt it into the
 * backup directory under its time-stamped name, audit it, prune the oldest beyond `keep`.
 * Used by the API (on demand) and by the schedule; both go through one queue, so two backups
 * never run at once.
 */
import { Database } from "bun:sqlite";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { AuditActor, AuditRequestContext } from "../../src/audit/event.ts";
import type { AuditLog } from "../../src/audit/log.ts";
import { backupMaker } from "../../src/backup-maker.ts";
import type { BuildInfo } from "../../src/build-info.ts";
import type { Keyring } from "../../src/crypto/keyring.ts";
import { ConflictError, NotFoundError, UnavailableError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import type { Clock } from "../../src/plugin.ts";
import { claimRestoreStep, hasTable, readPrevious, RESTORE_MARKER, restoreState } from "../../src/restore-marker.ts";
import type { Store } from "../../src/store/store.ts";
import { RootKeyChangedError } from "./errors.ts";
import { CLOCK_SKEW_MS } from "./schedule.ts";
import { backupDirectory, backupFileName, backupsBeyond, backupTimeOf, listBackups, partialFileName, placeBackup, readPartialFileName, syncDirectory, type BackupFile } from "./files.ts";
import { hashFile, sealBackup } from "./format.ts";
import { checkNewPassphrase, newPassphraseBackupKeys, type BackupKeys } from "./keys.ts";
import { readSnapshotFacts, type Manifest } from "./manifest.ts";
import type { BackupSettings } from "./settings.ts";
import { snapshotDatabase } from "./snapshot.ts";

const SYSTEM: AuditActor = { kind: "system" };

/** Left in the data directory by `citadel restore`; the next start audits the restore and removes it. */
export { RESTORE_MARKER };

/** One `citadel restore`, as its `backup.restore` event tells it. */
export interface RestoreNote {
  backup: string | null;
  created_at: string | null;
  audit_head_seq: number | null;
  /** Where the database it replaced was put (a name in the data directory), or null. */
  previous: string | null;
}

/**
 * What the marker holds: every restore since the last start, in order, and `previous`, the
 * database that last ran — what the first of them put aside. A second restore before a start
 * replaces a database that never ran, so it keeps `previous` as it is: the subject plugin
 * carries erasures over from it (its contract: the top-level `previous`).
 */
export interface RestoreMarker {
  /** This restore's id, new at each restore: what the carry-over steps record they handled (src/restore-marker.ts). */
  id?: string;
  previous: string | null;
  restores: RestoreNote[];
  /**
   * While `citadel restore` swaps the files: the name of the checked database it is putting in
   * place (citadel.db.restoring-<pid>). A start that meets it finishes the swap first
   * (finishInterruptedSwap in restore.ts); absent once the restored database is in place.
   */
  swapping_in?: string;
}

/**
 * The marker in `dataDir`: null when there is none, "damaged" when it does not read. One
 * written by an earlier version (a single restore, no list) reads as that one restore.
 */
export function readRestoreMarker(dataDir: string): RestoreMarker | "damaged" | null {
  const path = join(dataDir, RESTORE_MARKER);
  if (!existsSync(path)) return null;
  try {
    const note = JSON.parse(readFileSync(path, "utf8")) as Partial<RestoreMarker & RestoreNote>;
    const restores = Array.isArray(note.restores) ? note.restores : [note];
    const marker: RestoreMarker = { ...(typeof note.id === "string" ? { id: note.id } : {}), previous: note.previous ?? null, restores: restores.map(restoreNote) };
    // Only a name in the data directory, of the restore's own pattern: the marker is not trusted to point elsewhere.
    if (typeof note.swapping_in === "string" && /^citadel\.db\.restoring-\d+$/.test(note.swapping_in)) marker.swapping_in = note.swapping_in;
    return marker;
  } catch {
    return "damaged";
  }
}

function restoreNote(note: Partial<RestoreNote>): RestoreNote {
  return { backup: note.backup ?? null, created_at: note.created_at ?? null, audit_head_seq: note.audit_head_seq ?? null, previous: note.previous ?? null };
}

export interface BackupDeps {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  build: BuildInfo;
  log: Logger;
  dataDir: string;
  settings: BackupSettings;
  /** The keyring; throws SealedError while sealed (no backup is made sealed). */
  keyring(): Keyring;
  /** Fresh keys under the root key (derived by the keyring: the root key is not handed out). */
  rootKeyBackupKeys(): BackupKeys;
  /** Plaintext bytes per encrypted chunk (tests use small ones to get many chunks). */
  chunkBytes?: number;
  /** Registers a listener called when Citadel is sealed (Seal.onSeal). */
  onSeal?: (listener: () => void) => void;
}

export interface BackupRequest {
  reason: Manifest["reason"];
  actor: AuditActor;
  request?: AuditRequestContext;
  /** Encrypt with this passphrase (argon2id) instead of the root-key-derived key. */
  passphrase?: string;
}

export interface CreatedBackup {
  name: string;
  path: string;
  bytes: number;
  /** SHA-256 of the backup file itself: a download is checked against it. */
  sha256: string;
  key: { kind: "root_key"; root_key_id: string } | { kind: "passphrase" };
  manifest: Manifest;
  /** Older backups deleted to keep `settings.keep`. */
  pruned: string[];
}

export class BackupService {
  private queue: Promise<unknown> = Promise.resolve();
  /** The keys of the backup being made, if one is. */
  private running: BackupKeys | undefined;

  constructor(private readonly deps: BackupDeps) {
    deps.onSeal?.(() => this.abandonRunning());
  }

  get directory(): string {
    return backupDirectory(this.deps.dataDir, this.deps.settings.dir);
  }

  /**
   * Sealing drops every key from memory, a running backup's too: its keys are wiped now and
   * the backup fails at its next chunk (audited), rather than finishing on keys that should
   * be gone.
   */
  abandonRunning(): void {
    this.running?.wipe();
  }

  /** Makes a backup (after any already running) and prunes; audited, success or failure. */
  async create(request: BackupRequest): Promise<CreatedBackup> {
    // Input is refused at once, as the request's schema refuses it: not queued, not audited.
    if (request.passphrase !== undefined) checkNewPassphrase(request.passphrase);
    const run = this.queue.then(() => this.createNow(request));
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * This instance's backups in the directory, newest first. Another Citadel given the same
   * directory keeps its own there: not this one's to list, serve, count against keep, prune or
   * schedule by. Whose a backup is, its manifest says in clear (no key is needed to read it);
   * a file named like a backup whose manifest does not read is nobody's it can tell.
   */
  async list(): Promise<BackupFile[]> {
    const own = this.instanceId();
    const files = listBackups(this.deps.dataDir, this.deps.settings.dir);
    // Read as the metrics and doctor read it (src/backup-maker.ts): they count the same backups.
    return files.filter((file) => backupMaker(file.path) === own);
  }

  /** One of this instance's backups by file name; only names of the backup pattern are ever served. */
  async file(name: string): Promise<BackupFile> {
    const found = (await this.list()).find((f) => f.name === name);
    if (!found) throw new NotFoundError(`no backup named ${name}`);
    return found;
  }

  /** This installation's id (the instance table): what the manifests of its backups carry. */
  private instanceId(): string | null {
    return this.deps.store.db.query<{ id: string }, []>("SELECT id FROM instance").get()?.id ?? null;
  }

  /** Records that a backup file left the server. */
  async recordDownload(name: string, actor: AuditActor, request?: AuditRequestContext): Promise<void> {
    await this.deps.store.write((tx) => this.deps.audit.record(tx, { action: "backup.download", actor, outcome: "success", resource: { type: "backup", id: name }, request }));
  }

  /**
   * Audits the restores that `citadel restore` did while the server was stopped (it leaves a
   * marker, since it cannot write the log of a stopped instance), one event each, in order;
   * then removes the marker.
   */
  async recordRestore(): Promise<boolean> {
    const marker = readRestoreMarker(this.deps.dataDir);
    if (marker === null) return false;
    // A damaged marker still means a restore happened.
    const restores = marker === "damaged" ? [restoreNote({})] : marker.restores;
    const state = restoreState(this.deps.dataDir);
    await this.deps.store.write((tx) => {
      // Once per restore: a start that failed between this write and the marker's removal
      // meets the marker again (claimRestoreStep, as the plugins' carry-over steps).
      if (state.kind === "restored" && !claimRestoreStep(tx, state.id, "backup", this.deps.clock.now())) return;
      for (const note of restores) {
        const previous = note.previous ? `kept as ${note.previous}, ${replacedAuditHead(this.deps.dataDir, note.previous)}` : "none";
        const reason = `restored from ${note.backup ?? "a backup"} taken ${note.created_at ?? "at an unknown time"}, audit head ${note.audit_head_seq ?? "-"}; previous database ${previous}`;
        this.deps.audit.record(tx, { action: "backup.restore", actor: SYSTEM, outcome: "success", resource: { type: "backup", id: note.backup }, reason });
      }
    });
    rmSync(join(this.deps.dataDir, RESTORE_MARKER), { force: true });
    this.deps.log.info("recorded a restore from backup", { backups: restores.map((note) => note.backup) });
    return true;
  }

  /** Removes what an interrupted backup left in the directory (plaintext snapshots above all). */
  async removeLeftovers(): Promise<void> {
    const remove = (dir: string, leftover: (name: string) => boolean) => {
      let names: string[] = [];
      try {
        names = readdirSync(dir);
      } catch {
        return; // not made yet
      }
      for (const name of names) if (leftover(name)) rmSync(join(dir, name), { force: true });
    };
    // Only names Citadel itself writes: the directory may be a mount other tools use too.
    // A snapshot killed half-way also leaves SQLite's companions of it (VACUUM INTO writes through a -journal).
    remove(this.directory, (name) => /^\.snapshot-[^/]*\.db(-journal|-wal|-shm)?$/.test(name) || this.isOwnPartial(name)); // (older versions snapshot here)
    remove(this.deps.dataDir, (name) => /^\.backup-snapshot-[0-9a-f-]{36}\.db(-journal|-wal|-shm)?$/.test(name));
  }

  /**
   * Whether `name` is an unfinished backup of this instance's: by the id in its name, or for a
   * name an earlier version wrote (no id in it), by its manifest. Another Citadel sharing the
   * directory may be writing its own right now: removed, its backup would fail at the end.
   */
  private isOwnPartial(name: string): boolean {
    const partial = readPartialFileName(name);
    if (partial === undefined) return false;
    const own = this.instanceId();
    if (partial.namesInstance) return name === partialFileName(partial.backup, own);
    const path = join(this.directory, name);
    const madeBy = backupMaker(path);
    return madeBy === own || (madeBy === undefined && untouchedForAnHour(path));
  }

  private async createNow(request: BackupRequest): Promise<CreatedBackup> {
    const { deps } = this;
    const startedAt = deps.clock.now();
    let keys: BackupKeys | undefined;
    let name: string | undefined;
    try {
      deps.keyring(); // sealed: refused before anything is written (and audited, as every failure)
      if (request.passphrase !== undefined) keys = await newPassphraseBackupKeys(request.passphrase);
      else keys = deps.rootKeyBackupKeys();
      this.running = keys;
      deps.keyring(); // sealed while a passphrase key was derived: refused now
      mkdirSync(this.directory, { recursive: true, mode: 0o700 });
      const chosen = this.freeName(startedAt);
      name = chosen;
      let created: Awaited<ReturnType<BackupService["write"]>>;
      for (let attempt = 1; ; attempt++) {
        try {
          created = await this.write(chosen, keys, request.reason, startedAt);
          name = created.name;
          break;
        } catch (error) {
          // A rekey promoted a new root key meanwhile: again, under the key now in use.
          if (!(error instanceof RootKeyChangedError) || attempt >= 3) throw error;
          keys.wipe();
          this.running = keys = deps.rootKeyBackupKeys();
        }
      }
      const key = keys.derivation.kind === "root_key" ? { kind: "root_key" as const, root_key_id: keys.derivation.rootKeyId } : { kind: "passphrase" as const };
      const head = created.manifest.audit_head;
      const made = created.name;
      await deps.store.write((tx) =>
        deps.audit.record(tx, {
          action: "backup.create",
          actor: request.actor,
          outcome: "success",
          resource: { type: "backup", id: made },
          reason: `${request.reason === "scheduled" ? "scheduled" : "on demand"}, ${key.kind === "root_key" ? `root key ${key.root_key_id}` : "passphrase"}, ${created.bytes} bytes, audit head ${head ? head.seq : "-"}`,
          request: request.request,
        }),
      );
      deps.log.info("made a backup", { backup: made, bytes: created.bytes, reason: request.reason, ms: deps.clock.now() - startedAt });
      // The backup is made: a failure to prune is logged, not reported as a failed backup.
      const pruned = await this.prune(made).catch((error) => {
        deps.log.error("could not prune old backups", { error });
        return [];
      });
      return { path: join(this.directory, made), ...created, key, pruned };
    } catch (error) {
      deps.log.error("a backup failed", { backup: name ?? null, error });
      const failure = storageFailure(error, this.directory) ?? error;
      const reason = failure instanceof Error ? failure.message : String(failure);
      await deps.store
        .write((tx) => deps.audit.record(tx, { action: "backup.create", actor: request.actor, outcome: "failure", resource: name ? { type: "backup", id: name } : null, reason, request: request.request }))
        .catch((auditError) => deps.log.error("could not audit a failed backup", { error: auditError }));
      throw failure;
    } finally {
      this.running = undefined;
      keys?.wipe();
    }
  }

  /**
   * Snapshot → facts and hash → encrypted file under a temporary name → put in place as `name`,
   * or under the next free second's name when another Citadel sharing the directory took it
   * meanwhile (the name it got is returned).
   */
  private async write(name: string, keys: BackupKeys, reason: Manifest["reason"], takenAt: number): Promise<{ name: string; bytes: number; sha256: string; manifest: Manifest }> {
    const { deps } = this;
    // The plaintext snapshot stays in the data directory (0700, the database's own disk): only
    // ciphertext is written to the backup directory, which may be a mount elsewhere.
    const snapshot = join(this.deps.dataDir, `.backup-snapshot-${crypto.randomUUID()}.db`);
    const partial = join(this.directory, partialFileName(name, this.instanceId()));
    try {
      await snapshotDatabase(deps.store.path, snapshot).catch((error) => {
        throw storageFailure(error, deps.dataDir, "the database snapshot (in the data directory)") ?? error;
      });
      const facts = readFacts(snapshot);
      if (keys.derivation.kind === "root_key" && facts.root_key_id !== keys.derivation.rootKeyId) {
        throw new RootKeyChangedError(`the root key changed while the backup was taken (a rekey: ${keys.derivation.rootKeyId} → ${facts.root_key_id}); take it again`);
      }
      const manifest: Manifest = {
        created_at: new Date(takenAt).toISOString(),
        reason,
        citadel: { version: deps.build.version, commit: deps.build.commit },
        ...facts,
        database: await hashFile(snapshot),
      };
      const sealed = await sealBackup(snapshot, partial, keys, manifest, deps.chunkBytes);
      const placed = this.place(partial, name);
      syncDirectory(this.directory); // makes the new name durable
      return { name: placed, ...sealed, manifest };
    } finally {
      rmSync(snapshot, { force: true });
      rmSync(partial, { force: true });
    }
  }

  /** The name for a backup taken at `time`; a second backup within the same second takes the next free second. */
  private freeName(time: number): string {
    const free = namesFrom(time).find((name) => !existsSync(join(this.directory, name)));
    if (free === undefined) throw new ConflictError("too many backups in the last minute");
    return free;
  }

  /** Gives the finished file `partial` the name `name`, or the next free one after it (never another's file's). */
  private place(partial: string, name: string): string {
    const placed = namesFrom(backupTimeOf(name)!.getTime()).find((candidate) => placeBackup(partial, join(this.directory, candidate)));
    if (placed === undefined) throw new ConflictError("too many backups in the last minute");
    return placed;
  }

  /**
   * Deletes the backups beyond the newest `keep`, by the times in their names — never `made`,
   * the one just written. Backups named ahead of the clock (made while it was ahead) neither
   * count nor go: counted, they would take the places of real ones (each new backup would
   * delete the last); deleted, the newest data might go. citadel doctor warns about them.
   */
  private async prune(made: string): Promise<string[]> {
    const { deps } = this;
    const dated = (await this.list()).filter((file) => file.time.getTime() <= deps.clock.now() + CLOCK_SKEW_MS);
    const old = backupsBeyond(dated, deps.settings.keep).filter((file) => file.name !== made);
    const removed: string[] = [];
    for (const file of old) {
      try {
        rmSync(file.path);
      } catch (error) {
        deps.log.error("could not delete an old backup", { backup: file.name, error });
        continue;
      }
      removed.push(file.name);
      await deps.store.write((tx) =>
        deps.audit.record(tx, { action: "backup.prune", actor: SYSTEM, outcome: "success", resource: { type: "backup", id: file.name }, reason: `more than ${deps.settings.keep} backups are kept` }),
      );
    }
    return removed;
  }
}

/** The names of backups taken from `time`'s second on, one a second, for a minute. */
function namesFrom(time: number): string[] {
  return Array.from({ length: 60 }, (_, i) => backupFileName(new Date(time + i * 1000)));
}

/**
 * Whether the file at `path` was last written over an hour ago. An earlier version's partial
 * whose header does not read (empty, or cut short in it) names nobody; an older Citadel sharing
 * the directory may be writing it right now, but not one that has written nothing for an hour
 * (a backup writes its header first, then its chunks): left to itself, it was kept forever.
 * By the file system's clock, which wrote the time.
 */
function untouchedForAnHour(path: string): boolean {
  try {
    const stat = lstatSync(path);
    return stat.isFile() && stat.mtimeMs < Date.now() - 3_600_000;
  } catch {
    return false; // gone already
  }
}

/**
 * Where the audit log of the database a restore replaced ended (its last event's seq and the
 * start of its hash), for the restore's event: the restored log goes on from the backup's head,
 * so a checkpoint kept elsewhere of an event after it no longer verifies ("the log was
 * rewritten") — this says which log it was taken of, and that it did verify against it.
 */
function replacedAuditHead(dataDir: string, previous: string): string {
  // Only a name in the data directory: the marker is not trusted to point elsewhere.
  const path = previous.includes("/") ? null : join(dataDir, previous);
  const head = readPrevious(path !== null && existsSync(path) ? path : null, (db) =>
    hasTable(db, "audit_events") ? (db.query<{ seq: number; hash: Uint8Array }, []>("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get() ?? "empty") : "empty",
  );
  if (head === null) return "its audit log unread";
  if (head === "empty") return "its audit log empty";
  return `its audit log ending at event ${head.seq} (hash ${Buffer.from(head.hash).toString("hex").slice(0, 16)})`;
}

/** What the codes of storage failures mean, in the operator's words. */
const STORAGE_FAILURES: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "a read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is used up",
  EIO: "an I/O error",
  ENOTDIR: "a part of the path is not a directory",
  EEXIST: "it is there, and not a directory",
  SQLITE_FULL: "the disk is full",
  SQLITE_READONLY: "a read-only file system",
  SQLITE_IOERR: "an I/O error",
  SQLITE_CANTOPEN: "the file cannot be made",
};

/**
 * A backup that failed because where it is written cannot take it (permissions, a read-only
 * mount, a full disk) is the operator's to fix, not a bug: an UnavailableError (503) naming the
 * directory and the code, never a stack. Null for any other failure.
 */
function storageFailure(error: unknown, directory: string, what = "the backup directory"): UnavailableError | null {
  if (error instanceof UnavailableError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !(code in STORAGE_FAILURES)) return null;
  return new UnavailableError(`cannot write ${what} ${directory}: ${code} (${STORAGE_FAILURES[code]}); it must be writable by the user Citadel runs as, with space left`);
}

function readFacts(path: string) {
  const db = new Database(path, { readonly: true });
  try {
    return readSnapshotFacts(db);
  } finally {
    db.close();
  }
}
