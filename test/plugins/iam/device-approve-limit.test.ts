/**
 * Approving a device login takes a user code, a credential of a kind: guessing codes is
 * throttled like guessing passwords, and the throttling is audited (found in review).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("guessing user codes from one session meets the auth rate limit, audited", async () => {
  const c = await newCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const statuses = [];
  for (let i = 0; i < 20; i++) statuses.push((await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: "BDFG-HJKL", approve: true } })).status);
  expect(statuses).toContain(429);
  expect(statuses.filter((s) => s !== 404 && s !== 429)).toEqual([]);
  await c.kernel.store.write(() => undefined); // the guard's audit event is written by now
  const limited = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'auth.rate_limit'").all();
  expect(limited).toEqual([{ reason: "auth limit for address" }]);
});

test("each wrong or expired user code is audited as a failed approval, without the code (found in review)", async () => {
  const c = await newCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  for (const code of ["BDFG-HJKL", "WXYZ-BCDF"]) expect((await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: code, approve: true } })).status).toBe(404);
  const failures = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.device.approve' AND outcome = 'failure'").all();
  expect(failures).toEqual([{ reason: "no pending login with that code" }, { reason: "no pending login with that code" }]);
  const everything = JSON.stringify(c.kernel.store.db.query("SELECT * FROM audit_events").all());
  expect(everything).not.toContain("BDFG");
});
