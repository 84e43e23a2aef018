/**
 * Replacing a key pair drops the workspace keys wrapped to the old one, in every workspace that
 * held one for the user: each workspace records it as a revoke of its own (found in review: one
 * keypair event naming no workspace, and a holder vanished from the workspace's audit trail).
 */
import { expect, test } from "bun:test";
import { generateUserKeyPair, newWorkspaceKey, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";
import { encryptedForThree } from "../../helpers/e2ee.ts";

const newCitadel = stoppedAfterEach();

test("each workspace where the user held a key gets a secrets.e2ee.revoke event, in the replacement's transaction", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const workspace = async (name: string) => (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name } })).body.id as string;
  const [app, ops, other] = [await workspace("app"), await workspace("ops"), await workspace("other")];
  const { me, bob, carol, pairs } = await encryptedForThree(c, owner, app);
  // ops: held by the owner and Bob (two versions for Bob, one event); other: by the owner and Carol only.
  const hold = async (ws: string, ...ids: string[]) => {
    await c.send("PATCH", `/v1/secrets/workspaces/${ws}/settings`, owner, { json: { e2ee: true } });
    const key = newWorkspaceKey();
    for (const id of ids) expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/e2ee/keys/${id}`, owner, { json: { wrapped: wrapWorkspaceKey(key, pairs.get(id)!.publicKey, { workspace: ws, user: id }) } })).status).toBe(200);
  };
  await hold(ops, me, bob.id);
  const rotated = await c.send("POST", `/v1/secrets/workspaces/${ops}/e2ee/rotate`, owner, {
    json: { from_version: 1, values: [], wrapped: [me, bob.id].map((id) => ({ user: id, wrapped: wrapWorkspaceKey(newWorkspaceKey(), pairs.get(id)!.publicKey, { workspace: ops, user: id }) })) },
  });
  expect(rotated.status).toBe(200);
  await hold(other, me, carol.id);
  const db = c.kernel.store.db;
  const before = (db.query("SELECT max(seq) AS seq FROM audit_events").get() as { seq: number }).seq;

  const replaced = await c.send("PUT", "/v1/secrets/me/keypair", bob.token, { json: { public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"B".repeat(80)}` } });
  expect(replaced.status).toBe(200);
  const holders = async (ws: string) => ((await c.send("GET", `/v1/secrets/workspaces/${ws}/e2ee/keys`, owner)).body.items as Array<{ user: string }>).map((h) => h.user);
  expect(await holders(app)).not.toContain(bob.id);
  expect(await holders(ops)).not.toContain(bob.id);
  const events = db.query("SELECT action, actor_user, resource_id, organization, workspace, reason FROM audit_events WHERE seq > ? ORDER BY seq").all(before);
  const revoked = (ws: string) => ({ action: "secrets.e2ee.revoke", actor_user: bob.id, resource_id: bob.id, organization: org, workspace: ws, reason: "their key pair was replaced" });
  const [first, second] = [app, ops].sort(); // in the workspaces' order
  expect(events).toEqual([revoked(first!), revoked(second!), { action: "secrets.e2ee.keypair", actor_user: bob.id, resource_id: bob.id, organization: null, workspace: null, reason: "replaced" }]);
});

test("a first key pair, or the same one sent again, revokes nothing", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const { bob, pairs } = await encryptedForThree(c, owner, ws);
  expect((await c.send("PUT", "/v1/secrets/me/keypair", bob.token, { json: { public_key: pairs.get(bob.id)!.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } })).status).toBe(200);
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.e2ee.revoke'").get()).toEqual({ n: 0 });
});

test("a user's erasure records a secrets.e2ee.revoke event for each workspace whose wrapped keys it drops (found in review: only the erasure's event, naming none)", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const { bob } = await encryptedForThree(c, owner, ws);
  const ask = await c.send("POST", `/v1/subject/user/${bob.id}/erasure`, owner);
  expect((await c.send("POST", `/v1/subject/user/${bob.id}/erasure`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  c.clock.advance(31 * 86_400_000);
  expect((await c.send("POST", "/v1/subject/erasures/run", await c.login(c.owner.email, c.owner.password))).body.erased).toBe(1);
  const db = c.kernel.store.db;
  expect(db.query("SELECT count(*) AS n FROM secrets_workspace_keys WHERE user_id = ?").get(bob.id)).toEqual({ n: 0 });
  const revokes = db.query("SELECT actor_kind, resource_id, organization, workspace, reason FROM audit_events WHERE action = 'secrets.e2ee.revoke'").all();
  expect(revokes).toEqual([{ actor_kind: "system", resource_id: bob.id, organization: org, workspace: ws, reason: "their account was erased" }]);
});
