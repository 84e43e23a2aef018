/**
 * An operator resets the password of a user who lost it (found in review: docs/identity.md and
 * `citadel recover` said operators reset anyone else "through the API", but no route set another
 * user's password; mfa-reset only turned TOTP off).
 */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const PASSWORD = "correct-horse-battery-9";
const newCitadel = stoppedAfterEach();
const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });

async function withUser() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const user = await c.addUser(operator, "forgetful@example.org", "editor");
  /** Sends the request, and again with the confirmation token the first answer asks for. */
  const confirmed = async (path: string, token: string) => {
    const asked = await c.send("POST", path, token);
    if (asked.status !== 428) return asked;
    return c.send("POST", path, token, { headers: { "x-citadel-confirm": asked.body.confirmation_token } });
  };
  return { c, operator, user, confirmed };
}

describe("an operator resets a user's password", () => {
  test("after confirmation: a one-time password shown once, the user's logins ended and approved CLI logins denied, audited; their tokens stay", async () => {
    const { c, operator, user, confirmed } = await withUser();
    const pat = (await c.send("POST", "/v1/iam/me/tokens", user.token, { json: { name: "ci", scopes: ["read", "iam:self"] } })).body.token as string;
    // A CLI login picked up (a device token), and one approved but not yet picked up.
    const device = async () => (await c.send("POST", "/oauth/device/code", undefined, form({ scope: "read iam:self" }))).body;
    const picked = await device();
    const waiting = await device();
    for (const d of [picked, waiting]) expect((await c.send("POST", "/v1/iam/device/approve", user.token, { json: { user_code: d.user_code, approve: true } })).status).toBe(200);
    const poll = (d: { device_code: string }) => c.send("POST", "/oauth/token", undefined, form({ grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: d.device_code }));
    const cli = (await poll(picked)).body.access_token as string;

    c.clock.advance(10_000); // the device flow spent the address's rate_limit.auth bucket
    const path = `/v1/iam/users/${user.id}/password/reset`;
    expect((await c.send("POST", path, operator)).status).toBe(428);
    expect((await c.send("GET", "/v1/iam/me", user.token)).status).toBe(200); // nothing done yet
    const reset = await confirmed(path, operator);
    expect(reset.status).toBe(200);
    expect(reset.body.user).toMatchObject({ id: user.id, email: "forgetful@example.org", must_change_password: true });
    const password = reset.body.password as string;
    expect(password.length).toBeGreaterThanOrEqual(20);

    expect((await c.send("GET", "/v1/iam/me", user.token)).status).toBe(401); // the session ended
    expect((await c.send("GET", "/v1/iam/me", cli)).status).toBe(401); // the CLI login too
    expect((await poll(waiting)).body.error).toBe("access_denied");
    expect((await c.send("GET", "/v1/iam/me", pat)).status).toBe(200); // made on purpose: it stays

    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: "forgetful@example.org", password: PASSWORD } })).status).toBe(401);
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: "forgetful@example.org", password } });
    expect([login.status, login.body.user.must_change_password]).toEqual([200, true]);
    expect((await c.send("GET", "/v1/iam/orgs", login.body.token)).status).toBe(403); // until it is replaced

    const operatorId = (await c.send("GET", "/v1/iam/me", operator)).body.id;
    const events = c.kernel.store.db.query("SELECT outcome, resource_id, actor_user FROM audit_events WHERE action = 'iam.password.reset'").all();
    expect(events).toEqual([{ outcome: "success", resource_id: user.id, actor_user: operatorId }]);
  });

  test("only an operator, only for someone else, only for a user who exists", async () => {
    const { c, operator, user, confirmed } = await withUser();
    const operatorId = (await c.send("GET", "/v1/iam/me", operator)).body.id;
    expect((await confirmed(`/v1/iam/users/${operatorId}/password/reset`, user.token)).status).toBe(403); // not an operator
    expect((await confirmed(`/v1/iam/users/${operatorId}/password/reset`, operator)).status).toBe(403); // one's own takes the current one
    expect((await confirmed("/v1/iam/users/usr_nobody/password/reset", operator)).status).toBe(404);
    expect((await c.send("GET", "/v1/iam/me", user.token)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", operator)).status).toBe(200);
  });

  test("citadel recover, for an operator only, names the command that resets anyone else's password", async () => {
    const { c } = await withUser();
    await expect(iamServiceOf(c.kernel.store)!.recoverOperator("forgetful@example.org")).rejects.toThrow("citadel user password-reset");
  });
});
