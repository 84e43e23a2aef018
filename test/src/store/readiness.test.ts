/**
 * /readyz and a full disk: ready while the disk takes writes, not ready from the first write it
 * refuses until one commits again — found by a probe write when no traffic brings one.
 * SQLite's max_page_count makes a real SQLITE_FULL (the database "is full" at its size).
 */
import { afterEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelWriteProbe, PROBE_INTERVAL_MS, storeReadiness } from "../../../src/store/readiness.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";
import { openStore } from "../../../src/store/store.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function fullableStore() {
  const dir = mkdtempSync(join(tmpdir(), "citadel-readiness-"));
  const store = openStore({ path: join(dir, "citadel.db") });
  store.db.run("CREATE TABLE items (id INTEGER PRIMARY KEY, blob BLOB)");
  cleanups.push(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const pages = () => store.db.query<{ page_count: number }, []>("PRAGMA page_count").get()!.page_count;
  return {
    store,
    fill: () => store.db.run(`PRAGMA max_page_count = ${pages()}`),
    free: () => store.db.run(`PRAGMA max_page_count = ${pages() + 1000}`),
  };
}
const big = (tx: Database) => void tx.run("INSERT INTO items (blob) VALUES (randomblob(65536))");
const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

test("ready until the disk refuses a write; the probe asks again at most once an interval, and the first write that commits makes it ready", async () => {
  const { store, fill, free } = fullableStore();
  let now = 0;
  let probes = 0;
  const problem = storeReadiness(
    store,
    (tx) => {
      probes++;
      big(tx);
    },
    () => now,
  );
  expect(problem()).toBeNull();
  expect(probes).toBe(0); // a healthy store is not probed

  fill();
  await expect(store.write(big)).rejects.toThrow(/the disk holding the data directory is full/);
  expect(problem()).toBe("cannot write: the disk holding the data directory is full");
  await settle();
  expect(probes).toBe(1);
  expect(problem()).toBe("cannot write: the disk holding the data directory is full"); // the probe was refused too
  now += PROBE_INTERVAL_MS - 1;
  problem();
  await settle();
  expect(probes).toBe(1);

  free(); // the operator freed space; no request comes
  now += 1;
  expect(problem()).not.toBeNull(); // this check's probe goes out now; its answer is for the next
  await settle();
  expect(probes).toBe(2);
  expect(problem()).toBeNull();
});

test("only the probe answers a refusal: a request's write that commits may have written no page (found in review); a write failing for another reason is no refusal", async () => {
  const { store, fill, free } = fullableStore();
  let probes = 0;
  const problem = storeReadiness(store, (tx) => void (probes++, big(tx)), () => 0);
  await expect(store.write((tx) => tx.run("INSERT INTO nowhere VALUES (1)"))).rejects.toThrow(/no such table/);
  expect(problem()).toBeNull();

  fill();
  await expect(store.write(big)).rejects.toThrow(/full/);
  // A write rolled back to its savepoint, and one that reads only, commit together on the full disk.
  store.db.run("INSERT INTO items (blob) VALUES (x'00')");
  const rolledBack = store.write((tx) => {
    tx.run("UPDATE items SET blob = x'01'");
    throw new Error("refused by the caller");
  });
  const readOnly = store.write((tx) => tx.query("SELECT 1").get());
  await expect(rolledBack).rejects.toThrow("refused by the caller");
  await readOnly;
  await store.write((tx) => tx.run("UPDATE items SET blob = blob")); // a row set to what it was
  expect(problem()).toBe("cannot write: the disk holding the data directory is full"); // and the probe goes out, refused
  await settle();
  expect(problem()).not.toBeNull();

  free();
  await store.write(big); // a request's write: fits now, still no answer to the refusal
  expect(problem()).not.toBeNull(); // within the interval: no probe yet
  expect(probes).toBe(1);
});

test("the kernel's probe changes bytes (a row set to what it was writes nothing, and commits on a full disk too: found in review)", async () => {
  const { store } = fullableStore();
  migrate(store.db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const walBytes = () => statSync(`${store.path}-wal`).size;
  const probes = () => store.db.query<{ probes: number }, []>("SELECT probes FROM write_probe").get()?.probes ?? 0;
  for (let i = 1; i <= 3; i++) {
    store.db.run("PRAGMA wal_checkpoint(TRUNCATE)");
    await store.write(kernelWriteProbe);
    expect(probes()).toBe(i);
    expect(walBytes()).toBeGreaterThan(0); // a page went to the disk
  }
});

test("a commit that changed no row does not make it ready: it wrote nothing, and commits on a full disk", async () => {
  const { store, fill } = fullableStore();
  const problem = storeReadiness(store, () => {}, () => 0);
  fill();
  await expect(store.write(big)).rejects.toThrow(/full/);
  await store.write((tx) => tx.run("DELETE FROM items WHERE id = -1")); // a sweep that found nothing
  expect(problem()).toBe("cannot write: the disk holding the data directory is full");
});
