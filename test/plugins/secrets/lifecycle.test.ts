/**
 * What becomes of share links and webhook deliveries when their workspace or organization goes:
 * deleted in iam, or its erasure asked for (found in review).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { createShareSecret, shareViewProof } from "../../../plugins/secrets/share-crypto.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

async function setup(config: Record<string, Record<string, unknown>> = {}) {
  const c = await testCitadel({ config });
  const owner = await c.login(c.owner.email, c.owner.password);
  // The operator owns "default": a second organization, to delete or erase.
  const org = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "acme" } })).body.id as string;
  const workspace = async (name: string) => (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name } })).body.id as string;
  return { c, owner, org, workspace };
}

/** A route that asks for confirmation: the 428's token, sent back. */
async function confirmed(c: App, method: string, path: string, token: string) {
  const ask = await c.send(method, path, token);
  expect(ask.status).toBe(428);
  return c.send(method, path, token, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
}

/** A link of the organization, carrying `source`'s secret or (without) a one-off value. */
async function share(c: App, owner: string, org: string, source?: { workspace: string; environment: string; name: string }) {
  const sealed = await createShareSecret("the value");
  const proof = shareViewProof(sealed.linkKey);
  const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: proof, passphrase: false, max_views: 5, ...(source ? { source } : {}) } });
  expect(made.status).toBe(200);
  return { id: made.body.id as string, open: () => c.send("POST", `/v1/secrets/shares/${made.body.id}/view`, undefined, { json: { proof } }) };
}

const shareRow = (c: App, id: string) => c.kernel.store.db.query("SELECT length(ciphertext) AS ciphertext, revoked_at IS NOT NULL AS revoked FROM secrets_shares WHERE id = ?").get(id);
const deletionReason = (c: App, action: string) => (c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = ?").get(action) as { reason: string }).reason;

describe("a deleted workspace's share links", () => {
  test("those carrying one of its secrets are revoked with it, their ciphertext dropped; the others open on (found in review: they opened after the deletion)", async () => {
    const { c, owner, org, workspace } = await setup();
    const [gone, kept] = [await workspace("gone"), await workspace("kept")];
    for (const ws of [gone, kept]) await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/development/secrets/DB`, owner, { json: { value: `db of ${ws}` } });
    const fromGone = await share(c, owner, org, { workspace: gone, environment: "development", name: "DB" });
    const fromKept = await share(c, owner, org, { workspace: kept, environment: "development", name: "DB" });
    const oneOff = await share(c, owner, org);

    expect((await confirmed(c, "DELETE", `/v1/iam/workspaces/${gone}`, owner)).status).toBe(200);
    expect((await fromGone.open()).status).toBe(410);
    expect(shareRow(c, fromGone.id)).toEqual({ ciphertext: 0, revoked: 1 });
    const listed = (await c.send("GET", `/v1/secrets/orgs/${org}/shares`, owner)).body.items as Array<{ id: string; state: string }>;
    expect(Object.fromEntries(listed.map((s) => [s.id, s.state]))).toEqual({ [fromGone.id]: "revoked", [fromKept.id]: "active", [oneOff.id]: "active" });
    expect((await fromKept.open()).status).toBe(200);
    expect((await oneOff.open()).status).toBe(200);
    expect(deletionReason(c, "iam.workspace.delete")).toContain("secrets: data erased, 1 key(s) destroyed (values, webhook secrets), 1 share link(s) revoked");
  });

  test("each link revoked has its secrets.share.revoke event, in the deletion's transaction, as every other revocation (found in review: only a count in the deletion's)", async () => {
    const { c, owner, org, workspace } = await setup();
    const [gone, kept] = [await workspace("gone"), await workspace("kept")];
    for (const ws of [gone, kept]) await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/development/secrets/DB`, owner, { json: { value: `db of ${ws}` } });
    const [first, second] = [await share(c, owner, org, { workspace: gone, environment: "development", name: "DB" }), await share(c, owner, org, { workspace: gone, environment: "development", name: "DB" })];
    const revokedBefore = await share(c, owner, org, { workspace: gone, environment: "development", name: "DB" });
    expect((await c.send("DELETE", `/v1/secrets/orgs/${org}/shares/${revokedBefore.id}`, owner)).status).toBe(200);
    await share(c, owner, org, { workspace: kept, environment: "development", name: "DB" });
    await share(c, owner, org);

    expect((await confirmed(c, "DELETE", `/v1/iam/workspaces/${gone}`, owner)).status).toBe(200);
    const events = c.kernel.store.db
      .query("SELECT resource_id, actor_kind, reason, workspace FROM audit_events WHERE action = 'secrets.share.revoke' ORDER BY seq")
      .all();
    const withWorkspace = (id: string) => ({ resource_id: id, actor_kind: "system", reason: "its workspace was deleted", workspace: gone });
    const byId = (a: { resource_id: string }, b: { resource_id: string }) => a.resource_id.localeCompare(b.resource_id);
    expect(events[0]).toEqual({ resource_id: revokedBefore.id, actor_kind: "user", reason: null, workspace: null });
    expect((events.slice(1) as Array<{ resource_id: string }>).sort(byId)).toEqual([withWorkspace(first.id), withWorkspace(second.id)].sort(byId)); // in no particular order
    // Recorded with the deletion: just before its own event.
    const last = c.kernel.store.db.query("SELECT action FROM audit_events ORDER BY seq DESC LIMIT 3").all();
    expect(last.reverse()).toEqual([{ action: "secrets.share.revoke" }, { action: "secrets.share.revoke" }, { action: "iam.workspace.delete" }]);
  });
});

/** Links asked for alongside a confirmed deletion, all sent at once: the deletion's confirmation asked for first. */
async function sharesDuringDeletion(c: App, owner: string, org: string, path: string, source?: { workspace: string; environment: string; name: string }) {
  const ask = await c.send("DELETE", path, owner);
  expect(ask.status).toBe(428);
  const link = async () => {
    const sealed = await createShareSecret("the value");
    return c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: false, ...(source ? { source } : {}) } });
  };
  const [deleted, ...links] = await Promise.all([c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } }), ...Array.from({ length: 10 }, link)]);
  expect(deleted.status).toBe(200);
  return links;
}

describe("a link asked for while its workspace or organization is deleted (found in review: made after the deletion committed, it outlived it)", () => {
  // Checked before the deletion committed, written after it: each is refused where it is written.
  test("of a workspace: refused as a link of a workspace that is gone; no link left", async () => {
    const { c, owner, org, workspace } = await setup();
    const ws = await workspace("app");
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/development/secrets/DB`, owner, { json: { value: "v" } });
    const links = await sharesDuringDeletion(c, owner, org, `/v1/iam/workspaces/${ws}`, { workspace: ws, environment: "development", name: "DB" });
    const gone = { status: 422, errors: [{ field: "source.workspace", message: "no such workspace in this organization" }] };
    expect(links.map((l) => ({ status: l.status, errors: l.body.errors }))).toEqual(Array(10).fill(gone));
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_shares").get()).toEqual({ n: 0 });
  });

  test("of an organization: refused as the guard refuses a deleted organization; no link row and no share-link key left", async () => {
    const { c, owner, org } = await setup();
    const links = await sharesDuringDeletion(c, owner, org, `/v1/iam/orgs/${org}`);
    const afterwards = await c.send("GET", `/v1/secrets/orgs/${org}/shares`, owner);
    expect(links.map((l) => [l.status, l.body.detail])).toEqual(Array(10).fill([afterwards.status, afterwards.body.detail]));
    expect(afterwards.body.detail).toBe("No such organization.");
    const db = c.kernel.store.db;
    expect(db.query("SELECT count(*) AS n FROM secrets_shares WHERE organization_id = ?").get(org)).toEqual({ n: 0 });
    expect(db.query("SELECT count(*) AS n FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(`shares:${org}`)).toEqual({ n: 0 });
  });
});

describe("a purged or deleted secret's share links (found in review: a purged secret's link stayed active and handed out its value)", () => {
  const secretPath = (ws: string, env: string, name: string) => `/v1/secrets/workspaces/${ws}/environments/${env}/secrets/${name}`;

  const byResource = (a: { resource_id: string }, b: { resource_id: string }) => (a.resource_id < b.resource_id ? -1 : 1);

  /** DB, its namesake in production and DB_2 (whose source "DB" is a prefix of), each with a link. */
  async function linked() {
    const { c, owner, org, workspace } = await setup();
    const ws = await workspace("app");
    for (const [env, name] of [["development", "DB"], ["production", "DB"], ["development", "DB_2"]] as const) await c.send("PUT", secretPath(ws, env, name), owner, { json: { value: `${env} ${name}` } });
    const links = {
      db: await share(c, owner, org, { workspace: ws, environment: "development", name: "DB" }),
      db2: await share(c, owner, org, { workspace: ws, environment: "development", name: "DB" }),
      production: await share(c, owner, org, { workspace: ws, environment: "production", name: "DB" }),
      prefixed: await share(c, owner, org, { workspace: ws, environment: "development", name: "DB_2" }),
      oneOff: await share(c, owner, org),
    };
    const states = async () => {
      const listed = (await c.send("GET", `/v1/secrets/orgs/${org}/shares`, owner)).body.items as Array<{ id: string; state: string }>;
      const byId = new Map(listed.map((s) => [s.id, s.state]));
      return Object.fromEntries(Object.entries(links).map(([k, l]) => [k, byId.get(l.id)]));
    };
    // In no particular order (links made in the same millisecond go by id): compared by id, as SQLite orders them.
    const revokeEvents = () => c.kernel.store.db.query("SELECT resource_id, actor_kind, reason, organization, workspace FROM audit_events WHERE action = 'secrets.share.revoke' ORDER BY resource_id").all();
    return { c, owner, org, ws, links, states, revokeEvents };
  }

  test("a purge revokes the links carrying exactly that secret, in its transaction: ciphertext dropped, 410, one event each, counted in the purge's", async () => {
    const { c, owner, org, ws, links, states, revokeEvents } = await linked();
    expect((await confirmed(c, "POST", `${secretPath(ws, "development", "DB")}/purge`, owner)).status).toBe(200);

    expect(await states()).toEqual({ db: "revoked", db2: "revoked", production: "active", prefixed: "active", oneOff: "active" });
    expect((await links.db.open()).status).toBe(410);
    expect(shareRow(c, links.db.id)).toEqual({ ciphertext: 0, revoked: 1 });
    for (const open of [links.production, links.prefixed, links.oneOff]) expect((await open.open()).status).toBe(200);
    const revoked = (id: string) => ({ resource_id: id, actor_kind: "user", reason: "the secret it carries was purged", organization: org, workspace: ws });
    expect(revokeEvents()).toEqual([revoked(links.db.id), revoked(links.db2.id)].sort(byResource));
    expect(deletionReason(c, "secrets.secret.purge")).toBe("development/DB, 1 versions, 2 share link(s) revoked");
    const last = c.kernel.store.db.query("SELECT action FROM audit_events WHERE action LIKE 'secrets.%' AND action != 'secrets.share.view' ORDER BY seq DESC LIMIT 3").all();
    expect(last.reverse()).toEqual([{ action: "secrets.share.revoke" }, { action: "secrets.share.revoke" }, { action: "secrets.secret.purge" }]); // in the purge's transaction, just before its event
  });

  test("a soft delete revokes them too, and a restore does not bring them back", async () => {
    const { c, owner, org, ws, links, states, revokeEvents } = await linked();
    expect((await c.send("DELETE", secretPath(ws, "development", "DB"), owner)).status).toBe(200);

    expect(await states()).toEqual({ db: "revoked", db2: "revoked", production: "active", prefixed: "active", oneOff: "active" });
    expect(shareRow(c, links.db.id)).toEqual({ ciphertext: 0, revoked: 1 });
    const revoked = (id: string) => ({ resource_id: id, actor_kind: "user", reason: "the secret it carries was deleted", organization: org, workspace: ws });
    expect(revokeEvents()).toEqual([revoked(links.db.id), revoked(links.db2.id)].sort(byResource));
    expect(deletionReason(c, "secrets.secret.delete")).toBe("development/DB, 2 share link(s) revoked");

    expect((await c.send("POST", `${secretPath(ws, "development", "DB")}/restore`, owner)).status).toBe(200);
    expect((await links.db.open()).status).toBe(410);
    expect((await states()).db).toBe("revoked");
    // A purge after the delete finds nothing more to revoke.
    expect((await c.send("DELETE", secretPath(ws, "development", "DB"), owner)).status).toBe(200);
    expect((await confirmed(c, "POST", `${secretPath(ws, "development", "DB")}/purge`, owner)).status).toBe(200);
    expect(deletionReason(c, "secrets.secret.purge")).toBe("development/DB, 1 versions");
    expect(revokeEvents()).toHaveLength(2);
  });

  test("a link whose secret is purged between its checks and its write is refused where it is written: none outlives the purge", async () => {
    const { c, owner, org, ws } = await linked();
    const path = `${secretPath(ws, "development", "DB")}/purge`;
    const ask = await c.send("POST", path, owner);
    expect(ask.status).toBe(428);
    // The link's write waits for the purge to commit: the secret was there when the link was checked.
    const { store } = c.kernel;
    const write = store.write;
    store.write = (async (fn: Parameters<typeof write>[0]) => {
      store.write = write;
      expect((await c.send("POST", path, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
      return write.call(store, fn);
    }) as typeof store.write;
    const sealed = await createShareSecret("the value");
    const made = await c
      .send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: false, source: { workspace: ws, environment: "development", name: "DB" } } })
      .finally(() => (store.write = write));
    expect([made.status, made.body.errors]).toEqual([422, [{ field: "source.name", message: "no such secret in that environment" }]]);
    const open = c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_shares WHERE source = ? AND revoked_at IS NULL").get(`${ws}/development/DB`);
    expect(open).toEqual({ n: 0 });
  });
});

describe("a deleted organization's share links", () => {
  test("are deleted, and its share-link key destroyed, in the deletion's transaction (found in review: their rows and key stayed for good)", async () => {
    const { c, owner, org } = await setup();
    const link = await share(c, owner, org);
    await share(c, owner, org);
    const db = c.kernel.store.db;
    const shareKeys = () => db.query("SELECT count(*) AS n FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(`shares:${org}`);
    expect(shareKeys()).toEqual({ n: 1 });

    expect((await confirmed(c, "DELETE", `/v1/iam/orgs/${org}`, owner)).status).toBe(200);
    expect((await link.open()).status).toBe(404);
    expect(db.query("SELECT count(*) AS n FROM secrets_shares WHERE organization_id = ?").get(org)).toEqual({ n: 0 });
    expect(shareKeys()).toEqual({ n: 0 });
    expect(deletionReason(c, "iam.organization.delete")).toEndWith("secrets: 2 share link(s) deleted, 1 key(s) destroyed");
    // Another organization's links are not touched.
    const other = await share(c, owner, c.owner.organization);
    expect((await other.open()).status).toBe(200);
  });
});

describe("webhook deliveries of an organization whose erasure is asked for", () => {
  test("are not sent during the grace period: given up, recorded as such and logged (found in review)", async () => {
    const received: string[] = [];
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        received.push(JSON.parse(await req.text()).name);
        return new Response(null, { status: received.length === 1 ? 503 : 204 });
      },
    });
    afterAll(() => receiver.stop(true));
    const allowed = `http://127.0.0.1:${receiver.port}/hooks/`;
    const { c, owner, org, workspace } = await setup({ secrets: { webhook_allowed_urls: [allowed] } });
    const ws = await workspace("app");
    const base = `/v1/secrets/workspaces/${ws}`;
    const hook = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${allowed}a` } })).body.id as string;
    for (const name of ["FIRST", "SECOND"]) await c.send("PUT", `${base}/environments/development/secrets/${name}`, owner, { json: { value: "v" } });
    const { webhooks } = servicesOf(c.kernel as never);
    expect(await webhooks.deliverDue()).toBe(1); // FIRST: 503, retried in 5 s

    expect((await confirmed(c, "POST", `/v1/subject/organization/${org}/erasure`, owner)).status).toBe(200);
    c.clock.advance(5_000);
    while ((await webhooks.deliverDue()) > 0);
    expect(received).toEqual(["FIRST"]);
    const deliveries = c.kernel.store.db.query("SELECT state, attempts, last_error FROM secrets_webhook_deliveries WHERE webhook_id = ? ORDER BY id").all(hook);
    const dropped = "not sent: its workspace is deleted, or its organization's erasure was asked for";
    expect(deliveries).toEqual([
      { state: "failed", attempts: 1, last_error: dropped },
      { state: "failed", attempts: 0, last_error: dropped },
    ]);
    expect(c.log.lines.filter((l) => l.msg === "webhook deliveries dropped: their workspace or organization is gone").map((l) => [l.level, l.webhook, l.deliveries])).toEqual([["warn", hook, 2]]);
    await c.stop();
  });
});
