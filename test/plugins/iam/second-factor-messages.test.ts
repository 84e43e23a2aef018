/**
 * A right password with a wrong second factor said "The email or password is wrong.", on the
 * API and on the device approval page, and the page asked for a missing code in the API's words
 * (send `totp`) (found in an operator's walkthrough). A right password is told apart already by
 * totp_required when the code is missing, so naming the code tells an attacker nothing more.
 */
import { describe, expect, test } from "bun:test";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });

/** The owner, enrolled in TOTP; a code for the current step, which the enrolment did not use. */
async function enrolledOwner() {
  const c = await newCitadel({ config: { rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } } });
  const session = await c.login(c.owner.email, c.owner.password);
  const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", session)).body.secret);
  const confirmed = await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } });
  expect(confirmed.status).toBe(200);
  c.clock.advance(30_000);
  const wrongCode = String((Number(totp(secret, c.clock.now())) + 1) % 1_000_000).padStart(6, "0");
  return { c, wrongCode, credentials: { email: c.owner.email, password: c.owner.password } };
}

describe("POST /v1/iam/login", () => {
  test("a wrong TOTP code or recovery code is named; a wrong password is not told apart from an unknown email", async () => {
    const { c, wrongCode, credentials } = await enrolledOwner();
    const login = async (json: Record<string, string>) => {
      const res = await c.send("POST", "/v1/iam/login", undefined, { json });
      return [res.status, res.body.detail];
    };
    expect(await login({ ...credentials, totp: wrongCode })).toEqual([401, "The TOTP code is wrong, or was used before."]);
    expect(await login({ ...credentials, recovery_code: "aaaa-bbbb-cccc-dddd" })).toEqual([401, "The recovery code is wrong, or was used before."]);
    expect(await login({ ...credentials, password: "wrong-password-1", totp: wrongCode })).toEqual([401, "The email or password is wrong."]);
    expect(await login({ email: "nobody@example.org", password: "wrong-password-1", totp: wrongCode })).toEqual([401, "The email or password is wrong."]);
  });
});

describe("the device approval page", () => {
  test("a missing code is asked for in the form's words; a wrong one is named", async () => {
    const { c, wrongCode, credentials } = await enrolledOwner();
    const start = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI" }));
    const approve = async (fields: Record<string, string>) =>
      (await c.send("POST", "/oauth/device", undefined, form({ user_code: start.body.user_code, ...credentials, decision: "approve", ...fields }))).text;

    const missing = await approve({});
    expect(missing).toContain("This account uses two-factor authentication: enter the code your authenticator app shows as the TOTP code, and approve again.");
    expect(missing).not.toContain("recovery_code");
    expect(missing).not.toContain("`totp`");
    expect(await approve({ totp: wrongCode })).toContain("The TOTP code is wrong, or was used before.");
    expect(await approve({ password: "wrong-password-1", totp: wrongCode })).toContain("The email or password is wrong.");
  });
});
