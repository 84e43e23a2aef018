/**
 * A reputation list's URL may carry the publisher's credentials (`?api_key=…`): it is stored
 * encrypted, and only what may be shown of it as text (found in review: stored whole, it was read
 * from a copied database without the root key). Imports and refreshes fetch it whole; a URL an
 * earlier version stored whole is encrypted once the keys are there.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { intelOf } from "../../../plugins/intel/index.ts";
import { encryptStoredListUrls } from "../../../plugins/intel/service.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
let c: App;
let operator: string;
const asked: string[] = [];
const publisher = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => {
    const url = new URL(req.url);
    asked.push(`${url.pathname}${url.search}`);
    return new Response("203.0.113.0/24\n");
  },
});
const SHOWN = `http://127.0.0.1:${publisher.port}/drop.txt`;
const WHOLE = `${SHOWN}?api_key=LIST-KEY-7d3a`;

beforeAll(async () => {
  c = await testCitadel({ config: { intel: { trust_loopback: false } } });
  intelOf(c.kernel as never).listFetching.allowLoopbackHttp = true; // the publisher is a loopback server over http
  operator = await c.login(c.owner.email, c.owner.password);
});
afterAll(async () => {
  await c.stop();
  publisher.stop(true);
});

const row = () => c.kernel.store.db.query<{ url: string; encrypted: number }, []>("SELECT url, url_encrypted IS NOT NULL AS encrypted FROM intel_lists WHERE name = 'drop'").get();
const encryptionEvents = () => c.kernel.store.db.query("SELECT actor_kind, outcome, reason FROM audit_events WHERE action = 'intel.list.encrypt'").all();
/** The whole database as its pages hold it (free ones included). */
const databaseHoldsKey = () => Buffer.from(c.kernel.store.db.serialize()).includes("LIST-KEY-7d3a");

/** The refresh made due, and run. */
async function refreshed(): Promise<void> {
  c.clock.advance(61 * 60_000);
  await intelOf(c.kernel as never).refreshDue();
}

test("stored encrypted, shown without its key; fetched whole at import and refresh (found in review)", async () => {
  const put = await c.send("PUT", "/v1/intel/lists/drop", operator, { json: { weight: 30, url: WHOLE, refresh_minutes: 60 } });
  expect([put.status, put.body.url]).toEqual([200, SHOWN]);
  expect(row()).toEqual({ url: SHOWN, encrypted: 1 });
  expect(databaseHoldsKey()).toBe(false);
  await refreshed();
  expect(asked).toEqual(["/drop.txt?api_key=LIST-KEY-7d3a", "/drop.txt?api_key=LIST-KEY-7d3a"]);
  expect(c.kernel.store.db.query("SELECT outcome FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'drop'").all()).toEqual([{ outcome: "success" }, { outcome: "success" }]);
  expect(databaseHoldsKey()).toBe(false);
});

test("one an earlier version stored whole is encrypted once the keys are there, and still fetched whole", async () => {
  expect(encryptionEvents()).toEqual([]); // stored encrypted from the start: nothing to convert
  c.kernel.store.db.query("UPDATE intel_lists SET url = ?, url_encrypted = NULL WHERE name = 'drop'").run(WHOLE);
  intelOf(c.kernel as never).reloadLists();
  asked.length = 0;

  // Sealed, nothing can be encrypted (nor refreshed); the unseal does it (as for an instance that starts sealed).
  c.kernel.seal.seal();
  expect(await encryptStoredListUrls(c.kernel as never)).toBe(0);
  await refreshed();
  expect(asked).toEqual([]);
  c.kernel.seal.unsealWithKey(c.kernel.rootKey);
  for (let i = 0; i < 100 && row()!.encrypted === 0; i++) await Bun.sleep(5);
  expect(row()).toEqual({ url: SHOWN, encrypted: 1 });
  expect(databaseHoldsKey()).toBe(false);
  expect(c.log.lines.filter((l) => String(l.msg).startsWith("intel: list URLs stored whole")).map((l) => l.lists)).toEqual([["drop"]]);
  expect(await encryptStoredListUrls(c.kernel as never)).toBe(0); // once
  // Audited once, naming the list, never its URL (found in review: logged only).
  expect(encryptionEvents()).toEqual([{ actor_kind: "system", outcome: "success", reason: "list URLs stored whole by an earlier version encrypted: 1 (drop)" }]);

  await intelOf(c.kernel as never).refreshDue();
  expect(asked).toEqual(["/drop.txt?api_key=LIST-KEY-7d3a"]);
  operator = await c.login(c.owner.email, c.owner.password); // the session timed out meanwhile
  expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.map((l: { url: string }) => l.url)).toEqual([SHOWN]);
});

test("many encrypted in one run: the event names the first 20 and counts the rest, the log line names them all (found in review: one event of hundreds of KB)", async () => {
  const lists = Array.from({ length: 25 }, (_, i) => `many-${String(i).padStart(2, "0")}`);
  for (const name of lists) expect((await c.send("PUT", `/v1/intel/lists/${name}`, operator, { json: { weight: 30, url: WHOLE } })).status).toBe(200);
  c.kernel.store.db.query("UPDATE intel_lists SET url = ?, url_encrypted = NULL WHERE name LIKE 'many-%'").run(WHOLE);
  const eventsBefore = encryptionEvents().length;

  c.kernel.seal.seal();
  c.kernel.seal.unsealWithKey(c.kernel.rootKey); // the unseal encrypts them, as in the test above
  const whole = () => c.kernel.store.db.query<{ n: number }, []>("SELECT count(*) AS n FROM intel_lists WHERE url_encrypted IS NULL").get()!.n;
  for (let i = 0; i < 100 && whole() > 0; i++) await Bun.sleep(5);
  expect(whole()).toBe(0);
  const logged = c.log.lines.filter((l) => String(l.msg).startsWith("intel: list URLs stored whole")).at(-1)!.lists as string[];
  expect([...logged].sort()).toEqual(lists);
  const events = encryptionEvents().slice(eventsBefore) as Array<{ reason: string }>;
  expect(events.map((e) => e.reason)).toEqual([`list URLs stored whole by an earlier version encrypted: 25 (${logged.slice(0, 20).join(", ")}, and 5 more)`]);
  for (const name of lists) expect((await c.send("DELETE", `/v1/intel/lists/${name}`, operator)).status).toBe(200);
});

test("deleted, its URL's key is destroyed", async () => {
  expect((await c.send("DELETE", "/v1/intel/lists/drop", operator)).status).toBe(200);
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM deks WHERE owner = 'intel-list:drop' AND wrapped IS NOT NULL").get()).toEqual({ n: 0 });
});
