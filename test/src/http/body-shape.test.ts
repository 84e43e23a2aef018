import { expect, test } from "bun:test";
import { testCitadel } from "../../helpers/citadel.ts";

test("a JSON body that is not an object is refused as such, not field by field (found in review)", async () => {
  const c = await testCitadel();
  for (const body of ['"str"', "[]", "1", "true", "null"]) {
    const res = await c.send("POST", "/v1/iam/login", undefined, { body, headers: { "content-type": "application/json" } });
    expect([body, res.status, res.body.detail, res.body.errors]).toEqual([body, 422, "body: Expected object", [{ field: "body", message: "Expected object" }]]);
  }
  // An empty body is an empty object: each missing field is named.
  const empty = await c.send("POST", "/v1/iam/login", undefined, { body: "", headers: { "content-type": "application/json" } });
  expect(empty.body.errors.map((e: { field: string }) => e.field)).toEqual(["email", "password"]);
});

test("every route that takes a body takes an object (what the edge refuses otherwise)", async () => {
  const c = await testCitadel();
  const bodies = c.app.routes.flatMap((r) => {
    const body = (r.hooks as { body?: { type?: string } } | undefined)?.body;
    return body ? [`${r.method} ${r.path}: ${body.type}`] : [];
  });
  expect(bodies.length).toBeGreaterThan(20);
  expect(bodies.filter((b) => !b.endsWith(": object"))).toEqual([]);
});
