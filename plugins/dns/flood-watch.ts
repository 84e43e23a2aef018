/**
 * Random-subdomain ("water torture") floods against one zone: the attack asks a zone for names
 * that do not exist, from many resolvers at once, so no single client looks busy. This watch
 * counts NXDOMAIN answers per zone over the last minute; while a zone is past the threshold,
 * each NXDOMAIN for it counts as a `dns_random_subdomain` signal (weighted well above a plain
 * NXDOMAIN) for the client that asked, so the shield throttles the sources of the flood.
 */
import { nameToText, type Name } from "./names.ts";

interface Window {
  /** The zone's origin, lower-cased text: what a reload of the zones keeps. */
  origin: string;
  minute: number;
  current: number;
  previous: number;
}

export class FloodWatch {
  /**
   * By origin text. Every change of any zone (any organization) or of the mesh reloads all
   * zones with new objects: counted by object, a flood's window started afresh each time, so
   * an admin saving records kept another zone's flood below the threshold (found in review).
   * Windows idle for two minutes count nothing and are dropped, those of deleted zones with them.
   */
  private readonly windows = new Map<string, Window>();
  /** The window of each origin object, so that a query costs one lookup and no text. */
  private readonly byOrigin = new WeakMap<Name, Window>();
  private prunedMinute = -1;

  constructor(private readonly options: { perMinute: number; now: () => number }) {}

  /** Counts one NXDOMAIN for `zone`; true when the zone is under a flood now. */
  nxdomain(zone: Name): boolean {
    if (this.options.perMinute <= 0) return false;
    const minute = Math.floor(this.options.now() / 60_000);
    if (minute !== this.prunedMinute) this.prune(minute);
    const w = this.byOrigin.get(zone) ?? this.windowOf(zone, minute);
    if (w.minute !== minute) {
      w.previous = w.minute === minute - 1 ? w.current : 0;
      w.current = 0;
      w.minute = minute;
      this.windows.set(w.origin, w); // it may have been pruned while idle
    }
    w.current++;
    // The last 60 s, the previous minute weighted by how much of it is still inside the window.
    const into = (this.options.now() % 60_000) / 60_000;
    return w.current + w.previous * (1 - into) >= this.options.perMinute;
  }

  /** How many zones have a window (for tests: it must stay bounded). */
  get size(): number {
    return this.windows.size;
  }

  /** The window for an origin object not seen before: the zone's own when it was reloaded. */
  private windowOf(zone: Name, minute: number): Window {
    const origin = nameToText(zone).toLowerCase();
    let w = this.windows.get(origin);
    if (w === undefined) this.windows.set(origin, (w = { origin, minute, current: 0, previous: 0 }));
    this.byOrigin.set(zone, w);
    return w;
  }

  /** Drops the windows with nothing in this minute or the last (once a minute). */
  private prune(minute: number): void {
    this.prunedMinute = minute;
    for (const [origin, w] of this.windows) if (w.minute < minute - 1) this.windows.delete(origin);
  }
}
