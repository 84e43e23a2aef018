/** The backup API's request and response schemas (TypeBox: the validator and the type). */
import { t } from "elysia";
import { MIN_PASSPHRASE_CHARS } from "./keys.ts";
import { Manifest } from "./manifest.ts";
import { Integer } from "../../src/http/schema.ts";

export const CreateBackupRequest = t.Object({
  passphrase: t.Optional(
    t.String({
      // No minLength: it counts UTF-16 code units; the service checks the length in characters (checkNewPassphrase).
      maxLength: 1024,
      description: `Encrypt with this passphrase (argon2id) instead of a key derived from the root key: for a backup that must open without the root key. At least ${MIN_PASSPHRASE_CHARS} characters.`,
    }),
  ),
});
export type CreateBackupRequest = typeof CreateBackupRequest.static;

export const BackupKeyInfo = t.Union([
  t.Object({ kind: t.Literal("root_key"), root_key_id: t.String({ description: "The root key that opens it (and that the restored instance unseals with)." }) }),
  t.Object({ kind: t.Literal("passphrase") }),
]);

export const CreatedBackup = t.Object({
  name: t.String({ description: "The file name in the backup directory: citadel-YYYYMMDDTHHMMSSZ.backup." }),
  bytes: Integer(),
  sha256: t.String({ description: "SHA-256 of the backup file: check a download against it." }),
  key: BackupKeyInfo,
  manifest: Manifest,
  pruned: t.Array(t.String(), { description: "Older backups deleted to keep [backup] keep." }),
});
export type CreatedBackup = typeof CreatedBackup.static;

export const BackupListing = t.Object({
  items: t.Array(
    t.Object({
      name: t.String(),
      time: t.String({ format: "date-time", description: "From the file name (UTC, to the second)." }),
      bytes: Integer(),
    }),
  ),
  directory: t.String(),
});
export type BackupListing = typeof BackupListing.static;

export const BackupNameParams = t.Object({ name: t.String({ pattern: "^citadel-\\d{8}T\\d{6}Z\\.backup$" }) });

export const DownloadQuery = t.Object({
  encoding: t.Optional(t.Union([t.Literal("binary"), t.Literal("base64")], { description: "base64: the file as base64 text (for clients that read text)." })),
});
