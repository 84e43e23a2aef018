import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { migrate, MigrationError, type MigrationSet } from "../../../src/store/migrate.ts";

const kernel: MigrationSet = {
  owner: "kernel",
  migrations: [
    { id: "0001_a", up: "CREATE TABLE a (x INTEGER)" },
    { id: "0002_b", up: "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);" },
  ],
};
const plugin: MigrationSet = { owner: "dns", migrations: [{ id: "0001_zones", up: "CREATE TABLE zones (name TEXT)" }] };

const tables = (db: Database) => db.query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all().map((r) => r.name);

describe("migrate", () => {
  test("applies kernel then plugins, in order, and records each", () => {
    const db = new Database(":memory:");
    const applied = migrate(db, [kernel, plugin], () => 1000);
    expect(applied).toEqual([
      { owner: "kernel", id: "0001_a" },
      { owner: "kernel", id: "0002_b" },
      { owner: "dns", id: "0001_zones" },
    ]);
    expect(tables(db)).toEqual(["a", "b", "citadel_migrations", "zones"]);
    expect(db.query("SELECT owner, id, applied_at FROM citadel_migrations ORDER BY rowid").all()).toEqual([
      { owner: "kernel", id: "0001_a", applied_at: 1000 },
      { owner: "kernel", id: "0002_b", applied_at: 1000 },
      { owner: "dns", id: "0001_zones", applied_at: 1000 },
    ]);
  });

  test("is idempotent: a second run applies nothing and changes nothing", () => {
    const db = new Database(":memory:");
    migrate(db, [kernel, plugin]);
    expect(migrate(db, [kernel, plugin])).toEqual([]);
    expect(db.query("SELECT count(*) AS n FROM a").get()).toEqual({ n: 1 });
  });

  test("applies only what is new", () => {
    const db = new Database(":memory:");
    migrate(db, [{ owner: "kernel", migrations: kernel.migrations.slice(0, 1) }]);
    expect(migrate(db, [kernel])).toEqual([{ owner: "kernel", id: "0002_b" }]);
  });

  test("a failing migration is rolled back, stops the run, and is not recorded", () => {
    const db = new Database(":memory:");
    const broken: MigrationSet = {
      owner: "kernel",
      migrations: [...kernel.migrations, { id: "0003_broken", up: "CREATE TABLE c (z INTEGER); INSERT INTO nowhere VALUES (1);" }],
    };
    expect(() => migrate(db, [broken, plugin])).toThrow(/migration kernel\/0003_broken failed and was rolled back: no such table: nowhere/);
    expect(tables(db)).not.toContain("c"); // the half of it that worked is gone too
    expect(tables(db)).not.toContain("zones"); // and nothing after it ran
    expect(db.inTransaction).toBe(false);
    expect(db.query("SELECT id FROM citadel_migrations").all()).toEqual([{ id: "0001_a" }, { id: "0002_b" }]);
  });

  test("a function migration that throws is rolled back too", () => {
    const db = new Database(":memory:");
    const set: MigrationSet = {
      owner: "kernel",
      migrations: [
        {
          id: "0001_fn",
          up: (d) => {
            d.run("CREATE TABLE t (x)");
            throw new Error("data migration failed");
          },
        },
      ],
    };
    expect(() => migrate(db, [set])).toThrow(MigrationError);
    expect(tables(db)).toEqual(["citadel_migrations"]);
  });

  test("refuses a database written by a newer version", () => {
    const db = new Database(":memory:");
    migrate(db, [kernel]);
    const older: MigrationSet = { owner: "kernel", migrations: kernel.migrations.slice(0, 1) };
    expect(() => migrate(db, [older])).toThrow(/written by a newer version of Citadel \(it has migration kernel\/0002_b/);
  });

  test("refuses a database with migrations of a plugin this binary lacks", () => {
    const db = new Database(":memory:");
    migrate(db, [kernel, plugin]);
    expect(() => migrate(db, [kernel])).toThrow(/migration dns\/0001_zones, unknown to this one/);
  });

  test("refuses an applied SQL migration that was edited", () => {
    const db = new Database(":memory:");
    migrate(db, [plugin]);
    const edited: MigrationSet = { owner: "dns", migrations: [{ id: "0001_zones", up: "CREATE TABLE zones (name TEXT, ttl INTEGER)" }] };
    expect(() => migrate(db, [edited])).toThrow(/dns\/0001_zones was changed after it was applied/);
  });

  test("refuses a migration inserted before an applied one", () => {
    const db = new Database(":memory:");
    const later = { id: "0005_later", up: "CREATE TABLE later (x)" };
    migrate(db, [{ owner: "kernel", migrations: [later] }]);
    const inserted: MigrationSet = { owner: "kernel", migrations: [{ id: "0003_inserted", up: "CREATE TABLE ins (x)" }, later] };
    expect(() => migrate(db, [inserted])).toThrow(/kernel\/0003_inserted is older than the applied kernel\/0005_later/);
  });

  test("refuses a migration list that is not strictly increasing", () => {
    const db = new Database(":memory:");
    const unordered: MigrationSet = { owner: "kernel", migrations: [kernel.migrations[1]!, kernel.migrations[0]!] };
    expect(() => migrate(db, [unordered])).toThrow(/not in strictly increasing order/);
    expect(tables(db)).toEqual([]); // checked before touching the database
  });
});
