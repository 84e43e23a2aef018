/**
 * Backup files on disk: their names, where they live, which is the newest. Every backup the
 * server writes is named citadel-YYYYMMDDTHHMMSSZ.backup (the snapshot's UTC time to the
 * second). Other tools (citadel doctor, the metrics) find the newest backup by that name
 * alone, without opening files, so the pattern is a contract: do not change it.
 */
import { closeSync, fsyncSync, lstatSync, openSync, readdirSync } from "node:fs";
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

/** Makes renames and new files in a directory durable. */
export function syncDirectory(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
