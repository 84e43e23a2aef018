/**
 * Privilege escalation: each test is a way a credential once reached further than it should
 * (found in a security review), kept so that it stays closed.
 */
import { describe, expect, test } from "bun:test";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

async function owner() {
  const c = await testCitadel();
  return { c, session: await c.login(c.owner.email, c.owner.password), org: c.owner.organization };
}

describe("a token reaches no further than the one that made it", () => {
  test("a narrow token cannot rotate (and so take over) a broader one", async () => {
    const { c, session } = await owner();
    const broad = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "broad", scopes: ["write", "iam:admin", "iam:self"] } });
    const narrow = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "narrow", scopes: ["iam:self"] } });
    const rotated = await c.send("POST", `/v1/iam/me/tokens/${broad.body.id}/rotate`, narrow.body.token);
    expect(rotated.status).toBe(403);
    expect(rotated.body.token).toBeUndefined();
    // The broad token still works: nothing was rotated.
    expect((await c.send("GET", "/v1/iam/me", broad.body.token)).status).toBe(200);
  });

  test("a token revokes the tokens it made (the CI token made from a CLI login), never its maker or a sibling (found in review)", async () => {
    const { c, session } = await owner();
    const maker = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "cli", scopes: ["read", "iam:self"] } })).body;
    const child = (await c.send("POST", "/v1/iam/me/tokens", maker.token, { json: { name: "ci", scopes: ["iam:self"] } })).body;
    const sibling = (await c.send("POST", "/v1/iam/me/tokens", maker.token, { json: { name: "ci2", scopes: ["iam:self"] } })).body;
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${maker.id}`, child.token)).status).toBe(403); // not its maker
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${sibling.id}`, child.token)).status).toBe(403); // nor a sibling
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${child.id}`, maker.token)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", child.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/iam/me", sibling.token)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", maker.token)).status).toBe(200);
  });

  test("a restricted token's child keeps its organization, workspace, and expiry bound", async () => {
    const { c, session, org } = await owner();
    const ws = await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "ws1" } });
    const parent = await c.send("POST", "/v1/iam/me/tokens", session, {
      json: { name: "r", scopes: ["iam:self", "iam:read"], workspace: ws.body.id, organization: org, expires_in_days: 1 },
    });
    const child = await c.send("POST", "/v1/iam/me/tokens", parent.body.token, { json: { name: "child", scopes: ["iam:read"], expires_in_days: 365 } });
    expect(child.status).toBe(200);
    expect([child.body.organization, child.body.workspace]).toEqual([org, ws.body.id]);
    expect(Date.parse(child.body.expires_at)).toBeLessThanOrEqual(Date.parse(parent.body.expires_at));
  });

  test("deleting a workspace revokes the tokens restricted to it, and what they made (found in review: they still authenticated)", async () => {
    const { c, session, org } = await owner();
    const ws = await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "gone" } });
    const restricted = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "r", scopes: ["iam:self", "iam:read"], workspace: ws.body.id, organization: org } });
    const child = await c.send("POST", "/v1/iam/me/tokens", restricted.body.token, { json: { name: "child", scopes: ["iam:read"] } });
    const unrestricted = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "u", scopes: ["iam:self", "iam:read"] } });
    expect((await c.send("GET", "/v1/iam/me", restricted.body.token)).status).toBe(200);
    const asked = await c.send("DELETE", `/v1/iam/workspaces/${ws.body.id}`, session);
    expect((await c.send("DELETE", `/v1/iam/workspaces/${ws.body.id}`, session, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", restricted.body.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/iam/orgs", child.body.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/iam/me", unrestricted.body.token)).status).toBe(200);
  });

  test("a child's allowlist can only narrow its maker's: a range outside it is refused, not replaced (found in review)", async () => {
    const { c, session } = await owner();
    const parent = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:self", "iam:read"], ip_allowlist: ["127.0.0.0/8"] } });
    const narrower = await c.send("POST", "/v1/iam/me/tokens", parent.body.token, { json: { name: "n", scopes: ["iam:read"], ip_allowlist: ["127.0.0.1/32"] } });
    expect([narrower.status, narrower.body.ip_allowlist]).toEqual([200, ["127.0.0.1/32"]]);
    const wider = await c.send("POST", "/v1/iam/me/tokens", parent.body.token, { json: { name: "w", scopes: ["iam:read"], ip_allowlist: ["127.0.0.1/32", "10.0.0.0/8"] } });
    expect([wider.status, wider.body.detail]).toEqual([422, "10.0.0.0/8 is not within the address ranges of the credential that makes this one (127.0.0.0/8)"]);
    const none = await c.send("POST", "/v1/iam/me/tokens", parent.body.token, { json: { name: "i", scopes: ["iam:read"] } });
    expect(none.body.ip_allowlist).toEqual(["127.0.0.0/8"]); // inherited
  });

  test("a workload token from exchange cannot mint a long-lived PAT, and dies with its parent", async () => {
    const { c, session } = await owner();
    const pat = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:self", "iam:read"] } });
    const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: pat.body.token, scope: "iam:self iam:read", expires_in: 60 } });
    expect(exchanged.status).toBe(200);
    const minted = await c.send("POST", "/v1/iam/me/tokens", exchanged.body.access_token, { json: { name: "long", scopes: ["iam:read"], expires_in_days: 365 } });
    if (minted.status === 200) expect(Date.parse(minted.body.expires_at)).toBeLessThanOrEqual(c.clock.now() + 60_000);
    else expect(minted.status).toBe(403);
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${pat.body.id}`, session)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/orgs", exchanged.body.access_token)).status).toBe(401);
  });

  test("token exchange: a workload token makes nothing, a token is not exchanged outside its allowlist, and every refusal is audited (found in review)", async () => {
    const { c, session } = await owner();
    const exchange = (subject: string) => c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: subject, scope: "iam:read" } });
    const pat = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:read"] } });
    const workload = await exchange(pat.body.token);
    expect(workload.status).toBe(200);
    const again = await exchange(workload.body.access_token);
    expect([again.status, again.body.error]).toEqual([400, "invalid_request"]);
    const fenced = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "fenced", scopes: ["iam:read"], ip_allowlist: ["127.0.0.0/8", "203.0.113.0/24"] } });
    const outside = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: fenced.body.token, scope: "iam:read" }, headers: { "x-test-peer": "198.51.100.7" } });
    expect([outside.status, outside.body.error]).toEqual([400, "invalid_request"]);
    const unknown = await exchange(`${pat.body.token.slice(0, -4)}AAAA`);
    expect([unknown.status, unknown.body.error]).toEqual([400, "invalid_request"]);
    const wider = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: pat.body.token, scope: "iam:write" } });
    expect([wider.status, wider.body.error]).toEqual([400, "invalid_scope"]);
    const rejected = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'auth.token.reject' ORDER BY seq").all() as Array<{ reason: string }>;
    expect(rejected.map((r) => r.reason)).toEqual([
      "token exchange: exchange a personal access token, device token or API key",
      "token exchange: subject token used from outside its allowed addresses",
      expect.stringMatching(/^token exchange: /),
      "token exchange: the scopes asked for exceed the subject token's",
    ]);
    expect(JSON.stringify(rejected)).not.toContain(pat.body.token);
  });

  test("approving a device needs a session: a narrow PAT cannot mint a broad device token", async () => {
    const { c, session } = await owner();
    const narrow = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "narrow", scopes: ["iam:self"] } });
    const start = await c.send("POST", "/oauth/device/code", undefined, { json: { scope: "write iam:admin sys:keys" } });
    const approve = await c.send("POST", "/v1/iam/device/approve", narrow.body.token, { json: { user_code: start.body.user_code, approve: true } });
    expect([approve.status, approve.body.code]).toEqual([403, "forbidden"]);
    c.clock.advance(6000);
    const token = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: start.body.device_code } });
    expect(token.body.access_token).toBeUndefined();
  });
});

describe("service keys", () => {
  test("a workload token from a service key stops when the service is deactivated", async () => {
    const { c, session, org } = await owner();
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const key = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "system", name: "k", scopes: ["system:read"] } });
    const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: key.body.token, scope: "system:read" } });
    expect((await c.send("GET", "/v1/system/info", exchanged.body.access_token)).status).toBe(200);
    await c.send("DELETE", `/v1/iam/orgs/${org}/services/system`, session);
    expect((await c.send("GET", "/v1/system/info", key.body.token)).status).toBe(403);
    expect((await c.send("GET", "/v1/system/info", exchanged.body.access_token)).status).toBe(403);
  });

  test("a workload token exchanged from a key is still a key: no operator rights of its maker, no admins-only environment (found in review)", async () => {
    const { c, session, org } = await owner(); // the owner is an operator too
    await c.send("PUT", `/v1/iam/orgs/${org}/services/dns`, session);
    const dnsKey = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "dns", name: "ci", scopes: ["dns:read", "dns:write"] } })).body.token as string;
    const exchange = async (key: string, scope: string) => (await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: key, scope } })).body.access_token as string;
    const dnsWorkload = await exchange(dnsKey, "dns:read dns:write");
    expect((await c.send("GET", "/v1/dns/tsig-keys", dnsKey)).status).toBe(403); // operators only
    expect((await c.send("GET", "/v1/dns/tsig-keys", dnsWorkload)).status).toBe(403);
    expect((await c.send("POST", "/v1/dns/tsig-keys", dnsWorkload, { json: { name: "minted", algorithm: "hmac-sha256" } })).status).toBe(403);

    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "prod" } })).body.id as string;
    await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, session);
    const admin = await c.addUser(session, "maker@example.org", "admin");
    const secretsKey = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, admin.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:read"] } })).body.token as string;
    const secret = `/v1/secrets/workspaces/${ws}/environments/production/secrets/Y`;
    await c.send("PUT", secret, session, { json: { value: "prod-secret" } });
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production`, session, { json: { protection: "admins" } });
    await c.send("PUT", `/v1/iam/workspaces/${ws}/members/${admin.id}`, session, { json: { role: "viewer" } });
    const secretsWorkload = await exchange(secretsKey, "secrets:read");
    expect((await c.send("GET", secret, secretsKey)).status).toBe(403);
    const read = await c.send("GET", secret, secretsWorkload);
    expect(read.status).toBe(403);
    expect(read.text).not.toContain("prod-secret");
  });

  test("a key's scopes are within the maker's: an iam:write token cannot make a system:read key", async () => {
    const { c, session, org } = await owner();
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const pat = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:write"] } });
    const key = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, pat.body.token, { json: { service: "system", name: "k2", scopes: ["system:read"] } });
    expect(key.status).toBe(403);
    expect(key.body.token).toBeUndefined();
  });
});

describe("a service key acts within its maker's role (found in review)", () => {
  test("narrowed in a workspace, removed, or demoted, the maker's key follows: no write where they may only read, no admins-only environment, nothing after they leave", async () => {
    const { c, session, org } = await owner();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "prod" } })).body.id as string;
    await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, session);
    const admin = await c.addUser(session, "maker@example.org", "admin");
    const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, admin.token, { json: { service: "secrets", name: "ci", scopes: ["secrets:write", "secrets:read"] } })).body.token as string;
    const secret = (env: string, name: string) => `/v1/secrets/workspaces/${ws}/environments/${env}/secrets/${name}`;
    await c.send("PUT", secret("production", "Y"), session, { json: { value: "prod" } });
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production`, session, { json: { protection: "admins" } });
    expect((await c.send("PUT", secret("development", "X"), key, { json: { value: "while admin" } })).status).toBe(200);
    expect((await c.send("GET", secret("production", "Y"), key)).status).toBe(200);

    expect((await c.send("PUT", `/v1/iam/workspaces/${ws}/members/${admin.id}`, session, { json: { role: "viewer" } })).status).toBe(200);
    const write = await c.send("PUT", secret("development", "X"), key, { json: { value: "as a viewer" } });
    expect([write.status, write.body.detail]).toEqual([403, "The member who made this API key is viewer here, which does not allow edit."]);
    expect((await c.send("GET", secret("development", "X"), key)).status).toBe(200); // a viewer reads
    expect((await c.send("GET", secret("production", "Y"), key)).status).toBe(403); // admins only

    // A membership that ends otherwise than by removal (which revokes the key: member-removal.test.ts) stops it too.
    c.kernel.store.db.query("DELETE FROM memberships WHERE organization_id = ? AND user_id = ?").run(org, admin.id);
    const gone = await c.send("GET", secret("development", "X"), key);
    expect([gone.status, gone.body.detail]).toEqual([403, "The member who made this API key is no longer a member of this organization."]);
  });

  test("a key made before keys named their maker gets its maker from the audit log (migration 0006)", async () => {
    const { c, session, org } = await owner();
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const admin = await c.addUser(session, "old-maker@example.org", "admin");
    const made = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, admin.token, { json: { service: "system", name: "old", scopes: ["system:read"] } })).body;
    const db = c.kernel.store.db;
    db.query("UPDATE credentials SET user_id = NULL WHERE id = ?").run(made.id); // as a key of the version before
    const { iamMigrations } = await import("../../../plugins/iam/migrations.ts");
    db.run(iamMigrations.find((m) => m.id === "0006_service_key_makers")!.up as string);
    expect(db.query("SELECT user_id FROM credentials WHERE id = ?").get(made.id)).toEqual({ user_id: admin.id });
    await c.send("DELETE", `/v1/iam/orgs/${org}/members/${admin.id}`, session);
    expect((await c.send("GET", "/v1/system/info", made.token)).status).toBe(401); // revoked with the membership, like a new key
  });

  test("a key made by an operator is not an operator, and a deleted maker's keys are revoked", async () => {
    const { c, session, org } = await owner(); // the first owner is the appliance's operator
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "system", name: "probe", scopes: ["system:read"] } })).body.token as string;
    expect((await c.send("GET", "/v1/system/info", key)).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/users", key)).status).toBe(403); // operator-only: the key is not its maker
    const admin = await c.addUser(session, "leaver@example.org", "admin");
    const theirs = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, admin.token, { json: { service: "system", name: "theirs", scopes: ["system:read"] } })).body.token as string;
    expect((await c.send("GET", "/v1/system/info", theirs)).status).toBe(200);
    const asked = await c.send("DELETE", `/v1/iam/users/${admin.id}`, session);
    expect((await c.send("DELETE", `/v1/iam/users/${admin.id}`, session, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", theirs)).status).toBe(401);
  });
});

describe("owners, under concurrent changes (found in review)", () => {
  test("an admin cannot unmake an owner made at the same moment, and an organization never ends with no owner", async () => {
    const { c, session, org } = await owner();
    const me = (await c.send("GET", "/v1/iam/me", session)).body.id as string;
    const admin = await c.addUser(session, "admin@example.org", "admin");
    const target = await c.addUser(session, "target@example.org", "editor");
    // Queued in this order, committed in one batch: the promotion first, then the others see it.
    const [promoted, steppedDown, demoted] = await Promise.all([
      c.send("PUT", `/v1/iam/orgs/${org}/members/${target.id}`, session, { json: { role: "owner" } }),
      c.send("PUT", `/v1/iam/orgs/${org}/members/${me}`, session, { json: { role: "admin" } }),
      c.send("PUT", `/v1/iam/orgs/${org}/members/${target.id}`, admin.token, { json: { role: "viewer" } }),
    ]);
    expect([promoted.status, steppedDown.status]).toEqual([200, 200]);
    expect([demoted.status, demoted.body.detail]).toEqual([403, "only an owner may make or unmake owners"]);
    const roles = c.kernel.store.db.query("SELECT role FROM memberships WHERE organization_id = ? AND role = 'owner'").all(org);
    expect(roles).toHaveLength(1); // the target, made owner; the first owner stepped down after
  });
});

describe("what a credential makes never outlives it", () => {
  test("a workload token makes no API key; a PAT's key inherits its expiry and allowlist and is revoked with it", async () => {
    const { c, session, org } = await owner();
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const pat = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:write", "system:read"], expires_in_days: 1, ip_allowlist: ["127.0.0.1/32"] } });
    const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: pat.body.token, scope: "iam:write system:read" } });
    const fromWorkload = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, exchanged.body.access_token, { json: { service: "system", name: "k", scopes: ["system:read"], expires_in_days: 365 } });
    expect([fromWorkload.status, fromWorkload.body.token]).toEqual([403, undefined]);

    const key = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, pat.body.token, { json: { service: "system", name: "k", scopes: ["system:read"], expires_in_days: 365 } });
    expect(key.status).toBe(200);
    expect(Date.parse(key.body.expires_at)).toBe(Date.parse(pat.body.expires_at));
    expect(key.body.ip_allowlist).toEqual(["127.0.0.1/32"]);
    expect((await c.send("GET", "/v1/system/info", key.body.token)).status).toBe(200);
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${pat.body.id}`, session)).status).toBeLessThan(300);
    expect((await c.send("GET", "/v1/system/info", key.body.token)).status).toBe(401);
    // Made with a login session, a key stands on its own.
    const own = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "system", name: "k3", scopes: ["system:read"], expires_in_days: 365 } });
    expect(Date.parse(own.body.expires_at) - c.clock.now()).toBe(365 * 86_400_000);
  });

  test("rotating a token (the answer to a leak) revokes what it made; a deleted user's tokens take what they made along", async () => {
    const { c, session, org } = await owner();
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session);
    const maker = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "maker", scopes: ["read", "iam:self", "iam:write", "system:read"] } });
    const child = await c.send("POST", "/v1/iam/me/tokens", maker.body.token, { json: { name: "child", scopes: ["read"] } });
    const rotated = await c.send("POST", `/v1/iam/me/tokens/${maker.body.id}/rotate`, session);
    expect(rotated.status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", maker.body.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/system/info", child.body.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/system/info", rotated.body.token)).status).toBe(200);

    const bob = await c.addUser(session, "bob@example.org", "admin");
    const bobsPat = await c.send("POST", "/v1/iam/me/tokens", bob.token, { json: { name: "b", scopes: ["iam:write", "system:read"] } });
    const bobsKey = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, bobsPat.body.token, { json: { service: "system", name: "k", scopes: ["system:read"] } });
    expect((await c.send("GET", "/v1/system/info", bobsKey.body.token)).status).toBe(200);
    const asked = await c.send("DELETE", `/v1/iam/users/${bob.id}`, session);
    expect((await c.send("DELETE", `/v1/iam/users/${bob.id}`, session, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", bobsKey.body.token)).status).toBe(401);
  });

  test("logging the CLI out (citadel logout) leaves the tokens made from it; revoking its device token does not", async () => {
    const { c, session } = await owner();
    const deviceToken = async () => {
      const start = await c.send("POST", "/oauth/device/code", undefined, { json: { scope: "read iam:self" } });
      await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: start.body.user_code, approve: true } });
      c.clock.advance(6000);
      return (await c.send("POST", "/oauth/token", undefined, { json: { grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: start.body.device_code } })).body.access_token as string;
    };
    const laptop = await deviceToken();
    expect(laptop).toMatch(/^citadel_pat_/);
    const ci = await c.send("POST", "/v1/iam/me/tokens", laptop, { json: { name: "ci", scopes: ["read"] } });
    expect(ci.status).toBe(200);
    // A token may end itself, not its owner's login sessions.
    const everywhere = await c.send("POST", "/v1/iam/logout", laptop, { json: { everywhere: true } });
    expect([everywhere.status, everywhere.body.detail]).toEqual([403, "log in (a session, not a token) to log out everywhere"]);
    expect((await c.send("GET", "/v1/iam/me", session)).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/logout", laptop, { json: {} })).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", laptop)).status).toBe(401);
    expect((await c.send("GET", "/v1/system/info", ci.body.token)).status).toBe(200);
    // A stolen laptop: its device token is revoked, and what was made with it goes too.
    const stolen = await deviceToken();
    const minted = await c.send("POST", "/v1/iam/me/tokens", stolen, { json: { name: "thief", scopes: ["read"] } });
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${stolen.split("_")[2]!}`, session)).status).toBeLessThan(300);
    expect((await c.send("GET", "/v1/system/info", minted.body.token)).status).toBe(401);
  });

  test("a PAT made by a PAT is revoked with its maker", async () => {
    const { c, session } = await owner();
    const maker = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "maker", scopes: ["read", "iam:self"] } });
    const child = await c.send("POST", "/v1/iam/me/tokens", maker.body.token, { json: { name: "child", scopes: ["read"] } });
    expect((await c.send("GET", "/v1/system/info", child.body.token)).status).toBe(200);
    await c.send("DELETE", `/v1/iam/me/tokens/${maker.body.id}`, session);
    expect((await c.send("GET", "/v1/system/info", child.body.token)).status).toBe(401);
  });
});

describe("sessions are a login's business", () => {
  test("a token cannot list the user's sessions (with their addresses) or end them; a session can", async () => {
    const { c, session } = await owner();
    const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["read", "iam:self"] } })).body.token;
    const listed = await c.send("GET", "/v1/iam/me/sessions", pat);
    expect([listed.status, listed.body.code]).toEqual([403, "forbidden"]);
    const mine = (await c.send("GET", "/v1/iam/me/sessions", session)).body.items as Array<{ id: string }>;
    expect(mine.length).toBeGreaterThan(0);
    expect((await c.send("DELETE", `/v1/iam/me/sessions/${mine[0]!.id}`, pat)).status).toBe(403);
    expect((await c.send("GET", "/v1/iam/me", session)).status).toBe(200);
  });
});

describe("the appliance keeps an operator", () => {
  test("the last operator cannot be deleted; with a second operator, one of the two can go", async () => {
    const { c, session } = await owner();
    const me = (await c.send("GET", "/v1/iam/me", session)).body.user?.id ?? (await c.send("GET", "/v1/iam/me", session)).body.id;
    const remove = async (id: string, token: string) => {
      const asked = await c.send("DELETE", `/v1/iam/users/${id}`, token);
      if (asked.status !== 428) return asked;
      return c.send("DELETE", `/v1/iam/users/${id}`, token, { headers: { "x-citadel-confirm": asked.body.confirmation_token } });
    };
    const refused = await remove(me, session);
    expect([refused.status, refused.body.detail]).toEqual([409, "The user is the last operator: make another operator first."]);
    expect((await c.send("GET", "/v1/iam/me", session)).status).toBe(200);
    // With a second operator, either one can go.
    const second = await c.send("POST", "/v1/iam/users", session, { json: { email: "second@example.org", password: "correct-horse-battery-9", operator: true } });
    expect(second.status).toBe(200);
    expect((await remove(second.body.user.id, session)).status).toBe(200);
    expect((await remove(me, session)).status).toBe(409); // the last one again
  });
});

describe("second-factor guesses (found in review)", () => {
  test("are limited per account, whatever address they come from; the right code works again once the lock has passed", async () => {
    const { c, session } = await owner();
    const user = await c.addUser(session, "mfa@example.org", "editor");
    const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", user.token)).body.secret);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", user.token, { json: { code: totp(secret, c.clock.now()), current_password: "correct-horse-battery-9" } })).status).toBe(200);
    c.clock.advance(60_000);
    const right = new Set([-1, 0, 1].map((d) => totp(secret, c.clock.now() + d * 30_000)));
    const wrong = (i: number) => {
      let code = String(100_000 + i);
      while (right.has(code)) code = String(Number(code) + 1);
      return code;
    };
    // Each guess from another /64, so that no per-address count ever applies.
    const attempt = (i: number, code: string) =>
      c.send("POST", "/v1/iam/login", undefined, { json: { email: "mfa@example.org", password: "correct-horse-battery-9", totp: code }, headers: { "x-test-peer": `2001:db8:2:${i.toString(16)}::1` } });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await attempt(i, wrong(i))).status);
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(statuses.slice(3)).toContain(429);
    expect(statuses.filter((s) => s === 401).length).toBeLessThan(11);
    expect((await attempt(100, totp(secret, c.clock.now()))).status).toBe(429); // even the right code waits
    c.clock.advance(16 * 60_000);
    expect((await attempt(101, totp(secret, c.clock.now()))).status).toBe(200);
  });
});

describe("the current password, asked to change it", () => {
  test("is not open to guessing: wrong guesses slow down and lock like logins, each audited, also when sent at once", async () => {
    const { c, session } = await owner();
    const change = (current: string) => c.send("POST", "/v1/iam/me/password", session, { json: { current_password: current, new_password: "a-new-passphrase-2026" } });
    // Sent at once, they are still counted one by one: past the third, the rest wait.
    const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => change(`wrong-guess-${i}`)));
    expect(burst.map((r) => r.status).sort()).toEqual([422, 422, 422, 429, 429]);
    const throttled = await change("wrong-guess-again");
    expect([throttled.status, throttled.body.code]).toEqual([429, "rate_limited"]);
    expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThan(0);
    // Even the right password waits: the guesser cannot tell it from a wrong one meanwhile.
    expect((await change(c.owner.password)).status).toBe(429);
    const failures = c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.password.change' AND outcome = 'failure'").get() as { n: number };
    expect(failures.n).toBe(3);
    // A stolen token cannot start a fresh count by minting more tokens: all tokens count as one.
    c.clock.advance(20_000); // the address's auth bucket refills
    const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "p", scopes: ["iam:self"] } })).body.token;
    const viaPat = async () => (await c.send("POST", "/v1/iam/me/password", pat, { json: { current_password: "guess", new_password: "a-new-passphrase-2026" } })).status;
    const minted: number[] = [];
    for (let i = 0; i < 4; i++) minted.push(await viaPat());
    expect(minted).toEqual([422, 422, 422, 429]);
    const child = (await c.send("POST", "/v1/iam/me/tokens", pat, { json: { name: "c", scopes: ["iam:self"] } })).body.token;
    expect((await c.send("POST", "/v1/iam/me/password", child, { json: { current_password: "guess", new_password: "a-new-passphrase-2026" } })).status).toBe(429);
    // Once the wait is over, the right password works, and clears the count.
    c.clock.advance(16 * 60_000);
    const again = await c.login(c.owner.email, c.owner.password);
    expect((await c.send("POST", "/v1/iam/me/password", again, { json: { current_password: c.owner.password, new_password: "a-new-passphrase-2026" } })).status).toBe(200);
  });
});

describe("accounts", () => {
  test("one TOTP code logs in once, even when sent three times at the same moment", async () => {
    const { c, session } = await owner();
    const enrol = await c.send("POST", "/v1/iam/me/mfa/totp", session);
    const secret = base32Decode(enrol.body.secret);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } })).status).toBe(200);
    c.clock.advance(30_000);
    const body = { email: c.owner.email, password: c.owner.password, totp: totp(secret, c.clock.now()) };
    // From three addresses (from one, the attempts would wait for each other: see below).
    const answers = await Promise.all([1, 2, 3].map((i) => c.send("POST", "/v1/iam/login", undefined, { json: body, headers: { "x-test-peer": `192.0.2.${i}` } })));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 401, 401]);
  });

  test("guesses sent at once from one address are checked one at a time, so the slowdown counts them all", async () => {
    const { c } = await owner();
    const guesses = await Promise.all(Array.from({ length: 9 }, (_, i) => c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: `wrong-guess-${i}` } })));
    const statuses = guesses.map((g) => g.status).sort();
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(3); // at most the slowdown's free tries
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(6);
    // The right password, once the wait is over, still works.
    c.clock.advance(16 * 60_000);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password } })).status).toBe(200);
  });

  test("MFA is enrolled with a session, not with a token", async () => {
    const { c, session } = await owner();
    const pat = await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "cli", scopes: ["read", "iam:self"] } });
    const enrol = await c.send("POST", "/v1/iam/me/mfa/totp", pat.body.token);
    expect(enrol.status).toBe(403);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password } })).status).toBe(200);
  });

  test("an admin cannot narrow an owner's role in a workspace", async () => {
    const { c, session, org } = await owner();
    const ws = await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "prod" } });
    const admin = await c.addUser(session, "admin@example.com", "admin");
    const me = await c.send("GET", "/v1/iam/me", session);
    const narrowed = await c.send("PUT", `/v1/iam/workspaces/${ws.body.id}/members/${me.body.id}`, admin.token, { json: { role: "viewer" } });
    expect(narrowed.status).toBe(403);
    expect((await c.send("GET", `/v1/iam/workspaces/${ws.body.id}`, session)).body.members ?? []).not.toContainEqual(expect.objectContaining({ user: me.body.id, role: "viewer" }));
  });
});
