/**
 * TSIG (RFC 8945): HMAC-signed DNS messages, what zone transfers and NOTIFY between Citadel and
 * its secondaries are authenticated with. A shared key per secondary; the MAC covers the whole
 * message, so nothing in a signed transfer can be changed or replayed outside the fudge window.
 *
 * A signed message is the unsigned one with one TSIG record appended as the last additional
 * record. What the MAC covers (section 4.3.3):
 * - a request: the message as it was before the TSIG was added, then the TSIG variables;
 * - a response: the request's MAC (length-prefixed), the message, the variables;
 * - each later message of a multi-message response (AXFR): the prior MAC, the message and the
 *   timers only (section 5.3.1). Citadel signs every message of a transfer.
 *
 * The HMAC is node:crypto's, which is synchronous: the DNS answer path never awaits.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { FormatError } from "./message.ts";
import { lowerName, nameFromWire, nameToText, nameToWire, parseName, type Name } from "./names.ts";

export const TYPE_TSIG = 250;
const CLASS_ANY = 255;
/** The fudge we sign with and accept: 300 s, the RFC's recommendation. */
export const FUDGE_SECONDS = 300;

/**
 * TSIG error codes (in the TSIG record) and the header RCODE that goes with them. FORMERR is
 * no TSIG error: the message is answered FORMERR, unsigned (RFC 8945 section 5.2.2.1).
 */
export const TsigError = { NONE: 0, FORMERR: 1, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;
export const RCODE_NOTAUTH = 9;

/** The HMAC algorithms we offer, by their TSIG algorithm name (RFC 8945 section 6). */
const ALGORITHMS: Record<string, { hash: string; size: number }> = {
  "hmac-sha256.": { hash: "sha256", size: 32 },
  "hmac-sha384.": { hash: "sha384", size: 48 },
  "hmac-sha512.": { hash: "sha512", size: 64 },
};
export const TSIG_ALGORITHMS = Object.keys(ALGORITHMS).map((a) => a.slice(0, -1));

export interface TsigKey {
  /** The key's name, as both sides configure it (compared case-insensitively). */
  name: Name;
  /** "hmac-sha256", "hmac-sha384" or "hmac-sha512". */
  algorithm: string;
  secret: Uint8Array;
}

/** A TSIG record as read from a message. `start` is where its owner name begins. */
export interface TsigRecord {
  start: number;
  keyName: Name;
  algorithm: Name;
  timeSigned: number;
  fudge: number;
  mac: Uint8Array;
  originalId: number;
  error: number;
  other: Uint8Array;
}

const u16 = (p: Uint8Array, at: number) => (p[at]! << 8) | p[at + 1]!;
const u48 = (p: Uint8Array, at: number) => u16(p, at) * 2 ** 32 + p[at + 2]! * 2 ** 24 + (p[at + 3]! << 16) + (p[at + 4]! << 8) + p[at + 5]!;

/** The algorithm entry of a key, or null when we do not offer it. */
function algorithmOf(name: string) {
  const key = name.toLowerCase().endsWith(".") ? name.toLowerCase() : `${name.toLowerCase()}.`;
  return ALGORITHMS[key] ?? null;
}

export function isSupportedAlgorithm(name: string): boolean {
  return algorithmOf(name) !== null;
}

/**
 * Reads the TSIG record at `start`, which must be the message's last record (the decoder has
 * checked it ends the packet). Throws FormatError when it is malformed.
 */
export function readTsig(packet: Uint8Array, start: number): TsigRecord {
  const owner = nameFromWireChecked(packet, start);
  let at = owner.next;
  if (at + 10 > packet.length) throw new FormatError("the TSIG record is truncated");
  if (u16(packet, at) !== TYPE_TSIG || u16(packet, at + 2) !== CLASS_ANY) throw new FormatError("a TSIG record must have class ANY");
  const rdEnd = at + 10 + u16(packet, at + 8);
  at += 10;
  const algorithm = nameFromWireChecked(packet, at);
  at = algorithm.next;
  if (at + 10 > rdEnd) throw new FormatError("the TSIG record is truncated");
  const timeSigned = u48(packet, at);
  const fudge = u16(packet, at + 6);
  const macSize = u16(packet, at + 8);
  at += 10;
  if (at + macSize + 6 > rdEnd) throw new FormatError("the TSIG MAC is truncated");
  const mac = packet.slice(at, at + macSize);
  at += macSize;
  const originalId = u16(packet, at);
  const error = u16(packet, at + 2);
  const otherLength = u16(packet, at + 4);
  at += 6;
  if (at + otherLength !== rdEnd || rdEnd !== packet.length) throw new FormatError("the TSIG record's length is wrong");
  return { start, keyName: owner.name, algorithm: algorithm.name, timeSigned, fudge, mac, originalId, error, other: packet.slice(at, rdEnd) };
}

/** Names inside TSIG are never compressed (RFC 8945 section 4.2); a pointer is malformed. */
function nameFromWireChecked(packet: Uint8Array, at: number): { name: Name; next: number } {
  try {
    return nameFromWire(packet, at);
  } catch {
    throw new FormatError("a TSIG name is malformed or compressed");
  }
}

/** The message as it was before its TSIG was appended: cut off, ARCOUNT one less, the original ID. */
function unsignedPart(packet: Uint8Array, tsig: TsigRecord): Uint8Array {
  // A copy: `packet` may be a Buffer, whose slice() is a view, and the header is rewritten here.
  const part = new Uint8Array(tsig.start);
  part.set(packet.subarray(0, tsig.start));
  const arcount = u16(part, 10) - 1;
  part[0] = tsig.originalId >>> 8;
  part[1] = tsig.originalId;
  part[10] = arcount >>> 8;
  part[11] = arcount;
  return part;
}

interface Variables {
  keyName: Name;
  algorithm: Name;
  timeSigned: number;
  fudge: number;
  error: number;
  other: Uint8Array;
}

/** The TSIG variables (section 4.3.3): names in canonical form, then the timers, error and other data. */
function variablesWire(v: Variables, timersOnly: boolean): Uint8Array {
  const timers = new Uint8Array(8);
  writeU48(timers, 0, v.timeSigned);
  timers[6] = v.fudge >>> 8;
  timers[7] = v.fudge;
  if (timersOnly) return timers;
  const keyName = nameToWire(lowerName(v.keyName));
  const algorithm = nameToWire(lowerName(v.algorithm));
  const out = new Uint8Array(keyName.length + 6 + algorithm.length + 8 + 4 + v.other.length);
  let at = 0;
  out.set(keyName, at);
  at += keyName.length;
  out.set([0, CLASS_ANY, 0, 0, 0, 0], at); // class ANY, TTL 0
  at += 6;
  out.set(algorithm, at);
  at += algorithm.length;
  out.set(timers, at);
  at += 8;
  out.set([v.error >>> 8, v.error & 0xff, v.other.length >>> 8, v.other.length & 0xff], at);
  out.set(v.other, at + 4);
  return out;
}

function writeU48(out: Uint8Array, at: number, value: number): void {
  const high = Math.floor(value / 2 ** 32);
  const low = value >>> 0;
  out[at] = high >>> 8;
  out[at + 1] = high;
  out[at + 2] = low >>> 24;
  out[at + 3] = low >>> 16;
  out[at + 4] = low >>> 8;
  out[at + 5] = low;
}

function lengthPrefixed(mac: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + mac.length);
  out[0] = mac.length >>> 8;
  out[1] = mac.length;
  out.set(mac, 2);
  return out;
}

function hmac(key: TsigKey, parts: Uint8Array[]): Uint8Array {
  const algorithm = algorithmOf(key.algorithm);
  if (!algorithm) throw new Error(`TSIG algorithm ${key.algorithm} is not supported`);
  const h = createHmac(algorithm.hash, key.secret);
  for (const part of parts) h.update(part);
  return new Uint8Array(h.digest());
}

/** What a signature chains to: nothing (a request), the request's MAC, or the prior message's MAC. */
export type Chain = { kind: "request" } | { kind: "response"; requestMac: Uint8Array } | { kind: "continuation"; priorMac: Uint8Array };

export interface Signed {
  message: Uint8Array;
  mac: Uint8Array;
}

/**
 * Appends a TSIG record to `message` (which has none) and increments its ARCOUNT, signed at
 * `now`. `error` is set for signed error replies (BADTRUNC; BADTIME: see signBadTime).
 */
export function sign(message: Uint8Array, key: TsigKey, chain: Chain, now: number, error = 0, other: Uint8Array = new Uint8Array()): Signed {
  const vars: Variables = { keyName: key.name, algorithm: algorithmName(key), timeSigned: Math.floor(now / 1000), fudge: FUDGE_SECONDS, error, other };
  const parts: Uint8Array[] = [];
  if (chain.kind === "response") parts.push(lengthPrefixed(chain.requestMac));
  if (chain.kind === "continuation") parts.push(lengthPrefixed(chain.priorMac));
  parts.push(message, variablesWire(vars, chain.kind === "continuation"));
  const mac = hmac(key, parts);
  return { message: appendTsig(message, vars, mac, u16(message, 0)), mac };
}

/**
 * A BADTIME reply to `request` (RFC 8945 section 5.2.3): signed with the request's own Time
 * Signed, so that the client, whose clock is off, takes the MAC as in time and can check it, and
 * with our time in Other Data (6 octets), from which it learns the offset. BIND and Knot do so.
 */
export function signBadTime(message: Uint8Array, key: TsigKey, request: TsigRecord, now: number): Uint8Array {
  const other = new Uint8Array(6);
  writeU48(other, 0, Math.floor(now / 1000));
  return sign(message, key, { kind: "response", requestMac: request.mac }, request.timeSigned * 1000, TsigError.BADTIME, other).message;
}

/** An unsigned TSIG error reply record (BADKEY, BADSIG: section 5.3.2) appended to `message`. */
export function appendUnsignedError(message: Uint8Array, tsig: TsigRecord, error: number): Uint8Array {
  return appendTsig(message, { keyName: tsig.keyName, algorithm: tsig.algorithm, timeSigned: tsig.timeSigned, fudge: tsig.fudge, error, other: new Uint8Array() }, new Uint8Array(), tsig.originalId);
}

function algorithmName(key: TsigKey): Name {
  return parseName(key.algorithm.endsWith(".") ? key.algorithm : `${key.algorithm}.`, null);
}

function appendTsig(message: Uint8Array, v: Variables, mac: Uint8Array, originalId: number): Uint8Array {
  const owner = nameToWire(v.keyName);
  const algorithm = nameToWire(v.algorithm);
  const rdLength = algorithm.length + 10 + mac.length + 6 + v.other.length;
  const out = new Uint8Array(message.length + owner.length + 10 + rdLength);
  out.set(message);
  let at = message.length;
  out.set(owner, at);
  at += owner.length;
  out.set([TYPE_TSIG >>> 8, TYPE_TSIG & 0xff, 0, CLASS_ANY, 0, 0, 0, 0, rdLength >>> 8, rdLength & 0xff], at);
  at += 10;
  out.set(algorithm, at);
  at += algorithm.length;
  writeU48(out, at, v.timeSigned);
  out.set([v.fudge >>> 8, v.fudge & 0xff, mac.length >>> 8, mac.length & 0xff], at + 6);
  at += 10;
  out.set(mac, at);
  at += mac.length;
  out.set([originalId >>> 8, originalId & 0xff, v.error >>> 8, v.error & 0xff, v.other.length >>> 8, v.other.length & 0xff], at);
  out.set(v.other, at + 6);
  const arcount = u16(out, 10) + 1;
  out[10] = arcount >>> 8;
  out[11] = arcount;
  return out;
}

/** Octets a TSIG record made with `key` adds to a message (to leave room for it). */
export function tsigSize(key: TsigKey): number {
  const algorithm = algorithmOf(key.algorithm);
  return nameToWire(key.name).length + 10 + nameToWire(algorithmName(key)).length + 10 + (algorithm?.size ?? 64) + 6 + 6;
}

/** `key` is set when the error is 0 (and for BADSIG, BADTIME, BADTRUNC: the key that was named). */
export interface Verdict {
  error: number;
  key: TsigKey | null;
}

/**
 * Checks the TSIG of a received message (section 5.2, in its order): the key is known and of the
 * same algorithm (else BADKEY), the MAC is right (BADSIG), the time is within the fudge
 * (BADTIME), the MAC is whole (BADTRUNC). The MAC is compared in constant time. BADTIME and
 * BADTRUNC are only given for a MAC that verified: those replies are signed (section 5.3.2).
 */
export function verify(packet: Uint8Array, tsig: TsigRecord, findKey: (name: Name) => TsigKey | null, chain: Chain, now: number): Verdict {
  const key = findKey(tsig.keyName);
  if (key === null || !sameAlgorithm(key, tsig.algorithm)) return { error: TsigError.BADKEY, key: null };
  const algorithm = algorithmOf(key.algorithm)!;
  // RFC 8945 section 5.2.2.1: a MAC longer than the hash, or shorter than the larger of 10
  // octets and half the hash, is a malformed message (FORMERR).
  const shortest = Math.max(10, algorithm.size / 2);
  if (tsig.mac.length > algorithm.size || tsig.mac.length < shortest) return { error: TsigError.FORMERR, key };
  const parts: Uint8Array[] = [];
  if (chain.kind === "response") parts.push(lengthPrefixed(chain.requestMac));
  if (chain.kind === "continuation") parts.push(lengthPrefixed(chain.priorMac));
  parts.push(unsignedPart(packet, tsig), variablesWire(tsig, chain.kind === "continuation"));
  // A truncated MAC is the leading octets of the whole one (section 5.2.2.1).
  const expected = hmac(key, parts).subarray(0, tsig.mac.length);
  if (!timingSafeEqual(expected, tsig.mac)) return { error: TsigError.BADSIG, key };
  // The fudge is the smaller of the signer's and ours: a peer cannot stretch its own replay window.
  if (Math.abs(Math.floor(now / 1000) - tsig.timeSigned) > Math.min(tsig.fudge, FUDGE_SECONDS)) return { error: TsigError.BADTIME, key };
  // A truncation the RFC allows is below our policy (section 5.2.4): we never send one and accept none.
  if (tsig.mac.length !== algorithm.size) return { error: TsigError.BADTRUNC, key };
  return { error: 0, key };
}

function sameAlgorithm(key: TsigKey, algorithm: Name): boolean {
  return nameToText(lowerName(algorithm)) === nameToText(lowerName(algorithmName(key)));
}

/** A new random secret for `algorithm`, as long as its hash output (RFC 8945 section 6 advice). */
export function generateSecret(algorithm: string): Uint8Array {
  const entry = algorithmOf(algorithm);
  if (!entry) throw new Error(`TSIG algorithm ${algorithm} is not supported`);
  return crypto.getRandomValues(new Uint8Array(entry.size));
}
