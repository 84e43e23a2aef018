/**
 * NSEC3, hashed authenticated denial of existence (RFC 5155), with the parameters RFC 9276
 * says to use: hash algorithm 1 (SHA-1, the one RFC 5155 defines), 0 additional iterations, no
 * salt by default, no opt-out. What a signed zone with NSEC3 proves absence with instead of its
 * NSEC chain: one NSEC3 per name that exists (every authoritative name and empty non-terminal,
 * unsigned delegations too: there is no opt-out), owned by the base32hex of the name's hash as
 * a label under the zone's apex, linked in hash order to the next, with the types at the name.
 *
 * The hash hides the names from whoever reads the chain, not from an offline dictionary: a
 * name's hash costs one SHA-1 (section 12.1.1), so short or guessable names are found.
 *
 * NSEC3 records are not names of the zone: a query for an NSEC3 owner is answered as for any
 * name the zone does not have (NXDOMAIN, or the wildcard's data), so the chain is kept apart
 * from the zone's nodes (dnssec.ts ZoneSignatures), and transfers carry it beside them.
 */
import { lowerName, nameKey, nameToText, nameToWire, type Name } from "./names.ts";
import { CowMap } from "./cow-map.ts";
import { typeBitmap, typesOfBitmap } from "./type-bitmap.ts";
import type { RR } from "./zone.ts";

export const TYPE_NSEC3 = 50;
export const TYPE_NSEC3PARAM = 51;
/** SHA-1 (RFC 5155 section 11): the only NSEC3 hash algorithm there is. */
export const NSEC3_SHA1 = 1;
export const NSEC3_HASH_NAME = "SHA-1";
/** The salt's length is one octet on the wire (RFC 5155 section 3.2). */
export const MAX_SALT_OCTETS = 255;

/** What a zone's hashes are made with (RFC 5155 section 5). Citadel signs with 0 iterations; the hash takes more for RFC 5155's test vectors. */
export interface Nsec3Params {
  salt: Uint8Array;
  iterations: number;
}

/** RFC 9276's parameters: no salt, no additional iterations. */
export const RFC9276_PARAMS: Nsec3Params = Object.freeze({ salt: new Uint8Array(0), iterations: 0 });

/**
 * The NSEC3 hash of `name` (RFC 5155 section 5): IH(salt, x, 0) = H(x || salt) and
 * IH(salt, x, k) = H(IH(salt, x, k-1) || salt), x the name in canonical wire form (lower case).
 * Bun's one-shot SHA-1: a third of node:crypto's createHash per name, which an NXDOMAIN pays
 * twice (the next closer name, the wildcard).
 */
export function nsec3Hash(name: Name, params: Nsec3Params): Uint8Array {
  const salted = (x: Uint8Array) => (params.salt.length === 0 ? x : Buffer.concat([x, params.salt]));
  let digest = Bun.SHA1.hash(salted(nameToWire(lowerName(name)))) as Uint8Array;
  for (let i = 0; i < params.iterations; i++) digest = Bun.SHA1.hash(salted(digest)) as Uint8Array;
  return digest;
}

const BASE32HEX = "0123456789abcdefghijklmnopqrstuv";

/**
 * base32hex without padding (RFC 4648 section 7), in lower case: the label of a hashed owner
 * name (RFC 5155 section 3.3). Its alphabet is in ASCII order, so hashes of one length sort as
 * their labels do.
 */
export function base32hex(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32HEX[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32HEX[(buffer << (5 - bits)) & 31];
  return out;
}

/** The hashed owner label of `name`. */
export const hashedLabel = (name: Name, params: Nsec3Params) => base32hex(nsec3Hash(name, params));

/** The fields every NSEC3 and NSEC3PARAM starts with: algorithm, flags, iterations, the salt with its length. */
function paramsPrefix(params: Nsec3Params, flags: number): Uint8Array {
  return Uint8Array.of(NSEC3_SHA1, flags, params.iterations >> 8, params.iterations & 0xff, params.salt.length, ...params.salt);
}

/** NSEC3 data (RFC 5155 section 3.2): the parameters, flags 0 (no opt-out), the next hashed owner and the types at the name. */
export function nsec3Rdata(params: Nsec3Params, nextHash: Uint8Array, types: Iterable<number>): Uint8Array {
  return Buffer.concat([paramsPrefix(params, 0), Uint8Array.of(nextHash.length), nextHash, typeBitmap(types)]);
}

/** NSEC3 data with another next hashed owner, its other fields as they were. */
function withNextHash(rdata: Uint8Array, nextHash: Uint8Array): Uint8Array {
  const hashAt = 5 + rdata[4]!;
  return Buffer.concat([rdata.subarray(0, hashAt), Uint8Array.of(nextHash.length), nextHash, rdata.subarray(hashAt + 1 + rdata[hashAt]!)]);
}

/** NSEC3PARAM data (RFC 5155 section 4.2): the parameters, flags 0. */
export function nsec3paramRdata(params: Nsec3Params): Uint8Array {
  return paramsPrefix(params, 0);
}

/** The parameters in presentation form, as NSEC3PARAM's data: "1 0 0 -" (the salt in hex, "-" for none). */
export function nsec3paramText(params: Nsec3Params): string {
  return `${NSEC3_SHA1} 0 ${params.iterations} ${saltText(params.salt)}`;
}

export const saltText = (salt: Uint8Array) => (salt.length === 0 ? "-" : Buffer.from(salt).toString("hex").toUpperCase());

export interface Nsec3Fields {
  algorithm: number;
  flags: number;
  iterations: number;
  salt: Uint8Array;
  /** The next hashed owner as its base32hex label. */
  next: string;
  types: number[];
}

/** An NSEC3's fields, read back (tests, the checks of a chain). */
export function readNsec3(rdata: Uint8Array): Nsec3Fields {
  const saltLength = rdata[4]!;
  const hashAt = 5 + saltLength;
  const hashLength = rdata[hashAt]!;
  return {
    algorithm: rdata[0]!,
    flags: rdata[1]!,
    iterations: (rdata[2]! << 8) | rdata[3]!,
    salt: rdata.slice(5, 5 + saltLength),
    next: base32hex(rdata.subarray(hashAt + 1, hashAt + 1 + hashLength)),
    types: typesOfBitmap(rdata.subarray(hashAt + 1 + hashLength)),
  };
}

/**
 * Two names of a zone with the same hash: no chain can prove either absent without denying the
 * other (RFC 5155 section 7.1: sign again with another salt). With SHA-1 it has never been seen
 * for names; it is detected, never served.
 */
export class Nsec3CollisionError extends Error {
  constructor(readonly names: readonly string[]) {
    super(`NSEC3: ${names.join(" and ")} have the same hash; sign the zone with a salt (citadel dns zone dnssec set --denial nsec3 --salt HEX)`);
    this.name = "Nsec3CollisionError";
  }
}

const keyOf = nameKey;
const textOf = (name: Name) => nameToText(lowerName(name));
const labelOf = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** A name of the zone that exists, and the types an NSEC3 lists for it (none for an empty non-terminal). */
export interface ChainName {
  name: Name;
  types: ReadonlySet<number>;
}

/** A hash as a key that sorts as its octets do, made natively (base32hex is for owner names). */
const hashKey = (hash: Uint8Array) => Buffer.from(hash.buffer, hash.byteOffset, hash.length).toString("hex");

/**
 * A zone's NSEC3 chain (RFC 5155 section 7.1), in hash order, and the two questions answers ask
 * of it (section 7.2): which NSEC3 matches a name that exists (looked up by the name, hashed
 * once when the chain is made), and which covers a name that does not (its hash found among the
 * chain's by binary search).
 */
export class Nsec3Chain {
  readonly mode = "nsec3";
  /** The owners' hashes as hashKey, sorted; `chain[i]` is owned by the hash `keys[i]`, made for the name keyed `names[i]`. */
  private readonly keys: string[];
  private readonly chain: RR[];
  private readonly names: string[];
  private readonly byName: CowMap<string, RR>;

  constructor(
    private readonly origin: Name,
    readonly params: Nsec3Params,
    names: readonly ChainName[],
    private readonly ttl: number,
    /** The chain as an edit left it (edited): no names are hashed again. */
    made?: { keys: string[]; chain: RR[]; names: string[]; byName: CowMap<string, RR> },
  ) {
    if (made !== undefined) {
      ({ keys: this.keys, chain: this.chain, names: this.names, byName: this.byName } = made);
      return;
    }
    const hashed = names.map((entry) => {
      const hash = nsec3Hash(entry.name, params);
      return { entry, hash, key: hashKey(hash) };
    });
    hashed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (let i = 1; i < hashed.length; i++) {
      if (hashed[i]!.key === hashed[i - 1]!.key) throw new Nsec3CollisionError([textOf(hashed[i - 1]!.entry.name), textOf(hashed[i]!.entry.name)]);
    }
    this.keys = hashed.map((h) => h.key);
    this.names = hashed.map((h) => keyOf(h.entry.name));
    this.chain = hashed.map((h, i) => ({
      name: [labelOf(base32hex(h.hash)), ...origin],
      ttl,
      type: TYPE_NSEC3,
      rdata: nsec3Rdata(params, hashed[(i + 1) % hashed.length]!.hash, h.entry.types),
    }));
    this.byName = CowMap.of(new Map(this.names.map((name, i) => [name, this.chain[i]!])));
  }

  /** The index of the first hash at or after `key` (keys.length: none is). */
  private static firstAtOrAfter(keys: readonly string[], key: string): number {
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (keys[mid]! < key) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /**
   * This chain with the names `removed` taken out and those of `put` in it (new ones, or ones
   * whose types changed), made locally: the NSEC3 of each name put, and of the hash before each
   * one that came or went (its next hash moved). This chain does not change. Null when a new
   * name has the hash of one in the chain: the zone is signed whole, which says so
   * (Nsec3CollisionError). `changed`: the NSEC3 records made (to sign), `gone`: those that went.
   */
  edited(removed: readonly Name[], put: readonly ChainName[]): { chain: Nsec3Chain; changed: RR[]; gone: RR[] } | null {
    const keys = this.keys.slice();
    const chain = this.chain.slice();
    const names = this.names.slice();
    const byName = this.byName.derive();
    const gone: RR[] = [];
    /** Hashes whose NSEC3 is made again: with these types, or (null) its types as they were and its next hash as it is now. */
    const dirty = new Map<string, ReadonlySet<number> | null>();
    const before = (i: number) => keys[(i - 1 + keys.length) % keys.length]!;
    for (const name of removed) {
      const record = byName.get(keyOf(name));
      if (record === undefined) continue;
      const key = hashKey(nsec3Hash(name, this.params));
      const i = Nsec3Chain.firstAtOrAfter(keys, key);
      keys.splice(i, 1);
      chain.splice(i, 1);
      names.splice(i, 1);
      byName.delete(keyOf(name));
      dirty.delete(key);
      gone.push(record);
      if (keys.length > 0 && !dirty.has(before(i))) dirty.set(before(i), null);
    }
    for (const entry of put) {
      const key = hashKey(nsec3Hash(entry.name, this.params));
      const i = Nsec3Chain.firstAtOrAfter(keys, key);
      if (!byName.has(keyOf(entry.name))) {
        if (keys[i] === key) return null; // another name's hash
        keys.splice(i, 0, key);
        chain.splice(i, 0, undefined as unknown as RR); // made below: it is dirty
        names.splice(i, 0, keyOf(entry.name));
        if (!dirty.has(before(i))) dirty.set(before(i), null);
      }
      dirty.set(key, entry.types);
    }
    const changed: RR[] = [];
    for (const [key, types] of dirty) {
      const i = Nsec3Chain.firstAtOrAfter(keys, key);
      const next = Buffer.from(keys[(i + 1) % keys.length]!, "hex");
      const old = chain[i];
      const rdata = types !== null ? nsec3Rdata(this.params, next, types) : withNextHash(old!.rdata, next);
      if (old !== undefined && Buffer.from(old.rdata).equals(rdata)) continue;
      const nsec3 = { name: [labelOf(base32hex(Buffer.from(key, "hex"))), ...this.origin], ttl: this.ttl, type: TYPE_NSEC3, rdata: new Uint8Array(rdata) };
      chain[i] = nsec3;
      byName.set(names[i]!, nsec3);
      changed.push(nsec3);
    }
    return { chain: new Nsec3Chain(this.origin, this.params, [], this.ttl, { keys, chain, names, byName }), changed, gone };
  }

  /** The NSEC3 of `name`, a name of the zone; null for a name that does not exist. */
  matching(name: Name): RR | null {
    return this.byName.get(keyOf(name)) ?? null;
  }

  /**
   * The NSEC3 whose owner hash is the last before `name`'s: it covers it (the chain wraps: one
   * before the first hash is covered by the last NSEC3). Asked for names that do not exist.
   */
  covering(name: Name): RR {
    const key = hashKey(nsec3Hash(name, this.params));
    let low = 0;
    let high = this.keys.length - 1;
    let found = this.keys.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.keys[mid]! < key) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    return this.chain[found]!;
  }

  /** The chain in hash order: what a transfer carries beside the zone's records. */
  records(): readonly RR[] {
    return this.chain;
  }
}
