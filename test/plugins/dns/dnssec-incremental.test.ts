/**
 * The signed zone a sequence of changes leaves, each signed keeping what the one before signed
 * (signZone with the previous signatures: what every change to a signed zone does), against the
 * same data signed whole: record for record the same zone, the same RRsets signed, every kept or
 * new signature verifying over the RRset it covers — and dnssec-verify accepting the AXFR at
 * the end. Random changes (seeded, so a failure repeats): names added and removed (the NSEC and
 * NSEC3 chains move), types added and removed at a name, wildcards, names three labels deep
 * (empty non-terminals come and go), delegations with glue and a DS; NSEC and NSEC3 zones.
 */
import { describe, expect, test } from "bun:test";
import { createPublicKey, verify } from "node:crypto";
import {
  DELETE_SIGNAL,
  generateSigningKey,
  parentSignalFor,
  readRrsig,
  REFRESH_BEFORE_MS,
  rrsigHead,
  signaturesOf,
  signedData,
  signChange,
  signingKeyFrom,
  signZone,
  type RrsetChange,
  TYPE_RRSIG,
  VALIDITY_MS,
  type Denial,
} from "../../../plugins/dns/dnssec.ts";
import { RFC9276_PARAMS } from "../../../plugins/dns/nsec3.ts";
import { nameToText, parseName, type Name } from "../../../plugins/dns/names.ts";
import { parseRdata, RRType } from "../../../plugins/dns/rdata.ts";
import { allowAll, answerAll, ZoneTable } from "../../../plugins/dns/server.ts";
import { decodeMessage } from "../../../plugins/dns/message.ts";
import { rrToText, Zone, type RR } from "../../../plugins/dns/zone.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";
import { dnssecVerify } from "../../helpers/dnssec-validators.ts";

const ORIGIN_TEXT = "diff.test.";
const ORIGIN = parseName(ORIGIN_TEXT, null);
const key = signingKeyFrom(generateSigningKey().pkcs8);

/** A small seeded PRNG (mulberry32): the same sequence of changes on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const name = (text: string): Name => parseName(text, ORIGIN);
const rr = (owner: string, type: number, data: string[], ttl = 300): RR => ({ name: name(owner), ttl, type, rdata: parseRdata(type, data, ORIGIN) });

/** The zone's data as RRsets by `owner type`, changed at random; the SOA and the apex NS kept apart. */
class ZoneData {
  readonly sets = new Map<string, RR[]>();
  private serial = 1;
  constructor(private readonly next: () => number) {
    for (let i = 0; i < 20; i++) this.put(rr(`host${i}`, RRType.A, [`192.0.2.${i}`]));
  }
  private put(...records: RR[]): void {
    this.sets.set(`${nameToText(records[0]!.name)} ${records[0]!.type}`, records);
  }
  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  private owners(): string[] {
    return [...new Set([...this.sets.values()].map((s) => nameToText(s[0]!.name)))];
  }
  /** One random change, valid for Zone.build (no data below a delegation, no CNAME beside data). */
  change(): string {
    const n = Math.floor(this.next() * 100_000);
    const cuts = [...this.sets.values()].filter((s) => s[0]!.type === RRType.NS).map((s) => nameToText(s[0]!.name));
    const kind = this.pick(["add name", "add name", "remove name", "add type", "remove type", "wildcard", "deep name", "delegation", "undelegate", "ttl"]);
    switch (kind) {
      case "add name":
        this.put(rr(`n${n}`, RRType.A, [`198.51.100.${n % 250}`]));
        break;
      case "remove name": {
        const owner = this.pick(this.owners());
        for (const k of [...this.sets.keys()]) if (k.startsWith(`${owner} `)) this.sets.delete(k);
        break;
      }
      case "add type": {
        const owner = this.pick(this.owners().filter((o) => !cuts.some((c) => o === c || o.endsWith(`.${c}`))));
        if (owner) this.put({ ...rr("x", RRType.TXT, [`"t${n}"`]), name: parseName(owner, null) });
        break;
      }
      case "remove type": {
        const at = this.pick([...this.sets.keys()].filter((k) => k.endsWith(` ${RRType.TXT}`) || k.endsWith(` ${RRType.AAAA}`)));
        if (at) this.sets.delete(at);
        break;
      }
      case "wildcard":
        if (this.sets.has(`*.${ORIGIN_TEXT} ${RRType.TXT}`)) this.sets.delete(`*.${ORIGIN_TEXT} ${RRType.TXT}`);
        else this.put(rr("*", RRType.TXT, [`"wild ${n}"`]));
        break;
      case "deep name":
        this.put(rr(`d${n % 7}.e${n % 3}.deep`, RRType.AAAA, [`2001:db8::${(n % 65536).toString(16)}`]));
        break;
      case "delegation": {
        const child = `sub${n % 5}`;
        if (this.owners().some((o) => o === `${child}.${ORIGIN_TEXT}` || o.endsWith(`.${child}.${ORIGIN_TEXT}`))) break;
        this.put(rr(child, RRType.NS, [`ns.${child}.${ORIGIN_TEXT}`]));
        this.put(rr(`ns.${child}`, RRType.A, [`203.0.113.${n % 250}`]));
        if (n % 2 === 0) this.put(rr(child, RRType.DS, [String(n % 65536), "13", "2", "ab".repeat(32)]));
        break;
      }
      case "undelegate": {
        const cut = cuts.length > 0 ? this.pick(cuts) : null;
        if (cut === null) break;
        for (const k of [...this.sets.keys()]) if (k.split(" ")[0] === cut || k.split(" ")[0]!.endsWith(`.${cut}`)) this.sets.delete(k);
        break;
      }
      case "ttl": {
        const at = this.pick([...this.sets.keys()]);
        this.sets.set(at, this.sets.get(at)!.map((r) => ({ ...r, ttl: r.ttl === 300 ? 600 : 300 })));
        break;
      }
    }
    this.serial++;
    return kind;
  }
  soa(): RR {
    return rr("@", RRType.SOA, ["ns1.example.net.", "hostmaster.diff.test.", String(this.serial), "3600", "900", "1209600", "300"], 3600);
  }
  zone(): Zone {
    return Zone.build(ORIGIN, [this.soa(), rr("@", RRType.NS, ["ns1.example.net."], 3600), ...[...this.sets.values()].flat()]);
  }
  /** The RRsets that differ from `before` (a copy of `sets` taken earlier), as changes to make. */
  changesSince(before: ReadonlyMap<string, RR[]>): RrsetChange[] {
    const changes: RrsetChange[] = [];
    for (const at of new Set([...before.keys(), ...this.sets.keys()])) {
      const [was, is] = [before.get(at), this.sets.get(at)];
      if (was === is) continue;
      const first = (is ?? was)![0]!;
      changes.push({ owner: first.name, type: first.type, records: is ?? [] });
    }
    return changes;
  }
}

const lines = (records: readonly RR[]) => records.map(rrToText).sort();
/** An RRSIG's fields that do not depend on when it was made: owner, type covered, labels, original TTL, key, signer. */
const sigShape = (r: RR) => {
  const f = readRrsig(r.rdata);
  return `${nameToText(r.name)} ${r.ttl} ${f.typeCovered} ${f.labels} ${f.originalTtl} ${f.keyTag} ${nameToText(f.signer)}`;
};
const publicKey = createPublicKey(key.privateKey);

/** Every RRSIG of `zone` verifies over the RRset (or NSEC3) it covers, found in the zone itself. */
function everySignatureVerifies(zone: Zone): void {
  const signatures = signaturesOf(zone)!;
  const all = [...zone.records(), ...signatures.transferRecords().filter((r) => r.type !== TYPE_RRSIG)];
  const rrsets = new Map<string, RR[]>();
  for (const r of all) {
    const at = `${nameToText(r.name).toLowerCase()} ${r.type}`;
    rrsets.set(at, [...(rrsets.get(at) ?? []), r]);
  }
  for (const rrsig of signatures.records()) {
    const f = readRrsig(rrsig.rdata);
    const rrset = rrsets.get(`${nameToText(rrsig.name).toLowerCase()} ${f.typeCovered}`);
    expect(rrset === undefined ? `${sigShape(rrsig)}: no RRset` : "").toBe("");
    const data = signedData(rrsigHead(f), rrsig.name, f.typeCovered, f.originalTtl, rrset!.map((r) => r.rdata));
    const ok = verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, f.signature);
    expect(ok ? "" : `${sigShape(rrsig)}: does not verify`).toBe("");
  }
}

function axfr(zone: Zone): RR[] {
  const table = new ZoneTable();
  table.set(zone);
  const messages = answerAll(buildQuery({ name: ORIGIN, type: 252 }), "127.0.0.1", "tcp", { zones: table, gate: allowAll, transfers: { allowed: () => true } });
  return messages.flatMap((m) => decodeMessage(m).answer).slice(0, -1) as RR[];
}

describe.each([
  ["NSEC", { mode: "nsec" } as Denial, 1],
  ["NSEC3", { mode: "nsec3", params: RFC9276_PARAMS } as Denial, 2],
])("a signed zone changed step by step equals the same data signed whole (%s)", (_label, denial, seed) => {
  test("after each of 60 random changes: the same records, the same RRsets signed, every signature verifying; dnssec-verify accepts the AXFR", () => {
    const data = new ZoneData(random(seed));
    const start = Date.now() - 61 * 3_600_000; // the last step about now: dnssec-verify checks the signatures' times
    let served = signZone(data.zone(), [key], start, undefined, denial);
    const kinds = new Set<string>();
    for (let step = 1; step <= 60; step++) {
      kinds.add(data.change());
      const now = start + step * 3_600_000; // an hour apart: most signatures are kept from earlier steps
      const unsigned = data.zone();
      served = signZone(unsigned, [key], now, signaturesOf(served), denial);
      const whole = signZone(unsigned, [key], now, undefined, denial);
      sameSignedZone(served, whole);
    }
    // The sequence went through every kind of change (else the seed tests less than it says).
    expect([...kinds].sort()).toEqual(["add name", "add type", "deep name", "delegation", "remove name", "remove type", "ttl", "undelegate", "wildcard"]);
    const verdict = dnssecVerify(axfr(served), ORIGIN_TEXT);
    if (verdict !== null) {
      expect(verdict.out).toContain("Zone fully signed");
      expect(verdict.code).toBe(0);
    }
  });

  test("each of 150 random changes made by signChange (the zone edited, not laid out again) equals the zone signed whole; the changes it cannot be sure of are left to signZone", () => {
    const data = new ZoneData(random(seed + 10));
    const start = Date.now() - 151 * 600_000;
    let served = signZone(data.zone(), [key], start, undefined, denial);
    const edited = new Set<string>();
    const whole = new Set<string>();
    for (let step = 1; step <= 150; step++) {
      const before = new Map(data.sets);
      const kind = data.change();
      const changes = data.changesSince(before);
      const now = start + step * 600_000;
      const unsigned = data.zone();
      const reference = signZone(unsigned, [key], now, signaturesOf(served), denial);
      const incremental = signChange(served, data.soa(), changes, [key], now, denial);
      // Zone cuts move only by a delegation or its removal, glue sits below one: those are signed whole, every other change is edited.
      const atCut = (c: RrsetChange) => c.type === RRType.NS || c.type === RRType.DS || served.delegates(c.owner) || unsigned.delegates(c.owner);
      if (changes.some(atCut)) expect(incremental).toBeNull();
      else expect(incremental === null ? `step ${step} (${kind}): signChange declined` : "").toBe("");
      (incremental === null ? whole : edited).add(kind);
      served = incremental ?? reference;
      sameSignedZone(served, reference);
      // The same signatures as signZone keeping the previous ones: none made again that it keeps.
      expect(signaturesOf(served)!.records().map(rrsigText).sort()).toEqual(signaturesOf(reference)!.records().map(rrsigText).sort());
      expect(signaturesOf(served)!.expiresAt).toBe(signaturesOf(reference)!.expiresAt);
      // Every answer comes from the zone it was asked of: a name removed is still answered by the version before.
      sameAnswers(served, reference);
    }
    for (const kind of ["add name", "add type", "deep name", "remove name", "remove type", "ttl", "wildcard"]) expect(edited).toContain(kind);
    expect(whole.has("delegation")).toBe(true);
    const verdict = dnssecVerify(axfr(served), ORIGIN_TEXT);
    if (verdict !== null) {
      expect(verdict.out).toContain("Zone fully signed");
      expect(verdict.code).toBe(0);
    }
  }, 120_000); // 150 changes, each answered whole twice: 7-16 s on an idle host
});

/** An RRSIG as text whatever its signature's random octets: all its fields but the signature, which ECDSA makes anew each time. */
const rrsigText = (r: RR) => {
  const f = readRrsig(r.rdata);
  return `${sigShape(r)} ${f.expiration} ${f.inception}`;
};

/** Record for record the same served zone and chain, the same RRsets signed, every signature verifying. */
function sameSignedZone(served: Zone, whole: Zone): void {
  const mine = signaturesOf(served)!;
  const theirs = signaturesOf(whole)!;
  expect(lines(served.records())).toEqual(lines(whole.records()));
  expect(lines(mine.transferRecords().filter((r) => r.type !== TYPE_RRSIG))).toEqual(lines(theirs.transferRecords().filter((r) => r.type !== TYPE_RRSIG)));
  expect(mine.records().map(sigShape).sort()).toEqual(theirs.records().map(sigShape).sort());
  everySignatureVerifies(served);
}

/** Every name a zone compared here ever held: asked again once removed (found in review: a removed name was still taken to exist). */
const everNamed = new Set<string>();

/**
 * The answers (DO set) to questions about every name of the zone, every name it ever held and a
 * name below each, a few it lacks, and RRSIG/NSEC queries: the same from both zones, signatures
 * aside; and the same names exist in both.
 */
function sameAnswers(a: Zone, b: Zone): void {
  for (const r of [...b.records(), ...a.records()]) everNamed.add(nameToText(r.name));
  const names = new Set(everNamed);
  for (const extra of ["nope", "x.deep", "zz.e1.deep", "a.b.host1", "*"]) names.add(`${extra}.${ORIGIN_TEXT}`);
  const below = [...everNamed].map((held) => `below.${held}`);
  const existing = (zone: Zone) => [...names, ...below].filter((n) => signaturesOf(zone)!.exists(parseName(n, null)));
  expect(existing(a)).toEqual(existing(b));
  const answer = (zone: Zone, qname: string, qtype: number) => {
    const table = new ZoneTable();
    table.set(zone);
    const [message] = answerAll(buildQuery({ name: parseName(qname, null), type: qtype, edns: { payload: 65_000, dnssecOk: true } }), "127.0.0.1", "tcp", { zones: table, gate: allowAll, transfers: { allowed: () => false } });
    const m = decodeMessage(message!);
    const text = (rs: readonly RR[]) => rs.map((r) => (r.type === TYPE_RRSIG ? sigShape(r as RR) : rrToText(r as RR))).sort();
    return { rcode: m.rcode, answer: text(m.answer as RR[]), authority: text(m.authority as RR[]) };
  };
  for (const qname of names) for (const qtype of [RRType.A, RRType.TXT, TYPE_RRSIG]) expect(answer(a, qname, qtype)).toEqual(answer(b, qname, qtype));
  for (const qname of below) expect(answer(a, qname, RRType.A)).toEqual(answer(b, qname, RRType.A));
}

describe("signChange declines what it cannot be sure of (the caller signs whole)", () => {
  const data = new ZoneData(random(7));
  const start = Date.now();
  const served = signZone(data.zone(), [key], start, undefined, { mode: "nsec" });
  const change: RrsetChange = { owner: name("added"), type: RRType.A, records: [rr("added", RRType.A, ["192.0.2.1"])] };
  const soaWith = (ttl: number, minimum = "300") => rr("@", RRType.SOA, ["ns1.example.net.", "hostmaster.diff.test.", "99", "3600", "900", "1209600", minimum], ttl);

  test("a plain change is made", () => {
    expect(signChange(served, soaWith(3600), [change], [key], start + 60_000)).not.toBeNull();
  });
  test("signatures due to be made again (less than REFRESH_BEFORE_MS left): signZone makes them", () => {
    expect(signChange(served, soaWith(3600), [change], [key], start + VALIDITY_MS - REFRESH_BEFORE_MS)).toBeNull();
  });
  test("another key set (a rollover's start or finish), another denial, another SOA TTL or MINIMUM (the DNSKEY's and the chain's TTLs)", () => {
    const other = signingKeyFrom(generateSigningKey().pkcs8);
    expect(signChange(served, soaWith(3600), [change], [key, other], start)).toBeNull();
    expect(signChange(served, soaWith(3600), [change], [other], start)).toBeNull();
    expect(signChange(served, soaWith(3600), [change], [key], start, { mode: "nsec3", params: RFC9276_PARAMS })).toBeNull();
    expect(signChange(served, soaWith(7200), [change], [key], start)).toBeNull();
    expect(signChange(served, soaWith(3600, "60"), [change], [key], start)).toBeNull();
  });
  test("what Zone.build would refuse or adjust: a CNAME beside data, TTLs that differ, duplicates, an owner outside the zone; NS, DS, DNSKEY, a signer's type", () => {
    const host = data.zone().records().find((r) => r.type === RRType.A)!.name;
    const at = (type: number, records: RR[]) => signChange(served, soaWith(3600), [{ owner: host, type, records }], [key], start);
    expect(at(RRType.CNAME, [{ name: host, ttl: 300, type: RRType.CNAME, rdata: parseRdata(RRType.CNAME, ["x.example.net."], ORIGIN) }])).toBeNull();
    const a = (address: string, ttl = 300): RR => ({ name: host, ttl, type: RRType.A, rdata: parseRdata(RRType.A, [address], ORIGIN) });
    expect(at(RRType.A, [a("192.0.2.1"), a("192.0.2.2", 600)])).toBeNull();
    expect(at(RRType.A, [a("192.0.2.1"), a("192.0.2.1")])).toBeNull();
    expect(at(RRType.A, [a("192.0.2.1"), a("192.0.2.2")])).not.toBeNull();
    const outside = parseName("www.example.net.", null);
    expect(signChange(served, soaWith(3600), [{ owner: outside, type: RRType.A, records: [{ ...a("192.0.2.1"), name: outside }] }], [key], start)).toBeNull();
    for (const type of [RRType.NS, RRType.DS, 48, 46, 47, 50, 51]) expect(signChange(served, soaWith(3600), [{ owner: host, type, records: [] }], [key], start)).toBeNull();
  });
  test("the zone it was made from is left as it was (every answer comes from one version)", () => {
    const before = lines(served.records());
    const sigsBefore = signaturesOf(served)!.records().length;
    const edited = signChange(served, soaWith(3600), [change], [key], start + 60_000)!;
    expect(lines(served.records())).toEqual(before);
    expect(signaturesOf(served)!.records().length).toBe(sigsBefore);
    expect(edited.records().length).toBeGreaterThan(served.records().length);
  });
});

describe("record octets that hold a space (found in review: records were compared as latin1 strings joined by spaces)", () => {
  const soa = (serial: number) => rr("@", RRType.SOA, ["ns1.example.net.", "hostmaster.diff.test.", String(serial), "3600", "900", "1209600", "300"], 3600);
  const apex = (serial: number) => [soa(serial), rr("@", RRType.NS, ["ns1.example.net."], 3600)];
  const txt = (owner: Name, octets: number[]): RR => ({ name: owner, ttl: 300, type: RRType.TXT, rdata: Uint8Array.from(octets) });
  const a = [1, 0x61]; // "a"
  const b = [0x1f, ...Array(31).fill(0x62)]; // "bbb…" (31 octets): its length octet is a space

  test('an RRset of two records changed to one that holds both and a space between them ("a" "b…" → "a" "\\031b…") is signed again', () => {
    const owner = name("t");
    const before = signZone(Zone.build(ORIGIN, [...apex(1), txt(owner, a), txt(owner, b)]), [key], Date.now() - 3_600_000);
    const after = signZone(Zone.build(ORIGIN, [...apex(2), txt(owner, [...a, 0x20, ...b])]), [key], Date.now(), signaturesOf(before));
    expect(signaturesOf(after)!.rrsigs(owner, RRType.TXT)[0]).not.toBe(signaturesOf(before)!.rrsigs(owner, RRType.TXT)[0]);
    everySignatureVerifies(after);
  });

  test("a record at the apex and another below it whose octets continue the apex's are two records, not one merged", () => {
    // The owner below is the apex's labels, a label "16 #" + the apex TXT's first string, and the
    // apex's labels again; the apex TXT goes on with the apex's labels, " 16 #" and the other
    // record: joined with spaces, apex key + " 16 " + its TXT read as that owner's key + " 16 " + its own.
    const apexLabels = [4, ...Buffer.from("diff"), 4, ...Buffer.from("test")];
    const own = [27, ...Array(27).fill(0x63)];
    const first = [27, ...Array(27).fill(0x64)];
    const owner: Name = [...ORIGIN, Uint8Array.from([...Buffer.from("16 #"), ...first]), ...ORIGIN];
    const zone = Zone.build(ORIGIN, [...apex(1), txt(ORIGIN, [...first, ...apexLabels, 0x20, ...Buffer.from("16 #"), ...own]), txt(owner, own)]);
    expect(zone.warnings).toEqual([]);
    expect(zone.lookup(owner, RRType.TXT).answer.map(rrToText)).toEqual([`${nameToText(owner)} 300 TXT "${"c".repeat(27)}"`]);
  });
});

describe.each([
  ["NSEC", { mode: "nsec" } as Denial],
  ["NSEC3", { mode: "nsec3", params: RFC9276_PARAMS } as Denial],
])("signChange beside a delegation with glue (%s)", (_label, denial) => {
  test("names added just before and after the delegation in canonical order, and between it and its glue's parent, then removed: each equal to the zone signed whole", () => {
    const sets = new Map<string, RR[]>([
      ["www", [rr("www", RRType.A, ["192.0.2.1"])]],
      ["sub NS", [rr("sub", RRType.NS, ["ns.sub.diff.test."])]],
      ["sub DS", [rr("sub", RRType.DS, ["1", "13", "2", "ab".repeat(32)])]],
      ["ns.sub", [rr("ns.sub", RRType.A, ["203.0.113.1"])]],
      ["plain", [rr("plain", RRType.NS, ["ns.example.net."])]], // an unsigned delegation (no DS)
    ]);
    let serial = 1;
    const soa = () => rr("@", RRType.SOA, ["ns1.example.net.", "hostmaster.diff.test.", String(serial), "3600", "900", "1209600", "300"], 3600);
    const build = () => Zone.build(ORIGIN, [soa(), rr("@", RRType.NS, ["ns1.example.net."], 3600), ...[...sets.values()].flat()]);
    const start = Date.now();
    let served = signZone(build(), [key], start, undefined, denial);
    const steps: Array<[string, RR[]]> = [
      ["su", [rr("su", RRType.TXT, ['"just before sub"'])]],
      ["suba", [rr("suba", RRType.TXT, ['"just after sub"'])]],
      ["a.plain0", [rr("a.plain0", RRType.TXT, ['"after the unsigned one"'])]],
      ["pla", [rr("pla", RRType.A, ["192.0.2.9"])]],
      ["su", []],
      ["suba", []],
      ["pla", []],
      ["a.plain0", []],
    ];
    for (const [owner, records] of steps) {
      serial++;
      if (records.length > 0) sets.set(owner, records);
      else sets.delete(owner);
      const now = start + serial * 60_000;
      const type = records[0]?.type ?? [...served.rrsetsAt(name(owner))!.keys()].find((t) => t !== 47)!;
      const edited = signChange(served, soa(), [{ owner: name(owner), type, records }], [key], now, denial);
      const whole = signZone(build(), [key], now, signaturesOf(served), denial);
      expect(edited === null ? `${owner}: declined` : "").toBe("");
      sameSignedZone(edited!, whole);
      sameAnswers(edited!, whole);
      served = edited!;
    }
    const verdict = dnssecVerify(axfr(served), ORIGIN_TEXT);
    if (verdict !== null) expect(verdict.code).toBe(0);
  });
});

describe("signChange and the CDS/CDNSKEY the signer publishes", () => {
  test("published alike before and after: the change is edited, the CDS and CDNSKEY kept, equal to the zone signed whole; another signal (or none), or a change of the zone's own CDS: declined", () => {
    const data = new ZoneData(random(11));
    const parent = parentSignalFor(ORIGIN, [key.dnskey]);
    const start = Date.now();
    const served = signZone(data.zone(), [key], start, undefined, { mode: "nsec" }, parent);
    const record = rr("cds-test", RRType.TXT, ['"x"']);
    const change: RrsetChange = { owner: record.name, type: RRType.TXT, records: [record] };
    const soa = rr("@", RRType.SOA, ["ns1.example.net.", "hostmaster.diff.test.", "2", "3600", "900", "1209600", "300"], 3600);
    const edited = signChange(served, soa, [change], [key], start + 60_000, { mode: "nsec" }, parent);
    expect(edited).not.toBeNull();
    expect(edited!.records().filter((r) => r.type === 59 || r.type === 60).length).toBe(2);
    const unsigned = Zone.build(ORIGIN, [soa, ...data.zone().records().filter((r) => r.type !== RRType.SOA), record]);
    sameSignedZone(edited!, signZone(unsigned, [key], start + 60_000, signaturesOf(served), { mode: "nsec" }, parent));
    expect(signChange(served, soa, [change], [key], start + 60_000, { mode: "nsec" }, null)).toBeNull();
    expect(signChange(served, soa, [change], [key], start + 60_000, { mode: "nsec" }, DELETE_SIGNAL)).toBeNull();
    // The zone's own CDS is left to the whole path (Citadel's replaces it while it publishes).
    expect(signChange(served, soa, [{ owner: ORIGIN, type: 59, records: [] }], [key], start + 60_000, { mode: "nsec" }, parent)).toBeNull();
  });
});
