/**
 * The backup gauges' summary at each scrape: whose each backup is is read from its header once
 * per file, not at every scrape (found in review: each scrape read every header twice, on the
 * event loop, hundreds of milliseconds at 10,000 backups). Counted by the headers read, not timed.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackupSummaries, oncePerScrape } from "../../../plugins/metrics/backups.ts";
import { backupMaker } from "../../../src/backup-maker.ts";
import { backupMadeBy } from "../../helpers/backup-header.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-metrics-backups-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const NOW = Date.UTC(2026, 5, 1);

/** Summaries whose header reads are recorded, by file name. */
function counted() {
  const reads: string[] = [];
  const summaries = new BackupSummaries((path) => {
    reads.push(path.slice(path.lastIndexOf("/") + 1));
    return backupMaker(path);
  });
  return { reads, summaries };
}

test("a second scrape reads no header; a file replaced (another mtime) is read again (found in review)", () => {
  const dir = join(root, "replaced");
  mkdirSync(dir);
  const names = ["citadel-20260101T000000Z.backup", "citadel-20260102T000000Z.backup", "citadel-20260103T000000Z.backup"];
  for (const name of names) writeFileSync(join(dir, name), backupMadeBy("own"));
  writeFileSync(join(dir, "notes.txt"), "not a backup");
  const { reads, summaries } = counted();

  expect(summaries.summarize(dir, NOW, "own")).toEqual({ count: 3, newestAt: Date.UTC(2026, 0, 3) });
  expect(reads.sort()).toEqual(names);
  reads.length = 0;
  expect(summaries.summarize(dir, NOW, "own")).toEqual({ count: 3, newestAt: Date.UTC(2026, 0, 3) });
  expect(reads).toEqual([]);

  // Another instance's backup in its place, the same size: its mtime tells it apart.
  const replaced = join(dir, names[2]!);
  const before = statSync(replaced).mtime;
  writeFileSync(replaced, backupMadeBy("othr"));
  utimesSync(replaced, before, new Date(before.getTime() + 1000));
  expect(summaries.summarize(dir, NOW, "own")).toEqual({ count: 2, newestAt: Date.UTC(2026, 0, 2) });
  expect(reads).toEqual([names[2]!]);
});

test("only the files of the latest listing are kept", () => {
  const dir = join(root, "removed");
  mkdirSync(dir);
  const names = ["citadel-20260101T000000Z.backup", "citadel-20260102T000000Z.backup"];
  for (const name of names) writeFileSync(join(dir, name), backupMadeBy("own"));
  const { reads, summaries } = counted();
  expect([summaries.summarize(dir, NOW, "own").count, summaries.kept]).toEqual([2, 2]);

  rmSync(join(dir, names[0]!));
  expect([summaries.summarize(dir, NOW, "own").count, summaries.kept]).toEqual([1, 1]);
  rmSync(dir, { recursive: true });
  expect([summaries.summarize(dir, NOW, "own"), summaries.kept]).toEqual([{ count: 0, newestAt: null }, 0]);
  expect(reads.sort()).toEqual(names);
});

test("one summary per scrape: read once for all who ask before the scrape is over, again at the next", async () => {
  let reads = 0;
  const backups = oncePerScrape(() => ++reads);
  expect([backups(), backups()]).toEqual([1, 1]);
  await Promise.resolve();
  expect([backups(), backups()]).toEqual([2, 2]);
});

test("a file whose maker could not be read is asked again at the next scrape, and a chmod (ctime alone) has it read again (found in review: remembered as nobody's until a restart)", () => {
  const dir = join(root, "unreadable");
  mkdirSync(dir);
  const file = join(dir, "citadel-20260101T000000Z.backup");
  writeFileSync(file, backupMadeBy("inst-1"));
  let failing = true;
  const reads: string[] = [];
  const summaries = new BackupSummaries((path) => {
    reads.push(path);
    return failing ? undefined : backupMaker(path); // as EACCES or EIO would answer
  });
  expect(summaries.summarize(dir, NOW, "inst-1").count).toBe(0);
  failing = false;
  expect(summaries.summarize(dir, NOW, "inst-1").count).toBe(1);
  expect(summaries.summarize(dir, NOW, "inst-1").count).toBe(1);
  expect(reads.length).toBe(2); // the failed read, then the one that answered; the third scrape reads nothing
  chmodSync(file, 0o640); // moves ctime alone
  summaries.summarize(dir, NOW, "inst-1");
  expect(reads.length).toBe(3);
});
