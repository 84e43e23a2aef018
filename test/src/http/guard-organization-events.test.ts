/**
 * The guard's refusals in an organization's context say which organization (and workspace):
 * its rate limit's event said "organization limit for org" with the organization column empty,
 * and its permission denials had none either, so the organization's own events missed them
 * (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

interface Row {
  reason: string;
  organization: string | null;
  workspace: string | null;
}
const eventsOf = async (c: Awaited<ReturnType<typeof newCitadel>>, action: string): Promise<Row[]> => {
  await c.kernel.store.write(() => undefined); // writes run in order: the guard's events are in
  return c.kernel.store.db.query<Row, [string]>("SELECT reason, organization, workspace FROM audit_events WHERE action = ? ORDER BY seq").all(action);
};

test("an organization's rate limit is recorded with its organization, named in the reason", async () => {
  const c = await newCitadel({ config: { rate_limit: { per_organization: { per_second: 1, burst: 3 } } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await c.send("GET", `/v1/iam/orgs/${org}/members`, owner)).status);
  expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
  expect(await eventsOf(c, "auth.rate_limit")).toEqual([{ reason: `organization limit for organization ${org}`, organization: org, workspace: null }]);
});

test("the guard's and a handler's refusals in an organization or workspace name them", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "prod" } })).body.id as string;
  const outsider = await c.addUser(owner, "outsider@example.org");
  expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, outsider.token)).status).toBe(403);
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, outsider.token)).status).toBe(403);
  // Refused by the route's handler, after the guard let the token in.
  const write = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "w", scopes: ["write"] } })).body.token as string;
  expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, write, { json: { ip_allowlist: [] } })).status).toBe(403);

  const denials = await eventsOf(c, "auth.permission.deny");
  expect(denials.map(({ organization, workspace }) => ({ organization, workspace }))).toEqual([
    { organization: org, workspace: null },
    { organization: org, workspace: ws },
    { organization: org, workspace: ws },
  ]);
  // And the organization's own events find them.
  const operatorEvents = await c.send("GET", `/v1/audit/events?organization=${org}&action=auth.permission.deny`, owner);
  expect(operatorEvents.body.events).toHaveLength(3);
});

test("a refusal by the workspace a token is restricted to, on a route that names none, is recorded in that workspace (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "prod" } })).body.id as string;
  const bound = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes: ["read", "iam:self"], workspace: ws } })).body.token as string;
  // Set from where it admits: this host is then refused.
  expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: ["10.0.0.0/8"] }, headers: { "x-test-peer": "10.0.0.5" } })).status).toBe(200);
  const refused = await c.send("GET", "/v1/iam/me", bound);
  expect([refused.status, refused.body.detail]).toEqual([403, "The workspace does not allow requests from your address."]);

  const denials = await eventsOf(c, "auth.permission.deny");
  expect(denials).toEqual([{ reason: "GET /v1/iam/me: the workspace does not allow requests from your address", organization: org, workspace: ws }]);
});
