/**
 * The store: one bun:sqlite database in WAL mode with synchronous=FULL, so a write that was
 * acknowledged survives kill -9 and power loss. All writes go through `write`, which runs a
 * function in a transaction and resolves only once that transaction is committed.
 *
 * Group commit: writes requested in the same turn of the event loop share one transaction
 * (and so one fsync). Each runs inside its own SAVEPOINT, so one failing write rolls back
 * alone and rejects alone; the others still commit. This is how a durable audit row per
 * mutation stays fast (a single-row transaction costs an fsync; a batch costs one).
 */
import { Database } from "bun:sqlite";
import { closeSync, openSync } from "node:fs";

/** What a write function receives: the database, inside the open transaction. */
export type Tx = Database;

export interface Store {
  /** For reads and prepared statements. Do not write through it outside `write`. */
  readonly db: Database;
  readonly path: string;
  /**
   * Runs `fn` in a write transaction and resolves with its result once it is durable.
   * `fn` must be synchronous: an await inside it would let another caller's write slip
   * into the same transaction.
   */
  write<T>(fn: (tx: Tx) => T): Promise<T>;
  /** True when a trivial query answers (for /readyz). */
  ping(): boolean;
  /** Commits what is queued, then closes. Safe to call twice. */
  close(): void;
}

export interface StoreOptions {
  /** File path, or ":memory:" for tests. */
  path: string;
  busyTimeoutMs?: number;
  /** Upper bound of writes grouped into one transaction. */
  maxBatch?: number;
}

interface PendingWrite {
  fn: (tx: Tx) => unknown;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

export class StoreClosedError extends Error {
  override readonly name = "StoreClosedError";
  constructor() {
    super("the store is closed");
  }
}

export function openStore({ path, busyTimeoutMs = 5000, maxBatch = 1000 }: StoreOptions): Store {
  if (path !== ":memory:") {
    // Create the file ourselves so it is 0600 from the first byte; SQLite gives the
    // -wal and -shm files the same mode as the database file.
    closeSync(openSync(path, "a", 0o600));
  }
  const db = new Database(path, { create: true, strict: true });
  db.run(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = FULL");
  db.run("PRAGMA foreign_keys = ON");

  let queue: PendingWrite[] = [];
  let scheduled = false;
  let closed = false;

  const flush = () => {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.length > maxBatch ? queue.splice(0, maxBatch) : queue.splice(0);
      commitBatch(db, batch);
    }
  };

  return {
    db,
    path,
    write<T>(fn: (tx: Tx) => T): Promise<T> {
      if (closed) return Promise.reject(new StoreClosedError());
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    ping() {
      try {
        return db.query("SELECT 1 AS one").get() !== null;
      } catch {
        return false;
      }
    },
    close() {
      if (closed) return;
      flush();
      closed = true;
      db.close(false);
    },
  };
}

function commitBatch(db: Database, batch: PendingWrite[]): void {
  const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
  try {
    db.run("BEGIN IMMEDIATE");
  } catch (error) {
    for (const w of batch) w.reject(error);
    return;
  }
  for (const w of batch) {
    db.run("SAVEPOINT citadel_write");
    try {
      const value = w.fn(db);
      if (value instanceof Promise) throw new TypeError("store.write: the function must be synchronous");
      db.run("RELEASE citadel_write");
      outcomes.push({ ok: true, value });
    } catch (error) {
      if (!db.inTransaction) {
        // SQLite rolled back the whole transaction (disk full, I/O error): the writes of
        // this batch that had succeeded are gone too, so every caller must hear of it.
        for (const p of batch) p.reject(error);
        return;
      }
      db.run("ROLLBACK TO citadel_write");
      db.run("RELEASE citadel_write");
      outcomes.push({ ok: false, error });
    }
  }
  try {
    db.run("COMMIT");
  } catch (error) {
    // Nothing of the batch is on disk: every caller learns it.
    if (db.inTransaction) db.run("ROLLBACK");
    for (const w of batch) w.reject(error);
    return;
  }
  batch.forEach((w, i) => {
    const outcome = outcomes[i]!;
    if (outcome.ok) w.resolve(outcome.value);
    else w.reject(outcome.error);
  });
}
