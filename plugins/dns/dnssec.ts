/**
 * DNSSEC signing of a whole zone (RFC 4033, 4034, 4035): one combined signing key per zone (a
 * CSK, flags 257, as Knot's single-type signing), algorithm 13 (ECDSAP256SHA256, RFC 6605; the
 * one RFC 8624 recommends for signing), an RRSIG over every authoritative RRset and a chain that
 * proves names and types absent: a full NSEC chain in canonical order (RFC 4034 section 6), or,
 * chosen per zone, an NSEC3 chain in hash order with its NSEC3PARAM at the apex (RFC 5155 with
 * RFC 9276's parameters: nsec3.ts). During a key rollover a zone has two such keys: both
 * DNSKEYs are published and every RRset carries an RRSIG by each (RFC 7583's double-signature
 * rollover), so a validator holding either key's DS validates.
 *
 * `signZone` takes a built zone and gives the zone to serve: the same records plus the DNSKEY
 * and the NSEC chain or the NSEC3PARAM (ordinary RRsets the lookup answers and a transfer
 * carries), and its `ZoneSignatures` beside it — the RRSIGs by owner and covered type, the
 * chain, the names that exist — which the answer path adds to replies (dnssec-answer.ts) and
 * transfers append. RRSIGs are kept apart from the zone's RRsets: each carries the TTL of the
 * RRset it covers (RFC 4034 section 3), which Zone.build would make one per owner. NSEC3 records
 * are kept apart too: their owners are no names of the zone (nsec3.ts).
 *
 * Signing is node:crypto's, synchronous: a zone is signed where it is built, off the answer path.
 */
import { createHash, createPrivateKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { isSubdomain, lowerName, nameFromWire, nameKey, nameToText, nameToWire, wireLength, type Name } from "./names.ts";
import { Nsec3Chain, nsec3paramRdata, TYPE_NSEC3, TYPE_NSEC3PARAM, type ChainName, type Nsec3Params } from "./nsec3.ts";
import { rdataIdentity, RRType, unstorableType } from "./rdata.ts";
import { typeBitmap } from "./type-bitmap.ts";
import { CowMap } from "./cow-map.ts";
import { MAX_RRSET_OCTETS, MAX_TTL, Zone, type RR } from "./zone.ts";

export const TYPE_RRSIG = 46;
export const TYPE_NSEC = 47;
export const TYPE_DNSKEY = 48;
export const TYPE_CDS = 59;
export const TYPE_CDNSKEY = 60;
/** ECDSA Curve P-256 with SHA-256 (RFC 6605). */
export const ALGORITHM = 13;
export const ALGORITHM_NAME = "ECDSAP256SHA256";
/** Zone Key and Secure Entry Point: one key signs everything (RFC 4034 section 2.1.1). */
export const CSK_FLAGS = 257;
const PROTOCOL = 3;
const DIGEST_SHA256 = 2;
const CLASS_IN = 1;

/** Signatures start this long before signing (a validator's clock a little behind still accepts them). */
export const INCEPTION_BEFORE_MS = 3600_000;
/** Signatures end this long after signing. */
export const VALIDITY_MS = 14 * 86_400_000;
/** A zone is signed again (its serial bumped) once its signatures have less than this left. */
export const REFRESH_BEFORE_MS = 7 * 86_400_000;

/** Types a zone's own data may not hold once it is signed: the signer makes them (stored ones are left out). */
const SIGNER_TYPES = new Set([TYPE_RRSIG, TYPE_NSEC, TYPE_NSEC3, TYPE_NSEC3PARAM]);

/**
 * Obsolete types whose data holds domain names RFC 4034 section 6.2 lowers in canonical form
 * (SIG, NXT, A6) and the signer does not: their RRSIGs would not verify, so a signed zone holds
 * none of them.
 */
const UNSIGNED_NAME_TYPES = new Map([
  [24, "SIG"],
  [30, "NXT"],
  [38, "A6"],
]);

/** Why a signed zone cannot hold a record of `type` at `owner` (null: it can). */
export function unsignableRecord(owner: Name, type: number, origin: Name): string | null {
  const obsolete = UNSIGNED_NAME_TYPES.get(type);
  if (obsolete !== undefined) return `${obsolete} records (obsolete) are not signed here: validators would reject them; a signed zone holds none`;
  if (type === RRType.DS && owner.length === origin.length) return "a DS at the zone's apex belongs in the parent zone: signed as this zone's own data, validators reject it";
  return null;
}

// ---------------------------------------------------------------------------------------------
// Keys

export interface SigningKey {
  privateKey: KeyObject;
  /** The DNSKEY record data (flags, protocol, algorithm, the public key). */
  dnskey: Uint8Array;
  keyTag: number;
}

/** A new P-256 key: the private key as PKCS#8 DER (to be sealed in the keyring), the public one as DNSKEY data. */
export function generateSigningKey(): { pkcs8: Uint8Array; dnskey: Uint8Array } {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const pkcs8 = new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" }));
  return { pkcs8, dnskey: dnskeyOf(privateKey) };
}

/** The signing key from its PKCS#8 DER. */
export function signingKeyFrom(pkcs8: Uint8Array): SigningKey {
  const privateKey = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
  const dnskey = dnskeyOf(privateKey);
  return { privateKey, dnskey, keyTag: keyTag(dnskey) };
}

/** DNSKEY data for a P-256 key: the public point as x then y, 32 octets each (RFC 6605 section 4). */
function dnskeyOf(key: KeyObject): Uint8Array {
  const jwk = key.export({ format: "jwk" });
  const point = Buffer.concat([Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
  return Uint8Array.of(CSK_FLAGS >> 8, CSK_FLAGS & 0xff, PROTOCOL, ALGORITHM, ...point);
}

/** The key tag of DNSKEY data (RFC 4034 appendix B). */
export function keyTag(dnskey: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < dnskey.length; i++) sum += i & 1 ? dnskey[i]! : dnskey[i]! << 8;
  sum += (sum >> 16) & 0xffff;
  return sum & 0xffff;
}

/** DS data for the key (RFC 4034 section 5.1.4, SHA-256: RFC 4509): what the parent zone publishes. */
export function dsOf(owner: Name, dnskey: Uint8Array): Uint8Array {
  const digest = createHash("sha256").update(nameToWire(lowerName(owner))).update(dnskey).digest();
  const tag = keyTag(dnskey);
  return Uint8Array.of(tag >> 8, tag & 0xff, ALGORITHM, DIGEST_SHA256, ...digest);
}

/**
 * What a signed zone publishes at its apex for the parent to scan (RFC 7344: the DS set it asks
 * for, as CDS with digest type 2 and as CDNSKEY, the DNSKEY data itself), or RFC 8078 section 4's
 * delete records. Null: Citadel publishes none, and CDS/CDNSKEY records the zone stores are served
 * as they are; otherwise stored ones at the apex are left out (Citadel's replace them).
 */
export interface ParentSignal {
  cds: readonly Uint8Array[];
  cdnskey: readonly Uint8Array[];
}

/** The CDS and CDNSKEY asking the parent for the DS of each of `dnskeys` (SHA-256), and only those. */
export function parentSignalFor(owner: Name, dnskeys: readonly Uint8Array[]): ParentSignal {
  return { cds: dnskeys.map((dnskey) => dsOf(owner, dnskey)), cdnskey: dnskeys.map((dnskey) => new Uint8Array(dnskey)) };
}

/** RFC 8078 section 4: "CDS 0 0 0 00" and "CDNSKEY 0 3 0 AA==", asking the parent to remove the DS (the zone to go insecure). */
export const DELETE_SIGNAL: ParentSignal = Object.freeze({ cds: [Uint8Array.of(0, 0, 0, 0, 0)], cdnskey: [Uint8Array.of(0, 0, 3, 0, 0)] });

/** DS data in presentation form: "tag 13 2 HEX". */
export function dsText(ds: Uint8Array): string {
  return `${(ds[0]! << 8) | ds[1]!} ${ds[2]} ${ds[3]} ${Buffer.from(ds.subarray(4)).toString("hex").toUpperCase()}`;
}

/** DNSKEY data in presentation form: "257 3 13 BASE64". */
export function dnskeyText(dnskey: Uint8Array): string {
  return `${(dnskey[0]! << 8) | dnskey[1]!} ${dnskey[2]} ${dnskey[3]} ${Buffer.from(dnskey.subarray(4)).toString("base64")}`;
}

// ---------------------------------------------------------------------------------------------
// Canonical form (RFC 4034 section 6)

const lower = (b: number) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b);

function compareLabels(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = lower(a[i]!) - lower(b[i]!);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Canonical name order (RFC 4034 section 6.1): label by label from the root, octets lowered, a missing label first. */
export function compareNames(a: Name, b: Name): number {
  for (let i = a.length - 1, j = b.length - 1; i >= 0 || j >= 0; i--, j--) {
    if (i < 0) return -1;
    if (j < 0) return 1;
    const d = compareLabels(a[i]!, b[j]!);
    if (d !== 0) return d;
  }
  return 0;
}

function compareOctets(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Where the domain names sit in the data of the types RFC 4034 section 6.2 lowers (after a fixed prefix, how many). */
const NAMES_IN_RDATA = new Map<number, { skip: number; names: number }>([
  [RRType.NS, { skip: 0, names: 1 }],
  [3, { skip: 0, names: 1 }], // MD
  [4, { skip: 0, names: 1 }], // MF
  [RRType.CNAME, { skip: 0, names: 1 }],
  [RRType.SOA, { skip: 0, names: 2 }],
  [7, { skip: 0, names: 1 }], // MB
  [8, { skip: 0, names: 1 }], // MG
  [9, { skip: 0, names: 1 }], // MR
  [RRType.PTR, { skip: 0, names: 1 }],
  [14, { skip: 0, names: 2 }], // MINFO
  [RRType.MX, { skip: 2, names: 1 }],
  [17, { skip: 0, names: 2 }], // RP
  [18, { skip: 2, names: 1 }], // AFSDB
  [21, { skip: 2, names: 1 }], // RT
  [26, { skip: 2, names: 2 }], // PX
  [RRType.SRV, { skip: 6, names: 1 }],
  [36, { skip: 2, names: 1 }], // KX
  [TYPE_RRSIG, { skip: 18, names: 1 }],
]);

/** Record data in canonical form: the domain names of the types section 6.2 lists in lower case. */
export function canonicalRdata(type: number, rdata: Uint8Array): Uint8Array {
  let at: number;
  let names: number;
  const layout = NAMES_IN_RDATA.get(type);
  if (layout) {
    at = layout.skip;
    names = layout.names;
  } else if (type === RRType.NAPTR) {
    at = 4; // order, preference, then three character-strings before the replacement
    for (let i = 0; i < 3 && at < rdata.length; i++) at += 1 + rdata[at]!;
    names = 1;
  } else {
    return rdata;
  }
  const out = rdata.slice();
  for (let n = 0; n < names && at < out.length; n++) {
    while (at < out.length && out[at] !== 0) {
      const length = out[at]!;
      for (let i = at + 1; i <= at + length && i < out.length; i++) out[i] = lower(out[i]!);
      at += 1 + length;
    }
    at++;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RRSIG and NSEC

export interface RrsigFields {
  typeCovered: number;
  labels: number;
  originalTtl: number;
  /** Seconds since the epoch (serial arithmetic on the wire, RFC 4034 section 3.1.5). */
  expiration: number;
  inception: number;
  keyTag: number;
  signer: Name;
}

/** The RRSIG data without its signature (what the signature covers first, RFC 4034 section 3.1.8.1). */
export function rrsigHead(f: RrsigFields): Uint8Array {
  const signer = nameToWire(lowerName(f.signer));
  const out = new Uint8Array(18 + signer.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, f.typeCovered);
  out[2] = ALGORITHM;
  out[3] = f.labels;
  view.setUint32(4, f.originalTtl);
  view.setUint32(8, f.expiration >>> 0);
  view.setUint32(12, f.inception >>> 0);
  view.setUint16(16, f.keyTag);
  out.set(signer, 18);
  return out;
}

/** The labels field: the owner's labels without the root and a leading wildcard (RFC 4034 section 3.1.3). */
export function labelCount(owner: Name): number {
  return owner.length > 0 && owner[0]!.length === 1 && owner[0]![0] === 0x2a ? owner.length - 1 : owner.length;
}

/**
 * The octets an RRSIG signs (RFC 4034 section 3.1.8.1): its head, then each record of the RRset
 * in canonical form — owner lowered, the original TTL, canonical data — sorted by that data,
 * duplicates once.
 */
export function signedData(head: Uint8Array, owner: Name, type: number, originalTtl: number, rdatas: readonly Uint8Array[]): Uint8Array {
  const ownerWire = nameToWire(lowerName(owner));
  const sorted = rdatas.map((r) => canonicalRdata(type, r)).sort(compareOctets);
  const unique = sorted.filter((r, i) => i === 0 || compareOctets(r, sorted[i - 1]!) !== 0);
  const parts: Uint8Array[] = [head];
  for (const rdata of unique) {
    const fixed = new Uint8Array(10);
    const view = new DataView(fixed.buffer);
    view.setUint16(0, type);
    view.setUint16(2, CLASS_IN);
    view.setUint32(4, originalTtl);
    view.setUint16(8, rdata.length);
    parts.push(ownerWire, fixed, rdata);
  }
  return Buffer.concat(parts);
}

/** An RRSIG's data: its head and the P-256 signature as r then s (RFC 6605 section 4). */
export function rrsigRdata(f: RrsigFields, owner: Name, rdatas: readonly Uint8Array[], key: KeyObject): Uint8Array {
  const head = rrsigHead(f);
  const signature = sign("sha256", signedData(head, owner, f.typeCovered, f.originalTtl, rdatas), { key, dsaEncoding: "ieee-p1363" });
  const out = new Uint8Array(head.length + signature.length);
  out.set(head);
  out.set(signature, head.length);
  return out;
}

/** NSEC data: the next owner (lowered) and the type bitmap (RFC 4034 section 4.1). */
export function nsecRdata(next: Name, types: Iterable<number>): Uint8Array {
  return Buffer.concat([nameToWire(lowerName(next)), typeBitmap(types)]);
}

// ---------------------------------------------------------------------------------------------
// A signed zone

/** The key of a name in the signer's maps (names.ts nameKey: case-insensitive, not for display). */
const keyOf = nameKey;

/** How a signed zone proves names and types absent: its NSEC chain (RFC 4034), or NSEC3 with these parameters (RFC 5155). */
export type Denial = { mode: "nsec" } | { mode: "nsec3"; params: Nsec3Params };
export const NSEC_DENIAL: Denial = Object.freeze({ mode: "nsec" });

/**
 * A zone's NSEC chain in canonical order (RFC 4034 section 4.1.1): the NSEC of a name that
 * exists (none for an empty non-terminal), and the one covering a name that does not. Its
 * records are the zone's own RRsets (Zone.build holds them).
 */
export class NsecChain {
  readonly mode = "nsec";

  /** The NSEC owners in canonical order, and their NSEC records. */
  private constructor(
    private readonly owners: Name[],
    private readonly nsecs: RR[],
    private readonly nsecAt: CowMap<string, RR>,
  ) {}

  static of(nsecs: readonly RR[]): NsecChain {
    return new NsecChain(
      nsecs.map((r) => r.name),
      [...nsecs],
      CowMap.of(new Map(nsecs.map((r) => [keyOf(r.name), r]))),
    );
  }

  /** The NSEC owned by `name`, if any (an empty non-terminal owns none). */
  matching(name: Name): RR | null {
    return this.nsecAt.get(keyOf(name)) ?? null;
  }

  /** The NSEC whose owner is the last one at or before `name` in canonical order: it covers (or matches) it. */
  covering(name: Name): RR {
    const at = this.lastAtOrBefore(name);
    return this.nsecs[at < 0 ? this.nsecs.length - 1 : at]!; // before the apex: the chain wraps (not for names in the zone)
  }

  /** The index of the last owner at or before `name` in canonical order; -1 when none is. */
  private lastAtOrBefore(name: Name, owners: readonly Name[] = this.owners): number {
    let low = 0;
    let high = owners.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (compareNames(owners[mid]!, name) <= 0) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    return found;
  }

  /**
   * This chain with the owners `removed` taken out and the owners of `put` in it (new ones, or
   * ones whose types changed), made locally: the NSEC of each owner put, and of the owner
   * before each name that came or went (its next name moved). This chain does not change.
   * `changed`: the NSEC records made (to sign, and to put in the zone), `gone`: the owners whose
   * NSEC went.
   */
  edited(removed: readonly Name[], put: ReadonlyArray<{ name: Name; types: ReadonlySet<number> }>, ttl: number): { chain: NsecChain; changed: RR[]; gone: Name[] } {
    const owners = this.owners.slice();
    const nsecs = this.nsecs.slice();
    const nsecAt = this.nsecAt.derive();
    const gone: Name[] = [];
    /** Owners whose NSEC is made again: with these types, or (undefined) its types as they were and its next name as it is now. */
    const dirty = new Map<string, { name: Name; types?: ReadonlySet<number> }>();
    const before = (i: number) => owners[(i - 1 + owners.length) % owners.length]!;
    for (const name of removed) {
      const key = keyOf(name);
      if (!nsecAt.has(key)) continue;
      const i = this.lastAtOrBefore(name, owners);
      owners.splice(i, 1);
      nsecs.splice(i, 1);
      nsecAt.delete(key);
      dirty.delete(key);
      gone.push(name);
      const previous = before(i);
      if (!dirty.has(keyOf(previous))) dirty.set(keyOf(previous), { name: previous });
    }
    for (const entry of put) {
      const key = keyOf(entry.name);
      if (!nsecAt.has(key) && !dirty.has(key)) {
        const i = this.lastAtOrBefore(entry.name, owners) + 1;
        owners.splice(i, 0, entry.name);
        nsecs.splice(i, 0, undefined as unknown as RR); // made below: it is dirty
        const previous = before(i);
        if (!dirty.has(keyOf(previous))) dirty.set(keyOf(previous), { name: previous });
      }
      dirty.set(key, entry);
    }
    const changed: RR[] = [];
    for (const [key, entry] of dirty) {
      const i = this.lastAtOrBefore(entry.name, owners);
      const next = owners[(i + 1) % owners.length]!;
      const old = nsecs[i];
      // An owner only moved before: its types as they were (an unsigned delegation's included), its next name now.
      const rdata = entry.types !== undefined ? nsecRdata(next, [...entry.types, TYPE_RRSIG, TYPE_NSEC]) : Buffer.concat([nameToWire(lowerName(next)), old!.rdata.subarray(nameFromWire(old!.rdata, 0).next)]);
      if (old !== undefined && old.ttl === ttl && Buffer.from(old.rdata).equals(rdata)) continue;
      const nsec = { name: owners[i]!, ttl, type: TYPE_NSEC, rdata: new Uint8Array(rdata) };
      nsecs[i] = nsec;
      nsecAt.set(key, nsec);
      changed.push(nsec);
    }
    return { chain: new NsecChain(owners, nsecs, nsecAt), changed, gone };
  }
}

export type DenialChain = NsecChain | Nsec3Chain;

/** What a signed zone's signatures hold, each part a version its next change derives from (cow-map.ts). */
interface SignatureState {
  /** RRSIGs by `owner type` (rrsetKey). */
  sigs: CowMap<string, RR[]>;
  /** Every RRSIG of an owner (a query for type RRSIG): indexed, so that one costs no walk of the zone. */
  sigsAt: CowMap<string, RR[]>;
  /** What each RRSIG covers (canonicalContent), by `owner type`: a later signing keeps the ones whose RRset is unchanged. */
  contents: CowMap<string, string>;
  /** Every name of the zone that exists (owners and the empty non-terminals above them), by nameKey; not below a cut. */
  existing: CowMap<string, true>;
  /** The DS RRsets at the delegations, by owner (a referral carries them). */
  dsSets: Map<string, RR[]>;
  /** How many RRSIGs expire at each time (ms): the earliest is kept as they come and go, not found by a scan. */
  expirations: CowMap<number, number>;
  expiresAt: number;
}

/** The earliest of `times` (0: none), by a loop: a spread of every distinct expiration could pass the engine's limit on arguments. */
function earliestOf(times: Iterable<number>): number {
  let earliest = Infinity;
  for (const t of times) if (t < earliest) earliest = t;
  return earliest === Infinity ? 0 : earliest;
}

/** What the answer path needs of a signed zone besides its RRsets. */
export class ZoneSignatures {
  /** When the first of the signatures stops being valid (ms since the epoch). */
  readonly expiresAt: number;

  private constructor(
    readonly origin: Name,
    private readonly state: SignatureState,
    /** The NSEC or NSEC3 chain: what proves names and types absent (the zone's denial of existence). */
    readonly chain: DenialChain,
    /** The DNSKEY data of the keys that sign every RRset (two during a rollover), in the order their RRSIGs follow an RRset. */
    readonly dnskeys: readonly Uint8Array[],
    /** Signed, but no signatures to serve (sealed, none stored for the serial): its names are answered SERVFAIL. */
    readonly unavailable: boolean,
    /**
     * What signChange changed of the signatures it was made from (null: signed whole): the RRsets
     * whose RRSIGs went, and the RRSIGs of those it signed (some kept): what the change stores.
     */
    readonly change: { removed: ReadonlyArray<{ name: Name; type: number }>; signed: readonly RR[][] } | null = null,
    /** The CDS and CDNSKEY the signer published at the apex (null: none of its own; those the zone stores, if any). */
    readonly parent: ParentSignal | null = null,
  ) {
    this.expiresAt = state.expiresAt;
  }

  /** The signatures of a zone signed whole: RRSIGs and what they cover by `owner type` (rrsetKey). */
  static made(
    origin: Name,
    sigs: Map<string, RR[]>,
    chain: DenialChain,
    existing: Iterable<string>,
    dsSets: Map<string, RR[]>,
    dnskeys: readonly Uint8Array[],
    contents: Map<string, string>,
    unavailable = false,
    parent: ParentSignal | null = null,
  ): ZoneSignatures {
    const sigsAt = new Map<string, RR[]>();
    const expirations = new Map<number, number>();
    for (const set of sigs.values()) {
      for (const r of set) expirations.set(expirationOf(r), (expirations.get(expirationOf(r)) ?? 0) + 1);
      // An NSEC3's owner is no name of the zone (nsec3.ts): a query for it is answered as for a name that does not exist.
      if (rrsigTypeCovered(set[0]!) === TYPE_NSEC3) continue;
      const owner = keyOf(set[0]!.name);
      const at = sigsAt.get(owner);
      if (at) at.push(...set);
      else sigsAt.set(owner, [...set]);
    }
    const state: SignatureState = {
      sigs: CowMap.of(sigs),
      sigsAt: CowMap.of(sigsAt),
      contents: CowMap.of(contents),
      existing: CowMap.of(new Map([...existing].map((key) => [key, true as const]))),
      dsSets,
      expirations: CowMap.of(expirations),
      expiresAt: earliestOf(expirations.keys()),
    };
    return new ZoneSignatures(origin, state, chain, dnskeys, unavailable, null, parent);
  }

  /**
   * These signatures after a change (signChange): the RRSIGs of the RRsets at `removed` gone, those
   * of `signed` (by rrsetKey) put, the names `appeared` and `vanished` in or out of existence,
   * the chain `chain`; the RRSIGs of an owner in `owners` indexed again from `zone`'s types there.
   * These signatures do not change.
   */
  edited(
    zone: Zone,
    removed: ReadonlyArray<{ name: Name; type: number }>,
    signed: ReadonlyMap<string, { rrsigs: RR[]; content: string }>,
    appeared: readonly string[],
    vanished: readonly string[],
    chain: DenialChain,
    owners: ReadonlyMap<string, Name>,
  ): ZoneSignatures {
    const sigs = this.state.sigs.derive();
    const contents = this.state.contents.derive();
    const sigsAt = this.state.sigsAt.derive();
    const existing = this.state.existing.derive();
    const expirations = this.state.expirations.derive();
    let expiresAt = this.state.expiresAt;
    let earliestGone = false;
    const count = (rrsigs: readonly RR[], by: 1 | -1) => {
      for (const r of rrsigs) {
        const at = expirationOf(r);
        const n = (expirations.get(at) ?? 0) + by;
        if (n > 0) expirations.set(at, n);
        else expirations.delete(at);
        if (by > 0 && at < expiresAt) expiresAt = at;
        if (n === 0 && at === expiresAt) earliestGone = true;
      }
    };
    for (const rrset of removed) {
      const at = rrsetKey(rrset);
      const old = sigs.get(at);
      if (old === undefined) continue;
      count(old, -1);
      sigs.delete(at);
      contents.delete(at);
    }
    for (const [at, { rrsigs, content }] of signed) {
      const old = sigs.get(at);
      if (old !== undefined) count(old, -1);
      count(rrsigs, 1);
      sigs.set(at, rrsigs);
      contents.set(at, content);
    }
    // The earliest batch gone whole: the next is found among the distinct expirations (a few per day of changes), not the signatures.
    if (earliestGone && !expirations.has(expiresAt)) expiresAt = earliestOf(expirations.keys());
    for (const key of vanished) existing.delete(key);
    for (const key of appeared) existing.set(key, true);
    for (const [key, name] of owners) {
      const types = zone.rrsetsAt(name);
      const at = types === undefined ? [] : [...types.keys()].flatMap((type) => sigs.get(`${key} ${type}`) ?? []);
      if (at.length > 0) sigsAt.set(key, at);
      else sigsAt.delete(key);
    }
    const state: SignatureState = { sigs, sigsAt, contents, existing, dsSets: this.state.dsSets, expirations, expiresAt };
    const change = { removed, signed: [...signed.values()].map((s) => s.rrsigs) };
    return new ZoneSignatures(this.origin, state, chain, this.dnskeys, false, change, this.parent);
  }

  /** The RRSIGs as stored: one row per RRset they sign (store.ts saveZoneRrsigs). */
  storedRows(): Array<{ rrset: string; rrsigs: Uint8Array }> {
    return [...this.state.sigs.values()].map(storedRow);
  }

  /** True when the name (nameKey) exists in the zone as signed. */
  existsKey(key: string): boolean {
    return this.state.existing.has(key);
  }

  /** The RRSIGs over the RRset of `owner` and `type` (none: unsigned, such as glue). */
  rrsigs(owner: Name, type: number): RR[] {
    return this.state.sigs.get(`${keyOf(owner)} ${type}`) ?? [];
  }

  /**
   * The RRSIG by `key` over `owner type` when it covers `content` and is valid past `until` (ms):
   * a new signing may keep it. The key is matched by its DNSKEY, not its tag alone: another key
   * with the same tag (a rollover's, cancelled, then one made again) must sign for itself.
   */
  reusableRrsig(at: string, content: string, until: number, key: Pick<SigningKey, "dnskey" | "keyTag">): RR | undefined {
    if (this.unavailable || this.state.contents.get(at) !== content) return undefined;
    if (!this.dnskeys.some((d) => Buffer.from(d).equals(key.dnskey))) return undefined;
    const rrsig = this.state.sigs.get(at)?.find((r) => rrsigKeyTag(r) === key.keyTag);
    return rrsig !== undefined && expirationOf(rrsig) > until ? rrsig : undefined;
  }

  /** Every RRSIG at `owner`, a name of the zone (an NSEC3's are not counted: its owner is none). */
  rrsigsAt(owner: Name): RR[] {
    return this.state.sigsAt.get(keyOf(owner)) ?? [];
  }

  /** The DS RRset at the delegation `cut` (none: an unsigned delegation). */
  ds(cut: Name): RR[] {
    return this.state.dsSets.get(keyOf(cut)) ?? [];
  }

  exists(name: Name): boolean {
    return this.state.existing.has(keyOf(name));
  }

  /** The longest ancestor of `name` (itself included) that exists in the zone. */
  closestEncloser(name: Name): Name {
    for (let skip = 0; skip < name.length - this.origin.length; skip++) {
      const ancestor = name.slice(skip);
      if (this.exists(ancestor)) return ancestor;
    }
    return this.origin;
  }

  /** Every RRSIG (what is stored for a sealed start). */
  records(): RR[] {
    return [...this.state.sigs.values()].flat();
  }

  /** What a zone transfer carries besides the zone's records: the NSEC3 chain (the NSEC chain is the zone's own), then every RRSIG. */
  transferRecords(): RR[] {
    return this.chain.mode === "nsec3" ? [...this.chain.records(), ...this.records()] : this.records();
  }
}

/** The signatures of zones served signed: a zone in this map is signed. */
const signed = new WeakMap<Zone, ZoneSignatures>();

export function signaturesOf(zone: Zone): ZoneSignatures | undefined {
  return signed.get(zone);
}

/**
 * `zone` signed with `keys` at `now` (ms): the zone to serve, with a DNSKEY for each key and the
 * chain `denial` asks for (NSEC, or NSEC3 and its NSEC3PARAM), and its signatures registered for
 * signaturesOf. One key, or two during a rollover:
 * every RRset then carries an RRSIG by each, in the order of `keys`. Signature-type records the
 * zone stores itself (RRSIG, NSEC, NSEC3, NSEC3PARAM) are left out: the signer makes its own. A
 * DNSKEY it stores stays beside the signer's (a key pre-published for a move from another
 * operator).
 *
 * With `previous` (the signatures of the zone's last build), an RRset signed there by one of
 * these keys with the same canonical content — owner, type, TTL, data — keeps that key's RRSIG
 * while it has more than REFRESH_BEFORE_MS left: a change signs only the RRsets it changed (the
 * SOA, the NSEC or NSEC3 records whose next name or types changed), not the whole zone again on
 * the event loop. Kept per key: a rollover's new key signs every RRset once, the old key's RRSIGs
 * stay. A change of `denial` keeps the RRSIGs of the zone's data and signs the new chain.
 * `parent`: the CDS and CDNSKEY RRsets to publish at the apex, signed as the DNSKEY RRset is.
 */
export function signZone(zone: Zone, keys: readonly SigningKey[], now: number, previous?: ZoneSignatures, denial: Denial = NSEC_DENIAL, parent: ParentSignal | null = null): Zone {
  if (keys.length === 0) throw new Error("a zone is signed with at least one key");
  const layout = new SignedLayout(zone, keys.map((k) => k.dnskey), denial, parent);
  const sigs = new Map<string, RR[]>();
  const contents = new Map<string, string>();
  for (const rrset of layout.signedRrsets()) {
    const at = rrsetKey(rrset[0]!);
    const made = signRrset(rrset, at, keys, now, zone.origin, previous);
    contents.set(at, made.content);
    sigs.set(at, made.rrsigs);
  }
  return layout.register(sigs, keys.map((k) => k.dnskey), contents);
}

/** The RRSIGs of `rrset` (at `at`, its rrsetKey) by each of `keys`, each kept from `previous` where signZone keeps it, else made at `now`. */
function signRrset(rrset: readonly RR[], at: string, keys: readonly SigningKey[], now: number, signer: Name, previous: ZoneSignatures | undefined): { rrsigs: RR[]; content: string } {
  const first = rrset[0]!;
  const content = canonicalContent(rrset);
  const rrsigs = keys.map((key) => {
    const kept = previous?.reusableRrsig(at, content, now + REFRESH_BEFORE_MS, key);
    if (kept) return kept;
    const fields: RrsigFields = {
      typeCovered: first.type,
      labels: labelCount(first.name),
      originalTtl: first.ttl,
      expiration: Math.floor((now + VALIDITY_MS) / 1000),
      inception: Math.floor((now - INCEPTION_BEFORE_MS) / 1000),
      keyTag: key.keyTag,
      signer,
    };
    return { name: first.name, ttl: first.ttl, type: TYPE_RRSIG, rdata: rrsigRdata(fields, first.name, rrset.map((r) => r.rdata), key.privateKey) };
  });
  return { rrsigs, content };
}

/** The rows a change signed by signChange stores (store.ts saveChangedRrsigs): the keys of the RRsets whose RRSIGs went, and the RRSIGs it signed. */
export function changedRows(signatures: ZoneSignatures): { removed: string[]; signed: Array<{ rrset: string; rrsigs: Uint8Array }> } | null {
  if (signatures.change === null) return null;
  return { removed: signatures.change.removed.map((r) => storedRrsetKey(r.name, r.type)), signed: signatures.change.signed.map(storedRow) };
}

/** One change to a signed zone's data: the RRset of `owner` and `type` becomes `records` (none: it goes). */
export interface RrsetChange {
  owner: Name;
  type: number;
  records: readonly RR[];
}

/**
 * Types a change signChange makes cannot be: the SOA (given apart), the ones that move zone cuts
 * or sit at them (NS, DS), the signer's own (DNSKEY merged with the signer's, RRSIG, NSEC, NSEC3,
 * NSEC3PARAM): such a change is signed whole.
 */
const NOT_CHANGED_ALONE = new Set([RRType.SOA, RRType.NS, RRType.DS, TYPE_DNSKEY, TYPE_CDS, TYPE_CDNSKEY, TYPE_RRSIG, TYPE_NSEC, TYPE_NSEC3, TYPE_NSEC3PARAM]);

/**
 * `served` (a zone signZone or signChange made) with `soa` as its SOA and `changes` made, signed
 * with `keys` at `now` by editing it where the changes fall, not laying the zone out again: the
 * zone's nodes, the NSEC or NSEC3 chain (the changed names' records, and the one before each
 * name that came or went), the signatures (the changed RRsets', the SOA's, the changed NSEC or
 * NSEC3 records'), the names that exist and the earliest expiration — each a new version
 * sharing the rest with `served`'s, which does not change and is answered from until the new
 * one replaces it. Equal, record for record and signature for signature, to `signZone` of the
 * same data with `served`'s signatures as `previous` (test/plugins/dns/dnssec-incremental.test.ts).
 *
 * Null when it cannot be sure of that without a look at the rest of the zone, and the caller
 * signs the zone whole: another key set, denial, CDS/CDNSKEY (`parent`) or signer TTL than `served`'s; a signature of
 * `served` due to be made again (REFRESH_BEFORE_MS); a change of a type NOT_CHANGED_ALONE, or
 * one that Zone.build would refuse or adjust (an owner at or below a zone cut or outside the
 * zone, a CNAME beside data, TTLs that differ, duplicates, an RRset too large, a type not
 * stored or not signed); a new name whose NSEC3 hash another name has.
 */
export function signChange(served: Zone, soa: RR, changes: readonly RrsetChange[], keys: readonly SigningKey[], now: number, denial: Denial = NSEC_DENIAL, parent: ParentSignal | null = null): Zone | null {
  const previous = signaturesOf(served);
  if (previous === undefined || previous.unavailable || keys.length === 0) return null;
  if (!sameParentSignal(previous.parent, parent)) return null;
  if (keys.length !== previous.dnskeys.length || keys.some((k, i) => !Buffer.from(k.dnskey).equals(previous.dnskeys[i]!))) return null;
  if (!sameDenial(previous.chain, denial)) return null;
  const oldSoa = served.soa();
  if (soa.type !== RRType.SOA || soa.ttl !== oldSoa.ttl || minimumOf(soa) !== minimumOf(oldSoa)) return null; // the DNSKEY's TTL, the chain's
  if (previous.expiresAt <= now + REFRESH_BEFORE_MS) return null;
  const origin = served.origin;
  const owners = new Map<string, Name>();
  const seen = new Set<string>();
  for (const change of changes) {
    const at = `${keyOf(change.owner)} ${change.type}`;
    if (seen.has(at) || !changeableAlone(change, origin, served)) return null;
    seen.add(at);
    owners.set(keyOf(change.owner), change.owner);
  }
  let zone = served.withRrsets(soa, changes);
  const dataTypes = (z: Zone, name: Name) => new Set([...(z.rrsetsAt(name)?.keys() ?? [])].filter((t) => t !== TYPE_NSEC));
  for (const owner of owners.values()) {
    const rrsets = zone.rrsetsAt(owner);
    const cname = rrsets?.get(RRType.CNAME);
    if (cname && (cname.length > 1 || [...rrsets!.keys()].some((t) => t !== RRType.CNAME && t !== TYPE_NSEC))) return null;
  }
  // The names that came into existence or went: the owners changed and the empty non-terminals
  // above them. Asked of the zone once its chain is edited: before, a name whose last RRset went
  // still holds its NSEC (and its parents that child), and would be taken to exist still (found in
  // review: the answer path then proved a wildcard answer for a removed name with nothing).
  const appeared: Name[] = [];
  const vanished: Name[] = [];
  const findExistenceChanges = () => {
    const walked = new Set<string>();
    for (const owner of owners.values()) {
      for (let skip = 0; owner.length - skip > origin.length; skip++) {
        const name = owner.slice(skip);
        const key = keyOf(name);
        if (walked.has(key)) break;
        walked.add(key);
        const was = previous.existsKey(key);
        const is = zone.rrsetsAt(name) !== undefined;
        if (was && !is) vanished.push(name);
        if (is && !was) appeared.push(name);
      }
    }
  };
  const denialTtl = Math.min(soa.ttl, minimumOf(soa));
  const toSign: RR[][] = [[zone.soa()]];
  const removed: Array<{ name: Name; type: number }> = [];
  const sigOwners = new Map(owners).set(keyOf(origin), origin);
  for (const change of changes) {
    const rrset = zone.rrsetsAt(change.owner)?.get(change.type);
    if (rrset) toSign.push([...rrset]);
    else removed.push({ name: change.owner, type: change.type });
  }
  let chain: DenialChain;
  if (previous.chain.mode === "nsec") {
    const gone: Name[] = [];
    const put: Array<{ name: Name; types: ReadonlySet<number> }> = [];
    for (const owner of owners.values()) {
      const types = dataTypes(zone, owner);
      if (types.size > 0) put.push({ name: owner, types });
      else if (dataTypes(served, owner).size > 0) gone.push(owner);
    }
    const edit = previous.chain.edited(gone, put, denialTtl);
    chain = edit.chain;
    zone = zone.withRrsets(zone.soa(), [
      ...edit.gone.map((name) => ({ owner: name, type: TYPE_NSEC, records: [] })),
      ...edit.changed.map((nsec) => ({ owner: nsec.name, type: TYPE_NSEC, records: [nsec] })),
    ]);
    for (const name of edit.gone) {
      removed.push({ name, type: TYPE_NSEC });
      sigOwners.set(keyOf(name), name);
    }
    for (const nsec of edit.changed) {
      toSign.push([...zone.rrsetsAt(nsec.name)!.get(TYPE_NSEC)!]);
      sigOwners.set(keyOf(nsec.name), nsec.name);
    }
    findExistenceChanges();
  } else {
    findExistenceChanges(); // no NSEC3 in the zone's nodes: the zone as changed says it
    // RFC 5155 section 7.1, as SignedLayout: the types at a name and RRSIG; none at an empty non-terminal.
    const put: ChainName[] = [];
    const named = new Map([...owners.values(), ...appeared].map((name) => [keyOf(name), name]));
    for (const name of named.values()) {
      const types = dataTypes(zone, name);
      if (zone.rrsetsAt(name) !== undefined) put.push({ name, types: types.size > 0 ? types.add(TYPE_RRSIG) : types });
    }
    const edit = previous.chain.edited(vanished, put);
    if (edit === null) return null;
    chain = edit.chain;
    for (const nsec3 of edit.gone) removed.push(nsec3);
    for (const nsec3 of edit.changed) toSign.push([nsec3]);
  }
  const made = new Map<string, { rrsigs: RR[]; content: string }>();
  for (const rrset of toSign) {
    const at = rrsetKey(rrset[0]!);
    made.set(at, signRrset(rrset, at, keys, now, origin, previous));
  }
  const signatures = previous.edited(zone, removed, made, appeared.map(keyOf), vanished.map(keyOf), chain, sigOwners);
  signed.set(zone, signatures);
  return zone;
}

/** Whether signChange may make `change` to `served` alone (NOT_CHANGED_ALONE, and what Zone.build would refuse or adjust). */
function changeableAlone(change: RrsetChange, origin: Name, served: Zone): boolean {
  const { owner, type, records } = change;
  if (NOT_CHANGED_ALONE.has(type) || unstorableType(type) !== null || UNSIGNED_NAME_TYPES.has(type)) return false;
  if (!isSubdomain(owner, origin) || served.delegates(owner)) return false;
  const key = keyOf(owner);
  const identities = new Set<string>();
  let octets = 0;
  for (const r of records) {
    if (r.type !== type || keyOf(r.name) !== key || r.ttl !== records[0]!.ttl || !Number.isInteger(r.ttl) || r.ttl < 0 || r.ttl > MAX_TTL) return false;
    const identity = rdataIdentity(type, r.rdata);
    if (identities.has(identity)) return false;
    identities.add(identity);
    octets += wireLength(owner) + 10 + r.rdata.length;
  }
  return octets <= MAX_RRSET_OCTETS;
}

/** The SOA's MINIMUM field (its last four octets). */
const minimumOf = (soa: RR) => new DataView(soa.rdata.buffer, soa.rdata.byteOffset, soa.rdata.length).getUint32(soa.rdata.length - 4);

/** The same CDS and CDNSKEY published (or none by the signer, both). */
function sameParentSignal(a: ParentSignal | null, b: ParentSignal | null): boolean {
  if (a === null || b === null) return a === b;
  const same = (x: readonly Uint8Array[], y: readonly Uint8Array[]) => x.length === y.length && x.every((r, i) => Buffer.from(r).equals(y[i]!));
  return same(a.cds, b.cds) && same(a.cdnskey, b.cdnskey);
}

/** Is `chain` the one `denial` asks for: NSEC, or NSEC3 with the same salt and iterations? */
function sameDenial(chain: DenialChain, denial: Denial): boolean {
  if (chain.mode !== denial.mode) return false;
  if (chain.mode === "nsec" || denial.mode === "nsec") return true;
  return chain.params.iterations === denial.params.iterations && Buffer.from(chain.params.salt).equals(denial.params.salt);
}

/** What an RRSIG over the RRset covers besides its own fields: owner and type, the TTL, the canonical data in order. */
function canonicalContent(rrset: readonly RR[]): string {
  const first = rrset[0]!;
  // latin1: one character per octet (made a few times faster than hex). Each record's octets are
  // length-prefixed: they may hold a space, and joined bare two different RRsets could read the
  // same — a change would keep an RRSIG that no longer verifies (found in review: TXT "a" "b…"
  // against one record whose second string's length octet is 0x20).
  const data = rrset.map((r) => { const c = canonicalRdata(first.type, r.rdata); return `${c.length}:${Buffer.from(c.buffer, c.byteOffset, c.length).toString("latin1")}`; }).sort();
  return `${first.ttl} ${data.join(" ")}`;
}

/** The type an RRSIG covers, read in place (RFC 4034 section 3.1.1: octets 0-1). */
const rrsigTypeCovered = (rrsig: RR) => (rrsig.rdata[0]! << 8) | rrsig.rdata[1]!;

/** An RRSIG's expiration (ms), read in place (RFC 4034 section 3.1.5: octets 8-11). */
const expirationOf = (rrsig: RR) => new DataView(rrsig.rdata.buffer, rrsig.rdata.byteOffset, rrsig.rdata.length).getUint32(8) * 1000;

/** The tag of the key that made an RRSIG, read in place (RFC 4034 section 3.1.6: octets 16-17). */
const rrsigKeyTag = (rrsig: RR) => (rrsig.rdata[16]! << 8) | rrsig.rdata[17]!;

/**
 * `zone` signed with RRSIGs made earlier (signZone's, stored) by the keys whose DNSKEY data are
 * `dnskeys`: what a sealed Citadel serves, the private keys being out of reach. The DNSKEYs and
 * the NSEC or NSEC3 chain (`denial`, as when they were made) follow from the zone's records as
 * signZone makes them; null when an RRset that needs a signature lacks one by any of the keys
 * among `rrsigs` (they were made for other content, or before a rollover's key came). RRSIGs by
 * other keys are left out.
 */
export function withStoredSignatures(zone: Zone, dnskeys: readonly Uint8Array[], rrsigs: readonly RR[], denial: Denial = NSEC_DENIAL, parent: ParentSignal | null = null): Zone | null {
  const layout = new SignedLayout(zone, dnskeys, denial, parent);
  const tags = dnskeys.map(keyTag);
  const byRrsetAndKey = new Map<string, RR>();
  for (const r of rrsigs) byRrsetAndKey.set(`${keyOf(r.name)} ${readRrsig(r.rdata).typeCovered} ${rrsigKeyTag(r)}`, r);
  const sigs = new Map<string, RR[]>();
  const contents = new Map<string, string>();
  for (const rrset of layout.signedRrsets()) {
    const at = rrsetKey(rrset[0]!);
    const found = tags.map((tag) => byRrsetAndKey.get(`${at} ${tag}`));
    if (found.some((r) => r === undefined)) return null;
    sigs.set(at, found as RR[]);
    contents.set(at, canonicalContent(rrset));
  }
  return layout.register(sigs, dnskeys, contents);
}

/**
 * A zone that is signed but cannot be served signed (sealed, with no signatures stored for its
 * serial): registered with signatures that say so, and the answer path answers SERVFAIL for it
 * rather than unsigned records a validator holding the parent's DS would reject anyway.
 */
export function unavailableSigned(zone: Zone): Zone {
  signed.set(zone, ZoneSignatures.made(zone.origin, new Map(), NsecChain.of([]), [], new Map(), [], new Map(), true));
  return zone;
}

const rrsetKey = (r: { name: Name; type: number }) => `${keyOf(r.name)} ${r.type}`;

/** The stored row's key of an RRset (store.ts, migration 0011): its owner in canonical presentation, and its type. */
export const storedRrsetKey = (name: Name, type: number) => `${nameToText(lowerName(name))} ${type}`;

/** An RRset's RRSIGs as stored: keyed by the RRset they cover, encoded. */
const storedRow = (rrsigs: readonly RR[]) => ({ rrset: storedRrsetKey(rrsigs[0]!.name, rrsigTypeCovered(rrsigs[0]!)), rrsigs: encodeRrsigs(rrsigs) });

/** A CDS or CDNSKEY at the apex: Citadel's own while it publishes them (stored ones are left out then). */
const isParentSignal = (r: RR, origin: Name) => (r.type === TYPE_CDS || r.type === TYPE_CDNSKEY) && r.name.length === origin.length;

/**
 * What a signed zone serves besides its signatures: its records with the DNSKEYs, the
 * delegations, and the NSEC chain among its records or the NSEC3PARAM there and the NSEC3 chain
 * beside them.
 */
class SignedLayout {
  private readonly origin: Name;
  private readonly cuts: Set<string>;
  /** Every name that exists (by its key, nameKey): the authoritative owners and the empty non-terminals above them. */
  private readonly existing = new Set<string>();
  private readonly chain: DenialChain;
  private readonly served: Zone;
  private readonly rrsets: RR[][];

  constructor(zone: Zone, dnskeys: readonly Uint8Array[], denial: Denial, private readonly parent: ParentSignal | null) {
    const origin = zone.origin;
    const soa = zone.soa();
    this.origin = origin;
    const all = zone.records();
    const records = all.filter((r) => !SIGNER_TYPES.has(r.type) && !(parent !== null && isParentSignal(r, origin)));
    const signerRecords: RR[] = [];
    // The DNSKEY RRset's TTL is the SOA's: what a rollover waits for (dnssec-service.ts dnskeyTtlOf).
    for (const dnskey of dnskeys) signerRecords.push({ name: origin, ttl: soa.ttl, type: TYPE_DNSKEY, rdata: dnskey });
    // CDS and CDNSKEY take the DNSKEY RRset's TTL: they follow it (RFC 7344 section 4).
    for (const cds of parent?.cds ?? []) signerRecords.push({ name: origin, ttl: soa.ttl, type: TYPE_CDS, rdata: cds });
    for (const cdnskey of parent?.cdnskey ?? []) signerRecords.push({ name: origin, ttl: soa.ttl, type: TYPE_CDNSKEY, rdata: cdnskey });
    const minimum = new DataView(soa.rdata.buffer, soa.rdata.byteOffset).getUint32(soa.rdata.length - 4);
    const denialTtl = Math.min(soa.ttl, minimum); // RFC 9077: the negative TTL, for NSEC and NSEC3 alike
    // The NSEC3 family's TTL for NSEC3PARAM too, which only servers read (RFC 5155 section 4).
    if (denial.mode === "nsec3") signerRecords.push({ name: origin, ttl: denialTtl, type: TYPE_NSEC3PARAM, rdata: nsec3paramRdata(denial.params) });
    records.push(...signerRecords);
    // The zone built and checked already, with the signer's records put in (its nodes shared);
    // built again only when it stores signer types of its own, which must go.
    const serve = (added: RR[]) =>
      records.length - signerRecords.length === all.length ? zone.withSignerRecords([...signerRecords, ...added]) : Zone.build(origin, [...records, ...added], { loading: true });
    this.cuts = delegations(records, origin);
    // The authoritative owners and their types; at a cut only NS and DS are the parent's.
    const types = new Map<string, { name: Name; types: Set<number> }>();
    for (const r of records) {
      if (this.belowCut(r.name)) continue;
      if (this.atCut(r.name) && r.type !== RRType.NS && r.type !== RRType.DS) continue;
      const key = keyOf(r.name);
      const entry = types.get(key) ?? { name: r.name, types: new Set<number>() };
      entry.types.add(r.type);
      types.set(key, entry);
    }
    const owners = [...types.values()].sort((a, b) => compareNames(a.name, b.name));
    const emptyNonTerminals: Name[] = [];
    for (const owner of owners) {
      for (let skip = 0; skip <= owner.name.length - origin.length; skip++) {
        const key = keyOf(owner.name.slice(skip));
        if (this.existing.has(key)) continue;
        this.existing.add(key);
        if (skip > 0 && !types.has(key)) emptyNonTerminals.push(owner.name.slice(skip));
      }
    }
    if (denial.mode === "nsec") {
      const nsecs = owners.map((owner, i) => ({
        name: owner.name,
        ttl: denialTtl,
        type: TYPE_NSEC,
        rdata: nsecRdata(owners[(i + 1) % owners.length]!.name, [...owner.types, TYPE_RRSIG, TYPE_NSEC]),
      }));
      this.chain = NsecChain.of(nsecs);
      this.served = serve(nsecs);
    } else {
      // RFC 5155 section 7.1: every name that exists, empty non-terminals and unsigned delegations
      // too (no opt-out); the types at the name, RRSIG where an RRset there is signed (not at an
      // unsigned delegation, whose NS is the child's), never NSEC3 itself.
      const names: ChainName[] = owners.map((owner) => ({
        name: owner.name,
        types: this.atCut(owner.name) && !owner.types.has(RRType.DS) ? owner.types : new Set([...owner.types, TYPE_RRSIG]),
      }));
      for (const name of emptyNonTerminals) names.push({ name, types: new Set() });
      this.chain = new Nsec3Chain(origin, denial.params, names, denialTtl);
      this.served = serve([]);
    }
    this.rrsets = rrsetsOf(this.served.records());
  }

  private atCut(name: Name): boolean {
    return this.cuts.has(keyOf(name));
  }

  private belowCut(name: Name): boolean {
    if (this.cuts.size === 0) return false;
    for (let skip = 1; skip < name.length - this.origin.length; skip++) if (this.cuts.has(keyOf(name.slice(skip)))) return true;
    return false;
  }

  /** The RRsets that carry an RRSIG: every authoritative one (at a cut only the DS and the NSEC), and each NSEC3. */
  *signedRrsets(): Generator<RR[]> {
    for (const rrset of this.rrsets) {
      const first = rrset[0]!;
      if (this.belowCut(first.name) || (this.atCut(first.name) && first.type !== RRType.DS && first.type !== TYPE_NSEC)) continue;
      yield rrset;
    }
    if (this.chain.mode === "nsec3") for (const nsec3 of this.chain.records()) yield [nsec3];
  }

  /** The zone to serve, with `sigs` registered as its signatures. */
  register(sigs: Map<string, RR[]>, dnskeys: readonly Uint8Array[], contents = new Map<string, string>()): Zone {
    const dsSets = new Map<string, RR[]>();
    for (const rrset of this.rrsets) {
      const first = rrset[0]!;
      if (first.type === RRType.DS && this.atCut(first.name)) dsSets.set(keyOf(first.name), rrset);
    }
    signed.set(this.served, ZoneSignatures.made(this.origin, sigs, this.chain, this.existing, dsSets, dnskeys, contents, false, this.parent));
    return this.served;
  }
}

/** RRSIGs as stored (owner, TTL, data length, data; the type is RRSIG's): what a sealed start serves again. */
export function encodeRrsigs(rrsigs: readonly RR[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const r of rrsigs) {
    const fixed = new Uint8Array(6);
    const view = new DataView(fixed.buffer);
    view.setUint32(0, r.ttl);
    view.setUint16(4, r.rdata.length);
    parts.push(nameToWire(r.name), fixed, r.rdata);
  }
  return Buffer.concat(parts);
}

export function decodeRrsigs(stored: Uint8Array): RR[] {
  const out: RR[] = [];
  const view = new DataView(stored.buffer, stored.byteOffset, stored.length);
  let at = 0;
  while (at < stored.length) {
    const owner = nameFromWire(stored, at);
    const ttl = view.getUint32(owner.next);
    const length = view.getUint16(owner.next + 4);
    const start = owner.next + 6;
    out.push({ name: owner.name, ttl, type: TYPE_RRSIG, rdata: stored.slice(start, start + length) });
    at = start + length;
  }
  return out;
}

/** The owners of NS records below the apex, by their keys (nameKey). */
function delegations(records: readonly RR[], origin: Name): Set<string> {
  const cuts = new Set<string>();
  for (const r of records) if (r.type === RRType.NS && r.name.length > origin.length) cuts.add(keyOf(r.name));
  return cuts;
}

/** Records grouped by owner and type. */
function rrsetsOf(records: readonly RR[]): RR[][] {
  const sets = new Map<string, RR[]>();
  for (const r of records) {
    const key = `${keyOf(r.name)} ${r.type}`;
    const set = sets.get(key);
    if (set) set.push(r);
    else sets.set(key, [r]);
  }
  return [...sets.values()];
}

/** The RRSIG's fields, read back (tests, `show`). */
export function readRrsig(rdata: Uint8Array): RrsigFields & { signature: Uint8Array } {
  const view = new DataView(rdata.buffer, rdata.byteOffset, rdata.length);
  const signer = nameFromWire(rdata, 18);
  return {
    typeCovered: view.getUint16(0),
    labels: rdata[3]!,
    originalTtl: view.getUint32(4),
    expiration: view.getUint32(8),
    inception: view.getUint32(12),
    keyTag: view.getUint16(16),
    signer: signer.name,
    signature: rdata.slice(signer.next),
  };
}
