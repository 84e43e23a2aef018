/** The [backup] config section: scheduled backups made by the server itself. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const BackupSettings = section("Backups: scheduled, encrypted snapshots of the database (see docs/backup.md).", {
  enabled: Type.Boolean({ default: false, description: "Make a backup every interval_hours while Citadel runs unsealed." }),
  interval_hours: Type.Number({ default: 24, exclusiveMinimum: 0, maximum: 8760, description: "Hours between scheduled backups (counted from the newest backup in dir)." }),
  keep: Type.Integer({ default: 7, minimum: 0, maximum: 10_000, description: "How many backups to keep in dir; older ones are deleted after each new one. 0 keeps them all." }),
  dir: Type.String({ default: "backups", minLength: 1, description: "Where backups are written: relative to the data directory, or absolute. Files are named citadel-YYYYMMDDTHHMMSSZ.backup." }),
});
export type BackupSettings = Static<typeof BackupSettings>;
