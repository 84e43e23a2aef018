/**
 * Whose a backup is, as the backup plugin, the metrics and doctor tell it (plugins do not import
 * each other). Two Citadels may be given one backup directory, and a backup's name does not say
 * which made it; its manifest does, in clear (instance_id: no key is needed). Each instance
 * lists, prunes, schedules by and reports on its own backups only: one reader, so that they all
 * count the same ones — the metrics counting the other's hid a failing schedule (found in review).
 *
 * The layout is plugins/backup/format.ts's (version 1): the magic, the format version at 8, the
 * manifest's length at 76, the manifest at 96.
 */
import { closeSync, lstatSync, openSync, readSync } from "node:fs";

const BACKUP_MAGIC = Buffer.from([0x89, 0x43, 0x42, 0x4b, 0x0d, 0x0a, 0x1a, 0x0a]);
const FORMAT_VERSION = 1;
const VERSION_AT = 8;
const MANIFEST_LENGTH_AT = 76;
const MANIFEST_AT = 96;
const MAX_MANIFEST_BYTES = 1024 * 1024;

/**
 * The instance the backup at `path` names (the id in the instance table of the Citadel that
 * made it), null when it names none; undefined when the file does not read as a backup — not
 * a regular file (never read through a link), not this format, or cut short in its manifest:
 * nobody's that can be told.
 */
export function backupMaker(path: string): string | null | undefined {
  let fd: number | undefined;
  try {
    if (!lstatSync(path).isFile()) return undefined;
    fd = openSync(path, "r");
    const fixed = Buffer.alloc(MANIFEST_AT);
    if (readSync(fd, fixed, 0, MANIFEST_AT, 0) !== MANIFEST_AT) return undefined;
    if (!fixed.subarray(0, BACKUP_MAGIC.length).equals(BACKUP_MAGIC) || fixed.readUInt16BE(VERSION_AT) !== FORMAT_VERSION) return undefined;
    const length = fixed.readUInt32BE(MANIFEST_LENGTH_AT);
    if (length > MAX_MANIFEST_BYTES) return undefined;
    const manifest = Buffer.alloc(length);
    if (readSync(fd, manifest, 0, length, MANIFEST_AT) !== length) return undefined;
    const id = (JSON.parse(manifest.toString("utf8")) as { instance_id?: unknown } | null)?.instance_id;
    return typeof id === "string" || id === null ? id : undefined;
  } catch {
    return undefined; // gone meanwhile, not readable, or a manifest that is not JSON
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
