/**
 * The authoritative server's network side: UDP and TCP listeners (RFC 1035 section 4.2, RFC 7766
 * for TCP) in front of the zones, and `answerQuery`, the pure function from one query packet to
 * its reply that both transports share.
 *
 * The answer path is hot: it allocates the decoded query, the reply and the records' wire views
 * and nothing else that can be avoided — no closures per query, no JSON, no strings except the
 * zone-table key. Nothing a client sends can make it throw: malformed input is FORMERR (or
 * silence when there is not even a header, or when the packet is itself a response), and any
 * unexpected exception becomes SERVFAIL, reported to the caller through the outcome.
 *
 * Decision points, in order: the gate (every packet that is a query, even one that does not
 * decode: the shield sees floods aimed at names we do not serve too, and a client it drops gets
 * no reply of any kind), FORMERR (decodeQuery, a bad TSIG record), BADVERS (EDNS version above
 * 0), NOTIMP (opcode other than QUERY; meta types MAILA/MAILB), REFUSED (class other than IN, zone
 * transfers, no zone for the qname, a name the horizon hides from the client: horizon.ts), then
 * the zone's answer.
 */
import type { Logger } from "../../src/log.ts";
import type { Stop } from "../../src/plugin.ts";
import {
  decodeQuery,
  encodeBareServfail,
  encodeFormErr,
  encodeResponse,
  FormatError,
  Opcode,
  Rcode,
  type Query,
  type ResourceRecord,
  type Response,
} from "./message.ts";
import { ClientSlots, framed, readMessages, writeOrQueue, type StreamState } from "./tcp-stream.ts";
import { AnswerCache, lastQuestion, patchedReply, questionKey, type CachedReply } from "./answer-cache.ts";
import { isSubdomain, lowerName, nameEquals, nameToText, type Name } from "./names.ts";
import { touchesRestricted, withoutHidden, type Horizon } from "./horizon.ts";
import { ixfrClientSerial, noTransfers, transferMessages, TYPE_AXFR, TYPE_IXFR, type TransferPolicy } from "./transfer.ts";
import { appendUnsignedError, FUDGE_SECONDS, readTsig, RCODE_NOTAUTH, sign, signBadTime, TsigError, tsigSize, verify, type TsigKey, type TsigRecord, type Verdict } from "./tsig.ts";
import { NestedZones, type Answer, type RR, type Zone } from "./zone.ts";
import { signaturesOf } from "./dnssec.ts";
import { dnssecAnswer } from "./dnssec-answer.ts";
import { inView, type ViewSerialSource } from "./view-serials.ts";

// ---------------------------------------------------------------------------------------------
// Zones

/** Picks the zone that answers a qname. */
export interface ZoneSource {
  /** The zone whose origin is the longest suffix of `qname` (case-insensitively), or null. */
  find(qname: Name): Zone | null;
  /** Changes whenever a zone is added, replaced or removed; without it, replies are not cached. */
  readonly version?: number;
  /** The other zones served here inside `zone` without a delegation from it (Zone.lookup's `nested`); undefined for none. */
  nestedIn?(zone: Zone): NestedZones | undefined;
}

/** One single-character string per octet, ASCII letters lowered: the zone-table key alphabet. */
const KEY_CHARS: string[] = Array.from({ length: 256 }, (_, b) =>
  String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b),
);

/**
 * Appends one label to a key. Keys are built from the root down (`org`, then `example`, ...), each
 * label as its length then its lowered octets, so a key is unambiguous whatever the labels hold
 * and every suffix of a name has the key that is a prefix of the name's key.
 */
function appendLabel(key: string, label: Uint8Array): string {
  let s = key + KEY_CHARS[label.length]!;
  for (let j = 0; j < label.length; j++) s += KEY_CHARS[label[j]!]!;
  return s;
}

function keyOf(name: Name): string {
  let key = "";
  for (let i = name.length - 1; i >= 0; i--) key = appendLabel(key, name[i]!);
  return key;
}

/** The served zones by lower-cased origin; `find` walks the qname's suffixes: O(labels). */
export class ZoneTable implements ZoneSource {
  private readonly zones = new Map<string, Zone>();

  /** Bumped by every change: cached replies made before it are stale. */
  version = 0;

  /** Each zone's nested zones (see nestedIn), worked out again after a change. */
  private nested: Map<Zone, NestedZones> | null = null;

  /** Told of each zone set, as it is set (view-serials.ts works out what the zone's views are told then, off the answer path). */
  private readonly listeners: Array<(zone: Zone) => void> = [];

  /** Adds or replaces the zone at `zone.origin`. */
  set(zone: Zone): void {
    for (const listener of this.listeners) listener(zone);
    this.zones.set(keyOf(zone.origin), zone);
    this.version++;
    this.nested = null;
  }

  /** `listener` is told of every zone set from now on. */
  onSet(listener: (zone: Zone) => void): void {
    this.listeners.push(listener);
  }

  /** Removes the zone at `origin`; true when there was one. */
  delete(origin: Name): boolean {
    this.version++;
    this.nested = null;
    return this.zones.delete(keyOf(origin));
  }

  nestedIn(zone: Zone): NestedZones | undefined {
    if (this.nested === null) {
      // Each zone's enclosing zones, found by walking its ancestors: O(zones × labels).
      const inner = new Map<Zone, Name[]>();
      for (const z of this.zones.values()) {
        for (let skip = 1; skip <= z.origin.length; skip++) {
          const outer = this.zones.get(keyOf(z.origin.slice(skip)));
          if (!outer || outer.delegates(z.origin)) continue;
          const names = inner.get(outer);
          if (names) names.push(z.origin);
          else inner.set(outer, [z.origin]);
        }
      }
      this.nested = new Map([...inner].map(([outer, names]) => [outer, new NestedZones(outer.origin, names)]));
    }
    return this.nested.get(zone);
  }

  /** The zone at exactly `origin`, if any. */
  get(origin: Name): Zone | null {
    return this.zones.get(keyOf(origin)) ?? null;
  }

  get size(): number {
    return this.zones.size;
  }

  find(qname: Name): Zone | null {
    let best = this.zones.get("") ?? null;
    let key = "";
    for (let i = qname.length - 1; i >= 0; i--) {
      key = appendLabel(key, qname[i]!);
      const zone = this.zones.get(key);
      if (zone !== undefined) best = zone;
    }
    return best;
  }
}

// ---------------------------------------------------------------------------------------------
// Decisions and observation

/**
 * What the gate says: answer; REFUSED; no reply at all; or (UDP only) an empty reply with TC
 * set, so that a real resolver asks again over TCP (response rate limiting's "slip").
 */
export type Decision = "answer" | "refuse" | "drop" | "truncate";

/** The one place that decides whether a query is answered (the shield plugs in here). */
export interface QueryGate {
  /** `signed`: the query has a TSIG record (not yet verified), so `admitsSigned` may still let it through. */
  decide(client: string, qname: Name, qtype: number, transport: "udp" | "tcp", signed?: boolean): Decision;
  /**
   * A client whose signed queries are answered when the gate would truncate or drop them, once
   * their TSIG verifies (the configured secondaries). Absent: nobody.
   */
  admitsSigned?(client: string): boolean;
  /**
   * Such a signed query that was not let through after all (its TSIG did not verify, or it was a
   * replay): `decision` stands. A gate that counts what it limits counts these here, not in
   * `decide` — a verified one is answered, and was not limited.
   */
  notVouched?(decision: Decision): void;
}

/** The default gate: answers everything. */
export const allowAll: QueryGate = { decide: () => "answer" };

export interface QueryEvent {
  client: string;
  /** Origin of the zone that answered; null when none did (REFUSED, FORMERR, ...). */
  zone: Name | null;
  /**
   * The question's name. From the answer cache it is the name as the query that filled the cache
   * spelled it, the same object every time: compare it without case, and read the client's own
   * spelling from `query`.
   */
  qname: Name;
  /**
   * The query as received (valid during `observe` only): its question, right after the header
   * and never compressed, has the name as the client sent it. The listeners always give it.
   */
  query?: Uint8Array;
  qtype: number;
  rcode: number;
  transport: "udp" | "tcp";
  /** Size of the reply on the wire (without the TCP length prefix). */
  bytes: number;
  /** The reply is the gate's (REFUSED or TC from the shield), not the zones'. */
  gated: boolean;
  /** When it came (ms since the epoch): over UDP read once per event-loop turn, not per query. */
  time: number;
}

/** Told about every answered query with a question (analytics). The event object is reused: copy what you keep. */
export interface QueryObserver {
  observe(event: QueryEvent): void;
}

// ---------------------------------------------------------------------------------------------
// The answer path

/** Our EDNS UDP payload size (the DNS flag day 2020 value): advertised and the UDP cap. */
export const EDNS_PAYLOAD_SIZE = 1232;
const CLASSIC_UDP_SIZE = 512;
const TCP_MAX_MESSAGE = 65535;
const CLASS_IN = 1;
const TYPE_DS = 43;
const TYPE_MAILB = 253;
const TYPE_MAILA = 254;
const HEADER_LENGTH = 12;

/** What the last `answerInto` did, for the caller's observer and error accounting. */
interface Outcome {
  zone: Zone | null;
  qname: Name | null;
  qtype: number;
  rcode: number;
  /** An unexpected exception that was turned into SERVFAIL. */
  error: unknown;
  /** The messages after the first of a zone transfer (TCP only); null otherwise. */
  more: Uint8Array[] | null;
  /** The reply depends on the question and the zones only (a lookup or REFUSED for no zone): it may be reused. */
  cacheable: boolean;
  /** The gate refused, dropped or truncated it (the shield must not count its own refusals). */
  gated: boolean;
  /**
   * The view whose serial its SOA carries (view-serials.ts; null: the zone's own, told to a
   * client told every name), or undefined when it carries no SOA of a zone with views: a reply
   * with a view is reused only for a client of the same view.
   */
  view: string | null | undefined;
}

const newOutcome = (): Outcome => ({ zone: null, qname: null, qtype: 0, rcode: 0, error: null, more: null, cacheable: false, gated: false, view: undefined });

/** What answers are made from besides the packet: the zones, the gate, and for TSIG and transfers the keys and policy. */
export interface AnswerContext {
  zones: ZoneSource;
  gate: QueryGate;
  /** The TSIG key of a name (lower-cased or not), or null. Without it every signed query is BADKEY. */
  tsigKey?: (name: Name) => TsigKey | null;
  /** Who may transfer which zone; nobody when absent. */
  transfers?: TransferPolicy;
  /** Milliseconds since the epoch, for TSIG times. */
  now?: () => number;
  /**
   * The signed queries let past the gate within the fudge window, by key (lower-case name) and
   * MAC, with their Time Signed (see notReplayed); absent: none is remembered.
   */
  vouchedTimes?: Map<string, number>;
  /** Names told only to some clients (split horizon); absent: every name to everyone. */
  horizon?: Horizon;
  /** The catalog zone (RFC 9432), served to the secondaries only, each its own view; absent: none. */
  catalog?: CatalogSource;
  /** The serial each client is told in the SOA of a zone with names some clients are not told; absent: the zone's own to all. */
  viewSerials?: ViewSerialSource;
}

/**
 * A catalog zone (catalog.ts): every name at or below `origin` is answered from the view of the
 * secondary that asks, authenticated as for a transfer, and REFUSED to anyone else.
 */
export interface CatalogSource {
  readonly origin: Name;
  /**
   * The catalog as the secondaries at `client` signing with `key` (verified; null: unsigned)
   * see it; null for anyone else. `transfer`: asked for an AXFR or IXFR (to be logged as one).
   */
  viewFor(client: string, key: Name | null, transfer: boolean): Zone | null;
}

const noKeys = () => null;
const NO_NAME: Name = [];

const toRecord = (rr: RR): ResourceRecord => ({
  name: rr.name,
  type: rr.type,
  class: CLASS_IN,
  ttl: rr.ttl,
  rdata: rr.rdata,
});

/** A reply with no records, echoing the question and (when the query had one) an OPT record. */
function emptyReply(query: Query, rcode: number, limit: number): Uint8Array {
  const response: Response = {
    id: query.id,
    opcode: query.opcode,
    rcode,
    aa: false,
    tc: false,
    rd: query.rd,
    ra: false,
    question: query.question,
    answer: [],
    authority: [],
    additional: [],
    edns: query.edns ? { udpPayloadSize: EDNS_PAYLOAD_SIZE, dnssecOk: query.edns.dnssecOk } : null,
  };
  if (query.rawQname) response.qnameWire = query.rawQname;
  return encodeResponse(response, limit);
}

function answerInto(packet: Uint8Array, client: string, transport: "udp" | "tcp", ctx: AnswerContext, out: Outcome): Uint8Array | null {
  out.zone = null;
  out.qname = null;
  out.qtype = 0;
  out.rcode = 0;
  out.error = null;
  out.more = null;
  out.cacheable = false;
  out.gated = false;
  out.view = undefined;
  // Never answer a response (or what is not even a header): that is how reflection loops start.
  if (packet.length < HEADER_LENGTH || (packet[2]! & 0x80) !== 0) return null;

  let query: Query;
  try {
    query = decodeQuery(packet);
  } catch (e) {
    if (!(e instanceof FormatError)) out.error = e;
    // Even garbage asks the gate first: a client the shield drops gets no FORMERR either.
    if (ctx.gate.decide(client, NO_NAME, 0, transport) !== "answer") {
      out.gated = true;
      return null;
    }
    out.rcode = Rcode.FORMERR;
    return encodeFormErr(packet, e instanceof FormatError && e.edns ? EDNS_PAYLOAD_SIZE : undefined);
  }

  let limit = TCP_MAX_MESSAGE;
  if (transport === "udp") {
    const edns = query.edns;
    limit = edns
      ? Math.min(Math.max(edns.udpPayloadSize, CLASSIC_UDP_SIZE), EDNS_PAYLOAD_SIZE)
      : CLASSIC_UDP_SIZE;
  }
  if (query.tsigStart < 0) return replyTo(query, packet, client, transport, ctx, limit, null, out);
  return signedReplyTo(query, packet, client, transport, ctx, limit, out);
}

/**
 * A signed query (RFC 8945 section 5.2): a bad signature is NOTAUTH with the TSIG error (signed
 * only for BADTIME and BADTRUNC, as the RFC says); a good one gets a reply signed with the same
 * key, every message of a transfer included.
 */
function signedReplyTo(query: Query, packet: Uint8Array, client: string, transport: "udp" | "tcp", ctx: AnswerContext, limit: number, out: Outcome): Uint8Array | null {
  const now = (ctx.now ?? Date.now)();
  const q = query.question;
  if (q) {
    out.qname = q.name;
    out.qtype = q.type;
  }
  // The gate before the TSIG record is read and the MAC checked: a client the shield drops gets
  // no FORMERR either, and one it refuses costs no key decryption or HMAC.
  const decision = q ? ctx.gate.decide(client, q.name, q.type, transport, true) : ctx.gate.decide(client, NO_NAME, 0, transport, true);
  const passed = decision === "answer" || (decision === "truncate" && transport === "tcp");
  // A configured secondary's SOA check that the UDP limit holds back (its prefix busy, or
  // flooded on purpose by a spoofer) is answered when its TSIG verifies: a secondary that checks
  // TSIG discards an unsigned TC, and its refresh would fail for as long as the flood lasts. Only
  // such a query from such an address costs an HMAC; unsigned or bad ones stay limited.
  const vouched = !passed && decision !== "refuse" && ctx.gate.admitsSigned?.(client) === true;
  if (!passed && !vouched) return gatedReply(query, decision, limit, out);
  let tsig: ReturnType<typeof readTsig>;
  try {
    tsig = readTsig(packet, query.tsigStart);
  } catch (e) {
    if (vouched) return notVouchedReply(query, decision, limit, ctx, out);
    if (!(e instanceof FormatError)) out.error = e;
    out.rcode = Rcode.FORMERR;
    return encodeFormErr(packet, query.edns ? EDNS_PAYLOAD_SIZE : undefined);
  }
  const verdict = verify(packet, tsig, ctx.tsigKey ?? noKeys, { kind: "request" }, now);
  if (vouched && (verdict.error !== 0 || !notReplayed(ctx, tsig, now))) return notVouchedReply(query, decision, limit, ctx, out);
  if (verdict.error === TsigError.FORMERR) {
    out.rcode = Rcode.FORMERR;
    return encodeFormErr(packet, query.edns ? EDNS_PAYLOAD_SIZE : undefined);
  }
  if (verdict.error !== 0) {
    out.rcode = RCODE_NOTAUTH;
    const reply = emptyReply(query, RCODE_NOTAUTH, limit);
    const withTsig = signedError(reply, tsig, verdict, now) ?? appendUnsignedError(reply, tsig, verdict.error);
    // The client's key and algorithm names are echoed and can be long: what does not fit goes
    // without its TSIG record and with TC, so the client asks again over TCP.
    return withTsig.length <= limit ? withTsig : truncated(reply);
  }
  const key = verdict.key!;
  const reply = replyTo(query, packet, client, transport, ctx, limit - tsigSize(key), key, out, true);
  if (reply === null) return null;
  let signed = sign(reply, key, { kind: "response", requestMac: tsig.mac }, now);
  // A long question with a long key name may leave no room even for an empty signed reply: TC.
  if (signed.message.length > limit) return truncated(emptyReply(query, out.rcode, limit));
  const first = signed.message;
  if (out.more !== null) {
    out.more = out.more.map((message) => {
      signed = sign(message, key, { kind: "continuation", priorMac: signed.mac }, now);
      return signed.message;
    });
  }
  return first;
}

/** Signed queries remembered at most (a bound on memory; the window is what normally ends them). */
const MAX_VOUCHED = 10_000;

/**
 * A query let past the gate for its signature is let past once (RFC 8945 section 5.2.3): a
 * captured SOA check replayed within the fudge, from the secondary's spoofed address, was
 * answered past the rate limit each time — reflection towards the secondary. Its MAC (which
 * covers its ID and Time Signed) is remembered while the fudge could still accept it; a repeat
 * is limited as anyone's is. Not "later than the last one of its key": secondaries sharing a key,
 * or checking several zones in the same second, or with clocks apart, would be limited too
 * (found in review).
 */
function notReplayed(ctx: AnswerContext, tsig: TsigRecord, now: number): boolean {
  const seen = ctx.vouchedTimes;
  if (seen === undefined) return true;
  // Oldest first (insertion order): forget what the fudge no longer accepts.
  const oldest = Math.floor(now / 1000) - 2 * FUDGE_SECONDS;
  for (const [entry, signedAt] of seen) {
    if (signedAt >= oldest && seen.size < MAX_VOUCHED) break;
    seen.delete(entry);
  }
  const entry = `${nameToText(lowerName(tsig.keyName))} ${Buffer.from(tsig.mac).toString("base64")}`;
  if (seen.has(entry)) return false;
  seen.set(entry, tsig.timeSigned);
  return true;
}

/**
 * The zone that answers `qname`: the deepest one — except that DS at a zone's apex belongs to the
 * parent side of the cut (RFC 4035 section 3.1.4.1), when the parent is served here too.
 */
function zoneFor(zones: ZoneSource, qname: Name, qtype: number): Zone | null {
  const zone = zones.find(qname);
  if (qtype !== TYPE_DS || zone === null || qname.length === 0 || zone.origin.length !== qname.length) return zone;
  return zones.find(qname.slice(1)) ?? zone;
}

/**
 * The signed form of a TSIG error reply, or null when it goes unsigned: an error about the time
 * or a MAC shorter than our policy, found after the MAC verified, is signed; one about the key or
 * the MAC itself must not be (RFC 8945 section 5.3.2).
 */
function signedError(reply: Uint8Array, request: TsigRecord, verdict: Verdict, now: number): Uint8Array | null {
  if (verdict.key === null) return null;
  if (verdict.error === TsigError.BADTIME) return signBadTime(reply, verdict.key, request, now);
  if (verdict.error === TsigError.BADTRUNC) return sign(reply, verdict.key, { kind: "response", requestMac: request.mac }, now, verdict.error).message;
  return null;
}

/** What the gate's "refuse", "drop" or (UDP) "truncate" sends: REFUSED, nothing, or an empty reply with TC. */
function gatedReply(query: Query, decision: Decision, limit: number, out: Outcome): Uint8Array | null {
  out.gated = true;
  if (decision === "drop") return null;
  out.rcode = decision === "refuse" ? Rcode.REFUSED : Rcode.NOERROR;
  const reply = emptyReply(query, out.rcode, limit);
  return decision === "refuse" ? reply : truncated(reply);
}

/** The gate's reply to a signed query its signature did not get through after all; the gate is told (it counts it now). */
function notVouchedReply(query: Query, decision: Decision, limit: number, ctx: AnswerContext, out: Outcome): Uint8Array | null {
  ctx.gate.notVouched?.(decision);
  return gatedReply(query, decision, limit, out);
}

/** `reply` with TC set (a reply without records: the header, question and OPT always fit). */
function truncated(reply: Uint8Array): Uint8Array {
  reply[2]! |= 0x02;
  return reply;
}

/** The unsigned reply (the first message of a transfer; the rest go to `out.more`). */
function replyTo(query: Query, packet: Uint8Array, client: string, transport: "udp" | "tcp", ctx: AnswerContext, limit: number, key: TsigKey | null, out: Outcome, gated = false): Uint8Array | null {
  try {
    const q = query.question;
    if (q) {
      out.qname = q.name;
      out.qtype = q.type;
    }
    // The gate first, for every query (one without a question too): a client the shield
    // drops gets no reply at all, BADVERS and NOTIMP included, and the limit counts them.
    if (!gated) {
      const decision = q ? ctx.gate.decide(client, q.name, q.type, transport) : ctx.gate.decide(client, NO_NAME, 0, transport);
      if (decision === "drop") {
        out.gated = true;
        return null;
      }
      if (decision === "refuse") {
        out.gated = true;
        out.rcode = Rcode.REFUSED;
        return emptyReply(query, Rcode.REFUSED, limit);
      }
      if (decision === "truncate" && transport === "udp") {
        out.gated = true;
        return truncated(emptyReply(query, Rcode.NOERROR, limit));
      }
    }
    if (query.edns && query.edns.version > 0) {
      out.rcode = Rcode.BADVERS;
      return emptyReply(query, Rcode.BADVERS, limit);
    }
    if (query.opcode !== Opcode.QUERY || q === null || q.type === TYPE_MAILA || q.type === TYPE_MAILB) {
      out.rcode = Rcode.NOTIMP;
      return emptyReply(query, Rcode.NOTIMP, limit);
    }
    // Other classes (CH, HS, ANY) are not served.
    if (q.class !== CLASS_IN) {
      out.rcode = Rcode.REFUSED;
      return emptyReply(query, Rcode.REFUSED, limit);
    }
    // Before anything else that looks for a zone: the catalog lists every organization's zones.
    const catalog = ctx.catalog;
    if (catalog !== undefined && isSubdomain(q.name, catalog.origin)) return catalogReply(query, packet, client, transport, catalog, limit, key, out);
    if (q.type === TYPE_AXFR || q.type === TYPE_IXFR) return transfer(query, packet, client, transport, ctx, limit, key, out);
    const zone = zoneFor(ctx.zones, q.name, q.type);
    out.cacheable = query.tsigStart < 0;
    if (zone === null) {
      out.rcode = Rcode.REFUSED;
      return emptyReply(query, Rcode.REFUSED, limit);
    }
    out.zone = zone;
    const horizon = ctx.horizon;
    const keyName = key ? key.name : null; // a key the query was verified with (signedReplyTo)
    if (horizon?.hides(client, q.name, keyName)) return hiddenReply(query, limit, out);
    let answer = zone.lookup(q.name, q.type, { minimalAny: transport === "udp", nested: ctx.zones.nestedIn?.(zone) });
    // A question outside the hidden names whose answer carries some along (a CNAME into them,
    // an MX's addresses) is answered per client: never from the cache.
    if (horizon && !horizon.restricts(q.name) && touchesRestricted(answer, horizon)) {
      out.cacheable = false;
      answer = withoutHidden(answer, client, keyName, horizon);
    }
    const signatures = signaturesOf(zone);
    if (signatures !== undefined) answer = dnssecAnswer(answer, q.name, q.type, signatures, query.edns?.dnssecOk === true);
    // A signed zone holds no provider's names (dnssec-service.ts): its SOA is never a view's.
    else if (ctx.viewSerials !== undefined) answer = inView(answer, zone, client, keyName, ctx.viewSerials, out);
    return answerReply(query, answer, limit, out);
  } catch (e) {
    out.more = null;
    out.cacheable = false;
    // A part of the message only a later step reads (an IXFR's SOA) can still be malformed.
    const malformed = e instanceof FormatError;
    if (!malformed) out.error = e;
    out.rcode = malformed ? Rcode.FORMERR : Rcode.SERVFAIL;
    try {
      return emptyReply(query, out.rcode, limit);
    } catch {
      return encodeBareServfail(packet);
    }
  }
}

/** The reply carrying a zone's answer to the query's question. */
function answerReply(query: Query, answer: Answer, limit: number, out: Outcome): Uint8Array {
  out.rcode = answer.rcode;
  const response: Response = {
    id: query.id,
    opcode: query.opcode,
    rcode: answer.rcode,
    aa: answer.aa,
    tc: false,
    rd: query.rd,
    ra: false,
    question: query.question,
    answer: answer.answer.map(toRecord),
    authority: answer.authority.map(toRecord),
    additional: answer.additional.map(toRecord),
    edns: query.edns ? { udpPayloadSize: EDNS_PAYLOAD_SIZE, dnssecOk: query.edns.dnssecOk } : null,
    // Without AA it is a referral: its additional section is glue, which must not go missing silently.
    additionalRequired: !answer.aa,
  };
  if (query.rawQname) response.qnameWire = query.rawQname;
  return encodeResponse(response, limit);
}

/**
 * A name at or below the catalog zone's: answered, a transfer or any query (a secondary checks
 * the catalog's SOA before it transfers), only to a secondary asking from its address with its
 * key verified, from its own view. Anyone else — unsigned, another key, another address — gets
 * exactly what a name not served here gets, so that nothing tells the catalog's name from any
 * other: a transfer NOTAUTH (as `transfer` answers for a zone it does not have; found in review:
 * REFUSED said a zone was there), any other query REFUSED. Nothing of it is cached: the catalog
 * lists every organization's zone names.
 */
function catalogReply(query: Query, packet: Uint8Array, client: string, transport: "udp" | "tcp", catalog: CatalogSource, limit: number, key: TsigKey | null, out: Outcome): Uint8Array {
  const q = query.question!;
  const asTransfer = q.type === TYPE_AXFR || q.type === TYPE_IXFR;
  const view = catalog.viewFor(client, key === null ? null : key.name, asTransfer);
  if (view === null) {
    out.rcode = asTransfer ? RCODE_NOTAUTH : Rcode.REFUSED;
    return emptyReply(query, out.rcode, limit);
  }
  out.zone = view;
  if (asTransfer) return transferOf(view, query, packet, transport, limit, out);
  return answerReply(query, view.lookup(q.name, q.type, { minimalAny: transport === "udp" }), limit, out);
}

/**
 * REFUSED for a name the horizon hides from the client, counted under the zone that holds it
 * (so the shield does not take it for a probe of names not served here). Never cached: another
 * client may be told the name.
 */
function hiddenReply(query: Query, limit: number, out: Outcome): Uint8Array {
  out.cacheable = false;
  out.rcode = Rcode.REFUSED;
  return emptyReply(query, Rcode.REFUSED, limit);
}

/**
 * AXFR/IXFR: only for a zone's apex (NOTAUTH otherwise: RFC 5936 section 2.2.1), only to whom the
 * policy allows (REFUSED), AXFR only over TCP (RFC 5936 section 4.2), IXFR only with the
 * secondary's SOA (FORMERR otherwise).
 */
function transfer(query: Query, packet: Uint8Array, client: string, transport: "udp" | "tcp", ctx: AnswerContext, limit: number, key: TsigKey | null, out: Outcome): Uint8Array {
  const q = query.question!;
  const zone = ctx.zones.find(q.name);
  if (zone === null || !nameEquals(zone.origin, q.name)) {
    out.rcode = RCODE_NOTAUTH;
    return emptyReply(query, RCODE_NOTAUTH, limit);
  }
  out.zone = zone;
  const policy = ctx.transfers ?? noTransfers;
  if (!policy.allowed(client, zone.origin, key ? key.name : null)) {
    out.rcode = Rcode.REFUSED;
    return emptyReply(query, Rcode.REFUSED, limit);
  }
  return transferOf(zone, query, packet, transport, limit, out);
}

/** The transfer of `zone`, to a client allowed it: for its apex only, AXFR over TCP only, IXFR with the secondary's SOA only. */
function transferOf(zone: Zone, query: Query, packet: Uint8Array, transport: "udp" | "tcp", limit: number, out: Outcome): Uint8Array {
  const q = query.question!;
  if (!nameEquals(zone.origin, q.name)) {
    out.rcode = RCODE_NOTAUTH;
    return emptyReply(query, RCODE_NOTAUTH, limit);
  }
  if (transport === "udp" && q.type === TYPE_AXFR) {
    out.rcode = Rcode.REFUSED;
    return emptyReply(query, Rcode.REFUSED, limit);
  }
  // An IXFR names the version the secondary has by an SOA in authority (RFC 1995 section 3):
  // without one there is nothing to compare, and "current" would be a guess. BIND and Knot: FORMERR.
  if (q.type === TYPE_IXFR && ixfrClientSerial(packet) === null) {
    out.rcode = Rcode.FORMERR;
    return emptyReply(query, Rcode.FORMERR, limit);
  }
  // A signed zone whose signatures cannot be made or found while sealed is served SERVFAIL: its
  // transfer would hand secondaries the zone unsigned, which they would serve as its new copy.
  if (signaturesOf(zone)?.unavailable) {
    out.rcode = Rcode.SERVFAIL;
    return emptyReply(query, Rcode.SERVFAIL, limit);
  }
  const messages = transferMessages(query, packet, zone, transport, limit);
  if (messages.length > 1) out.more = messages.slice(1);
  return messages[0]!;
}

const scratch = newOutcome();

/**
 * The reply to one query packet, or null when nothing must be sent (no whole header, QR set, or
 * the gate drops it). Never throws: an unexpected exception is answered SERVFAIL.
 */
export function answerQuery(
  packet: Uint8Array,
  client: string,
  transport: "udp" | "tcp",
  zones: ZoneSource,
  gate: QueryGate,
  extra: Omit<AnswerContext, "zones" | "gate"> = {},
): Uint8Array | null {
  return answerInto(packet, client, transport, { zones, gate, ...extra }, scratch);
}

/** Like answerQuery, for tests of transfers: every message of the reply (one unless AXFR/IXFR over TCP). */
export function answerAll(packet: Uint8Array, client: string, transport: "udp" | "tcp", ctx: AnswerContext): Uint8Array[] {
  const out = newOutcome();
  const first = answerInto(packet, client, transport, ctx, out);
  return first === null ? [] : [first, ...(out.more ?? [])];
}

/**
 * The listeners' answer path: `answerInto`, with the replies to plain queries kept in an
 * AnswerCache and reused (through the gate) until the zones change. Gives the same octets as
 * answerQuery for every packet (the fuzz script checks it).
 */
export class CachingAnswerer {
  /** What the last `answer` did (for the observer): filled on a cache hit too. */
  readonly outcome = newOutcome();
  private readonly cache = new AnswerCache();

  constructor(readonly context: AnswerContext) {}

  answer(packet: Uint8Array, client: string, transport: "udp" | "tcp"): Uint8Array | null {
    const out = this.outcome;
    const version = this.context.zones.version;
    const key = version === undefined ? -1 : questionKey(packet, transport === "tcp", EDNS_PAYLOAD_SIZE);
    if (key < 0) return answerInto(packet, client, transport, this.context, out);
    const { qnameEnd, limit, flags } = lastQuestion;
    const cached = this.cache.get(key, packet, version!);
    if (cached !== undefined && this.inViewOf(cached, client)) return this.fromCache(cached, packet, qnameEnd, client, transport);
    const reply = answerInto(packet, client, transport, this.context, out);
    if (out.cacheable && reply !== null && out.qname !== null) {
      const horizon = this.context.horizon;
      const restricted = horizon ? { generation: horizon.generation, restricts: horizon.restricts(out.qname) } : undefined;
      this.cache.set(key, packet, qnameEnd, limit, flags, version!, { bytes: reply, zone: out.zone, qname: out.qname, qtype: out.qtype, rcode: out.rcode, restricted, view: out.view });
    }
    return reply;
  }

  /**
   * Whether a cached reply may go to `client`: one whose SOA carries a view's serial only to a
   * client of that view (another is answered by the full path, whose reply then takes its place).
   */
  private inViewOf(cached: CachedReply, client: string): boolean {
    if (cached.view === undefined || cached.zone === null) return true;
    return this.context.viewSerials?.viewOf(client, cached.zone) === cached.view;
  }

  /** A cached reply for this packet, after the gate; fills `outcome` as the full path would. */
  private fromCache(cached: CachedReply, packet: Uint8Array, qnameEnd: number, client: string, transport: "udp" | "tcp"): Uint8Array | null {
    const out = this.outcome;
    out.zone = cached.zone;
    out.qname = cached.qname;
    out.qtype = cached.qtype;
    out.rcode = cached.rcode;
    out.error = null;
    out.more = null;
    out.cacheable = true;
    out.view = cached.view;
    const decision = this.context.gate.decide(client, cached.qname, cached.qtype, transport);
    out.gated = decision !== "answer";
    if (decision === "drop") return null;
    if (decision === "refuse" || (decision === "truncate" && transport === "udp")) {
      out.zone = null;
      out.rcode = decision === "refuse" ? Rcode.REFUSED : Rcode.NOERROR;
      out.cacheable = false;
      const query = decodeQuery(packet); // known to decode: it has the shape questionKey accepts
      const reply = emptyReply(query, out.rcode, transport === "udp" ? CLASSIC_UDP_SIZE : TCP_MAX_MESSAGE);
      return decision === "refuse" ? reply : truncated(reply);
    }
    // Cached for a client that may be told the name: asked again for this one (unsigned: a
    // signed query is never answered from the cache).
    const horizon = this.context.horizon;
    if (horizon && mayBeHidden(cached, horizon) && horizon.hides(client, cached.qname, null)) {
      return hiddenReply(decodeQuery(packet), transport === "udp" ? CLASSIC_UDP_SIZE : TCP_MAX_MESSAGE, out);
    }
    return patchedReply(cached.bytes, packet, qnameEnd);
  }
}

/**
 * Whether a cached reply's name may be one the horizon hides from some clients: known when it was
 * cached, unless the providers changed since. Asking the horizon for every hit cost a sixth of
 * the cached path (0.16 of 0.48 µs in process, about 6% of the compiled binary's queries/s).
 */
function mayBeHidden(cached: CachedReply, horizon: Horizon): boolean {
  const known = cached.restricted;
  return known === undefined || known.generation !== horizon.generation || known.restricts;
}

// ---------------------------------------------------------------------------------------------
// Listeners

export interface DnsServerOptions {
  udp: Array<{ address: string; port: number }>;
  tcp: Array<{ address: string; port: number }>;
  zones: ZoneSource;
  gate?: QueryGate;
  observer?: QueryObserver;
  /** TSIG keys by name (for transfers, NOTIFY and signed queries). */
  tsigKey?: (name: Name) => TsigKey | null;
  /** Who may transfer which zone (AXFR/IXFR); nobody when absent. */
  transfers?: TransferPolicy;
  /** Names told only to some clients; absent: every name to everyone. */
  horizon?: Horizon;
  /** The catalog zone, told only to the secondaries; absent: none. */
  catalog?: CatalogSource;
  /** The serial each client is told in the SOA of a zone with names some clients are not told; absent: the zone's own to all. */
  viewSerials?: ViewSerialSource;
  now?: () => number;
  log: Logger;
  /** A TCP connection with nothing received for this long is closed. Default 10000. */
  tcpIdleMs?: number;
  /** TCP connections beyond this many are closed at once. Default 256. */
  maxTcpConnections?: number;
  /** TCP connections one client (an IPv4 address, an IPv6 /64) may hold at once (default: an eighth of maxTcpConnections, at least 4). */
  maxTcpConnectionsPerClient?: number;
}

export interface DnsServer {
  /** The bound ports, in the order of `options.udp` / `options.tcp` (port 0 resolved). */
  udpPorts: number[];
  tcpPorts: number[];
  stop: Stop;
}

/** UDP replies waiting for a socket whose send buffer is full, at most. */
const MAX_UDP_QUEUE = 10_000;
/** Replies queued on a TCP connection that is not reading them before it is dropped. */
const MAX_TCP_BACKLOG = 1 << 20;
/** Answers buffered while reading one segment are written once they reach this much. */
const TCP_FLUSH_BYTES = 1 << 16;
/** Queries a connection may send while a zone transfer is being written to it, at most (octets). */
const MAX_TCP_WAITING = 1 << 16;
/** At most one log line per this many milliseconds for failing queries (a flood must not flood the log). */
const ERROR_LOG_INTERVAL_MS = 1000;

/** A TCP connection: its stream state (tcp-stream.ts) and the rest. */
interface Connection extends StreamState {
  timer: ReturnType<typeof setTimeout> | null;
  client: string;
  closed: boolean;
  /**
   * The messages that came while a zone transfer is being written, answered once the kernel has
   * taken it (null: none is). Only a transfer's replies pass MAX_TCP_BACKLOG (it is authenticated,
   * for a configured secondary, and bounded by its zone): one at a time per connection.
   */
  waiting: Uint8Array[] | null;
  waitingBytes: number;
}

/** The listeners of one server instance; handlers are created once, never per query. */
class DnsServerRuntime {
  readonly answerer: CachingAnswerer;
  /** One event object, refilled for every query: observers must not keep it. */
  private readonly event: QueryEvent = { client: "", zone: null, qname: [], query: new Uint8Array(0), qtype: 0, rcode: 0, transport: "udp", bytes: 0, gated: false, time: 0 };
  private readonly now: () => number;
  /** The time of this event-loop turn's datagrams: read when its first arrives (a clock read per query showed in profiles). */
  private turnTime = 0;
  readonly connections = new Set<import("bun").Socket<Connection>>();
  readonly idleMs: number;
  readonly maxConnections: number;
  private readonly slots: ClientSlots;
  failures = 0;
  private lastErrorLog = 0;
  private suppressed = 0;
  private stopping = false;
  private allClosed: (() => void) | null = null;

  constructor(readonly options: DnsServerOptions) {
    this.answerer = new CachingAnswerer({ zones: options.zones, gate: options.gate ?? allowAll, tsigKey: options.tsigKey, transfers: options.transfers, horizon: options.horizon, catalog: options.catalog, viewSerials: options.viewSerials, now: options.now, vouchedTimes: new Map() });
    this.now = options.now ?? Date.now;
    this.idleMs = options.tcpIdleMs ?? 10_000;
    this.maxConnections = options.maxTcpConnections ?? 256;
    this.slots = ClientSlots.forListener(this.maxConnections, options.maxTcpConnectionsPerClient);
  }

  /** Answers one packet and does the bookkeeping (errors, observer). */
  answer(packet: Uint8Array, client: string, transport: "udp" | "tcp", time: number): Uint8Array | null {
    const reply = this.answerer.answer(packet, client, transport);
    const out = this.answerer.outcome;
    if (out.error !== null) this.failed(out.error, transport);
    const observer = this.options.observer;
    if (observer && reply !== null && out.qname !== null) {
      const event = this.event;
      event.client = client;
      event.zone = out.zone ? out.zone.origin : null;
      event.qname = out.qname;
      event.query = packet;
      event.qtype = out.qtype;
      event.rcode = out.rcode;
      event.transport = transport;
      event.bytes = reply.length;
      event.gated = out.gated;
      event.time = time;
      try {
        observer.observe(event);
      } catch (e) {
        this.failed(e, transport);
      }
    }
    return reply;
  }

  failed(error: unknown, transport: string): void {
    this.failures++;
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    this.lastErrorLog = now;
    this.options.log.error("dns query failed", {
      transport,
      error: error instanceof Error ? error.message : String(error),
      failures: this.failures,
      suppressed: this.suppressed,
    });
    this.suppressed = 0;
  }

  // UDP ----------------------------------------------------------------------------------------

  /**
   * UDP replies of one event-loop turn, sent together with one sendMany (sendmmsg) from
   * setImmediate: a system call per burst instead of one per reply. A microtask would run after
   * every datagram and batch nothing.
   */
  private readonly udpQueue = new Map<import("bun").udp.Socket<"uint8array">, Array<Uint8Array | number | string>>();
  private flushScheduled = false;
  readonly flushUdp = () => {
    this.flushScheduled = false;
    for (const [socket, queue] of this.udpQueue) {
      if (queue.length === 0) continue;
      try {
        // What the kernel's send buffer did not take waits for the socket's drain.
        const sent = socket.sendMany(queue) * 3;
        if (sent >= queue.length) queue.length = 0;
        else queue.splice(0, Math.max(0, sent));
      } catch (e) {
        this.failed(e, "udp");
        queue.length = 0;
      }
    }
  };

  readonly udpHandler: import("bun").udp.SocketHandler<"uint8array"> = {
    data: (socket, data, port, address) => {
      try {
        if (!this.flushScheduled) {
          this.flushScheduled = true;
          this.turnTime = this.now();
          setImmediate(this.flushUdp);
        }
        const reply = this.answer(data, address, "udp", this.turnTime);
        if (reply === null) return;
        let queue = this.udpQueue.get(socket);
        if (queue === undefined) this.udpQueue.set(socket, (queue = []));
        // A socket that cannot send keeps at most this many replies; beyond, they are lost like
        // any UDP datagram (the client asks again), not held in memory without bound.
        if (queue.length >= MAX_UDP_QUEUE * 3) return;
        queue.push(reply, port, address);
      } catch (e) {
        this.failed(e, "udp");
      }
    },
    drain: () => this.flushUdp(),
    // Bun reports ICMP errors here (a client gone: ECONNREFUSED), sometimes without an Error.
    error: (_socket, error: Error | undefined) => {
      this.options.log.debug("dns udp socket error", { error: String(error?.message ?? error) });
    },
  };

  // TCP ----------------------------------------------------------------------------------------

  readonly tcpHandler: import("bun").SocketHandler<Connection> = {
    open: (socket) => {
      if (this.stopping || this.connections.size >= this.maxConnections || !this.slots.take(socket.remoteAddress)) {
        socket.data = { pending: null, pendingLength: 0, backlog: null, timer: null, client: "", closed: true, waiting: null, waitingBytes: 0 };
        socket.terminate();
        return;
      }
      const connection: Connection = {
        pending: null,
        pendingLength: 0,
        backlog: null,
        timer: null,
        client: socket.remoteAddress,
        closed: false,
        waiting: null,
        waitingBytes: 0,
      };
      socket.data = connection;
      this.connections.add(socket);
      connection.timer = setTimeout(closeIdle, this.idleMs, socket);
    },
    data: (socket, data) => {
      const connection = socket.data;
      if (!connection || connection.closed) return;
      try {
        this.tcpData(socket, connection, data);
      } catch (e) {
        this.failed(e, "tcp");
        this.drop(socket);
      }
    },
    drain: (socket) => {
      const connection = socket.data;
      if (!connection || connection.closed || connection.backlog === null) return;
      connection.timer?.refresh(); // a transfer being read is not idle
      const backlog = connection.backlog;
      connection.backlog = null;
      this.write(socket, connection, backlog);
      if (connection.backlog === null) this.resume(socket, connection);
    },
    close: (socket) => this.closed(socket),
    error: (socket, error: Error | undefined) => {
      this.options.log.debug("dns tcp connection error", { error: String(error?.message ?? error) });
      this.closed(socket);
    },
  };

  /**
   * Frames out whole messages, answers each in order and writes the replies in one go. A client
   * that pipelines queries faster than it reads the answers is cut off once the answers it has
   * not taken pass MAX_TCP_BACKLOG (else a few connections asking for a large RRset and never
   * reading would hold the server's memory). A zone transfer goes out whole, past that limit,
   * and what comes after it waits until the kernel has taken it (see tcpAnswers). The idle timer
   * restarts with each whole message, not with any byte: a client trickling a frame is idle.
   */
  private tcpData(socket: import("bun").Socket<Connection>, connection: Connection, data: Uint8Array): void {
    this.tcpAnswers(socket, connection, (onMessage) => readMessages(connection, data, onMessage));
  }

  /**
   * Answers the messages `read` hands over. After a zone transfer the rest wait (copied, up to
   * MAX_TCP_WAITING octets; beyond, the connection is dropped) and are answered on a later turn
   * of the event loop once it is written: 300 pipelined AXFRs were built and signed in one turn,
   * and a client that did not read them held all of them in memory.
   */
  private tcpAnswers(socket: import("bun").Socket<Connection>, connection: Connection, read: (onMessage: (message: Uint8Array) => boolean) => boolean): void {
    const replies: Uint8Array[] = [];
    let buffered = 0;
    const time = this.now();
    // Answers are handed to the kernel as they pile up, so that a client that reads is judged
    // by what it leaves unread, not by how many queries one segment held.
    const flush = () => {
      if (replies.length === 0) return;
      this.write(socket, connection, framed(replies));
      replies.length = 0;
      buffered = 0;
    };
    const whole = read((message) => {
      if (connection.waiting !== null) return this.wait(connection, message);
      connection.timer?.refresh();
      const reply = this.answer(message, connection.client, "tcp", time);
      if (reply === null) return true;
      const more = this.answerer.outcome.more;
      if (more) {
        // A zone transfer: what was answered before it goes first, then the whole transfer.
        flush();
        connection.waiting = [];
        this.write(socket, connection, framed([reply, ...more]));
        if (connection.backlog === null) setImmediate(() => this.resume(socket, connection));
        return !connection.closed;
      }
      replies.push(reply);
      buffered += 2 + reply.length;
      if (buffered >= TCP_FLUSH_BYTES) flush();
      return !connection.closed && (connection.backlog?.length ?? 0) + buffered <= MAX_TCP_BACKLOG;
    });
    if (!whole) return this.drop(socket); // a frame shorter than a header (garbage), or too much unread
    flush();
  }

  /** Keeps a message that came while a transfer is being written; false when too much waits. */
  private wait(connection: Connection, message: Uint8Array): boolean {
    connection.waitingBytes += message.length;
    connection.waiting!.push(message.slice()); // the message is a view into a buffer that is reused
    return connection.waitingBytes <= MAX_TCP_WAITING;
  }

  /** The transfer was written: the messages that waited for it are answered now. */
  private resume(socket: import("bun").Socket<Connection>, connection: Connection): void {
    const waiting = connection.waiting;
    if (connection.closed || waiting === null) return;
    connection.waiting = null;
    connection.waitingBytes = 0;
    try {
      this.tcpAnswers(socket, connection, (onMessage) => waiting.every(onMessage));
    } catch (e) {
      this.failed(e, "tcp");
      this.drop(socket);
    }
  }

  /** Writes `bytes`, keeping what the kernel does not take for the next drain (within MAX_TCP_BACKLOG, but while a transfer is written). */
  private write(socket: import("bun").Socket<Connection>, connection: Connection, bytes: Uint8Array): void {
    if (!writeOrQueue(socket as import("bun").Socket<unknown>, connection, bytes, connection.waiting === null ? MAX_TCP_BACKLOG : Infinity)) this.drop(socket);
  }

  drop(socket: import("bun").Socket<Connection>): void {
    socket.terminate();
    this.closed(socket);
  }

  private closed(socket: import("bun").Socket<Connection>): void {
    const connection = socket.data;
    if (connection && !connection.closed) {
      connection.closed = true;
      if (connection.timer !== null) clearTimeout(connection.timer);
      connection.timer = null;
      connection.pending = null;
      connection.backlog = null;
      connection.waiting = null;
    }
    if (!this.connections.delete(socket)) return;
    this.slots.release(connection!.client);
    if (this.connections.size === 0 && this.allClosed) this.allClosed();
  }

  /** Closes every connection; resolves when they are all gone (or after a second regardless). */
  async closeAll(): Promise<void> {
    this.stopping = true;
    if (this.connections.size === 0) return;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      this.allClosed = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    for (const socket of [...this.connections]) this.drop(socket);
    await done;
  }
}

function closeIdle(socket: import("bun").Socket<Connection>): void {
  const connection = socket.data;
  if (!connection || connection.closed) return;
  connection.timer = null;
  socket.end();
}

/**
 * Binds every UDP and TCP address and serves `zones`. When a bind fails, what was already bound
 * is closed and the error is thrown. `stop` closes everything and resolves when it is closed.
 */
export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const runtime = new DnsServerRuntime(options);
  const udpSockets: import("bun").udp.Socket<"uint8array">[] = [];
  const listeners: import("bun").TCPSocketListener<Connection>[] = [];

  const stop: Stop = async () => {
    for (const listener of listeners) listener.stop(false);
    await runtime.closeAll();
    for (const listener of listeners) listener.stop(true);
    runtime.flushUdp(); // what was answered goes out before the sockets close
    for (const socket of udpSockets) socket.close();
    listeners.length = 0;
    udpSockets.length = 0;
  };

  try {
    for (const { address, port } of options.udp) {
      udpSockets.push(
        await Bun.udpSocket({ hostname: address, port, binaryType: "uint8array", socket: runtime.udpHandler }),
      );
    }
    for (const { address, port } of options.tcp) {
      listeners.push(
        Bun.listen<Connection>({
          hostname: address,
          port,
          socket: runtime.tcpHandler,
        }),
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const udpPorts = udpSockets.map((s) => s.port);
  const tcpPorts = listeners.map((l) => l.port);
  options.log.info("dns server listening", { udp: udpPorts, tcp: tcpPorts });
  return { udpPorts, tcpPorts, stop };
}
