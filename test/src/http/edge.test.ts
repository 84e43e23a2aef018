import { describe, expect, test } from "bun:test";
import { clientAddress } from "../../../src/http/edge.ts";
import { parseCidr } from "../../../src/net/ip.ts";
import { Elysia, t } from "elysia";
import { access } from "../../../src/http/access.ts";
import { synchronous } from "../../../src/http/synchronous.ts";
import { pathOf } from "../../../src/http/request-meta.ts";
import { parseRawResponse, rawHttp, testEdge } from "../../helpers/http.ts";

describe("client address", () => {
  const trusted = ["10.0.0.0/8", "fd00::/8"].map((c) => parseCidr(c)!);
  const cases: Array<{ name: string; peer: string; xff?: string; trusted: boolean; expected: string }> = [
    { name: "socket peer without proxies", peer: "203.0.113.7", trusted: false, expected: "203.0.113.7" },
    { name: "XFF ignored from an untrusted peer", peer: "203.0.113.7", xff: "198.51.100.1", trusted: true, expected: "203.0.113.7" },
    { name: "XFF ignored when no proxy is configured", peer: "10.0.0.5", xff: "198.51.100.1", trusted: false, expected: "10.0.0.5" },
    { name: "trusted proxy vouches for the client", peer: "10.0.0.5", xff: "198.51.100.1", trusted: true, expected: "198.51.100.1" },
    { name: "client-supplied hops left of the real one are ignored", peer: "10.0.0.5", xff: "1.2.3.4, 198.51.100.1", trusted: true, expected: "198.51.100.1" },
    { name: "a chain of trusted proxies is walked", peer: "10.0.0.5", xff: "198.51.100.1, 10.1.1.1", trusted: true, expected: "198.51.100.1" },
    { name: "garbage stops the walk at the last good hop", peer: "10.0.0.5", xff: "198.51.100.1, not-an-ip", trusted: true, expected: "10.0.0.5" },
    { name: "IPv6 proxy and client", peer: "fd00::1", xff: "2001:db8::42", trusted: true, expected: "2001:db8::42" },
    { name: "IPv4-mapped peer is reported as IPv4", peer: "::ffff:192.0.2.9", trusted: false, expected: "192.0.2.9" },
    { name: "trusted proxy without XFF is the client", peer: "10.0.0.5", trusted: true, expected: "10.0.0.5" },
    { name: "a hop with a port (IPv4)", peer: "10.0.0.5", xff: "198.51.100.1:4711", trusted: true, expected: "198.51.100.1" },
    { name: "a hop with a port (IPv6)", peer: "10.0.0.5", xff: "[2001:db8::7]:443", trusted: true, expected: "2001:db8::7" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const request = new Request("https://citadel.test/", { headers: c.xff ? { "x-forwarded-for": c.xff } : {} });
      const server = { requestIP: () => ({ address: c.peer, family: "IPv4" as const, port: 1 }) };
      expect(clientAddress(request, server, c.trusted ? trusted : [])).toBe(c.expected);
    });
  }
});

describe("edge", () => {
  test("sets the security headers on every response", async () => {
    const { send } = testEdge();
    for (const path of ["/healthz", "/nope"]) {
      const res = await send("GET", path);
      expect(res.headers.get("strict-transport-security")).toContain("max-age=");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(res.headers.get("server")).toBeNull();
    }
  });

  test("plain HTTP (loopback only) sends no HSTS, and everything else", async () => {
    const res = await testEdge({ tls: false }).send("GET", "/healthz");
    expect(res.headers.get("strict-transport-security")).toBeNull();
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });

  test("accepts a sane inbound X-Request-Id and replaces a bad one", async () => {
    const { send } = testEdge();
    expect((await send("GET", "/healthz", { headers: { "x-request-id": "trace-abc.123" } })).headers.get("x-request-id")).toBe("trace-abc.123");
    const replaced = (await send("GET", "/healthz", { headers: { "x-request-id": "bad id\twith<script>" } })).headers.get("x-request-id");
    expect(replaced).toMatch(/^[0-9a-f]{16}-[0-9a-z]+$/);
    const generated = (await send("GET", "/healthz")).headers.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f]{16}-[0-9a-z]+$/);
    expect(generated).not.toBe(replaced);
    // One of the ids this process makes is not taken from a caller: it would name another request (found in review).
    const borrowed = (await send("GET", "/healthz", { headers: { "x-request-id": generated! } })).headers.get("x-request-id");
    expect(borrowed).toMatch(/^[0-9a-f]{16}-[0-9a-z]+$/);
    expect(borrowed).not.toBe(generated);
    for (const another of [`${generated!.split("-")[0]}-zzzz`, "0123456789ABCDEF-1a"]) {
      // This process's prefix, or an earlier process's (in upper case too).
      expect((await send("GET", "/healthz", { headers: { "x-request-id": another } })).headers.get("x-request-id")).not.toBe(another);
    }
    const b3 = "463ac35c9f6413ad-72485a3953bb6124"; // a B3 trace id and span id: kept
    expect((await send("GET", "/healthz", { headers: { "x-request-id": b3 } })).headers.get("x-request-id")).toBe(b3);
  });

  test("a loopback request carrying X-Forwarded-For while loopback is no trusted proxy is warned about, once (found in review)", async () => {
    const { send, log } = testEdge({ peer: "127.0.0.1" });
    await send("GET", "/healthz");
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
    for (let i = 0; i < 3; i++) await send("GET", "/healthz", { headers: { "x-forwarded-for": "198.51.100.1" } });
    const warned = log.lines.filter((l) => l.level === "warn");
    expect(warned).toHaveLength(1);
    expect(warned[0]!.msg).toContain("Add 127.0.0.1/32 (and ::1/128) to http.trusted_proxies");
    // Named as a proxy, it is one: no warning, and the client is the forwarded one.
    const trusted = testEdge({ peer: "127.0.0.1", trustedProxies: ["127.0.0.1/32"] });
    await trusted.send("GET", "/healthz", { headers: { "x-forwarded-for": "198.51.100.1" } });
    expect(trusted.log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  test("writes one access-log line per request with the route pattern and the client", async () => {
    const { send, log } = testEdge({ peer: "10.0.0.5", trustedProxies: ["10.0.0.0/8"] });
    await send("GET", "/healthz", { headers: { "x-forwarded-for": "198.51.100.1" } });
    await send("GET", "/missing?token=should-not-be-logged");
    const lines = log.lines.filter((l) => l.msg === "request");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ method: "GET", route: "/healthz", status: 200, client: "198.51.100.1" });
    expect(typeof lines[0]!.duration_ms).toBe("number");
    expect(lines[1]).toMatchObject({ route: null, path: "/missing", status: 404 });
    expect(JSON.stringify(lines)).not.toContain("should-not-be-logged");
  });

  test("the docs page has its own CSP that allows only its own script", async () => {
    const res = await testEdge().send("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/html");
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(res.text).toContain('src="docs/ui.js"');
    expect(res.text).not.toMatch(/https?:\/\//); // nothing loaded from elsewhere
    const js = await testEdge().send("GET", "/docs/ui.js");
    expect(js.text).not.toMatch(/https?:\/\//);
  });
});

describe("the request's read snapshot", () => {
  /** A stand-in for Store.snapshot that tells whether one is open. */
  function fakeSnapshot() {
    const state = { open: false };
    const snapshot = <T>(fn: () => T): T => {
      state.open = true;
      try {
        return fn();
      } finally {
        state.open = false;
      }
    };
    return { state, snapshot };
  }

  test("the app's synchronous part of a request runs inside one; what it does after an await runs outside", async () => {
    const { state, snapshot } = fakeSnapshot();
    const seen: Array<[string, boolean]> = [];
    const routes = new Elysia()
      .get("/now", synchronous(() => ({ open: state.open })), { detail: access({ public: true }) })
      .get("/later", async () => {
        seen.push(["before await", state.open]);
        await Bun.sleep(1);
        seen.push(["after await", state.open]);
        return { n: 1 };
      }, { detail: access({ public: true }) });
    const { send } = testEdge({ mounts: [{ name: "s", routes }], snapshot });
    expect((await send("GET", "/v1/s/now")).body).toEqual({ open: true });
    expect((await send("GET", "/v1/s/later")).body).toEqual({ n: 1 });
    expect(seen).toEqual([["before await", true], ["after await", false]]);
  });

  test("a GET route at a fixed path may declare it needs none; a route with parameters may not", async () => {
    const { state, snapshot } = fakeSnapshot();
    const routes = new Elysia()
      .get("/plain", synchronous(() => ({ open: state.open })), { detail: access({ public: true }) })
      .get("/light", synchronous(() => ({ open: state.open })), { query: t.Object({ x: t.Optional(t.String()) }), detail: access({ public: true, noReadSnapshot: true }) })
      .options("/light", synchronous(() => ({ open: state.open })), { detail: access({ public: true }) });
    const { send } = testEdge({ mounts: [{ name: "s", routes }], snapshot });
    expect((await send("GET", "/v1/s/plain")).body).toEqual({ open: true });
    expect((await send("GET", "/v1/s/light")).body).toEqual({ open: false });
    expect((await send("GET", "/v1/s/light?x=1")).body).toEqual({ open: false });
    expect((await send("OPTIONS", "/v1/s/light")).body).toEqual({ open: true }); // another method at that path keeps its snapshot
    expect((await send("HEAD", "/v1/s/light")).status).toBe(200); // HEAD is GET

    const wrong = new Elysia().get("/items/:id", () => ({}), { detail: access({ public: true, noReadSnapshot: true }) });
    expect(() => testEdge({ mounts: [{ name: "w", routes: wrong }], snapshot })).toThrow("GET /v1/w/items/:id: noReadSnapshot is for GET routes at a fixed path");
  });
});

describe("the sealed gate", () => {
  test("its detail names the remedy of every seal method, not `citadel unseal` alone (found in review)", async () => {
    const res = await testEdge({ sealed: () => true }).send("GET", "/v1/anything");
    expect([res.status, res.body.code]).toEqual([503, "sealed"]);
    expect(res.body.detail).toContain("citadel unseal");
    expect(res.body.detail).toContain("restart it with its key file or systemd credential");
  });

  test("a request whose body was still arriving when Citadel was sealed does not reach the app", async () => {
    let sealed = false;
    let ran = 0;
    const routes = new Elysia().post(
      "/w",
      () => {
        ran++;
        return { ok: true };
      },
      { body: t.Object({ a: t.Number() }), detail: access({ public: true }) },
    );
    const edge = testEdge({ mounts: [{ name: "t", routes }], sealed: () => sealed });
    let push!: (chunk: string | null) => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (chunk) => (chunk === null ? controller.close() : controller.enqueue(new TextEncoder().encode(chunk)));
      },
    });
    const answer = edge.fetch(new Request("https://citadel.test/v1/t/w", { method: "POST", headers: { "content-type": "application/json" }, body, duplex: "half" } as RequestInit));
    push('{"a":');
    await Bun.sleep(5);
    sealed = true; // the operator seals meanwhile
    push("1}");
    push(null);
    const res = await answer;
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([503, "sealed"]);
    expect(ran).toBe(0);
  });
});

describe("a request whose URL is its path alone (HTTP/1.0 without Host, an invalid Host)", () => {
  const probe = new Elysia().get("/things", () => ({ ok: true }), { query: t.Object({ full: t.Optional(t.String()) }), detail: access({ public: true }) });

  /** Sends each raw request to the edge behind a real socket; the status and body of each answer. */
  async function overSocket(requests: string[], options: Parameters<typeof testEdge>[0] = {}) {
    const edge = testEdge({ mounts: [{ name: "probe", routes: probe }], ...options });
    const server = edge.listen();
    try {
      const answers = [];
      for (const request of requests) answers.push(parseRawResponse(await rawHttp(server.port, request)));
      return { answers, log: edge.log };
    } finally {
      await server.stop();
    }
  }

  test("is routed by that path, as a health check sends it (found in review)", async () => {
    const { answers, log } = await overSocket([
      "GET /healthz HTTP/1.0\r\n\r\n", // HAProxy's `option httpchk GET /healthz`
      "GET /v1/probe/things HTTP/1.0\r\n\r\n",
      "GET /x/v1/probe/things HTTP/1.0\r\n\r\n",
      "GET /v1/probe/things?full=1 HTTP/1.1\r\nHost: ex ample\r\nConnection: close\r\n\r\n",
      "GET /zz/nope?token=t HTTP/1.0\r\n\r\n",
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 404, 200, 404]);
    expect(JSON.parse(answers[0]!.body)).toEqual({ status: "ok" });
    const lines = log.lines.filter((l) => l.msg === "request");
    expect(lines.map((l) => l.route ?? l.path)).toEqual(["/healthz", "/v1/probe/things", "/x/v1/probe/things", "/v1/probe/things", "/zz/nope"]);
  });

  test("meets the sealed gate by that path", async () => {
    const { answers } = await overSocket(["GET /healthz HTTP/1.0\r\n\r\n", "GET /v1/probe/things HTTP/1.0\r\n\r\n"], { sealed: () => true });
    expect(answers.map((a) => a.status)).toEqual([200, 503]);
  });

  test("pathOf takes such a URL as the path", () => {
    expect(["/healthz", "/v1/sys/seal-status?x=1", "//a/b", "https://h/v1/x?y", "http://a"].map(pathOf)).toEqual(["/healthz", "/v1/sys/seal-status", "//a/b", "/v1/x", "/"]);
  });
});

describe("HEAD (over a socket: Bun drops the body)", () => {
  test("works wherever GET does, with the GET's header fields and no body", async () => {
    const edge = testEdge();
    const server = edge.listen();
    try {
      const get = parseRawResponse(await rawHttp(server.port, "GET /healthz HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n\r\n"));
      const head = parseRawResponse(await rawHttp(server.port, "HEAD /healthz HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n\r\n"));
      expect([get.status, get.headers.get("content-length"), get.body]).toEqual([200, "15", '{"status":"ok"}']);
      // RFC 9110 §8.6: the length the GET's body would have, not 0 (found in review).
      expect([head.status, head.headers.get("content-length"), head.body]).toEqual([200, "15", ""]);
      expect(head.headers.get("content-type")).toBe(get.headers.get("content-type"));
      const missing = parseRawResponse(await rawHttp(server.port, "HEAD /nope HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n\r\n"));
      expect([missing.status, missing.headers.get("content-type"), missing.body]).toEqual([404, "application/problem+json", ""]);
    } finally {
      await server.stop();
    }
  });

  test("has a Date, as GET's answer has (found in review)", async () => {
    const server = testEdge().listen();
    try {
      for (const path of ["/healthz", "/nope"]) {
        const head = parseRawResponse(await rawHttp(server.port, `HEAD ${path} HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n\r\n`));
        const date = head.headers.get("date") ?? "";
        expect([path, date]).toEqual([path, expect.stringMatching(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/)]);
      }
    } finally {
      await server.stop();
    }
  });

  test("cancels a streamed body instead of leaving it open (found in review)", async () => {
    let cancelled!: () => void;
    const wasCancelled = new Promise<"cancelled">((resolve) => (cancelled = () => resolve("cancelled")));
    const routes = new Elysia().get(
      "/export",
      () => new Response(new ReadableStream<Uint8Array>({ pull: (controller) => controller.enqueue(new TextEncoder().encode("row\n")), cancel: () => cancelled() })),
      { detail: access({ public: true }) },
    );
    const edge = testEdge({ mounts: [{ name: "s", routes }] });
    const server = edge.listen();
    try {
      const head = parseRawResponse(await rawHttp(server.port, "HEAD /v1/s/export HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n\r\n"));
      expect([head.status, head.body]).toEqual([200, ""]);
      expect(await Promise.race([wasCancelled, Bun.sleep(5000).then(() => "still open")])).toBe("cancelled");
    } finally {
      await server.stop();
    }
  });
});
