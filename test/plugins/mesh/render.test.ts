import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planNetwork } from "../../../plugins/mesh/plan.ts";
import { isInterfaceName } from "../../../plugins/mesh/types.ts";
import { formerNftablesTableInterface, nftablesTableName, retireNftablesTable, PRIVATE_KEY_PLACEHOLDER, renderNftables, renderSetconf, renderWgQuick } from "../../../plugins/mesh/render.ts";
import type { AclPolicy, MeshNetwork, MeshNode, NodeConfig } from "../../../plugins/mesh/types.ts";
import { requireTool } from "../../helpers/tools.ts";
import { meshNetwork as officeNetwork, meshNode as fixtureNode } from "./fixtures.ts";

/** A WireGuard-shaped key (32 bytes, base64) that differs per seed. */
function key(seed: number): string {
  return Buffer.from(Array.from({ length: 32 }, (_, i) => (seed * 31 + i * 7) & 255)).toString("base64");
}

const meshNetwork = (overrides: Partial<MeshNetwork> = {}) => officeNetwork({ dns: ["100.64.0.53", "fd7a:115c:a1e0::53"], ...overrides });

/** Real-looking keys and an endpoint per node (wg checks both). */
const meshNode = (name: string, host: number, extra: Partial<MeshNode> = {}) => fixtureNode(name, host, { publicKey: key(host), endpoint: `198.51.100.${host}:51820`, ...extra });

/** A hand-made config that exercises every optional field. */
const sample: NodeConfig = {
  network: { id: "net-1", name: "office", interfaceName: "wgc-office" },
  node: { id: "id-laptop", name: "laptop" },
  addresses: ["100.64.0.10/16", "fd7a:115c:a1e0::a/48"],
  listenPort: 51820,
  mtu: 1380,
  dns: ["100.64.0.53"],
  searchDomain: "office.mesh.internal",
  peers: [
    {
      name: "db",
      publicKey: "DB/key=",
      nextPublicKey: "DB/next=",
      presharedKey: "PSK=",
      allowedIps: ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"],
      endpoint: "198.51.100.2:51820",
      keepalive: 25,
    },
    { name: "phone", publicKey: "PHONE=", nextPublicKey: null, presharedKey: null, allowedIps: [], endpoint: null, keepalive: 0 },
  ],
  firewall: null,
};

describe("renderWgQuick", () => {
  test("every field, a rotating peer, a peer with nothing optional", () => {
    expect(renderWgQuick(sample)).toBe(`# Citadel mesh office, node laptop
[Interface]
# PrivateKey: kept on the node
Address = 100.64.0.10/16, fd7a:115c:a1e0::a/48
ListenPort = 51820
MTU = 1380
DNS = 100.64.0.53, office.mesh.internal

# db
[Peer]
PublicKey = DB/key=
PresharedKey = PSK=
AllowedIPs = 100.64.0.2/32, fd7a:115c:a1e0::2/128
Endpoint = 198.51.100.2:51820
PersistentKeepalive = 25

# db (next key)
[Peer]
PublicKey = DB/next=
PresharedKey = PSK=
Endpoint = 198.51.100.2:51820
PersistentKeepalive = 25

# phone
[Peer]
PublicKey = PHONE=
`);
  });

  test("with a private key: a PrivateKey line instead of the comment", () => {
    const text = renderWgQuick(sample, "PRIVATE=");
    expect(text).toContain("[Interface]\nPrivateKey = PRIVATE=\nAddress = ");
    expect(text).not.toContain(PRIVATE_KEY_PLACEHOLDER);
    expect(renderWgQuick(sample)).not.toMatch(/^PrivateKey/m);
  });

  test("no DNS, no MTU, no search domain: those lines are left out", () => {
    const text = renderWgQuick({ ...sample, dns: [], mtu: 0, searchDomain: "ignored.without.dns", peers: [] });
    expect(text).not.toContain("DNS");
    expect(text).not.toContain("MTU");
    expect(renderWgQuick({ ...sample, searchDomain: null })).toContain("DNS = 100.64.0.53\n");
  });

  test("a name with a line break cannot add a config line", () => {
    const text = renderWgQuick({ ...sample, node: { id: "x", name: "evil\n[Peer]\nPublicKey = X" }, peers: [{ ...sample.peers[1]!, name: "p\r\nAllowedIPs = 0.0.0.0/0" }] });
    expect(text).not.toMatch(/^AllowedIPs = 0\.0\.0\.0\/0/m);
    expect(text.match(/^\[Peer\]/gm)).toHaveLength(1);
  });

  test("rendering is deterministic, also for peers shared between configs", () => {
    const configs = planNetwork(meshNetwork(), [meshNode("a", 1), meshNode("b", 2), meshNode("c", 3)], null);
    const first = [...configs.values()].map((c) => renderWgQuick(c));
    const again = [...planNetwork(meshNetwork(), [meshNode("c", 3), meshNode("a", 1), meshNode("b", 2)], null).values()].map((c) => renderWgQuick(c));
    expect(again).toEqual(first);
    expect([...configs.values()].map((c) => renderWgQuick(c))).toEqual(first);
  });
});

describe("renderSetconf", () => {
  test("only what wg itself understands", () => {
    expect(renderSetconf(sample, "PRIVATE=")).toBe(`# Citadel mesh office, node laptop
[Interface]
PrivateKey = PRIVATE=
ListenPort = 51820

# db
[Peer]
PublicKey = DB/key=
PresharedKey = PSK=
AllowedIPs = 100.64.0.2/32, fd7a:115c:a1e0::2/128
Endpoint = 198.51.100.2:51820
PersistentKeepalive = 25

# db (next key)
[Peer]
PublicKey = DB/next=
PresharedKey = PSK=
Endpoint = 198.51.100.2:51820
PersistentKeepalive = 25

# phone
[Peer]
PublicKey = PHONE=
`);
    expect(renderSetconf(sample)).not.toContain("PrivateKey");
  });
});

describe("renderNftables", () => {
  const firewalled: NodeConfig = {
    ...sample,
    firewall: {
      input: [
        {
          sources: ["100.64.0.9", "100.64.0.10", "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::a"],
          destinations: null,
          ports: [
            { protocol: "tcp", from: 8000, to: 8100 },
            { protocol: "tcp", from: 22, to: 22 },
            { protocol: "any", from: 53, to: 53 },
            { protocol: "tcp", from: 8050, to: 8200 },
            { protocol: "udp", from: null, to: null },
            { protocol: "icmp", from: null, to: null },
          ],
        },
        { sources: ["100.64.0.30"], destinations: null, ports: [{ protocol: "any", from: null, to: null }, { protocol: "tcp", from: 1, to: 1 }] },
      ],
      forward: [
        { sources: ["100.64.0.9", "fd7a:115c:a1e0::9"], destinations: ["100.64.0.20"], ports: [{ protocol: "tcp", from: 5432, to: 5432 }] },
      ],
    },
  };

  test("the whole script of a hub with input and forward rules", () => {
    expect(renderNftables(firewalled, "wgc-office")).toBe(`# Citadel mesh office, node laptop: firewall of wgc-office
table inet citadel_wgc-office {}
delete table inet citadel_wgc-office
table inet citadel_wgc-office {
\tchain prerouting {
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tiifname "wgc-office" fib daddr type { local, broadcast, anycast, multicast } jump mesh_in
\t\tiifname "wgc-office" ip daddr 100.64.0.0/16 accept
\t\tiifname "wgc-office" ip6 daddr fd7a:115c:a1e0::/48 accept
\t\tiifname "wgc-office" drop
\t}
\tchain mesh_in {
\t\tct state established,related accept
\t\tct state invalid drop
\t\tip saddr { 100.64.0.9, 100.64.0.10 } tcp dport { 22, 53, 8000-8200 } accept
\t\tip saddr { 100.64.0.9, 100.64.0.10 } meta l4proto udp accept
\t\tip saddr { 100.64.0.9, 100.64.0.10 } meta l4proto icmp accept
\t\tip6 saddr { fd7a:115c:a1e0::9, fd7a:115c:a1e0::a } tcp dport { 22, 53, 8000-8200 } accept
\t\tip6 saddr { fd7a:115c:a1e0::9, fd7a:115c:a1e0::a } meta l4proto udp accept
\t\tip6 saddr { fd7a:115c:a1e0::9, fd7a:115c:a1e0::a } meta l4proto ipv6-icmp accept
\t\tip saddr { 100.64.0.30 } accept
\t\tdrop
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tiifname "wgc-office" oifname "wgc-office" jump mesh_fwd
\t\tiifname "wgc-office" ct state established,related accept
\t\tiifname "wgc-office" ct status dnat accept
\t\tiifname "wgc-office" drop
\t}
\tchain mesh_fwd {
\t\tct state established,related accept
\t\tct state invalid drop
\t\tip saddr { 100.64.0.9 } ip daddr { 100.64.0.20 } tcp dport { 5432 } accept
\t\tdrop
\t}
}
`);
  });

  test("no ACL: the table still exists and accepts everything from the mesh to this node or the mesh; nothing goes through it elsewhere", () => {
    const text = renderNftables(sample, "wgc-office");
    expect(text).toContain("\tchain mesh_in {\n\t\taccept\n\t}\n");
    expect(text).toContain('\t\tiifname "wgc-office" ip daddr 100.64.0.0/16 accept\n\t\tiifname "wgc-office" ip6 daddr fd7a:115c:a1e0::/48 accept\n\t\tiifname "wgc-office" drop\n');
    expect(text).toContain('\t\tiifname "wgc-office" oifname "wgc-office" drop\n'); // not a hub: relays nothing
    expect(text).not.toContain("mesh_fwd");
  });

  test("a node with a policy and no forward chain; ranges merge, the interface defaults to the network's", () => {
    const text = renderNftables({
      ...sample,
      firewall: {
        input: [
          {
            sources: ["100.64.0.9", "100.64.0.9"],
            destinations: null,
            ports: [
              { protocol: "udp", from: 10, to: 20 },
              { protocol: "udp", from: 21, to: 30 },
              { protocol: "udp", from: 5, to: 12 },
              { protocol: "udp", from: 40, to: 40 },
            ],
          },
        ],
        forward: null,
      },
    });
    expect(text).toContain(`iifname "wgc-office" fib daddr type { local, broadcast, anycast, multicast } jump mesh_in`);
    expect(text).toContain("\t\tip saddr { 100.64.0.9 } udp dport { 5-30, 40 } accept\n\t\tdrop\n");
    expect(text).not.toContain("ip6 saddr");
    expect(text).not.toContain("mesh_fwd");
  });

  test("no node is a way out of the mesh: what arrives on the mesh leaves only to the mesh (hubs), or to a port this host published by DNAT, checked before the DNAT (found in review)", () => {
    const forward = (relay: boolean) =>
      `\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tiifname "wgc-office" oifname "wgc-office" ${relay ? "accept" : "drop"}\n\t\tiifname "wgc-office" ct state established,related accept\n\t\tiifname "wgc-office" ct status dnat accept\n\t\tiifname "wgc-office" drop\n\t}\n`;
    expect(renderNftables(sample, "wgc-office", { relay: true })).toContain(forward(true));
    expect(renderNftables(sample, "wgc-office", { relay: false })).toContain(forward(false));
    // The node's policy sees a published port as the peer addressed it: in prerouting, before the host's DNAT (priority -100).
    expect(renderNftables(sample, "wgc-office")).toContain('\t\ttype filter hook prerouting priority -150; policy accept;\n\t\tiifname "wgc-office" fib daddr type { local, broadcast, anycast, multicast } jump mesh_in\n');
  });

  test("interface names: each its own table, refused when unusable", () => {
    expect(nftablesTableName("wgc-office.1")).toBe("citadel_wgc-office.1");
    expect(new Set(["wgc-a", "wgc_a", "wgc.a"].map(nftablesTableName)).size).toBe(3);
    // The table an older Citadel used ("-" and "." made "_"), when it differs.
    expect(formerNftablesTableInterface("wgc-office.1")).toBe("wgc_office_1");
    expect(formerNftablesTableInterface("wgc_office")).toBeNull();
    // One rule for the API, the renderer and the agent (found in review: they disagreed).
    for (const good of ["wgc-a", "wg0", "0", "a.b", "_x", "wgc-office-east"]) expect(isInterfaceName(good)).toBe(true);
    for (const bad of ["-a", ".", "..", "", "a b", "a/b", "a=b", "wgc-office-east1"]) expect(isInterfaceName(bad)).toBe(false);
    expect(() => renderNftables(sample, `wg"; flush ruleset`)).toThrow("is not a usable interface name");
    expect(() => renderNftables(sample, "a-name-too-long-0")).toThrow("is not a usable interface name");
  });
});

// ---------------------------------------------------------------------------------------------
// The real tools: wg-quick strip, wg setconf on a device, nft in a network namespace.

const tools = {
  wg: requireTool("wg", "wireguard-tools"),
  wgQuick: requireTool("wg-quick", "wireguard-tools"),
  nft: requireTool("nft", "nftables"),
  ip: requireTool("ip", "iproute2"),
};
const haveTools = Object.values(tools).every((path) => path !== null);
const isRoot = process.getuid?.() === 0;
if (haveTools && !isRoot) {
  if (process.env.CI === "true") throw new Error("the mesh render tests need root in CI (network namespaces)");
  console.warn("not root: the mesh render tests that need network namespaces are skipped");
}

function run(argv: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
  const result = Bun.spawnSync(argv, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode ?? -1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

function mustRun(argv: string[], stdin?: string): string {
  const result = run(argv, stdin);
  if (result.code !== 0) throw new Error(`${argv.join(" ")} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

/** Lines that carry configuration: no comments, no blank lines, no spacing differences. */
function meaningful(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim().replace(/\s*=\s*/, " = "))
    .filter((line) => line !== "");
}

// Networks to render: a full mesh with PSKs, a rotating key, IPv6 endpoint and NAT'd node; a
// hub network with an ACL (relay routes, forward chain); and the no-ACL case.
const privateKey = tools.wg ? mustRun([tools.wg, "genkey"]).trim() : "";
const psk = (a: MeshNode, b: MeshNode) => Buffer.from(Bun.SHA256.hash([a.id, b.id].sort().join("+")) as Uint8Array).toString("base64");
const meshNodes = [
  meshNode("laptop", 10, { tags: ["eng"], endpoint: null }),
  meshNode("ci", 9, { tags: ["eng"], nextPublicKey: key(900) }),
  meshNode("db", 20, { tags: ["db"], endpoint: "[2001:db8::20]:41641" }),
  meshNode("web", 21, { tags: ["web"] }),
];
const meshPolicy: AclPolicy = { rules: [{ src: ["tag:eng"], dst: ["tag:db", "tag:web"], ports: ["tcp/5432", "22", "icmp"] }, { src: ["tag:web"], dst: ["tag:db"], ports: ["tcp/*", "udp/53"] }] };
const hubNodes = [
  meshNode("hub-a", 1, { hub: true }),
  meshNode("hub-b", 2, { hub: true }),
  ...Array.from({ length: 40 }, (_, i) => meshNode(`spoke-${i}`, 100 + i, { tags: [i % 2 ? "eng" : "db"], endpoint: null })),
];
const hubPolicy: AclPolicy = { rules: [{ src: ["tag:eng"], dst: ["tag:db"], ports: ["tcp/5432", "icmp"] }, { src: ["node:spoke-1"], dst: ["*"], ports: ["*"] }] };

const routedNodes = [meshNode("gw", 1, { routes: ["10.1.0.0/24", "192.168.7.0/24", "fd00:1::/64"] }), meshNode("laptop", 10, { tags: ["eng"] }), meshNode("web", 21, { tags: ["web"] })];
const routedPolicy: AclPolicy = { rules: [{ src: ["tag:eng"], dst: ["10.1.0.0/24", "fd00:1::/64"], ports: ["tcp/22", "icmp"] }, { src: ["tag:web"], dst: ["192.168.7.5"], ports: ["*"] }] };
const routed = planNetwork(meshNetwork(), routedNodes, routedPolicy);
const exitNodes = [meshNode("exit", 1, { tags: ["exit"], exitNode: true }), meshNode("laptop", 10, { tags: ["eng"], exitVia: "id-exit" }), meshNode("web", 21, { tags: ["web"], exitVia: "id-exit" })];
const exitPolicy: AclPolicy = { rules: [{ src: ["tag:eng"], dst: ["autogroup:internet"], ports: ["tcp/443", "icmp"] }, { src: ["tag:web"], dst: ["tag:eng"], ports: ["*"] }] };
const exiting = planNetwork(meshNetwork(), exitNodes, exitPolicy);
const masquerading = planNetwork(meshNetwork(), [{ ...routedNodes[0]!, masqueradeRoutes: true }, ...routedNodes.slice(1)], routedPolicy);

const cases: [string, NodeConfig][] = (() => {
  const mesh = planNetwork(meshNetwork(), meshNodes, meshPolicy, psk);
  const hub = planNetwork(meshNetwork({ topology: "hub" }), hubNodes, hubPolicy);
  const open = planNetwork(meshNetwork({ dns: [], searchDomain: null, keepalive: 0 }), meshNodes, null);
  return [
    ["mesh node with ACL and a rotating peer", mesh.get("id-db")!],
    ["mesh node with an IPv6 endpoint peer", mesh.get("id-web")!],
    ["relay hub with forward rules", hub.get("id-hub-a")!],
    ["second hub", hub.get("id-hub-b")!],
    ["spoke", hub.get("id-spoke-1")!],
    ["no ACL", open.get("id-web")!],
    ["subnet router with an ACL", routed.get("id-gw")!],
    ["subnet router without an ACL", planNetwork(meshNetwork(), routedNodes, null).get("id-gw")!],
    ["subnet router that masquerades", masquerading.get("id-gw")!],
    ["exit node", exiting.get("id-exit")!],
    ["node using an exit node", exiting.get("id-laptop")!],
    ["node whose exit node is not usable", exiting.get("id-web")!],
  ];
})();

describe.skipIf(!haveTools || !isRoot)("with the real tools", () => {
  const suffix = String(process.pid % 100000);
  const namespace = `citadel-mesh-${suffix}`;
  // wireguard-go's control socket lives in /var/run/wireguard, shared by all namespaces: the
  // name must not collide with a parallel run.
  const device = `wgt${suffix}`;
  const directory = mkdtempSync(join(tmpdir(), "citadel-mesh-render-"));
  let userspace: ReturnType<typeof Bun.spawn> | null = null;
  let namespaceMade = false;
  const inNamespace = (argv: string[]) => [tools.ip!, "netns", "exec", namespace, ...argv];

  function cleanUp(): void {
    if (userspace) {
      userspace.kill("SIGTERM");
      userspace = null;
    }
    if (namespaceMade) {
      run([tools.ip!, "netns", "del", namespace]);
      namespaceMade = false;
    }
    rmSync(directory, { recursive: true, force: true });
  }
  beforeAll(async () => {
    try {
      mustRun([tools.ip!, "netns", "add", namespace]);
      namespaceMade = true;
      // The kernel module when there is one, wireguard-go otherwise.
      if (run([tools.ip!, "-n", namespace, "link", "add", device, "type", "wireguard"]).code !== 0) {
        const wireguardGo = requireTool("wireguard-go", "wireguard-go");
        if (!wireguardGo) throw new Error("neither the wireguard kernel module nor wireguard-go is available");
        // Foreground keeps it our child, so afterAll can stop it by its pid.
        userspace = Bun.spawn(inNamespace([wireguardGo, device]), { env: { ...process.env, WG_PROCESS_FOREGROUND: "1" }, stdout: "ignore", stderr: "pipe" });
        for (const deadline = Date.now() + 20_000; run(inNamespace([tools.wg!, "show", device])).code !== 0; ) {
          if (Date.now() > deadline || userspace.exitCode !== null) throw new Error(`wireguard-go did not create ${device}`);
          await Bun.sleep(50);
        }
      }
    } catch (error) {
      cleanUp();
      throw error;
    }
  });

  afterAll(async () => {
    const child = userspace;
    cleanUp();
    if (child) await child.exited;
    expect(run([tools.ip!, "netns", "pids", namespace]).code).not.toBe(0); // the namespace is gone
  });

  function writeConfig(name: string, text: string): string {
    const path = join(directory, name);
    writeFileSync(path, text);
    chmodSync(path, 0o600); // wg-quick warns about world-readable keys
    return path;
  }

  test.each(cases)("wg-quick strip of the wg-quick render equals the setconf render: %s", (_, config) => {
    const path = writeConfig(`${device}.conf`, renderWgQuick(config, privateKey));
    const stripped = mustRun([tools.wgQuick!, "strip", path]);
    expect(meaningful(stripped)).toEqual(meaningful(renderSetconf(config, privateKey)));
    expect(stripped).toContain(`PrivateKey = ${privateKey}`);
  });

  /** What the device holds, from `wg show dump`: the interface line, then one line per peer. */
  function deviceState(): { listenPort: string; peers: Map<string, { psk: string; endpoint: string; allowedIps: string[]; keepalive: string }> } {
    const [head, ...lines] = mustRun(inNamespace([tools.wg!, "show", device, "dump"])).trim().split("\n");
    const peers = new Map<string, { psk: string; endpoint: string; allowedIps: string[]; keepalive: string }>();
    for (const line of lines) {
      const [publicKey, psk, endpoint, allowed, , , , keepalive] = line.split("\t");
      peers.set(publicKey!, { psk: psk!, endpoint: endpoint!, allowedIps: allowed === "(none)" ? [] : allowed!.split(",").sort(), keepalive: keepalive! });
    }
    return { listenPort: head!.split("\t")[2]!, peers };
  }

  test.each(cases)("wg setconf loads the setconf render onto a device: %s", (_, config) => {
    mustRun(inNamespace([tools.wg!, "setconf", device, writeConfig("setconf.conf", renderSetconf(config, privateKey))]));
    const state = deviceState();
    expect(state.listenPort).toBe(String(config.listenPort));
    const expected = new Map<string, { psk: string; endpoint: string; allowedIps: string[]; keepalive: string }>();
    for (const peer of config.peers) {
      const common = { psk: peer.presharedKey ?? "(none)", endpoint: peer.endpoint ?? "(none)", keepalive: peer.keepalive > 0 ? String(peer.keepalive) : "off" };
      expected.set(peer.publicKey, { ...common, allowedIps: [...peer.allowedIps].sort() });
      if (peer.nextPublicKey) expected.set(peer.nextPublicKey, { ...common, allowedIps: [] });
    }
    expect(state.peers).toEqual(expected);
    expect(state.peers.size).toBeGreaterThan(0);
  });

  test("a rotating peer shows up twice on the device, the next key without routes", () => {
    const config = cases[0]![1];
    mustRun(inNamespace([tools.wg!, "setconf", device, writeConfig("rotating.conf", renderSetconf(config, privateKey))]));
    const ci = meshNodes.find((n) => n.name === "ci")!;
    const peers = deviceState().peers;
    expect(peers.get(ci.publicKey)!.allowedIps).toEqual(["100.64.0.9/32", "fd7a:115c:a1e0::9/128"]);
    expect(peers.get(ci.nextPublicKey!)!.allowedIps).toEqual([]);
    expect(peers.get(ci.nextPublicKey!)!.psk).toBe(peers.get(ci.publicKey)!.psk);
  });

  test.each(cases)("nft -c accepts the script: %s", (_, config) => {
    const path = writeConfig("check.nft", renderNftables(config, device));
    const result = run(inNamespace([tools.nft!, "-c", "-f", path]));
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
  });

  test("nft -c accepts a relay's script, with and without an ACL", () => {
    for (const config of [cases[2]![1], cases[5]![1]]) {
      const result = run(inNamespace([tools.nft!, "-c", "-f", writeConfig("relay.nft", renderNftables(config, device, { relay: true }))]));
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
    }
  });

  test("applied twice, then replaced by the no-ACL script: the table follows", () => {
    const table = `inet ${nftablesTableName(device)}`;
    const hub = writeConfig("hub.nft", renderNftables(cases[2]![1], device));
    mustRun(inNamespace([tools.nft!, "-f", hub]));
    mustRun(inNamespace([tools.nft!, "-f", hub])); // the delete-and-redefine idiom replaces, never duplicates
    const listed = mustRun(inNamespace([tools.nft!, "list", "table", ...table.split(" ")]));
    expect(listed).toContain(`iifname "${device}" fib daddr type { local, broadcast, anycast, multicast } jump mesh_in`);
    expect(listed).toContain(`iifname "${device}" oifname "${device}" jump mesh_fwd`);
    expect(listed).toMatch(/ip saddr \{ 100\.64\.0\.101, 100\.64\.0\.103, .* \} ip daddr \{ 100\.64\.0\.100, .* \} tcp dport 5432 accept/);
    expect(listed.match(/chain mesh_fwd/g)).toHaveLength(1);
    expect(listed.match(/jump mesh_in/g)).toHaveLength(1);

    mustRun(inNamespace([tools.nft!, "-f", writeConfig("open.nft", renderNftables(cases[5]![1], device))]));
    const open = mustRun(inNamespace([tools.nft!, "list", "table", ...table.split(" ")]));
    expect(open).not.toContain("mesh_fwd");
    expect(open).not.toContain("saddr");
    expect(open).toMatch(/chain mesh_in \{\s+accept\s+\}/);
  });

  test("wgc-a and wgc_a keep their own tables; the table an older Citadel shared for them is retired with the new one loaded", () => {
    const tables = () => mustRun(inNamespace([tools.nft!, "list", "tables"]));
    mustRun(inNamespace([tools.nft!, "-f", writeConfig("old.nft", "table inet citadel_wgc_a { chain input { type filter hook input priority 0; policy accept; }; }\n")]));
    const dashed = retireNftablesTable(nftablesTableName(formerNftablesTableInterface("wgc-a")!)) + renderNftables(cases[0]![1], "wgc-a");
    mustRun(inNamespace([tools.nft!, "-f", writeConfig("dashed.nft", dashed)]));
    expect(tables()).toContain("table inet citadel_wgc-a");
    expect(tables()).not.toContain("table inet citadel_wgc_a");
    mustRun(inNamespace([tools.nft!, "-f", writeConfig("again.nft", dashed)])); // retiring a table that is not there is fine
    // (The agent leaves the retirement out while an interface wgc_a exists: that table is then wgc_a's own.)
    mustRun(inNamespace([tools.nft!, "-f", writeConfig("underscored.nft", renderNftables(cases[5]![1], "wgc_a"))]));
    const both = mustRun(inNamespace([tools.nft!, "list", "table", "inet", "citadel_wgc-a"]));
    expect(both).toContain('iifname "wgc-a" fib daddr type { local, broadcast, anycast, multicast } jump mesh_in'); // not replaced by wgc_a's
    expect(tables()).toContain("table inet citadel_wgc_a");
  });
});

describe("renderNftables of a subnet router", () => {
  const withAcl = renderNftables(routed.get("id-gw")!, "wgc-office");

  test("what arrives for its routes is judged by mesh_routes in prerouting, before the host's DNAT (found in review: a DNATed route address passed the forward chain on any port); what arrives for anywhere else beyond the mesh is still dropped", () => {
    const prerouting = withAcl.slice(withAcl.indexOf("\tchain prerouting {"), withAcl.indexOf("\tchain mesh_in {"));
    expect(prerouting).toContain(
      '\t\tiifname "wgc-office" ip6 daddr fd7a:115c:a1e0::/48 accept\n\t\tiifname "wgc-office" ip daddr { 10.1.0.0/24, 192.168.7.0/24 } jump mesh_routes\n\t\tiifname "wgc-office" ip6 daddr { fd00:1::/64 } jump mesh_routes\n\t\tiifname "wgc-office" drop\n',
    );
    expect(prerouting).not.toContain("10.1.0.0/24, 192.168.7.0/24 } accept");
    // The forward chain's DNAT acceptance comes only after prerouting has judged the route.
    expect(prerouting).toContain("type filter hook prerouting priority -150;");
  });

  test("the forward chain lets the mesh reach the routes only as the ACL says: its sources, the part of the route it names, its ports", () => {
    expect(withAcl).toContain('\t\tiifname "wgc-office" ip daddr { 10.1.0.0/24, 192.168.7.0/24 } jump mesh_routes\n\t\tiifname "wgc-office" ip6 daddr { fd00:1::/64 } jump mesh_routes\n\t\tiifname "wgc-office" drop\n');
    const chain = withAcl.slice(withAcl.indexOf("\tchain mesh_routes {"));
    expect(chain).toBe(
      [
        "\tchain mesh_routes {",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tip saddr { 100.64.0.10 } ip daddr { 10.1.0.0/24 } tcp dport { 22 } accept",
        "\t\tip saddr { 100.64.0.10 } ip daddr { 10.1.0.0/24 } meta l4proto icmp accept",
        "\t\tip6 saddr { fd7a:115c:a1e0::a } ip6 daddr { fd00:1::/64 } tcp dport { 22 } accept",
        "\t\tip6 saddr { fd7a:115c:a1e0::a } ip6 daddr { fd00:1::/64 } meta l4proto ipv6-icmp accept",
        "\t\tip saddr { 100.64.0.21 } ip daddr { 192.168.7.5/32 } accept",
        "\t\tdrop",
        "\t}",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("masquerading: what arrives on the mesh interface from the mesh's prefixes for its routes leaves with the router's address, per family, in its own table's nat chain; off, no such chain", () => {
    const script = renderNftables(masquerading.get("id-gw")!, "wgc-office");
    expect(script.slice(script.indexOf("\tchain mesh_masquerade {"))).toBe(
      [
        "\tchain mesh_masquerade {",
        "\t\ttype nat hook postrouting priority 100; policy accept;",
        '\t\tiifname "wgc-office" ip saddr 100.64.0.0/16 ip daddr { 10.1.0.0/24, 192.168.7.0/24 } masquerade',
        '\t\tiifname "wgc-office" ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr { fd00:1::/64 } masquerade',
        "\t}",
        "}",
        "",
      ].join("\n"),
    );
    // The rest of the table is the same as without it: the ACL still judges the mesh source first.
    expect(script.slice(0, script.indexOf("\tchain mesh_masquerade {")) + "}\n").toBe(withAcl);
    expect(withAcl).not.toContain("masquerade");
  });

  test("with no ACL the routes are open to the mesh, and a node serving none has neither the lines nor the chain", () => {
    const open = renderNftables(planNetwork(meshNetwork(), routedNodes, null).get("id-gw")!, "wgc-office");
    expect(open).toContain('\t\tiifname "wgc-office" ip daddr { 10.1.0.0/24, 192.168.7.0/24 } accept\n\t\tiifname "wgc-office" ip6 daddr { fd00:1::/64 } accept\n\t\tiifname "wgc-office" drop\n\t}\n}\n');
    expect(open).not.toContain("mesh_routes");
    const laptop = renderNftables(routed.get("id-laptop")!, "wgc-office");
    expect(laptop).not.toContain("10.1.0.0");
    expect(laptop).not.toContain("mesh_routes");
  });
});

describe("renderNftables of exit nodes and the nodes using them", () => {
  const exitTable = renderNftables(exiting.get("id-exit")!, "wgc-office");
  const internet4 =
    "ip daddr != { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.0.2.0/24, 192.88.99.0/24, 192.168.0.0/16, 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 224.0.0.0/4, 240.0.0.0/4 }";
  const internet6 =
    "ip6 daddr != { ::/127, ::ffff:0:0/96, 64:ff9b::/96, 64:ff9b:1::/48, 100::/64, 2001:2::/48, 2001:10::/28, 2001:db8::/32, 2002::/16, 3fff::/20, 5f00::/16, fc00::/7, fe80::/10, fec0::/10, ff00::/8 }";

  test("an exit node judges what arrives for the internet (never the mesh, a private range or its LAN) under the ACL's autogroup:internet rules, in prerouting and forward, and masquerades it", () => {
    expect(exitTable).toContain(`\t\tiifname "wgc-office" ${internet4} jump mesh_exit\n\t\tiifname "wgc-office" ${internet6} jump mesh_exit\n\t\tiifname "wgc-office" drop\n`);
    expect(exitTable.match(/jump mesh_exit/g)).toHaveLength(4);
    expect(exitTable).toContain(
      [
        "\tchain mesh_exit {",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tip saddr { 100.64.0.10 } tcp dport { 443 } accept",
        "\t\tip saddr { 100.64.0.10 } meta l4proto icmp accept",
        "\t\tip6 saddr { fd7a:115c:a1e0::a } tcp dport { 443 } accept",
        "\t\tip6 saddr { fd7a:115c:a1e0::a } meta l4proto ipv6-icmp accept",
        "\t\tdrop",
        "\t}",
      ].join("\n"),
    );
    expect(exitTable).toContain(`\tchain mesh_masquerade {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tiifname "wgc-office" ip saddr 100.64.0.0/16 ${internet4} masquerade\n\t\tiifname "wgc-office" ip6 saddr fd7a:115c:a1e0::/48 ${internet6} masquerade\n\t}\n`);
    // A pool outside the ranges that are not the internet is left out of the internet too; one inside them adds nothing.
    const publicPool = renderNftables({ ...exiting.get("id-exit")!, addresses: ["45.0.0.1/16", "2a0e:1::1/32"] }, "wgc-office");
    expect(publicPool).toContain("240.0.0.0/4, 45.0.0.0/16 } jump mesh_exit");
    expect(publicPool).toContain("ff00::/8, 2a0e:1::/32 } jump mesh_exit");
    const benchmarkPool = renderNftables({ ...exiting.get("id-exit")!, addresses: ["198.18.0.1/16", "2001:db8::1/48"] }, "wgc-office");
    expect(benchmarkPool).toContain(`${internet4} jump mesh_exit`);
    expect(benchmarkPool).toContain(`${internet6} jump mesh_exit`);
  });

  test("a node using an exit node gets wg-quick's reverse-path chains, its fwmark its listen port; one whose exit node is not usable too; no other node", () => {
    const laptop = renderNftables(exiting.get("id-laptop")!, "wgc-office");
    expect(laptop).toContain(
      [
        "\tchain exit_preraw {",
        "\t\ttype filter hook prerouting priority -300; policy accept;",
        '\t\tiifname != "wgc-office" ip daddr 100.64.0.10 fib saddr type != local drop',
        '\t\tiifname != "wgc-office" ip6 daddr fd7a:115c:a1e0::a fib saddr type != local drop',
        "\t}",
        "\tchain exit_premangle {",
        "\t\ttype filter hook prerouting priority -150; policy accept;",
        "\t\tmeta l4proto udp meta mark set ct mark",
        "\t}",
        "\tchain exit_postmangle {",
        "\t\ttype filter hook postrouting priority -150; policy accept;",
        "\t\tmeta l4proto udp meta mark 51820 ct mark set meta mark",
        "\t}",
      ].join("\n"),
    );
    expect(laptop).not.toContain("mesh_exit");
    expect(renderNftables(exiting.get("id-web")!, "wgc-office")).toContain("chain exit_postmangle");
    expect(renderNftables(routed.get("id-laptop")!, "wgc-office")).not.toContain("exit_");
  });
});
