/**
 * Webhook changes that meet another change of the same thing (found in review): a webhook made
 * while its workspace is deleted, a webhook deleted twice at once.
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const HOOKS = "http://127.0.0.1:9/hooks/";

async function setup() {
  const c = await citadel({ config: { secrets: { webhook_allowed_urls: [HOOKS] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  // The secrets side of the workspace exists (made on first use), as it does once anything was stored.
  expect((await c.send("GET", `${base}/environments`, owner)).status).toBe(200);
  return { c, owner, ws, base };
}

test("a webhook made while its workspace is deleted answers 409, not a 500 (found in review: FOREIGN KEY constraint failed)", async () => {
  const { c, owner, ws, base } = await setup();
  const ask = await c.send("DELETE", `/v1/iam/workspaces/${ws}`, owner);
  const [made, deleted] = await Promise.all([
    c.send("POST", `${base}/webhooks`, owner, { json: { url: `${HOOKS}a` } }),
    c.send("DELETE", `/v1/iam/workspaces/${ws}`, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } }),
  ]);
  expect(deleted.status).toBe(200);
  expect([made.status, made.body.detail]).toEqual([409, "The workspace was deleted meanwhile."]);
  expect(c.log.lines.filter((l) => l.level === "error")).toEqual([]);
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_webhooks").get()).toEqual({ n: 0 });
});

test("a webhook deleted by several requests at once is deleted by one: 200 and one audit event; the others 404 (found in review: each answered 200, each audited)", async () => {
  const { c, owner, base } = await setup();
  const id = (await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${HOOKS}a` } })).body.id as string;
  const answers = await Promise.all([1, 2, 3].map(() => c.send("DELETE", `${base}/webhooks/${id}`, owner)));
  expect(answers.map((a) => a.status).sort()).toEqual([200, 404, 404]);
  expect(answers.find((a) => a.status === 404)!.body.detail).toBe("No such webhook in this workspace.");
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.webhook.delete'").get()).toEqual({ n: 1 });
});
