/**
 * The catalog zone (RFC 9432, version 2), producer side: a zone listing the zones a secondary
 * serves, so that a secondary configured with the catalog alone (Knot's `catalog-role:
 * interpret`, BIND's `catalog-zones`, PowerDNS's consumer) serves every zone made through the
 * API without a change to its configuration, and drops a deleted one.
 *
 * Each secondary gets its own view: the zones it may transfer and is told of (its `zones`, by
 * the rules NOTIFY follows: a record provider's own zone only when it names it), chosen by what
 * authenticates it — its address and its TSIG key, as for any transfer. A catalog lists every
 * organization's zone names, so it is answered to nobody else (server.ts, catalogReply).
 *
 * A view's content:
 *   <catalog>                 0 SOA invalid. invalid. <serial> 300 60 2419200 0
 *   <catalog>                 0 NS  invalid.
 *   version.<catalog>         0 TXT "2"
 *   <id>.zones.<catalog>      0 PTR <member zone>.
 * The member's id (RFC 9432 section 4.1) comes from the zone's row, not its name: a zone deleted
 * and made again under the same name is a new member, which a consumer must drop and add anew
 * (its old copy, and its old serial, go). No group or other property is set: every member takes
 * the catalog's one template on the secondary.
 *
 * A view's serial moves when its members do (a zone made or deleted, the secondary's zones
 * changed), and only then, a restart included: the members as last served (a fingerprint) and
 * the serial are kept in the store per view (CatalogSerials), as a record provider's own zone
 * keeps its serial. A serial that moves goes above the highest any view ever had: the secondary
 * a view is for may have held another view (its address or key changed, and maybe back).
 */
import type { Kernel } from "../../src/plugin.ts";
import { isSubdomain, lowerName, nameToText, nameToWire, type Name } from "./names.ts";
import { parseRdata, RRType } from "./rdata.ts";
import { canonicalAddress, type NotifyTarget } from "./secondaries.ts";
import { serialLess } from "./service.ts";
import type { DnsSettings } from "./settings.ts";
import * as sql from "./store.ts";
import { Zone, type RR } from "./zone.ts";

/** RFC 9432 section 4.2: the schema version this producer writes. */
export const CATALOG_VERSION = "2";
/** The SOA's timers: a refresh of 5 minutes catches a lost NOTIFY soon; expiry long after any member's (2 weeks by default). */
const SOA_TIMERS = { refresh: 300, retry: 60, expire: 2_419_200, minimum: 0 } as const;
/** RFC 9432 uses TTL 0 throughout: a catalog is for secondaries, never for resolvers. */
const TTL = 0;
const TEXT = new TextEncoder();
/** RFC 9432 section 4.1: the apex NS, which nothing resolves. */
const INVALID: Name = [TEXT.encode("invalid")];
/** RFC 9432 section 4.1: the members are below `zones.<catalog>`. */
const ZONES = TEXT.encode("zones");

/** One zone a catalog may list. */
export interface CatalogMember {
  /** The zone's name, canonical (absolute, lower-case: "example.org."). */
  name: string;
  /** The same as a name (lower-case). */
  origin: Name;
  /** Its unique id (memberIdOfZone, memberIdOfProvider): one DNS label. */
  id: string;
  /** A record provider's own zone (mesh.internal.): only in the view of a secondary that names it. */
  providerOwned: boolean;
}

/** Secondaries that authenticate alike (one address, one key): they get one view. */
export interface CatalogSubscriber {
  /** The view's key: the address and the key's name, canonical ("192.0.2.53 transfer.example.org."). */
  view: string;
  address: string;
  tsigKey: string;
  /** The secondaries of that address and key, by name (mostly one). */
  secondaries: string[];
  /** Whether `member` is in their view: a zone one of them may transfer and is told of. */
  covers(member: CatalogMember): boolean;
  /**
   * What `covers` follows (their zones), as text: a view whose selection is the same follows the
   * members that came and went; another is built again whole.
   */
  selection: string;
  /** Where the view's NOTIFY goes: each of them. */
  targets: NotifyTarget[];
}

/** A view whose secondaries are to be told of it (NOTIFY). */
export interface CatalogAnnouncement {
  zone: Zone;
  targets: NotifyTarget[];
}

/** What the API shows of one view. */
export interface CatalogViewSummary {
  address: string;
  tsig_key: string;
  secondaries: string[];
  serial: number;
  zones: Array<{ id: string; name: string }>;
}

/**
 * A stored zone's member id: its row id's octets in hex (`dnsz_…`, 19 octets: 38 characters).
 * The row id is unique and never reused, and a label is compared without case while the row id's
 * base62 is not: hex keeps it exact. The API shows the row id, so an operator can tell which
 * zone a member is.
 */
export function memberIdOfZone(rowId: string): string {
  return Buffer.from(rowId, "utf8").toString("hex");
}

/**
 * A record provider's own zone's member id: a digest of the provider and its domain, after "p-"
 * (no hex id of a stored zone has a dash). A provider moved to another domain is another member.
 */
export function memberIdOfProvider(provider: string, domain: string): string {
  return `p-${new Bun.CryptoHasher("sha256").update(`${provider} ${domain}`).digest("hex").slice(0, 32)}`;
}

/** The catalog zone `members` make at `serial`, in the order given. */
export function buildCatalog(origin: Name, serial: number, members: readonly CatalogMember[]): Zone {
  const records: RR[] = [
    catalogSoa(origin, serial),
    { name: origin, ttl: TTL, type: RRType.NS, rdata: nameToWire(INVALID) },
    { name: [TEXT.encode("version"), ...origin], ttl: TTL, type: RRType.TXT, rdata: Uint8Array.of(CATALOG_VERSION.length, ...TEXT.encode(CATALOG_VERSION)) },
  ];
  for (const member of members) records.push(memberRecord(origin, member));
  return Zone.build(origin, records);
}

function catalogSoa(origin: Name, serial: number): RR {
  return { name: origin, ttl: TTL, type: RRType.SOA, rdata: parseRdata(RRType.SOA, ["invalid.", "invalid.", String(serial), ...Object.values(SOA_TIMERS).map(String)], origin) };
}

/** `<id>.zones.<catalog>`: where a member's PTR is. */
const memberOwner = (origin: Name, member: CatalogMember): Name => [TEXT.encode(member.id), ZONES, ...origin];
const memberRecord = (origin: Name, member: CatalogMember): RR => ({ name: memberOwner(origin, member), ttl: TTL, type: RRType.PTR, rdata: nameToWire(member.origin) });

/**
 * What a view's serial follows: the catalog's name and its members (ids and names), in any
 * order — the sum of their SHA-256 digests (mod 2^256), so that a view's fingerprint follows a
 * change of one member at the cost of that member alone, however many there are (a digest of
 * them all, in order, was a sort and a hash of every member at each change: found in review).
 * It is only compared with the view's own last one (CatalogSerials), and the members' ids are
 * row ids nobody chooses: no sum to aim a collision at.
 */
export function catalogFingerprint(origin: Name, members: Iterable<CatalogMember>): string {
  let sum = 0n;
  for (const m of members) sum += memberDigest(m);
  return fingerprintOf(origin, sum);
}

const DIGEST_MODULUS = 1n << 256n;
const memberDigest = (m: CatalogMember) => digestOf(`${m.id} ${m.name}`);
const digestOf = (text: string) => BigInt(`0x${new Bun.CryptoHasher("sha256").update(text).digest("hex")}`);
/** `sum` (members came and went: below zero, or past the modulus) as the digests' sum it stands for. */
const modDigest = (sum: bigint) => ((sum % DIGEST_MODULUS) + DIGEST_MODULUS) % DIGEST_MODULUS;
const fingerprintOf = (origin: Name, sum: bigint) => modDigest(digestOf(nameToText(origin)) + sum).toString(16).padStart(64, "0");

/**
 * The serial of a view after a change of its members: the time in seconds, as Knot's own
 * catalogs have it, or one more than before when that is not ahead (RFC 1982) — more than one
 * change a second, or a serial moved past the clock by a restore.
 */
export function nextCatalogSerial(previous: number | null, now: number): number {
  const clock = Math.floor(now / 1000) % 2 ** 32;
  if (previous === null || serialLess(previous, clock)) return clock;
  return (previous + 1) % 2 ** 32;
}

/** Where the view's serial and members are kept (CatalogSerials; tests keep them in memory). */
export interface CatalogSerialStore {
  /** The serial of `view` with members of `fingerprint`: as it was when they are the same, else a new one above every view's. */
  serialFor(view: string, fingerprint: string): number;
  /** The views served now: any other is retired, to start above every view's serial should it come back. */
  retireAllBut(views: ReadonlySet<string>): void;
}

/** A retired view's fingerprint: no members are ever that (a digest is never empty). */
const RETIRED = "";

/**
 * Each view's members as last served and its serial, kept in the store: memory is the truth
 * while running, each move is written behind it (a failed write is logged: the next start then
 * moves the serial once more, never back).
 *
 * A serial that moves goes above every serial any view has had, not only its own, and a view
 * no secondary is served any more is retired (its fingerprint emptied, its serial kept): a
 * secondary whose key or address changed held another view's serial, and one whose key changed
 * back would otherwise be served its old view's serial, lower than what it holds (found in
 * review), and never transfer again.
 */
export class CatalogSerials implements CatalogSerialStore {
  private readonly rows = new Map<string, sql.CatalogSerialRow>();

  constructor(private readonly k: Kernel<DnsSettings>) {
    for (const row of sql.catalogSerials(k.store.db)) this.rows.set(row.view, row);
  }

  serialFor(view: string, fingerprint: string): number {
    const row = this.rows.get(view);
    if (row?.fingerprint === fingerprint) return row.serial;
    const next = { view, fingerprint, serial: nextCatalogSerial(this.highest(), this.k.clock.now()) };
    this.save(next);
    return next.serial;
  }

  retireAllBut(views: ReadonlySet<string>): void {
    for (const row of [...this.rows.values()]) if (!views.has(row.view) && row.fingerprint !== RETIRED) this.save({ ...row, fingerprint: RETIRED });
  }

  private save(row: sql.CatalogSerialRow): void {
    this.rows.set(row.view, row);
    void this.k.store.write((tx) => sql.saveCatalogSerial(tx, row)).catch((e) => this.k.log.error("dns: a catalog zone's serial could not be stored", { view: row.view, error: String(e) }));
  }

  /** The highest serial of every view stored (RFC 1982), or null when there is none. */
  private highest(): number | null {
    let high: number | null = null;
    for (const { serial } of this.rows.values()) if (high === null || serialLess(high, serial)) high = serial;
    return high;
  }
}

/** A member as listed: with its part of a fingerprint (catalogFingerprint), worked out once. */
interface Listed {
  member: CatalogMember;
  digest: bigint;
}

interface View {
  subscriber: CatalogSubscriber;
  /** Its members, by id. */
  members: Map<string, Listed>;
  /** Their digests' sum: the fingerprint, but for the catalog's name. */
  sum: bigint;
  zone: Zone;
}

/**
 * The catalog's views, one per subscriber, following the served zones and the secondaries
 * (update); asked on the answer path (viewFor), which never touches the store.
 *
 * A change of the zones runs on the event loop, so it costs what changed, not what is listed: a
 * view follows the members that came and went (its zone made from the one before by
 * Zone.withLeaves, its fingerprint by their digests), and is built whole only when it is new or
 * its secondaries' zones changed. Built whole for every change, 10,000 zones and 4 views took
 * about a second per zone made (found in review).
 */
export class Catalog {
  private views = new Map<string, View>();
  /** Every member listable (not at or below the catalog's name), by id, as last given. */
  private listed = new Map<string, Listed>();
  /** The authoritative listener serves it now (the API says so: without one, no secondary gets it). */
  served = false;

  constructor(
    readonly origin: Name,
    private readonly serials: CatalogSerialStore,
  ) {}

  /** Is the zone `name` at or below the catalog's name? */
  holds(name: Name): boolean {
    return isSubdomain(name, this.origin);
  }

  /**
   * Each subscriber's view of `members` (every zone served here). Returns what to announce:
   * every secondary of a view whose serial moved (or that is new), and a secondary new to a view
   * that did not move. Goes through every member: for a change of the secondaries (or the first).
   */
  update(members: Iterable<CatalogMember>, subscribers: readonly CatalogSubscriber[]): CatalogAnnouncement[] {
    return this.apply(this.relist(members), subscribers);
  }

  /**
   * The same views after the members `added` and `removed` (a zone made or deleted): what update
   * would do with the members listed before and these changes, at the cost of the changes alone.
   */
  change(added: readonly CatalogMember[], removed: readonly CatalogMember[]): CatalogAnnouncement[] {
    const gone: Listed[] = [];
    for (const member of removed) {
      const entry = this.listed.get(member.id);
      if (entry === undefined || entry.member.name !== member.name) continue;
      this.listed.delete(member.id);
      gone.push(entry);
    }
    const come: Listed[] = [];
    for (const member of added) {
      if (this.holds(member.origin)) continue; // as relist
      const before = this.listed.get(member.id);
      if (before !== undefined) gone.push(before); // listed under another name: another member
      const entry = { member, digest: memberDigest(member) };
      this.listed.set(member.id, entry);
      come.push(entry);
    }
    return this.apply({ added: come, removed: gone }, [...this.views.values()].map((v) => v.subscriber));
  }

  /** Each subscriber's view after the listed members that came and went. */
  private apply({ added, removed }: { added: Listed[]; removed: Listed[] }, subscribers: readonly CatalogSubscriber[]): CatalogAnnouncement[] {
    // The views that follow the change first: one built whole may take the zone of one alike.
    const decided = new Map<string, View>();
    for (const subscriber of subscribers) {
      const before = this.views.get(subscriber.view);
      if (before?.subscriber.selection === subscriber.selection) decided.set(subscriber.view, this.follow(before, subscriber, added, removed));
    }
    for (const subscriber of subscribers) if (!decided.has(subscriber.view)) decided.set(subscriber.view, this.build(subscriber, [...decided.values()]));
    const next = new Map<string, View>();
    const announcements: CatalogAnnouncement[] = [];
    for (const subscriber of subscribers) {
      const before = this.views.get(subscriber.view);
      const view = decided.get(subscriber.view)!;
      next.set(subscriber.view, view);
      const known = new Set(before?.zone.serial() === view.zone.serial() ? before.subscriber.targets.map(targetKey) : []);
      const targets = subscriber.targets.filter((t) => !known.has(targetKey(t)));
      if (targets.length > 0) announcements.push({ zone: view.zone, targets });
    }
    this.views = next;
    this.serials.retireAllBut(new Set(next.keys()));
    return announcements;
  }

  /** Takes `members` as the listed ones; returns those that came and those that went. */
  private relist(members: Iterable<CatalogMember>): { added: Listed[]; removed: Listed[] } {
    const listed = new Map<string, Listed>();
    const added: Listed[] = [];
    for (const member of members) {
      const before = this.listed.get(member.id);
      if (before !== undefined && before.member.name === member.name) {
        listed.set(member.id, before);
        continue;
      }
      // A zone at or below the catalog's name (refused at start: index.ts) is not listed: a
      // secondary would be told to serve a zone inside its own catalog, under the catalog's name.
      if (this.holds(member.origin) || listed.has(member.id)) continue;
      const entry = { member, digest: memberDigest(member) };
      listed.set(member.id, entry);
      added.push(entry);
    }
    const removed: Listed[] = [];
    for (const [id, entry] of this.listed) if (listed.get(id) !== entry) removed.push(entry);
    this.listed = listed;
    return { added, removed };
  }

  /** `before` after the members that came and went, for the same secondaries' zones. */
  private follow(before: View, subscriber: CatalogSubscriber, added: readonly Listed[], removed: readonly Listed[]): View {
    const gone = removed.filter((e) => before.members.get(e.member.id) === e);
    const come = added.filter((e) => subscriber.covers(e.member));
    if (gone.length === 0 && come.length === 0) return { ...before, subscriber };
    let sum = before.sum;
    for (const e of gone) sum -= e.digest;
    for (const e of come) sum += e.digest;
    sum = modDigest(sum);
    const serial = this.serials.serialFor(subscriber.view, fingerprintOf(this.origin, sum));
    const zone = before.zone.withLeaves(
      catalogSoa(this.origin, serial),
      come.map((e) => memberRecord(this.origin, e.member)),
      gone.map((e) => memberOwner(this.origin, e.member)),
    );
    // The view before is done with: its members are taken over, not copied (once its zone is made).
    const members = before.members;
    for (const e of gone) members.delete(e.member.id);
    for (const e of come) members.set(e.member.id, e);
    return { subscriber, members, sum, zone };
  }

  /**
   * The view of `subscriber` made whole: a new one, or its secondaries' zones changed. When one
   * of `others` (up to date) lists the same members — every secondary that serves every zone — its
   * zone is taken with this view's SOA, not built again.
   */
  private build(subscriber: CatalogSubscriber, others: readonly View[]): View {
    const members = new Map<string, Listed>();
    let sum = 0n;
    for (const [id, e] of this.listed) {
      if (!subscriber.covers(e.member)) continue;
      members.set(id, e);
      sum += e.digest;
    }
    sum = modDigest(sum);
    const serial = this.serials.serialFor(subscriber.view, fingerprintOf(this.origin, sum));
    const alike = others.find((v) => v.sum === sum && sameMembers(v.members, members));
    const zone = alike !== undefined ? alike.zone.withLeaves(catalogSoa(this.origin, serial), [], []) : buildCatalog(this.origin, serial, byName([...members.values()].map((e) => e.member)));
    return { subscriber, members, sum, zone };
  }

  serving(on: boolean): void {
    this.served = on;
  }

  /** Every view with all its secondaries: what a start announces once the listener is up. */
  all(): CatalogAnnouncement[] {
    return [...this.views.values()].map((v) => ({ zone: v.zone, targets: v.subscriber.targets }));
  }

  /** The catalog as the secondaries at `client` signing with `key` see it; null for anyone else (unsigned: `key` null). */
  viewFor(client: string, key: Name | null): Zone | null {
    const address = canonicalAddress(client);
    if (address === null || key === null) return null;
    return this.views.get(`${address} ${nameToText(lowerName(key))}`)?.zone ?? null;
  }

  summary(): CatalogViewSummary[] {
    return [...this.views.values()].map((v) => ({
      address: v.subscriber.address,
      tsig_key: v.subscriber.tsigKey,
      secondaries: v.subscriber.secondaries,
      serial: v.zone.serial(),
      zones: byName([...v.members.values()].map((e) => e.member)).map((m) => ({ id: m.id, name: m.name })),
    }));
  }
}

/** The same members, entry for entry (a fingerprint alone could be made to collide). */
function sameMembers(a: ReadonlyMap<string, Listed>, b: ReadonlyMap<string, Listed>): boolean {
  if (a.size !== b.size) return false;
  for (const [id, e] of a) if (b.get(id) !== e) return false;
  return true;
}

const byName = (members: CatalogMember[]) => members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
const targetKey = (t: NotifyTarget) => `${t.secondary} ${t.address} ${t.port} ${nameToText(t.keyName)}`;
