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
import { Database, type Statement } from "bun:sqlite";
import { closeSync, openSync } from "node:fs";
import { StorageUnavailableError } from "../errors.ts";

/** What a write function receives: the database, inside the open transaction. */
export type Tx = Database;

export interface Store {
  /** For reads and prepared statements. Do not write through it outside `write`. */
  readonly db: Database;
  readonly path: string;
  /**
   * Runs `fn` in a write transaction and resolves with its result once it is durable.
   * `fn` must be synchronous (an await inside it would let another caller's write slip into
   * the same transaction), must not run transaction statements itself, and must not
   * swallow an SQLite error: let it propagate, and the write is rolled back alone.
   */
  write<T>(fn: (tx: Tx) => T): Promise<T>;
  /**
   * Runs `fn` inside one read transaction, so that its reads share one snapshot of the
   * database. In WAL mode each read outside a transaction takes and drops the WAL read lock
   * (two fcntl calls on the -shm file): measured 3.7 µs for a one-row read against 0.4 µs
   * inside a transaction. The edge runs each request's synchronous part in one (a secret read
   * makes about ten lookups). The transaction ends when `fn` returns, so what `fn` starts
   * asynchronously reads outside it, and store.write's batches (a later turn of the event
   * loop) never meet it. A write made directly inside `fn` commits when `fn` returns, as it
   * would have on its own.
   */
  snapshot<T>(fn: () => T): T;
  /**
   * A number that moves whenever this connection changes a row, committed or not (SQLite's
   * total_changes(), triggers included; a read of it takes no lock), but for the rows left
   * out with `leaveOutOfChangeStamp`. Null while a transaction that has changed rows is open,
   * or one the store did not begin: what is read then may yet be rolled back, so it must not
   * be remembered (src/store/read-memo.ts).
   */
  changeStamp(): number | null;
  /**
   * Leaves `rows` rows that a statement on `tx` has just inserted out of the change stamp:
   * audit events, which every audited read appends and no remembered fact is read from. Else
   * each batch of audited secret reads made every remembered fact be read again. `rows` must
   * be what the statement itself inserted (its `run()`'s `changes`, which leaves out what
   * triggers did), so that the stamp still moves for every other change; a `tx` that is not
   * this store's connection changed nothing the stamp counts, and is ignored.
   */
  leaveOutOfChangeStamp(tx: Database, rows: number): void;
  /** True when a trivial query answers (for /readyz). */
  ping(): boolean;
  /**
   * The last write the disk refused (full, failing): why, and its number among the refusals
   * (1, 2, …), for /readyz to tell a refusal its probe has answered from a newer one.
   */
  writeFailure(): { failure: StorageFailure; refusal: number } | null;
  /** Commits what is queued, then closes. Safe to call twice. */
  close(): void;
}

export interface StoreOptions {
  /** File path, or ":memory:" for tests. */
  path: string;
  busyTimeoutMs?: number;
  /** Upper bound of writes grouped into one transaction. */
  maxBatch?: number;
  /**
   * Told when writes fail because the disk cannot take them (storageFailureOf): at the first
   * such failure, then at most once a minute while they go on — every request of a flood fails
   * the same way, and the log must not fill the disk further.
   */
  onStorageFailure?: (failure: StorageFailure) => void;
  now?: () => number;
}

/** Why the disk could not take a write, in SQLite's or the system's code and the operator's words. */
export interface StorageFailure {
  code: string;
  reason: string;
}

const STORAGE_FAILURE_REPORT_MS = 60_000;

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

export function openStore({ path, busyTimeoutMs = 5000, maxBatch = 1000, onStorageFailure, now = () => performance.now() }: StoreOptions): Store {
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
  // Deleted rows are overwritten, not left in free pages: erasure (GDPR) means gone from the file.
  db.run("PRAGMA secure_delete = ON");

  let prepared: TransactionStatements | undefined;
  const statements = () => (prepared ??= prepareTransactionStatements(db));
  let queue: PendingWrite[] = [];
  let scheduled = false;
  let closed = false;
  let totalChanges: Statement<{ n: number }, []> | undefined;
  /** Rows inserted that the change stamp leaves out (leaveOutOfChangeStamp). */
  let leftOut = 0;
  const changes = () => (totalChanges ??= db.prepare("SELECT total_changes() AS n")).get()!.n - leftOut;
  /** total_changes() when the open read snapshot began; null outside one. */
  let changesAtSnapshot: number | null = null;

  let storageFailureReportedAt: number | null = null;
  let lastWriteFailure: { failure: StorageFailure; refusal: number } | null = null;
  /** A write refused by the disk reaches its caller as a 503 (StorageUnavailableError); the log hears of it seldom. */
  const asStorageFailure = (error: unknown): unknown => {
    const failure = storageFailureOf(error);
    if (failure === null) return error;
    lastWriteFailure = { failure, refusal: (lastWriteFailure?.refusal ?? 0) + 1 };
    const at = now();
    if (storageFailureReportedAt === null || at - storageFailureReportedAt >= STORAGE_FAILURE_REPORT_MS) {
      storageFailureReportedAt = at;
      onStorageFailure?.(failure);
    }
    return new StorageUnavailableError(`Citadel cannot store the change: ${failure.reason}.`, { cause: error });
  };

  const flush = () => {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.length > maxBatch ? queue.splice(0, maxBatch) : queue.splice(0);
      commitBatch(db, statements(), batch, asStorageFailure);
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
    snapshot<T>(fn: () => T): T {
      if (closed || db.inTransaction) return fn(); // already inside one (a write's function, a nested snapshot)
      const sql = statements();
      sql.beginDeferred.run();
      changesAtSnapshot = changes();
      let result: T;
      try {
        result = fn();
      } catch (error) {
        try {
          endSnapshot(db, sql);
        } catch (ending) {
          throw new Error("the read snapshot could not be ended after an error", { cause: [error, ending] });
        }
        throw error;
      } finally {
        changesAtSnapshot = null;
      }
      try {
        // SQLite ends a transaction itself on some errors (disk full, I/O, OR ROLLBACK): a direct
        // write made in it is gone, so the call must not look successful.
        if (!db.inTransaction) throw new Error("the read snapshot's transaction was rolled back under it");
        endSnapshot(db, sql); // a failed commit (of a direct write) throws: the request must not succeed
      } catch (error) {
        // The asynchronous rest of `fn` goes on (it cannot be stopped), but its outcome is no
        // longer anyone's: it must not surface as an unhandled rejection.
        if (result instanceof Promise) result.catch(() => {});
        throw error;
      }
      return result;
    },
    changeStamp() {
      const current = changes();
      if (!db.inTransaction) return current;
      return current === changesAtSnapshot ? current : null;
    },
    leaveOutOfChangeStamp(tx, rows) {
      if (tx === db) leftOut += rows;
    },
    writeFailure: () => lastWriteFailure,
    ping() {
      try {
        // A real read: `SELECT 1` would answer even with the database file gone bad.
        db.query("SELECT count(*) FROM sqlite_schema").get();
        return true;
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

/** The transaction statements, prepared once: `db.run` would parse each one each time. */
function prepareTransactionStatements(db: Database) {
  return {
    begin: db.prepare("BEGIN IMMEDIATE"),
    beginDeferred: db.prepare("BEGIN DEFERRED"),
    savepoint: db.prepare("SAVEPOINT citadel_write"),
    rollbackTo: db.prepare("ROLLBACK TO citadel_write"),
    release: db.prepare("RELEASE citadel_write"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
  };
}

type TransactionStatements = ReturnType<typeof prepareTransactionStatements>;

/** Commits a snapshot's transaction; if that fails, rolls it back and throws, leaving none open. */
function endSnapshot(db: Database, sql: TransactionStatements): void {
  if (!db.inTransaction) return;
  try {
    sql.commit.run();
  } catch (error) {
    if (db.inTransaction) db.run("ROLLBACK");
    throw error;
  }
}

/** `failure` turns an error into what the callers are given (a full disk: StorageUnavailableError). */
function commitBatch(db: Database, sql: TransactionStatements, batch: PendingWrite[], failure: (error: unknown) => unknown): void {
  // Whatever happens below, every caller's promise settles exactly once.
  const settled = new Set<PendingWrite>();
  const rejectRest = (error: unknown) => {
    const given = failure(error);
    for (const w of batch) if (!settled.has(w)) w.reject(given);
  };
  try {
    sql.begin.run();
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    for (const w of batch) {
      sql.savepoint.run();
      let outcome: (typeof outcomes)[number];
      try {
        const value = w.fn(db);
        if (value instanceof Promise) throw new TypeError("store.write: the function must be synchronous");
        outcome = { ok: true, value };
      } catch (error) {
        outcome = { ok: false, error };
      }
      if (!db.inTransaction) {
        // SQLite rolled back the whole transaction (disk full, I/O error, ON CONFLICT ROLLBACK):
        // the writes of this batch that had succeeded are gone too.
        rejectRest(outcome.ok ? new Error("store.write: the transaction was aborted") : outcome.error);
        return;
      }
      if (!outcome.ok) sql.rollbackTo.run();
      sql.release.run();
      outcomes.push(outcome);
    }
    sql.commit.run();
    batch.forEach((w, i) => {
      const outcome = outcomes[i]!;
      settled.add(w);
      if (outcome.ok) w.resolve(outcome.value);
      else w.reject(failure(outcome.error));
    });
  } catch (error) {
    // BEGIN failed (busy), COMMIT failed (nothing of the batch is on disk), or a savepoint
    // statement failed: every caller not yet answered learns it.
    if (db.inTransaction) sql.rollback.run();
    rejectRest(error);
  }
}

/** SQLite's and the system's codes for a disk that cannot take a write, in the operator's words (no path: clients read them). */
const STORAGE_FAILURES: Array<[RegExp, string]> = [
  [/^(SQLITE_FULL|ENOSPC)$/, "the disk holding the data directory is full"],
  [/^EDQUOT$/, "the disk quota of the data directory is used up"],
  // SQLite reports a write the disk refused (ENOSPC among them) as an I/O error too.
  [/^(SQLITE_IOERR(_[A-Z_]+)?|EIO)$/, "the disk holding the data directory failed a read or write (an I/O error; is it full?)"],
];

/** Why `error` is the disk's refusal (full, failing), or null for any other error. */
export function storageFailureOf(error: unknown): StorageFailure | null {
  // Down the causes too: a write's (StorageUnavailableError, as the store gave it), a failed migration's.
  for (let at = error, depth = 0; at !== null && typeof at === "object" && depth < 5; at = (at as { cause?: unknown }).cause, depth++) {
    const code = (at as { code?: unknown }).code;
    const known = typeof code === "string" ? STORAGE_FAILURES.find(([pattern]) => pattern.test(code)) : undefined;
    if (known) return { code: code as string, reason: known[1] };
  }
  return null;
}
