/**
 * Query parameters a route does not declare are refused, 422 naming `query.<name>`, as a body's
 * unknown fields are: Elysia dropped them without a word, so a misspelt filter or version read
 * more than the caller asked for and said nothing (found in review).
 */
import { expect, test } from "bun:test";
import { Elysia } from "elysia";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const testCitadel = stoppedAfterEach();

async function withSecret() {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, token, { json: { name: "app" } })).body.id as string;
  const secret = `/v1/secrets/workspaces/${ws}/environments/development/secrets/DB_PASSWORD`;
  await c.send("PUT", secret, token, { json: { value: "first" } });
  await c.send("PUT", secret, token, { json: { value: "second" } });
  return { c, token, secret };
}

test("a misspelt parameter is refused, naming it, not ignored: the audit export's filter, a secret's version", async () => {
  const { c, token, secret } = await withSecret();
  const exported = await c.send("GET", "/v1/audit/export?acton=sys.unseal", token);
  expect([exported.status, exported.body.code, exported.body.detail, exported.body.errors]).toEqual([422, "validation_failed", "query.acton: unknown parameter", [{ field: "query.acton", message: "unknown parameter" }]]);
  const read = await c.send("GET", `${secret}?versoin=1`, token);
  expect([read.status, read.body.detail]).toEqual([422, "query.versoin: unknown parameter"]);

  // Spelt right, they do what they say.
  expect((await c.send("GET", "/v1/audit/export?action=sys.unseal", token)).status).toBe(200);
  expect((await c.send("GET", `${secret}?version=1`, token)).body.value).toBe("first");
});

test("a route that declares no query takes no parameter; every unknown one is named, HEAD as GET", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const res = await c.send("GET", "/v1/iam/me?verbose=1&all", token);
  expect(res.body.errors).toEqual([
    { field: "query.verbose", message: "unknown parameter" },
    { field: "query.all", message: "unknown parameter" },
  ]);
  expect((await c.send("HEAD", "/v1/iam/me?verbose=1", token)).status).toBe(422);
  // A bare '?' holds no parameter.
  expect((await c.send("GET", "/v1/iam/me?", token)).status).toBe(200);
});

test("a parameter given more than once is refused, naming it: the last one was read in silence (found in review)", async () => {
  const { c, token, secret } = await withSecret();
  const twice = await c.send("GET", `${secret}?version=1&version=2`, token);
  expect([twice.status, twice.body.errors]).toEqual([422, [{ field: "query.version", message: "given more than once" }]]);
  const filters = await c.send("GET", "/v1/audit/export?outcome=failure&outcome=success", token);
  expect([filters.status, filters.body.detail]).toEqual([422, "query.outcome: given more than once"]);
  // Once each, as before; a route that takes any parameter takes repeated ones too.
  expect((await c.send("GET", `${secret}?version=1`, token)).body.value).toBe("first");
  expect((await c.send("GET", "/metrics?target=a&target=b")).status).toBe(200);
});

test("the guard answers first: a caller without a token learns nothing of a route's parameters", async () => {
  const c = await testCitadel();
  expect((await c.send("GET", "/v1/audit/export?acton=x")).status).toBe(401);
});

test("the routes that must ignore parameters they do not know still answer: OAuth, pages a link opens, /metrics, the probes", async () => {
  const c = await testCitadel();
  const decorated = "utm_source=mail&utm_campaign=x";
  for (const path of ["/docs", "/docs/ui.js", "/docs/ui.css", "/v1/secrets/shares/sh_anything", "/v1/secrets/share-page.js", "/oauth/device?user_code=ABCD-EFGH"]) {
    const res = await c.send("GET", `${path}${path.includes("?") ? "&" : "?"}${decorated}`);
    expect([path, res.status]).toEqual([path, 200]);
  }
  expect((await c.send("GET", "/metrics?module=http_2xx")).status).toBe(200); // from loopback (the test's peer)
  // A load balancer's health check with a cache buster.
  for (const probe of ["/healthz", "/readyz"]) expect([probe, (await c.send("GET", `${probe}?nocache=1732500000`)).status]).toEqual([probe, 200]);
  // RFC 6749 section 3.1: unknown parameters are ignored, in the query as in the body.
  const token = await c.send("POST", "/oauth/token?client_id=citadel-cli", undefined, { json: {} });
  expect(token.status).toBe(400);
  expect(token.body.error).toBe("invalid_request");
});

test("every query schema a route declares is an object of named parameters (what the check reads)", async () => {
  const c = await testCitadel();
  const queries = c.app.routes.flatMap((r) => {
    const query = (r.hooks as { query?: { type?: string; properties?: object } } | undefined)?.query;
    return query ? [`${r.method} ${r.path}: ${query.type}${query.properties ? "" : " without properties"}`] : [];
  });
  expect(queries.length).toBeGreaterThan(5);
  expect(queries.filter((q) => !q.endsWith(": object"))).toEqual([]);
});

test("Elysia still puts its index of the URL's '?' on the context: a URL without one costs the check nothing", async () => {
  const seen: unknown[] = [];
  const app = new Elysia().onTransform(({ request, qi }: { request: Request; qi?: number }) => void seen.push([new URL(request.url).search, qi])).get("/a", () => "a");
  const fetch = app.compile().fetch;
  await fetch(new Request("http://localhost/a"));
  await fetch(new Request("http://localhost/a?x=1"));
  expect(seen).toEqual([["", -1], ["?x=1", 18]]);
});
