/**
 * Mesh writes while their organization is being deleted or erased: the guard (or, for an
 * enrollment, the remembered liveness) found the organization before the write ran. A network
 * made after the deletion outlived its organization, its name taken from every other one, with
 * no route left to delete it (found in review); a network whose organization is being erased is
 * kept until the erasure, and took new keys, rules and nodes meanwhile. Each write asks again,
 * inside its transaction.
 */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { meshOf } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { subjectServiceOf } from "../../../plugins/subject/index.ts";
import { operatorCaller } from "../../helpers/caller.ts";
import { confirmationToken, stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";
import { refusal, successesAfter } from "../../helpers/races.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

async function organizations() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const other = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id as string;
  return { c, owner, org: c.owner.organization, other, caller: operatorCaller(me), mesh: meshOf(c.kernel as never).mesh };
}

const networksOf = (c: App, org: string) => c.kernel.store.db.query("SELECT name FROM mesh_networks WHERE organization_id = ?").all(org);

const GONE = { code: "not_found", message: "No such organization: it was deleted meanwhile." };

describe("a mesh network made while its organization is being deleted", () => {
  test("over HTTP, sent together: the deletion 200, the network 404; no network, nothing audited after, the name free for another organization", async () => {
    const { c, owner, org, other } = await organizations();
    const path = `/v1/iam/orgs/${org}`;
    const confirm = await confirmationToken(c, "DELETE", path, owner);

    const [deleted, created] = await Promise.all([
      c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": confirm } }),
      c.send("POST", `/v1/mesh/orgs/${org}/networks`, owner, { json: { name: "office" } }),
    ]);

    expect(deleted.status).toBe(200);
    expect([created.status, created.body.detail]).toEqual([404, GONE.message]);
    expect(networksOf(c, org)).toEqual([]);
    expect(successesAfter(c.kernel.store.db, "iam.organization.delete")).toEqual([]);
    expect((await c.send("POST", `/v1/mesh/orgs/${other}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
  });

  test("its write queued after the deletion's: refused (404), nothing made", async () => {
    const { c, org, caller, mesh } = await organizations();
    const deleted = iamServiceOf(c.kernel.store)!.deleteOrganization(caller, org);
    const created = mesh.create(caller, org, { name: "office" });

    await deleted;
    expect(await refusal(created)).toEqual(GONE);
    expect(networksOf(c, org)).toEqual([]);
    expect(successesAfter(c.kernel.store.db, "iam.organization.delete")).toEqual([]);
  });

  test("its write queued before the deletion's: made, then deleted with the organization", async () => {
    const { c, org, other, caller, mesh } = await organizations();
    const created = mesh.create(caller, org, { name: "office" });
    const deleted = iamServiceOf(c.kernel.store)!.deleteOrganization(caller, org);

    expect((await created).name).toBe("office");
    await deleted;
    expect(networksOf(c, org)).toEqual([]);
    expect((await mesh.create(caller, other, { name: "office" })).organization).toBe(other);
  });
});

describe("while its organization is being erased (its networks kept until the erasure)", () => {
  async function beingErased() {
    const s = await organizations();
    const { c, owner, other: org } = s;
    expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
    const key = (await c.send("POST", `/v1/mesh/orgs/${org}/networks/office/keys`, owner, { json: { reusable: true } })).body.key as string;
    return { ...s, org, key };
  }

  const enroll = async (c: App, key: string, name: string) => c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey } });

  test("an enrollment is refused (401) although the organization was live when last asked; no node", async () => {
    const { c, owner, org, key } = await beingErased();
    expect((await enroll(c, key, "first")).status).toBe(200); // the organization's liveness is remembered live now
    const path = `/v1/subject/organization/${org}/erasure`;
    expect((await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } })).status).toBe(200);

    const late = await enroll(c, key, "late");

    expect([late.status, late.body.detail]).toEqual([401, "This pre-auth key is not valid."]);
    expect(c.kernel.store.db.query("SELECT name FROM mesh_nodes").all()).toEqual([{ name: "first" }]);
    const refused = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'mesh.node.enroll' AND outcome = 'failure'").all();
    expect(refused).toEqual([{ reason: "the organization was deleted" }]);
  });

  test("a pre-auth key, an ACL or a network change queued after the erasure request's write: refused (404), nothing written", async () => {
    const { c, org, caller, mesh } = await beingErased();
    const requested = subjectServiceOf(c.kernel as never).requestErasure(caller, { kind: "organization", id: org });
    const key = mesh.createKey(caller, org, "office", {});
    const acl = mesh.setAcl(caller, org, "office", { rules: [] });
    const update = mesh.update(caller, org, "office", { mtu: 1300 });

    await requested;
    for (const settled of [key, acl, update]) expect(await refusal(settled)).toEqual(GONE);
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM mesh_preauth_keys").get()).toEqual({ n: 1 });
    expect(db.query("SELECT acl_version, mtu FROM mesh_networks").get()).toEqual({ acl_version: 0, mtu: 1420 });
    expect(successesAfter(c.kernel.store.db, "subject.erased")).toEqual([]);
  });
});
