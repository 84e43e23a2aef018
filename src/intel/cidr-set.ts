/**
 * An immutable set of CIDRs for reputation lists: a million entries in a few tens of
 * megabytes, built in well under a second, answering membership in a binary search.
 *
 * Entries are merged into sorted, disjoint [first, last] ranges (overlapping and adjacent
 * prefixes become one range), kept in typed arrays: IPv4 as two Uint32Arrays, IPv6 as two
 * Uint32Arrays of four big-endian words per range. No object per entry survives the build.
 *
 * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match IPv4 entries, as `cidrContains` does;
 * an IPv6 entry matches only IPv6 addresses (a mapped address written in it included).
 */
import { parseCidr, parseIp, type Cidr, type IpAddress } from "../net/ip.ts";

/** The merged range an address fell into: the answer to "why did this match". */
export interface IpRange {
  readonly first: IpAddress;
  readonly last: IpAddress;
}

export class CidrSet {
  /** Disjoint ranges left after merging. */
  readonly ranges: number;

  private constructor(
    /** Entries given, duplicates and overlaps included. */
    readonly size: number,
    private readonly v4First: Uint32Array,
    private readonly v4Last: Uint32Array,
    private readonly v6First: Uint32Array,
    private readonly v6Last: Uint32Array,
  ) {
    this.ranges = v4First.length + v6First.length / 4;
  }

  /** Entries must be valid: parse untrusted text with `parseList` first. Host bits are ignored. */
  static build(cidrs: Iterable<string | Cidr>): CidrSet {
    // Collected in plain number arrays (JSC keeps them unboxed) and sorted once at the end.
    const v4Keys: number[] = [];
    const v6Words: number[] = [];
    const v6Prefixes: number[] = [];
    let size = 0;
    for (const entry of cidrs) {
      const cidr = typeof entry === "string" ? parseCidr(entry) : entry;
      if (!cidr || !wellFormed(cidr)) throw new TypeError(`not a CIDR: ${typeof entry === "string" ? JSON.stringify(entry) : `${entry.family}/${entry.prefix}`}`);
      size++;
      const b = cidr.bytes;
      if (cidr.family === 4) {
        // first × 64 + host bits stays below 2^38, exact in a double, so one native numeric
        // sort of a Float64Array orders the entries by first address.
        v4Keys.push(((wordAt(b, 0) & networkMask(cidr.prefix)) >>> 0) * 64 + (32 - cidr.prefix));
      } else {
        v6Words.push(wordAt(b, 0), wordAt(b, 4), wordAt(b, 8), wordAt(b, 12));
        v6Prefixes.push(cidr.prefix);
      }
    }
    const [v4First, v4Last] = mergeV4(Float64Array.from(v4Keys));
    const [v6First, v6Last] = mergeV6(Uint32Array.from(v6Words), Uint8Array.from(v6Prefixes));
    return new CidrSet(size, v4First, v4Last, v6First, v6Last);
  }

  contains(ip: IpAddress): boolean {
    const b = ip.bytes;
    if (ip.family === 4) return findV4(this.v4First, this.v4Last, wordAt(b, 0)) >= 0;
    if (isMapped(b) && findV4(this.v4First, this.v4Last, wordAt(b, 12)) >= 0) return true;
    loadKey(b);
    return findV6(this.v6First, this.v6Last) >= 0;
  }

  /** Unparseable text is not in any set. */
  containsText(ip: string): boolean {
    const parsed = parseIp(ip);
    return parsed !== null && this.contains(parsed);
  }

  /**
   * The merged range holding `ip`, or null. Allocates only on a hit. A mapped IPv6 address
   * that matched IPv4 entries gets an IPv4 range.
   */
  match(ip: IpAddress): IpRange | null {
    const b = ip.bytes;
    if (ip.family === 4 || isMapped(b)) {
      const at = findV4(this.v4First, this.v4Last, wordAt(b, ip.family === 4 ? 0 : 12));
      if (at >= 0) return { first: v4Address(this.v4First[at]!), last: v4Address(this.v4Last[at]!) };
      if (ip.family === 4) return null;
    }
    loadKey(b);
    const at = findV6(this.v6First, this.v6Last);
    if (at < 0) return null;
    return { first: v6Address(this.v6First, at * 4), last: v6Address(this.v6Last, at * 4) };
  }

  /**
   * Whether the entries, merged, cover every address of a family: two halves (0.0.0.0/1 and
   * 128.0.0.0/1) as much as a /0.
   */
  coversAFamily(): 4 | 6 | null {
    if (this.v4First.length === 1 && this.v4First[0] === 0 && this.v4Last[0] === 0xffff_ffff) return 4;
    if (this.v6First.length === 4 && this.v6First.every((w) => w === 0) && this.v6Last.every((w) => w === 0xffff_ffff)) return 6;
    return null;
  }

  /** Memory held by the ranges, for status pages and the benchmark. */
  get byteLength(): number {
    return this.v4First.byteLength + this.v4Last.byteLength + this.v6First.byteLength + this.v6Last.byteLength;
  }
}

// ---- IPv4 ----

function mergeV4(keys: Float64Array): [Uint32Array, Uint32Array] {
  keys.sort();
  const first = new Uint32Array(keys.length);
  const last = new Uint32Array(keys.length);
  let n = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const start = Math.floor(key / 64);
    const end = start + 2 ** (key - start * 64) - 1;
    // Doubles, not uint32 arithmetic: last + 1 may be 2^32.
    if (n > 0 && start <= last[n - 1]! + 1) {
      if (end > last[n - 1]!) last[n - 1] = end;
    } else {
      first[n] = start;
      last[n] = end;
      n++;
    }
  }
  return [first.slice(0, n), last.slice(0, n)];
}

/** Index of the range holding `key`, or -1: the last range starting at or before it. */
function findV4(first: Uint32Array, last: Uint32Array, key: number): number {
  let lo = 0;
  let hi = first.length - 1;
  let at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (first[mid]! <= key) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return at >= 0 && key <= last[at]! ? at : -1;
}

// ---- IPv6: 128-bit values as four big-endian uint32 words at an offset in a Uint32Array ----

/** The address being looked up. Lookups are synchronous, so one scratch key is enough. */
const KEY = new Uint32Array(4);
const START = new Uint32Array(4);
const END = new Uint32Array(4);
const SUCCESSOR = new Uint32Array(4);

function mergeV6(words: Uint32Array, prefixes: Uint8Array): [Uint32Array, Uint32Array] {
  const count = prefixes.length;
  const order = sortByStart(words, prefixes);
  const first = new Uint32Array(count * 4);
  const last = new Uint32Array(count * 4);
  let n = 0;
  for (let i = 0; i < count; i++) {
    const entry = order[i]!;
    for (let w = 0; w < 4; w++) {
      const host = hostMask(prefixes[entry]! - 32 * w);
      START[w] = words[entry * 4 + w]! & ~host;
      END[w] = START[w]! | host;
    }
    const previous = (n - 1) * 4;
    if (n > 0 && (compare128(START, 0, last, previous) <= 0 || isSuccessor(last, previous, START))) {
      if (compare128(END, 0, last, previous) > 0) copy128(END, 0, last, previous);
    } else {
      copy128(START, 0, first, n * 4);
      copy128(END, 0, last, n * 4);
      n++;
    }
  }
  return [first.slice(0, n * 4), last.slice(0, n * 4)];
}

/**
 * Entry indices in order of their (masked) first address: an LSD radix sort, 16 bits a pass.
 * A comparator sort of a million 128-bit keys takes most of a second, and a list refresh
 * should not stall the event loop that long. A pass in which every entry has the same digit
 * (the zero low words of a list of /48s) is skipped.
 */
function sortByStart(words: Uint32Array, prefixes: Uint8Array): Uint32Array {
  const count = prefixes.length;
  let order = new Uint32Array(count);
  let spare = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const digits = new Uint16Array(count);
  const offsets = new Uint32Array(65537);
  for (let pass = 0; pass < 8; pass++) {
    const w = 3 - (pass >> 1);
    const shift = (pass & 1) * 16;
    offsets.fill(0);
    for (let i = 0; i < count; i++) {
      const digit = ((words[i * 4 + w]! & ~hostMask(prefixes[i]! - 32 * w)) >>> shift) & 0xffff;
      digits[i] = digit;
      offsets[digit + 1]!++;
    }
    if (offsets.includes(count)) continue;
    for (let d = 1; d <= 65536; d++) offsets[d]! += offsets[d - 1]!;
    for (let i = 0; i < count; i++) {
      const entry = order[i]!;
      spare[offsets[digits[entry]!]!++] = entry;
    }
    [order, spare] = [spare, order];
  }
  return order;
}

function findV6(first: Uint32Array, last: Uint32Array): number {
  let lo = 0;
  let hi = first.length / 4 - 1;
  let at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (compare128(first, mid * 4, KEY, 0) <= 0) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return at >= 0 && compare128(KEY, 0, last, at * 4) <= 0 ? at : -1;
}

function compare128(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let w = 0; w < 4; w++) {
    const x = a[i + w]!;
    const y = b[j + w]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function copy128(from: Uint32Array, i: number, to: Uint32Array, j: number): void {
  for (let w = 0; w < 4; w++) to[j + w] = from[i + w]!;
}

/** True when `value` is exactly `a[i..]` + 1: adjacent ranges merge too. */
function isSuccessor(a: Uint32Array, i: number, value: Uint32Array): boolean {
  let carry = 1;
  for (let w = 3; w >= 0; w--) {
    const sum = a[i + w]! + carry;
    SUCCESSOR[w] = sum;
    carry = sum > 0xffffffff ? 1 : 0;
  }
  // All ones plus one wraps to zero: nothing follows the last address.
  return carry === 0 && compare128(SUCCESSOR, 0, value, 0) === 0;
}

function loadKey(b: Uint8Array): void {
  KEY[0] = wordAt(b, 0);
  KEY[1] = wordAt(b, 4);
  KEY[2] = wordAt(b, 8);
  KEY[3] = wordAt(b, 12);
}

function isMapped(b: Uint8Array): boolean {
  return b.length === 16 && wordAt(b, 0) === 0 && wordAt(b, 4) === 0 && wordAt(b, 8) === 0xffff;
}

// ---- words and masks ----

/** A Cidr object built by hand rather than parsed: a bad prefix would corrupt the ranges. */
function wellFormed(cidr: Cidr): boolean {
  const bits = cidr.family === 4 ? 32 : 128;
  return cidr.bytes.length * 8 === bits && Number.isInteger(cidr.prefix) && cidr.prefix >= 0 && cidr.prefix <= bits;
}

function wordAt(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** The network bits of a 32-bit word with `bits` of prefix in it (clamped to 0..32). */
function networkMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

function hostMask(bits: number): number {
  return ~networkMask(bits) >>> 0;
}

function v4Address(word: number): IpAddress {
  return { family: 4, bytes: Uint8Array.of(word >>> 24, (word >>> 16) & 0xff, (word >>> 8) & 0xff, word & 0xff) };
}

function v6Address(words: Uint32Array, i: number): IpAddress {
  const bytes = new Uint8Array(16);
  for (let w = 0; w < 4; w++) bytes.set(v4Address(words[i + w]!).bytes, w * 4);
  return { family: 6, bytes };
}
