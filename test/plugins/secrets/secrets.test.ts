/**
 * The secrets service over HTTP, in-process: versions, concurrency, protection, bulk,
 * rotation, share links, end-to-end encryption and webhooks.
 */
import { createHash } from "node:crypto";
import { afterAll, describe, expect, test } from "bun:test";
import { decryptValue, encryptValue, generateUserKeyPair, newWorkspaceKey, unwrapWorkspaceKey, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { createShareSecret, openShareSecret, sharePassphraseProof, shareViewProof, type ShareKdf } from "../../../plugins/secrets/share-crypto.ts";
import { verifyWebhook } from "../../../plugins/secrets/webhook-signature.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { encryptedForThree } from "../../helpers/e2ee.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

async function setup(config: Record<string, Record<string, unknown>> = {}) {
  const c = await testCitadel({ config });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  const path = (name: string, env = "development", rest = "") => `${base}/environments/${env}/secrets/${name}${rest}`;
  return { c, owner, org, ws, base, path };
}

/** A workspace with end-to-end encryption on; the owner and an admin each have a key pair, no one a workspace key yet. */
async function encryptedWithTwoKeyPairs() {
  const app = await setup();
  const { c, owner, base } = app;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  const mine = generateUserKeyPair();
  const theirs = generateUserKeyPair();
  await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
  await c.send("PUT", "/v1/secrets/me/keypair", admin.token, { json: { public_key: theirs.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
  await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
  return { ...app, me, admin, mine, theirs };
}

/** Every byte the store holds, as one string (in-memory database: serialize it). */
const storeBytes = (c: App) => Buffer.from(c.kernel.store.db.serialize()).toString("latin1");
const auditActions = (c: App, prefix: string) =>
  (c.kernel.store.db.query("SELECT action, reason FROM audit_events WHERE action LIKE ? ORDER BY seq").all(`${prefix}%`) as Array<{ action: string; reason: string | null }>);

describe("secrets and versions", () => {
  test("the default environments, set, read, list: values encrypted at rest and never in the audit log", async () => {
    const { c, owner, base, path } = await setup();
    const envs = await c.send("GET", `${base}/environments`, owner);
    expect(envs.body.items.map((e: { name: string }) => e.name)).toEqual(["development", "staging", "production"]);
    const value = `pg-${crypto.randomUUID()}`;
    const set = await c.send("PUT", path("DATABASE_URL"), owner, { json: { value, note: "primary" } });
    expect([set.status, set.body.version, set.headers.get("etag")]).toEqual([200, 1, '"1"']);
    const read = await c.send("GET", path("DATABASE_URL"), owner);
    expect([read.body.value, read.body.note, read.headers.get("cache-control")]).toEqual([value, "primary", "no-store"]);
    const list = await c.send("GET", `${base}/environments/development/secrets`, owner);
    expect(list.body.items[0].name).toBe("DATABASE_URL");
    expect(list.body.items[0].value).toBeUndefined();
    expect((await c.send("GET", `${base}/environments/development/secrets?values=true`, owner)).body.items[0].value).toBe(value);
    expect(storeBytes(c)).not.toContain(value);
    expect(auditActions(c, "secrets.secret").map((e) => e.action)).toEqual(["secrets.secret.create", "secrets.secret.read", "secrets.secret.read"]);
    expect(JSON.stringify(c.kernel.store.db.query("SELECT * FROM audit_events").all())).not.toContain(value);
    expect(JSON.stringify(c.log.lines)).not.toContain(value);
  });

  test("history, an old version, roll back", async () => {
    const { c, owner, path } = await setup();
    for (const value of ["one", "two", "three"]) await c.send("PUT", path("TOKEN"), owner, { json: { value } });
    const history = await c.send("GET", path("TOKEN", "development", "/versions"), owner);
    expect(history.body.versions.map((v: { version: number; current: boolean }) => [v.version, v.current])).toEqual([[3, true], [2, false], [1, false]]);
    expect((await c.send("GET", path("TOKEN", "development", "?version=1"), owner)).body.value).toBe("one");
    expect((await c.send("GET", path("TOKEN", "development", "?version=9"), owner)).status).toBe(404);
    const rolled = await c.send("POST", path("TOKEN", "development", "/rollback"), owner, { json: { version: 1 } });
    expect(rolled.body.version).toBe(4);
    expect((await c.send("GET", path("TOKEN"), owner)).body.value).toBe("one");
    expect(auditActions(c, "secrets.secret.rollback")[0]!.reason).toBe("development/TOKEN v4, from v1");
  });

  test("concurrent updates: with If-Match exactly one wins, without it none is lost", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("COUNTER"), owner, { json: { value: "v1" } });
    const racing = await Promise.all([1, 2, 3, 4, 5].map((i) => c.send("PUT", path("COUNTER"), owner, { json: { value: `if-match ${i}` }, headers: { "if-match": '"1"' } })));
    expect(racing.map((r) => r.status).sort()).toEqual([200, 412, 412, 412, 412]);
    expect(racing.find((r) => r.status === 412)!.body.code).toBe("precondition_failed");
    const blind = await Promise.all([1, 2, 3, 4, 5].map((i) => c.send("PUT", path("COUNTER"), owner, { json: { value: `blind ${i}` } })));
    expect(blind.map((r) => r.body.version).sort()).toEqual([3, 4, 5, 6, 7]);
    const versions = (await c.send("GET", path("COUNTER", "development", "/versions"), owner)).body.versions;
    expect(versions).toHaveLength(7);
    // If-Match "0": create only if absent.
    expect((await c.send("PUT", path("FRESH"), owner, { json: { value: "x" }, headers: { "if-match": "0" } })).status).toBe(200);
    expect((await c.send("PUT", path("FRESH"), owner, { json: { value: "y" }, headers: { "if-match": "0" } })).status).toBe(412);
    expect((await c.send("PUT", path("FRESH"), owner, { json: { value: "y" }, headers: { "if-match": "banana" } })).status).toBe(422);
  });

  test("If-Match holds for every change of a secret, not only PUT; a weak tag never matches (found in review: PATCH, rollback and DELETE acted on a stale version)", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("KEY"), owner, { json: { value: "one" } });
    await c.send("PUT", path("KEY"), owner, { json: { value: "two" } });
    const at = (tag: string) => ({ "if-match": tag });
    const changes = {
      patch: (tag: string) => c.send("PATCH", path("KEY"), owner, { json: { note: "n" }, headers: at(tag) }),
      rollback: (tag: string) => c.send("POST", path("KEY", "development", "/rollback"), owner, { json: { version: 1 }, headers: at(tag) }),
      rotate: (tag: string) => c.send("POST", path("KEY", "development", "/rotate"), owner, { json: { generator: "uuid" }, headers: at(tag) }),
      delete: (tag: string) => c.send("DELETE", path("KEY"), owner, { headers: at(tag) }),
      put: (tag: string) => c.send("PUT", path("KEY"), owner, { json: { value: "three" }, headers: at(tag) }),
    };
    const refused = async (res: Promise<Awaited<ReturnType<App["send"]>>>) => {
      const r = await res;
      return [r.status, r.body.code, r.body.detail];
    };
    const before = auditActions(c, "secrets.secret").length;
    for (const change of [changes.patch, changes.rollback, changes.rotate, changes.delete]) {
      expect(await refused(change('"1"'))).toEqual([412, "precondition_failed", "KEY is at version 2, not 1: read it again and retry."]);
    }
    const weak = [412, "precondition_failed", 'If-Match compares versions strongly: a weak tag (W/"2") never matches; send "2".'];
    for (const change of Object.values(changes)) expect(await refused(change('W/"2"'))).toEqual(weak);
    expect(await refused(changes.patch("banana"))).toEqual([422, "invalid", expect.stringContaining("If-Match")]);
    expect((await c.send("GET", path("KEY"), owner)).body).toMatchObject({ value: "two", version: 2, note: null });
    expect(auditActions(c, "secrets.secret").length).toBe(before + 1); // the read just now, nothing else
    // At the version named, each goes ahead.
    expect((await changes.patch('"2"')).body).toMatchObject({ version: 2, note: "n" });
    expect((await changes.rollback('"2"')).body.version).toBe(3);
    expect((await changes.rotate("3")).body.version).toBe(4);
    expect((await changes.delete('"4"')).status).toBe(200);
    // Restore and purge too.
    expect(await refused(c.send("POST", path("KEY", "development", "/restore"), owner, { headers: at('"3"') }))).toEqual([412, "precondition_failed", "KEY is at version 4, not 3: read it again and retry."]);
    expect((await c.send("POST", path("KEY", "development", "/restore"), owner, { headers: at('"4"') })).status).toBe(200);
    const purge = async (tag: string) => {
      const ask = await c.send("POST", path("KEY", "development", "/purge"), owner, { headers: at(tag) });
      return c.send("POST", path("KEY", "development", "/purge"), owner, { headers: { ...at(tag), "x-citadel-confirm": ask.body.confirmation_token } });
    };
    expect(await refused(purge('"3"'))).toEqual([412, "precondition_failed", "KEY is at version 4, not 3: read it again and retry."]);
    expect((await c.send("GET", path("KEY"), owner)).body.version).toBe(4);
    expect((await purge('"4"')).status).toBe(200);
    expect((await c.send("GET", path("KEY"), owner)).status).toBe(404);
  });

  test("bad input: names, sizes, unknown environments", async () => {
    const { c, owner, base, path } = await setup({ secrets: { max_value_bytes: 16 } });
    const cases: Array<[string, string, unknown, number, string]> = [
      ["PUT", path("1BAD"), { value: "x" }, 422, "invalid"],
      ["PUT", path("HAS-DASH"), { value: "x" }, 422, "invalid"],
      ["PUT", path("BIG"), { value: "x".repeat(17) }, 413, "payload_too_large"],
      ["PUT", path("NUL"), { value: "a\0b" }, 422, "invalid"],
      ["PUT", path("OK", "nowhere"), { value: "x" }, 404, "not_found"],
      ["PUT", path("OK"), { note: "no value" }, 422, "validation_failed"],
      ["POST", `${base}/environments`, { name: "Bad Name" }, 422, "invalid"],
      ["POST", `${base}/environments`, { name: "staging" }, 409, "conflict"],
      ["POST", path("NOPE", "development", "/rotate"), { generator: "password" }, 404, "not_found"],
      ["POST", path("NOPE", "development", "/rotate"), { generator: "dice" }, 422, "validation_failed"],
    ];
    for (const [method, url, json, status, code] of cases) {
      const res = await c.send(method, url, owner, { json });
      expect([method, url, res.status, res.body.code]).toEqual([method, url, status, code]);
      expect(res.text).not.toContain("x".repeat(17));
    }
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets").get()).toEqual({ n: 0 });
  });

  test("soft delete, restore, purge with confirmation", async () => {
    const { c, owner, base, path } = await setup();
    await c.send("PUT", path("OLD_KEY"), owner, { json: { value: "v" } });
    expect((await c.send("DELETE", path("OLD_KEY"), owner)).status).toBe(200);
    expect((await c.send("GET", path("OLD_KEY"), owner)).status).toBe(404);
    expect((await c.send("PUT", path("OLD_KEY"), owner, { json: { value: "w" } })).status).toBe(409);
    expect((await c.send("GET", `${base}/environments/development/secrets?deleted=true`, owner)).body.items[0].deleted_at).toBeTruthy();
    expect((await c.send("POST", path("OLD_KEY", "development", "/restore"), owner)).status).toBe(200);
    expect((await c.send("GET", path("OLD_KEY"), owner)).body.value).toBe("v");
    const ask = await c.send("POST", path("OLD_KEY", "development", "/purge"), owner);
    expect(ask.status).toBe(428);
    const purged = await c.send("POST", path("OLD_KEY", "development", "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
    expect(purged.status).toBe(200);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secret_versions").get()).toEqual({ n: 0 });
    expect(auditActions(c, "secrets.secret").map((e) => e.action)).toEqual(["secrets.secret.create", "secrets.secret.delete", "secrets.secret.restore", "secrets.secret.read", "secrets.secret.purge"]);
  });
});

describe("a stored value altered outside Citadel", () => {
  test("is refused with a data-integrity error naming it, audited as a failed read, logged; never a wrong value", async () => {
    const { c, owner, base, path } = await setup();
    await c.send("PUT", path("API_KEY"), owner, { json: { value: "first-value" } });
    await c.send("PUT", path("API_KEY"), owner, { json: { value: "second-value" } });
    await c.send("PUT", path("OTHER"), owner, { json: { value: "untouched" } });
    // Flip one byte of version 2's ciphertext, as a disk fault or an edit of the file would.
    const db = c.kernel.store.db;
    const { ciphertext } = db.query("SELECT ciphertext FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'API_KEY' AND v.version = 2").get() as { ciphertext: Uint8Array };
    const damaged = Buffer.from(ciphertext);
    damaged[damaged.length - 5]! ^= 0x01;
    db.query("UPDATE secret_versions SET ciphertext = ? WHERE version = 2 AND secret_id = (SELECT id FROM secrets WHERE name = 'API_KEY')").run(damaged);
    const failedReads = () => db.query("SELECT reason FROM audit_events WHERE action = 'secrets.secret.read' AND outcome = 'failure' ORDER BY seq").all().map((r) => (r as { reason: string }).reason);

    const read = await c.send("GET", path("API_KEY"), owner);
    expect([read.status, read.body.code]).toEqual([500, "data_integrity"]);
    expect(read.body.detail).toContain("development/API_KEY v2 does not decrypt");
    expect(read.text).not.toContain("value\":");
    expect(failedReads()).toEqual(["development/API_KEY v2: the stored value does not decrypt (altered or damaged)"]);
    expect(c.log.lines.filter((l) => String(l.msg).includes("a stored value does not decrypt")).map((l) => [l.level, l.secret, l.version])).toEqual([["error", expect.stringMatching(/^sec_/), 2]]);

    // Every way to the damaged value is refused the same way, and audited each time.
    const list = await c.send("GET", `${base}/environments/development/secrets?values=true`, owner);
    expect([list.status, list.body.code]).toEqual([500, "data_integrity"]);
    expect((await c.send("GET", `${base}/environments/development/export`, owner)).body.code).toBe("data_integrity");
    const importPlan = await c.send("POST", `${base}/environments/development/import`, owner, { json: { format: "dotenv", content: "API_KEY=x\n", dry_run: true } });
    expect([importPlan.status, importPlan.body.code]).toEqual([500, "data_integrity"]);
    expect(failedReads()).toHaveLength(4);

    // What is not damaged still reads: the older version, the other secret; a rollback to the
    // good version and a new value repair it.
    expect((await c.send("GET", path("API_KEY", "development", "?version=1"), owner)).body.value).toBe("first-value");
    expect((await c.send("GET", path("OTHER"), owner)).body.value).toBe("untouched");
    expect((await c.send("POST", path("API_KEY", "development", "/rollback"), owner, { json: { version: 2 } })).body.code).toBe("data_integrity");
    expect((await c.send("POST", path("API_KEY", "development", "/rollback"), owner, { json: { version: 1 } })).body.version).toBe(3);
    expect((await c.send("GET", path("API_KEY"), owner)).body.value).toBe("first-value");
    expect(failedReads()).toHaveLength(5);

    // A data key rotation re-encrypts everything else and leaves the damaged version on its
    // old key, audited; resumed at start-up it neither fails (Citadel must start) nor loops.
    const rotated = await c.send("POST", `${base}/rotate-key`, owner);
    expect([rotated.status, rotated.body.reencrypted]).toEqual([200, 3]); // API_KEY v1 and v3, OTHER v1
    expect(failedReads().at(-1)).toMatch(/^v2: the stored value does not decrypt \(altered or damaged\); left on data key v1 by the rotation to v2$/);
    expect(await servicesOf(c.kernel as never).secrets.resumeReencryption()).toBe(0);
    expect(failedReads()).toHaveLength(7);
    expect((await c.send("GET", `${base}/settings`, owner)).body.values_on_older_keys).toBe(1);
    expect((await c.send("GET", path("OTHER"), owner)).body.value).toBe("untouched");
  });

  test("a version marked as a client's ciphertext outside an end-to-end-encrypted workspace is refused, never handed out as the value (found in review)", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("K"), owner, { json: { value: "real" } });
    c.kernel.store.db.run("UPDATE secret_versions SET dek_version = 0"); // one column edited: "the client's ciphertext"
    const read = await c.send("GET", path("K"), owner);
    expect([read.status, read.body.code]).toEqual([500, "data_integrity"]);
    expect(read.body.value).toBeUndefined();
    const failed = c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.read' AND outcome = 'failure'").get() as { n: number };
    expect(failed.n).toBe(1);
  });

  test("a value whose data key is gone is refused the same way, with its own reason", async () => {
    const { c, owner, ws, path } = await setup();
    await c.send("PUT", path("TOKEN"), owner, { json: { value: "v" } });
    c.kernel.store.db.query("DELETE FROM deks WHERE owner = ?").run(`workspace:${ws}`); // lost with a hand-edited database
    const read = await c.send("GET", path("TOKEN"), owner);
    expect([read.status, read.body.code, read.body.detail]).toEqual([500, "data_integrity", expect.stringContaining("development/TOKEN v1 cannot be decrypted: its data key is gone")]);
    expect(auditActions(c, "secrets.secret.read").map((e) => e.reason)).toEqual(["development/TOKEN v1: the stored value cannot be decrypted: its data key is gone"]);

    // The operator's data export with values names what cannot be read instead of failing whole.
    const url = `/v1/subject/organization/${c.owner.organization}/export/with-secret-values`;
    const asked = await c.send("POST", url, owner);
    const exported = await c.send("POST", url, owner, { headers: { "x-citadel-confirm": asked.body.confirmation_token } });
    expect(exported.status).toBe(200);
    const development = exported.body.data.secrets.workspaces[0].environments.find((e: { name: string }) => e.name === "development");
    expect(development.secrets.map((x: { name: string; value: unknown }) => [x.name, x.value])).toEqual([["TOKEN", { unreadable: "the stored value's data key is gone" }]]);
  });

  test("when even the failed read cannot be recorded, the answer is still data_integrity, and the log says both", async () => {
    const { c, owner, ws, path } = await setup();
    await c.send("PUT", path("TOKEN"), owner, { json: { value: "v" } });
    const db = c.kernel.store.db;
    db.query("DELETE FROM deks WHERE owner = ?").run(`workspace:${ws}`);
    db.run("CREATE TEMP TRIGGER no_more_events BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'simulated: the disk is full'); END");
    const read = await c.send("GET", path("TOKEN"), owner);
    db.run("DROP TRIGGER no_more_events");
    expect([read.status, read.body.code]).toEqual([500, "data_integrity"]);
    const logged = c.log.lines.filter((l) => String(l.msg).startsWith("secrets: ")).map((l) => [l.level, l.msg, l.request_id]);
    expect(logged).toEqual([
      ["error", "secrets: a stored value cannot be decrypted: its data key is gone", read.headers.get("x-request-id")],
      ["error", "secrets: the failed read of a damaged value could not be recorded", read.headers.get("x-request-id")],
    ]);
  });

  test("import's plan compares values only for a caller who may read them", async () => {
    const { c, owner, base, path } = await setup();
    await c.send("PUT", path("GUESS_ME"), owner, { json: { value: "hunter2" } });
    const writeOnly = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "ci", scopes: ["secrets:write"] } })).body.token;
    const probe = (token: string) => c.send("POST", `${base}/environments/development/import`, token, { json: { format: "dotenv", content: "GUESS_ME=hunter2\n", dry_run: true } });
    expect((await probe(owner)).body.plan).toEqual([{ name: "GUESS_ME", action: "unchanged" }]);
    const blind = await probe(writeOnly);
    expect([blind.status, blind.body.plan]).toEqual([200, [{ name: "GUESS_ME", action: "update" }]]); // a right guess tells nothing
    // Comparing is reading: on record, like a read, for the caller who could compare.
    expect(auditActions(c, "secrets.secret.read").map((e) => e.reason)).toEqual(["development/GUESS_ME compared by import"]);
  });
});

describe("environment protection", () => {
  test("production for admins only, then for named members only", async () => {
    const { c, owner, org, base, path } = await setup();
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const admin = await c.addUser(owner, "admin@example.org", "admin");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id;
    await c.send("PUT", path("PROD_KEY", "production"), owner, { json: { value: "p" } });
    expect((await c.send("GET", path("PROD_KEY", "production"), editor.token)).status).toBe(200);
    expect((await c.send("PUT", `${base}/environments/production`, editor.token, { json: { protection: "admins" } })).status).toBe(403);
    expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "admins" } })).status).toBe(200);
    const refused = await c.send("GET", path("PROD_KEY", "production"), editor.token);
    expect([refused.status, refused.body.code]).toEqual([403, "forbidden"]);
    expect((await c.send("GET", `${base}/environments/production/secrets`, editor.token)).status).toBe(403);
    expect((await c.send("GET", path("PROD_KEY", "production"), admin.token)).status).toBe(200);
    expect((await c.send("GET", path("PROD_KEY", "staging"), editor.token)).status).toBe(404); // other environments are untouched
    // Named: only the listed users; naming yourself out is refused.
    expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "named", allowed_users: [admin.id] } })).status).toBe(422);
    expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "named", allowed_users: [me, "usr_nobody"] } })).status).toBe(422);
    expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "named", allowed_users: [me, editor.id] } })).status).toBe(200);
    expect((await c.send("GET", path("PROD_KEY", "production"), editor.token)).status).toBe(200);
    expect((await c.send("GET", path("PROD_KEY", "production"), admin.token)).status).toBe(403);
    void org;
  });
});

describe("bulk", () => {
  test("import a .env file with a dry run, export it back, refuse a bad line with its number", async () => {
    const { c, owner, base } = await setup();
    const env = (name: string) => `${base}/environments/${name}`;
    const file = ['# app settings', 'export API_URL=https://api.example.org', 'MULTI="line one\nline two"', "QUOTED='it''s'".replace("''", ""), ""].join("\n");
    const dry = await c.send("POST", `${env("development")}/import`, owner, { json: { format: "dotenv", content: file, dry_run: true } });
    expect(dry.body).toMatchObject({ dry_run: true, created: 3, updated: 0 });
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets").get()).toEqual({ n: 0 });
    expect((await c.send("POST", `${env("development")}/import`, owner, { json: { format: "dotenv", content: file } })).body.created).toBe(3);
    const again = await c.send("POST", `${env("development")}/import`, owner, { json: { format: "dotenv", content: file.replace("api.example", "api2.example"), dry_run: true } });
    expect(again.body.plan).toEqual([{ name: "API_URL", action: "update" }, { name: "MULTI", action: "unchanged" }, { name: "QUOTED", action: "unchanged" }]);
    const readsBefore = auditActions(c, "secrets.secret.read").length;
    const exported = await c.send("GET", `${env("development")}/export`, owner);
    expect(exported.headers.get("content-type")).toStartWith("text/plain");
    // Audited as an export, not as a list of values (found in review): who exported an environment can be told.
    expect(auditActions(c, "secrets.secret.read").slice(readsBefore).map((e) => e.reason)).toEqual(["development/API_URL export", "development/MULTI export", "development/QUOTED export"]);
    // Each variable on one line, a value's line ends escaped (found in review: they were written as they are).
    expect(exported.text).toBe('API_URL=https://api.example.org\nMULTI="line one\\nline two"\nQUOTED=its\n');
    expect((await c.send("POST", `${env("staging")}/import`, owner, { json: { format: "dotenv", content: exported.text } })).body.created).toBe(3);
    expect((await c.send("GET", `${env("staging")}/export`, owner)).text).toBe(exported.text);
    const json = await c.send("GET", `${env("staging")}/export?format=json`, owner);
    expect(JSON.parse(json.text)).toEqual({ API_URL: "https://api.example.org", MULTI: "line one\nline two", QUOTED: "its" });
    const bad = await c.send("POST", `${env("production")}/import`, owner, { json: { format: "dotenv", content: "GOOD=1\nBAD LINE=2\n" } });
    expect([bad.status, bad.body.detail]).toEqual([422, expect.stringContaining("line 2")]);
    // A bad JSON key may be a value pasted as a name: its place is told, never its text (found in review).
    const badKey = await c.send("POST", `${env("production")}/import`, owner, { json: { format: "json", content: '{"GOOD": "1", "hunter2 pasted here": "x"}' } });
    expect([badKey.status, badKey.body.detail]).toEqual([422, expect.stringMatching(/^entry 2: invalid secret name \(names are /)]);
    expect(JSON.stringify(badKey.body)).not.toContain("hunter2");
    expect((await c.send("GET", `${env("production")}/secrets`, owner)).body.items).toEqual([]);
  });

  test("a list of values its client declares an export (purpose=export) is audited as the client's word; a purpose without values is refused", async () => {
    const { c, owner, base, path } = await setup();
    for (const name of ["A", "B"]) await c.send("PUT", path(name), owner, { json: { value: name } });
    const list = (query: string) => c.send("GET", `${base}/environments/development/secrets?${query}`, owner);
    const readsBefore = auditActions(c, "secrets.secret.read").length;
    const declared = await list("values=true&purpose=export");
    expect(declared.body.items.map((i: { value: string }) => i.value)).toEqual(["A", "B"]);
    expect(auditActions(c, "secrets.secret.read").slice(readsBefore).map((e) => e.reason)).toEqual(["development/A export (declared by the client)", "development/B export (declared by the client)"]);
    const refused = await list("purpose=export");
    expect([refused.status, refused.body.detail]).toEqual([422, "purpose is what the values are read for: give it with values=true"]);
    // Named as every other bad query parameter is (found in review: it said "purpose").
    expect(refused.body.errors).toEqual([{ field: "query.purpose", message: "purpose is what the values are read for: give it with values=true" }]);
    expect((await list("values=true&purpose=run")).status).toBe(422);
    expect(auditActions(c, "secrets.secret.read").length).toBe(readsBefore + 2); // nothing read by the refusals
  });

  test("with overwrite off, a secret created between the plan and the write is left alone (found in review)", async () => {
    const { c, owner, path, base } = await setup();
    // The PUT's write is queued first, not yet committed when the import plans "create"; both
    // commit in one batch, the PUT's first.
    const [put, imported] = await Promise.all([
      c.send("PUT", path("RACE"), owner, { json: { value: "from-put" } }),
      c.send("POST", `${base}/environments/development/import`, owner, { json: { entries: [{ name: "RACE", value: "from-import" }], overwrite: false } }),
    ]);
    expect(put.status).toBe(200);
    expect([imported.status, imported.body.detail]).toEqual([409, "RACE was created meanwhile: run the import again."]);
    expect((await c.send("GET", path("RACE"), owner)).body).toMatchObject({ value: "from-put", version: 1 });
  });

  test("an import holds at most 5,000 entries, sent as content too: one more is refused before anything is planned or written (found in review: 110,124 parsed from content, written in one 6 s transaction)", async () => {
    const { c, owner, base } = await setup();
    const importing = (json: Record<string, unknown>) => c.send("POST", `${base}/environments/development/import`, owner, { json });
    const names = (n: number) => Array.from({ length: n }, (_, i) => `A${i}`);
    const dotenv = (n: number) => names(n).map((name) => `${name}=\n`).join("");
    const json = (n: number) => JSON.stringify(Object.fromEntries(names(n).map((name) => [name, ""])));
    const before = auditActions(c, "").length;
    for (const request of [
      { format: "dotenv", content: dotenv(5001) },
      { format: "dotenv", content: dotenv(5001), dry_run: true },
      { format: "json", content: json(5001) },
    ]) {
      const refused = await importing(request);
      expect([refused.status, refused.body.code, refused.body.detail]).toEqual([422, "invalid", "at most 5000 entries in one import (this one has 5001): split it"]);
      expect(refused.body.errors).toEqual([{ field: "content", message: "at most 5000 entries in one import (this one has 5001): split it" }]);
    }
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets").get()).toEqual({ n: 0 });
    expect(auditActions(c, "").length).toBe(before);
    // 5,000 is the bound, not over it (a dry run: the plan without 5,000 writes).
    expect((await importing({ format: "dotenv", content: dotenv(5000), dry_run: true })).body).toMatchObject({ dry_run: true, created: 5000 });
  });
});

describe("import races", () => {
  test("a name another writer changed between the plan and the write refuses the whole import: the answer is never other than what was done", async () => {
    const { c, owner, path, base } = await setup();
    const importing = (entries: Array<{ name: string; value: string }>) => c.send("POST", `${base}/environments/development/import`, owner, { json: { entries } });
    // Created meanwhile (the PUT's write is queued before the import's plan is written).
    const [put, created] = await Promise.all([c.send("PUT", path("RACE"), owner, { json: { value: "from-put" } }), importing([{ name: "RACE", value: "from-import" }, { name: "CALM", value: "new" }])]);
    expect(put.status).toBe(200);
    expect([created.status, created.body.detail]).toEqual([409, "RACE was created meanwhile: run the import again."]);
    expect((await c.send("GET", path("CALM"), owner)).status).toBe(404); // all or nothing
    // Planned "unchanged", updated meanwhile.
    const [update, unchanged] = await Promise.all([c.send("PUT", path("RACE"), owner, { json: { value: "newer" } }), importing([{ name: "RACE", value: "from-put" }])]);
    expect(update.status).toBe(200);
    expect([unchanged.status, unchanged.body.detail]).toEqual([409, "RACE changed meanwhile: run the import again."]);
    expect((await c.send("GET", path("RACE"), owner)).body).toMatchObject({ value: "newer", version: 2 });
    // Planned "skip" (deleted), purged meanwhile.
    await c.send("DELETE", path("RACE"), owner);
    const ask = await c.send("POST", path("RACE", "development", "/purge"), owner);
    const [purged, skipped] = await Promise.all([
      c.send("POST", path("RACE", "development", "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } }),
      importing([{ name: "RACE", value: "again" }]),
    ]);
    expect(purged.status).toBe(200);
    expect([skipped.status, skipped.body.detail]).toEqual([409, "RACE changed meanwhile: run the import again."]);
    // Nothing in between: the plan is what was done.
    expect((await importing([{ name: "RACE", value: "again" }])).body).toMatchObject({ plan: [{ name: "RACE", action: "create" }], created: 1 });
  });
});

describe("changes racing a purge or a delete", () => {
  test("a rollback, rotation, metadata change, restore or delete that meets a purge answers 409 and never brings the value back (found in review)", async () => {
    const { c, owner, path } = await setup();
    /** Purges `name` (confirmed) and sends `other` in the same turn: the purge's write goes first. */
    const againstPurge = async (name: string, other: () => ReturnType<App["send"]>) => {
      const ask = await c.send("POST", path(name, "development", "/purge"), owner);
      const [purged, raced] = await Promise.all([c.send("POST", path(name, "development", "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } }), other()]);
      expect(purged.status).toBe(200);
      expect((await c.send("GET", path(name), owner)).status).toBe(404);
      expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets WHERE name = ?").get(name)).toEqual({ n: 0 });
      return [raced.status, raced.body.detail];
    };
    for (const name of ["ROLLED", "ROTATED", "NOTED", "RESTORED", "DELETED"]) {
      await c.send("PUT", path(name), owner, { json: { value: "purged-value-v1" } });
      await c.send("PUT", path(name), owner, { json: { value: "v2" } });
    }
    await c.send("DELETE", path("RESTORED"), owner);
    const before = auditActions(c, "secrets.secret").length;
    expect(await againstPurge("ROLLED", () => c.send("POST", path("ROLLED", "development", "/rollback"), owner, { json: { version: 1 } }))).toEqual([409, "ROLLED changed meanwhile: it was purged."]);
    expect(await againstPurge("ROTATED", () => c.send("POST", path("ROTATED", "development", "/rotate"), owner, { json: { generator: "uuid" } }))).toEqual([409, "ROTATED changed meanwhile: it was purged."]);
    expect(await againstPurge("NOTED", () => c.send("PATCH", path("NOTED"), owner, { json: { note: "n" } }))).toEqual([409, "NOTED changed meanwhile: it was purged."]);
    expect(await againstPurge("RESTORED", () => c.send("POST", path("RESTORED", "development", "/restore"), owner))).toEqual([409, "RESTORED changed meanwhile: it was purged."]);
    expect(await againstPurge("DELETED", () => c.send("DELETE", path("DELETED"), owner))).toEqual([409, "DELETED changed meanwhile: it was purged."]);
    // The audit log says what was done: a purge of each, nothing after it.
    expect(auditActions(c, "secrets.secret").slice(before).map((e) => e.action)).toEqual(Array(5).fill("secrets.secret.purge"));
  });

  test("a value set while its environment is deleted answers 409, not a 500 (found in review)", async () => {
    const { c, owner, base, path } = await setup();
    await c.send("POST", `${base}/environments`, owner, { json: { name: "qa" } });
    const ask = await c.send("DELETE", `${base}/environments/qa`, owner);
    const [deleted, set] = await Promise.all([
      c.send("DELETE", `${base}/environments/qa`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } }),
      c.send("PUT", path("Q", "qa"), owner, { json: { value: "v" } }),
    ]);
    expect(deleted.status).toBe(200);
    expect([set.status, set.body.code]).toEqual([409, "conflict"]);
    expect(set.body.detail).toContain("qa environment was deleted meanwhile");
  });

  test("a metadata change or a rollback that meets a delete answers 409; a restore that meets another restore too", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("KEY"), owner, { json: { value: "one" } });
    await c.send("PUT", path("KEY"), owner, { json: { value: "two" } });
    const [deleted, noted, rolled] = await Promise.all([
      c.send("DELETE", path("KEY"), owner),
      c.send("PATCH", path("KEY"), owner, { json: { note: "n" } }),
      c.send("POST", path("KEY", "development", "/rollback"), owner, { json: { version: 1 } }),
    ]);
    expect(deleted.status).toBe(200);
    expect([noted.status, noted.body.detail]).toEqual([409, "KEY changed meanwhile: it was deleted (restore it first)."]);
    expect([rolled.status, rolled.body.detail]).toEqual([409, "KEY changed meanwhile: it was deleted (restore it first)."]);
    const restores = await Promise.all([1, 2].map(() => c.send("POST", path("KEY", "development", "/restore"), owner)));
    expect(restores.map((r) => [r.status, r.body.detail ?? r.body.version])).toEqual([[200, 2], [409, "KEY changed meanwhile: it was restored already."]]);
    expect((await c.send("GET", path("KEY"), owner)).body).toMatchObject({ value: "two", version: 2, note: null });
  });
});

describe("rotation", () => {
  test("generators make a new version of the right shape", async () => {
    const { c, owner, path } = await setup();
    await c.send("PUT", path("KEY"), owner, { json: { value: "initial", rotation_days: 30 } });
    const shapes: Array<[Record<string, unknown>, RegExp]> = [
      [{ generator: "password", length: 40 }, /^[\x21-\x7e]{40}$/],
      [{ generator: "hex" }, /^[0-9a-f]{64}$/],
      [{ generator: "base64", length: 24 }, /^[A-Za-z0-9+/]{32}$/],
      [{ generator: "uuid" }, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/],
    ];
    for (const [body, shape] of shapes) {
      const rotated = await c.send("POST", path("KEY", "development", "/rotate"), owner, { json: body });
      expect(rotated.body.value).toBeUndefined();
      expect((await c.send("GET", path("KEY"), owner)).body.value).toMatch(shape);
    }
    expect((await c.send("POST", path("KEY", "development", "/rotate"), owner, { json: { generator: "password", length: 4 } })).status).toBe(422);
    const history = await c.send("GET", path("KEY", "development", "/versions"), owner);
    expect([history.status, history.body.rotation_due, history.body.versions.length]).toEqual([200, false, 5]);
    c.clock.advance(31 * 86_400_000);
    const later = await c.login(c.owner.email, c.owner.password); // the first session has ended by now
    expect((await c.send("GET", path("KEY").replace(/\/KEY$/, ""), later)).body.items[0].rotation_due).toBe(true);
  });

  test("a rollback brings an old value back with its age: the rotation reminder counts from when that value was set, not from the rollback (found in review)", async () => {
    const { c, owner, path } = await setup();
    const day = 86_400_000;
    const at = (ms: number) => new Date(ms).toISOString();
    const setAt = c.clock.now();
    await c.send("PUT", path("DB_PASSWORD"), owner, { json: { value: "old-leaked", rotation_days: 30 } });
    c.clock.advance(40 * day);
    const later = await c.login(c.owner.email, c.owner.password); // the first session has ended by now
    const reminder = async (send: Promise<Awaited<ReturnType<App["send"]>>>) => {
      const res = await send;
      return [res.status, res.body.rotation_due, res.body.rotated_at];
    };
    const rollback = (version: number) => reminder(c.send("POST", path("DB_PASSWORD", "development", "/rollback"), later, { json: { version } }));
    // v2: a copy of v1, the value it was.
    expect(await rollback(1)).toEqual([200, true, at(setAt)]);
    const freshAt = c.clock.now();
    expect(await reminder(c.send("PUT", path("DB_PASSWORD"), later, { json: { value: "fresh" } }))).toEqual([200, false, at(freshAt)]); // v3
    c.clock.advance(60_000);
    // v4: the leaked value again, by way of its copy: still counted from v1.
    expect(await rollback(2)).toEqual([200, true, at(setAt)]);
    // v5: the fresh value again, as old as it is.
    expect(await rollback(3)).toEqual([200, false, at(freshAt)]);
    expect((await c.send("GET", path("DB_PASSWORD"), later)).body).toMatchObject({ value: "fresh", version: 5, rotated_at: at(freshAt) });
    // A rotation is one.
    expect(await reminder(c.send("POST", path("DB_PASSWORD", "development", "/rotate"), later, { json: { generator: "uuid" } }))).toEqual([200, false, at(c.clock.now())]);
  });

  test("a copy of a copy is as old as the value it holds, though a newer value was set between them (found in review: it read as set when the newer one was)", async () => {
    const { c, owner, path } = await setup();
    const day = 86_400_000;
    const leakedAt = new Date(c.clock.now()).toISOString();
    await c.send("PUT", path("DB_PASSWORD"), owner, { json: { value: "old-leaked", rotation_days: 30 } }); // v1
    c.clock.advance(40 * day);
    const later = await c.login(c.owner.email, c.owner.password);
    await c.send("PUT", path("DB_PASSWORD"), later, { json: { value: "fresh" } }); // v2
    const rollback = (version: number) => c.send("POST", path("DB_PASSWORD", "development", "/rollback"), later, { json: { version } });
    expect((await rollback(1)).body.rotated_at).toBe(leakedAt); // v3: a copy of v1
    c.clock.advance(60_000);
    await c.send("PUT", path("DB_PASSWORD"), later, { json: { value: "other" } }); // v4
    const copyOfCopy = await rollback(3); // v5: a copy of v3, the leaked value
    expect([copyOfCopy.status, copyOfCopy.body.rotation_due, copyOfCopy.body.rotated_at]).toEqual([200, true, leakedAt]);
  });

  test("a new data key re-encrypts every stored version; an interrupted rotation is finished at start", async () => {
    const { c, owner, ws, base, path } = await setup();
    for (let i = 0; i < 5; i++) await c.send("PUT", path(`S${i}`), owner, { json: { value: `value ${i}` } });
    await c.send("PUT", path("S0"), owner, { json: { value: "value 0 again" } });
    const dekVersions = () => c.kernel.store.db.query("SELECT DISTINCT dek_version AS v FROM secret_versions ORDER BY v").all();
    expect(dekVersions()).toEqual([{ v: 1 }]);
    const rotated = await c.send("POST", `${base}/rotate-key`, owner);
    expect(rotated.body).toEqual({ workspace: ws, data_key_version: 2, reencrypted: 6 });
    expect(dekVersions()).toEqual([{ v: 2 }]);
    expect((await c.send("GET", path("S0", "development", "?version=1"), owner)).body.value).toBe("value 0");
    // Killed right after the new key was made: values stay readable, and start-up finishes the job.
    await c.kernel.store.write((tx) => c.kernel.seal.keyring().rotateDek(tx, `workspace:${ws}`, c.clock.now()));
    expect((await c.send("GET", `${base}/settings`, owner)).body.values_on_older_keys).toBe(6);
    expect((await c.send("GET", path("S3"), owner)).body.value).toBe("value 3");
    expect(await servicesOf(c.kernel as never).secrets.resumeReencryption()).toBe(6);
    expect(dekVersions()).toEqual([{ v: 3 }]);
    expect((await c.send("GET", path("S3"), owner)).body.value).toBe("value 3");
  });
});

describe("rotation and the seal", () => {
  test("sealed during a data key rotation: the rotation stops (503), and no value is taken for damaged (found in review)", async () => {
    const { c, owner, base, path } = await setup({ rate_limit: { per_organization: { per_second: 100_000, burst: 100_000 } } });
    for (let i = 0; i < 450; i++) await c.send("PUT", path(`S${i}`), owner, { json: { value: `v${i}` } }); // three batches of 200
    const store = c.kernel.store;
    const write = store.write.bind(store);
    let batches = 0;
    // Seal right after the rotation's first batch commits, as an operator's `citadel seal` would.
    store.write = (async (fn: Parameters<typeof write>[0]) => {
      const result = await write(fn);
      if (Array.isArray(result) && ++batches === 2) c.kernel.seal.seal(); // the first array is the new key's batch
      return result;
    }) as typeof store.write;
    const rotated = await c.send("POST", `${base}/rotate-key`, owner);
    store.write = write;
    expect([rotated.status, rotated.body.code]).toEqual([503, "sealed"]);
    const failedReads = c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.read' AND outcome = 'failure'").get() as { n: number };
    expect(failedReads.n).toBe(0);
    expect(c.log.lines.filter((l) => String(l.msg).includes("does not decrypt"))).toEqual([]);
  });

  test("an interrupted rotation on an instance that started sealed is finished once it is unsealed (found in review)", async () => {
    const { c, owner, ws, base, path } = await setup();
    for (let i = 0; i < 3; i++) await c.send("PUT", path(`S${i}`), owner, { json: { value: `v${i}` } });
    await c.kernel.store.write((tx) => c.kernel.seal.keyring().rotateDek(tx, `workspace:${ws}`, c.clock.now())); // killed here
    c.kernel.seal.seal();
    c.kernel.seal.unsealWithKey(c.kernel.rootKey); // what POST /v1/sys/unseal ends in
    const stale = () => (c.kernel.store.db.query("SELECT count(*) AS n FROM secret_versions WHERE dek_version < 2").get() as { n: number }).n;
    for (const deadline = Date.now() + 5000; stale() > 0 && Date.now() < deadline; ) await Bun.sleep(10);
    expect(stale()).toBe(0);
    expect((await c.send("GET", path("S1"), owner)).body.value).toBe("v1");
    expect(c.log.lines.some((l) => l.msg === "finished an interrupted data key rotation")).toBe(true);
    expect((await c.send("GET", `${base}/settings`, owner)).body.values_on_older_keys).toBe(0);
  });
});

describe("share links", () => {
  async function share(c: App, owner: string, org: string, value: string, json: Record<string, unknown> = {}, passphrase?: string) {
    const sealed = await createShareSecret(value, passphrase);
    const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: sealed.passphraseRequired, ...json } });
    expect(made.status).toBe(200);
    return { id: made.body.id as string, linkKey: sealed.linkKey };
  }
  const view = (c: App, id: string, linkKey: string) => c.send("POST", `/v1/secrets/shares/${id}/view`, undefined, { json: { proof: shareViewProof(linkKey) } });

  test("one view, then 410; a wrong link burns nothing; the server cannot read it", async () => {
    const { c, owner, org } = await setup();
    const value = `one-off-${crypto.randomUUID()}`;
    const { id, linkKey } = await share(c, owner, org, value);
    const wrong = await c.send("POST", `/v1/secrets/shares/${id}/view`, undefined, { json: { proof: shareViewProof(linkKey.replace(/^./, (ch) => (ch === "A" ? "B" : "A"))) } });
    expect(wrong.status).toBe(404);
    expect(storeBytes(c)).not.toContain(value);
    const first = await view(c, id, linkKey);
    expect(first.status).toBe(200);
    expect(await openShareSecret(first.body.ciphertext, linkKey)).toBe(value);
    const second = await view(c, id, linkKey);
    expect([second.status, second.body.code]).toEqual([410, "gone"]);
    expect(auditActions(c, "secrets.share").map((e) => e.action)).toEqual(["secrets.share.create", "secrets.share.view", "secrets.share.view", "secrets.share.view"]);
    const list = await c.send("GET", `/v1/secrets/orgs/${org}/shares`, owner);
    expect(list.body.items[0]).toMatchObject({ id, state: "used", views: 1, max_views: 1 });
  });

  test("a malformed proof is refused like a wrong one: the same 404, audited, no view spent (found in review)", async () => {
    const { c, owner, org } = await setup();
    const { id, linkKey } = await share(c, owner, org, "kept");
    const wrong = await c.send("POST", `/v1/secrets/shares/${id}/view`, undefined, { json: { proof: "p".repeat(43) } });
    for (const proof of ["x", ""]) {
      for (const step of ["view", "peek"]) {
        const malformed = await c.send("POST", `/v1/secrets/shares/${id}/${step}`, undefined, { json: { proof } });
        expect([malformed.status, malformed.body.detail]).toEqual([404, wrong.body.detail]);
      }
    }
    const refusals = c.kernel.store.db.query("SELECT outcome, reason FROM audit_events WHERE action = 'secrets.share.view'").all();
    expect(refusals).toEqual(Array(5).fill({ outcome: "failure", reason: "the proof does not match the link" }));
    expect((await view(c, id, linkKey)).body.views_left).toBe(0);
  });

  test("views opened at the same moment are each told which view they were, and audited so (found in review)", async () => {
    const { c, owner, org } = await setup();
    const { id, linkKey } = await share(c, owner, org, "for three", { max_views: 3 });
    const opened = await Promise.all([1, 2, 3, 4].map(() => view(c, id, linkKey)));
    expect(opened.map((r) => r.status).sort()).toEqual([200, 200, 200, 410]);
    expect(opened.filter((r) => r.status === 200).map((r) => r.body.views_left).sort()).toEqual([0, 1, 2]);
    const views = auditActions(c, "secrets.share.view").map((e) => e.reason);
    // The fourth is refused as any view of a used-up link is: decided in the transaction that would count it.
    expect(views.sort()).toEqual(["used up", "view 1 of 3", "view 2 of 3", "view 3 of 3"]);
    expect(opened.find((r) => r.status === 410)!.body.detail).toBe("This share link is used up: it allowed no more views.");
  });

  test("expires by time; several views; a passphrase; revocation; limits", async () => {
    const { c, owner, org } = await setup();
    const timed = await share(c, owner, org, "soon gone", { ttl_hours: 1, max_views: 3 });
    expect((await view(c, timed.id, timed.linkKey)).body.views_left).toBe(2);
    c.clock.advance(3_600_000);
    expect((await view(c, timed.id, timed.linkKey)).status).toBe(410);
    const locked = await share(c, owner, org, "with a passphrase", {}, "tell-them-by-phone");
    const content = (await view(c, locked.id, locked.linkKey)).body;
    expect(content.passphrase).toBe(true);
    await expect(openShareSecret(content.ciphertext, locked.linkKey)).rejects.toThrow("passphrase");
    expect(await openShareSecret(content.ciphertext, locked.linkKey, "tell-them-by-phone")).toBe("with a passphrase");
    const revoked = await share(c, owner, org, "seen once", { max_views: 2 });
    // An editor who did not make the link cannot revoke it; its maker (or an admin) can.
    const otherEditor = await c.addUser(owner, "other-editor@example.org", "editor");
    const notTheirs = await c.send("DELETE", `/v1/secrets/orgs/${org}/shares/${revoked.id}`, otherEditor.token);
    expect([notTheirs.status, notTheirs.body.code]).toEqual([403, "forbidden"]);
    expect((await view(c, revoked.id, revoked.linkKey)).status).toBe(200);
    expect((await c.send("DELETE", `/v1/secrets/orgs/${org}/shares/${revoked.id}`, owner)).status).toBe(200);
    expect((await view(c, revoked.id, revoked.linkKey)).status).toBe(410);
    const tooLong = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: "c1.sh.x", view_proof: "p".repeat(43), passphrase: false, ttl_hours: 10_000 } });
    expect(tooLong.status).toBe(422);
    // A link says which secret it carries only if the caller may read that secret.
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "src" } })).body.id as string;
    const source = (name: string) => ({ json: { ciphertext: "c1.sh.x", view_proof: "p".repeat(43), passphrase: false, source: { workspace: ws, environment: "production", name } } });
    expect((await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, source("MISSING"))).status).toBe(422);
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/REAL`, owner, { json: { value: "v" } });
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production`, owner, { json: { protection: "admins" } });
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    expect((await c.send("POST", `/v1/secrets/orgs/${org}/shares`, editor.token, source("REAL"))).status).toBe(403);
    expect((await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, source("REAL"))).status).toBe(200);
  });
});

describe("share links whose passphrase is checked before a view", () => {
  const PHRASE = "tell-them-by-phone";

  /** A link made as `citadel share --passphrase` makes it: the passphrase proof and its argon2id salt and parameters sent too. */
  async function lockedShare(c: App, owner: string, org: string, value: string, json: Record<string, unknown> = {}) {
    const sealed = await createShareSecret(value, PHRASE);
    const body = { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true, passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf, ...json };
    const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: body });
    expect(made.status).toBe(200);
    return { id: made.body.id as string, linkKey: sealed.linkKey, proof: shareViewProof(sealed.linkKey) };
  }
  const peek = (c: App, id: string, proof: string) => c.send("POST", `/v1/secrets/shares/${id}/peek`, undefined, { json: { proof } });
  const view = (c: App, id: string, proof: string, passphraseProof?: string) =>
    c.send("POST", `/v1/secrets/shares/${id}/view`, undefined, { json: { proof, ...(passphraseProof === undefined ? {} : { passphrase_proof: passphraseProof }) } });
  /** What a viewer makes from the peek's salt and parameters and a passphrase. */
  async function passphraseProofFor(c: App, link: { id: string; linkKey: string; proof: string }, phrase: string) {
    const about = await peek(c, link.id, link.proof);
    return sharePassphraseProof(link.linkKey, phrase, about.body.passphrase_kdf as ShareKdf);
  }
  const viewRefusals = (c: App, id: string) =>
    c.kernel.store.db.query("SELECT outcome, reason FROM audit_events WHERE action = 'secrets.share.view' AND resource_id = ? ORDER BY seq").all(id) as Array<{ outcome: string; reason: string }>;

  test("the peek gives the salt and parameters; the right passphrase's proof views", async () => {
    const { c, owner, org } = await setup();
    const link = await lockedShare(c, owner, org, "locked value", { max_views: 2 });
    const about = await peek(c, link.id, link.proof);
    expect(about.body).toMatchObject({ passphrase: true, views_left: 2, passphrase_kdf: { memory_kib: 19_456, iterations: 2, parallelism: 1, salt: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) } });
    const opened = await view(c, link.id, link.proof, await passphraseProofFor(c, link, PHRASE));
    expect([opened.status, opened.body.views_left]).toEqual([200, 1]);
    expect(await openShareSecret(opened.body.ciphertext, link.linkKey, PHRASE)).toBe("locked value");
  });

  test("a wrong passphrase: 403 wrong_passphrase, no ciphertext, no view spent, audited", async () => {
    const { c, owner, org } = await setup();
    const link = await lockedShare(c, owner, org, "locked value");
    const wrong = await view(c, link.id, link.proof, await passphraseProofFor(c, link, "a guess"));
    expect([wrong.status, wrong.body.code, wrong.body.attempts_left, wrong.body.ciphertext]).toEqual([403, "wrong_passphrase", 4, undefined]);
    expect(wrong.body.detail).toContain("No view was spent");
    // Not a proof at all is one more wrong one.
    expect((await view(c, link.id, link.proof, "x")).body.attempts_left).toBe(3);
    expect((await peek(c, link.id, link.proof)).body.views_left).toBe(1);
    expect(viewRefusals(c, link.id)).toEqual([
      { outcome: "failure", reason: "wrong passphrase" },
      { outcome: "failure", reason: "wrong passphrase" },
    ]);
    const opened = await view(c, link.id, link.proof, await passphraseProofFor(c, link, PHRASE));
    expect([opened.status, opened.body.views_left]).toEqual([200, 0]);
  });

  test("the database keeps nothing a link holder could guess the passphrase against offline: the proof's hash is wrapped by the keyring (found in review)", async () => {
    const { c, owner, org } = await setup();
    const sealed = await createShareSecret("locked value", PHRASE);
    const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, {
      json: { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true, passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf },
    });
    const stored = c.kernel.store.db.query("SELECT passphrase_proof_hash AS hash FROM secrets_shares WHERE id = ?").get(made.body.id) as { hash: Uint8Array };
    const bare = createHash("sha256").update(sealed.passphraseProof!).digest();
    expect(Buffer.from(stored.hash).includes(bare)).toBe(false);
    expect(stored.hash.length).toBeGreaterThan(bare.length); // an envelope (nonce, tag), not a digest
  });

  test("without the passphrase proof: 422 naming it, nothing spent", async () => {
    const { c, owner, org } = await setup();
    const link = await lockedShare(c, owner, org, "locked value");
    const missing = await view(c, link.id, link.proof);
    expect([missing.status, missing.body.errors?.[0]?.field]).toEqual([422, "passphrase_proof"]);
    expect(missing.body.detail).toContain("a citadel older than this server does not send");
    expect((await peek(c, link.id, link.proof)).body.views_left).toBe(1);
    expect(viewRefusals(c, link.id)).toEqual([{ outcome: "failure", reason: "no passphrase proof" }]); // on the record, as every refusal (found in review)
    // A wrong link proof is still the 404 it was, whatever passphrase proof comes with it.
    expect((await view(c, link.id, "p".repeat(43), await passphraseProofFor(c, link, PHRASE))).status).toBe(404);
  });

  test("the 5th wrong passphrase burns the link: revoked, its ciphertext dropped, audited, 410 from then on", async () => {
    // More tries from one address than the per-address auth bucket allows: lifted here, to reach the 5th.
    const { c, owner, org } = await setup({ rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } });
    const link = await lockedShare(c, owner, org, "locked value", { max_views: 3 });
    const right = await passphraseProofFor(c, link, PHRASE);
    const guess = await passphraseProofFor(c, link, "a guess");
    for (const left of [4, 3, 2, 1]) expect((await view(c, link.id, link.proof, guess)).body.attempts_left).toBe(left);
    const burning = await view(c, link.id, link.proof, guess);
    expect([burning.status, burning.body.code, burning.body.detail]).toEqual([410, "gone", "This share link is revoked: burned after 5 wrong passphrases."]);
    const row = c.kernel.store.db.query("SELECT length(ciphertext) AS bytes, revoked_at IS NOT NULL AS revoked, views FROM secrets_shares WHERE id = ?").get(link.id);
    expect(row).toEqual({ bytes: 0, revoked: 1, views: 0 });
    expect((await view(c, link.id, link.proof, right)).status).toBe(410);
    expect((await peek(c, link.id, link.proof)).status).toBe(410);
    expect(auditActions(c, "secrets.share.revoke")).toEqual([{ action: "secrets.share.revoke", reason: "burned: 5 wrong passphrases" }]);
    const list = await c.send("GET", `/v1/secrets/orgs/${org}/shares`, owner);
    expect(list.body.items[0]).toMatchObject({ id: link.id, state: "revoked", views: 0 });
  });

  test("a link made before (no passphrase proof) opens with the link's proof alone, as it did", async () => {
    const { c, owner, org } = await setup();
    const sealed = await createShareSecret("old style", PHRASE);
    const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true } });
    const id = made.body.id as string;
    expect(c.kernel.store.db.query("SELECT passphrase_proof_hash, passphrase_kdf FROM secrets_shares WHERE id = ?").get(id)).toEqual({ passphrase_proof_hash: null, passphrase_kdf: null });
    const about = await peek(c, id, shareViewProof(sealed.linkKey));
    expect([about.body.passphrase, about.body.passphrase_kdf]).toEqual([true, undefined]);
    const opened = await view(c, id, shareViewProof(sealed.linkKey));
    expect(opened.status).toBe(200);
    expect(await openShareSecret(opened.body.ciphertext, sealed.linkKey, PHRASE)).toBe("old style");
  });

  test("creation refuses a salt or parameters out of bounds, and a proof without its parameters (or the other way round)", async () => {
    const { c, owner, org } = await setup();
    const sealed = await createShareSecret("v", PHRASE);
    const body = { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true, passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf };
    const refused = async (json: Record<string, unknown>) => {
      const res = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ...body, ...json } });
      return [res.status, res.body.errors?.[0]?.field];
    };
    expect(await refused({ passphrase_kdf: { ...sealed.passphraseKdf, memory_kib: 4_194_304 } })).toEqual([422, "passphrase_kdf.memory_kib"]);
    expect(await refused({ passphrase_kdf: { ...sealed.passphraseKdf, iterations: 1 } })).toEqual([422, "passphrase_kdf.iterations"]);
    expect(await refused({ passphrase_kdf: { ...sealed.passphraseKdf, parallelism: 64 } })).toEqual([422, "passphrase_kdf.parallelism"]);
    expect(await refused({ passphrase_kdf: { ...sealed.passphraseKdf, salt: "short" } })).toEqual([422, "passphrase_kdf.salt"]);
    expect(await refused({ passphrase_kdf: undefined })).toEqual([422, "passphrase_kdf"]);
    expect(await refused({ passphrase_proof: undefined })).toEqual([422, "passphrase_proof"]);
    expect(await refused({ passphrase: false })).toEqual([422, "passphrase_proof"]);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_shares").get()).toEqual({ n: 0 });
    expect((await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: body })).status).toBe(200);
  });
});

describe("end-to-end-encrypted workspaces", () => {
  test("the server stores ciphertext only; a second member decrypts once wrapped; a removed member loses the key", async () => {
    const { c, owner, org, ws, base, path } = await setup();
    const member = await c.addUser(owner, "member@example.org", "editor");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const alice = generateUserKeyPair();
    const bob = generateUserKeyPair();
    for (const [token, pair] of [[owner, alice], [member.token, bob]] as const) {
      expect((await c.send("PUT", "/v1/secrets/me/keypair", token, { json: { public_key: pair.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } })).status).toBe(200);
    }
    expect((await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } })).body.e2ee).toBe(true);
    const key = newWorkspaceKey();
    expect((await c.send("PUT", `${base}/e2ee/keys/${member.id}`, owner, { json: { wrapped: wrapWorkspaceKey(key, bob.publicKey, { workspace: ws, user: member.id }) } })).status).toBe(409); // first key is your own
    expect((await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(key, alice.publicKey, { workspace: ws, user: me }) } })).status).toBe(200);

    const plaintext = `e2ee-${crypto.randomUUID()}`;
    const refused = await c.send("PUT", path("API_KEY"), owner, { json: { value: plaintext } });
    expect([refused.status, refused.body.code]).toEqual([422, "invalid"]);
    const context = { workspace: ws, environment: "development", name: "API_KEY", version: 1, keyVersion: 1 };
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: encryptValue(key, plaintext, context) } })).status).toBe(200);
    expect((await c.send("POST", path("API_KEY", "development", "/rotate"), owner, { json: { generator: "uuid" } })).status).toBe(409);
    expect((await c.send("POST", `${base}/rotate-key`, owner)).status).toBe(409);
    expect((await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: "c1.sh.x", view_proof: "p".repeat(43), passphrase: false, source: { workspace: ws, environment: "development", name: "API_KEY" } } })).status).toBe(409);
    expect((await c.send("GET", `${base}/environments/development/export`, owner)).status).toBe(409);

    // Bob has no key yet; Alice's client wraps it for him.
    expect((await c.send("GET", `${base}/e2ee/my-key`, member.token)).status).toBe(404);
    expect((await c.send("PUT", `${base}/e2ee/keys/${member.id}`, member.token, { json: { wrapped: "c1.wk.AAAAAAAAAAAAAAAAAAAA" } })).status).toBe(403);
    const bobsPublic = (await c.send("GET", `${base}/e2ee/public-keys/${member.id}`, owner)).body.public_key;
    await c.send("PUT", `${base}/e2ee/keys/${member.id}`, owner, { json: { wrapped: wrapWorkspaceKey(key, bobsPublic, { workspace: ws, user: member.id }) } });
    const bobsKey = unwrapWorkspaceKey((await c.send("GET", `${base}/e2ee/my-key`, member.token)).body.wrapped, bob.privateKey, { workspace: ws, user: member.id });
    const stored = (await c.send("GET", path("API_KEY"), member.token)).body;
    expect(stored.e2ee).toBe(true);
    expect(decryptValue(bobsKey, stored.value, context)).toBe(plaintext);

    expect(storeBytes(c)).not.toContain(plaintext);
    expect(JSON.stringify(c.log.lines)).not.toContain(plaintext);
    expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${member.id}`, owner)).status).toBe(200);
    expect((await c.send("GET", `${base}/e2ee/my-key`, member.token)).status).toBe(403);
    expect((await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: false } })).status).toBe(409); // it holds secrets
  });
});

describe("the workspace key is never left without a holder", () => {
  async function twoHolders() {
    const { c, owner, ws, base } = await setup();
    const member = await c.addUser(owner, "member@example.org", "editor");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const alice = generateUserKeyPair();
    const bob = generateUserKeyPair();
    for (const [token, pair] of [[owner, alice], [member.token, bob]] as const) {
      await c.send("PUT", "/v1/secrets/me/keypair", token, { json: { public_key: pair.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    }
    await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
    const key = newWorkspaceKey();
    await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(key, alice.publicKey, { workspace: ws, user: me }) } });
    await c.send("PUT", `${base}/e2ee/keys/${member.id}`, owner, { json: { wrapped: wrapWorkspaceKey(key, bob.publicKey, { workspace: ws, user: member.id }) } });
    const holders = async () => ((await c.send("GET", `${base}/e2ee/keys`, owner)).body.items as Array<{ user: string }>).map((h) => h.user).sort();
    expect(await holders()).toEqual([me, member.id].sort());
    return { c, owner, base, me, member, holders };
  }
  const newPair = () => ({ public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"B".repeat(80)}` });

  test("two holders replacing their key pairs at the same moment: one is refused, one holder stays", async () => {
    const { c, owner, member, holders } = await twoHolders();
    const answers = await Promise.all([c.send("PUT", "/v1/secrets/me/keypair", owner, { json: newPair() }), c.send("PUT", "/v1/secrets/me/keypair", member.token, { json: newPair() })]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    expect(await holders()).toHaveLength(1);
  });

  test("a key pair replaced while the other holder is removed: one is refused", async () => {
    const { c, owner, base, member, holders } = await twoHolders();
    const answers = await Promise.all([c.send("PUT", "/v1/secrets/me/keypair", owner, { json: newPair() }), c.send("DELETE", `${base}/e2ee/keys/${member.id}`, owner)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    expect(await holders()).toHaveLength(1);
  });

  test("a holder who left the organization does not count: the last member holding it keeps it", async () => {
    const { c, owner, me, member, holders } = await twoHolders();
    expect((await c.send("DELETE", `/v1/iam/orgs/${c.owner.organization}/members/${member.id}`, owner)).status).toBe(200);
    const replaced = await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: newPair() });
    expect([replaced.status, replaced.body.detail]).toEqual([409, expect.stringContaining("You are the only holder of the key of workspace")]);
    expect(await holders()).toContain(me);
  });

  test("a holder whose account was deleted does not count either, nor can the key be given to them (found in review)", async () => {
    const { c, owner, base, me, member, holders } = await twoHolders();
    const ask = await c.send("DELETE", `/v1/iam/users/${member.id}`, owner);
    expect(ask.status).toBe(428);
    expect((await c.send("DELETE", `/v1/iam/users/${member.id}`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    const replaced = await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: newPair() });
    expect([replaced.status, replaced.body.detail]).toEqual([409, expect.stringContaining("You are the only holder of the key of workspace")]);
    expect(await holders()).toContain(me);
    expect((await c.send("GET", `${base}/e2ee/public-keys/${member.id}`, owner)).status).toBe(404);
    const granted = await c.send("PUT", `${base}/e2ee/keys/${member.id}`, owner, { json: { wrapped: `c1.wk.${"A".repeat(40)}` } });
    expect([granted.status, granted.body.field ?? granted.body.errors?.[0]?.field]).toEqual([422, "user"]);
  });

  test("the only holder's sealed private key is not replaced under the same public key; the same key pair again is no change (found in review)", async () => {
    const { c, owner, ws, base } = await setup();
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const mine = generateUserKeyPair();
    const sealed = `c1.pk.${"A".repeat(80)}`;
    await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: sealed } });
    await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
    await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(newWorkspaceKey(), mine.publicKey, { workspace: ws, user: me }) } });
    const keypairEvents = () => auditActions(c, "secrets.e2ee.keypair").length;
    const before = keypairEvents();
    expect((await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: sealed } })).status).toBe(200);
    expect(keypairEvents()).toBe(before); // nothing changed, nothing recorded
    const resealed = await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: `c1.pk.${"Z".repeat(80)}` } });
    expect([resealed.status, resealed.body.detail]).toEqual([409, expect.stringContaining("You are the only holder of the key of workspace")]);
    expect((await c.send("GET", "/v1/secrets/me/keypair", owner)).body.sealed_private_key).toBe(sealed);
    expect((await c.send("GET", `${base}/e2ee/my-key`, owner)).status).toBe(200);
  });

  test("a holder who is not the only one may seal their private key anew; their copies go, to be granted again", async () => {
    const { c, member, me, holders } = await twoHolders();
    const pair = (await c.send("GET", "/v1/secrets/me/keypair", member.token)).body;
    expect((await c.send("PUT", "/v1/secrets/me/keypair", member.token, { json: { public_key: pair.public_key, sealed_private_key: `c1.pk.${"Z".repeat(80)}` } })).status).toBe(200);
    expect(await holders()).toEqual([me]);
  });

  test("the first key is set by whoever turned encryption on, not by another admin in between", async () => {
    const { c, owner, ws, base } = await setup();
    const other = await c.addUser(owner, "other-admin@example.org", "admin");
    const otherPair = generateUserKeyPair();
    await c.send("PUT", "/v1/secrets/me/keypair", other.token, { json: { public_key: otherPair.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    const mine = generateUserKeyPair();
    await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
    const planted = await c.send("PUT", `${base}/e2ee/keys/${other.id}`, other.token, { json: { wrapped: wrapWorkspaceKey(newWorkspaceKey(), otherPair.publicKey, { workspace: ws, user: other.id }) } });
    expect([planted.status, planted.body.code]).toEqual([403, "forbidden"]);
    expect((await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(newWorkspaceKey(), mine.publicKey, { workspace: ws, user: me }) } })).status).toBe(200);
  });

  test("a holder's copy cannot be replaced by another holder", async () => {
    const { c, owner, base, member } = await twoHolders();
    const forged = await c.send("PUT", `${base}/e2ee/keys/${member.id}`, owner, { json: { wrapped: "c1.wk.AAAAAAAAAAAAAAAAAAAA" } });
    expect([forged.status, forged.body.detail]).toEqual([409, "That member holds the workspace key already."]);
  });
});

describe("turning end-to-end encryption on and off", () => {
  test("on twice is refused, and so is a new key over the caller's own copy: the key values are encrypted with stays (found in review)", async () => {
    const { c, owner, ws, base } = await setup();
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const mine = generateUserKeyPair();
    await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: mine.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    expect((await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } })).status).toBe(200);
    const first = wrapWorkspaceKey(newWorkspaceKey(), mine.publicKey, { workspace: ws, user: me });
    expect((await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: first } })).status).toBe(200);

    const again = await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
    expect([again.status, again.body.detail]).toEqual([409, expect.stringContaining("end-to-end encrypted already")]);
    const replaced = await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(newWorkspaceKey(), mine.publicKey, { workspace: ws, user: me }) } });
    expect([replaced.status, replaced.body.detail]).toEqual([409, "You hold the workspace key already."]);
    expect((await c.send("GET", `${base}/e2ee/my-key`, owner)).body.wrapped).toBe(first);
    // Off while already off changes nothing and is no error.
    expect((await c.send("PATCH", `/v1/secrets/workspaces/${(await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "plain" } })).body.id}/settings`, owner, { json: { e2ee: false } })).status).toBe(200);
  });

  test("a new workspace key leaves the values' rotation reminders as they were: the values are the same, re-encrypted (found in review: each was reset to the rotation's time)", async () => {
    const { c, owner, ws, base, path, me, mine } = await encryptedWithTwoKeyPairs();
    const v1 = newWorkspaceKey();
    await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, mine.publicKey, { workspace: ws, user: me }) } });
    const ctx = { workspace: ws, environment: "development", name: "A", version: 1, keyVersion: 1 };
    const setAt = new Date(c.clock.now()).toISOString();
    await c.send("PUT", path("A"), owner, { json: { value: encryptValue(v1, "alpha", ctx), rotation_days: 30 } });
    c.clock.advance(40 * 86_400_000);
    const later = await c.login(c.owner.email, c.owner.password);
    // As an upgrade's guess may have left it (found in review): the version says younger than the
    // secret row, which the rotation must trust.
    c.kernel.store.db.query("UPDATE secret_versions SET value_set_at = ?").run(c.clock.now());
    const v2 = newWorkspaceKey();
    const rotation = { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: encryptValue(v2, "alpha", { ...ctx, version: 2, keyVersion: 2 }) }], wrapped: [{ user: me, wrapped: wrapWorkspaceKey(v2, mine.publicKey, { workspace: ws, user: me }) }] };
    expect((await c.send("POST", `${base}/e2ee/rotate`, later, { json: rotation })).body.key_version).toBe(2);
    const after = await c.send("GET", `${base}/environments/development/secrets`, later);
    expect(after.body.items.map((s: { name: string; version: number; rotated_at: string; rotation_due: boolean }) => [s.name, s.version, s.rotated_at, s.rotation_due])).toEqual([["A", 2, setAt, true]]);
  });

  test("off forgets every wrapped key and version: whoever turns it on again sets the first key (found in review)", async () => {
    const { c, owner, ws, base, path, me, admin, mine, theirs } = await encryptedWithTwoKeyPairs();
    const v1 = newWorkspaceKey();
    await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, mine.publicKey, { workspace: ws, user: me }) } });
    const ctx = { workspace: ws, environment: "development", name: "A", version: 1, keyVersion: 1 };
    await c.send("PUT", path("A"), owner, { json: { value: encryptValue(v1, "alpha", ctx) } });
    const v2 = newWorkspaceKey();
    const rotation = { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: encryptValue(v2, "alpha", { ...ctx, version: 2, keyVersion: 2 }) }], wrapped: [{ user: me, wrapped: wrapWorkspaceKey(v2, mine.publicKey, { workspace: ws, user: me }) }] };
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: rotation })).body.key_version).toBe(2);

    // Off only once no secret is left, deleted ones included.
    await c.send("DELETE", path("A"), owner);
    expect((await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: false } })).status).toBe(409);
    const ask = await c.send("POST", path("A", "development", "/purge"), owner);
    expect((await c.send("POST", path("A", "development", "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: false } })).body.e2ee).toBe(false);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_workspace_keys WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
    expect(c.kernel.store.db.query("SELECT e2ee_key_version AS v, e2ee_enabled_by AS by FROM secrets_workspaces WHERE workspace_id = ?").get(ws)).toEqual({ v: 1, by: null });

    // On again, by another admin: the earlier holder is no holder any more, the first key is theirs.
    await c.send("PATCH", `${base}/settings`, admin.token, { json: { e2ee: true } });
    expect((await c.send("GET", `${base}/e2ee/my-key`, owner)).status).toBe(404);
    const set = await c.send("PUT", `${base}/e2ee/keys/${admin.id}`, admin.token, { json: { wrapped: wrapWorkspaceKey(newWorkspaceKey(), theirs.publicKey, { workspace: ws, user: admin.id }) } });
    expect([set.status, set.body.items?.map((h: { user: string }) => h.user)]).toEqual([200, [admin.id]]);
    expect((await c.send("GET", `${base}/e2ee/my-key`, admin.token)).body.key_version).toBe(1);
  });
});

describe("replacing an end-to-end-encrypted workspace's key", () => {
  test("values re-encrypted by a client in one step; who is left out loses every version of the key", async () => {
    const { c, owner, ws, base, path } = await setup();
    const { me, bob, carol, pairs, v1, wrappedFor } = await encryptedForThree(c, owner, ws);
    const ctx = (name: string, environment = "development", version = 1) => ({ workspace: ws, environment, name, version, keyVersion: version });
    await c.send("PUT", path("A"), owner, { json: { value: encryptValue(v1, "alpha", ctx("A")) } });
    await c.send("PUT", path("B", "production"), owner, { json: { value: encryptValue(v1, "beta", ctx("B", "production")) } });

    // Bob leaves the team; the owner's client re-encrypts everything under v2, for herself and Carol.
    const v2 = newWorkspaceKey();
    const wrapped = wrappedFor(v2, me, carol.id);
    const values = [
      { environment: "development", name: "A", version: 1, value: encryptValue(v2, "alpha", ctx("A", "development", 2)) },
      { environment: "production", name: "B", version: 1, value: encryptValue(v2, "beta", ctx("B", "production", 2)) },
    ];
    const stale = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { values: [{ ...values[0]!, version: 7 }, values[1]], wrapped } });
    expect([stale.status, stale.body.code]).toEqual([409, "conflict"]);
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { values: [values[0]], wrapped } })).status).toBe(409); // B missing
    expect((await c.send("POST", `${base}/e2ee/rotate`, bob.token, { json: { values, wrapped } })).status).toBe(403); // editors cannot
    // Re-encrypted from a version the workspace is no longer at (another rotation came first).
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 2, values, wrapped } })).status).toBe(409);
    const rotated = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values, wrapped } });
    expect(rotated.body).toEqual({ workspace: ws, key_version: 2, reencrypted: 2, holders: [me, carol.id] });

    expect((await c.send("GET", `${base}/e2ee/my-key`, bob.token)).status).toBe(404);
    expect((await c.send("GET", `${base}/e2ee/my-key?version=1`, bob.token)).status).toBe(404);
    const carolsKey = (await c.send("GET", `${base}/e2ee/my-key`, carol.token)).body;
    expect(carolsKey.key_version).toBe(2);
    const key2 = unwrapWorkspaceKey(carolsKey.wrapped, pairs.get(carol.id)!.privateKey, { workspace: ws, user: carol.id });
    const current = (await c.send("GET", path("B", "production"), carol.token)).body;
    expect([current.version, current.key_version]).toEqual([2, 2]);
    expect(decryptValue(key2, current.value, ctx("B", "production", 2))).toBe("beta");
    // History stays readable to those who keep access: version 1 is under key v1.
    const old = (await c.send("GET", path("A", "development", "?version=1"), carol.token)).body;
    expect(old.key_version).toBe(1);
    const key1 = unwrapWorkspaceKey((await c.send("GET", `${base}/e2ee/my-key?version=1`, carol.token)).body.wrapped, pairs.get(carol.id)!.privateKey, { workspace: ws, user: carol.id });
    expect(decryptValue(key1, old.value, ctx("A"))).toBe("alpha");
    expect(() => decryptValue(key1, current.value, ctx("B", "production", 2))).toThrow();
    // New values take the new version; a plaintext is still refused.
    expect((await c.send("PUT", path("C"), carol.token, { json: { value: encryptValue(key2, "gamma", { ...ctx("C"), keyVersion: 2 }) } })).status).toBe(200);
    expect((await c.send("GET", path("C"), carol.token)).body.key_version).toBe(2);
    expect(auditActions(c, "secrets.e2ee.rotate")).toHaveLength(1);

    // History still needs v1. Carol may take a new key pair (the owner keeps copies of v1 and
    // v2) and gets v2 again; the owner, now the last to hold v1, may not — told why, not told to
    // "grant" it (a grant gives the current version only).
    const carolsNew = generateUserKeyPair();
    expect((await c.send("PUT", "/v1/secrets/me/keypair", carol.token, { json: { public_key: carolsNew.publicKey, sealed_private_key: `c1.pk.${"C".repeat(80)}` } })).status).toBe(200);
    expect((await c.send("PUT", `${base}/e2ee/keys/${carol.id}`, owner, { json: { wrapped: wrapWorkspaceKey(key2, carolsNew.publicKey, { workspace: ws, user: carol.id }) } })).status).toBe(200);
    const mine = await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"D".repeat(80)}` } });
    expect([mine.status, mine.body.detail]).toEqual([409, expect.stringContaining("only holder of version 1 of the key of workspace")]);
    expect(mine.body.detail).toContain("older values are still encrypted with");
    // Once no value needs v1 (its secrets purged), the owner's key pair can change.
    for (const [name, env] of [["A", "development"], ["B", "production"]] as const) {
      const ask = await c.send("POST", path(name, env, "/purge"), owner);
      expect((await c.send("POST", path(name, env, "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    }
    expect((await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"E".repeat(80)}` } })).status).toBe(200);
  });
});

describe("keys and protection cannot be taken over", () => {
  test("E2EE: no takeover by removing holders, no loss by a new key pair, no rollback across key versions", async () => {
    const { c, owner, ws, base, path, me, admin, mine, theirs } = await encryptedWithTwoKeyPairs();
    const key = newWorkspaceKey();
    await c.send("PUT", `${base}/e2ee/keys/${me}`, owner, { json: { wrapped: wrapWorkspaceKey(key, mine.publicKey, { workspace: ws, user: me }) } });
    const ctx = { workspace: ws, environment: "development", name: "A", version: 1, keyVersion: 1 };
    await c.send("PUT", path("A"), owner, { json: { value: encryptValue(key, "alpha", ctx) } });
    // The admin holds no key: removing the last holder is refused, and no "first key" can be planted.
    expect((await c.send("DELETE", `${base}/e2ee/keys/${me}`, admin.token)).status).toBe(409);
    const planted = newWorkspaceKey();
    expect((await c.send("PUT", `${base}/e2ee/keys/${admin.id}`, admin.token, { json: { wrapped: wrapWorkspaceKey(planted, theirs.publicKey, { workspace: ws, user: admin.id }) } })).status).toBe(403);
    // The only holder cannot lose the key by making a new key pair.
    const replaced = await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: { public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
    expect([replaced.status, replaced.body.code]).toEqual([409, "conflict"]);
    expect((await c.send("GET", `${base}/e2ee/my-key`, owner)).status).toBe(200);
    // The server cannot roll back by copying a ciphertext (it names its version, and this one its old key too): the client does it.
    const next = newWorkspaceKey();
    await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { values: [{ environment: "development", name: "A", version: 1, value: encryptValue(next, "alpha", { ...ctx, version: 2, keyVersion: 2 }) }], wrapped: [{ user: me, wrapped: wrapWorkspaceKey(next, mine.publicKey, { workspace: ws, user: me }) }] } });
    const copied = await c.send("POST", path("A", "development", "/rollback"), owner, { json: { version: 1 } });
    expect([copied.status, copied.body.detail]).toEqual([409, expect.stringContaining("A client rolls it back: citadel secrets rollback A 1 decrypts version 1 on your machine")]);
  });

  test("turning E2EE on while a plaintext is being written never leaves a plaintext in an E2EE workspace", async () => {
    const { c, owner, base, path } = await setup();
    const [toggled, written] = await Promise.all([c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } }), c.send("PUT", path("RACE"), owner, { json: { value: "hunter2-plaintext" } })]);
    const settings = (await c.send("GET", `${base}/settings`, owner)).body;
    if (settings.e2ee) expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secret_versions WHERE dek_version > 0").get()).toEqual({ n: 0 });
    expect([toggled.status, written.status].filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
  });

  test("a named environment stays closed to an admin left out; deliveries and share sources are for admins", async () => {
    const { c, owner, org, base, path } = await setup({ secrets: { webhook_allowed_urls: ["http://127.0.0.1:9/hooks"] } });
    const admin = await c.addUser(owner, "admin@example.org", "admin");
    const viewer = await c.addUser(owner, "viewer@example.org", "viewer");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    await c.send("PUT", path("S", "staging"), owner, { json: { value: "v" } });
    await c.send("PUT", `${base}/environments/staging`, owner, { json: { protection: "named", allowed_users: [me] } });
    expect((await c.send("PUT", `${base}/environments/staging`, admin.token, { json: { protection: "members" } })).status).toBe(403);
    expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: "http://127.0.0.1:9/hooks-admin/x" } })).status).toBe(422);
    // Encoded separators a receiver may decode into a path outside the prefix; a dot segment with
    // parameters, which Tomcat and Jetty take for the segment (found in review); a percent sign
    // encoded, which a receiver decoding twice turns into one of the above (found in review); NUL.
    const escapes = ["/hooks/..%2Fadmin", "/hooks/..%5cadmin", "/hooks/%2e%2e/admin", "/hooks/..;/admin", "/hooks/..;jsessionid=1/admin", "/hooks/.;x/..;/admin", "/hooks/%252e%252e/admin", "/hooks/.%252e/admin", "/hooks/%00/x", "/hooks/x%00"];
    for (const escape of escapes) {
      expect([escape, (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `http://127.0.0.1:9${escape}` } })).status]).toEqual([escape, 422]);
    }
    const hook = await c.send("POST", `${base}/webhooks`, owner, { json: { url: "http://127.0.0.1:9/hooks/x" } });
    expect(hook.status).toBe(200);
    // Parameters on a segment that is no dot segment are the receiver's business.
    expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: "http://127.0.0.1:9/hooks/y;v=2/..x" } })).status).toBe(200);
    expect((await c.send("GET", `${base}/webhooks/${hook.body.id}/deliveries`, viewer.token)).status).toBe(403);
    expect((await c.send("GET", `/v1/secrets/orgs/${org}/shares`, viewer.token)).status).toBe(403);
  });
});

describe("webhooks", () => {
  test("signed deliveries to a real receiver, retried with back-off after a failure; only allowed URLs", async () => {
    const received: Array<{ body: string; ok: boolean }> = [];
    let failNext = 1;
    let secret = "";
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const body = await req.text();
        const check = verifyWebhook({ secret, body, signature: req.headers.get("x-citadel-signature-256"), timestamp: req.headers.get("x-citadel-timestamp"), nowSeconds: Math.floor(Date.UTC(2026, 5, 1) / 1000) + 60 });
        received.push({ body, ok: check.ok });
        if (failNext-- > 0) return new Response("busy", { status: 503 });
        return new Response(null, { status: check.ok ? 204 : 401 });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: "http://127.0.0.1:1/elsewhere" } })).status).toBe(422);
    expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: `http://user:pw@127.0.0.1:${receiver.port}/hooks/a` } })).status).toBe(422);
    const hook = await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}citadel` } });
    expect(hook.body.secret).toStartWith("whsec_");
    secret = hook.body.secret;
    expect(storeBytes(c)).not.toContain(secret);
    // The URL may be a capability: whole for admins, its origin for a viewer.
    const viewer = await c.addUser(owner, "viewer@example.org", "viewer");
    expect((await c.send("GET", `${base}/webhooks`, owner)).body.items.map((h: { url: string }) => h.url)).toEqual([`${allowed}citadel`]);
    expect((await c.send("GET", `${base}/webhooks`, viewer.token)).body.items.map((h: { url: string }) => h.url)).toEqual([`http://127.0.0.1:${receiver.port}/…`]);

    await c.send("PUT", path("WEBHOOKED"), owner, { json: { value: "do-not-send-me" } });
    const { webhooks } = servicesOf(c.kernel as never);
    expect(await webhooks.deliverDue()).toBe(1);
    expect(await webhooks.deliverDue()).toBe(0); // not due again until its back-off passes
    c.clock.advance(5_000);
    expect(await webhooks.deliverDue()).toBe(1);
    expect(received.map((r) => r.ok)).toEqual([true, true]);
    const event = JSON.parse(received[1]!.body);
    expect(event).toMatchObject({ type: "secret.created", workspace: expect.any(String), environment: "development", name: "WEBHOOKED", version: 1 });
    expect(received[1]!.body).not.toContain("do-not-send-me");
    // A tampered body or an old timestamp does not verify.
    expect(verifyWebhook({ secret, body: received[1]!.body.replace("WEBHOOKED", "OTHER"), signature: null, timestamp: null }).ok).toBe(false);
    const deliveries = await c.send("GET", `${base}/webhooks/${hook.body.id}/deliveries`, owner);
    expect(deliveries.body.items[0]).toMatchObject({ state: "delivered", attempts: 2, last_status: 204 });
  });

  test("a workspace has at most secrets.webhooks_per_workspace webhooks: each change writes a delivery per webhook, in the change's transaction (found in review: 200 webhooks and a 5,000-entry import wrote 1,000,000 rows)", async () => {
    const allowed = "http://127.0.0.1:9/hooks/";
    const { c, owner, base } = await setup({ secrets: { webhook_allowed_urls: [allowed], webhooks_per_workspace: 2 } });
    const create = (name: string) => c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}${name}` } });
    const first = await create("a");
    expect((await create("b")).status).toBe(200);
    const third = await create("c");
    expect([third.status, third.body.detail]).toEqual([409, "This workspace has 2 webhooks, and secrets.webhooks_per_workspace allows 2: delete one first."]);
    // A deleted one frees its place.
    expect((await c.send("DELETE", `${base}/webhooks/${first.body.id}`, owner)).status).toBe(200);
    expect((await create("c")).status).toBe(200);
    expect((await c.send("GET", `${base}/webhooks`, owner)).body.items.length).toBe(2);
    await c.stop();
  });

  test("a receiver that hangs holds up only its own webhook, whose deliveries go out one at a time, in order (found in review)", async () => {
    let hold = true;
    const hanging: Array<{ name: string; answer: () => void }> = [];
    const received: string[] = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const { name } = JSON.parse(await req.text());
        if (hold && new URL(req.url).pathname === "/hooks/a") await new Promise<void>((answer) => hanging.push({ name, answer }));
        else received.push(name);
        return new Response(null, { status: 204 });
      },
    });
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, org, base } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}a` } });
    const names = Array.from({ length: 30 }, (_, i) => `A${String(i).padStart(2, "0")}`);
    const content = names.map((name) => `${name}=v\n`).join("");
    expect((await c.send("POST", `${base}/environments/development/import`, owner, { json: { format: "dotenv", content } })).body.created).toBe(30);
    const other = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "other" } })).body.id as string;
    await c.send("POST", `/v1/secrets/workspaces/${other}/webhooks`, owner, { json: { url: `${allowed}b` } });
    await c.send("PUT", `/v1/secrets/workspaces/${other}/environments/development/secrets/B`, owner, { json: { value: "v" } });

    const { webhooks } = servicesOf(c.kernel as never);
    const first = webhooks.deliverDue();
    while (received.length === 0 || hanging.length === 0) await Bun.sleep(5);
    // B's delivery is made while A's receiver has not answered, and A has one attempt in flight, its oldest.
    expect(received).toEqual(["B"]);
    expect(hanging.map((h) => h.name)).toEqual(["A00"]);
    hanging[0]!.answer();
    await first;
    const second = webhooks.deliverDue(); // or the worker's own tick: either way, A's next one only
    while (hanging.length < 2) await Bun.sleep(5);
    expect(hanging.map((h) => h.name)).toEqual(["A00", "A01"]);

    hold = false;
    for (const h of hanging) h.answer();
    await second;
    await c.stop();
    receiver.stop(true);
  });

  test("a webhook's deliveries reach the receiver in order: a newer change waits for the retry of an older one (found in review: it saw v1 503, v2 204, v1 204)", async () => {
    const received: Array<{ version: number; status: number }> = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const { version } = JSON.parse(await req.text());
        const status = received.length === 0 ? 503 : 204;
        received.push({ version, status });
        return new Response(null, { status });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}a` } });
    const { webhooks } = servicesOf(c.kernel as never);
    await c.send("PUT", path("ORDERED"), owner, { json: { value: "one" } });
    expect(await webhooks.deliverDue()).toBe(1); // v1: 503, retried in 5 s
    await c.send("PUT", path("ORDERED"), owner, { json: { value: "two" } });
    expect(await webhooks.deliverDue()).toBe(0); // v2 is due, but waits for v1
    c.clock.advance(5_000);
    while ((await webhooks.deliverDue()) > 0);
    expect(received).toEqual([
      { version: 1, status: 503 },
      { version: 1, status: 204 },
      { version: 2, status: 204 },
    ]);
    await c.stop();
  });

  test("stopping cuts short an attempt in flight rather than wait for the receiver; the delivery stays pending and goes out after the restart (found in review: a slow receiver held SIGTERM past its deadline)", async () => {
    const received: Array<{ id: string; name: string }> = [];
    const hanging: Array<() => void> = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const event = JSON.parse(await req.text());
        received.push({ id: event.id, name: event.name });
        if (received.length === 1) await new Promise<void>((answer) => hanging.push(answer)); // answers only once the server has stopped
        return new Response(null, { status: 204 });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed], webhook_timeout_seconds: 120 } });
    const id = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}slow` } })).body.id as string;
    await c.send("PUT", path("SLOW"), owner, { json: { value: "v" } });
    const { webhooks } = servicesOf(c.kernel as never);
    const sending = webhooks.deliverDue();
    while (hanging.length === 0) await Bun.sleep(5);

    await c.stop(); // before the fix: waited for the receiver, which waits for the stop
    expect(await sending).toBe(1);
    const delivery = () => c.kernel.store.db.query("SELECT state, attempts FROM secrets_webhook_deliveries WHERE webhook_id = ?").get(id);
    expect(delivery()).toEqual({ state: "pending", attempts: 0 });
    expect(c.log.lines.filter((line) => line.level === "error")).toEqual([]);
    hanging[0]!();

    const stopAgain = webhooks.start(); // as after a restart
    expect(await webhooks.deliverDue()).toBe(1);
    await stopAgain();
    expect(delivery()).toEqual({ state: "delivered", attempts: 1 });
    expect(received.map((r) => r.name)).toEqual(["SLOW", "SLOW"]);
    expect(received[1]!.id).toBe(received[0]!.id); // the same event: a receiver dedupes on its id
  }, { timeout: 10_000 });

  test("an organization whose receivers hang holds at most its share of the attempts in flight, and never stands in front of another organization's deliveries", async () => {
    let hold = true;
    const hanging: Array<() => void> = [];
    const received: string[] = [];
    let concurrent = 0;
    let peak = 0;
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const { name } = JSON.parse(await req.text());
        if (!new URL(req.url).pathname.startsWith("/hooks/greedy-")) {
          received.push(name);
          return new Response(null, { status: 204 });
        }
        concurrent++;
        peak = Math.max(peak, concurrent);
        if (hold) await new Promise<void>((answer) => hanging.push(answer));
        concurrent--;
        return new Response(null, { status: 204 });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    // More webhooks than all the slots there are (20), each with a delivery due before the other organization's.
    const greedyHooks = 21;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed], webhooks_per_workspace: greedyHooks } });
    for (let i = 0; i < greedyHooks; i++) expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}greedy-${i}` } })).status).toBe(200);
    await c.send("PUT", path("GREEDY"), owner, { json: { value: "v" } });
    const otherOrg = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other" } })).body.id as string;
    const otherWs = (await c.send("POST", `/v1/iam/orgs/${otherOrg}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    const otherBase = `/v1/secrets/workspaces/${otherWs}`;
    await c.send("POST", `${otherBase}/webhooks`, owner, { json: { url: `${allowed}patient` } });
    await c.send("PUT", `${otherBase}/environments/development/secrets/PATIENT`, owner, { json: { value: "v" } });

    const { webhooks } = servicesOf(c.kernel as never);
    const first = webhooks.deliverDue();
    // Every attempt started has reached the receiver: the greedy organization's share, and the other's.
    while (hanging.length + received.length < 6) await Bun.sleep(5);
    expect(received).toEqual(["PATIENT"]);
    expect(hanging.length).toBe(5);
    // At its share, the greedy organization gets no more, however many slots are free.
    expect(await webhooks.deliverDue()).toBe(0);
    // Its 16 older deliveries still due do not hold up a newer one of the other organization.
    await c.send("PUT", `${otherBase}/environments/development/secrets/LATER`, owner, { json: { value: "v" } });
    await webhooks.deliverDue();
    while (!received.includes("LATER")) await Bun.sleep(5);
    expect([received, hanging.length]).toEqual([["PATIENT", "LATER"], 5]);

    // Once the receivers answer, the rest go out too, never more than the share at a time.
    hold = false;
    for (const answer of hanging) answer();
    await first;
    const delivered = () => (c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_webhook_deliveries WHERE state = 'delivered'").get() as { n: number }).n;
    while (delivered() < greedyHooks + 2) {
      await webhooks.deliverDue();
      await Bun.sleep(5);
    }
    expect(peak).toBe(5);
    await c.stop();
  });

  test("deleting a webhook deletes its deliveries, pending ones too, and forgets its URL (found in review: a capability URL and every delivery were kept for good, out of the API's reach)", async () => {
    const allowed = "http://127.0.0.1:9/hooks/";
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    const id = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}token-abc123` } })).body.id as string;
    for (const name of ["A", "B"]) await c.send("PUT", path(name), owner, { json: { value: "v" } });
    c.kernel.store.db.run("UPDATE secrets_webhook_deliveries SET state = 'delivered' WHERE id = (SELECT min(id) FROM secrets_webhook_deliveries)");
    expect((await c.send("DELETE", `${base}/webhooks/${id}`, owner)).status).toBe(200);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_webhook_deliveries WHERE webhook_id = ?").get(id)).toEqual({ n: 0 });
    // The row stays, for the audit events that name it; the URL, which may hold a token, does not.
    expect(c.kernel.store.db.query("SELECT url, deleted_at IS NOT NULL AS deleted FROM secrets_webhooks WHERE id = ?").get(id)).toEqual({ url: "", deleted: 1 });
    expect(storeBytes(c)).not.toContain("token-abc123");
    await c.stop();
  });

  test("a webhook's log keeps its newest 100 deliveries, as the API shows: older finished ones are deleted as the next is recorded (found in review: never pruned)", async () => {
    const receiver = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(null, { status: 204 }) });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    const id = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}a` } })).body.id as string;
    const insert = c.kernel.store.db.query(`INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, attempts, next_attempt_at, created_at, delivered_at) VALUES (?, '{"environment":"development","name":"OLD"}', ?, 1, 0, 0, 0)`);
    for (let i = 0; i < 150; i++) insert.run(id, i % 3 === 0 ? "failed" : "delivered");
    await c.send("PUT", path("NEWEST"), owner, { json: { value: "v" } });
    const { webhooks } = servicesOf(c.kernel as never);
    expect(await webhooks.deliverDue()).toBe(1);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_webhook_deliveries WHERE webhook_id = ?").get(id)).toEqual({ n: 100 });
    const log = (await c.send("GET", `${base}/webhooks/${id}/deliveries`, owner)).body.items;
    expect([log.length, log[0].event.name, log[0].state]).toEqual([100, "NEWEST", "delivered"]);
    await c.stop();
  });

  test("a webhook deleted while its deliveries are in flight ends them; they never hold up another webhook's (found in review)", async () => {
    const inFlight: Array<() => void> = [];
    const received: string[] = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const body = await req.text();
        if (new URL(req.url).pathname === "/hooks/slow") {
          await new Promise<void>((answer) => inFlight.push(answer));
          return new Response(null, { status: 500 });
        }
        received.push(JSON.parse(body).name);
        return new Response(null, { status: 204 });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, base, path } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    const slow = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}slow` } })).body.id as string;
    for (let i = 0; i < 20; i++) await c.send("PUT", path(`S${i}`), owner, { json: { value: "v" } });
    const { webhooks } = servicesOf(c.kernel as never);
    const sending = webhooks.deliverDue();
    while (inFlight.length < 1) await Bun.sleep(5);
    expect((await c.send("DELETE", `${base}/webhooks/${slow}`, owner)).status).toBe(200);
    inFlight[0]!(); // the attempt finishes (a 500) after the deletion
    expect(await sending).toBe(1);
    const slowDeliveries = () => c.kernel.store.db.query("SELECT state, last_error, count(*) AS n FROM secrets_webhook_deliveries WHERE webhook_id = ? GROUP BY state, last_error").all(slow);
    expect(slowDeliveries()).toEqual([]);
    // A healthy webhook added later gets its deliveries, even once the old ones' back-off is over.
    c.clock.advance(60_000);
    await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}good` } });
    await c.send("PUT", path("AFTER"), owner, { json: { value: "v" } });
    expect(await webhooks.deliverDue()).toBe(1);
    expect(received).toEqual(["AFTER"]);
    // Deliveries of a deleted webhook left pending (as older versions left them) are not picked either.
    c.kernel.store.db.run("INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, next_attempt_at, created_at) VALUES (?, '{}', 'pending', 0, 0)", [slow]);
    await c.send("PUT", path("LATER"), owner, { json: { value: "v" } });
    expect(await webhooks.deliverDue()).toBe(1);
    expect(received).toEqual(["AFTER", "LATER"]);
  });
});
