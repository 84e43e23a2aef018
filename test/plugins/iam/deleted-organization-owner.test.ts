/**
 * A deleted organization has no owner to keep: the last owner of one may be deleted, or
 * erased, like anyone else (found in review).
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
