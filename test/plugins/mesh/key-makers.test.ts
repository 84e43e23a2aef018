/**
 * A pre-auth key acts for the member who made it: once they are deleted, removed from the
 * organization or no longer in a role that makes keys, it enrolls nothing (found in review:
 * such keys kept enrolling nodes), and each refusal is audited with the reason.
 */
import { expect, test } from "bun:test";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

async function office() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const net = `/v1/mesh/orgs/${org}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, operator, { json: { name: "office" } })).status).toBe(200);
  return { c, operator, org, net };
}

async function reusableKey(c: App, token: string, net: string) {
  const made = await c.send("POST", `${net}/keys`, token, { json: { reusable: true } });
  expect(made.status).toBe(200);
  return made.body.key as string;
}

async function enroll(c: App, key: string, name: string) {
  c.clock.advance(2_000); // enrollment is under the login endpoints' rate limit
  return c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey } });
}

async function confirmed(c: App, method: string, path: string, token: string) {
  const ask = await c.send(method, path, token);
  expect(ask.status).toBe(428);
  return c.send(method, path, token, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
}

const refusals = (c: App) =>
  (c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'mesh.node.enroll' AND outcome = 'failure' ORDER BY seq").all() as Array<{ reason: string }>).map((e) => e.reason);

test("the keys of a member removed from the organization, or deleted, enroll nothing; audited", async () => {
  const { c, operator, org, net } = await office();
  const alice = await c.addUser(operator, "alice@example.org", "admin");
  const bob = await c.addUser(operator, "bob@example.org", "admin");
  const alicesKey = await reusableKey(c, alice.token, net);
  const bobsKey = await reusableKey(c, bob.token, net);
  expect((await enroll(c, alicesKey, "a1")).status).toBe(200);
  expect((await enroll(c, bobsKey, "b1")).status).toBe(200);

  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${bob.id}`, operator)).status).toBe(200);
  expect((await confirmed(c, "DELETE", `/v1/iam/users/${alice.id}`, operator)).status).toBe(200);
  for (const [key, name] of [[bobsKey, "b2"], [alicesKey, "a2"]] as const) {
    const refused = await enroll(c, key, name);
    expect([refused.status, refused.body.detail]).toEqual([401, "This pre-auth key is not valid."]);
  }
  expect(refusals(c)).toEqual(["its maker is no longer a member of the organization", "its maker is no longer a member of the organization"]);
  // The operator's own key still enrolls.
  expect((await enroll(c, await reusableKey(c, operator, net), "o1")).status).toBe(200);
});

test("the keys of a member no longer in a role that makes keys enroll nothing", async () => {
  const { c, operator, org, net } = await office();
  const carol = await c.addUser(operator, "carol@example.org", "admin");
  const key = await reusableKey(c, carol.token, net);
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${carol.id}`, operator, { json: { role: "editor" } })).status).toBe(200);
  expect((await enroll(c, key, "c1")).status).toBe(401);
  expect(refusals(c)).toEqual(["its maker's role (editor) no longer makes pre-auth keys"]);
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${carol.id}`, operator, { json: { role: "admin" } })).status).toBe(200);
  expect((await enroll(c, key, "c2")).status).toBe(200);
});

test("a key made with an API key acts for the API key's maker", async () => {
  const { c, operator, org, net } = await office();
  const dave = await c.addUser(operator, "dave@example.org", "owner"); // only an owner makes a key with mesh:admin
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/mesh`, operator)).status).toBe(200);
  const apiKey = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, dave.token, { json: { service: "mesh", name: "ci", scopes: ["mesh:admin"] } })).body.token as string;
  const key = await reusableKey(c, apiKey, net);
  expect((await enroll(c, key, "d1")).status).toBe(200);
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${dave.id}`, operator)).status).toBe(200);
  expect((await enroll(c, key, "d2")).status).toBe(401);
});

test("the key list says maker_gone for a key whose maker left the organization or lost the role, as enrollment refuses it (found in review: it said usable)", async () => {
  const { c, operator, org, net } = await office();
  const erin = await c.addUser(operator, "erin@example.org", "admin");
  const frank = await c.addUser(operator, "frank@example.org", "admin");
  await reusableKey(c, erin.token, net);
  await reusableKey(c, frank.token, net);
  await reusableKey(c, operator, net);
  const states = async () => ((await c.send("GET", `${net}/keys`, operator)).body.items as Array<{ state: string }>).map((k) => k.state).sort();
  expect(await states()).toEqual(["usable", "usable", "usable"]);

  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${erin.id}`, operator)).status).toBe(200);
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${frank.id}`, operator, { json: { role: "editor" } })).status).toBe(200);
  expect(await states()).toEqual(["maker_gone", "maker_gone", "usable"]);
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${frank.id}`, operator, { json: { role: "admin" } })).status).toBe(200);
  expect(await states()).toEqual(["maker_gone", "usable", "usable"]);
});

test("a maker removed and added back does not bring back the keys of the membership that ended, as their API keys stay revoked (found in review)", async () => {
  const { c, operator, org, net } = await office();
  const gina = await c.addUser(operator, "gina@example.org", "admin");
  const before = await reusableKey(c, gina.token, net);
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${gina.id}`, operator)).status).toBe(200);
  c.clock.advance(1_000);
  expect((await c.send("POST", `/v1/iam/orgs/${org}/members`, operator, { json: { email: "gina@example.org", role: "admin" } })).status).toBe(200);
  const ginaAgain = await c.login("gina@example.org", "correct-horse-battery-9");

  expect((await enroll(c, before, "g1")).status).toBe(401);
  expect(refusals(c)).toEqual(["its maker left the organization after making it"]);
  const states = ((await c.send("GET", `${net}/keys`, operator)).body.items as Array<{ state: string }>).map((k) => k.state);
  expect(states).toEqual(["maker_gone"]);
  // What they make under the new membership enrolls, and a role change does not start another.
  const after = await reusableKey(c, ginaAgain, net);
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${gina.id}`, operator, { json: { role: "owner" } })).status).toBe(200);
  expect((await enroll(c, after, "g2")).status).toBe(200);
});
