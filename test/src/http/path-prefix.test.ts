/**
 * Behind a reverse proxy that serves Citadel under a path (https://host/citadel/...): the pages
 * a browser opens must reach Citadel through that path, and the device login's verification
 * address must carry it (http.public_url). An absolute "/v1/..." or "/oauth/..." leaves it.
 */
import { expect, test } from "bun:test";
import { SHARE_PAGE_JS } from "../../../plugins/secrets/share-page.ts";
import { DOCS_HTML, DOCS_JS } from "../../../src/http/docs-page.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const PREFIXED = "https://proxy.example.eu/citadel";
const form = (fields: Record<string, string>) => ({ body: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });

/** The address a browser at `page` goes to for each `attribute="..."` of `html`. */
const resolved = (html: string, attribute: string, page: string) => [...html.matchAll(new RegExp(`${attribute}="([^"]*)"`, "g"))].map((m) => new URL(m[1]!, page).href);

test("the device login's verification address is made from http.public_url when it is set, else from the request", async () => {
  const proxied = await testCitadel({ config: { http: { public_url: `${PREFIXED}/` } } });
  const start = await proxied.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI" }));
  expect(start.body.verification_uri).toBe(`${PREFIXED}/oauth/device`);
  expect(start.body.verification_uri_complete).toBe(`${PREFIXED}/oauth/device?user_code=${start.body.user_code}`);

  const direct = await testCitadel();
  expect((await direct.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI" }))).body.verification_uri).toBe("https://citadel.test/oauth/device");
});

test("the device approval page posts to itself under the proxy's path", async () => {
  const c = await testCitadel();
  const page = await c.send("GET", "/oauth/device?user_code=BCDF-GHJK");
  expect(page.status).toBe(200);
  expect(resolved(page.text, "action", `${PREFIXED}/oauth/device?user_code=BCDF-GHJK`)).toEqual([`${PREFIXED}/oauth/device`]);
});

test("the docs page loads its style sheet, script and the OpenAPI document under the proxy's path", async () => {
  const page = `${PREFIXED}/docs`;
  expect([...resolved(DOCS_HTML, "href", page), ...resolved(DOCS_HTML, "src", page)].sort()).toEqual([`${PREFIXED}/docs/ui.css`, `${PREFIXED}/docs/ui.js`, `${PREFIXED}/openapi.json`]);
  const fetched = [...DOCS_JS.matchAll(/fetch\("([^"]*)"\)/g)].map((m) => new URL(m[1]!, page).href);
  expect(fetched).toEqual([`${PREFIXED}/openapi.json`]);
});

test("the share page loads its script and asks for the share under the proxy's path", async () => {
  const page = `${PREFIXED}/v1/secrets/shares/sh_abc`;
  const c = await testCitadel();
  const html = (await c.send("GET", "/v1/secrets/shares/sh_abc")).text;
  expect(resolved(html, "src", page)).toEqual([`${PREFIXED}/v1/secrets/share-page.js`]);

  // The script run as a browser would, with its location, fetch and elements: the first thing it asks for.
  const requested: string[] = [];
  const location = new URL(`${page}#a-link-key`);
  const fetch = async (url: string) => {
    requested.push(new URL(url, location.href).href);
    return { ok: false, status: 404, json: async () => ({ detail: "no such share" }) };
  };
  const element = () => ({ textContent: "", hidden: true, disabled: false, addEventListener() {} });
  const elements = new Map(["status", "open", "value"].map((id) => [id, element()]));
  const document = { getElementById: (id: string) => elements.get(id) };
  new Function("location", "fetch", "document", SHARE_PAGE_JS)(location, fetch, document);
  for (let i = 0; i < 50 && elements.get("status")!.textContent === ""; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(requested).toEqual([`${page}/peek`]);
  expect(elements.get("status")!.textContent).toBe("no such share");
});

test("a page asked for with a trailing slash is sent to its own address, relatively (its relative addresses would miss from there: found in review)", async () => {
  const c = await testCitadel();
  for (const [path, location] of [
    ["/docs/", "../docs"],
    ["/oauth/device/?user_code=BCDF-GHJK", "../device?user_code=BCDF-GHJK"],
    ["/v1/secrets/shares/shr_abc/", "../shr_abc"],
  ] as Array<[string, string]>) {
    const res = await c.send("GET", path);
    expect([res.status, res.headers.get("location")]).toEqual([308, location]);
    // Behind the proxy's path, the browser lands on the page itself.
    expect(new URL(location, `${PREFIXED}${path}`).href).toBe(`${PREFIXED}${path.replace(/\/(\?|$)/, "$1")}`);
  }
  expect((await c.send("GET", "/docs")).status).toBe(200);
});

test("the verification address is made from the public URL as parsed (a trailing slash, an upper-case host)", async () => {
  const c = await testCitadel({ config: { http: { public_url: "https://Proxy.Example.EU/citadel//" } } });
  const start = await c.send("POST", "/oauth/device/code", undefined, form({ client_name: "laptop CLI" }));
  expect(start.body.verification_uri).toBe(`${PREFIXED}/oauth/device`);
});
