/**
 * The OAuth endpoints answer in the OAuth error form (RFC 6749 section 5.2) also what is refused
 * before their handler runs: the body's type, shape and size, the schema's checks. A client
 * reads `error`, and found none in a 422 validation_failed or a 400 malformed_json.
 */
import { describe, expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import { access } from "../../../src/http/access.ts";
import { testEdge } from "../../helpers/http.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const form = { "content-type": "application/x-www-form-urlencoded" };
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

describe("a refusal outside an OAuth endpoint's handler (found in review)", () => {
  test("a field over its schema's length: 400 invalid_request, not 422", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/oauth/token", undefined, { body: `grant_type=${DEVICE_GRANT}&device_code=${"x".repeat(101)}`, headers: form });
    expect([res.status, res.body.code, res.body.error, res.body.error_description]).toEqual([400, "invalid_request", "invalid_request", "device_code: Expected string length less or equal to 100"]);
  });

  test("malformed JSON: 400 invalid_request", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/oauth/device/code", undefined, { body: "{x", headers: { "content-type": "application/json" } });
    expect([res.status, res.body.error, res.body.error_description]).toEqual([400, "invalid_request", "The request body is not valid JSON."]);
  });

  test("a body of another type: 415 with `error`, naming the form as well as JSON", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/oauth/token", undefined, { body: "grant_type=x", headers: { "content-type": "text/plain" } });
    expect([res.status, res.body.code, res.body.error]).toEqual([415, "unsupported_media_type", "invalid_request"]);
    expect(res.body.error_description).toBe("Send the request body as application/x-www-form-urlencoded or application/json.");
  });

  test("a body over the limit: 413 with `error`, declared or found while reading", async () => {
    const token = new Elysia().post("/oauth/token", () => ({}), { body: t.Object({ grant_type: t.Optional(t.String()) }), detail: access({ public: true }) });
    const edge = testEdge({ rootRoutes: [token], bodyLimit: 1024 });
    const declared = await edge.send("POST", "/oauth/token", { body: "x".repeat(2048), headers: form });
    expect([declared.status, declared.body.code, declared.body.error]).toEqual([413, "payload_too_large", "invalid_request"]);
    const chunked = new ReadableStream({ pull: (controller) => (controller.enqueue(new TextEncoder().encode("x".repeat(2048))), controller.close()) });
    const read = await edge.send("POST", "/oauth/token", { body: chunked, headers: form });
    expect([read.status, read.body.code, read.body.error]).toEqual([413, "payload_too_large", "invalid_request"]);
  });

  test("the handler's own OAuth errors are as they were", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/oauth/token", undefined, { body: "grant_type=password", headers: form });
    expect([res.status, res.body.code, res.body.error]).toEqual([400, "unsupported_grant_type", "unsupported_grant_type"]);
  });

  test("other routes keep the problem form", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/v1/iam/login", undefined, { body: "{x", headers: { "content-type": "text/plain" } });
    expect([res.status, res.body.detail, res.body.error]).toEqual([415, "Send the request body as application/json.", undefined]);
  });
});

test("the OpenAPI document lists the form for the OAuth endpoints' bodies, open to unknown parameters", async () => {
  const c = await citadel();
  const doc = (await c.send("GET", "/openapi.json")).body;
  for (const path of ["/oauth/token", "/oauth/device/code"]) {
    const content = doc.paths[path].post.requestBody.content;
    expect(Object.keys(content).sort()).toEqual(["application/json", "application/x-www-form-urlencoded"]);
    expect(content["application/x-www-form-urlencoded"].schema.additionalProperties).toBeUndefined(); // RFC 6749 section 3.1
  }
  expect(doc.paths["/v1/iam/login"].post.requestBody.content["application/json"].schema.additionalProperties).toBe(false);
});
