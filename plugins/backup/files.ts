/**
 * Backup files on disk: their names, where they live, which is the newest. Every backup the
 * server writes is named citadel-YYYYMMDDTHHMMSSZ.backup (the snapshot's UTC time to the
 * second). Other tools (citadel doctor, the metrics) find the newest backup by that name
 * alone, without opening files, so the pattern is a contract: do not change it.
 *
 * The name does not say whose a backup is: two Citadels may be given one directory. Whose it
 * is, the manifest says in clear (its instance_id); the service reads it before it lists,
 * counts, prunes or schedules against a backup (service.ts). A backup being written is named
 * for its instance (partialFileName), since its manifest may not be on disk yet.
 */
import { closeSync, existsSync, fsyncSync, linkSync, lstatSync, openSync, readdirSync, renameSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";

const BACKUP_NAME = /^citadel-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\.backup$/;

export interface BackupFile {
  name: string;
  path: string;
  time: Date;
  bytes: number;
}

/** The file name of a backup taken at `time` (seconds precision, UTC). */
export function backupFileName(time: Date): string {
  return `citadel-${compactUtcTime(time)}.backup`;
}

/**
 * The name a backup is written under before it is complete: hidden, and its instance's id in
 * it, so that another Citadel sharing the directory tells it is not its own leftover.
 */
export function partialFileName(name: string, instanceId: string | null): string {
  return `.${name}.${instanceId ?? "no-instance"}.partial`;
}

/**
 * An unfinished backup's name read back: the backup it becomes, and whether the name carries
 * an instance's id (one an earlier version wrote, .citadel-<time>.backup.partial, does not:
 * its manifest tells whose it is). Undefined for a name that is not one Citadel writes.
 */
export function readPartialFileName(name: string): { backup: string; namesInstance: boolean } | undefined {
  const m = name.match(/^\.(citadel-[^.]+\.backup)(\.[0-9A-Za-z-]+)?\.partial$/);
  if (!m || backupTimeOf(m[1]!) === null) return undefined;
  return { backup: m[1]!, namesInstance: m[2] !== undefined };
}

/** YYYYMMDDTHHMMSSZ: ISO 8601's basic format, which sorts as text and is safe in file names. */
export function compactUtcTime(time: Date): string {
  return time.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
}

/** The time in a backup's file name, or null when the name is not a backup's. */
export function backupTimeOf(name: string): Date | null {
  const m = name.match(BACKUP_NAME);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const time = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 2026-13-40 over into a real date: such a name is not one we wrote.
  return backupFileName(time) === name ? time : null;
}

/** The backup directory: `dir` as configured, relative to the data directory unless absolute. */
export function backupDirectory(dataDir: string, dir: string): string {
  return isAbsolute(dir) ? dir : join(dataDir, dir);
}

/** The backups in the directory, newest first; a directory that does not exist holds none. */
export function listBackups(dataDir: string, dir: string): BackupFile[] {
  const directory = backupDirectory(dataDir, dir);
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return [];
  }
  const files: BackupFile[] = [];
  for (const name of names) {
    const time = backupTimeOf(name);
    if (!time) continue;
    const path = join(directory, name);
    try {
      // Not through a link: one named like a backup could otherwise serve any file as a download.
      const stat = lstatSync(path);
      if (stat.isFile()) files.push({ name, path, time, bytes: stat.size });
    } catch {
      // removed while we looked: not a backup any more
    }
  }
  return files.sort((a, b) => b.time.getTime() - a.time.getTime());
}

/** The newest backup in the configured directory, for citadel doctor and the metrics. */
export function newestBackup(dataDir: string, dir: string): { path: string; time: Date } | null {
  const newest = listBackups(dataDir, dir)[0];
  return newest ? { path: newest.path, time: newest.time } : null;
}

/** The backups beyond the newest `keep` (none when keep is 0: keep everything). */
export function backupsBeyond(files: readonly BackupFile[], keep: number): BackupFile[] {
  return keep > 0 ? files.slice(keep) : [];
}

/** Codes of a file system that makes no hard links (some network and FUSE mounts). */
const NO_HARD_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"]);

/**
 * Gives the finished file at `from` the name `to`, unless a file has that name: false then.
 * Not a rename, which would replace what is there: another Citadel sharing the directory may
 * have finished a backup of the same second meanwhile. A hard link fails instead; on a file
 * system without them, a look and then a rename (the window between is left open there).
 */
export function placeBackup(from: string, to: string): boolean {
  try {
    linkSync(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    if (code === "EEXIST") return false;
    if (!NO_HARD_LINKS.has(code)) throw error;
    if (existsSync(to)) return false;
    renameSync(from, to);
    return true;
  }
  rmSync(from);
  return true;
}

/** Makes renames and new files in a directory durable. */
export function syncDirectory(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
