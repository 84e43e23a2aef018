/**
 * Query analytics for the authoritative server: a `QueryObserver` (server.ts) that counts every
 * answered query by zone, type, rcode and transport, keeps the most queried names and client
 * prefixes, and a per-minute series — all in memory, all bounded.
 *
 * `observe` runs on the answer path, so it does a few Map updates and nothing else: no I/O, no
 * JSON. Memory is bounded whatever clients send: the top names and client prefixes are
 * Misra-Gries summaries of `topSize` counters (a random-subdomain flood cannot grow them), the
 * other dimensions have few values (zones are the served ones, types fit 16 bits, rcodes are
 * folded into nine names), and the series is a ring of `retentionMinutes` buckets.
 *
 * Totals count from when the analytics started; the series covers the last minutes asked for
 * (at most the retention).
 *
 * The top lists are the one part that costs: a new name in a full summary touches every counter,
 * and a server's names are mostly new ones under load (measured on the benchmark's mix: 0.75 µs
 * of a 5.2 µs query, more than everything else Citadel adds to Bun's UDP I/O). So they are fed
 * every query up to EXACT_PER_SECOND queries in a second, and above that one query in about
 * SAMPLE_EVERY, at random gaps, weighted by the queries since the previous one fed (the
 * skipped ones count for the name and client of the query that ends their gap). Up to that rate
 * a top-list count is a lower bound: exact when fewer than `topSize` distinct keys were seen,
 * else under by at most 2 × queries / topSize. Once sampling began (`top_sampled`), counts
 * are estimates (each query fed carries the ones skipped before it, so the weights fed add up to
 * the queries but for an open gap; the purges then take from the counters). Everything else
 * stays exact.
 */
import { t } from "elysia";
import { formatIp, parseIp, unmapIpv4 } from "../../src/net/ip.ts";
import { nameToText, type Name } from "./names.ts";
import { typeToText } from "./rdata.ts";
import type { QueryEvent, QueryObserver } from "./server.ts";

/** The names /metrics gives them (citadel_dns_queries_total): NOTAUTH is a signed query's TSIG error (BADKEY, BADSIG, BADTIME). */
const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS", "other"] as const;
const RCODE_SLOTS = RCODE_NAMES.length;
const RCODE_NOTAUTH = 9;
const RCODE_BADVERS = 16;

/** The rcode's slot in RCODE_NAMES. */
function rcodeSlot(rcode: number): number {
  if (rcode >= 0 && rcode <= 5) return rcode;
  if (rcode === RCODE_NOTAUTH) return 6;
  return rcode === RCODE_BADVERS ? 7 : 8;
}

const MINUTE_MS = 60_000;
/** Queries in one second up to which every one feeds the top lists (beyond: sampled). */
export const EXACT_PER_SECOND = 1000;
/** Beyond EXACT_PER_SECOND, one query in this many feeds the top lists, on average. */
export const SAMPLE_EVERY = 16;
/** Client addresses whose prefix is remembered (a flood from many addresses just empties it). */
const PREFIX_CACHE_SIZE = 4096;

/** "192.0.2.0/24" for an IPv4 client, the /56 for IPv6; the text itself when it is no address. */
export function clientPrefix(client: string): string {
  if (!client.includes(":")) {
    const dot = client.lastIndexOf(".");
    if (dot > 0) return `${client.slice(0, dot)}.0/24`;
    return client;
  }
  const parsed = parseIp(client);
  if (!parsed) return client;
  const ip = unmapIpv4(parsed);
  if (ip.family === 4) return `${ip.bytes[0]}.${ip.bytes[1]}.${ip.bytes[2]}.0/24`;
  const bytes = ip.bytes.slice();
  bytes.fill(0, 7);
  return `${formatIp({ family: 6, bytes })}/56`;
}

/**
 * Heavy hitters (Misra-Gries, weighted, with the batch purge of Apache DataSketches' frequent
 * items sketch): at most `size` counters. A new key when all are taken first lowers every counter
 * by their median, dropping those that reach zero — at least half of them — so a stream of new
 * keys pays one purge per size / 2 keys, not one pass per key. A purge by m removes at least
 * m × size / 2 of the weight, so the purges add up to at most 2W / size of a total weight W: a
 * counter is a lower bound of its key's weight, under by at most that, and every key with more
 * than 2W / size is kept.
 */
export class HeavyHitters {
  readonly counts = new Map<string, number>();
  constructor(readonly size: number) {}

  add(key: string, weight = 1): void {
    const counts = this.counts;
    const count = counts.get(key);
    if (count !== undefined) counts.set(key, count + weight);
    else {
      if (counts.size >= this.size) this.purge();
      counts.set(key, weight);
    }
  }

  private purge(): void {
    const counts = this.counts;
    const sorted = [...counts.values()].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    for (const [k, c] of counts) c > median ? counts.set(k, c - median) : counts.delete(k);
  }

  /** The `limit` largest counters, largest first (ties by key). */
  top(limit: number): Array<[string, number]> {
    return [...this.counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, limit);
  }
}

interface Bucket {
  minute: number;
  queries: number;
  /** One minute's counts: 32 bits would take 71 million queries a second to wrap. */
  rcodes: Uint32Array;
}

export interface AnalyticsSnapshot {
  since: string;
  until: string;
  queries: number;
  by_zone: Record<string, number>;
  by_qtype: Record<string, number>;
  by_rcode: Record<string, number>;
  by_transport: Record<string, number>;
  /** What the shield did at the gate: refused, dropped, slipped (TC), rate_limited. */
  by_shield: Record<string, number>;
  top_names: Array<{ name: string; count: number }>;
  top_clients: Array<{ prefix: string; count: number }>;
  /** More than EXACT_PER_SECOND queries came in some second since the start: the top lists' counts are estimates. */
  top_sampled: boolean;
  series: Array<{ minute: string; queries: number; rcodes: Record<string, number> }>;
}

const Counts = t.Record(t.String(), t.Integer({ minimum: 0 }));

/** The response of GET /v1/dns/analytics. */
export const AnalyticsResponse = t.Object({
  since: t.String({ format: "date-time", description: "When counting began (the totals and top lists cover since then)." }),
  until: t.String({ format: "date-time" }),
  queries: t.Integer({ minimum: 0 }),
  by_zone: Counts,
  by_qtype: Counts,
  by_rcode: Counts,
  by_transport: Counts,
  by_shield: Counts,
  top_names: t.Array(t.Object({ name: t.String(), count: t.Integer({ minimum: 0 }) })),
  top_clients: t.Array(t.Object({ prefix: t.String(), count: t.Integer({ minimum: 0 }) })),
  top_sampled: t.Boolean({ description: `True once more than ${EXACT_PER_SECOND} queries came in one second: from then on one query in about ${SAMPLE_EVERY} feeds the top lists, weighted by those skipped, so their counts are estimates. Every other count is exact.` }),
  series: t.Array(t.Object({ minute: t.String({ format: "date-time" }), queries: t.Integer({ minimum: 0 }), rcodes: Counts })),
});

export const AnalyticsQuery = t.Object({
  minutes: t.Optional(t.Integer({ minimum: 1, maximum: 10_080, description: "Minutes of series to return (default 60, at most dns.analytics_retention_minutes)." })),
});

const increment = <K>(map: Map<K, number>, key: K) => map.set(key, (map.get(key) ?? 0) + 1);
const sorted = (map: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...map].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));

export class DnsAnalytics implements QueryObserver {
  private readonly now: () => number;
  private readonly retention: number;
  private readonly started: number;
  private queries = 0;
  private readonly zones = new Map<string, number>();
  private readonly qtypes = new Map<number, number>();
  /** Totals since the start: doubles, exact to 2^53 (a Uint32Array wrapped at four billion, as `queries` does not). */
  private readonly rcodes = new Float64Array(RCODE_SLOTS);
  private udp = 0;
  private tcp = 0;
  /** What the shield's gate did: refused, dropped, slipped (TC), rate_limited (no reply). */
  private readonly shield = new Map<string, number>();
  private readonly names: HeavyHitters;
  private readonly clients: HeavyHitters;
  /** The per-minute ring: slot minute % retention, reused when its minute is stale. */
  private readonly ring: Array<Bucket | undefined>;
  /**
   * Zone origins are the served zones' own Name objects, and a cached reply gives the same qname
   * object every time: their text is worked out once.
   */
  private readonly nameText = new WeakMap<Name, string>();
  /** Client address → prefix, for the addresses seen lately (emptied when it reaches its bound). */
  private readonly prefixes = new Map<string, string>();
  /** The second being counted, and its queries so far: above EXACT_PER_SECOND the top lists are sampled. */
  private second = -1;
  private inSecond = 0;
  /** Queries of the open sampling gap: the weight of the query that ends it. */
  private unfed = 0;
  /** Queries left until the next one fed, while sampling. */
  private countdown = 0;
  private sampled = false;
  private readonly random: () => number;

  constructor(options: { now: () => number; retentionMinutes: number; topSize?: number; random?: () => number }) {
    this.now = options.now;
    this.random = options.random ?? Math.random;
    this.retention = Math.max(1, Math.floor(options.retentionMinutes));
    this.names = new HeavyHitters(options.topSize ?? 100);
    this.clients = new HeavyHitters(options.topSize ?? 100);
    this.ring = new Array(this.retention);
    this.started = options.now();
  }

  observe(event: QueryEvent): void {
    this.queries++;
    increment(this.zones, event.zone === null ? "-" : this.textOf(event.zone));
    increment(this.qtypes, event.qtype);
    const slot = rcodeSlot(event.rcode);
    this.rcodes[slot]!++;
    if (event.transport === "udp") this.udp++;
    else this.tcp++;
    const now = event.time;
    const weight = this.topListWeight(now);
    if (weight > 0) {
      this.names.add(this.textOf(event.qname), weight);
      this.clients.add(this.prefixOf(event.client), weight);
    }

    const minute = Math.floor(now / MINUTE_MS);
    const index = minute % this.retention;
    let bucket = this.ring[index];
    if (bucket === undefined) bucket = this.ring[index] = { minute, queries: 0, rcodes: new Uint32Array(RCODE_SLOTS) };
    else if (bucket.minute !== minute) {
      bucket.minute = minute;
      bucket.queries = 0;
      bucket.rcodes.fill(0);
    }
    bucket.queries++;
    bucket.rcodes[slot]!++;
  }

  /**
   * What this query weighs in the top lists: 1 for each of the first EXACT_PER_SECOND queries
   * of its second; beyond, 0 but for the last query of each random gap of 1 to
   * 2 × SAMPLE_EVERY − 1, which carries the whole gap (a client cannot tell which of its queries
   * are seen, so it cannot stay out of the lists by timing them). A gap left open when a second
   * ends stays open into the next sampled stretch: handed to the first exact query of the next
   * second, it would credit that query — one a client can time — with up to 30 others.
   */
  private topListWeight(now: number): number {
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.inSecond = 0;
    }
    if (++this.inSecond <= EXACT_PER_SECOND) return 1;
    this.sampled = true;
    this.unfed++;
    if (--this.countdown > 0) return 0;
    this.countdown = 1 + Math.floor(this.random() * (2 * SAMPLE_EVERY - 1));
    const weight = this.unfed;
    this.unfed = 0;
    return weight;
  }

  /** Counts one action of the gate (these queries may have had no reply to observe). */
  countShield(what: string): void {
    increment(this.shield, what);
  }

  private textOf(name: Name): string {
    let text = this.nameText.get(name);
    if (text === undefined) this.nameText.set(name, (text = nameToText(name).toLowerCase()));
    return text;
  }

  private prefixOf(client: string): string {
    let prefix = this.prefixes.get(client);
    if (prefix === undefined) {
      if (this.prefixes.size >= PREFIX_CACHE_SIZE) this.prefixes.clear();
      this.prefixes.set(client, (prefix = clientPrefix(client)));
    }
    return prefix;
  }

  /** Totals since the start, top lists (at most `top` each, default 20), the last `minutes` (default 60, at most the retention). */
  snapshot(options: { minutes?: number; top?: number } = {}): AnalyticsSnapshot {
    const now = this.now();
    const current = Math.floor(now / MINUTE_MS);
    const minutes = Math.min(this.retention, Math.max(1, Math.floor(options.minutes ?? 60)));
    const top = options.top ?? 20;
    const series: AnalyticsSnapshot["series"] = [];
    for (let m = current - minutes + 1; m <= current; m++) {
      const bucket = this.ring[m % this.retention];
      const live = bucket !== undefined && bucket.minute === m;
      const rcodes: Record<string, number> = {};
      if (live) for (let i = 0; i < RCODE_SLOTS; i++) if (bucket.rcodes[i]! > 0) rcodes[RCODE_NAMES[i]!] = bucket.rcodes[i]!;
      series.push({ minute: new Date(m * MINUTE_MS).toISOString(), queries: live ? bucket.queries : 0, rcodes });
    }
    const rcodes = new Map<string, number>();
    for (let i = 0; i < RCODE_SLOTS; i++) if (this.rcodes[i]! > 0) rcodes.set(RCODE_NAMES[i]!, this.rcodes[i]!);
    return {
      since: new Date(this.started).toISOString(),
      until: new Date(now).toISOString(),
      queries: this.queries,
      by_zone: sorted(this.zones),
      by_qtype: sorted(new Map([...this.qtypes].map(([type, n]) => [typeToText(type), n]))),
      by_rcode: sorted(rcodes),
      by_shield: sorted(this.shield),
      by_transport: sorted(new Map([["udp", this.udp], ["tcp", this.tcp]].filter(([, n]) => (n as number) > 0) as Array<[string, number]>)),
      top_names: this.names.top(top).map(([name, count]) => ({ name, count })),
      top_clients: this.clients.top(top).map(([prefix, count]) => ({ prefix, count })),
      top_sampled: this.sampled,
      series,
    };
  }

  /** Sizes of the internal tables (for tests: they must stay bounded). */
  sizes(): { names: number; clients: number; zones: number; qtypes: number; buckets: number } {
    return { names: this.names.counts.size, clients: this.clients.counts.size, zones: this.zones.size, qtypes: this.qtypes.size, buckets: this.ring.filter(Boolean).length };
  }
}
