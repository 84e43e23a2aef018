/**
 * A token exchange is a request made with the subject token, in its organization: it applies the
 * rules the guard applies to that token on a route that names no organization — the
 * organization's and the workspace's address allowlists, the membership (and for an API key its
 * maker's role), the organization's MFA requirement — and refuses as an OAuth error, audited
 * (found in review: a token the guard refused from an address was exchanged there for a workload
 * token, audited as a success).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const OUTSIDE = { "x-test-peer": "203.0.113.77" };
const newCitadel = stoppedAfterEach();

async function owner() {
  const c = await newCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, session)).status).toBe(200);
  return { c, session, org };
}

type Citadel = Awaited<ReturnType<typeof owner>>["c"];
const exchange = (c: Citadel, subject: string, scope: string, headers: Record<string, string> = {}) =>
  c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: subject, scope }, headers });

async function expectRefused(c: Citadel, answer: Awaited<ReturnType<typeof exchange>>, why: string) {
  expect([answer.status, answer.body.error, answer.body.access_token]).toEqual([400, "invalid_request", undefined]);
  expect(answer.body.error_description).toContain(why);
  await c.kernel.store.write(() => undefined); // writes run in order: the refusal's event is in
  const events = c.kernel.store.db.query<{ action: string; outcome: string; reason: string }, []>("SELECT action, outcome, reason FROM audit_events WHERE action IN ('iam.token.exchange', 'auth.permission.deny') ORDER BY seq").all();
  expect(events.at(-1)).toEqual({ action: "auth.permission.deny", outcome: "failure", reason: `POST /oauth/token: ${why}` }); // and no exchange after it
}

test("a token restricted to a workspace is not exchanged from outside the workspace's allowlist", async () => {
  const { c, session, org } = await owner();
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "app", ip_allowlist: ["127.0.0.0/8", "198.51.100.0/24"] } })).body.id as string;
  const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "ws", scopes: ["secrets:read", "iam:self"], workspace: ws } })).body.token as string;
  expect((await c.send("GET", "/v1/iam/me", pat, { headers: OUTSIDE })).status).toBe(403);
  await expectRefused(c, await exchange(c, pat, "secrets:read", OUTSIDE), "the workspace does not allow requests from your address");
  expect((await exchange(c, pat, "secrets:read")).status).toBe(200); // from inside it
});

test("a token restricted to an organization is not exchanged from outside the organization's allowlist", async () => {
  const { c, session, org } = await owner();
  const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "org", scopes: ["secrets:read"], organization: org } })).body.token as string;
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, session, { json: { ip_allowlist: ["127.0.0.0/8"] } })).status).toBe(200);
  await expectRefused(c, await exchange(c, pat, "secrets:read", OUTSIDE), "the organization does not allow requests from your address");
});

test("an API key whose maker lacks the organization's required MFA, or whose maker's role does not allow the scope, is not exchanged", async () => {
  const { c, session, org } = await owner();
  const bob = await c.addUser(session, "bob@example.org", "admin");
  const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, bob.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:read", "secrets:write"] } })).body.token as string;
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${bob.id}`, session, { json: { role: "viewer" } })).status).toBe(200);
  await expectRefused(c, await exchange(c, key, "secrets:write"), "the member who made this API key is viewer here, which does not allow edit");
  expect((await exchange(c, key, "secrets:read")).status).toBe(200);
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, session, { json: { require_mfa: true } })).status).toBe(200);
  await expectRefused(c, await exchange(c, key, "secrets:read"), "this organization requires two-factor authentication, which the member who made this API key has not enrolled");
});
