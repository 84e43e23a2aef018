/**
 * Every route of the whole application, fed bad input: unknown and malformed path values,
 * malformed JSON, wrong types, and values that pass the schema but are hostile (empty, very
 * long, control characters, bounds). No answer may be a 500, and every refusal must be the
 * problem envelope with a stable code. The routes and their schemas come from /openapi.json,
 * so a route added later is fuzzed without anyone remembering to.
 */
import { expect, test } from "bun:test";
import { testCitadel } from "../../helpers/citadel.ts";

type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  $ref?: string;
};

/** Strings that a schema of `type: string` accepts unless it says more, each meant to hurt. */
const HOSTILE_STRINGS = ["", " ", "x".repeat(5000), "ü\u0000\u202e\u0007", "../../etc/passwd", "%", "*", "' OR 1=1 --", "0", "-1", "1e999", "::1", "0.0.0.0/0", "citadel_pat_aaaaaaaa_bbbb", "\ud800"];

/** A value of `schema`'s shape built from hostile parts; `variant` picks which. */
function hostile(schema: Schema | undefined, variant: number, doc: { components?: { schemas?: Record<string, Schema> } }, depth = 0): unknown {
  if (!schema || depth > 6) return null;
  if (schema.$ref) return hostile(doc.components?.schemas?.[schema.$ref.split("/").pop()!], variant, doc, depth + 1);
  if ("const" in schema) return schema.const;
  if (schema.enum) return schema.enum[variant % schema.enum.length];
  const options = schema.anyOf ?? schema.oneOf;
  if (options) return hostile(options[variant % options.length], variant, doc, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[variant % schema.type.length] : schema.type;
  switch (type) {
    case "object":
      return Object.fromEntries(Object.entries(schema.properties ?? {}).map(([name, property], i) => [name, hostile(property, variant + i, doc, depth + 1)]));
    case "array":
      return variant % 2 === 0 ? [] : [hostile(schema.items, variant, doc, depth + 1), hostile(schema.items, variant, doc, depth + 1)];
    case "string":
      return HOSTILE_STRINGS[variant % HOSTILE_STRINGS.length];
    case "integer":
    case "number":
      return [schema.minimum ?? 0, schema.maximum ?? 2 ** 31, -1, 0, 2 ** 53 - 1][variant % 5];
    case "boolean":
      return variant % 2 === 0;
    case "null":
      return null;
    default:
      return HOSTILE_STRINGS[variant % HOSTILE_STRINGS.length];
  }
}

test("no route answers bad input with a 500; every refusal is the problem envelope", async () => {
  const c = await testCitadel({
    config: { rate_limit: { per_address: { per_second: 1e6, burst: 1e6 }, per_organization: { per_second: 1e6, burst: 1e6 }, auth: { per_second: 1e6, burst: 1e6 } } },
  });
  let token = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, token, { json: { name: "fuzz" } })).body.id as string;
  expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/development/secrets/S`, token, { json: { value: "v" } })).status).toBe(200);
  expect((await c.send("POST", `/v1/dns/orgs/${org}/zones`, token, { json: { name: "fuzz.example" } })).status).toBe(200);
  expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, token, { json: { name: "office" } })).status).toBe(200);
  const doc = (await c.send("GET", "/openapi.json")).body;

  // Path values that name what exists (so the handler runs), and values that do not.
  const existing: Record<string, string> = { org, workspace: ws, environment: "development", name: "S", zone: "fuzz.example", network: "office", type: "A", kind: "user", service: "dns", ip: "192.0.2.1" };
  // %ZZ and %C3%28 do not decode (found in review: the route got null and answered 500).
  const strange = ["zz", "%00", "..%2F..", "x".repeat(600), "%E2%80%AE", "-1", "%ZZ", "%C3%28"];
  // Sealing would answer every later request 503, as it should; a backup of the in-memory
  // database of these tests fails as it should (test/e2e/backup.test.ts backs up real files).
  const skipped = new Set(["POST /v1/sys/seal", "POST /v1/backup/snapshots"]);

  const failures: string[] = [];
  let requests = 0;
  for (const route of c.app.routes) {
    const method = route.method.toUpperCase();
    if (skipped.has(`${method} ${route.path}`) || route.path.startsWith("/docs") || method === "GET" && route.path === "/openapi.json") continue;
    const op = doc.paths[route.path.replace(/:(\w+)/g, "{$1}")]?.[route.method.toLowerCase()];
    const bodySchema: Schema | undefined = op?.requestBody?.content?.["application/json"]?.schema;
    const query: Array<{ name: string }> = (op?.parameters ?? []).filter((p: { in: string }) => p.in === "query");
    const paths = [route.path.replace(/:(\w+)/g, (_, name: string) => existing[name] ?? "zz"), ...strange.map((s) => route.path.replace(/:(\w+)/g, s))];
    const bodies: Array<{ body?: string; json?: unknown }> = [{}, { body: "{not json" }, { json: [] }, { json: null }];
    if (bodySchema) for (let v = 0; v < HOSTILE_STRINGS.length; v++) bodies.push({ json: hostile(bodySchema, v, doc) });
    for (const [i, path] of paths.entries()) {
      for (const [j, body] of (i === 0 ? bodies : bodies.slice(0, 2)).entries()) {
        const search = query.length > 0 ? `?${query.map((q, k) => `${q.name}=${encodeURIComponent(String(HOSTILE_STRINGS[(j + k) % HOSTILE_STRINGS.length]))}`).join("&")}` : "";
        const init = body.body !== undefined ? { body: body.body, headers: { "content-type": "application/json" } } : body.json !== undefined ? { json: body.json } : {};
        const res = await c.send(method, `${path}${search}`, token, init);
        requests++;
        const where = `${method} ${path.slice(0, 120)}${search.slice(0, 80)} ${JSON.stringify(body).slice(0, 120)}`;
        if (res.status >= 500) failures.push(`${res.status} ${where}: ${res.text.slice(0, 200)}`);
        else if (res.status >= 400 && !(res.headers.get("content-type") ?? "").startsWith("application/problem+json")) failures.push(`${res.status} not a problem document: ${where}`);
        else if (res.status >= 400 && typeof res.body?.code !== "string") failures.push(`${res.status} without a code: ${where}`);
        // A route that ended the session (logout, a password change) is no reason to stop; an
        // hour later, the failed logins fuzzed from this address no longer hold the next one back.
        if (res.status === 401 && (await c.send("GET", "/v1/iam/me", token)).status === 401) {
          c.clock.advance(3_600_000);
          token = await c.login(c.owner.email, c.owner.password);
        }
      }
    }
  }
  expect(failures).toEqual([]);
  expect(requests).toBeGreaterThan(2000);
}, 120_000);

test("a path segment that does not percent-decode is 400 bad_request, naming the parameter (found in review: 500)", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  for (const path of ["/v1/intel/ip/%ZZ", "/v1/intel/ip/%C3%28"]) {
    const res = await c.send("GET", path, token);
    expect([res.status, res.body.code, res.body.detail]).toEqual([400, "bad_request", "The path segment for ip is not valid percent-encoded UTF-8."]);
  }
});
