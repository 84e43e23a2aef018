/**
 * The filtering resolver: a caching forwarder for the mesh's clients and the local host, with
 * domain blocklists (see blocklist.ts), so that the appliance is also the DNS resolver of the
 * servers behind it. It is a separate listener from the authoritative server (server.ts), which
 * must stay non-recursive: the two answer different questions to different clients.
 *
 * A query goes through, in order:
 * 1. the client check — only `allowedClients` (loopback by default) are answered; everyone else
 *    gets nothing over UDP and a closed connection over TCP: an open resolver is an
 *    amplification weapon, and a stranger's open connections would take the allowed clients'
 *    slots;
 * 2. the local zones (`local`), never forwarded — an answer ending in a CNAME out of its zone
 *    gets the target resolved through these same steps and appended (stub resolvers do not
 *    follow CNAMEs); the names a record provider tells only some clients (`horizon`: the
 *    mesh's) as the authoritative server tells them, REFUSED to a client not told them;
 * 3. the special-use names, never forwarded either (specialUseAnswer): localhost, invalid.,
 *    test., onion., the reverse zones of special addresses; and the private names — the reverse
 *    zones of private addresses, local., home.arpa., single-label names — unless
 *    `resolver_private_names` is "forward";
 * 4. the blocklist (minus the allowlist): NXDOMAIN with a synthesized SOA, or a sinkhole address,
 *    always with a short TTL so that a client's negative cache forgets an unblocked name soon;
 * 5. the cache, keyed by question, TTLs counted down, negative answers kept per RFC 2308;
 * 6. the upstreams, in order (one that gave no reply lately tried last) — and when none is configured, REFUSED: no code path then creates
 *    a socket towards anything (`outbound` is not even held), so nothing leaves the host.
 *
 * Forwarding: a fresh connected UDP socket per exchange (an ephemeral source port the kernel
 * picks at random) and a random query ID; a reply counts only when it comes from the upstream's
 * address and port, carries our ID, and repeats our question — anything else is ignored and the
 * exchange keeps waiting until its timeout (anti-spoofing, as RFC 5452 asks). A truncated reply
 * is asked again over TCP. No answer, or an rcode other than NOERROR/NXDOMAIN, moves on to the
 * next upstream; when none answers the client gets SERVFAIL. Concurrent identical questions
 * share one exchange. Answers are cached whole, per question, so an upstream's extra records
 * can never answer another question (no cache poisoning through the additional section).
 *
 * A CNAME in a forwarded answer that points into a blocked domain blocks the answer too, as
 * AdGuard Home does: otherwise `tracker.shop.example CNAME shop.tracker.example` walks around
 * the list.
 */
import type { Socket, TCPSocketConnectOptions, udp } from "bun";
import type { Logger } from "../../src/log.ts";
import { cidrContains, clientKey, formatIp, isLoopback, parseClientCidr, parseIp, unmapIpv4, type Cidr } from "../../src/net/ip.ts";
import type { Stop } from "../../src/plugin.ts";
import { DomainSet } from "./blocklist.ts";
import {
  decodeMessage,
  decodeQuery,
  encodeBareServfail,
  encodeFormErr,
  FormatError,
  encodeResponse,
  Opcode,
  Rcode,
  type Message,
  type Query,
  type Question,
  type ResourceRecord,
  type Response,
} from "./message.ts";
import { lowerName, nameEquals, nameFromWire, nameToText, nameToWire, parseName, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import { ClientSlots, framed, readMessages, writeOrQueue, type StreamState } from "./tcp-stream.ts";
import { touchesRestricted, withoutHidden, type Horizon } from "./horizon.ts";
import type { ZoneSource } from "./server.ts";
import { inView, type ViewSerialSource } from "./view-serials.ts";
import { MAX_CNAME_CHAIN, MAX_TTL, type Answer, type RR, type Zone } from "./zone.ts";

// ---------------------------------------------------------------------------------------------
// Options

export interface Upstream {
  /** An IP literal: resolving a host name would need the resolver being configured. */
  address: string;
  port: number;
}

/** How a blocked name is answered. The sinkhole defaults are 0.0.0.0 and ::. */
export type BlockMode = { kind: "nxdomain" } | { kind: "sinkhole"; ipv4?: string; ipv6?: string };

/**
 * Where forwarded queries' sockets come from: Bun's by default. Tests inject a counting one; with
 * no upstreams configured it is never called (the resolver does not even keep it).
 */
export interface Outbound {
  udpSocket(options: udp.ConnectSocketOptions<"uint8array">): Promise<udp.ConnectedSocket<"uint8array">>;
  connect(options: TCPSocketConnectOptions<undefined>): Promise<Socket<undefined>>;
}

// Assigned, not wrapped: the type picks the connected overload of Bun.udpSocket.
const connectedUdpSocket: Outbound["udpSocket"] = Bun.udpSocket;

export const bunOutbound: Outbound = {
  udpSocket: (options) => connectedUdpSocket(options),
  connect: (options) => Bun.connect(options),
};

export interface ResolverOptions {
  udp: Array<{ address: string; port: number }>;
  tcp: Array<{ address: string; port: number }>;
  /** Tried in order. Empty (the default in configuration): nothing is ever forwarded. */
  upstreams: Upstream[];
  blocklist: DomainSet;
  /** Exceptions: a name matched here is never blocked, whatever the blocklist says. */
  allowlist?: DomainSet;
  blockMode: BlockMode;
  /** TTL of blocked answers and of their SOA's minimum, in seconds. Default 10. */
  blockTtl?: number;
  /** Cached answers kept at most (least recently used go first). Default 10000. */
  cacheSize?: number;
  /** Longest time an answer is reused, in seconds (TTLs in replies are capped to it too). Default 86400. */
  cacheMaxTtl?: number;
  /** Who may ask. Default: loopback only. See `allowClients`. */
  allowedClients?: (client: string) => boolean;
  /** Zones answered from here and never forwarded (the appliance's own names). */
  local?: ZoneSource;
  /**
   * Names told only to some clients (split horizon: the mesh's), as the authoritative server
   * tells them: REFUSED to a client not told them, and left out of what a local zone's answer
   * carries along. Absent: every name to every client let in.
   */
  horizon?: Horizon;
  /** The serial each client is told in the SOA of a local zone with names some clients are not told (view-serials.ts), as the authoritative server tells it. */
  viewSerials?: ViewSerialSource;
  /** Private names (PRIVATE_ZONES, single-label names): answered here ("local", the default) or forwarded. */
  privateNames?: PrivateNames;
  log: Logger;
  /**
   * Milliseconds on a clock that never goes back (performance.now, the default), for the cache's
   * ages: on the wall clock, a step back served answers stale for as long as the step.
   */
  now?: () => number;
  /** How long one exchange with one upstream may take. Default 2000. */
  upstreamTimeoutMs?: number;
  outbound?: Outbound;
  /** A TCP connection with nothing received for this long (and nothing pending) is closed. Default 10000. */
  tcpIdleMs?: number;
  /** TCP connections beyond this many are closed at once. Default 256. */
  maxTcpConnections?: number;
}

/** An option the resolver cannot use, naming it: a failed bind is any other error. */
export class ResolverOptionError extends Error {
  constructor(
    readonly option: "upstreams" | "blockMode" | "allowedClients",
    message: string,
  ) {
    super(message);
    this.name = "ResolverOptionError";
  }
}

export interface ResolverStats {
  /** Packets received that look like queries (a header, QR clear). */
  queries: number;
  /** Answered from the blocklist (names, and answers whose CNAME led into a blocked domain). */
  blocked: number;
  /** Answered from the local zones. */
  local: number;
  cacheHits: number;
  cacheMisses: number;
  /** Questions sent upstream (one per cache miss not already being asked, whatever the tries). */
  forwarded: number;
  /** Exchanges with one upstream that gave no usable answer (timeout, error, unusable rcode). */
  upstreamFailures: number;
  /** REFUSED: clients not allowed, nothing to forward to, classes and types not served. */
  refused: number;
  /** SERVFAIL: no upstream answered, or something unexpected went wrong. */
  servfail: number;
  /** Answers in the cache now. */
  cached: number;
}

export interface Resolver {
  /** The bound ports, in the order of `options.udp` / `options.tcp` (port 0 resolved). */
  udpPorts: number[];
  tcpPorts: number[];
  stop: Stop;
  stats(): ResolverStats;
}

// ---------------------------------------------------------------------------------------------
// Clients

/** A client check: loopback, plus every address inside `cidrs` (the mesh's prefixes). Throws on a bad prefix. */
export function allowClients(cidrs: readonly string[]): (client: string) => boolean {
  const prefixes: Cidr[] = cidrs.map((text) => {
    const cidr = parseClientCidr(text); // ::ffff:192.0.2.0/120 is the IPv4 prefix it spells: clients are matched unmapped
    if (cidr === null) throw new ResolverOptionError("allowedClients", `${JSON.stringify(text)} is not an address prefix`);
    return cidr;
  });
  // An address Bun reports in a form we cannot read (a scoped link-local one) is refused.
  return (client) => {
    const ip = parseIp(client);
    return ip !== null && (isLoopback(ip) || prefixes.some((prefix) => cidrContains(prefix, ip)));
  };
}

export const loopbackOnly = allowClients([]);

// ---------------------------------------------------------------------------------------------
// Replies

/** Our EDNS UDP payload size, as the authoritative server's: advertised and the UDP cap. */
const EDNS_PAYLOAD_SIZE = 1232;
const CLASSIC_UDP_SIZE = 512;
const TCP_MAX_MESSAGE = 65535;
const HEADER_LENGTH = 12;
const CLASS_IN = 1;
const FLAG_RA = 0x80;
const TYPE_IXFR = 251;
const TYPE_ANY = 255;
const TYPE_AXFR = 252;
const TYPE_MAILB = 253;
const TYPE_MAILA = 254;

interface Sections {
  answer: ResourceRecord[];
  authority: ResourceRecord[];
  additional: ResourceRecord[];
}

const NO_RECORDS: Sections = { answer: [], authority: [], additional: [] };

/** The reply to `query`, echoing its question (and its case) and, when it had one, an OPT record. */
function encode(query: Query, rcode: number, aa: boolean, sections: Sections, limit: number): Uint8Array {
  const response: Response = {
    id: query.id,
    opcode: query.opcode,
    rcode,
    aa,
    tc: false,
    rd: query.rd,
    ra: false,
    question: query.question,
    answer: sections.answer,
    authority: sections.authority,
    additional: sections.additional,
    // DO is copied from the query (RFC 3225 §3). Upstreams are never asked with it, so no answer
    // here carries signatures: a client cannot validate DNSSEC through this resolver.
    edns: query.edns ? { udpPayloadSize: EDNS_PAYLOAD_SIZE, dnssecOk: query.edns.dnssecOk } : null,
  };
  if (query.rawQname) response.qnameWire = query.rawQname;
  const wire = encodeResponse(response, limit);
  // encodeResponse writes an authoritative server's header; here recursion is available.
  wire[3]! |= FLAG_RA;
  return wire;
}

/** What blocked names are answered with, checked and in wire form. */
interface Blocking {
  nxdomain: boolean;
  ipv4: Uint8Array;
  ipv6: Uint8Array;
  ttl: number;
  /** The SOA RDATA of the synthesized negative answers (its minimum is `ttl`). */
  soa: Uint8Array;
}

const SOA_MNAME = nameToWire(parseName("citadel.invalid.", null));
const SOA_RNAME = nameToWire(parseName("hostmaster.citadel.invalid.", null));

function blocking(mode: BlockMode, ttl: number): Blocking {
  const address = (text: string | undefined, fallback: string, family: 4 | 6): Uint8Array => {
    const ip = parseIp(text ?? fallback);
    if (ip === null || ip.family !== family) throw new ResolverOptionError("blockMode", `the sinkhole's IPv${family} address ${JSON.stringify(text)} is not one`);
    return ip.bytes;
  };
  const sinkhole: { ipv4?: string; ipv6?: string } = mode.kind === "sinkhole" ? mode : {};
  return {
    nxdomain: mode.kind === "nxdomain",
    ipv4: address(sinkhole.ipv4, "0.0.0.0", 4),
    ipv6: address(sinkhole.ipv6, "::", 6),
    ttl,
    // serial 1, refresh 1800, retry 900, expire 604800, minimum = the block TTL
    soa: soaRdata(SOA_MNAME, SOA_RNAME, [1, 1800, 900, 604800, ttl]),
  };
}

/** SOA RDATA: the two names in wire form, then serial, refresh, retry, expire and minimum. */
function soaRdata(mname: Uint8Array, rname: Uint8Array, numbers: readonly [number, number, number, number, number]): Uint8Array {
  const soa = new Uint8Array(mname.length + rname.length + 20);
  soa.set(mname);
  soa.set(rname, mname.length);
  const view = new DataView(soa.buffer, mname.length + rname.length);
  numbers.forEach((value, i) => view.setUint32(4 * i, value));
  return soa;
}

/**
 * A blocked name's answer (AA clear: it is a policy, not the domain's data): NXDOMAIN, or the
 * sinkhole address for A and AAAA and NODATA for other types. Negative answers carry the SOA,
 * owned by the qname, whose short minimum bounds how long clients cache them.
 */
function blockedReply(query: Query, how: Blocking, limit: number): Uint8Array {
  const q = query.question!;
  const soa: ResourceRecord = { name: q.name, type: RRType.SOA, class: CLASS_IN, ttl: how.ttl, rdata: how.soa };
  if (how.nxdomain) return encode(query, Rcode.NXDOMAIN, false, { ...NO_RECORDS, authority: [soa] }, limit);
  const address = q.type === RRType.A ? how.ipv4 : q.type === RRType.AAAA ? how.ipv6 : null;
  if (address === null) return encode(query, Rcode.NOERROR, false, { ...NO_RECORDS, authority: [soa] }, limit);
  const record: ResourceRecord = { name: q.name, type: q.type, class: CLASS_IN, ttl: how.ttl, rdata: address };
  return encode(query, Rcode.NOERROR, false, { ...NO_RECORDS, answer: [record] }, limit);
}

// ---------------------------------------------------------------------------------------------
// Names answered here: special-use and private names

/**
 * Zones whose names mean nothing on any network, answered here always (empty: NXDOMAIN below
 * the apex, NODATA at it), as Unbound's default local zones are: the reverse zones of 0/8,
 * 127/8, the documentation networks, 255.255.255.255, :: and ::1 (RFC 6303 §4), and invalid.,
 * test. (RFC 6761 §6.2, §6.4) and onion. (RFC 7686). localhost. and the names below it are the
 * loopback addresses (RFC 6761 §6.3).
 */
const SPECIAL_ZONES = DomainSet.from([
  "0.in-addr.arpa",
  "127.in-addr.arpa",
  "2.0.192.in-addr.arpa",
  "100.51.198.in-addr.arpa",
  "113.0.203.in-addr.arpa",
  "255.255.255.255.in-addr.arpa",
  `${"0.".repeat(32)}ip6.arpa`,
  `1.${"0.".repeat(31)}ip6.arpa`,
  "8.b.d.0.1.0.0.2.ip6.arpa",
  "invalid",
  "test",
  "onion",
]);

/**
 * Names that mean something only on a local network: the reverse zones of private addresses
 * (RFC 6303 §4: 10/8, 172.16/12, 192.168/16, 169.254/16, fc00::/7, fe80::/10; and 100.64/10,
 * the shared address space the mesh uses, RFC 7793), local. (mDNS, RFC 6762 §3), home.arpa.
 * (RFC 8375) — and single-label names asked for an address (`wpad`, `printer`). Asking a
 * public upstream tells it what is on the local network, so by default they are answered here
 * (`[dns] resolver_private_names = "local"`, as AdGuard Home does without private resolvers and
 * dnsmasq with bogus-priv and domain-needed); an upstream that serves them (an Active Directory
 * or a home router's DNS) is asked with "forward".
 */
const PRIVATE_ZONES = DomainSet.from([
  "10.in-addr.arpa",
  ...Array.from({ length: 16 }, (_, i) => `${16 + i}.172.in-addr.arpa`),
  "168.192.in-addr.arpa",
  ...Array.from({ length: 64 }, (_, i) => `${64 + i}.100.in-addr.arpa`),
  "254.169.in-addr.arpa",
  "c.f.ip6.arpa",
  "d.f.ip6.arpa",
  "8.e.f.ip6.arpa",
  "9.e.f.ip6.arpa",
  "a.e.f.ip6.arpa",
  "b.e.f.ip6.arpa",
  "local",
  "home.arpa",
]);

/** Where the names of PRIVATE_ZONES (and single-label names) are answered: here, or by the upstreams. */
export type PrivateNames = "local" | "forward";
const LOCALHOST = DomainSet.from(["localhost"]);
/** The loopback addresses' PTR names, answered localhost. (as Unbound does). */
const LOOPBACK_PTR = new Set(["1.0.0.127.in-addr.arpa.", `1.${"0.".repeat(31)}ip6.arpa.`]);
/** RFC 6303 §3's SOA timers; its minimum bounds how long clients keep the negative answers. */
const SPECIAL_TTL = 10800;
const SOA_NOBODY = nameToWire(parseName("nobody.invalid.", null));
const LOCALHOST_NAME = parseName("localhost.", null);
const LOOPBACK_V4 = Uint8Array.of(127, 0, 0, 1);
const LOOPBACK_V6 = parseIp("::1")!.bytes;

/**
 * The answer to `q` when its name is special-use (SPECIAL_ZONES) or, unless `privateNames` is
 * "forward", private (PRIVATE_ZONES) or a single-label name asked for its address: never a
 * public name, so NXDOMAIN, as dnsmasq's domain-needed does. Null for every other name. AA is
 * set: these zones are ours.
 */
function specialUseAnswer(q: Question, privateNames: PrivateNames): AnswerOutcome | null {
  const loopback = LOCALHOST.match(q.name);
  if (loopback !== null) return loopbackAnswer(q);
  const zone = SPECIAL_ZONES.match(q.name) ?? (privateNames === "local" ? PRIVATE_ZONES.match(q.name) : null);
  if (zone !== null) {
    const apex = parseName(`${zone}.`, null);
    const soa: ResourceRecord = { name: apex, type: RRType.SOA, class: CLASS_IN, ttl: SPECIAL_TTL, rdata: specialSoa(apex) };
    if (LOOPBACK_PTR.has(nameToText(q.name).toLowerCase())) {
      const localhost: ResourceRecord = { name: q.name, type: RRType.PTR, class: CLASS_IN, ttl: SPECIAL_TTL, rdata: nameToWire(LOCALHOST_NAME) };
      return q.type === RRType.PTR || q.type === TYPE_ANY ? specialOutcome(Rcode.NOERROR, [localhost], []) : specialOutcome(Rcode.NOERROR, [], [soa]);
    }
    if (q.name.length > apex.length) return specialOutcome(Rcode.NXDOMAIN, [], [soa]);
    return q.type === RRType.SOA ? specialOutcome(Rcode.NOERROR, [soa], []) : specialOutcome(Rcode.NOERROR, [], [soa]);
  }
  if (privateNames === "local" && q.name.length === 1 && (q.type === RRType.A || q.type === RRType.AAAA)) {
    return specialOutcome(Rcode.NXDOMAIN, [], [{ name: q.name, type: RRType.SOA, class: CLASS_IN, ttl: SPECIAL_TTL, rdata: specialSoa(q.name) }]);
  }
  return null;
}

/** localhost. and below: 127.0.0.1 and ::1 (both for ANY), NODATA for other types. */
function loopbackAnswer(q: Question): AnswerOutcome {
  const record = (type: number, rdata: Uint8Array): ResourceRecord => ({ name: q.name, type, class: CLASS_IN, ttl: SPECIAL_TTL, rdata });
  const answer: ResourceRecord[] = [];
  if (q.type === RRType.A || q.type === TYPE_ANY) answer.push(record(RRType.A, LOOPBACK_V4));
  if (q.type === RRType.AAAA || q.type === TYPE_ANY) answer.push(record(RRType.AAAA, LOOPBACK_V6));
  if (answer.length > 0) return specialOutcome(Rcode.NOERROR, answer, []);
  const soa: ResourceRecord = { name: LOCALHOST_NAME, type: RRType.SOA, class: CLASS_IN, ttl: SPECIAL_TTL, rdata: specialSoa(LOCALHOST_NAME) };
  return specialOutcome(Rcode.NOERROR, [], [soa]);
}

/** RFC 6303 §3's SOA for a zone answered here: `@ SOA @ nobody.invalid. 1 3600 1200 604800 10800`. */
function specialSoa(apex: Name): Uint8Array {
  return soaRdata(nameToWire(apex), SOA_NOBODY, [1, 3600, 1200, 604800, SPECIAL_TTL]);
}

function specialOutcome(rcode: number, answer: ResourceRecord[], authority: ResourceRecord[]): AnswerOutcome {
  return { kind: "answer", local: true, rcode, aa: true, answer, authority, additional: [] };
}

// ---------------------------------------------------------------------------------------------
// The cache

/** An upstream's answer as kept: its sections with TTLs already capped, and when it came. */
export interface CachedAnswer extends Sections {
  rcode: number;
  /** When it was received (ms, on the resolver's clock that never goes back); TTLs in replies count down from there. */
  receivedAt: number;
  /** Seconds it may be reused; 0 when it must not be kept. */
  ttl: number;
  /** What it costs the cache's byte budget: its records as decoded objects (memoryCost). */
  size: number;
}

/** The SOA MINIMUM field: the last four octets of the (uncompressed) RDATA. */
function soaMinimum(rdata: Uint8Array): number {
  if (rdata.length < 22) return 0;
  return new DataView(rdata.buffer, rdata.byteOffset + rdata.length - 4).getUint32(0);
}

/**
 * What to keep of an upstream's reply. Every TTL is capped at `maxTtl` (a TTL with the top bit
 * set is 0, RFC 2181 section 8), and the answer is reused for the smallest TTL of its answer and
 * authority records. A negative answer (NXDOMAIN, or no answer records) is kept per RFC 2308:
 * for the SOA's TTL or its MINIMUM, whichever is smaller — and not at all without a SOA.
 */
export function toCachedAnswer(message: Message, receivedAt: number, maxTtl: number): CachedAnswer {
  const cap = (ttl: number) => (ttl > MAX_TTL ? 0 : Math.min(ttl, maxTtl));
  // NODATA at the end of a CNAME chain (the chain, no record of the asked type, the SOA) is
  // negative too (RFC 2308 §5): the SOA's MINIMUM bounds it. A chain without a SOA is an
  // answer as far as it goes.
  const asked = message.questions[0]?.type;
  const endsInNoData = !message.answer.some((rr) => rr.type === asked || asked === TYPE_ANY) && message.authority.some((rr) => rr.type === RRType.SOA);
  const negative = message.rcode === Rcode.NXDOMAIN || message.answer.length === 0 || endsInNoData;
  let ttl = maxTtl;
  let soa = false;
  const answer = message.answer.map((rr) => ({ ...rr, ttl: cap(rr.ttl) }));
  for (const rr of answer) ttl = Math.min(ttl, rr.ttl);
  const authority = message.authority.map((rr) => {
    let t = cap(rr.ttl);
    if (negative && rr.type === RRType.SOA) {
      soa = true;
      t = Math.min(t, soaMinimum(rr.rdata));
    }
    ttl = Math.min(ttl, t);
    return { ...rr, ttl: t };
  });
  const additional = message.additional.map((rr) => ({ ...rr, ttl: cap(rr.ttl) }));
  const records = answer.length + authority.length + additional.length;
  // Not kept past MAX_CACHED_RECORDS (BIND's limit is per RRset, 100): served once, asked again.
  const keep = negative && !soa ? 0 : records > MAX_CACHED_RECORDS ? 0 : ttl;
  return { rcode: message.rcode, answer, authority, additional, receivedAt, ttl: keep, size: memoryCost(answer) + memoryCost(authority) + memoryCost(additional) };
}

/** Past this many records an answer is not cached (what a hostile domain's huge answers would cost). */
const MAX_CACHED_RECORDS = 256;
/** A record object with its fields, and each label of its owner name (a typed array of its own). */
const RECORD_COST = 160;
const LABEL_COST = 96;

/**
 * What records cost the cache as the objects they are decoded into — not their size on the
 * wire: a 16-octet record whose owner is a 2-octet compression pointer to a 120-label name is
 * 120 labels in memory (a budget of wire octets let such answers take 30 to 600 times it).
 */
function memoryCost(records: readonly ResourceRecord[]): number {
  let cost = 0;
  for (const rr of records) {
    cost += RECORD_COST + rr.rdata.length;
    for (const label of rr.name) cost += LABEL_COST + label.length;
  }
  return cost;
}

/** The sections with every TTL counted down by the whole seconds since the answer came. */
function agedSections(entry: CachedAnswer, now: number): Sections {
  const elapsed = Math.max(0, Math.floor((now - entry.receivedAt) / 1000));
  if (elapsed === 0) return entry;
  const age = (rr: ResourceRecord) => ({ ...rr, ttl: Math.max(0, rr.ttl - elapsed) });
  return { answer: entry.answer.map(age), authority: entry.authority.map(age), additional: entry.additional.map(age) };
}

/** Lower-cased qname octets and the type: one cached answer per question. */
export function cacheKey(name: Name, type: number): string {
  let key = String.fromCharCode(type);
  for (const label of name) {
    key += String.fromCharCode(label.length);
    for (let i = 0; i < label.length; i++) {
      const b = label[i]!;
      key += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
    }
  }
  return key;
}

/**
 * Answers by question, least recently used first out, bounded both in entries and in octets (a
 * client asking for large TXT records must not grow it past its budget). An expired entry is
 * dropped when it is next asked for, or when it reaches the front.
 */
export class ResolverCache {
  /** Map order is use order: a hit moves the entry to the end. */
  private readonly entries = new Map<string, CachedAnswer>();
  private bytes = 0;

  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string, now: number): CachedAnswer | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (now >= entry.receivedAt + entry.ttl * 1000) {
      this.bytes -= entry.size;
      return null;
    }
    this.entries.set(key, entry);
    return entry;
  }

  set(key: string, entry: CachedAnswer): void {
    if (entry.ttl <= 0 || this.maxEntries <= 0 || entry.size > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old.size;
    }
    this.entries.set(key, entry);
    this.bytes += entry.size;
    for (const [oldest, evicted] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= evicted.size;
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Upstreams

interface ResolvedUpstream extends Upstream {
  family: 4 | 6;
  /** The address in canonical form, to compare with what Bun reports. */
  canonical: string;
}

interface UpstreamReply {
  message: Message;
  size: number;
}

function resolveUpstream(upstream: Upstream): ResolvedUpstream {
  const ip = parseIp(upstream.address);
  if (ip === null) throw new ResolverOptionError("upstreams", `the upstream ${JSON.stringify(upstream.address)} is not an IP address`);
  if (!Number.isInteger(upstream.port) || upstream.port < 1 || upstream.port > 65535) {
    throw new ResolverOptionError("upstreams", `the upstream ${upstream.address} has an invalid port ${upstream.port}`);
  }
  return { ...upstream, family: ip.family, canonical: formatIp(unmapIpv4(ip)) };
}

function sameAddress(reported: string, upstream: ResolvedUpstream): boolean {
  const ip = parseIp(reported);
  return ip !== null && formatIp(unmapIpv4(ip)) === upstream.canonical;
}

const randomId = () => crypto.getRandomValues(new Uint16Array(1))[0]!;

/** Our query: RD set (the upstream is a resolver), and an OPT record offering our payload size. */
function upstreamQuery(id: number, q: Question): Uint8Array {
  const qname = nameToWire(q.name);
  const packet = new Uint8Array(HEADER_LENGTH + qname.length + 4 + 11);
  const view = new DataView(packet.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x0100);
  view.setUint16(4, 1);
  view.setUint16(10, 1);
  packet.set(qname, HEADER_LENGTH);
  let at = HEADER_LENGTH + qname.length;
  view.setUint16(at, q.type);
  view.setUint16(at + 2, q.class);
  at += 4;
  view.setUint16(at + 1, 41); // OPT, owned by the root (the zero octet before it)
  view.setUint16(at + 3, EDNS_PAYLOAD_SIZE);
  return packet;
}

/**
 * The reply to our query `id` for `q`, or null when `wire` is not it: another ID, not a response,
 * malformed, another opcode, or a question other than ours (case aside).
 */
function matchingReply(wire: Uint8Array, id: number, q: Question): UpstreamReply | null {
  if (wire.length < HEADER_LENGTH || ((wire[0]! << 8) | wire[1]!) !== id || (wire[2]! & 0x80) === 0) return null;
  let message: Message;
  try {
    message = decodeMessage(wire);
  } catch {
    return null;
  }
  if (message.opcode !== Opcode.QUERY || message.questions.length !== 1) return null;
  const asked = message.questions[0]!;
  if (asked.type !== q.type || asked.class !== q.class || !nameEquals(asked.name, q.name)) return null;
  return { message, size: wire.length };
}

/** Cancels of the exchanges under way, so that stopping the resolver closes their sockets. */
type Exchanges = Set<() => void>;

/**
 * One UDP exchange on a socket of its own, connected to the upstream: the kernel then delivers
 * only the upstream's datagrams (and reports its ICMP errors, which end the exchange early). A
 * datagram that is not the reply is ignored, and the exchange waits on until its timeout.
 */
function exchangeUdp(outbound: Outbound, upstream: ResolvedUpstream, packet: Uint8Array, accept: (wire: Uint8Array) => UpstreamReply | null, timeoutMs: number, exchanges: Exchanges): Promise<UpstreamReply | null> {
  return new Promise((resolve) => {
    let socket: udp.ConnectedSocket<"uint8array"> | null = null;
    let done = false;
    const finish = (reply: UpstreamReply | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      exchanges.delete(cancel);
      socket?.close();
      resolve(reply);
    };
    const cancel = () => finish(null);
    const timer = setTimeout(cancel, timeoutMs);
    exchanges.add(cancel);
    outbound
      .udpSocket({
        hostname: upstream.family === 6 ? "::" : "0.0.0.0",
        port: 0,
        binaryType: "uint8array",
        connect: { hostname: upstream.address, port: upstream.port },
        socket: {
          data: (_socket, data, port, address) => {
            if (port !== upstream.port || !sameAddress(address, upstream)) return;
            const reply = accept(data);
            if (reply !== null) finish(reply);
          },
          error: cancel,
        },
      })
      .then(
        (s) => {
          socket = s;
          if (done) s.close();
          else if (!s.send(packet)) finish(null);
        },
        cancel,
      );
  });
}

/** One TCP exchange (RFC 7766) on a connection of its own: one framed query, one framed reply. */
function exchangeTcp(outbound: Outbound, upstream: ResolvedUpstream, packet: Uint8Array, accept: (wire: Uint8Array) => UpstreamReply | null, timeoutMs: number, exchanges: Exchanges): Promise<UpstreamReply | null> {
  return new Promise((resolve) => {
    let socket: Socket<undefined> | null = null;
    let done = false;
    let received = new Uint8Array(0);
    const finish = (reply: UpstreamReply | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      exchanges.delete(cancel);
      socket?.terminate();
      resolve(reply);
    };
    const cancel = () => finish(null);
    const timer = setTimeout(cancel, timeoutMs);
    exchanges.add(cancel);
    const framed = new Uint8Array(2 + packet.length);
    framed[0] = packet.length >>> 8;
    framed[1] = packet.length & 0xff;
    framed.set(packet, 2);
    outbound
      .connect({
        hostname: upstream.address,
        port: upstream.port,
        socket: {
          open: (s) => {
            socket = s;
            // A query is a few hundred octets: a fresh socket takes it whole, or something is wrong.
            if (s.write(framed) !== framed.length) cancel();
          },
          data: (_s, chunk) => {
            const joined = new Uint8Array(received.length + chunk.length);
            joined.set(received);
            joined.set(chunk, received.length);
            received = joined;
            if (received.length < 2) return;
            const length = (received[0]! << 8) | received[1]!;
            if (received.length >= 2 + length) finish(accept(received.subarray(2, 2 + length)));
          },
          close: cancel,
          error: cancel,
          connectError: cancel,
        },
      })
      .then(
        (s) => {
          socket = s;
          if (done) s.terminate();
        },
        cancel,
      );
  });
}

// ---------------------------------------------------------------------------------------------
// The answer path

/** Upstream questions under way at once; past it, new questions fail at once (SERVFAIL). */
const MAX_IN_FLIGHT = 1024;
/** The cache's budget: about 64 MiB of decoded answers (memoryCost). */
const CACHE_MAX_BYTES = 64 << 20;
/**
 * Queries waiting for an upstream's answer, in all and per client: each holds its query and
 * closures until the question is answered or every upstream timed out (up to upstreams × the
 * timeout, twice with the TCP retry). Past either, SERVFAIL at once.
 *
 * A client's share is an eighth of MAX_IN_FLIGHT, as with the TCP slots: a client asking unique
 * names nobody answers (a water-torture flood) holds one upstream question per waiting query,
 * and at half of it two such clients failed every other client's uncached query.
 */
const MAX_WAITING = 8192;
const MAX_WAITING_PER_CLIENT = MAX_IN_FLIGHT / 8;
/**
 * The last quarter of the forwarding slots is kept for clients with few queries waiting (fewer
 * than LIGHT_CLIENT_WAITING): eight clients flooding at their full share filled every slot, and
 * every other client's uncached query failed. Now flooders share three quarters, and filling the
 * rest takes 64 addresses (or /64s) with 16 queries waiting each.
 */
const BUSY_CLIENTS_IN_FLIGHT = (MAX_IN_FLIGHT * 3) / 4;
const LIGHT_CLIENT_WAITING = 16;
/** At most one log line per this many milliseconds for failures (a flood must not flood the log). */
const ERROR_LOG_INTERVAL_MS = 1000;
/** How long an upstream that gave no reply is tried after the others. */
const QUIET_UPSTREAM_MS = 30_000;

/** What the steps for one name came to, before it is made a reply. */
type AnswerOutcome = Sections & { kind: "answer"; rcode: number; aa: boolean; /** The chain began in a hosted zone. */ local: boolean };
type Outcome = AnswerOutcome | { kind: "blocked" } | { kind: "refused" } | { kind: "servfail" };
const BLOCKED: Outcome = { kind: "blocked" };
/** Nothing to forward to, or a name the horizon hides from the client. */
const REFUSED: Outcome = { kind: "refused" };
const SERVFAIL: Outcome = { kind: "servfail" };

/** The CNAME targets followed out of hosted zones for one query (MAX_CNAME_CHAIN), and the names seen. */
interface Chain {
  links: number;
  seen: Set<string>;
  /**
   * The question's name is on the allowlist: its answer is not filtered, neither by CNAME
   * cloaking nor by a chased target's listing — as AdGuard Home skips response filtering for an
   * allowlisted request. Allowing a name the operator wants must not stay blocked by its CNAME.
   */
  allowlisted: boolean;
}

/**
 * The target of the CNAME a hosted zone's answer ends in, when it lies outside that zone (or in
 * another zone served here inside it); null when there is none to follow: another rcode, a
 * question for the CNAME itself or for ANY, or a chain the zone stopped inside itself (a loop).
 */
function outOfZoneTarget(local: AnswerOutcome, zone: Zone, qtype: number, zones: ZoneSource): Name | null {
  const last = local.answer.at(-1);
  if (local.rcode !== Rcode.NOERROR || last === undefined || last.type !== RRType.CNAME || qtype === RRType.CNAME || qtype === TYPE_ANY) return null;
  let target: Name;
  try {
    target = nameFromWire(last.rdata, 0).name;
  } catch {
    return null;
  }
  return zones.find(target) === zone ? null : target;
}

const toRecord = (rr: RR): ResourceRecord => ({ name: rr.name, type: rr.type, class: CLASS_IN, ttl: rr.ttl, rdata: rr.rdata });

/** Everything between a query packet and its reply, for both transports. */
class ResolverCore {
  readonly counters = { queries: 0, blocked: 0, local: 0, cacheHits: 0, cacheMisses: 0, forwarded: 0, upstreamFailures: 0, refused: 0, servfail: 0 };
  readonly cache: ResolverCache;
  readonly exchanges: Exchanges = new Set();
  private readonly inFlight = new Map<string, Promise<CachedAnswer | null>>();
  /** Queries waiting for an upstream, in all and by clientKey (MAX_WAITING). */
  private waiting = 0;
  private readonly waitingBy = new Map<string, number>();
  private readonly upstreams: ResolvedUpstream[];
  /** Upstreams that gave no reply, and until when (this.now()) they are tried last. */
  private readonly quietUntil = new Map<ResolvedUpstream, number>();
  /** Null when there is no upstream: then nothing here can open a socket. */
  private readonly outbound: Outbound | null;
  readonly allowed: (client: string) => boolean;
  private readonly blocking: Blocking;
  private readonly now: () => number;
  private readonly maxTtl: number;
  private readonly timeoutMs: number;
  private lastErrorLog = 0;
  private suppressed = 0;
  stopped = false;

  constructor(private readonly options: ResolverOptions) {
    this.upstreams = options.upstreams.map(resolveUpstream);
    this.outbound = this.upstreams.length > 0 ? (options.outbound ?? bunOutbound) : null;
    this.allowed = options.allowedClients ?? loopbackOnly;
    this.blocking = blocking(options.blockMode, nonNegative(options.blockTtl ?? 10, "blockTtl"));
    this.now = options.now ?? (() => performance.now());
    this.maxTtl = nonNegative(options.cacheMaxTtl ?? 86_400, "cacheMaxTtl");
    this.timeoutMs = options.upstreamTimeoutMs ?? 2000;
    this.cache = new ResolverCache(nonNegative(options.cacheSize ?? 10_000, "cacheSize"), CACHE_MAX_BYTES);
  }

  /**
   * The reply to one packet, or null when nothing must be sent: no whole header, a response
   * (answering those is how reflection loops start), or a malformed packet from a stranger.
   * Never rejects. The packet is fully read before the first await, so its buffer may be reused.
   */
  async answer(packet: Uint8Array, client: string, transport: "udp" | "tcp"): Promise<Uint8Array | null> {
    if (packet.length < HEADER_LENGTH || (packet[2]! & 0x80) !== 0) return null;
    this.counters.queries++;
    let query: Query;
    try {
      query = decodeQuery(packet);
    } catch (e) {
      return this.allowed(client) ? encodeFormErr(packet, e instanceof FormatError && e.edns ? EDNS_PAYLOAD_SIZE : undefined) : null;
    }
    // A stranger over UDP gets nothing: even a REFUSED would make us a reflector for spoofed sources.
    if (transport === "udp" && !this.allowed(client)) {
      this.counters.refused++;
      return null;
    }
    const edns = query.edns;
    const limit =
      transport === "tcp" ? TCP_MAX_MESSAGE : edns ? Math.min(Math.max(edns.udpPayloadSize, CLASSIC_UDP_SIZE), EDNS_PAYLOAD_SIZE) : CLASSIC_UDP_SIZE;
    try {
      return await this.reply(query, client, limit, transport);
    } catch (e) {
      this.failed(e);
      this.counters.servfail++;
      try {
        return encode(query, Rcode.SERVFAIL, false, NO_RECORDS, limit);
      } catch {
        return encodeBareServfail(packet, true);
      }
    }
  }

  private async reply(query: Query, client: string, limit: number, transport: "udp" | "tcp"): Promise<Uint8Array> {
    const refuse = () => {
      this.counters.refused++;
      return encode(query, Rcode.REFUSED, false, NO_RECORDS, limit);
    };
    if (!this.allowed(client)) return refuse();
    if (query.edns && query.edns.version > 0) return encode(query, Rcode.BADVERS, false, NO_RECORDS, limit);
    const q = query.question;
    if (query.opcode !== Opcode.QUERY || q === null || q.type === TYPE_MAILA || q.type === TYPE_MAILB) {
      return encode(query, Rcode.NOTIMP, false, NO_RECORDS, limit);
    }
    // Other classes, zone transfers and signed queries are an authoritative server's business.
    if (q.class !== CLASS_IN || q.type === TYPE_AXFR || q.type === TYPE_IXFR || query.tsigStart >= 0) return refuse();

    const allowlisted = (this.options.allowlist?.match(q.name) ?? null) !== null;
    const outcome = await this.outcome(q, client, transport, { links: 0, seen: new Set([cacheKey(q.name, 0)]), allowlisted });
    switch (outcome.kind) {
      case "blocked":
        this.counters.blocked++;
        return blockedReply(query, this.blocking, limit);
      case "refused":
        return refuse();
      case "servfail":
        this.counters.servfail++;
        return encode(query, Rcode.SERVFAIL, false, NO_RECORDS, limit);
      case "answer":
        if (outcome.local) this.counters.local++;
        return encode(query, outcome.rcode, outcome.aa, outcome, limit);
    }
  }

  /** The steps for one name: the local zones, the blocklist, the cache, the upstreams. */
  private async outcome(q: Question, client: string, transport: "udp" | "tcp", chain: Chain): Promise<Outcome> {
    // Before anything is asked: the client let in is not thereby told every network's names
    // (found in review). A chased target refused ends the chain at its CNAME (`chase`).
    if (this.options.horizon?.hides(client, q.name, null)) return REFUSED;
    const zone = this.options.local?.find(q.name) ?? null;
    if (zone !== null) {
      let answer = this.visible(zone.lookup(q.name, q.type, { minimalAny: transport === "udp", nested: this.options.local?.nestedIn?.(zone) }), q.name, client); // RFC 8482
      if (this.options.viewSerials !== undefined) answer = inView(answer, zone, client, null, this.options.viewSerials);
      // A referral is not an answer: a name delegated away is resolved like any other.
      if (answer.aa) {
        const local: AnswerOutcome = { kind: "answer", local: true, rcode: answer.rcode, aa: true, answer: answer.answer.map(toRecord), authority: answer.authority.map(toRecord), additional: answer.additional.map(toRecord) };
        return this.chase(local, zone, q, client, transport, chain);
      }
    }

    // After the hosted zones (an operator may host home.arpa.), before the blocklist and the upstreams.
    const special = specialUseAnswer(q, this.options.privateNames ?? "local");
    if (special !== null) return special;

    if (!chain.allowlisted && this.blocked(q.name)) return BLOCKED;

    if (this.outbound === null) {
      if (this.options.log.enabled("debug")) {
        this.options.log.debug("dns resolver refused a query: no upstream is configured", { client, qname: nameToText(q.name) });
      }
      return REFUSED;
    }

    const key = cacheKey(q.name, q.type);
    let entry = this.cache.get(key, this.now());
    if (entry !== null) this.counters.cacheHits++;
    else {
      this.counters.cacheMisses++;
      entry = await this.waitFor(client, () => this.resolve(key, q, this.outbound!));
    }
    if (entry === null) return SERVFAIL;
    if (!chain.allowlisted && this.cloaked(entry)) return BLOCKED;
    return { kind: "answer", local: false, rcode: entry.rcode, aa: false, ...agedSections(entry, this.now()) };
  }

  /**
   * A hosted zone's answer that ends in a CNAME out of the zone, with the target resolved here
   * (the local zones, the blocklist, the cache, the upstreams) and appended: stub resolvers do
   * not follow CNAMEs, so the CNAME alone left every such alias without an address — and its
   * target went around the blocklist. A blocked target blocks the answer, as CNAME cloaking does.
   */
  private async chase(local: AnswerOutcome, zone: Zone, q: Question, client: string, transport: "udp" | "tcp", chain: Chain): Promise<Outcome> {
    const target = outOfZoneTarget(local, zone, q.type, this.options.local!);
    if (target === null) return local;
    const key = cacheKey(target, 0);
    if (chain.links >= MAX_CNAME_CHAIN || chain.seen.has(key)) return local; // a loop or too long: the chain as far as it goes
    chain.links++;
    chain.seen.add(key);
    const rest = await this.outcome({ name: target, type: q.type, class: q.class }, client, transport, chain);
    // Nothing to forward to, or a target hidden from the client: the chain as far as the hosted
    // zones take it (the client asks for the target and is refused).
    if (rest.kind === "refused") return local;
    if (rest.kind !== "answer") return rest;
    return {
      kind: "answer",
      local: true,
      rcode: rest.rcode,
      aa: rest.aa, // only when the whole chain is the appliance's own data
      answer: [...local.answer, ...rest.answer],
      authority: rest.authority,
      additional: [...local.additional, ...rest.additional],
    };
  }

  /**
   * A local zone's answer to a question outside the hidden names as the client may be told it
   * (`withoutHidden`: a CNAME chain cut where it enters names hidden from it, their addresses
   * left out), as the authoritative server answers it. Signed queries are refused here: no key.
   */
  private visible(answer: Answer, qname: Name, client: string): Answer {
    const horizon = this.options.horizon;
    if (!horizon || horizon.restricts(qname) || !touchesRestricted(answer, horizon)) return answer;
    return withoutHidden(answer, client, null, horizon);
  }

  /** Listed and not excepted. */
  private blocked(name: Name): boolean {
    return this.options.blocklist.match(name) !== null && (this.options.allowlist?.match(name) ?? null) === null;
  }

  /** Whether a CNAME in the answer leads into a blocked domain. */
  private cloaked(entry: CachedAnswer): boolean {
    for (const rr of entry.answer) {
      if (rr.type !== RRType.CNAME) continue;
      let target: Name;
      try {
        target = nameFromWire(rr.rdata, 0).name;
      } catch {
        continue;
      }
      if (this.blocked(target)) return true;
    }
    return false;
  }

  /**
   * `resolve` for one client's query, within the bounds on waiting queries and the busy
   * clients' part of the forwarding slots (null past them: SERVFAIL). A client is an IPv4 address or an IPv6 /64 (clientKey), as for the TCP slots: one
   * host has a whole /64 to ask from.
   */
  private async waitFor(client: string, resolve: () => Promise<CachedAnswer | null>): Promise<CachedAnswer | null> {
    const key = clientKey(client);
    const mine = this.waitingBy.get(key) ?? 0;
    if (this.waiting >= MAX_WAITING || mine >= MAX_WAITING_PER_CLIENT) return null;
    if (mine >= LIGHT_CLIENT_WAITING && this.inFlight.size >= BUSY_CLIENTS_IN_FLIGHT) return null;
    this.waiting++;
    this.waitingBy.set(key, mine + 1);
    try {
      return await resolve();
    } finally {
      this.waiting--;
      const left = this.waitingBy.get(key)! - 1;
      if (left === 0) this.waitingBy.delete(key);
      else this.waitingBy.set(key, left);
    }
  }

  /** The upstreams' answer to `q`, shared with every query asking the same while it is under way. */
  private resolve(key: string, q: Question, outbound: Outbound): Promise<CachedAnswer | null> {
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return pending;
    if (this.inFlight.size >= MAX_IN_FLIGHT) {
      this.failed(new Error(`more than ${MAX_IN_FLIGHT} upstream questions under way`));
      return Promise.resolve(null);
    }
    const promise = this.forward(q, outbound).then((entry) => {
      this.inFlight.delete(key);
      if (entry !== null) this.cache.set(key, entry);
      return entry;
    });
    this.inFlight.set(key, promise);
    return promise;
  }

  /** Each upstream in turn until one answers with NOERROR or NXDOMAIN. */
  private async forward(q: Question, outbound: Outbound): Promise<CachedAnswer | null> {
    this.counters.forwarded++;
    // Asked in lower case: the answer is shared by every spelling of the name.
    const question: Question = { name: lowerName(q.name), type: q.type, class: q.class };
    for (const upstream of this.upstreamsInTurn()) {
      if (this.stopped) return null;
      const reply = await this.ask(upstream, question, outbound);
      const rcode = reply?.message.rcode;
      if (reply !== null && !reply.message.tc && (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN)) {
        return toCachedAnswer(reply.message, this.now(), this.maxTtl);
      }
      this.counters.upstreamFailures++;
      if (this.options.log.enabled("debug")) {
        this.options.log.debug("dns resolver upstream gave no answer", {
          upstream: `${upstream.address}:${upstream.port}`,
          qname: nameToText(question.name),
          rcode: rcode ?? null,
        });
      }
    }
    return null;
  }

  /**
   * The upstreams in configured order, those that gave no reply lately last: a dead first
   * upstream cost every uncached name its whole timeout (found in review). Unbound and dnsmasq
   * remember dead servers the same way.
   */
  private upstreamsInTurn(): readonly ResolvedUpstream[] {
    if (this.quietUntil.size === 0) return this.upstreams;
    const now = this.now();
    const ready: ResolvedUpstream[] = [];
    const quiet: ResolvedUpstream[] = [];
    for (const upstream of this.upstreams) ((this.quietUntil.get(upstream) ?? 0) > now ? quiet : ready).push(upstream);
    return [...ready, ...quiet];
  }

  /** One upstream: UDP, then TCP when the UDP reply was truncated. */
  private async ask(upstream: ResolvedUpstream, q: Question, outbound: Outbound): Promise<UpstreamReply | null> {
    const udpId = randomId();
    const reply = await exchangeUdp(outbound, upstream, upstreamQuery(udpId, q), (wire) => matchingReply(wire, udpId, q), this.timeoutMs, this.exchanges);
    // No reply at all (a timeout, a port unreachable) sends it to the back; any reply, even
    // SERVFAIL, says it is up.
    if (reply === null && !this.stopped) this.quietUntil.set(upstream, this.now() + QUIET_UPSTREAM_MS);
    else this.quietUntil.delete(upstream);
    if (reply === null || !reply.message.tc || this.stopped) return reply;
    const tcpId = randomId();
    return exchangeTcp(outbound, upstream, upstreamQuery(tcpId, q), (wire) => matchingReply(wire, tcpId, q), this.timeoutMs, this.exchanges);
  }

  /** Logs an unexpected error, at most once a second (a bound function: handlers pass it around). */
  readonly failed = (error: unknown): void => {
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    this.lastErrorLog = now;
    this.options.log.error("dns resolver failure", { error: error instanceof Error ? error.message : String(error), suppressed: this.suppressed });
    this.suppressed = 0;
  };

  /** Ends every exchange under way (their queries then answer SERVFAIL). */
  stop(): void {
    this.stopped = true;
    for (const cancel of [...this.exchanges]) cancel();
  }
}

function nonNegative(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0) throw new Error(`${what} must be a whole number ≥ 0, not ${value}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Listeners

/** Reply octets queued on a TCP connection that is not reading them before it is dropped. */
const MAX_TCP_BACKLOG = 1 << 20;
/** Queries one TCP connection may have waiting for an answer; a client pipelining more is dropped. */
const MAX_TCP_PENDING = 64;

/** A TCP connection: its stream state (tcp-stream.ts) and the rest. */
interface Connection extends StreamState {
  timer: ReturnType<typeof setTimeout> | null;
  client: string;
  /** Queries read and not answered yet. */
  answering: number;
  closed: boolean;
}

/** The listeners of one resolver; replies are written as they come, in any order (RFC 7766 section 7). */
class ResolverListeners {
  readonly connections = new Set<Socket<Connection>>();
  private stopping = false;
  private readonly idleMs: number;
  private readonly maxConnections: number;
  private readonly slots: ClientSlots;

  constructor(
    readonly core: ResolverCore,
    options: ResolverOptions,
  ) {
    this.idleMs = options.tcpIdleMs ?? 10_000;
    this.maxConnections = options.maxTcpConnections ?? 256;
    this.slots = ClientSlots.forListener(this.maxConnections);
  }

  readonly udpHandler: udp.SocketHandler<"uint8array"> = {
    data: (socket, data, port, address) => {
      this.core.answer(data, address, "udp").then((reply) => {
        if (reply === null || socket.closed) return;
        try {
          sendReply(socket, reply, port, address);
        } catch (e) {
          this.core.failed(e);
        }
      }, this.core.failed);
    },
    // Bun reports ICMP errors here (a client gone), sometimes without an Error.
    error: () => {},
  };

  readonly tcpHandler: import("bun").SocketHandler<Connection> = {
    open: (socket) => {
      const connection: Connection = { pending: null, pendingLength: 0, backlog: null, timer: null, client: socket.remoteAddress, answering: 0, closed: false };
      socket.data = connection;
      // A stranger's connection is closed at once (counted as refused): kept open to be told
      // REFUSED, it would hold one of the few connection slots, and enough of them (eight IPv4
      // addresses) would keep every allowed client from its TCP retry.
      const stranger = !this.core.allowed(connection.client);
      if (stranger) this.core.counters.refused++;
      if (this.stopping || stranger || this.connections.size >= this.maxConnections || !this.slots.take(connection.client)) {
        connection.closed = true;
        socket.terminate();
        return;
      }
      this.connections.add(socket);
      connection.timer = setTimeout(closeIdle, this.idleMs, socket);
    },
    data: (socket, data) => {
      const connection = socket.data;
      if (!connection || connection.closed) return;
      try {
        this.tcpData(socket, connection, data);
      } catch (e) {
        this.core.failed(e);
        this.drop(socket);
      }
    },
    drain: (socket) => {
      const connection = socket.data;
      if (!connection || connection.closed || connection.backlog === null) return;
      const backlog = connection.backlog;
      connection.backlog = null;
      this.write(socket, connection, backlog);
    },
    close: (socket) => this.closed(socket),
    error: (socket) => this.closed(socket),
  };

  /** Frames out whole messages and answers each; what is left waits for the next chunk. */
  private tcpData(socket: Socket<Connection>, connection: Connection, data: Uint8Array): void {
    const whole = readMessages(connection, data, (message) => {
      connection.timer?.refresh(); // a whole message is activity; a trickled byte is not
      if (connection.answering >= MAX_TCP_PENDING) return false;
      connection.answering++;
      // The core reads the message before its first await: the reused buffer is safe.
      this.core.answer(message, connection.client, "tcp").then(
        (reply) => {
          connection.answering--;
          if (reply === null || connection.closed) return;
          connection.timer?.refresh();
          this.write(socket, connection, framed([reply]));
        },
        (e) => {
          connection.answering--;
          this.core.failed(e);
        },
      );
      return true;
    });
    if (!whole) this.drop(socket); // garbage, or more pipelined queries than we keep
  }

  /** Writes `bytes`, keeping what the kernel does not take for the next drain. */
  private write(socket: Socket<Connection>, connection: Connection, bytes: Uint8Array): void {
    if (!writeOrQueue(socket as Socket<unknown>, connection, bytes, MAX_TCP_BACKLOG)) this.drop(socket);
  }

  drop(socket: Socket<Connection>): void {
    socket.terminate();
    this.closed(socket);
  }

  private closed(socket: Socket<Connection>): void {
    const connection = socket.data;
    if (connection && !connection.closed) {
      connection.closed = true;
      if (connection.timer !== null) clearTimeout(connection.timer);
      connection.timer = null;
      connection.pending = null;
      connection.backlog = null;
    }
    if (this.connections.delete(socket)) this.slots.release(connection!.client);
  }

  closeAll(): void {
    this.stopping = true;
    for (const socket of [...this.connections]) this.drop(socket);
  }
}

/**
 * Sends one UDP reply. An ICMP port unreachable from a client that has gone away is reported by
 * the listener's next send, whoever that one is for, as ECONNREFUSED — and that datagram is not
 * sent. The error belongs to an earlier datagram (and reading it cleared it): the reply is sent
 * once more. Counted as failed, every client gone cost the next client its reply (found in review).
 */
function sendReply(socket: udp.Socket<"uint8array">, reply: Uint8Array, port: number, address: string): void {
  try {
    socket.send(reply, port, address);
  } catch (e) {
    if ((e as { code?: unknown } | null)?.code !== "ECONNREFUSED") throw e;
    socket.send(reply, port, address);
  }
}

/** Idle: nothing received for a while and no answer owed. */
function closeIdle(socket: Socket<Connection>): void {
  const connection = socket.data;
  if (!connection || connection.closed) return;
  if (connection.answering > 0) {
    connection.timer?.refresh();
    return;
  }
  connection.timer = null;
  socket.end();
}

/**
 * Binds every UDP and TCP address and serves. Throws on invalid options (an upstream that is not
 * an IP address, a bad sinkhole address) and when a bind fails, after closing what was bound.
 */
export async function startResolver(options: ResolverOptions): Promise<Resolver> {
  const core = new ResolverCore(options);
  const listeners = new ResolverListeners(core, options);
  const udpSockets: udp.Socket<"uint8array">[] = [];
  const tcpListeners: import("bun").TCPSocketListener<Connection>[] = [];

  const stop: Stop = async () => {
    for (const listener of tcpListeners) listener.stop(false);
    listeners.closeAll();
    core.stop();
    for (const listener of tcpListeners) listener.stop(true);
    for (const socket of udpSockets) socket.close();
    tcpListeners.length = 0;
    udpSockets.length = 0;
  };

  try {
    for (const { address, port } of options.udp) {
      udpSockets.push(await Bun.udpSocket({ hostname: address, port, binaryType: "uint8array", socket: listeners.udpHandler }));
    }
    for (const { address, port } of options.tcp) {
      tcpListeners.push(Bun.listen<Connection>({ hostname: address, port, socket: listeners.tcpHandler }));
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const udpPorts = udpSockets.map((s) => s.port);
  const tcpPorts = tcpListeners.map((l) => l.port);
  options.log.info("dns resolver listening", {
    udp: udpPorts,
    tcp: tcpPorts,
    upstreams: options.upstreams.map((u) => `${u.address}:${u.port}`),
    blocklist: options.blocklist.size,
    allowlist: options.allowlist?.size ?? 0,
    // Said once, plainly: with no upstream the resolver answers only blocked and local names.
    ...(options.upstreams.length === 0 ? { forwarding: "off: names that are neither blocked nor local are refused" } : {}),
  });
  return {
    udpPorts,
    tcpPorts,
    stop,
    stats: () => ({ ...core.counters, cached: core.cache.size }),
  };
}
