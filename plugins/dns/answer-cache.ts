/**
 * Finished replies, reused: most queries an authoritative server gets repeat a few thousand
 * questions, and the reply to a question depends only on the question (name without its case,
 * type), the size the client can take and its DO bit — and on the zones, so the cache is
 * emptied whenever they change. A hit costs reading the question's octets and copying the
 * stored reply with the query's ID, RD bit and qname case patched in: no decoding of records,
 * no lookup, no encoding. Everything else (TSIG, other opcodes, EDNS options that are
 * malformed, compressed qnames, transfers) takes the full path, which is the reference.
 *
 * Bounded: at most `maxEntries` replies and `maxBytes` of them; a full cache is emptied and fills
 * again with what is asked now, so a flood of random names costs the cache its hits, never
 * memory. A reply larger than MAX_CACHED_REPLY is not kept at all: only TCP has them, and they
 * save the least per octet they hold (below).
 */
import type { Name } from "./names.ts";
import type { Zone } from "./zone.ts";

/** A reply as the full path made it, and what the observer and the gate need to know of it. */
export interface CachedReply {
  bytes: Uint8Array;
  zone: Zone | null;
  qname: Name;
  qtype: number;
  rcode: number;
  /**
   * Whether the split horizon restricts its question's name, as of the horizon's `generation`:
   * only such a reply is asked about again for each client (the answer path's hot loop).
   */
  restricted?: { generation: number; restricts: boolean };
  /** The view whose serial its SOA carries (server.ts, Outcome.view); undefined: none, it is everyone's. */
  view?: string | null;
}

interface Entry extends CachedReply {
  /** The question it answers: lowered qname octets and qtype, then the size cap and flags. */
  question: Uint8Array;
}

const HEADER_LENGTH = 12;
const TYPE_OPT = 41;
const CLASS_IN = 1;
const CLASSIC_UDP_SIZE = 512;
const lower = (b: number) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b);

/**
 * Replies larger than this are made again for each query. Measured (Bun 1.4.5, TXT RRsets under
 * a wildcard, over TCP): a cache hit saves 3 ns of work per octet it keeps up to 2 KiB, 1.5 at
 * 4 KiB, under 1 beyond (55 µs to make a 58 KB reply, 11 µs to copy it from the cache) — and a
 * reply of 4 KiB takes the full path in about the time of an ordinary miss. Every UDP reply
 * (at most EDNS_PAYLOAD_SIZE) is below it.
 */
export const MAX_CACHED_REPLY = 4096;
/** The octets of replies and questions a cache holds at most (entries are small; this binds when they are not). */
export const MAX_CACHED_BYTES = 32 * 1024 * 1024;

/**
 * What `questionKey` found in the last packet it accepted: where its qname ends, the reply's
 * size cap and the EDNS flags (1: an OPT record, 2: DO). Module state, so that the hot path
 * allocates nothing; read right after the call.
 */
export const lastQuestion = { qnameEnd: 0, limit: 0, flags: 0 };

/**
 * A 32-bit key (FNV-1a over the lowered qname octets, the type, the size cap and the flags) of
 * a plain query — header QR=0, opcode QUERY, one question of class IN with an uncompressed name,
 * no answer or authority records, at most an OPT record (version 0, options well formed) and
 * nothing after it — or -1 for anything else. The cap is 512 without EDNS over UDP, the client's
 * size capped at `udpCap` with it, 65535 over TCP. Keys can collide: entries keep the question
 * and `AnswerCache.get` compares it.
 */
export function questionKey(p: Uint8Array, tcp: boolean, udpCap: number): number {
  const length = p.length;
  if (length < HEADER_LENGTH + 5 || (p[2]! & 0xf8) !== 0) return -1;
  if (p[4] !== 0 || p[5] !== 1 || p[6] !== 0 || p[7] !== 0 || p[8] !== 0 || p[9] !== 0 || p[10] !== 0 || p[11]! > 1) return -1;
  let at = HEADER_LENGTH;
  let hash = 0x811c9dc5;
  for (;;) {
    const label = p[at];
    if (label === undefined || label > 63) return -1;
    if (label === 0) break;
    if (at + 1 + label >= length || at + label - HEADER_LENGTH > 253) return -1;
    hash = Math.imul(hash ^ label, 0x01000193);
    for (let i = at + 1, end = at + 1 + label; i < end; i++) hash = Math.imul(hash ^ lower(p[i]!), 0x01000193);
    at += 1 + label;
  }
  const qnameEnd = at + 1;
  if (qnameEnd + 4 > length) return -1;
  const qtype = (p[qnameEnd]! << 8) | p[qnameEnd + 1]!;
  if (((p[qnameEnd + 2]! << 8) | p[qnameEnd + 3]!) !== CLASS_IN || (qtype >= 251 && qtype <= 254)) return -1;
  let end = qnameEnd + 4;
  let limit = tcp ? 65535 : CLASSIC_UDP_SIZE;
  let flags = 0;
  if (p[11] === 1) {
    // The OPT record: root owner, type 41, class = payload size, TTL = ext-rcode/version/DO.
    if (end + 11 > length || p[end] !== 0 || ((p[end + 1]! << 8) | p[end + 2]!) !== TYPE_OPT || p[end + 6] !== 0) return -1;
    const rdEnd = end + 11 + ((p[end + 9]! << 8) | p[end + 10]!);
    if (rdEnd !== length || !optionsWellFormed(p, end + 11, rdEnd)) return -1;
    if (!tcp) limit = Math.min(Math.max((p[end + 3]! << 8) | p[end + 4]!, CLASSIC_UDP_SIZE), udpCap);
    flags = 1 | ((p[end + 7]! & 0x80) !== 0 ? 2 : 0);
    end = rdEnd;
  }
  if (end !== length) return -1;
  lastQuestion.qnameEnd = qnameEnd;
  lastQuestion.limit = limit;
  lastQuestion.flags = flags;
  hash = Math.imul(hash ^ qtype, 0x01000193);
  hash = Math.imul(hash ^ limit, 0x01000193);
  return (Math.imul(hash ^ flags, 0x01000193) >>> 0);
}

/** The question part of an entry: lowered qname and qtype octets, then cap (2) and flags (1). */
function questionOf(p: Uint8Array, qnameEnd: number, limit: number, flags: number): Uint8Array {
  const q = new Uint8Array(qnameEnd + 2 - HEADER_LENGTH + 3);
  for (let i = HEADER_LENGTH; i < qnameEnd + 2; i++) q[i - HEADER_LENGTH] = lower(p[i]!);
  const at = qnameEnd + 2 - HEADER_LENGTH;
  q[at] = limit >>> 8;
  q[at + 1] = limit;
  q[at + 2] = flags;
  return q;
}

function sameQuestion(q: Uint8Array, p: Uint8Array, qnameEnd: number, limit: number, flags: number): boolean {
  const at = qnameEnd + 2 - HEADER_LENGTH;
  if (q.length !== at + 3 || q[at] !== (limit >>> 8) || q[at + 1] !== (limit & 0xff) || q[at + 2] !== flags) return false;
  for (let i = 0; i < at; i++) if (q[i] !== lower(p[HEADER_LENGTH + i]!)) return false;
  return true;
}

function optionsWellFormed(p: Uint8Array, start: number, end: number): boolean {
  let at = start;
  while (at < end) {
    if (at + 4 > end) return false;
    at += 4 + ((p[at + 2]! << 8) | p[at + 3]!);
  }
  return at === end;
}

/** The stored reply made into the answer to `packet`: its ID, RD bit and qname octets (case). */
export function patchedReply(cached: Uint8Array, packet: Uint8Array, qnameEnd: number): Uint8Array {
  const reply = cached.slice();
  reply[0] = packet[0]!;
  reply[1] = packet[1]!;
  reply[2] = (reply[2]! & 0xfe) | (packet[2]! & 0x01);
  // A loop, not set(subarray): for a name's few octets the view it allocates costs more than the copy.
  for (let i = HEADER_LENGTH; i < qnameEnd; i++) reply[i] = packet[i]!;
  return reply;
}

export class AnswerCache {
  private readonly entries = new Map<number, Entry>();
  private version = -1;
  /** The octets of the replies and questions in `entries`. */
  private storedBytes = 0;

  constructor(
    private readonly maxEntries = 10_000,
    private readonly maxBytes = MAX_CACHED_BYTES,
  ) {}

  /** The reply stored for the question `questionKey` just read from `packet`, while the zones are at `version`. */
  get(key: number, packet: Uint8Array, version: number): CachedReply | undefined {
    if (version !== this.version) {
      this.clear();
      this.version = version;
      return undefined;
    }
    const entry = this.entries.get(key);
    if (entry === undefined || !sameQuestion(entry.question, packet, lastQuestion.qnameEnd, lastQuestion.limit, lastQuestion.flags)) return undefined;
    return entry;
  }

  /** Stores `reply` for the question of `packet`, which `questionKey` read as `key`, qnameEnd, limit and flags. */
  set(key: number, packet: Uint8Array, qnameEnd: number, limit: number, flags: number, version: number, reply: CachedReply): void {
    if (version !== this.version) {
      this.clear();
      this.version = version;
    }
    if (reply.bytes.length > MAX_CACHED_REPLY) return;
    const question = questionOf(packet, qnameEnd, limit, flags);
    const cost = reply.bytes.length + question.length;
    if (this.entries.size >= this.maxEntries || this.storedBytes + cost > this.maxBytes) this.clear();
    const replaced = this.entries.get(key);
    if (replaced !== undefined) this.storedBytes -= replaced.bytes.length + replaced.question.length;
    this.entries.set(key, { ...reply, question });
    this.storedBytes += cost;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The octets of the replies and questions held. */
  get bytes(): number {
    return this.storedBytes;
  }

  private clear(): void {
    this.entries.clear();
    this.storedBytes = 0;
  }
}
