/** What is on disk, as the doctor and the sovereignty report describe it: kind, mode, size. */
import { lstatSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface PathInfo {
  path: string;
  /**
   * "unreadable": this user may not look (a directory above it they cannot enter). Never
   * taken for "missing": a data directory of the service's own user is not absent to others.
   */
  kind: "file" | "directory" | "other" | "missing" | "unreadable";
  /** Permission bits (0o600), or null when missing or unreadable. */
  mode: number | null;
  /** Bytes: the file's size, or everything under a directory that this user could read. */
  bytes: number;
  /** For a directory: the files under it that this user could read. */
  files: number;
  /** For a directory: false when a directory in it (or itself) could not be listed, so bytes and files fall short. */
  complete: boolean;
}

/**
 * Describes a path without following a symbolic link at its end — unless `followLink`: a data
 * directory may be reached through one (Citadel itself follows it), unlike the files in it.
 */
export function pathInfo(path: string, { followLink = false } = {}): PathInfo {
  let stat;
  try {
    stat = followLink ? statSync(path) : lstatSync(path);
  } catch (error) {
    return { path, kind: doesNotExist(error) ? "missing" : "unreadable", mode: null, bytes: 0, files: 0, complete: false };
  }
  const mode = stat.mode & 0o777;
  if (stat.isFile()) return { path, kind: "file", mode, bytes: stat.size, files: 1, complete: true };
  if (!stat.isDirectory()) return { path, kind: "other", mode, bytes: 0, files: 0, complete: true };
  let bytes = 0;
  let files = 0;
  const { entries, unreadable } = walk(path);
  for (const entry of entries) {
    if (entry.kind === "file") {
      bytes += entry.bytes;
      files++;
    }
  }
  return { path, kind: "directory", mode, bytes, files, complete: unreadable.length === 0 };
}

/** ENOENT, ENOTDIR: nothing there. Any other failure (EACCES, EPERM, EIO) means this user could not look. */
export function doesNotExist(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** The directory this user could not look into on the way to `path`: the nearest of it and its ancestors that it can see. */
export function closedDirectory(path: string): string {
  let at = path;
  while (dirname(at) !== at) {
    try {
      lstatSync(at);
      return at;
    } catch {
      at = dirname(at);
    }
  }
  return at;
}

export interface Walked {
  /** Every file and directory found, depth first. */
  entries: Array<{ path: string; kind: "file" | "directory"; mode: number; bytes: number; uid: number; gid: number }>;
  /** The directories this user could not list (`dir` itself included): what is in them is not in `entries`. */
  unreadable: string[];
}

/** Every file and directory under `dir` (not `dir` itself), depth first; symbolic links are not followed. */
export function walk(dir: string, maxDepth = 8): Walked {
  const out: Walked["entries"] = [];
  const unreadable: string[] = [];
  const visit = (current: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(current).sort();
    } catch (error) {
      if (!doesNotExist(error)) unreadable.push(current); // else removed meanwhile
      return;
    }
    for (const name of names) {
      const path = join(current, name);
      let stat;
      try {
        stat = lstatSync(path);
      } catch {
        continue; // gone meanwhile (a rotated log)
      }
      const { uid, gid } = stat;
      if (stat.isFile()) out.push({ path, kind: "file", mode: stat.mode & 0o777, bytes: stat.size, uid, gid });
      else if (stat.isDirectory()) {
        out.push({ path, kind: "directory", mode: stat.mode & 0o777, bytes: 0, uid, gid });
        if (depth < maxDepth) visit(path, depth + 1);
      }
    }
  };
  visit(dir, 1);
  return { entries: out, unreadable };
}

/** "0600" */
export function octal(mode: number | null): string {
  return mode === null ? "-" : `0${mode.toString(8).padStart(3, "0")}`;
}

/** "1.5 MiB" */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * The earlier root keys a key file rekey kept beside the key file (`<seal.key_file>.<id>`,
 * root.key.<id> by default), sorted; none when the directory cannot be read.
 */
export function keptRootKeyFiles(keyFile: string): string[] {
  const [dir, base] = [dirname(keyFile), basename(keyFile)];
  try {
    return readdirSync(dir)
      .filter((name) => name.startsWith(`${base}.`) && /^[0-9a-f]{8}$/.test(name.slice(base.length + 1)))
      .sort()
      .map((name) => join(dir, name));
  } catch {
    return []; // no directory, or not ours to read: the checks of the key file say so
  }
}
