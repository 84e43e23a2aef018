/**
 * The data directory holds the database, keys and generated files: it is created 0700 and
 * refused when group or others can enter it, because everything in it is sensitive, and when
 * it is not the running user's.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { ConfigError } from "./config/error.ts";
import { describeFsError } from "./files.ts";

export function prepareDataDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new ConfigError(`data_dir: cannot create ${path}: ${describeFsError(error)}`);
  }
  const stat = statSync(path);
  if (!stat.isDirectory()) throw new ConfigError(`data_dir: ${path} is not a directory`);
  refuseAnotherOwner(path, stat.uid);
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8);
    throw new ConfigError(`data_dir: ${path} is open to group or others (mode ${mode}); run: chmod 700 ${path}`);
  }
}

/**
 * Citadel runs as its data directory's owner. Another user would stop at the database with a
 * bare "permission denied" (exit 1, which systemd retries for ever); root would get in, and
 * leave files there (a database, its write-ahead log) that the owner — the service — can then
 * not read.
 */
function refuseAnotherOwner(path: string, owner: number): void {
  const self = process.getuid?.();
  if (self === undefined || owner === self) return;
  const name = userName(owner);
  const whom = name ? `the user ${name} (uid ${owner})` : `uid ${owner}`;
  if (self === 0) {
    throw new ConfigError(`data_dir: ${path} belongs to ${whom}, not to root: run Citadel as that user, the service's (sudo -u ${name ?? `'#${owner}'`} citadel ...); what root made there the service could not read`);
  }
  throw new ConfigError(`data_dir: ${path} belongs to ${whom}, not to this user (uid ${self}): run Citadel as ${name ?? `uid ${owner}`}, or give it a data directory of your own (--data DIR)`);
}

/** The name of a local account (from /etc/passwd), or null: the message then gives the number alone. */
function userName(uid: number): string | null {
  try {
    const entry = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((line) => line.split(":"))
      .find((fields) => fields[2] === String(uid));
    return entry?.[0] || null;
  } catch {
    return null;
  }
}

/**
 * Run as root (sudo citadel restore, sudo citadel recover) in a data directory another user
 * owns (the service's, on an installed system), the command becomes that user for the rest of
 * the process: every name in the directory is theirs to replace by a link at any moment, so
 * nothing in it may be written, renamed or chowned with root's rights — and the files it makes
 * (the database's write-ahead log) are then theirs, as the service needs. What only root may read (a key file) is read before. Returns the uid now
 * acted as, or null when nothing changed.
 */
export function actAsDataDirectoryOwner(dataDir: string): number | null {
  if (process.getuid?.() !== 0) return null;
  let owner: { uid: number; gid: number };
  try {
    owner = statSync(dataDir);
  } catch {
    return null; // not there yet (a restore makes it, as root's): nobody else can touch it
  }
  if (owner.uid === 0) return null;
  process.setgroups!([owner.gid]);
  process.setgid!(owner.gid);
  process.setuid!(owner.uid);
  return owner.uid;
}
