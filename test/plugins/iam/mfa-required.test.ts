/**
 * An organization that requires MFA requires it of everyone who acts in it: of a service API
 * key's maker as of a member's session (found in review: a key made by a member without MFA kept
 * working after the organization required it, and so did the workload tokens exchanged from it).
 */
import { expect, test } from "bun:test";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const newCitadel = stoppedAfterEach();

test("a key whose maker has no TOTP is refused with mfa_required once the organization requires MFA, and works again once they enrol", async () => {
  const c = await newCitadel();
  const org = c.owner.organization;
  const owner = await c.login(c.owner.email, c.owner.password);
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, owner)).status).toBe(200);
  const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, admin.token, { json: { service: "system", name: "monitor", scopes: ["system:read"] } })).body.token as string;
  const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: key, scope: "system:read" } });
  const workload = exchanged.body.access_token as string;
  for (const token of [key, workload]) expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);

  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { require_mfa: true } })).status).toBe(200);
  const members = `/v1/iam/orgs/${org}/members`;
  for (const [token, path] of [[admin.token, members], [key, "/v1/system/info"], [workload, "/v1/system/info"]] as const) {
    const refused = await c.send("GET", path, token);
    expect([refused.status, refused.body.code]).toEqual([403, "mfa_required"]);
  }
  await c.kernel.store.write(() => undefined); // writes run in order: the refusals' events are in
  const denials = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'auth.permission.deny' ORDER BY seq").all();
  expect(denials.at(-1)?.reason).toBe("GET /v1/system/info: this organization requires two-factor authentication, which the member who made this API key has not enrolled");

  // The maker enrols (a route about themselves alone: open to them meanwhile), and the key works again.
  const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", admin.token)).body.secret);
  expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", admin.token, { json: { code: totp(secret, c.clock.now()), current_password: "correct-horse-battery-9" } })).status).toBe(200);
  expect((await c.send("GET", members, admin.token)).status).toBe(200);
  for (const token of [key, workload]) expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);
});

test("an organization's settings (MFA required, allowlist, name) change only with iam:admin, which no coarse scope implies (found in review)", async () => {
  const c = await newCitadel();
  const org = c.owner.organization;
  const owner = await c.login(c.owner.email, c.owner.password);
  const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", owner)).body.secret);
  expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", owner, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } })).status).toBe(200);
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { require_mfa: true } })).status).toBe(200);

  const pat = async (scopes: string[]) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", scopes } })).body.token as string;
  const write = await pat(["write"]);
  for (const changes of [{ require_mfa: false }, { ip_allowlist: ["127.0.0.0/8"] }, { name: "renamed" }]) {
    const refused = await c.send("PATCH", `/v1/iam/orgs/${org}`, write, { json: changes });
    expect([refused.status, refused.body.code]).toEqual([403, "insufficient_scope"]);
  }
  expect((await c.send("GET", `/v1/iam/orgs/${org}`, owner)).body.require_mfa).toBe(true);
  expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, await pat(["iam:admin"]), { json: { require_mfa: false } })).status).toBe(200);
});
