import { expect, test } from "bun:test";
import { plugins } from "../../../src/main.ts";
import { testEdge, testKernel } from "../../helpers/http.ts";

/** The app as main.ts builds it: every plugin's routes. */
function fullEdge() {
  const k = testKernel();
  return testEdge({ mounts: plugins.flatMap((p) => (p.routes ? [{ name: p.name, routes: p.routes(k) }] : [])) });
}

test("/openapi.json documents every route with a summary, its responses and the problem envelope", async () => {
  const { app, send } = fullEdge();
  const res = await send("GET", "/openapi.json");
  expect(res.status).toBe(200);
  const doc = res.body;
  expect(doc.openapi).toStartWith("3.1");
  expect(doc.components.schemas.Problem.properties.request_id).toBeDefined();
  const undocumented: string[] = [];
  for (const route of app.routes) {
    if (route.path.startsWith("/docs")) continue; // the HTML docs page itself
    const path = route.path.replace(/:(\w+)/g, "{$1}");
    const op = doc.paths[path]?.[route.method.toLowerCase()];
    if (!op || !op.summary || !op.responses?.["200"]?.content || !op.responses.default) undocumented.push(`${route.method} ${route.path}`);
  }
  // /openapi.json itself has no response schema: it is the schema.
  expect(undocumented).toEqual(["GET /openapi.json"]);
  expect(doc.paths["/v1/system/info"].get.responses["200"].content["application/json"].schema.properties.version).toBeDefined();
});
