/**
 * A command's input file (a policy, a zone file, a TSIG secret, an ACL) that cannot be read, or
 * is not what the command takes, is a usage error (exit 2) that names it and says why, the same
 * in every command — not a runtime's "ENOENT: no such file or directory, open '...'" (exit 1).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dnsCommands } from "../../../plugins/dns/commands.ts";
import { intelCommands } from "../../../plugins/intel/commands.ts";
import { meshCommands } from "../../../plugins/mesh/commands.ts";
import { runCommand } from "../../helpers/command.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-input-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const missing = join(dir, "missing");
const notJson = join(dir, "bad.json");
writeFileSync(notJson, "{");
const ORG = { org: "org_1" };

test("a file that is not there: exit 2, naming it (and the flag) with the reason, before any request (found in review)", async () => {
  const runs = [
    [await runCommand(intelCommands, "intel policy set", { args: [missing] }), `${missing}: no such file`],
    [await runCommand(dnsCommands, "dns zone import", { args: ["example.test", missing], options: ORG }), `${missing}: no such file`],
    [await runCommand(dnsCommands, "dns tsig create", { args: ["transfer"], options: { "secret-file": missing } }), `--secret-file ${missing}: no such file`],
    [await runCommand(meshCommands, "mesh acl", { args: ["net"], options: { ...ORG, set: missing } }), `--set ${missing}: no such file`],
  ] as const;
  for (const [run, message] of runs) {
    expect([run.code, run.error?.message, run.requests]).toEqual([2, message, []]);
  }
});

test("a file that is not JSON: exit 2 for mesh acl --set as for intel policy set (found in review: 1 and 2)", async () => {
  const acl = await runCommand(meshCommands, "mesh acl", { args: ["net"], options: { ...ORG, set: notJson } });
  expect(acl.code).toBe(2);
  expect(acl.error?.message).toStartWith(`--set ${notJson} is not JSON: `);
  const policy = await runCommand(intelCommands, "intel policy set", { args: [notJson] });
  expect(policy.code).toBe(2);
  expect(acl.requests.filter((r) => r.method === "PUT")).toEqual([]);
});
