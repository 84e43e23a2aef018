/**
 * A password change, an MFA reset and `citadel recover` end logins — sessions, CLI logins and
 * the short-lived tokens made from them — but not the personal access tokens and API keys
 * made with them, as docs/identity.md says (found in review: they went too, CI's tokens with them).
 */
import { expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const exchange = (subject: string) => ({
  body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: subject, scope: "system:read", expires_in: "600" }).toString(),
  headers: { "content-type": "application/x-www-form-urlencoded" },
});

test("a password change and a recovery end logins; PATs made with them stay, with what they made", async () => {
  const c = await testCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  // A CLI login (the device flow), as `citadel login` makes: the PAT below is made with it.
  const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });
  const start = (await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI", scope: "read write iam:self" }))).body;
  expect((await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: start.user_code, approve: true } })).status).toBe(200);
  const other = (await c.send("POST", "/oauth/token", undefined, form({ grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: start.device_code }))).body.access_token as string;
  const pat = (await c.send("POST", "/v1/iam/me/tokens", other, { json: { name: "ci", scopes: ["read"] } })).body.token as string;
  const exchanged = await c.send("POST", "/oauth/token", undefined, exchange(pat));
  expect(exchanged.status).toBe(200);
  const workload = exchanged.body.access_token as string; // made from the PAT: it stays with it
  const whoami = (token: string) => c.send("GET", "/v1/system/info", token).then((r) => r.status);
  expect([await whoami(pat), await whoami(workload)]).toEqual([200, 200]);

  expect((await c.send("POST", "/v1/iam/me/password", session, { json: { current_password: c.owner.password, new_password: "a-new-passphrase-2026" } })).status).toBe(200);
  expect([await whoami(other), await whoami(pat), await whoami(workload), await whoami(session)]).toEqual([401, 200, 200, 200]);

  await iamServiceOf(c.kernel.store)!.recoverOperator(c.owner.email);
  expect(await whoami(session)).toBe(401);
  // The PAT is not revoked (it waits, as everything of the user's, for the one-time password to be replaced).
  const revoked = c.kernel.store.db.query("SELECT kind, revoked_at IS NOT NULL AS revoked FROM credentials WHERE kind IN ('pat', 'workload') ORDER BY kind").all();
  expect(revoked).toEqual([{ kind: "pat", revoked: 0 }, { kind: "workload", revoked: 0 }]);
  await c.stop();
});

test("any credential may log itself out, whatever its scopes; logging out everywhere still needs a login session", async () => {
  const c = await testCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const narrow = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "narrow", scopes: ["system:read"] } })).body.token as string;
  expect((await c.send("GET", "/v1/iam/me", narrow)).status).toBe(403); // no iam:self
  expect((await c.send("POST", "/v1/iam/logout", narrow, { json: { everywhere: true } })).status).toBe(403);
  expect((await c.send("POST", "/v1/iam/logout", narrow, { json: {} })).status).toBe(200);
  expect((await c.send("GET", "/v1/system/info", narrow)).status).toBe(401);
  expect((await c.send("GET", "/v1/system/info", session)).status).toBe(200); // its maker stays
  await c.stop();
});

test("an API key and a workload token exchanged from it log themselves out (found in review: 403, 'this needs a user's credential')", async () => {
  const c = await testCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
  const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "system", name: "probe", scopes: ["system:read"] } })).body.token as string;
  const workload = (await c.send("POST", "/oauth/token", undefined, exchange(key))).body.access_token as string;
  const info = (token: string) => c.send("GET", "/v1/system/info", token).then((r) => r.status);
  expect([await info(key), await info(workload)]).toEqual([200, 200]);

  expect((await c.send("POST", "/v1/iam/logout", workload, { json: {} })).status).toBe(200);
  expect([await info(key), await info(workload)]).toEqual([200, 401]); // its maker stays
  expect((await c.send("POST", "/v1/iam/logout", key, { json: { everywhere: true } })).status).toBe(403); // a key has no user's sessions to end
  expect((await c.send("POST", "/v1/iam/logout", key, { json: {} })).status).toBe(200);
  expect(await info(key)).toBe(401);
  expect(await info(session)).toBe(200);
  const events = c.kernel.store.db.query("SELECT outcome, actor_token FROM audit_events WHERE action = 'iam.logout' ORDER BY seq").all();
  expect(events).toHaveLength(2);
  await c.stop();
});

test("logging out everywhere ends every login session and CLI login, and denies one approved but not picked up; PATs stay (found in review: CLI logins stayed)", async () => {
  const c = await testCitadel();
  const session = await c.login(c.owner.email, c.owner.password);
  const other = await c.login(c.owner.email, c.owner.password);
  const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });
  const device = async () => (await c.send("POST", "/oauth/device/code", undefined, form({ scope: "read iam:self" }))).body;
  const picked = await device();
  const waiting = await device();
  for (const d of [picked, waiting]) expect((await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: d.user_code, approve: true } })).status).toBe(200);
  const poll = (d: { device_code: string }) => c.send("POST", "/oauth/token", undefined, form({ grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: d.device_code }));
  const cli = (await poll(picked)).body.access_token as string;
  const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "ci", scopes: ["read"] } })).body.token as string;
  const patFromCli = (await c.send("POST", "/v1/iam/me/tokens", cli, { json: { name: "ci2", scopes: ["read"] } })).body.token as string;
  c.clock.advance(10_000); // the device flow spent the address's rate_limit.auth bucket

  expect((await c.send("POST", "/v1/iam/logout", session, { json: { everywhere: true } })).status).toBe(200);
  const info = (token: string) => c.send("GET", "/v1/system/info", token).then((r) => r.status);
  expect([await info(session), await info(other), await info(cli)]).toEqual([401, 401, 401]);
  expect([await info(pat), await info(patFromCli)]).toEqual([200, 200]); // made on purpose
  expect((await poll(waiting)).body.error).toBe("access_denied");
  await c.stop();
});
