/**
 * A restore must not bring revoked credentials back: at the first start after it, what the
 * database it replaced had revoked is revoked again, and every login ends.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { iamPlugin } from "../../../plugins/iam/index.ts";
import { IdentityRegistry } from "../../../src/auth/principal.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const PREVIOUS = "citadel.db.before-restore-20260601T000000Z";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * A data directory as `citadel restore` leaves it; the previous database revoked `revoked` (id
 * → revoked_at) and deleted `deleted` (user id → deleted_at).
 */
function restoredDataDir(revoked: Record<string, number> | "none", deleted: Record<string, number> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "citadel-iam-restored-"));
  dirs.push(dir);
  if (revoked !== "none") {
    const db = new Database(join(dir, PREVIOUS));
    db.run("CREATE TABLE credentials (id TEXT PRIMARY KEY, revoked_at INTEGER)");
    for (const [id, at] of Object.entries(revoked)) db.query("INSERT INTO credentials VALUES (?, ?)").run(id, at);
    db.query("INSERT INTO credentials VALUES ('cred_still_good', NULL)").run();
    db.run("CREATE TABLE users (id TEXT PRIMARY KEY, deleted_at INTEGER)");
    for (const [id, at] of Object.entries(deleted)) db.query("INSERT INTO users VALUES (?, ?)").run(id, at);
    db.close();
  }
  writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ previous: revoked === "none" ? null : PREVIOUS, restores: [] }));
  return dir;
}

async function withCredentials() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const makePat = async (name: string) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name, scopes: ["read", "iam:self"] } })).body as { id: string; token: string };
  const revokedLater = await makePat("leaked");
  const kept = await makePat("ci");
  const me = async (token: string) => (await c.send("GET", "/v1/iam/me", token)).status;
  /** Starts the iam plugin on the data directory a restore left. */
  const start = async (dir: string) => {
    // A registry of its own: the test's instance has its identity provider registered already.
    const kernel = { ...c.kernel, identity: new IdentityRegistry(), config: { ...c.config, data_dir: dir }, settings: c.config.iam, log: c.kernel.log };
    const stop = await iamPlugin.start!(kernel as never);
    await stop();
  };
  const events = () => c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'iam.restore.revoke'").all() as Array<{ reason: string }>;
  return { c, owner, revokedLater, kept, me, start, events };
}

describe("credentials after a restore (found in review)", () => {
  test("a token revoked after the backup stays revoked, with its time; every login ends; other tokens work", async () => {
    const { c, owner, revokedLater, kept, me, start, events } = await withCredentials();
    expect([await me(revokedLater.token), await me(kept.token), await me(owner)]).toEqual([200, 200, 200]);
    const at = c.clock.now() - 3_600_000;
    await start(restoredDataDir({ [revokedLater.id]: at }));
    expect([await me(revokedLater.token), await me(kept.token), await me(owner)]).toEqual([401, 200, 401]);
    const row = c.kernel.store.db.query("SELECT revoked_at FROM credentials WHERE id = ?").get(revokedLater.id) as { revoked_at: number };
    expect(row.revoked_at).toBe(at);
    // Once, with the counts (the test's own setup logged in too).
    expect(events().map((e) => e.reason)).toEqual([expect.stringMatching(/^after a restore: 1 credential\(s\) revoked after the backup revoked again, 0 user\(s\) deleted after the backup deleted again; \d+ login\(s\) ended$/)]);
  });

  test("without a previous database, logins still end and the audit event says revocations are unknown; no restore, nothing happens", async () => {
    const { owner, revokedLater, me, start, events } = await withCredentials();
    const plain = mkdtempSync(join(tmpdir(), "citadel-iam-plain-"));
    dirs.push(plain);
    await start(plain);
    expect([await me(owner), events()]).toEqual([200, []]);
    await start(restoredDataDir("none"));
    expect([await me(revokedLater.token), await me(owner)]).toEqual([200, 401]);
    expect(events().map((e) => e.reason)).toEqual([expect.stringContaining("no previous database to read revocations and deletions from")]);
  });

  test("a start that fails before the marker goes meets it again: nothing is revoked, ended or audited twice (found in review)", async () => {
    const { c, start, events, me } = await withCredentials();
    const dir = restoredDataDir({});
    await start(dir);
    const again = await c.login(c.owner.email, c.owner.password);
    await start(dir); // the marker is still there: the backup plugin did not get to remove it
    expect(await me(again)).toBe(200);
    expect(events()).toHaveLength(1);
  });

  test("a user deleted after the backup is deleted again: their password no longer logs in (found in review)", async () => {
    const { c, owner, start, events } = await withCredentials();
    const user = await c.addUser(owner, "gone@example.org", "editor");
    const at = c.clock.now() - 60_000;
    await start(restoredDataDir({}, { [user.id]: at }));
    const login = await c.send("POST", "/v1/iam/login", undefined, { json: { email: "gone@example.org", password: "correct-horse-battery-9" } });
    expect(login.status).toBe(401);
    expect(c.kernel.store.db.query("SELECT deleted_at FROM users WHERE id = ?").get(user.id)).toEqual({ deleted_at: at });
    expect(events().map((e) => e.reason)).toEqual([expect.stringContaining("1 user(s) deleted after the backup deleted again")]);
  });

  test("the restored database's last operator (and owner) is not deleted again: held, named in the event (found in review: the appliance was left without an operator)", async () => {
    const { c, owner, start, events, me } = await withCredentials();
    const operatorId = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    // After the backup another operator, not in the backup, deleted this one.
    await start(restoredDataDir({}, { [operatorId]: c.clock.now() - 60_000 }));
    expect(c.kernel.store.db.query("SELECT deleted_at FROM users WHERE id = ?").get(operatorId)).toEqual({ deleted_at: null });
    const again = await c.login(c.owner.email, c.owner.password);
    expect(await me(again)).toBe(200);
    expect(events().map((e) => e.reason)).toEqual([expect.stringContaining(`0 user(s) deleted after the backup deleted again; 1 not deleted, being the restored database's last operator or last owner of an organization (${operatorId})`)]);
  });
});
