/**
 * Finished replies, reused: most queries an authoritative server gets repeat a few thousand
 * questions, and the reply to a question depends only on the question (name without its case,
 * type), the size the client can take and its DO bit — and on the zones, so the cache is
 * emptied whenever they change. A hit costs reading the question's octets and copying the
 * stored reply with the query's ID, RD bit and qname case patched in: no decoding of records,
 * no lookup, no encoding. Everything else (TSIG, other opcodes, EDNS options that are
 * malformed, compressed qnames, transfers) takes the full path, which is the reference.
 *
 * Bounded: at most `maxEntries` replies; a full cache is emptied and fills again with what is
 * asked now, so a flood of random names costs the cache its hits, never memory.
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
}

const HEADER_LENGTH = 12;
const TYPE_OPT = 41;
const CLASS_IN = 1;
const CLASSIC_UDP_SIZE = 512;
/** Keys are built from one-character strings per octet, ASCII letters lowered. */
const KEY_CHARS: string[] = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b));

/** Where the last key's qname ended in its packet (set by `questionKey`). */
export let keyQnameEnd = 0;

/**
 * The cache key of a plain query — header QR=0, opcode QUERY, one question of class IN with an
 * uncompressed name, no answer or authority records, at most an OPT record (version 0, options
 * well formed) and nothing after it — or null for anything else. `edns` is the payload cap the
 * reply will have for this transport: 512 without EDNS over UDP, the client's size capped at
 * `udpCap` with it, 65535 over TCP.
 */
export function questionKey(p: Uint8Array, tcp: boolean, udpCap: number): string | null {
  const length = p.length;
  if (length < HEADER_LENGTH + 5 || (p[2]! & 0xf8) !== 0) return null;
  if (p[4] !== 0 || p[5] !== 1 || p[6] !== 0 || p[7] !== 0 || p[8] !== 0 || p[9] !== 0 || p[10] !== 0 || p[11]! > 1) return null;
  let at = HEADER_LENGTH;
  let key = "";
  for (;;) {
    const label = p[at];
    if (label === undefined || label > 63) return null;
    if (label === 0) break;
    if (at + 1 + label >= length || at + label - HEADER_LENGTH > 253) return null;
    key += KEY_CHARS[label]!;
    for (let i = at + 1, end = at + 1 + label; i < end; i++) key += KEY_CHARS[p[i]!]!;
    at += 1 + label;
  }
  const qnameEnd = at + 1;
  if (qnameEnd + 4 > length) return null;
  const qtype = (p[qnameEnd]! << 8) | p[qnameEnd + 1]!;
  if (((p[qnameEnd + 2]! << 8) | p[qnameEnd + 3]!) !== CLASS_IN || qtype >= 251 && qtype <= 254) return null;
  let end = qnameEnd + 4;
  let limit = tcp ? 65535 : CLASSIC_UDP_SIZE;
  let flags = 0;
  if (p[11] === 1) {
    // The OPT record: root owner, type 41, class = payload size, TTL = ext-rcode/version/DO.
    if (end + 11 > length || p[end] !== 0 || ((p[end + 1]! << 8) | p[end + 2]!) !== TYPE_OPT || p[end + 6] !== 0) return null;
    const rdEnd = end + 11 + ((p[end + 9]! << 8) | p[end + 10]!);
    if (rdEnd !== length || !optionsWellFormed(p, end + 11, rdEnd)) return null;
    if (!tcp) limit = Math.min(Math.max((p[end + 3]! << 8) | p[end + 4]!, CLASSIC_UDP_SIZE), udpCap);
    flags = 1 | ((p[end + 7]! & 0x80) !== 0 ? 2 : 0);
    end = rdEnd;
  }
  if (end !== length) return null;
  keyQnameEnd = qnameEnd;
  return key + String.fromCharCode(qtype, limit, flags);
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
  reply.set(packet.subarray(HEADER_LENGTH, qnameEnd), HEADER_LENGTH);
  return reply;
}

export class AnswerCache {
  private readonly entries = new Map<string, CachedReply>();
  private version = -1;

  constructor(private readonly maxEntries = 10_000) {}

  /** The reply stored for `key` while the zones are at `version`. */
  get(key: string, version: number): CachedReply | undefined {
    if (version !== this.version) {
      this.entries.clear();
      this.version = version;
      return undefined;
    }
    return this.entries.get(key);
  }

  set(key: string, version: number, reply: CachedReply): void {
    if (version !== this.version) {
      this.entries.clear();
      this.version = version;
    }
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(key, reply);
  }

  get size(): number {
    return this.entries.size;
  }
}
