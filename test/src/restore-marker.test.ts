/** The restore marker as the plugins read it at the first start after `citadel restore`. */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { abandonedRestoreCopies, descendsFromBackup, RESTORE_MARKER, restoreState } from "../../src/restore-marker.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const dataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-marker-"));
  dirs.push(dir);
  return dir;
};

test("a marker that cannot be read (here a directory) still means a restore happened, of nothing known, with the same id at every start (found in review: it stopped every start)", () => {
  const dir = dataDir();
  mkdirSync(join(dir, RESTORE_MARKER));
  const state = restoreState(dir);
  expect(state).toMatchObject({ kind: "restored", previous: null, auditHeadSeq: null });
  expect(restoreState(dir)).toEqual(state);
});

test("the backup's audit head: the marker's, or its last restore's; a previous database descends from the backup only when it holds that very event", () => {
  const dir = dataDir();
  writeFileSync(join(dir, RESTORE_MARKER), JSON.stringify({ id: "r", previous: null, restores: [{ audit_head_seq: 3 }, { audit_head_seq: 7 }] }));
  expect(restoreState(dir)).toMatchObject({ id: "r", auditHeadSeq: 7 });
  const db = (events: Array<[number, number]>) => {
    const d = new Database(":memory:");
    d.run("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL)");
    for (const [seq, byte] of events) d.query("INSERT INTO audit_events VALUES (?, ?)").run(seq, new Uint8Array([byte]));
    return d;
  };
  const restored = db([[6, 1], [7, 2]]);
  expect(descendsFromBackup(restored, db([[7, 2], [8, 3]]), 7)).toBe(true);
  expect(descendsFromBackup(restored, db([[7, 9]]), 7)).toBe(false); // another history at that seq
  expect(descendsFromBackup(restored, db([[6, 1]]), 7)).toBe(false); // never got that far
  expect(descendsFromBackup(restored, db([[7, 2]]), null)).toBe(false); // head unknown
});

test("with a marker that does not read, the decrypted copies are abandoned when citadel.db is in place (a start goes on with it), kept when it is not (found in review: none was reported, and one survived a start)", () => {
  const dir = dataDir();
  writeFileSync(join(dir, "citadel.db.restoring-777"), "decrypted");
  writeFileSync(join(dir, "citadel.db.restoring-777-journal"), "");
  writeFileSync(join(dir, RESTORE_MARKER), "{ damaged");
  expect(abandonedRestoreCopies(dir)).toEqual([]); // no citadel.db: the start refuses, and the copy may be what the operator needs
  writeFileSync(join(dir, "citadel.db"), "");
  expect(abandonedRestoreCopies(dir)).toEqual(["citadel.db.restoring-777", "citadel.db.restoring-777-journal"]);
  // A marker that reads and names it for its swap: kept (the start puts it in place).
  writeFileSync(join(dir, RESTORE_MARKER), JSON.stringify({ previous: null, swapping_in: "citadel.db.restoring-777" }));
  expect(abandonedRestoreCopies(dir)).toEqual([]);
});
