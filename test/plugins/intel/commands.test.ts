/** What the shield's commands check before they ask the server (the whole flow: test/e2e/intel-cli.test.ts). */
import { describe, expect, test } from "bun:test";
import { intelCommands } from "../../../plugins/intel/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("intel deny --action (found in review: the server's message named the request's field)", () => {
  test("a word outside throttle, refuse, drop is a usage error naming the flag, before any request", async () => {
    const run = await runCommand(intelCommands, "intel deny", { args: ["192.0.2.1"], options: { action: "bogus" } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "--action: one of throttle, refuse, drop", []]);
  });

  test("one of them is sent", async () => {
    const run = await runCommand(intelCommands, "intel deny", { args: ["192.0.2.1"], options: { action: "drop" }, answer: () => ({ id: "man_1", target: "192.0.2.1/32", action: "drop", until: null }) });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([{ method: "POST", path: "/v1/intel/manual", body: { kind: "deny", target: "192.0.2.1", action: "drop" }, confirmed: false }]);
  });
});
