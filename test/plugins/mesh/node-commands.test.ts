/**
 * `citadel mesh agent` as the command runs it. Only failures before anything reaches the device
 * are tested here (the real tools would run): whole rounds are in agent.test.ts.
 */
import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { nodeCommands } from "../../../plugins/mesh/node-commands.ts";
import { runCommand } from "../../helpers/command.ts";
import { enrolledStateDir, FakeControlPlane } from "./fake-node.ts";

const plane = new FakeControlPlane();
afterAll(() => plane.stop());

test("a stored config that cannot be applied at start is logged, and the agent goes on to ask the control plane (found in review: it exited before its first poll, for ever under systemd)", async () => {
  const state = await enrolledStateDir(plane);
  try {
    writeFileSync(join(state.dir, "config.json"), "{ damaged"); // a failure before the device is touched
    plane.refusal = { status: 503, body: { detail: "Citadel is sealed", code: "sealed" } }; // nor is it after
    const run = await runCommand(nodeCommands, "mesh agent", { options: { state: state.dir, once: true, "no-firewall": true } });
    expect(run.stderr).toStartWith("mesh agent: the stored config was not applied: ");
    expect(run.stderr).toContain("(keeping the device as it is; asking the control plane for a newer config)");
    expect(plane.polls).toHaveLength(1);
    expect([run.code, run.error?.message]).toEqual([1, "Citadel is sealed (sealed)"]); // --once: the round's own failure
  } finally {
    state.remove();
  }
});
