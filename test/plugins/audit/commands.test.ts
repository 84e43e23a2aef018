/** What the audit commands check before they ask the server (the server's side: index.test.ts and test/e2e/keys-audit.test.ts). */
import { describe, expect, test } from "bun:test";
import { auditCommands } from "../../../plugins/audit/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("audit erase (found in review: the route asks for confirmation, the command could not give it)", () => {
  test("without --yes: a usage error, and nothing is sent", async () => {
    const run = await runCommand(auditCommands, "audit erase", { args: ["usr_alice"] });
    expect(run.code).toBe(2);
    expect(run.error?.message).toBe("this destroys the key of usr_alice's personal data in the audit log, for good: add --yes");
    expect(run.requests).toEqual([]);
  });

  test("with --yes: sent as confirmed, so the server's 428 is answered", async () => {
    const run = await runCommand(auditCommands, "audit erase", { args: ["usr_alice"], options: { yes: true }, answer: () => ({ subject: "usr_alice", keys_destroyed: 1 }) });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([{ method: "POST", path: "/v1/audit/subjects/usr_alice/erase", body: undefined, confirmed: true }]);
    expect(run.stdout).toBe("Erased usr_alice: 1 keys destroyed.\n");
  });
});
