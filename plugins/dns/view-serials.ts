/**
 * A serial per view of a zone that holds names only some clients are told (split horizon:
 * horizon.ts). The zone has one real serial, which moves with every change of every name in it:
 * a mesh network's client told it would learn when, and how often, the names of every other
 * network — of other organizations — come and go. So a client that is not told every name is
 * told, in every SOA of the zone (the apex's, and the authority section of a negative answer),
 * the serial of its view instead: one that moves only when what that view is told changes.
 * Loopback, `[mesh] dns_clients` and the secondaries that may transfer the zone are told every
 * name and keep the real serial, so that NOTIFY, SOA refresh and IXFR work as before.
 *
 * A view (the provider's `viewOf`: the mesh's is the networks a client is told) is seen through
 * a fingerprint of the records it is told, its SOA's serial left out; the serial moves when the
 * fingerprint does, and only then: to the time in seconds when that is ahead (RFC 1982), else by
 * one. Nothing of another view goes into it — not the real serial either, whose steps count every
 * view's changes. A view first seen starts at the zone's real serial then (its clients were told
 * that one until now, and must not see the serial go back). Each serial is kept in the store
 * with its fingerprint, so a restart serves the same serial for the same names and never a lower
 * one; memory is the truth while running, each move written behind it.
 *
 * Worked out when a view's client first asks after a change (not for every view at every change:
 * most views are not asked meanwhile), from the zone as served: the records no provider
 * restricts once per zone, then those the client is told.
 */
import { lowerName, nameEquals, nameToText, type Name } from "./names.ts";
import { signaturesOf } from "./dnssec.ts";
import { RRType } from "./rdata.ts";
import type { Horizon } from "./horizon.ts";
import type { Answer, RR, Zone } from "./zone.ts";

/** A view's serial as stored: the zone (canonical text), the view's key, the fingerprint it was given for. */
export interface ViewSerialRow {
  zone: string;
  view: string;
  fingerprint: string;
  serial: number;
}

/** What the answer path asks (server.ts, resolver.ts). */
export interface ViewSerialSource {
  /**
   * The serial `client` (asking with the verified TSIG key `key`, or null) is told for `zone`:
   * undefined when everyone is told the zone's own (no restricted name lies in it); `view` null
   * when this client is (it is told every name); else its view and that view's serial.
   */
  serialFor(zone: Zone, client: string, key: Name | null): { view: string | null; serial: number } | undefined;
  /** The view `client` has of the zone at `origin`, as serialFor would find it (the answer cache compares it). */
  viewOf(client: string, origin: Name): string | null | undefined;
}

const TWO_31 = 2 ** 31;
const TWO_32 = 2 ** 32;

/** RFC 1982 section 3.2: is serial `a` before `b`? */
function serialLess(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < TWO_31) || (a > b && a - b > TWO_31));
}

/** A view's serial after `previous`: the time in seconds when it is ahead, else one more (mod 2^32). */
export function nextViewSerial(previous: number, nowMs: number): number {
  const clock = Math.floor(nowMs / 1000) % TWO_32;
  return serialLess(previous, clock) ? clock : (previous + 1) % TWO_32;
}

/** One zone as served, with what its views were found to be (for the providers as of `generation`). */
interface ZoneViews {
  generation: number;
  /** The lines of the records no provider restricts (the SOA's serial zeroed), sorted and joined. */
  common: string;
  /** The records some clients are not told. */
  restricted: RR[];
  /** View key → serial, once worked out for this zone. */
  serials: Map<string, number>;
}

export class ViewSerials implements ViewSerialSource {
  /** `${zone}\n${view}` → row. */
  private readonly rows = new Map<string, ViewSerialRow>();
  private readonly zones = new WeakMap<Zone, ZoneViews>();

  constructor(
    private readonly o: {
      horizon: Horizon;
      rows: readonly ViewSerialRow[];
      /** Writes a moved serial behind memory (its failure is the caller's to log). */
      save: (row: ViewSerialRow) => void;
      /** Milliseconds since the epoch. */
      now: () => number;
    },
  ) {
    for (const row of o.rows) this.rows.set(`${row.zone}\n${row.view}`, row);
  }

  viewOf(client: string, origin: Name): string | null | undefined {
    return this.o.horizon.viewOf?.(client, origin, null);
  }

  serialFor(zone: Zone, client: string, key: Name | null): { view: string | null; serial: number } | undefined {
    const horizon = this.o.horizon;
    // A signed zone holds no provider's names (dnssec-service.ts), and its SOA is signed.
    if (signaturesOf(zone) !== undefined) return undefined;
    const view = horizon.viewOf?.(client, zone.origin, key);
    if (view === undefined) return undefined;
    if (view === null) return { view, serial: zone.serial() };
    let views = this.zones.get(zone);
    if (views === undefined || views.generation !== horizon.generation) {
      views = viewsOf(zone, horizon);
      this.zones.set(zone, views);
    }
    let serial = views.serials.get(view);
    if (serial === undefined) {
      serial = this.serialOf(zone, view, fingerprintOf(views, (rr) => !horizon.hides(client, rr.name, key)));
      views.serials.set(view, serial);
    }
    return { view, serial };
  }

  /** The view's serial for `fingerprint`: as stored when it is the one stored, else moved (and stored). */
  private serialOf(zone: Zone, view: string, fingerprint: string): number {
    const origin = nameToText(lowerName(zone.origin));
    const id = `${origin}\n${view}`;
    const row = this.rows.get(id);
    if (row?.fingerprint === fingerprint) return row.serial;
    const next: ViewSerialRow = { zone: origin, view, fingerprint, serial: row === undefined ? zone.serial() : nextViewSerial(row.serial, this.o.now()) };
    this.rows.set(id, next);
    this.o.save(next);
    return next.serial;
  }
}

function viewsOf(zone: Zone, horizon: Horizon): ZoneViews {
  const common: string[] = [];
  const restricted: RR[] = [];
  for (const rr of zone.records()) {
    if (horizon.restricts(rr.name)) restricted.push(rr);
    else common.push(lineOf(rr));
  }
  return { generation: horizon.generation, common: common.sort().join("\n"), restricted, serials: new Map() };
}

/** SHA-256 of the records the view is told: those no provider restricts, and the restricted ones `told`. */
function fingerprintOf(views: ZoneViews, told: (rr: RR) => boolean): string {
  const lines = views.restricted.filter(told).map(lineOf).sort();
  return new Bun.CryptoHasher("sha256").update(views.common).update("\n--\n").update(lines.join("\n")).digest("hex");
}

/** A record as text for the fingerprint; an SOA without its serial (the zone's own moves with every view). */
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
