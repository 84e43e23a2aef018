/**
 * NSEC3 (nsec3.ts, the chain in dnssec.ts, the proofs in dnssec-answer.ts): the hash against
 * RFC 5155 Appendix A's example zone (iterations 12, salt aabbccdd), base32hex against RFC 4648,
 * the chain against the one BIND's dnssec-signzone makes of the same zone, the proofs of each
 * kind of answer (RFC 5155 section 7.2) read record by record, then real validators: BIND's
 * dnssec-verify on what an AXFR carries (it checks the NSEC3 chain; one record taken out fails
 * it) and an IXFR, and delv on positive, NXDOMAIN, NODATA, wildcard, wildcard NODATA, empty non-terminal,
 * DS and no DS at delegations, CNAME and the NSEC3 owner names themselves — after a change,
 * after a switch from NSEC and back, with two keys (a rollover), from stored signatures (sealed)
 * and with a salt.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  dsOf,
  dsText,
  generateSigningKey,
  readRrsig,
  signaturesOf,
  signingKeyFrom,
  signZone,
  TYPE_DNSKEY,
  TYPE_NSEC,
  TYPE_RRSIG,
  withStoredSignatures,
  type Denial,
  type SigningKey,
} from "../../../plugins/dns/dnssec.ts";
import { base32hex, hashedLabel, Nsec3Chain, Nsec3CollisionError, nsec3Hash, nsec3paramRdata, nsec3Rdata, readNsec3, RFC9276_PARAMS, TYPE_NSEC3, TYPE_NSEC3PARAM, type Nsec3Params } from "../../../plugins/dns/nsec3.ts";
import { decodeMessage, encodeResponse, type Message, type ResourceRecord, type Response } from "../../../plugins/dns/message.ts";
import { nameToText, parseName, type Name } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { allowAll, answerQuery, CachingAnswerer, ZoneTable } from "../../../plugins/dns/server.ts";
import { rrToText, Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { axfrRecords, delv, dnssecVerify, listenerFor } from "../../helpers/dnssec-validators.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";
import { requireTool } from "../../helpers/tools.ts";

const name = (text: string) => parseName(text, null);
const ORIGIN = name("example.test.");
const NSEC3: Denial = { mode: "nsec3", params: RFC9276_PARAMS };

const ZONE_TEXT = `
@ 3600 IN SOA ns1 hostmaster 2026010100 3600 900 1209600 300
@ 3600 IN NS ns1
ns1 300 A 192.0.2.1
www 300 A 192.0.2.10
www 300 AAAA 2001:db8::10
alias 300 CNAME www
mail 300 MX 10 mail
mail 300 A 192.0.2.25
*.wild 300 TXT "from the wildcard"
a.b.c 300 A 192.0.2.3
big 300 TXT "${"a".repeat(200)}" "${"b".repeat(200)}"
insecure 300 NS ns.insecure
ns.insecure 300 A 192.0.2.53
secure 300 NS ns.other.test.
secure 300 DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
`;

const unsigned = (text = ZONE_TEXT) => Zone.build(ORIGIN, parseZoneFile(text, { origin: ORIGIN, defaultTtl: 300 }).map(({ name, ttl, type, rdata }) => ({ name, ttl, type, rdata })));

const key: SigningKey = signingKeyFrom(generateSigningKey().pkcs8);
const signedAt = Date.now();
const zone = signZone(unsigned(), [key], signedAt, undefined, NSEC3);
const zones = new ZoneTable();
zones.set(zone);
const DS = (signer: SigningKey = key) => `example.test. IN DS ${dsText(dsOf(ORIGIN, signer.dnskey))}`;

function ask(qname: string, qtype: number, { dnssecOk = true, payload = 1232, transport = "udp" as "udp" | "tcp", table = zones } = {}): Message {
  return decodeMessage(answerQuery(buildQuery({ name: name(qname), type: qtype, edns: { payload, dnssecOk } }), "127.0.0.1", transport, table, allowAll)!);
}

/** The hashed owner label of an NSEC3 record. */
const ownerLabel = (r: { name: Name }): string => new TextDecoder().decode(r.name[0]);
/** Does the NSEC3 cover `x` (its hash strictly between the owner's and the next's, the chain wrapping)? */
function covers(nsec3: { name: Name; rdata: Uint8Array }, x: string): boolean {
  const [owner, next, hash] = [ownerLabel(nsec3), readNsec3(nsec3.rdata).next, hashedLabel(name(x), RFC9276_PARAMS)];
  return owner < next ? owner < hash && hash < next : hash > owner || hash < next;
}
const matches = (nsec3: { name: Name }, x: string) => ownerLabel(nsec3) === hashedLabel(name(x), RFC9276_PARAMS);
const nsec3sIn = (records: Message["authority"]) => records.filter((r) => r.type === TYPE_NSEC3);
const covered = (rrsig: { rdata: Uint8Array }) => readRrsig(rrsig.rdata).typeCovered;
const owners = (records: Message["answer"]) => records.map((r) => `${nameToText(r.name)} ${r.type}`);
const TYPE_NAMES: Record<number, string> = { 1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 28: "AAAA", 43: "DS", 46: "RRSIG", 48: "DNSKEY", 51: "NSEC3PARAM" };

describe("the hash and the records", () => {
  test("the hashes of RFC 5155 Appendix A's example zone (SHA-1, 12 iterations, salt aabbccdd)", () => {
    const params: Nsec3Params = { salt: Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd), iterations: 12 };
    const appendixA: Array<[string, string]> = [
      ["example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"],
      ["a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"],
      ["ai.example.", "gjeqe526plbf1g8mklp59enfd789njgi"],
      ["ns1.example.", "2t7b4g4vsa5smi47k61mv5bv1a22bojr"],
      ["ns2.example.", "q04jkcevqvmu85r014c7dkba38o0ji5r"],
      ["w.example.", "k8udemvp1j2f7eg6jebps17vp3n8i58h"],
      ["*.w.example.", "r53bq7cc2uvmubfu5ocmm6pers9tk9en"],
      ["x.w.example.", "b4um86eghhds6nea196smvmlo4ors995"],
      ["y.w.example.", "ji6neoaepv8b5o6k4ev33abha8ht9fgc"],
      ["x.y.w.example.", "2vptu5timamqttgl4luu9kg21e0aor3s"],
      ["xx.example.", "t644ebqk9bibcna874givr6joj62mlhv"],
      // Appendix B's: a name that does not exist, the wildcard it would match, and an NSEC3 owner name hashed in turn.
      ["c.x.w.example.", "0va5bpr2ou0vk0lbqeeljri88laipsfh"],
      ["*.x.w.example.", "92pqneegtaue7pjatc3l3qnk738c6v5m"],
      ["2t7b4g4vsa5smi47k61mv5bv1a22bojr.example.", "kohar7mbb8dc2ce8a9qvl8hon4k53uhi"],
    ];
    expect(appendixA.map(([n]) => [n, hashedLabel(name(n), params)])).toEqual(appendixA);
    // The canonical form is hashed: case does not matter.
    expect(hashedLabel(name("X.W.Example."), params)).toBe("b4um86eghhds6nea196smvmlo4ors995");
    // RFC 9276's parameters hash once, with no salt: SHA-1 of the name's wire form.
    expect(Buffer.from(nsec3Hash(name("example."), RFC9276_PARAMS)).toString("hex")).toBe(new Bun.CryptoHasher("sha1").update(Uint8Array.of(7, ...Buffer.from("example"), 0)).digest("hex"));
  });

  test("base32hex is RFC 4648's (section 10's vectors, without padding, lower case) and keeps the order of the octets", () => {
    const vectors = ["", "f", "fo", "foo", "foob", "fooba", "foobar"].map((s) => base32hex(Buffer.from(s)));
    expect(vectors).toEqual(["", "co", "cpng", "cpnmu", "cpnmuog", "cpnmuoj1", "cpnmuoj1e8"]);
    const hashes = Array.from({ length: 200 }, (_, i) => nsec3Hash(name(`n${i}.example.`), RFC9276_PARAMS));
    const byOctets = [...hashes].sort((a, b) => Buffer.compare(a, b)).map(base32hex);
    expect(hashes.map(base32hex).sort()).toEqual(byOctets);
  });

  test("NSEC3 and NSEC3PARAM data are RFC 5155 section 3.2's and 4.2's layout", () => {
    const params: Nsec3Params = { salt: Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd), iterations: 12 };
    const next = nsec3Hash(name("ns1.example."), params);
    // The apex NSEC3 of Appendix A (with flags 0: Citadel has no opt-out): 1 0 12 aabbccdd 2t7b4g4v... NS SOA MX RRSIG DNSKEY NSEC3PARAM
    const rdata = nsec3Rdata(params, next, [RRType.NS, RRType.SOA, RRType.MX, TYPE_RRSIG, TYPE_DNSKEY, TYPE_NSEC3PARAM]);
    expect(Buffer.from(rdata).toString("hex")).toBe(`0100000c04aabbccdd14${Buffer.from(next).toString("hex")}0007220100000002` + "90");
    expect(readNsec3(rdata)).toEqual({ algorithm: 1, flags: 0, iterations: 12, salt: params.salt, next: "2t7b4g4vsa5smi47k61mv5bv1a22bojr", types: [2, 6, 15, 46, 48, 51] });
    expect(Buffer.from(nsec3paramRdata(params)).toString("hex")).toBe("0100000c04aabbccdd");
    expect(Buffer.from(nsec3paramRdata(RFC9276_PARAMS)).toString("hex")).toBe("0100000000");
    // An empty non-terminal's NSEC3 has no type bit maps at all.
    expect(readNsec3(nsec3Rdata(RFC9276_PARAMS, next, [])).types).toEqual([]);
  });

  test("two names with the same hash make no chain: the collision is refused, naming them", () => {
    const names = [
      { name: name("www.example.test."), types: new Set([RRType.A]) },
      { name: name("WWW.example.test."), types: new Set([RRType.AAAA]) }, // the same hash: names are hashed lowered
    ];
    expect(() => new Nsec3Chain(ORIGIN, RFC9276_PARAMS, names, 300)).toThrow(Nsec3CollisionError);
    expect(() => new Nsec3Chain(ORIGIN, RFC9276_PARAMS, names, 300)).toThrow("www.example.test. and www.example.test. have the same hash");
  });
});

describe("the chain", () => {
  const chain = signaturesOf(zone)!.transferRecords().filter((r) => r.type === TYPE_NSEC3);

  test("one NSEC3 per name that exists — empty non-terminals and both delegations, nothing below a cut — with the types at the name", () => {
    const expected: Record<string, number[]> = {
      "example.test.": [RRType.NS, RRType.SOA, TYPE_RRSIG, TYPE_DNSKEY, TYPE_NSEC3PARAM],
      "ns1.example.test.": [RRType.A, TYPE_RRSIG],
      "www.example.test.": [RRType.A, RRType.AAAA, TYPE_RRSIG],
      "alias.example.test.": [RRType.CNAME, TYPE_RRSIG],
      "mail.example.test.": [RRType.A, RRType.MX, TYPE_RRSIG],
      "*.wild.example.test.": [RRType.TXT, TYPE_RRSIG],
      "wild.example.test.": [], // empty non-terminals
      "c.example.test.": [],
      "b.c.example.test.": [],
      "a.b.c.example.test.": [RRType.A, TYPE_RRSIG],
      "big.example.test.": [RRType.TXT, TYPE_RRSIG],
      "insecure.example.test.": [RRType.NS], // unsigned: its NS is the child's, so no RRSIG there
      "secure.example.test.": [RRType.NS, RRType.DS, TYPE_RRSIG],
    };
    const byLabel = new Map(chain.map((r) => [ownerLabel(r), readNsec3(r.rdata).types]));
    expect(chain).toHaveLength(Object.keys(expected).length);
    for (const [n, types] of Object.entries(expected)) expect([n, byLabel.get(hashedLabel(name(n), RFC9276_PARAMS))]).toEqual([n, types]);
    expect(chain.every((r) => nameToText(r.name.slice(1)) === "example.test." && r.ttl === 300)).toBe(true); // RFC 9077: min(SOA TTL, MINIMUM)
  });

  test("in hash order, each NSEC3 naming the next one's hash, the last the first's; RFC 9276's parameters; NSEC3PARAM at the apex, signed", () => {
    const labels = chain.map(ownerLabel);
    expect(labels).toEqual([...labels].sort());
    expect(chain.map((r) => readNsec3(r.rdata).next)).toEqual([...labels.slice(1), labels[0]!]);
    expect(chain.every((r) => { const f = readNsec3(r.rdata); return f.algorithm === 1 && f.flags === 0 && f.iterations === 0 && f.salt.length === 0; })).toBe(true);
    const param = zone.records().filter((r) => r.type === TYPE_NSEC3PARAM);
    expect(param.map((r) => [nameToText(r.name), r.ttl, Buffer.from(r.rdata).toString("hex")])).toEqual([["example.test.", 300, "0100000000"]]);
    expect(signaturesOf(zone)!.rrsigs(ORIGIN, TYPE_NSEC3PARAM)).toHaveLength(1);
    expect(chain.every((r) => signaturesOf(zone)!.rrsigs(r.name, TYPE_NSEC3).length === 1)).toBe(true);
    // Apart from the zone's names and its NSEC chain, which it has none of.
    expect(zone.records().some((r) => r.type === TYPE_NSEC3 || r.type === TYPE_NSEC)).toBe(false);
  });

  test("is the chain BIND's dnssec-signzone makes of the same zone (-3 - -H 0): owners, next hashes and types", () => {
    const keygen = requireTool("dnssec-keygen", "bind9-utils");
    const signzone = requireTool("dnssec-signzone", "bind9-utils");
    if (keygen === null || signzone === null) return;
    const dir = mkdtempSync(join(tmpdir(), "citadel-nsec3-signzone-"));
    try {
      expect(Bun.spawnSync([keygen, "-q", "-K", dir, "-a", "ECDSAP256SHA256", "-f", "KSK", "example.test."]).exitCode).toBe(0);
      const keyFile = readdirSync(dir).find((f) => f.endsWith(".key"))!;
      const dnskey = readFileSync(join(dir, keyFile), "utf8").split("\n").filter((l) => l.includes("DNSKEY"));
      const lines = unsigned().records().map((r) => rrToText(r).replace(/^(\S+) (\d+) /, "$1 $2 IN "));
      writeFileSync(join(dir, "zone"), [...lines, ...dnskey].join("\n") + "\n");
      // -d: its dsset file goes there too, not into the working directory.
      const run = Bun.spawnSync([signzone, "-q", "-K", dir, "-d", dir, "-3", "-", "-H", "0", "-z", "-o", "example.test.", "-f", join(dir, "signed"), "-O", "full", join(dir, "zone"), join(dir, keyFile)]);
      expect(run.exitCode).toBe(0);
      const theirs = readFileSync(join(dir, "signed"), "utf8")
        .split("\n")
        .filter((l) => /\sIN NSEC3\s/.test(l))
        .map((l) => {
          const [owner, , , , , , , , next, ...types] = l.trim().split(/\s+/);
          return `${owner!.split(".")[0]!.toLowerCase()} ${next!.toLowerCase()} ${types.join(" ")}`;
        })
        .sort();
      const ours = chain.map((r) => { const f = readNsec3(r.rdata); return `${ownerLabel(r)} ${f.next} ${f.types.map((t) => TYPE_NAMES[t]).join(" ")}`; }).sort();
      expect(ours).toEqual(theirs);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("answers with DO (RFC 5155 section 7.2)", () => {
  test("NXDOMAIN: the SOA, the NSEC3 matching the closest encloser, the one covering the next closer name and the one covering the wildcard, each signed", () => {
    for (const [qname, encloser, nextCloser] of [
      ["nope.example.test.", "example.test.", "nope.example.test."],
      ["x.nope.c.example.test.", "c.example.test.", "nope.c.example.test."], // the closest encloser an empty non-terminal
    ]) {
      const reply = ask(qname!, RRType.A);
      expect([reply.rcode, reply.aa, reply.answer]).toEqual([3, true, []]);
      const nsec3s = nsec3sIn(reply.authority);
      expect(nsec3s.some((r) => matches(r, encloser!))).toBe(true);
      expect(nsec3s.some((r) => covers(r, nextCloser!))).toBe(true);
      expect(nsec3s.some((r) => covers(r, `*.${encloser}`))).toBe(true);
      expect(nsec3s.length).toBe(new Set(nsec3s.map(ownerLabel)).size);
      const signedTypes = reply.authority.filter((r) => r.type === TYPE_RRSIG).map(covered);
      expect(signedTypes.sort((a, b) => a - b)).toEqual([RRType.SOA, ...nsec3s.map(() => TYPE_NSEC3)]);
    }
  });

  test("an NSEC3 that serves two parts of a proof is sent once", () => {
    // A name whose next closer name and the wildcard at the apex fall in the same NSEC3's span.
    const sigs = signaturesOf(zone)!;
    const wildcardCover = sigs.chain.covering(name("*.example.test."));
    const qname = Array.from({ length: 1000 }, (_, i) => `n${i}.example.test.`).find((n) => sigs.chain.covering(name(n)) === wildcardCover)!;
    const nsec3s = nsec3sIn(ask(qname, RRType.A).authority);
    expect(nsec3s.map(ownerLabel).sort()).toEqual([ownerLabel(wildcardCover), hashedLabel(ORIGIN, RFC9276_PARAMS)].sort());
  });

  test("NODATA: the name's NSEC3 alone — an empty non-terminal's (no types), a delegation's for DS (no DS bit)", () => {
    for (const [qname, qtype, types] of [
      ["www.example.test.", RRType.TXT, [RRType.A, RRType.AAAA, TYPE_RRSIG]],
      ["c.example.test.", RRType.A, []],
      ["insecure.example.test.", RRType.DS, [RRType.NS]],
      ["www.example.test.", TYPE_NSEC3, [RRType.A, RRType.AAAA, TYPE_RRSIG]],
    ] as const) {
      const reply = ask(qname, qtype);
      const nsec3s = nsec3sIn(reply.authority);
      expect([qname, reply.rcode, reply.answer.length, nsec3s.length, matches(nsec3s[0]!, qname), readNsec3(nsec3s[0]!.rdata).types]).toEqual([qname, 0, 0, 1, true, [...types]]);
    }
  });

  test("a wildcard answer: the wildcard's RRSIG under the name asked, and the NSEC3 covering the next closer name", () => {
    const reply = ask("a.b.wild.example.test.", RRType.TXT);
    expect(owners(reply.answer)).toEqual([`a.b.wild.example.test. ${RRType.TXT}`, `a.b.wild.example.test. ${TYPE_RRSIG}`]);
    expect(readRrsig(reply.answer[1]!.rdata).labels).toBe(3);
    const nsec3s = nsec3sIn(reply.authority);
    expect([nsec3s.length, covers(nsec3s[0]!, "b.wild.example.test.")]).toEqual([1, true]);
  });

  test("a wildcard NODATA: the closest encloser proof and the wildcard's NSEC3", () => {
    const reply = ask("x.wild.example.test.", RRType.A);
    const nsec3s = nsec3sIn(reply.authority);
    expect([reply.rcode, reply.answer.length, nsec3s.length]).toEqual([0, 0, 3]);
    expect(nsec3s.some((r) => matches(r, "wild.example.test."))).toBe(true);
    expect(nsec3s.some((r) => covers(r, "x.wild.example.test."))).toBe(true);
    expect(nsec3s.some((r) => matches(r, "*.wild.example.test.") && readNsec3(r.rdata).types.includes(RRType.TXT))).toBe(true);
  });

  test("a referral to an unsigned delegation: its NSEC3 (NS, no DS); to a signed one: the DS and its RRSIG, no NSEC3", () => {
    const insecure = ask("host.insecure.example.test.", RRType.A);
    expect([insecure.aa, owners(insecure.authority)]).toEqual([false, [`insecure.example.test. ${RRType.NS}`, `${hashedLabel(name("insecure.example.test."), RFC9276_PARAMS)}.example.test. ${TYPE_NSEC3}`, `${hashedLabel(name("insecure.example.test."), RFC9276_PARAMS)}.example.test. ${TYPE_RRSIG}`]]);
    expect(readNsec3(insecure.authority[1]!.rdata).types).toEqual([RRType.NS]);
    expect(owners(insecure.additional)).toEqual([`ns.insecure.example.test. ${RRType.A}`]);
    const secure = ask("host.secure.example.test.", RRType.A);
    expect(owners(secure.authority)).toEqual([`secure.example.test. ${RRType.NS}`, `secure.example.test. ${RRType.DS}`, `secure.example.test. ${TYPE_RRSIG}`]);
  });

  test("an NSEC3's owner is no name of the zone: NXDOMAIN with its proof, for any type (NSEC3 and RRSIG too)", () => {
    const owner = `${hashedLabel(name("www.example.test."), RFC9276_PARAMS)}.example.test.`;
    for (const qtype of [RRType.A, TYPE_NSEC3, TYPE_RRSIG]) {
      const reply = ask(owner, qtype);
      expect([qtype, reply.rcode, reply.answer]).toEqual([qtype, 3, []]);
      const nsec3s = nsec3sIn(reply.authority);
      expect(nsec3s.some((r) => matches(r, "example.test.")) && nsec3s.some((r) => covers(r, owner)) && nsec3s.some((r) => covers(r, "*.example.test."))).toBe(true);
    }
    expect(ask(owner, RRType.A, { dnssecOk: false }).rcode).toBe(3);
  });

  test("NSEC3PARAM is answered at the apex with its RRSIG; without DO no NSEC3 is added, and ANY keeps the NSEC3PARAM", () => {
    expect(owners(ask("example.test.", TYPE_NSEC3PARAM).answer)).toEqual([`example.test. ${TYPE_NSEC3PARAM}`, `example.test. ${TYPE_RRSIG}`]);
    const plain = ask("nope.example.test.", RRType.A, { dnssecOk: false });
    expect([plain.rcode, owners(plain.authority)]).toEqual([3, [`example.test. ${RRType.SOA}`]]);
    expect(ask("example.test.", 255, { dnssecOk: false, transport: "tcp" }).answer.map((r) => r.type)).toContain(TYPE_NSEC3PARAM);
  });

  test("a proof that does not fit the client's UDP size is truncated (TC), never sent short; the answer cache serves what the full path makes", () => {
    const small = ask("nope.example.test.", RRType.A, { payload: 512 });
    expect([small.tc, nsec3sIn(small.authority).length < 3]).toEqual([true, true]);
    const full = ask("nope.example.test.", RRType.A);
    expect([full.tc, nsec3sIn(full.authority).length]).toEqual([false, 3]);
    const answerer = new CachingAnswerer({ zones, gate: allowAll });
    const query = buildQuery({ name: name("nope.example.test."), type: RRType.A, edns: { payload: 1232, dnssecOk: true } });
    const first = answerer.answer(query, "127.0.0.1", "udp")!;
    const cached = answerer.answer(query, "127.0.0.1", "udp")!;
    expect(Buffer.from(cached).equals(Buffer.from(first))).toBe(true);
    expect(nsec3sIn(decodeMessage(cached).authority)).toHaveLength(3);
  });
});

// ---------------------------------------------------------------------------------------------
// Real validators

/** dnssec-verify's verdict on a signed zone as an AXFR of it carries it; null without the tool. */
function verifyTransfer(signedZone: Zone): { code: number; out: string } | null {
  const table = new ZoneTable();
  table.set(signedZone);
  return dnssecVerify(axfrRecords(table, "example.test."), "example.test.");
}

/**
 * A UDP listener (as delv asks) answering from `table` as the server does, but with only the
 * authority records `keep` keeps: a server whose proofs lack a part.
 */
async function tamperingListener(table: ZoneTable, keep: (r: ResourceRecord) => boolean): Promise<{ port: number; stop(): void }> {
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s, packet, port, address) {
        const reply = answerQuery(new Uint8Array(packet), address, "udp", table, allowAll);
        if (reply === null) return;
        const m = decodeMessage(reply);
        const response: Response = {
          ...{ id: m.id, opcode: m.opcode, rcode: m.rcode, aa: m.aa, tc: m.tc, rd: m.rd, ra: false },
          ...{ question: m.questions[0] ?? null, answer: m.answer, authority: m.authority.filter(keep), additional: m.additional },
          edns: m.edns ? { udpPayloadSize: 1232, dnssecOk: m.edns.dnssecOk } : null,
        };
        s.send(encodeResponse(response, 65_535), port, address);
      },
    },
  });
  return { port: socket.port, stop: () => socket.close() };
}

describe("validators", () => {
  let listener: { port: number; stop(): Promise<void> };
  beforeAll(async () => {
    listener = await listenerFor(zones);
  });
  afterAll(async () => {
    await listener.stop();
  });

  /** delv's output on `qname qtype` from the listener, trusting `ds`; null without delv. */
  const delvOn = (qname: string, qtype: string, ds = DS()) => delv(listener.port, ds, qname, qtype);

  test("dnssec-verify finds the zone an AXFR carries fully signed, with its NSEC3 chain; without one of its NSEC3 records it does not", () => {
    const records = axfrRecords(zones, "example.test.");
    expect(records.filter((r) => r.type === TYPE_NSEC3)).toHaveLength(13);
    expect(records.filter((r) => r.type === TYPE_NSEC3PARAM)).toHaveLength(1);
    const verdict = dnssecVerify(records, "example.test.");
    if (verdict === null) return;
    expect([verdict.code, verdict.out]).toEqual([0, expect.stringContaining("Zone fully signed")]);
    const dropped = records.findIndex((r) => r.type === TYPE_NSEC3);
    const broken = dnssecVerify([...records.slice(0, dropped), ...records.slice(dropped + 1)], "example.test.");
    expect(broken!.code).not.toBe(0);
    expect(broken!.out).not.toContain("Zone fully signed");
  });

  test("an IXFR from a secondary behind carries the zone whole, the NSEC3PARAM and the chain with it (kdig, dnssec-verify)", async () => {
    const kdig = requireTool("kdig", "knot-dnsutils");
    if (kdig === null) return;
    const own = await listenerFor(zones, { allowed: () => true });
    try {
      const run = Bun.spawn([kdig, "@127.0.0.1", "-p", String(own.port), "+tcp", "+noall", "+answer", "IXFR=2026010000", "example.test."], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
      const [out] = await Promise.all([new Response(run.stdout).text(), run.exited]);
      const lines = out.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(";"));
      expect([lines.filter((l) => /\sIN\s+NSEC3PARAM\s/.test(l)).length, lines.filter((l) => /\sIN\s+NSEC3\s/.test(l)).length]).toEqual([1, 13]);
      const verdict = dnssecVerify(lines.slice(0, -1), "example.test.");
      if (verdict !== null) expect(verdict.out).toContain("Zone fully signed");
    } finally {
      await own.stop();
    }
  });

  test.each([
    ["www.example.test.", "A", "; fully validated", "192.0.2.10"],
    ["example.test.", "DNSKEY", "; fully validated", "257 3 13"],
    ["example.test.", "NSEC3PARAM", "; fully validated", "1 0 0 -"],
    ["alias.example.test.", "A", "; fully validated", "192.0.2.10"],
    ["x.wild.example.test.", "TXT", "; fully validated", "from the wildcard"],
    ["a.b.wild.example.test.", "TXT", "; fully validated", "from the wildcard"],
    ["secure.example.test.", "DS", "; fully validated", "12345 13 2"],
    ["nope.example.test.", "A", "; negative response, fully validated", "NXDOMAIN"],
    ["x.nope.c.example.test.", "A", "; negative response, fully validated", "NXDOMAIN"],
    ["www.example.test.", "TXT", "; negative response, fully validated", "NXRRSET"],
    ["x.wild.example.test.", "A", "; negative response, fully validated", "NXRRSET"],
    ["c.example.test.", "A", "; negative response, fully validated", "NXRRSET"],
    ["b.c.example.test.", "TXT", "; negative response, fully validated", "NXRRSET"],
    ["insecure.example.test.", "DS", "; negative response, fully validated", "NXRRSET"],
    ["nothere.example.test.", "RRSIG", "; negative response, fully validated", "NXDOMAIN"],
    [`${hashedLabel(name("www.example.test."), RFC9276_PARAMS)}.example.test.`, "A", "; negative response, fully validated", "NXDOMAIN"],
    [`${hashedLabel(name("www.example.test."), RFC9276_PARAMS)}.example.test.`, "NSEC3", "; negative response, fully validated", "NXDOMAIN"],
  ])("delv validates %s %s", async (qname, qtype, verdict, shows) => {
    const out = await delvOn(qname, qtype);
    if (out === null) return;
    expect(out).toContain(verdict);
    expect(out.replace(/\s+/g, " ")).toContain(shows);
  });

  test("delv fails an NXDOMAIN whose proof lacks a part — the closest encloser's NSEC3, the next closer's, or the wildcard's (the check is real)", async () => {
    const sigs = signaturesOf(zone)!;
    // A name whose three NSEC3 records are three different ones.
    const qname = Array.from({ length: 200 }, (_, i) => `gone${i}.example.test.`).find((n) => {
      const parts = [sigs.chain.matching(ORIGIN), sigs.chain.covering(name(n)), sigs.chain.covering(name("*.example.test."))].map((r) => ownerLabel(r!));
      return new Set(parts).size === 3;
    })!;
    const whole = await delvOn(qname, "A");
    if (whole === null) return;
    expect(whole).toContain("; negative response, fully validated");
    for (const part of [sigs.chain.matching(ORIGIN)!, sigs.chain.covering(name(qname)), sigs.chain.covering(name("*.example.test."))]) {
      const gone = ownerLabel(part);
      const tampered = await tamperingListener(zones, (r) => ownerLabel(r) !== gone);
      try {
        const out = await delv(tampered.port, DS(), qname, "A");
        expect([gone, out!.includes("fully validated")]).toEqual([gone, false]);
      } finally {
        tampered.stop();
      }
    }
  });

  /** delv's verdicts on `questions` asked of a listener serving `served`, trusting `ds`: [qname, validated as expected]. */
  async function validates(served: Zone, ds: string, questions: ReadonlyArray<readonly [string, string, string]>): Promise<Array<[string, boolean]> | null> {
    const table = new ZoneTable();
    table.set(served);
    const own = await listenerFor(table);
    try {
      const verdicts: Array<[string, boolean]> = [];
      for (const [qname, qtype, verdict] of questions) {
        const out = await delv(own.port, ds, qname, qtype);
        if (out === null) return null;
        verdicts.push([`${qname} ${qtype}`, out.includes(verdict)]);
      }
      return verdicts;
    } finally {
      await own.stop();
    }
  }
  const NEGATIVE = "; negative response, fully validated";
  const PROOFS = [
    ["nope.example.test.", "A", NEGATIVE],
    ["x.wild.example.test.", "A", NEGATIVE],
    ["c.example.test.", "A", NEGATIVE],
    ["a.b.wild.example.test.", "TXT", "; fully validated"],
  ] as const;
  const allTrue = (verdicts: Array<[string, boolean]>) => verdicts.map(([q]): [string, boolean] => [q, true]);
  /** The RRSIGs of a signed zone by "owner type", as data. */
  const rrsigBytes = (served: Zone) => new Map(signaturesOf(served)!.records().map((r) => [`${nameToText(r.name)} ${covered(r)}`, Buffer.from(r.rdata).toString("hex")]));

  test("a change signs only what it changed: the SOA, the changed RRsets, and the NSEC3 records whose next hash or types changed; dnssec-verify and delv validate", async () => {
    const changedText = ZONE_TEXT.replace("www 300 A 192.0.2.10", "www 300 A 192.0.2.11").replace("2026010100", "2026010101") + 'new 300 A 192.0.2.99\nmail 300 TXT "v=spf1 -all"\n';
    const resigned = signZone(unsigned(changedText), [key], signedAt + 60_000, signaturesOf(zone), NSEC3);
    const [before, after] = [rrsigBytes(zone), rrsigBytes(resigned)];
    const signedAgain = [...after].filter(([at, rdata]) => before.get(at) !== rdata).map(([at]) => at).sort();
    const labels = signaturesOf(zone)!.transferRecords().filter((r) => r.type === TYPE_NSEC3).map(ownerLabel);
    const added = hashedLabel(name("new.example.test."), RFC9276_PARAMS);
    const before_ = labels.filter((l) => l < added).at(-1) ?? labels.at(-1)!; // its next hash is the new name's now
    const nsec3 = (label: string) => `${label}.example.test. ${TYPE_NSEC3}`;
    const expected = new Set([
      `example.test. ${RRType.SOA}`,
      `www.example.test. ${RRType.A}`,
      `new.example.test. ${RRType.A}`,
      `mail.example.test. ${RRType.TXT}`,
      nsec3(added),
      nsec3(before_),
      nsec3(hashedLabel(name("mail.example.test."), RFC9276_PARAMS)), // TXT came into its types
    ]);
    expect(signedAgain).toEqual([...expected].sort());
    // The others are kept as they were (www's data changed, not its types).
    const untouched = labels.map(nsec3).filter((at) => !expected.has(at));
    expect(untouched.length).toBe(labels.length - 2);
    expect(untouched.filter((at) => after.get(at) !== before.get(at))).toEqual([]);
    const verdict = verifyTransfer(resigned);
    if (verdict !== null) expect(verdict.out).toContain("Zone fully signed");
    const verdicts = await validates(resigned, DS(), [...PROOFS, ["new.example.test.", "A", "; fully validated"], ["newer.example.test.", "A", NEGATIVE], ["mail.example.test.", "TXT", "; fully validated"]]);
    if (verdicts !== null) expect(verdicts).toEqual(allTrue(verdicts));
  });

  test("a switch from NSEC to NSEC3 and back keeps the RRSIGs of the zone's data, signs the new chain, and validates either way", async () => {
    const nsecZone = signZone(unsigned(), [key], signedAt);
    const switched = signZone(unsigned(), [key], signedAt + 60_000, signaturesOf(nsecZone), NSEC3);
    const back = signZone(unsigned(), [key], signedAt + 120_000, signaturesOf(switched));
    const chainTypes = new Set([TYPE_NSEC, TYPE_NSEC3, TYPE_NSEC3PARAM]);
    for (const [from, to] of [[nsecZone, switched], [switched, back]] as const) {
      const [was, now] = [rrsigBytes(from), rrsigBytes(to)];
      const data = [...now].filter(([at]) => !chainTypes.has(Number(at.split(" ")[1])));
      expect(data.length).toBeGreaterThan(10);
      expect(data.filter(([at, rdata]) => was.get(at) !== rdata)).toEqual([]);
    }
    expect(switched.records().some((r) => r.type === TYPE_NSEC)).toBe(false);
    expect(signaturesOf(switched)!.records().some((r) => covered(r) === TYPE_NSEC)).toBe(false);
    expect(back.records().some((r) => r.type === TYPE_NSEC3PARAM)).toBe(false);
    expect(signaturesOf(back)!.transferRecords().some((r) => r.type === TYPE_NSEC3 || covered(r) === TYPE_NSEC3)).toBe(false);
    for (const served of [switched, back]) {
      const verdict = verifyTransfer(served);
      if (verdict !== null) expect([verdict.code, verdict.out.includes("Zone fully signed")]).toEqual([0, true]);
      const verdicts = await validates(served, DS(), PROOFS);
      if (verdicts !== null) expect(verdicts).toEqual(allTrue(verdicts));
    }
  });

  test("during a rollover (two keys) every NSEC3 carries both RRSIGs: dnssec-verify, and delv with either key's DS", async () => {
    const incoming = signingKeyFrom(generateSigningKey().pkcs8);
    const both = signZone(unsigned(), [key, incoming], signedAt + 60_000, signaturesOf(zone), NSEC3);
    const sigs = signaturesOf(both)!;
    expect(sigs.chain.mode === "nsec3" && sigs.chain.records().every((r) => sigs.rrsigs(r.name, TYPE_NSEC3).map((s) => readRrsig(s.rdata).keyTag).join() === `${key.keyTag},${incoming.keyTag}`)).toBe(true);
    const verdict = verifyTransfer(both);
    if (verdict !== null) expect(verdict.out).toContain("Zone fully signed");
    for (const ds of [DS(key), DS(incoming)]) {
      const verdicts = await validates(both, ds, PROOFS);
      if (verdicts !== null) expect(verdicts).toEqual(allTrue(verdicts));
    }
  });

  test("sealed: the zone served from its stored RRSIGs has the same NSEC3 chain, and validates; with the other denial they do not sign it", async () => {
    const stored = signaturesOf(zone)!.records();
    const served = withStoredSignatures(unsigned(), [key.dnskey], stored, NSEC3)!;
    expect(signaturesOf(served)!.transferRecords().map((r) => Buffer.from(r.rdata).toString("hex"))).toEqual(signaturesOf(zone)!.transferRecords().map((r) => Buffer.from(r.rdata).toString("hex")));
    expect(withStoredSignatures(unsigned(), [key.dnskey], stored)).toBeNull(); // NSEC: no RRSIG stored for its records
    const verdicts = await validates(served, DS(), PROOFS);
    if (verdicts !== null) expect(verdicts).toEqual(allTrue(verdicts));
  });

  test("with a salt: the NSEC3PARAM and every NSEC3 carry it, and the zone validates", async () => {
    const salted: Denial = { mode: "nsec3", params: { salt: Uint8Array.of(0xaa, 0xbb, 0xcc, 0xdd), iterations: 0 } };
    const served = signZone(unsigned(), [key], signedAt, undefined, salted);
    expect(served.records().filter((r) => r.type === TYPE_NSEC3PARAM).map((r) => Buffer.from(r.rdata).toString("hex"))).toEqual(["0100000004aabbccdd"]);
    const chain = signaturesOf(served)!.transferRecords().filter((r) => r.type === TYPE_NSEC3);
    expect(chain.every((r) => Buffer.from(readNsec3(r.rdata).salt).toString("hex") === "aabbccdd")).toBe(true);
    expect(chain.map(ownerLabel)).toContain(hashedLabel(ORIGIN, salted.params));
    const verdict = verifyTransfer(served);
    if (verdict !== null) expect(verdict.out).toContain("Zone fully signed");
    const verdicts = await validates(served, DS(), PROOFS);
    if (verdicts !== null) expect(verdicts).toEqual(allTrue(verdicts));
  });
});
