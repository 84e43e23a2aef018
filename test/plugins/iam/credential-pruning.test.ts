/**
 * Credentials are not kept forever, and revoking one does not walk the whole table (found in
 * review: a soak test's 500,000 rows made a revocation take 0.8 s and "log out everywhere"
 * 1.9 s, the event loop blocked meanwhile; nothing ever deleted a row).
 */
import { describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { pruneLongExpiredCredentials } from "../../../plugins/iam/index.ts";
import type { IamSettings } from "../../../plugins/iam/settings.ts";
import * as sql from "../../../plugins/iam/store.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const DAY_MS = 86_400_000;

/** The SQL that `run` sends through `db`. */
function statementsOf(db: Database, run: (db: Database) => unknown): string[] {
  const sent: string[] = [];
  const recording = new Proxy(db, {
    get(target, key) {
      if (key === "query") return (text: string) => (sent.push(text), target.query(text));
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  run(recording);
  return sent;
}

/** The steps of the statement's query plan (finalized: an explained write otherwise stays "in progress", and the store's next savepoint fails). */
function planOf(db: Database, text: string): string[] {
  const explain = db.prepare<{ detail: string }, []>(`EXPLAIN QUERY PLAN ${text}`);
  try {
    return explain.all().map((r) => r.detail);
  } finally {
    explain.finalize();
  }
}

describe("revoking walks what a credential made through an index", () => {
  test("no revocation builds a throwaway index, and listing a user's credentials reads live ones only", async () => {
    const c = await newCitadel();
    const db = c.kernel.store.db;
    const now = c.clock.now();
    const revocations = {
      revokeCredential: (d: Database) => sql.revokeCredential(d, "x", now),
      revokeUserCredentials: (d: Database) => sql.revokeUserCredentials(d, "u", sql.EVERY_USER_CREDENTIAL, now),
      revokeMemberCredentials: (d: Database) => sql.revokeMemberCredentials(d, "o", "u", now),
      revokeWorkspaceCredentials: (d: Database) => sql.revokeWorkspaceCredentials(d, "w", now),
      revokeOrganizationCredentials: (d: Database) => sql.revokeOrganizationCredentials(d, "o", now),
      endLogin: (d: Database) => sql.endLogin(d, "x", now),
      endUserLogins: (d: Database) => sql.endUserLogins(d, "u", now),
      endAllLogins: (d: Database) => sql.endAllLogins(d, now),
    };
    for (const [name, revoke] of Object.entries(revocations)) {
      const [statement] = statementsOf(db, revoke);
      const plan = planOf(db, statement!);
      expect([name, plan.filter((step) => step.includes("AUTOMATIC"))]).toEqual([name, []]);
      expect([name, plan.some((step) => step.includes("USING INDEX credentials_by_parent (parent_id=?)"))]).toEqual([name, true]);
    }
    const [listing] = statementsOf(db, (d) => sql.credentialsOfUser(d, "u", ["session", "device"]));
    expect(planOf(db, listing!).join(" | ")).toContain("USING INDEX credentials_live_by_user");
  });
});

describe("the purger deletes long-expired credentials", () => {
  async function app() {
    const c = await newCitadel();
    const settings = c.config.iam as IamSettings;
    const kernel = { ...c.kernel, config: c.config, settings, log: c.kernel.log } as unknown as Parameters<typeof pruneLongExpiredCredentials>[0];
    const db = c.kernel.store.db;
    const user = (db.query("SELECT id FROM users WHERE email = ?").get(c.owner.email) as { id: string }).id;
    const now = c.clock.now();
    const retention = settings.credential_retention_days * DAY_MS;
    const add = (id: string, kind: sql.CredentialKind, expiresAt: number, more: { revokedAt?: number; parent?: string } = {}) => {
      sql.insertCredential(db, sql.credentialRow({ id, kind, hash: new Uint8Array(32), user_id: user, parent_id: more.parent ?? null, created_at: expiresAt - 3_600_000, expires_at: expiresAt }));
      if (more.revokedAt !== undefined) sql.revokeAt(db, id, more.revokedAt);
    };
    const left = (ids: string[]) => ids.filter((id) => sql.credentialById(db, id) !== null);
    return { c, db, kernel, now, retention, add, left };
  }

  test("deletes what expired before the retention, keeps what works, what expired since, and what a kept credential was made from", async () => {
    const { kernel, now, retention, add, left } = await app();
    const longAgo = now - retention - DAY_MS;
    add("old_session", "session", longAgo);
    add("old_revoked_session", "session", longAgo, { revokedAt: longAgo - 3_600_000 });
    add("old_device", "device", longAgo);
    add("old_workload", "workload", longAgo, { parent: "old_device" }); // a dead family goes whole
    add("recently_expired", "session", now - DAY_MS);
    add("recently_revoked", "pat", now + 30 * DAY_MS, { revokedAt: now - DAY_MS });
    add("live", "session", now + DAY_MS);
    // Revoked long ago but not yet expired: a restored backup's copy would still work until it is.
    add("revoked_long_ago", "pat", now + DAY_MS, { revokedAt: longAgo });
    // A dead login that made a token still working (or dead only lately), a generation apart.
    add("old_maker", "device", longAgo);
    add("old_middle", "pat", longAgo, { parent: "old_maker" });
    add("working_grandchild", "workload", now + 3_600_000, { parent: "old_middle" });
    add("old_lately_dead_maker", "device", longAgo);
    add("lately_dead_child", "workload", now - DAY_MS, { parent: "old_lately_dead_maker" });

    expect(await pruneLongExpiredCredentials(kernel)).toBe(4);
    expect(left(["old_session", "old_revoked_session", "old_device", "old_workload"])).toEqual([]);
    const kept = ["recently_expired", "recently_revoked", "live", "revoked_long_ago", "old_maker", "old_middle", "working_grandchild", "old_lately_dead_maker", "lately_dead_child"];
    expect(left(kept)).toEqual(kept);
  });

  test("a pass goes on past long-expired credentials it keeps, in writes of a bounded size", async () => {
    const { db, now, retention, add, left } = await app();
    const longAgo = now - retention - DAY_MS;
    // The oldest are kept (each made a token that works): a pass must not stop at them.
    for (let i = 0; i < 3; i++) {
      add(`kept_${i}`, "device", longAgo - 10 + i);
      add(`child_${i}`, "pat", now + DAY_MS, { parent: `kept_${i}` });
    }
    for (let i = 0; i < 5; i++) add(`gone_${i}`, "session", longAgo + i);
    const deletedPerWrite: number[] = [];
    let cursor: sql.PruneCursor | null = null;
    do {
      const pass: ReturnType<typeof sql.pruneExpiredCredentials> = sql.pruneExpiredCredentials(db, now - retention, cursor, 2);
      deletedPerWrite.push(pass.deleted);
      cursor = pass.next;
    } while (cursor);
    expect(deletedPerWrite).toEqual([0, 1, 2, 2, 0]);
    expect(left(["gone_0", "gone_1", "gone_2", "gone_3", "gone_4"])).toEqual([]);
    expect(left(["kept_0", "kept_1", "kept_2"])).toEqual(["kept_0", "kept_1", "kept_2"]);
  });

  test("a pruned token is an unknown one", async () => {
    const { c, kernel, retention } = await app();
    const operator = await c.login(c.owner.email, c.owner.password);
    const made = await c.send("POST", "/v1/iam/me/tokens", operator, { json: { name: "ci", scopes: ["read"], expires_in_days: 1 } });
    expect(made.status).toBe(200);
    c.clock.advance(DAY_MS + 1);
    expect(c.kernel.identity.provider!.authenticate(made.body.token, "192.0.2.1", c.clock.now())).toMatchObject({ ok: false, reason: "expired" });
    c.clock.advance(retention);
    expect(await pruneLongExpiredCredentials(kernel)).toBeGreaterThanOrEqual(1);
    expect(c.kernel.identity.provider!.authenticate(made.body.token, "192.0.2.1", c.clock.now())).toMatchObject({ ok: false, reason: "unknown" });
  });
});
