import { describe, expect, spyOn, test } from "bun:test";
import { PasswordHasher } from "../../../src/auth/password.ts";
import { checksum, parseToken } from "../../../src/auth/tokens.ts";
import { totp, base32Decode } from "../../../src/auth/totp.ts";
import { IamIdentity } from "../../../plugins/iam/identity.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const from = (address: string) => ({ headers: { "x-test-peer": address } });

/**
 * Holds the next password check once it has run, until `resume()`: what a slow argon2id check
 * lets other requests do meanwhile. With `rehash`, every hash counts as made with weaker
 * parameters (a login rehashes the password it checked).
 */
function holdNextPasswordCheck({ rehash = false } = {}) {
  const checked = Promise.withResolvers<void>();
  const resumed = Promise.withResolvers<void>();
  const verify = PasswordHasher.prototype.verify;
  const spies = [
    spyOn(PasswordHasher.prototype, "verify").mockImplementationOnce(async function (this: PasswordHasher, encoded: string, password: string) {
      const ok = await verify.call(this, encoded, password);
      checked.resolve();
      await resumed.promise;
      return ok;
    }),
    ...(rehash ? [spyOn(PasswordHasher.prototype, "needsRehash").mockReturnValue(true)] : []),
  ];
  return { checked: checked.promise, resume: () => resumed.resolve(), restore: () => spies.forEach((spy) => spy.mockRestore()) };
}

async function app() {
  const c = await testCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  return { c, operator, org: c.owner.organization };
}

describe("login and brute force", () => {
  test("a failed login says the same thing for a wrong password and an unknown email, and both are audited", async () => {
    const { c, operator } = await app();
    const wrong = await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "nope-nope-nope" } });
    const unknown = await c.send("POST", "/v1/iam/login", undefined, { json: { email: "ghost@example.org", password: "nope-nope-nope" } });
    expect([wrong.status, unknown.status]).toEqual([401, 401]);
    expect(wrong.body.detail).toBe(unknown.body.detail);
    const events = (await c.send("GET", "/v1/audit/events?action=iam.login&outcome=failure", operator)).body.events;
    expect(events.map((e: { reason: string }) => e.reason).sort()).toEqual(["unknown email", "wrong password"]);
    expect(JSON.stringify(events)).not.toContain("nope-nope-nope");
  });

  test("a login checked against the old password while it changes opens no session and writes no hash back (found in review)", async () => {
    const { c, operator } = await app();
    const oldPassword = c.owner.password;
    const newPassword = "a-new-passphrase-2026";
    // The old-password login's check finishes only after the change has committed; and stronger
    // hashing parameters would have it rehash the password it checked.
    const hold = holdNextPasswordCheck({ rehash: true });
    try {
      const late = c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: oldPassword }, ...from("192.0.2.7") });
      await hold.checked;
      expect((await c.send("POST", "/v1/iam/me/password", operator, { json: { current_password: oldPassword, new_password: newPassword } })).status).toBe(200);
      hold.resume();
      const answer = await late;
      expect([answer.status, answer.body.code]).toEqual([401, "unauthorized"]);
    } finally {
      hold.restore();
    }
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: oldPassword }, ...from("192.0.2.8") })).status).toBe(401);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: newPassword }, ...from("192.0.2.8") })).status).toBe(200);
  });

  test("a rehash by one login is not a password change for another (found in review)", async () => {
    const { c } = await app();
    const hold = holdNextPasswordCheck({ rehash: true });
    try {
      const slow = c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password }, ...from("192.0.2.21") });
      await hold.checked;
      expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password }, ...from("192.0.2.22") })).status).toBe(200); // rehashes
      hold.resume();
      expect((await slow).status).toBe(200);
    } finally {
      hold.restore();
    }
  });

  test("a password-only login checked while a second factor is enabled opens no session", async () => {
    const { c } = await app();
    const session = await c.login(c.owner.email, c.owner.password);
    const start = await c.send("POST", "/v1/iam/me/mfa/totp", session);
    const hold = holdNextPasswordCheck();
    try {
      const late = c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password }, ...from("192.0.2.41") });
      await hold.checked;
      const code = totp(base32Decode(start.body.secret), c.clock.now());
      expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code, current_password: c.owner.password } })).status).toBe(200);
      hold.resume();
      expect((await late).status).toBe(401);
    } finally {
      hold.restore();
    }
    const refusal = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.login' AND outcome = 'failure'").all() as Array<{ reason: string }>;
    expect(refusal.map((r) => r.reason)).toEqual(["two-factor authentication changed while the password was being checked"]);
  });

  test("a password change checked while the password is set anew by the owner does not go through (found in review)", async () => {
    const { c, operator } = await app();
    const intruder = await c.login(c.owner.email, c.owner.password); // knows the old password
    const hold = holdNextPasswordCheck();
    try {
      const hijack = c.send("POST", "/v1/iam/me/password", intruder, { json: { current_password: c.owner.password, new_password: "the-intruders-passphrase" } });
      await hold.checked;
      expect((await c.send("POST", "/v1/iam/me/password", operator, { json: { current_password: c.owner.password, new_password: "the-owners-new-passphrase" } })).status).toBe(200);
      hold.resume();
      expect((await hijack).status).toBe(409);
    } finally {
      hold.restore();
    }
    const refusals = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.password.change' AND outcome = 'failure'").all() as Array<{ reason: string }>;
    expect(refusals.map((r) => r.reason)).toEqual(["the password was set anew meanwhile"]);
    expect((await c.send("GET", "/v1/iam/me", operator)).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "the-owners-new-passphrase" }, ...from("192.0.2.30") })).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "the-intruders-passphrase" }, ...from("192.0.2.31") })).status).toBe(401);
  });

  test("repeated bad logins slow down, then lock; the right password from another address still works", async () => {
    const { c } = await app();
    const attempt = (password: string, address = "198.51.100.7") => c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password }, ...from(address) });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await attempt("wrong-guess-000")).status);
    expect(statuses).toEqual([401, 401, 401]);
    const slowed = await attempt("wrong-guess-000");
    expect(slowed.status).toBe(429);
    expect(Number(slowed.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // The throttled attempt's email is the account's personal data, under the account's subject key.
    const me = c.kernel.store.db.query("SELECT id FROM users WHERE email = ?").get(c.owner.email) as { id: string };
    expect(c.kernel.store.db.query("SELECT subject FROM audit_events WHERE reason = 'throttled after repeated failures'").get()).toEqual({ subject: me.id });
    // Even the right password waits its turn from this address.
    expect((await attempt(c.owner.password)).status).toBe(429);
    // Keep failing, waiting out each delay, until the pair is locked.
    let waited = 0;
    for (let i = 0; i < 7; i++) {
      const retry = Number((await attempt("wrong-guess-000")).headers.get("retry-after") ?? 0);
      c.clock.advance(retry * 1000 + 1);
      waited += retry;
      await attempt("wrong-guess-000");
    }
    const locked = await attempt(c.owner.password);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(60); // minutes now, not seconds
    expect((await attempt(c.owner.password, "203.0.113.50")).status).toBe(200);
    expect(waited).toBeGreaterThan(0);
  });

  test("failures with a blank email count for that pair and the address once: they do not throttle the address's other accounts (found in review)", async () => {
    const { c } = await app();
    const attempt = (email: string, password: string) => c.send("POST", "/v1/iam/login", undefined, { json: { email, password }, ...from("198.51.100.9") });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await attempt("   ", "wrong-guess-000")).status);
    expect(statuses).toEqual([401, 401, 401, 429]); // the blank pair slows down, as any pair
    expect((await attempt(c.owner.email, c.owner.password)).status).toBe(200); // the address does not, yet
  });

  test("an IPv6 client counts as its /64: changing the last bits does not reset the count", async () => {
    const { c } = await app();
    const attempt = (address: string) => c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "wrong-guess-000" }, ...from(address) });
    const statuses: number[] = [];
    for (let i = 1; i <= 4; i++) statuses.push((await attempt(`2001:db8:1:2::${i.toString(16)}`)).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    expect((await attempt("2001:db8:1:3::1")).status).toBe(401); // another /64
  });
});

describe("sessions", () => {
  test("ending a session that has ended answers 404 and records nothing more, also when two requests race (found in review: 200, and another success event)", async () => {
    const { c } = await app();
    const mine = await c.login(c.owner.email, c.owner.password);
    const idOf = (token: string) => token.split("_")[2]!;
    const end = (token: string) => c.send("DELETE", `/v1/iam/me/sessions/${idOf(token)}`, mine).then((r) => r.status);
    const other = await c.login(c.owner.email, c.owner.password);
    expect(await end(other)).toBe(200);
    expect(await end(other)).toBe(404);
    const raced = await c.login(c.owner.email, c.owner.password);
    expect((await Promise.all([end(raced), end(raced)])).sort()).toEqual([200, 404]);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.session.revoke'").get()).toEqual({ n: 2 });
  });

  test("the session list shows only sessions that still let someone in: none past its idle timeout or lifetime (found in review)", async () => {
    const { c } = await app();
    const idle = await c.login(c.owner.email, c.owner.password);
    const used = await c.login(c.owner.email, c.owner.password);
    const ids = async (token: string) => ((await c.send("GET", "/v1/iam/me/sessions", token)).body.items as Array<{ id: string }>).map((s) => s.id);
    const idOf = (token: string) => token.split("_")[2]!; // a token's prefix is its session's id
    expect(await ids(used)).toEqual(expect.arrayContaining([idOf(idle), idOf(used)]));
    c.clock.advance(59 * 60_000);
    expect((await c.send("GET", "/v1/iam/me", used)).status).toBe(200);
    c.clock.advance(59 * 60_000); // 118 minutes: the unused one is past the 60-minute idle timeout
    expect((await c.send("GET", "/v1/iam/me", idle)).status).toBe(401);
    expect(await ids(used)).toEqual([idOf(used)]); // the others of app() went idle too
  });

  test("ending a session past its idle timeout or its lifetime answers 404 and records nothing, as the list leaves it out (found in review: 200, and a success event)", async () => {
    const c = await testCitadel({ config: { iam: { session_ttl_hours: 2 } } });
    const idOf = (token: string) => token.split("_")[2]!;
    const revocations = () => c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.session.revoke'").get();
    const stale = await c.login(c.owner.email, c.owner.password);
    c.clock.advance(50 * 60_000);
    const mine = await c.login(c.owner.email, c.owner.password);
    c.clock.advance(20 * 60_000); // 70 minutes: the first is past the 60-minute idle timeout
    expect((await c.send("DELETE", `/v1/iam/me/sessions/${idOf(stale)}`, mine)).status).toBe(404);
    // Used every 55 minutes, a session still ends at its lifetime (2 hours here).
    const old = await c.login(c.owner.email, c.owner.password);
    for (let i = 0; i < 2; i++) {
      c.clock.advance(55 * 60_000);
      expect((await c.send("GET", "/v1/iam/me", old)).status).toBe(200);
    }
    c.clock.advance(11 * 60_000); // 121 minutes since `old` logged in, 11 since its last use
    const now = await c.login(c.owner.email, c.owner.password);
    expect((await c.send("DELETE", `/v1/iam/me/sessions/${idOf(old)}`, now)).status).toBe(404);
    expect(revocations()).toEqual({ n: 0 });
    await c.stop();
  });
});

describe("TOTP", () => {
  test("enrol, log in with a code, refuse its replay, use a recovery code once", async () => {
    const { c } = await app();
    const session = await c.login(c.owner.email, c.owner.password);
    const start = await c.send("POST", "/v1/iam/me/mfa/totp", session);
    expect(start.body.otpauth_uri).toStartWith("otpauth://totp/Citadel:admin%40localhost?secret=");
    expect(start.body.qr_svg).toStartWith("<svg");
    const secret = base32Decode(start.body.secret);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code: "000000", current_password: c.owner.password } })).status).toBe(422);
    const confirmed = await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } });
    expect(confirmed.body.recovery_codes).toHaveLength(10);

    const password = { email: c.owner.email, password: c.owner.password };
    const needs = await c.send("POST", "/v1/iam/login", undefined, { json: password });
    expect([needs.status, needs.body.code]).toEqual([401, "totp_required"]);
    c.clock.advance(30_000); // the enrolment code's step is used up
    const code = totp(secret, c.clock.now());
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...password, totp: code } })).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...password, totp: code }, ...from("192.0.2.99") })).status).toBe(401); // replay
    const recovery = confirmed.body.recovery_codes[0];
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...password, recovery_code: recovery }, ...from("192.0.2.98") })).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...password, recovery_code: recovery }, ...from("192.0.2.97") })).status).toBe(401);
    // The secret is stored encrypted.
    const row = c.kernel.store.db.query<{ totp_secret: Uint8Array }, []>("SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL").get()!;
    expect(Buffer.from(row.totp_secret).includes(secret)).toBe(false);
  });

  test("wrong codes to turn TOTP off count against the account as at login: a stolen session cannot guess its way (found in review)", async () => {
    const { c } = await app();
    const session = await c.login(c.owner.email, c.owner.password);
    const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", session)).body.secret);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", session, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } })).status).toBe(200);
    c.clock.advance(30_000);
    const right = new Set([-1, 0, 1].map((d) => totp(secret, c.clock.now() + d * 30_000)));
    const wrong = ["000000", "111111", "222222", "333333", "444444"].filter((code) => !right.has(code));
    const statuses: number[] = [];
    for (const code of wrong.slice(0, 4)) statuses.push((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { code } })).status);
    expect(statuses.slice(0, 3)).toEqual([422, 422, 422]);
    expect(statuses[3]).toBe(429); // the third wrong code makes the next wait
    // The right code must wait as well; meanwhile the factor stays on.
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { code: totp(secret, c.clock.now()) } })).status).toBe(429);
    const failures = c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.mfa.disable' AND outcome = 'failure'").get() as { n: number };
    expect(failures.n).toBe(3);
    // A login from elsewhere with a wrong code meets the same count.
    const password = { email: c.owner.email, password: c.owner.password };
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...password, totp: wrong[0] }, ...from("198.51.100.7") })).status).toBe(429);
    c.clock.advance(60_000);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { code: totp(secret, c.clock.now()) } })).status).toBe(200);
  });

  test("an organization can require MFA of its members", async () => {
    const { c, operator, org } = await app();
    const editor = await c.addUser(operator, "ed@example.org", "editor");
    expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, editor.token)).status).toBe(200);
    await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { require_mfa: true } });
    const refused = await c.send("GET", `/v1/iam/orgs/${org}/members`, editor.token);
    expect([refused.status, refused.body.code]).toEqual([403, "mfa_required"]);
    expect((await c.send("GET", "/v1/iam/me", editor.token)).status).toBe(200); // they can still enrol
  });

  test("settings changes are audited with their new values: MFA off reads differently from MFA on (found in review)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { require_mfa: false, ip_allowlist: [] } })).status).toBe(200);
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "ops" } })).body.id as string;
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: ["127.0.0.0/8", "10.0.0.0/8"] } })).status).toBe(200);
    expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, owner, { json: { require_mfa: true } })).status).toBe(200);
    const reasons = c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action IN ('iam.organization.update', 'iam.workspace.update') ORDER BY seq").all();
    expect(reasons).toEqual([
      { action: "iam.organization.update", reason: "require_mfa=false, ip_allowlist=[] (any address)" },
      { action: "iam.workspace.update", reason: "ip_allowlist=[127.0.0.0/8 10.0.0.0/8]" },
      { action: "iam.organization.update", reason: "require_mfa=true" },
    ]);
  });

  test("tokens for one workspace made before that was recorded get their organization from migration 0004", async () => {
    const { c, operator, org } = await app();
    const { iamMigrations } = await import("../../../plugins/iam/migrations.ts");
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "old" } })).body.id as string;
    const made = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "w", scopes: ["read"], workspace: ws } })).body;
    const db = c.kernel.store.db;
    db.query("UPDATE credentials SET organization_id = NULL WHERE id = ?").run(made.id); // as stored before
    db.run(iamMigrations.find((m) => m.id === "0004_workspace_tokens_organization")!.up as string);
    expect(db.query("SELECT organization_id FROM credentials WHERE id = ?").get(made.id)).toEqual({ organization_id: org });
  });

  test("a token for one workspace is its organization's too: the organization's MFA rule applies to it", async () => {
    const { c, operator, org } = await app();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "app" } })).body.id as string;
    const forOrg = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "o", scopes: ["read", "iam:self"], organization: org } })).body;
    const forWorkspace = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "w", scopes: ["read", "iam:self"], workspace: ws } })).body;
    expect(forWorkspace.organization).toBe(org);
    await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { require_mfa: true } });
    for (const token of [forOrg.token, forWorkspace.token]) {
      const refused = await c.send("GET", "/v1/iam/me/tokens", token);
      expect([refused.status, refused.body.code]).toEqual([403, "mfa_required"]);
    }
  });
});

describe("tokens", () => {
  test("a PAT is shown once, stored as a hash, expires by default, and records its last use", async () => {
    const { c, operator } = await app();
    const made = await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "ci", scopes: ["read"] } });
    expect(made.body.token).toMatch(/^citadel_pat_/);
    expect(Date.parse(made.body.expires_at) - c.clock.now()).toBe(30 * 86_400_000);
    const dump = Buffer.from(c.kernel.store.db.serialize());
    expect(dump.includes(Buffer.from(made.body.token))).toBe(false);
    expect((await c.send("GET", "/v1/system/info", made.body.token, from("192.0.2.44"))).status).toBe(200);
    const listed = (await c.send("GET", "/v1/iam/me/tokens", operator)).body.items.find((t: { id: string }) => t.id === made.body.id);
    expect(listed).toMatchObject({ last_used_from: "192.0.2.44", scopes: ["read"] });
    expect(listed.token).toBeUndefined();
    const tooLong = await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "x", scopes: ["read"], expires_in_days: 400 } });
    expect([tooLong.status, tooLong.body.errors[0].field]).toEqual([422, "expires_in_days"]);
    expect((await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "x", scopes: ["not a scope"] } })).status).toBe(422);
  });

  test("a token without the route's scope: 403 insufficient_scope, naming the scope (RFC 6750)", async () => {
    const { c, operator } = await app();
    const reader = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "r", scopes: ["read", "iam:self"] } })).body.token;
    const refused = await c.send("GET", "/v1/iam/users", reader);
    expect([refused.status, refused.body.code, refused.body.detail]).toEqual([403, "insufficient_scope", "The token lacks the scope iam:admin."]);
    expect(refused.headers.get("www-authenticate")).toBe('Bearer realm="citadel", error="insufficient_scope", scope="iam:admin"');
  });

  test("revoke and rotate", async () => {
    const { c, operator } = await app();
    const t = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "ci", scopes: ["read"] } })).body;
    const rotated = (await c.send("POST", `/v1/iam/me/tokens/${t.id}/rotate`, operator)).body;
    expect(rotated.token).not.toBe(t.token);
    expect(rotated.expires_at).toBe(t.expires_at);
    expect((await c.send("GET", "/v1/system/info", t.token)).status).toBe(401);
    expect((await c.send("GET", "/v1/system/info", rotated.token)).status).toBe(200);
    await c.send("DELETE", `/v1/iam/me/tokens/${rotated.id}`, operator);
    const gone = await c.send("GET", "/v1/system/info", rotated.token);
    expect([gone.status, gone.body.detail]).toEqual([401, "The token was revoked."]);
  });

  test("a token cannot grant more than the one that makes it", async () => {
    const { c, operator } = await app();
    const narrow = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "n", scopes: ["read", "iam:self"] } })).body.token;
    const wider = await c.send("POST", "/v1/iam/me/tokens", narrow, { json: { name: "w", scopes: ["write"] } });
    expect(wider.status).toBe(403);
  });

  test("a scope no route knows is named unknown (422, field scopes), not more than the maker's (found in an operator's walkthrough)", async () => {
    const { c, operator } = await app();
    const narrow = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "n", scopes: ["read", "iam:self"] } })).body.token;
    for (const maker of [operator, narrow]) {
      const refused = await c.send("POST", "/v1/iam/me/tokens", maker, { json: { name: "x", scopes: ["read", "bogus:scope"] } });
      expect([refused.status, refused.body.errors?.[0]?.field]).toEqual([422, "scopes"]);
      expect(refused.body.errors[0].message).toStartWith("no such scope: bogus:scope; the scopes are read, write, deploy, shell, shell:connect, iam:read");
    }
    const key = await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/api-keys`, operator, { json: { service: "secrets", name: "k", scopes: ["secrets:reed"] } });
    expect([key.status, key.body.errors?.[0]?.message]).toEqual([422, expect.stringContaining("no such scope: secrets:reed")]);
    for (const scopes of [["shell:connect", "iam:self"], ["secrets:admin"], ["deploy"]]) {
      expect((await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "k", scopes } })).status).toBe(200);
    }
  });

  test("revoking or rotating a token id that names none of yours: 404 No such token, also from a token that manages only itself (found in an operator's walkthrough)", async () => {
    const { c, operator } = await app();
    const narrow = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "n", scopes: ["read", "iam:self"] } })).body;
    const sibling = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "s", scopes: ["read"] } })).body;
    const someone = await c.addUser(operator, "someone@example.org");
    const theirs = (await c.send("POST", "/v1/iam/me/tokens", someone.token, { json: { name: "t", scopes: ["read"] } })).body;
    for (const id of ["nope", theirs.id]) {
      for (const [method, path] of [["DELETE", `/v1/iam/me/tokens/${id}`], ["POST", `/v1/iam/me/tokens/${id}/rotate`]] as const) {
        const refused = await c.send(method, path, narrow.token);
        expect([id === "nope" ? "nope" : "theirs", method, refused.status, refused.body.detail]).toEqual([id === "nope" ? "nope" : "theirs", method, 404, "No such token."]);
      }
    }
    // One of the caller's own that this token may not manage stays forbidden, and saying so tells nothing the token list does not.
    expect((await c.send("DELETE", `/v1/iam/me/tokens/${sibling.id}`, narrow.token)).status).toBe(403);
    expect((await c.send("GET", "/v1/system/info", theirs.token)).status).toBe(200);
  });

  test("token exchange: a short-lived workload token within the parent's scopes", async () => {
    const { c, operator } = await app();
    const parent = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "p", scopes: ["read"] } })).body.token;
    const exchange = (scope: string, expires_in = "900") =>
      c.send("POST", "/oauth/token", undefined, { body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: parent, scope, expires_in }).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });
    const ok = await exchange("system:read");
    expect(ok.body).toMatchObject({ token_type: "Bearer", expires_in: 900, scope: "system:read" });
    expect(ok.body.access_token).toMatch(/^citadel_wlt_/);
    expect((await c.send("GET", "/v1/system/info", ok.body.access_token)).status).toBe(200);
    const capped = await exchange("system:read", "3600");
    expect(capped.body.expires_in).toBe(3600);
    const tooMuch = await exchange("iam:write");
    expect([tooMuch.status, tooMuch.body.error]).toEqual([400, "invalid_scope"]); // RFC 6749 section 5.2
  });

  test("token exchange: a scope that does not exist is invalid_scope, as for a token or a key, though a coarse scope of the subject covers it (found in review)", async () => {
    const { c, operator } = await app();
    const parent = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "p", scopes: ["write"] } })).body.token;
    const refused = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: parent, scope: "nosuch:write" } });
    expect([refused.status, refused.body.error, refused.body.access_token]).toEqual([400, "invalid_scope", undefined]);
    expect(refused.body.error_description).toStartWith("no such scope: nosuch:write; the scopes are ");
    const events = c.kernel.store.db.query("SELECT action, outcome FROM audit_events WHERE action IN ('iam.token.exchange', 'auth.token.reject') ORDER BY seq").all();
    expect(events).toEqual([{ action: "auth.token.reject", outcome: "failure" }]);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM credentials WHERE kind = 'workload'").get()).toEqual({ n: 0 });
  });

  test("token exchange: an expires_in outside 1 to 3600, or no grant_type, is the OAuth error invalid_request, not a 422 (found in review)", async () => {
    // More requests to /oauth/token than the login endpoints' limit lets one address make.
    const c = await testCitadel({ config: { rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const parent = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "p", scopes: ["read"] } })).body.token;
    const exchange = { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: parent, scope: "system:read" };
    const asForm = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });
    const refusals = [
      ...["0", "3601", "9999", "-1", "1.5", "soon"].map((expires_in) => asForm({ ...exchange, expires_in })),
      ...[0, 3601, 1.5].map((expires_in) => ({ json: { ...exchange, expires_in } })),
      asForm({ subject_token: parent, scope: "system:read" }),
      { json: { subject_token: parent, scope: "system:read" } },
    ];
    for (const request of refusals) {
      const refused = await c.send("POST", "/oauth/token", undefined, request);
      expect([refused.status, refused.body.error]).toEqual([400, "invalid_request"]);
    }
    for (const request of [asForm({ ...exchange, expires_in: "1" }), { json: { ...exchange, expires_in: 3600 } }]) {
      expect((await c.send("POST", "/oauth/token", undefined, request)).status).toBe(200);
    }
    await c.stop();
  });

  test("a console token works once", async () => {
    const { c, operator } = await app();
    const shell = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "s", scopes: ["shell", "iam:self"] } })).body.token;
    const console1 = (await c.send("POST", "/v1/iam/console-tokens", shell)).body;
    expect(Date.parse(console1.expires_at) - c.clock.now()).toBe(120_000);
    // Presenting it spends it, whatever the route.
    expect((await c.send("GET", "/v1/iam/me", console1.token)).status).toBe(403); // lacks iam:self, but now spent
    const again = await c.send("GET", "/v1/iam/me", console1.token);
    expect([again.status, again.body.detail]).toEqual([401, "The token was revoked."]);
  });

  test("a console token stays spent when recording its use fails: the request fails, and it never works again", async () => {
    const { c, operator } = await app();
    const shell = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "s", scopes: ["shell", "iam:self"] } })).body.token;
    const made = (await c.send("POST", "/v1/iam/console-tokens", shell)).body;
    const db = c.kernel.store.db;
    db.run("CREATE TEMP TRIGGER refuse_spend BEFORE UPDATE OF revoked_at ON credentials BEGIN SELECT RAISE(ABORT, 'simulated: the disk is full'); END");
    const first = await c.send("GET", "/v1/iam/me", made.token);
    expect([first.status, first.body.code]).toEqual([500, "internal_error"]);
    db.run("DROP TRIGGER refuse_spend");
    expect((db.query("SELECT revoked_at FROM credentials WHERE id = ?").get(made.token.split("_")[2]) as { revoked_at: number | null }).revoked_at).toBeNull();
    const again = await c.send("GET", "/v1/iam/me", made.token);
    expect([again.status, again.body.detail]).toEqual([401, "The token was revoked."]);
  });
});

describe("the cached credential rows", () => {
  test("a change to a credential or its user, by any writer, takes effect on the very next request", async () => {
    const { c, operator } = await app();
    const db = c.kernel.store.db;
    const made = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "cached", scopes: ["read", "iam:self"] } })).body;
    const info = () => c.send("GET", "/v1/system/info", made.token);
    const generation = () => (db.query("SELECT generation FROM authentication_generation").get() as { generation: number }).generation;
    expect((await info()).status).toBe(200);
    expect((await info()).status).toBe(200); // now answered from the cache

    // Written behind the service's back (another process, a future plugin): the triggers still see it.
    const before = generation();
    db.query("UPDATE users SET must_change_password = 1 WHERE email = ?").run(c.owner.email);
    expect(generation()).toBe(before + 1);
    const blocked = await info();
    expect([blocked.status, blocked.body.code]).toEqual([403, "password_change_required"]);
    db.query("UPDATE users SET must_change_password = 0 WHERE email = ?").run(c.owner.email);
    expect((await info()).status).toBe(200);

    db.query("UPDATE credentials SET revoked_at = ? WHERE id = ?").run(c.clock.now(), made.id);
    const revoked = await info();
    expect([revoked.status, revoked.body.detail]).toEqual([401, "The token was revoked."]);
    db.query("UPDATE credentials SET revoked_at = NULL WHERE id = ?").run(made.id);
    expect((await info()).status).toBe(200);

    db.query("DELETE FROM credentials WHERE id = ?").run(made.id);
    expect((await info()).status).toBe(401);
  });

  test("the guard's facts (role, organization rules, service activation) are remembered only until anything is written", async () => {
    const { c, operator, org } = await app();
    const db = c.kernel.store.db;
    const editor = await c.addUser(operator, "e@example.org", "editor");
    const orgInfo = () => c.send("GET", `/v1/iam/orgs/${org}`, editor.token);
    expect((await orgInfo()).status).toBe(200);
    expect((await orgInfo()).status).toBe(200); // answered from memory

    // Direct writes, not through the service: nothing tells the guard, yet each counts at once.
    db.query("DELETE FROM memberships WHERE user_id = ?").run(editor.id);
    expect((await orgInfo()).body.detail).toBe("You are not a member of this organization.");
    db.query("INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES (?, ?, 'editor', 0)").run(org, editor.id);
    expect((await orgInfo()).status).toBe(200);
    db.query("UPDATE organizations SET require_mfa = 1 WHERE id = ?").run(org);
    expect((await orgInfo()).body.code).toBe("mfa_required");
    db.query("UPDATE organizations SET require_mfa = 0, ip_allowlist = '[\"10.0.0.0/8\"]' WHERE id = ?").run(org);
    expect((await orgInfo()).body.detail).toBe("The organization does not allow requests from your address.");
    db.query("UPDATE organizations SET ip_allowlist = '[]' WHERE id = ?").run(org);
    expect((await orgInfo()).status).toBe(200);

    const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, operator, { json: { service: "system", name: "mon", scopes: ["system:read"] } })).body.token;
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, operator);
    expect((await c.send("GET", "/v1/system/info", key)).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", key)).status).toBe(200);
    db.query("DELETE FROM service_activations WHERE organization_id = ?").run(org);
    expect((await c.send("GET", "/v1/system/info", key)).status).toBe(403);
  });

  test("a workspace id chosen to look like another remembered fact answers nothing but itself (found in review)", async () => {
    const { c, operator, org } = await app();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "prod" } })).body;
    const admin = await c.addUser(operator, "a@example.org", "admin");
    await c.send("PUT", `/v1/iam/workspaces/${ws.id}/members/${admin.id}`, operator, { json: { role: "viewer" } });
    const rename = () => c.send("PATCH", `/v1/iam/workspaces/${ws.id}`, admin.token, { json: { name: "renamed" } });
    expect((await rename()).status).toBe(403); // narrowed to viewer in this workspace
    await c.send("PATCH", `/v1/iam/workspaces/${ws.id}`, operator, { json: { name: "prod" } }); // the denial's audit event is written by now
    // Remembered as "no such workspace", the answer must not stand for the admin's workspace role...
    const poison = await c.send("GET", `/v1/iam/workspaces/${encodeURIComponent(`role ${ws.id} ${admin.id}`)}`, admin.token);
    expect(poison.status).toBe(404);
    expect((await rename()).status).toBe(403);
    // ...nor the other way round: a remembered role is not a workspace.
    const reverse = await c.send("GET", `/v1/iam/workspaces/${encodeURIComponent(`role ${ws.id} ${admin.id}`)}`, admin.token);
    expect(reverse.status).toBe(404);
  });

  test("rows are cached: a change that bypasses the triggers goes unseen, so start-up refuses a database without them", async () => {
    const { c, operator } = await app();
    const db = c.kernel.store.db;
    const made = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "cached", scopes: ["read"] } })).body;
    expect((await c.send("GET", "/v1/system/info", made.token)).status).toBe(200);
    // What a table rebuilt the usual SQLite way would do: its triggers are gone.
    db.run("DROP TRIGGER credentials_updated");
    db.query("UPDATE credentials SET revoked_at = ? WHERE id = ?").run(c.clock.now(), made.id);
    expect((await c.send("GET", "/v1/system/info", made.token)).status).toBe(200); // served from the cache
    expect(() => new IamIdentity(c.kernel.store)).toThrow("credentials_updated");
  });

  test("a recorded use or a failed login leaves the cache alone, and idle time still counts from the last use", async () => {
    const { c, operator } = await app();
    const db = c.kernel.store.db;
    const generation = () => (db.query("SELECT generation FROM authentication_generation").get() as { generation: number }).generation;
    const idle = (db.query("SELECT idle_timeout_ms AS ms FROM credentials WHERE kind = 'session'").get() as { ms: number }).ms;
    const me = () => c.send("GET", "/v1/iam/me", operator);
    expect((await me()).status).toBe(200);
    const before = generation();
    await (c.kernel.identity.provider as IamIdentity).flushUses(c.kernel.store);
    await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "not-the-password" } });
    expect(generation()).toBe(before);
    // Used again just before the idle timeout, that use written down: still valid one more
    // idle period after it, though long past one after the use the cached row first saw.
    c.clock.advance(idle - 1000);
    expect((await me()).status).toBe(200);
    await (c.kernel.identity.provider as IamIdentity).flushUses(c.kernel.store);
    c.clock.advance(idle - 1000);
    expect((await me()).status).toBe(200);
    c.clock.advance(idle + 1);
    expect((await me()).status).toBe(401);
  });

  test("a use being written down still counts when the row is read again from the database meanwhile", async () => {
    const { c, operator } = await app();
    const db = c.kernel.store.db;
    const identity = c.kernel.identity.provider as IamIdentity;
    const idle = (db.query("SELECT idle_timeout_ms AS ms FROM credentials WHERE kind = 'session'").get() as { ms: number }).ms;
    const me = () => c.send("GET", "/v1/iam/me", operator);
    expect((await me()).status).toBe(200);
    await identity.flushUses(c.kernel.store);
    c.clock.advance(idle - 1000);
    expect((await me()).status).toBe(200); // a use, in memory
    c.clock.advance(2000); // past the idle timeout counted from the first use, not from this one
    const flushing = identity.flushUses(c.kernel.store); // its write is queued, not yet committed
    db.query("UPDATE users SET must_change_password = must_change_password WHERE email = ?").run(c.owner.email); // the generation moves
    expect((await me()).status).toBe(200);
    await flushing;
    expect((await me()).status).toBe(200);
  });

  test("a cached row never stands in for the token's secret: another secret under the same prefix is refused", async () => {
    const { c, operator } = await app();
    const token = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "cached", scopes: ["read"] } })).body.token as string;
    expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);
    // Same kind and prefix, another secret, a valid checksum: only the hash comparison can refuse it.
    const body = token.slice(0, token.lastIndexOf("_") + 1) + "x".repeat(32);
    const forged = body + checksum(body);
    expect(parseToken(forged)).toEqual(parseToken(token));
    const refused = await c.send("GET", "/v1/system/info", forged);
    expect([refused.status, refused.body.detail]).toEqual([401, "The token is not valid."]);
    expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);
  });

  test("a cached credential's token with a wrong checksum is refused as no Citadel token (malformed), and audited so", async () => {
    const { c, operator } = await app();
    const token = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "cached", scopes: ["read"] } })).body.token as string;
    expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);
    // The checksum is asked only once the hash comparison failed: the refusal must still say why.
    const wrongChecksum = token.slice(0, -6) + (token.endsWith("000000") ? "000001" : "000000");
    const refused = await c.send("GET", "/v1/system/info", wrongChecksum);
    expect([refused.status, refused.body.detail]).toEqual([401, "That is not a Citadel token."]);
    await Bun.sleep(50); // security events are recorded in a transaction of their own
    const reasons = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'auth.token.reject'").all() as Array<{ reason: string }>;
    expect(reasons.map((r) => r.reason)).toEqual(["malformed"]);
    expect((await c.send("GET", "/v1/system/info", token)).status).toBe(200);
  });

  test("one principal per credential while nothing changed, a new one once its row did", async () => {
    const { c, operator } = await app();
    const identity = c.kernel.identity.provider!;
    const token = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "cached", scopes: ["read"] } })).body.token as string;
    const first = identity.authenticate(token, "127.0.0.1", c.clock.now());
    const again = identity.authenticate(token, "127.0.0.1", c.clock.now());
    if (!first.ok || !again.ok) throw new Error("the token must authenticate");
    expect(again.principal).toBe(first.principal);
    expect(Object.isFrozen(first.principal)).toBe(true);
    const prefix = first.principal.tokenId;
    c.kernel.store.db.query("UPDATE credentials SET scopes = ? WHERE id = ?").run(JSON.stringify(["write"]), prefix);
    const changed = identity.authenticate(token, "127.0.0.1", c.clock.now());
    if (!changed.ok) throw new Error("the token must authenticate");
    expect(changed.principal).not.toBe(first.principal);
    expect(changed.principal.scopes).toEqual(["write"]);
  });
});

describe("organizations, roles and service keys", () => {
  test("the last owner cannot leave; only owners make owners", async () => {
    const { c, operator, org } = await app();
    const owner = (await c.send("GET", `/v1/iam/orgs/${org}/members`, operator)).body.items[0].user;
    const leave = await c.send("DELETE", `/v1/iam/orgs/${org}/members/${owner}`, operator);
    expect([leave.status, leave.body.code]).toEqual([409, "conflict"]);
    const admin = await c.addUser(operator, "adm@example.org", "admin");
    const viewer = await c.addUser(operator, "view@example.org", "viewer");
    const promote = await c.send("PUT", `/v1/iam/orgs/${org}/members/${viewer.id}`, admin.token, { json: { role: "owner" } });
    expect(promote.status).toBe(403);
    expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${viewer.id}`, admin.token, { json: { role: "editor" } })).body.role).toBe("editor");
  });

  test("a workspace renamed to the name of another in its organization is refused: 409, not a 500 (found by the bad-input test)", async () => {
    const { c, operator, org } = await app();
    const first = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "first" } })).body.id as string;
    expect((await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "second" } })).status).toBe(200);
    const renamed = await c.send("PATCH", `/v1/iam/workspaces/${first}`, operator, { json: { name: "second" } });
    expect([renamed.status, renamed.body.code]).toEqual([409, "conflict"]);
    expect((await c.send("PATCH", `/v1/iam/workspaces/${first}`, operator, { json: { name: "first" } })).status).toBe(200); // its own name: no conflict
  });

  test("a workspace role narrows the organization role", async () => {
    const { c, operator, org } = await app();
    const editor = await c.addUser(operator, "e@example.org", "editor");
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "prod" } })).body;
    const admin = await c.addUser(operator, "a@example.org", "admin");
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws.id}`, admin.token, { json: { name: "production" } })).status).toBe(200);
    await c.send("PUT", `/v1/iam/workspaces/${ws.id}/members/${admin.id}`, operator, { json: { role: "viewer" } });
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws.id}`, admin.token, { json: { name: "prod2" } })).status).toBe(403);
    expect((await c.send("GET", `/v1/iam/workspaces/${ws.id}`, editor.token)).status).toBe(200);
  });

  test("an API key works only for its service, and only while the service is activated", async () => {
    const { c, operator, org } = await app();
    const made = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, operator, { json: { service: "system", name: "mon", scopes: ["system:read"] } });
    expect(made.body.token).toMatch(/^citadel_system_/);
    const key = made.body.token;
    const inactive = await c.send("GET", "/v1/system/info", key);
    expect([inactive.status, inactive.body.detail]).toEqual([403, "The system service is not activated for this organization."]);
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, operator);
    expect((await c.send("GET", "/v1/system/info", key)).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, key)).status).toBe(403); // another service's route
    const foreign = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, operator, { json: { service: "system", name: "bad", scopes: ["iam:read"] } });
    expect(foreign.status).toBe(422);
  });

  test("a new API key says whether its service is activated, so its maker learns before it is refused (found in an operator's walkthrough)", async () => {
    const { c, operator, org } = await app();
    const make = async (name: string) => (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, operator, { json: { service: "system", name, scopes: ["system:read"] } })).body;
    expect((await make("before")).service_active).toBe(false);
    await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, operator);
    expect((await make("after")).service_active).toBe(true);
  });

  test("allowlists on an organization and on a token, IPv4 and IPv6", async () => {
    const { c, operator, org } = await app();
    const lockout = await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { ip_allowlist: ["10.0.0.0/8"] } });
    expect(lockout.body.errors[0].field).toBe("ip_allowlist"); // it would shut out the caller
    expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { ip_allowlist: ["127.0.0.0/8", "2001:db8::/32"] } })).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator, from("2001:db8::5"))).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator, from("192.0.2.1"))).status).toBe(403);
    const v6only = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "v6", scopes: ["read"], ip_allowlist: ["2001:db8::/32"] } })).body.token;
    expect((await c.send("GET", "/v1/system/info", v6only, from("2001:db8::9"))).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", v6only, from("127.0.0.1"))).status).toBe(403);
    // A token bound to the organization carries its allowlist to routes that name no organization.
    const bound = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "bound", scopes: ["read"], organization: org } })).body.token;
    expect((await c.send("GET", "/v1/system/info", bound, from("2001:db8::9"))).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", bound, from("192.0.2.1"))).status).toBe(403);
  });

  test("a token restricted to a workspace is held to that workspace's allowlist on routes that name no workspace (found in review)", async () => {
    const { c, operator, org } = await app();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "listed" } })).body.id as string;
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, operator, { json: { ip_allowlist: ["127.0.0.0/8", "198.51.100.0/24"] } })).status).toBe(200);
    const bound = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "w", scopes: ["iam:self", "secrets:read"], workspace: ws } })).body.token;
    const outside = from("203.0.113.77");
    const me = await c.send("GET", "/v1/iam/me", bound, outside);
    expect([me.status, me.body.detail]).toEqual([403, "The workspace does not allow requests from your address."]);
    expect((await c.send("POST", "/v1/iam/me/tokens", bound, { json: { name: "child", scopes: ["secrets:read"] }, ...outside })).status).toBe(403);
    expect((await c.send("GET", "/v1/iam/me", bound, from("198.51.100.7"))).status).toBe(200);
    await c.stop();
  });

  test("an IPv4-mapped prefix in an allowlist (::ffff:192.0.2.0/120) is the IPv4 prefix it spells, as clients are matched unmapped (found in review)", async () => {
    const { c, operator, org } = await app();
    // An organization's: not refused as shutting out the caller, and it lets the range in.
    expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { ip_allowlist: ["::ffff:192.0.2.0/120"] }, ...from("192.0.2.9") })).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator, from("192.0.2.9"))).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator, from("::ffff:192.0.2.9"))).status).toBe(200);
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator, from("198.51.100.1"))).status).toBe(403);
    // A token's: it works from the range, and narrows an IPv4 maker's.
    const mapped = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "mapped", scopes: ["read"], ip_allowlist: ["::ffff:192.0.2.0/121"] } })).body.token;
    expect((await c.send("GET", "/v1/system/info", mapped, from("192.0.2.9"))).status).toBe(200);
    expect((await c.send("GET", "/v1/system/info", mapped, from("192.0.2.200"))).status).toBe(403);
    const maker = (await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "maker", scopes: ["read", "iam:self"], ip_allowlist: ["192.0.2.0/24"] } })).body.token;
    expect((await c.send("POST", "/v1/iam/me/tokens", maker, { json: { name: "child", scopes: ["read"], ip_allowlist: ["::ffff:192.0.2.0/121"] }, ...from("192.0.2.9") })).status).toBe(200);
    await c.stop();
  });

  test("rate limits answer 429 with Retry-After and the RateLimit fields", async () => {
    const c = await testCitadel({ config: { rate_limit: { auth: { per_second: 1, burst: 2 } } } });
    const attempt = () => c.send("POST", "/v1/iam/login", undefined, { json: { email: "x@example.org", password: "y" }, ...from("192.0.2.200") });
    await attempt();
    await attempt();
    const limited = await attempt();
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1");
    expect(limited.headers.get("ratelimit-policy")).toBe('"auth";q=2;w=2');
    expect(limited.headers.get("ratelimit")).toBe('"auth";r=0;t=1');
  });
});

describe("the first owner's one-time password", () => {
  test("logs in, but only to change it", async () => {
    const c = await testCitadel();
    const operator = await c.login(c.owner.email, c.owner.password);
    const made = await c.send("POST", "/v1/iam/users", operator, { json: { email: "new@example.org" } });
    expect(made.body.password).toMatch(/^[0-9A-Za-z]{20}$/);
    expect(made.body.user.must_change_password).toBe(true);
    const first = await c.login("new@example.org", made.body.password);
    const blocked = await c.send("GET", "/v1/iam/me/tokens", first);
    expect([blocked.status, blocked.body.code]).toEqual([403, "password_change_required"]);
    expect((await c.send("GET", "/v1/iam/me", first)).status).toBe(200);
    const same = await c.send("POST", "/v1/iam/me/password", first, { json: { current_password: made.body.password, new_password: made.body.password } });
    expect([same.status, same.body.errors[0].field]).toEqual([422, "new_password"]); // found in review: it counted as changed
    expect((await c.send("GET", "/v1/iam/me", first)).body.must_change_password).toBe(true);
    const weak = await c.send("POST", "/v1/iam/me/password", first, { json: { current_password: made.body.password, new_password: "short" } });
    expect([weak.status, weak.body.errors[0].field]).toEqual([422, "password"]);
    expect((await c.send("POST", "/v1/iam/me/password", first, { json: { current_password: made.body.password, new_password: "a-much-better-passphrase" } })).status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me/tokens", first)).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: "new@example.org", password: made.body.password } })).status).toBe(401); // spent
  });
});

describe("refusals feed the rate limiter", () => {
  test("guessing tokens from one address soon gets 429, another address is unaffected", async () => {
    const c = await testCitadel({ config: { rate_limit: { auth: { per_second: 1, burst: 5 } } } });
    const guess = (address: string) => c.send("GET", "/v1/system/info", "citadel_pat_AAAAAAAA_" + "B".repeat(38), from(address));
    const statuses = [];
    for (let i = 0; i < 7; i++) statuses.push((await guess("203.0.113.66")).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    for (let i = 0; i < 50; i++) await guess("203.0.113.66");
    expect((await guess("203.0.113.67")).status).toBe(401);
    await c.kernel.store.write(() => undefined); // security events are queued writes of their own: this one commits after them
    const events = c.kernel.store.db.query("SELECT action, count(*) AS n FROM audit_events WHERE action IN ('auth.token.reject', 'auth.rate_limit') GROUP BY action ORDER BY action").all();
    // A flood is recorded, not amplified: one reject per allowed guess, one rate-limit event.
    expect(events).toEqual([{ action: "auth.rate_limit", n: 1 }, { action: "auth.token.reject", n: 6 }]);
  });
});

describe("liveness read in a transaction", () => {
  test("organizationLiveIn and workspaceLiveIn answer as the transaction has it, not as last remembered", async () => {
    const { c, operator, org } = await app();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "app" } })).body.id as string;
    const identity = c.kernel.identity.provider!;
    expect([identity.organization(org) !== null, identity.workspace(ws) !== null]).toEqual([true, true]); // remembered live
    try {
      const seen = await c.kernel.store.write((tx) => {
        const before = [identity.organizationLiveIn(tx, org), identity.workspaceLiveIn(tx, ws)];
        tx.query("UPDATE organizations SET deleted_at = 1 WHERE id = ?").run(org);
        return { before, after: [identity.organizationLiveIn(tx, org), identity.workspaceLiveIn(tx, ws)] };
      });
      expect(seen).toEqual({ before: [true, true], after: [false, false] });
    } finally {
      await c.stop();
    }
  });
});
