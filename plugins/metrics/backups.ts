/**
 * The backups on disk, as the backup plugin names them: `citadel-YYYYMMDDTHHMMSSZ.backup` in
 * its directory. The file name is the contract between the two plugins (plugins do not import
 * each other), and the time in it — when the backup was taken, in UTC — is what is reported,
 * not the file's mtime, which a copy or restore changes. Whose a backup is, the name does not
 * say: its manifest does (src/backup-maker.ts, read as the backup plugin reads it).
 */
import { lstatSync, readdirSync, type Stats } from "node:fs";
import { join } from "node:path";
import { notAhead } from "../../src/backup-clock.ts";
import { backupMaker } from "../../src/backup-maker.ts";

const BACKUP_NAME = /^citadel-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\.backup$/;

export interface BackupSummary {
  count: number;
  /**
   * When the newest backup was taken (ms since the epoch), or null when there is none: the
   * newest not dated ahead of `now` by more than the backup plugin allows. One named while the
   * clock was ahead would give a negative age, and the age alert would never fire.
   */
  newestAt: number | null;
}

/** Whose the backup at a path is, as backupMaker tells it (injected in tests, to count the headers read). */
export type MakerReader = (path: string) => string | null | undefined;

/** What a backup file's header said, and the file it was read from. */
interface SeenBackup {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  maker: string | null | undefined;
}

/**
 * The backups of an instance in a directory, summarized at each scrape. Whose each backup is
 * takes opening it and parsing its manifest, which at thousands of backups (keep allows
 * 10,000, or all) took hundreds of milliseconds a scrape on the event loop (found in review).
 * A finished backup's manifest never changes, so what it said is kept by file — the same name,
 * size, mtime and inode — and a scrape lists the directory and stats each backup, but reads
 * only a header it has not seen. Only the files of the latest listing are kept.
 */
export class BackupSummaries {
  private seen = new Map<string, SeenBackup>();

  constructor(private readonly readMaker: MakerReader = backupMaker) {}

  /** How many files' headers are kept: those of the latest listing, no more. */
  get kept(): number {
    return this.seen.size;
  }

  /**
   * The backups of instance `own` in `dir` at `now`; a directory that does not exist holds none.
   * Another Citadel given the same directory keeps its own there: counted, they made this one's
   * age look fresh while its schedule failed, and the age alert never fired (found in review).
   */
  summarize(dir: string, now: number, own: string | null): BackupSummary {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      this.seen = new Map();
      return { count: 0, newestAt: null };
    }
    const seenNow = new Map<string, SeenBackup>();
    let count = 0;
    let newestAt: number | null = null;
    for (const name of names) {
      const at = backupTime(name);
      if (at === null || this.makerOf(join(dir, name), seenNow) !== own) continue;
      count++;
      if (notAhead(at, now) && (newestAt === null || at > newestAt)) newestAt = at;
    }
    this.seen = seenNow;
    return { count, newestAt };
  }

  /** Whose the backup at `path` is: as read before, when it is the same file, else read now; kept in `seenNow`. */
  private makerOf(path: string, seenNow: Map<string, SeenBackup>): string | null | undefined {
    const stats = statOf(path);
    if (stats === null) return undefined; // gone meanwhile, or not readable: backupMaker would say the same
    const before = this.seen.get(path);
    // ctime too: a chmod or chown (a backup copied in as root, then given to Citadel) moves it alone.
    const same = before !== undefined && before.size === stats.size && before.mtimeMs === stats.mtimeMs && before.ctimeMs === stats.ctimeMs && before.ino === stats.ino;
    // Stated before it is read: a file replaced in between is read again at the next scrape, its stats no longer matching.
    const seen = same ? before : { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, ino: stats.ino, maker: this.readMaker(path) };
    // Only an answer is kept: "no maker" may be a read that failed this once (EMFILE, EIO), asked again next scrape.
    if (seen.maker !== undefined) seenNow.set(path, seen);
    return seen.maker;
  }
}

function statOf(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/**
 * `read`, once for all who ask within one scrape: a scrape renders every metric synchronously,
 * so what is read is forgotten at the next microtask, once the scrape is rendered. Both backup
 * gauges are read from one summary, not each from its own listing.
 */
export function oncePerScrape<T>(read: () => T): () => T {
  let kept: { value: T } | null = null;
  return () => {
    if (kept === null) {
      kept = { value: read() };
      queueMicrotask(() => (kept = null));
    }
    return kept.value;
  };
}

/** The time a backup's file name says it was taken, or null when the name is not a backup's. */
export function backupTime(name: string): number | null {
  const m = BACKUP_NAME.exec(name);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const at = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 20260231 over into March: such a name is not a time we wrote.
  const d = new Date(at);
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || d.getUTCSeconds() !== second) return null;
  return at;
}
