/**
 * A restore must not move SOA serials backwards: secondaries hold the serial the zone reached
 * after the backup, and would not transfer the restored zone until the serial caught up.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dnsPlugin, dnsServiceOf } from "../../../plugins/dns/index.ts";
import { RESTORE_SERIAL_STEP } from "../../../plugins/dns/service.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const PREVIOUS = "citadel.db.before-restore-20260601T000000Z";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A data directory as `citadel restore` leaves it: the marker, and the previous database with these zones. */
function restoredDataDir(previous: Array<{ name: string; serial: number; deleted?: boolean }> | "none" | "damaged"): string {
  const dir = mkdtempSync(join(tmpdir(), "citadel-dns-restored-"));
  dirs.push(dir);
  if (previous === "damaged") writeFileSync(join(dir, PREVIOUS), "not a database, the reason for the restore");
  else if (previous !== "none") {
    const db = new Database(join(dir, PREVIOUS));
    db.run("CREATE TABLE dns_zones (id TEXT PRIMARY KEY, name TEXT, serial INTEGER, deleted_at INTEGER)");
    previous.forEach((z, i) => db.query("INSERT INTO dns_zones VALUES (?, ?, ?, ?)").run(`dnsz_${i}`, z.name, z.serial, z.deleted ? 1 : null));
    db.close();
  }
  writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ previous: previous === "none" ? null : PREVIOUS, restores: [] }));
  return dir;
}

async function restoredZones() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  for (const name of ["example.org", "example.net"]) expect((await c.send("POST", zones, owner, { json: { name } })).status).toBe(200);
  // As the backup had them.
  c.kernel.store.db.run("UPDATE dns_zones SET serial = 2026112403");
  const serial = async (name: string) => (await c.send("GET", `${zones}/${name}`, owner)).body.serial as number;
  return { c, serial };
}

describe("dns serials after a restore (found in review)", () => {
  test("each zone continues past the highest serial its name had in the database the restore replaced", async () => {
    const { c, serial } = await restoredZones();
    // example.org reached …08 after the backup; example.net was deleted and made again, its old serial higher still.
    const dir = restoredDataDir([
      { name: "example.org.", serial: 2026112408 },
      { name: "example.net.", serial: 2026112405 },
      { name: "example.net.", serial: 2026112420, deleted: true },
    ]);
    expect(await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(dir)).toBe(2);
    expect([await serial("example.org"), await serial("example.net")]).toEqual([2026112409, 2026112421]);
  });

  test("a zone the previous database did not know gets the next serial; no restore, no change", async () => {
    const { c, serial } = await restoredZones();
    const dns = dnsServiceOf(c.kernel as never);
    const plain = mkdtempSync(join(tmpdir(), "citadel-dns-plain-"));
    dirs.push(plain);
    expect(await dns.advanceSerialsAfterRestore(plain)).toBe(0);
    expect(await serial("example.org")).toBe(2026112403);
    expect(await dns.advanceSerialsAfterRestore(restoredDataDir([]))).toBe(2);
    expect(await serial("example.org")).toBe(2026112404);
  });

  test("without the previous database (a new machine, or it does not read) every serial jumps by 2^30", async () => {
    for (const previous of ["none", "damaged"] as const) {
      const { c, serial } = await restoredZones();
      await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(restoredDataDir(previous));
      expect([previous, await serial("example.org")]).toEqual([previous, 2026112403 + RESTORE_SERIAL_STEP]);
    }
  });

  test("the dns plugin's start moves the serials, before it serves or announces a zone", async () => {
    const { c, serial } = await restoredZones();
    const dir = restoredDataDir([{ name: "example.org.", serial: 2026112408 }]);
    const stop = await dnsPlugin.start!({ ...c.kernel, config: { ...c.config, data_dir: dir }, settings: c.config.dns, log: c.kernel.log } as never);
    await stop();
    expect(await serial("example.org")).toBe(2026112409);
  });

  test("once per restore: a start that fails before the marker goes does not move the serials again; a new restore does (found in review)", async () => {
    const { c, serial } = await restoredZones();
    const dns = dnsServiceOf(c.kernel as never);
    const dir = restoredDataDir("none");
    expect(await dns.advanceSerialsAfterRestore(dir)).toBe(2);
    expect(await dns.advanceSerialsAfterRestore(dir)).toBe(0);
    expect(await serial("example.org")).toBe(2026112403 + RESTORE_SERIAL_STEP);
    // `citadel restore` writes a new id each time: the next restore is carried over again.
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "another-restore", previous: null, restores: [] }));
    expect(await dns.advanceSerialsAfterRestore(dir)).toBe(2);
  });

  test("a record provider's own zone (mesh.internal.) continues past the serial it had before the restore too (found in review)", async () => {
    const { c } = await restoredZones();
    const db = c.kernel.store.db;
    db.run("DELETE FROM dns_provider_serials");
    db.query("INSERT INTO dns_provider_serials (provider, fingerprint, serial) VALUES ('mesh', 'as-backed-up', ?)").run(2026112403);
    const dir = restoredDataDir([{ name: "example.org.", serial: 2026112408 }]);
    const previous = new Database(join(dir, PREVIOUS));
    previous.run("CREATE TABLE dns_provider_serials (provider TEXT PRIMARY KEY, fingerprint TEXT, serial INTEGER)");
    previous.query("INSERT INTO dns_provider_serials VALUES ('mesh', 'after-the-backup', ?)").run(2026112412);
    previous.close();
    expect(await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(dir)).toBe(3);
    expect(db.query("SELECT serial FROM dns_provider_serials WHERE provider = 'mesh'").get()).toEqual({ serial: 2026112413 });
  });

  test("a provider the restored backup has no serial for continues from the previous database's (found in review)", async () => {
    const { c } = await restoredZones();
    const db = c.kernel.store.db;
    db.run("DELETE FROM dns_provider_serials");
    const dir = restoredDataDir([]);
    const previous = new Database(join(dir, PREVIOUS));
    previous.run("CREATE TABLE dns_provider_serials (provider TEXT PRIMARY KEY, fingerprint TEXT, serial INTEGER)");
    previous.query("INSERT INTO dns_provider_serials VALUES ('mesh', 'after-the-backup', ?)").run(2026112412);
    previous.close();
    await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(dir);
    expect(db.query("SELECT fingerprint, serial FROM dns_provider_serials WHERE provider = 'mesh'").get()).toEqual({ fingerprint: "", serial: 2026112413 });
  });

  test("each view of the catalog zone continues past the serial it had before the restore; one the backup has no row for continues from the previous database's (a secondary holds it as it holds a zone)", async () => {
    const { c } = await restoredZones();
    const db = c.kernel.store.db;
    db.query("INSERT INTO dns_catalog_serials (view, fingerprint, serial) VALUES ('192.0.2.53 fleet.', 'as-backed-up', ?)").run(1_750_000_000);
    const dir = restoredDataDir([]);
    const previous = new Database(join(dir, PREVIOUS));
    previous.run("CREATE TABLE dns_catalog_serials (view TEXT PRIMARY KEY, fingerprint TEXT, serial INTEGER)");
    previous.query("INSERT INTO dns_catalog_serials VALUES ('192.0.2.53 fleet.', 'after-the-backup', ?)").run(1_750_000_900);
    previous.query("INSERT INTO dns_catalog_serials VALUES ('192.0.2.54 fleet.', 'added-after-the-backup', ?)").run(1_750_000_500);
    previous.close();
    await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(dir);
    const rows = db.query<{ view: string; fingerprint: string; serial: number }, []>("SELECT view, fingerprint, serial FROM dns_catalog_serials ORDER BY view").all();
    // Past the highest either database had: the date's serial (2026-06-01) is ahead of both.
    expect(rows).toEqual([
      { view: "192.0.2.53 fleet.", fingerprint: "as-backed-up", serial: 2026060100 },
      { view: "192.0.2.54 fleet.", fingerprint: "", serial: 2026060100 },
    ]);
  });

  test("each view of the catalog zone continues past the highest serial any view had before the restore: its secondary may have held another view's, its key changed since the backup (found in review)", async () => {
    const { c } = await restoredZones();
    const db = c.kernel.store.db;
    db.query("INSERT INTO dns_catalog_serials (view, fingerprint, serial) VALUES ('192.0.2.53 k1.', 'as-backed-up', ?)").run(1_750_000_000);
    const dir = restoredDataDir([]);
    const previous = new Database(join(dir, PREVIOUS));
    previous.run("CREATE TABLE dns_catalog_serials (view TEXT PRIMARY KEY, fingerprint TEXT, serial INTEGER)");
    // After the backup, ns2 went over to k2, whose view reached a serial ahead of the date's.
    previous.query("INSERT INTO dns_catalog_serials VALUES ('192.0.2.53 k1.', '', ?)").run(1_750_000_900);
    previous.query("INSERT INTO dns_catalog_serials VALUES ('192.0.2.53 k2.', 'after-the-backup', ?)").run(2_100_000_000);
    previous.close();
    await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(dir);
    const rows = db.query<{ view: string; fingerprint: string; serial: number }, []>("SELECT view, fingerprint, serial FROM dns_catalog_serials ORDER BY view").all();
    expect(rows).toEqual([
      { view: "192.0.2.53 k1.", fingerprint: "as-backed-up", serial: 2_100_000_001 },
      { view: "192.0.2.53 k2.", fingerprint: "", serial: 2_100_000_001 },
    ]);
  });

  test("without the previous database a catalog view's serial jumps by 2^30 too", async () => {
    const { c } = await restoredZones();
    const db = c.kernel.store.db;
    db.query("INSERT INTO dns_catalog_serials (view, fingerprint, serial) VALUES ('192.0.2.53 fleet.', 'f', ?)").run(1_750_000_000);
    await dnsServiceOf(c.kernel as never).advanceSerialsAfterRestore(restoredDataDir("none"));
    expect(db.query("SELECT serial FROM dns_catalog_serials").get()).toEqual({ serial: 1_750_000_000 + RESTORE_SERIAL_STEP });
  });
});
