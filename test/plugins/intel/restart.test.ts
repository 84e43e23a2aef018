/** What the shield takes up again at start from what it stored (found in review). */
import { expect, test } from "bun:test";
import { intelOf, intelPlugin } from "../../../plugins/intel/index.ts";
import type { Kernel } from "../../../src/plugin.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();

test("a decision whose time ran out while Citadel was stopped is ended and audited at start, once; one still in force is held", async () => {
  const c = await citadel({ config: { intel: { trust_loopback: false } } });
  const operator = await c.login(c.owner.email, c.owner.password);
  const kernel = { ...c.kernel, config: c.config, settings: c.config.intel, services: [], log: c.log.logger } as unknown as Kernel<never>;
  const now = c.clock.now();
  const insert = c.kernel.store.db.query("INSERT INTO intel_decisions (id, target, scope, action, score, reasons, since, until, shadow, ended_at) VALUES (?, ?, 'all', 'refuse', 75, '[]', ?, ?, 0, ?)");
  insert.run("dec_lapsed", "203.0.113.7", now - 20 * 60_000, now - 5 * 60_000, null);
  insert.run("dec_ended", "203.0.113.8", now - 20 * 60_000, now - 10 * 60_000, now - 10 * 60_000);
  insert.run("dec_inforce", "203.0.113.9", now - 5 * 60_000, now + 10 * 60_000, null);
  const expired = () => c.kernel.store.db.query<{ resource_id: string; reason: string }, []>("SELECT resource_id, reason FROM audit_events WHERE action = 'intel.decision.expire' ORDER BY seq").all();
  const restart = async () => {
    await c.stop();
    return intelPlugin.start!(kernel as never);
  };

  const stop = await restart();
  try {
    expect(expired()).toEqual([{ resource_id: "dec_lapsed", reason: `refuse 203.0.113.7 expired (at ${new Date(now - 5 * 60_000).toISOString()}, while Citadel was stopped)` }]);
    const endedAt = c.kernel.store.db.query<{ id: string; ended_at: number | null }, []>("SELECT id, ended_at FROM intel_decisions ORDER BY id").all();
    expect(endedAt).toEqual([
      { id: "dec_ended", ended_at: now - 10 * 60_000 },
      { id: "dec_inforce", ended_at: null },
      { id: "dec_lapsed", ended_at: now - 5 * 60_000 }, // when it ran out: retention counts from then
    ]);
    expect(intelOf(kernel as never).decisions().items.map((d) => d.id)).toEqual(["dec_inforce"]);
    expect((await c.send("GET", "/v1/intel/decisions", operator)).body.items.map((d: { id: string }) => d.id)).toEqual(["dec_inforce"]);
  } finally {
    await stop();
  }
  const again = await intelPlugin.start!(kernel as never); // nothing more has run out: nothing more audited
  await again();
  expect(expired().length).toBe(1);
});

test("decisions an earlier version stored on addresses of one /64: the most severe holds it, the others are ended and audited at start, and lifting it leaves nothing to come back (found in review)", async () => {
  const c = await citadel({ config: { intel: { trust_loopback: false } } });
  const operator = await c.login(c.owner.email, c.owner.password);
  const kernel = { ...c.kernel, config: c.config, settings: c.config.intel, services: [], log: c.log.logger } as unknown as Kernel<never>;
  const now = c.clock.now();
  const insert = c.kernel.store.db.query("INSERT INTO intel_decisions (id, target, scope, action, score, reasons, since, until, shadow, ended_at) VALUES (?, ?, 'all', ?, 95, '[]', ?, ?, 0, NULL)");
  insert.run("dec_drop", "2001:db8:0:1::7", "drop", now - 60_000, now + 60 * 60_000);
  insert.run("dec_thr", "2001:db8:0:1::8", "throttle", now - 60_000, now + 60 * 60_000);
  const open = () => c.kernel.store.db.query<{ id: string }, []>("SELECT id FROM intel_decisions WHERE ended_at IS NULL ORDER BY id").all().map((r) => r.id);
  const ended = () => c.kernel.store.db.query<{ resource_id: string; reason: string }, []>("SELECT resource_id, reason FROM audit_events WHERE action IN ('intel.decision.expire', 'intel.decision.lift') ORDER BY seq").all();
  await c.stop();

  let stop = await intelPlugin.start!(kernel as never);
  try {
    expect((await c.send("GET", "/v1/intel/decisions", operator)).body.items.map((d: { id: string }) => d.id)).toEqual(["dec_drop"]);
    expect((await c.send("GET", "/v1/intel/ip/2001:db8:0:1::8", operator)).body.action).toBe("drop");
    expect(open()).toEqual(["dec_drop"]);
    expect(ended()).toEqual([{ resource_id: "dec_thr", reason: "throttle 2001:db8:0:1::8 ended at start: merged into the decision on 2001:db8:0:1::/64 (dec_drop: drop 2001:db8:0:1::7)" }]);
    expect((await c.send("DELETE", "/v1/intel/decisions/2001:db8:0:1::7", operator)).status).toBe(200);
    expect(open()).toEqual([]);
  } finally {
    await stop();
  }
  stop = await intelPlugin.start!(kernel as never);
  try {
    expect(intelOf(kernel as never).decisions().items).toEqual([]);
    expect(ended().map((e) => e.resource_id)).toEqual(["dec_thr", "dec_drop"]);
  } finally {
    await stop();
  }
});
