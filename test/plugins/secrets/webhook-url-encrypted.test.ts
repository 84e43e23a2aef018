/**
 * A webhook's URL can carry a token (in its path or query): it is stored encrypted under the
 * webhook's key, as its signing secret is, and only its origin as text (found in review: stored
 * whole, it was read from a copied database without the root key). Delivery, the admins' list,
 * the duplicate check and the export with values use it whole; a URL an earlier version stored
 * whole is encrypted once the keys are there.
 */
import { afterAll, expect, test } from "bun:test";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();

const received: string[] = [];
const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const url = new URL(req.url);
    received.push(`${url.pathname}${url.search} ${JSON.parse(await req.text()).name}`);
    return new Response(null, { status: 204 });
  },
});
afterAll(() => receiver.stop(true));
const origin = `http://127.0.0.1:${receiver.port}`;
const WHOLE = `${origin}/hooks/path-TOKEN-4f1d?key=QUERY-TOKEN-9c2e`;

async function setup() {
  received.length = 0;
  // Room for the test of many webhooks encrypted in one run.
  const c = await citadel({ config: { secrets: { webhook_allowed_urls: [`${origin}/hooks/`], webhooks_per_workspace: 30 } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  const made = await c.send("POST", `${base}/webhooks`, owner, { json: { url: WHOLE } });
  expect([made.status, made.body.url]).toEqual([200, WHOLE]);
  const write = async (name: string) => expect((await c.send("PUT", `${base}/environments/development/secrets/${name}`, owner, { json: { value: "v" } })).status).toBe(200);
  const { webhooks } = servicesOf(c.kernel as never);
  const deliver = async () => {
    while ((await webhooks.deliverDue()) > 0);
  };
  const row = () => c.kernel.store.db.query<{ url: string; encrypted: number }, [string]>("SELECT url, url_encrypted IS NOT NULL AS encrypted FROM secrets_webhooks WHERE id = ?").get(made.body.id);
  /** The whole database as its pages hold it (free ones included). */
  const databaseHoldsToken = () => ["path-TOKEN-4f1d", "QUERY-TOKEN-9c2e"].some((token) => Buffer.from(c.kernel.store.db.serialize()).includes(token));
  return { c, owner, ws, base, id: made.body.id as string, write, webhooks, deliver, row, databaseHoldsToken };
}

test("stored encrypted, its origin as text; sent to, listed, compared and exported whole (found in review)", async () => {
  const { c, owner, base, write, deliver, row, databaseHoldsToken } = await setup();
  expect(row()).toEqual({ url: `${origin}/…`, encrypted: 1 });
  expect(databaseHoldsToken()).toBe(false);

  await write("API_KEY");
  await deliver();
  expect(received).toEqual(["/hooks/path-TOKEN-4f1d?key=QUERY-TOKEN-9c2e API_KEY"]);
  expect((await c.send("GET", `${base}/webhooks`, owner)).body.items.map((h: { url: string }) => h.url)).toEqual([WHOLE]);
  expect((await c.send("POST", `${base}/webhooks`, owner, { json: { url: WHOLE } })).status).toBe(409);

  const url = `/v1/subject/organization/${c.owner.organization}/export`;
  const withValues = `${url}/with-secret-values`;
  const asked = await c.send("POST", withValues, owner);
  const exported = await c.send("POST", withValues, owner, { headers: { "x-citadel-confirm": asked.body.confirmation_token } });
  expect(exported.body.data.secrets.workspaces[0].webhooks.map((h: { url: string }) => h.url)).toEqual([WHOLE]);
  expect((await c.send("POST", url, owner)).body.data.secrets.workspaces[0].webhooks.map((h: { url: string }) => h.url)).toEqual([`${origin}/…`]);
  expect(databaseHoldsToken()).toBe(false);
});

test("one an earlier version stored whole is encrypted once the keys are there, and still sent to", async () => {
  const { c, ws, id, write, webhooks, deliver, row, databaseHoldsToken } = await setup();
  c.kernel.store.db.query("UPDATE secrets_webhooks SET url = ?, url_encrypted = NULL WHERE id = ?").run(WHOLE, id);
  await write("BEFORE");
  await deliver();
  expect(received).toEqual(["/hooks/path-TOKEN-4f1d?key=QUERY-TOKEN-9c2e BEFORE"]);

  // Sealed, nothing can be encrypted; the unseal does it (as for an instance that starts sealed).
  c.kernel.seal.seal();
  expect(await webhooks.encryptStoredUrls()).toBe(0);
  expect(row()).toEqual({ url: WHOLE, encrypted: 0 });
  c.kernel.seal.unsealWithKey(c.kernel.rootKey);
  for (let i = 0; i < 100 && row()!.encrypted === 0; i++) await Bun.sleep(5);
  expect(row()).toEqual({ url: `${origin}/…`, encrypted: 1 });
  expect(databaseHoldsToken()).toBe(false);
  expect(c.log.lines.filter((l) => String(l.msg).startsWith("webhook URLs stored whole")).map((l) => l.webhooks)).toEqual([[id]]);
  expect(await webhooks.encryptStoredUrls()).toBe(0); // once
  // Audited once, naming the webhook and its workspace, never its URL (found in review: logged only).
  const events = c.kernel.store.db.query("SELECT actor_kind, outcome, reason FROM audit_events WHERE action = 'secrets.webhook.encrypt'").all();
  expect(events).toEqual([{ actor_kind: "system", outcome: "success", reason: `webhook URLs stored whole by an earlier version encrypted: 1 (${id} in ${ws})` }]);

  await write("AFTER");
  await deliver();
  expect(received.at(-1)).toBe("/hooks/path-TOKEN-4f1d?key=QUERY-TOKEN-9c2e AFTER");
});

test("many encrypted in one run: the event names the first 20 and counts the rest, the log line names them all (found in review: one event of hundreds of KB)", async () => {
  const { c, owner, ws, base, id, webhooks } = await setup();
  const ids = [id];
  for (let i = 0; i < 24; i++) ids.push((await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${origin}/hooks/n${i}` } })).body.id as string);
  c.kernel.store.db.query("UPDATE secrets_webhooks SET url = ?, url_encrypted = NULL").run(WHOLE);

  expect(await webhooks.encryptStoredUrls()).toBe(25);
  const logged = c.log.lines.filter((l) => String(l.msg).startsWith("webhook URLs stored whole")).at(-1)!.webhooks as string[];
  expect([...logged].sort()).toEqual([...ids].sort());
  const events = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'secrets.webhook.encrypt'").all();
  const named = logged.slice(0, 20).map((hook) => `${hook} in ${ws}`);
  expect(events.map((e) => e.reason)).toEqual([`webhook URLs stored whole by an earlier version encrypted: 25 (${named.join(", ")}, and 5 more)`]);
});

test("deleted, its URL goes with its key", async () => {
  const { c, owner, base, id } = await setup();
  expect((await c.send("DELETE", `${base}/webhooks/${id}`, owner)).status).toBe(200);
  expect(c.kernel.store.db.query("SELECT url, url_encrypted FROM secrets_webhooks WHERE id = ?").get(id)).toEqual({ url: "", url_encrypted: null });
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(`webhook:${id}`)).toEqual({ n: 0 });
});

test("one whose URL does not decrypt is no duplicate: other webhooks can still be made, and it is logged (found in review)", async () => {
  const { c, owner, base, id } = await setup();
  const stored = c.kernel.store.db.query<{ url_encrypted: Uint8Array }, [string]>("SELECT url_encrypted FROM secrets_webhooks WHERE id = ?").get(id)!;
  const damaged = Buffer.from(stored.url_encrypted);
  damaged[damaged.length - 1]! ^= 0x01;
  c.kernel.store.db.query("UPDATE secrets_webhooks SET url_encrypted = ? WHERE id = ?").run(damaged, id);

  const other = await c.send("POST", `${base}/webhooks`, owner, { json: { url: `${origin}/hooks/other` } });
  expect([other.status, other.body.url]).toEqual([200, `${origin}/hooks/other`]);
  expect(c.log.lines.filter((l) => String(l.msg).startsWith("webhook URL does not decrypt")).map((l) => l.webhook)).toContain(id);
});
