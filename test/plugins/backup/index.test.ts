/** The plugin's declarations and its start: what it registers, and when it refuses to schedule. */
import { describe, expect, test } from "bun:test";
import { backupPlugin } from "../../../plugins/backup/index.ts";
import type { BackupSettings } from "../../../plugins/backup/settings.ts";
import { testKernel } from "../../helpers/http.ts";

const settings = (s: Partial<BackupSettings> = {}): BackupSettings => ({ enabled: false, interval_hours: 24, keep: 7, dir: "backups", ...s });

describe("the backup plugin", () => {
  test("declares its actions and operator-only routes", () => {
    expect(backupPlugin.actions.map((a) => a.type)).toEqual(["backup.create", "backup.download", "backup.prune", "backup.restore"]);
    expect(backupPlugin.scopes).toEqual(["backup:read", "backup:write"]);
    expect(backupPlugin.commands!.map((c) => c.words.join(" "))).toEqual(["backup", "backup list", "backup verify", "restore"]);
  });

  test("with scheduling off, start does nothing and stops cleanly", async () => {
    const k = testKernel<BackupSettings>({ settings: settings(), actions: backupPlugin.actions });
    const stop = await backupPlugin.start!(k);
    await stop();
  });


});
