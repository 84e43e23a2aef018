/**
 * DNSSEC key rollover through the API, in-process (docs/dns.md, "Key rollover"): the zone
 * validated by delv with the old key's DS and with the new key's before, during and after a
 * rollover, and after a cancel; dnssec-verify on the AXFR during one; the early finish refused
 * with the time left; the confirmations, permissions and audit events; both keys' signatures
 * served while sealed; truncation with two RRSIGs; changes and re-signing with two keys; a
 * restart in the middle; every way a zone's signing ends dropping both keys.
 */
import { describe, expect, test } from "bun:test";
import { decodeMessage, type Message } from "../../../plugins/dns/message.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { allowAll, answerQuery, ZoneTable } from "../../../plugins/dns/server.ts";
import { dnsServiceOf } from "../../../plugins/dns/index.ts";
import { DnsService } from "../../../plugins/dns/service.ts";
import { DnssecService, durationText } from "../../../plugins/dns/dnssec-service.ts";
import { dnskeyText, readRrsig, REFRESH_BEFORE_MS, signaturesOf, signingKeyFrom, TYPE_DNSKEY, TYPE_RRSIG, VALIDITY_MS } from "../../../plugins/dns/dnssec.ts";
import { dnsOrganizationDeletion, dnsSubjects } from "../../../plugins/dns/subject.ts";
import type { Zone } from "../../../plugins/dns/zone.ts";
import { axfrRecords, delv, dnssecVerify, listenerFor } from "../../helpers/dnssec-validators.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";
import { requireTool } from "../../helpers/tools.ts";
import { confirmationToken, stoppedAfterEach } from "../../helpers/citadel.ts";
import { operatorCaller } from "../../helpers/caller.ts";

const citadel = stoppedAfterEach();
type App = Awaited<ReturnType<typeof citadel>>;

/** Short TTLs (60 s) and propagation delay (60 s): a rollover may finish three minutes after its start. */
const WAIT_MS = (60 + 60 + 60) * 1000;

/**
 * A signed zone, example.org, whose clock runs at the real time (delv checks the signatures'
 * times against its own clock), with short TTLs so that a rollover can finish within the hour the
 * signatures start before their signing.
 */
async function signedZone(config: Record<string, unknown> = { dnssec_propagation_delay: 60 }, ttl = 60) {
  const c = await citadel({ config: { dns: config } });
  c.clock.advance(Date.now() - c.clock.now());
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "example.org", ttl, ns: ["ns1.example.net."] } });
  expect(created.status).toBe(200);
  const zone = `${zones}/example.org`;
  for (const [name, type, records] of [["www", "A", ["192.0.2.10"]], ["big", "TXT", [`"${"a".repeat(200)}" "${"b".repeat(200)}"`]]] as const) {
    expect((await c.send("PUT", `${zone}/rrsets/${name}/${type}`, owner, { json: { ttl, records } })).status).toBe(200);
  }
  const enabled = await c.send("POST", `${zone}/dnssec`, owner);
  expect(enabled.status).toBe(200);
  const id = created.body.id as string;
  return { c, owner, zones, zone, id, oldDs: enabled.body.ds[0] as string, oldTag: enabled.body.key_tag as number, dns: dnsServiceOf(c.kernel as never) };
}

/** The zone as the listener serves it now. */
const served = (c: App, id: string): Zone => dnsServiceOf(c.kernel as never).zone(id)!;

/** The key tags of the RRSIGs over each signed RRset ("owner type" → tags, in the order served). */
function signersByRrset(zone: Zone): Map<string, number[]> {
  const by = new Map<string, number[]>();
  for (const r of signaturesOf(zone)!.records()) {
    const { typeCovered, keyTag } = readRrsig(r.rdata);
    const at = `${nameToText(r.name)} ${typeCovered}`;
    by.set(at, [...(by.get(at) ?? []), keyTag]);
  }
  return by;
}

const dnskeysOf = (zone: Zone) => zone.records().filter((r) => r.type === TYPE_DNSKEY).map((r) => `example.org. IN DNSKEY ${dnskeyText(r.rdata)}`);
const auditOf = (c: App) => c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action LIKE 'dns.zone.dnssec.%' ORDER BY seq").all() as Array<{ action: string; reason: string }>;
const incomingRow = (c: App, id: string) => c.kernel.store.db.query("SELECT * FROM dns_zone_incoming_keys WHERE zone_id = ?").get(id) as { private_key: Uint8Array; dnskey: Uint8Array } | null;
const keyRow = (c: App, id: string) => c.kernel.store.db.query("SELECT * FROM dns_zone_keys WHERE zone_id = ?").get(id) as { private_key: Uint8Array; dnskey: Uint8Array } | null;

/** delv's verdicts, trusting `ds`, on an answer, a name that does not exist and the DNSKEY RRset of the zone served now. */
async function validates(zone: Zone, ds: string): Promise<boolean[] | null> {
  const table = new ZoneTable();
  table.set(zone);
  const listener = await listenerFor(table);
  try {
    const verdicts: boolean[] = [];
    for (const [qname, qtype, verdict] of [
      ["www.example.org.", "A", "; fully validated"],
      ["nothere.example.org.", "A", "; negative response, fully validated"],
      ["example.org.", "DNSKEY", "; fully validated"],
    ] as const) {
      const out = await delv(listener.port, ds, qname, qtype);
      if (out === null) return null;
      verdicts.push(out.includes(verdict));
    }
    return verdicts;
  } finally {
    await listener.stop();
  }
}

/** The zone-file lines kdig prints of an IXFR of `zone` from `serial` over TCP (the closing SOA last); null without kdig. */
async function ixfrLines(zone: Zone, serial: number): Promise<string[] | null> {
  const kdig = requireTool("kdig", "knot-dnsutils");
  if (kdig === null) return null;
  const table = new ZoneTable();
  table.set(zone);
  const listener = await listenerFor(table, { allowed: () => true });
  try {
    const run = Bun.spawn([kdig, "@127.0.0.1", "-p", String(listener.port), "+tcp", "+noall", "+answer", `IXFR=${serial}`, "example.org."], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const [out] = await Promise.all([new Response(run.stdout).text(), run.exited]);
    return out.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(";"));
  } finally {
    await listener.stop();
  }
}

/** A query with DO to a table serving `zone`. */
function ask(zone: Zone, qname: string, qtype: number, payload = 1232): { reply: Message; size: number } {
  const table = new ZoneTable();
  table.set(zone);
  const wire = answerQuery(buildQuery({ name: parseName(qname, null), type: qtype, edns: { payload, dnssecOk: true } }), "127.0.0.1", "udp", table, allowAll)!;
  return { reply: decodeMessage(wire), size: wire.length };
}

/** Each RRset of a section with the key tags of the RRSIGs that follow it. */
function rrsetsWithSigners(records: Message["answer"]): Array<{ rrset: string; signers: number[] }> {
  const out: Array<{ rrset: string; signers: number[] }> = [];
  for (const r of records) {
    if (r.type === TYPE_RRSIG) out[out.length - 1]!.signers.push(readRrsig(r.rdata).keyTag);
    else if (out.at(-1)?.rrset !== `${nameToText(r.name)} ${r.type}`) out.push({ rrset: `${nameToText(r.name)} ${r.type}`, signers: [] });
  }
  return out;
}

describe("dnssec key rollover", () => {
  test("delv validates with the old key's DS and the new key's at each stage: before (old only), during (both), after the finish (new only); dnssec-verify takes the AXFR and an IXFR during it", async () => {
    const { c, owner, zone, id, oldDs, oldTag } = await signedZone();
    const before = served(c, id);
    const serialBefore = (await c.send("GET", zone, owner)).body.serial as number;
    expect(dnskeysOf(before)).toHaveLength(1);
    const validatedBefore = await validates(before, oldDs);

    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    expect(started.status).toBe(200);
    const newTag = started.body.keys[1].key_tag as number;
    const newDs = started.body.keys[1].ds as string;
    expect(newTag).not.toBe(oldTag);
    expect(started.body.keys).toEqual([
      expect.objectContaining({ key_tag: oldTag, state: "retiring", ds: oldDs }),
      expect.objectContaining({ key_tag: newTag, state: "incoming", ds: expect.stringMatching(new RegExp(`^example\\.org\\. IN DS ${newTag} 13 2 [0-9A-F]{64}$`)) }),
    ]);
    expect(started.body.ds).toEqual([oldDs, newDs]);
    expect(started.body.key_tag).toBe(oldTag);

    // During: both DNSKEYs, and every RRset signed by both keys (old first); the AXFR carries it all.
    const during = served(c, id);
    expect(dnskeysOf(during)).toEqual(started.body.dnskey);
    const signers = signersByRrset(during);
    expect(signers.size).toBeGreaterThan(5);
    for (const [at, tags] of signers) expect([at, tags]).toEqual([at, [oldTag, newTag]]);
    const table = new ZoneTable();
    table.set(during);
    const axfr = axfrRecords(table, "example.org.");
    expect(axfr.filter((r) => r.type === TYPE_DNSKEY)).toHaveLength(2);
    expect(new Set(axfr.filter((r) => r.type === TYPE_RRSIG).map((r) => readRrsig(r.rdata).keyTag))).toEqual(new Set([oldTag, newTag]));
    const verified = dnssecVerify(axfr, "example.org.");
    if (verified !== null) {
      expect(verified.out).toContain("Zone fully signed");
      expect(verified.out).toContain("KSKs: 2 active"); // both keys sign every RRset
      expect(verified.code).toBe(0);
    }
    const validatedDuring = [await validates(during, oldDs), await validates(during, newDs)];
    // An IXFR from a secondary at the serial before the start (the whole zone, as Citadel gives it) carries both too.
    const ixfr = await ixfrLines(during, serialBefore);
    if (ixfr !== null) {
      expect(ixfr.filter((l) => /\sIN\s+DNSKEY\s/.test(l))).toHaveLength(2);
      expect(dnssecVerify(ixfr.slice(0, -1), "example.org.")?.out).toContain("KSKs: 2 active");
    }

    // The finish, once its time has come and confirmed, retires the old key.
    c.clock.advance(WAIT_MS);
    const path = `${zone}/dnssec/rollover/finish`;
    const finished = await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } });
    expect(finished.status).toBe(200);
    expect(finished.body).toMatchObject({ key_tag: newTag, ds: [newDs], keys: [expect.objectContaining({ key_tag: newTag, state: "active" })], rollover: null });
    const after = served(c, id);
    expect(dnskeysOf(after)).toEqual([started.body.dnskey[1]]);
    for (const [at, tags] of signersByRrset(after)) expect([at, tags]).toEqual([at, [newTag]]);
    const afterTable = new ZoneTable();
    afterTable.set(after);
    const afterVerified = dnssecVerify(axfrRecords(afterTable, "example.org."), "example.org.");
    if (afterVerified !== null) expect(afterVerified.out).toMatch(/Zone fully signed:\n.*KSKs: 1 active/);
    const validatedAfter = [await validates(after, oldDs), await validates(after, newDs)];

    expect(auditOf(c)).toEqual([
      { action: "dns.zone.dnssec.enable", reason: expect.any(String) },
      {
        action: "dns.zone.dnssec.rollover.start",
        reason: expect.stringMatching(new RegExp(`^example\\.org\\.: key rollover started: new key tag ${newTag} published beside key tag ${oldTag}, both sign the zone; serial \\d+; the DS may change at the parent from \\S+Z; finish possible from \\S+Z$`)),
      },
      {
        action: "dns.zone.dnssec.rollover.finish",
        reason: expect.stringMatching(new RegExp(`^example\\.org\\.: key rollover finished: key tag ${oldTag} retired \\(its DNSKEY and signatures removed\\), key tag ${newTag} signs alone; confirmed: .*; serial \\d+$`)),
      },
    ]);

    if (validatedBefore === null) return; // no delv: the rest is checked
    expect(validatedBefore).toEqual([true, true, true]);
    expect(validatedDuring).toEqual([
      [true, true, true],
      [true, true, true],
    ]);
    // After the finish only the new DS validates: the old key is gone from the DNSKEY RRset.
    expect(validatedAfter).toEqual([
      [false, false, false],
      [true, true, true],
    ]);
  });

  test("start and finish report when the signatures served expire: the earliest RRSIG's (those kept from an earlier signing), as show does, not 14 days from the change (found in review)", async () => {
    const { c, owner, zone, id } = await signedZone();
    const earliest = (z: Zone) => new Date(Math.min(...signaturesOf(z)!.records().map((r) => readRrsig(r.rdata).expiration * 1000))).toISOString();
    const enabledExpiry = earliest(served(c, id));
    c.clock.advance(3_600_000);
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    expect(started.status).toBe(200);
    // The old key's RRSIGs over unchanged RRsets are kept: the earliest still the enable's.
    expect([started.body.signatures_expire_at, earliest(served(c, id))]).toEqual([enabledExpiry, enabledExpiry]);
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body.signatures_expire_at).toBe(enabledExpiry);
    c.clock.advance(WAIT_MS);
    const path = `${zone}/dnssec/rollover/finish`;
    const finished = await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } });
    // The new key's RRSIGs made at the start are kept.
    const startExpiry = new Date(Math.floor((c.clock.now() - WAIT_MS + VALIDITY_MS) / 1000) * 1000).toISOString();
    expect([finished.body.signatures_expire_at, earliest(served(c, id))]).toEqual([startExpiry, startExpiry]);
  });

  test("finishing before the new key can be in every cache is refused (409, the time left and from when: in the text, finish_possible_at and Retry-After), after asking for the confirmation; nothing changes", async () => {
    const { c, owner, zone, id, oldTag } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const startedAt = c.clock.now();
    expect(started.body.rollover).toEqual({
      started_at: new Date(startedAt).toISOString(),
      published_serial: (await c.send("GET", zone, owner)).body.serial,
      replace_ds_from: new Date(startedAt + 120_000).toISOString(),
      finish_possible_at: new Date(startedAt + WAIT_MS).toISOString(),
      can_finish: false,
      dnskey_ttl: 60,
      max_ttl: 60,
      propagation_delay: 60,
      ready_at: null,
      submitted_at: null,
      auto_finish_at: null,
      automatic: false,
      waiting_for: "propagation",
      waiting: `the new DNSKEY to reach caches and secondaries: the DS may change at the parent from ${new Date(startedAt + 120_000).toISOString()}`,
    });
    c.clock.advance(WAIT_MS - 61_000);
    const path = `${zone}/dnssec/rollover/finish`;
    expect((await c.send("POST", path, owner)).status).toBe(428); // the confirmation first, as disable
    const serial = (await c.send("GET", zone, owner)).body.serial;
    const early = await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } });
    expect([early.status, early.body.code]).toEqual([409, "conflict"]);
    expect(early.body.detail).toStartWith(`example.org.'s key rollover cannot finish yet: 1 min 1 s left (from ${new Date(startedAt + WAIT_MS).toISOString()}).`);
    expect(early.body.detail).toContain("(TTL 60 s)");
    expect(early.body.detail).toContain("[dns] dnssec_propagation_delay at the start, 60 s");
    // For a client to act on without reading the text (found in review): the time as a member, and Retry-After.
    expect([early.body.finish_possible_at, early.headers.get("retry-after")]).toEqual([new Date(startedAt + WAIT_MS).toISOString(), "61"]);
    expect((await c.send("GET", zone, owner)).body.serial).toBe(serial);
    expect(incomingRow(c, id)).not.toBeNull();
    expect(signersByRrset(served(c, id)).get("www.example.org. 1")).toEqual([oldTag, started.body.keys[1].key_tag]);
    expect(auditOf(c).map((e) => e.action)).toEqual(["dns.zone.dnssec.enable", "dns.zone.dnssec.rollover.start"]);
    const shown = await c.send("GET", `${zone}/dnssec`, owner);
    expect(shown.body.rollover.can_finish).toBe(false);
    c.clock.advance(61_000);
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body.rollover.can_finish).toBe(true);
  });

  test("the wait is the DNSKEY TTL + the zone's largest TTL + [dns] dnssec_propagation_delay (default an hour), TTLs as at the start: lowering one during the rollover does not shorten it", async () => {
    const { c, owner, zone } = await signedZone({}, 3600);
    expect((await c.send("PUT", `${zone}/rrsets/slow/TXT`, owner, { json: { ttl: 86_400, records: ['"cached for a day"'] } })).status).toBe(200);
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const startedAt = c.clock.now();
    expect(started.body.rollover).toMatchObject({ dnskey_ttl: 3600, max_ttl: 86_400, propagation_delay: 3600 });
    expect(started.body.rollover.replace_ds_from).toBe(new Date(startedAt + (3600 + 3600) * 1000).toISOString());
    expect(started.body.rollover.finish_possible_at).toBe(new Date(startedAt + (3600 + 86_400 + 3600) * 1000).toISOString());
    expect((await c.send("PUT", `${zone}/rrsets/slow/TXT`, owner, { json: { ttl: 60, records: ['"cached for a minute"'] } })).status).toBe(200);
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body.rollover.finish_possible_at).toBe(started.body.rollover.finish_possible_at);
    const path = `${zone}/dnssec/rollover/finish`;
    const early = await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } });
    expect(early.body.detail).toContain("cannot finish yet: 26 h left");
    expect(early.body.detail).toContain("records the old key alone signed (TTL up to 86400 s)");
  });

  test("[dns] dnssec_propagation_delay is the one at the start: a configuration changed during a rollover (a restart with another delay) does not move its times (found in review)", async () => {
    const { c, owner, zone } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    expect(started.body.rollover.propagation_delay).toBe(60);
    const kernel = { ...c.kernel, config: c.config, settings: { ...(c.config.dns as object), dnssec_propagation_delay: 7200 } } as never;
    const restarted = new DnssecService(kernel, new DnsService(kernel));
    expect(restarted.show(c.owner.organization, "example.org").rollover).toEqual(started.body.rollover);
    c.clock.advance(WAIT_MS);
    const finished = await restarted.finishRollover(operatorCaller("restarted"), c.owner.organization, "example.org");
    expect(finished.keys.map((k) => k.state)).toEqual(["active"]);
  });

  test("a TTL above the signatures' validity (14 days) counts as 14 days: no validator keeps a record past its RRSIG's expiration, and the old key's last expire within 14 days of the start (found in review)", async () => {
    const { c, owner, zone } = await signedZone();
    expect((await c.send("PUT", `${zone}/rrsets/forever/TXT`, owner, { json: { ttl: 0x7fffffff, records: ['"cached for 68 years"'] } })).status).toBe(200);
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const startedAt = c.clock.now();
    expect(started.body.rollover).toMatchObject({ dnskey_ttl: 60, max_ttl: VALIDITY_MS / 1000, propagation_delay: 60 });
    expect(started.body.rollover.finish_possible_at).toBe(new Date(startedAt + (60 + VALIDITY_MS / 1000 + 60) * 1000).toISOString());
  });

  test("cancel (confirmed) drops the new key, its DNSKEY and signatures: the old DS validates alone again; audited", async () => {
    const { c, owner, zone, id, oldDs, oldTag } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const newTag = started.body.keys[1].key_tag as number;
    const newDs = started.body.keys[1].ds as string;
    const dns = dnsServiceOf(c.kernel as never);
    served(c, id);
    expect(dns.signer.holdsKey(id)).toBe(true);
    const path = `${zone}/dnssec/rollover`;
    expect((await c.send("DELETE", path, owner)).status).toBe(428);
    const cancelled = await c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "DELETE", path, owner) } });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ key_tag: oldTag, ds: [oldDs], keys: [expect.objectContaining({ key_tag: oldTag, state: "active" })], rollover: null });
    expect(incomingRow(c, id)).toBeNull();
    const after = served(c, id);
    expect(dnskeysOf(after)).toEqual([started.body.dnskey[0]]);
    for (const [at, tags] of signersByRrset(after)) expect([at, tags]).toEqual([at, [oldTag]]);
    expect(auditOf(c).at(-1)).toEqual({
      action: "dns.zone.dnssec.rollover.cancel",
      reason: expect.stringMatching(new RegExp(`^example\\.org\\.: key rollover cancelled: new key tag ${newTag} removed \\(its DNSKEY and signatures\\), key tag ${oldTag} signs alone; serial \\d+$`)),
    });
    // None left to finish or cancel.
    for (const [method, to] of [["POST", `${path}/finish`], ["DELETE", path]] as const) {
      const none = await c.send(method, to, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, method, to, owner) } });
      expect([none.status, none.body.detail]).toEqual([404, "example.org. has no key rollover in progress."]);
    }
    const verdicts = [await validates(after, oldDs), await validates(after, newDs)];
    if (verdicts[0] === null) return;
    expect(verdicts).toEqual([
      [true, true, true],
      [false, false, false],
    ]);
  });

  test("refused: a rollover of an unsigned zone, or a second one (409); an editor may start one, as enable, but neither finish nor cancel it, as disable (403)", async () => {
    const { c, owner, zones, zone } = await signedZone();
    expect((await c.send("POST", zones, owner, { json: { name: "example.net", ns: ["ns1.example.org."] } })).status).toBe(200);
    const unsigned = await c.send("POST", `${zones}/example.net/dnssec/rollover`, owner);
    expect([unsigned.status, unsigned.body.detail]).toEqual([409, "example.net. is not signed: there is no key to roll over (citadel dns zone dnssec enable signs it)."]);
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const started = await c.send("POST", `${zone}/dnssec/rollover`, editor.token);
    expect(started.status).toBe(200);
    const again = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    expect([again.status, again.body.detail]).toEqual([409, `example.org. has a key rollover in progress (new key tag ${started.body.keys[1].key_tag}): finish or cancel it first.`]);
    c.clock.advance(WAIT_MS);
    expect((await c.send("POST", `${zone}/dnssec/rollover/finish`, editor.token)).status).toBe(403);
    expect((await c.send("DELETE", `${zone}/dnssec/rollover`, editor.token)).status).toBe(403);
    expect((await c.send("GET", `${zone}/dnssec`, owner)).body.rollover).not.toBeNull();
  });

  test("the new key is stored only as a keyring envelope bound to its row; after the finish the zone's key row holds it, bound to that row; no key material in the audit log", async () => {
    const { c, owner, zone, id } = await signedZone();
    await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const keyring = c.kernel.seal.keyring();
    const incoming = incomingRow(c, id)!;
    const pkcs8 = keyring.decrypt("dns/dnssec", `dns/dnssec/${id}/incoming`, incoming.private_key);
    expect(() => keyring.decrypt("dns/dnssec", `dns/dnssec/${id}`, incoming.private_key)).toThrow();
    const scalar = Buffer.from(pkcs8).subarray(36, 68); // the private scalar in a P-256 PKCS#8
    expect(Buffer.from(incoming.private_key).includes(scalar)).toBe(false);
    expect(signingKeyFrom(pkcs8).dnskey).toEqual(new Uint8Array(incoming.dnskey));
    c.clock.advance(WAIT_MS);
    const path = `${zone}/dnssec/rollover/finish`;
    expect((await c.send("POST", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "POST", path, owner) } })).status).toBe(200);
    const row = keyRow(c, id)!;
    expect(new Uint8Array(row.dnskey)).toEqual(new Uint8Array(incoming.dnskey));
    expect(keyring.decrypt("dns/dnssec", `dns/dnssec/${id}`, row.private_key)).toEqual(pkcs8);
    expect(JSON.stringify(auditOf(c)) + JSON.stringify(c.log.lines)).not.toContain(scalar.toString("base64"));
    expect(JSON.stringify(auditOf(c))).not.toContain(scalar.toString("hex"));
  });

  test("sealed during a rollover (a restart before the unseal): both keys' stored signatures are served, and delv validates with either DS; the unseal signs with both again", async () => {
    const { c, owner, zone, id, oldDs, oldTag } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const newTag = started.body.keys[1].key_tag as number;
    const unsealed = signaturesOf(served(c, id))!;
    c.kernel.seal.seal();
    const sealed = served(c, id);
    expect(signaturesOf(sealed)!.unavailable).toBe(false);
    expect(signaturesOf(sealed)!.records().map((r) => r.rdata)).toEqual(unsealed.records().map((r) => r.rdata));
    expect(dnskeysOf(sealed)).toEqual(started.body.dnskey);
    for (const [at, tags] of signersByRrset(sealed)) expect([at, tags]).toEqual([at, [oldTag, newTag]]);
    expect(c.log.lines.find((l) => String(l.msg).includes("served with the signatures stored at its serial"))).toMatchObject({ zone: "example.org.", keys: 2 });
    const verdicts = [await validates(sealed, oldDs), await validates(sealed, started.body.keys[1].ds)];

    c.kernel.seal.unsealWithKey(c.kernel.rootKey);
    const dns = dnsServiceOf(c.kernel as never);
    c.clock.advance(VALIDITY_MS - REFRESH_BEFORE_MS);
    expect(dns.signer.refreshDue(c.clock.now()).map((z) => z.id)).toEqual([id]);
    await dns.bumpSerial(id); // the periodic re-signing
    const resigned = served(c, id);
    expect(dns.signer.refreshDue(c.clock.now())).toEqual([]);
    for (const r of signaturesOf(resigned)!.records()) expect(readRrsig(r.rdata).expiration * 1000).toBe(Math.floor((c.clock.now() + VALIDITY_MS) / 1000) * 1000);
    for (const [at, tags] of signersByRrset(resigned)) expect([at, tags]).toEqual([at, [oldTag, newTag]]);

    if (verdicts[0] === null) return;
    expect(verdicts).toEqual([
      [true, true, true],
      [true, true, true],
    ]);
  });

  test("a change during a rollover signs only what it changed, with both keys: each key's RRSIGs over unchanged RRsets are kept", async () => {
    const { c, owner, zone, id, oldTag } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const newTag = started.body.keys[1].key_tag as number;
    const bytes = (z: Zone) => new Map(signaturesOf(z)!.records().map((r) => [`${nameToText(r.name)} ${readRrsig(r.rdata).typeCovered} ${readRrsig(r.rdata).keyTag}`, Buffer.from(r.rdata).toString("hex")]));
    const before = bytes(served(c, id));
    c.clock.advance(60_000);
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { ttl: 60, records: ["192.0.2.11"] } })).status).toBe(200);
    const after = bytes(served(c, id));
    const signedAgain = [...after].filter(([at, rdata]) => before.get(at) !== rdata).map(([at]) => at).sort();
    expect(signedAgain).toEqual([`example.org. 6 ${oldTag}`, `example.org. 6 ${newTag}`, `www.example.org. 1 ${oldTag}`, `www.example.org. 1 ${newTag}`].sort());
    expect(after.size).toBe(before.size);
  });

  test("a DO answer with two RRSIGs per RRset that does not fit the client's UDP size is truncated (TC), never sent with one of them; every RRset of an answer carries both", async () => {
    const { c, owner, zone, id, oldTag } = await signedZone();
    const newTag = (await c.send("POST", `${zone}/dnssec/rollover`, owner)).body.keys[1].key_tag as number;
    const during = served(c, id);
    const small = ask(during, "big.example.org.", RRType.TXT, 512);
    expect(small.size).toBeLessThanOrEqual(512);
    expect(small.reply.tc).toBe(true);
    expect(rrsetsWithSigners(small.reply.answer)).toEqual([{ rrset: `big.example.org. ${RRType.TXT}`, signers: [] }]);
    const full = ask(during, "big.example.org.", RRType.TXT);
    expect([full.reply.tc, rrsetsWithSigners(full.reply.answer)]).toEqual([false, [{ rrset: `big.example.org. ${RRType.TXT}`, signers: [oldTag, newTag] }]]);
    // A negative answer: the SOA and both NSEC records, each with both RRSIGs.
    const negative = ask(during, "nothere.example.org.", RRType.A).reply;
    expect(negative.rcode).toBe(3);
    const proofs = rrsetsWithSigners(negative.authority);
    expect(proofs.length).toBeGreaterThanOrEqual(2);
    for (const p of proofs) expect(p.signers).toEqual([oldTag, newTag]);
    // Answers that do not fit 512 octets with both signatures are truncated rather than half-signed.
    for (const [qname, qtype] of [["www.example.org.", RRType.A], ["example.org.", TYPE_DNSKEY], ["nothere.example.org.", RRType.A], ["example.org.", RRType.NS]] as const) {
      const { reply } = ask(during, qname, qtype, 512);
      for (const section of [reply.answer, reply.authority]) {
        for (const p of rrsetsWithSigners(section)) expect([qname, qtype, reply.tc || p.signers.length === 2]).toEqual([qname, qtype, true]);
      }
    }
  });

  test("a restart in the middle of a rollover: the rollover is stored, new services serve both keys from the database and finish it", async () => {
    const { c, owner, zone, id, oldDs, oldTag } = await signedZone();
    const started = await c.send("POST", `${zone}/dnssec/rollover`, owner);
    const newTag = started.body.keys[1].key_tag as number;
    // What the next process has: the same database and configuration, nothing in memory.
    const kernel = { ...c.kernel, config: c.config, settings: c.config.dns } as never;
    const dns = new DnsService(kernel);
    const dnssec = new DnssecService(kernel, dns);
    const shown = dnssec.show(c.owner.organization, "example.org");
    expect(shown.keys).toEqual(started.body.keys);
    expect(shown.rollover).toEqual(started.body.rollover);
    const zoneAfterRestart = dns.zone(id)!;
    for (const [at, tags] of signersByRrset(zoneAfterRestart)) expect([at, tags]).toEqual([at, [oldTag, newTag]]);
    const verdicts = [await validates(zoneAfterRestart, oldDs), await validates(zoneAfterRestart, started.body.keys[1].ds)];
    c.clock.advance(WAIT_MS);
    const finished = await dnssec.finishRollover(operatorCaller("restarted"), c.owner.organization, "example.org");
    expect(finished.keys.map((k) => [k.key_tag, k.state])).toEqual([[newTag, "active"]]);
    for (const [at, tags] of signersByRrset(dns.zone(id)!)) expect([at, tags]).toEqual([at, [newTag]]);
    if (verdicts[0] === null) return;
    expect(verdicts).toEqual([
      [true, true, true],
      [true, true, true],
    ]);
  });

  test("disable during a rollover removes both keys (audited with both tags); the zone is served unsigned", async () => {
    const { c, owner, zone, id, oldTag } = await signedZone();
    const newTag = (await c.send("POST", `${zone}/dnssec/rollover`, owner)).body.keys[1].key_tag as number;
    const path = `${zone}/dnssec`;
    const disabled = await c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": await confirmationToken(c, "DELETE", path, owner) } });
    expect([disabled.status, disabled.body.enabled, disabled.body.keys, disabled.body.rollover]).toEqual([200, false, [], null]);
    expect([keyRow(c, id), incomingRow(c, id)]).toEqual([null, null]);
    expect(signaturesOf(served(c, id))).toBeUndefined();
    expect(auditOf(c).at(-1)!.reason).toMatch(new RegExp(`^example\\.org\\.: key tags ${oldTag} and ${newTag} \\(the new key of a rollover in progress\\) removed; serial \\d+$`));
    // Signed again later: a new key, no rollover left over.
    const again = await c.send("POST", path, owner);
    expect([again.body.keys.length, again.body.rollover]).toEqual([1, null]);
  });

  const organizationOf = (c: App) => ({ kind: "organization" as const, id: c.owner.organization }) as never;
  test.each([
    ["the zone is deleted", true, async (c: App, owner: string, zone: string) => {
      const ask = await c.send("DELETE", zone, owner);
      expect((await c.send("DELETE", zone, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    }],
    ["its organization is deleted", true, (c: App) => void dnsOrganizationDeletion(dnsServiceOf(c.kernel as never)).deleted(c.kernel.store.db, c.owner.organization, c.clock.now())],
    ["its organization's erasure is requested", false, (c: App) => dnsSubjects(dnsServiceOf(c.kernel as never)).softDelete!(c.kernel.store.db, organizationOf(c), c.clock.now())],
    ["its organization is erased", true, (c: App) => void dnsSubjects(dnsServiceOf(c.kernel as never)).erase!(c.kernel.store.db, organizationOf(c), c.clock.now())],
  ])("during a rollover, both decrypted keys leave memory when %s (and both rows go when it is gone for good)", async (_, rowsGo, end: (c: App, owner: string, zone: string) => unknown) => {
    const { c, owner, zone, id, dns } = await signedZone();
    await c.send("POST", `${zone}/dnssec/rollover`, owner);
    served(c, id);
    expect(dns.signer.holdsKey(id)).toBe(true);
    await end(c, owner, zone);
    expect(dns.signer.holdsKey(id)).toBe(false);
    if (rowsGo) expect([keyRow(c, id), incomingRow(c, id)]).toEqual([null, null]);
  });
});

test("durationText rounds up to the second and names the two largest units", () => {
  expect([durationText(1), durationText(60_000), durationText(61_000), durationText(3_600_000), durationText(93_600_000 + 59_001)]).toEqual(["1 s", "1 min", "1 min 1 s", "1 h", "26 h 1 min"]);
});

test("durationText never names a time left shorter than it is: with hours shown, the minutes round up (found in review: 3,659 s was \"1 h\")", () => {
  expect([durationText(3_659_000), durationText(3_600_001), durationText(7_199_000), durationText(7_140_000), durationText(3_599_001)]).toEqual(["1 h 1 min", "1 h 1 min", "2 h", "1 h 59 min", "1 h"]);
});
