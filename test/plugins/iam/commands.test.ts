/** What the identity commands print (the whole flow against a server: test/e2e/iam-cli.test.ts). */
import { describe, expect, test } from "bun:test";
import { iamAdminCommands } from "../../../plugins/iam/admin-commands.ts";
import { iamCommands } from "../../../plugins/iam/commands.ts";
import { ApiError } from "../../../src/cli/api-client.ts";
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

describe("the list commands show a list whole: every page, following next_cursor to the last (found missing: the lists had no pages)", () => {
  // Each command, its list's path, and one item for each page (only what the command prints).
  const organization = (id: string) => ({ id, name: id, role: "owner", require_mfa: false, ip_allowlist: [], services: [], created_at: "2026-06-01T00:00:00.000Z" });
  const credential = (id: string) => ({ id, kind: "pat", name: id, service: null, organization: null, workspace: null, scopes: ["read"], ip_allowlist: [], created_at: "2026-06-01T00:00:00.000Z", expires_at: null, last_used_at: null, last_used_from: null });
  const cases: Array<[string, string, (id: string) => Record<string, unknown>]> = [
    ["org list", "/v1/iam/orgs", organization],
    ["org members", "/v1/iam/orgs/org_1/members", (id) => ({ user: id, email: `${id}@example.org`, name: null, role: "viewer", mfa: false, since: "2026-06-01T00:00:00.000Z" })],
    ["org invitations", "/v1/iam/orgs/org_1/invitations", (id) => ({ id, organization: "org_1", email: `${id}@example.org`, role: "viewer", invited_by: "usr_a", created_at: "2026-06-01T00:00:00.000Z", expires_at: "2026-06-08T00:00:00.000Z" })],
    ["invitations", "/v1/iam/me/invitations", (id) => ({ id, organization: { id: "org_1", name: "home" }, role: "viewer", invited_by: null, created_at: "2026-06-01T00:00:00.000Z", expires_at: "2026-06-08T00:00:00.000Z" })],
    ["workspace list", "/v1/iam/orgs/org_1/workspaces", (id) => ({ id, organization: "org_1", name: id, ip_allowlist: [], members: [], created_at: "2026-06-01T00:00:00.000Z" })],
    ["apikey list", "/v1/iam/orgs/org_1/api-keys", credential],
    ["token list", "/v1/iam/me/tokens", credential],
    ["user list", "/v1/iam/users", (id) => ({ id, email: `${id}@example.org`, name: null, operator: false, mfa: false, must_change_password: false, created_at: "2026-06-01T00:00:00.000Z" })],
  ];
  const pages = (path: string, item: (id: string) => Record<string, unknown>) => (request: { path: string }) => {
    if (request.path === path) return { items: [item("first_a"), item("first_b")], next_cursor: "c/1+" };
    if (request.path === `${path}?limit=1000&cursor=c%2F1%2B`) return { items: [item("second_a")], next_cursor: "c2" };
    if (request.path === `${path}?limit=1000&cursor=c2`) return { items: [item("third_a")], next_cursor: null };
    throw new Error(`unexpected ${request.path}`);
  };

  for (const [words, path, item] of cases) {
    test(`${words}: the first page asked as before pages were (an older server answers it whole), then the rest, the most rows a page holds, each after the one before`, async () => {
      const commands = [...iamAdminCommands, ...iamCommands];
      const options = { org: "org_1" };
      const asJson = await runCommand(commands, words, { options, json: true, answer: pages(path, item) });
      expect(asJson.code).toBe(0);
      expect(asJson.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET ${path}`, `GET ${path}?limit=1000&cursor=c%2F1%2B`, `GET ${path}?limit=1000&cursor=c2`]);
      expect(JSON.parse(asJson.stdout)).toEqual(["first_a", "first_b", "second_a", "third_a"].map(item));
      const printed = await runCommand(commands, words, { options, answer: pages(path, item) });
      for (const id of ["first_a", "first_b", "second_a", "third_a"]) expect(printed.stdout).toContain(id);
    });
  }

  test("a list an older server answers whole (no next_cursor) is that one page", async () => {
    const run = await runCommand(iamAdminCommands, "user list", { json: true, answer: () => ({ items: [{ id: "usr_a", email: "a@example.org", name: null, operator: false, mfa: false }] }) });
    expect([run.code, run.requests.length, JSON.parse(run.stdout).length]).toEqual([0, 1, 1]);
  });

  test("a server that answers the same cursor again is not followed forever", async () => {
    const run = await runCommand(iamAdminCommands, "user list", { answer: () => ({ items: [], next_cursor: "again" }) });
    expect([run.code, run.error?.message, run.requests.length]).toEqual([1, "The server answered /v1/iam/users with the same page again: its list cannot be followed to the end.", 2]);
  });

  test("a list whose server restarted between two pages (its cursor refused) is read again from its start, once (found in review: the command failed, telling the user to start again)", async () => {
    let restarted = false;
    const answer = (request: { path: string }) => {
      if (request.path === "/v1/iam/users") return { items: [{ id: restarted ? "usr_new" : "usr_a", email: "a@example.org", name: null, operator: false, mfa: false }], next_cursor: "c1" };
      if (!restarted) {
        restarted = true;
        throw new ApiError("the cursor is not one this API returned (or Citadel restarted since): start again from the first page (validation_failed)", 422, "validation_failed");
      }
      return { items: [{ id: "usr_z", email: "z@example.org", name: null, operator: false, mfa: false }], next_cursor: null };
    };
    const run = await runCommand(iamAdminCommands, "user list", { json: true, answer });
    expect([run.code, JSON.parse(run.stdout).map((u: { id: string }) => u.id), run.requests.length]).toEqual([0, ["usr_new", "usr_z"], 4]);
  });

  test("user delete by email finds an address on a later page of the users", async () => {
    const answer = (request: { method: string; path: string }) => {
      if (request.method !== "GET") return { ok: true };
      return request.path === "/v1/iam/users" ? { items: [{ id: "usr_a", email: "a@example.org" }], next_cursor: "c1" } : { items: [{ id: "usr_z", email: "z@example.org" }], next_cursor: null };
    };
    const run = await runCommand(iamAdminCommands, "user delete", { args: ["z@example.org"], options: { yes: true }, json: true, answer });
    expect([run.code, JSON.parse(run.stdout)]).toEqual([0, { ok: true, id: "usr_z" }]);
  });
});

test("workspace list shows a workspace whose allowlist the server left out (it refuses this address) as such, not a crash (found in review)", async () => {
  const items = [
    { id: "ws_1", organization: "org_1", name: "fenced", ip_allowlist: null, members: null, created_at: "2026-06-01T00:00:00.000Z" },
    { id: "ws_2", organization: "org_1", name: "open", ip_allowlist: [], members: [], created_at: "2026-06-01T00:00:00.000Z" },
    { id: "ws_3", organization: "org_1", name: "home", ip_allowlist: ["10.0.0.0/8", "192.0.2.0/24"], members: [], created_at: "2026-06-01T00:00:00.000Z" },
  ];
  const run = await runCommand(iamAdminCommands, "workspace list", { options: { org: "org_1" }, answer: () => ({ items }) });
  expect(run.code).toBe(0);
  const rows = run.stdout.trim().split("\n").slice(1).map((line) => line.split(/\s{2,}/));
  expect(rows).toEqual([
    ["ws_1", "fenced", "(not from here)"],
    ["ws_2", "open", "any"],
    ["ws_3", "home", "10.0.0.0/8,192.0.2.0/24"],
  ]);
});
