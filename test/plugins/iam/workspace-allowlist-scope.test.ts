/**
 * A workspace's address allowlist is one of its safeguards, as an organization's is: setting it
 * needs `iam:admin`, which no coarse scope implies. A token with `write` renamed a workspace
 * and also widened or emptied its allowlist (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("a token with write renames a workspace but does not set its allowlist; one with iam:admin does", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "prod", ip_allowlist: ["127.0.0.0/8"] } })).body.id as string;
  const pat = async (scopes: string[]) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes } })).body.token as string;
  const write = await pat(["write"]);

  // As for the organization's allowlist.
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, write, { json: { ip_allowlist: ["0.0.0.0/0"] } })).status).toBe(403);
  for (const ip_allowlist of [["0.0.0.0/0"], [], ["127.0.0.1/32"]]) {
    const refused = await c.send("PATCH", `/v1/iam/workspaces/${ws}`, write, { json: { ip_allowlist } });
    expect([refused.status, refused.body.detail]).toEqual([403, expect.stringContaining("iam:admin")]);
  }
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, owner)).body.ip_allowlist).toEqual(["127.0.0.0/8"]);
  // A rename and the allowlist in one body: neither is done.
  expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, write, { json: { name: "staging", ip_allowlist: [] } })).status).toBe(403);
  expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, owner)).body.name).toBe("prod");

  const renamed = await c.send("PATCH", `/v1/iam/workspaces/${ws}`, write, { json: { name: "production" } });
  expect([renamed.status, renamed.body.name, renamed.body.ip_allowlist]).toEqual([200, "production", ["127.0.0.0/8"]]);
  // A new workspace with an allowlist only shuts addresses out: write makes one.
  expect((await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, write, { json: { name: "fenced", ip_allowlist: ["127.0.0.1/32"] } })).status).toBe(200);

  const admin = await pat(["write", "iam:admin"]);
  const widened = await c.send("PATCH", `/v1/iam/workspaces/${ws}`, admin, { json: { ip_allowlist: [] } });
  expect([widened.status, widened.body.ip_allowlist]).toEqual([200, []]);
  expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: ["127.0.0.0/8"] } })).status).toBe(200);

  // The refusal is on record, as the guard's are.
  await c.kernel.store.write(() => undefined); // writes run in order: the refusal's event is in
  const denials = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'auth.permission.deny'").all() as Array<{ reason: string }>;
  expect(denials.some((d) => d.reason.startsWith("PATCH /v1/iam/workspaces/:workspace") && d.reason.includes("iam:admin"))).toBe(true);
});
