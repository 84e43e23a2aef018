/**
 * A deleted organization has no owner to keep: the last owner of one may be deleted, or
 * erased, like anyone else (found in review). And a deleted user owns nothing: a deleted
 * co-owner is never the last owner, nor counts as another owner for the live one.
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

/** An operator, and a user who was the only owner of an organization since deleted. */
async function ownerOfDeletedOrganization() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const bob = await c.addUser(operator, "bob@example.com");
  const org = (await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "bobs", owner: bob.id } })).body.id as string;
  expect((await confirmed(c, "DELETE", `/v1/iam/orgs/${org}`, bob.token)).status).toBe(200);
  expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator)).status).toBe(404);
  return { c, operator, bob };
}

async function confirmed(c: Awaited<ReturnType<typeof testCitadel>>, method: string, path: string, token: string) {
  const ask = await c.send(method, path, token);
  expect(ask.status).toBe(428);
  return c.send(method, path, token, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
}

test("the last owner of a deleted organization can be deleted", async () => {
  const { c, operator, bob } = await ownerOfDeletedOrganization();
  const deleted = await confirmed(c, "DELETE", `/v1/iam/users/${bob.id}`, operator);
  expect([deleted.status, deleted.body.detail]).toEqual([200, undefined]);
});

test("the last owner of a deleted organization can be erased", async () => {
  const { c, operator, bob } = await ownerOfDeletedOrganization();
  const requested = await confirmed(c, "POST", `/v1/subject/user/${bob.id}/erasure`, operator);
  expect([requested.status, requested.body.detail]).toEqual([200, undefined]);
});

/** An operator who owns the default organization, and a co-owner since deleted. */
async function deletedCoOwner() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const bob = await c.addUser(operator, "bob@example.com", "owner");
  expect((await confirmed(c, "DELETE", `/v1/iam/users/${bob.id}`, operator)).status).toBe(200);
  return { c, operator, bob };
}

test("a deleted co-owner of an organization with a live owner can be erased (found in review: 409 last owner)", async () => {
  const { c, operator, bob } = await deletedCoOwner();
  const requested = await confirmed(c, "POST", `/v1/subject/user/${bob.id}/erasure`, operator);
  expect([requested.status, requested.body.detail]).toEqual([200, undefined]);
});

test("a deleted co-owner's membership can be removed (found in review: 409 last owner)", async () => {
  const { c, operator, bob } = await deletedCoOwner();
  const removed = await c.send("DELETE", `/v1/iam/orgs/${c.owner.organization}/members/${bob.id}`, operator);
  expect([removed.status, removed.body.detail]).toEqual([200, undefined]);
});

test("the last live owner still cannot leave while a deleted co-owner remains", async () => {
  const { c, operator } = await deletedCoOwner();
  const ownerId = (await c.send("GET", "/v1/iam/me", operator)).body.id as string;
  const removed = await c.send("DELETE", `/v1/iam/orgs/${c.owner.organization}/members/${ownerId}`, operator);
  expect(removed.status).toBe(409);
});
