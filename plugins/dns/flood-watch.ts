/**
 * Random-subdomain ("water torture") floods against one zone: the attack asks a zone for names
 * that do not exist, from many resolvers at once, so no single client looks busy. This watch
 * counts NXDOMAIN answers per zone over the last minute; while a zone is past the threshold,
 * each NXDOMAIN for it counts as a `dns_random_subdomain` signal (weighted well above a plain
 * NXDOMAIN) for the client that asked, so the shield throttles the sources of the flood.
 */
import type { Name } from "./names.ts";

interface Window {
  minute: number;
  current: number;
  previous: number;
}

export class FloodWatch {
  /** By the served zone's origin object: a reload starts the count afresh, which is fine. */
  private readonly zones = new WeakMap<Name, Window>();

  constructor(private readonly options: { perMinute: number; now: () => number }) {}

  /** Counts one NXDOMAIN for `zone`; true when the zone is under a flood now. */
  nxdomain(zone: Name): boolean {
    if (this.options.perMinute <= 0) return false;
    const minute = Math.floor(this.options.now() / 60_000);
    let w = this.zones.get(zone);
    if (w === undefined) this.zones.set(zone, (w = { minute, current: 0, previous: 0 }));
    if (w.minute !== minute) {
      w.previous = w.minute === minute - 1 ? w.current : 0;
      w.current = 0;
      w.minute = minute;
    }
    w.current++;
    // The last 60 s, the previous minute weighted by how much of it is still inside the window.
    const into = (this.options.now() % 60_000) / 60_000;
    return w.current + w.previous * (1 - into) >= this.options.perMinute;
  }
}
