import { describe, expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import { synchronous } from "../../../src/http/synchronous.ts";
import { access } from "../../../src/http/access.ts";
import { systemPlugin } from "../../../plugins/system/index.ts";
import { testEdge, testKernel } from "../../helpers/http.ts";

/** What the compiled app returns for a request: a Response, or a promise of one. */
function answer(app: ReturnType<typeof testEdge>["app"], path: string): unknown {
  const handle = app.compile().fetch as (request: Request) => unknown;
  return handle(new Request(`https://citadel.test${path}`));
}

describe("routes marked synchronous", () => {
  test("are answered without a promise, though their source text would make Elysia await them", async () => {
    const k = testKernel();
    const open = { ...access({ public: true }) };
    const routes = new Elysia()
      .get("/marked", synchronous(() => String("called")), { detail: open })
      .get("/unmarked", () => String("called"), { detail: open });
    const { app } = testEdge({ mounts: [{ name: "t", routes }, { name: "system", routes: systemPlugin.routes!(k as never) }] });
    for (const path of ["/healthz", "/readyz", "/v1/system/info", "/v1/t/marked"]) expect(answer(app, path)).toBeInstanceOf(Response);
    // Elysia's guess, which the marker is there to overrule: `=> String(` looks like it may return a promise.
    expect(answer(app, "/v1/t/unmarked")).toBeInstanceOf(Promise);
    const marked = answer(app, "/v1/t/marked") as Response;
    expect(await marked.text()).toBe("called");
  });

  test("what Elysia reads in a handler's text besides the guess still holds: the parts of the context it uses", async () => {
    const open = access({ public: true });
    const routes = new Elysia()
      // Headers, not a query: a route reads only the parameters it declares, and a declared schema has Elysia parse the query whatever the text.
      .get("/headers", synchronous(({ headers }: { headers: Record<string, string | undefined> }) => ({ h: String(headers["x-probe"]) })), { detail: open })
      .get("/status", synchronous(({ set }: { set: { status?: number | string } }) => {
        set.status = 202;
        return { accepted: true };
      }), { detail: open });
    const edge = testEdge({ mounts: [{ name: "t", routes }] });
    expect((await edge.send("GET", "/v1/t/headers", { headers: { "x-probe": "seen" } })).body).toEqual({ h: "seen" });
    const status = await edge.send("GET", "/v1/t/status");
    expect([status.status, status.body]).toEqual([202, { accepted: true }]);
  });

  test("a marked handler that returns a promise after all answers 500 in the envelope, with or without a response schema", async () => {
    const lie = synchronous((() => Promise.resolve({ n: 1 })) as () => never);
    const routes = new Elysia()
      .get("/lies", lie, { response: t.Object({ n: t.Number() }), detail: access({ public: true }) })
      .get("/lies-unchecked", lie, { detail: access({ public: true }) });
    const edge = testEdge({ mounts: [{ name: "t", routes }] });
    for (const path of ["/v1/t/lies", "/v1/t/lies-unchecked"]) {
      const res = await edge.send("GET", path);
      expect([res.status, res.body.code]).toEqual([500, "internal_error"]);
    }
  });
});
