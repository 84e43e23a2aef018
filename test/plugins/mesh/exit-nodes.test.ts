/**
 * Exit nodes in-process: a node offers 0.0.0.0/0 and ::/0 (together), an operator approves
 * them, and a node chooses the exit node it uses with its own token (Tailscale's model), only
 * where the ACL lets it reach autogroup:internet (deny by default). Its config then carries the
 * default routes on that peer; should the exit node stop being usable, its config says so and
 * its agent blocks rather than send the traffic out directly.
 */
import { describe, expect, test } from "bun:test";
import type { ConfigDocument } from "../../../plugins/mesh/configs.ts";
import { splitExitRoutes } from "../../../plugins/mesh/exits.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { mayReachInternet } from "../../../plugins/mesh/policy.ts";
import { InvalidError } from "../../../src/errors.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const EXIT = ["0.0.0.0/0", "::/0"];

async function network() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const net = `/v1/mesh/orgs/${c.owner.organization}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${c.owner.organization}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
  const key = (await c.send("POST", `${net}/keys`, owner, { json: { reusable: true, tags: ["exit", "laptop", "db"] } })).body.key as string;
  const tokens = new Map<string, string>();
  const ids = new Map<string, string>();
  const enroll = async (name: string, tags: string[], advertise_routes: string[] = []) => {
    c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit
    const res = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, tags, public_key: (await generateKeyPair()).publicKey, advertise_routes } });
    expect(res.status).toBe(200);
    tokens.set(name, res.body.token);
    ids.set(name, res.body.node.id);
    return res.body.node;
  };
  const choose = (name: string, exit_node: string | null) => {
    c.clock.advance(10_000); // the node's own requests are under the same rate limit
    return c.send("POST", "/v1/mesh/node/exit-node", tokens.get(name), { json: { exit_node } });
  };
  const config = async (name: string) => (JSON.parse((await c.send("GET", "/v1/mesh/node/config", tokens.get(name))).text) as ConfigDocument).config;
  const view = async (name: string) => (await c.send("GET", `${net}/nodes/${name}`, owner)).body;
  const version = async () => (await c.send("GET", net, owner)).body.version as number;
  const setAcl = async (rules: unknown[]) => expect((await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules } } })).status).toBe(200);
  const events = (action: string) => (c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = ? ORDER BY seq").all(action) as Array<{ reason: string }>).map((e) => e.reason);
  return { c, owner, net, ids, tokens, enroll, choose, config, view, version, setAcl, events };
}

/** A network where node laptop uses node exit as its exit node: offered, approved, allowed by the ACL, chosen. */
async function laptopThroughExit() {
  const n = await network();
  await n.enroll("exit", ["exit"], EXIT);
  await n.enroll("laptop", ["laptop"]);
  await n.c.send("PATCH", `${n.net}/nodes/exit`, n.owner, { json: { approved_routes: EXIT } });
  await n.setAcl([{ src: ["tag:laptop"], dst: ["autogroup:internet"], ports: ["*"] }]);
  expect((await n.choose("laptop", "exit")).status).toBe(200);
  return n;
}

describe("exit nodes", () => {
  test("offered with the node's routes, approved by an operator, chosen by a node the ACL lets reach autogroup:internet: its config routes everything through it", async () => {
    const n = await network();
    const offered = await n.enroll("exit", ["exit"], ["10.5.0.0/24", ...EXIT]);
    expect(offered).toMatchObject({ advertised_routes: ["10.5.0.0/24", ...EXIT], pending_routes: ["10.5.0.0/24", ...EXIT], exit_node: false });
    await n.enroll("laptop", ["laptop"]);
    await n.enroll("db", ["db"]);
    expect(n.events("mesh.node.enroll").at(0)).toContain("routes advertised 10.5.0.0/24,0.0.0.0/0,::/0 (pending approval)");

    // Not approved yet: not an exit node.
    const early = await n.choose("laptop", "exit");
    expect([early.status, early.body.detail]).toEqual([409, expect.stringContaining("exit is not an exit node now")]);
    const approved = await n.c.send("PATCH", `${n.net}/nodes/exit`, n.owner, { json: { approved_routes: EXIT } });
    expect(approved.body).toMatchObject({ approved_routes: EXIT, pending_routes: ["10.5.0.0/24"], exit_node: true, primary_routes: [] });
    expect(n.events("mesh.node.routes").at(-1)).toBe("approved 0.0.0.0/0,::/0; in effect: 0.0.0.0/0,::/0");

    // Deny by default: no policy lets no node use it, nor does `*`.
    const unruled = await n.choose("laptop", "exit");
    expect([unruled.status, unruled.body.detail]).toEqual([409, expect.stringContaining("does not let this node reach autogroup:internet")]);
    await n.setAcl([{ src: ["*"], dst: ["*"], ports: ["*"] }]);
    expect((await n.choose("laptop", "exit")).status).toBe(409);
    await n.setAcl([{ src: ["*"], dst: ["*"], ports: ["*"] }, { src: ["tag:laptop"], dst: ["autogroup:internet"], ports: ["tcp/443", "icmp"] }]);

    const before = await n.version();
    const chosen = await n.choose("laptop", "exit");
    expect([chosen.status, chosen.body]).toEqual([200, { exit_node: "exit" }]);
    expect(await n.version()).toBeGreaterThan(before);
    expect(n.events("mesh.node.exit")).toEqual([`uses the exit node ${n.ids.get("exit")}`]);
    const laptop = await n.config("laptop");
    expect(laptop.exit).toEqual({ via: "exit" });
    expect(laptop.peers.find((p) => p.name === "exit")!.allowedIps.slice(-2)).toEqual(EXIT);
    expect(laptop.peers.find((p) => p.name === "db")!.allowedIps).not.toContain("0.0.0.0/0");
    const exit = await n.config("exit");
    expect(exit.firewall!.exit).toEqual([{ sources: [expect.stringMatching(/^100\.64\./), expect.stringContaining(":")], destinations: null, ports: [{ protocol: "tcp", from: 443, to: 443 }, { protocol: "icmp", from: null, to: null }] }]);
    expect(await n.view("laptop")).toMatchObject({ exit_via: "exit", exit_via_usable: true });
    // The same choice again: no new version, no event.
    const same = await n.version();
    expect((await n.choose("laptop", "exit")).status).toBe(200);
    expect(await n.version()).toBe(same);
    expect(n.events("mesh.node.exit")).toHaveLength(1);
  });

  test("the agent's report that its host routes through another agent's exit node: shown while the choice stands (exit_refused), without control characters; cleared by a report of null; absent, left as it was; too long, 422", async () => {
    const n = await laptopThroughExit();
    const doc = JSON.parse((await n.c.send("GET", "/v1/mesh/node/config", n.tokens.get("laptop"))).text) as ConfigDocument;
    const publicKey = (await n.view("laptop")).public_key as string;
    const report = (body: object) => {
      n.c.clock.advance(10_000);
      return n.c.send("POST", "/v1/mesh/node/applied", n.tokens.get("laptop"), { json: { version: doc.version, public_key: publicKey, ...body } });
    };
    expect((await n.view("laptop")).exit_refused).toBeNull();
    const before = await n.version();
    expect((await report({ exit_refused: "the agent of wgc-home (node l of network home, pid 7) routes this host's internet\u001b[31m through an exit node" })).status).toBe(200);
    expect((await n.view("laptop")).exit_refused).toBe("the agent of wgc-home (node l of network home, pid 7) routes this host's internet [31m through an exit node");
    expect(await n.version()).toBe(before); // a report, not a config change
    // Nor the invisible ones that reorder or hide what an operator reads (found in review): bidi
    // controls and marks, zero-width characters, the byte-order mark, tag characters.
    expect((await report({ exit_refused: "a\u202eb\u2067c\u061cd\u200fe\u200bf\u200dg\ufeffh\u{E0001}\u{E0041}\u{E007F}i" })).status).toBe(200);
    expect((await n.view("laptop")).exit_refused).toBe("a b c d e f g h i");
    expect((await report({ exit_refused: "the agent of wgc-home (node l of network home, pid 7) routes this host's internet" })).status).toBe(200);
    const list = await n.c.send("GET", `${n.net}/nodes`, n.owner);
    expect(list.body.items.find((node: { name: string }) => node.name === "laptop").exit_refused).toContain("wgc-home");
    expect((await report({})).status).toBe(200);
    expect((await n.view("laptop")).exit_refused).toContain("wgc-home");
    expect((await report({ exit_refused: "x".repeat(1001) })).status).toBe(422);
    // No exit node chosen: nothing to refuse, whatever was last reported.
    expect((await n.choose("laptop", null)).status).toBe(200);
    expect((await n.view("laptop")).exit_refused).toBeNull();
    expect((await n.choose("laptop", "exit")).status).toBe(200);
    expect((await report({ exit_refused: null })).status).toBe(200);
    expect((await n.view("laptop")).exit_refused).toBeNull();
  });

  test("what may not be chosen: a node the ACL does not let, an unknown or non-exit node, itself; an exit node uses none", async () => {
    const n = await network();
    await n.enroll("exit", ["exit"], EXIT);
    await n.enroll("laptop", ["laptop"]);
    await n.enroll("db", ["db"]);
    await n.enroll("exit2", ["exit"], EXIT);
    for (const name of ["exit", "exit2"]) await n.c.send("PATCH", `${n.net}/nodes/${name}`, n.owner, { json: { approved_routes: EXIT } });
    await n.setAcl([{ src: ["tag:laptop", "tag:exit"], dst: ["autogroup:internet"], ports: ["*"] }]);
    const refusals: Array<[string, string, string]> = [
      ["db", "exit", "does not let this node reach autogroup:internet"],
      ["laptop", "nowhere", '"nowhere" is not another node of the network office'],
      ["laptop", "laptop", "is not another node"],
      ["laptop", "db", "db is not an exit node now"],
      ["exit", "laptop", "laptop is not an exit node now"],
      ["exit", "exit2", "This node is an exit node itself"],
    ];
    for (const [who, what, message] of refusals) {
      const res = await n.choose(who, what);
      expect([res.status, res.body.detail]).toEqual([409, expect.stringContaining(message)]);
    }
    expect(n.events("mesh.node.exit")).toEqual([]);
    // No token: 401.
    expect((await n.c.send("POST", "/v1/mesh/node/exit-node", undefined, { json: { exit_node: null } })).status).toBe(401);
  });

  test("fail closed: the exit node's approval revoked (or the ACL's rule removed), the node's config says its choice is not usable and carries no default route; choosing none takes it back", async () => {
    const n = await laptopThroughExit();
    await n.c.send("PATCH", `${n.net}/nodes/exit`, n.owner, { json: { approved_routes: [] } });
    const blocked = await n.config("laptop");
    expect(blocked.exit).toEqual({ via: null });
    expect(blocked.peers.flatMap((p) => p.allowedIps)).not.toContain("0.0.0.0/0");
    expect(await n.view("laptop")).toMatchObject({ exit_via: "exit", exit_via_usable: false });
    expect((await n.config("exit")).firewall!.exit).toBeUndefined();
    // Approved again: usable again, the choice having stayed.
    await n.c.send("PATCH", `${n.net}/nodes/exit`, n.owner, { json: { approved_routes: EXIT } });
    expect((await n.config("laptop")).exit).toEqual({ via: "exit" });
    await n.setAcl([]);
    expect((await n.config("laptop")).exit).toEqual({ via: null });
    expect((await n.choose("laptop", null)).body).toEqual({ exit_node: null });
    expect("exit" in (await n.config("laptop"))).toBe(false);
    expect(n.events("mesh.node.exit")).toEqual([`uses the exit node ${n.ids.get("exit")}`, "uses no exit node"]);
  });

  test("the node withdraws its offer: no longer an exit node; its routes list keeps the rest", async () => {
    const n = await network();
    await n.enroll("exit", ["exit"], ["10.5.0.0/24", ...EXIT]);
    await n.c.send("PATCH", `${n.net}/nodes/exit`, n.owner, { json: { approved_routes: ["10.5.0.0/24", ...EXIT] } });
    expect(await n.view("exit")).toMatchObject({ exit_node: true, primary_routes: ["10.5.0.0/24"] });
    const offer = (routes: string[]) => {
      n.c.clock.advance(10_000); // the node's own requests are under the login endpoints' rate limit
      return n.c.send("POST", "/v1/mesh/node/routes", n.tokens.get("exit"), { json: { routes } });
    };
    expect((await offer(["10.5.0.0/24"])).body).toEqual({ advertised_routes: ["10.5.0.0/24"], approved_routes: ["10.5.0.0/24", ...EXIT], pending_routes: [] });
    expect(await n.view("exit")).toMatchObject({ exit_node: false, primary_routes: ["10.5.0.0/24"] });
    // Offered again: approved already, in effect at once.
    expect((await offer(["10.5.0.0/24", ...EXIT])).status).toBe(200);
    expect(await n.view("exit")).toMatchObject({ exit_node: true });
    expect(n.events("mesh.node.routes").slice(-2)).toEqual(["advertised 10.5.0.0/24; in effect: 10.5.0.0/24", "advertised 10.5.0.0/24,0.0.0.0/0,::/0; in effect: 10.5.0.0/24,0.0.0.0/0,::/0"]);
  });
});

describe("the pieces", () => {
  test("the exit routes come out of a route list together; one alone is refused, naming the field", () => {
    expect(splitExitRoutes(["10.1.0.0/24", "::/0", "0.0.0.0/0"], "routes")).toEqual({ routes: ["10.1.0.0/24"], exit: true });
    expect(splitExitRoutes(["10.1.0.0/24"], "routes")).toEqual({ routes: ["10.1.0.0/24"], exit: false });
    expect(() => splitExitRoutes(["0.0.0.0/0"], "approved_routes")).toThrow(new InvalidError("approved_routes: 0.0.0.0/0 without ::/0: an exit node offers both default routes, 0.0.0.0/0 and ::/0, together", "approved_routes"));
    expect(splitExitRoutes("nonsense", "routes")).toEqual({ routes: "nonsense", exit: false }); // checkRoutes says what it is
  });

  test("autogroup:internet: a node may use an exit node only by a rule naming it in dst with the node in src; no policy and `*` do not", () => {
    const laptop = { name: "laptop", tags: ["eng"] };
    expect(mayReachInternet(null, laptop)).toBe(false);
    expect(mayReachInternet({ rules: [{ src: ["*"], dst: ["*"], ports: ["*"] }] }, laptop)).toBe(false);
    expect(mayReachInternet({ rules: [{ src: ["tag:eng"], dst: ["autogroup:internet"], ports: ["*"] }] }, laptop)).toBe(true);
    expect(mayReachInternet({ rules: [{ src: ["node:laptop"], dst: ["autogroup:internet"], ports: ["tcp/443"] }] }, laptop)).toBe(true);
    expect(mayReachInternet({ rules: [{ src: ["*"], dst: ["autogroup:internet"], ports: ["*"] }] }, laptop)).toBe(true);
    expect(mayReachInternet({ rules: [{ src: ["tag:ops"], dst: ["autogroup:internet"], ports: ["*"] }] }, laptop)).toBe(false);
  });
});
