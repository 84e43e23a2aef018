/**
 * A backup file made by `instance`, as far as whose it is can be read without a key: a real
 * backup's fixed header (magic, format version, the manifest's length) and its manifest in clear
 * (plugins/backup/format.ts), then some bytes; nothing after decrypts.
 */
import { FORMAT_VERSION, MAGIC } from "../../plugins/backup/format.ts";

export function backupMadeBy(instance: string | null, createdAt = "2026-01-01T00:00:00.000Z"): Buffer {
  const manifest = Buffer.from(JSON.stringify({ created_at: createdAt, instance_id: instance }));
  const fixed = Buffer.alloc(96);
  MAGIC.copy(fixed);
  fixed.writeUInt16BE(FORMAT_VERSION, 8);
  fixed.writeUInt32BE(manifest.length, 76);
  return Buffer.concat([fixed, manifest, Buffer.alloc(16)]);
}
