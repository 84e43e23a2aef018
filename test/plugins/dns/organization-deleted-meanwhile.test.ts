/**
 * A zone made while its organization is being deleted: the guard found the organization before
 * the handler ran, the deletion committed before the zone's write. The zone outlived the
 * organization, served and holding its name against every other organization, with no route
 * left to delete it (found in review). The write asks again, inside its transaction.
 */
import { describe, expect, test } from "bun:test";
import { dnsServiceOf } from "../../../plugins/dns/index.ts";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { operatorCaller } from "../../helpers/caller.ts";
import { confirmationToken, stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";
import { refusal, successesAfter } from "../../helpers/races.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

const ZONE = { name: "acme.example", ns: ["ns1.acme.example."] };

async function organizations() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const other = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id as string;
  return { c, owner, org: c.owner.organization, other, caller: operatorCaller(me) };
}

const liveZones = (c: App, org: string) => c.kernel.store.db.query("SELECT name FROM dns_zones WHERE organization_id = ? AND deleted_at IS NULL").all(org);

describe("a zone made while its organization is being deleted", () => {
  test("over HTTP, sent together: the deletion 200, the zone 404; no zone, nothing audited after the deletion, the name free for another organization", async () => {
    const { c, owner, org, other } = await organizations();
    const path = `/v1/iam/orgs/${org}`;
    const confirm = await confirmationToken(c, "DELETE", path, owner);

    const [deleted, created] = await Promise.all([
      c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": confirm } }),
      c.send("POST", `/v1/dns/orgs/${org}/zones`, owner, { json: ZONE }),
    ]);

    expect(deleted.status).toBe(200);
    expect([created.status, created.body.detail]).toEqual([404, "No such organization: it was deleted meanwhile."]);
    expect(liveZones(c, org)).toEqual([]);
    expect(successesAfter(c.kernel.store.db, "iam.organization.delete")).toEqual([]);
    expect((await c.send("POST", `/v1/dns/orgs/${other}/zones`, owner, { json: ZONE })).status).toBe(200);
  });

  test("its write queued after the deletion's: refused (404), nothing made", async () => {
    const { c, org, caller } = await organizations();
    const deleted = iamServiceOf(c.kernel.store)!.deleteOrganization(caller, org);
    const created = dnsServiceOf(c.kernel as never).create(caller, org, ZONE);

    await deleted;
    expect(await refusal(created)).toEqual({ code: "not_found", message: "No such organization: it was deleted meanwhile." });
    expect(liveZones(c, org)).toEqual([]);
    expect(successesAfter(c.kernel.store.db, "iam.organization.delete")).toEqual([]);
  });

  test("its write queued before the deletion's: made, then deleted with the organization", async () => {
    const { c, org, other, caller } = await organizations();
    const created = dnsServiceOf(c.kernel as never).create(caller, org, ZONE);
    const deleted = iamServiceOf(c.kernel.store)!.deleteOrganization(caller, org);

    await Promise.allSettled([created, deleted]); // its answer, read after both committed, finds the zone gone
    const events = c.kernel.store.db.query("SELECT action FROM audit_events WHERE action IN ('dns.zone.create', 'iam.organization.delete') ORDER BY rowid").all();
    expect(events).toEqual([{ action: "dns.zone.create" }, { action: "iam.organization.delete" }]);
    expect(liveZones(c, org)).toEqual([]);
    expect((await dnsServiceOf(c.kernel as never).create(caller, other, ZONE)).organization).toBe(other);
  });

  test("a record set written while the organization is being deleted: 404, its zone gone with the organization", async () => {
    const { c, owner, org } = await organizations();
    expect((await c.send("POST", `/v1/dns/orgs/${org}/zones`, owner, { json: ZONE })).status).toBe(200);
    const path = `/v1/iam/orgs/${org}`;
    const confirm = await confirmationToken(c, "DELETE", path, owner);

    const [deleted, written] = await Promise.all([
      c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": confirm } }),
      c.send("PUT", `/v1/dns/orgs/${org}/zones/acme.example/rrsets/www/A`, owner, { json: { records: ["192.0.2.7"] } }),
    ]);

    expect([deleted.status, written.status]).toEqual([200, 404]);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM dns_records r JOIN dns_zones z ON z.id = r.zone_id WHERE z.organization_id = ?").get(org)).toEqual({ n: 0 });
    expect(successesAfter(c.kernel.store.db, "iam.organization.delete")).toEqual([]);
  });
});
