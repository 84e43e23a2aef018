/**
 * A change of one RRset to a signed zone, through the API: signed by editing the zone served
 * (dnssec.ts signChange), its records not read and the zone not built again — and what it
 * leaves is the zone the store holds, signed whole: every RRset of the zone laid out again from
 * the stored records carries a stored RRSIG by the zone's key (what a sealed restart serves),
 * the same records are served, every signature verifies. A change the signer cannot be sure of
 * (a delegation, a CNAME beside data, a serial moved behind its back) is built and signed whole.
 */
import { describe, expect, test } from "bun:test";
import { createPublicKey, verify } from "node:crypto";
import { dnsServiceOf } from "../../../plugins/dns/index.ts";
import { decodeRrsigs, readRrsig, rrsigHead, signaturesOf, signedData, TYPE_DNSKEY, TYPE_RRSIG, withStoredSignatures, type Denial } from "../../../plugins/dns/dnssec.ts";
import { RFC9276_PARAMS } from "../../../plugins/dns/nsec3.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { soaRecord } from "../../../plugins/dns/service.ts";
import * as sql from "../../../plugins/dns/store.ts";
import { rrToText, Zone, type RR } from "../../../plugins/dns/zone.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

/** Zone.build's calls while `fn` runs: a change signed by editing the zone builds none. */
async function buildsDuring(fn: () => Promise<unknown>): Promise<number> {
  const build = Zone.build;
  let builds = 0;
  Zone.build = (...args: Parameters<typeof Zone.build>) => {
    builds++;
    return build.apply(Zone, args);
  };
  try {
    await fn();
  } finally {
    Zone.build = build;
  }
  return builds;
}

async function signedZone(denial: "nsec" | "nsec3", config: Parameters<typeof testCitadel>[0] = {}) {
  const c = await testCitadel(config);
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "example.org", ns: ["ns1.example.net."] } });
  const zone = `${zones}/example.org`;
  for (const host of ["www", "mail", "a.deep", "*.wild"]) expect((await c.send("PUT", `${zone}/rrsets/${host}/A`, owner, { json: { ttl: 300, records: ["192.0.2.10"] } })).status).toBe(200);
  expect((await c.send("PUT", `${zone}/rrsets/sub/NS`, owner, { json: { records: ["ns.sub.example.org."] } })).status).toBe(200);
  expect((await c.send("PUT", `${zone}/rrsets/ns.sub/A`, owner, { json: { records: ["192.0.2.53"] } })).status).toBe(200);
  expect((await c.send("POST", `${zone}/dnssec`, owner, { json: denial === "nsec3" ? { denial: "nsec3" } : {} })).status).toBe(200);
  const id = created.body.id as string;
  dnsServiceOf(c.kernel as never).zone(id); // served, as the listener would
  return { c, owner, zone, id };
}

/**
 * The zone served for `id` is the one the store holds, signed: its records are those built from
 * the stored ones with the signer's; the stored RRSIGs (its serial's) sign every RRset of that
 * zone laid out whole (withStoredSignatures takes none missing), and are the ones served; every
 * signature verifies with the zone's DNSKEY.
 */
function servedIsStoredSigned(c: App, id: string, denial: Denial): void {
  const dns = dnsServiceOf(c.kernel as never);
  const served = dns.zone(id)!;
  const db = c.kernel.store.db;
  const row = sql.liveZoneById(db, id)!;
  const key = sql.zoneKey(db, id)!;
  expect(key.signed_serial).toBe(row.serial);
  expect(key.rrsigs).toBeNull(); // stored one row per RRset (migration 0011), no blob
  const stored = sql.storedRrsigs(db, id, null).flatMap(decodeRrsigs);
  const records = sql.recordsOf(db, id).map((r) => ({ name: parseName(r.owner, null), ttl: r.ttl, type: r.type, rdata: new Uint8Array(r.rdata) }));
  const whole = withStoredSignatures(Zone.build(parseName(row.name, null), [soaRecord(row), ...records], { loading: true }), [new Uint8Array(key.dnskey)], stored, denial);
  expect(whole).not.toBeNull();
  const lines = (rs: readonly RR[]) => rs.map(rrToText).sort();
  expect(lines(served.records())).toEqual(lines(whole!.records()));
  expect(lines(signaturesOf(served)!.transferRecords())).toEqual(lines(signaturesOf(whole!)!.transferRecords()));
  expect(lines(signaturesOf(served)!.records())).toEqual(lines(stored));

  const dnskey = served.records().find((r) => r.type === TYPE_DNSKEY)!.rdata;
  const publicKey = createPublicKey({ key: { kty: "EC", crv: "P-256", x: Buffer.from(dnskey.subarray(4, 36)).toString("base64url"), y: Buffer.from(dnskey.subarray(36, 68)).toString("base64url") }, format: "jwk" });
  const rrsets = new Map<string, RR[]>();
  for (const r of [...served.records(), ...signaturesOf(served)!.transferRecords().filter((r) => r.type !== TYPE_RRSIG)]) {
    const at = `${nameToText(r.name).toLowerCase()} ${r.type}`;
    rrsets.set(at, [...(rrsets.get(at) ?? []), r]);
  }
  for (const rrsig of signaturesOf(served)!.records()) {
    const f = readRrsig(rrsig.rdata);
    const rrset = rrsets.get(`${nameToText(rrsig.name).toLowerCase()} ${f.typeCovered}`)!;
    const ok = verify("sha256", signedData(rrsigHead(f), rrsig.name, f.typeCovered, f.originalTtl, rrset.map((r) => r.rdata)), { key: publicKey, dsaEncoding: "ieee-p1363" }, f.signature);
    expect(ok ? "" : `${rrToText(rrsig)} does not verify`).toBe("");
  }
}

describe.each([
  ["NSEC", "nsec" as const, { mode: "nsec" } as Denial],
  ["NSEC3", "nsec3" as const, { mode: "nsec3", params: RFC9276_PARAMS } as Denial],
])("a change to a signed zone (%s)", (_label, mode, denial) => {
  test("an address updated, a name added (deep, below a wildcard's parent), a type added, a name removed: each signed by editing the zone served (no Zone.build), leaving the store's zone signed", async () => {
    const { c, owner, zone, id } = await signedZone(mode);
    const dns = dnsServiceOf(c.kernel as never);
    const changes: Array<[string, string, string[]]> = [
      ["www", "A", ["192.0.2.11", "192.0.2.12"]],
      ["new.deep", "AAAA", ["2001:db8::1"]],
      ["x.wild", "TXT", ['"beside the wildcard"']],
      ["www", "TXT", ['"v=spf1 -all"']],
      ["mail", "A", []],
      ["a.deep", "A", []], // the empty non-terminal deep. stays: new.deep. is below it
      ["new.deep", "AAAA", []], // and now it goes
    ];
    for (const [host, type, records] of changes) {
      const builds = await buildsDuring(async () => {
        expect((await c.send("PUT", `${zone}/rrsets/${host}/${type}`, owner, { json: { ttl: 300, records } })).status).toBe(200);
        dns.zone(id); // the listener's build after the commit takes the zone signed in the write
      });
      expect(`${host} ${type}: ${builds} builds`).toBe(`${host} ${type}: 0 builds`);
      servedIsStoredSigned(c, id, denial);
    }
  });

  test("a delegation added, and a CNAME beside data refused (422 as for an unsigned zone): built and signed whole, nothing changed by the refusal", async () => {
    const { c, owner, zone, id } = await signedZone(mode);
    const dns = dnsServiceOf(c.kernel as never);
    const delegated = await buildsDuring(async () => {
      expect((await c.send("PUT", `${zone}/rrsets/child/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
      dns.zone(id);
    });
    expect(delegated).toBeGreaterThan(0);
    servedIsStoredSigned(c, id, denial);
    const serial = sql.liveZoneById(c.kernel.store.db, id)!.serial;
    const refused = await c.send("PUT", `${zone}/rrsets/www/CNAME`, owner, { json: { records: ["mail.example.org."] } });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain("a CNAME cannot sit beside other data");
    expect(sql.liveZoneById(c.kernel.store.db, id)!.serial).toBe(serial);
    // Data below a delegation: refused as Zone.build refuses it.
    expect((await c.send("PUT", `${zone}/rrsets/x.child/TXT`, owner, { json: { records: ['"no"'] } })).status).toBe(422);
    servedIsStoredSigned(c, id, denial);
  });

  test("a serial moved behind the signer's back (as a restore moves it): the change is built and signed whole from the store, not made on the zone served", async () => {
    const { c, owner, zone, id } = await signedZone(mode);
    const dns = dnsServiceOf(c.kernel as never);
    const row = sql.liveZoneById(c.kernel.store.db, id)!;
    // A record written behind the service's back with the serial moved: the zone served is not the store's any more.
    c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, ?, ?, ?, ?)").run(id, "behind.example.org.", RRType.A, 300, Uint8Array.of(192, 0, 2, 99));
    sql.setSerial(c.kernel.store.db, id, row.serial + 100);
    const builds = await buildsDuring(async () => {
      expect((await c.send("PUT", `${zone}/rrsets/www/TXT`, owner, { json: { records: ['"after"'] } })).status).toBe(200);
      dns.zone(id);
    });
    expect(builds).toBeGreaterThan(0);
    servedIsStoredSigned(c, id, denial);
    expect(dns.zone(id)!.records().some((r) => nameToText(r.name) === "behind.example.org.")).toBe(true);
  });

  test("RRSIGs stored as one blob (an older Citadel's, before migration 0011): read as they are; the next change stores them one row per RRset, the blob gone", async () => {
    const { c, owner, zone, id } = await signedZone(mode);
    const db = c.kernel.store.db;
    const rows = sql.storedRrsigs(db, id, null);
    db.query("DELETE FROM dns_zone_rrsigs WHERE zone_id = ?").run(id);
    db.query("UPDATE dns_zone_keys SET rrsigs = ? WHERE zone_id = ?").run(Buffer.concat(rows), id);
    const blob = sql.zoneKey(db, id)!.rrsigs;
    expect(sql.storedRrsigs(db, id, blob).flatMap(decodeRrsigs).length).toBe(rows.flatMap(decodeRrsigs).length);
    expect((await c.send("PUT", `${zone}/rrsets/www/TXT`, owner, { json: { records: ['"after"'] } })).status).toBe(200);
    servedIsStoredSigned(c, id, denial);
  });

  test("a change refused after the signer made it (over the record quota: 409) rolls back whole: the zone served and the stored RRSIGs stay as they were, and the next change is edited from them", async () => {
    const { c, owner, zone, id } = await signedZone(mode, { config: { dns: { max_records_per_zone: 7 } } });
    const dns = dnsServiceOf(c.kernel as never);
    const served = dns.zone(id)!;
    const serial = sql.liveZoneById(c.kernel.store.db, id)!.serial;
    const refused = await c.send("PUT", `${zone}/rrsets/more/A`, owner, { json: { records: ["192.0.2.1", "192.0.2.2"] } });
    expect(refused.status).toBe(409);
    expect(sql.liveZoneById(c.kernel.store.db, id)!.serial).toBe(serial);
    expect(dns.signer.servedAt(sql.liveZoneById(c.kernel.store.db, id)!)).toBe(served); // the version served is still the one the next change edits
    servedIsStoredSigned(c, id, denial);
    const builds = await buildsDuring(async () => {
      expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.77"] } })).status).toBe(200);
      dns.zone(id);
    });
    expect(builds).toBe(0);
    servedIsStoredSigned(c, id, denial);
  });
});
