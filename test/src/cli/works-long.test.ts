/** Commands whose server-side work grows with the data wait for the answer as long as it takes (found in review: a large backup lost its connection after 30 s). */
import { expect, test } from "bun:test";
import { backupCommands } from "../../../plugins/backup/commands.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { sysCommands } from "../../../plugins/sys/commands.ts";
import { runCommand } from "../../helpers/command.ts";

test("backup, keys rotate and secrets rotate-key ask to wait as long as the work takes; a plain list does not", async () => {
  const created = { name: "citadel-20260601T000000Z.backup", bytes: 1, sha256: "0".repeat(64), key: "root key 00000000", manifest: {}, pruned: [] };
  const backup = await runCommand(backupCommands, "backup", { answer: () => created });
  const rotate = await runCommand(sysCommands, "keys rotate", { answer: () => ({ kek_version: 2, deks_rewrapped: 0, deks_damaged: 0 }) });
  const rekeyed = await runCommand(secretsCommands, "secrets rotate-key", { options: { workspace: "ws_1" }, answer: () => ({ data_key_version: 2, reencrypted: 0 }) });
  const listed = await runCommand(backupCommands, "backup list", { answer: () => ({ items: [] }) });
  expect([backup, rotate, rekeyed].map((run) => run.requests.map((r) => [r.path, r.worksLong]))).toEqual([
    [["/v1/backup/snapshots", true]],
    [["/v1/sys/keys/rotate", true]],
    [["/v1/secrets/workspaces/ws_1/rotate-key", true]],
  ]);
  expect(listed.requests.map((r) => r.worksLong)).toEqual([undefined]);
});
