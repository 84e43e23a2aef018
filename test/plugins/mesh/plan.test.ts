import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { MAX_RELAY_ALLOWED_IPS, MeshPlan, planNetwork, planNode, type PresharedKeyOf } from "../../../plugins/mesh/plan.ts";
import { AclMatrix } from "../../../plugins/mesh/policy.ts";
import { renderWgQuick } from "../../../plugins/mesh/render.ts";
import type { AclPolicy, AclRule, NodeConfig, PeerConfig } from "../../../plugins/mesh/types.ts";
import { syntheticNetwork } from "../../../scripts/bench/mesh.ts";
import { meshNetwork, meshNode } from "./fixtures.ts";

const v4 = (host: number) => `100.64.${host >> 8}.${host & 255}`;
const v6 = (host: number) => `fd7a:115c:a1e0::${host.toString(16)}`;
const own = (host: number) => [`${v4(host)}/32`, `${v6(host)}/128`];
const rule = (src: string[], dst: string[], ports: string[] = ["*"]): AclRule => ({ src, dst, ports });
const NO_ACL = null; // no policy: every node reaches every node

const peerNames = (config: NodeConfig | undefined) => config!.peers.map((p) => p.name);
const peerOf = (config: NodeConfig | undefined, name: string): PeerConfig => {
  const peer = config!.peers.find((p) => p.name === name);
  if (!peer) throw new Error(`${config!.node.name} has no peer ${name}`);
  return peer;
};
const byName = (configs: Map<string, NodeConfig>, name: string) => configs.get(`id-${name}`);

describe("full mesh without ACL", () => {
  // Given out of name order, with one endpoint carrying its own port.
  const nodes = [
    meshNode("web", 3, { endpoint: "198.51.100.3:51820" }),
    meshNode("db", 2, { endpoint: "[2001:db8::2]:41641" }),
    meshNode("laptop", 10, { nextPublicKey: "pub-laptop-next" }),
    meshNode("api", 9, { endpoint: "api.example.net:51820" }),
  ];
  const configs = planNetwork(meshNetwork(), nodes, NO_ACL);

  test("one node's whole config", () => {
    expect(byName(configs, "laptop")).toEqual({
      network: { id: "net-1", name: "office", interfaceName: "wgc-office" },
      node: { id: "id-laptop", name: "laptop" },
      addresses: ["100.64.0.10/16", "fd7a:115c:a1e0::a/48"],
      listenPort: 51820,
      mtu: 1380,
      dns: ["100.64.0.53"],
      searchDomain: "office.mesh.internal",
      peers: [
        { name: "api", publicKey: "pub-api", nextPublicKey: null, presharedKey: null, allowedIps: own(9), endpoint: "api.example.net:51820", keepalive: 25 },
        { name: "db", publicKey: "pub-db", nextPublicKey: null, presharedKey: null, allowedIps: own(2), endpoint: "[2001:db8::2]:41641", keepalive: 25 },
        { name: "web", publicKey: "pub-web", nextPublicKey: null, presharedKey: null, allowedIps: own(3), endpoint: "198.51.100.3:51820", keepalive: 25 },
      ],
      firewall: null,
    });
  });

  test("the map is in name order and every node peers with every other, never itself", () => {
    expect([...configs.keys()]).toEqual(["id-api", "id-db", "id-laptop", "id-web"]);
    for (const config of configs.values()) {
      expect(peerNames(config)).toEqual(["api", "db", "laptop", "web"].filter((n) => n !== config.node.name));
    }
  });

  test("a node listens on its endpoint's port when it has one", () => {
    expect(byName(configs, "db")!.listenPort).toBe(41641);
    expect(byName(configs, "web")!.listenPort).toBe(51820);
    expect(byName(configs, "laptop")!.listenPort).toBe(51820);
  });

  test("a node's own listen port comes first, then its endpoint's port, then the network's", () => {
    const ported = planNetwork(
      meshNetwork({ listenPort: 51900 }),
      [
        meshNode("forwarded", 1, { endpoint: "203.0.113.7:443", listenPort: 51820 }),
        meshNode("second-net", 2, { listenPort: 51821 }),
        meshNode("public", 3, { endpoint: "198.51.100.3:41641", listenPort: null }),
        meshNode("nat", 4),
      ],
      NO_ACL,
    );
    expect(["forwarded", "second-net", "public", "nat"].map((name) => byName(ported, name)!.listenPort)).toEqual([51820, 51821, 41641, 51900]);
    // Peers still send to the endpoint: the listen port is the node's own side of a port forward.
    expect(peerOf(byName(ported, "nat"), "forwarded").endpoint).toBe("203.0.113.7:443");
  });

  test("a rotating peer carries its next key to every config", () => {
    for (const name of ["api", "db", "web"]) expect(peerOf(byName(configs, name), "laptop").nextPublicKey).toBe("pub-laptop-next");
  });

  test("keepalive 0 and no DNS pass through", () => {
    const quiet = planNetwork(meshNetwork({ keepalive: 0, dns: [], searchDomain: null }), nodes, NO_ACL);
    const config = byName(quiet, "api")!;
    expect(config.peers.every((p) => p.keepalive === 0)).toBe(true);
    expect(config.dns).toEqual([]);
    expect(config.searchDomain).toBeNull();
  });

  test("shared parts are frozen, so one config cannot corrupt another", () => {
    const peer = peerOf(byName(configs, "api"), "db");
    expect(peer).toBe(peerOf(byName(configs, "web"), "db"));
    expect(() => {
      peer.allowedIps.push("0.0.0.0/0");
    }).toThrow();
    expect(() => {
      (peer as { endpoint: string | null }).endpoint = null;
    }).toThrow();
  });

  test("addresses are written canonically", () => {
    const odd = planNetwork(meshNetwork({ ipv6: "fd7a:115c:a1e0:0::/48" }), [meshNode("a", 1, { ipv6: "FD7A:115C:A1E0:0:0:0:0:1" }), meshNode("b", 2)], NO_ACL);
    expect(byName(odd, "a")!.addresses).toEqual(["100.64.0.1/16", "fd7a:115c:a1e0::1/48"]);
    expect(peerOf(byName(odd, "b"), "a").allowedIps).toEqual(own(1));
  });
});

describe("mesh with an ACL", () => {
  const nodes = [
    meshNode("laptop", 10, { tags: ["eng"] }),
    meshNode("ci", 9, { tags: ["eng", "ci"] }),
    meshNode("db1", 20, { tags: ["db"] }),
    meshNode("db2", 21, { tags: ["db"] }),
    meshNode("printer", 30),
    meshNode("backup", 40, { tags: ["db"] }),
  ];

  test("tag rule: peers in either direction, firewall on the receiving side", () => {
    const configs = planNetwork(meshNetwork(), nodes, { rules: [rule(["tag:eng"], ["tag:db"], ["tcp/5432"])] });
    expect(peerNames(byName(configs, "laptop"))).toEqual(["backup", "db1", "db2"]);
    expect(peerNames(byName(configs, "db1"))).toEqual(["ci", "laptop"]); // replies need the tunnel
    expect(peerNames(byName(configs, "printer"))).toEqual([]);
    expect(byName(configs, "laptop")!.firewall).toEqual({ input: [], forward: null });
    expect(byName(configs, "printer")!.firewall).toEqual({ input: [], forward: null });
    expect(byName(configs, "db1")!.firewall).toEqual({
      input: [
        {
          // numeric order: .9 before .10 (a string sort would not do that), IPv4 first
          sources: [v4(9), v4(10), v6(9), v6(10)],
          destinations: null,
          ports: [{ protocol: "tcp", from: 5432, to: 5432 }],
        },
      ],
      forward: null,
    });
  });

  test("node rules, a rule onto its own members, and a rule whose only source is the node itself", () => {
    const configs = planNetwork(meshNetwork(), nodes, {
      rules: [
        rule(["node:printer"], ["node:backup"], ["udp/9100"]),
        rule(["tag:db"], ["tag:db"], ["22"]), // db nodes talk among themselves
        rule(["node:db1"], ["node:db1"], ["icmp"]), // lets nobody else in: omitted
      ],
    });
    expect(peerNames(byName(configs, "printer"))).toEqual(["backup"]);
    expect(peerNames(byName(configs, "backup"))).toEqual(["db1", "db2", "printer"]);
    expect(peerNames(byName(configs, "db1"))).toEqual(["backup", "db2"]);
    expect(byName(configs, "backup")!.firewall!.input).toEqual([
      { sources: [v4(30), v6(30)], destinations: null, ports: [{ protocol: "udp", from: 9100, to: 9100 }] },
      { sources: [v4(20), v4(21), v6(20), v6(21)], destinations: null, ports: [{ protocol: "any", from: 22, to: 22 }] },
    ]);
    // db1 is in the rule's src and dst: its own addresses are left out of the sources
    expect(byName(configs, "db1")!.firewall!.input).toEqual([
      { sources: [v4(21), v4(40), v6(21), v6(40)], destinations: null, ports: [{ protocol: "any", from: 22, to: 22 }] },
    ]);
  });

  test("port lists are passed through in rule order, one firewall rule per ACL rule", () => {
    const configs = planNetwork(meshNetwork(), nodes, {
      rules: [rule(["tag:eng"], ["node:db1"], ["tcp/8000-8100", "icmp"]), rule(["node:ci"], ["tag:db"], ["udp/53", "*"])],
    });
    const input = byName(configs, "db1")!.firewall!.input;
    expect(input.map((r) => r.ports)).toEqual([
      [
        { protocol: "tcp", from: 8000, to: 8100 },
        { protocol: "icmp", from: null, to: null },
      ],
      [
        { protocol: "udp", from: 53, to: 53 },
        { protocol: "any", from: null, to: null },
      ],
    ]);
    expect(input.map((r) => r.sources)).toEqual([
      [v4(9), v4(10), v6(9), v6(10)],
      [v4(9), v6(9)],
    ]);
  });

  test("a policy without rules: no node peers, every node's firewall drops what the mesh sends it (deny by default; found in review: it allowed all)", () => {
    for (const config of planNetwork(meshNetwork(), nodes, { rules: [] }).values()) expect([config.peers, config.firewall]).toEqual([[], { input: [], forward: null }]);
  });

  test("a wildcard rule: everyone peers, every node filters", () => {
    const configs = planNetwork(meshNetwork(), nodes, { rules: [rule(["*"], ["*"], ["icmp"])] });
    for (const config of configs.values()) {
      expect(config.peers).toHaveLength(nodes.length - 1);
      expect(config.firewall!.input).toHaveLength(1);
      expect(config.firewall!.input[0]!.sources).toHaveLength(2 * (nodes.length - 1));
    }
  });
});

describe("hub and spoke", () => {
  // hub-b is given first; hub-a sorts first by name and relays.
  const hubs = [meshNode("hub-b", 2, { hub: true, endpoint: "203.0.113.2:51820" }), meshNode("hub-a", 1, { hub: true, endpoint: "203.0.113.1:51820" })];
  const spokes = [
    meshNode("s-eng1", 10, { tags: ["eng"] }),
    meshNode("s-eng2", 9, { tags: ["eng"] }),
    meshNode("s-db", 16, { tags: ["db"] }),
    meshNode("s-idle", 17),
  ];
  const network = meshNetwork({ topology: "hub" });

  test("the hub enrolled first relays, whatever the names (found in review: a hub key's holder could name their node to come first)", () => {
    const early = meshNode("hub-z", 2, { hub: true, endpoint: "203.0.113.2:51820", enrolledAt: 1_000 });
    const late = meshNode("hub-a", 1, { hub: true, endpoint: "203.0.113.1:51820", enrolledAt: 2_000 });
    const spoke = byName(planNetwork(network, [...spokes, late, early], NO_ACL), "s-eng1")!;
    expect(peerOf(spoke, "hub-z").allowedIps).toContain(`${v4(16)}/32`); // relays for the other spokes
    expect(peerOf(spoke, "hub-a").allowedIps).toEqual([`${v4(1)}/32`, `${v6(1)}/128`]); // itself only
  });

  test("no ACL: spokes peer with the hubs only; the relay routes the other spokes, in numeric order", () => {
    const configs = planNetwork(network, [...spokes, ...hubs], NO_ACL);
    const spoke = byName(configs, "s-eng1")!;
    expect(peerNames(spoke)).toEqual(["hub-a", "hub-b"]);
    expect(peerOf(spoke, "hub-a")).toEqual({
      name: "hub-a",
      publicKey: "pub-hub-a",
      nextPublicKey: null,
      presharedKey: null,
      allowedIps: [v4(1), v4(9), v4(16), v4(17), v6(1), v6(9), v6(16), v6(17)].map((a) => (a.includes(":") ? `${a}/128` : `${a}/32`)),
      endpoint: "203.0.113.1:51820",
      keepalive: 25,
    });
    expect(peerOf(spoke, "hub-b").allowedIps).toEqual(own(2));
    expect(spoke.firewall).toBeNull();
    for (const hub of ["hub-a", "hub-b"]) {
      expect(peerNames(byName(configs, hub))).toEqual(["hub-a", "hub-b", "s-db", "s-eng1", "s-eng2", "s-idle"].filter((n) => n !== hub));
      expect(byName(configs, hub)!.firewall).toBeNull();
    }
    expect(peerOf(byName(configs, "hub-a"), "s-eng1").allowedIps).toEqual(own(10));
  });

  test("a spoke that talks with more than 15 other spokes routes the network's prefixes through the relay", () => {
    const crowd = Array.from({ length: 17 }, (_, i) => meshNode(`s${String(i).padStart(2, "0")}`, 100 + i));
    const relayRoutes = (spokeCount: number, policy: AclPolicy | null, spoke = "s00") =>
      peerOf(byName(planNetwork(network, [...hubs, ...crowd.slice(0, spokeCount)], policy), spoke), "hub-a").allowedIps;
    // 15 other spokes and the hub itself: 32 AllowedIPs, still listed one by one
    const listed = relayRoutes(16, NO_ACL);
    expect(listed).toHaveLength(MAX_RELAY_ALLOWED_IPS);
    expect(listed.slice(0, 3)).toEqual([`${v4(1)}/32`, `${v4(101)}/32`, `${v4(102)}/32`]); // not s00 itself
    expect(listed[16]).toBe(`${v6(1)}/128`);
    expect(listed).not.toContain(`${v4(2)}/32`); // hub-b is a peer of its own
    // 16 other spokes: 34, so the coarse route
    expect(relayRoutes(17, NO_ACL)).toEqual(["100.64.0.0/16", "fd7a:115c:a1e0::/48"]);
    // the policy decides what counts: s01 only talks with s00
    const oneWay = { rules: [rule(["node:s00"], ["*"])] };
    expect(relayRoutes(17, oneWay)).toEqual(["100.64.0.0/16", "fd7a:115c:a1e0::/48"]);
    expect(relayRoutes(17, oneWay, "s01")).toEqual([`${v4(1)}/32`, `${v4(100)}/32`, `${v6(1)}/128`, `${v6(100)}/128`]);
  });

  test("with an ACL: relay routes only the spokes talked with, hubs forward per rule, hubs peer only when allowed", () => {
    const configs = planNetwork(network, [...spokes, ...hubs], { rules: [rule(["tag:eng"], ["tag:db"], ["tcp/5432"])] });
    const eng1 = byName(configs, "s-eng1")!;
    expect(peerNames(eng1)).toEqual(["hub-a", "hub-b"]);
    expect(peerOf(eng1, "hub-a").allowedIps).toEqual([`${v4(1)}/32`, `${v4(16)}/32`, `${v6(1)}/128`, `${v6(16)}/128`]);
    expect(peerOf(byName(configs, "s-db"), "hub-a").allowedIps).toEqual([`${v4(1)}/32`, `${v4(9)}/32`, `${v4(10)}/32`, `${v6(1)}/128`, `${v6(9)}/128`, `${v6(10)}/128`]);
    expect(peerOf(byName(configs, "s-idle"), "hub-a").allowedIps).toEqual(own(1));
    expect(eng1.firewall).toEqual({ input: [], forward: null });
    expect(byName(configs, "s-db")!.firewall).toEqual({
      input: [{ sources: [v4(9), v4(10), v6(9), v6(10)], destinations: null, ports: [{ protocol: "tcp", from: 5432, to: 5432 }] }],
      forward: null,
    });
    // Hubs relay every spoke whatever the policy, but the rule does not let them reach each other.
    expect(peerNames(byName(configs, "hub-a"))).toEqual(["s-db", "s-eng1", "s-eng2", "s-idle"]);
    for (const hub of ["hub-a", "hub-b"]) {
      expect(byName(configs, hub)!.firewall).toEqual({
        input: [],
        forward: [{ sources: [v4(9), v4(10), v6(9), v6(10)], destinations: [v4(16), v6(16)], ports: [{ protocol: "tcp", from: 5432, to: 5432 }] }],
      });
    }
  });

  test("a policy without rules: spokes still reach the hubs' tunnels, but nothing is forwarded or let in", () => {
    const configs = planNetwork(network, [...spokes, ...hubs], { rules: [] });
    expect(peerOf(byName(configs, "s-eng1"), "hub-a").allowedIps).toEqual(own(1));
    for (const config of configs.values()) expect(config.firewall).toEqual({ input: [], forward: config.node.name.startsWith("hub-") ? [] : null });
  });

  test("hubs forward only between others, and peer with each other when a rule allows it", () => {
    const configs = planNetwork(network, [...spokes, ...hubs], { rules: [rule(["*"], ["*"], ["icmp"]), rule(["node:hub-a"], ["node:s-db"])] });
    const forward = byName(configs, "hub-a")!.firewall!.forward!;
    // rule 2 has only hub-a as source: nothing to forward for hub-a, omitted
    expect(forward).toHaveLength(1);
    expect(forward[0]!.sources).not.toContain(v4(1));
    expect(forward[0]!.destinations).not.toContain(v6(1));
    expect(forward[0]!.sources).toContain(v4(2));
    // hub-b forwards for hub-a as a source
    expect(byName(configs, "hub-b")!.firewall!.forward!.map((r) => r.sources)).toEqual([
      [v4(1), v4(9), v4(10), v4(16), v4(17), v6(1), v6(9), v6(10), v6(16), v6(17)],
      [v4(1), v6(1)],
    ]);
    expect(peerNames(byName(configs, "hub-a"))).toContain("hub-b");
  });

  test("no hub at all: spokes have no peers", () => {
    const configs = planNetwork(network, spokes, NO_ACL);
    for (const config of configs.values()) expect(config.peers).toEqual([]);
  });
});

describe("preshared keys", () => {
  const nodes = [meshNode("a", 1), meshNode("b", 2), meshNode("c", 3), meshNode("hub", 4, { hub: true })];
  /** A pair key from the two ids in sorted order, none for pairs with c. */
  const pairKey: PresharedKeyOf = (x, y) => (x.name === "c" || y.name === "c" ? null : `psk:${[x.id, y.id].sort().join("+")}`);

  test.each(["mesh", "hub"] as const)("%s: both ends of a pair hold the same key", (topology) => {
    const configs = planNetwork(meshNetwork({ topology }), nodes, NO_ACL, pairKey);
    let pairs = 0;
    for (const config of configs.values()) {
      for (const peer of config.peers) {
        const back = peerOf(configs.get(`id-${peer.name}`), config.node.name);
        expect(back.presharedKey).toBe(peer.presharedKey);
        expect(peer.presharedKey).toBe(config.node.name === "c" || peer.name === "c" ? null : `psk:${[config.node.id, `id-${peer.name}`].sort().join("+")}`);
        pairs++;
      }
    }
    expect(pairs).toBe(topology === "mesh" ? 12 : 6);
  });

  test("the callback is asked with (self, peer)", () => {
    const calls: string[] = [];
    planNode(meshNetwork(), nodes, NO_ACL, "id-b", (x, y) => {
      calls.push(`${x.name}>${y.name}`);
      return null;
    });
    expect(calls).toEqual(["b>a", "b>c", "b>hub"]);
  });
});

describe("key rotation", () => {
  test("the next key renders as a second [Peer] without AllowedIPs, same PSK", () => {
    const nodes = [meshNode("a", 1, { nextPublicKey: "pub-a-next", endpoint: "198.51.100.1:51820" }), meshNode("b", 2)];
    const configs = planNetwork(meshNetwork(), nodes, NO_ACL, () => "psk-ab");
    const text = renderWgQuick(byName(configs, "b")!);
    expect(text).toContain(
      [
        "# a",
        "[Peer]",
        "PublicKey = pub-a",
        "PresharedKey = psk-ab",
        "AllowedIPs = 100.64.0.1/32, fd7a:115c:a1e0::1/128",
        "Endpoint = 198.51.100.1:51820",
        "PersistentKeepalive = 25",
        "",
        "# a (next key)",
        "[Peer]",
        "PublicKey = pub-a-next",
        "PresharedKey = psk-ab",
        "Endpoint = 198.51.100.1:51820",
        "PersistentKeepalive = 25",
      ].join("\n"),
    );
    expect(renderWgQuick(byName(configs, "a")!)).not.toContain("next key");
  });
});

describe("planNode and planNetwork", () => {
  test("planNode refuses an id that is not in the network", () => {
    expect(() => planNode(meshNetwork(), [meshNode("a", 1)], NO_ACL, "id-zz")).toThrow("node id-zz is not in network net-1");
  });

  test("bad addresses are refused, naming the node", () => {
    expect(() => planNetwork(meshNetwork(), [meshNode("a", 1, { ipv4: "100.64.0.300" })], NO_ACL)).toThrow(`node a ipv4: "100.64.0.300" is not an IPv4 address`);
    expect(() => planNetwork(meshNetwork(), [meshNode("a", 1, { ipv6: "100.64.0.1" })], NO_ACL)).toThrow(`node a ipv6`);
    expect(() => planNetwork(meshNetwork({ ipv4: "100.64.0.1/16" }), [], NO_ACL)).toThrow(`network net-1 ipv4`);
  });

  // Random networks: nodes with random tags and hub flags, random rules.
  const tagNames = ["a", "b", "c"];
  const networkArb = fc
    .record({
      topology: fc.constantFrom("mesh" as const, "hub" as const),
      nodes: fc.array(fc.record({ tags: fc.subarray(tagNames), hub: fc.nat(4).map((v) => v === 0), rotating: fc.boolean() }), { minLength: 1, maxLength: 25 }),
      rules: fc.array(
        fc.record({
          src: fc.array(fc.oneof(fc.constant("*"), fc.constantFrom(...tagNames).map((t) => `tag:${t}`), fc.nat(24).map((i) => `node:n${i}`)), { minLength: 1, maxLength: 2 }),
          dst: fc.array(fc.oneof(fc.constant("*"), fc.constantFrom(...tagNames).map((t) => `tag:${t}`), fc.nat(24).map((i) => `node:n${i}`)), { minLength: 1, maxLength: 2 }),
          ports: fc.array(fc.constantFrom("*", "22", "tcp/443", "udp/53", "icmp"), { minLength: 1, maxLength: 2 }),
        }),
        { maxLength: 4 },
      ),
      // No policy (everyone reaches everyone) now and then; a policy, even without rules, denies by default.
      none: fc.nat(4).map((v) => v === 0),
      seed: fc.integer(),
    })
    .map(({ topology, nodes, rules, none, seed }) => ({
      network: meshNetwork({ topology }),
      nodes: nodes.map((n, i) => meshNode(`n${i}`, (i * 37) % 250 + 1, { tags: n.tags, hub: n.hub, nextPublicKey: n.rotating ? `next-${i}` : null })),
      policy: none ? null : ({ rules } as AclPolicy),
      seed,
    }));
  const psk: PresharedKeyOf = (x, y) => `k:${[x.id, y.id].sort().join("+")}`;

  test("planNode gives exactly planNetwork's entry; input order does not matter", () => {
    fc.assert(
      fc.property(networkArb, ({ network, nodes, policy, seed }) => {
        const all = planNetwork(network, nodes, policy, psk);
        const shuffled = fc.sample(fc.shuffledSubarray(nodes, { minLength: nodes.length }), { numRuns: 1, seed })[0]!;
        expect(JSON.stringify([...planNetwork(network, shuffled, policy, psk)])).toBe(JSON.stringify([...all]));
        for (const node of nodes) expect(planNode(network, shuffled, policy, node.id, psk)).toEqual(all.get(node.id)!);
      }),
      { numRuns: 80 },
    );
  });

  test("structure: peering is symmetric, mesh peers are exactly who talk, spokes see only hubs", () => {
    fc.assert(
      fc.property(networkArb, ({ network, nodes, policy }) => {
        const configs = planNetwork(network, nodes, policy);
        const plan = new MeshPlan(network, nodes, policy);
        const acl = AclMatrix.compile(policy, plan.nodes);
        const index = new Map(plan.nodes.map((n, i) => [n.name, i]));
        const hubNames = plan.nodes.filter((n) => n.hub).map((n) => n.name);
        for (const config of configs.values()) {
          const self = config.node.name;
          const x = index.get(self)!;
          const names = peerNames(config);
          expect(names).toEqual([...names].sort());
          expect(names).not.toContain(self);
          for (const name of names) expect(peerNames(configs.get(`id-${name}`))).toContain(self);
          const talks = plan.nodes.filter((n, y) => y !== x && (acl.mayReach(x, y) || acl.mayReach(y, x))).map((n) => n.name);
          const isHub = hubNames.includes(self);
          if (network.topology === "mesh") expect(names).toEqual(talks);
          else if (isHub) expect(names).toEqual(plan.nodes.filter((n) => n.name !== self && (!n.hub || talks.includes(n.name))).map((n) => n.name));
          else expect(names).toEqual(hubNames);
          expect(config.firewall === null).toBe(policy === null);
          if (config.firewall) expect(config.firewall.forward !== null).toBe(network.topology === "hub" && isHub);
          for (const peer of config.peers) expect(peer.allowedIps.length === 2 || peer.name === hubNames[0]).toBe(true);
        }
      }),
      { numRuns: 80 },
    );
  });
});

describe("scale", () => {
  // How fast is scripts/bench/mesh.ts's job (issue 8: within 2 s); the test's timeout only
  // catches a runaway (a quadratic render would take minutes).
  test("1,000-node full mesh: every node gets every other node as a peer", () => {
    const { network, nodes, policy } = syntheticNetwork(1000, "mesh");
    expect(policy).toBeNull(); // no policy: everyone reaches everyone (no rules would be no one)
    const configs = planNetwork(network, nodes, policy);
    let bytes = 0;
    for (const config of configs.values()) bytes += Buffer.byteLength(renderWgQuick(config));
    expect(configs.size).toBe(1000);
    expect([...configs.values()].every((c) => c.peers.length === 999)).toBe(true);
    expect(bytes).toBeGreaterThan(150e6);
  }, 30_000);

  test("1,000-node hub network with 20 rules: every relay peer routes what its spoke needs", () => {
    const { network, nodes, policy } = syntheticNetwork(1000, "hub");
    const configs = planNetwork(network, nodes, policy);
    const spoke = configs.get(nodes[10]!.id)!;
    expect(peerNames(spoke)).toEqual(["hub-a", "hub-b", "hub-c"]);
    expect(peerOf(spoke, "hub-a").allowedIps).toEqual(["100.64.0.0/16", "fd7a:115c:a1e0::/48"]);
    expect(configs.get(nodes[0]!.id)!.firewall!.forward).toHaveLength(20);
  });
});

describe("subnet routes", () => {
  const gw = meshNode("gw", 1, { tags: ["gw"], routes: ["10.1.0.0/24", "fd00:1::/64"], enrolledAt: 1 });
  const web = meshNode("web", 2, { tags: ["web"], enrolledAt: 2 });
  const db = meshNode("db", 3, { tags: ["db"], enrolledAt: 3 });
  // Offers one of gw's routes, enrolled later: it stands by.
  const gw2 = meshNode("gw2", 4, { routes: ["10.1.0.0/24", "10.2.0.0/24"], enrolledAt: 4 });
  const nodes = [web, gw2, db, gw];
  const policy: AclPolicy = {
    rules: [rule(["tag:web"], ["10.1.0.0/25"], ["tcp/22"]), rule(["tag:db"], ["tag:web"]), rule(["tag:db"], ["10.2.0.0/16"], ["icmp"])],
  };
  const configs = planNetwork(meshNetwork(), nodes, policy);

  test("a peer the ACL lets reach part of a route gets the whole route on its router's AllowedIPs, after its own addresses", () => {
    expect(peerOf(byName(configs, "web"), "gw").allowedIps).toEqual([...own(1), "10.1.0.0/24"]);
    expect(peerNames(byName(configs, "web"))).toEqual(["db", "gw"]);
  });

  test("a peer the ACL does not let reach a route has no route and no tunnel to its router", () => {
    expect(peerNames(byName(configs, "db"))).toEqual(["gw2", "web"]);
    expect(peerOf(byName(configs, "db"), "gw2").allowedIps).toEqual([...own(4), "10.2.0.0/24"]);
  });

  test("the same route offered twice is served by the node enrolled first; the other keeps only what no one else serves", () => {
    expect(byName(configs, "gw")!.routes).toEqual(["10.1.0.0/24", "fd00:1::/64"]);
    expect(byName(configs, "gw2")!.routes).toEqual(["10.2.0.0/24"]);
    // Its name sorting first does not make it the primary: enrolledAt does.
    const renamed = planNetwork(meshNetwork(), [web, { ...gw2, name: "a-gw" }, db, gw], policy);
    expect(byName(renamed, "gw")!.routes).toEqual(["10.1.0.0/24", "fd00:1::/64"]);
    // With gw gone (disabled, expired, removed), gw2 takes it over.
    const failedOver = planNetwork(meshNetwork(), [web, gw2, db], policy);
    expect(byName(failedOver, "gw2")!.routes).toEqual(["10.1.0.0/24", "10.2.0.0/24"]);
    expect(peerOf(byName(failedOver, "web"), "gw2").allowedIps).toEqual([...own(4), "10.1.0.0/24"]);
  });

  test("the router the control plane stored for a route serves it (a failover), not the node enrolled first; that one stands by", () => {
    const failedOver = planNetwork(meshNetwork(), [web, { ...gw2, primaryRoutes: ["10.1.0.0/24"] }, db, gw], policy);
    expect(byName(failedOver, "gw2")!.routes).toEqual(["10.1.0.0/24", "10.2.0.0/24"]);
    expect(byName(failedOver, "gw")!.routes).toEqual(["fd00:1::/64"]);
    expect(peerOf(byName(failedOver, "web"), "gw2").allowedIps).toEqual([...own(4), "10.1.0.0/24"]);
    // The standby offering it is not given it on its router's AllowedIPs (its own LAN).
    expect(peerOf(byName(planNetwork(meshNetwork(), [web, { ...gw2, primaryRoutes: ["10.1.0.0/24"] }, db, gw], NO_ACL), "gw"), "gw2").allowedIps).toEqual([...own(4), "10.2.0.0/24"]);
    // A stored router that no longer offers the route: the node enrolled first again.
    expect(byName(planNetwork(meshNetwork(), [web, { ...gw2, routes: ["10.2.0.0/24"], primaryRoutes: ["10.1.0.0/24"] }, db, gw], policy), "gw")!.routes).toEqual(["10.1.0.0/24", "fd00:1::/64"]);
  });

  test("masquerade is in the config of a router asked to masquerade only while it serves a route; no other config changes", () => {
    const asked = [web, { ...gw2, masqueradeRoutes: true }, db, { ...gw, masqueradeRoutes: true }];
    const configs = planNetwork(meshNetwork(), asked, policy);
    expect(byName(configs, "gw")!.masquerade).toBe(true);
    expect(byName(configs, "gw2")!.masquerade).toBe(true); // it serves 10.2.0.0/24
    expect(byName(configs, "web")).toEqual(byName(planNetwork(meshNetwork(), nodes, policy), "web")!);
    // A standby serving nothing has nothing to masquerade.
    const standby = planNetwork(meshNetwork(), [web, { ...gw2, routes: ["10.1.0.0/24"], masqueradeRoutes: true }, db, gw], policy);
    expect("masquerade" in byName(standby, "gw2")!).toBe(false);
    expect("masquerade" in byName(planNetwork(meshNetwork(), nodes, policy), "gw")!).toBe(false);
  });

  test("a standby offering the primary's route is not given it (its agent would route its own LAN into the tunnel), only the routes it does not offer (found in review)", () => {
    const open = planNetwork(meshNetwork(), nodes, NO_ACL);
    expect(peerOf(byName(open, "gw2"), "gw").allowedIps).toEqual([...own(1), "fd00:1::/64"]);
    expect(peerOf(byName(open, "web"), "gw").allowedIps).toEqual([...own(1), "10.1.0.0/24", "fd00:1::/64"]);
    const everyone = planNetwork(meshNetwork(), nodes, { rules: [rule(["*"], ["10.1.0.0/24"])] });
    expect(peerNames(byName(everyone, "gw2"))).toEqual([]);
    expect(peerNames(byName(everyone, "web"))).toEqual(["gw"]);
  });

  test("the router peers with who may reach its routes, and forwards to them only what the ACL allows, to the part it allows", () => {
    const config = byName(configs, "gw")!;
    expect(peerNames(config)).toEqual(["web"]);
    expect(peerOf(config, "web").allowedIps).toEqual(own(2));
    expect(config.firewall!.routes).toEqual([{ sources: [v4(2), v6(2)], destinations: ["10.1.0.0/25"], ports: [{ protocol: "tcp", from: 22, to: 22 }] }]);
    // A dst prefix wider than the route names the route.
    expect(byName(configs, "gw2")!.firewall!.routes).toEqual([{ sources: [v4(3), v6(3)], destinations: ["10.2.0.0/24"], ports: [{ protocol: "icmp", from: null, to: null }] }]);
  });

  test("`*` names every node, no route; a node without routes has no `routes` in its config", () => {
    const everyone = planNetwork(meshNetwork(), nodes, { rules: [rule(["*"], ["*"])] });
    expect(peerOf(byName(everyone, "web"), "gw").allowedIps).toEqual(own(1));
    expect(byName(everyone, "gw")!.firewall!.routes).toEqual([]);
    expect("routes" in byName(everyone, "web")!).toBe(false);
  });

  test("with no policy every node reaches every route, and the router's firewall is off as for the rest", () => {
    const open = planNetwork(meshNetwork(), nodes, NO_ACL);
    expect(peerOf(byName(open, "web"), "gw").allowedIps).toEqual([...own(1), "10.1.0.0/24", "fd00:1::/64"]);
    expect(peerOf(byName(open, "gw"), "gw2").allowedIps).toEqual([...own(4), "10.2.0.0/24"]);
    expect(byName(open, "gw")!.firewall).toBeNull();
  });

  test("in a hub network only hubs serve routes: a spoke's are not served; spokes reach a hub's through it", () => {
    const hub = meshNode("hub", 1, { hub: true, routes: ["10.5.0.0/16"], enrolledAt: 1 });
    const spoke = meshNode("spoke", 2, { routes: ["10.6.0.0/16"], enrolledAt: 2 });
    const other = meshNode("other", 3, { enrolledAt: 3 });
    const hubConfigs = planNetwork(meshNetwork({ topology: "hub" }), [hub, spoke, other], NO_ACL);
    expect(byName(hubConfigs, "spoke")!.routes).toBeUndefined();
    expect(peerOf(byName(hubConfigs, "other"), "hub").allowedIps).toEqual([v4(1) + "/32", v4(2) + "/32", v6(1) + "/128", v6(2) + "/128", "10.5.0.0/16"]);
    expect(peerOf(byName(hubConfigs, "hub"), "spoke").allowedIps).toEqual(own(2));
  });
});

describe("exit nodes", () => {
  const exit = meshNode("exit", 1, { tags: ["exit"], exitNode: true, enrolledAt: 1 });
  const laptop = meshNode("laptop", 2, { tags: ["laptop"], exitVia: "id-exit", enrolledAt: 2 });
  const other = meshNode("other", 3, { tags: ["laptop"], enrolledAt: 3 });
  const db = meshNode("db", 4, { tags: ["db"], exitVia: "id-exit", enrolledAt: 4 });
  const policy: AclPolicy = { rules: [rule(["tag:laptop"], ["autogroup:internet"], ["tcp/443", "udp/53"]), rule(["tag:laptop"], ["tag:db"])] };
  const configs = planNetwork(meshNetwork(), [exit, laptop, other, db], policy);

  test("a node that chose an exit node the ACL lets it use peers with it; its AllowedIPs end with 0.0.0.0/0 and ::/0; its config names it", () => {
    expect(peerOf(byName(configs, "laptop"), "exit").allowedIps).toEqual([...own(1), "0.0.0.0/0", "::/0"]);
    expect(byName(configs, "laptop")!.exit).toEqual({ via: "exit" });
    // The exit node peers with it (it takes its packets), with its own addresses only.
    expect(peerOf(byName(configs, "exit"), "laptop").allowedIps).toEqual(own(2));
  });

  test("the exit node's firewall lets through what the ACL's autogroup:internet rules allow, from their sources, on their ports", () => {
    expect(byName(configs, "exit")!.firewall!.exit).toEqual([
      {
        sources: [v4(2), v4(3), v6(2), v6(3)],
        destinations: null,
        ports: [
          { protocol: "tcp", from: 443, to: 443 },
          { protocol: "udp", from: 53, to: 53 },
        ],
      },
    ]);
    expect(byName(configs, "laptop")!.firewall!.exit).toBeUndefined();
  });

  test("deny by default: the ACL not letting it reach autogroup:internet, its choice is not usable (via null: its agent blocks), and no tunnel is made for it", () => {
    expect(byName(configs, "db")!.exit).toEqual({ via: null });
    expect(peerNames(byName(configs, "db"))).toEqual(["laptop", "other"]); // not the exit node
    expect(peerNames(byName(configs, "exit"))).toEqual(["laptop"]);
    // No policy at all: nobody uses an exit node, and the exit node forwards nothing.
    const open = planNetwork(meshNetwork(), [exit, laptop], NO_ACL);
    expect(byName(open, "laptop")!.exit).toEqual({ via: null });
    expect(peerOf(byName(open, "laptop"), "exit").allowedIps).toEqual(own(1));
    expect(byName(open, "exit")!.firewall).toBeNull();
    // `*` is every node, not the internet.
    expect(byName(planNetwork(meshNetwork(), [exit, laptop], { rules: [rule(["*"], ["*"])] }), "laptop")!.exit).toEqual({ via: null });
  });

  test("not an exit node (not approved, gone, itself, a spoke of a hub network): the choice is not usable; a node that chose none has no `exit`", () => {
    expect(byName(planNetwork(meshNetwork(), [{ ...exit, exitNode: false }, laptop], policy), "laptop")!.exit).toEqual({ via: null });
    expect(byName(planNetwork(meshNetwork(), [laptop], policy), "laptop")!.exit).toEqual({ via: null });
    expect(byName(planNetwork(meshNetwork(), [exit, { ...laptop, exitVia: "id-laptop" }], policy), "laptop")!.exit).toEqual({ via: null });
    expect(byName(planNetwork(meshNetwork({ topology: "hub" }), [{ ...exit, hub: false }, { ...laptop, hub: true }], policy), "laptop")!.exit).toEqual({ via: null });
    expect("exit" in byName(configs, "other")!).toBe(false);
    // An exit node's own choice stands aside: its default route carries its users' traffic.
    expect("exit" in byName(planNetwork(meshNetwork(), [{ ...exit, exitVia: "id-laptop" }, { ...laptop, exitNode: true }], policy), "exit")!).toBe(false);
  });

  test("in a hub network a spoke goes out through a hub that is an exit node: the relay's AllowedIPs end with the default routes", () => {
    const hub = { ...exit, hub: true };
    const spoke = { ...laptop };
    const hubConfigs = planNetwork(meshNetwork({ topology: "hub" }), [hub, spoke, other], policy);
    expect(peerOf(byName(hubConfigs, "laptop"), "exit").allowedIps.slice(-2)).toEqual(["0.0.0.0/0", "::/0"]);
    expect(byName(hubConfigs, "laptop")!.exit).toEqual({ via: "exit" });
  });
});
