/**
 * DNSSEC signing (dnssec.ts) and the DNSSEC records of answers (dnssec-answer.ts): canonical
 * order and the RRSIG wire format against the RFCs and an independent verification
 * (WebCrypto), then a signed zone checked by real validators — BIND's dnssec-verify on what an
 * AXFR carries, and delv asking the listener: positive, NXDOMAIN, NODATA, wildcard, CNAME,
 * delegations with and without DS, DNSKEY.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../../src/log.ts";
import { dnssecAnswer } from "../../../plugins/dns/dnssec-answer.ts";
import {
  compareNames,
  dnskeyText,
  dsOf,
  dsText,
  generateSigningKey,
  keyTag,
  nsecRdata,
  readRrsig,
  signaturesOf,
  signingKeyFrom,
  signZone,
  TYPE_DNSKEY,
  TYPE_NSEC,
  TYPE_RRSIG,
  REFRESH_BEFORE_MS,
  VALIDITY_MS,
  type SigningKey,
} from "../../../plugins/dns/dnssec.ts";
import { decodeMessage, type Message } from "../../../plugins/dns/message.ts";
import { lowerName, nameFromWire, nameToText, nameToWire, parseName, type Name } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { answerAll, answerQuery, allowAll, startDnsServer, ZoneTable } from "../../../plugins/dns/server.ts";
import { rrToText, Zone, type RR } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { buildQuery, freeUdpTcpPort } from "../../helpers/reference-dns.ts";
import { requireTool } from "../../helpers/tools.ts";

const name = (text: string) => parseName(text, null);
const ORIGIN = name("example.test.");

const ZONE_TEXT = `
@ 3600 IN SOA ns1 hostmaster 2026010100 3600 900 1209600 300
@ 3600 IN NS ns1
@ 3600 IN NS NS2.Other.test.
ns1 300 A 192.0.2.1
www 300 A 192.0.2.10
www 300 AAAA 2001:db8::10
alias 300 CNAME www
mail 300 MX 10 MAIL.Example.test.
mail 300 A 192.0.2.25
*.wild 300 TXT "from the wildcard"
a.b.c 300 A 192.0.2.3
big 300 TXT "${"a".repeat(200)}" "${"b".repeat(200)}"
insecure 300 NS ns.insecure
ns.insecure 300 A 192.0.2.53
secure 300 NS ns.other.test.
secure 300 DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
`;

function unsignedZone(): Zone {
  return Zone.build(ORIGIN, parseZoneFile(ZONE_TEXT, { origin: ORIGIN, defaultTtl: 300 }).map(({ name, ttl, type, rdata }) => ({ name, ttl, type, rdata })));
}

const key: SigningKey = signingKeyFrom(generateSigningKey().pkcs8);
const signedAt = Date.now();
const zone = signZone(unsignedZone(), [key], signedAt);
const zones = new ZoneTable();
zones.set(zone);

function ask(qname: string, qtype: number, dnssecOk = true, payload = 1232): Message {
  const reply = answerQuery(buildQuery({ name: name(qname), type: qtype, edns: { payload, dnssecOk } }), "127.0.0.1", "udp", zones, allowAll);
  return decodeMessage(reply!);
}

/** Does the NSEC cover `x` (its owner before it, its next name after it, in canonical order)? */
const covers = (nsec: { name: Name; rdata: Uint8Array }, x: Name) => compareNames(nsec.name, x) < 0 && compareNames(x, nameFromWire(nsec.rdata, 0).name) < 0;
const owners = (records: Message["answer"]) => records.map((r) => `${nameToText(r.name)} ${r.type}`);
const covered = (rrsig: { rdata: Uint8Array }) => readRrsig(rrsig.rdata).typeCovered;

describe("canonical form and record data", () => {
  test("names sort in canonical order (RFC 4034 section 6.1's example)", () => {
    const ordered = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", "\\001.z.example.", "*.z.example.", "\\200.z.example."].map(name);
    const shuffled = [...ordered].reverse();
    shuffled.push(shuffled.splice(3, 1)[0]!);
    expect(shuffled.sort(compareNames).map(nameToText)).toEqual(ordered.map(nameToText));
  });

  test("the NSEC type bitmap is RFC 4034 section 4.3's", () => {
    // alfa.example.com. NSEC host.example.com. A MX RRSIG NSEC TYPE1234
    const rdata = nsecRdata(name("host.example.com."), [RRType.A, RRType.MX, TYPE_RRSIG, TYPE_NSEC, 1234]);
    const bitmap = Buffer.from(rdata.subarray(nameToWire(name("host.example.com.")).length)).toString("hex");
    expect(bitmap).toBe("0006400100000003041b000000000000000000000000000000000000000000000000000020");
  });

  test("the key tag and DS are what BIND's dnssec-dsfromkey makes of the DNSKEY", async () => {
    const tool = requireTool("dnssec-dsfromkey", "bind9-utils");
    if (tool === null) return;
    const dir = mkdtempSync(join(tmpdir(), "citadel-dnssec-ds-"));
    try {
      writeFileSync(join(dir, "keys"), `example.test. 3600 IN DNSKEY ${dnskeyText(key.dnskey)}\n`);
      const run = Bun.spawnSync([tool, "-2", "-f", join(dir, "keys"), "example.test."]);
      expect(run.stdout.toString().trim()).toBe(`example.test. IN DS ${dsText(dsOf(ORIGIN, key.dnskey))}`);
      expect(run.stdout.toString()).toContain(`DS ${keyTag(key.dnskey)} 13 2 `);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an RRSIG is RFC 4034 section 3.1's wire format, and WebCrypto verifies it over the signed data of section 3.1.8.1", async () => {
    const sigs = signaturesOf(zone)!;
    const mail = name("mail.example.test.");
    const [rrsig] = sigs.rrsigs(mail, RRType.MX);
    const fields = readRrsig(rrsig!.rdata);
    expect(fields).toMatchObject({ typeCovered: RRType.MX, labels: 3, originalTtl: 300, keyTag: keyTag(key.dnskey) });
    expect(rrsig!.rdata[2]).toBe(13); // the algorithm
    expect(nameToText(fields.signer)).toBe("example.test.");
    expect(fields.inception).toBe(Math.floor((signedAt - 3600_000) / 1000));
    expect(fields.expiration).toBe(Math.floor((signedAt + VALIDITY_MS) / 1000));
    expect(fields.signature.length).toBe(64); // r and s, 32 octets each (RFC 6605)

    // Made here from the RFC, apart from the signer: the RRSIG data without the signature, then
    // the MX record with its owner and its target in lower case (section 6.2), the original TTL.
    const head = rrsig!.rdata.subarray(0, rrsig!.rdata.length - 64);
    const target = nameToWire(lowerName(name("MAIL.Example.test.")));
    const owner = nameToWire(mail);
    const record = Buffer.concat([owner, Uint8Array.of(0, RRType.MX, 0, 1, 0, 0, 1, 44, 0, 2 + target.length, 0, 10), target]);
    const signed = Buffer.concat([head, record]);
    const publicKey = await crypto.subtle.importKey("raw", Uint8Array.of(4, ...key.dnskey.subarray(4)), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    expect(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, publicKey, new Uint8Array(fields.signature), signed)).toBe(true);
    signed[signed.length - 1]! ^= 1;
    expect(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, publicKey, new Uint8Array(fields.signature), signed)).toBe(false);
  });

  test("a wildcard's RRSIG counts the labels without the asterisk", () => {
    const [rrsig] = signaturesOf(zone)!.rrsigs(name("*.wild.example.test."), RRType.TXT);
    expect(readRrsig(rrsig!.rdata).labels).toBe(3);
  });

  test("glue and a delegation's NS are not signed, its DS is; names below a cut have no NSEC", () => {
    const sigs = signaturesOf(zone)!;
    expect(sigs.rrsigs(name("insecure.example.test."), RRType.NS)).toEqual([]);
    expect(sigs.rrsigs(name("ns.insecure.example.test."), RRType.A)).toEqual([]);
    expect(sigs.chain.matching(name("ns.insecure.example.test."))).toBeNull();
    expect(sigs.rrsigs(name("secure.example.test."), RRType.DS)).toHaveLength(1);
    expect(sigs.chain.matching(name("insecure.example.test."))).not.toBeNull();
  });

  test("records the zone stores of the signer's types are left out; a stored DNSKEY stays beside the signer's", () => {
    const stored = Zone.build(ORIGIN, [
      ...unsignedZone().records(),
      { name: name("www.example.test."), ttl: 300, type: TYPE_NSEC, rdata: nsecRdata(name("zz.example.test."), [RRType.A]) },
      { name: ORIGIN, ttl: 3600, type: TYPE_DNSKEY, rdata: generateSigningKey().dnskey },
    ]);
    const signed = signZone(stored, [key], signedAt);
    const nsecs = signed.records().filter((r) => r.type === TYPE_NSEC && nameToText(r.name) === "www.example.test.");
    expect(nsecs).toHaveLength(1);
    expect(nameToText(nameFromWire(nsecs[0]!.rdata, 0).name)).not.toBe("zz.example.test.");
    expect(signed.records().filter((r) => r.type === TYPE_DNSKEY)).toHaveLength(2);
  });
});

describe("answers from a signed zone", () => {
  test("without DO nothing is added; with DO the answer's RRSIG follows it", () => {
    const plain = ask("www.example.test.", RRType.A, false);
    expect(owners(plain.answer)).toEqual(["www.example.test. 1"]);
    const signed = ask("www.example.test.", RRType.A);
    expect(owners(signed.answer)).toEqual(["www.example.test. 1", `www.example.test. ${TYPE_RRSIG}`]);
    expect(signed.edns?.dnssecOk).toBe(true);
  });

  test("without DO, ANY leaves the NSEC out; RRSIG asked for by type is answered", () => {
    const any = answerQuery(buildQuery({ name: name("www.example.test."), type: 255 }), "127.0.0.1", "tcp", zones, allowAll);
    expect(decodeMessage(any!).answer.map((r) => r.type)).not.toContain(TYPE_NSEC);
    const rrsigs = ask("www.example.test.", TYPE_RRSIG, false);
    expect(rrsigs.answer.map(covered).sort((a, b) => a - b)).toEqual([RRType.A, RRType.AAAA, TYPE_NSEC].sort((a, b) => a - b));
  });

  test("RRSIG with DO: the name's signatures where it has some; NXDOMAIN or NODATA with their proofs elsewhere, a referral at a cut", () => {
    const own = ask("www.example.test.", TYPE_RRSIG);
    expect([own.rcode, own.aa, own.answer.map(covered).sort((a, b) => a - b)]).toEqual([0, true, [RRType.A, RRType.AAAA, TYPE_NSEC].sort((a, b) => a - b)]);
    const nothere = ask("nothere.example.test.", TYPE_RRSIG);
    expect([nothere.rcode, nothere.answer]).toEqual([3, []]);
    expect(nothere.authority.some((r) => r.type === TYPE_NSEC && covers(r, name("nothere.example.test.")))).toBe(true);
    const empty = ask("c.example.test.", TYPE_RRSIG); // an empty non-terminal
    expect([empty.rcode, empty.answer.length, empty.authority.some((r) => r.type === TYPE_NSEC)]).toEqual([0, 0, true]);
    for (const qname of ["insecure.example.test.", "host.insecure.example.test."]) {
      const referral = ask(qname, TYPE_RRSIG);
      expect([qname, referral.aa, referral.answer.length, owners(referral.authority)]).toEqual([qname, false, 0, [`insecure.example.test. ${RRType.NS}`, `insecure.example.test. ${TYPE_NSEC}`, `insecure.example.test. ${TYPE_RRSIG}`]]);
    }
  });

  test("NXDOMAIN: the SOA and its RRSIG, the NSEC covering the name and the one covering the wildcard", () => {
    const reply = ask("nope.c.example.test.", RRType.A);
    expect(reply.rcode).toBe(3);
    const nsecs = reply.authority.filter((r) => r.type === TYPE_NSEC);
    // c.example.test exists (an empty non-terminal above a.b.c): its wildcard is the one to deny.
    expect(nsecs.some((r) => covers(r, name("nope.c.example.test.")))).toBe(true);
    expect(nsecs.some((r) => covers(r, name("*.c.example.test.")))).toBe(true);
    expect(reply.authority.filter((r) => r.type === TYPE_RRSIG).map(covered).sort((a, b) => a - b)).toEqual([RRType.SOA, ...nsecs.map(() => TYPE_NSEC)].sort((a, b) => a - b));
  });

  test("NODATA: the name's NSEC; a referral without DS: the cut's NSEC; with DS: the DS and its RRSIG", () => {
    const nodata = ask("www.example.test.", RRType.TXT);
    expect(owners(nodata.authority.filter((r) => r.type === TYPE_NSEC))).toEqual([`www.example.test. ${TYPE_NSEC}`]);
    const insecure = ask("host.insecure.example.test.", RRType.A);
    expect(insecure.aa).toBe(false);
    expect(owners(insecure.authority)).toEqual([`insecure.example.test. ${RRType.NS}`, `insecure.example.test. ${TYPE_NSEC}`, `insecure.example.test. ${TYPE_RRSIG}`]);
    expect(owners(insecure.additional)).toEqual([`ns.insecure.example.test. ${RRType.A}`]); // glue, unsigned
    const secure = ask("host.secure.example.test.", RRType.A);
    expect(owners(secure.authority)).toEqual([`secure.example.test. ${RRType.NS}`, `secure.example.test. ${RRType.DS}`, `secure.example.test. ${TYPE_RRSIG}`]);
  });

  test("a wildcard expansion: the RRSIG with the name asked as owner and the wildcard's label count, and the NSEC proving no closer name", () => {
    const reply = ask("anything.wild.example.test.", RRType.TXT);
    expect(owners(reply.answer)).toEqual([`anything.wild.example.test. ${RRType.TXT}`, `anything.wild.example.test. ${TYPE_RRSIG}`]);
    expect(readRrsig(reply.answer[1]!.rdata).labels).toBe(3);
    expect(reply.authority.filter((r) => r.type === TYPE_NSEC)).toHaveLength(1);
  });

  test("a signed answer that does not fit the client's UDP size is truncated (TC), never sent without its RRSIG", () => {
    const reply = answerQuery(buildQuery({ name: name("big.example.test."), type: RRType.TXT, edns: { payload: 512, dnssecOk: true } }), "127.0.0.1", "udp", zones, allowAll)!;
    const small = decodeMessage(reply);
    expect(reply.length).toBeLessThanOrEqual(512);
    expect(small.tc).toBe(true);
    expect(owners(small.answer)).toEqual([`big.example.test. ${RRType.TXT}`]); // the RRset fits, its RRSIG does not: TC
    const full = ask("big.example.test.", RRType.TXT);
    expect([full.tc, owners(full.answer)]).toEqual([false, [`big.example.test. ${RRType.TXT}`, `big.example.test. ${TYPE_RRSIG}`]]);
    // Without DO the same RRset fits 512 octets, untruncated.
    expect(decodeMessage(answerQuery(buildQuery({ name: name("big.example.test."), type: RRType.TXT, edns: { payload: 512 } }), "127.0.0.1", "udp", zones, allowAll)!).tc).toBe(false);
  });

  test("the answer cache keeps DO and plain answers apart", async () => {
    const { CachingAnswerer } = await import("../../../plugins/dns/server.ts");
    const answerer = new CachingAnswerer({ zones, gate: allowAll });
    const withDo = buildQuery({ name: name("www.example.test."), type: RRType.A, edns: { payload: 1232, dnssecOk: true } });
    const without = buildQuery({ name: name("www.example.test."), type: RRType.A, edns: { payload: 1232 } });
    for (let i = 0; i < 2; i++) {
      expect(decodeMessage(answerer.answer(withDo, "127.0.0.1", "udp")!).answer).toHaveLength(2);
      expect(decodeMessage(answerer.answer(without, "127.0.0.1", "udp")!).answer).toHaveLength(1);
    }
  });

  test("dnssecAnswer leaves an unsigned answer's sections alone without DO", () => {
    const answer = zone.lookup(name("www.example.test."), RRType.A);
    expect(dnssecAnswer(answer, name("www.example.test."), RRType.A, signaturesOf(zone)!, false)).toBe(answer);
  });
});

// ---------------------------------------------------------------------------------------------
// Real validators

/** A delv trust anchor: the zone's DS, as a registrar would publish it (the digest quoted). */
function anchorFile(signer: SigningKey): string {
  const [tag, algorithm, digestType, digest] = dsText(dsOf(ORIGIN, signer.dnskey)).split(" ");
  return `trust-anchors { example.test. static-ds ${tag} ${algorithm} ${digestType} "${digest}"; };\n`;
}

describe("validators", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-dnssec-"));
  const anchors = join(dir, "anchors.conf");
  let port = 0;
  let stop: (() => Promise<void>) | null = null;

  beforeAll(async () => {
    writeFileSync(anchors, anchorFile(key));
    for (let attempt = 0; stop === null; attempt++) {
      port = await freeUdpTcpPort();
      try {
        const server = await startDnsServer({ udp: [{ address: "127.0.0.1", port }], tcp: [{ address: "127.0.0.1", port }], zones, log: silentLogger });
        stop = server.stop;
      } catch (e) {
        if (attempt >= 3) throw e;
      }
    }
  });

  afterAll(async () => {
    await stop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  test("dnssec-verify finds the zone an AXFR carries fully signed", () => {
    const tool = requireTool("dnssec-verify", "bind9-utils");
    if (tool === null) return;
    const policy = { allowed: () => true };
    const messages = answerAll(buildQuery({ name: ORIGIN, type: 252 }), "127.0.0.1", "tcp", { zones, gate: allowAll, transfers: policy });
    const records = messages.flatMap((m) => decodeMessage(m).answer).slice(0, -1); // the closing SOA
    expect(records.some((r) => r.type === TYPE_RRSIG) && records.some((r) => r.type === TYPE_NSEC) && records.some((r) => r.type === TYPE_DNSKEY)).toBe(true);
    const file = join(dir, "axfr.zone");
    writeFileSync(file, records.map((r) => rrToText(r as RR).replace(/^(\S+) (\d+) /, "$1 $2 IN ")).join("\n") + "\n");
    // -z: the one key is a CSK (flags 257), which signs everything: no ZSK apart.
    const run = Bun.spawnSync([tool, "-z", "-o", "example.test.", file]);
    expect(run.stderr.toString() + run.stdout.toString()).toContain("Zone fully signed");
    expect(run.exitCode).toBe(0);
  });

  /** delv's verdict and answer; null without delv. Spawned, not spawnSync: the server it asks runs in this process. */
  const delv = async (qname: string, qtype: string, anchorPath = anchors): Promise<string | null> => {
    const tool = requireTool("delv", "bind9-dnsutils");
    if (tool === null) return null;
    const run = Bun.spawn([tool, "@127.0.0.1", "-p", String(port), "-a", anchorPath, "+root=example.test.", qname, qtype], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const [out, err] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    return out + err;
  };

  test.each([
    ["www.example.test.", "A", "; fully validated", "192.0.2.10"],
    ["example.test.", "DNSKEY", "; fully validated", dnskeyText(key.dnskey).split(" ")[3]!.slice(0, 20)],
    ["alias.example.test.", "A", "; fully validated", "192.0.2.10"],
    ["x.wild.example.test.", "TXT", "; fully validated", "from the wildcard"],
    ["secure.example.test.", "DS", "; fully validated", "12345 13 2"],
    ["nope.example.test.", "A", "; negative response, fully validated", "NXDOMAIN"],
    ["nope.c.example.test.", "A", "; negative response, fully validated", "NXDOMAIN"],
    ["www.example.test.", "TXT", "; negative response, fully validated", "NXRRSET"],
    ["x.wild.example.test.", "A", "; negative response, fully validated", "NXRRSET"],
    ["c.example.test.", "A", "; negative response, fully validated", "NXRRSET"],
    ["insecure.example.test.", "DS", "; negative response, fully validated", "NXRRSET"],
    ["nothere.example.test.", "RRSIG", "; negative response, fully validated", "NXDOMAIN"],
    ["c.example.test.", "RRSIG", "; negative response, fully validated", "NXRRSET"],
  ])("delv validates %s %s", async (qname, qtype, verdict, shows) => {
    const out = await delv(qname, qtype);
    if (out === null) return;
    expect(out).toContain(verdict);
    expect(out.replace(/\s+/g, " ")).toContain(shows);
  });

  test("a change signs only what it changed: unchanged RRsets keep their RRSIG bytes; dnssec-verify and delv still validate the zone", async () => {
    const changedText = ZONE_TEXT.replace("www 300 A 192.0.2.10", "www 300 A 192.0.2.11").replace("2026010100", "2026010101") + "new 300 A 192.0.2.99\n";
    const changed = Zone.build(ORIGIN, parseZoneFile(changedText, { origin: ORIGIN, defaultTtl: 300 }).map(({ name, ttl, type, rdata }) => ({ name, ttl, type, rdata })));
    const later = signedAt + 60_000; // validators check inception against the real clock
    const resigned = signZone(changed, [key], later, signaturesOf(zone));
    const before = new Map(signaturesOf(zone)!.records().map((r) => [`${nameToText(r.name)} ${covered(r)}`, Buffer.from(r.rdata).toString("hex")]));
    const after = new Map(signaturesOf(resigned)!.records().map((r) => [`${nameToText(r.name)} ${covered(r)}`, Buffer.from(r.rdata).toString("hex")]));
    const signedAgain = [...after].filter(([at, rdata]) => before.get(at) !== rdata).map(([at]) => at).sort();
    // The SOA (its serial), the changed A, the new name's A and NSEC, and the NSEC before it (its next name).
    expect(signedAgain).toEqual(
      ["example.test. 6", "www.example.test. 1", "new.example.test. 1", "new.example.test. 47", "mail.example.test. 47"].sort(),
    );
    expect(after.get("alias.example.test. 5")).toBe(before.get("alias.example.test. 5"));
    // The earliest expiration (whole seconds, as RRSIGs carry it): an RRSIG kept from the first signing.
    expect(signaturesOf(resigned)!.expiresAt).toBe(Math.floor((signedAt + VALIDITY_MS) / 1000) * 1000);

    // A signature with a week or less left is made again, not kept.
    const weekOn = signZone(changed, [key], signedAt + VALIDITY_MS - REFRESH_BEFORE_MS, signaturesOf(resigned));
    const kept = signaturesOf(weekOn)!.records().filter((r) => readRrsig(r.rdata).expiration * 1000 <= signedAt + VALIDITY_MS);
    expect(kept).toEqual([]);

    const verify = requireTool("dnssec-verify", "bind9-utils");
    if (verify !== null) {
      const file = join(dir, "resigned.zone");
      const records = [...resigned.records(), ...signaturesOf(resigned)!.records()];
      writeFileSync(file, records.map((r) => rrToText(r).replace(/^(\S+) (\d+) /, "$1 $2 IN ")).join("\n") + "\n");
      const run = Bun.spawnSync([verify, "-z", "-o", "example.test.", file]);
      expect(run.stderr.toString() + run.stdout.toString()).toContain("Zone fully signed");
    }
    zones.set(resigned);
    try {
      for (const [qname, verdict, shows] of [["www.example.test.", "; fully validated", "192.0.2.11"], ["alias.example.test.", "; fully validated", "192.0.2.11"], ["new.example.test.", "; fully validated", "192.0.2.99"], ["newer.example.test.", "; negative response, fully validated", "NXDOMAIN"]]) {
        const out = await delv(qname!, "A");
        if (out === null) break;
        expect([qname, out.includes(verdict!), out.includes(shows!)]).toEqual([qname, true, true]);
      }
    } finally {
      zones.set(zone);
    }
  });

  test("an RRSIG is kept for the key that made it, not for another key with the same tag (a rollover's key made again after a cancel)", () => {
    const other = signingKeyFrom(generateSigningKey().pkcs8);
    const sameTag: SigningKey = { ...other, keyTag: key.keyTag };
    const resigned = signZone(unsignedZone(), [sameTag], signedAt + 60_000, signaturesOf(zone));
    const before = new Set(signaturesOf(zone)!.records().map((r) => Buffer.from(r.rdata).toString("hex")));
    expect(signaturesOf(resigned)!.records().filter((r) => before.has(Buffer.from(r.rdata).toString("hex")))).toEqual([]);
    // Beside it, the key that made them keeps its own but the DNSKEY RRset's (which now holds both keys); the other key signs every RRset.
    const both = signZone(unsignedZone(), [key, other], signedAt + 60_000, signaturesOf(zone));
    const kept = signaturesOf(both)!.records().filter((r) => before.has(Buffer.from(r.rdata).toString("hex")));
    const signedBefore = signaturesOf(zone)!.records();
    expect(kept.map(covered).sort()).toEqual(signedBefore.map(covered).filter((t) => t !== TYPE_DNSKEY).sort());
    expect(signaturesOf(both)!.records().filter((r) => readRrsig(r.rdata).keyTag === other.keyTag)).toHaveLength(signedBefore.length);
  });

  test("delv fails a zone whose signatures do not match its key (the check is real)", async () => {
    const other = signingKeyFrom(generateSigningKey().pkcs8);
    writeFileSync(join(dir, "wrong.conf"), anchorFile(other));
    const out = await delv("www.example.test.", "A", join(dir, "wrong.conf"));
    if (out === null) return;
    expect(out).not.toContain("fully validated");
    expect(out).toContain("resolution failed");
  });
});

