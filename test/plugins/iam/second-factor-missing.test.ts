/**
 * A right password sent without the second factor it needs is a login attempt like any other:
 * audited, since it tells the owner that someone knows the password (found in review).
 */
import { expect, test } from "bun:test";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("a right password without its TOTP code is audited as a failed login, without the password", async () => {
  const c = await newCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const start = await c.send("POST", "/v1/iam/me/mfa/totp", session);
  const code = totp(base32Decode(start.body.secret), c.clock.now());
  expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code, current_password: c.owner.password } })).status).toBe(200);

  const asked = await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password } });
  expect(asked.body.code).toBe("totp_required");
  const failures = c.kernel.store.db.query("SELECT * FROM audit_events WHERE action = 'iam.login' AND outcome = 'failure'").all() as Array<Record<string, unknown>>;
  expect(failures.map((e) => e.reason)).toEqual(["second factor missing"]);
  expect(JSON.stringify(failures)).not.toContain(c.owner.password);
});
