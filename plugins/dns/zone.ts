/**
 * An in-memory authoritative zone and the lookup algorithm of RFC 1034 section 4.3.2, answering
 * the way NSD and Knot do: exact matches, CNAME chains followed inside the zone, referrals at
 * zone cuts (with glue), NODATA and NXDOMAIN with the SOA for negative caching (RFC 2308), and
 * wildcard synthesis as clarified by RFC 4592.
 *
 * `Zone.build` validates the records first and refuses a zone that a server must not load
 * (ZoneError naming the record). Nodes are indexed by their lower-cased name, every ancestor of
 * an owner down to the origin included (the empty non-terminals RFC 4592 needs), so a lookup
 * walks the qname's labels, never the records.
 */
import { isSubdomain, labelKey, nameFromWire, nameKey, nameToText, wireLength, type Name } from "./names.ts";
import { RRType, rdataIdentity, rdataToText, typeToText, unstorableType } from "./rdata.ts";
import { CowMap } from "./cow-map.ts";

export interface RR {
  name: Name;
  ttl: number;
  type: number;
  rdata: Uint8Array;
}

/** A zone refused by Zone.build. `record` names the offending record (`owner TYPE`) when there is one. */
export class ZoneError extends Error {
  constructor(
    message: string,
    readonly record?: string,
  ) {
    super(record === undefined ? message : `${record}: ${message}`);
    this.name = "ZoneError";
  }
}

export type Answer = {
  rcode: 0 | 3; // NOERROR | NXDOMAIN
  aa: boolean;
  answer: RR[];
  authority: RR[];
  additional: RR[];
};

/** Largest TTL RFC 2181 section 8 allows. */
export const MAX_TTL = 0x7fffffff;
/** CNAME links followed inside the zone for one query. */
export const MAX_CNAME_CHAIN = 8;

const ANY = 255;
const RRSIG = 46;
const NSEC = 47;
const NSEC3 = 50;

export interface LookupOptions {
  /** For UDP: ANY answered with one RRset (RFC 8482). */
  minimalAny?: boolean;
  /** Other zones served here inside this one, without a delegation from it (see `lookup`). */
  nested?: NestedZones;
}

/**
 * The largest RRset a zone may hold: a message of at most 65,535 octets (over TCP) must carry
 * it with a header (12), the longest question (259) and room for OPT and a TSIG signature.
 */
export const MAX_RRSET_OCTETS = 65_535 - 12 - 259 - 1_024;

/** DNSSEC types that may sit beside a CNAME (RFC 4035 section 2.5) and at a zone cut. */
const DNSSEC_TYPES = new Set([RRSIG, NSEC, NSEC3]);
/** What Zone.withLeaves does not add: types whose place depends on the rest of the zone. */
const LEAF_REFUSED = new Set([RRType.SOA, RRType.NS, RRType.CNAME, RRType.DS, ...DNSSEC_TYPES]);
const ADDRESS_TYPES = [RRType.A, RRType.AAAA] as const;
const WILDCARD = Uint8Array.of(0x2a);

interface Node {
  /** The owner as first stored (its case is what answers carry). */
  name: Name;
  /** RRsets by type; empty for an empty non-terminal. */
  rrsets: Map<number, RR[]>;
  /** The nodes one label below it (withLeaves: an empty non-terminal left with none is gone). */
  children: number;
}

const isWildcardOwner = (name: Name) => name.length > 0 && name[0]!.length === 1 && name[0]![0] === WILDCARD[0];
/** Index key of a name (names.ts nameKey): its labels' keys from the first to the last; the root is "". */
const keyOf = nameKey;
const recordId = (rr: { name: Name; type: number }) => `${nameToText(rr.name)} ${typeToText(rr.type)}`;

/** The domain name inside NS, CNAME, MX or SRV record data; null for other types. */
function targetOf(rr: RR): Name | null {
  switch (rr.type) {
    case RRType.NS:
    case RRType.CNAME:
      return nameFromWire(rr.rdata, 0).name;
    case RRType.MX:
      return nameFromWire(rr.rdata, 2).name;
    case RRType.SRV:
      return nameFromWire(rr.rdata, 6).name;
    default:
      return null;
  }
}

export class Zone {
  /** Notes about accepted but adjusted data (RRset TTLs unified, duplicates merged). */
  readonly warnings: readonly string[];

  private readonly originKey: string;
  private negativeSoaRecord: RR | null = null;

  private constructor(
    readonly origin: Name,
    /** Versioned (cow-map.ts): a zone made from this one by withLeaves, withSignerRecords or withRrsets shares what it does not change. */
    private readonly nodes: CowMap<string, Node>,
    private readonly soaRecord: RR,
    warnings: string[],
  ) {
    this.warnings = warnings;
    this.originKey = keyOf(origin);
  }

  /**
   * Validates `records` and builds the zone; throws ZoneError naming the first bad record.
   * `loading` (a stored zone, checked when it was written): an RRset too large to answer, or a
   * record of a type not stored here (OPT, meta types, DNAME), which an older Citadel accepted,
   * is left out with a warning rather than failing the whole zone.
   */
  static build(origin: Name, records: readonly RR[], { loading = false }: { loading?: boolean } = {}): Zone {
    const originKey = keyOf(origin);
    const nodes = new Map<string, Node>();
    const warnings: string[] = [];
    nodes.set(originKey, { name: origin, rrsets: new Map(), children: 0 });

    const seen = new Map<string, RR>(); // each record by its identity (rdataIdentity), to merge duplicates
    for (const r of records) {
      if (!isSubdomain(r.name, origin)) throw new ZoneError(`the owner is outside the zone ${nameToText(origin)}`, recordId(r));
      if (!Number.isInteger(r.ttl) || r.ttl < 0 || r.ttl > MAX_TTL) {
        throw new ZoneError(`the TTL ${r.ttl} is above ${MAX_TTL} (RFC 2181 section 8)`, recordId(r));
      }
      const unstorable = unstorableType(r.type);
      if (unstorable !== null) {
        // Stored by an older Citadel, which took any type: the rest of the zone is still served.
        if (!loading) throw new ZoneError(unstorable, recordId(r));
        warnings.push(`${recordId(r)}: ${unstorable}; not served`);
        continue;
      }
      if ((r.type === RRType.NS || r.type === RRType.DS) && isWildcardOwner(r.name)) {
        // RFC 4592 section 4.2 leaves a wildcard delegation undefined, and servers differ: NSD
        // answers NODATA, Knot a referral — a secondary would answer what the primary does not.
        const why = `a wildcard ${typeToText(r.type)} has no defined meaning (RFC 4592 section 4.2): servers answer it differently`;
        if (!loading) throw new ZoneError(why, recordId(r));
        warnings.push(`${recordId(r)}: ${why}`); // stored by an older Citadel: still served as it was
      }
      const node = ensureNode(nodes, r.name, origin);
      const rrset = node.rrsets.get(r.type) ?? [];
      // The owner's key is length-prefixed: a name key and an identity are any octets, spaces
      // included, so joined bare an apex record could read as one of a name below it (found in review).
      const owner = keyOf(node.name);
      const identity = `${owner.length} ${owner} ${r.type} ${rdataIdentity(r.type, r.rdata)}`;
      const same = seen.get(identity);
      if (same) {
        warnings.push(`${recordId(r)}: a duplicate record was merged`);
        same.ttl = Math.min(same.ttl, r.ttl);
        continue;
      }
      const record = { name: node.name, ttl: r.ttl, type: r.type, rdata: r.rdata };
      seen.set(identity, record);
      rrset.push(record);
      node.rrsets.set(r.type, rrset);
    }

    // SOA: exactly one, at the apex.
    let soa: RR | null = null;
    for (const node of nodes.values()) {
      const set = node.rrsets.get(RRType.SOA);
      if (!set) continue;
      if (keyOf(node.name) !== originKey) throw new ZoneError("the SOA must be at the zone apex", recordId(set[0]!));
      if (set.length > 1) throw new ZoneError("a zone has exactly one SOA", recordId(set[1]!));
      soa = set[0]!;
    }
    if (soa === null) throw new ZoneError(`the zone ${nameToText(origin)} has no SOA record`);
    const apex = nodes.get(originKey)!;
    if (!apex.rrsets.has(RRType.NS)) throw new ZoneError("the zone apex has no NS records", `${nameToText(origin)} NS`);

    // NS targets anywhere in the zone: an address below a cut is glue when some NS names it.
    const nsTargets = new Set<string>();
    for (const node of nodes.values()) for (const ns of node.rrsets.get(RRType.NS) ?? []) nsTargets.add(keyOf(targetOf(ns)!));

    for (const [key, node] of nodes) {
      // CNAME and other data (RFC 1034 section 3.6.2, RFC 2181 section 10.1).
      const cname = node.rrsets.get(RRType.CNAME);
      if (cname) {
        if (cname.length > 1) throw new ZoneError("an owner can have only one CNAME", recordId(cname[0]!));
        const others = [...node.rrsets.keys()].filter((t) => t !== RRType.CNAME && !DNSSEC_TYPES.has(t));
        if (others.length > 0) {
          throw new ZoneError(`a CNAME cannot sit beside other data (${others.map(typeToText).join(", ")})`, recordId(cname[0]!));
        }
      }
      // Data at or below a zone cut other than the delegation itself and glue.
      const cut = enclosingCut(nodes, node.name, origin);
      if (cut === null || node.rrsets.size === 0) continue;
      const atCut = keyOf(cut) === key;
      for (const [type, set] of node.rrsets) {
        if (atCut && (type === RRType.NS || type === RRType.DS || DNSSEC_TYPES.has(type))) continue;
        if ((type === RRType.A || type === RRType.AAAA) && nsTargets.has(key)) continue;
        const where = atCut ? "at" : "below";
        throw new ZoneError(`only glue can sit ${where} the delegation ${nameToText(cut)} (not authoritative data)`, recordId(set[0]!));
      }
    }

    // One TTL per RRset, the smallest (RFC 2181 section 5.2); an RRset that fits a message.
    for (const node of nodes.values()) {
      for (const [type, set] of node.rrsets) {
        const octets = set.reduce((n, r) => n + wireLength(r.name) + 10 + r.rdata.length, 0);
        if (octets > MAX_RRSET_OCTETS) {
          const problem = `the RRset is ${octets} octets: a DNS message holds at most 65,535 (RFC 1035 section 4.2.2), so it could never be answered`;
          if (!loading || type === RRType.SOA || (type === RRType.NS && node === apex)) throw new ZoneError(problem, recordId(set[0]!));
          warnings.push(`${recordId(set[0]!)}: ${problem}; not served`);
          node.rrsets.delete(type);
          continue;
        }
        const ttl = Math.min(...set.map((r) => r.ttl));
        if (set.some((r) => r.ttl !== ttl)) {
          warnings.push(`${recordId(set[0]!)}: the RRset's TTLs differ; all set to ${ttl} (RFC 2181 section 5.2)`);
          for (const r of set) r.ttl = ttl;
        }
        for (const r of set) Object.freeze(r);
      }
    }
    return new Zone(apex.name, CowMap.of(nodes), soa, warnings);
  }

  soa(): RR {
    return this.soaRecord;
  }

  /**
   * This zone with `soa` as its SOA, the owners `removed` taken out and the records `added` put
   * in, without building the rest again: the other nodes are shared with this zone, which does
   * not change (a copy of the index, not of the records). For a large zone that changes a few
   * leaves at a time — the catalog zone, one PTR per member (catalog.ts) — which Zone.build would
   * take whole again at 15–20 µs a record. Only what needs no look at the rest of the zone is
   * taken, else a ZoneError: a removed owner has no name below it; each added record is alone at
   * an owner new to the zone, below the apex and outside any delegation, not a wildcard, of a
   * type that may sit anywhere (no SOA, NS, CNAME, DS or DNSSEC type). An empty non-terminal
   * left with nothing below it goes, as Zone.build would not have made it. Unsigned, as built.
   */
  withLeaves(soa: RR, added: readonly RR[], removed: readonly Name[]): Zone {
    if (soa.type !== RRType.SOA || keyOf(soa.name) !== this.originKey) throw new ZoneError("the SOA must be at the zone apex", recordId(soa));
    const nodes = this.nodes.derive();
    /** The node at `key` as this zone may change it: a copy, the first time (the old zone keeps its own). */
    const copied = new Set<string>();
    const own = (key: string): Node => {
      const node = nodes.get(key)!;
      if (copied.has(key)) return node;
      const copy = { ...node };
      nodes.set(key, copy);
      copied.add(key);
      return copy;
    };
    for (const name of removed) {
      let key = keyOf(name);
      const node = nodes.get(key);
      if (node === undefined || key === this.originKey) throw new ZoneError(`${nameToText(name)} is not an owner below the apex of ${nameToText(this.origin)}`);
      if (node.children > 0) throw new ZoneError(`${nameToText(name)} has names below it`);
      nodes.delete(key);
      // Up to the apex: each parent has one child less, and goes when nothing is left of it.
      for (let label = 0; ; label++) {
        key = key.slice(labelKey(name[label]!).length);
        const parent = own(key);
        parent.children--;
        if (key === this.originKey || parent.children > 0 || parent.rrsets.size > 0) break;
        nodes.delete(key);
      }
    }
    for (const rr of added) {
      const id = recordId(rr);
      if (rr.name.length <= this.origin.length || !isSubdomain(rr.name, this.origin)) throw new ZoneError(`the owner is not below the apex of ${nameToText(this.origin)}`, id);
      if (!Number.isInteger(rr.ttl) || rr.ttl < 0 || rr.ttl > MAX_TTL) throw new ZoneError(`the TTL ${rr.ttl} is above ${MAX_TTL} (RFC 2181 section 8)`, id);
      const refused = unstorableType(rr.type) ?? (LEAF_REFUSED.has(rr.type) || isWildcardOwner(rr.name) ? "not a leaf that needs no look at the rest of the zone" : null);
      if (refused !== null) throw new ZoneError(refused, id);
      if (wireLength(rr.name) + 10 + rr.rdata.length > MAX_RRSET_OCTETS) throw new ZoneError("the record does not fit a DNS message", id);
      let key = keyOf(rr.name);
      if (nodes.has(key)) throw new ZoneError("the owner is in the zone already", id);
      nodes.set(key, { name: rr.name, rrsets: new Map([[rr.type, [Object.freeze({ name: rr.name, ttl: rr.ttl, type: rr.type, rdata: rr.rdata })]]]), children: 0 });
      copied.add(key);
      // Up to the apex: each parent has one child more, made (an empty non-terminal) when missing.
      for (let label = 0, made = true; made; label++) {
        key = key.slice(labelKey(rr.name[label]!).length);
        made = !nodes.has(key);
        if (made) {
          nodes.set(key, { name: rr.name.slice(label + 1), rrsets: new Map(), children: 0 });
          copied.add(key);
        }
        own(key).children++;
      }
      for (let label = 1; rr.name.length - label > this.origin.length; label++) {
        const cut = nodes.get(keyOf(rr.name.slice(label)));
        if (cut?.rrsets.has(RRType.NS)) throw new ZoneError(`only glue can sit below the delegation ${nameToText(cut.name)} (not authoritative data)`, id);
      }
    }
    const record = Object.freeze({ name: this.origin, ttl: soa.ttl, type: RRType.SOA, rdata: soa.rdata });
    const apex = own(this.originKey);
    apex.rrsets = new Map(apex.rrsets).set(RRType.SOA, [record]);
    return new Zone(this.origin, nodes, record, [...this.warnings]);
  }

  /**
   * This zone with a signer's records put in (DNSKEY and NSEC3PARAM at the apex, an NSEC at an
   * owner): what a signed zone serves, without building and checking the whole zone again (a
   * third of the time a signed zone of 10,000 names took to build at each change). The other
   * nodes are shared with this zone, which does not change. Each record's owner must be a name
   * of the zone that holds records (a ZoneError otherwise: Zone.build is the one that makes
   * nodes); one already in an RRset of its type is merged, the RRset taking the smallest TTL, as
   * Zone.build does.
   */
  withSignerRecords(added: readonly RR[]): Zone {
    const nodes = this.nodes.derive();
    const copied = new Set<string>();
    for (const rr of added) {
      const key = keyOf(rr.name);
      let node = nodes.get(key);
      if (node === undefined || node.rrsets.size === 0) throw new ZoneError("a signer's record is put only at an owner of the zone", recordId(rr));
      if (!copied.has(key)) {
        node = { ...node, rrsets: new Map(node.rrsets) };
        nodes.set(key, node);
        copied.add(key);
      }
      const set = node.rrsets.get(rr.type) ?? [];
      const ttl = Math.min(rr.ttl, ...set.map((r) => r.ttl));
      const merged = set.map((r) => (r.ttl === ttl ? r : Object.freeze({ ...r, ttl })));
      const duplicate = set.some((r) => Buffer.from(r.rdata.buffer, r.rdata.byteOffset, r.rdata.length).equals(rr.rdata));
      if (!duplicate) merged.push(Object.freeze({ name: node.name, ttl, type: rr.type, rdata: rr.rdata }));
      node.rrsets.set(rr.type, merged);
    }
    const soa = nodes.get(this.originKey)!.rrsets.get(RRType.SOA)![0]!;
    return new Zone(this.origin, nodes.compacted(), soa, [...this.warnings]);
  }

  /**
   * This zone with `soa` as its SOA and each of `changes` made: the RRset of `owner` and `type`
   * becomes `records` (none: it goes). A node is made, with the empty non-terminals above it,
   * for an owner new to the zone, and goes, with the empty non-terminals left with nothing below
   * them, when its last RRset does. The other nodes are shared with this zone, which does not
   * change. No check of the rest of the zone is made: the caller (dnssec.ts signChange) takes
   * only changes whose place it has checked, else builds the zone whole.
   */
  withRrsets(soa: RR, changes: ReadonlyArray<{ owner: Name; type: number; records: readonly RR[] }>): Zone {
    const nodes = this.nodes.derive();
    const copied = new Set<string>();
    const own = (key: string): Node => {
      const node = nodes.get(key)!;
      if (copied.has(key)) return node;
      const copy = { ...node, rrsets: new Map(node.rrsets) };
      nodes.set(key, copy);
      copied.add(key);
      return copy;
    };
    for (const { owner, type, records } of changes) {
      let key = keyOf(owner);
      if (records.length > 0) {
        if (!nodes.has(key)) {
          nodes.set(key, { name: owner, rrsets: new Map(), children: 0 });
          copied.add(key);
          // Up to the apex: each parent has one child more, made (an empty non-terminal) when missing.
          for (let label = 0, made = true; made; label++) {
            key = key.slice(labelKey(owner[label]!).length);
            made = !nodes.has(key);
            if (made) {
              nodes.set(key, { name: owner.slice(label + 1), rrsets: new Map(), children: 0 });
              copied.add(key);
            }
            own(key).children++;
          }
          key = keyOf(owner);
        }
        const node = own(key);
        node.rrsets.set(type, records.map((r) => Object.freeze({ name: node.name, ttl: r.ttl, type, rdata: r.rdata })));
        continue;
      }
      if (!nodes.get(key)?.rrsets.has(type)) continue;
      const node = own(key);
      node.rrsets.delete(type);
      if (node.rrsets.size > 0 || node.children > 0 || key === this.originKey) continue;
      nodes.delete(key);
      // Up to the apex: each parent has one child less, and goes when nothing is left of it.
      for (let label = 0; ; label++) {
        key = key.slice(labelKey(owner[label]!).length);
        const parent = own(key);
        parent.children--;
        if (key === this.originKey || parent.children > 0 || parent.rrsets.size > 0) break;
        nodes.delete(key);
      }
    }
    const record = Object.freeze({ name: this.origin, ttl: soa.ttl, type: RRType.SOA, rdata: soa.rdata });
    own(this.originKey).rrsets.set(RRType.SOA, [record]);
    return new Zone(this.origin, nodes, record, [...this.warnings]);
  }

  /** The RRsets at `name` by type (none: no such node; an empty map: an empty non-terminal). Not to be changed. */
  rrsetsAt(name: Name): ReadonlyMap<number, readonly RR[]> | undefined {
    return this.nodes.get(keyOf(name))?.rrsets;
  }

  /** True when this zone delegates `name` or a name above it (NS records below the apex): it lies beyond a zone cut. */
  delegates(name: Name): boolean {
    for (let length = this.origin.length + 1; length <= name.length; length++) {
      if (this.nodes.get(keyOf(name.slice(name.length - length)))?.rrsets.has(RRType.NS)) return true;
    }
    return false;
  }

  serial(): number {
    return new DataView(this.soaRecord.rdata.buffer, this.soaRecord.rdata.byteOffset).getUint32(this.soaRecord.rdata.length - 20);
  }

  /** Every record, the SOA first, then node by node: for AXFR and export. */
  records(): RR[] {
    const out: RR[] = [this.soaRecord];
    for (const node of this.nodes.values()) {
      for (const set of node.rrsets.values()) for (const r of set) if (r !== this.soaRecord) out.push(r);
    }
    return out;
  }

  /**
   * Answers `qname`/`qtype` from this zone (RFC 1034 section 4.3.2 step 3). The qname must lie
   * in the zone — picking the zone is the server's job; outside, a ZoneError is thrown.
   * Case-insensitive; answers carry the stored owner names (synthesized ones carry the qname).
   *
   * `minimalAny`, for UDP: a query of type ANY gets one RRset of the name, not all of them
   * (RFC 8482 section 4.1) — a few octets of question must not buy kilobytes of answer towards
   * a forged source address. Over TCP, where the source is proven, ANY gets every RRset.
   *
   * `nested`: other zones served here inside this one that it does not delegate to (a
   * delegation is answered as one, with its referral). Their names exist
   * whether or not this zone delegates to them: a name at or above one is never NXDOMAIN here
   * (RFC 8020: that would deny everything below it) but NODATA, and a CNAME chain stops where
   * it enters one (that zone answers for it, as it would for a name outside this zone).
   */
  lookup(qname: Name, qtype: number, { minimalAny = false, nested }: LookupOptions = {}): Answer {
    if (!isSubdomain(qname, this.origin)) {
      throw new ZoneError(`${nameToText(qname)} is not in the zone ${nameToText(this.origin)}`);
    }
    const out: Answer = { rcode: 0, aa: true, answer: [], authority: [], additional: [] };
    let seen: Set<string> | null = null; // made only when a CNAME is followed
    let name: Name = qname;
    for (let step = 0; ; step++) {
      const next = this.step(name, qtype, out, step === 0, minimalAny, nested);
      // Done, or the chain leaves the zone (or enters another zone served here).
      if (next === null || !isSubdomain(next, this.origin) || nested?.covers(next)) break;
      seen ??= new Set([keyOf(qname)]);
      if (seen.has(keyOf(next)) || step + 1 >= MAX_CNAME_CHAIN) break; // a loop or too long: stop here
      seen.add(keyOf(next));
      name = next;
    }
    this.addAdditional(out);
    return out;
  }

  /** One name of a (possible) CNAME chain; returns the CNAME target to follow, or null. */
  private step(qname: Name, qtype: number, out: Answer, first: boolean, minimalAny: boolean, nested: NestedZones | undefined): Name | null {
    // Walk down from the apex: a zone cut on the way means a referral; stop at the first missing name.
    const o = this.origin.length;
    let key = this.originKey;
    let encloser = this.nodes.get(key)!;
    for (let i = qname.length - o - 1; i >= 0; i--) {
      const childKey = labelKey(qname[i]!) + key;
      const child = this.nodes.get(childKey);
      if (!child) break;
      key = childKey;
      encloser = child;
      const ns = child.rrsets.get(RRType.NS);
      if (ns && !(i === 0 && qtype === RRType.DS)) {
        // The parent side of a cut answers DS itself; anything else is referred.
        if (first) out.aa = false;
        out.authority.push(...ns);
        return null;
      }
    }
    const exact = encloser.name.length === qname.length;
    let node: Node | undefined = exact ? encloser : undefined;
    let owner: Name | null = null; // set when the answer is synthesized from a wildcard
    if (!node && nested) {
      // Not in this zone's data, but a zone served here may lie at or below the name (then it
      // exists: NODATA), or below an ancestor deeper than the closest encloser found here (that
      // ancestor exists, and has no wildcard: NXDOMAIN, RFC 4592).
      for (let length = qname.length; length > encloser.name.length; length--) {
        if (!nested.holds(qname.slice(qname.length - length))) continue;
        out.rcode = length === qname.length ? 0 : 3;
        out.authority.push(this.negativeSoa());
        return null;
      }
    }
    if (!node) {
      // RFC 4592: the source of synthesis is `*.<closest encloser>`.
      node = this.nodes.get(labelKey(WILDCARD) + key);
      if (!node) {
        out.rcode = 3;
        out.authority.push(this.negativeSoa());
        return null;
      }
      owner = qname;
    }
    const as = (set: RR[]) => (owner === null ? set : set.map((r) => ({ ...r, name: owner })));

    out.rcode = 0;
    if (qtype === ANY && node.rrsets.size > 0) {
      for (const set of node.rrsets.values()) {
        out.answer.push(...as(set));
        if (minimalAny) break; // the first, as the zone lists them: the same one every time
      }
      return null;
    }
    const data = node.rrsets.get(qtype);
    if (data) {
      out.answer.push(...as(data));
      return null;
    }
    const cname = node.rrsets.get(RRType.CNAME);
    if (cname) {
      out.answer.push(...as(cname));
      return targetOf(cname[0]!);
    }
    out.authority.push(this.negativeSoa()); // NODATA
    return null;
  }

  /** The SOA for a negative answer: TTL min(SOA TTL, MINIMUM) (RFC 2308 section 3); made once. */
  private negativeSoa(): RR {
    if (this.negativeSoaRecord === null) {
      const soa = this.soaRecord;
      const minimum = new DataView(soa.rdata.buffer, soa.rdata.byteOffset).getUint32(soa.rdata.length - 4);
      this.negativeSoaRecord = { ...soa, ttl: Math.min(soa.ttl, minimum) };
    }
    return this.negativeSoaRecord;
  }

  /**
   * In-zone A/AAAA for the targets of MX, SRV, SVCB and HTTPS (RFC 9460 section 4.1) and NS in
   * the answer, and NS in the authority.
   */
  private addAdditional(out: Answer): void {
    const added = new Set<string>();
    for (const rr of [...out.answer, ...out.authority]) {
      const target = additionalTarget(rr);
      if (target === null || !isSubdomain(target, this.origin)) continue;
      const key = keyOf(target);
      const node = this.nodes.get(key);
      if (!node || added.has(key)) continue;
      added.add(key);
      for (const type of ADDRESS_TYPES) out.additional.push(...(node.rrsets.get(type) ?? []));
    }
  }
}

/**
 * The name whose addresses go to the additional section for `rr`, or null. A SVCB/HTTPS
 * TargetName of "." (the owner itself, or no service; RFC 9460 section 2.5) adds nothing, as
 * in Knot: the owner's addresses are what the client asked about, or there is no service.
 */
function additionalTarget(rr: RR): Name | null {
  switch (rr.type) {
    case RRType.NS:
    case RRType.MX:
    case RRType.SRV:
      return targetOf(rr);
    case RRType.SVCB:
    case RRType.HTTPS: {
      const target = nameFromWire(rr.rdata, 2).name;
      return target.length > 0 ? target : null;
    }
    default:
      return null;
  }
}

/** The node for `name`, created with every missing ancestor down to the origin (empty non-terminals). */
function ensureNode(nodes: Map<string, Node>, name: Name, origin: Name): Node {
  let key = "";
  let parent: Node | undefined;
  for (let i = name.length - 1; i >= 0; i--) {
    key = labelKey(name[i]!) + key;
    if (name.length - i < origin.length) continue;
    let node = nodes.get(key);
    if (!node) {
      node = { name: name.slice(i), rrsets: new Map(), children: 0 };
      nodes.set(key, node);
      if (parent) parent.children++;
    }
    parent = node;
  }
  return nodes.get(key)!;
}

/** The highest zone cut (NS below the apex) at or above `name`, or null. */
function enclosingCut(nodes: Map<string, Node>, name: Name, origin: Name): Name | null {
  for (let i = name.length - origin.length - 1; i >= 0; i--) {
    const node = nodes.get(keyOf(name.slice(i)));
    if (node?.rrsets.has(RRType.NS)) return node.name;
  }
  return null;
}

/** `owner TTL TYPE rdata` lines, for tests and logs. */
export function rrToText(rr: RR): string {
  return `${nameToText(rr.name)} ${rr.ttl} ${typeToText(rr.type)} ${rdataToText(rr.type, rr.rdata)}`;
}

/**
 * Zones served here inside an outer zone that does not delegate to them (Zone.lookup's
 * `nested`), indexed so that each question about a name costs a few set lookups, however many
 * zones there are.
 */
export class NestedZones {
  /** The inner apexes. */
  private readonly apexes = new Set<string>();
  /** The inner apexes and every name between one and the outer apex. */
  private readonly existing = new Set<string>();

  constructor(outer: Name, inner: readonly Name[]) {
    for (const apex of inner) {
      this.apexes.add(keyOf(apex));
      for (let length = apex.length; length > outer.length; length--) this.existing.add(keyOf(apex.slice(apex.length - length)));
    }
  }

  /** True when `name` is an inner apex or lies between one and the outer apex: it exists. */
  holds(name: Name): boolean {
    return this.existing.has(keyOf(name));
  }

  /** True when `name` is at or below an inner apex: that zone answers for it. */
  covers(name: Name): boolean {
    for (let length = name.length; length > 0; length--) if (this.apexes.has(keyOf(name.slice(name.length - length)))) return true;
    return false;
  }
}
