/** RFC 8628, the device authorization grant behind `citadel login`: every state of the poll. */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { listAuditEvents } from "../../../src/audit/query.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });
const DEVICE = "urn:ietf:params:oauth:grant-type:device_code";

async function started() {
  const c = await testCitadel();
  const start = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI", scope: "read iam:self" }));
  expect(start.status).toBe(200);
  const poll = () => c.send("POST", "/oauth/token", undefined, form({ grant_type: DEVICE, device_code: start.body.device_code }));
  return { c, start: start.body, poll };
}

describe("device flow", () => {
  test("pending, then slow_down when polled too fast, then the token once approved", async () => {
    const { c, start, poll } = await started();
    expect(start).toMatchObject({ expires_in: 600, interval: 5, verification_uri: "https://citadel.test/oauth/device" });
    expect(start.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    const first = await poll();
    expect([first.status, first.body.error]).toEqual([400, "authorization_pending"]);
    const fast = await poll();
    expect([fast.status, fast.body.error]).toEqual([400, "slow_down"]);
    c.clock.advance(10_000); // the interval is 10 s now
    expect((await poll()).body.error).toBe("authorization_pending");

    const owner = await c.login(c.owner.email, c.owner.password);
    expect((await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code.toLowerCase(), approve: true } })).body).toEqual({ approved: true });
    c.clock.advance(10_000);
    const granted = await poll();
    expect(granted.status).toBe(200);
    expect(granted.body).toMatchObject({ token_type: "Bearer", scope: "read iam:self" });
    expect((await c.send("GET", "/v1/iam/me", granted.body.access_token)).body.email).toBe(c.owner.email);
    c.clock.advance(10_000);
    expect((await poll()).body.error).toBe("invalid_grant"); // used once
  });

  test("the client's name (which holds the machine's host name) is personal data: never in the chained reason (found in review)", async () => {
    const { c, start } = await started();
    const owner = await c.login(c.owner.email, c.owner.password);
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code, approve: true } });
    const rows = c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action LIKE 'iam.device.%' ORDER BY seq").all() as Array<{ action: string; reason: string }>;
    expect(rows).toEqual([
      { action: "iam.device.start", reason: "a device login started" },
      { action: "iam.device.approve", reason: "approved" },
    ]);
    const approved = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.device.approve" }, 1).events[0]!;
    expect(approved.personal).toMatchObject({ client_name: "laptop CLI" }); // under the approving user's key: erasable
    // The start's event holds none of it: under the shared anonymous key, no erasure reaches it.
    const started_ = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.device.start" }, 1).events[0]!;
    expect([started_.personal, started_.source_address, started_.user_agent]).toEqual([null, null, null]);
  });

  test("a password change ends the CLI logins made with the old password, as it ends sessions", async () => {
    const { c, start, poll } = await started();
    const owner = await c.login(c.owner.email, c.owner.password);
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code, approve: true } });
    c.clock.advance(10_000);
    const cli = (await poll()).body.access_token as string;
    const pat = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "ci", scopes: ["read"] } })).body.token as string;
    expect((await c.send("GET", "/v1/iam/me", cli)).status).toBe(200);
    const changed = await c.send("POST", "/v1/iam/me/password", owner, { json: { current_password: c.owner.password, new_password: "a-new-passphrase-2026" } });
    expect(changed.status).toBe(200);
    const ended = await c.send("GET", "/v1/iam/me", cli);
    expect([ended.status, ended.body.detail]).toEqual([401, "The token was revoked."]);
    expect((await c.send("GET", "/v1/system/info", pat)).status).toBe(200); // made on purpose: it stays
    expect((await c.send("GET", "/v1/iam/me", owner)).status).toBe(200); // the session that changed it
  });

  test("a password change denies a CLI login approved but not yet picked up, and keeps the caller's own chain (found in review)", async () => {
    const { c, start, poll } = await started();
    const owner = await c.login(c.owner.email, c.owner.password);
    // Approved by whoever knew the old password, not yet redeemed.
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code, approve: true } });
    // The caller: a token made by another CLI login (a device token's child).
    const other = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "my CLI", scope: "read iam:self" }));
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: other.body.user_code, approve: true } });
    c.clock.advance(10_000);
    const mine = (await c.send("POST", "/oauth/token", undefined, form({ grant_type: DEVICE, device_code: other.body.device_code }))).body.access_token as string;
    const child = (await c.send("POST", "/v1/iam/me/tokens", mine, { json: { name: "child", scopes: ["read", "iam:self"] } })).body.token as string;
    const changed = await c.send("POST", "/v1/iam/me/password", child, { json: { current_password: c.owner.password, new_password: "a-new-passphrase-2026" } });
    expect(changed.status).toBe(200);
    expect((await c.send("GET", "/v1/iam/me", child)).status).toBe(200); // the caller keeps working
    expect((await c.send("GET", "/v1/iam/me", mine)).status).toBe(200); // and what it was made from
    expect((await c.send("GET", "/v1/iam/me", owner)).status).toBe(401); // another login: ended
    c.clock.advance(10_000);
    const late = await poll();
    expect([late.status, late.body.error]).toEqual([400, "access_denied"]);
  });

  test("an approval whose session ended before it was written is refused and audited (found in review)", async () => {
    const { c, start, poll } = await started();
    const approver = await c.login(c.owner.email, c.owner.password);
    const other = await c.login(c.owner.email, c.owner.password);
    // Both pass the guard; the logout's write, queued first, ends every session before the approval's.
    const [out, approval] = await Promise.all([
      c.send("POST", "/v1/iam/logout", other, { json: { everywhere: true } }),
      c.send("POST", "/v1/iam/device/approve", approver, { json: { user_code: start.user_code, approve: true } }),
    ]);
    expect(out.status).toBe(200);
    expect([approval.status, approval.body.detail]).toEqual([401, "This session has ended: log in again."]);
    const reasons = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.device.approve'").all() as Array<{ reason: string }>;
    expect(reasons.map((r) => r.reason)).toEqual(["the approving session ended meanwhile"]);
    c.clock.advance(10_000);
    expect((await poll()).body.error).toBe("authorization_pending"); // still undecided
  });

  test("the approval page is under the login endpoints' limit: codes cannot be tried there without end (found in review)", async () => {
    const { c } = await started();
    const statuses: number[] = [];
    for (let i = 0; i < 200 && !statuses.includes(429); i++) statuses.push((await c.send("GET", `/oauth/device?user_code=AAAA-${String(i).padStart(4, "0")}`)).status);
    expect(statuses).toContain(429);
  });

  test("denied, and expired", async () => {
    const { c, start, poll } = await started();
    const owner = await c.login(c.owner.email, c.owner.password);
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code, approve: false } });
    expect((await poll()).body.error).toBe("access_denied");

    const other = await c.send("POST", "/oauth/device/code", undefined, form({}));
    c.clock.advance(601_000);
    const expired = await c.send("POST", "/oauth/token", undefined, form({ grant_type: DEVICE, device_code: other.body.device_code }));
    expect(expired.body.error).toBe("expired_token");
    expect((await c.send("POST", "/oauth/token", undefined, form({ grant_type: DEVICE, device_code: "made-up" }))).body.error).toBe("invalid_grant");
    expect((await c.send("POST", "/oauth/token", undefined, form({ grant_type: "password" }))).body.error).toBe("unsupported_grant_type");
  });

  test("the approval page shows the client's address and the code, and approves with the user's credentials", async () => {
    const { c, start, poll } = await started();
    const page = await c.send("GET", `/oauth/device?user_code=${start.user_code}`);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(page.headers.get("content-security-policy")).toContain("form-action 'self'");
    expect(page.text).toContain("laptop CLI");
    expect(page.text).toContain("127.0.0.1");
    expect(page.text).toContain(start.user_code);
    expect(page.text).not.toMatch(/<script/);

    const wrong = await c.send("POST", "/oauth/device", undefined, form({ user_code: start.user_code, email: c.owner.email, password: "wrong-password-1", decision: "approve" }));
    expect(wrong.text).toContain("The email or password is wrong.");
    expect((await poll()).body.error).toBe("authorization_pending");
    const approved = await c.send("POST", "/oauth/device", undefined, form({ user_code: start.user_code, email: c.owner.email, password: c.owner.password, decision: "approve" }));
    expect(approved.text).toContain("Approved");
    c.clock.advance(10_000);
    expect((await poll()).status).toBe(200);
  });

  test("an account that must still change its one-time password approves no device login, on the page or through the API (found in review: the page let it)", async () => {
    const { c, start, poll } = await started();
    const operator = await c.login(c.owner.email, c.owner.password);
    const made = await c.send("POST", "/v1/iam/users", operator, { json: { email: "new@example.org" } });
    const credentials = { email: "new@example.org", password: made.body.password as string };
    const page = await c.send("POST", "/oauth/device", undefined, form({ user_code: start.user_code, ...credentials, decision: "approve" }));
    expect(page.text).toContain("Change your one-time password first");
    const session = (await c.send("POST", "/v1/iam/login", undefined, { json: credentials })).body.token as string;
    const api = await c.send("POST", "/v1/iam/device/approve", session, { json: { user_code: start.user_code, approve: true } });
    expect([api.status, api.body.code]).toEqual([403, "password_change_required"]);
    expect((await poll()).body.error).toBe("authorization_pending");
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM credentials WHERE kind = 'session' AND revoked_at IS NULL AND user_id = ?").get(made.body.user.id)).toEqual({ n: 1 }); // the page's ended
  });

  test("a device login asking for an unknown scope, or for none, is refused with invalid_scope; none asked for is the default (found in review)", async () => {
    const c = await testCitadel();
    const start = (fields: Record<string, string>) => c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI", ...fields }));
    for (const scope of ["secret:read nosuch:thing", "read nosuch:read", "   "]) {
      const refused = await start({ scope });
      expect([scope, refused.status, refused.body.error]).toEqual([scope, 400, "invalid_scope"]);
    }
    expect((await start({ scope: "secrets:read iam:self" })).status).toBe(200);
    expect((await start({})).status).toBe(200);
    // A form field sent without a value is omitted (RFC 6749 3.1): `scope=` asks for the default, as no scope does.
    expect((await start({ scope: "" })).status).toBe(200);
    expect(c.kernel.store.db.query("SELECT scopes FROM device_grants ORDER BY created_at").all()).toEqual([{ scopes: '["secrets:read","iam:self"]' }, { scopes: '["read","write"]' }, { scopes: '["read","write"]' }]);
    await c.stop();
  });

  test("the approval page's refusals carry their status: 401 for a wrong password, 404 for an unknown code, 429 with Retry-After when throttled — as pages (found in review: all were 200)", async () => {
    const { c, start } = await started();
    const submit = (fields: Record<string, string>) => c.send("POST", "/oauth/device", undefined, form({ user_code: start.user_code, email: c.owner.email, decision: "approve", ...fields }));
    const unknownCode = await submit({ user_code: "BCDF-GHJK", password: c.owner.password });
    expect([unknownCode.status, unknownCode.headers.get("content-type")]).toEqual([404, "text/html; charset=utf-8"]);
    const statuses: number[] = [];
    let throttled: Awaited<ReturnType<typeof submit>> | undefined;
    for (let i = 0; i < 10 && throttled === undefined; i++) {
      const wrong = await submit({ password: "wrong-password-1" });
      statuses.push(wrong.status);
      expect(wrong.headers.get("content-type")).toBe("text/html; charset=utf-8");
      if (wrong.status === 429) throttled = wrong;
      else expect([wrong.status, wrong.text.includes("The email or password is wrong.")]).toEqual([401, true]);
    }
    expect(statuses[0]).toBe(401);
    expect(throttled?.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
    expect(throttled?.text).toContain("Too many failed logins");
  });

  test("a wrong code on the approval page leaves no session behind", async () => {
    const { c } = await started();
    const liveSessions = () => c.kernel.store.db.query("SELECT count(*) AS n FROM credentials WHERE kind = 'session' AND revoked_at IS NULL").get();
    const before = liveSessions();
    const res = await c.send("POST", "/oauth/device", undefined, form({ user_code: "BCDF-GHJK", email: c.owner.email, password: c.owner.password, decision: "approve" }));
    expect(res.text).not.toContain("Approved");
    expect(liveSessions()).toEqual(before);
  });

  test("HTML in a client name is shown as text", async () => {
    const c = await testCitadel();
    const start = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "<img src=x onerror=alert(1)>" }));
    const page = await c.send("GET", `/oauth/device?user_code=${start.body.user_code}`);
    expect(page.text).not.toContain("<img");
    expect(page.text).toContain("&#60;img");
  });

  test("a client name with control or direction characters is refused; the page puts the address the server saw first (found in review)", async () => {
    const c = await testCitadel();
    for (const name of ["x\u001b]0;PWNED\u0007\u001b[2J", "citadel CLI on ws-17 (this computer).\u202e", "two\nlines"]) {
      const refused = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: name }));
      expect([refused.status, refused.body.error]).toEqual([400, "invalid_request"]);
    }
    // Joiners are format characters emoji and many scripts need (ZWNJ in Persian, ZWJ in 👩‍💻).
    const joined = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop 👩\u200d💻 می\u200cخواهم" }));
    expect(joined.status).toBe(200);
    expect(c.kernel.store.db.query("SELECT client_name FROM device_grants").get()).toEqual({ client_name: "laptop 👩\u200d💻 می\u200cخواهم" });
    const start = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "Ünïcode laptop — ok" }));
    const page = await c.send("GET", `/oauth/device?user_code=${start.body.user_code}`);
    expect(page.text).toMatch(/A login from <strong>[^<]+<\/strong>.* It says it is <bdi>Ünïcode laptop — ok<\/bdi>\./);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM device_grants").get()).toEqual({ n: 2 });
  });

  test("expired device logins, consumed ones included, are dropped an hour after they expire; a pending one stays (found in review)", async () => {
    const { c, start, poll } = await started();
    const owner = await c.login(c.owner.email, c.owner.password);
    await c.send("POST", "/v1/iam/device/approve", owner, { json: { user_code: start.user_code, approve: true } });
    expect((await poll()).status).toBe(200); // consumed
    const abandoned = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "abandoned" }));
    expect(abandoned.status).toBe(200);
    const grants = () => c.kernel.store.db.query("SELECT client_name, status FROM device_grants ORDER BY created_at").all();
    const purge = () => iamServiceOf(c.kernel.store)!.purgeExpiredDeviceGrants();

    c.clock.advance(11 * 60_000); // both expired (10 minutes)
    await purge();
    expect(grants()).toEqual([{ client_name: "laptop CLI", status: "consumed" }, { client_name: "abandoned", status: "pending" }]); // kept an hour
    const late = await c.send("POST", "/oauth/token", undefined, form({ grant_type: DEVICE, device_code: abandoned.body.device_code }));
    expect(late.body.error).toBe("expired_token");

    c.clock.advance(60 * 60_000);
    expect((await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "fresh" }))).status).toBe(200);
    await purge();
    expect(grants()).toEqual([{ client_name: "fresh", status: "pending" }]);
  });
});
