/**
 * Any member leaves an organization (DELETE /v1/iam/orgs/{org}/membership), whatever their role:
 * removing someone else needs manage_members, leaving does not (found in review: a viewer was
 * told their role did not allow managing members). What a removal ends, leaving ends too; the
 * last owner stays; it is the user's own decision, not a program's token's.
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const newCitadel = stoppedAfterEach();

async function organizationWith(role: string) {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const bob = await c.addUser(operator, "bob@example.org", role);
  return { c, operator, org, bob, leave: `/v1/iam/orgs/${org}/membership` };
}

const removeEvents = (c: Awaited<ReturnType<typeof newCitadel>>) =>
  c.kernel.store.db.query("SELECT actor_user, resource_id, outcome, reason FROM audit_events WHERE action = 'iam.member.remove' ORDER BY seq").all();

test("a viewer leaves: the membership ends with what it held, recorded as their leaving", async () => {
  const { c, operator, org, bob, leave } = await organizationWith("viewer");
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "app" } })).body.id as string;
  const bound = await c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "org", scopes: ["iam:read"], organization: org } });
  expect(bound.status).toBe(200);
  // Removing themselves by the members route still needs manage_members; leaving does not.
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, bob.token)).status).toBe(403);

  const left = await c.send("DELETE", leave, bob.token);
  expect([left.status, left.body]).toEqual([200, { ok: true }]);
  expect((await c.send("GET", "/v1/iam/orgs", bob.token)).body.items).toEqual([]);
  expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, operator)).body.items.map((m: { user: string }) => m.user)).not.toContain(bob.id);
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, bob.token)).status).toBe(403);
  expect((await c.send("GET", "/v1/iam/orgs", bound.body.token)).status).toBe(401); // bound to it: revoked
  expect(removeEvents(c)).toEqual([{ actor_user: bob.id, resource_id: bob.id, outcome: "success", reason: "left the organization (was viewer); 1 credential(s) for the organization revoked" }]);
  // Left, they are no member to leave again.
  expect((await c.send("DELETE", leave, bob.token)).status).toBe(403);
});

test("the last owner cannot leave; an owner beside another one can", async () => {
  const { c, operator, org, bob, leave } = await organizationWith("owner");
  expect((await c.send("DELETE", leave, bob.token)).status).toBe(200);
  const refused = await c.send("DELETE", leave, operator);
  expect([refused.status, refused.body.detail]).toEqual([409, "the last owner cannot leave: make someone else owner first, or delete the organization"]);
  expect((await c.send("GET", "/v1/iam/orgs", operator)).body.items.map((o: { id: string }) => o.id)).toEqual([org]);
  expect(removeEvents(c)).toHaveLength(1);
});

test("an API key, or a workload token, does not make its user leave: their own login or personal access token does", async () => {
  const { c, operator, org, bob, leave } = await organizationWith("admin");
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, operator)).status).toBe(200);
  const key = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, bob.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:read"] } });
  expect((await c.send("DELETE", leave, key.body.token)).status).toBe(403);
  const pat = await c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "self", scopes: ["iam:self"] } });
  const workload = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: pat.body.token, scope: "iam:self" } });
  expect(workload.status).toBe(200);
  const byWorkload = await c.send("DELETE", leave, workload.body.access_token);
  expect([byWorkload.status, byWorkload.body.detail]).toEqual([403, "leave with your own login or personal access token: a workload or console token cannot"]);
  expect(removeEvents(c)).toEqual([]);
  expect((await c.send("DELETE", leave, pat.body.token)).status).toBe(200);
  expect((await c.send("GET", "/v1/iam/orgs", bob.token)).body.items).toEqual([]);
});

test("someone who is not a member is refused by the guard, and nothing is recorded as left", async () => {
  const { c, operator, leave } = await organizationWith("viewer");
  const carol = await c.addUser(operator, "carol@example.org");
  expect((await c.send("DELETE", leave, carol.token)).status).toBe(403);
  expect(removeEvents(c)).toEqual([]);
});
