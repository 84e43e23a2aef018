/**
 * Webhooks and environment protection: a webhook is told only about the environments its maker
 * may enter, and a delivery log shows only the events of environments its reader may enter
 * (found in review: an admin left out of a `named` environment, or a service key, made a webhook
 * and read the names, versions and actors of its secrets from the receiver and the log).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const HOOKS = "http://127.0.0.1:9/hooks/";

async function setup() {
  const c = await citadel({ config: { secrets: { webhook_allowed_urls: [HOOKS] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const base = `/v1/secrets/workspaces/${ws}`;
  const write = async (env: string, name: string) => expect((await c.send("PUT", `${base}/environments/${env}/secrets/${name}`, owner, { json: { value: "v" } })).status).toBe(200);
  const hook = async (token: string, name: string) => {
    const made = await c.send("POST", `${base}/webhooks`, token, { json: { url: `${HOOKS}${name}` } });
    expect(made.status).toBe(200);
    return made.body.id as string;
  };
  /** What the webhook was told, as "environment/name": what the receiver gets, queued in the change's transaction. */
  const queued = (id: string) =>
    (c.kernel.store.db.query("SELECT event FROM secrets_webhook_deliveries WHERE webhook_id = ? ORDER BY id").all(id) as Array<{ event: string }>).map((d) => {
      const event = JSON.parse(d.event) as { environment: string; name: string };
      return `${event.environment}/${event.name}`;
    });
  const logOf = async (token: string, id: string) => {
    const log = await c.send("GET", `${base}/webhooks/${id}/deliveries`, token);
    expect(log.status).toBe(200);
    return (log.body.items as Array<{ event: { environment: string; name: string } }>).map((d) => `${d.event.environment}/${d.event.name}`).reverse();
  };
  return { c, owner, org, me, base, write, hook, queued, logOf };
}

test("an admin left out of a named environment learns nothing of it through a webhook: neither its receiver nor its delivery log", async () => {
  const { c, owner, me, base, write, hook, queued, logOf } = await setup();
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  expect((await c.send("PUT", `${base}/environments/staging`, owner, { json: { protection: "named", allowed_users: [me] } })).status).toBe(200);
  expect((await c.send("GET", `${base}/environments/staging/secrets`, admin.token)).status).toBe(403);

  const admins = await hook(admin.token, "admin");
  const owners = await hook(owner, "owner");
  await write("staging", "STRIPE_LIVE_KEY");
  await write("development", "PUBLIC");

  expect(queued(admins)).toEqual(["development/PUBLIC"]);
  expect(queued(owners)).toEqual(["staging/STRIPE_LIVE_KEY", "development/PUBLIC"]);
  // The owner's webhook was told: its log shows that event to the owner, not to the admin.
  expect(await logOf(owner, owners)).toEqual(["staging/STRIPE_LIVE_KEY", "development/PUBLIC"]);
  expect(await logOf(admin.token, owners)).toEqual(["development/PUBLIC"]);
  expect(await logOf(admin.token, admins)).toEqual(["development/PUBLIC"]);
});

test("a webhook made by a service key is judged as the key's maker: never told of a named environment, of an admins-only one while its maker is an admin or owner", async () => {
  const { c, owner, org, me, base, write, hook, queued, logOf } = await setup();
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, owner)).status).toBe(200);
  const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, owner, { json: { service: "secrets", name: "ci", scopes: ["secrets:admin", "secrets:read"] } })).body.token as string;
  expect((await c.send("PUT", `${base}/environments/staging`, owner, { json: { protection: "named", allowed_users: [me] } })).status).toBe(200);
  expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "admins" } })).status).toBe(200);
  expect((await c.send("GET", `${base}/environments/staging/secrets`, key)).status).toBe(403);

  const keys = await hook(key, "key");
  const owners = await hook(owner, "owner");
  await write("staging", "STRIPE_LIVE_KEY");
  await write("production", "DB_PASSWORD");
  await write("development", "OPEN");

  // An admins-only environment lets in a key an owner made; a named one no key.
  expect(queued(keys)).toEqual(["production/DB_PASSWORD", "development/OPEN"]);
  expect(await logOf(key, owners)).toEqual(["production/DB_PASSWORD", "development/OPEN"]);
  expect(await logOf(owner, owners)).toEqual(["staging/STRIPE_LIVE_KEY", "production/DB_PASSWORD", "development/OPEN"]);
});

test("a key's webhook hears no more once the key's maker is demoted or leaves, or the key is revoked (found in review)", async () => {
  const { c, owner, org, base, write, hook, queued } = await setup();
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, owner)).status).toBe(200);
  expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "admins" } })).status).toBe(200);
  const makeKey = async (token: string) => {
    const made = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, token, { json: { service: "secrets", name: `ci-${Math.random()}`, scopes: ["secrets:admin", "secrets:read"] } });
    expect(made.status).toBe(200);
    return made.body as { token: string; id: string };
  };
  const second = await c.addUser(owner, "second@example.org", "owner"); // only owners make secrets:admin keys
  const demoted = await hook((await makeKey(second.token)).token, "demoted");
  const third = await c.addUser(owner, "third@example.org", "owner");
  const departed = await hook((await makeKey(third.token)).token, "departed");
  const revokedKey = await makeKey(owner);
  const revoked = await hook(revokedKey.token, "revoked");
  await write("production", "BEFORE");

  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${second.id}`, owner, { json: { role: "editor" } })).status).toBe(200);
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${third.id}`, owner)).status).toBe(200);
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/api-keys/${revokedKey.id}`, owner)).status).toBe(200);
  await write("production", "AFTER");
  await write("development", "OPEN");

  expect(queued(demoted)).toEqual(["production/BEFORE", "development/OPEN"]); // an editor now: members environments only
  expect(queued(departed)).toEqual(["production/BEFORE"]);
  expect(queued(revoked)).toEqual(["production/BEFORE"]);
});

test("a webhook whose maker left the organization is told nothing more, of any environment (found in review)", async () => {
  const { c, owner, org, write, hook, queued } = await setup();
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  const admins = await hook(admin.token, "admin");
  await write("development", "BEFORE");
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/members/${admin.id}`, owner)).status).toBe(200);
  await write("development", "AFTER");
  expect(queued(admins)).toEqual(["development/BEFORE"]);
});

test("what a webhook is told follows its maker's access at the time of the change: an admin made editor is told no more of an admins-only environment", async () => {
  const { c, owner, org, base, write, hook, queued } = await setup();
  const admin = await c.addUser(owner, "admin@example.org", "admin");
  expect((await c.send("PUT", `${base}/environments/production`, owner, { json: { protection: "admins" } })).status).toBe(200);
  const admins = await hook(admin.token, "admin");
  await write("production", "BEFORE");
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/members/${admin.id}`, owner, { json: { role: "editor" } })).status).toBe(200);
  await write("production", "AFTER");
  await write("development", "OPEN");
  expect(queued(admins)).toEqual(["production/BEFORE", "development/OPEN"]);
});

test("a key's webhook whose key is gone (purged, erased with its maker) hears nothing; one made with a token exchanged from a key lives as the key does (found in review)", async () => {
  const { c, owner, org, write, hook, queued } = await setup();
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/secrets`, owner)).status).toBe(200);
  const makeKey = async () => {
    const made = await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, owner, { json: { service: "secrets", name: `ci-${Math.random()}`, scopes: ["secrets:admin", "secrets:read"] } });
    expect(made.status).toBe(200);
    return made.body as { token: string; id: string };
  };
  const gone = await makeKey();
  const goneHook = await hook(gone.token, "gone");
  const parent = await makeKey();
  const exchanged = await c.send("POST", "/oauth/token", undefined, {
    json: { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: parent.token, scope: "secrets:admin secrets:read", expires_in: 600 },
  });
  expect(exchanged.status).toBe(200);
  const workloadHook = await hook(exchanged.body.access_token, "workload");
  await write("development", "FIRST");

  // The purger (or an erasure) deletes the key's row.
  expect((await c.send("DELETE", `/v1/iam/orgs/${org}/api-keys/${gone.id}`, owner)).status).toBe(200);
  c.kernel.store.db.query("DELETE FROM credentials WHERE id = ?").run(gone.id);
  c.clock.advance(11 * 60_000); // the exchanged token has expired; its key has not
  await write("development", "LATER");

  expect(queued(goneHook)).toEqual(["development/FIRST"]);
  expect(queued(workloadHook)).toEqual(["development/FIRST", "development/LATER"]);
  // The exchanged token's row purged (90 days after its hour): the webhook was made by its key.
  c.kernel.store.db.query("DELETE FROM credentials WHERE parent_id = ?").run(parent.id);
  await write("development", "AFTER_PURGE");
  expect(queued(workloadHook)).toEqual(["development/FIRST", "development/LATER", "development/AFTER_PURGE"]);
});
