import { describe, expect, test } from "bun:test";
import { InvalidError } from "../../../src/errors.ts";
import { checkRoutes, electPrimaries, MAX_ROUTES_PER_NODE, pendingRoutes, primaryRoutes, routesInEffect, type RouteCandidate } from "../../../plugins/mesh/routes.ts";

const POOLS = ["100.64.0.0/16", "fd7a:115c:a1e0::/48"];

/** The InvalidError checkRoutes throws for `list`, as message and field. */
function refusal(list: unknown): { message: string; field: string | undefined } {
  try {
    checkRoutes(list, "routes", POOLS);
  } catch (error) {
    if (error instanceof InvalidError) return { message: error.message, field: error.field };
    throw error;
  }
  throw new Error(`${JSON.stringify(list)} was accepted`);
}

describe("checking routes", () => {
  test("canonical: unique, IPv4 first, in numeric order, IPv6 in its shortest form", () => {
    expect(checkRoutes(["fd00:0001::/64", "192.168.1.0/24", "10.1.0.0/16", "192.168.1.0/24", "10.0.0.0/8"], "routes", POOLS)).toEqual(["10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "fd00:1::/64"]);
    expect(checkRoutes([], "routes", POOLS)).toEqual([]);
  });

  test("a prefix with host bits set is not a network address: refused, the network address suggested", () => {
    expect(refusal(["10.1.0.5/24"])).toEqual({ message: 'routes[0]: "10.1.0.5/24" is not a network address (host bits are set): did you mean 10.1.0.0/24?', field: "routes[0]" });
    expect(refusal(["10.0.0.0/8", "fd00::1/64"]).message).toContain("did you mean fd00::/64?");
  });

  test("what is no prefix at all is refused, an address alone too (a route is a network)", () => {
    expect(refusal(["office-lan"]).message).toContain('"office-lan" is not a prefix');
    expect(refusal(["10.1.0.5"]).message).toContain("is not a prefix");
    expect(refusal(["10.1.0.0/33"]).message).toContain("is not a prefix");
    expect(refusal([7]).message).toContain("expected a prefix");
    expect(refusal("10.1.0.0/24").message).toContain("a list of prefixes");
  });

  test("default routes are no subnet routes: an exit node offers them, together (exits.ts takes them out first)", () => {
    for (const route of ["0.0.0.0/0", "::/0"]) expect(refusal([route]).message).toContain("is a default route, not a subnet route: an exit node offers 0.0.0.0/0 and ::/0 together");
  });

  test("a prefix overlapping the network's own pools, inside or around them, is refused", () => {
    expect(refusal(["100.64.3.0/24"]).message).toBe("routes[0]: 100.64.3.0/24 overlaps the network's own addresses (100.64.0.0/16): they are its nodes'");
    expect(refusal(["100.0.0.0/8"]).message).toContain("overlaps the network's own addresses (100.64.0.0/16)");
    expect(refusal(["fd7a:115c:a1e0:5::/64"]).message).toContain("(fd7a:115c:a1e0::/48)");
    // Next to them is fine.
    expect(checkRoutes(["100.65.0.0/16"], "routes", POOLS)).toEqual(["100.65.0.0/16"]);
  });

  test("a default route in pieces is refused: IPv4 shorter than /8, IPv6 shorter than /16 (found in review)", () => {
    for (const route of ["128.0.0.0/1", "0.0.0.0/1", "64.0.0.0/2", "10.0.0.0/7"]) expect(refusal([route]).message).toContain("is shorter than /8 for IPv4: that much of the internet through one node is an exit node in parts (offer 0.0.0.0/0 and ::/0 for an exit node");
    for (const route of ["::/1", "8000::/1", "2000::/3", "fd00::/8", "fd00::/15"]) expect(refusal([route]).message).toContain("is shorter than /16 for IPv6");
    expect(checkRoutes(["10.0.0.0/8", "fd00::/16"], "routes", POOLS)).toEqual(["10.0.0.0/8", "fd00::/16"]);
  });

  test.each([
    ["unspecified", ["0.0.0.0/8", "0.0.0.0/32", "::/128"], "unspecified"],
    ["loopback", ["127.0.0.0/8", "127.0.0.1/32", "::1/128"], "loopback"],
    ["link-local, the metadata address among them", ["169.254.0.0/16", "169.254.169.254/32", "fe80::/16", "fe80::/64"], "link-local"],
    ["multicast", ["224.0.0.0/8", "239.1.2.0/24", "ff00::/16", "ff02::/16"], "multicast"],
    ["broadcast", ["255.255.255.255/32", "255.0.0.0/8"], "broadcast"],
    ["IPv4-mapped", ["::ffff:0:0/96", "::ffff:10.1.0.0/120"], "IPv4-mapped"],
    ["a range holding some of them", ["::/16"], "overlaps ::/128"],
  ])("%s addresses are refused, 422 naming the entry (found in review)", (_, routes, what) => {
    for (const route of routes) {
      const { message, field } = refusal(["10.1.0.0/24", route]);
      expect(message).toContain(what);
      expect(message).toContain("which no node routes for the mesh");
      expect(field).toBe("routes[1]");
    }
  });

  test("an IPv4-mapped prefix is told the IPv4 prefix it spells", () => {
    expect(refusal(["::ffff:10.1.0.0/120"]).message).toBe("routes[0]: ::ffff:10.1.0.0/120 overlaps ::ffff:0:0/96, IPv4-mapped addresses, which no node routes for the mesh (write it as 10.1.0.0/24)");
  });

  test("a prefix overlapping another network of the organization is refused, naming it (found in review)", () => {
    const others = [{ network: "lab", pool: "100.65.0.0/16" }, { network: "lab", pool: "fd7a:115c:b000::/48" }];
    expect(() => checkRoutes(["100.65.4.0/24"], "routes", POOLS, others)).toThrow("routes[0]: 100.65.4.0/24 overlaps the addresses of the organization's network lab (100.65.0.0/16): they are its nodes'");
    expect(() => checkRoutes(["fd7a:115c:b000::/40"], "routes", POOLS, others)).toThrow("network lab (fd7a:115c:b000::/48)");
    expect(checkRoutes(["100.66.0.0/16"], "routes", POOLS, others)).toEqual(["100.66.0.0/16"]);
  });

  test("at most MAX_ROUTES_PER_NODE per node", () => {
    const many = Array.from({ length: MAX_ROUTES_PER_NODE + 1 }, (_, i) => `10.${i}.0.0/16`);
    expect(refusal(many).message).toBe(`routes: ${MAX_ROUTES_PER_NODE + 1} routes, at most ${MAX_ROUTES_PER_NODE} per node`);
    expect(checkRoutes(many.slice(1), "routes", POOLS)).toHaveLength(MAX_ROUTES_PER_NODE);
  });
});

describe("routes in effect and who serves them", () => {
  test("in effect: advertised and approved; pending: advertised only; approved alone is nothing yet", () => {
    const advertised = ["10.1.0.0/24", "10.2.0.0/24"];
    const approved = ["10.2.0.0/24", "10.3.0.0/24"];
    expect(routesInEffect(advertised, approved)).toEqual(["10.2.0.0/24"]);
    expect(pendingRoutes(advertised, approved)).toEqual(["10.1.0.0/24"]);
  });

  test("a route several nodes offer is served by the first candidate; the others stand by, and take over when it leaves", () => {
    const first = { routes: ["10.1.0.0/24", "10.2.0.0/24"] };
    const second = { routes: ["10.1.0.0/24", "10.9.0.0/24"] };
    expect(primaryRoutes([first, second])).toEqual([["10.1.0.0/24", "10.2.0.0/24"], ["10.9.0.0/24"]]);
    expect(primaryRoutes([second])).toEqual([["10.1.0.0/24", "10.9.0.0/24"]]);
  });
});

describe("the routers stored (found in review: a router that stopped answering kept its routes, there was no failover)", () => {
  test("a route with a stored router is served by it while it offers the route, else by the candidate enrolled first", () => {
    const a = { id: "a", routes: ["10.1.0.0/24"] };
    const b = { id: "b", routes: ["10.1.0.0/24", "10.2.0.0/24"] };
    expect(primaryRoutes([a, b], new Map([["10.1.0.0/24", "b"]]))).toEqual([[], ["10.1.0.0/24", "10.2.0.0/24"]]);
    // A stored router that no longer offers it (disabled, revoked, a spoke): the first candidate.
    expect(primaryRoutes([a, { ...b, routes: ["10.2.0.0/24"] }], new Map([["10.1.0.0/24", "b"]]))).toEqual([["10.1.0.0/24"], ["10.2.0.0/24"]]);
    expect(primaryRoutes([a, b], new Map([["10.1.0.0/24", "gone"]]))).toEqual([["10.1.0.0/24"], ["10.2.0.0/24"]]);
  });
});

describe("electing the routers of routes several nodes offer, on liveness", () => {
  const LAN = "10.1.0.0/24";
  const router = (id: string, online: boolean, routes = [LAN]): RouteCandidate => ({ id, routes, online });
  const elect = (candidates: RouteCandidate[], stored: Record<string, string> = {}) => electPrimaries(candidates, new Map(Object.entries(stored)));

  test("first served: the candidate enrolled first, unless it is offline and another is online", () => {
    expect(elect([router("a", true), router("b", true)])).toEqual({ primaries: new Map([[LAN, "a"]]), changes: [{ route: LAN, from: null, to: "a", why: "elected" }] });
    expect(elect([router("a", false), router("b", true)]).primaries.get(LAN)).toBe("b");
    // None online: enrolled first, as before liveness counted.
    expect(elect([router("a", false), router("b", false)]).primaries.get(LAN)).toBe("a");
  });

  test("a router online keeps its routes: nothing changes", () => {
    expect(elect([router("a", true), router("b", true)], { [LAN]: "a" }).changes).toEqual([]);
    expect(elect([router("a", true), router("b", true)], { [LAN]: "b" }).changes).toEqual([]);
  });

  test("a router offline hands its route to the first online candidate offering it", () => {
    const { primaries, changes } = elect([router("a", false), router("b", false), router("c", true)], { [LAN]: "a" });
    expect(primaries.get(LAN)).toBe("c");
    expect(changes).toEqual([{ route: LAN, from: "a", to: "c", why: "offline" }]);
  });

  test("sticky: the router that failed comes back online and does not take its route back", () => {
    const failedOver = elect([router("a", false), router("b", true)], { [LAN]: "a" }).primaries;
    expect(failedOver.get(LAN)).toBe("b");
    const back = elect([router("a", true), router("b", true)], Object.fromEntries(failedOver));
    expect(back.changes).toEqual([]);
    expect(back.primaries.get(LAN)).toBe("b");
    // Only its new router going quiet in turn moves it again.
    expect(elect([router("a", true), router("b", false)], Object.fromEntries(failedOver)).changes).toEqual([{ route: LAN, from: "b", to: "a", why: "offline" }]);
  });

  test("no standby online: the route stays with the router gone quiet (another silent node would help no one)", () => {
    expect(elect([router("a", false), router("b", false)], { [LAN]: "a" }).changes).toEqual([]);
    expect(elect([router("a", false)], { [LAN]: "a" }).changes).toEqual([]);
  });

  test("a standby whose approval was revoked offers the route no more: it is not taken over by it", () => {
    // b's approval revoked: the route is not in effect on it (routesInEffect), so it is no candidate for it.
    const revoked = router("b", true, ["10.9.0.0/24"]);
    const { primaries, changes } = elect([router("a", false), revoked], { [LAN]: "a" });
    expect(primaries.get(LAN)).toBe("a");
    expect(changes).toEqual([{ route: "10.9.0.0/24", from: null, to: "b", why: "elected" }]);
  });

  test("a router that no longer offers a route (disabled, removed, a spoke, its approval revoked) hands it over, to an online candidate first", () => {
    expect(elect([router("b", false), router("c", true)], { [LAN]: "a" }).changes).toEqual([{ route: LAN, from: "a", to: "c", why: "gone" }]);
    expect(elect([router("b", false), router("c", false)], { [LAN]: "a" }).changes).toEqual([{ route: LAN, from: "a", to: "b", why: "gone" }]);
  });

  test("a route nobody offers any more is served by nobody; each route is elected on its own, the changes in route order", () => {
    expect(elect([router("a", true, ["10.2.0.0/24"])], { [LAN]: "a", "10.2.0.0/24": "a" }).changes).toEqual([{ route: LAN, from: "a", to: null, why: "unserved" }]);
    const both = elect([router("a", false, ["10.2.0.0/24", LAN]), router("b", true, ["10.2.0.0/24"]), router("c", false, [LAN])], { [LAN]: "a", "10.2.0.0/24": "a" });
    expect(both.changes).toEqual([{ route: "10.2.0.0/24", from: "a", to: "b", why: "offline" }]);
    expect(both.primaries).toEqual(new Map([["10.2.0.0/24", "b"], [LAN, "a"]]));
  });
});
