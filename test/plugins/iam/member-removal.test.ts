/**
 * Removing a member ends what they hold in the organization: their API keys and the tokens
 * restricted to it are revoked, and their narrowed workspace roles go, so none of it comes back
 * when they join again, even what they made while being removed (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

async function organizationWithBob() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const bob = await c.addUser(operator, "bob@example.org", "admin");
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "app" } })).body.id as string;
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, operator)).status).toBe(200);
  return { c, operator, org, bob, ws };
}

/** Bob joins again by accepting an invitation with `role`. */
async function rejoin(c: App, operator: string, org: string, bob: { token: string }, role: string) {
  const invited = await c.send("POST", `/v1/iam/orgs/${org}/invitations`, operator, { json: { email: "bob@example.org", role } });
  expect(invited.status).toBe(200);
  expect((await c.send("POST", `/v1/iam/me/invitations/${invited.body.id}/accept`, bob.token)).status).toBe(200);
}

const removeEvents = (c: App) => c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.member.remove' ORDER BY seq").all() as Array<{ reason: string | null }>;

test("a removed member's API keys and organization-bound tokens are revoked, and do not come back when they rejoin", async () => {
  const { c, operator, org, bob, ws } = await organizationWithBob();
  const apiKey = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, bob.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:read"] } });
  const pat = await c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "org", scopes: ["secrets:read", "iam:self"], organization: org } });
  const unrestricted = await c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "any", scopes: ["secrets:read"] } });
  // A token the organization-bound one made goes with it.
  const child = await c.send("POST", "/v1/iam/me/tokens", pat.body.token, { json: { name: "child", scopes: ["secrets:read"] } });
  const environments = `/v1/secrets/workspaces/${ws}/environments`;
  for (const token of [apiKey.body.token, pat.body.token, child.body.token, unrestricted.body.token]) expect((await c.send("GET", environments, token)).status).toBe(200);

  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator)).status).toBe(200);

  await rejoin(c, operator, org, bob, "viewer");
  for (const token of [apiKey.body.token, pat.body.token, child.body.token]) expect((await c.send("GET", environments, token)).status).toBe(401);
  // What is not bound to the organization is the user's, and follows their membership.
  expect((await c.send("GET", environments, unrestricted.body.token)).status).toBe(200);
  expect((await c.send("GET", `/v1/iam/orgs/${org}/api-keys`, operator)).body.items).toEqual([]);
  expect(removeEvents(c).map((e) => e.reason)).toEqual(["3 credential(s) for the organization revoked"]);
});

test("a removed member's narrowed workspace roles go with the membership: added back as admin, they are admin there (found in review)", async () => {
  const { c, operator, org, bob, ws } = await organizationWithBob();
  const secret = `/v1/secrets/workspaces/${ws}/environments/development/secrets/X`;
  expect((await c.send("PUT", `/v1/iam/workspaces/${ws}/members/${bob.id}`, operator, { json: { role: "viewer" } })).status).toBe(200);
  expect((await c.send("PUT", secret, bob.token, { json: { value: "as a viewer" } })).status).toBe(403);
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator)).status).toBe(200);
  expect((await c.send("POST", `/v1/iam/orgs/${org}/members`, operator, { json: { email: "bob@example.org", role: "admin" } })).status).toBe(200);
  const written = await c.send("PUT", secret, bob.token, { json: { value: "as an admin" } });
  expect([written.status, written.body.detail]).toEqual([200, undefined]);
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, operator)).body.members).toEqual([]);
});

test("a deleted workspace's narrowed roles go with it", async () => {
  const { c, operator, bob, ws } = await organizationWithBob();
  expect((await c.send("PUT", `/v1/iam/workspaces/${ws}/members/${bob.id}`, operator, { json: { role: "viewer" } })).status).toBe(200);
  const ask = await c.send("DELETE", `/v1/iam/workspaces/${ws}`, operator);
  expect((await c.send("DELETE", `/v1/iam/workspaces/${ws}`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  expect(c.kernel.store.db.query("SELECT user_id FROM workspace_members WHERE workspace_id = ?").all(ws)).toEqual([]);
});

/*
 * A member's removal races what they make meanwhile: their request was let in (and its role
 * checked) before the removal wrote, and writes after it. Whatever the order, what they made
 * does not outlive the membership, to work again when they rejoin (found in review).
 */

const liveCredentials = (c: App, userId: string, org: string) =>
  c.kernel.store.db.query("SELECT id FROM credentials WHERE user_id = ? AND organization_id = ? AND revoked_at IS NULL").all(userId, org);

test("an API key and an organization-bound token made while their maker is removed are refused, and nothing works when they rejoin", async () => {
  const { c, operator, org, bob, ws } = await organizationWithBob();
  const [removed, apiKey, pat] = await Promise.all([
    c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator),
    c.send("POST", `/v1/iam/orgs/${org}/api-keys`, bob.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:read"] } }),
    c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "org", scopes: ["secrets:read"], organization: org } }),
  ]);
  expect(removed.status).toBe(200);
  expect([apiKey.status, apiKey.body.token]).toEqual([403, undefined]);
  expect([pat.status, pat.body.token]).toEqual([422, undefined]);
  expect(liveCredentials(c, bob.id, org)).toEqual([]);
  await rejoin(c, operator, org, bob, "viewer");
  expect(liveCredentials(c, bob.id, org)).toEqual([]);
  expect((await c.send("GET", `/v1/secrets/workspaces/${ws}/environments`, bob.token)).status).toBe(200); // bob's own login works
});

test("a token restricted to a workspace, made while its maker is removed, is refused", async () => {
  const { c, operator, org, bob, ws } = await organizationWithBob();
  const [removed, pat] = await Promise.all([
    c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator),
    c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "ws", scopes: ["secrets:read"], workspace: ws } }),
  ]);
  expect([removed.status, pat.status, pat.body.token]).toEqual([200, 422, undefined]);
  expect(liveCredentials(c, bob.id, org)).toEqual([]);
});

test("a member's workspace role set while they are removed is refused: no narrowed role outlives the membership", async () => {
  const { c, operator, org, bob, ws } = await organizationWithBob();
  const [removed, narrowed] = await Promise.all([
    c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator),
    c.send("PUT", `/v1/iam/workspaces/${ws}/members/${bob.id}`, operator, { json: { role: "viewer" } }),
  ]);
  expect([removed.status, narrowed.status]).toEqual([200, 422]);
  expect(c.kernel.store.db.query("SELECT user_id FROM workspace_members WHERE workspace_id = ?").all(ws)).toEqual([]);
});
