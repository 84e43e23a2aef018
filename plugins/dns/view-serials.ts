/**
 * A serial per view of a record provider's own zone (mesh.internal.: no hosted zone holds the
 * domain) whose names only some clients are told (split horizon: horizon.ts). The zone has one
 * real serial, which moves with every change of every name in it: a mesh network's client told
 * it would learn when, and how often, the names of every other network — of other organizations
 * — come and go. So a client that is not told every name is told, in every SOA of the zone (the
 * apex's, and the authority section of a negative answer), the serial of its view instead: one
 * that moves only when what that view is told changes. Loopback, `[mesh] dns_clients` and the
 * secondaries that may transfer the zone are told every name and keep the real serial, so that
 * NOTIFY, SOA refresh and IXFR work as before.
 *
 * Not for a hosted zone that holds a provider's domain (mesh.example.org. in example.org.): its
 * secondaries serve the mesh's names and the real serial to anyone, so a view's serial there
 * would hide nothing, and would break what compares the primary's serial with the secondaries'
 * (check_dns, `dig +nssearch`) and the zone's own serial convention (YYYYMMDDnn).
 *
 * The work is done once per change, when the zone is built (`prepare`), off the answer path: the
 * records are grouped by the name one label below the domain (a mesh network's
 * `<network>.<domain>`), each group hashed, and the records no provider restricts (the SOA's
 * serial left out) hashed once. A view (the provider's `viewOf`: its key and the domains it is
 * told) is fingerprinted from those hashes of the domains it is told — a few bytes, the same
 * work whichever view, whatever another tenant changed — and its serial moves when the
 * fingerprint does, and only then: to the time in seconds when that is ahead (RFC 1982), else by
 * one. A view first seen starts from the zone's floor, not from its real serial (whose steps
 * count every view's changes): the real serial when the zone first had views, stored once and
 * moved by no change, taken to the clock (nextViewSerial). Each serial is kept in the store with
 * its fingerprint, so a restart serves the same serial for the same names; memory is the truth
 * while running, each move written behind it from a timer (the moves of the second before a crash
 * are lost: a serial a burst had run ahead of the clock can come back lower once, docs/mesh.md), and the serials
 * of views no client has any more (a network removed, or left without nodes) dropped when the
 * zone is built.
 */
import { lowerName, nameEquals, nameToText, type Name } from "./names.ts";
import { signaturesOf } from "./dnssec.ts";
import { RRType } from "./rdata.ts";
import type { Horizon, ZoneViews } from "./horizon.ts";
import type { ProviderView } from "../../src/record-providers.ts";
import type { Answer, RR, Zone } from "./zone.ts";

/** A view's serial as stored: the zone (canonical text), the view's key, the fingerprint it was given for. */
export interface ViewSerialRow {
  zone: string;
  view: string;
  fingerprint: string;
  serial: number;
}

/** A zone's floor as stored: the serial new views start from (nextViewSerial), set once. */
export interface ViewFloorRow {
  zone: string;
  serial: number;
}

/** What `persist` is handed: the rows moved and dropped since the last time, and floors set. */
export interface ViewSerialChanges {
  saved: ViewSerialRow[];
  dropped: Array<{ zone: string; view: string }>;
  floors: ViewFloorRow[];
}

/** What the answer path asks (server.ts, resolver.ts). */
export interface ViewSerialSource {
  /**
   * The serial `client` (asking with the verified TSIG key `key`, or null) is told for `zone`:
   * undefined when everyone is told the zone's own (it has no views); `view` null when this
   * client is (it is told every name); else its view's key and that view's serial.
   */
  serialFor(zone: Zone, client: string, key: Name | null): { view: string | null; serial: number } | undefined;
  /** The key of the view an unsigned `client` has of `zone`, as serialFor would find it (the answer cache compares it). */
  viewOf(client: string, zone: Zone): string | null | undefined;
}

const TWO_31 = 2 ** 31;
const TWO_32 = 2 ** 32;
/** Clients whose view is remembered per zone as built; past it the memory starts again (a flood of source addresses costs lookups, not memory). */
const MAX_REMEMBERED_CLIENTS = 10_000;

/** RFC 1982 section 3.2: is serial `a` before `b`? */
function serialLess(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < TWO_31) || (a > b && a - b > TWO_31));
}

/** A view's serial after `previous`: the time in seconds when it is ahead, else one more (mod 2^32). */
export function nextViewSerial(previous: number, nowMs: number): number {
  const clock = Math.floor(nowMs / 1000) % TWO_32;
  return serialLess(previous, clock) ? clock : (previous + 1) % TWO_32;
}

/** One zone as built, with what its views are told (for the providers as of `generation`). */
interface Prepared {
  origin: string;
  views: ZoneViews;
  generation: number;
  /** SHA-256 of the records no provider restricts (the SOA's serial zeroed). */
  common: string;
  /** The domain one label below the apex (text) → SHA-256 of the restricted records at or below it. */
  groups: Map<string, string>;
  /** An unsigned client → its view, once asked for this zone. */
  clients: Map<string, ProviderView | null>;
  /** View key → serial, once worked out for this zone. */
  serials: Map<string, number>;
}

export class ViewSerials implements ViewSerialSource {
  /** `${zone}\n${view}` → row. */
  private readonly rows = new Map<string, ViewSerialRow>();
  private readonly floors = new Map<string, number>();
  /** Each zone as built → what its views are told; null: it has none. */
  private readonly zones = new WeakMap<Zone, Prepared | null>();
  private pending: ViewSerialChanges = { saved: [], dropped: [], floors: [] };
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly o: {
      horizon: Horizon;
      rows: readonly ViewSerialRow[];
      floors: readonly ViewFloorRow[];
      /** Writes the changes behind memory, from a timer (its failure is the caller's to log). */
      persist: (changes: ViewSerialChanges) => Promise<void> | void;
      /** Milliseconds since the epoch. */
      now: () => number;
      /** How long a change waits to be written with the next ones. Default 1000. */
      flushMs?: number;
    },
  ) {
    for (const row of o.rows) this.rows.set(`${row.zone}\n${row.view}`, row);
    for (const row of o.floors) this.floors.set(row.zone, row.serial);
  }

  /**
   * The zone was built (ZoneTable.set): what its views are told is worked out now, once, and the
   * serials of views no client has any more are dropped.
   */
  prepare(zone: Zone): void {
    // A signed zone holds no provider's names (dnssec-service.ts), and its SOA is signed.
    const views = signaturesOf(zone) === undefined ? this.o.horizon.views?.(zone.origin) : undefined;
    if (views === undefined) {
      this.zones.set(zone, null);
      return;
    }
    const origin = nameToText(lowerName(zone.origin));
    const common = new Bun.CryptoHasher("sha256");
    const lines = new Map<string, string[]>();
    for (const rr of zone.records()) {
      // The apex's records (SOA, NS) are told to every client of the zone.
      if (rr.name.length === zone.origin.length || !this.o.horizon.restricts(rr.name)) {
        common.update(lineOf(rr)).update("\n");
        continue;
      }
      const group = nameToText(lowerName(rr.name.slice(Math.max(0, rr.name.length - zone.origin.length - 1))));
      let list = lines.get(group);
      if (list === undefined) lines.set(group, (list = []));
      list.push(lineOf(rr));
    }
    const groups = new Map<string, string>();
    for (const [group, list] of lines) groups.set(group, new Bun.CryptoHasher("sha256").update(list.sort().join("\n")).digest("hex"));
    this.zones.set(zone, { origin, views, generation: this.o.horizon.generation, common: common.digest("hex"), groups, clients: new Map(), serials: new Map() });
    if (!this.floors.has(origin)) {
      this.floors.set(origin, zone.serial());
      this.queue((p) => p.floors.push({ zone: origin, serial: zone.serial() }));
    }
    const live = views.live();
    if (live === null) return;
    for (const [id, row] of this.rows) {
      if (row.zone !== origin || live.has(row.view)) continue;
      this.rows.delete(id);
      this.queue((p) => p.dropped.push({ zone: row.zone, view: row.view }));
    }
  }

  viewOf(client: string, zone: Zone): string | null | undefined {
    const prepared = this.prepared(zone);
    if (prepared === null) return undefined;
    return this.viewIn(prepared, client, null)?.key ?? null;
  }

  serialFor(zone: Zone, client: string, key: Name | null): { view: string | null; serial: number } | undefined {
    const prepared = this.prepared(zone);
    if (prepared === null) return undefined;
    const view = this.viewIn(prepared, client, key);
    if (view === null) return { view, serial: zone.serial() };
    let serial = prepared.serials.get(view.key);
    if (serial === undefined) {
      serial = this.serialOf(prepared, view.key, this.fingerprintOf(prepared, view));
      prepared.serials.set(view.key, serial);
    }
    return { view: view.key, serial };
  }

  /** Writes what changed now (at a stop; the timer does it otherwise). */
  flush(): Promise<void> | void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const changes = this.pending;
    if (changes.saved.length + changes.dropped.length + changes.floors.length === 0) return;
    this.pending = { saved: [], dropped: [], floors: [] };
    return this.o.persist(changes);
  }

  /** What `zone` was prepared to; a zone set before this started (or not through the table) is prepared now. */
  private prepared(zone: Zone): Prepared | null {
    let prepared = this.zones.get(zone);
    if (prepared === undefined) {
      this.prepare(zone);
      prepared = this.zones.get(zone)!;
    }
    if (prepared !== null && prepared.generation !== this.o.horizon.generation) {
      // The providers changed (views and who has them may have): asked again, not remembered.
      const views = this.o.horizon.views?.(zone.origin);
      if (views === undefined) return null;
      prepared.views = views;
      prepared.generation = this.o.horizon.generation;
      prepared.clients.clear();
      prepared.serials.clear();
    }
    return prepared;
  }

  private viewIn(prepared: Prepared, client: string, key: Name | null): ProviderView | null {
    if (key !== null) return prepared.views.of(client, key);
    let view = prepared.clients.get(client);
    if (view === undefined) {
      view = prepared.views.of(client, null);
      if (prepared.clients.size >= MAX_REMEMBERED_CLIENTS) prepared.clients.clear();
      prepared.clients.set(client, view);
    }
    return view;
  }

  /** The view's fingerprint: the common records' hash and those of the domains it is told, nothing of any other. */
  private fingerprintOf(prepared: Prepared, view: ProviderView): string {
    const hasher = new Bun.CryptoHasher("sha256").update(prepared.common);
    for (const domain of [...view.domains].sort()) hasher.update(`\n${domain} ${prepared.groups.get(domain) ?? "-"}`);
    return hasher.digest("hex");
  }

  /** The view's serial for `fingerprint`: as stored when it is the one stored, else moved (and stored). */
  private serialOf(prepared: Prepared, view: string, fingerprint: string): number {
    const id = `${prepared.origin}\n${view}`;
    const row = this.rows.get(id);
    if (row?.fingerprint === fingerprint) return row.serial;
    const from = row?.serial ?? this.floors.get(prepared.origin)!;
    const next: ViewSerialRow = { zone: prepared.origin, view, fingerprint, serial: nextViewSerial(from, this.o.now()) };
    this.rows.set(id, next);
    this.queue((p) => p.saved.push(next));
    return next.serial;
  }

  private queue(change: (pending: ViewSerialChanges) => void): void {
    change(this.pending);
    if (this.timer !== null) return;
    this.timer = setTimeout(() => void this.flush(), this.o.flushMs ?? 1000);
    (this.timer as { unref?: () => void }).unref?.();
  }
}

/** A record as text for a fingerprint; an SOA without its serial (the zone's own moves with every view). */
function lineOf(rr: RR): string {
  let rdata = rr.rdata;
  if (rr.type === RRType.SOA) {
    rdata = rdata.slice();
    rdata.fill(0, rdata.length - 20, rdata.length - 16);
  }
  return `${nameToText(lowerName(rr.name))} ${rr.type} ${rr.ttl} ${Buffer.from(rdata).toString("hex")}`;
}

/** `rr` (an SOA) with `serial` in place of its own. */
export function soaWithSerial(rr: RR, serial: number): RR {
  const rdata = rr.rdata.slice();
  new DataView(rdata.buffer, rdata.byteOffset).setUint32(rdata.length - 20, serial);
  return { ...rr, rdata };
}

/**
 * `answer` with the serial of the client's view in the zone's SOA (the apex's, or a negative
 * answer's in authority): the zone's own serial moves with names the client is not told
 * (view-serials.ts). Before any TSIG signature, which then covers it. Notes the view in `out`.
 */
export function inView(answer: Answer, zone: Zone, client: string, key: Name | null, serials: ViewSerialSource, out?: { view: string | null | undefined }): Answer {
  const isSoa = (rr: RR) => rr.type === RRType.SOA && nameEquals(rr.name, zone.origin);
  if (!answer.answer.some(isSoa) && !answer.authority.some(isSoa)) return answer;
  const found = serials.serialFor(zone, client, key);
  if (found === undefined) return answer;
  if (out) out.view = found.view;
  if (found.serial === zone.serial()) return answer;
  const told = (rr: RR) => (isSoa(rr) ? soaWithSerial(rr, found.serial) : rr);
  return { ...answer, answer: answer.answer.map(told), authority: answer.authority.map(told) };
}
