/** What the identity commands print (the whole flow against a server: test/e2e/iam-cli.test.ts). */
import { describe, expect, test } from "bun:test";
import { iamAdminCommands } from "../../../plugins/iam/admin-commands.ts";
import { iamCommands } from "../../../plugins/iam/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("--json: a change that printed a word prints a JSON object naming what changed (found in review)", () => {
  const cases: Array<[string, string[], Record<string, string | boolean>, unknown, string]> = [
    ["org delete", ["org_2"], { yes: true }, { ok: true, id: "org_2" }, "deleted"],
    ["org remove", ["usr_b"], { org: "org_1" }, { ok: true, organization: "org_1", user: "usr_b" }, "removed"],
    ["org uninvite", ["inv_1"], { org: "org_1" }, { ok: true, id: "inv_1" }, "revoked"],
    ["invitations decline", ["inv_1"], {}, { ok: true, id: "inv_1" }, "declined"],
    ["workspace delete", ["ws_1"], { yes: true }, { ok: true, id: "ws_1" }, "deleted"],
    ["apikey revoke", ["key_1"], { org: "org_1" }, { ok: true, id: "key_1" }, "revoked"],
    ["user delete", ["usr_b"], { yes: true }, { ok: true, id: "usr_b" }, "deleted"],
    ["user mfa-reset", ["usr_b"], { yes: true }, { ok: true, id: "usr_b" }, "reset"],
    ["token revoke", ["tok_1"], {}, { ok: true, id: "tok_1" }, "revoked"],
  ];
  for (const [words, args, options, json, word] of cases) {
    test(words, async () => {
      const commands = [...iamAdminCommands, ...iamCommands];
      const asJson = await runCommand(commands, words, { args, options, json: true });
      expect([asJson.code, JSON.parse(asJson.stdout)]).toEqual([0, json]);
      expect((await runCommand(commands, words, { args, options })).stdout).toBe(`${word}\n`);
    });
  }
});

describe("user mfa-reset and user delete take an email, as org add and recover do (found in an operator's walkthrough)", () => {
  const users = { items: [{ id: "usr_alice", email: "alice@example.org" }, { id: "usr_bob", email: "bob@example.org" }] };
  const answer = (request: { method: string; path: string }) => (request.method === "GET" ? users : { ok: true });

  for (const [words, route] of [["user mfa-reset", "POST /v1/iam/users/usr_alice/mfa/reset"], ["user delete", "DELETE /v1/iam/users/usr_alice"]] as const) {
    test(`${words}: an email is looked up in the users list, the id is what is sent`, async () => {
      const run = await runCommand(iamAdminCommands, words, { args: ["Alice@Example.org"], options: { yes: true }, json: true, answer });
      expect(run.code).toBe(0);
      expect(run.requests.map((r) => `${r.method} ${r.path}${r.confirmed ? " (confirmed)" : ""}`)).toEqual(["GET /v1/iam/users", `${route} (confirmed)`]);
      expect(JSON.parse(run.stdout)).toEqual({ ok: true, id: "usr_alice" });
    });

    test(`${words}: an email typed another way (decomposed, upper case in any script) finds the user, as the server compares addresses (found in review)`, async () => {
      const accented = { items: [{ id: "usr_eve", email: "\u00e9ve@example.org" }] };
      const run = await runCommand(iamAdminCommands, words, { args: ["E\u0301VE@example.org"], options: { yes: true }, json: true, answer: (r) => (r.method === "GET" ? accented : { ok: true }) });
      expect([run.code, JSON.parse(run.stdout)]).toEqual([0, { ok: true, id: "usr_eve" }]);
    });

    test(`${words}: an email no user has says so, and nothing is changed`, async () => {
      const run = await runCommand(iamAdminCommands, words, { args: ["carol@example.org"], options: { yes: true }, answer });
      expect([run.code, run.error?.message]).toEqual([1, "No user has the email carol@example.org (citadel user list shows them)."]);
      expect(run.requests.map((r) => r.method)).toEqual(["GET"]);
    });
  }
});

describe("user password-reset prints the one-time password once (found in review: there was no way to reset another user's password)", () => {
  const users = { items: [{ id: "usr_alice", email: "alice@example.org" }] };
  const reset = { user: { id: "usr_alice", email: "alice@example.org", must_change_password: true }, password: "Xy7one-time-password" };
  const answer = (request: { method: string }) => (request.method === "GET" ? users : reset);

  test("by email: looked up, the reset confirmed, the password printed with whose it is", async () => {
    const run = await runCommand(iamAdminCommands, "user password-reset", { args: ["alice@example.org"], options: { yes: true }, answer });
    expect(run.code).toBe(0);
    expect(run.requests.map((r) => `${r.method} ${r.path}${r.confirmed ? " (confirmed)" : ""}`)).toEqual(["GET /v1/iam/users", "POST /v1/iam/users/usr_alice/password/reset (confirmed)"]);
    expect(run.stdout).toBe("one-time password for alice@example.org (shown only now; they must change it at their next login): Xy7one-time-password\n");
  });

  test("--json: the server's answer", async () => {
    const run = await runCommand(iamAdminCommands, "user password-reset", { args: ["usr_alice"], options: { yes: true }, json: true, answer });
    expect(JSON.parse(run.stdout)).toEqual(reset);
  });
});

describe("apikey create warns of a service not activated for the organization (found in an operator's walkthrough)", () => {
  const created = (active: boolean) => ({ token: "citadel_secrets_x", id: "key_1", service: "secrets", scopes: ["secrets:read"], expires_at: null, service_active: active });
  const options = { org: "org_1", service: "secrets" };
  const warning = "warning: secrets is not activated for org_1: this key is refused (403) until an owner runs citadel org activate secrets --org org_1\n";

  test("inactive: the key on standard output, and a warning on standard error saying how to activate it", async () => {
    const run = await runCommand(iamAdminCommands, "apikey create", { args: ["ci"], options, answer: () => created(false) });
    expect([run.code, run.stdout]).toEqual([0, "citadel_secrets_x\n"]);
    expect(run.stderr).toEndWith(warning);
  });

  test("--json: the output is the server's answer, with service_active; the warning on standard error", async () => {
    const run = await runCommand(iamAdminCommands, "apikey create", { args: ["ci"], options, json: true, answer: () => created(false) });
    expect(JSON.parse(run.stdout)).toEqual(created(false));
    expect(run.stderr).toBe(warning);
  });

  test("active: no warning", async () => {
    const run = await runCommand(iamAdminCommands, "apikey create", { args: ["ci"], options, answer: () => created(true) });
    expect(run.stderr).not.toContain("warning");
  });
});

describe("org leave: any member leaves an organization, asked for --yes (found in review: only admins could remove anyone, themselves included)", () => {
  test("without --yes nothing is sent", async () => {
    const run = await runCommand(iamCommands, "org leave", { options: { org: "org_1" } });
    expect([run.code, run.requests]).toEqual([2, []]);
  });

  test("with --yes: DELETE of the caller's own membership, saying which organization was left", async () => {
    const run = await runCommand(iamCommands, "org leave", { options: { org: "org_1", yes: true } });
    expect([run.code, run.stdout]).toEqual([0, "left org_1\n"]);
    expect(run.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["DELETE /v1/iam/orgs/org_1/membership"]);
    const asJson = await runCommand(iamCommands, "org leave", { options: { org: "org_1", yes: true }, json: true });
    expect(JSON.parse(asJson.stdout)).toEqual({ ok: true, organization: "org_1" });
  });
});

test("org list shows an organization whose settings the server left out (its allowlist refuses this address) as such, not a crash (found in review)", async () => {
  const items = [
    { id: "org_1", name: "home", role: "owner", require_mfa: null, ip_allowlist: null, services: null, created_at: "2026-06-01T00:00:00.000Z" },
    { id: "org_2", name: "open", role: "admin", require_mfa: true, ip_allowlist: [], services: ["dns"], created_at: "2026-06-01T00:00:00.000Z" },
  ];
  const run = await runCommand(iamAdminCommands, "org list", { answer: () => ({ items }) });
  expect(run.code).toBe(0);
  const rows = run.stdout.trim().split("\n").slice(1).map((line) => line.split(/\s{2,}/));
  expect(rows).toEqual([
    ["org_1", "home", "owner", "(not from here)", "(not from here)"],
    ["org_2", "open", "admin", "required", "dns"],
  ]);
});
