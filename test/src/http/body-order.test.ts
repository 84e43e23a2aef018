/**
 * A body the edge refuses (wrong type, malformed JSON) is answered after routing and the guard:
 * no route is 404, a wrong method 405, a missing token 401, as for any other request.
 */
import { expect, test } from "bun:test";
import { Elysia } from "elysia";
import { access } from "../../../src/http/access.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { testEdge } from "../../helpers/http.ts";

const TEXT = { body: "hello", headers: { "content-type": "text/plain" } };
const BROKEN_JSON = { body: "{not json", headers: { "content-type": "application/json" } };

test("no route, or no such method, comes before a refused body: 404 and 405, not 415 (found in review)", async () => {
  const c = await testCitadel();
  const statuses = [];
  for (const [path, init] of [["/healthz", TEXT], ["/nonexistent", TEXT], ["/nonexistent", BROKEN_JSON]] as const) {
    const res = await c.send("POST", path, undefined, init);
    statuses.push([path, res.status, res.body.code]);
  }
  expect(statuses).toEqual([
    ["/healthz", 405, "method_not_allowed"],
    ["/nonexistent", 404, "not_found"],
    ["/nonexistent", 404, "not_found"],
  ]);
});

test("a missing token comes before a refused body: 401, not 415 or 400 (found in review)", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const path = `/v1/iam/orgs/${c.owner.organization}/workspaces`;
  expect((await c.send("POST", path, undefined, TEXT)).status).toBe(401);
  expect((await c.send("POST", path, undefined, BROKEN_JSON)).status).toBe(401);
  // With a token, the body is what is wrong.
  expect((await c.send("POST", path, token, TEXT)).body.code).toBe("unsupported_media_type");
  expect((await c.send("POST", path, token, BROKEN_JSON)).body.code).toBe("malformed_json");
  const login = await c.send("POST", "/v1/iam/login", undefined, TEXT); // a public route
  expect([login.status, login.body.code]).toEqual([415, "unsupported_media_type"]);
});

test("a route that takes no body does not run for a refused one", async () => {
  let ran = 0;
  const routes = new Elysia().post("/count", () => ({ ran: ++ran }), { detail: access({ public: true }) });
  const { send } = testEdge({ mounts: [{ name: "p", routes }] });
  expect((await send("POST", "/v1/p/count", TEXT)).body.code).toBe("unsupported_media_type");
  expect((await send("POST", "/v1/p/count", BROKEN_JSON)).body.code).toBe("malformed_json");
  expect(ran).toBe(0);
  expect((await send("POST", "/v1/p/count", { json: {} })).body).toEqual({ ran: 1 });
});

test("a refused body does not spend a destructive route's confirmation: sent again without it, the same confirmation works (found in review)", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  expect((await c.send("POST", zones, token, { json: { name: "corp.example" } })).status).toBe(200);
  const asked = await c.send("DELETE", `${zones}/corp.example`, token);
  expect(asked.status).toBe(428);
  const confirm = { "x-citadel-confirm": asked.body.confirmation_token as string };
  const refused = await c.send("DELETE", `${zones}/corp.example`, token, { body: "hello", headers: { "content-type": "text/plain", ...confirm } });
  expect(refused.body.code).toBe("unsupported_media_type");
  expect((await c.send("DELETE", `${zones}/corp.example`, token, { headers: confirm })).status).toBe(200);
});

test("a confirmation is given back only for a request refused unrun: one that ran is spent whatever its answer", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const asked = await c.send("DELETE", `${zones}/absent.example`, token);
  expect(asked.status).toBe(428);
  const confirm = { "x-citadel-confirm": asked.body.confirmation_token as string };
  expect((await c.send("DELETE", `${zones}/absent.example`, token, { headers: confirm })).status).toBe(404); // it ran: no such zone
  expect((await c.send("DELETE", `${zones}/absent.example`, token, { headers: confirm })).status).toBe(428);
});
