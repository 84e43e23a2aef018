/**
 * Writes queued behind the deletion of their network, or of their node: each looks the row up
 * before its transaction and must find it gone inside it — a 404 (a refused enrollment for a
 * pre-auth key), never a TypeError or a foreign-key failure (found in review), and never a
 * second success for the same removal.
 */
import { expect, test } from "bun:test";
import { operatorCaller } from "../../helpers/caller.ts";
import { meshOf } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import type { Caller } from "../../../plugins/mesh/service.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";
import { refusal } from "../../helpers/races.ts";

const newCitadel = stoppedAfterEach();

async function organization() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const { mesh } = meshOf(c.kernel as never);
  const userId = (c.kernel.store.db.query("SELECT id FROM users WHERE email = ?").get(c.owner.email) as { id: string }).id;
  const caller: Caller = operatorCaller(userId);
  const network = async (name: string) => {
    expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, owner, { json: { name } })).status).toBe(200);
    return `/v1/mesh/orgs/${org}/networks/${name}`;
  };
  return { c, owner, org, mesh, caller, network };
}

test("a network deleted while a change to it waits: the change is a 404", async () => {
  const { org, mesh, caller, network } = await organization();
  for (const name of ["a", "b", "c"]) await network(name);
  const [, acl] = [mesh.delete(caller, org, "a"), mesh.setAcl(caller, org, "a", { rules: [] })];
  const [, update] = [mesh.delete(caller, org, "b"), mesh.update(caller, org, "b", { mtu: 1300 })];
  const [, key] = [mesh.delete(caller, org, "c"), mesh.createKey(caller, org, "c", {})];
  for (const settled of [acl, update, key]) expect(await refusal(settled)).toEqual({ code: "not_found", message: expect.stringContaining("No mesh network") });
});

test("a network deleted twice at once: deleted and audited once, the other a 404", async () => {
  const { c, org, mesh, caller, network } = await organization();
  await network("f");
  const [first, second] = [mesh.delete(caller, org, "f"), mesh.delete(caller, org, "f")];
  expect(await refusal(first)).toBeNull();
  expect(await refusal(second)).toEqual({ code: "not_found", message: expect.stringContaining("No mesh network") });
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'mesh.network.delete'").get()).toEqual({ n: 1 });
});

test("a network deleted while a change to one of its nodes waits: a 404", async () => {
  const { c, owner, org, mesh, caller, network } = await organization();
  const net = await network("d");
  const key = (await c.send("POST", `${net}/keys`, owner, { json: { reusable: true } })).body.key as string;
  for (const name of ["n1", "n2"]) expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey } })).status).toBe(200);
  const [, updated, removed] = [mesh.delete(caller, org, "d"), mesh.updateNode(caller, org, "d", "n1", { tags: ["x"] }), mesh.deleteNode(caller, org, "d", "n2")];
  expect(await refusal(updated)).toEqual({ code: "not_found", message: expect.stringContaining("No node n1") });
  expect(await refusal(removed)).toEqual({ code: "not_found", message: expect.stringContaining("No mesh network") });
});

test("a network deleted while an enrollment into it waits: refused as a removed pre-auth key, and audited so", async () => {
  const { c, owner, org, mesh, caller, network } = await organization();
  const net = await network("e");
  const key = (await c.send("POST", `${net}/keys`, owner, { json: {} })).body.key as string;
  const { publicKey } = await generateKeyPair();
  const [, enrolled] = [mesh.delete(caller, org, "e"), mesh.enroll({}, { key, name: "n1", public_key: publicKey })];
  expect(await refusal(enrolled)).toEqual({ code: "unauthorized", message: "This pre-auth key is not valid." });
  const reasons = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'mesh.node.enroll' AND outcome = 'failure'").all();
  expect(reasons).toEqual([{ reason: "pre-auth key removed" }]);
});

test("a node removed twice at once: removed, audited and versioned once, the other a 404", async () => {
  const { c, owner, org, mesh, caller, network } = await organization();
  const net = await network("g");
  const key = (await c.send("POST", `${net}/keys`, owner, { json: {} })).body.key as string;
  expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "n1", public_key: (await generateKeyPair()).publicKey } })).status).toBe(200);
  const version = mesh.show(org, "g").version;
  const [first, second] = [mesh.deleteNode(caller, org, "g", "n1"), mesh.deleteNode(caller, org, "g", "n1")];
  expect(await refusal(first)).toBeNull();
  expect(await refusal(second)).toEqual({ code: "not_found", message: expect.stringContaining("No node n1") });
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'mesh.node.delete'").get()).toEqual({ n: 1 });
  expect(mesh.show(org, "g").version).toBe(Math.max(version + 1, c.clock.now())); // one bump
});
