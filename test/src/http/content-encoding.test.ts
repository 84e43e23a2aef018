/**
 * A request body is never decoded: one with a Content-Encoding is refused (RFC 9110 section
 * 15.5.16: 415, with Accept-Encoding saying what is taken), where a gzip body was 400 "not valid
 * JSON" and one labelled br but sent plain was taken as it was.
 */
import { expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import { gzipSync } from "node:zlib";
import { access } from "../../../src/http/access.ts";
import { testEdge } from "../../helpers/http.ts";

const routes = new Elysia()
  .post("/things", ({ body }) => ({ name: body.name }), { body: t.Object({ name: t.String() }), detail: access({ public: true }) })
  .delete("/things/:id", ({ params }) => ({ deleted: params.id }), { detail: access({ public: true }) });
const edge = testEdge({ mounts: [{ name: "p", routes }] });
const json = { "content-type": "application/json" };

test("a body with a Content-Encoding is 415 with Accept-Encoding: identity (found in review)", async () => {
  for (const [encoding, body] of [["gzip", gzipSync('{"name":"a"}')], ["br", '{"name":"a"}'], ["identity, gzip", '{"name":"a"}']] as const) {
    const res = await edge.send("POST", "/v1/p/things", { body, headers: { ...json, "content-encoding": encoding } });
    expect([encoding, res.status, res.body.code, res.headers.get("accept-encoding")]).toEqual([encoding, 415, "unsupported_media_type", "identity"]);
  }
});

test("identity, or none, is taken", async () => {
  for (const headers of [json, { ...json, "content-encoding": "Identity" }]) {
    const res = await edge.send("POST", "/v1/p/things", { body: '{"name":"a"}', headers });
    expect([res.status, res.body]).toEqual([200, { name: "a" }]);
  }
});

test("a request without a body passes whatever its Content-Encoding says: nothing to decode (found in review: a DELETE was 415)", async () => {
  for (const encoding of ["gzip", ""]) {
    const res = await edge.send("DELETE", "/v1/p/things/1", { headers: { "content-encoding": encoding } });
    expect([encoding, res.status, res.body]).toEqual([encoding, 200, { deleted: "1" }]);
  }
});
