import { describe, expect, test } from "bun:test";
import { passwordProblem } from "../../../src/auth/password.ts";
import { RateLimiter, rateLimitHeaders } from "../../../src/auth/rate-limit.ts";
import { effectiveRole, permissionForScope, ROLES, roleAllows, type Permission } from "../../../src/auth/rbac.ts";
import { scopesGrant, scopesWithin } from "../../../src/auth/scopes.ts";

describe("RBAC", () => {
  test("the permission matrix", () => {
    const matrix: Record<Permission, string[]> = {
      view: ["viewer", "editor", "admin", "owner"],
      edit: ["editor", "admin", "owner"],
      delete: ["admin", "owner"],
      manage_members: ["admin", "owner"],
      admin: ["owner"],
    };
    for (const [permission, roles] of Object.entries(matrix)) {
      expect(ROLES.filter((r) => roleAllows(r, permission as Permission))).toEqual(roles as never);
    }
  });
  test("a workspace narrows, never widens", () => {
    expect(effectiveRole("owner", "viewer")).toBe("viewer");
    expect(effectiveRole("viewer", "owner")).toBe("viewer");
    expect(effectiveRole("editor", null)).toBe("editor");
    expect(permissionForScope("dns:read")).toBe("view");
    expect(permissionForScope("dns:write")).toBe("edit");
    expect(permissionForScope("mesh:admin")).toBe("admin");
  });
});

describe("scopes", () => {
  const cases: Array<[string[], string, boolean]> = [
    [["dns:write"], "dns:write", true],
    [["dns:write"], "dns:read", false],
    [["read"], "secrets:read", true],
    [["read"], "secrets:write", false],
    [["write"], "secrets:read", true],
    [["write"], "secrets:write", true],
    [["write"], "mesh:admin", false],
    [["shell"], "shell:connect", true],
    [["deploy"], "dns:deploy", true],
    [[], "dns:read", false],
  ];
  for (const [granted, required, expected] of cases) test(`${JSON.stringify(granted)} ${expected ? "grants" : "does not grant"} ${required}`, () => expect(scopesGrant(granted, required)).toBe(expected));
  test("a child's scopes must lie within its parent's", () => {
    expect(scopesWithin(["dns:read"], ["read"])).toBe(true);
    expect(scopesWithin(["dns:write"], ["read"])).toBe(false);
    expect(scopesWithin(["read"], ["write"])).toBe(true);
    expect(scopesWithin(["write"], ["read"])).toBe(false);
  });
});

describe("password policy", () => {
  const policy = { minLength: 12 };
  test.each([
    ["short", "must be at least 12"],
    ["alice@example.org", "must not be the email"],
    ["correct horse battery staple", "most common"],
    ["aaaaaaaaaaaaaaaa", "one character repeated"],
  ])("refuses %p", (password, why) => expect(passwordProblem(password, "alice@example.org", policy)).toContain(why));
  test("accepts a decent one and never echoes it", () => {
    expect(passwordProblem("tangerine-orbit-kettle-93", "alice@example.org", policy)).toBeNull();
    expect(passwordProblem("x".repeat(5), "a@b.c", policy)).not.toContain("xxxxx");
  });
});

describe("rate limiter", () => {
  test("a burst, then the refill rate, with the IETF headers", () => {
    let now = 0;
    const limiter = new RateLimiter({ name: "login", perSecond: 1, burst: 3 }, () => now);
    expect([1, 2, 3].map(() => limiter.take("a").allowed)).toEqual([true, true, true]);
    const refused = limiter.take("a");
    expect(refused.allowed).toBe(false);
    expect(rateLimitHeaders(refused)).toEqual({ "ratelimit-policy": '"login";q=3;w=3', ratelimit: '"login";r=0;t=1', "retry-after": "1" });
    expect(limiter.take("b").allowed).toBe(true); // another key is unaffected
    now += 1000;
    expect(limiter.take("a").allowed).toBe(true);
  });
  test("memory stays bounded under address spraying", () => {
    const limiter = new RateLimiter({ name: "x", perSecond: 1, burst: 1 }, () => 0, 100);
    for (let i = 0; i < 1000; i++) limiter.take(`k${i}`);
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(100);
  });
  test("under spraying, the address in use keeps its bucket: the least recently used one goes", () => {
    const limiter = new RateLimiter({ name: "x", perSecond: 1, burst: 1 }, () => 0, 100);
    expect(limiter.take("attacker").allowed).toBe(true);
    for (let i = 0; i < 1000; i++) {
      limiter.take(`spray${i}`);
      if (i % 50 === 0) expect(limiter.take("attacker").allowed).toBe(false); // still limited: not evicted
    }
  });
});
