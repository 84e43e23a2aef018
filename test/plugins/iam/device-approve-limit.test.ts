/**
 * Approving a device login takes a user code, a credential of a kind: guessing codes is
 * throttled like guessing passwords, and the throttling is audited (found in review).
 */
import { afterEach, expect, test } from "bun:test";
import { testCitadel } from "../../helpers/citadel.ts";

let stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops) await stop();
  stops = [];
});

test("guessing user codes from one session meets the auth rate limit, audited", async () => {
  const c = await testCitadel();
  stops.push(() => c.stop());
  const session = await c.login(c.owner.email, c.owner.password);
  const statuses = [];
  for (let i = 0; i < 20; i++) statuses.push((await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: "BDFG-HJKL", approve: true } })).status);
  expect(statuses).toContain(429);
  expect(statuses.filter((s) => s !== 404 && s !== 429)).toEqual([]);
  await c.kernel.store.write(() => undefined); // the guard's audit event is written by now
  const limited = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'auth.rate_limit'").all();
  expect(limited).toEqual([{ reason: "auth limit for address" }]);
});
