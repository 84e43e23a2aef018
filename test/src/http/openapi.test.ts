import { expect, test } from "bun:test";
import { accessDeclarations } from "../../../src/http/app.ts";
import { testCitadel } from "../../helpers/citadel.ts";

test("/openapi.json documents every route with a summary, its responses and the problem envelope", async () => {
  const { app, send } = await testCitadel();
  const res = await send("GET", "/openapi.json");
  expect(res.status).toBe(200);
  const doc = res.body;
  expect(doc.openapi).toStartWith("3.1");
  expect(doc.components.schemas.Problem.properties.request_id).toBeDefined();
  expect(doc.components.schemas.Problem.properties.status.type).toBe("integer");
  const undocumented: string[] = [];
  for (const route of app.routes) {
    if (route.path.startsWith("/docs") || route.path === "/oauth/device" || route.path === "/v1/secrets/share-page.js") continue; // HTML pages and their script
    const path = route.path.replace(/:(\w+)/g, "{$1}");
    const op = doc.paths[path]?.[route.method.toLowerCase()];
    if (!op || !op.summary || !op.responses?.["200"]?.content || !op.responses.default) undocumented.push(`${route.method} ${route.path}`);
  }
  // /openapi.json itself has no response schema: it is the schema.
  expect(undocumented).toEqual(["GET /openapi.json"]);
  expect(doc.paths["/v1/system/info"].get.responses["200"].content["application/json"].schema.properties.version).toBeDefined();
  expect(doc.paths["/oauth/token"].post["x-citadel-access"]).toEqual({ public: true, authLimit: true });
});

test("every route declares its access (a route without one would be closed by the guard)", async () => {
  const { app } = await testCitadel();
  const declared = accessDeclarations(app);
  const missing = app.routes.filter((r) => !declared.has(`${r.method.toUpperCase()} ${r.path}`)).map((r) => `${r.method} ${r.path}`);
  expect(missing).toEqual([]);
  const publicRoutes = [...declared].filter(([, spec]) => spec.public).map(([route]) => route).sort();
  // Public routes are few and named here: adding one is a decision a reviewer should see.
  expect(publicRoutes).toEqual([
    "GET /docs",
    "GET /docs/ui.css",
    "GET /docs/ui.js",
    "GET /healthz",
    "GET /oauth/device",
    "GET /openapi.json",
    "GET /readyz",
    "GET /v1/mesh/node/config",
    "GET /v1/secrets/share-page.js",
    "GET /v1/secrets/shares/:share",
    "GET /v1/sys/seal-status",
    "POST /oauth/device",
    "POST /oauth/device/code",
    "POST /oauth/token",
    "POST /v1/iam/login",
    "POST /v1/mesh/enroll", // a pre-auth key in the body
    "POST /v1/mesh/node/applied", // these five: the node's own token (ownCredential)
    "POST /v1/mesh/node/exit-node",
    "POST /v1/mesh/node/rotate",
    "POST /v1/mesh/node/routes",
    "POST /v1/secrets/shares/:share/peek",
    "POST /v1/secrets/shares/:share/view",
    "POST /v1/sys/unseal",
  ]);
  // So are the routes open to loopback clients without a token (and to others only with one).
  const loopbackPublic = [...declared].filter(([, spec]) => spec.loopbackPublic).map(([route]) => route).sort();
  expect(loopbackPublic).toEqual(["GET /metrics"]);
});

test("the document does not depend on which requests came first (found in review: a route compiled by a request changed its schema)", async () => {
  const first = await testCitadel();
  const documentFirst = (await first.send("GET", "/openapi.json")).text;
  const later = await testCitadel();
  const token = await later.login(later.owner.email, later.owner.password);
  for (const path of ["/healthz", "/readyz", "/v1/system/info", "/v1/iam/me"]) expect((await later.send("GET", path, token)).status).toBe(200);
  const documentLater = (await later.send("GET", "/openapi.json")).text;
  expect(documentLater).toBe(documentFirst);
});

test("request bodies are documented closed, as the edge enforces them: objects at any depth take only the fields they name", async () => {
  const { send } = await testCitadel();
  const doc = (await send("GET", "/openapi.json")).body;
  const token = doc.paths["/v1/iam/me/tokens"].post.requestBody.content["application/json"].schema;
  expect(token.additionalProperties).toBe(false);
  const acl = doc.paths["/v1/mesh/orgs/{org}/networks/{network}/acl"].put.requestBody.content["application/json"].schema;
  expect(acl.properties.policy.properties.rules.items.additionalProperties).toBe(false);
});

test("every security requirement names a declared security scheme (found in review)", async () => {
  const { send } = await testCitadel();
  const doc = (await send("GET", "/openapi.json")).body;
  const schemes = doc.components.securitySchemes ?? {};
  expect(schemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  const requirements: string[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { security?: Array<Record<string, string[]>> }>>)) {
    for (const [method, operation] of Object.entries(item)) {
      for (const requirement of operation.security ?? []) for (const name of Object.keys(requirement)) requirements.push(`${method} ${path}: ${name}`);
    }
  }
  expect(requirements.length).toBeGreaterThan(100);
  expect(requirements.filter((r) => !(r.slice(r.lastIndexOf(": ") + 2) in schemes))).toEqual([]);
  expect(doc.paths["/v1/iam/me"].get.security).toEqual([{ bearer: ["iam:self"] }]);
});
