/**
 * A body nested thousands deep in a typed field: Elysia's validation recursed building its
 * error message and overflowed the stack, a 500 to anyone from about 10 KB of brackets.
 */
import { describe, expect, test } from "bun:test";
import { MAX_JSON_DEPTH } from "../../../src/http/body.ts";
import { testCitadel } from "../../helpers/citadel.ts";

/** `{"<field>": [[…"x"…]], "password": "b"}` (login's other field) with the field's value nested `depth` arrays deep. */
const nestedIn = (field: string, depth: number) => `{"${field}": ${"[".repeat(depth)}"x"${"]".repeat(depth)}${field === "email" ? `, "password": "b"` : ""}}`;

describe("a body nested deeper than the limit", () => {
  // Unauthenticated routes, each with a typed field.
  const routes = [
    ["/v1/iam/login", "email"],
    ["/v1/sys/unseal", "share"],
  ] as const;

  for (const [path, field] of routes) {
    test(`${path}: 400 naming the limit, not a 500 (found in review)`, async () => {
      const c = await testCitadel({ config: { rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } } });
      for (const depth of [5_000, 100_000]) {
        const res = await c.send("POST", path, undefined, { body: nestedIn(field, depth), headers: { "content-type": "application/json" } });
        expect([depth, res.status, res.body.code]).toEqual([depth, 400, "malformed_json"]);
        expect(res.body.detail).toContain(`deeper than ${MAX_JSON_DEPTH} levels`);
      }
      expect(c.log.lines.filter((l) => l.level === "error")).toEqual([]);
    });

    test(`${path}: a shallow nesting is still validated field by field`, async () => {
      const c = await testCitadel();
      const res = await c.send("POST", path, undefined, { body: nestedIn(field, 10), headers: { "content-type": "application/json" } });
      expect([res.status, res.body.code, res.body.errors?.[0]?.field]).toEqual([422, "validation_failed", field]);
    });
  }

  test("the limit itself is allowed; one more level is not", async () => {
    const c = await testCitadel();
    const at = await c.send("POST", "/v1/iam/login", undefined, { body: nestedIn("email", MAX_JSON_DEPTH - 1), headers: { "content-type": "application/json" } });
    expect([at.status, at.body.code]).toEqual([422, "validation_failed"]); // the object and 63 arrays: 64 levels
    const over = await c.send("POST", "/v1/iam/login", undefined, { body: nestedIn("email", MAX_JSON_DEPTH), headers: { "content-type": "application/json" } });
    expect([over.status, over.body.code]).toEqual([400, "malformed_json"]);
  });
});
