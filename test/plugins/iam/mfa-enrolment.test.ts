/**
 * Enrolling a second factor: only the account's owner, who knows the password, may (found in
 * review: a stolen session enrolled a factor of its own, and the owner's next login asked for a
 * code they did not have).
 */
import { describe, expect, spyOn, test } from "bun:test";
import { PasswordHasher } from "../../../src/auth/password.ts";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

const PASSWORD = "correct-horse-battery-9"; // what c.addUser gives
const EMAIL = "enrols@example.org";
const newCitadel = stoppedAfterEach();

/** A Citadel with a user (an editor) logged in, their enrolment started: the secret their app would show. */
async function enrolmentStarted() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const user = await c.addUser(operator, EMAIL, "editor");
  const start = await c.send("POST", "/v1/iam/me/mfa/totp", user.token);
  expect(start.status).toBe(200);
  const code = () => totp(base32Decode(start.body.secret), c.clock.now());
  const confirm = (json: Record<string, string>) => c.send("POST", "/v1/iam/me/mfa/totp/confirm", user.token, { json });
  return { c, user, code, confirm };
}

const passwordOnlyLogin = (c: Awaited<ReturnType<typeof testCitadel>>) => c.send("POST", "/v1/iam/login", undefined, { json: { email: EMAIL, password: PASSWORD } });

const events = (c: Awaited<ReturnType<typeof testCitadel>>, action: string) =>
  c.kernel.store.db.query<{ outcome: string; reason: string | null }, [string]>("SELECT outcome, reason FROM audit_events WHERE action = ? ORDER BY seq").all(action);

/** Holds the next password check once it has run, until `resume()`: what a slow argon2id check lets other requests do meanwhile. */
function holdNextPasswordCheck() {
  const checked = Promise.withResolvers<void>();
  const resumed = Promise.withResolvers<void>();
  const verify = PasswordHasher.prototype.verify;
  const spy = spyOn(PasswordHasher.prototype, "verify").mockImplementationOnce(async function (this: PasswordHasher, encoded: string, password: string) {
    const ok = await verify.call(this, encoded, password);
    checked.resolve();
    await resumed.promise;
    return ok;
  });
  return { checked: checked.promise, resume: () => resumed.resolve(), restore: () => spy.mockRestore() };
}

describe("confirming an enrolment asks for the password", () => {
  test("without it, or with a wrong one, nothing is enabled and the password alone still logs in", async () => {
    const { c, code, confirm } = await enrolmentStarted();
    expect((await confirm({ code: code() })).status).toBe(422);
    const wrong = await confirm({ code: code(), current_password: "a-thief-guessing" });
    // The answer a password change gives to a wrong current password.
    expect([wrong.status, wrong.body.detail, wrong.body.errors?.[0]?.field]).toEqual([422, "the current password is wrong", "current_password"]);
    expect(events(c, "iam.mfa.enable")).toEqual([{ outcome: "failure", reason: "wrong current password" }]);
    expect((await passwordOnlyLogin(c)).status).toBe(200);

    const right = await confirm({ code: code(), current_password: PASSWORD });
    expect([right.status, right.body.recovery_codes?.length]).toEqual([200, 10]);
    expect((await passwordOnlyLogin(c)).body.code).toBe("totp_required");
  });

  test("wrong passwords slow down and lock as at a password change, counted with it", async () => {
    const { c, user, code, confirm } = await enrolmentStarted();
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) answers.push((await confirm({ code: code(), current_password: `guess-${i}` })).body.detail);
    const throttled = expect.stringMatching(/^Too many wrong current passwords/); // not the address's request rate
    expect(answers).toEqual(["the current password is wrong", "the current password is wrong", "the current password is wrong", throttled]);
    // One count for the session, whatever asks for the password: no fresh guesses by changing it instead.
    const change = await c.send("POST", "/v1/iam/me/password", user.token, { json: { current_password: "guess-4", new_password: "a-new-passphrase-2026" } });
    expect([change.status, change.body.detail]).toEqual([429, throttled]);
    expect((await confirm({ code: code(), current_password: PASSWORD })).body.detail).toEqual(throttled); // the right one waits too
  });

  test("a confirmation checked while the owner changes the password (ending the session) enables nothing", async () => {
    const { c, code, confirm } = await enrolmentStarted();
    const owner = await c.login(EMAIL, PASSWORD);
    const hold = holdNextPasswordCheck();
    try {
      const late = confirm({ code: code(), current_password: PASSWORD });
      await hold.checked;
      expect((await c.send("POST", "/v1/iam/me/password", owner, { json: { current_password: PASSWORD, new_password: "the-owners-new-passphrase" } })).status).toBe(200);
      hold.resume();
      expect((await late).status).toBe(401);
    } finally {
      hold.restore();
    }
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: EMAIL, password: "the-owners-new-passphrase" } })).status).toBe(200);
    expect(events(c, "iam.mfa.enable").filter((e) => e.outcome === "success")).toEqual([]);
  });
});

describe("two confirmations of one enrolment at once", () => {
  test("one enables, the other is refused (409): the recovery codes shown are the ones that work (found in review)", async () => {
    const { c, code, confirm } = await enrolmentStarted();
    const answers = await Promise.all([1, 2].map(() => confirm({ code: code(), current_password: PASSWORD })));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    const shown = answers.find((a) => a.status === 200)!.body.recovery_codes as string[];
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: EMAIL, password: PASSWORD, recovery_code: shown[0] } });
    expect(login.status).toBe(200);
    expect(events(c, "iam.mfa.enable")).toEqual([{ outcome: "success", reason: null }]);
  });

  test("a confirmation of a secret an enrolment started anew has replaced enables nothing", async () => {
    const { c, user, code, confirm } = await enrolmentStarted();
    const hold = holdNextPasswordCheck();
    try {
      const late = confirm({ code: code(), current_password: PASSWORD });
      await hold.checked;
      expect((await c.send("POST", "/v1/iam/me/mfa/totp", user.token)).status).toBe(200); // the app now holds another secret
      hold.resume();
      expect((await late).status).toBe(409);
    } finally {
      hold.restore();
    }
    expect((await passwordOnlyLogin(c)).status).toBe(200);
  });
});

test("a TOTP code typed in groups (123 456) confirms, logs in and turns TOTP off (found in review: refused, \"check the device's clock\")", async () => {
  const { c, code, confirm } = await enrolmentStarted();
  const grouped = (digits: string) => `${digits.slice(0, 3)} ${digits.slice(3)}`;
  expect((await confirm({ code: grouped(code()), current_password: PASSWORD })).status).toBe(200);
  c.clock.advance(30_000); // the enrolment's step is used up
  const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: EMAIL, password: PASSWORD, totp: grouped(code()) } });
  expect(login.status).toBe(200);
  c.clock.advance(30_000);
  expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", login.body.token, { json: { code: grouped(code()) } })).status).toBe(200);
});
