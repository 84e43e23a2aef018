/**
 * Invitations: how anyone but an operator adds a member. An admin learns nothing about
 * which addresses have accounts here, nobody joins without accepting, and the inviter's
 * right to grant the role is checked again when the invitation is accepted.
 */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { testCitadel } from "../../helpers/citadel.ts";

async function organizationWithAdmin() {
  const c = await testCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const admin = await c.addUser(operator, "admin@example.org", "admin");
  const outsider = await c.addUser(operator, "outsider@example.org");
  return { c, operator, org, admin, outsider };
}

const invite = (c: Awaited<ReturnType<typeof testCitadel>>, token: string, org: string, json: Record<string, unknown>) =>
  c.send("POST", `/v1/iam/orgs/${org}/invitations`, token, { json });

describe("inviting", () => {
  test("an admin cannot add an existing user directly, so cannot learn whether an address has an account", async () => {
    const { c, org, admin, outsider } = await organizationWithAdmin();
    const known = await c.send("POST", `/v1/iam/orgs/${org}/members`, admin.token, { json: { email: "outsider@example.org", role: "viewer" } });
    const unknown = await c.send("POST", `/v1/iam/orgs/${org}/members`, admin.token, { json: { email: "nobody@example.org", role: "viewer" } });
    expect([known.status, known.body.code]).toEqual([403, "forbidden"]);
    expect([unknown.status, unknown.body.detail]).toEqual([known.status, known.body.detail]);
    // Nor by changing the role of a user id that is not a member.
    const byId = await c.send("PUT", `/v1/iam/orgs/${org}/members/${outsider.id}`, admin.token, { json: { role: "viewer" } });
    expect(byId.status).toBe(404);
    expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, admin.token)).body.items.map((m: { email: string }) => m.email)).not.toContain("outsider@example.org");
  });

  test("an invitation is answered the same whether or not its address has an account", async () => {
    const { c, org, admin } = await organizationWithAdmin();
    const known = await invite(c, admin.token, org, { email: "outsider@example.org", role: "editor" });
    const unknown = await invite(c, admin.token, org, { email: "nobody@example.org", role: "editor" });
    expect([known.status, unknown.status]).toEqual([200, 200]);
    const shape = (b: Record<string, unknown>) => ({ ...b, id: "", email: "", created_at: "", expires_at: "" });
    expect(shape(known.body)).toEqual(shape(unknown.body));
    expect(Date.parse(known.body.expires_at) - Date.parse(known.body.created_at)).toBe(7 * 86_400_000);
    const listed = await c.send("GET", `/v1/iam/orgs/${org}/invitations`, admin.token);
    expect(listed.body.items.map((i: { email: string }) => i.email)).toEqual(["outsider@example.org", "nobody@example.org"]);
  });

  test("the invitation's event names the role and the invitation, never the address", async () => {
    const { c, org, admin } = await organizationWithAdmin();
    const sent = await invite(c, admin.token, org, { email: "someone-private@example.org", role: "viewer" });
    const events = c.kernel.store.db.query("SELECT * FROM audit_events WHERE action = 'iam.invitation.create'").all() as Array<Record<string, unknown>>;
    expect(events).toHaveLength(1);
    expect([events[0]!.resource_id, events[0]!.reason, events[0]!.outcome]).toEqual([sent.body.id, "viewer", "success"]);
    expect(JSON.stringify(events)).not.toContain("someone-private");
  });

  test("only an owner invites an owner; a viewer invites no one; a member or a pending address is not invited twice", async () => {
    const { c, operator, org, admin } = await organizationWithAdmin();
    expect((await invite(c, admin.token, org, { email: "x@example.org", role: "owner" })).status).toBe(403);
    expect((await invite(c, operator, org, { email: "x@example.org", role: "owner" })).status).toBe(200);
    expect((await invite(c, operator, org, { email: "X@example.org", role: "viewer" })).status).toBe(409); // the same address
    expect((await invite(c, admin.token, org, { email: "ADMIN@example.org", role: "viewer" })).status).toBe(409); // a member already
    const viewer = await c.addUser(operator, "viewer@example.org", "viewer");
    expect((await invite(c, viewer.token, org, { email: "y@example.org", role: "viewer" })).status).toBe(403);
  });

  test("bad input: not an address, an unknown role, an expiry out of range", async () => {
    const { c, org, admin } = await organizationWithAdmin();
    expect((await invite(c, admin.token, org, { email: "not an address", role: "viewer" })).status).toBe(422);
    expect((await invite(c, admin.token, org, { email: "a@example.org", role: "superuser" })).status).toBe(422);
    const tooLong = await invite(c, admin.token, org, { email: "a@example.org", role: "viewer", expires_in_days: 31 });
    expect([tooLong.status, tooLong.body.code]).toEqual([422, "validation_failed"]);
    expect((await c.send("GET", `/v1/iam/orgs/${org}/invitations`, admin.token)).body.items).toEqual([]);
  });
});

describe("answering an invitation", () => {
  test("the invited user sees it, accepts it, and becomes a member with its role", async () => {
    const { c, org, admin, outsider } = await organizationWithAdmin();
    const sent = await invite(c, admin.token, org, { email: "Outsider@Example.org", role: "editor" });
    const mine = await c.send("GET", "/v1/iam/me/invitations", outsider.token);
    expect(mine.body.items).toEqual([expect.objectContaining({ id: sent.body.id, organization: { id: org, name: "default" }, role: "editor", invited_by: "admin@example.org" })]);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, outsider.token)).status).toBe(403); // not yet a member
    const accepted = await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token);
    expect([accepted.status, accepted.body.id, accepted.body.role]).toEqual([200, org, "editor"]);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, outsider.token)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me/invitations", outsider.token)).body.items).toEqual([]);
    expect((await c.send("GET", `/v1/iam/orgs/${org}/invitations`, admin.token)).body.items).toEqual([]);
    // Spent: a second accept finds nothing.
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token)).status).toBe(404);
    const event = c.kernel.store.db.query("SELECT actor_user, organization, reason FROM audit_events WHERE action = 'iam.invitation.accept'").get() as Record<string, unknown>;
    expect(event).toEqual({ actor_user: outsider.id, organization: org, reason: `joined as editor, invited by ${admin.id}` });
  });

  test("nobody else can see, accept or decline it", async () => {
    const { c, operator, org, admin } = await organizationWithAdmin();
    const sent = await invite(c, admin.token, org, { email: "outsider@example.org", role: "editor" });
    const other = await c.addUser(operator, "other@example.org");
    expect((await c.send("GET", "/v1/iam/me/invitations", other.token)).body.items).toEqual([]);
    for (const answer of ["accept", "decline"]) {
      const refused = await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/${answer}`, other.token);
      expect([refused.status, refused.body.detail]).toEqual([404, "No such invitation."]);
    }
    // Not even the admin who sent it.
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, admin.token)).status).toBe(404);
    expect((await c.send("GET", `/v1/iam/orgs/${org}/invitations`, admin.token)).body.items).toHaveLength(1);
  });

  test("a declined or revoked invitation cannot be accepted", async () => {
    const { c, org, admin, outsider } = await organizationWithAdmin();
    const declined = await invite(c, admin.token, org, { email: "outsider@example.org", role: "viewer" });
    expect((await c.send("POST", `/v1/iam/me/invitations/${declined.body.id}/decline`, outsider.token)).status).toBe(200);
    expect((await c.send("POST", `/v1/iam/me/invitations/${declined.body.id}/accept`, outsider.token)).status).toBe(404);
    const revoked = await invite(c, admin.token, org, { email: "outsider@example.org", role: "viewer" }); // may be sent again
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}/invitations/${revoked.body.id}`, admin.token)).status).toBe(200);
    expect((await c.send("POST", `/v1/iam/me/invitations/${revoked.body.id}/accept`, outsider.token)).status).toBe(404);
    expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, admin.token)).body.items.map((m: { email: string }) => m.email)).not.toContain("outsider@example.org");
    const actions = c.kernel.store.db.query("SELECT action FROM audit_events WHERE action LIKE 'iam.invitation.%' ORDER BY seq").all();
    expect(actions.map((a) => (a as { action: string }).action)).toEqual(["iam.invitation.create", "iam.invitation.decline", "iam.invitation.create", "iam.invitation.revoke"]);
  });

  test("an admin cannot revoke an owner's invitation to become owner, nor one of another organization", async () => {
    const { c, operator, org, admin } = await organizationWithAdmin();
    const toOwner = await invite(c, operator, org, { email: "next-owner@example.org", role: "owner" });
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}/invitations/${toOwner.body.id}`, admin.token)).status).toBe(403);
    const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other" } });
    const elsewhere = await invite(c, operator, other.body.id, { email: "z@example.org", role: "viewer" });
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}/invitations/${elsewhere.body.id}`, operator)).status).toBe(404);
  });

  test("only the user, logged in, answers: not a token made for a program, nor one bound to an organization or workspace (found in review)", async () => {
    const { c, operator, org, admin, outsider } = await organizationWithAdmin();
    const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other" } });
    const sent = await invite(c, operator, other.body.id, { email: "outsider@example.org", role: "admin" });
    // The outsider joins the first organization, and makes tokens there.
    const first = await invite(c, admin.token, org, { email: "outsider@example.org", role: "editor" });
    expect((await c.send("POST", `/v1/iam/me/invitations/${first.body.id}/accept`, outsider.token)).status).toBe(200);
    const ws = await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "w" } });
    const tokens = [
      await c.send("POST", "/v1/iam/me/tokens", outsider.token, { json: { name: "ci", scopes: ["iam:self"] } }),
      await c.send("POST", "/v1/iam/me/tokens", outsider.token, { json: { name: "ws", scopes: ["iam:self"], workspace: ws.body.id } }),
    ];
    for (const t of tokens) {
      expect(t.status).toBe(200);
      expect((await c.send("GET", "/v1/iam/me/invitations", t.body.token)).status).toBe(403);
      for (const answer of ["accept", "decline"]) expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/${answer}`, t.body.token)).status).toBe(403);
    }
    expect((await c.send("GET", `/v1/iam/orgs/${other.body.id}/members`, operator)).body.items).toHaveLength(1); // the operator alone
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token)).status).toBe(200);
  });

  test("an operator's program token without iam:admin cannot add users directly (found in review)", async () => {
    const { c, operator, org } = await organizationWithAdmin();
    const narrow = await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "ci", scopes: ["iam:write", "iam:read"] } });
    for (const email of ["outsider@example.org", "nobody@example.org"]) {
      const added = await c.send("POST", `/v1/iam/orgs/${org}/members`, narrow.body.token, { json: { email, role: "viewer" } });
      expect([added.status, added.body.code]).toEqual([403, "forbidden"]);
    }
    const wide = await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "admin", scopes: ["iam:write", "iam:admin"] } });
    expect((await c.send("POST", `/v1/iam/orgs/${org}/members`, wide.body.token, { json: { email: "outsider@example.org", role: "viewer" } })).status).toBe(200);
  });

  test("expired invitations are dropped now and then, and with their organization, so their addresses are not kept (found in review)", async () => {
    const { c, org, admin } = await organizationWithAdmin();
    await invite(c, admin.token, org, { email: "soon-gone@example.org", role: "viewer", expires_in_days: 1 });
    await invite(c, admin.token, org, { email: "still-pending@example.org", role: "viewer", expires_in_days: 3 });
    c.clock.advance(2 * 86_400_000);
    await iamServiceOf(c.kernel.store)!.purgeExpiredInvitations();
    expect(c.kernel.store.db.query("SELECT email FROM invitations").all()).toEqual([{ email: "still-pending@example.org" }]);
    const again = await c.login(c.owner.email, c.owner.password);
    const ask = await c.send("DELETE", `/v1/iam/orgs/${org}`, again);
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}`, again, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect(c.kernel.store.db.query("SELECT email FROM invitations").all()).toEqual([]);
  });

  test("an invitation expires", async () => {
    const { c, org, admin } = await organizationWithAdmin();
    const sent = await invite(c, admin.token, org, { email: "outsider@example.org", role: "viewer", expires_in_days: 1 });
    c.clock.advance(86_400_000);
    // (Their earlier sessions idled out meanwhile.)
    const [outsiderNow, adminNow] = [await c.login("outsider@example.org", "correct-horse-battery-9"), await c.login("admin@example.org", "correct-horse-battery-9")];
    expect((await c.send("GET", "/v1/iam/me/invitations", outsiderNow)).body.items).toEqual([]);
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsiderNow)).status).toBe(404);
    // Writing the next invitation drops the expired row, address and all.
    expect((await invite(c, adminNow, org, { email: "another@example.org", role: "viewer" })).status).toBe(200);
    expect(c.kernel.store.db.query("SELECT email FROM invitations").all()).toEqual([{ email: "another@example.org" }]);
  });

  test("an inviter who lost the right to grant the role no longer brings anyone in", async () => {
    const { c, operator, org, admin, outsider } = await organizationWithAdmin();
    const sent = await invite(c, admin.token, org, { email: "outsider@example.org", role: "admin" });
    expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${admin.id}`, operator, { json: { role: "editor" } })).status).toBe(200);
    const refused = await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token);
    expect([refused.status, refused.body.code]).toEqual([409, "conflict"]);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, outsider.token)).status).toBe(403);
    // Restored, the invitation works again (it was not spent by the refusal).
    await c.send("PUT", `/v1/iam/orgs/${org}/members/${admin.id}`, operator, { json: { role: "admin" } });
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token)).status).toBe(200);
  });

  test("an invitation to an organization deleted meanwhile is gone", async () => {
    const { c, operator, outsider } = await organizationWithAdmin();
    const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "short-lived" } });
    const sent = await invite(c, operator, other.body.id, { email: "outsider@example.org", role: "viewer" });
    const ask = await c.send("DELETE", `/v1/iam/orgs/${other.body.id}`, operator);
    expect((await c.send("DELETE", `/v1/iam/orgs/${other.body.id}`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me/invitations", outsider.token)).body.items).toEqual([]);
    expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, outsider.token)).status).toBe(404);
  });

  test("a user's export lists the invitations to them; erasure deletes those and the ones they sent", async () => {
    const { c, operator, org, admin, outsider } = await organizationWithAdmin();
    await invite(c, admin.token, org, { email: "outsider@example.org", role: "viewer", expires_in_days: 30 });
    await invite(c, admin.token, org, { email: "third@example.org", role: "viewer", expires_in_days: 30 });
    await invite(c, operator, org, { email: "fourth@example.org", role: "viewer", expires_in_days: 30 });
    const exported = await confirmedPost(c, `/v1/subject/user/${outsider.id}/export`, operator, false);
    expect(exported.body.data.iam.invitations).toEqual([expect.objectContaining({ organization: org, role: "viewer" })]);
    const ofOrganization = await confirmedPost(c, `/v1/subject/organization/${org}/export`, operator, false);
    expect(ofOrganization.body.data.iam.invitations.map((i: { email: string }) => i.email)).toEqual(["outsider@example.org", "third@example.org", "fourth@example.org"]);
    for (const user of [outsider.id, admin.id]) expect((await confirmedPost(c, `/v1/subject/user/${user}/erasure`, operator, true)).status).toBe(200);
    c.clock.advance(30 * 86_400_000 + 1000);
    const again = await c.login(c.owner.email, c.owner.password);
    expect((await c.send("POST", "/v1/subject/erasures/run", again)).body.erased).toBe(2);
    expect(c.kernel.store.db.query("SELECT email FROM invitations").all()).toEqual([{ email: "fourth@example.org" }]);
  });
});

/** POST a route, sending back the confirmation token of its 428 when it asks for one. */
async function confirmedPost(c: Awaited<ReturnType<typeof testCitadel>>, path: string, token: string, asks: boolean) {
  if (!asks) return c.send("POST", path, token);
  const ask = await c.send("POST", path, token);
  expect(ask.status).toBe(428);
  return c.send("POST", path, token, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
}
