/**
 * A webhook whose URL the operator no longer allows (secrets.webhook_allowed_urls narrowed, then
 * a restart): nothing can reach it before the next restart, so nothing waits for it (found in
 * review: each delivery went through all its attempts, with back-off, one after the other, and
 * every change queued one more).
 */
import { afterAll, expect, test } from "bun:test";
import { servicesOf } from "../../../plugins/secrets/index.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();

test("its deliveries fail at once, none is queued for it, and a warning at start names it by id and origin", async () => {
  const received: string[] = [];
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      received.push(`${new URL(req.url).pathname} ${JSON.parse(await req.text()).name}`);
      return new Response(null, { status: 204 });
    },
  });
  afterAll(() => receiver.stop(true));
  const origin = `http://127.0.0.1:${receiver.port}`;
  const c = await citadel({ config: { secrets: { webhook_allowed_urls: [`${origin}/old/`, `${origin}/kept/`] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  const hook = async (url: string) => (await c.send("POST", `${base}/webhooks`, owner, { json: { url } })).body.id as string;
  const old = await hook(`${origin}/old/token-abc123`);
  const kept = await hook(`${origin}/kept/x`);
  const write = async (name: string) => expect((await c.send("PUT", `${base}/environments/development/secrets/${name}`, owner, { json: { value: "v" } })).status).toBe(200);
  await write("BEFORE");

  // The operator narrows the list; at the restart, the webhook left out is named, its path (a token) not.
  Object.assign(c.config.secrets as object, { webhook_allowed_urls: [`${origin}/kept/`] });
  const { webhooks } = servicesOf(c.kernel as never);
  const stop = webhooks.start(3_600_000);
  const warnings = c.log.lines.filter((l) => l.level === "warn" && String(l.msg).includes("webhook_allowed_urls"));
  expect(warnings.map((l) => [l.webhook, l.origin])).toEqual([[old, origin]]);
  expect(JSON.stringify(c.log.lines)).not.toContain("token-abc123");

  // Its delivery fails at the first attempt, unsent; nothing more is queued for it.
  while ((await webhooks.deliverDue()) > 0);
  await write("AFTER");
  while ((await webhooks.deliverDue()) > 0);
  expect(received).toEqual(["/kept/x BEFORE", "/kept/x AFTER"]);
  const deliveriesOf = (id: string) => c.kernel.store.db.query("SELECT json_extract(event, '$.name') AS name, state, last_error FROM secrets_webhook_deliveries WHERE webhook_id = ? ORDER BY id").all(id);
  expect(deliveriesOf(old)).toEqual([{ name: "BEFORE", state: "failed", last_error: "not sent: the URL is no longer allowed (secrets.webhook_allowed_urls)" }]);
  expect(deliveriesOf(kept)).toEqual([
    { name: "BEFORE", state: "delivered", last_error: null },
    { name: "AFTER", state: "delivered", last_error: null },
  ]);
  await stop();
});
