/**
 * The node's nftables policy against real packets: network namespaces joined by veth pairs,
 * the node's end named as the mesh interface (the table filters by interface name, so the
 * tunnel itself is not needed), UDP listeners and datagrams. A third namespace plays a
 * container behind the node: published by DNAT, and masqueraded out through the mesh.
 * (Found in review: a published port bypassed the ACL; then a datagram to the mesh broadcast
 * address, and replies to the container, were wrong in the first fix; a DNATed address in a
 * subnet route bypassed the route's ACL.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderNftables } from "../../../plugins/mesh/render.ts";
import type { FirewallRule, NodeConfig } from "../../../plugins/mesh/types.ts";
import { requireTool } from "../../helpers/tools.ts";

const ip = requireTool("ip", "iproute2");
const nft = requireTool("nft", "nftables");
const isRoot = process.getuid?.() === 0;

const suffix = String(process.pid % 100000);
const peerNs = `cfw${suffix}p`;
const nodeNs = `cfw${suffix}n`;
const meshIf = `wgf${suffix}`;
const containerNs = `cfw${suffix}c`;
const PORT = 5353;

/** The node's config: 100.64.0.5 in 100.64.0.0/16; with `acl`, only tcp/22 from 100.64.0.30 may reach it. */
const config = (acl: boolean): NodeConfig => ({
  network: { id: "net", name: "traffic", interfaceName: meshIf },
  node: { id: "node", name: "node" },
  addresses: ["100.64.0.5/16", "fd7a:115c:a1e0::5/48"],
  listenPort: 51820,
  mtu: 1420,
  dns: [],
  searchDomain: null,
  peers: [],
  firewall: acl ? { input: [{ sources: ["100.64.0.30"], destinations: null, ports: [{ protocol: "tcp", from: 22, to: 22 }] }], forward: null } : null,
});

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

async function must(argv: string[]): Promise<string> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} → ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const inNs = (ns: string, argv: string[]) => [ip!, "netns", "exec", ns, ...argv];

describe.skipIf(!ip || !nft || !isRoot)("the node's policy, against real datagrams", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-fw-"));

  beforeAll(async () => {
    for (const ns of [peerNs, nodeNs, containerNs]) await must([ip!, "netns", "add", ns]);
    // The container: 10.9.0.2 behind the node's 10.9.0.1, published at 100.64.0.5:8080, masqueraded out through the mesh.
    await must([ip!, "link", "add", `h${meshIf}`, "netns", nodeNs, "type", "veth", "peer", "name", `c${meshIf}`, "netns", containerNs]);
    await must(inNs(nodeNs, [ip!, "addr", "add", "10.9.0.1/24", "dev", `h${meshIf}`]));
    await must(inNs(containerNs, [ip!, "addr", "add", "10.9.0.2/24", "dev", `c${meshIf}`]));
    await must(inNs(nodeNs, [ip!, "link", "set", `h${meshIf}`, "up"]));
    await must(inNs(containerNs, [ip!, "link", "set", `c${meshIf}`, "up"]));
    await must(inNs(containerNs, [ip!, "link", "set", "lo", "up"]));
    await must(inNs(containerNs, [ip!, "route", "add", "default", "via", "10.9.0.1"]));
    // Forwarding on, as on a hub or a Docker host; with IPv6 forwarding Linux also answers the subnet-router anycast address.
    await must(inNs(nodeNs, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"]));
    await must([ip!, "link", "add", meshIf, "netns", nodeNs, "type", "veth", "peer", "name", `p${meshIf}`, "netns", peerNs]);
    await must(inNs(nodeNs, [ip!, "addr", "add", "100.64.0.5/16", "brd", "+", "dev", meshIf]));
    await must(inNs(peerNs, [ip!, "addr", "add", "100.64.0.9/16", "brd", "+", "dev", `p${meshIf}`]));
    await must(inNs(nodeNs, [ip!, "-6", "addr", "add", "fd7a:115c:a1e0::5/48", "dev", meshIf, "nodad"]));
    await must(inNs(peerNs, [ip!, "-6", "addr", "add", "fd7a:115c:a1e0::9/48", "dev", `p${meshIf}`, "nodad"]));
    for (const [ns, dev] of [[nodeNs, meshIf], [peerNs, `p${meshIf}`]] as const) {
      await must(inNs(ns, [ip!, "link", "set", dev, "up"]));
      await must(inNs(ns, [ip!, "link", "set", "lo", "up"]));
    }
    // The peer knows the node's link address: Linux answers neighbour solicitations for an
    // anycast address only after a random delay of up to a second, longer than a test waits.
    const mac = JSON.parse(await must(inNs(nodeNs, [ip!, "-j", "link", "show", meshIf])))[0].address as string;
    for (const address of ["fd7a:115c:a1e0::5", "fd7a:115c:a1e0::"]) await must(inNs(peerNs, [ip!, "-6", "neigh", "replace", address, "lladdr", mac, "dev", `p${meshIf}`, "nud", "permanent"]));
  });

  afterAll(async () => {
    for (const ns of [peerNs, nodeNs, containerNs]) await run([ip!, "netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function load(acl: boolean, extraRules: NodeConfig["firewall"] = null): Promise<void> {
    const path = join(dir, "policy.nft");
    const c = config(acl);
    if (extraRules) c.firewall = { input: [...c.firewall!.input, ...extraRules.input], forward: null };
    // The host's own NAT, as Docker would make it: the container's port published, its traffic masqueraded.
    const hostNat = `table ip hostnat {}\ndelete table ip hostnat\ntable ip hostnat {\n\tchain pre { type nat hook prerouting priority dstnat; ip daddr 100.64.0.5 udp dport 8080 dnat to 10.9.0.2:7070; }\n\tchain post { type nat hook postrouting priority srcnat; oifname "${meshIf}" masquerade; }\n}\n`;
    writeFileSync(path, renderNftables(c, meshIf) + hostNat);
    await must(inNs(nodeNs, [nft!, "-f", path]));
  }

  /** Runs a UDP listener in `ns` on `port` (echoing back with `echo`) while `act` runs, and a moment after; returns what it got. */
  async function listening(ns: string, port: number, act: () => Promise<unknown>, { echo = false, family = "udp4" }: { echo?: boolean; family?: "udp4" | "udp6" } = {}): Promise<string[]> {
    const reply = echo ? "s.send(m, r.port, r.address);" : "";
    const any = family === "udp4" ? "0.0.0.0" : "::";
    const listener = Bun.spawn(
      inNs(ns, [process.execPath, "-e", `const s = require("node:dgram").createSocket(${JSON.stringify(family)}); s.on("message", (m, r) => { console.log(m.toString()); ${reply} }); s.bind(${port}, ${JSON.stringify(any)}, () => console.log("ready"));`]),
      { stdout: "pipe", stderr: "ignore" },
    );
    const reader = listener.stdout.getReader();
    let seen = "";
    try {
      while (!seen.includes("ready")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the listener exited before it was ready");
        seen += new TextDecoder().decode(value);
      }
      await act(); // resolves once the sender has sent (and, awaiting a reply, received it or given up)
      await Bun.sleep(300); // what was sent has arrived, or will not
    } finally {
      listener.kill();
    }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    await listener.exited;
    return seen.split("\n").filter((line) => line !== "" && line !== "ready").sort();
  }

  /** Sends `text` from `ns` to address:port; with `awaitReply`, returns the reply (or null after a second). */
  async function send(ns: string, address: string, port: number, text: string, awaitReply = false): Promise<string | null> {
    const family = address.includes(":") ? "udp6" : "udp4";
    const wait = awaitReply ? `s.on("message", (m) => { console.log(m.toString()); process.exit(0); }); setTimeout(() => process.exit(0), 1000);` : "setTimeout(() => s.close(), 100);";
    const out = await must(inNs(ns, [process.execPath, "-e", `const s = require("node:dgram").createSocket(${JSON.stringify(family)}); s.bind(() => { ${family === "udp4" ? "s.setBroadcast(true);" : ""} s.send(${JSON.stringify(text)}, ${port}, ${JSON.stringify(address)}); ${wait} });`]));
    return out.trim() === "" ? null : out.trim();
  }

  /** Sends one datagram from the peer to each address; returns those the node's listener got. */
  const delivered = (addresses: string[]) => listening(nodeNs, PORT, () => Promise.all(addresses.map((a) => send(peerNs, a, PORT, a))));

  test("without an ACL both arrive (the setup works); with one that allows only tcp/22 from elsewhere, neither unicast nor the mesh broadcast does", async () => {
    await load(false);
    expect(await delivered(["100.64.0.5", "100.64.255.255"])).toEqual(["100.64.0.5", "100.64.255.255"]);
    await load(true);
    expect(await delivered(["100.64.0.5", "100.64.255.255"])).toEqual([]);
  });

  test("a port the host publishes by DNAT is under the ACL as the peer addressed it (before the DNAT)", async () => {
    const toContainer = () => listening(containerNs, 7070, () => send(peerNs, "100.64.0.5", 8080, "published"));
    await load(true); // only tcp/22 from 100.64.0.30
    expect(await toContainer()).toEqual([]);
    await load(true, { input: [{ sources: ["100.64.0.9"], destinations: null, ports: [{ protocol: "udp", from: 8080, to: 8080 }] }], forward: null });
    expect(await toContainer()).toEqual(["published"]);
  });

  test("an address in a subnet route the host DNATs (a Kubernetes ClusterIP) is under the route's ACL as the peer addressed it, not let by as DNATed (found in review)", async () => {
    // The node serves 10.9.7.0/24, a service range whose 10.9.7.10:9090 the host DNATs to the container.
    const loadRouter = async (routeRules: FirewallRule[]) => {
      const c: NodeConfig = { ...config(true), routes: ["10.9.7.0/24"] };
      c.firewall = { ...c.firewall!, routes: routeRules };
      const serviceNat = `table ip servicenat {}\ndelete table ip servicenat\ntable ip servicenat {\n\tchain pre { type nat hook prerouting priority dstnat; ip daddr 10.9.7.10 udp dport 9090 dnat to 10.9.0.2:7070; }\n}\n`;
      writeFileSync(join(dir, "router.nft"), renderNftables(c, meshIf) + serviceNat);
      await must(inNs(nodeNs, [nft!, "-f", join(dir, "router.nft")]));
    };
    await must(inNs(peerNs, [ip!, "route", "replace", "10.9.7.0/24", "via", "100.64.0.5"]));
    const toService = () => listening(containerNs, 7070, () => send(peerNs, "10.9.7.10", 9090, "to the service"));
    try {
      await loadRouter([{ sources: ["100.64.0.30"], destinations: ["10.9.7.0/24"], ports: [{ protocol: "tcp", from: 22, to: 22 }] }]);
      expect(await toService()).toEqual([]);
      await loadRouter([{ sources: ["100.64.0.9"], destinations: ["10.9.7.10/32"], ports: [{ protocol: "udp", from: 9090, to: 9090 }] }]);
      expect(await toService()).toEqual(["to the service"]);
    } finally {
      await run(inNs(nodeNs, [nft!, "delete", "table", "ip", "servicenat"]));
      await run(inNs(peerNs, [ip!, "route", "del", "10.9.7.0/24"]));
    }
  });

  test("what the container opens through the mesh gets its replies, under an ACL that lets nothing in", async () => {
    await load(true);
    let reply = null as string | null;
    await listening(peerNs, 6060, async () => (reply = await send(containerNs, "100.64.0.9", 6060, "from the container", true)), { echo: true });
    expect(reply).toBe("from the container");
  });

  test("IPv6: the node's address and the subnet-router anycast address the kernel answers with forwarding on are both under the policy (found in review)", async () => {
    const delivered6 = (addresses: string[]) => listening(nodeNs, PORT, () => Promise.all(addresses.map((a) => send(peerNs, a, PORT, a))), { family: "udp6" });
    await load(false);
    expect(await delivered6(["fd7a:115c:a1e0::5", "fd7a:115c:a1e0::"])).toEqual(["fd7a:115c:a1e0::", "fd7a:115c:a1e0::5"]);
    await load(true);
    expect(await delivered6(["fd7a:115c:a1e0::5", "fd7a:115c:a1e0::"])).toEqual([]);
  });
});
