/**
 * The authorization matrix, generated from the application's own route table: every route
 * × every kind of caller, each with the outcome its access declaration implies. A new route
 * is covered the moment it exists; a route whose guard lets the wrong caller through fails.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { roleAllows, permissionForScope, type Role } from "../../../src/auth/rbac.ts";
import { accessDeclarations } from "../../../src/http/app.ts";
import type { AccessSpec } from "../../../src/http/access.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type Row = "no token" | "expired" | "revoked" | "wrong scope" | "wrong service key" | "wrong organization" | "disallowed address" | Role;
const ROWS: Row[] = ["no token", "expired", "revoked", "wrong scope", "wrong service key", "wrong organization", "disallowed address", "viewer", "editor", "admin", "owner"];
type Outcome = "passes the guard" | 401 | 403;

/** What the declaration says should happen to this caller. */
function expected(spec: AccessSpec, row: Row, from: "loopback" | "elsewhere" = "loopback"): Outcome {
  if (spec.public) return spec.ownCredential ? 401 : "passes the guard"; // no caller here holds a node token
  if (spec.loopbackPublic && from === "loopback") return "passes the guard";
  if (row === "no token" || row === "expired" || row === "revoked") return 401;
  if ((row === "wrong scope" || row === "wrong service key") && spec.anyScope) return "passes the guard"; // (logging itself out, an API key too)
  if (row === "disallowed address" || row === "wrong scope") return 403;
  if (spec.operator) return 403; // none of these callers is an appliance operator
  const targeted = spec.org !== undefined || spec.workspace !== undefined;
  if (row === "wrong service key") return spec.scope?.startsWith("system:") && !targeted ? "passes the guard" : 403;
  if (row === "wrong organization") return targeted ? 403 : "passes the guard";
  if (!targeted) return "passes the guard";
  return roleAllows(row, spec.permission ?? permissionForScope(spec.scope!)) ? "passes the guard" : 403;
}

let c: Awaited<ReturnType<typeof testCitadel>>;
const tokens = {} as Record<Row, string | undefined>;
const ids: Record<string, string> = {};

beforeAll(async () => {
  c = await testCitadel({ config: { rate_limit: { per_address: { per_second: 1e6, burst: 1e6 }, per_organization: { per_second: 1e6, burst: 1e6 }, auth: { per_second: 1e6, burst: 1e6 } } } });
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  for (const role of ["viewer", "editor", "admin", "owner"] as const) {
    const user = await c.addUser(operator, `${role}@example.org`, role);
    tokens[role] = user.token;
    ids[role] = user.id;
  }
  const outsider = await c.addUser(operator, "outsider@example.org");
  expect((await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other", owner: outsider.id } })).status).toBe(200);
  tokens["wrong organization"] = outsider.token;
  ids.workspace = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "w1" } })).body.id;
  await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, operator);
  tokens["wrong service key"] = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, operator, { json: { service: "system", name: "k", scopes: ["system:read"] } })).body.token;
  const pat = async (json: Record<string, unknown>) => (await c.send("POST", "/v1/iam/me/tokens", tokens.owner, { json: { name: "t", scopes: ["read", "write", "iam:self"], ...json } })).body;
  // A scope no route needs: no longer made (an unknown scope is refused), so written as one a
  // token made before its plugin was removed would carry.
  const wrongScope = await pat({ scopes: ["read"] });
  c.kernel.store.db.query(`UPDATE credentials SET scopes = '["nosuch:read"]' WHERE id = ?`).run(wrongScope.id);
  tokens["wrong scope"] = wrongScope.token;
  tokens["disallowed address"] = (await pat({ ip_allowlist: ["203.0.113.0/24"] })).token;
  const expiring = await pat({});
  c.kernel.store.db.query("UPDATE credentials SET expires_at = 1 WHERE id = ?").run(expiring.id);
  tokens.expired = expiring.token;
  const revoked = await pat({});
  await c.send("DELETE", `/v1/iam/me/tokens/${revoked.id}`, tokens.owner);
  tokens.revoked = revoked.token;
  ids.token = (await pat({})).id;
  ids.key = tokens["wrong service key"]!.split("_")[2]!;
});

afterAll(() => c.stop());

/** 0 for a route that leaves the caller as they were; 1 for leaving the organization; 2 for logging out. */
const endsTheCaller = (route: string) => (route.endsWith("/logout") ? 2 : route.endsWith("/membership") ? 1 : 0);

/** Concrete values for a route's parameters. */
function concrete(path: string): string {
  const values: Record<string, string> = {
    org: c.owner.organization,
    workspace: ids.workspace!,
    user: ids.viewer!,
    token: ids.token!,
    key: ids.key!,
    session: "nosuchsession",
    service: "system",
    subject: "u_someone",
  };
  return path.replace(/:(\w+)/g, (_, name: string) => values[name] ?? name);
}

describe("authorization matrix", () => {
  test("covers every route of the application", () => {
    expect(accessDeclarations(c.app).size).toBe(c.app.routes.length);
  });

  // Before the whole matrix, whose last routes end the callers' sessions.
  test("a loopback-public route, asked from elsewhere, is what the rest of its declaration says", async () => {
    const routes = [...accessDeclarations(c.app)].filter(([, spec]) => spec.loopbackPublic);
    expect(routes.length).toBeGreaterThan(0);
    const wrong: string[] = [];
    for (const row of ROWS) {
      for (const [route, spec] of routes) {
        const [method, path] = route.split(" ") as [string, string];
        const res = await c.send(method, concrete(path), tokens[row], { headers: { "x-test-peer": "203.0.113.80" } });
        const outcome: Outcome = res.status === 401 || res.status === 403 ? (res.status as 401 | 403) : "passes the guard";
        const want = expected(spec, row, "elsewhere");
        if (outcome !== want) wrong.push(`${row.padEnd(18)} ${route}: got ${res.status}, expected ${want}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test("every route × every caller gets what its declaration implies", async () => {
    const routes = [...accessDeclarations(c.app)]
      // Routes that end the caller's own membership, then their session, go last, so the routes
      // after them in the row still work.
      .sort(([a], [b]) => endsTheCaller(a) - endsTheCaller(b));
    const wrong: string[] = [];
    let checked = 0;
    for (const row of ROWS) {
      for (const [route, spec] of routes) {
        const [method, path] = route.split(" ") as [string, string];
        const res = await c.send(method, concrete(path), tokens[row], ["POST", "PUT", "PATCH", "DELETE"].includes(method) ? { json: {} } : {});
        const outcome: Outcome = res.status === 401 || res.status === 403 ? (res.status as 401 | 403) : "passes the guard";
        const want = expected(spec, row);
        if (outcome !== want) wrong.push(`${row.padEnd(18)} ${route}: got ${res.status}${res.body?.detail ? ` (${res.body.detail})` : ""}, expected ${want}`);
        checked++;
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBe(ROWS.length * routes.length);
  });

  test("every refusal by the guard is in the audit log", async () => {
    // Every page: the matrix makes more refusals than one page holds.
    const owner = await c.login(c.owner.email, c.owner.password);
    const all: Array<{ action: string; reason: string }> = [];
    for (let cursor = ""; ; ) {
      const page = await c.send("GET", `/v1/audit/events?action=auth&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, owner);
      all.push(...page.body.events);
      if (!page.body.next_cursor) break;
      cursor = page.body.next_cursor;
    }
    expect(new Set(all.map((e) => e.action))).toEqual(new Set(["auth.token.reject", "auth.permission.deny"]));
    expect(all.some((e) => e.reason === "expired")).toBe(true);
    expect(all.some((e) => e.reason === "revoked")).toBe(true);
  });

  // Operator routes name no organization: a restriction to one would confine nothing there.
  // After the audit log's test: its refusals would crowd the matrix's out of the page it reads.
  test("a credential restricted to an organization or a workspace is no operator's, whatever made it (found in review)", async () => {
    const operatorRoutes = [...accessDeclarations(c.app)].filter(([, spec]) => spec.operator);
    expect(operatorRoutes.length).toBeGreaterThan(0);
    const operator = await c.login(c.owner.email, c.owner.password);
    // Every scope an operator route needs, so that only the operator check can refuse.
    const scopes = [...new Set(operatorRoutes.flatMap(([, spec]) => (spec.scope ? [spec.scope] : [])))];
    const pat = async (maker: string, json: Record<string, unknown>) =>
      (await c.send("POST", "/v1/iam/me/tokens", maker, { json: { name: "restricted", scopes: [...scopes, "iam:self", "shell:connect"], ...json } })).body.token as string;
    // The same token unrestricted is an operator's: its scopes are enough.
    expect((await c.send("GET", "/v1/audit/events", await pat(operator, {}))).status).toBe(200);

    const toOrganization = await pat(operator, { organization: c.owner.organization });
    const toWorkspace = await pat(operator, { workspace: ids.workspace });
    expect([toOrganization, toWorkspace]).toEqual([expect.any(String), expect.any(String)]);
    const restricted: Record<string, () => Promise<string>> = {
      "organization-restricted token": async () => toOrganization,
      "workspace-restricted token": async () => toWorkspace,
      "token made by a workspace-restricted one": async () => pat(toWorkspace, {}),
      "workload token exchanged from an organization-restricted one": async () => {
        const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: toOrganization, scope: scopes.join(" ") } });
        return exchanged.body.access_token as string;
      },
      // Single use: one for every request.
      "console token made by a workspace-restricted one": async () => (await c.send("POST", "/v1/iam/console-tokens", toWorkspace)).body.token as string,
    };
    const wrong: string[] = [];
    for (const [kind, credential] of Object.entries(restricted)) {
      for (const [route] of operatorRoutes) {
        const [method, path] = route.split(" ") as [string, string];
        // Not from this host: a loopback-public route would let a loopback client in without a token.
        const res = await c.send(method, concrete(path), await credential(), { headers: { "x-test-peer": "203.0.113.80" }, ...(method === "GET" ? {} : { json: {} }) });
        if (res.status !== 403 || res.body?.detail !== "Only an operator may do this.") wrong.push(`${kind} ${route}: got ${res.status}${res.body?.detail ? ` (${res.body.detail})` : ""}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
