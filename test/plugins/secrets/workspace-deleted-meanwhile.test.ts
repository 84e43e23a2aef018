/**
 * The first write to a fresh workspace makes its secrets-side row (and default environments)
 * while the workspace is being deleted: the guard found the workspace before the handler ran,
 * the deletion committed before that row's write. The row was made after the deletion had
 * removed what secrets held, and the secret written on it kept a live data key: a deleted
 * workspace's value, readable (found in review). The row's write asks again, in its transaction.
 */
import { describe, expect, test } from "bun:test";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { subjectServiceOf } from "../../../plugins/subject/index.ts";
import type { Principal } from "../../../src/auth/principal.ts";
import { confirmationToken, stoppedAfterEach, type testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
const newCitadel = stoppedAfterEach();

const GONE = "The workspace was deleted meanwhile.";

async function freshWorkspace() {
  const c = await newCitadel({ config: { secrets: { webhook_allowed_urls: ["https://hooks.example.com/"] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const principal: Principal = { kind: "session", tokenId: "test", userId: me, organizationId: null, scopes: "all", service: null, workspaceId: null, ipAllowlist: [], operator: true, mfa: false, mustChangePassword: false };
  const deletion = async () => {
    const path = `/v1/iam/workspaces/${ws}`;
    const confirm = await confirmationToken(c, "DELETE", path, owner);
    return () => c.send("DELETE", path, owner, { headers: { "x-citadel-confirm": confirm } });
  };
  return { c, owner, org, ws, caller: { principal, request: {} }, deletion };
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

/** What a promise was refused with: the error's code and message; null when it was not. */
async function refusal(settled: Promise<unknown>) {
  const error = (await settled.then(
    () => null,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | null;
  return error && { code: error.code, message: error.message };
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
