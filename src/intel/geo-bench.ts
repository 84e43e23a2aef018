/**
 * How fast GeoIntel.lookup answers, on this machine, one core: `uncached` looks up `n`
 * distinct addresses (every one a miss of the address cache, as a flood of new clients is),
 * `cached` the same 1000 addresses over and over (returning clients). Addresses are 80% IPv4,
 * 20% IPv6, from a fixed seed so runs compare.
 */
import { silentLogger } from "../log.ts";
import { GeoIntel, type GeoOptions } from "./geo.ts";

export interface GeoBenchmark {
  uncachedPerSecond: number;
  cachedPerSecond: number;
}

export async function benchmarkGeo(n = 1_000_000, databases: Pick<GeoOptions, "city" | "asn" | "anonymous"> = {}): Promise<GeoBenchmark> {
  const addresses = randomAddresses(n);
  const geo = await GeoIntel.open({ ...databases, pollMs: 0, log: silentLogger });
  try {
    const uncachedPerSecond = rate(geo, addresses);
    const few = addresses.slice(0, 1000);
    const repeated = Array.from({ length: n }, (_, i) => few[i % few.length]!);
    rate(geo, few); // warm the cache
    const cachedPerSecond = rate(geo, repeated);
    return { uncachedPerSecond, cachedPerSecond };
  } finally {
    geo.close();
  }
}

function rate(geo: GeoIntel, addresses: string[]): number {
  let found = 0;
  const started = performance.now();
  for (const address of addresses) if (geo.lookup(address).country !== null) found++;
  const seconds = (performance.now() - started) / 1000;
  if (found < 0) throw new Error("unreachable"); // keeps the loop's result alive
  return Math.round(addresses.length / seconds);
}

function randomAddresses(n: number): string[] {
  let seed = 0x2545f491;
  const next = () => {
    // xorshift32: cheap, and the same sequence every run
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = next();
    if (i % 5 === 4) out.push(`2${(r & 0xfff).toString(16).padStart(3, "0")}:${(r >>> 12).toString(16)}:${(next() & 0xffff).toString(16)}::${(next() & 0xffff).toString(16)}`);
    else out.push(`${1 + (r % 223)}.${(r >>> 8) & 0xff}.${(r >>> 16) & 0xff}.${r >>> 24}`);
  }
  return out;
}
