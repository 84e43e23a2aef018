/**
 * Fuzz cases for the authoritative DNS server, shared by `scripts/fuzz/dns.ts` (a million cases
 * and more) and `test/plugins/dns/fuzz.test.ts` (a small sample in the suite).
 *
 * Every case is a packet (and a client address) made from (seed, index) alone, so any failure
 * is replayed by its index: purely random bytes, well-formed queries (names in and out of the
 * zone in mixed case, every kind of qtype, class, opcode, flags, EDNS, TSIG signatures good and
 * bad, IXFR with the client's SOA), and mutations of those (bit flips, special bytes,
 * truncation, extension, header counts, bad compression pointers, labels over 63 octets, names
 * over 255). Each packet goes through decodeQuery and decodeMessage, which may only throw
 * FormatError, then through the server's answer path over UDP and TCP, whose every reply is
 * checked against what message.ts, server.ts and tsig.ts document.
 */
import {
  decodeMessage,
  decodeQuery,
  FormatError,
  Opcode,
  Rcode,
  type Message,
  type Query,
} from "../../plugins/dns/message.ts";
import { nameEquals, parseName, wireLength, type Name } from "../../plugins/dns/names.ts";
import { RRType } from "../../plugins/dns/rdata.ts";
import { generateSigningKey, signingKeyFrom, signZone } from "../../plugins/dns/dnssec.ts";
import { RFC9276_PARAMS } from "../../plugins/dns/nsec3.ts";
import { allowAll, answerAll, CachingAnswerer, EDNS_PAYLOAD_SIZE, ZoneTable, type AnswerContext } from "../../plugins/dns/server.ts";
import { TYPE_AXFR, TYPE_IXFR, type TransferPolicy } from "../../plugins/dns/transfer.ts";
import {
  RCODE_NOTAUTH,
  readTsig,
  sign,
  TsigError,
  TYPE_TSIG,
  verify,
  type Chain,
  type TsigKey,
} from "../../plugins/dns/tsig.ts";
import { Zone } from "../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../plugins/dns/zone-file.ts";

// ---------------------------------------------------------------------------------------------
// The server under test: two zones (the same records, signed with NSEC and with NSEC3), one TSIG
// key, a transfer policy, a fixed clock

const origin = parseName("example.org.", null);
/** The NSEC3 zone: ZONE_TEXT again, for DO answers through the NSEC3 proofs. */
const nsec3Origin = parseName("example.com.", null);
const ZONE_SERIAL = 2024010101;

/** 255-octet strings for TXT records too big for plain UDP (and, for `huge`, for EDNS over UDP). */
const longStrings = (count: number, c: string) =>
  Array.from({ length: count }, (_, i) => `"${String(i).padStart(3, "0")}${c.repeat(252)}"`).join(" ");

/** Something of every shape the lookup handles: CNAME chains, wildcards, a cut with glue, ENTs. */
const ZONE_TEXT = `$TTL 3600
@           SOA   ns1 hostmaster ${ZONE_SERIAL} 1h 15m 1w 300
@           NS    ns1
@           NS    ns2.example.net.
@           MX    10 mail
@           MX    20 mail.example.net.
@           TXT   "v=spf1 mx -all"
@           A     192.0.2.1
@           AAAA  2001:db8::1
ns1         A     192.0.2.53
ns1         AAAA  2001:db8::53
mail        A     192.0.2.25
www         A     192.0.2.80
www         AAAA  2001:db8::80
alias       CNAME www
chain1      CNAME chain2
chain2      CNAME chain3
chain3      CNAME alias
away        CNAME www.example.com.
loop1       CNAME loop2
loop2       CNAME loop1
*.wild      A     192.0.2.99
*.wild      TXT   "synthesized"
*.cnwild    CNAME www
sub         NS    ns.sub
sub         NS    ns2.example.net.
sub         DS    12345 13 2 ${"ab".repeat(32)}
ns.sub      A     192.0.2.200
ns.sub      AAAA  2001:db8::200
a.b.c.ent   A     192.0.2.10
_sip._tcp   SRV   10 5 5060 sip
_sip._tcp   SRV   20 5 5060 sip.example.net.
sip         A     192.0.2.60
sip         AAAA  2001:db8::60
medium      TXT   ${longStrings(3, "m")}
huge        TXT   ${longStrings(8, "h")}
${Array.from({ length: 40 }, (_, i) => `many A 192.0.2.${i + 100}`).join("\n")}
`;

/** Names a client may ask, relative to the origin ("@" is the apex) or absolute. */
const QUERY_NAMES = [
  "@", "ns1", "mail", "www", "alias", "chain1", "chain2", "chain3", "away", "loop1", "loop2",
  "wild", "x.wild", "deep.y.wild", "*.wild", "z.cnwild", "cnwild", "sub", "host.sub", "ns.sub",
  "deep.host.sub", "ent", "c.ent", "b.c.ent", "a.b.c.ent", "x.a.b.c.ent", "_tcp", "_sip._tcp",
  "sip", "medium", "huge", "many", "nx", "nx.www", "www.www",
  "example.com.", "www.example.com.", "nx.example.com.", "x.wild.example.com.", "host.sub.example.com.", "b.c.ent.example.com.", "x.a.b.c.ent.example.com.",
  "org.", ".", "example.net.", "xexample.org.",
].map((text) => parseName(text, origin));

/** The TSIG clock: fixed, so a signed case verifies (or not) the same way on every run. */
const NOW = 1_800_000_000_000;
const KEY: TsigKey = {
  name: parseName("xfr.example.org.", null),
  algorithm: "hmac-sha256",
  secret: Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1),
};
/** The same key name with another secret: its signatures are BADSIG. */
const FORGED_KEY: TsigKey = { ...KEY, secret: KEY.secret.map((b) => b ^ 0x55) };
/** The same key name and secret under another algorithm: BADKEY. */
const WRONG_ALGORITHM_KEY: TsigKey = { ...KEY, algorithm: "hmac-sha512" };

/** Transfers go to this address unsigned, or to anyone who signs with KEY. */
const TRUSTED_CLIENT = "192.0.2.1";
const OTHER_CLIENT = "198.51.100.7";
const policy: TransferPolicy = { allowed: (client, _zone, keyName) => client === TRUSTED_CLIENT || keyName !== null };
const findKey = (name: Name) => (nameEquals(name, KEY.name) ? KEY : null);

let cachedContext: AnswerContext | null = null;

/** What the server answers from during the fuzz (built once per process). */
export function fuzzContext(): AnswerContext {
  if (cachedContext) return cachedContext;
  const zones = new ZoneTable();
  // Signed (DNSSEC), so that DO queries take the signed answer path too; without DO it answers as unsigned.
  const key = signingKeyFrom(generateSigningKey().pkcs8);
  zones.set(signZone(Zone.build(origin, parseZoneFile(ZONE_TEXT, { origin, defaultTtl: 3600 })), [key], NOW));
  const nsec3 = Zone.build(nsec3Origin, parseZoneFile(ZONE_TEXT, { origin: nsec3Origin, defaultTtl: 3600 }));
  zones.set(signZone(nsec3, [key], NOW, undefined, { mode: "nsec3", params: RFC9276_PARAMS }));
  cachedContext = { zones, gate: allowAll, tsigKey: findKey, transfers: policy, now: () => NOW };
  return cachedContext;
}

let answerer: CachingAnswerer | null = null;
/** One caching answerer for the whole run, so that questions repeated across cases hit its cache. */
function cachingAnswerer(): CachingAnswerer {
  return (answerer ??= new CachingAnswerer(fuzzContext()));
}

// ---------------------------------------------------------------------------------------------
// A seeded generator

/** mulberry32: small, fast and good enough to pick bytes; a case's state comes from (seed, index). */
export class Rng {
  constructor(private state: number) {}

  static forCase(seed: number, index: number): Rng {
    // A murmur3 finalizer spreads consecutive indexes over unrelated states.
    let h = (seed ^ Math.imul(index, 0x9e3779b1)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return new Rng((h ^ (h >>> 16)) >>> 0);
  }

  u32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** 0 ≤ n < max */
  below(max: number): number {
    return Math.floor((this.u32() / 0x100000000) * max);
  }

  /** min ≤ n ≤ max */
  between(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  chance(p: number): boolean {
    return this.u32() < p * 0x100000000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  bytes(length: number): number[] {
    return Array.from({ length }, () => this.below(256));
  }
}

// ---------------------------------------------------------------------------------------------
// Well-formed queries

const TYPE_OPT = 41;
const TYPE_MAILB = 253;
const TYPE_MAILA = 254;
const QTYPES = [
  RRType.A, RRType.NS, RRType.CNAME, RRType.SOA, RRType.PTR, RRType.MX, RRType.TXT, RRType.AAAA,
  RRType.SRV, RRType.DS, RRType.SVCB, RRType.HTTPS, RRType.CAA,
  0, TYPE_OPT, 46, 47, 50, TYPE_TSIG, TYPE_IXFR, TYPE_AXFR, TYPE_MAILB, TYPE_MAILA, 255 /* ANY */, 65535,
];
/** Types for extra records: not OPT and TSIG, which have placement rules of their own. */
const RECORD_TYPES = QTYPES.filter((t) => t !== TYPE_OPT && t !== TYPE_TSIG);
const CLASSES = [1, 1, 1, 1, 1, 1, 0, 2, 3, 4, 254, 255, 65535];
const PAYLOADS = [0, 1, 511, 512, 513, 1232, 1233, 1400, 4096, 65535];
const OPTION_CODES = [3 /* NSID */, 8 /* client subnet */, 10 /* cookie */, 12 /* padding */, 15 /* extended error */];
const ALGORITHM_NAMES = ["hmac-sha256.", "hmac-sha384.", "HMAC-SHA512.", "hmac-md5.sig-alg.reg.int."].map((a) => parseName(a, null));

/** A packet under construction; `names` are the offsets where names start (for mutations). */
interface Builder {
  bytes: number[];
  names: number[];
}

const u16 = (b: Builder, n: number) => b.bytes.push((n >>> 8) & 0xff, n & 0xff);
const u32 = (b: Builder, n: number) => {
  u16(b, n >>> 16);
  u16(b, n & 0xffff);
};

/** ASCII letters in random case: the server must echo the qname octet for octet. */
function mixCase(rng: Rng, octets: Uint8Array): Uint8Array {
  return octets.map((c) => ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a && rng.chance(0.5) ? c ^ 0x20 : c));
}

/** A legal name of `wire` octets in wire form (at most 255): 63-octet labels, then what is left. */
function nameOfLength(rng: Rng, wire: number): Name {
  const labels: Uint8Array[] = [];
  for (let left = wire - 1; left > 1; ) {
    const length = Math.min(63, left - 1);
    labels.push(Uint8Array.from({ length }, () => rng.pick([0x61, 0x41, 0x2d, 0x30])));
    left -= 1 + length;
  }
  return labels;
}

/** A name from the pool, random labels in or out of the zone, the root, or one close to 255 octets. */
function randomName(rng: Rng): Name {
  const roll = rng.below(10);
  if (roll < 6) return rng.pick(QUERY_NAMES);
  if (roll < 8) {
    const labels = Array.from({ length: rng.between(1, 3) }, () => Uint8Array.from(rng.bytes(rng.between(1, 12))));
    return rng.chance(0.7) ? [...labels, ...origin] : labels;
  }
  if (roll < 9) return [];
  return [...nameOfLength(rng, rng.between(200, 255 - 13)), ...origin];
}

function writeName(rng: Rng, b: Builder, name: Name): void {
  b.names.push(b.bytes.length);
  for (const label of name) b.bytes.push(label.length, ...mixCase(rng, label));
  b.bytes.push(0);
}

/** An owner: half the time a valid compression pointer back to the qname. */
function writeOwner(rng: Rng, b: Builder, hasQuestion: boolean): void {
  if (hasQuestion && rng.chance(0.5)) {
    b.names.push(b.bytes.length);
    u16(b, 0xc00c);
  } else {
    writeName(rng, b, randomName(rng));
  }
}

/** A record with random data for the answer, authority or additional section. */
function writeRecord(rng: Rng, b: Builder, hasQuestion: boolean): void {
  writeOwner(rng, b, hasQuestion);
  u16(b, rng.pick(RECORD_TYPES));
  u16(b, rng.pick(CLASSES));
  u32(b, rng.u32());
  const data = rng.bytes(rng.below(24));
  u16(b, data.length);
  b.bytes.push(...data);
}

/** The SOA an IXFR carries in its authority section: the serial the secondary has (RFC 1995). */
function writeIxfrSoa(rng: Rng, b: Builder): void {
  writeOwner(rng, b, true);
  u16(b, RRType.SOA);
  u16(b, 1);
  u32(b, 3600);
  const rdata: Builder = { bytes: [], names: [] };
  writeName(rng, rdata, randomName(rng));
  writeName(rng, rdata, randomName(rng));
  u32(rdata, rng.pick([ZONE_SERIAL, ZONE_SERIAL - 1, ZONE_SERIAL + 1, ZONE_SERIAL + 0x80000000, rng.u32()]));
  for (let i = 0; i < 4; i++) u32(rdata, rng.u32());
  u16(b, rdata.bytes.length);
  b.bytes.push(...rdata.bytes);
}

/** An OPT record (RFC 6891): payload in the class, extended rcode, version and DO in the TTL. */
function writeOpt(rng: Rng, b: Builder): void {
  b.names.push(b.bytes.length);
  b.bytes.push(0);
  u16(b, TYPE_OPT);
  u16(b, rng.chance(0.8) ? rng.pick(PAYLOADS) : rng.below(0x10000));
  b.bytes.push(rng.chance(0.9) ? 0 : rng.below(256), rng.chance(0.85) ? 0 : rng.between(1, 255));
  u16(b, (rng.chance(0.5) ? 0x8000 : 0) | (rng.chance(0.1) ? rng.below(0x8000) : 0));
  const options: number[] = [];
  for (let i = rng.below(4); i > 0; i--) {
    const data = rng.bytes(rng.chance(0.1) ? rng.below(200) : rng.below(24));
    const code = rng.chance(0.8) ? rng.pick(OPTION_CODES) : rng.below(0x10000);
    options.push(code >>> 8, code & 0xff, data.length >>> 8, data.length & 0xff, ...data);
  }
  u16(b, options.length);
  b.bytes.push(...options);
}

/**
 * A TSIG record written by hand, not signed: names of any length (the server echoes them in its
 * error reply), any algorithm, time, MAC size and error; now and then data that is not TSIG at all.
 */
function writeRawTsig(rng: Rng, b: Builder): void {
  writeName(rng, b, rng.chance(0.3) ? nameOfLength(rng, rng.between(200, 255)) : rng.chance(0.5) ? KEY.name : randomName(rng));
  u16(b, TYPE_TSIG);
  u16(b, rng.chance(0.9) ? 255 : rng.pick(CLASSES));
  u32(b, 0);
  const rdata: Builder = { bytes: [], names: [] };
  if (rng.chance(0.1)) {
    rdata.bytes = rng.bytes(rng.below(60));
  } else {
    writeName(rng, rdata, rng.chance(0.3) ? nameOfLength(rng, rng.between(200, 255)) : rng.pick(ALGORITHM_NAMES));
    const time = rng.chance(0.5) ? Math.floor(NOW / 1000) : rng.u32();
    u16(rdata, 0);
    u32(rdata, time);
    u16(rdata, rng.pick([300, 0, 65535]));
    const mac = rng.bytes(rng.pick([0, 9, 10, 16, 32, 48, 64, 65, rng.below(100)]));
    u16(rdata, mac.length);
    rdata.bytes.push(...mac);
    u16(rdata, rng.below(0x10000)); // original id
    u16(rdata, rng.pick([0, 0, TsigError.BADSIG, TsigError.BADKEY, TsigError.BADTIME, rng.below(0x10000)]));
    const other = rng.bytes(rng.pick([0, 0, 6, rng.below(20)]));
    u16(rdata, other.length);
    rdata.bytes.push(...other);
  }
  u16(b, rdata.bytes.length);
  b.bytes.push(...rdata.bytes);
}

/** A really signed query (RFC 8945): good, late (BADTIME), forged (BADSIG) or with a key we lack. */
function signQuery(rng: Rng, b: Builder): Builder {
  const message = Uint8Array.from(b.bytes);
  const roll = rng.below(6);
  let key = KEY;
  let now = NOW + rng.between(-200, 200) * 1000;
  if (roll === 2) now = NOW + rng.pick([-1, 1]) * rng.between(301, 100_000) * 1000;
  if (roll === 3) key = FORGED_KEY;
  if (roll === 4) key = WRONG_ALGORITHM_KEY;
  if (roll === 5) key = { ...KEY, name: rng.chance(0.5) ? randomName(rng) : nameOfLength(rng, rng.between(200, 255)) };
  const signed = sign(message, key, { kind: "request" }, now).message;
  return { bytes: Array.from(signed), names: [...b.names, message.length] };
}

/** A query a client could send: always decodable (signed or not), every field chosen at random. */
export function wellFormedQuery(rng: Rng): Builder {
  const b: Builder = { bytes: [], names: [] };
  const opcode = rng.chance(0.8) ? Opcode.QUERY : rng.below(16);
  // QR is the one flag a query must not carry; 2% keep it, to check responses are never answered.
  const flags = (rng.chance(0.02) ? 0x8000 : 0) | (opcode << 11) | (rng.u32() & 0x07f0) | (rng.chance(0.2) ? rng.below(16) : 0);
  const hasQuestion = opcode === Opcode.QUERY || rng.chance(0.7);
  const qtype = rng.chance(0.9) ? rng.pick(QTYPES) : rng.below(0x10000);
  const answers = rng.chance(0.1) ? rng.between(1, 2) : 0;
  const ixfrSoa = hasQuestion && (qtype === TYPE_IXFR ? rng.chance(0.7) : rng.chance(0.02));
  const authorities = (rng.chance(0.05) ? 1 : 0) + (ixfrSoa ? 1 : 0);
  const extras = rng.chance(0.1) ? rng.between(1, 2) : 0;
  const opt = rng.chance(0.5);
  const tsig = rng.below(20); // 0: a raw TSIG record, 1-2: signed for real, else none
  u16(b, rng.below(0x10000));
  u16(b, flags);
  u16(b, hasQuestion ? 1 : 0);
  u16(b, answers);
  u16(b, authorities);
  u16(b, extras + (opt ? 1 : 0) + (tsig === 0 ? 1 : 0));
  if (hasQuestion) {
    // Transfers are only served at the apex: ask there often enough to get past NOTAUTH.
    const transfer = qtype === TYPE_AXFR || qtype === TYPE_IXFR;
    writeName(rng, b, transfer && rng.chance(0.5) ? origin : randomName(rng));
    u16(b, qtype);
    u16(b, rng.chance(0.9) ? rng.pick(CLASSES) : rng.below(0x10000));
  }
  for (let i = answers; i > 0; i--) writeRecord(rng, b, hasQuestion);
  if (ixfrSoa) writeIxfrSoa(rng, b);
  for (let i = authorities - (ixfrSoa ? 1 : 0) + extras; i > 0; i--) writeRecord(rng, b, hasQuestion);
  if (opt) writeOpt(rng, b);
  if (tsig === 0) writeRawTsig(rng, b);
  return tsig === 1 || tsig === 2 ? signQuery(rng, b) : b;
}

// ---------------------------------------------------------------------------------------------
// Mutations

const SPECIAL_BYTES = [0x00, 0xff, 0xc0, 0x3f, 0x40, 0x80];

/** A name offset when there is one (where the decoder is most fragile), else any offset. */
const nameOffset = (rng: Rng, b: Builder) =>
  b.names.length > 0 && rng.chance(0.8) ? rng.pick(b.names) : rng.below(Math.max(b.bytes.length, 1));

function setPointer(b: Builder, at: number, target: number): void {
  while (b.bytes.length < at + 2) b.bytes.push(0);
  b.bytes[at] = 0xc0 | ((target >>> 8) & 0x3f);
  b.bytes[at + 1] = target & 0xff;
}

/** A label of `length` octets (over 63 is illegal) as its wire octets. */
const rawLabel = (rng: Rng, length: number) => [length, ...Array.from({ length }, () => rng.pick([0x61, 0x42]))];

const MUTATIONS: ReadonlyArray<(rng: Rng, b: Builder) => void> = [
  function flipBit(rng, b) {
    if (b.bytes.length === 0) return;
    const at = rng.below(b.bytes.length);
    b.bytes[at] = b.bytes[at]! ^ (1 << rng.below(8));
  },
  function specialByte(rng, b) {
    const at = rng.chance(0.5) ? nameOffset(rng, b) : rng.below(b.bytes.length);
    if (at < b.bytes.length) b.bytes[at] = rng.pick(SPECIAL_BYTES);
  },
  function truncate(rng, b) {
    b.bytes.length = rng.below(b.bytes.length + 1);
  },
  function extend(rng, b) {
    b.bytes.push(...rng.bytes(rng.between(1, 40)));
  },
  function headerCount(rng, b) {
    const at = rng.pick([4, 6, 8, 10]);
    const value = rng.pick([0, 1, 2, 3, 0xffff, rng.below(0x10000)]);
    while (b.bytes.length < at + 2) b.bytes.push(0);
    b.bytes[at] = value >>> 8;
    b.bytes[at + 1] = value & 0xff;
  },
  function badPointer(rng, b) {
    const at = nameOffset(rng, b);
    const kind = rng.below(5);
    if (kind === 0) setPointer(b, at, at + rng.between(2, 40)); // forward
    else if (kind === 1) setPointer(b, at, at); // at itself
    else if (kind === 2) setPointer(b, at, rng.below(12)); // into the header
    else if (kind === 3) setPointer(b, at, rng.below(0x4000)); // anywhere
    else {
      // A loop: two pointers pointing at each other.
      const other = at + rng.between(2, 30);
      setPointer(b, at, other);
      setPointer(b, other, at);
    }
  },
  function longLabel(rng, b) {
    b.bytes.splice(nameOffset(rng, b), 0, ...rawLabel(rng, rng.between(64, 80)), 0);
  },
  function longName(rng, b) {
    // Legal labels adding up to 256..320 octets in wire form: from one past the limit upwards.
    const labels: number[] = [];
    for (let left = rng.between(256, 320) - 1; left > 1; ) {
      const length = Math.min(63, left - 1);
      labels.push(...rawLabel(rng, length));
      left -= 1 + length;
    }
    b.bytes.splice(nameOffset(rng, b), 0, ...labels, 0);
  },
  function labelLength(rng, b) {
    // A length octet in the reserved 0x40..0xbf range, or one running past the end.
    const at = nameOffset(rng, b);
    if (at < b.bytes.length) b.bytes[at] = rng.chance(0.5) ? rng.between(0x40, 0xbf) : rng.between(1, 63);
  },
  function insertOrDelete(rng, b) {
    const at = rng.below(b.bytes.length + 1);
    if (rng.chance(0.5)) b.bytes.splice(at, 0, ...rng.bytes(rng.between(1, 8)));
    else b.bytes.splice(at, rng.between(1, 8));
  },
];

function mutate(rng: Rng, b: Builder): void {
  for (let i = rng.between(1, 4); i > 0; i--) rng.pick(MUTATIONS)(rng, b);
}

// ---------------------------------------------------------------------------------------------
// Cases

export type CaseKind = "random" | "valid" | "mutated";

export interface FuzzCase {
  kind: CaseKind;
  packet: Uint8Array;
  /** Where the packet comes from: the address transfers are allowed to, or another. */
  client: string;
}

/** Case `index` under `seed`: the same on every run. */
export function fuzzCase(seed: number, index: number): FuzzCase {
  const rng = Rng.forCase(seed, index);
  const client = rng.chance(0.5) ? TRUSTED_CLIENT : OTHER_CLIENT;
  const roll = rng.below(10);
  if (roll < 2) return { kind: "random", packet: Uint8Array.from(rng.bytes(rng.below(601))), client };
  const b = wellFormedQuery(rng);
  if (roll < 6) return { kind: "valid", packet: Uint8Array.from(b.bytes), client };
  mutate(rng, b);
  return { kind: "mutated", packet: Uint8Array.from(b.bytes), client };
}

// ---------------------------------------------------------------------------------------------
// What the server must answer

export type Outcome =
  | "null" | "FORMERR" | "NOERROR" | "NXDOMAIN" | "REFUSED" | "NOTIMP" | "BADVERS" | "NOTAUTH" | "SERVFAIL" | "other";

const RCODE_OUTCOMES = new Map<number, Outcome>([
  [Rcode.NOERROR, "NOERROR"],
  [Rcode.FORMERR, "FORMERR"],
  [Rcode.SERVFAIL, "SERVFAIL"],
  [Rcode.NXDOMAIN, "NXDOMAIN"],
  [Rcode.NOTIMP, "NOTIMP"],
  [Rcode.REFUSED, "REFUSED"],
  [Rcode.BADVERS, "BADVERS"],
  [RCODE_NOTAUTH, "NOTAUTH"],
]);

const HEADER_LENGTH = 12;
const CLASSIC_UDP_SIZE = 512;
const TCP_MAX_MESSAGE = 65535;
const CLASS_IN = 1;

type Transport = "udp" | "tcp";
/** An OPT record with no options: root owner, type, class, TTL, RDLENGTH. */
const OPT_RECORD_LENGTH = 11;

const errorText = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** What decodeQuery made of the packet: a query, a FormatError, or something it must not throw. */
type Decoded = { query: Query } | { formatError: true; edns: boolean } | { crash: unknown };

function decode(packet: Uint8Array): Decoded {
  try {
    return { query: decodeQuery(packet) };
  } catch (e) {
    return e instanceof FormatError ? { formatError: true, edns: e.edns } : { crash: e };
  }
}

/** The reply a decoded query must get, as server.ts and tsig.ts document it. */
interface Expectation {
  /** A TSIG record that does not read: FORMERR as a bare header, like an undecodable query. */
  bareFormErr: boolean;
  rcodes: readonly number[];
  /** none: no TSIG in the reply; unsigned: a TSIG error record without a MAC; signed: a MAC over the reply. */
  tsig: "none" | "unsigned" | "signed";
  requestMac: Uint8Array | null;
  /** When the reply is BADTIME: the request's Time Signed (ms), which the reply is signed at (RFC 8945 section 5.2.3). */
  badTimeAt?: number;
}

/**
 * A signed query first (RFC 8945 section 5.2): unreadable TSIG or a MAC of a length the RFC
 * forbids is FORMERR, a bad signature NOTAUTH
 * (signed only for BADTIME and BADTRUNC, found after the MAC verified). Then the decision points of server.ts, in order.
 */
function expectation(query: Query, packet: Uint8Array, client: string, transport: Transport, problems: string[]): Expectation {
  if (query.tsigStart < 0) return { bareFormErr: false, rcodes: decisions(query, packet, client, transport, null), tsig: "none", requestMac: null };
  let record: ReturnType<typeof readTsig>;
  try {
    record = readTsig(packet, query.tsigStart);
  } catch (e) {
    if (!(e instanceof FormatError)) problems.push(`readTsig threw ${errorText(e)}`);
    return { bareFormErr: true, rcodes: [Rcode.FORMERR], tsig: "none", requestMac: null };
  }
  const verdict = verify(packet, record, findKey, { kind: "request" }, NOW);
  // A MAC shorter than RFC 8945 section 5.2.2.1 allows, or longer than the hash: malformed.
  if (verdict.error === TsigError.FORMERR) return { bareFormErr: true, rcodes: [Rcode.FORMERR], tsig: "none", requestMac: null };
  if (verdict.error !== 0) {
    const signed = (verdict.error === TsigError.BADTIME || verdict.error === TsigError.BADTRUNC) && verdict.key !== null;
    const badTimeAt = verdict.error === TsigError.BADTIME ? record.timeSigned * 1000 : undefined;
    return { bareFormErr: false, rcodes: [RCODE_NOTAUTH], tsig: signed ? "signed" : "unsigned", requestMac: record.mac, badTimeAt };
  }
  return { bareFormErr: false, rcodes: decisions(query, packet, client, transport, verdict.key!.name), tsig: "signed", requestMac: record.mac };
}

/**
 * server.ts's decision points after FORMERR: BADVERS (EDNS version above 0), NOTIMP (opcode other
 * than QUERY, no question, MAILA/MAILB), REFUSED (class other than IN), transfers (NOTAUTH away
 * from an apex, REFUSED when the policy says no or for AXFR over UDP), REFUSED (no zone), then
 * the zone's NOERROR or NXDOMAIN. The gate (allowAll) never intervenes.
 */
function hasAuthoritySoa(packet: Uint8Array): boolean {
  try {
    return decodeMessage(packet).authority.some((r) => r.type === RRType.SOA);
  } catch {
    return false;
  }
}

function decisions(query: Query, packet: Uint8Array, client: string, transport: Transport, keyName: Name | null): readonly number[] {
  const q = query.question;
  const { zones } = fuzzContext();
  if (query.edns && query.edns.version > 0) return [Rcode.BADVERS];
  if (query.opcode !== Opcode.QUERY || q === null || q.type === TYPE_MAILA || q.type === TYPE_MAILB) return [Rcode.NOTIMP];
  if (q.class !== CLASS_IN) return [Rcode.REFUSED];
  const zone = zones.find(q.name);
  if (q.type === TYPE_AXFR || q.type === TYPE_IXFR) {
    if (zone === null || !nameEquals(zone.origin, q.name)) return [RCODE_NOTAUTH];
    if (!policy.allowed(client, zone.origin, keyName) || (transport === "udp" && q.type === TYPE_AXFR)) return [Rcode.REFUSED];
    // An IXFR's records are read whole only then (for its SOA): malformed record data, or no SOA
    // in authority (RFC 1995 section 3), is FORMERR.
    if (q.type === TYPE_IXFR && !hasAuthoritySoa(packet)) return [Rcode.FORMERR];
    return [Rcode.NOERROR];
  }
  if (zone === null) return [Rcode.REFUSED];
  return [Rcode.NOERROR, Rcode.NXDOMAIN];
}

// ---------------------------------------------------------------------------------------------
// Checks

const sameOctets = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const sameName = (a: Name, b: Name) => a.length === b.length && a.every((label, i) => sameOctets(label, b[i]!));

/** Checks the first reply to `packet` over `transport`; pushes what is wrong; returns the outcome. */
function checkReply(
  packet: Uint8Array,
  client: string,
  decoded: Decoded,
  transport: Transport,
  reply: Uint8Array | null,
  problems: string[],
): Outcome {
  const bad = (what: string) => problems.push(`${transport}: ${what}`);
  // Documented silence: no whole header, or a response (QR set). The gate never drops here.
  const silent = packet.length < HEADER_LENGTH || (packet[2]! & 0x80) !== 0;
  if (reply === null) {
    if (!silent) bad("no reply to a query with a header and QR clear");
    return "null";
  }
  if (silent) bad(packet.length < HEADER_LENGTH ? "a reply to less than a header" : "a reply to a packet with QR set");

  const query = "query" in decoded ? decoded.query : null;
  const msg = checkHeader(packet, query, transport, reply, bad);
  if (msg === null) return "other";
  const outcome = RCODE_OUTCOMES.get(msg.rcode) ?? "other";
  if (outcome === "SERVFAIL") bad("SERVFAIL: an unexpected exception inside the server");

  const expected = query ? expectation(query, packet, client, transport, problems) : null;
  if (expected === null || expected.bareFormErr) {
    // encodeFormErr (message.ts): the header, no question; an OPT record alone when the query
    // held one (RFC 6891 section 7), else nothing.
    if (msg.rcode !== Rcode.FORMERR) bad(`rcode ${msg.rcode} for a malformed query, not FORMERR`);
    const withOpt = "formatError" in decoded ? decoded.edns : query !== null && query.edns !== null;
    const length = HEADER_LENGTH + (withOpt ? OPT_RECORD_LENGTH : 0);
    if (reply.length !== length) bad(`a FORMERR reply of ${reply.length} octets, not ${length}${withOpt ? " (the header and an OPT)" : " (a bare header)"}`);
    if (withOpt && (msg.edns?.udpPayloadSize !== 1232 || msg.edns.version !== 0 || msg.additional.length !== 0)) bad("a FORMERR reply whose OPT record is not ours");
    return outcome;
  }
  if (!expected.rcodes.includes(msg.rcode)) bad(`rcode ${msg.rcode}, expected ${expected.rcodes.join(" or ")}`);
  checkQuestion(query!, msg, reply, bad);
  checkEdns(query!, msg, bad);
  const tsig = checkTsig(expected, msg, reply, bad);
  const records = msg.answer.length + msg.authority.length + msg.additional.length - (tsig ? 1 : 0);
  if (msg.rcode !== Rcode.NOERROR && msg.rcode !== Rcode.NXDOMAIN && records > 0) bad(`records in a ${outcome} reply`);
  return outcome;
}

/** Parses the reply and checks what every reply has: QR, the query's id, opcode and RD, its size. */
function checkHeader(
  packet: Uint8Array,
  query: Query | null,
  transport: Transport,
  reply: Uint8Array,
  bad: (what: string) => void,
): Message | null {
  let msg: Message;
  try {
    msg = decodeMessage(reply);
  } catch (e) {
    bad(`the reply does not parse (${errorText(e)}): ${Buffer.from(reply).toString("hex")}`);
    return null;
  }
  if (!msg.qr) bad("QR is clear in the reply");
  if (msg.id !== ((packet[0]! << 8) | packet[1]!)) bad(`id ${msg.id} is not the query's`);
  if (msg.opcode !== ((packet[2]! >> 3) & 0xf)) bad(`opcode ${msg.opcode} is not the query's`);
  if (msg.rd !== ((packet[2]! & 1) === 1)) bad("RD is not the query's");
  const limit =
    transport === "tcp"
      ? TCP_MAX_MESSAGE
      : query?.edns
        ? Math.max(CLASSIC_UDP_SIZE, Math.min(query.edns.udpPayloadSize, EDNS_PAYLOAD_SIZE))
        : CLASSIC_UDP_SIZE;
  if (reply.length > limit) bad(`${reply.length} octets, over the limit of ${limit}`);
  // The fuzz zone's largest answer is a few kilobytes: TCP never needs to truncate it.
  if (transport === "tcp" && msg.tc) bad("TC set over TCP");
  return msg;
}

/** The question echoed exactly: the qname octets as received (case kept), type and class. */
function checkQuestion(query: Query, msg: Message, reply: Uint8Array, bad: (what: string) => void): void {
  const q = query.question;
  if (q === null) {
    if (msg.questions.length !== 0) bad("a question in the reply to a query without one");
    return;
  }
  const echoed = msg.questions[0];
  if (msg.questions.length !== 1 || echoed === undefined) {
    bad(`${msg.questions.length} questions in the reply, not 1`);
    return;
  }
  const raw = query.rawQname!;
  if (!sameName(echoed.name, q.name) || !sameOctets(reply.subarray(HEADER_LENGTH, HEADER_LENGTH + raw.length), raw)) {
    bad("the qname is not echoed octet for octet");
  }
  if (echoed.type !== q.type || echoed.class !== q.class) bad("the qtype or qclass is not echoed");
}

/** An OPT record iff the query had one: version 0, our payload size, the query's DO bit, no options. */
function checkEdns(query: Query, msg: Message, bad: (what: string) => void): void {
  if ((msg.edns === null) !== (query.edns === null)) {
    bad(msg.edns ? "an OPT record in the reply to a query without one" : "no OPT record in the reply to an EDNS query");
    return;
  }
  if (msg.edns === null || query.edns === null) return;
  if (msg.edns.version !== 0) bad(`EDNS version ${msg.edns.version} in the reply`);
  if (msg.edns.udpPayloadSize !== EDNS_PAYLOAD_SIZE) bad(`EDNS payload ${msg.edns.udpPayloadSize} in the reply`);
  if (msg.edns.dnssecOk !== query.edns.dnssecOk) bad("the DO bit is not echoed");
  if (msg.edns.options.length !== 0) bad("EDNS options in the reply");
}

/**
 * A TSIG record last iff the query was signed: without a MAC for an error other than BADTIME
 * and BADTRUNC, else signed with our key over the reply, chained to the request's MAC. True when
 * there is one.
 */
function checkTsig(expected: Expectation, msg: Message, reply: Uint8Array, bad: (what: string) => void): boolean {
  const last = msg.additional.at(-1);
  const present = last !== undefined && last.type === TYPE_TSIG;
  // Where not even an empty signed reply fits the client's size, the server answers TC with no
  // records and no TSIG, and the client asks again over TCP.
  const noRoom = !present && msg.tc && msg.answer.length + msg.authority.length + msg.additional.length === 0;
  if (present !== (expected.tsig !== "none") && !noRoom) {
    bad(present ? "a TSIG record in the reply to an unsigned query" : "no TSIG record in the reply to a signed query");
    return present;
  }
  if (!present) return false;
  try {
    // Appended uncompressed, so the record's length is its owner's wire length, 10 and its data.
    const record = readTsig(reply, reply.length - (wireLength(last.name) + 10 + last.rdata.length));
    if (expected.tsig === "unsigned" && (record.mac.length !== 0 || record.error === 0)) bad("a TSIG error record with a MAC or without an error");
    if (expected.tsig === "signed") {
      const chain: Chain = { kind: "response", requestMac: expected.requestMac! };
      // A BADTIME reply carries the request's time, so that the client's clock finds it in time.
      const verdict = verify(reply, record, findKey, chain, expected.badTimeAt ?? NOW);
      if (verdict.error !== 0) bad(`the reply's signature does not verify (TSIG error ${verdict.error})`);
    }
  } catch (e) {
    bad(`the reply's TSIG record does not read (${errorText(e)})`);
  }
  return true;
}

/** Every check on one packet: the decoders, then every reply message over each transport. */
export function checkPacket(packet: Uint8Array, client: string): { udp: Outcome; tcp: Outcome; problems: string[] } {
  const problems: string[] = [];
  const decoded = decode(packet);
  if ("crash" in decoded) problems.push(`decodeQuery threw ${errorText(decoded.crash)}`);
  try {
    decodeMessage(packet);
  } catch (e) {
    if (!(e instanceof FormatError)) problems.push(`decodeMessage threw ${errorText(e)}`);
  }
  const outcome = (transport: Transport): Outcome => {
    let replies: Uint8Array[];
    try {
      replies = answerAll(packet, client, transport, fuzzContext());
    } catch (e) {
      problems.push(`${transport}: the answer path threw ${errorText(e)}`);
      return "other";
    }
    // The listeners' path (with its reply cache) must give the same octets, also when the
    // question was asked before in another case and ID.
    try {
      const cached = cachingAnswerer().answer(packet, client, transport);
      const first = replies[0] ?? null;
      if ((cached === null) !== (first === null) || (cached !== null && first !== null && !sameOctets(cached, first))) {
        problems.push(`${transport}: the caching answerer's reply differs from answerQuery's`);
      }
    } catch (e) {
      problems.push(`${transport}: the caching answerer threw ${errorText(e)}`);
    }
    // The later messages of a transfer: each one a well-formed reply of its own.
    const query = "query" in decoded ? decoded.query : null;
    for (const more of replies.slice(1)) checkHeader(packet, query, transport, more, (what) => problems.push(`${transport}: ${what}`));
    return checkReply(packet, client, decoded, transport, replies[0] ?? null, problems);
  };
  return { udp: outcome("udp"), tcp: outcome("tcp"), problems };
}

// ---------------------------------------------------------------------------------------------
// Running

export interface FuzzFailure {
  index: number;
  kind: CaseKind;
  client: string;
  packetHex: string;
  problems: string[];
}

export type Histogram = Record<Outcome, number>;

export interface FuzzResult {
  cases: number;
  /** Every failing case counts; only the first `keepFailures` are kept in `failures`. */
  failureCount: number;
  failures: FuzzFailure[];
  /** Outcomes of the first reply per case, by transport. */
  histogram: { udp: Histogram; tcp: Histogram };
  kinds: Record<CaseKind, number>;
  seconds: number;
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** The first case index (to run a long fuzz in chunks). Default 0. */
  first?: number;
  keepFailures?: number;
}

export const emptyHistogram = (): Histogram => ({
  null: 0,
  FORMERR: 0,
  NOERROR: 0,
  NXDOMAIN: 0,
  REFUSED: 0,
  NOTIMP: 0,
  BADVERS: 0,
  NOTAUTH: 0,
  SERVFAIL: 0,
  other: 0,
});

/** Runs cases first..first+cases-1 of `seed`; a failing case is counted, never thrown. */
export function runFuzz(options: FuzzOptions): FuzzResult {
  fuzzContext();
  const first = options.first ?? 0;
  const keep = options.keepFailures ?? 20;
  const result: FuzzResult = {
    cases: options.cases,
    failureCount: 0,
    failures: [],
    histogram: { udp: emptyHistogram(), tcp: emptyHistogram() },
    kinds: { random: 0, valid: 0, mutated: 0 },
    seconds: 0,
  };
  const started = performance.now();
  for (let index = first; index < first + options.cases; index++) {
    const { kind, packet, client } = fuzzCase(options.seed, index);
    const { udp, tcp, problems } = checkPacket(packet, client);
    result.kinds[kind]++;
    result.histogram.udp[udp]++;
    result.histogram.tcp[tcp]++;
    if (problems.length === 0) continue;
    result.failureCount++;
    if (result.failures.length < keep) {
      result.failures.push({ index, kind, client, packetHex: Buffer.from(packet).toString("hex"), problems });
    }
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/** Adds `more` (a later chunk of the same run) into `into`. */
export function mergeResults(into: FuzzResult, more: FuzzResult, keepFailures = 20): void {
  into.cases += more.cases;
  into.failureCount += more.failureCount;
  into.failures.push(...more.failures.slice(0, Math.max(0, keepFailures - into.failures.length)));
  for (const t of ["udp", "tcp"] as const) {
    for (const key of Object.keys(into.histogram[t]) as Outcome[]) into.histogram[t][key] += more.histogram[t][key];
  }
  for (const key of Object.keys(into.kinds) as CaseKind[]) into.kinds[key] += more.kinds[key];
  into.seconds += more.seconds;
}
