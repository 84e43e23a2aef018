/**
 * A stored allowlist whose entries do not parse (a row edited by hand, or written by a later
 * version with a looser parser) refuses every address rather than becoming empty, which lets in
 * any address; entries that parse still count. Said once in the log (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("an organization's, a workspace's or a token's stored allowlist of unreadable entries refuses everyone", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "prod" } })).body.id as string;
  const pat = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes: ["iam:read"] } })).body;
  const store = (table: string, id: string, list: string) => c.kernel.store.write((tx) => tx.run(`UPDATE ${table} SET ip_allowlist = ? WHERE id = ?`, [list, id]));
  const from = (address: string) => ({ headers: { "x-test-peer": address } });
  const members = `/v1/iam/orgs/${org}/members`;

  await store("organizations", org, '["not-a-cidr"]');
  const refused = await c.send("GET", members, owner);
  expect([refused.status, refused.body.detail]).toEqual([403, "The organization does not allow requests from your address."]);
  // One that parses next to it still lets in what it covers.
  await store("organizations", org, '["not-a-cidr", "127.0.0.0/8"]');
  expect((await c.send("GET", members, owner)).status).toBe(200);
  expect((await c.send("GET", members, owner, from("203.0.113.7"))).status).toBe(403);
  // Not even JSON: unreadable, refused.
  await store("organizations", org, "{");
  expect((await c.send("GET", members, owner)).status).toBe(403);
  await store("organizations", org, "[]");

  await store("workspaces", ws, '["10.0.0.0/33"]');
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, owner)).body.detail).toBe("The workspace does not allow requests from your address.");
  await store("credentials", pat.id, '[""]');
  expect((await c.send("GET", members, pat.token)).body.detail).toBe("This token may not be used from your address.");

  const said = c.log.lines.filter((line) => JSON.stringify(line).includes("allowlist") && line.level === "error");
  // Once per unreadable list (five distinct ones), however often each was read.
  expect(said.map((line) => line.allowlist)).toEqual(['["not-a-cidr"]', '["not-a-cidr", "127.0.0.0/8"]', "{", '["10.0.0.0/33"]', '[""]']);
});

test("an organization or a workspace whose stored allowlist is no JSON list is listed with its settings null, never a 500 (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "prod" } })).body.id as string;
  const store = (table: string, id: string, list: string) => c.kernel.store.write((tx) => tx.run(`UPDATE ${table} SET ip_allowlist = ? WHERE id = ?`, [list, id]));

  for (const unreadable of ["{", '{"a":1}', "null"]) {
    await store("workspaces", ws, unreadable);
    const listed = await c.send("GET", `/v1/iam/orgs/${org}/workspaces`, owner);
    expect([listed.status, listed.body.items]).toEqual([200, [expect.objectContaining({ id: ws, ip_allowlist: null, members: null })]]);
    expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, owner)).status).toBe(403);
  }
  await store("workspaces", ws, "[]");
  for (const unreadable of ["{", '"10.0.0.0/8"']) {
    await store("organizations", org, unreadable);
    const listed = await c.send("GET", "/v1/iam/orgs", owner);
    expect([listed.status, listed.body.items]).toEqual([200, [expect.objectContaining({ id: org, require_mfa: null, ip_allowlist: null, services: null })]]);
  }
  // An entry that is no string is shown as text; the list's others still admit.
  await store("organizations", org, '[7, "127.0.0.0/8"]');
  expect((await c.send("GET", `/v1/iam/orgs/${org}`, owner)).body.ip_allowlist).toEqual(["7", "127.0.0.0/8"]);
});

test("accepting an invitation answers the organization as its lists show it: settings null from an address its allowlist refuses or that it cannot read — not a 403 after the join, nor its settings (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const store = (list: string) => c.kernel.store.write((tx) => tx.run("UPDATE organizations SET ip_allowlist = ? WHERE id = ?", [list, org]));
  for (const [email, list] of [["u1@example.test", "{"], ["u2@example.test", '["10.0.0.0/8"]']] as const) {
    await store("[]");
    expect((await c.send("POST", "/v1/iam/users", owner, { json: { email, password: "a long enough passphrase 2026" } })).status).toBe(200);
    const invited = await c.send("POST", `/v1/iam/orgs/${org}/invitations`, owner, { json: { email, role: "viewer" } });
    await store(list);
    const session = await c.login(email, "a long enough passphrase 2026");
    const accepted = await c.send("POST", `/v1/iam/me/invitations/${invited.body.id}/accept`, session);
    expect([list, accepted.status, accepted.body]).toEqual([list, 200, expect.objectContaining({ id: org, role: "viewer", require_mfa: null, ip_allowlist: null, services: null })]);
  }
});

test("a token whose stored allowlist is no JSON list is listed with it null, not a 500 (found in review)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const pat = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes: ["iam:read"] } })).body;
  await c.kernel.store.write((tx) => tx.run("UPDATE credentials SET ip_allowlist = '{' WHERE id = ?", [pat.id]));
  const listed = await c.send("GET", "/v1/iam/me/tokens", owner);
  expect([listed.status, listed.body.items.find((t: { id: string }) => t.id === pat.id)?.ip_allowlist]).toEqual([200, null]);
});
