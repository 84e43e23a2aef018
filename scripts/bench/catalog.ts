/**
 * Catalog zone benchmark (plugins/dns/catalog.ts), in process: what a change of the zones costs
 * the event loop — Catalog.change, which runs on it for every zone made or deleted — with many
 * zones and several secondaries' views that list every zone (the worst case: each view moves),
 * and Catalog.update, which goes through every member when the secondaries change. The members
 * are made before the clock starts: only the catalog's own work is timed.
 *
 * Usage: bun scripts/bench/catalog.ts [--zones 1000,10000,50000] [--views 1,4] [--burst 200]
 */
import { parseArgs } from "node:util";
import { Catalog, memberIdOfZone, type CatalogMember, type CatalogSubscriber } from "../../plugins/dns/catalog.ts";
import { parseName } from "../../plugins/dns/names.ts";

const { values } = parseArgs({ options: { zones: { type: "string", default: "1000,10000,50000" }, views: { type: "string", default: "1,4" }, burst: { type: "string", default: "200" } } });
const zoneCounts = values.zones.split(",").map(Number);
const viewCounts = values.views.split(",").map(Number);
const burst = Number(values.burst);
const origin = parseName("catalog.citadel.invalid.", null);

function members(from: number, to: number): CatalogMember[] {
  return Array.from({ length: to - from }, (_, i) => {
    const name = `zone-${from + i}.example.`;
    return { name, origin: parseName(name, null), id: memberIdOfZone(`dnsz_${String(from + i).padStart(14, "0")}`), providerOwned: false };
  });
}

/** Serials in memory, as CatalogSerials keeps them without its store. */
function serials() {
  const rows = new Map<string, { fingerprint: string; serial: number }>();
  let next = 1;
  return {
    serialFor(view: string, fingerprint: string) {
      const row = rows.get(view);
      if (row?.fingerprint === fingerprint) return row.serial;
      rows.set(view, { fingerprint, serial: ++next });
      return next;
    },
    retireAllBut() {},
  };
}

const subscriber = (i: number): CatalogSubscriber => ({ view: `192.0.2.${i} k.`, address: `192.0.2.${i}`, tsigKey: "k.", secondaries: [`ns${i}`], covers: () => true, targets: [], selection: "*" });

function time(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const ms = (t: number) => (t < 10 ? t.toFixed(2) : t.toFixed(0));
console.log("zones  views  first build  one made  one deleted  burst of zones made: mean / max  secondaries changed, same zones (ms)");
for (const n of zoneCounts) {
  const all = members(0, n + burst + 1);
  for (const v of viewCounts) {
    const subs = Array.from({ length: v }, (_, i) => subscriber(i + 1));
    const catalog = new Catalog(origin, serials());
    const first = time(() => catalog.update(all.slice(0, n), subs));
    // A zone made, then one deleted: what each runs on the event loop (index.ts hands on the change).
    const made = time(() => catalog.change([all[n]!], []));
    const deleted = time(() => catalog.change([], [all[0]!]));
    const changes: number[] = [];
    for (let i = 1; i <= burst; i++) changes.push(time(() => catalog.change([all[n + i]!], [])));
    const mean = changes.reduce((a, b) => a + b, 0) / changes.length;
    // The secondaries changed (one added, then the same again): every member gone through.
    const same = all.slice(1, n + burst + 1);
    const resync = time(() => catalog.update(same, subs));
    console.log(`${String(n).padStart(5)}  ${String(v).padStart(5)}  ${ms(first).padStart(11)}  ${ms(made).padStart(8)}  ${ms(deleted).padStart(11)}  ${`${ms(mean)} / ${ms(Math.max(...changes))}`.padStart(31)}  ${ms(resync).padStart(8)}`);
  }
}
