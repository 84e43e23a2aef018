/**
 * DNSSEC per zone through the API, in-process: turning it on and off (audited, the private key
 * only ever a keyring envelope), the DS and DNSKEY for the parent, the zone served signed,
 * re-signing a week before the signatures expire, refusing zones with a record provider's
 * names, and what sealing does.
 */
import { describe, expect, test } from "bun:test";
import { decodeMessage } from "../../../plugins/dns/message.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { allowAll, answerAll, answerQuery, ZoneTable } from "../../../plugins/dns/server.ts";
import { buildQuery, DnsClient } from "../../helpers/reference-dns.ts";
import { operatorCaller } from "../../helpers/caller.ts";
import { delvAgainst } from "../../helpers/dnssec-validators.ts";
import { dnsServiceOf, dnssecServiceOf } from "../../../plugins/dns/index.ts";
import { dnskeyText, REFRESH_BEFORE_MS, signaturesOf, TYPE_DNSKEY, TYPE_RRSIG, VALIDITY_MS } from "../../../plugins/dns/dnssec.ts";
import { SealedError } from "../../../src/errors.ts";
import { withProvidedRecords } from "../../../plugins/dns/provided.ts";
import { dnsOrganizationDeletion, dnsSubjects } from "../../../plugins/dns/subject.ts";
import { stoppedAfterEach, testCitadel } from "../../helpers/citadel.ts";
import { captureLog } from "../../helpers/http.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

const serialOf = (c: App, id: string) => (c.kernel.store.db.query("SELECT serial FROM dns_zones WHERE id = ?").get(id) as { serial: number }).serial;

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await Bun.sleep(5);
  expect(condition()).toBe(true);
}

/** With a DNS listener (port 0), so that the plugin runs its re-signing; stopped after each test. */
const withListener = stoppedAfterEach();
const listening = () => withListener({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });

async function setup(make: () => Promise<App> = testCitadel) {
  const c = await make();
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "example.org", ns: ["ns1.example.net."] } });
  expect(created.status).toBe(200);
  const zone = `${zones}/example.org`;
  expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { ttl: 300, records: ["192.0.2.10"] } })).status).toBe(200);
  return { c, owner, zones, zone, id: created.body.id as string };
}

const auditOf = (c: App) =>
  c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action LIKE 'dns.zone.dnssec.%' ORDER BY seq").all() as Array<{ action: string; reason: string }>;
const keyRow = (c: App, id: string) => c.kernel.store.db.query("SELECT * FROM dns_zone_keys WHERE zone_id = ?").get(id) as { private_key: Uint8Array; dnskey: Uint8Array } | null;

describe("dnssec per zone", () => {
  test("enable: a key sealed in the keyring, a new serial, the DS and DNSKEY to give the parent; the zone is served signed", async () => {
    const { c, owner, zone, id } = await setup();
    const before = (await c.send("GET", zone, owner)).body.serial as number;
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body).toMatchObject({ zone: "example.org.", enabled: false, ds: [], dnskey: [] });

    const enabled = await c.send("POST", `${zone}/dnssec`, owner);
    expect(enabled.status).toBe(200);
    expect(enabled.body).toMatchObject({ zone: "example.org.", enabled: true, algorithm: "ECDSAP256SHA256" });
    expect(enabled.body.ds).toEqual([expect.stringMatching(new RegExp(`^example\\.org\\. IN DS ${enabled.body.key_tag} 13 2 [0-9A-F]{64}$`))]);
    expect(enabled.body.dnskey).toEqual([expect.stringMatching(/^example\.org\. IN DNSKEY 257 3 13 \S{88}$/)]);
    expect(enabled.body.signatures_expire_at).toBe(new Date(c.clock.now() + VALIDITY_MS).toISOString());
    expect((await c.send("GET", zone, owner)).body.serial).toBeGreaterThan(before);

    // The private key is stored only as an envelope: it opens with the keyring, and its octets are not in it.
    const row = keyRow(c, id)!;
    const pkcs8 = c.kernel.seal.keyring().decrypt("dns/dnssec", `dns/dnssec/${id}`, row.private_key);
    const scalar = Buffer.from(pkcs8).subarray(36, 68); // the private scalar in a P-256 PKCS#8 (RFC 5915 inside RFC 5208)
    expect(Buffer.from(row.private_key).includes(scalar)).toBe(false);
    expect(JSON.stringify(auditOf(c)) + JSON.stringify(c.log.lines)).not.toContain(Buffer.from(scalar).toString("base64"));
    expect(auditOf(c)).toEqual([{ action: "dns.zone.dnssec.enable", reason: expect.stringMatching(/^example\.org\.: signed with a ECDSAP256SHA256 key, tag \d+; CDS\/CDNSKEY: rollover; key lifetime: none \(rolled by hand\); serial \d+$/) }]);

    const served = dnsServiceOf(c.kernel as never).zone(id)!;
    expect(signaturesOf(served)).toBeDefined();
    const dnskey = served.records().find((r) => r.type === TYPE_DNSKEY)!;
    expect(`example.org. IN DNSKEY ${dnskeyText(dnskey.rdata)}`).toBe(enabled.body.dnskey[0]);

    expect((await c.send("POST", `${zone}/dnssec`, owner)).status).toBe(409); // signed already
  });

  test("disable asks for confirmation, removes the key and serves the zone unsigned from a new serial", async () => {
    const { c, owner, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const signedSerial = (await c.send("GET", zone, owner)).body.serial as number;
    const ask = await c.send("DELETE", `${zone}/dnssec`, owner);
    expect(ask.status).toBe(428);
    const done = await c.send("DELETE", `${zone}/dnssec`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
    expect([done.status, done.body.enabled]).toEqual([200, false]);
    expect(keyRow(c, id)).toBeNull();
    expect((await c.send("GET", zone, owner)).body.serial).toBeGreaterThan(signedSerial);
    const served = dnsServiceOf(c.kernel as never).zone(id)!;
    expect(signaturesOf(served)).toBeUndefined();
    expect(served.records().some((r) => r.type === TYPE_DNSKEY)).toBe(false);
    expect(auditOf(c).map((e) => e.action)).toEqual(["dns.zone.dnssec.enable", "dns.zone.dnssec.disable"]);
    const again = await c.send("DELETE", `${zone}/dnssec`, owner);
    expect(again.status === 404 || again.status === 428).toBe(true);
  });

  test("a zone deleted with its key leaves no key behind", async () => {
    const { c, owner, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const ask = await c.send("DELETE", zone, owner);
    expect((await c.send("DELETE", zone, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect(keyRow(c, id)).toBeNull();
  });

  test("disable needs the delete permission, as a zone delete does: an editor may enable, not disable", async () => {
    const { c, owner, zone } = await setup();
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    expect((await c.send("POST", `${zone}/dnssec`, editor.token)).status).toBe(200);
    expect((await c.send("DELETE", `${zone}/dnssec`, editor.token)).status).toBe(403);
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body.enabled).toBe(true);
  });

  const organizationOf = (c: App) => ({ kind: "organization" as const, id: c.owner.organization }) as never;
  test.each([
    ["the zone is deleted", async (c: App, owner: string, zone: string) => {
      const ask = await c.send("DELETE", zone, owner);
      expect((await c.send("DELETE", zone, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    }],
    ["its organization is deleted", (c: App) => void dnsOrganizationDeletion(dnsServiceOf(c.kernel as never)).deleted(c.kernel.store.db, c.owner.organization, c.clock.now())],
    ["its organization's erasure is requested", (c: App) => dnsSubjects(dnsServiceOf(c.kernel as never)).softDelete!(c.kernel.store.db, organizationOf(c), c.clock.now())],
    ["its organization is erased", (c: App) => void dnsSubjects(dnsServiceOf(c.kernel as never)).erase!(c.kernel.store.db, organizationOf(c), c.clock.now())],
  ])("a zone's decrypted key leaves memory when %s", async (_, end: (c: App, owner: string, zone: string) => unknown) => {
    const { c, owner, zone, id } = await setup();
    const dns = dnsServiceOf(c.kernel as never);
    await c.send("POST", `${zone}/dnssec`, owner);
    dns.zone(id);
    expect(dns.signer.holdsKey(id)).toBe(true);
    await end(c, owner, zone);
    expect(dns.signer.holdsKey(id)).toBe(false);
  });

  test("a zone holding a zone served here without a delegation to it is not signed (409, delegate it first); with one it is", async () => {
    const { c, owner, zones, zone, id } = await setup();
    expect((await c.send("POST", zones, owner, { json: { name: "lab.example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
    const refused = await c.send("POST", `${zone}/dnssec`, owner);
    expect([refused.status, refused.body.detail]).toEqual([
      409,
      "example.org. holds lab.example.org., served here with no delegation to it: signed, example.org.'s NSEC records would deny its names to validators. Delegate it first (NS records in example.org.).",
    ]);
    expect(keyRow(c, id)).toBeNull();
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("POST", `${zone}/dnssec`, owner)).status).toBe(200);
  });

  test("a zone inside a signed one is made only once the signed one delegates it (409 saying so)", async () => {
    const { c, owner, zones, zone } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const refused = await c.send("POST", zones, owner, { json: { name: "a.lab.example.org", ns: ["ns1.example.net."] } });
    expect([refused.status, refused.body.detail]).toEqual([
      409,
      "a.lab.example.org. lies in example.org., which is signed (DNSSEC), with no delegation to it: its NSEC records would deny every name of the new zone to validators. Delegate it first (NS records for a.lab.example.org. in example.org.).",
    ]);
    // A delegation at it or above it (lab) will do.
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("POST", zones, owner, { json: { name: "a.lab.example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
  });

  test("a signed zone's delegation to a zone served inside it is not removed (409, by an rrset or an import, nothing changed) while that zone exists", async () => {
    const { c, owner, zones, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("POST", zones, owner, { json: { name: "lab.example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
    const serial = serialOf(c, id);
    const records = (await c.send("GET", `${zone}/records`, owner)).body;
    const detail =
      "lab.example.org. lies in example.org., which is signed (DNSSEC), and would be left with no delegation to it: its NSEC records would deny its names to validators. Delegate it first (NS records for lab.example.org. in example.org.), or delete it.";
    const removed = await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: [] } });
    expect([removed.status, removed.body.detail]).toEqual([409, detail]);
    for (const dry_run of [true, false]) {
      const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: "@ 300 NS ns1.example.net.\nwww 300 A 192.0.2.1\n", dry_run } });
      expect([imported.status, imported.body.detail]).toEqual([409, detail]);
    }
    expect(serialOf(c, id)).toBe(serial);
    expect((await c.send("GET", `${zone}/records`, owner)).body).toEqual(records);
    // Other changes, and an import that keeps the delegation, go through.
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.11"] } })).status).toBe(200);
    expect((await c.send("POST", `${zone}/import`, owner, { json: { content: "@ 300 NS ns1.example.net.\nlab 300 NS ns2.example.net.\n" } })).status).toBe(200);
    // Once the nested zone is gone, so may the delegation go.
    const ask = await c.send("DELETE", `${zones}/lab.example.org`, owner);
    expect((await c.send("DELETE", `${zones}/lab.example.org`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: [] } })).status).toBe(200);
  });

  test("an unsigned zone's delegation to a zone served inside it may be removed", async () => {
    const { c, owner, zones, zone } = await setup();
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("POST", zones, owner, { json: { name: "lab.example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/lab/NS`, owner, { json: { records: [] } })).status).toBe(200);
  });

  const A6 = "\\# 17 0020010db8000000000000000000000001";
  const NXT = "\\# 6 016100014000";
  const SIG = `\\# 19 ${"00".repeat(18)}00`;
  const DS = "12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";

  test("a signed zone refuses (422) SIG, NXT and A6 records, whose names the signer does not lower, and a DS at its apex; a delegation's DS is fine", async () => {
    const { c, owner, zone } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    for (const [owner_, type, data] of [["old", "TYPE38", A6], ["old", "TYPE30", NXT], ["old", "SIG", SIG], ["@", "DS", DS]] as const) {
      const refused = await c.send("PUT", `${zone}/rrsets/${owner_}/${type}`, owner, { json: { records: [data] } });
      expect([type, refused.status]).toEqual([type, 422]);
    }
    const apexDs = await c.send("PUT", `${zone}/rrsets/@/DS`, owner, { json: { records: [DS] } });
    expect(apexDs.body.detail).toBe("example.org. DS: a DS at the zone's apex belongs in the parent zone: signed as this zone's own data, validators reject it");
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: `@ 300 NS ns1.example.net.\nold 300 TYPE38 ${A6}\n` } });
    expect([imported.status, imported.body.detail]).toEqual([422, "line 2: old.example.org. TYPE38: A6 records (obsolete) are not signed here: validators would reject them; a signed zone holds none"]);
    expect((await c.send("PUT", `${zone}/rrsets/child/NS`, owner, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/child/DS`, owner, { json: { records: [DS] } })).status).toBe(200);
  });

  test("enabling DNSSEC on a zone holding such records is refused (409 naming them) until they go", async () => {
    const { c, owner, zone } = await setup();
    expect((await c.send("PUT", `${zone}/rrsets/old/TYPE38`, owner, { json: { records: [A6] } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/@/DS`, owner, { json: { records: [DS] } })).status).toBe(200);
    const refused = await c.send("POST", `${zone}/dnssec`, owner);
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toContain("example.org. holds records a signed zone cannot: ");
    expect(refused.body.detail).toContain("old.example.org. TYPE38: A6 records (obsolete)");
    expect(refused.body.detail).toContain("example.org. DS: a DS at the zone's apex belongs in the parent zone");
    await c.send("PUT", `${zone}/rrsets/old/TYPE38`, owner, { json: { records: [] } });
    await c.send("PUT", `${zone}/rrsets/@/DS`, owner, { json: { records: [] } });
    expect((await c.send("POST", `${zone}/dnssec`, owner)).status).toBe(200);
  });

  test("a zone holding a record provider's names (the mesh's) is refused with 409 saying why", async () => {
    const { c, owner, zone, id } = await setup();
    c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: () => [{ name: "db1.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }] });
    const refused = await c.send("POST", `${zone}/dnssec`, owner);
    expect(refused.status).toBe(409);
    expect(JSON.stringify(refused.body)).toContain("mesh.example.org., whose names mesh serves: they are private and change");
    expect(keyRow(c, id)).toBeNull();
    expect(auditOf(c)).toEqual([]);
  });

  test("a provider whose domain comes into a signed zone afterwards is left out of it, not served unsigned inside it", async () => {
    const { c, owner, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const signed = dnsServiceOf(c.kernel as never).zone(id)!;
    const log = captureLog();
    const zones = withProvidedRecords([signed], [{ name: "mesh", domain: "mesh.example.org.", records: () => [{ name: "db1.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }] }], () => 1, log.logger);
    expect(zones).toEqual([signed]);
    expect(log.lines.find((l) => String(l.msg).includes("lies in a signed zone"))).toMatchObject({ level: "error", provider: "mesh", zone: "example.org." });
  });

  test("a record provider's change does not move a signed zone's serial (its names are left out of it); an unsigned zone's moves", async () => {
    const { c, owner, zones, zone, id } = await setup(listening);
    await c.send("POST", `${zone}/dnssec`, owner);
    const unsigned = await c.send("POST", zones, owner, { json: { name: "example.net", ns: ["ns1.example.org."] } });
    const signedSerial = serialOf(c, id);
    const unsignedSerial = serialOf(c, unsigned.body.id);
    let address = "100.64.0.1";
    const records = (domain: string) => () => [{ name: `db1.${domain}`, type: "A", ttl: 60, data: address }];
    c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: records("mesh.example.org.") });
    c.kernel.records.register({ name: "lab", domain: "lab.example.net.", records: records("lab.example.net.") });
    address = "100.64.0.2";
    c.kernel.records.changed("mesh");
    c.kernel.records.changed("lab");
    // The unsigned zone's serial moving says both changes were handled (in this order).
    await waitFor(() => serialOf(c, unsigned.body.id) > unsignedSerial + 1);
    expect(serialOf(c, id)).toBe(signedSerial);
  });

  test("signatures are signed again (a new serial) once less than a week is left of them, not before", async () => {
    const { c, owner, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const signer = dnsServiceOf(c.kernel as never).signer;
    expect(signer.refreshDue(c.clock.now())).toEqual([]);
    c.clock.advance(VALIDITY_MS - REFRESH_BEFORE_MS - 60_000);
    expect(signer.refreshDue(c.clock.now())).toEqual([]);
    c.clock.advance(60_000);
    expect(signer.refreshDue(c.clock.now()).map((z) => z.id)).toEqual([id]);
    // Bumping the serial is what signs it again: the zone's time moves, and nothing is due.
    // (Read from the store: a week on, the session has expired.)
    const serialOf = () => (c.kernel.store.db.query("SELECT serial FROM dns_zones WHERE id = ?").get(id) as { serial: number }).serial;
    const serial = serialOf();
    await dnsServiceOf(c.kernel as never).bumpSerial(id);
    expect(serialOf()).toBeGreaterThan(serial);
    expect(signer.refreshDue(c.clock.now())).toEqual([]);
    const served = dnsServiceOf(c.kernel as never).zone(id)!;
    expect(signaturesOf(served)!.expiresAt).toBe(c.clock.now() + VALIDITY_MS);
  });

  test("re-signing is due a week before the earliest signature served expires, not the last change's (a change keeps unchanged RRsets' older RRSIGs)", async () => {
    const { c, owner, zone, id } = await setup();
    await c.send("POST", `${zone}/dnssec`, owner);
    const dns = dnsServiceOf(c.kernel as never);
    dns.zone(id);
    const signedAt = c.clock.now();
    c.clock.advance(3 * 86_400_000);
    await dns.bumpSerial(id); // a change three days on: only the SOA is signed again
    dns.zone(id);
    c.clock.advance(VALIDITY_MS - REFRESH_BEFORE_MS - 3 * 86_400_000);
    expect(c.clock.now()).toBe(signedAt + VALIDITY_MS - REFRESH_BEFORE_MS);
    expect(dns.signer.refreshDue(c.clock.now()).map((z) => z.id)).toEqual([id]);
  });

  test("sealed (a restart before the unseal): the zone is served with the RRSIGs stored at its serial, and delv validates its answers", async () => {
    // delv checks the signatures' times against its own clock: this Citadel's runs at the real time.
    const { c, owner, zone, id } = await setup(async () => {
      const c = await testCitadel();
      c.clock.advance(Date.now() - c.clock.now());
      return c;
    });
    const ds = (await c.send("POST", `${zone}/dnssec`, owner)).body.ds[0] as string;
    const dns = dnsServiceOf(c.kernel as never);
    const unsealed = signaturesOf(dns.zone(id)!)!;
    c.kernel.seal.seal(); // the decrypted key goes: what a start before the unseal has
    const served = dns.zone(id)!;
    const sealed = signaturesOf(served)!;
    expect(sealed.unavailable).toBe(false);
    expect(sealed.records().map((r) => r.rdata)).toEqual(unsealed.records().map((r) => r.rdata));
    expect(c.log.lines.find((l) => String(l.msg).includes("served with the signatures stored at its serial"))).toMatchObject({ zone: "example.org." });
    expect(dns.signer.refreshDue(c.clock.now())).toEqual([]);
    const out = await delvAgainst(served, ds, "www.example.org.", "A");
    if (out === null) return;
    expect(out).toContain("; fully validated");
    expect(out).toContain("192.0.2.10");
    expect(await delvAgainst(served, ds, "nothere.example.org.", "A")).toContain("; negative response, fully validated");
  });

  test("sealed with no RRSIGs stored for the zone's serial: its names are answered SERVFAIL, never unsigned; the unseal signs it again at once", async () => {
    const { c, owner, zone, id } = await setup(listening);
    await c.send("POST", `${zone}/dnssec`, owner);
    const dns = dnsServiceOf(c.kernel as never);
    c.kernel.seal.seal();
    // A serial the stored RRSIGs do not sign (as a restore's advance of the serials makes one).
    c.kernel.store.db.query("UPDATE dns_zones SET serial = serial + 1 WHERE id = ?").run(id);
    const served = dns.zone(id)!;
    expect(signaturesOf(served)!.unavailable).toBe(true);
    expect(c.log.lines.find((l) => String(l.msg).includes("no signatures stored for its serial"))).toMatchObject({ level: "error", zone: "example.org." });
    const table = new ZoneTable();
    table.set(served);
    for (const dnssecOk of [true, false]) {
      const reply = decodeMessage(answerQuery(buildQuery({ name: parseName("www.example.org.", null), type: RRType.A, edns: { payload: 1232, dnssecOk } }), "127.0.0.1", "udp", table, allowAll)!);
      expect([reply.rcode, reply.answer.length]).toEqual([2, 0]);
    }
    // Nor is it transferred unsigned: a secondary would serve that copy as the zone's new one.
    const axfr = answerAll(buildQuery({ name: parseName("example.org.", null), type: 252 }), "127.0.0.1", "tcp", { zones: table, gate: allowAll, transfers: { allowed: () => true } });
    expect(axfr.map((m) => [decodeMessage(m).rcode, decodeMessage(m).answer.length])).toEqual([[2, 0]]);
    const serial = serialOf(c, id);
    c.kernel.seal.unsealWithKey(c.kernel.rootKey);
    await waitFor(() => serialOf(c, id) > serial);
    expect(signaturesOf(dns.zone(id)!)!.unavailable).toBe(false);
  });

  test("the unseal signs again at once a zone whose signatures ran short while sealed (not at the next check, minutes later)", async () => {
    const { c, owner, zone, id } = await setup(listening);
    await c.send("POST", `${zone}/dnssec`, owner);
    c.kernel.seal.seal();
    c.clock.advance(VALIDITY_MS - REFRESH_BEFORE_MS);
    const serial = serialOf(c, id);
    c.kernel.seal.unsealWithKey(c.kernel.rootKey);
    await waitFor(() => serialOf(c, id) > serial);
    expect(dnsServiceOf(c.kernel as never).signer.refreshDue(c.clock.now())).toEqual([]);
  });

  test("a zone stored so that it does not build (by an older Citadel) is not signed in the write: 409 saying so, not a 500; nothing changes", async () => {
    const { c, owner, zone, id } = await setup();
    c.kernel.store.db.query("DELETE FROM dns_records WHERE zone_id = ? AND type = 2").run(id); // the apex NS: Zone.build refuses it
    const serial = serialOf(c, id);
    const refused = await c.send("POST", `${zone}/dnssec`, owner);
    expect([refused.status, refused.body.code]).toEqual([409, "conflict"]);
    expect(refused.body.detail).toStartWith("example.org. as stored does not build (");
    expect([serialOf(c, id), keyRow(c, id)]).toEqual([serial, null]);
  });

  test("the CLI's words: dnssec show|enable|disable, rollover start|finish|cancel and ds are commands of the dns plugin", async () => {
    const { dnsCommands } = await import("../../../plugins/dns/commands.ts");
    const words = dnsCommands.map((command) => command.words.join(" "));
    expect(words).toEqual(expect.arrayContaining(["dns zone dnssec show", "dns zone dnssec enable", "dns zone dnssec disable", "dns zone ds", "dns zone dnssec rollover start", "dns zone dnssec rollover finish", "dns zone dnssec rollover cancel"]));
  });
});

/**
 * A write passes the HTTP edge's sealed gate, then waits for the store's next batch: Citadel may
 * seal meanwhile. A signed zone whose serial moved then had no signatures for it, and answered
 * SERVFAIL until the unseal (found in review: "API writes need the keyring" was not so for a
 * change of records or a rollover's cancel).
 */
describe("writes to a signed zone queued when Citadel seals", () => {
  /** A signed zone with a rollover in progress (a cancel or finish has one), served by a listener; `ask` queries it with DO. */
  async function signedAndServed() {
    const { c, owner, zone, id } = await setup(listening);
    expect((await c.send("POST", `${zone}/dnssec`, owner)).status).toBe(200);
    expect((await c.send("POST", `${zone}/dnssec/rollover`, owner)).status).toBe(200);
    const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
    const client = await DnsClient.open(port);
    const ask = async (name: string) => {
      const reply = await client.query(buildQuery({ name: parseName(name, null), type: RRType.A, edns: { payload: 1232, dnssecOk: true } }));
      return { rcode: reply.rcode, types: reply.answer.map((r) => r.type) };
    };
    return { c, id, ask, close: () => client.close(), dns: dnsServiceOf(c.kernel as never), dnssec: dnssecServiceOf(c.kernel as never) };
  }
  type Served = Awaited<ReturnType<typeof signedAndServed>>;
  const caller = operatorCaller("operator");
  /** What a DO query for www gets from a signed zone during a rollover: the address and both keys' RRSIGs. */
  const SIGNED_ANSWER = { rcode: 0, types: [RRType.A, TYPE_RRSIG, TYPE_RRSIG] };

  test.each([
    ["an RRset replaced", (s: Served) => s.dns.setRrset(caller, s.c.owner.organization, "example.org", "www", "A", { ttl: 300, records: ["192.0.2.99"] })],
    ["an import", (s: Served) => s.dns.import(caller, s.c.owner.organization, "example.org", { content: "@ 300 NS ns1.example.net.\nwww 300 A 192.0.2.99\n" })],
    ["the rollover cancelled", (s: Served) => s.dnssec.cancelRollover(caller, s.c.owner.organization, "example.org")],
    ["the rollover finished", (s: Served) => s.dnssec.finishRollover(caller, s.c.owner.organization, "example.org")],
  ])("%s: refused with 503 sealed in its transaction; the zone keeps its serial and is served with its stored signatures", async (_, write: (s: Served) => Promise<unknown>) => {
    const s = await signedAndServed();
    try {
      s.c.clock.advance(2 * 86_400_000); // past the rollover's wait: a finish is refused only for the seal
      const serial = serialOf(s.c, s.id);
      const queued = write(s);
      s.c.kernel.seal.seal();
      const refused = await queued.then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(SealedError);
      expect((refused as SealedError).code).toBe("sealed");
      expect(serialOf(s.c, s.id)).toBe(serial);
      expect(await s.ask("www.example.org.")).toEqual(SIGNED_ANSWER);
    } finally {
      s.close();
    }
  });

  test("the periodic re-signing queued when Citadel seals moves nothing: the unseal signs the zone again", async () => {
    const s = await signedAndServed();
    try {
      const serial = serialOf(s.c, s.id);
      const queued = s.dns.bumpSerial(s.id);
      s.c.kernel.seal.seal();
      await queued;
      expect(serialOf(s.c, s.id)).toBe(serial);
      expect(await s.ask("www.example.org.")).toEqual(SIGNED_ANSWER);
    } finally {
      s.close();
    }
  });

  test("sealed right after a write that committed in the same batch as the seal's audit event (POST /v1/sys/seal writes it, then seals): the change is served from the signatures stored with it, never SERVFAIL", async () => {
    const s = await signedAndServed();
    try {
      const sealing = s.c.kernel.store.write(() => undefined).then(() => s.c.kernel.seal.seal());
      const written = s.dns.setRrset(caller, s.c.owner.organization, "example.org", "www", "A", { ttl: 300, records: ["192.0.2.99"] });
      await Promise.all([sealing, written]);
      expect(s.c.kernel.seal.sealed).toBe(true);
      expect(await s.ask("www.example.org.")).toEqual(SIGNED_ANSWER);
      const stored = s.c.kernel.store.db.query("SELECT signed_serial FROM dns_zone_keys WHERE zone_id = ?").get(s.id) as { signed_serial: number };
      expect(stored.signed_serial).toBe(serialOf(s.c, s.id));
    } finally {
      s.close();
    }
  });
});
