/** Replacing an end-to-end-encrypted workspace's key: what the server tells a rotating client, and what it records. */
import { describe, expect, test } from "bun:test";
import { newWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { encryptedForThree as heldByThree } from "../../helpers/e2ee.ts";

/** A workspace with end-to-end encryption on, its key (v1) held by the owner, Bob and Carol. */
async function encryptedForThree() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  return { c, owner, org, ws, ...(await heldByThree(c, owner, ws)) };
}

describe("a member's public key, for a rotating client (found in review)", () => {
  test("the two definite 404s have codes of their own, which the client leaves a holder out on; anything else is not them", async () => {
    const { c, owner, base } = await encryptedForThree();
    const dave = await c.addUser(owner, "dave@example.org", "editor"); // a member with no key pair
    const noKeyPair = await c.send("GET", `${base}/e2ee/public-keys/${dave.id}`, owner);
    expect([noKeyPair.status, noKeyPair.body.code]).toEqual([404, "no_key_pair"]);
    const stranger = await c.send("GET", `${base}/e2ee/public-keys/usr_ZZZZZZZZZZZZZZ`, owner);
    expect([stranger.status, stranger.body.code]).toEqual([404, "not_a_member"]);
    const noWorkspace = await c.send("GET", `/v1/secrets/workspaces/ws_nowhere/e2ee/public-keys/${dave.id}`, owner);
    expect([noWorkspace.status, noWorkspace.body.code]).toEqual([404, "not_found"]);
  });
});

describe("holders a rotation leaves out (found in review: dropped with no event of their own)", () => {
  const revokes = (c: Awaited<ReturnType<typeof testCitadel>>) =>
    c.kernel.store.db.query("SELECT actor_user, resource_id, workspace, outcome, reason FROM audit_events WHERE action = 'secrets.e2ee.revoke' ORDER BY seq").all();

  test("each one dropped is audited as a revoke, in the rotation's transaction; a refused rotation records none", async () => {
    const { c, owner, ws, base, me, bob, carol, wrappedFor } = await encryptedForThree();
    const refused = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 7, values: [], wrapped: wrappedFor(newWorkspaceKey(), me, carol.id) } });
    expect(refused.status).toBe(409);
    expect(revokes(c)).toEqual([]);
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [], wrapped: wrappedFor(newWorkspaceKey(), me, carol.id) } })).status).toBe(200);
    expect(revokes(c)).toEqual([{ actor_user: me, resource_id: bob.id, workspace: ws, outcome: "success", reason: "left out of the rotation to v2" }]);
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 2, values: [], wrapped: wrappedFor(newWorkspaceKey(), me) } })).status).toBe(200);
    expect(revokes(c)).toEqual([
      { actor_user: me, resource_id: bob.id, workspace: ws, outcome: "success", reason: "left out of the rotation to v2" },
      { actor_user: me, resource_id: carol.id, workspace: ws, outcome: "success", reason: "left out of the rotation to v3" },
    ]);
  });
});
