/**
 * Integers are numbers in a JSON body and decimal digits in a query string. Elysia's t.Integer
 * reads text as JavaScript does a number: `{"expires_in_days":"0x1e"}` made a 30-day token ("3e1"
 * and " 30 " too), `?limit=0x10` was 16, and 99999 was "Expected union value", naming no range.
 */
import { describe, expect, test } from "bun:test";
import type { TSchema } from "@sinclair/typebox";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();

/** Where a schema holds Elysia's t.Integer (a union with a string of format "integer"), as JSON pointers. */
function elysiaIntegers(schema: unknown, at = ""): string[] {
  if (typeof schema !== "object" || schema === null) return [];
  const node = schema as TSchema;
  if ((node.anyOf as TSchema[] | undefined)?.some((branch) => branch.type === "string" && branch.format === "integer")) return [at || "/"];
  return Object.entries(node).flatMap(([key, inner]) => elysiaIntegers(inner, `${at}/${key}`));
}

describe("a body's integer (found in review)", () => {
  test("is a JSON number: text is 422 Expected integer", async () => {
    const c = await citadel();
    const token = await c.login(c.owner.email, c.owner.password);
    for (const days of ["0x1e", "3e1", " 30 ", "30"]) {
      const res = await c.send("POST", "/v1/iam/me/tokens", token, { json: { name: `t${days}`, scopes: ["iam:read"], expires_in_days: days } });
      expect([days, res.status, res.body.detail]).toEqual([days, 422, "expires_in_days: Expected integer"]);
    }
    const ok = await c.send("POST", "/v1/iam/me/tokens", token, { json: { name: "number", scopes: ["iam:read"], expires_in_days: 30 } });
    expect(ok.status).toBe(200);
  });

  test("out of range names the range", async () => {
    const c = await citadel();
    const token = await c.login(c.owner.email, c.owner.password);
    const res = await c.send("POST", "/v1/iam/me/tokens", token, { json: { name: "far", scopes: ["iam:read"], expires_in_days: 99999 } });
    expect([res.status, res.body.detail]).toEqual([422, "expires_in_days: Expected integer to be less or equal to 3650"]);
  });

  test("no route's body schema holds Elysia's t.Integer (use Integer from src/http/schema.ts)", async () => {
    const c = await citadel();
    const bodies = c.app.routes.flatMap((route) => elysiaIntegers((route.hooks as { body?: unknown } | undefined)?.body).map((at) => `${route.method} ${route.path} ${at}`));
    expect(bodies).toEqual([]);
  });
});

describe("a query's integer (found in review)", () => {
  test("is decimal digits: anything else is 422 Expected integer", async () => {
    const c = await citadel();
    const token = await c.login(c.owner.email, c.owner.password);
    for (const limit of ["0x10", "1e1", "010", "%2010", ""]) {
      const res = await c.send("GET", `/v1/audit/events?limit=${limit}`, token);
      expect([limit, res.status, res.body.detail]).toEqual([limit, 422, "query.limit: Expected integer"]);
    }
    expect((await c.send("GET", "/v1/audit/events?limit=10", token)).status).toBe(200);
    const far = await c.send("GET", "/v1/audit/events?limit=99999", token);
    expect([far.status, far.body.detail]).toEqual([422, "query.limit: Expected integer to be less or equal to 1000"]);
  });
});
