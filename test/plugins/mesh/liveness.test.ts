/** When nodes were last heard from: judged on the monotonic clock, the wall clock's time worked out for last_seen_at. */
import { expect, test } from "bun:test";
import { LAST_SEEN_WRITE_MS, NodeLiveness } from "../../../plugins/mesh/liveness.ts";

/** A wall clock and a monotonic one with fractions, as performance.now() has them; `step` moves the wall clock alone (NTP). */
function clocks() {
  let wall = Date.UTC(2026, 5, 1);
  let mono = 1234.5678;
  return {
    clock: { now: () => wall, elapsed: () => mono },
    advance(ms: number) {
      wall += ms;
      mono += ms;
    },
    step(ms: number) {
      wall += ms;
    },
  };
}

test("online while heard from within the window; a node not heard from since the start counts as online for one window", () => {
  const t = clocks();
  const live = new NodeLiveness(t.clock);
  expect(live.online("quiet", 10_000)).toBe(true);
  t.advance(5000);
  live.heardFrom("polls");
  t.advance(6000);
  expect([live.online("quiet", 10_000), live.online("polls", 10_000)]).toEqual([false, true]);
  expect(live.quietFor("polls")).toBeCloseTo(6000);
  t.advance(5000);
  expect(live.online("polls", 10_000)).toBe(false);
  // An unseal: every node gets a window again.
  live.restart();
  expect([live.online("quiet", 10_000), live.online("polls", 10_000)]).toEqual([true, true]);
});

test("the wall clock stepped (NTP) takes no node offline: only the monotonic clock counts", () => {
  const t = clocks();
  const live = new NodeLiveness(t.clock);
  live.heardFrom("gw");
  t.step(3_600_000);
  expect(live.online("gw", 10_000)).toBe(true);
});

test("last_seen_at: whole milliseconds of the wall clock, due once nothing was written, then when a minute behind; a node gone is forgotten", () => {
  const t = clocks();
  const live = new NodeLiveness(t.clock);
  const enrolledAt = t.clock.now();
  t.advance(1000.25);
  live.heardFrom("gw");
  live.heardFrom("new");
  const stored = new Map<string, number | null>([["gw", enrolledAt], ["new", null]]);
  const first = live.due((id) => stored.get(id) ?? null);
  expect(first).toEqual([{ id: "new", at: Math.round(enrolledAt + 1000.25) }]);
  expect(Number.isInteger(first[0]!.at)).toBe(true);
  t.advance(LAST_SEEN_WRITE_MS);
  live.heardFrom("gw");
  expect(live.due(() => null).map((d) => d.id)).toEqual(["gw"]); // "new" was not heard from again
  expect(live.due(() => null)).toEqual([]);
  live.forget("gw");
  expect(live.lastHeard("gw")).toBeNull();
});
