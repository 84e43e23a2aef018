/** Backup file names (a contract other tools rely on) and finding the newest backup. */
import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backupFileName, backupsBeyond, backupTimeOf, listBackups, newestBackup, partialFileName, placeBackup, readPartialFileName } from "../../../plugins/backup/files.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-backup-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("names", () => {
  test("citadel-YYYYMMDDTHHMMSSZ.backup, in UTC, to the second", () => {
    expect(backupFileName(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)))).toBe("citadel-20260102T030405Z.backup");
    expect(backupTimeOf("citadel-20261231T235959Z.backup")).toEqual(new Date(Date.UTC(2026, 11, 31, 23, 59, 59)));
  });

  test("name → time → name round-trips for any second (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(9999, 11, 31) }), (ms) => {
        const seconds = Math.floor(ms / 1000) * 1000;
        const name = backupFileName(new Date(ms));
        expect(backupTimeOf(name)?.getTime()).toBe(seconds);
      }),
    );
  });

  test("anything else is not a backup's name", () => {
    for (const name of [
      "citadel-20261340T000000Z.backup", // no 13th month
      "citadel-20260230T000000Z.backup", // no 30 February
      "citadel-20260101T000000.backup",
      "citadel-20260101T000000Z.backup.partial",
      ".citadel-20260101T000000Z.backup.partial",
      "other-20260101T000000Z.backup",
      "citadel.db",
    ]) {
      expect([name, backupTimeOf(name)]).toEqual([name, null]);
    }
  });
});

describe("unfinished backups (found in review: two Citadels sharing a directory removed each other's)", () => {
  test("are named for their instance, and read back; an earlier version's name, without one, too", () => {
    const name = "citadel-20260101T000000Z.backup";
    const id = "0b5e7c1a-1b2c-4d5e-8f90-123456789abc";
    expect(partialFileName(name, id)).toBe(`.${name}.${id}.partial`);
    expect(readPartialFileName(partialFileName(name, id))).toEqual({ backup: name, namesInstance: true });
    expect(readPartialFileName(`.${name}.partial`)).toEqual({ backup: name, namesInstance: false });
    for (const other of [".rsync-upload.partial", `.${name}.a/b.partial`, ".citadel-20261340T000000Z.backup.x.partial", `${name}.partial`]) expect([other, readPartialFileName(other)]).toEqual([other, undefined]);
  });

  test("a finished one never takes the name of a file already there", () => {
    const place = join(dir, "place");
    mkdirSync(place);
    writeFileSync(join(place, "mine.partial"), "mine");
    writeFileSync(join(place, "taken.backup"), "another's");
    expect(placeBackup(join(place, "mine.partial"), join(place, "taken.backup"))).toBe(false);
    expect(readFileSync(join(place, "taken.backup"), "utf8")).toBe("another's");
    expect(placeBackup(join(place, "mine.partial"), join(place, "free.backup"))).toBe(true);
    expect([readFileSync(join(place, "free.backup"), "utf8"), existsSync(join(place, "mine.partial"))]).toEqual(["mine", false]);
  });
});

describe("newestBackup", () => {
  test("finds the newest by name in the directory, relative to the data directory or absolute", () => {
    const data = join(dir, "data");
    mkdirSync(join(data, "backups"), { recursive: true });
    for (const name of ["citadel-20260101T000000Z.backup", "citadel-20260301T000000Z.backup", "citadel-20260201T000000Z.backup", "citadel-20991231T000000Z.backup.partial", "notes.txt"]) {
      writeFileSync(join(data, "backups", name), "x");
    }
    mkdirSync(join(data, "backups", "citadel-20270101T000000Z.backup")); // a directory is not a backup
    writeFileSync(join(dir, "root.key"), "secret");
    symlinkSync(join(dir, "root.key"), join(data, "backups", "citadel-20280101T000000Z.backup")); // nor a link (it would be served as a download)
    const expected = { path: join(data, "backups", "citadel-20260301T000000Z.backup"), time: new Date(Date.UTC(2026, 2, 1)) };
    expect(newestBackup(data, "backups")).toEqual(expected);
    expect(newestBackup("/elsewhere", join(data, "backups"))).toEqual(expected);
    expect(listBackups(data, "backups").map((f) => f.name)).toEqual(["citadel-20260301T000000Z.backup", "citadel-20260201T000000Z.backup", "citadel-20260101T000000Z.backup"]);
  });

  test("no directory, or an empty one: null", () => {
    expect(newestBackup(join(dir, "nothing"), "backups")).toBeNull();
    mkdirSync(join(dir, "empty", "backups"), { recursive: true });
    expect(newestBackup(join(dir, "empty"), "backups")).toBeNull();
  });

  test("backupsBeyond keeps the newest `keep` (0: all)", () => {
    const files = [3, 2, 1].map((n) => ({ name: `${n}`, path: `${n}`, time: new Date(n), bytes: 1 }));
    expect(backupsBeyond(files, 2).map((f) => f.name)).toEqual(["1"]);
    expect(backupsBeyond(files, 5)).toEqual([]);
    expect(backupsBeyond(files, 0)).toEqual([]);
  });
});
