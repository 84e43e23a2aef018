/**
 * A refusal the route's service makes (a ForbiddenError) of a caller the guard let in is audited
 * as the guard's own refusals are: `auth.permission.deny`, naming the route and the reason
 * (found in review: such refusals were recorded nowhere).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

async function citadel() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  /** The refusals recorded so far (security events are written without making the request wait). */
  const denials = async () => {
    await c.kernel.store.write(() => undefined); // writes run in order: those before this one are in
    return c.kernel.store.db
      .query<{ actor_user: string | null; actor_token: string | null; reason: string }, []>("SELECT actor_user, actor_token, reason FROM audit_events WHERE action = 'auth.permission.deny' ORDER BY seq")
      .all();
  };
  return { c, owner, org: c.owner.organization, denials };
}

test("refusals by the route's service are audited as the guard's are, with the route and the reason, and no secret", async () => {
  const { c, owner, org, denials } = await citadel();
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  const promoted = await c.send("PUT", `/v1/iam/orgs/${org}/members/${admin.id}`, admin.token, { json: { role: "owner" } });
  expect(promoted.status).toBe(403);
  const added = await c.send("POST", `/v1/iam/orgs/${org}/members`, admin.token, { json: { email: c.owner.email, role: "viewer" } });
  expect(added.status).toBe(403);
  const pat = (await c.send("POST", "/v1/iam/me/tokens", admin.token, { json: { name: "ci", scopes: ["iam:self"] } })).body;
  const everywhere = await c.send("POST", "/v1/iam/logout", pat.token, { json: { everywhere: true } });
  expect(everywhere.status).toBe(403);

  const recorded = await denials();
  expect(recorded.map((d) => d.reason)).toEqual([
    `PUT /v1/iam/orgs/:org/members/:user: ${promoted.body.detail}`,
    `POST /v1/iam/orgs/:org/members: ${added.body.detail}`,
    `POST /v1/iam/logout: ${everywhere.body.detail}`,
  ]);
  expect(recorded.map((d) => d.actor_user)).toEqual([admin.id, admin.id, admin.id]);
  expect(recorded[2]!.actor_token).toBe(pat.id);
  expect(JSON.stringify(recorded)).not.toContain(pat.token);
});

test("a refusal by the guard is recorded once, and other failures of a handler not at all", async () => {
  const { c, owner, org, denials } = await citadel();
  const viewer = await c.addUser(owner, "viewer@example.org", "viewer");
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}`, viewer.token)).status).toBe(403); // the guard: the role
  expect((await c.send("DELETE", "/v1/iam/me/sessions/ses_nothing", viewer.token)).status).toBe(404); // the handler: not a refusal
  expect((await denials()).map((d) => d.reason)).toEqual([`DELETE /v1/iam/orgs/:org: your role (viewer) does not allow admin`]);
});

test("a flood of refusals by the handler costs the strict bucket: recorded while it lasts, then not one row per request (found in review)", async () => {
  const { c, owner, denials } = await citadel();
  const pat = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "ci", scopes: ["iam:self"] } })).body;
  const statuses = new Set<number>();
  for (let i = 0; i < 60; i++) statuses.add((await c.send("POST", "/v1/iam/logout", pat.token, { json: { everywhere: true } })).status);
  expect([...statuses]).toEqual([403]); // the answer stays a 403
  const recorded = (await denials()).length;
  expect(recorded).toBeGreaterThan(0);
  expect(recorded).toBeLessThanOrEqual(c.config.rate_limit.auth.burst + 1);
});
