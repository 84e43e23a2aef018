/**
 * IP intelligence benchmark: in-process lookups, one core, no server.
 *
 * Cases run in order and each prints its own block of results:
 *
 * - cidr-set/ipv4: CidrSet built from 1,000,000 random IPv4 CIDRs (70 % hosts, 25 % /24–/31,
 *   5 % /16–/23); build time and memory; lookups per second on a mix of addresses inside
 *   entries and uniformly random ones. References in the same run: a JS Set of 1,000,000
 *   host addresses (a hash lookup, which cannot do prefixes) and a linear scan with
 *   cidrContains over 1,000 CIDRs (scaled to what it would be for 1,000,000).
 * - cidr-set/ipv6: the same with 1,000,000 random IPv6 CIDRs in 2000::/3 (/32–/128, mostly
 *   /48 and /64), against a linear scan over 1,000.
 * - lists/parse: parseList over a 1,000,000-line plain list (time, and the heap its Cidr objects
 *   hold until the set is built), then CidrSet.build on the result.
 *
 * More cases (geo, whole-shield verdicts) are appended to CASES below. Inputs come from a
 * seeded generator, so runs are comparable. Takes well under a minute.
 *
 * Usage: bun scripts/bench/intel.ts [--only <substring of a case name>] [--seconds 1]
 */
import { parseArgs } from "node:util";
import { CidrSet } from "../../src/intel/cidr-set.ts";
import { benchmarkGeo } from "../../src/intel/geo-bench.ts";
import { GeoIntel } from "../../src/intel/geo.ts";
import { parseList } from "../../src/intel/lists.ts";
import { DEFAULT_POLICY } from "../../src/intel/policy.ts";
import { Shield } from "../../src/intel/shield.ts";
import { silentLogger } from "../../src/log.ts";
import { cidrContains, formatCidr, formatIp, type Cidr, type IpAddress } from "../../src/net/ip.ts";

interface BenchCase {
  name: string;
  run(): Array<[label: string, value: string]> | Promise<Array<[label: string, value: string]>>;
}

const { values } = parseArgs({ options: { only: { type: "string" }, seconds: { type: "string", default: "1" } } });
const SECONDS = Number(values.seconds);
const ENTRIES = 1_000_000;
const REFERENCE_ENTRIES = 1_000;
const PROBES = 1 << 20;

const CASES: BenchCase[] = [
  {
    name: "cidr-set/ipv4",
    async run() {
      const random = seeded(4);
      const cidrs = Array.from({ length: ENTRIES }, () => randomV4Cidr(random));
      const probes = mixedProbes(cidrs, random, () => v4(random() * 2 ** 32));
      const { set, buildMs, heapBytes } = await measuredBuild(cidrs);
      const hostSet = await measured(() => new Set(cidrs.map((c) => word(c.bytes))));
      const hostKeys = Uint32Array.from(probes, (p) => word(p.bytes));
      const naive = cidrs.slice(0, REFERENCE_ENTRIES);
      const naiveRate = rate((i) => naive.some((c) => cidrContains(c, probes[i & (PROBES - 1)]!)));
      return [
        ...describeSet(set, buildMs, heapBytes),
        ...lookupRows(set, probes),
        ["reference: JS Set of 1M host addresses", `${perSecond(rate((i) => hostSet.value.has(hostKeys[i & (PROBES - 1)]!)))} (hosts only; heap +${mib(hostSet.heapBytes)})`],
        [`reference: linear scan, ${REFERENCE_ENTRIES} CIDRs`, `${perSecond(naiveRate)} (≈ ${perSecond(naiveRate / (ENTRIES / REFERENCE_ENTRIES))} scaled to 1M)`],
      ];
    },
  },
  {
    name: "cidr-set/ipv6",
    async run() {
      const random = seeded(6);
      const cidrs = Array.from({ length: ENTRIES }, () => randomV6Cidr(random));
      const probes = mixedProbes(cidrs, random, () => v6Random(random));
      const { set, buildMs, heapBytes } = await measuredBuild(cidrs);
      const naive = cidrs.slice(0, REFERENCE_ENTRIES);
      const naiveRate = rate((i) => naive.some((c) => cidrContains(c, probes[i & (PROBES - 1)]!)));
      return [
        ...describeSet(set, buildMs, heapBytes),
        ...lookupRows(set, probes),
        [`reference: linear scan, ${REFERENCE_ENTRIES} CIDRs`, `${perSecond(naiveRate)} (≈ ${perSecond(naiveRate / (ENTRIES / REFERENCE_ENTRIES))} scaled to 1M)`],
      ];
    },
  },
  {
    name: "lists/parse",
    async run() {
      const random = seeded(7);
      const lines = Array.from({ length: ENTRIES }, (_, i) => formatCidr(i % 10 === 0 ? randomV6Cidr(random) : randomV4Cidr(random)));
      const text = `# generated list\n${lines.join("\n")}\n`;
      const { value: parsed, ms: parseMs, heapBytes } = await measured(() => parseList(text));
      const { value: set, ms: buildMs } = await measured(() => CidrSet.build(parsed.cidrs));
      if (parsed.errorCount !== 0 || parsed.cidrs.length !== ENTRIES) throw new Error(`parse: ${parsed.errorCount} errors, ${parsed.cidrs.length} entries`);
      return [
        ["text", `${lines.length.toLocaleString("en")} lines (90 % IPv4), ${mib(text.length)}`],
        ["parseList", `${ms(parseMs)} (${perSecond((ENTRIES * 1000) / parseMs)} lines); its Cidr objects hold ${mib(heapBytes)} until built`],
        ["CidrSet.build of the result", `${ms(buildMs)} → ${set.ranges.toLocaleString("en")} ranges`],
      ];
    },
  },
  {
    name: "geo/embedded",
    async run() {
      const r = await benchmarkGeo(PROBES);
      return [
        ["uncached lookups (1M random addresses)", `${perSecond(r.uncachedPerSecond)} (target ≥ 200,000/s)`],
        ["cached lookups (1,000 addresses repeated)", `${perSecond(r.cachedPerSecond)} (target ≥ 1,000,000/s)`],
      ];
    },
  },
  {
    name: "shield/verdicts",
    async run() {
      // The whole verdict the HTTP guard and the DNS gate ask for: geo, a 1M-CIDR list,
      // behaviour counters and the score; fresh (every address new) and from the verdict cache.
      const random = seeded(11);
      const cidrs = Array.from({ length: ENTRIES }, () => randomV4Cidr(random));
      const set = CidrSet.build(cidrs);
      const geo = await GeoIntel.open({ pollMs: 0, log: silentLogger });
      const shield = new Shield({ geo, lists: () => [{ name: "big", weight: 10, contains: (ip) => set.contains(ip) }], policy: () => DEFAULT_POLICY, now: Date.now, trustLoopback: false });
      const addresses = Array.from({ length: 200_000 }, () => formatIp(v4(Math.floor(random() * 2 ** 32))));
      try {
        let t = performance.now();
        for (const a of addresses) shield.assess(a, { dryRun: true });
        const uncached = (addresses.length * 1000) / (performance.now() - t);
        const few = addresses.slice(0, 1000);
        for (const a of few) shield.decide(a);
        const rounds = 1000;
        t = performance.now();
        for (let r = 0; r < rounds; r++) for (const a of few) shield.decide(a);
        const cached = (rounds * few.length * 1000) / (performance.now() - t);
        return [
          ["fresh verdicts (assess: geo + 1M-CIDR list + behaviour + score)", `${perSecond(uncached)} (target ≥ 200,000/s)`],
          ["cached verdicts (decide, 1,000 addresses repeated)", `${perSecond(cached)} (target ≥ 1,000,000/s)`],
        ];
      } finally {
        geo.close();
      }
    },
  },
];

console.log(`IP intelligence benchmark — Bun ${Bun.version}, ${SECONDS} s per lookup measurement\n`);
for (const benchCase of CASES) {
  if (values.only && !benchCase.name.includes(values.only)) continue;
  const started = performance.now();
  const rows = await benchCase.run();
  console.log(`${benchCase.name} (${ms(performance.now() - started)})`);
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) console.log(`  ${label.padEnd(width)}  ${value}`);
  console.log();
  Bun.gc(true);
}

// ---- measuring ----

async function measuredBuild(cidrs: Cidr[]) {
  CidrSet.build(cidrs.slice(0, 10_000)); // JIT warm-up, so the build time is not compile time
  const { value: set, heapBytes, ms: buildMs } = await measured(() => CidrSet.build(cidrs));
  return { set, buildMs, heapBytes };
}

/**
 * Runs `make` once; its time and the heap it leaves behind (typed array storage included).
 * JSC scans the stack conservatively, so the collection waits for a fresh turn of the event
 * loop, where no stale stack slot still points at the build's temporaries.
 */
async function measured<T>(make: () => T): Promise<{ value: T; heapBytes: number; ms: number }> {
  await Bun.sleep(0);
  Bun.gc(true);
  const before = process.memoryUsage().heapUsed;
  const started = performance.now();
  const value = make();
  const elapsed = performance.now() - started;
  await Bun.sleep(0);
  Bun.gc(true);
  return { value, heapBytes: process.memoryUsage().heapUsed - before, ms: elapsed };
}

function describeSet(set: CidrSet, buildMs: number, heapBytes: number): Array<[string, string]> {
  return [
    ["entries → ranges", `${set.size.toLocaleString("en")} → ${set.ranges.toLocaleString("en")}`],
    ["build", ms(buildMs)],
    ["memory", `${mib(set.byteLength)} in typed arrays; heap +${mib(heapBytes)} after build`],
  ];
}

function lookupRows(set: CidrSet, probes: IpAddress[]): Array<[string, string]> {
  let hits = 0;
  for (const probe of probes) if (set.contains(probe)) hits++;
  const texts = probes.slice(0, 1 << 16).map(formatIp);
  return [
    ["probes", `${PROBES.toLocaleString("en")}, ${((100 * hits) / PROBES).toFixed(1)} % hits`],
    ["CidrSet.contains (parsed address)", perSecond(rate((i) => set.contains(probes[i & (PROBES - 1)]!)))],
    ["CidrSet.containsText (parse included)", perSecond(rate((i) => set.containsText(texts[i & 0xffff]!)))],
  ];
}

/** Calls per second of `call(i)` (i counting up), over SECONDS after a short warm-up. */
function rate(call: (i: number) => boolean): number {
  let sink = 0;
  for (let i = 0; i < 100_000; i++) if (call(i)) sink++;
  let calls = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < SECONDS * 1000) {
    for (let end = calls + 10_000; calls < end; calls++) if (call(calls)) sink++;
    elapsed = performance.now() - started;
  }
  if (sink < 0) console.log(sink); // keeps the results observable
  return (calls * 1000) / elapsed;
}

// ---- inputs ----

/** mulberry32: small, seeded, good enough to spread addresses. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function randomV4Cidr(random: () => number): Cidr {
  const r = random();
  const prefix = r < 0.7 ? 32 : r < 0.95 ? 24 + Math.floor(random() * 8) : 16 + Math.floor(random() * 8);
  const host = 2 ** (32 - prefix);
  const first = Math.floor((random() * 2 ** 32) / host) * host;
  return { family: 4, bytes: v4(first).bytes, prefix };
}

function randomV6Cidr(random: () => number): Cidr {
  const r = random();
  const prefix = r < 0.4 ? 48 : r < 0.8 ? 64 : r < 0.9 ? 32 + Math.floor(random() * 16) : 128;
  const bytes = v6Random(random).bytes;
  for (let i = 0; i < 16; i++) bytes[i]! &= (0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff;
  return { family: 6, bytes, prefix };
}

/** Half inside a random entry, half drawn from `other` (mostly misses). */
function mixedProbes(cidrs: Cidr[], random: () => number, other: () => IpAddress): IpAddress[] {
  return Array.from({ length: PROBES }, (_, i) => {
    if (i % 2 === 1) return other();
    const cidr = cidrs[Math.floor(random() * cidrs.length)]!;
    const bytes = cidr.bytes.slice();
    for (let b = Math.floor(cidr.prefix / 8); b < bytes.length; b++) bytes[b]! |= Math.floor(random() * 256) & (0xff >> Math.max(0, cidr.prefix - 8 * b));
    return { family: cidr.family, bytes };
  });
}

function v4(n: number): IpAddress {
  return { family: 4, bytes: Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff) };
}

/** A random address in 2000::/3, the global unicast space lists are drawn from. */
function v6Random(random: () => number): IpAddress {
  const bytes = Uint8Array.from({ length: 16 }, () => Math.floor(random() * 256));
  bytes[0] = 0x20 | (bytes[0]! & 0x1f);
  return { family: 6, bytes };
}

function word(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

// ---- printing ----

function perSecond(n: number): string {
  return `${Math.round(n).toLocaleString("en")}/s`;
}

function ms(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
