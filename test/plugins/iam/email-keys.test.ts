/**
 * One mailbox, one account: email addresses are compared by a key — composed (NFC), then lower
 * case in every script — not by SQLite's NOCASE, which folds A-Z alone (found in review: "éve@",
 * "e\u0301ve@" and "ÉVE@" made three accounts, and an invitation to one form of a member's
 * address passed as no member's). Logins, their failure counts, invitations and adding a member
 * by email all go by the key; tags (+ci) are not folded.
 */
import { expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { iamMigrations } from "../../../plugins/iam/migrations.ts";
import { iamSubjects } from "../../../plugins/iam/subject.ts";
import { emailKey } from "../../../plugins/iam/store.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const PASSWORD = "correct-horse-battery-9";
const COMPOSED = "\u00e9ve@example.test"; // éve, é as one character
const DECOMPOSED = "e\u0301ve@example.test"; // e and a combining acute accent
const UPPER = "\u00c9VE@EXAMPLE.TEST";

async function citadel() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const createUser = (email: string) => c.send("POST", "/v1/iam/users", operator, { json: { email, password: PASSWORD } });
  return { c, operator, org: c.owner.organization, createUser };
}

test("the key: composed, lower case in every script, trimmed; tags and dots kept", () => {
  expect(new Set([COMPOSED, DECOMPOSED, UPPER, ` ${UPPER}\t`].map(emailKey))).toEqual(new Set([COMPOSED]));
  expect(emailKey("Eve+CI@Example.test")).toBe("eve+ci@example.test");
  expect(emailKey("e.ve@example.test")).not.toBe(emailKey("eve@example.test"));
});

test("an address typed another way is the same account: refused when made again, and logs in", async () => {
  const { c, createUser } = await citadel();
  const made = await createUser(DECOMPOSED);
  expect([made.status, made.body.user.email]).toEqual([200, COMPOSED]); // kept composed
  for (const again of [COMPOSED, DECOMPOSED, UPPER, "E\u0301VE@example.test"]) {
    const refused = await createUser(again);
    expect([again, refused.status]).toEqual([again, 409]);
  }
  expect((await createUser("eve+ci@example.test")).status).toBe(200); // another mailbox's name
  for (const typed of [UPPER, COMPOSED, ` ${DECOMPOSED} `]) {
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: typed, password: PASSWORD } });
    expect([typed, login.status, login.body.user?.id]).toEqual([typed, 200, made.body.user.id]);
  }
});

test("failed logins count against the account however its address is typed", async () => {
  const { c, createUser } = await citadel();
  await createUser(COMPOSED);
  const attempt = (email: string) => c.send("POST", "/v1/iam/login", undefined, { json: { email, password: "wrong-password-123" } });
  // login_slowdown_after is 3: the fourth attempt waits, whichever form the three before used.
  for (const typed of [COMPOSED, DECOMPOSED, UPPER]) expect((await attempt(typed)).status).toBe(401);
  expect((await attempt("E\u0301VE@example.test")).status).toBe(429);
});

test("invitations: a member's address in any form is a member's; one address is invited once; the invitee sees and accepts it", async () => {
  const { c, operator, org, createUser } = await citadel();
  const invite = (email: string) => c.send("POST", `/v1/iam/orgs/${org}/invitations`, operator, { json: { email, role: "viewer" } });
  await createUser(COMPOSED);
  expect((await c.send("POST", `/v1/iam/orgs/${org}/members`, operator, { json: { email: UPPER, role: "viewer" } })).status).toBe(200); // added by another form
  const toMember = await invite(DECOMPOSED);
  expect([toMember.status, toMember.body.detail]).toEqual([409, "that address belongs to a member already: change their role instead"]);

  const zoe = await createUser("zo\u00eb@example.test");
  const sent = await invite("ZOE\u0308@EXAMPLE.TEST");
  expect([sent.status, sent.body.email]).toEqual([200, "ZO\u00cb@EXAMPLE.TEST"]); // as typed, composed
  const twice = await invite("zo\u00eb@example.test");
  expect([twice.status, twice.body.detail]).toEqual([409, "that address is invited already: revoke that invitation first"]);
  const session = await c.login("ZOE\u0308@example.test", PASSWORD);
  expect((await c.send("GET", "/v1/iam/me/invitations", session)).body.items.map((i: { id: string }) => i.id)).toEqual([sent.body.id]);
  expect((await c.send("POST", `/v1/iam/me/invitations/${sent.body.id}/accept`, session)).status).toBe(200);
  expect((await c.send("GET", `/v1/iam/orgs/${org}/members`, operator)).body.items.map((m: { user: string }) => m.user)).toContain(zoe.body.user.id);
});

test("addresses stored before keys were get theirs from migration 0010; accounts that share one still log in, each by its own address", async () => {
  const { c, createUser } = await citadel();
  const db = c.kernel.store.db;
  const hash = db.query<{ password_hash: string }, []>("SELECT password_hash FROM users LIMIT 1").get()!.password_hash;
  const older = [
    ["usr_old_nfc", COMPOSED],
    ["usr_old_nfd", DECOMPOSED],
    ["usr_old_upper", UPPER],
  ] as const;
  // As the review made them, before keys: three accounts for one mailbox, keyless.
  older.forEach(([id, email], i) => db.query("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)").run(id, email, hash, i + 1));
  db.query("INSERT INTO invitations (id, organization_id, email, role, invited_by, created_at, expires_at) VALUES ('inv_old', ?, ?, 'viewer', 'usr_old_nfc', 0, ?)").run(c.owner.organization, UPPER, c.clock.now() + 86_400_000);
  (iamMigrations.find((m) => m.id === "0010_email_keys_backfill")!.up as (db: Database) => void)(db);

  expect(db.query("SELECT count(*) AS n FROM users WHERE email_key IS NULL").get()).toEqual({ n: 0 });
  expect(db.query("SELECT DISTINCT email_key FROM users WHERE id LIKE 'usr_old_%'").all()).toEqual([{ email_key: COMPOSED }]);
  expect(db.query("SELECT email, email_key FROM invitations WHERE id = 'inv_old'").get()).toEqual({ email: UPPER, email_key: COMPOSED });
  // Each logs in by its own address.
  for (const [id, email] of older) {
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email, password: "owner-passphrase-2026" } });
    expect([email, login.status, login.body.user?.id]).toEqual([email, 200, id]);
  }
  expect((await createUser("\u00e9VE@example.test")).status).toBe(409);
});

test("an erased user's address leaves no key behind: the trigger re-keys an address changed without its key", async () => {
  const { c, createUser } = await citadel();
  const made = (await createUser(UPPER)).body.user.id as string;
  const db = c.kernel.store.db;
  await c.kernel.store.write((tx) => iamSubjects(c.kernel.store, () => c.kernel.seal.keyring()).erase!(tx, { kind: "user", id: made }, c.clock.now()));
  expect(db.query("SELECT email, email_key FROM users WHERE id = ?").get(made)).toEqual({ email: `erased-${made}@erased.invalid`, email_key: `erased-${made.toLowerCase()}@erased.invalid` });
  expect(db.query("SELECT count(*) AS n FROM users WHERE email_key = ?").get(COMPOSED)).toEqual({ n: 0 });
});

test("an invitation to the user's address typed another way is exported and erased with them (found in review)", async () => {
  const { c, operator, org, createUser } = await citadel();
  const made = (await createUser(COMPOSED)).body.user.id as string;
  for (const form of [UPPER, DECOMPOSED.replace("e\u0301", "E\u0301")]) {
    const other = await c.send("POST", `/v1/iam/orgs/${org}/invitations`, operator, { json: { email: form, role: "viewer" } });
    expect(other.status === 200 || other.status === 409).toBe(true); // one address is invited once
  }
  const exported = await c.send("POST", `/v1/subject/user/${made}/export`, operator);
  expect(exported.status).toBe(200);
  expect(exported.body.data.iam.invitations).toHaveLength(1);
  await c.kernel.store.write((tx) => iamSubjects(c.kernel.store, () => c.kernel.seal.keyring()).erase!(tx, { kind: "user", id: made }, c.clock.now()));
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM invitations").get()).toEqual({ n: 0 });
});
