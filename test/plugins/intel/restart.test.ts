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
