/**
 * The guard finds the organization (or workspace) a request names before its handler runs;
 * the handler's write runs later, and a deletion may come first. Every such write checks again:
 * a change to what was deleted meanwhile is refused (404), writes nothing and records no success
 * (found in review: a workspace, an API key with its token, an organization's settings and a
 * workspace role landed in what was deleted, each audited as a success after the deletion).
 */
import { describe, expect, test } from "bun:test";
import { confirmationToken, stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();


/** The successful iam events recorded after the first `action` (the deletion). */
function successesAfter(c: App, action: string): string[] {
  const rows = c.kernel.store.db
    .query("SELECT action FROM audit_events WHERE outcome = 'success' AND action LIKE 'iam.%' AND rowid > (SELECT min(rowid) FROM audit_events WHERE action = ?) ORDER BY rowid")
    .all(action) as Array<{ action: string }>;
  return rows.map((r) => r.action);
}

describe("a change sent while the organization is being deleted", () => {
  test("is refused (404 not_found), writes nothing and records no success", async () => {
    const c = await newCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const bob = await c.addUser(owner, "bob@example.com", "editor");
    const dave = await c.addUser(owner, "dave@example.com", "viewer");
    await c.addUser(owner, "carol@example.com");
    expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, owner)).status).toBe(200);
    const invitation = (await c.send("POST", `/v1/iam/orgs/${org}/invitations`, owner, { json: { email: "erin@example.com", role: "viewer" } })).body.id as string;
    const confirm = await confirmationToken(c, "DELETE", `/v1/iam/orgs/${org}`, owner);

    const [deleted, ...changes] = await Promise.all([
      c.send("DELETE", `/v1/iam/orgs/${org}`, owner, { headers: { "x-citadel-confirm": confirm } }),
      c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "late" } }),
      c.send("POST", `/v1/iam/orgs/${org}/api-keys`, owner, { json: { service: "secrets", name: "k", scopes: ["secrets:read"] } }),
      c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { require_mfa: true } }),
      c.send("PUT", `/v1/iam/orgs/${org}/services/dns`, owner),
      c.send("POST", `/v1/iam/orgs/${org}/members`, owner, { json: { email: "carol@example.com", role: "viewer" } }),
      c.send("PUT", `/v1/iam/orgs/${org}/members/${bob.id}`, owner, { json: { role: "admin" } }),
      c.send("DELETE", `/v1/iam/orgs/${org}/members/${dave.id}`, owner),
      c.send("POST", `/v1/iam/orgs/${org}/invitations`, owner, { json: { email: "frank@example.com", role: "viewer" } }),
      c.send("DELETE", `/v1/iam/orgs/${org}/invitations/${invitation}`, owner),
    ]);

    expect(deleted.status).toBe(200);
    expect(changes.map((r) => [r.status, r.body.code])).toEqual(Array.from({ length: changes.length }, () => [404, "not_found"]));
    expect(changes[1]!.body.token).toBeUndefined();
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM workspaces WHERE organization_id = ? AND deleted_at IS NULL").get(org)).toEqual({ n: 0 });
    expect(db.query("SELECT count(*) AS n FROM credentials WHERE organization_id = ? AND revoked_at IS NULL").get(org)).toEqual({ n: 0 });
    expect(db.query("SELECT require_mfa FROM organizations WHERE id = ?").get(org)).toEqual({ require_mfa: 0 });
    expect(db.query("SELECT service FROM service_activations WHERE organization_id = ?").all(org)).toEqual([{ service: "secrets" }]);
    const roles = db.query("SELECT u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? ORDER BY u.email").all(org);
    expect(roles).toEqual([
      { email: c.owner.email, role: "owner" },
      { email: "bob@example.com", role: "editor" },
      { email: "dave@example.com", role: "viewer" },
    ]);
    expect(db.query("SELECT count(*) AS n FROM invitations WHERE organization_id = ?").get(org)).toEqual({ n: 0 });
    expect(successesAfter(c, "iam.organization.delete")).toEqual([]);
  });
});

describe("a change sent while the workspace is being deleted", () => {
  test("is refused (404 not_found), writes nothing and records no success", async () => {
    const c = await newCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const bob = await c.addUser(owner, "bob@example.com", "editor");
    const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    const confirm = await confirmationToken(c, "DELETE", `/v1/iam/workspaces/${ws}`, owner);

    const [deleted, ...changes] = await Promise.all([
      c.send("DELETE", `/v1/iam/workspaces/${ws}`, owner, { headers: { "x-citadel-confirm": confirm } }),
      c.send("PUT", `/v1/iam/workspaces/${ws}/members/${bob.id}`, owner, { json: { role: "viewer" } }),
      c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { name: "x0" } }),
    ]);

    expect(deleted.status).toBe(200);
    expect(changes.map((r) => [r.status, r.body.code])).toEqual([
      [404, "not_found"],
      [404, "not_found"],
    ]);
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM workspace_members WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
    expect(db.query("SELECT name FROM workspaces WHERE id = ?").get(ws)).toEqual({ name: "app" });
    expect(successesAfter(c, "iam.workspace.delete")).toEqual([]);
  });
});
