/**
 * The API docs page at /docs. The UIs bundled with @elysiajs/openapi load their code from a
 * public CDN, which an offline appliance cannot reach and a strict CSP forbids; this page is
 * a few lines of our own, embedded in the binary, that render /openapi.json.
 */
import { Elysia } from "elysia";
import { access } from "./access.ts";
import { DOCS_CSS, DOCS_HTML, DOCS_JS } from "./docs-page.ts";
import { pageWithoutTrailingSlash } from "./public-url.ts";

/** Looser than the API's CSP only as far as the page needs: its own script, style and fetch. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const asset = (body: string, type: string) => () =>
  new Response(body, { headers: { "content-type": type, "content-security-policy": DOCS_CSP } });

const page = asset(DOCS_HTML, "text/html; charset=utf-8");

const hidden = { detail: { hide: true, ...access({ public: true }) } };

export function docsRoutes() {
  return new Elysia({ name: "citadel-docs" })
    .get("/docs", ({ request }) => pageWithoutTrailingSlash(request) ?? page(), hidden)
    .get("/docs/ui.js", asset(DOCS_JS, "text/javascript; charset=utf-8"), hidden)
    .get("/docs/ui.css", asset(DOCS_CSS, "text/css; charset=utf-8"), hidden);
}
