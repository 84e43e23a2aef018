/**
 * Fields a body holds that its route does not know: Elysia dropped them without a word, so a
 * misspelt field answered 200 and changed nothing (an ACL rule's "action": "deny" was stored
 * as an allow; found in review). Now 422 naming each, after the guard.
 */
import { describe, expect, test } from "bun:test";
import { t } from "elysia";
import { unknownFields } from "../../../src/http/unknown-fields.ts";
import { testCitadel } from "../../helpers/citadel.ts";

describe("unknownFields", () => {
  const Rule = t.Object({ src: t.Array(t.String()), ports: t.Optional(t.Array(t.String())) });
  const Policy = t.Object({ rules: t.Array(Rule), note: t.Optional(t.Union([t.String(), t.Null()])) });

  test("names unknown fields at any depth, as JSON pointers; known ones pass", () => {
    expect(unknownFields(Policy, { rules: [{ src: ["*"] }] })).toEqual([]);
    expect(unknownFields(Policy, { rules: [{ src: ["*"] }, { src: ["a"], action: "deny" }], extra: 1 })).toEqual(["/rules/1/action", "/extra"]);
    expect(unknownFields(t.Object({ "a/b": t.Object({}) }), { "a/b": { "c~": 1 } })).toEqual(["/a~1b/c~0"]);
  });

  test("a union is judged by its branch that fits the value best; a null branch says nothing of an object", () => {
    const Either = t.Union([t.Object({ a: t.Number() }), t.Object({ b: t.Number() }), t.Null()]);
    expect(unknownFields(Either, { b: 1 })).toEqual([]);
    expect(unknownFields(Either, { b: 1, c: 2 })).toEqual(["/c"]);
    expect(unknownFields(t.Object({ x: t.Union([t.Object({ a: t.Number() }), t.Null()]) }), { x: { a: 1, z: 1 } })).toEqual(["/x/z"]);
  });

  test("an intersection knows the fields of all its parts, and what is inside them", () => {
    const Both = t.Intersect([t.Object({ a: t.Object({ x: t.Number() }) }), t.Object({ b: t.Number() })]);
    expect(unknownFields(Both, { a: { x: 1 }, b: 2 })).toEqual([]);
    expect(unknownFields(Both, { a: { x: 1, y: 1 }, b: 2, c: 3 })).toEqual(["/a/y", "/c"]);
  });

  test("maps and open objects take any key; their values are still checked", () => {
    const Map = t.Record(t.String(), t.Object({ weight: t.Number() }));
    expect(unknownFields(Map, { anything: { weight: 1 } })).toEqual([]);
    expect(unknownFields(Map, { anything: { weight: 1, wieght: 2 } })).toEqual(["/anything/wieght"]);
    expect(unknownFields(t.Object({}, { additionalProperties: true }), { any: 1 })).toEqual([]);
    expect(unknownFields(t.Unknown(), { any: 1 })).toEqual([]);
    expect(unknownFields(undefined, { any: 1 })).toEqual([]);
  });
});

describe("a request body with fields its route does not know", () => {
  test("is refused with 422 naming them, and nothing is made", async () => {
    const c = await testCitadel();
    const token = await c.login(c.owner.email, c.owner.password);
    const res = await c.send("POST", "/v1/iam/me/tokens", token, { json: { name: "ci", scopes: ["read"], expires_in_dayz: 7, ip_allowlist: ["192.0.2.0/24"] } });
    expect([res.status, res.body.code, res.body.detail, res.body.errors]).toEqual([422, "validation_failed", "expires_in_dayz: unknown field", [{ field: "expires_in_dayz", message: "unknown field" }]]);
    const tokens = await c.send("GET", "/v1/iam/me/tokens", token);
    expect(JSON.stringify(tokens.body)).not.toContain('"ci"');
    expect(tokens.status).toBe(200);
  });

  test("an unauthenticated caller learns nothing of the route's body: 401 first", async () => {
    const c = await testCitadel();
    const res = await c.send("POST", "/v1/iam/me/tokens", undefined, { json: { bogus: 1 } });
    expect(res.status).toBe(401);
  });
});

test("the OAuth endpoints ignore parameters they do not know, as RFC 6749 section 3.1 requires of them", async () => {
  const c = await testCitadel();
  const form = new URLSearchParams({ client_name: "laptop CLI", scope: "read", client_id: "citadel-cli", client_secret: "unused" }).toString();
  const start = await c.send("POST", "/oauth/device/code", undefined, { body: form, headers: { "content-type": "application/x-www-form-urlencoded" } });
  expect([start.status, typeof start.body.device_code]).toEqual([200, "string"]);
  await c.stop();
});

test("a route that takes no body refuses fields too: PUT services/dns {enabled: false} does not activate it", async () => {
  const c = await testCitadel();
  const token = await c.login(c.owner.email, c.owner.password);
  const services = `/v1/iam/orgs/${c.owner.organization}/services`;
  const res = await c.send("PUT", `${services}/dns`, token, { json: { enabled: false } });
  expect([res.status, res.body.detail]).toEqual([422, "enabled: unknown field"]);
  expect(JSON.stringify((await c.send("GET", services, token)).body)).not.toContain('"dns"');
  // An empty body is no field: the route runs.
  expect((await c.send("PUT", `${services}/dns`, token, { json: {} })).status).toBe(200);
  await c.stop();
});
