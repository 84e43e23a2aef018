/**
 * The first write to a fresh workspace makes its secrets-side row (and default environments)
 * while the workspace is being deleted: the guard found the workspace before the handler ran,
 * the deletion committed before that row's write. The row was made after the deletion had
 * removed what secrets held, and the secret written on it kept a live data key: a deleted
 * workspace's value, readable (found in review). The row's write asks again, in its transaction.
 */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { newWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { subjectServiceOf } from "../../../plugins/subject/index.ts";
import { operatorCaller } from "../../helpers/caller.ts";
import { confirmationToken, stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";
import { encryptedForThree } from "../../helpers/e2ee.ts";
import { refusal } from "../../helpers/races.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

const GONE = "The workspace was deleted meanwhile.";

async function freshWorkspace() {
  const c = await newCitadel({ config: { secrets: { webhook_allowed_urls: ["https://hooks.example.com/"] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const deletion = async () => {
    const path = `/v1/iam/workspaces/${ws}`;
    const confirm = await confirmationToken(c, "DELETE", path, owner);
    return () => c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": confirm } });
  };
  return { c, owner, org, ws, caller: operatorCaller(me), deletion };
}

/** Nothing of the workspace is left on the secrets side: no row, no environment, no secret, no usable data key. */
function nothingLeft(c: App, ws: string) {
  const db = c.kernel.store.db;
  expect(db.query("SELECT count(*) AS n FROM secrets_workspaces WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
  expect(db.query("SELECT count(*) AS n FROM secrets_environments WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
  expect(db.query("SELECT count(*) AS n FROM secrets").get()).toEqual({ n: 0 });
  expect(db.query("SELECT count(*) AS n FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(`workspace:${ws}`)).toEqual({ n: 0 });
  expect(db.query("SELECT count(*) AS n FROM secrets_webhooks WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
}

describe("the first write to a fresh workspace while it is being deleted", () => {
  test("over HTTP, a secret sent together with the deletion: the deletion 200, the secret 409; nothing left, no live data key", async () => {
    const { c, owner, ws, deletion } = await freshWorkspace();
    const deleteWorkspace = await deletion();

    const [deleted, written] = await Promise.all([deleteWorkspace(), c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/DB_PASSWORD`, owner, { json: { value: "hunter2" } })]);

    expect(deleted.status).toBe(200);
    expect([written.status, written.body.detail]).toEqual([409, GONE]);
    nothingLeft(c, ws);
  });

  test("over HTTP, a webhook, an environment or end-to-end encryption sent together with the deletion: each 409, nothing left", async () => {
    const { c, owner, ws, deletion } = await freshWorkspace();
    const deleteWorkspace = await deletion();
    const base = `/v1/secrets/workspaces/${ws}`;

    const [deleted, ...changes] = await Promise.all([
      deleteWorkspace(),
      c.send("POST", `${base}/webhooks`, owner, { json: { url: "https://hooks.example.com/citadel" } }),
      c.send("POST", `${base}/environments`, owner, { json: { name: "qa" } }),
      c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } }),
    ]);

    expect(deleted.status).toBe(200);
    expect(changes.map((r) => [r.status, r.body.detail])).toEqual(changes.map(() => [409, GONE]));
    nothingLeft(c, ws);
  });

  test("the secret's writes queued after the deletion's: refused (409), nothing made", async () => {
    const { c, ws, caller } = await freshWorkspace();
    const deleted = iamServiceOf(c.kernel.store)!.deleteWorkspace(caller, ws);
    const written = servicesOf(c.kernel as never).secrets.set(caller, ws, "production", "DB_PASSWORD", { value: "hunter2" });

    await deleted;
    expect(await refusal(written)).toEqual({ code: "conflict", message: GONE });
    nothingLeft(c, ws);
  });

  test("the workspace's row made before the deletion, the secret's write after it: refused, nothing left", async () => {
    const { c, ws, caller } = await freshWorkspace();
    const written = servicesOf(c.kernel as never).secrets.set(caller, ws, "production", "DB_PASSWORD", { value: "hunter2" });
    const deleted = iamServiceOf(c.kernel.store)!.deleteWorkspace(caller, ws);

    await deleted;
    // Its environment, looked up between the two writes, went with the workspace.
    expect(await refusal(written)).toEqual({ code: "not_found", message: "No environment named production in this workspace." });
    nothingLeft(c, ws);
  });
});

describe("a webhook made while its organization's erasure is asked for (its workspaces' data kept until the erasure)", () => {
  test("its write queued after the request's: refused (409), no webhook", async () => {
    const { c, owner, caller } = await freshWorkspace();
    // The operator owns "default": a second organization, to erase.
    const org = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "acme" } })).body.id as string;
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/DB_PASSWORD`, owner, { json: { value: "hunter2" } })).status).toBe(200);
    const requested = subjectServiceOf(c.kernel as never).requestErasure(caller, { kind: "organization", id: org });
    const made = servicesOf(c.kernel as never).webhooks.create(caller, ws, "https://hooks.example.com/citadel");

    await requested;
    expect(await refusal(made)).toEqual({ code: "conflict", message: GONE });
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_webhooks WHERE workspace_id = ?").get(ws)).toEqual({ n: 0 });
  });
});

/**
 * A workspace used before (its secrets-side row there, so ensureWorkspace makes nothing and asks
 * nothing): each write queued after the deletion's met a foreign key or a missing row (500s), or
 * recorded a change to what the deletion had erased already (found in review). Each is refused
 * as the first write is, and leaves nothing of it on record after the deletion.
 */
describe("the writes to a workspace used before, queued after its deletion", () => {
  type Writes = ReturnType<typeof servicesOf>;
  type Caller = Awaited<ReturnType<typeof freshWorkspace>>["caller"];
  const plain: Array<[string, (s: Writes, caller: Caller, ws: string) => Promise<unknown>]> = [
    ["an environment made", (s, caller, ws) => s.secrets.createEnvironment(caller, ws, { name: "qa2" })],
    ["an environment's protection", (s, caller, ws) => s.secrets.protectEnvironment(caller, ws, "qa", { protection: "admins" })],
    ["an environment removed", (s, caller, ws) => s.secrets.deleteEnvironment(caller, ws, "qa")],
    ["end-to-end encryption turned on", (s, caller, ws) => s.secrets.setE2ee(caller, ws, true)],
    ["a secret set", (s, caller, ws) => s.secrets.set(caller, ws, "production", "DB_PASSWORD", { value: "v2" })],
    ["a secret's metadata", (s, caller, ws) => s.secrets.updateMetadata(caller, ws, "production", "DB_PASSWORD", { note: "n" })],
    ["a secret set if still at version 1", (s, caller, ws) => s.secrets.set(caller, ws, "production", "DB_PASSWORD", { value: "v2" }, { version: 1, weak: false })],
    ["a secret imported", (s, caller, ws) => s.secrets.import(caller, ws, "production", { entries: [{ name: "NEW_ONE", value: "v1" }] })],
    ["a secret rolled back", (s, caller, ws) => s.secrets.rollback(caller, ws, "production", "DB_PASSWORD", 1)],
    ["a secret rotated", (s, caller, ws) => s.secrets.rotate(caller, ws, "production", "DB_PASSWORD", "hex")],
    ["a secret deleted", (s, caller, ws) => s.secrets.delete(caller, ws, "production", "DB_PASSWORD")],
    ["a secret restored", (s, caller, ws) => s.secrets.restore(caller, ws, "production", "OLD")],
    ["a secret purged", (s, caller, ws) => s.secrets.purge(caller, ws, "production", "DB_PASSWORD")],
    ["the data key rotated", (s, caller, ws) => s.secrets.rotateDataKey(caller, ws)],
  ];
  for (const [what, write] of plain) {
    test(`${what}: 409, nothing recorded after the deletion`, async () => {
      const { c, owner, ws, caller } = await freshWorkspace();
      const base = `/v1/secrets/workspaces/${ws}`;
      expect((await c.send("POST", `${base}/environments`, owner, { json: { name: "qa" } })).status).toBe(200);
      for (const name of ["DB_PASSWORD", "OLD"]) expect((await c.send("PUT", `${base}/environments/production/secrets/${name}`, owner, { json: { value: "v1" } })).status).toBe(200);
      expect((await c.send("DELETE", `${base}/environments/production/secrets/OLD`, owner)).status).toBe(200);

      const deleted = iamServiceOf(c.kernel.store)!.deleteWorkspace(caller, ws);
      const written = write(servicesOf(c.kernel as never), caller, ws);

      await deleted;
      expect(await refusal(written)).toEqual({ code: "conflict", message: GONE });
      expect(secretsEventsAfterDeletion(c, ws)).toEqual([]);
      nothingLeft(c, ws);
    });
  }

  const encrypted: Array<[string, (s: Writes, caller: Caller, ws: string, users: { me: string; bob: string; carol: string }, wrappedFor: (key: Uint8Array, ...ids: string[]) => Array<{ user: string; wrapped: string }>) => Promise<unknown>]> = [
    ["its key given to a member", (s, caller, ws, { carol }) => s.keys.grant(caller, ws, carol, { wrapped: `c1.wk.${"A".repeat(40)}` })],
    ["a member's key removed", (s, caller, ws, { bob }) => s.keys.revoke(caller, ws, bob)],
    ["its key replaced", (s, caller, ws, { me, bob }, wrappedFor) => s.secrets.rotateE2eeKey(caller, ws, { values: [], wrapped: wrappedFor(newWorkspaceKey(), me, bob) }, s.keys)],
  ];
  for (const [what, write] of encrypted) {
    test(`end-to-end encrypted, ${what}: 409, nothing recorded after the deletion`, async () => {
      const { c, owner, ws, caller } = await freshWorkspace();
      const { base, me, bob, carol, wrappedFor } = await encryptedForThree(c, owner, ws);
      expect((await c.send("DELETE", `${base}/e2ee/keys/${carol.id}`, owner)).status).toBe(200);

      const deleted = iamServiceOf(c.kernel.store)!.deleteWorkspace(caller, ws);
      const written = write(servicesOf(c.kernel as never), caller, ws, { me, bob: bob.id, carol: carol.id }, wrappedFor);

      await deleted;
      expect(await refusal(written)).toEqual({ code: "conflict", message: GONE });
      expect(secretsEventsAfterDeletion(c, ws)).toEqual([]);
    });
  }
});

describe("an environment's protection or removal queued after its removal", () => {
  test("changed after it was removed: 409, one event (the removal's)", async () => {
    const { c, owner, ws, caller } = await freshWorkspace();
    expect((await c.send("POST", `/v1/secrets/workspaces/${ws}/environments`, owner, { json: { name: "qa" } })).status).toBe(200);
    const s = servicesOf(c.kernel as never).secrets;

    const removed = s.deleteEnvironment(caller, ws, "qa");
    const changed = s.protectEnvironment(caller, ws, "qa", { protection: "admins" });
    const again = s.deleteEnvironment(caller, ws, "qa");

    await removed;
    expect(await refusal(changed)).toEqual({ code: "conflict", message: "The qa environment was deleted meanwhile." });
    expect(await refusal(again)).toEqual({ code: "conflict", message: "The qa environment was deleted meanwhile." });
    const events = c.kernel.store.db.query("SELECT action FROM audit_events WHERE workspace = ? AND action LIKE 'secrets.environment.%' ORDER BY seq").all(ws);
    expect(events).toEqual([{ action: "secrets.environment.create" }, { action: "secrets.environment.delete" }]);
  });
});

/** The secrets service's events recorded after the workspace's deletion. */
function secretsEventsAfterDeletion(c: App, ws: string) {
  return c.kernel.store.db
    .query("SELECT action, reason FROM audit_events WHERE workspace = ? AND action LIKE 'secrets.%' AND seq > (SELECT seq FROM audit_events WHERE action = 'iam.workspace.delete' AND workspace = ?)")
    .all(ws, ws);
}
