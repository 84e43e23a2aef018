import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_KEY_LENGTH, ReadMemo, type ReadMemoOptions } from "../../../src/store/read-memo.ts";
import { openStore } from "../../../src/store/store.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A store on a real file with one role row, a memo over it, and a counted read of the role. */
function setup(options: Omit<ReadMemoOptions, "now"> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "citadel-memo-"));
  const path = join(dir, "citadel.db");
  const store = openStore({ path });
  store.db.run("CREATE TABLE roles (user TEXT PRIMARY KEY, role TEXT NOT NULL)");
  store.db.run("CREATE TABLE other (id INTEGER PRIMARY KEY)");
  store.db.run("INSERT INTO roles VALUES ('ada', 'viewer')");
  cleanups.push(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let clock = 0;
  const memo = new ReadMemo(store, { ...options, now: () => clock });
  let reads = 0;
  const role = (user = "ada") =>
    memo.get("role", user, () => {
      reads++;
      return store.db.query<{ role: string }, [string]>("SELECT role FROM roles WHERE user = ?").get(user)?.role ?? null;
    });
  return { store, path, memo, role, reads: () => reads, advance: (ms: number) => (clock += ms) };
}

describe("ReadMemo", () => {
  test("answers from memory while the database is unchanged", () => {
    const { role, reads } = setup();
    expect([role(), role(), role()]).toEqual(["viewer", "viewer", "viewer"]);
    expect(reads()).toBe(1);
  });

  test("forgets everything after any write through the store, even to another table", async () => {
    const { store, role, reads } = setup();
    role();
    await store.write((tx) => tx.run("INSERT INTO other (id) VALUES (1)"));
    role();
    expect(reads()).toBe(2);
    await store.write((tx) => tx.run("UPDATE roles SET role = 'owner'"));
    expect(role()).toBe("owner");
  });

  test("sees a direct write and a write made by a trigger", () => {
    const { store, role } = setup();
    store.db.run("CREATE TABLE log (n INTEGER)");
    store.db.run("CREATE TRIGGER demote AFTER INSERT ON log BEGIN UPDATE roles SET role = 'none'; END");
    expect(role()).toBe("viewer");
    store.db.run("INSERT INTO log VALUES (1)"); // the trigger demotes
    expect(role()).toBe("none");
    store.db.run("UPDATE roles SET role = 'admin'");
    expect(role()).toBe("admin");
  });

  test("inside a write that changed rows, reads are not remembered, so a rolled-back change is never served", async () => {
    const { store, role, reads } = setup();
    expect(role()).toBe("viewer");
    const failing = store.write((tx) => {
      tx.run("UPDATE roles SET role = 'owner'");
      expect(role()).toBe("owner"); // the transaction's own view
      expect(role()).toBe("owner");
      throw new Error("the write fails");
    });
    await expect(failing).rejects.toThrow("the write fails");
    const during = reads();
    expect(during).toBe(3); // both reads in the transaction went to the database
    expect(role()).toBe("viewer");
    expect(role()).toBe("viewer");
    expect(reads()).toBe(during + 1);
  });

  test("in a read snapshot it answers from memory until the snapshot itself writes", () => {
    const { store, role, reads } = setup();
    role();
    store.snapshot(() => {
      expect(role()).toBe("viewer");
      expect(reads()).toBe(1);
      store.db.run("UPDATE roles SET role = 'editor'"); // a direct write, committed with the snapshot
      expect(role()).toBe("editor");
      expect(role()).toBe("editor");
    });
    expect(reads()).toBe(3);
    expect(role()).toBe("editor");
    expect(reads()).toBe(4);
  });

  test("remembers another process's view no longer than maxAgeMs", () => {
    const { path, role, advance } = setup({ maxAgeMs: 1000 });
    expect(role()).toBe("viewer");
    const other = new Database(path);
    other.run("UPDATE roles SET role = 'admin'");
    other.close();
    advance(999);
    expect(role()).toBe("viewer"); // this connection changed nothing: still remembered
    advance(1);
    expect(role()).toBe("admin");
  });

  test("starts over beyond maxEntries", () => {
    const { store, role, reads } = setup({ maxEntries: 2 });
    store.db.run("INSERT INTO roles VALUES ('bob', 'editor'), ('cy', 'owner')");
    role("ada");
    role("bob");
    role("cy"); // the third answer clears the first two
    role("cy");
    expect(reads()).toBe(3);
    role("ada");
    expect(reads()).toBe(4);
  });

  test("never holds more than maxBytes, and does not remember an answer heavier than maxBytesEach", () => {
    const { memo } = setup({ maxBytes: 100, maxBytesEach: 60, bytesOf: (answer) => (answer as Uint8Array | null)?.byteLength ?? 0 });
    let reads = 0;
    const blob = (key: string, bytes: number) =>
      memo.get("blob", key, () => {
        reads++;
        return new Uint8Array(bytes);
      });
    blob("a", 40);
    blob("b", 40);
    expect(memo.bytes).toBe(80);
    blob("c", 40); // 120 > 100: starts over with c alone
    expect(memo.bytes).toBe(40);
    blob("c", 40);
    expect(reads).toBe(3);
    blob("a", 40);
    expect(reads).toBe(4);
    blob("huge", 61); // over maxBytesEach: read, not remembered, and nothing else forgotten
    blob("huge", 61);
    expect(reads).toBe(6);
    expect(memo.bytes).toBe(80);
    blob("a", 40);
    expect(reads).toBe(6);
  });

  test("a key longer than MAX_KEY_LENGTH (a caller's text) is read each time, never remembered: maxEntries bounds the keys' memory too", () => {
    const { memo } = setup();
    let reads = 0;
    const lookUp = (key: string) =>
      memo.get("secret", key, () => {
        reads++;
        return null;
      });
    const long = "N".repeat(MAX_KEY_LENGTH + 1);
    lookUp(long);
    lookUp(long);
    expect(reads).toBe(2);
    const longest = "N".repeat(MAX_KEY_LENGTH);
    lookUp(longest);
    lookUp(longest);
    expect(reads).toBe(3);
  });

  test("a key of one kind never answers for another kind, whatever text it holds", () => {
    const { memo } = setup();
    // A caller's text (a workspace id from a URL) made to look like the key of another fact.
    expect(memo.get("workspace", "role ws_1 usr_1", () => null)).toBeNull();
    expect(memo.get("workspace role", JSON.stringify(["ws_1", "usr_1"]), () => "viewer")).toBe("viewer");
    expect(memo.get("workspace", "role ws_1 usr_1", () => "read again")).toBeNull();
    expect(memo.get("workspace", JSON.stringify(["ws_1", "usr_1"]), () => "its own")).toBe("its own");
  });

  test("a failed read is not remembered", () => {
    const { memo } = setup();
    let attempts = 0;
    const flaky = () =>
      memo.get("flaky", "", () => {
        if (++attempts === 1) throw new Error("busy");
        return "fine";
      });
    expect(flaky).toThrow("busy");
    expect(flaky()).toBe("fine");
    expect(flaky()).toBe("fine");
    expect(attempts).toBe(2);
  });
});

describe("store.changeStamp", () => {
  test("is null inside a transaction the store did not begin", () => {
    const { store } = setup();
    expect(store.changeStamp()).not.toBeNull();
    store.db.run("BEGIN");
    try {
      expect(store.changeStamp()).toBeNull();
    } finally {
      store.db.run("ROLLBACK");
    }
  });

  test("does not move for rows left out of it (audit events), and moves for everything else, in the same write too", async () => {
    const { store, role, reads } = setup();
    store.db.run("CREATE TABLE log (n INTEGER)");
    const append = (tx: typeof store.db) => store.leaveOutOfChangeStamp(tx, tx.query("INSERT INTO log VALUES (1)").run().changes);
    role();
    await Promise.all([store.write(append), store.write(append)]);
    const stamp = store.changeStamp();
    expect(role()).toBe("viewer");
    expect(reads()).toBe(1); // two batches of log rows: nothing forgotten
    await Promise.all([store.write(append), store.write((tx) => tx.run("UPDATE roles SET role = 'owner'"))]);
    expect(store.changeStamp()).not.toBe(stamp);
    expect(role()).toBe("owner");
  });

  test("a row left out still moves it through what a trigger on it changed, and one left out on another connection does not count", () => {
    const { store, path, role } = setup();
    store.db.run("CREATE TABLE log (n INTEGER)");
    store.db.run("CREATE TRIGGER demote AFTER INSERT ON log BEGIN UPDATE roles SET role = 'none'; END");
    expect(role()).toBe("viewer");
    store.leaveOutOfChangeStamp(store.db, store.db.query("INSERT INTO log VALUES (1)").run().changes); // 1: the trigger's row is not in it
    expect(role()).toBe("none");
    const other = new Database(path);
    try {
      const before = store.changeStamp();
      store.db.run("UPDATE roles SET role = 'admin'");
      store.leaveOutOfChangeStamp(other, 1); // not the store's connection: must not cancel the change above
      expect(store.changeStamp()).not.toBe(before);
      expect(role()).toBe("admin");
    } finally {
      other.close();
    }
  });

  test("moves with every changed row and not with reads", () => {
    const { store } = setup();
    const before = store.changeStamp();
    store.db.query("SELECT * FROM roles").all();
    expect(store.changeStamp()).toBe(before);
    store.db.run("INSERT INTO other (id) VALUES (7)");
    expect(store.changeStamp()).not.toBe(before);
  });
});
