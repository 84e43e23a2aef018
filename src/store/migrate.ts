/**
 * Migrations for the kernel and every plugin. Each migration is applied once, in its own
 * transaction, and recorded (owner, id, checksum). Start-up stops when one fails (after
 * rolling it back), when the database holds a migration this binary does not know (it was
 * written by a newer Citadel), when a pending migration sorts before an applied one, or
 * when an applied SQL migration was edited afterwards.
 */
import type { Database } from "bun:sqlite";

export interface Migration {
  /** Sortable and unique per owner: "0001_create_users". Never renamed once released. */
  id: string;
  /** SQL text, or a function for data migrations (runs inside the transaction). */
  up: string | ((db: Database) => void);
}

export interface MigrationSet {
  /** "kernel" or a plugin name. */
  owner: string;
  migrations: readonly Migration[];
}

export interface AppliedMigration {
  owner: string;
  id: string;
}

export class MigrationError extends Error {
  override readonly name = "MigrationError";
}

const LEDGER = `CREATE TABLE IF NOT EXISTS citadel_migrations (
  owner      TEXT NOT NULL,
  id         TEXT NOT NULL,
  checksum   TEXT,
  applied_at INTEGER NOT NULL,
  PRIMARY KEY (owner, id)
) STRICT`;

/** Brings the database up to date; returns what it applied, in order. */
export function migrate(db: Database, sets: readonly MigrationSet[], now: () => number = Date.now): AppliedMigration[] {
  const recorded = checkMigrations(db, sets);
  db.run(LEDGER);
  const applied: AppliedMigration[] = [];
  const record = db.query("INSERT INTO citadel_migrations (owner, id, checksum, applied_at) VALUES (?, ?, ?, ?)");
  for (const set of sets) {
    const done = new Set(recorded.filter((r) => r.owner === set.owner).map((r) => r.id));
    for (const migration of set.migrations) {
      if (done.has(migration.id)) continue;
      db.run("BEGIN IMMEDIATE");
      try {
        // Another process (an `init` beside a `serve`) may have applied it meanwhile.
        if (db.query("SELECT 1 FROM citadel_migrations WHERE owner = ? AND id = ?").get(set.owner, migration.id)) {
          db.run("COMMIT");
          continue;
        }
        if (typeof migration.up === "string") db.run(migration.up);
        else migration.up(db);
        if (!db.inTransaction) throw new Error("the migration ended the transaction itself (COMMIT or ROLLBACK inside it)");
        record.run(set.owner, migration.id, checksumOf(migration), now());
        db.run("COMMIT");
      } catch (error) {
        if (db.inTransaction) db.run("ROLLBACK");
        const reason = error instanceof Error ? error.message : String(error);
        throw new MigrationError(`migration ${set.owner}/${migration.id} failed and was rolled back: ${reason}`, { cause: error });
      }
      applied.push({ owner: set.owner, id: migration.id });
    }
  }
  return applied;
}

/**
 * Whether this binary may run on the database, reading only: it knows every migration recorded
 * there (else a newer Citadel wrote it), none of them was edited since, and none it has yet to
 * apply sorts before an applied one. Returns what is recorded.
 */
export function checkMigrations(db: Database, sets: readonly MigrationSet[]): Array<{ owner: string; id: string }> {
  checkDeclarations(sets);
  const hasLedger = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'citadel_migrations'").get() !== null;
  const recorded = hasLedger ? db.query<{ owner: string; id: string; checksum: string | null }, []>("SELECT owner, id, checksum FROM citadel_migrations").all() : [];
  const known = new Map(sets.map((s) => [s.owner, new Map(s.migrations.map((m) => [m.id, m]))]));
  for (const row of recorded) {
    const migration = known.get(row.owner)?.get(row.id);
    if (!migration) {
      throw new MigrationError(
        `the database was written by a newer version of Citadel (it has migration ${row.owner}/${row.id}, unknown to this one); run that version or restore a backup`,
      );
    }
    const checksum = checksumOf(migration);
    if (row.checksum !== null && checksum !== null && row.checksum !== checksum) {
      throw new MigrationError(`migration ${row.owner}/${row.id} was changed after it was applied; refusing to continue`);
    }
  }
  for (const set of sets) {
    const done = new Set(recorded.filter((r) => r.owner === set.owner).map((r) => r.id));
    const latest = [...done].sort().at(-1);
    const early = set.migrations.find((m) => !done.has(m.id) && latest !== undefined && m.id < latest);
    if (early) throw new MigrationError(`migration ${set.owner}/${early.id} is older than the applied ${set.owner}/${latest}; migrations must be added at the end`);
  }
  return recorded;
}

/** Programming errors in the migration lists are caught before anything touches the database. */
function checkDeclarations(sets: readonly MigrationSet[]): void {
  const owners = new Set<string>();
  for (const set of sets) {
    if (owners.has(set.owner)) throw new MigrationError(`two migration sets for ${set.owner}`);
    owners.add(set.owner);
    for (let i = 1; i < set.migrations.length; i++) {
      const before = set.migrations[i - 1]!.id;
      const after = set.migrations[i]!.id;
      if (!(before < after)) throw new MigrationError(`migrations of ${set.owner} are not in strictly increasing order: ${before}, ${after}`);
    }
  }
}

/** SQL migrations are checksummed; a function's source changes with minification, so it is not. */
function checksumOf(migration: Migration): string | null {
  if (typeof migration.up !== "string") return null;
  return new Bun.CryptoHasher("sha256").update(migration.up).digest("hex");
}
