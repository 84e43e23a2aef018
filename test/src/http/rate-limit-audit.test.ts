import { describe, expect, test } from "bun:test";
import type { AuditEventInput } from "../../../src/audit/event.ts";
import { RateLimiter } from "../../../src/auth/rate-limit.ts";
import { OncePerWindow, sampledRateLimitEvents } from "../../../src/http/rate-limit-audit.ts";
import { ShieldSlot, type Shield } from "../../../src/intel/shield.ts";
import { fixedClock, testEdge } from "../../helpers/http.ts";

describe("the edge's rate-limit audit sample", () => {
  /** An edge behind a trusted proxy whose per-address limit allows one request, and the events it records. */
  function limitedEdge() {
    const clock = fixedClock();
    const events: AuditEventInput[] = [];
    const edge = testEdge({
      peer: "10.0.0.5",
      trustedProxies: ["10.0.0.0/8"],
      perAddress: new RateLimiter({ name: "address", perSecond: 0.001, burst: 1 }, clock.now),
      onRateLimited: sampledRateLimitEvents((event) => events.push(event), clock.now),
    });
    const from = (client: string) => edge.send("GET", "/healthz", { headers: { "x-forwarded-for": client } });
    return { clock, events, from };
  }

  test("addresses rotated within one IPv6 /64 are one client: one event a minute, not one per request (found in review)", async () => {
    const { clock, events, from } = limitedEdge();
    const statuses = new Set<number>();
    for (let i = 1; i <= 300; i++) statuses.add((await from(`2001:db8:1:2::${i.toString(16)}`)).status);
    expect([...statuses].sort()).toEqual([200, 429]);
    expect(events).toHaveLength(1);
    clock.advance(61_000);
    await from("2001:db8:1:2::ffff");
    expect(events).toHaveLength(2);
  });

  test("the event names the request id of the 429 it samples (found in review)", async () => {
    const { events, from } = limitedEdge();
    await from("198.51.100.7");
    const refused = await from("198.51.100.7");
    expect(refused.status).toBe(429);
    expect(events).toHaveLength(1);
    expect(events[0]!.request).toMatchObject({ id: refused.headers.get("x-request-id"), source: "198.51.100.7" });
  });

  test("another /64 or another IPv4 address is another client", async () => {
    const { events, from } = limitedEdge();
    for (const client of ["2001:db8:1:2::1", "2001:db8:1:3::1", "198.51.100.7", "198.51.100.8"]) {
      await from(client);
      await from(client);
    }
    expect(events.map((e) => e.request?.source)).toEqual(["2001:db8:1:2::1", "2001:db8:1:3::1", "198.51.100.7", "198.51.100.8"]);
  });
});

test("the edge's per-address 429s are told to the shield, each one, as the guard's are; an allowed request is not (found in review)", async () => {
  const told: Array<[string, string]> = [];
  const shield = new ShieldSlot();
  shield.current = { observe: (client: string, signal: string) => void told.push([client, signal]) } as unknown as Shield;
  const clock = fixedClock();
  const edge = testEdge({ perAddress: new RateLimiter({ name: "address", perSecond: 0.001, burst: 1 }, clock.now), shield });
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await edge.send("GET", "/healthz", { headers: { "x-test-peer": "198.51.100.7" } })).status);
  expect(statuses).toEqual([200, 429, 429]);
  expect(told).toEqual([
    ["198.51.100.7", "http_rate_limited"],
    ["198.51.100.7", "http_rate_limited"],
  ]);
});

describe("OncePerWindow", () => {
  test("past its capacity it forgets the key sampled longest ago, not every key (found in review)", () => {
    const clock = fixedClock();
    const sampler = new OncePerWindow(60_000, 2, clock.now);
    expect(["a", "b", "c"].map((k) => sampler.due(k))).toEqual([true, true, true]); // "a" forgotten
    expect(["b", "c", "a"].map((k) => sampler.due(k))).toEqual([false, false, true]); // "b" forgotten
    expect(["c", "a", "b"].map((k) => sampler.due(k))).toEqual([false, false, true]);
  });

  test("a key is due again once its window has passed", () => {
    const clock = fixedClock();
    const sampler = new OncePerWindow(60_000, 10, clock.now);
    expect(sampler.due("a")).toBe(true);
    clock.advance(59_999);
    expect(sampler.due("a")).toBe(false);
    clock.advance(1);
    expect(sampler.due("a")).toBe(true);
  });

  test("a clock stepped back counts as no time passed: the key is due a window after the step, not once the clock has caught up (found in review)", () => {
    const clock = fixedClock();
    const sampler = new OncePerWindow(60_000, 10, clock.now);
    expect(sampler.due("a")).toBe(true);
    clock.advance(-3_600_000);
    expect(sampler.due("a")).toBe(false);
    clock.advance(60_000);
    expect(sampler.due("a")).toBe(true);
  });
});
