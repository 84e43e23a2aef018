/** What is on disk, as the doctor and the sovereignty report describe it: kind, mode, size. */
import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";

export interface PathInfo {
  path: string;
  kind: "file" | "directory" | "other" | "missing";
  /** Permission bits (0o600), or null when missing. */
  mode: number | null;
  /** Bytes: the file's size, or everything under a directory. */
  bytes: number;
  /** For a directory: the files under it. */
  files: number;
}

/** Describes a path without following a symbolic link at its end. */
export function pathInfo(path: string): PathInfo {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return { path, kind: "missing", mode: null, bytes: 0, files: 0 };
  }
  const mode = stat.mode & 0o777;
  if (stat.isFile()) return { path, kind: "file", mode, bytes: stat.size, files: 1 };
  if (!stat.isDirectory()) return { path, kind: "other", mode, bytes: 0, files: 0 };
  let bytes = 0;
  let files = 0;
  for (const entry of walk(path)) {
    if (entry.kind === "file") {
      bytes += entry.bytes;
      files++;
    }
  }
  return { path, kind: "directory", mode, bytes, files };
}

/** Every file and directory under `dir` (not `dir` itself), depth first; symbolic links are not followed. */
export function walk(dir: string, maxDepth = 8): Array<{ path: string; kind: "file" | "directory"; mode: number; bytes: number }> {
  const out: Array<{ path: string; kind: "file" | "directory"; mode: number; bytes: number }> = [];
  const visit = (current: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(current).sort();
    } catch {
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
      if (stat.isFile()) out.push({ path, kind: "file", mode: stat.mode & 0o777, bytes: stat.size });
      else if (stat.isDirectory()) {
        out.push({ path, kind: "directory", mode: stat.mode & 0o777, bytes: 0 });
        if (depth < maxDepth) visit(path, depth + 1);
      }
    }
  };
  visit(dir, 1);
  return out;
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

/** Shell-quotes a path for a command the operator can paste. */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
