/**
 * Restoring into a stopped instance's data directory, and verifying offline: a running
 * server is detected, the old database is kept aside, modes are right, and a bad backup
 * changes nothing.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Keyring } from "../../../src/crypto/keyring.ts";
import { generateRootKey, rootKeyId, rootKeyVerifier, writeRootKeyFile } from "../../../src/crypto/root-key.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate, type MigrationSet } from "../../../src/store/migrate.ts";
import { openStore } from "../../../src/store/store.ts";
import { BackupError } from "../../../plugins/backup/errors.ts";
import { backupPlugin } from "../../../plugins/backup/index.ts";
import { ConfigError } from "../../../src/config/error.ts";
import { DATA_DIRECTORY_LOCK, lockDataDirectory } from "../../../src/file-lock.ts";
import { hashFile, sealBackup } from "../../../plugins/backup/format.ts";
import { newRootKeyBackupKeys } from "../../../plugins/backup/keys.ts";
import { readSnapshotFacts, type Manifest } from "../../../plugins/backup/manifest.ts";
import { databaseInUse, refuseDuringRestore, restoreBackup, settleInterruptedRestore, verifyBackup } from "../../../plugins/backup/restore.ts";
import { RESTORE_MARKER } from "../../../plugins/backup/service.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-backup-restore-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string) => join(root, `${counter++}-${name}`);
/** A data directory as Citadel makes one: mode 0700. */
const dataDirectory = (name: string) => {
  const path = fresh(name);
  mkdirSync(path, { mode: 0o700 });
  return path;
};
const NOW = () => Date.UTC(2026, 5, 1, 12, 0, 0);
const realRename = fs.renameSync;

const rootKey = generateRootKey();
/** The migrations "this Citadel" knows in these tests: the kernel's, as the backups below have. */
const KNOWN: MigrationSet[] = [{ owner: "kernel", migrations: kernelMigrations }];

/** A backup of a small Citadel-like database: a keyring under `rootKey` and a table of rows. */
async function makeBackup(rows: number, contents: "database" | "not a database" | "from a newer Citadel" = "database", randomMiB = 0): Promise<string> {
  const plain = fresh("source.db");
  if (contents !== "not a database") {
    const db = new Database(plain, { create: true });
    migrate(db, [{ owner: "kernel", migrations: kernelMigrations }]);
    db.transaction(() => Keyring.initialize(db, rootKey, "key_file", NOW()))();
    db.run("CREATE TABLE rows (n INTEGER)");
    for (let i = 0; i < rows; i++) db.query("INSERT INTO rows VALUES (?)").run(i);
    for (let i = 0; i < randomMiB; i++) db.query("INSERT INTO rows VALUES (randomblob(1048576))").run();
    if (contents === "from a newer Citadel") db.run("INSERT INTO citadel_migrations (owner, id, checksum, applied_at) VALUES ('kernel', '9999_from_the_future', NULL, 0)");
    db.close();
  } else writeFileSync(plain, Buffer.alloc(8192, 7));
  const facts = contents === "database" ? readSnapshotFacts(new Database(plain, { readonly: true })) : { instance_id: null, root_key_id: null, migrations: {}, audit_head: null };
  const manifest: Manifest = { created_at: new Date(NOW()).toISOString(), reason: "on_demand", citadel: { version: "1.2.3", commit: "abc" }, ...facts, database: await hashFile(plain) };
  const file = fresh("x.backup");
  await sealBackup(plain, file, newRootKeyBackupKeys(rootKey), manifest, 1024);
  return file;
}

const rowsIn = (path: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM rows").get()!.n;
  } finally {
    db.close();
  }
};

describe("databaseInUse", () => {
  test("true while a server (any connection) has the database open, false once it is closed", () => {
    const path = fresh("live.db");
    expect(databaseInUse(path)).toBe(false); // no file
    const store = openStore({ path });
    store.db.run("CREATE TABLE t (x)");
    expect(databaseInUse(path)).toBe(true);
    store.close();
    expect(databaseInUse(path)).toBe(false);
    expect(databaseInUse(path)).toBe(false); // the probe itself leaves no lock behind
  });
});

describe("restore", () => {
  test("opens the backup with the configured key file (seal.key_file elsewhere), and does not warn about a root.key it never uses (found in review)", async () => {
    const dataDir = dataDirectory("configured-key");
    const backup = await makeBackup(2);
    const keyFile = fresh("elsewhere.key");
    writeRootKeyFile(keyFile, rootKey);
    const config = fresh("citadel.toml");
    writeFileSync(config, `data_dir = "${dataDir}"\n[seal]\nkey_file = "${keyFile}"\n`, { mode: 0o600 });
    const restore = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--config", config, "restore", backup], { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(restore.stdout).text(), new Response(restore.stderr).text(), restore.exited]);
    expect([code, stderr]).toEqual([0, ""]);
    expect(stdout).toContain(`Next: start Citadel, then run  citadel audit verify --config ${config}`);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(2);
  });

  test("into a new data directory: created 0700, the database 0600, a marker for the next start", async () => {
    const file = await makeBackup(10);
    const dataDir = join(fresh("new"), "data");
    const result = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: false, now: NOW });
    expect(result.previous).toBeNull();
    expect(result.database).toBe(join(dataDir, "citadel.db"));
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(result.database).mode & 0o777).toBe(0o600);
    expect(rowsIn(result.database)).toBe(10);
    expect(JSON.parse(readFileSync(join(dataDir, RESTORE_MARKER), "utf8"))).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      previous: null,
      restores: [{ backup: file.split("/").at(-1), created_at: "2026-06-01T12:00:00.000Z", audit_head_seq: null, previous: null }],
    });
    expect(statSync(join(dataDir, RESTORE_MARKER)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", DATA_DIRECTORY_LOCK, RESTORE_MARKER]);
  });

  // Changing user needs root: CI runs as root, so there the test always runs. A child process
  // restores, since the one that restores stays the directory's owner for good.
  test.skipIf(process.getuid?.() !== 0 && process.env.CI !== "true")(
    "run as root into a directory another user owns, restore acts as that user: a planted link leads no write of root's elsewhere, and the files are the owner's (found in review)",
    async () => {
      const owner = 4321;
      const dataDir = dataDirectory("owned");
      const backup = join(dataDir, "x.backup");
      writeFileSync(backup, readFileSync(await makeBackup(3)));
      const keyFile = fresh("root-only.key"); // readable by root alone: read before changing user
      writeRootKeyFile(keyFile, rootKey);
      const victim = fresh("victim"); // say /etc/shadow
      writeFileSync(victim, "root's own\n", { mode: 0o600 });
      symlinkSync(victim, join(dataDir, RESTORE_MARKER)); // planted by the service's user
      for (const path of [dataDir, backup]) chownSync(path, owner, owner);
      chmodSync(root, 0o711); // as /var/lib is: the owner reaches their directory
      const restore = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--data", dataDir, "restore", backup, "--yes", "--key-file", keyFile], { stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(restore.stdout).text(), new Response(restore.stderr).text(), restore.exited]);
      // The key came from elsewhere: the data directory has none to start with, and restore says so.
      expect(code).toBe(0);
      expect(stderr).toStartWith(`restoring as uid ${owner}, the owner of ${dataDir} (the backup file must be readable by them)\nwarning: there is no root key file ${join(dataDir, "root.key")}`);
      expect(stdout).toContain(`into ${join(dataDir, "citadel.db")}`);
      expect([readFileSync(victim, "utf8"), statSync(victim).uid, statSync(victim).mode & 0o777]).toEqual(["root's own\n", 0, 0o600]);
      for (const name of ["citadel.db", RESTORE_MARKER]) {
        const stat = lstatSync(join(dataDir, name));
        expect([stat.isFile(), stat.uid, stat.gid, stat.mode & 0o777]).toEqual([true, owner, owner, 0o600]);
      }
      expect(rowsIn(join(dataDir, "citadel.db"))).toBe(3);
    },
  );

  test.skipIf(process.getuid?.() !== 0 && process.env.CI !== "true")(
    "run as root with a config only root reads and the key in the data directory: the key is read as the owner, the config before (found in review)",
    async () => {
      const owner = 4321;
      const dataDir = dataDirectory("owned-config");
      const backup = join(dataDir, "x.backup");
      writeFileSync(backup, readFileSync(await makeBackup(2)));
      writeRootKeyFile(join(dataDir, "root.key"), rootKey);
      const config = fresh("citadel.toml");
      writeFileSync(config, `data_dir = "${dataDir}"\n`, { mode: 0o600 }); // root's alone, as /etc/citadel/citadel.toml may be
      for (const path of [dataDir, backup, join(dataDir, "root.key")]) chownSync(path, owner, owner);
      chmodSync(root, 0o711);
      const restore = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--config", config, "restore", backup, "--yes"], { stdout: "pipe", stderr: "pipe" });
      const [stderr, code] = await Promise.all([new Response(restore.stderr).text(), restore.exited]);
      expect([code, stderr]).toEqual([0, `restoring as uid ${owner}, the owner of ${dataDir} (the backup file must be readable by them)\n`]);
      expect(lstatSync(join(dataDir, "citadel.db")).uid).toBe(owner);
    },
  );

  test.skipIf(process.getuid?.() !== 0 && process.env.CI !== "true")(
    "backup verify run as root keeps root's rights: a backup only root reads verifies, beside another user's data directory (found in review)",
    async () => {
      const dataDir = dataDirectory("owned-verify");
      writeRootKeyFile(join(dataDir, "root.key"), rootKey);
      chownSync(dataDir, 4321, 4321);
      chownSync(join(dataDir, "root.key"), 4321, 4321);
      const backup = await makeBackup(1); // root's, 0600, in a directory only root enters
      const verify = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--data", dataDir, "backup", "verify", backup], { stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(verify.stdout).text(), new Response(verify.stderr).text(), verify.exited]);
      expect([code, stderr]).toEqual([0, ""]);
      expect(stdout).toStartWith(`OK: ${backup} is intact and opens`);
    },
  );

  test("backup verify with the key named needs no config: one this user may not read is no reason to refuse (found in review)", async () => {
    const file = await makeBackup(1);
    const keyFile = join(fresh("verify-key"), "k.key");
    mkdirSync(dirname(keyFile), { recursive: true });
    writeRootKeyFile(keyFile, rootKey);
    const out: string[] = [];
    const unreadable = () => {
      throw new ConfigError("cannot read /etc/citadel/citadel.toml: run as root or as a member of group citadel");
    };
    const verify = backupPlugin.commands!.find((c) => c.words.join(" ") === "backup verify")!;
    const code = await verify.run({
      args: [file],
      options: { "key-file": keyFile },
      json: false,
      out: (text) => out.push(text),
      err: (text) => out.push(text),
      api: async () => unreadable(),
      configHome: "/nonexistent",
      env: {},
      dataDir: unreadable,
      config: unreadable,
      migrations: () => KNOWN,
    });
    expect(code).toBe(0);
    expect(out[0]).toStartWith(`OK: ${file} is intact and opens`);
  });

  test("over an existing database: only with --yes, and the old one is kept aside whole, not deleted", async () => {
    // A stopped server whose WAL was not checkpointed (killed): the WAL holds committed rows.
    const { dataDir, file } = await killedServer("existing");
    const refused = restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: false, now: NOW });
    await expect(refused).rejects.toThrow(`${dataDir} already holds a database: run again with --yes`);

    const result = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW });
    expect(result.previous).toBe(join(dataDir, "citadel.db.before-restore-20260601T120000Z"));
    expect(rowsIn(result.database)).toBe(7);
    // The rows that were only in the WAL are in the kept database (opening it recovered them, as any open would).
    expect(rowsIn(result.previous!)).toBe(3);
    expect(existsSync(join(dataDir, "citadel.db-wal"))).toBe(false);
    expect(readdirSync(dataDir).filter((n) => n.includes("restoring"))).toEqual([]);
  });

  test("restored twice before a start: the marker keeps the database that last ran and lists both restores (found in review)", async () => {
    const dataDir = dataDirectory("twice");
    const live = openStore({ path: join(dataDir, "citadel.db") });
    live.db.run("CREATE TABLE rows (n INTEGER)");
    live.close();
    const file = await makeBackup(2);
    const first = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW });
    const firstId = JSON.parse(readFileSync(join(dataDir, RESTORE_MARKER), "utf8")).id;
    expect(firstId).toMatch(/^[0-9a-f-]{36}$/);
    const second = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: () => NOW() + 1000 });
    const name = file.split("/").at(-1);
    const note = (previous: string) => ({ backup: name, created_at: "2026-06-01T12:00:00.000Z", audit_head_seq: null, previous });
    expect(JSON.parse(readFileSync(join(dataDir, RESTORE_MARKER), "utf8"))).toEqual({
      // Each restore a new id: the carry-over steps run for the second one too (on the database it put in place).
      id: expect.not.stringMatching(`^${firstId}$`),
      // The database the second restore put aside never ran: erasures are in the first one's.
      previous: "citadel.db.before-restore-20260601T120000Z",
      restores: [note("citadel.db.before-restore-20260601T120000Z"), note("citadel.db.before-restore-20260601T120001Z")],
    });
    expect([first.previous, second.previous]).toEqual([join(dataDir, "citadel.db.before-restore-20260601T120000Z"), join(dataDir, "citadel.db.before-restore-20260601T120001Z")]);
  });

  test("over a damaged database (random bytes, a zeroed header): it is not in use, and with --yes it is put aside (found in review)", async () => {
    const file = await makeBackup(3);
    const source = dataDirectory("damaged-source");
    const live = openStore({ path: join(source, "citadel.db") });
    live.db.run("CREATE TABLE rows (n INTEGER)");
    live.close();
    const zeroedHeader = readFileSync(join(source, "citadel.db"));
    zeroedHeader.fill(0, 0, 100);
    for (const [name, damaged] of [["random bytes", crypto.getRandomValues(Buffer.alloc(65_536))], ["a zeroed header", zeroedHeader]] as const) {
      const dataDir = dataDirectory(name);
      writeFileSync(join(dataDir, "citadel.db"), damaged, { mode: 0o600 });
      expect([name, databaseInUse(join(dataDir, "citadel.db"))]).toEqual([name, false]);
      const result = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW });
      expect(rowsIn(result.database)).toBe(3);
      expect(readFileSync(result.previous!).equals(damaged)).toBe(true); // kept aside as it was
    }
  });

  test("refused while a server has the database open; nothing is touched", async () => {
    const dataDir = dataDirectory("running");
    const live = openStore({ path: join(dataDir, "citadel.db") });
    live.db.run("CREATE TABLE rows (n INTEGER)");
    try {
      const file = await makeBackup(1);
      await expect(restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW })).rejects.toThrow(`the database in ${dataDir} is in use: stop Citadel first`);
      expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", "citadel.db-shm", "citadel.db-wal", DATA_DIRECTORY_LOCK]);
    } finally {
      live.close();
    }
  });

  test("refused while a Citadel holds the data directory's lock (serving, or starting: its database not open yet); nothing is touched (found in review)", async () => {
    const dataDir = dataDirectory("locked");
    const serving = lockDataDirectory(dataDir, "serve");
    if ("refused" in serving) throw new Error("the lock was refused");
    try {
      const file = await makeBackup(1);
      await expect(restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW })).rejects.toThrow(
        `another Citadel is serving this data directory (pid ${process.pid}) (${dataDir}): stop it first (for example systemctl stop citadel), then restore`,
      );
      expect(readdirSync(dataDir)).toEqual([DATA_DIRECTORY_LOCK]);
    } finally {
      serving.release();
    }
  });

  test("a damaged backup or a wrong key changes nothing", async () => {
    const dataDir = dataDirectory("kept");
    const old = openStore({ path: join(dataDir, "citadel.db") });
    old.db.run("CREATE TABLE rows (n INTEGER)");
    old.db.run("INSERT INTO rows VALUES (1)");
    old.close();
    const file = await makeBackup(5);
    const bytes = readFileSync(file);
    bytes[bytes.length - 100]! ^= 1;
    const damaged = fresh("damaged.backup");
    writeFileSync(damaged, bytes);
    await expect(restoreBackup({ file: damaged, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW })).rejects.toThrow(/fails authentication/);
    await expect(restoreBackup({ file, dataDir, supply: { rootKey: generateRootKey() }, migrations: KNOWN, replace: true, now: NOW })).rejects.toThrow(/but the key given is/);
    expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", DATA_DIRECTORY_LOCK]);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(1);
  });

  test("a backup from a newer Citadel (a migration this one does not know) is refused before anything is touched (found in review)", async () => {
    const dataDir = dataDirectory("future");
    const old = openStore({ path: join(dataDir, "citadel.db") });
    old.db.run("CREATE TABLE rows (n INTEGER)");
    old.db.run("INSERT INTO rows VALUES (1)");
    old.close();
    const file = await makeBackup(5, "from a newer Citadel");
    const error = await restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW }).catch((e) => e);
    expect(error).toBeInstanceOf(BackupError);
    expect(error.message).toBe(
      "this Citadel would not start on the database in the backup (made by Citadel 1.2.3): the database was written by a newer version of Citadel (it has migration kernel/9999_from_the_future, unknown to this one); run that version or restore a backup",
    );
    expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", DATA_DIRECTORY_LOCK]);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(1);
  });

  test("a backup from an older Citadel (migrations still to apply) restores as it is: the next start migrates it", async () => {
    const dataDir = dataDirectory("older");
    const later: MigrationSet = { owner: "later", migrations: [{ id: "0001_later", up: "CREATE TABLE later (x INTEGER)" }] };
    const result = await restoreBackup({ file: await makeBackup(4), dataDir, supply: { rootKey }, migrations: [...KNOWN, later], replace: false, now: NOW });
    expect(rowsIn(result.database)).toBe(4);
    const db = new Database(result.database, { readonly: true });
    try {
      expect(db.query("SELECT 1 FROM sqlite_schema WHERE name = 'later'").get()).toBeNull();
    } finally {
      db.close();
    }
    expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", DATA_DIRECTORY_LOCK, RESTORE_MARKER]);
  });

  test("says whether the data directory's key file unseals the restored database", async () => {
    const file = await makeBackup(1);
    const matching = dataDirectory("matching");
    const keyFile = join(matching, "root.key");
    await restoreBackup({ file, dataDir: matching, supply: { rootKey }, migrations: KNOWN, replace: false, now: NOW, unsealKeyFile: keyFile }).then((r) => expect(r.rootKeyMatches).toBeNull());
    writeRootKeyFile(keyFile, rootKey);
    expect((await restoreBackup({ file, dataDir: matching, supply: { rootKey }, migrations: KNOWN, replace: true, now: () => NOW() + 1000, unsealKeyFile: keyFile })).rootKeyMatches).toBe(true);
    writeRootKeyFile(keyFile, generateRootKey());
    expect((await restoreBackup({ file, dataDir: matching, supply: { rootKey }, migrations: KNOWN, replace: true, now: () => NOW() + 2000, unsealKeyFile: keyFile })).rootKeyMatches).toBe(false);
  });
});

/** A server killed with its last rows in the WAL alone, and a backup of 7 rows to restore over it. */
async function killedServer(name: string) {
  const dataDir = dataDirectory(name);
  const old = openStore({ path: join(dataDir, "citadel.db") });
  old.db.run("CREATE TABLE rows (n INTEGER)");
  old.db.run("INSERT INTO rows VALUES (1), (2), (3)");
  const wal = readFileSync(join(dataDir, "citadel.db-wal"));
  old.close();
  writeFileSync(join(dataDir, "citadel.db-wal"), wal);
  return { dataDir, file: await makeBackup(7) };
}

/**
 * A restore killed part-way (found in review: killed between putting the database aside and
 * putting the restored one in place, the next start made a new, empty instance and took the
 * old database's -wal for its own). The kill is played by making the Nth rename throw: the
 * restore's renames are, in order, the marker's (written whole: temporary file, sync, rename),
 * the current database's aside, the restored one's into place, and the marker's again once
 * the swap is done. What the next start does first is settleInterruptedRestore.
 */
describe("a restore killed part-way", () => {
  async function restoreKilledAtRename(dataDir: string, file: string, killedAt: number) {
    let renames = 0;
    const rename = spyOn(fs, "renameSync").mockImplementation((from, to) => {
      if (++renames === killedAt) throw new Error("killed");
      realRename(from, to);
    });
    try {
      await expect(restoreBackup({ file, dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: NOW })).rejects.toThrow("killed");
    } finally {
      rename.mockRestore();
    }
  }

  test("citadel recover refuses while a restore holds the data directory, not while a server does (found in review)", () => {
    const dataDir = fresh("recover-beside");
    mkdirSync(dataDir, { recursive: true });
    const restoring = lockDataDirectory(dataDir, "restore");
    if ("refused" in restoring) throw new Error("the lock was refused");
    expect(() => refuseDuringRestore(dataDir)).toThrow(`citadel restore is running on ${dataDir}: wait for it to end, then recover`);
    restoring.release();
    const serving = lockDataDirectory(dataDir, "serve");
    if ("refused" in serving) throw new Error("the lock was refused");
    refuseDuringRestore(dataDir);
    serving.release();
  });

  const previous = "citadel.db.before-restore-20260601T120000Z";
  const marker = (dataDir: string) => JSON.parse(readFileSync(join(dataDir, RESTORE_MARKER), "utf8"));

  for (const [killedAt, when] of [
    [2, "after its marker, before anything moved"],
    [3, "after the database went aside, before the restored one came in"],
    [4, "after the swap, before the marker said so"],
  ] as const) {
    test(`${when}: the next start finishes the swap; nothing is lost, and the restore is carried over as one that finished`, async () => {
      const { dataDir, file } = await killedServer(`killed-${killedAt}`);
      await restoreKilledAtRename(dataDir, file, killedAt);
      // Durable before anything moved: the marker names the database being put in place.
      const pending = marker(dataDir);
      expect(pending).toMatchObject({ previous, swapping_in: expect.stringMatching(/^citadel\.db\.restoring-\d+$/) });
      // Nothing of the current database lives in a -wal alone any more (checkpointed first).
      expect(readdirSync(dataDir).filter((n) => n.endsWith("-wal"))).toEqual([]);

      // citadel recover, meanwhile, refuses: what it wrote would go to a database the start puts aside (found in review).
      expect(() => refuseDuringRestore(dataDir)).toThrow(`a restore into ${dataDir} was cut short: start Citadel (its first start finishes the restore) or run citadel restore again, then recover`);
      settleInterruptedRestore(dataDir);
      refuseDuringRestore(dataDir); // finished: recover may run
      expect(readdirSync(dataDir).sort()).toEqual(["citadel.db", previous, DATA_DIRECTORY_LOCK, RESTORE_MARKER]);
      expect(rowsIn(join(dataDir, "citadel.db"))).toBe(7);
      expect(rowsIn(join(dataDir, previous))).toBe(3); // the rows that were only in the WAL too
      const { swapping_in: _, ...finished } = pending;
      expect(marker(dataDir)).toEqual(finished); // the same restore (id): its carry-over steps run once
      settleInterruptedRestore(dataDir); // a second start: nothing more to do
      expect(marker(dataDir)).toEqual(finished);
    });
  }

  test("before its marker: the database is as it was, and no restore is recorded", async () => {
    const { dataDir, file } = await killedServer("killed-1");
    await restoreKilledAtRename(dataDir, file, 1);
    settleInterruptedRestore(dataDir);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(3);
    expect(existsSync(join(dataDir, RESTORE_MARKER))).toBe(false);
  });

  test("citadel restore run again finishes the interrupted swap first, then restores over it as a second restore", async () => {
    const { dataDir, file } = await killedServer("killed-again");
    await restoreKilledAtRename(dataDir, file, 3);
    const second = await restoreBackup({ file: await makeBackup(5), dataDir, supply: { rootKey }, migrations: KNOWN, replace: true, now: () => NOW() + 1000 });
    expect(rowsIn(second.database)).toBe(5);
    expect(second.previous).toBe(join(dataDir, "citadel.db.before-restore-20260601T120001Z"));
    expect(rowsIn(second.previous!)).toBe(7); // the first restore's database, never run
    expect(marker(dataDir)).toMatchObject({ previous, restores: [{ previous }, { previous: "citadel.db.before-restore-20260601T120001Z" }] });
    expect(marker(dataDir).swapping_in).toBeUndefined();
  });

  test("an older version's restore killed between its renames (no marker; the database aside, its -wal left): a start refuses, exit 2, and makes nothing", () => {
    const dataDir = dataDirectory("older-killed");
    const old = openStore({ path: join(dataDir, "citadel.db") });
    old.db.run("CREATE TABLE rows (n INTEGER)");
    old.db.run("INSERT INTO rows VALUES (1), (2), (3)");
    const wal = readFileSync(join(dataDir, "citadel.db-wal"));
    old.close();
    fs.renameSync(join(dataDir, "citadel.db"), join(dataDir, previous));
    writeFileSync(join(dataDir, "citadel.db-wal"), wal);
    const before = readdirSync(dataDir).sort();
    expect(() => settleInterruptedRestore(dataDir)).toThrow(ConfigError);
    expect(() => settleInterruptedRestore(dataDir)).toThrow(
      `${dataDir} has no citadel.db but holds ${previous}, citadel.db-wal: a restore was interrupted or the database was removed, and Citadel will not make a new, empty one over it. Run citadel restore again with the backup (--yes), or put the previous database back (rename ${previous} and its -wal and -shm, if any, to citadel.db, and remove ${RESTORE_MARKER}); to start afresh on purpose, move these files out of the data directory`,
    );
    expect(readdirSync(dataDir).sort()).toEqual(before);
    // Put back as the message says, the rows that were only in the WAL are all there.
    fs.renameSync(join(dataDir, previous), join(dataDir, "citadel.db"));
    settleInterruptedRestore(dataDir);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(3);
  });

  test("a marker without a database (a restore whose database was removed since): a start refuses", async () => {
    const dataDir = dataDirectory("marker-alone");
    await restoreBackup({ file: await makeBackup(2), dataDir, supply: { rootKey }, migrations: KNOWN, replace: false, now: NOW });
    rmSync(join(dataDir, "citadel.db"));
    expect(() => settleInterruptedRestore(dataDir)).toThrow(`${dataDir} has no citadel.db but holds ${RESTORE_MARKER}: a restore was interrupted`);
  });

  test("killed while it decrypted (before its marker): the next start removes the decrypted copy it left, and says so (found in review: it stayed until the next restore)", async () => {
    const { dataDir } = await killedServer("killed-decrypting");
    // What SIGKILL leaves: the copy, no marker (the restore's own cleanup never ran).
    fs.copyFileSync(join(dataDir, "citadel.db"), join(dataDir, "citadel.db.restoring-4242"));
    writeFileSync(join(dataDir, "citadel.db.restoring-4242-journal"), "");
    // While a restore holds the data directory, its copy is in the making: left alone.
    const restoring = lockDataDirectory(dataDir, "restore");
    if ("refused" in restoring) throw new Error("the lock was refused");
    const warnings: Array<[string, unknown]> = [];
    const log = { warn: (msg: string, fields?: unknown) => void warnings.push([msg, fields]) };
    settleInterruptedRestore(dataDir, log);
    expect(readdirSync(dataDir).filter((n) => n.includes("restoring")).sort()).toEqual(["citadel.db.restoring-4242", "citadel.db.restoring-4242-journal"]);
    restoring.release();

    settleInterruptedRestore(dataDir, log);
    expect(readdirSync(dataDir).filter((n) => n.includes("restoring"))).toEqual([]);
    expect(warnings).toEqual([
      ["removed the decrypted copy of a backup that an interrupted restore left in the data directory", { data_dir: dataDir, files: ["citadel.db.restoring-4242", "citadel.db.restoring-4242-journal"] }],
    ]);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(3);
  });

  test("the copy a marker names for its swap is not removed when the swap cannot be finished, nor while the marker does not read", async () => {
    const { dataDir, file } = await killedServer("killed-named");
    await restoreKilledAtRename(dataDir, file, 2);
    const pending = marker(dataDir);
    const named = pending.swapping_in as string;
    writeFileSync(join(dataDir, RESTORE_MARKER), JSON.stringify({ ...pending, restores: [{ ...pending.restores[0], previous: "../elsewhere" }] }));
    expect(() => settleInterruptedRestore(dataDir)).toThrow(ConfigError);
    expect(existsSync(join(dataDir, named))).toBe(true);
    // A marker that does not read, and no citadel.db: the start refuses, and the copy stays for the operator.
    writeFileSync(join(dataDir, RESTORE_MARKER), "{ damaged");
    realRename(join(dataDir, "citadel.db"), join(dataDir, "citadel.db.aside"));
    expect(() => settleInterruptedRestore(dataDir)).toThrow(ConfigError);
    expect(existsSync(join(dataDir, named))).toBe(true);
    realRename(join(dataDir, "citadel.db.aside"), join(dataDir, "citadel.db"));
  });

  test("a marker that does not read beside citadel.db: the start goes on with citadel.db and removes the copy, which no start would use (found in review: it stayed for a start, unreported)", async () => {
    const { dataDir } = await killedServer("killed-damaged-marker");
    fs.copyFileSync(join(dataDir, "citadel.db"), join(dataDir, "citadel.db.restoring-777"));
    writeFileSync(join(dataDir, RESTORE_MARKER), "{ damaged");
    const warnings: Array<[string, unknown]> = [];
    settleInterruptedRestore(dataDir, { warn: (msg: string, fields?: unknown) => void warnings.push([msg, fields]) });
    expect(readdirSync(dataDir).filter((n) => n.includes("restoring"))).toEqual([]);
    expect(warnings).toEqual([["removed the decrypted copy of a backup that an interrupted restore left in the data directory", { data_dir: dataDir, files: ["citadel.db.restoring-777"] }]]);
    expect(rowsIn(join(dataDir, "citadel.db"))).toBe(3);
  });

  test("a fresh data directory (nothing there, or only a config) starts as before", () => {
    const dataDir = dataDirectory("fresh");
    settleInterruptedRestore(dataDir);
    writeFileSync(join(dataDir, "citadel.toml"), "");
    settleInterruptedRestore(dataDir);
    expect(readdirSync(dataDir)).toEqual(["citadel.toml"]);
  });
});

describe("verifyBackup", () => {
  test("a backup made under an earlier root key that a rekey kept in the data directory: the refusal names that file for --key-file (found in an operator's walkthrough)", async () => {
    const backup = await makeBackup(1);
    const dataDir = dataDirectory("rekeyed");
    const current = generateRootKey();
    writeRootKeyFile(join(dataDir, "root.key"), current);
    const [oldId, newId] = [rootKeyId(rootKeyVerifier(rootKey)), rootKeyId(rootKeyVerifier(current))];
    const verify = async () => {
      const child = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--data", dataDir, "backup", "verify", backup], { stdout: "pipe", stderr: "pipe" });
      const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      return { stderr, code };
    };
    const without = await verify(); // nothing kept: the refusal as it was
    expect([without.code, without.stderr]).toEqual([1, `citadel: FAILED: this backup is encrypted under root key ${oldId}, but the key given is ${newId}\n`]);
    const kept = join(dataDir, `root.key.${oldId}`);
    writeRootKeyFile(kept, rootKey);
    const named = await verify();
    expect([named.code, named.stderr]).toEqual([1, `citadel: FAILED: this backup is encrypted under root key ${oldId}, but the key given is ${newId}; ${kept} holds root key ${oldId}, kept by a rekey: give --key-file ${kept}\n`]);
  });

  test("a good backup verifies; one whose content is not a database fails SQLite's check", async () => {
    const { manifest } = await verifyBackup(await makeBackup(3), { rootKey }, KNOWN);
    expect(manifest.root_key_id).toMatch(/^[0-9a-f]{8}$/);
    const notADatabase = await makeBackup(0, "not a database");
    const error = await verifyBackup(notADatabase, { rootKey }, KNOWN).catch((e) => e);
    expect(error).toBeInstanceOf(BackupError);
    expect(error.message).toStartWith("the database in the backup fails SQLite's integrity check");
  });

  test("a backup from a newer Citadel fails verify (found in review: it was OK)", async () => {
    const file = await makeBackup(1, "from a newer Citadel");
    await expect(verifyBackup(file, { rootKey }, KNOWN)).rejects.toThrow(
      "this Citadel would not start on the database in the backup (made by Citadel 1.2.3): the database was written by a newer version of Citadel (it has migration kernel/9999_from_the_future",
    );
  });

  test("stopped by SIGINT or SIGTERM, it removes its plaintext and exits 128 + the signal, reporting nothing (found in review: it ran on and called the backup corrupt)", async () => {
    const file = await makeBackup(0, "database", 16);
    const keyFile = fresh("root.key");
    writeRootKeyFile(keyFile, rootKey);
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const tmp = dataDirectory(`tmp-${signal}`); // the child's TMPDIR: its verify directory is the marker
      const verify = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "--data", dataDirectory("verify-signal"), "backup", "verify", file, "--key-file", keyFile], {
        env: { ...process.env, TMPDIR: tmp },
        stdout: "pipe",
        stderr: "pipe",
      });
      while (readdirSync(tmp).length === 0 && verify.exitCode === null) await Bun.sleep(5);
      verify.kill(signal);
      const [stdout, stderr, exited] = await Promise.all([new Response(verify.stdout).text(), new Response(verify.stderr).text(), verify.exited]);
      // On a fast machine the verify may be done before the signal lands: then it is simply OK.
      if (exited === 0) expect(stdout).toStartWith(`OK: ${file}`);
      else expect([signal, exited, stdout, stderr]).toEqual([signal, code, "", ""]);
      expect(readdirSync(tmp)).toEqual([]);
    }
  }, 60_000);

  test("a directory given as the backup is a clear failure, not a bare EISDIR (found in review)", async () => {
    const dir = dataDirectory("not-a-file");
    const error = await verifyBackup(dir, { rootKey }, KNOWN).catch((e) => e);
    expect(error).toBeInstanceOf(BackupError);
    expect(error.message).toBe(`${dir} is not a backup file (it is a directory or another kind of file)`);
  });

  test("leaves no plaintext behind, and removes what a killed verify left (older than an hour)", async () => {
    const stale = mkdtempSync(join(tmpdir(), "citadel-verify-"));
    const fresh = mkdtempSync(join(tmpdir(), "citadel-verify-"));
    writeFileSync(join(stale, "citadel.db"), "plaintext left by a killed verify");
    const twoHoursAgo = new Date(Date.now() - 7_200_000);
    utimesSync(stale, twoHoursAgo, twoHoursAgo);
    try {
      await verifyBackup(await makeBackup(2), { rootKey }, KNOWN);
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(fresh)).toBe(true); // maybe another verify's, running now
    } finally {
      rmSync(stale, { recursive: true, force: true });
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});
