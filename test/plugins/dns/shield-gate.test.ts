/**
 * The DNS gate's use of the shield: decisions made from DNS evidence (UDP, forgeable sources)
 * act over UDP only; evidence every channel may act on acts over TCP too; configured
 * secondaries are out of the shield's reach but still rate limited over UDP, with slip.
 */
import { describe, expect, test } from "bun:test";
import { ShieldGate } from "../../../plugins/dns/shield-gate.ts";
import { DEFAULT_POLICY } from "../../../src/intel/policy.ts";
import { Shield, ShieldSlot, type Decision } from "../../../src/intel/shield.ts";

const NOW = Date.UTC(2026, 10, 24);

function gateWith(decisions: Decision[], options: { exempt?: string; rate?: number; slip?: number; shield?: Shield } = {}) {
  const shield = options.shield ?? new Shield({ geo: { lookup: () => ({ country: null, asn: null, organisation: null, anonymous: null }) }, lists: () => [], policy: () => DEFAULT_POLICY, now: () => NOW, trustLoopback: false });
  shield.restore(decisions);
  const slot = new ShieldSlot();
  slot.current = shield;
  return new ShieldGate({ shield: slot, rate: options.rate ?? 1000, throttledRate: 1, slip: options.slip ?? 0, trustLoopback: false, now: () => NOW, exempt: (client) => client === options.exempt });
}

const decision = (target: string, scope: "all" | "dns", action: Decision["action"]): Decision => ({ id: `d-${target}-${scope}`, target, scope, action, score: 90, reasons: [], since: NOW - 1000, until: NOW + 60_000, shadow: false });

describe("the DNS gate and the shield", () => {
  test("each query is one verdict in the shield's counts, over UDP as over TCP; an exempt secondary's none", () => {
    const shield = new Shield({ geo: { lookup: () => ({ country: null, asn: null, organisation: null, anonymous: null }) }, lists: () => [], policy: () => DEFAULT_POLICY, now: () => NOW, trustLoopback: false });
    const gate = gateWith([decision("203.0.113.8", "all", "refuse")], { shield, exempt: "192.0.2.53" });
    for (let i = 0; i < 10; i++) gate.decide("198.51.100.7", [], 1, "udp");
    expect(shield.counts).toEqual({ allow: 10, throttle: 0, refuse: 0, drop: 0 });
    for (let i = 0; i < 10; i++) gate.decide("198.51.100.7", [], 1, "tcp");
    for (let i = 0; i < 5; i++) gate.decide("203.0.113.8", [], 1, "udp");
    for (let i = 0; i < 5; i++) gate.decide("192.0.2.53", [], 1, "udp");
    expect(shield.counts).toEqual({ allow: 20, throttle: 0, refuse: 5, drop: 0 });
  });

  test("a decision made from DNS evidence throttles over UDP, with slip, and never acts over TCP (a spoofed flood must not cut a resolver off)", () => {
    // Stored before DNS evidence was held to a throttle: enforced as one.
    const gate = gateWith([decision("198.51.100.7", "dns", "refuse"), decision("203.0.113.8", "dns", "drop")], { slip: 2 });
    for (const client of ["198.51.100.7", "203.0.113.8"]) {
      // The throttled rate (1 a second), then every second query gets TC: the resolver retries over TCP.
      expect(Array.from({ length: 5 }, () => gate.decide(client, [], 1, "udp"))).toEqual(["answer", "drop", "truncate", "drop", "truncate"]);
      expect(Array.from({ length: 3 }, () => gate.decide(client, [], 1, "tcp"))).toEqual(["answer", "answer", "answer"]);
    }
  });

  test("a resolver's address spoofed in a flood: throttled over UDP, with TC some of the time, answered over TCP", () => {
    let now = NOW;
    const shield = new Shield({ geo: { lookup: () => ({ country: null, asn: null, organisation: null, anonymous: null }) }, lists: () => [], policy: () => DEFAULT_POLICY, now: () => now, trustLoopback: false });
    const slot = new ShieldSlot();
    slot.current = shield;
    const gate = new ShieldGate({ shield: slot, rate: 100, throttledRate: 10, slip: 2, trustLoopback: false, now: () => now });
    const resolver = "198.51.100.53";
    // Eight seconds of spoofed queries for names not hosted and names that do not exist, as the
    // server reports them, then a burst well past the rate.
    for (let second = 0; second < 8; second++) {
      for (let i = 0; i < 100; i++) if (gate.decide(resolver, [], 1, "udp") === "answer") shield.observe(resolver, second < 4 ? "dns_refused" : "dns_nxdomain");
      now += 1000;
    }
    for (let i = 0; i < 400; i++) gate.decide(resolver, [], 1, "udp");
    now += 1500;
    expect(shield.assess(resolver, { dryRun: true, channel: "dns" }).score).toBeGreaterThanOrEqual(70); // refused at least, were it not forgeable
    expect(shield.activeDecisions().map((d) => `${d.scope} ${d.action}`)).toEqual(["dns throttle"]);
    // The resolver's own queries, 40 a second: the throttled rate is answered, past it some get TC.
    const seen: string[] = [];
    for (let i = 0; i < 100; i++, now += 25) seen.push(gate.decide(resolver, [], 1, "udp"));
    expect(seen).not.toContain("refuse");
    expect(seen.filter((v) => v === "answer").length).toBeGreaterThanOrEqual(10);
    expect(seen.filter((v) => v === "truncate").length).toBeGreaterThan(20);
    expect(gate.decide(resolver, [], 1, "tcp")).toBe("answer"); // where TC sends it
  });

  test("a decision every channel acts on (HTTP evidence, lists, policy) refuses over TCP too", () => {
    const gate = gateWith([decision("198.51.100.9", "all", "refuse")]);
    expect(gate.decide("198.51.100.9", [], 1, "udp")).toBe("refuse");
    expect(gate.decide("198.51.100.9", [], 1, "tcp")).toBe("refuse");
  });

  test("an allowlisted client's DNS over TCP is not counted against its neighbours", () => {
    const shield = new Shield({ geo: { lookup: () => ({ country: null, asn: null, organisation: null, anonymous: null }) }, lists: () => [], policy: () => DEFAULT_POLICY, now: () => NOW, trustLoopback: false });
    shield.setManual([{ id: "a", kind: "allow", target: "192.0.2.1", action: "refuse", until: null, reason: null }]);
    const slot = new ShieldSlot();
    slot.current = shield;
    const gate = new ShieldGate({ shield: slot, rate: 100, throttledRate: 10, slip: 2, trustLoopback: false, now: () => NOW });
    // Answered over TCP only (its DNS verdict was never asked), with what the server tells the shield.
    for (let i = 0; i < 2000; i++) {
      expect(gate.decide("192.0.2.1", [], 1, "tcp")).toBe("answer");
      shield.observe("192.0.2.1", "dns_nxdomain");
      shield.observe("192.0.2.1", "dns_refused");
    }
    expect(shield.decide("192.0.2.77", "dns")).toBe("allow");
    expect(shield.behaviour.size).toBe(0);
  });

  test("a configured secondary: no decision applies to it, but over UDP it is rate limited like anyone, with slip", () => {
    const secondary = "192.0.2.53";
    const gate = gateWith([decision(secondary, "all", "refuse"), decision(secondary, "dns", "drop")], { exempt: secondary, rate: 1, slip: 1 });
    const udp = Array.from({ length: 4 }, () => gate.decide(secondary, [], 6, "udp"));
    expect(udp[0]).toBe("answer");
    expect(udp.slice(1)).toEqual(["truncate", "truncate", "truncate"]); // told to come back over TCP
    expect(Array.from({ length: 4 }, () => gate.decide(secondary, [], 6, "tcp"))).toEqual(Array(4).fill("answer"));
  });
});
