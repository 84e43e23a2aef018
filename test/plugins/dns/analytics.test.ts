/**
 * DNS query analytics: counts by dimension, bounded heavy hitters, the per-minute ring and its
 * retention, client prefixes; and GET /v1/dns/analytics (operators only).
 */
import { describe, expect, spyOn, test } from "bun:test";
import { clientPrefix, DnsAnalytics, HeavyHitters, SAMPLE_EVERY } from "../../../plugins/dns/analytics.ts";
import { dnsAnalyticsOf } from "../../../plugins/dns/index.ts";
import { parseName, type Name } from "../../../plugins/dns/names.ts";
import type { QueryEvent } from "../../../plugins/dns/server.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const T0 = Date.UTC(2026, 5, 1);
const ZONE = parseName("Example.ORG.", null);

/** The tests' clock: what the analytics read and the time of the events made below. */
let now = T0;

function setup(retentionMinutes = 60, topSize?: number) {
  now = T0;
  const a = new DnsAnalytics({ now: () => now, retentionMinutes, topSize, random: seeded(7) });
  return { a, advance: (ms: number) => (now += ms) };
}

/** A repeatable stand-in for Math.random (mulberry32). */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = Math.imul(state ^ (state >>> 15), state | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The flood of the tests below: 100,000 random names from as many clients, and two real names. */
function flood(a: DnsAnalytics, each: () => void = () => {}): void {
  for (let i = 0; i < 100_000; i++) {
    a.observe(event(`r${i}.example.org.`, { client: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, rcode: 3 }));
    if (i % 10 === 0) a.observe(event("www.example.org.", { client: "192.0.2.1" }));
    if (i % 20 === 0) a.observe(event("mail.example.org.", { client: "2001:db8::1" }));
    each();
    const sizes = a.sizes();
    if (sizes.names > 100 || sizes.clients > 100) throw new Error(`unbounded at ${i}: ${JSON.stringify(sizes)}`);
  }
}

const event = (qname: string, over: Partial<QueryEvent> = {}): QueryEvent => ({
  client: "192.0.2.7",
  zone: ZONE,
  qname: parseName(qname, null) as Name,
  qtype: 1,
  rcode: 0,
  transport: "udp",
  bytes: 64,
  gated: false,
  time: now,
  ...over,
});

describe("DnsAnalytics", () => {
  test("counts by zone, type, rcode, transport; top names and client prefixes; series", () => {
    const { a } = setup();
    a.observe(event("WWW.example.org."));
    a.observe(event("www.example.org.", { qtype: 28, transport: "tcp", client: "2001:db8:1:2ff::1" }));
    a.observe(event("nope.example.org.", { rcode: 3 }));
    a.observe(event("other.test.", { zone: null, rcode: 5, qtype: 15 }));
    a.observe(event("x.example.org.", { rcode: 16, qtype: 65_000 }));
    a.observe(event("y.example.org.", { rcode: 10 }));
    a.observe(event("y.example.org.", { rcode: 1 }));
    a.observe(event("y.example.org.", { rcode: 2, client: "::ffff:198.51.100.9" }));
    a.observe(event("y.example.org.", { rcode: 4 }));
    const s = a.snapshot();
    expect(s.queries).toBe(9);
    expect(s.by_zone).toEqual({ "example.org.": 8, "-": 1 });
    expect(Object.keys(s.by_zone)).toEqual(["example.org.", "-"]);
    expect(s.by_qtype).toEqual({ A: 6, AAAA: 1, MX: 1, TYPE65000: 1 });
    expect(s.by_rcode).toEqual({ NOERROR: 2, NXDOMAIN: 1, REFUSED: 1, BADVERS: 1, other: 1, FORMERR: 1, SERVFAIL: 1, NOTIMP: 1 });
    expect(Object.keys(s.by_rcode)[0]).toBe("NOERROR");
    expect(s.by_transport).toEqual({ udp: 8, tcp: 1 });
    expect(s.top_names.slice(0, 2)).toEqual([
      { name: "y.example.org.", count: 4 },
      { name: "www.example.org.", count: 2 },
    ]);
    expect(s.top_clients).toEqual([
      { prefix: "192.0.2.0/24", count: 7 },
      { prefix: "198.51.100.0/24", count: 1 },
      { prefix: "2001:db8:1:200::/56", count: 1 },
    ]);
    expect(s.since).toBe(new Date(T0).toISOString());
    expect(s.series.length).toBe(60);
    expect(s.series.at(-1)).toEqual({ minute: new Date(T0).toISOString(), queries: 9, rcodes: { NOERROR: 2, FORMERR: 1, SERVFAIL: 1, NXDOMAIN: 1, NOTIMP: 1, REFUSED: 1, BADVERS: 1, other: 1 } });
    expect(s.series[0]).toEqual({ minute: new Date(T0 - 59 * 60_000).toISOString(), queries: 0, rcodes: {} });
    expect(a.snapshot({ minutes: 5 }).series.length).toBe(5);
    expect(a.snapshot({ minutes: 100_000 }).series.length).toBe(60); // capped at the retention
  });

  test("NOTAUTH (a TSIG error: BADKEY, BADSIG, BADTIME) is named as /metrics names it, not counted as other (found in review)", () => {
    const { a } = setup();
    a.observe(event("www.example.org.", { rcode: 9, zone: null }));
    a.observe(event("www.example.org.", { rcode: 9, zone: null }));
    a.observe(event("www.example.org.", { rcode: 10, zone: null }));
    const s = a.snapshot();
    expect(s.by_rcode).toEqual({ NOTAUTH: 2, other: 1 });
    expect(s.series.at(-1)!.rcodes).toEqual({ NOTAUTH: 2, other: 1 });
  });

  test("client prefixes: IPv4 /24, IPv6 /56, mapped IPv4 as IPv4", () => {
    expect(clientPrefix("192.0.2.200")).toBe("192.0.2.0/24");
    expect(clientPrefix("10.1.2.3")).toBe("10.1.2.0/24");
    expect(clientPrefix("2001:db8:aaaa:bbcc:1:2:3:4")).toBe("2001:db8:aaaa:bb00::/56");
    expect(clientPrefix("::1")).toBe("::/56");
    expect(clientPrefix("::ffff:203.0.113.5")).toBe("203.0.113.0/24");
  });

  test("a random-subdomain flood at 1,000 queries a second: memory stays bounded, every query is counted, heavy hitters found", () => {
    const { a, advance } = setup(60, 100);
    flood(a, () => advance(1.2)); // 1.15 queries per step, a step every 1.2 ms: under 1,000 in any second
    const sizes = a.sizes();
    expect(sizes.names).toBeLessThanOrEqual(100);
    expect(sizes.clients).toBeLessThanOrEqual(100);
    expect(sizes.zones).toBe(1);
    const s = a.snapshot();
    expect(s.queries).toBe(115_000);
    expect(s.top_sampled).toBe(false);
    expect(s.top_names.slice(0, 2).map((n) => n.name)).toEqual(["www.example.org.", "mail.example.org."]);
    expect(s.top_clients.slice(0, 2).map((c) => c.prefix)).toEqual(["192.0.2.0/24", "2001:db8::/56"]);
    // A lower bound, under by at most 2n / size (the purges).
    expect(s.top_names[0]!.count).toBeLessThanOrEqual(10_000);
    expect(s.top_names[0]!.count).toBeGreaterThanOrEqual(10_000 - (2 * 115_000) / 100);
    expect(s.top_names.length).toBeLessThanOrEqual(20);
    expect(s.top_clients.length).toBeLessThanOrEqual(20);
  });

  test("the same flood in one second: the top lists are sampled, still bounded, still find the heavy hitters; the totals stay exact", () => {
    const { a } = setup(60, 100);
    flood(a);
    const s = a.snapshot();
    expect(s.queries).toBe(115_000);
    expect(s.by_rcode).toEqual({ NXDOMAIN: 100_000, NOERROR: 15_000 });
    expect(s.series.at(-1)!.queries).toBe(115_000);
    expect(s.top_sampled).toBe(true);
    expect(s.top_names.slice(0, 2).map((n) => n.name)).toEqual(["www.example.org.", "mail.example.org."]);
    expect(s.top_clients.slice(0, 2).map((c) => c.prefix)).toEqual(["192.0.2.0/24", "2001:db8::/56"]);
    // An estimate: the sampling's spread (about 5% for 10,000 of 115,000 at one in 16) and Misra-Gries's undercount.
    expect(s.top_names[0]!.count).toBeGreaterThan(0.85 * 10_000 - (2 * 115_000) / 100);
    expect(s.top_names[0]!.count).toBeLessThan(1.15 * 10_000);
    expect(s.top_names[1]!.count).toBeGreaterThan(0.8 * 5_000 - (2 * 115_000) / 100);
    expect(s.top_names[1]!.count).toBeLessThan(1.2 * 5_000);
  });

  test("sampling weighs each query fed by those skipped: the weights fed add up to the queries but for the open gap", () => {
    const { a, advance } = setup();
    const add = spyOn(HeavyHitters.prototype, "add");
    try {
      for (let i = 0; i < 5_000; i++) a.observe(event(`n${i % 3000}.example.org.`, { client: `10.0.${i % 250}.1` }));
      const fed = (add.mock.calls as Array<[string, number?]>).reduce((sum, [, weight = 1]) => sum + weight, 0) / 2; // names and clients
      expect(a.snapshot().top_sampled).toBe(true);
      expect(fed).toBeLessThanOrEqual(5_000);
      expect(fed).toBeGreaterThan(5_000 - 2 * SAMPLE_EVERY);
      // The gap still open waits for the next sampled query; an exact one (a new second) weighs 1.
      add.mockClear();
      advance(1000);
      a.observe(event("n1.example.org."));
      expect(add.mock.calls.map(([, weight]) => weight)).toEqual([1, 1]);
    } finally {
      add.mockRestore();
    }
  });

  test("the first query of each second gets no more weight than any other (found in review: it took the last gap's)", () => {
    const { a, advance } = setup();
    for (let second = 0; second < 20; second++) {
      a.observe(event("first.example.org."));
      for (let i = 1; i < 5_000; i++) a.observe(event(`m${i % 50}.example.org.`));
      advance(1000);
    }
    const first = a.snapshot({ top: 100 }).top_names.find((n) => n.name === "first.example.org.");
    expect(first?.count).toBe(20); // asked 20 times, each in a second's exact part
  });

  test("the heavy hitters' purge: every counter lowered by the median, those at or below it dropped, the new key counted whole", () => {
    const hitters = new HeavyHitters(4);
    for (const [key, weight] of [["a", 5], ["b", 3], ["c", 2], ["d", 1]] as const) hitters.add(key, weight);
    hitters.add("a", 2); // a known key: its weight added
    hitters.add("e", 7); // full: purge by the median of 7, 3, 2, 1 (3), then e with all of its weight
    expect([...hitters.counts].sort()).toEqual([["a", 4], ["e", 7]]);
    hitters.add("f");
    hitters.add("g");
    hitters.add("h"); // full again: the median of 4, 7, 1, 1 is 4
    expect([...hitters.counts].sort()).toEqual([["e", 3], ["h", 1]]);
  });

  test("minutes older than the retention are dropped", () => {
    const { a, advance } = setup(3);
    a.observe(event("a.example.org."));
    advance(60_000);
    a.observe(event("b.example.org."));
    a.observe(event("b.example.org."));
    expect(a.snapshot().series.map((m) => m.queries)).toEqual([0, 1, 2]);
    advance(2 * 60_000);
    a.observe(event("c.example.org.", { rcode: 3 }));
    // The first minute is now 3 minutes old: gone, though its ring slot was not reused.
    expect(a.snapshot().series).toEqual([
      { minute: new Date(T0 + 60_000).toISOString(), queries: 2, rcodes: { NOERROR: 2 } },
      { minute: new Date(T0 + 120_000).toISOString(), queries: 0, rcodes: {} },
      { minute: new Date(T0 + 180_000).toISOString(), queries: 1, rcodes: { NXDOMAIN: 1 } },
    ]);
    advance(60 * 60_000);
    a.observe(event("d.example.org."));
    expect(a.snapshot().series.map((m) => m.queries)).toEqual([0, 0, 1]);
    expect(a.sizes().buckets).toBeLessThanOrEqual(3);
    expect(a.snapshot().queries).toBe(5); // totals count since the start
  });

  test("totals by response code do not wrap at 2^32, like the total of queries (found in review: a Uint32Array)", () => {
    const { a } = setup();
    // Four billion queries take a long-running server months; the test starts its count there.
    const totals = (a as unknown as { rcodes: { [slot: number]: number } }).rcodes;
    totals[0] = 2 ** 32 - 1;
    a.observe(event("www.example.org."));
    a.observe(event("www.example.org."));
    expect(a.snapshot().by_rcode.NOERROR).toBe(2 ** 32 + 1);
  });
});

describe("GET /v1/dns/analytics", () => {
  test("operators read the per-kernel analytics; others get 403", async () => {
    const c = await testCitadel();
    try {
      const owner = await c.login(c.owner.email, c.owner.password);
      const empty = await c.send("GET", "/v1/dns/analytics", owner);
      expect([empty.status, empty.body.queries, empty.body.top_names]).toEqual([200, 0, []]);
      const analytics = dnsAnalyticsOf(c.kernel as never);
      now = c.kernel.clock.now(); // the events' time
      analytics.observe(event("www.example.org."));
      analytics.observe(event("www.example.org.", { transport: "tcp", client: "2001:db8::5" }));
      analytics.observe(event("nope.example.org.", { rcode: 3 }));
      const res = await c.send("GET", "/v1/dns/analytics?minutes=5", owner);
      expect(res.status).toBe(200);
      expect(res.body.queries).toBe(3);
      expect(res.body.by_rcode).toEqual({ NOERROR: 2, NXDOMAIN: 1 });
      expect(res.body.top_names[0]).toEqual({ name: "www.example.org.", count: 2 });
      expect(res.body.top_clients[0]).toEqual({ prefix: "192.0.2.0/24", count: 2 });
      expect(res.body.series.length).toBe(5);
      expect(res.body.series.at(-1).queries).toBe(3);
      expect((await c.send("GET", "/v1/dns/analytics?minutes=0", owner)).status).toBe(422);
      const admin = await c.addUser(owner, "admin@example.com", "admin");
      expect((await c.send("GET", "/v1/dns/analytics", admin.token)).status).toBe(403);
    } finally {
      await c.stop();
    }
  });
});
