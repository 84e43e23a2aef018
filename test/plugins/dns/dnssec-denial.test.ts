/**
 * A signed zone's denial of existence through the API, in-process (docs/dns.md, "NSEC3"):
 * enabling DNSSEC with NSEC3, the parameters RFC 9276 advises against refused with its reasons,
 * switching NSEC ⇄ NSEC3 (and the salt) in one new serial — audited, the data's RRSIGs kept,
 * dnssec-verify and delv before and after each switch — during a key rollover, served sealed
 * from the stored signatures, and gone with the key.
 */
import { describe, expect, test } from "bun:test";
import { nameToText } from "../../../plugins/dns/names.ts";
import { dnsServiceOf, dnssecServiceOf } from "../../../plugins/dns/index.ts";
import { readRrsig, signaturesOf, TYPE_NSEC } from "../../../plugins/dns/dnssec.ts";
import { readNsec3, TYPE_NSEC3, TYPE_NSEC3PARAM } from "../../../plugins/dns/nsec3.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { ZoneTable } from "../../../plugins/dns/server.ts";
import type { Zone } from "../../../plugins/dns/zone.ts";
import { axfrRecords, delv, dnssecVerify, listenerFor } from "../../helpers/dnssec-validators.ts";
import { operatorCaller } from "../../helpers/caller.ts";
import { confirmationToken, stoppedAfterEach } from "../../helpers/citadel.ts";
import { SealedError } from "../../../src/errors.ts";

const citadel = stoppedAfterEach();
type App = Awaited<ReturnType<typeof citadel>>;

/**
 * example.org with a few names (an empty non-terminal, a wildcard, an unsigned delegation), its
 * clock at the real time (delv checks the signatures' times against its own), not yet signed.
 */
async function zoneOf() {
  const c = await citadel();
  c.clock.advance(Date.now() - c.clock.now());
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "example.org", ns: ["ns1.example.net."] } });
  expect(created.status).toBe(200);
  const zone = `${zones}/example.org`;
  for (const [name, type, records] of [
    ["www", "A", ["192.0.2.10"]],
    ["a.b", "A", ["192.0.2.11"]],
    ["*.wild", "TXT", ['"from the wildcard"']],
    ["lab", "NS", ["ns1.example.net."]],
  ] as const) {
    expect((await c.send("PUT", `${zone}/rrsets/${name}/${type}`, owner, { json: { ttl: 300, records } })).status).toBe(200);
  }
  return { c, owner, zone, id: created.body.id as string };
}

const served = (c: App, id: string): Zone => dnsServiceOf(c.kernel as never).zone(id)!;
const serialOf = (c: App, id: string) => (c.kernel.store.db.query("SELECT serial FROM dns_zones WHERE id = ?").get(id) as { serial: number }).serial;
const keyRow = (c: App, id: string) => c.kernel.store.db.query("SELECT denial, nsec3_salt FROM dns_zone_keys WHERE zone_id = ?").get(id) as { denial: string; nsec3_salt: Uint8Array } | null;
const auditOf = (c: App) => c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action LIKE 'dns.zone.dnssec.%' ORDER BY seq").all() as Array<{ action: string; reason: string }>;
/** The records proving absence the zone serves: "nsec" or "nsec3" and how many. */
function chainOf(zone: Zone): { nsec: number; nsec3: number; nsec3param: number } {
  const all = [...zone.records(), ...signaturesOf(zone)!.transferRecords()];
  return { nsec: all.filter((r) => r.type === TYPE_NSEC).length, nsec3: all.filter((r) => r.type === TYPE_NSEC3).length, nsec3param: all.filter((r) => r.type === TYPE_NSEC3PARAM).length };
}
const rrsigBytes = (zone: Zone) => new Map(signaturesOf(zone)!.records().map((r) => [`${nameToText(r.name)} ${readRrsig(r.rdata).typeCovered}`, Buffer.from(r.rdata).toString("hex")]));

const QUESTIONS = [
  ["www.example.org.", "A", "; fully validated"],
  ["nothere.example.org.", "A", "; negative response, fully validated"],
  ["www.example.org.", "TXT", "; negative response, fully validated"],
  ["b.example.org.", "A", "; negative response, fully validated"], // an empty non-terminal
  ["x.wild.example.org.", "TXT", "; fully validated"],
  ["x.wild.example.org.", "A", "; negative response, fully validated"],
  ["lab.example.org.", "DS", "; negative response, fully validated"],
] as const;

/** delv's verdict on each question, trusting `ds`, and dnssec-verify's on the AXFR, of `zone` as served; null without the tools. */
async function validators(zone: Zone, ds: string): Promise<{ delv: string[]; verify: boolean } | null> {
  const table = new ZoneTable();
  table.set(zone);
  const verified = dnssecVerify(axfrRecords(table, "example.org."), "example.org.");
  const listener = await listenerFor(table);
  try {
    const failed: string[] = [];
    for (const [qname, qtype, verdict] of QUESTIONS) {
      const out = await delv(listener.port, ds, qname, qtype);
      if (out === null || verified === null) return null;
      if (!out.includes(verdict)) failed.push(`${qname} ${qtype}: ${out}`);
    }
    return { delv: failed, verify: verified!.code === 0 && verified!.out.includes("Zone fully signed") };
  } finally {
    await listener.stop();
  }
}
const VALID = { delv: [], verify: true };

describe("NSEC3 per zone", () => {
  test("enable with NSEC3: the chain and its NSEC3PARAM served, the view and the audit say so, validators validate", async () => {
    const { c, owner, zone, id } = await zoneOf();
    const enabled = await c.send("POST", `${zone}/dnssec`, owner, { json: { denial: "nsec3" } });
    expect(enabled.status).toBe(200);
    const nsec3 = { hash_algorithm: "SHA-1", iterations: 0, salt: "", opt_out: false, nsec3param: "example.org. IN NSEC3PARAM 1 0 0 -" };
    expect(enabled.body).toMatchObject({ enabled: true, denial: "nsec3", nsec3 });
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body).toMatchObject({ denial: "nsec3", nsec3 });
    expect(keyRow(c, id)).toEqual({ denial: "nsec3", nsec3_salt: new Uint8Array(0) });
    expect(auditOf(c)).toEqual([{ action: "dns.zone.dnssec.enable", reason: expect.stringMatching(/^example\.org\.: signed with a ECDSAP256SHA256 key, tag \d+, NSEC3 \(SHA-1, 0 iterations, no salt\); CDS\/CDNSKEY: rollover; key lifetime: none \(rolled by hand\); serial \d+$/) }]);
    const zoneNow = served(c, id);
    // The apex, www, a.b, b (an empty non-terminal), *.wild, wild (another), lab (an unsigned delegation).
    expect(chainOf(zoneNow)).toEqual({ nsec: 0, nsec3: 7, nsec3param: 1 });
    expect(await validators(zoneNow, enabled.body.ds[0])).toEqual(VALID);
    // Without a body, or with denial nsec, it is NSEC as before.
    const other = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.net", ns: ["ns1.example.org."] } });
    const plain = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones/example.net/dnssec`, owner);
    expect([plain.status, plain.body.denial, plain.body.nsec3]).toEqual([200, "nsec", null]);
    expect(chainOf(served(c, other.body.id))).toMatchObject({ nsec3: 0, nsec3param: 0 });
  });

  test("what RFC 9276 advises against is refused (422 naming the field and saying why) at enable and at a switch, nothing written", async () => {
    const { c, owner, zone, id } = await zoneOf();
    const refusals = [
      [{ denial: "nsec3", nsec3: { iterations: 10 } }, "nsec3.iterations", "NSEC3 iterations must be 0 (RFC 9276 section 3.1)"],
      [{ denial: "nsec3", nsec3: { opt_out: true } }, "nsec3.opt_out", "NSEC3 opt-out is not offered: it leaves the unsigned delegations in an opt-out span unproven"],
      [{ denial: "nsec3", nsec3: { salt: "xyz" } }, "nsec3.salt", 'the NSEC3 salt "xyz" is not hex octets'],
      [{ denial: "nsec", nsec3: {} }, "nsec3", "NSEC3 parameters are given for a zone whose denial of existence is NSEC"],
    ] as const;
    const serial = serialOf(c, id);
    for (const [body, field, says] of refusals) {
      const refused = await c.send("POST", `${zone}/dnssec`, owner, { json: body });
      expect([field, refused.status, refused.body.code, refused.body.errors?.[0]?.field, refused.body.detail]).toEqual([field, 422, "invalid", field, expect.stringContaining(says)]);
    }
    // A salt past 255 octets is the schema's to refuse (one error for every length beyond).
    for (const octets of [256, 300]) {
      const refused = await c.send("POST", `${zone}/dnssec`, owner, { json: { denial: "nsec3", nsec3: { salt: "ab".repeat(octets) } } });
      expect([octets, refused.status, refused.body.code, JSON.stringify(refused.body.errors)]).toEqual([octets, 422, "validation_failed", expect.stringContaining("salt")]);
    }
    expect([keyRow(c, id), serialOf(c, id), auditOf(c)]).toEqual([null, serial, []]);
    // The values RFC 9276 sets are accepted when given; a salt is (hex, "-" for none).
    const accepted = await c.send("POST", `${zone}/dnssec`, owner, { json: { denial: "nsec3", nsec3: { iterations: 0, opt_out: false, salt: "-" } } });
    expect([accepted.status, accepted.body.nsec3.nsec3param]).toEqual([200, "example.org. IN NSEC3PARAM 1 0 0 -"]);
    const signedSerial = serialOf(c, id);
    for (const [body, field] of refusals) {
      const refused = await c.send("PATCH", `${zone}/dnssec`, owner, { json: body });
      expect([field, refused.status, refused.body.errors?.[0]?.field]).toEqual([field, 422, field]);
    }
    expect([serialOf(c, id), auditOf(c).length]).toEqual([signedSerial, 1]);
    const tooLong = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { denial: "nsec3", nsec3: { salt: "ab".repeat(300) } } });
    expect(tooLong.status).toBe(422); // the schema's bound
  });

  test("a switch NSEC → NSEC3 → NSEC3 with a salt → NSEC: each one new serial, audited, the data's RRSIGs kept, dnssec-verify and delv valid before and after", async () => {
    const { c, owner, zone, id } = await zoneOf();
    const unsigned = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { denial: "nsec3" } });
    expect([unsigned.status, unsigned.body.detail]).toEqual([409, "example.org. is not signed: citadel dns zone dnssec enable --nsec3 signs it."]);
    const ds = (await c.send("POST", `${zone}/dnssec`, owner)).body.ds[0] as string;
    let before = served(c, id);
    expect(await validators(before, ds)).toEqual(VALID);
    const steps = [
      [{ denial: "nsec3" }, { nsec: 0, nsec3: 7, nsec3param: 1 }, "example.org. IN NSEC3PARAM 1 0 0 -", "NSEC → NSEC3 (SHA-1, 0 iterations, no salt)"],
      [{ denial: "nsec3", nsec3: { salt: "aabb" } }, { nsec: 0, nsec3: 7, nsec3param: 1 }, "example.org. IN NSEC3PARAM 1 0 0 AABB", "NSEC3 (SHA-1, 0 iterations, no salt) → NSEC3 (SHA-1, 0 iterations, salt AABB)"],
      [{ denial: "nsec" }, { nsec: 5, nsec3: 0, nsec3param: 0 }, null, "NSEC3 (SHA-1, 0 iterations, salt AABB) → NSEC"],
    ] as const;
    for (const [body, chain, nsec3param, change] of steps) {
      const serial = serialOf(c, id);
      const switched = await c.send("PATCH", `${zone}/dnssec`, owner, { json: body });
      expect([switched.status, switched.body.denial, switched.body.nsec3?.nsec3param ?? null]).toEqual([200, body.denial, nsec3param]);
      expect(serialOf(c, id)).toBeGreaterThan(serial);
      expect(auditOf(c).at(-1)).toEqual({ action: "dns.zone.dnssec.denial", reason: `example.org.: denial of existence ${change}, the zone signed again with the new chain; serial ${serialOf(c, id)}` });
      const after = served(c, id);
      expect(chainOf(after)).toEqual(chain);
      // The zone's data keeps its RRSIGs; only the SOA (its serial) and the chain are signed again.
      const [was, now] = [rrsigBytes(before), rrsigBytes(after)];
      const resigned = [...now].filter(([at, rdata]) => was.get(at) !== rdata).map(([at]) => Number(at.split(" ")[1]));
      expect(new Set(resigned)).toEqual(new Set([RRType.SOA, ...(body.denial === "nsec3" ? [TYPE_NSEC3, TYPE_NSEC3PARAM] : [TYPE_NSEC])]));
      expect(await validators(after, ds)).toEqual(VALID);
      // Asked again for what it has: 409, nothing changed.
      const again = await c.send("PATCH", `${zone}/dnssec`, owner, { json: body });
      expect([again.status, again.body.detail]).toEqual([409, `example.org. proves absence with ${change.split(" → ")[1]} already.`]);
      before = after;
    }
  });

  test("an editor may switch (as enable); a viewer may not", async () => {
    const { c, owner, zone } = await zoneOf();
    await c.send("POST", `${zone}/dnssec`, owner);
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const viewer = await c.addUser(owner, "viewer@example.org", "viewer");
    expect((await c.send("PATCH", `${zone}/dnssec`, viewer.token, { json: { denial: "nsec3" } })).status).toBe(403);
    expect((await c.send("PATCH", `${zone}/dnssec`, editor.token, { json: { denial: "nsec3" } })).status).toBe(200);
  });

  test("a switch during a key rollover: both keys sign the new chain, delv validates with either DS; the rollover's cancel keeps NSEC3", async () => {
    const { c, owner, zone, id } = await zoneOf();
    const oldDs = (await c.send("POST", `${zone}/dnssec`, owner)).body.ds[0] as string;
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const newDs = started.body.keys[1].ds as string;
    const switched = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { denial: "nsec3" } });
    expect([switched.status, switched.body.rollover?.published_serial, switched.body.denial]).toEqual([200, started.body.rollover.published_serial, "nsec3"]);
    const during = served(c, id);
    const sigs = signaturesOf(during)!;
    const tags = [started.body.keys[0].key_tag, started.body.keys[1].key_tag];
    expect(sigs.chain.mode === "nsec3" && sigs.chain.records().every((r) => sigs.rrsigs(r.name, TYPE_NSEC3).map((s) => readRrsig(s.rdata).keyTag).join() === tags.join())).toBe(true);
    expect(await validators(during, oldDs)).toEqual(VALID);
    expect(await validators(during, newDs)).toEqual(VALID);
    const path = `${zone}/dnssec/rollover`;
    expect((await c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "DELETE", path, owner) } })).status).toBe(200);
    const after = served(c, id);
    expect(chainOf(after)).toMatchObject({ nsec: 0, nsec3: 7 });
    expect(await validators(after, oldDs)).toEqual(VALID);
  });

  test("sealed after a switch: the zone is served from the RRSIGs stored at its serial, NSEC3 chain and all, and validates", async () => {
    const { c, owner, zone, id } = await zoneOf();
    const ds = (await c.send("POST", `${zone}/dnssec`, owner)).body.ds[0] as string;
    await c.send("PATCH", `${zone}/dnssec`, owner, { json: { denial: "nsec3", nsec3: { salt: "01" } } });
    const unsealed = served(c, id);
    c.kernel.seal.seal();
    const sealed = served(c, id);
    expect(signaturesOf(sealed)!.unavailable).toBe(false);
    expect(signaturesOf(sealed)!.transferRecords().map((r) => Buffer.from(r.rdata).toString("hex"))).toEqual(signaturesOf(unsealed)!.transferRecords().map((r) => Buffer.from(r.rdata).toString("hex")));
    const chain = signaturesOf(sealed)!.transferRecords().filter((r) => r.type === TYPE_NSEC3);
    expect(chain.every((r) => Buffer.from(readNsec3(r.rdata).salt).toString("hex") === "01")).toBe(true);
    expect(await validators(sealed, ds)).toEqual(VALID);
  });

  /**
   * A write that moves a signed zone's serial signs it in its own transaction (main's review
   * fix): the switch must too, with the chain it switches to, and so must every other write with
   * the zone's chain — signed with NSEC there, an NSEC3 zone's stored signatures would sign a
   * chain it does not serve, and a seal right after the commit left it answered SERVFAIL.
   */
  describe("signed in the write, as Citadel seals", () => {
    const caller = operatorCaller("operator");
    const storedSerial = (c: App, id: string) => (c.kernel.store.db.query("SELECT signed_serial FROM dns_zone_keys WHERE zone_id = ?").get(id) as { signed_serial: number }).signed_serial;
    /** The zone as a sealed Citadel builds it: from the RRSIGs stored at its serial (the zone signed in the write, adopted by the first build, is passed over). */
    const servedSealed = (c: App, id: string) => {
      served(c, id);
      return served(c, id);
    };

    test("a switch queued when Citadel seals is refused with 503 sealed in its transaction: the denial, the serial and the chain served stay", async () => {
      const { c, owner, zone, id } = await zoneOf();
      const ds = (await c.send("POST", `${zone}/dnssec`, owner)).body.ds[0] as string;
      const serial = serialOf(c, id);
      const queued = dnssecServiceOf(c.kernel as never).setDenial(caller, c.owner.organization, "example.org", { denial: "nsec3" });
      c.kernel.seal.seal();
      const refused = await queued.then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(SealedError);
      expect((refused as SealedError).code).toBe("sealed");
      expect([serialOf(c, id), keyRow(c, id)?.denial, auditOf(c).map((e) => e.action)]).toEqual([serial, "nsec", ["dns.zone.dnssec.enable"]]);
      const sealed = servedSealed(c, id);
      expect([signaturesOf(sealed)!.unavailable, chainOf(sealed)]).toEqual([false, { nsec: 5, nsec3: 0, nsec3param: 0 }]);
      expect(await validators(sealed, ds)).toEqual(VALID);
    });

    test.each([
      ["a switch to NSEC3", (c: App) => dnssecServiceOf(c.kernel as never).setDenial(caller, c.owner.organization, "example.org", { denial: "nsec3" }), "nsec"],
      ["a record change to an NSEC3 zone", (c: App) => dnsServiceOf(c.kernel as never).setRrset(caller, c.owner.organization, "example.org", "new", "A", { ttl: 300, records: ["192.0.2.99"] }), "nsec3"],
    ] as const)(
      "%s committed in the seal's own batch: its NSEC3 chain is served from the signatures stored with its serial, never SERVFAIL",
      async (_, write, enabledWith) => {
        const { c, owner, zone, id } = await zoneOf();
        const ds = (await c.send("POST", `${zone}/dnssec`, owner, { json: { denial: enabledWith } })).body.ds[0] as string;
        const serial = serialOf(c, id);
        const sealing = c.kernel.store.write(() => undefined).then(() => c.kernel.seal.seal());
        await Promise.all([sealing, write(c)]);
        expect(c.kernel.seal.sealed).toBe(true);
        expect(serialOf(c, id)).toBeGreaterThan(serial);
        expect(storedSerial(c, id)).toBe(serialOf(c, id));
        const sealed = servedSealed(c, id);
        expect(signaturesOf(sealed)!.unavailable).toBe(false);
        expect(chainOf(sealed)).toMatchObject({ nsec: 0, nsec3param: 1 });
        expect(await validators(sealed, ds)).toEqual(VALID);
      },
    );
  });

  test("the denial goes with the key: disabled and enabled again, a zone proves absence with NSEC unless asked", async () => {
    const { c, owner, zone, id } = await zoneOf();
    await c.send("POST", `${zone}/dnssec`, owner, { json: { denial: "nsec3", nsec3: { salt: "aabb" } } });
    const ask = await c.send("DELETE", `${zone}/dnssec`, owner);
    const disabled = await c.send("DELETE", `${zone}/dnssec`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
    expect([disabled.status, disabled.body.denial, disabled.body.nsec3]).toEqual([200, null, null]);
    expect(served(c, id).records().some((r) => r.type === TYPE_NSEC3PARAM)).toBe(false);
    const again = await c.send("POST", `${zone}/dnssec`, owner);
    expect([again.body.denial, keyRow(c, id)]).toEqual(["nsec", { denial: "nsec", nsec3_salt: new Uint8Array(0) }]);
    expect(signaturesOf(served(c, id))!.chain.mode).toBe("nsec");
  });

  test("the CLI's words: dnssec set is a command of the dns plugin", async () => {
    const { dnsCommands } = await import("../../../plugins/dns/commands.ts");
    expect(dnsCommands.map((command) => command.words.join(" "))).toContain("dns zone dnssec set");
  });
});
