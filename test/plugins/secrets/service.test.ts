/**
 * The secrets service over HTTP, in-process, for what a review found: each case is a way the
 * service lost a value, locked everyone out, or answered other than what it did.
 */
import { describe, expect, test } from "bun:test";
import { encryptValue, generateUserKeyPair, newWorkspaceKey, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();

async function setup() {
  const c = await citadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  const path = (name: string, env = "development", rest = "") => `${base}/environments/${env}/secrets/${name}${rest}`;
  return { c, owner, me, ws, base, path };
}

describe("replacing an end-to-end-encrypted workspace's key", () => {
  test("is refused when it would leave out the last holder of a key version stored values still use (found in review)", async () => {
    const { c, owner, me, ws, base, path } = await setup();
    const admin = await c.addUser(owner, "admin@example.org", "admin");
    const pairs = new Map([[me, generateUserKeyPair()], [admin.id, generateUserKeyPair()]]);
    for (const [token, id] of [[owner, me], [admin.token, admin.id]] as const) {
      await c.send("PUT", "/v1/secrets/me/keypair", token, { json: { public_key: pairs.get(id)!.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    }
    await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
    const wrap = (key: Uint8Array, id: string) => ({ user: id, wrapped: wrapWorkspaceKey(key, pairs.get(id)!.publicKey, { workspace: ws, user: id }) });
    const ctx = (name: string, version = 1) => ({ workspace: ws, environment: "development", name, version, keyVersion: version });
    const v1 = newWorkspaceKey();
    expect((await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrap(v1, me).wrapped } })).status).toBe(200);
    await c.send("PUT", path("LIVE"), owner, { json: { value: encryptValue(v1, "live", ctx("LIVE")) } });
    await c.send("PUT", path("GONE"), owner, { json: { value: encryptValue(v1, "gone", ctx("GONE")) } });
    expect((await c.send("DELETE", path("GONE"), owner)).status).toBe(200);

    // v2 for the owner and the admin: only the owner holds v1, which GONE and LIVE's history use.
    const v2 = newWorkspaceKey();
    const toV2 = { from_version: 1, values: [{ environment: "development", name: "LIVE", version: 1, value: encryptValue(v2, "live", ctx("LIVE", 2)) }], wrapped: [wrap(v2, me), wrap(v2, admin.id)] };
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: toV2 })).status).toBe(200);

    // The admin replaces it again for themself alone: v1 would be held by nobody.
    const v3 = newWorkspaceKey();
    const toV3 = (wrapped: Array<{ user: string; wrapped: string }>) => ({ from_version: 2, values: [{ environment: "development", name: "LIVE", version: 2, value: encryptValue(v3, "live", ctx("LIVE", 3)) }], wrapped });
    const refused = await c.send("POST", `${base}/e2ee/rotate`, admin.token, { json: toV3([wrap(v3, admin.id)]) });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining(`${me} is the last holder of version 1 of the workspace key`)]);
    expect((await c.send("GET", `${base}/e2ee/my-key?version=1`, owner)).status).toBe(200);
    expect((await c.send("GET", `${base}/settings`, owner)).body.e2ee).toBe(true);
    expect(c.kernel.store.db.query("SELECT e2ee_key_version AS v FROM secrets_workspaces WHERE workspace_id = ?").get(ws)).toEqual({ v: 2 });

    // Keeping the owner, it goes through, and the owner still reads version 1.
    expect((await c.send("POST", `${base}/e2ee/rotate`, admin.token, { json: toV3([wrap(v3, admin.id), wrap(v3, me)]) })).status).toBe(200);
    expect((await c.send("GET", `${base}/e2ee/my-key?version=1`, owner)).status).toBe(200);
  });
});

describe("a named environment cannot be locked for good", () => {
  test("made or narrowed, it names the caller and an admin or owner who could reopen it; a service key cannot narrow it to editors (found in review)", async () => {
    const { c, owner, me, base } = await setup();
    const org = c.owner.organization;
    const admin = await c.addUser(owner, "admin@example.org", "admin");
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const refusedFor = async (token: string, method: string, url: string, json: unknown, detail: string) => {
      const res = await c.send(method, url, token, { json });
      expect([method, url, res.status, res.body.code, res.body.detail]).toEqual([method, url, 422, "invalid", expect.stringContaining(detail)]);
    };
    await refusedFor(admin.token, "POST", `${base}/environments`, { name: "vault", protection: "named", allowed_users: [editor.id] }, "name yourself");
    expect((await c.send("GET", `${base}/environments`, owner)).body.items.map((e: { name: string }) => e.name)).not.toContain("vault");

    expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, owner)).status).toBe(200);
    const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, owner, { json: { service: "secrets", name: "ci", scopes: ["secrets:admin"] } })).body.token as string;
    await refusedFor(key, "POST", `${base}/environments`, { name: "vault", protection: "named", allowed_users: [editor.id] }, "name an admin or owner");
    await refusedFor(key, "PUT", `${base}/environments/staging`, { protection: "named", allowed_users: [editor.id] }, "name an admin or owner");
    expect((await c.send("GET", `${base}/environments/staging/secrets`, owner)).status).toBe(200);

    // With someone named who may change it back, it is made, and they can reopen it.
    expect((await c.send("PUT", `${base}/environments/staging`, key, { json: { protection: "named", allowed_users: [editor.id, me] } })).status).toBe(200);
    expect((await c.send("PUT", `${base}/environments/staging`, owner, { json: { protection: "members" } })).status).toBe(200);
  });
});

describe("a deleted workspace", () => {
  test("takes its secrets, its data key, its webhooks and their pending deliveries along, in the deletion's transaction (found in review)", async () => {
    const c = await citadel({ config: { secrets: { webhook_allowed_urls: ["http://127.0.0.1:9/hooks"] } } });
    const owner = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const workspace = async (name: string) => (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name } })).body.id as string;
    const ws = await workspace("app");
    const kept = await workspace("kept");
    for (const id of [ws, kept]) {
      const base = `/v1/secrets/workspaces/${id}`;
      expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: `http://127.0.0.1:9/hooks/${id}` } })).status).toBe(200);
      expect((await c.send("PUT", `${base}/environments/development/secrets/TOKEN`, owner, { json: { value: `value of ${id}` } })).status).toBe(200);
    }
    const db = c.kernel.store.db;
    const count = (table: string, where: string, id: string) => (db.query(`SELECT count(*) AS n FROM ${table} WHERE ${where}`).get(id) as { n: number }).n;
    const held = (id: string) => ({
      secrets: count("secrets", "environment_id IN (SELECT id FROM secrets_environments WHERE workspace_id = ?)", id),
      versions: count("secret_versions", "secret_id IN (SELECT s.id FROM secrets s JOIN secrets_environments e ON e.id = s.environment_id WHERE e.workspace_id = ?)", id),
      webhooks: count("secrets_webhooks", "workspace_id = ?", id),
      deliveries: count("secrets_webhook_deliveries", "webhook_id IN (SELECT id FROM secrets_webhooks WHERE workspace_id = ?)", id),
      workspace: count("secrets_workspaces", "workspace_id = ?", id),
      dataKeys: count("deks", "owner = 'workspace:' || ? AND wrapped IS NOT NULL", id),
    });
    expect(held(ws)).toEqual({ secrets: 1, versions: 1, webhooks: 1, deliveries: 1, workspace: 1, dataKeys: 1 });

    const ask = await c.send("DELETE", `/v1/iam/workspaces/${ws}`, owner);
    expect((await c.send("DELETE", `/v1/iam/workspaces/${ws}`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect(held(ws)).toEqual({ secrets: 0, versions: 0, webhooks: 0, deliveries: 0, workspace: 0, dataKeys: 0 });
    expect(held(kept)).toEqual({ secrets: 1, versions: 1, webhooks: 1, deliveries: 1, workspace: 1, dataKeys: 1 });
    const deleted = db.query("SELECT reason FROM audit_events WHERE action = 'iam.workspace.delete'").get() as { reason: string };
    expect(deleted.reason).toContain("secrets: data erased, 2 key(s) destroyed");

    // Deleting the organization deletes its other workspaces the same way.
    const askOrg = await c.send("DELETE", `/v1/iam/orgs/${org}`, owner);
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}`, owner, { headers: { "x-citadel-confirm": askOrg.body.confirmation_token } })).status).toBe(200);
    expect(held(kept)).toEqual({ secrets: 0, versions: 0, webhooks: 0, deliveries: 0, workspace: 0, dataKeys: 0 });
    const orgDeleted = db.query("SELECT reason FROM audit_events WHERE action = 'iam.organization.delete'").get() as { reason: string };
    expect(orgDeleted.reason).toBe(`1 workspace(s) deleted with it: ${kept}: 0 credential(s) for it revoked, secrets: data erased, 2 key(s) destroyed (values, webhook secrets); 0 credential(s) for it revoked`);
  });
});

describe("purge", () => {
  test("two confirmed purges at once: one purges, the other answers 409; one event and one webhook delivery (found in review)", async () => {
    const c = await citadel({ config: { secrets: { webhook_allowed_urls: ["http://127.0.0.1:9/hooks"] } } });
    const owner = await c.login(c.owner.email, c.owner.password);
    const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    const base = `/v1/secrets/workspaces/${ws}`;
    const purge = `${base}/environments/development/secrets/OLD/purge`;
    await c.send("PUT", `${base}/environments/development/secrets/OLD`, owner, { json: { value: "v" } });
    expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: "http://127.0.0.1:9/hooks/x" } })).status).toBe(200);
    const tokens = [(await c.send("POST", purge, owner)).body.confirmation_token, (await c.send("POST", purge, owner)).body.confirmation_token];
    const answers = await Promise.all(tokens.map((token) => c.send("POST", purge, owner, { headers: { "x-citadel-confirm": token } })));
    expect(answers.map((a) => [a.status, a.body.detail]).sort()).toEqual([[200, undefined], [409, "OLD changed meanwhile: it was purged."]]);
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.purge'").get()).toEqual({ n: 1 });
    expect(db.query("SELECT count(*) AS n FROM secrets_webhook_deliveries WHERE event LIKE '%secret.purged%'").get()).toEqual({ n: 1 });
  });
});

describe("metadata", () => {
  test("an expiry on a day its month does not have is refused, naming the field, not rolled over into the next month (found in review)", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("TOKEN"), owner, { json: { value: "v" } });
    for (const expires_at of ["2026-02-30T00:00:00Z", "2026-04-31T12:00:00+02:00", "2027-02-29T00:00:00Z"]) {
      const res = await c.send("PATCH", path("TOKEN"), owner, { json: { expires_at } });
      expect([expires_at, res.status, res.body.code, res.text]).toEqual([expires_at, 422, "invalid", expect.stringContaining("expires_at")]);
    }
    expect((await c.send("PUT", path("OTHER"), owner, { json: { value: "v", expires_at: "2026-02-30T00:00:00Z" } })).status).toBe(422);
    const leap = await c.send("PATCH", path("TOKEN"), owner, { json: { expires_at: "2028-02-29T00:00:00Z" } });
    expect([leap.status, leap.body.expires_at]).toEqual([200, "2028-02-29T00:00:00.000Z"]);
  });
});

describe("a metadata change that changes nothing", () => {
  test("answers as it is and records no event, as the settings do: nothing given, or the values it has (found in review)", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("TOKEN"), owner, { json: { value: "v", note: "primary" } });
    const updates = () => (c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.update'").get() as { n: number }).n;
    const before = (await c.send("GET", path("TOKEN", "development", "/versions"), owner)).body;
    c.clock.advance(60_000); // a write would show in updated_at
    for (const json of [{}, { note: "primary" }, { rotation_days: null, expires_at: null }]) {
      const res = await c.send("PATCH", path("TOKEN"), owner, { json });
      expect([json, res.status, res.body.note, res.body.updated_at]).toEqual([json, 200, "primary", before.updated_at]);
    }
    expect(updates()).toBe(0);
    expect((await c.send("PATCH", path("TOKEN"), owner, { json: { note: "secondary" } })).body.note).toBe("secondary");
    expect(updates()).toBe(1);
  });
});
