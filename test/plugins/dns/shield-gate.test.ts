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

function gateWith(decisions: Decision[], options: { exempt?: string; rate?: number; slip?: number } = {}) {
  const shield = new Shield({ geo: { lookup: () => ({ country: null, asn: null, organisation: null, anonymous: null }) }, lists: () => [], policy: () => DEFAULT_POLICY, now: () => NOW, trustLoopback: false });
  shield.restore(decisions);
  const slot = new ShieldSlot();
  slot.current = shield;
  return new ShieldGate({ shield: slot, rate: options.rate ?? 1000, throttledRate: 1, slip: options.slip ?? 0, trustLoopback: false, now: () => NOW, exempt: (client) => client === options.exempt });
}

const decision = (target: string, scope: "all" | "dns", action: Decision["action"]): Decision => ({ id: `d-${target}-${scope}`, target, scope, action, score: 90, reasons: [], since: NOW - 1000, until: NOW + 60_000, shadow: false });

describe("the DNS gate and the shield", () => {
  test("a decision made from DNS evidence refuses over UDP, never over TCP (a spoofed flood must not cut a resolver off)", () => {
    const gate = gateWith([decision("198.51.100.7", "dns", "refuse"), decision("198.51.100.8", "dns", "drop")]);
    expect(gate.decide("198.51.100.7", [], 1, "udp")).toBe("refuse");
    expect(gate.decide("198.51.100.7", [], 1, "tcp")).toBe("answer");
    expect(gate.decide("198.51.100.8", [], 1, "udp")).toBe("drop");
    expect(gate.decide("198.51.100.8", [], 1, "tcp")).toBe("answer");
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
