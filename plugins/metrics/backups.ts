/**
 * The backups on disk, as the backup plugin names them: `citadel-YYYYMMDDTHHMMSSZ.backup` in
 * its directory. The file name is the contract between the two plugins (plugins do not import
 * each other), and the time in it — when the backup was taken, in UTC — is what is reported,
 * not the file's mtime, which a copy or restore changes. Whose a backup is, the name does not
 * say: its manifest does (src/backup-maker.ts, read as the backup plugin reads it).
 */
import { readdirSync } from "node:fs";
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

/**
 * The backups of instance `own` in `dir` at `now`; a directory that does not exist holds none.
 * Another Citadel given the same directory keeps its own there: counted, they made this one's
 * age look fresh while its schedule failed, and the age alert never fired (found in review).
 */
export function summarizeBackups(dir: string, now: number, own: string | null): BackupSummary {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { count: 0, newestAt: null };
    throw error;
  }
  let count = 0;
  let newestAt: number | null = null;
  for (const name of names) {
    const at = backupTime(name);
    if (at === null || backupMaker(join(dir, name)) !== own) continue;
    count++;
    if (notAhead(at, now) && (newestAt === null || at > newestAt)) newestAt = at;
  }
  return { count, newestAt };
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
