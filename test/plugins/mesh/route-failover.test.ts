/**
 * HA subnet routers, in-process (found in review: a router that stopped answering kept its
 * routes for good — the control plane did not judge liveness): a router whose agent has not
 * polled for [mesh] router_offline_after_seconds hands each route it serves to an online node
 * offering it, by a change with a new version (peers' AllowedIPs move), audited as
 * mesh.route.failover; it does not take the route back when it comes back. Who serves a route
 * is stored, so a config never changes under its version as time passes.
 */
import { describe, expect, test } from "bun:test";
import type { ConfigDocument } from "../../../plugins/mesh/configs.ts";
import { meshOf } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import type { MeshService } from "../../../plugins/mesh/service.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const LAN = "10.1.0.0/24";
/** [mesh] poll_seconds 5 and router_offline_after_seconds 20: a router is offline 20 s after its last poll. */
const WINDOW_MS = 20_000;

/** A network with routers for LAN (enrolled in this order, each approved) and a laptop reaching it. */
async function routers(names: string[] = ["gw-a", "gw-b"]) {
  const c = await newCitadel({ config: { mesh: { poll_seconds: 5, router_offline_after_seconds: WINDOW_MS / 1000 } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const net = `/v1/mesh/orgs/${c.owner.organization}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${c.owner.organization}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
  const key = (await c.send("POST", `${net}/keys`, owner, { json: { reusable: true } })).body.key as string;
  const tokens = new Map<string, string>();
  const ids = new Map<string, string>();
  for (const name of [...names, "laptop"]) {
    c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit
    const res = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey, advertise_routes: name === "laptop" ? [] : [LAN] } });
    expect(res.status).toBe(200);
    tokens.set(name, res.body.token);
    ids.set(name, res.body.node.id);
  }
  for (const name of names) expect((await c.send("PATCH", `${net}/nodes/${name}`, owner, { json: { approved_routes: [LAN] } })).status).toBe(200);
  const mesh: MeshService = meshOf({ store: c.kernel.store } as never).mesh;
  const document = async (name: string, etag?: string) => {
    const res = await c.send("GET", "/v1/mesh/node/config", tokens.get(name), etag ? { headers: { "if-none-match": etag } } : {});
    return { status: res.status, etag: res.headers.get("etag"), doc: res.status === 200 ? (JSON.parse(res.text) as ConfigDocument) : null };
  };
  return {
    c,
    owner,
    net,
    mesh,
    ids,
    tokens,
    document,
    /** These nodes' agents poll once. */
    poll: async (...who: string[]) => {
      for (const name of who) expect((await document(name)).status).toBe(200);
    },
    /** The peers the laptop routes LAN to. */
    servedBy: async () => (await document("laptop")).doc!.config.peers.filter((p) => p.allowedIps.includes(LAN)).map((p) => p.name),
    view: async (name: string) => (await c.send("GET", `${net}/nodes/${name}`, owner)).body,
    version: async () => (await c.send("GET", net, owner)).body.version as number,
    failovers: () =>
      c.kernel.store.db.query("SELECT actor_kind, reason, resource_id FROM audit_events WHERE action = 'mesh.route.failover' ORDER BY seq").all() as Array<{ actor_kind: string; reason: string; resource_id: string }>,
  };
}

describe("a router gone quiet", () => {
  test("hands its route to the online standby past the window, with a new version, audited; back online, it does not take the route back", async () => {
    const r = await routers();
    await r.poll("gw-a", "gw-b", "laptop");
    expect(await r.servedBy()).toEqual(["gw-a"]);
    expect(await r.view("gw-a")).toMatchObject({ online: true, primary_routes: [LAN], standby_routes: [] });
    expect(await r.view("gw-b")).toMatchObject({ online: true, primary_routes: [], standby_routes: [LAN] });
    const before = await r.version();

    // Within the window: nothing moves, no new version.
    r.c.clock.advance(WINDOW_MS - 5000);
    await r.poll("gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(0);
    expect(await r.version()).toBe(before);

    // Past it: gw-a is offline, gw-b takes the route; the laptop's config moves it to gw-b.
    r.c.clock.advance(6000);
    await r.poll("gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(1);
    expect(await r.version()).toBeGreaterThan(before);
    expect(await r.servedBy()).toEqual(["gw-b"]);
    expect((await r.document("gw-b")).doc!.config.routes).toEqual([LAN]);
    expect(await r.view("gw-a")).toMatchObject({ online: false, primary_routes: [], standby_routes: [LAN] });
    expect(await r.view("gw-b")).toMatchObject({ online: true, primary_routes: [LAN], standby_routes: [] });
    expect(r.failovers()).toEqual([
      { actor_kind: "system", reason: `${LAN}: ${r.ids.get("gw-a")} → ${r.ids.get("gw-b")} (offline: its agent not heard from for 21 s, [mesh] router_offline_after_seconds is 20)`, resource_id: r.ids.get("gw-b")! },
    ]);

    // gw-a comes back: sticky, the route stays with gw-b, and nothing changes.
    const moved = await r.version();
    await r.poll("gw-a", "gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(0);
    expect(await r.servedBy()).toEqual(["gw-b"]);
    expect(await r.view("gw-a")).toMatchObject({ online: true, primary_routes: [], standby_routes: [LAN] });
    expect(await r.version()).toBe(moved);
    // Only gw-b going quiet in turn moves it again, back to gw-a.
    r.c.clock.advance(WINDOW_MS + 1000);
    await r.poll("gw-a", "laptop");
    expect(await r.mesh.checkRouters()).toBe(1);
    expect(await r.servedBy()).toEqual(["gw-a"]);
    expect(r.failovers()).toHaveLength(2);
  });

  test("with no standby online the route stays where it is: everyone quiet, nothing moves and the config keeps its version and ETag", async () => {
    const r = await routers();
    await r.poll("gw-a", "gw-b", "laptop");
    const { etag } = await r.document("laptop");
    const before = await r.version();
    r.c.clock.advance(WINDOW_MS * 3);
    expect(await r.view("gw-a")).toMatchObject({ online: false });
    expect(await r.mesh.checkRouters()).toBe(0);
    expect(await r.version()).toBe(before);
    expect((await r.document("laptop", etag!)).status).toBe(304);
    expect(await r.servedBy()).toEqual(["gw-a"]);
    expect(r.failovers()).toEqual([]);
  });

  test("a standby whose approval was revoked does not take the route: it no longer offers it", async () => {
    const r = await routers();
    await r.poll("gw-a", "gw-b", "laptop");
    expect((await r.c.send("PATCH", `${r.net}/nodes/gw-b`, r.owner, { json: { approved_routes: [] } })).status).toBe(200);
    r.c.clock.advance(WINDOW_MS + 1000);
    await r.poll("gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(0);
    expect(await r.servedBy()).toEqual(["gw-a"]);
    expect(await r.view("gw-b")).toMatchObject({ online: true, primary_routes: [], standby_routes: [] });
  });

  test("a hand-over (a disable) goes to an online standby before a quiet one enrolled earlier, audited as the operator's; enabled again, the node does not take the route back", async () => {
    const r = await routers(["gw-a", "gw-b", "gw-c"]);
    await r.poll("gw-a", "gw-b", "gw-c", "laptop");
    r.c.clock.advance(WINDOW_MS + 1000);
    await r.poll("gw-a", "gw-c", "laptop");
    expect(await r.mesh.checkRouters()).toBe(0); // gw-a, which serves it, is online
    expect((await r.c.send("PATCH", `${r.net}/nodes/gw-a`, r.owner, { json: { disabled: true } })).status).toBe(200);
    expect(await r.servedBy()).toEqual(["gw-c"]);
    expect(r.failovers()).toEqual([{ actor_kind: "user", reason: `${LAN}: ${r.ids.get("gw-a")} → ${r.ids.get("gw-c")} (disabled)`, resource_id: r.ids.get("gw-c")! }]);
    expect((await r.c.send("PATCH", `${r.net}/nodes/gw-a`, r.owner, { json: { disabled: false } })).status).toBe(200);
    await r.poll("gw-a");
    expect(await r.servedBy()).toEqual(["gw-c"]);
    // Removed, its route's router stays; removing the router hands it over, named "removed".
    expect((await r.c.send("DELETE", `${r.net}/nodes/gw-c`, r.owner)).status).toBe(200);
    expect(await r.servedBy()).toEqual(["gw-a"]);
    expect(r.failovers().at(-1)!.reason).toBe(`${LAN}: ${r.ids.get("gw-c")} → ${r.ids.get("gw-a")} (removed)`);
  });

  test("a router that withdraws the route hands it over, audited as the node's own; the names are the organization's personal data, not in the chain", async () => {
    const r = await routers();
    await r.poll("gw-a", "gw-b", "laptop");
    r.c.clock.advance(5000); // the node's routes are under the login endpoints' rate limit
    expect((await r.c.send("POST", "/v1/mesh/node/routes", r.tokens.get("gw-a"), { json: { routes: [] } })).status).toBe(200);
    expect(await r.servedBy()).toEqual(["gw-b"]);
    const events = r.c.kernel.store.db.query("SELECT actor_kind, reason, subject, personal FROM audit_events WHERE action = 'mesh.route.failover'").all() as Array<{ actor_kind: string; reason: string; subject: string; personal: Uint8Array | null }>;
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor_kind: "service", reason: `${LAN}: ${r.ids.get("gw-a")} → ${r.ids.get("gw-b")} (no longer advertised by it)`, subject: r.c.owner.organization });
    expect(events[0]!.personal).not.toBeNull();
    expect(events[0]!.reason).not.toContain("gw-");
  });
});

describe("judging routers", () => {
  test("not heard from since the start or an unseal, a node counts as online for one window: no router loses its routes to whichever agent polls first", async () => {
    const r = await routers();
    await r.poll("gw-a", "gw-b", "laptop");
    r.c.clock.advance(WINDOW_MS * 3);
    r.c.kernel.seal.seal();
    expect(await r.mesh.checkRouters()).toBe(0); // sealed: nothing is judged
    r.c.kernel.seal.unsealWithKey((r.c.kernel as unknown as { rootKey: Buffer }).rootKey);
    await r.poll("gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(0);
    expect(await r.view("gw-a")).toMatchObject({ online: true });
    r.c.clock.advance(WINDOW_MS + 1000);
    await r.poll("gw-b", "laptop");
    expect(await r.mesh.checkRouters()).toBe(1);
    expect(await r.servedBy()).toEqual(["gw-b"]);
  });

  test("last_seen_at follows the polls, written at most once a minute (the poll itself writes nothing)", async () => {
    const r = await routers();
    const stored = () => (r.c.kernel.store.db.query("SELECT last_seen_at FROM mesh_nodes WHERE name = 'laptop'").get() as { last_seen_at: number }).last_seen_at;
    const enrolled = stored();
    r.c.clock.advance(5000);
    await r.poll("laptop");
    await r.mesh.checkRouters();
    expect(stored()).toBe(enrolled);
    // The view shows the poll all the same.
    expect((await r.view("laptop")).last_seen_at).toBe(new Date(r.c.clock.now()).toISOString());
    r.c.clock.advance(60_000);
    await r.poll("laptop");
    await r.mesh.checkRouters();
    expect(stored()).toBe(r.c.clock.now());
  });
});
