/**
 * Putting directories and files in place so that running it twice changes nothing: content
 * is compared before anything is written, files are replaced atomically (a running binary is
 * never rewritten in place), and a mode or owner is set only when it differs. The process
 * umask (0077 in the CLI) would narrow every mode, so each is set explicitly.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { writeFileAtomic } from "../../src/files.ts";
import type { Accounts, Owner } from "./accounts.ts";
import type { ReportItem } from "./report.ts";

/**
 * Refuses a path that passes through a symbolic link below `root` (or is one): writes, chmods,
 * chowns and removals follow links, so `etc/citadel -> /etc` in an image would make the
 * installer change (or uninstall delete) the host's /etc. The root itself may be a link: the
 * operator chose it.
 */
export function refuseLinks(root: string, path: string): void {
  const rest = relative(root, path);
  if (rest.startsWith("..")) throw new Error(`${path} is not below ${root}`);
  let at = root;
  for (const part of rest.split(sep).filter(Boolean)) {
    at = join(at, part);
    let isLink = false;
    try {
      isLink = lstatSync(at).isSymbolicLink();
    } catch {
      return; // does not exist yet: nothing below it can be a link
    }
    if (isLink) throw new Error(`${at} is a symbolic link: install and uninstall write and remove only real directories and files below ${root}`);
  }
}

export async function placeDirectory(path: string, mode: number, owner: Owner, accounts: Accounts): Promise<ReportItem> {
  const existed = existsSync(path);
  if (existed && !statSync(path).isDirectory()) throw new Error(`${path} exists and is not a directory`);
  if (!existed) {
    makeParents(path);
    mkdirSync(path, { mode });
  }
  const adjusted = await applyModeAndOwner(path, mode, owner, accounts);
  return { status: !existed ? "created" : adjusted ? "updated" : "unchanged", what: path, detail: accounts.describe(mode, owner) };
}

export interface FileOptions {
  mode: number;
  owner: Owner;
  /** An existing file is the operator's (the config): never rewritten, whatever it holds. */
  keepContent?: boolean;
}

/** `content` is only computed when the file must be written. */
export async function placeFile(path: string, content: () => Uint8Array | string, options: FileOptions, accounts: Accounts): Promise<ReportItem> {
  const detail = accounts.describe(options.mode, options.owner);
  const existed = existsSync(path);
  let written = false;
  if (!existed || !options.keepContent) {
    const data = content();
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    if (!existed || !Buffer.from(readFileSync(path)).equals(bytes)) {
      makeParents(path);
      writeFileAtomic(path, bytes, options.mode);
      written = true;
    }
  }
  const adjusted = await applyModeAndOwner(path, options.mode, options.owner, accounts);
  if (!existed) return { status: "created", what: path, detail };
  if (written || adjusted) return { status: "updated", what: path, detail };
  return { status: "unchanged", what: path, detail: options.keepContent ? `${detail}; kept as it is` : detail };
}

/**
 * Creates missing ancestors as the system has them (0755): in an image root, /usr/local/bin
 * must not come out 0700 because the installer's umask said so.
 */
function makeParents(path: string): void {
  const parent = dirname(path);
  if (existsSync(parent)) return;
  makeParents(parent);
  mkdirSync(parent);
  chmodSync(parent, 0o755);
}

/** Returns true when something had to change. */
async function applyModeAndOwner(path: string, mode: number, owner: Owner, accounts: Accounts): Promise<boolean> {
  const stat = statSync(path);
  let changed = false;
  if ((stat.mode & 0o7777) !== mode) {
    chmodSync(path, mode);
    changed = true;
  }
  const ids = await accounts.ids(owner);
  if (ids && (stat.uid !== ids.uid || stat.gid !== ids.gid)) {
    chownSync(path, ids.uid, ids.gid);
    changed = true;
  }
  return changed;
}
