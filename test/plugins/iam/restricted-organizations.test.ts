/**
 * A token restricted to an organization, or to a workspace of one, sees that organization alone
 * among its user's: not the others' settings (allowlists, MFA requirement, services), whose
 * allowlists the guard never checked for it (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("GET /v1/iam/orgs and GET /v1/iam/me list only the organization a token is restricted to", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const other = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id as string;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "w1" } })).body.id as string;
  const pat = async (json: Record<string, unknown>) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes: ["read", "iam:self"], ...json } })).body.token as string;
  const ids = (items: Array<{ id: string }>) => items.map((o) => o.id).sort();

  for (const token of [await pat({ workspace: ws }), await pat({ organization: org })]) {
    expect(ids((await c.send("GET", "/v1/iam/orgs", token)).body.items)).toEqual([org]);
    expect(ids((await c.send("GET", "/v1/iam/me", token)).body.organizations)).toEqual([org]);
  }
  // Unrestricted, the user's organizations are all there.
  const unrestricted = await pat({});
  expect(ids((await c.send("GET", "/v1/iam/orgs", unrestricted)).body.items)).toEqual([org, other].sort());
  expect(ids((await c.send("GET", "/v1/iam/me", unrestricted)).body.organizations)).toEqual([org, other].sort());
});

test("GET /v1/iam/orgs shows an organization's settings only from an address its allowlist admits (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const open = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "open", owner: me } })).body.id as string;
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { ip_allowlist: ["127.0.0.0/8"], require_mfa: false } })).status).toBe(200);
  const elsewhere = { headers: { "x-test-peer": "203.0.113.77" } };

  expect((await c.send("GET", `/v1/iam/orgs/${org}`, owner, elsewhere)).status).toBe(403);
  const listed = await c.send("GET", "/v1/iam/orgs", owner, elsewhere);
  expect(listed.status).toBe(200);
  const byId = new Map((listed.body.items as Array<Record<string, unknown>>).map((o) => [o.id, o]));
  expect(byId.get(org)).toEqual({ id: org, name: "default", role: "owner", require_mfa: null, ip_allowlist: null, services: null, created_at: expect.any(String) });
  expect(byId.get(open)).toMatchObject({ id: open, role: "owner", require_mfa: false, ip_allowlist: [], services: [] });
  // From an address it admits, all of it.
  const home = (await c.send("GET", "/v1/iam/orgs", owner)).body.items.find((o: { id: string }) => o.id === org);
  expect(home).toMatchObject({ require_mfa: false, ip_allowlist: ["127.0.0.0/8"] });
});

test("GET /v1/iam/orgs/{org}/workspaces shows a workspace's allowlist and members only from an address its allowlist admits, as GET of the workspace would (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const make = async (name: string, list: string[]) => (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name, ip_allowlist: list } })).body.id as string;
  const fenced = await make("fenced", ["127.0.0.0/8"]);
  const open = await make("open", []);
  expect((await c.send("PUT", `/v1/iam/workspaces/${fenced}/members/${me}`, owner, { json: { role: "editor" } })).status).toBe(200);
  const elsewhere = { headers: { "x-test-peer": "203.0.113.77" } };

  expect((await c.send("GET", `/v1/iam/workspaces/${fenced}`, owner, elsewhere)).status).toBe(403);
  const listed = await c.send("GET", `/v1/iam/orgs/${org}/workspaces`, owner, elsewhere);
  expect(listed.status).toBe(200);
  const byId = new Map((listed.body.items as Array<Record<string, unknown>>).map((w) => [w.id, w]));
  expect(byId.get(fenced)).toEqual({ id: fenced, organization: org, name: "fenced", ip_allowlist: null, members: null, created_at: expect.any(String) });
  expect(byId.get(open)).toMatchObject({ id: open, ip_allowlist: [], members: [] });
  // From an address it admits, all of it.
  const home = (await c.send("GET", `/v1/iam/orgs/${org}/workspaces`, owner)).body.items.find((w: { id: string }) => w.id === fenced);
  expect(home).toMatchObject({ ip_allowlist: ["127.0.0.0/8"], members: [{ user: me, role: "editor" }] });
});
