import { expect, test } from "bun:test";
import { systemPlugin } from "../../../plugins/system/index.ts";
import { fixedClock, testEdge, testKernel } from "../../helpers/http.ts";

test("GET /v1/system/info reports the build and the uptime", async () => {
  const clock = fixedClock();
  const k = testKernel({ clock, startedAt: clock.now() });
  const { send } = testEdge({ mounts: [{ name: "system", routes: systemPlugin.routes!(k) }] });
  clock.advance(90_500);
  const res = await send("GET", "/v1/system/info");
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ version: "1.2.3", commit: "abc1234", build_time: "2026-01-01T00:00:00.000Z", uptime_seconds: 90.5 });
});

test("the system plugin declares a scope for its route", () => {
  expect(systemPlugin.scopes).toContain("system:read");
});
