/**
 * The way back for someone who lost their authenticator: a recovery code turns TOTP off so that
 * they can enrol anew, and an operator can reset a user's MFA when the codes are gone too
 * (found in review: recovery codes only ever gave ten more logins, then the account was lost).
 */
import { describe, expect, test } from "bun:test";
import { iamPlugin, iamServiceOf } from "../../../plugins/iam/index.ts";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { ForbiddenError, NotFoundError } from "../../../src/errors.ts";
import { listAuditEvents } from "../../../src/audit/query.ts";
import { stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

const PASSWORD = "correct-horse-battery-9";
const newCitadel = stoppedAfterEach();

/** A Citadel with a user (an editor of the default organization) who has enrolled TOTP. */
async function enrolledUser() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const user = await c.addUser(operator, "lost-phone@example.org", "editor");
  const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", user.token)).body.secret);
  const confirmed = await c.send("POST", "/v1/iam/me/mfa/totp/confirm", user.token, { json: { code: totp(secret, c.clock.now()), current_password: PASSWORD } });
  expect(confirmed.status).toBe(200);
  c.clock.advance(30_000); // the enrolment code's step is used up
  const credentials = { email: "lost-phone@example.org", password: PASSWORD };
  return { c, operator, user, secret, credentials, codes: confirmed.body.recovery_codes as string[] };
}

const events = (c: Awaited<ReturnType<typeof testCitadel>>, action: string) =>
  c.kernel.store.db.query<{ outcome: string; reason: string | null; resource_id: string | null; actor_user: string | null }, [string]>(
    "SELECT outcome, reason, resource_id, actor_user FROM audit_events WHERE action = ? ORDER BY seq",
  ).all(action);

describe("a recovery code turns TOTP off", () => {
  test("logged in with one recovery code, the user turns TOTP off with another and enrols anew", async () => {
    const { c, credentials, codes } = await enrolledUser();
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { ...credentials, recovery_code: codes[0] } });
    expect(login.status).toBe(200);
    const session = login.body.token as string;
    expect((await c.send("POST", "/v1/iam/me/mfa/totp", session)).status).toBe(409); // still on: turn it off first

    const spent = await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { recovery_code: codes[0] } });
    expect([spent.status, spent.body.errors?.[0]?.field]).toEqual([422, "recovery_code"]);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { recovery_code: codes[1] } })).status).toBe(200);
    expect(events(c, "iam.mfa.disable").map((e) => [e.outcome, e.reason])).toEqual([
      ["failure", "wrong recovery code"],
      ["success", "with a recovery code"],
    ]);

    // Off, every recovery code with it: the password alone logs in, and a new enrolment starts.
    expect((await c.send("GET", "/v1/iam/me", session)).body).toMatchObject({ mfa: false, recovery_codes_left: 0 });
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: credentials })).status).toBe(200);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp", session)).status).toBe(200);
  });

  test("wrong recovery codes count against the account as wrong TOTP codes do, and a right one must wait too", async () => {
    const { c, credentials, codes } = await enrolledUser();
    const session = (await c.send("POST", "/v1/iam/login", undefined, { json: { ...credentials, recovery_code: codes[0] } })).body.token as string;
    const statuses: number[] = [];
    for (const guess of ["aaaa-bbbb-cccc-dddd", "eeee-ffff-gggg-hhhh", "jjjj-kkkk-mmmm-nnnn", "pppp-qqqq-rrrr-ssss"]) {
      statuses.push((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { recovery_code: guess } })).status);
    }
    expect(statuses).toEqual([422, 422, 422, 429]); // the third wrong code makes the next wait
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { recovery_code: codes[1] } })).status).toBe(429);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { ...credentials, recovery_code: codes[1] }, headers: { "x-test-peer": "198.51.100.7" } })).status).toBe(429);
    c.clock.advance(60_000);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: { recovery_code: codes[1] } })).status).toBe(200);
  });

  test("a TOTP code or a recovery code, one of them: both or neither is refused, and nothing changes", async () => {
    const { c, secret, credentials, codes } = await enrolledUser();
    const session = (await c.send("POST", "/v1/iam/login", undefined, { json: { ...credentials, recovery_code: codes[0] } })).body.token as string;
    const both = { code: totp(secret, c.clock.now()), recovery_code: codes[1] };
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: both })).status).toBe(422);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/disable", session, { json: {} })).status).toBe(422);
    expect((await c.send("GET", "/v1/iam/me", session)).body).toMatchObject({ mfa: true, recovery_codes_left: 9 });
  });
});

describe("an operator resets a user's MFA", () => {
  test("after confirmation: TOTP off, recovery codes deleted, the user's logins ended, audited; their tokens stay", async () => {
    const { c, operator, user, credentials } = await enrolledUser();
    const pat = (await c.send("POST", "/v1/iam/me/tokens", user.token, { json: { name: "ci", scopes: ["read", "iam:self"] } })).body.token as string;
    const reset = `/v1/iam/users/${user.id}/mfa/reset`;
    const asked = await c.send("POST", reset, operator);
    expect(asked.status).toBe(428);
    expect((await c.send("GET", "/v1/iam/me", user.token)).body.mfa).toBe(true); // nothing done yet
    expect((await c.send("POST", reset, operator, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);

    expect((await c.send("GET", "/v1/iam/me", user.token)).status).toBe(401); // the session ended
    expect((await c.send("GET", "/v1/iam/me", pat)).status).toBe(200); // made on purpose: it stays
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM recovery_codes WHERE user_id = ?").get(user.id)).toEqual({ n: 0 });
    const again = await c.send("POST", "/v1/iam/login", undefined, { json: credentials });
    expect([again.status, again.body.user.mfa]).toEqual([200, false]);
    const me = (await c.send("GET", "/v1/iam/me", operator)).body;
    expect(events(c, "iam.mfa.reset")).toEqual([{ outcome: "success", reason: null, resource_id: user.id, actor_user: me.id }]);

    // Nothing left to reset.
    const twice = await c.send("POST", reset, operator);
    expect((await c.send("POST", reset, operator, { headers: { "x-citadel-confirm": twice.body.confirmation_token } })).status).toBe(409);
  });

  test("only an operator, only for someone else, only for a user who exists", async () => {
    const { c, operator, user } = await enrolledUser();
    const confirmed = async (path: string, token: string) => {
      const asked = await c.send("POST", path, token);
      if (asked.status !== 428) return asked.status;
      return (await c.send("POST", path, token, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status;
    };
    const me = (await c.send("GET", "/v1/iam/me", operator)).body;
    expect(await confirmed(`/v1/iam/users/${me.id}/mfa/reset`, user.token)).toBe(403); // not an operator
    expect(await confirmed(`/v1/iam/users/${me.id}/mfa/reset`, operator)).toBe(403); // one's own takes a code
    expect(await confirmed("/v1/iam/users/usr_nobody/mfa/reset", operator)).toBe(404);
    expect((await c.send("GET", "/v1/iam/me", user.token)).body.mfa).toBe(true);
  });
});

describe("citadel recover: the only operator locked out, on the host", () => {
  test("a one-time password, TOTP off, recovery codes gone, logins ended, audited; for operators only", async () => {
    const c = await newCitadel();
    const operator = await c.login(c.owner.email, c.owner.password);
    const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", operator)).body.secret);
    expect((await c.send("POST", "/v1/iam/me/mfa/totp/confirm", operator, { json: { code: totp(secret, c.clock.now()), current_password: c.owner.password } })).status).toBe(200);
    const editor = await c.addUser(operator, "editor@example.org", "editor");
    const iam = iamServiceOf(c.kernel.store)!;

    await expect(iam.recoverOperator("editor@example.org")).rejects.toThrow(ForbiddenError); // an operator resets them
    await expect(iam.recoverOperator("nobody@example.org")).rejects.toThrow(NotFoundError);
    const { email, password } = await iam.recoverOperator(` ${c.owner.email.toUpperCase()} `, { uids: "uid 0 (sudo by uid 1000)", named: "uid 0 (sudo by alice, uid 1000)" });
    expect(email).toBe(c.owner.email); // as stored

    expect((await c.send("GET", "/v1/iam/me", operator)).status).toBe(401); // the login that held the lost factor ended
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password } })).status).toBe(401);
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password } }); // no second factor now
    expect(login.status).toBe(200);
    const me = await c.send("GET", "/v1/iam/me", login.body.token);
    expect(me.body).toMatchObject({ mfa: false, recovery_codes_left: 0, must_change_password: true });
    expect((await c.send("GET", "/v1/iam/me", editor.token)).status).toBe(200); // nobody else's logins end
    expect(events(c, "iam.operator.recover")).toEqual([
      { outcome: "success", reason: "host-local recovery by uid 0 (sudo by uid 1000): a one-time password, TOTP off, logins ended", resource_id: me.body.id, actor_user: null },
    ]);
    // The accounts by number are in the chained reason (found in review: on the CLI's sealed
    // database the personal data was withheld, and no record of who ran it was left); the sudo
    // user's name is personal data (found in an earlier review: it was in the chained reason), under the operator's key.
    const recorded = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.operator.recover" }, 1).events[0]!;
    expect([recorded.subject, recorded.personal]).toEqual([me.body.id, { invoker: "uid 0 (sudo by alice, uid 1000)" }]);
  });
  test("--clear-allowlist: an organization's or workspace's allowlist that shuts out the operator on the host too is emptied, audited (found in review)", async () => {
    const c = await newCitadel();
    const operator = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const elsewhere = { headers: { "x-test-peer": "10.0.0.5" } };
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "ops" } })).body.id as string;
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, operator, { json: { ip_allowlist: ["10.0.0.0/8"] }, ...elsewhere })).status).toBe(200);
    expect((await c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { ip_allowlist: ["10.0.0.0/8"] }, ...elsewhere })).status).toBe(200);
    // Whoever set them moved: the operator on the host (loopback) is refused as anyone else.
    const unlockOrg = () => c.send("PATCH", `/v1/iam/orgs/${org}`, operator, { json: { ip_allowlist: [] } });
    expect((await unlockOrg()).status).toBe(403);

    const iam = iamServiceOf(c.kernel.store)!;
    await expect(iam.clearAllowlist("org_nonexistent")).rejects.toThrow(NotFoundError);
    const invoker = { uids: "uid 0 (sudo by uid 1000)", named: "uid 0 (sudo by alice, uid 1000)" };
    expect(await iam.clearAllowlist(` ${org} `, invoker)).toEqual({ kind: "organization", id: org, was: ["10.0.0.0/8"] });
    expect((await c.send("GET", `/v1/iam/orgs/${org}`, operator)).status).toBe(200);
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, operator, { json: { name: "ops2" } })).status).toBe(403); // the workspace's own list still holds
    expect((await iam.clearAllowlist(ws, invoker)).was).toEqual(["10.0.0.0/8"]);
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, operator, { json: { name: "ops2" } })).status).toBe(200);
    expect((await iam.clearAllowlist(ws, invoker)).was).toEqual([]); // already any address: nothing recorded

    const recorded = (action: string) => events(c, action).filter((e) => e.reason?.startsWith("host-local"));
    expect(recorded("iam.organization.update")).toEqual([{ outcome: "success", reason: "host-local recovery by uid 0 (sudo by uid 1000): ip_allowlist=[] (any address), was [10.0.0.0/8]", resource_id: org, actor_user: null }]);
    expect(recorded("iam.workspace.update")).toEqual([{ outcome: "success", reason: "host-local recovery by uid 0 (sudo by uid 1000): ip_allowlist=[] (any address), was [10.0.0.0/8]", resource_id: ws, actor_user: null }]);
    const event = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.organization.update" }, 10).events.find((e) => e.reason?.startsWith("host-local"))!;
    expect(event.personal).toEqual({ invoker: "uid 0 (sudo by alice, uid 1000)" });
  });

  test("--clear-allowlist: a stored list that is no JSON list of strings (it refuses everyone) is cleared too, what it was recorded as stored (found in review: the command crashed)", async () => {
    const c = await newCitadel();
    const operator = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, operator, { json: { name: "ops" } })).body.id as string;
    const store = (table: string, id: string, list: string) => c.kernel.store.write((tx) => tx.run(`UPDATE ${table} SET ip_allowlist = ? WHERE id = ?`, [list, id]));
    const recover = (id: string) => iamPlugin.recover!(c.kernel as never, { clear_allowlist: id, invoker: "uid 0", invoker_uids: "uid 0" });
    const members = `/v1/iam/orgs/${org}/members`;
    const long = `["${"x".repeat(300)}", 1]`;
    for (const stored of ["{", '{"a":1}', '"10.0.0.0/8"', "null", '["10.0.0.0/8", 7]', long]) {
      await store("organizations", org, stored);
      expect((await c.send("GET", members, operator)).status).toBe(403);
      const done = await recover(org);
      const shown = stored === long ? `${long.slice(0, 200)}…` : stored;
      expect(done!.summary).toEqual({ allowlist_cleared: { organization: org, was: shown } });
      expect(done!.lines).toEqual([`The organization ${org} is used from any address again (its allowlist was unreadable, ${JSON.stringify(shown)}, and refused every address): set the right one once back in.`]);
      expect((await c.send("GET", members, operator)).status).toBe(200);
    }
    await store("workspaces", ws, "{");
    expect((await recover(ws))!.summary).toEqual({ allowlist_cleared: { workspace: ws, was: "{" } });
    expect((await c.send("GET", `/v1/iam/workspaces/${ws}`, operator)).status).toBe(200);

    const reasons = (action: string) => events(c, action).filter((e) => e.reason?.startsWith("host-local")).map((e) => e.reason);
    expect(reasons("iam.organization.update")[0]).toBe('host-local recovery by uid 0: ip_allowlist=[] (any address), was "{" (unreadable: it refused every address)');
    expect(reasons("iam.organization.update").length).toBe(6);
    expect(reasons("iam.workspace.update")).toEqual(['host-local recovery by uid 0: ip_allowlist=[] (any address), was "{" (unreadable: it refused every address)']);
  });
});
