import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StorageUnavailableError } from "../../../src/errors.ts";
import { problemFor } from "../../../src/http/problem.ts";
import { openStore, storageFailureOf, StoreClosedError, type StorageFailure, type Store } from "../../../src/store/store.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function fileStore(): { store: Store; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "citadel-store-"));
  const path = join(dir, "citadel.db");
  const store = openStore({ path });
  store.db.run("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)");
  cleanups.push(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, path };
}

describe("store", () => {
  test("uses WAL, synchronous=FULL, foreign keys and a busy timeout", () => {
    const { store } = fileStore();
    expect(store.db.query("PRAGMA journal_mode").get()).toEqual({ journal_mode: "wal" });
    expect(store.db.query("PRAGMA synchronous").get()).toEqual({ synchronous: 2 });
    expect(store.db.query("PRAGMA foreign_keys").get()).toEqual({ foreign_keys: 1 });
    expect(store.db.query("PRAGMA busy_timeout").get()).toEqual({ timeout: 5000 });
  });

  test("creates the database and its WAL readable by the owner only", async () => {
    const { store, path } = fileStore();
    await store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('a')"));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
  });

  test("write resolves with the function's result once committed, visible to another connection", async () => {
    const { store, path } = fileStore();
    const id = await store.write((tx) => Number(tx.query("INSERT INTO items (name) VALUES (?) RETURNING id").get("lamp") && 1));
    expect(id).toBe(1);
    const other = new Database(path, { readonly: true });
    expect(other.query("SELECT name FROM items").all()).toEqual([{ name: "lamp" }]);
    other.close();
  });

  test("in a group commit, a failing write rolls back alone and rejects alone", async () => {
    const { store } = fileStore();
    const results = await Promise.allSettled([
      store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('a')")),
      store.write((tx) => {
        tx.run("INSERT INTO items (name) VALUES ('b')");
        tx.run("INSERT INTO items (name) VALUES ('a')"); // violates UNIQUE: this write must vanish whole
      }),
      store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('c')")),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toContain("UNIQUE");
    expect(store.db.query("SELECT name FROM items ORDER BY name").all()).toEqual([{ name: "a" }, { name: "c" }]);
  });

  test("writes requested in one tick are grouped into a single commit", async () => {
    const { store } = fileStore();
    // Every transaction statement the store runs, whichever way it runs them.
    const statements: string[] = [];
    const run = store.db.run.bind(store.db);
    store.db.run = ((sql: string, ...rest: unknown[]) => {
      statements.push(sql);
      return (run as (s: string, ...r: unknown[]) => unknown)(sql, ...rest);
    }) as typeof store.db.run;
    const prepare = store.db.prepare.bind(store.db);
    store.db.prepare = ((sql: string) => {
      const statement = prepare(sql);
      const execute = statement.run.bind(statement);
      statement.run = ((...args: unknown[]) => {
        statements.push(sql);
        return (execute as (...a: unknown[]) => unknown)(...args);
      }) as typeof statement.run;
      return statement;
    }) as typeof store.db.prepare;
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.write((tx) => tx.query("INSERT INTO items (name) VALUES (?)").run(`n${i}`))));
    expect(statements.filter((s) => s === "BEGIN IMMEDIATE")).toHaveLength(1);
    expect(statements.filter((s) => s === "COMMIT")).toHaveLength(1);
    expect(store.db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: 50 });
  });

  test("snapshot: the function's reads share one snapshot, and the transaction ends with it", async () => {
    const { store, path } = fileStore();
    await store.write((tx) => tx.query("INSERT INTO items (name) VALUES ('a')").run());
    const other = new Database(path);
    const count = () => (store.db.query("SELECT count(*) AS n FROM items").get() as { n: number }).n;
    const seen = store.snapshot(() => {
      expect(store.db.inTransaction).toBe(true);
      const before = count();
      other.run("INSERT INTO items (name) VALUES ('b')"); // another process commits meanwhile
      return [before, count()];
    });
    expect(seen).toEqual([1, 1]); // one snapshot: the other writer's row is not half-seen
    expect(store.db.inTransaction).toBe(false);
    expect(count()).toBe(2);
    other.close();
  });

  test("snapshot: a throw still ends the transaction; a direct write inside commits as it would alone; inside a write it is the write's", async () => {
    const { store } = fileStore();
    expect(() => store.snapshot(() => { throw new Error("boom"); })).toThrow("boom");
    expect(store.db.inTransaction).toBe(false);
    store.snapshot(() => store.db.query("INSERT INTO items (name) VALUES ('direct')").run());
    expect(store.db.inTransaction).toBe(false);
    expect(store.db.query("SELECT name FROM items").all()).toEqual([{ name: "direct" }]);
    // Its statements are the store's: a batch afterwards still opens and commits its own.
    await store.write((tx) => store.snapshot(() => tx.query("INSERT INTO items (name) VALUES ('in write')").run()));
    expect(store.db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: 2 });
  });

  test("snapshot: a direct write that fails at commit fails the call, and leaves no transaction open", async () => {
    const { store } = fileStore();
    store.db.run("CREATE TABLE children (parent INTEGER REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED)");
    expect(() => store.snapshot(() => store.db.query("INSERT INTO children (parent) VALUES (42)").run())).toThrow("FOREIGN KEY");
    expect(store.db.inTransaction).toBe(false);
    expect(store.db.query("SELECT count(*) AS n FROM children").get()).toEqual({ n: 0 });
    await store.write((tx) => tx.query("INSERT INTO items (name) VALUES ('after')").run()); // the store goes on
    expect(store.db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: 1 });
  });

  test("snapshot: when the commit fails, the function's promise is still observed: its later rejection is nobody's unhandled one", async () => {
    const { store } = fileStore();
    store.db.run("CREATE TABLE children (parent INTEGER REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED)");
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      let rejectLater!: (error: Error) => void;
      expect(() =>
        store.snapshot(() => {
          store.db.query("INSERT INTO children (parent) VALUES (42)").run();
          return new Promise((_, reject) => (rejectLater = reject));
        }),
      ).toThrow("FOREIGN KEY");
      rejectLater(new Error("the route failed afterwards"));
      await Bun.sleep(0);
      await Bun.sleep(0);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("snapshot: a transaction SQLite ended under the function (OR ROLLBACK, disk full) fails the call", () => {
    const { store } = fileStore();
    store.db.run("INSERT INTO items (id, name) VALUES (1, 'a')");
    const call = () =>
      store.snapshot(() => {
        store.db.query("UPDATE items SET name = 'spent' WHERE id = 1").run();
        try {
          store.db.query("INSERT OR ROLLBACK INTO items (id, name) VALUES (1, 'dup')").run();
        } catch {
          // caught by the caller, as a route's error mapping would
        }
        return "looks fine";
      });
    expect(call).toThrow("rolled back");
    expect(store.db.inTransaction).toBe(false);
    expect(store.db.query("SELECT name FROM items").get()).toEqual({ name: "a" });
  });

  test("an async function is refused (it would leak another caller's writes into its transaction)", async () => {
    const { store } = fileStore();
    // The type allows a Promise-returning function (T = Promise<...>); the runtime guard refuses it.
    await expect(store.write(async (tx) => tx.run("INSERT INTO items (name) VALUES ('x')"))).rejects.toThrow(/must be synchronous/);
    expect(store.db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: 0 });
  });

  test("close commits what is queued, and later writes are refused", async () => {
    const { store, path } = fileStore();
    const pending = store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('last')"));
    store.close();
    await pending;
    await expect(store.write(() => 1)).rejects.toBeInstanceOf(StoreClosedError);
    const other = new Database(path, { readonly: true });
    expect(other.query("SELECT name FROM items").all()).toEqual([{ name: "last" }]);
    other.close();
  });

  test("ping answers while open", () => {
    const { store } = fileStore();
    expect(store.ping()).toBe(true);
  });
});

describe("store failure paths", () => {
  test("a write that makes SQLite abort the whole transaction fails the batch, and nothing of it is kept", async () => {
    const { store } = fileStore();
    store.db.run("CREATE TABLE strict_items (id INTEGER PRIMARY KEY ON CONFLICT ROLLBACK)");
    const results = await Promise.allSettled([
      store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('before')")),
      store.write((tx) => {
        tx.run("INSERT INTO strict_items VALUES (1)");
        tx.run("INSERT INTO strict_items VALUES (1)"); // ON CONFLICT ROLLBACK ends the transaction
      }),
      store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('after')")),
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    expect(store.db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: 0 });
    expect(store.db.inTransaction).toBe(false);
    await store.write((tx) => tx.run("INSERT INTO items (name) VALUES ('later')")); // the store still works
  });

  test("a busy database (another process holds the write lock) rejects every write of the batch", async () => {
    const { store, path } = fileStore();
    const other = new Database(path);
    other.run("PRAGMA busy_timeout = 0");
    other.run("BEGIN IMMEDIATE");
    const busy = openStore({ path, busyTimeoutMs: 50 });
    const results = await Promise.allSettled([busy.write(() => 1), busy.write(() => 2)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    other.run("ROLLBACK");
    other.close();
    expect(await busy.write(() => 3)).toBe(3);
    busy.close();
    void store;
  });

  test("more writes than maxBatch are split into several transactions, all committed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-store-"));
    const store = openStore({ path: join(dir, "db"), maxBatch: 7 });
    store.db.run("CREATE TABLE n (i INTEGER)");
    await Promise.all(Array.from({ length: 30 }, (_, i) => store.write((tx) => tx.query("INSERT INTO n VALUES (?)").run(i))));
    expect(store.db.query("SELECT count(*) AS c FROM n").get()).toEqual({ c: 30 });
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

/**
 * A disk that cannot take a write (found in review: SQLITE_FULL reached clients as a 500
 * internal_error and was logged with a stack, as a bug, at every request). SQLite's own
 * max_page_count makes a real SQLITE_FULL: the database "is full" at the size it has.
 */
describe("a full disk", () => {
  function fullStore() {
    const dir = mkdtempSync(join(tmpdir(), "citadel-store-full-"));
    let now = 0;
    const reported: StorageFailure[] = [];
    const store = openStore({ path: join(dir, "citadel.db"), onStorageFailure: (failure) => reported.push(failure), now: () => now });
    store.db.run("CREATE TABLE items (id INTEGER PRIMARY KEY, blob BLOB)");
    cleanups.push(() => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const fill = () => store.db.run(`PRAGMA max_page_count = ${store.db.query<{ page_count: number }, []>("PRAGMA page_count").get()!.page_count}`);
    return { store, reported, fill, advance: (ms: number) => void (now += ms) };
  }
  const big = (tx: Database) => tx.run("INSERT INTO items (blob) VALUES (randomblob(65536))");

  test("a write it refuses is a StorageUnavailableError (503 unavailable) naming the cause, no path; the failure is reported once, then once a minute", async () => {
    const { store, reported, fill, advance } = fullStore();
    fill();
    const flood = await Promise.allSettled(Array.from({ length: 20 }, () => store.write(big)));
    for (const outcome of flood) {
      expect(outcome.status).toBe("rejected");
      const error = (outcome as PromiseRejectedResult).reason;
      expect(error).toBeInstanceOf(StorageUnavailableError);
      expect(error.message).toBe("Citadel cannot store the change: the disk holding the data directory is full.");
      expect(problemFor(error)).toEqual({ status: 503, code: "unavailable", detail: "Citadel cannot store the change: the disk holding the data directory is full." });
    }
    expect(reported).toEqual([{ code: "SQLITE_FULL", reason: "the disk holding the data directory is full" }]);

    await expect(store.write(big)).rejects.toThrow(StorageUnavailableError);
    advance(59_999);
    await expect(store.write(big)).rejects.toThrow(StorageUnavailableError);
    expect(reported).toHaveLength(1);
    advance(1);
    await expect(store.write(big)).rejects.toThrow(StorageUnavailableError);
    expect(reported).toHaveLength(2);
  });

  test("other errors reach the caller as they were; a write that fits still commits", async () => {
    const { store, reported, fill } = fullStore();
    await store.write(big);
    fill();
    await expect(store.write((tx) => tx.run("INSERT INTO nowhere VALUES (1)"))).rejects.toThrow(/no such table/);
    await expect(store.write((tx) => tx.run("DELETE FROM items"))).resolves.toBeDefined(); // frees pages
    expect(reported).toEqual([]);
  });

  test("storageFailureOf: SQLite's and the system's codes for a disk that cannot take a write, and nothing else", () => {
    const withCode = (code: string) => Object.assign(new Error("x"), { code });
    expect(storageFailureOf(withCode("SQLITE_IOERR_WRITE"))).toEqual({ code: "SQLITE_IOERR_WRITE", reason: "the disk holding the data directory failed a read or write (an I/O error; is it full?)" });
    expect(storageFailureOf(withCode("ENOSPC"))?.reason).toBe("the disk holding the data directory is full");
    expect(storageFailureOf(new StorageUnavailableError("given to a caller", { cause: withCode("SQLITE_FULL") }))?.code).toBe("SQLITE_FULL");
    expect(storageFailureOf(new Error("migration x failed and was rolled back", { cause: withCode("SQLITE_FULL") }))?.code).toBe("SQLITE_FULL");
    for (const other of [withCode("SQLITE_CONSTRAINT_UNIQUE"), withCode("SQLITE_BUSY"), new Error("plain"), null, "text"]) expect(storageFailureOf(other)).toBeNull();
  });
});
