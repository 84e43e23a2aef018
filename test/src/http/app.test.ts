import { describe, expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import { ConflictError, InvalidError, NotFoundError, SealedError } from "../../../src/errors.ts";
import { access } from "../../../src/http/access.ts";
import { DOMAIN_STATUS } from "../../../src/http/problem.ts";
import * as errors from "../../../src/errors.ts";
import { testEdge, type SendInit } from "../../helpers/http.ts";

/** A plugin with one route of each kind the envelope must handle. */
const probe = new Elysia({ name: "probe" })
  .post("/things", ({ body }) => ({ created: body.name }), {
    body: t.Object({ name: t.String({ minLength: 1, maxLength: 20 }), count: t.Integer({ minimum: 0 }), password: t.Optional(t.String()) }),
    response: t.Object({ created: t.String() }),
    detail: { summary: "probe" },
  })
  .get("/things/:id", ({ params }) => {
    if (params.id === "missing") throw new NotFoundError("No thing with that id.");
    if (params.id === "taken") throw new ConflictError("That thing exists already.");
    if (params.id === "bad") throw new InvalidError("The id must be lower case.", "id");
    if (params.id === "sealed") throw new SealedError();
    return { id: params.id };
  })
  .get("/boom", () => {
    // The kind of message that must never reach a client.
    throw new Error("SQLITE_CONSTRAINT at /work/main/src/store/store.ts:42 Error: secret-value-123");
  })
  .get("/bad-response", () => ({ wrong: 1 }) as unknown as { created: string }, { response: t.Object({ created: t.String() }) })
  .get("/query", ({ query }) => query, { query: t.Object({ limit: t.Numeric({ minimum: 1, maximum: 100 }) }) });

const edge = () => testEdge({ mounts: [{ name: "probe", routes: probe }], bodyLimit: 4096 });

interface Scenario {
  name: string;
  method: string;
  path: string;
  init?: SendInit;
  status: number;
  code: string;
  field?: string;
}

const scenarios: Scenario[] = [
  { name: "malformed JSON", method: "POST", path: "/v1/probe/things", init: { body: '{"name": ', headers: { "content-type": "application/json" } }, status: 400, code: "malformed_json" },
  { name: "wrong type", method: "POST", path: "/v1/probe/things", init: { json: { name: "a", count: "three" } }, status: 422, code: "validation_failed", field: "count" },
  { name: "missing field", method: "POST", path: "/v1/probe/things", init: { json: { name: "a" } }, status: 422, code: "validation_failed", field: "count" },
  { name: "out of range", method: "POST", path: "/v1/probe/things", init: { json: { name: "a", count: -1 } }, status: 422, code: "validation_failed", field: "count" },
  { name: "empty body", method: "POST", path: "/v1/probe/things", init: { body: "", headers: { "content-type": "application/json" } }, status: 422, code: "validation_failed" },
  { name: "huge body (declared)", method: "POST", path: "/v1/probe/things", init: { json: { name: "x".repeat(10_000), count: 1 } }, status: 413, code: "payload_too_large" },
  { name: "wrong content type", method: "POST", path: "/v1/probe/things", init: { body: "name=a&count=1", headers: { "content-type": "application/x-www-form-urlencoded" } }, status: 415, code: "unsupported_media_type" },
  { name: "text body", method: "POST", path: "/v1/probe/things", init: { body: "hello", headers: { "content-type": "text/plain" } }, status: 415, code: "unsupported_media_type" },
  { name: "an unpaired surrogate escape in a value", method: "POST", path: "/v1/probe/things", init: { body: '{"name": "a\\ud800", "count": 1}', headers: { "content-type": "application/json" } }, status: 400, code: "malformed_json" },
  { name: "an unpaired surrogate escape in a key", method: "POST", path: "/v1/probe/things", init: { body: '{"name": "a", "count": 1, "x\\udc00": 2}', headers: { "content-type": "application/json" } }, status: 400, code: "malformed_json" },
  { name: "invalid UTF-8", method: "POST", path: "/v1/probe/things", init: { body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), headers: { "content-type": "application/json" } }, status: 400, code: "malformed_json" },
  { name: "unknown route", method: "GET", path: "/v1/probe/nothing-here", status: 404, code: "not_found" },
  { name: "unknown prefix", method: "GET", path: "/wp-admin/setup.php", status: 404, code: "not_found" },
  { name: "wrong method", method: "DELETE", path: "/v1/probe/things", status: 405, code: "method_not_allowed" },
  { name: "wrong method on a parameterised route", method: "PUT", path: "/v1/probe/things/42", status: 405, code: "method_not_allowed" },
  { name: "route that throws", method: "GET", path: "/v1/probe/boom", status: 500, code: "internal_error" },
  { name: "response that breaks its schema", method: "GET", path: "/v1/probe/bad-response", status: 500, code: "internal_error" },
  { name: "domain not found", method: "GET", path: "/v1/probe/things/missing", status: 404, code: "not_found" },
  { name: "domain conflict", method: "GET", path: "/v1/probe/things/taken", status: 409, code: "conflict" },
  { name: "domain invalid", method: "GET", path: "/v1/probe/things/bad", status: 422, code: "invalid", field: "id" },
  { name: "sealed", method: "GET", path: "/v1/probe/things/sealed", status: 503, code: "sealed" },
  { name: "bad query", method: "GET", path: "/v1/probe/query?limit=0", status: 422, code: "validation_failed", field: "query.limit" },
];

/** What a response must never contain: internals that help an attacker. */
const LEAKS = [/\.ts\b/, /\/src\//, /\/work\//, /\bat [\w.<>]+ \(/, /SQLITE/i, /Error:/, /secret-value/, /elysia/i, /typebox/i, /bun/i, /node_modules/];

describe("error envelope", () => {
  for (const s of scenarios) {
    test(`${s.name} → ${s.status} ${s.code}`, async () => {
      const { send, log } = edge();
      const res = await send(s.method, s.path, { ...s.init, headers: { ...s.init?.headers, "x-request-id": "req-0001" } });
      expect(res.status).toBe(s.status);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(res.body).toMatchObject({ type: `urn:citadel:problem:${s.code}`, status: s.status, code: s.code, request_id: "req-0001" });
      expect(typeof res.body.title).toBe("string");
      if (s.field) expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(s.field);
      for (const leak of LEAKS) expect(res.text).not.toMatch(leak);
      expect(res.headers.get("x-request-id")).toBe("req-0001");
      // The access log has the request under the same id.
      expect(log.lines.some((l) => l.msg === "request" && l.request_id === "req-0001" && l.status === s.status)).toBe(true);
    });
  }

  test("405 names the allowed methods in Allow", async () => {
    const res = await edge().send("DELETE", "/v1/probe/things");
    expect(res.headers.get("allow")).toBe("POST");
  });

  test("a 405 for HEAD names HEAD, not the GET the app was given for it (found in review)", async () => {
    const res = await edge().send("HEAD", "/v1/probe/things");
    expect([res.status, res.headers.get("allow"), res.body.detail]).toEqual([405, "POST", "HEAD is not allowed here; use POST."]);
  });

  test("a 500 logs the real error under the request id, and only the log has it", async () => {
    const { send, log } = edge();
    const res = await send("GET", "/v1/probe/boom");
    const entry = log.lines.find((l) => l.msg === "request failed");
    expect(entry?.request_id).toBe(res.body.request_id);
    expect(JSON.stringify(entry)).toContain("SQLITE_CONSTRAINT");
  });

  test("validation errors never echo the submitted value", async () => {
    const res = await edge().send("POST", "/v1/probe/things", { json: { name: "a", count: 1, password: 12345678901 } });
    expect(res.status).toBe(422);
    expect(res.text).not.toContain("12345678901");
    expect(res.body.errors[0].field).toBe("password");
  });

  test("a chunked body over the limit is refused while reading", async () => {
    const chunk = new TextEncoder().encode(`{"name":"${"y".repeat(1000)}`);
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(chunk);
        controller.close();
      },
    });
    const { fetch } = edge();
    const res = await fetch(new Request("https://citadel.test/v1/probe/things", { method: "POST", body: stream, headers: { "content-type": "application/json" } }));
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe("payload_too_large");
  });

  test("a body declared over the limit: 413 at once, and the connection closed rather than the body read (found in review: Bun read a declared terabyte)", async () => {
    const { fetch } = edge();
    const res = await fetch(new Request("https://citadel.test/v1/probe/things", { method: "POST", body: "x".repeat(100_000), headers: { "content-type": "application/json", "content-length": "100000" } }));
    expect([res.status, res.headers.get("connection"), res.headers.get("x-content-type-options")]).toEqual([413, "close", "nosniff"]);
  });

  test("a body nested a hundred thousand deep around an unpaired surrogate is 400, not a stack overflow (found in review)", async () => {
    const deep = `${"[".repeat(100_000)}"\\ud800"${"]".repeat(100_000)}`;
    const res = await testEdge({ mounts: [{ name: "probe", routes: probe }], bodyLimit: 1 << 20 }).send("POST", "/v1/probe/things", { body: deep, headers: { "content-type": "application/json" } });
    expect([res.status, res.body.code]).toEqual([400, "malformed_json"]);
  });

  test("a valid request passes through", async () => {
    const res = await edge().send("POST", "/v1/probe/things", { json: { name: "lamp", count: 2 } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ created: "lamp" });
    // A character outside the BMP written as an escaped surrogate pair is text like any other.
    const escaped = await edge().send("POST", "/v1/probe/things", { body: '{"name": "lamp \\ud83d\\udca1", "count": 2}', headers: { "content-type": "application/json" } });
    expect([escaped.status, escaped.body]).toEqual([200, { created: "lamp 💡" }]);
  });

  test("every domain error class has a status", () => {
    const classes = Object.values(errors).filter((e) => typeof e === "function" && e.prototype instanceof errors.CitadelError);
    const codes = classes.map((E) => new (E as unknown as new (m: string) => errors.CitadelError)("x").code);
    expect(codes.length).toBeGreaterThan(5);
    for (const code of codes) expect(DOMAIN_STATUS[code]).toBeNumber();
  });
});

describe("health and readiness", () => {
  test("/healthz answers", async () => {
    const res = await testEdge().send("GET", "/healthz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  test("/readyz is 503 naming the failing check", async () => {
    let storeUp = true;
    const { send } = testEdge({ readiness: [{ name: "store", problem: () => (storeUp ? null : "unreachable") }] });
    expect((await send("GET", "/readyz")).status).toBe(200);
    storeUp = false;
    const res = await send("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.body.code).toBe("not_ready");
    expect(res.body.detail).toBe("store: unreachable");
  });
});

describe("edge cases a proxy or a plugin could bring", () => {
  const sloppy = new Elysia({ name: "sloppy" })
    .get("/returns-error", () => new Error("SQLITE_ERROR near /work/main/src/store.ts") as unknown as string)
    .get("/sets-status", ({ set }) => {
      set.status = 409;
      return { internal: "select * from secrets" };
    })
    .get("/throws-elysia-not-found", () => {
      throw new NotFoundError("gone");
    });

  test("an error a handler returns (instead of throwing) still leaves only as a problem", async () => {
    const { send, log } = testEdge({ mounts: [{ name: "sloppy", routes: sloppy }] });
    for (const [path, status, code] of [["/v1/sloppy/returns-error", 500, "internal_error"], ["/v1/sloppy/sets-status", 409, "conflict"]] as const) {
      const res = await send("GET", path);
      expect([path, res.status, res.headers.get("content-type"), res.body.code]).toEqual([path, status, "application/problem+json", code]);
      for (const leak of LEAKS) expect(res.text).not.toMatch(leak);
      expect(res.text).not.toContain("select");
    }
    expect(log.lines.filter((l) => l.msg === "a route answered an error outside the problem envelope")).toHaveLength(2);
  });

  test("a route whose refusals are pages (errorPages) answers them as HTML with their status; any other error outside the envelope is still replaced", async () => {
    const html = (status: number) => new Response("<!doctype html><p>No such code.</p>", { status, headers: { "content-type": "text/html; charset=utf-8" } });
    const pages = new Elysia({ name: "pages" })
      .get("/page", () => html(404), { detail: access({ public: true, errorPages: true }) })
      .get("/page-json", ({ set }) => {
        set.status = 409;
        return { internal: "select * from secrets" };
      }, { detail: access({ public: true, errorPages: true }) })
      .get("/not-a-page", () => html(404), { detail: access({ public: true }) });
    const { send } = testEdge({ mounts: [{ name: "pages", routes: pages }] });
    const page = await send("GET", "/v1/pages/page");
    expect([page.status, page.headers.get("content-type"), page.text]).toEqual([404, "text/html; charset=utf-8", "<!doctype html><p>No such code.</p>"]);
    for (const path of ["/v1/pages/page-json", "/v1/pages/not-a-page"]) {
      expect([path, (await send("GET", path)).headers.get("content-type")]).toEqual([path, "application/problem+json"]);
    }
  });

  test("a short Host header cannot change which route answers", async () => {
    const { fetch } = edge();
    for (const host of ["a", "ab", "x"]) {
      const res = await fetch(new Request(`http://${host}/zz/v1/probe/things/42`));
      expect([host, res.status]).toEqual([host, 404]);
      const ok = await fetch(new Request(`http://${host}/v1/probe/things/42`));
      expect([host, ok.status]).toEqual([host, 200]);
    }
  });

  test("a 404 thrown by a route on an allowed method stays a 404, not a self-contradicting 405", async () => {
    const res = await testEdge({ mounts: [{ name: "sloppy", routes: sloppy }] }).send("GET", "/v1/sloppy/throws-elysia-not-found");
    expect(res.status).toBe(404);
  });

  test("a validation error logs its route pattern, not the concrete path", async () => {
    const { send, log } = edge();
    await send("GET", "/v1/probe/query?limit=0");
    expect(log.lines.find((l) => l.msg === "request")).toMatchObject({ route: "/v1/probe/query", status: 422 });
    expect(log.lines.find((l) => l.msg === "request")!.path).toBeUndefined();
  });
});
