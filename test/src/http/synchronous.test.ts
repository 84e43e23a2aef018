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

  test("a marked handler that returns a promise after all answers 500 in the envelope, never a promise's text", async () => {
    const routes = new Elysia().get("/lies", synchronous((() => Promise.resolve({ n: 1 })) as () => never), { response: t.Object({ n: t.Number() }), detail: access({ public: true }) });
    const edge = testEdge({ mounts: [{ name: "t", routes }] });
    const res = await edge.send("GET", "/v1/t/lies");
    expect([res.status, res.body.code]).toEqual([500, "internal_error"]);
  });
});
