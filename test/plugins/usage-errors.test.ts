/**
 * Plugin commands given too little (an argument, a required flag, --yes for what cannot be
 * undone) or contradictory flags refuse with a usage error, which main turns into exit 2 as
 * docs/cli.md says, and before they ask the server anything (found in review: they exited 1).
 */
import { describe, expect, test } from "bun:test";
import { plugins } from "../../src/main.ts";
import { runCommand } from "../helpers/command.ts";

const commands = plugins.flatMap((p) => p.commands ?? []);
const WS = { workspace: "ws_1" };

const cases: Array<[words: string, args: string[], options: Record<string, string | boolean>, message: string]> = [
  ["audit note", [], {}, "give the note's text"],
  ["backup verify", [], {}, "give the backup file"],
  ["restore", [], {}, "give the backup file"],
  ["dns zone delete", ["example.test"], { org: "org_1" }, "add --yes"],
  ["dns secondary add", ["s1"], { key: "k1" }, "usage: citadel dns secondary add"],
  ["token create", [], {}, "give the token a name"],
  ["token revoke", [], {}, "give the token's id"],
  ["org delete", ["org_1"], {}, "add --yes"],
  ["org set", [], { org: "org_1" }, "nothing to change"],
  ["org set", [], { org: "org_1", "require-mfa": "yes" }, "--require-mfa: on or off"],
  ["org set", [], { org: "org_1", "allow-from": " " }, "--allow-from:"],
  // Commas around nothing are no list: they do not clear it, as only "none" does (found in review).
  ["org set", [], { org: "org_1", "allow-from": "," }, "--allow-from:"],
  ["workspace set", ["ws_1"], { "allow-from": " , " }, "--allow-from:"],
  ["token create", ["ci"], { "allow-from": ",," }, "--allow-from:"],
  ["org role", ["usr_1", "superuser"], { org: "org_1" }, "role: one of viewer, editor, admin, owner"],
  ["workspace set", ["ws_1"], {}, "nothing to change"],
  ["workspace delete", ["ws_1"], {}, "add --yes"],
  ["apikey create", ["ci"], { org: "org_1" }, "--service:"],
  ["user delete", ["usr_1"], {}, "add --yes"],
  ["user password-reset", ["usr_1"], {}, "add --yes"],
  ["user mfa-reset", ["usr_1"], {}, "add --yes"],
  ["intel list import", ["drop", "/nonexistent/list.txt"], {}, "--weight:"],
  ["mesh networks delete", ["n1"], { org: "org_1" }, "add --yes"],
  ["mesh join", [], { key: "citadel_meshkey_x" }, "usage: citadel mesh join"],
  ["mesh join", [], { server: "https://citadel.test:8443", key: "citadel_meshkey_x", interface: "-bad" }, "--interface:"],
  ["secrets get", ["DB"], {}, "name the workspace: --workspace ws_..."],
  ["secrets get", [], WS, "give the secret's name"],
  ["secrets set", ["bad-name"], WS, "a secret's name is an environment variable name"],
  ["secrets rollback", ["DB"], WS, "give the secret's name and the version to go back to"],
  ["secrets rollback", ["DB", "latest"], WS, 'the version to go back to: a whole number from 1 to 2147483647, not "latest"'],
  // Found in review: 0 went to the server (422, exit 1), a number this long was sent as 1e20.
  ["secrets rollback", ["DB", "0"], WS, 'the version to go back to: a whole number from 1 to 2147483647, not "0"'],
  ["secrets rollback", ["DB", "100000000000000000000"], WS, "the version to go back to: a whole number from 1 to 2147483647"],
  ["secrets rollback", ["DB", "2147483648"], WS, "the version to go back to: a whole number from 1 to 2147483647"],
  ["secrets env protect", ["production", "everyone"], WS, "give the environment and one of members, admins, named"],
  ["secrets e2ee rotate", [], { ...WS, trust: "usr_aaaaaaaaaaaaaa" }, "--trust takes user=fingerprint pairs"],
  ["run", [], WS, "give the command to run after --"],
  ["subject export", ["team", "org_1"], {}, "the first argument is user or org"],
  ["subject export", ["user", "usr_1"], { "secret-values": true }, "add --yes"],
  ["subject erase", ["user", "usr_1"], {}, "add --yes"],
  ["keys rekey", [], {}, "add --yes"],
];

describe("usage errors in plugin commands exit 2, before any request (found in review)", () => {
  for (const [words, args, options, message] of cases) {
    test(`${words} ${args.join(" ")} ${JSON.stringify(options)}`, async () => {
      const run = await runCommand(commands, words, { args, options });
      expect(run.code).toBe(2);
      expect(run.error?.message).toContain(message);
      expect(run.requests).toEqual([]);
    });
  }

  test("password without --email and without a login that names the account", async () => {
    const run = await runCommand(commands, "password", { answer: () => ({}) });
    expect(run.code).toBe(2);
    expect(run.error?.message).toStartWith("say whose account: --email ADDRESS");
    expect(run.requests.map((r) => r.path)).toEqual(["/v1/iam/me"]); // only the question whose account it is
  });
});
