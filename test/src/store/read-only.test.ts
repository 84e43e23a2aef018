import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openReadOnly, readDatabase } from "../../../src/store/read-only.ts";

const work = mkdtempSync(join(tmpdir(), "citadel-read-only-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let counter = 0;

/** A WAL database with one row, closed (so SQLite removed its -wal and -shm), in a directory of its own. */
function stoppedDatabase(name = "citadel.db"): { dir: string; path: string } {
  const dir = join(work, `d${counter++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  const db = new Database(path);
  db.run("PRAGMA journal_mode = WAL");
  db.run("CREATE TABLE t (v TEXT)");
  db.run("INSERT INTO t VALUES ('committed')");
  db.close();
  return { dir, path };
}

const listing = (dir: string) => readdirSync(dir).sort().map((name) => `${name} ${(statSync(join(dir, name)).mode & 0o777).toString(8)}`);
/** The values read through `via` while a "server" connection on `path` holds a write in its WAL. */
function readWhileInUse(path: string, via: string): string[] {
  const server = new Database(path);
  server.run("PRAGMA wal_autocheckpoint = 0");
  server.run("INSERT INTO t VALUES ('in the wal')");
  try {
    const db = openReadOnly(via);
    try {
      return values(db);
    } finally {
      db.close();
    }
  } finally {
    server.close();
  }
}

const values = (db: Database) => db.query<{ v: string }, []>("SELECT v FROM t ORDER BY rowid").all().map((r) => r.v);

describe("openReadOnly", () => {
  test("a stopped database is read and its directory left exactly as it was, whatever the file's mode", () => {
    const { dir, path } = stoppedDatabase();
    chmodSync(path, 0o640);
    const before = listing(dir);
    expect(before).toEqual(["citadel.db 640"]);
    const db = openReadOnly(path);
    expect(values(db)).toEqual(["committed"]);
    db.close();
    expect(listing(dir)).toEqual(before);
  });

  test("the reason for it: a plain read-only open leaves a -wal and a -shm with the database's mode", () => {
    const { dir, path } = stoppedDatabase();
    chmodSync(path, 0o640);
    const db = new Database(path, { readonly: true });
    values(db);
    db.close();
    expect(listing(dir)).toEqual(["citadel.db 640", "citadel.db-shm 640", "citadel.db-wal 640"]);
  });

  test("a database in use is read through its WAL: writes committed and not yet checkpointed are seen", () => {
    const { path } = stoppedDatabase();
    expect(readWhileInUse(path, path)).toEqual(["committed", "in the wal"]);
  });

  test("it cannot write", () => {
    const { path } = stoppedDatabase();
    const db = openReadOnly(path);
    expect(() => db.run("INSERT INTO t VALUES ('no')")).toThrow(/readonly/);
    db.close();
  });

  test("paths with characters that mean something in a URI", () => {
    for (const name of ["a?b.db", "c#d.db", "e%20f.db", "g h.db"]) {
      const { path } = stoppedDatabase(name);
      const db = openReadOnly(path);
      expect(values(db)).toEqual(["committed"]);
      db.close();
    }
  });

  test("through a symbolic link, a database in use is still read through its WAL (found beside the real file)", () => {
    const { dir, path } = stoppedDatabase("real.db");
    const link = join(dir, "citadel.db");
    symlinkSync(path, link);
    expect(readWhileInUse(path, link)).toEqual(["committed", "in the wal"]);
  });

  test("a hot rollback journal beside it: not read as immutable", () => {
    const { dir, path } = stoppedDatabase();
    writeFileSync(`${path}-journal`, "");
    const db = openReadOnly(path);
    expect(values(db)).toEqual(["committed"]);
    db.close();
    expect(readdirSync(dir)).toContain("citadel.db-journal");
  });

  test("readDatabase reads again, the usual way, when a writer appeared while it read immutably", async () => {
    const { dir, path } = stoppedDatabase();
    let server: Database | undefined;
    const seen: string[][] = [];
    const result = await readDatabase(path, (db) => {
      seen.push(values(db));
      if (!server) {
        // Citadel starts in the middle of the look and commits a write (still in its WAL).
        server = new Database(path);
        server.run("PRAGMA wal_autocheckpoint = 0");
        server.run("INSERT INTO t VALUES ('written meanwhile')");
      }
      return values(db);
    });
    server!.close();
    expect(seen).toEqual([["committed"], ["committed", "written meanwhile"]]);
    expect(result).toEqual(["committed", "written meanwhile"]);
    expect(readdirSync(dir).sort()).toEqual(["citadel.db"]); // the writer's close removed its WAL
  });

  test("readDatabase on a stopped database reads once and leaves nothing behind; an error from the read is the caller's", async () => {
    const { dir, path } = stoppedDatabase();
    let reads = 0;
    expect(await readDatabase(path, (db) => (reads++, values(db)))).toEqual(["committed"]);
    expect(reads).toBe(1);
    await expect(readDatabase(path, () => Promise.reject(new Error("the check failed")))).rejects.toThrow("the check failed");
    expect(readdirSync(dir)).toEqual(["citadel.db"]);
  });

  test("a missing file is an error, not a new database", () => {
    expect(() => openReadOnly(join(work, "nothing-here.db"))).toThrow();
    expect(readdirSync(work)).not.toContain("nothing-here.db");
  });
});
