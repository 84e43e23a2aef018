/**
 * The node's nftables policy against real packets: two network namespaces joined by a veth
 * pair, one end named as the mesh interface (the table filters by interface name, so the
 * tunnel itself is not needed), a UDP listener on the node and datagrams from a peer.
 * (A review found that the policy let a datagram to the mesh broadcast address through.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderNftables } from "../../../plugins/mesh/render.ts";
import type { NodeConfig } from "../../../plugins/mesh/types.ts";
import { requireTool } from "../../helpers/tools.ts";

const ip = requireTool("ip", "iproute2");
const nft = requireTool("nft", "nftables");
const isRoot = process.getuid?.() === 0;

const suffix = String(process.pid % 100000);
const peerNs = `cfw${suffix}p`;
const nodeNs = `cfw${suffix}n`;
const meshIf = `wgf${suffix}`;
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
    for (const ns of [peerNs, nodeNs]) await must([ip!, "netns", "add", ns]);
    await must([ip!, "link", "add", meshIf, "netns", nodeNs, "type", "veth", "peer", "name", `p${meshIf}`, "netns", peerNs]);
    await must(inNs(nodeNs, [ip!, "addr", "add", "100.64.0.5/16", "brd", "+", "dev", meshIf]));
    await must(inNs(peerNs, [ip!, "addr", "add", "100.64.0.9/16", "brd", "+", "dev", `p${meshIf}`]));
    for (const [ns, dev] of [[nodeNs, meshIf], [peerNs, `p${meshIf}`]] as const) {
      await must(inNs(ns, [ip!, "link", "set", dev, "up"]));
      await must(inNs(ns, [ip!, "link", "set", "lo", "up"]));
    }
  });

  afterAll(async () => {
    for (const ns of [peerNs, nodeNs]) await run([ip!, "netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function load(acl: boolean): Promise<void> {
    const path = join(dir, "policy.nft");
    writeFileSync(path, renderNftables(config(acl), meshIf));
    await must(inNs(nodeNs, [nft!, "-f", path]));
  }

  /** Sends one datagram from the peer to each address; returns those the node's listener got. */
  async function delivered(addresses: string[]): Promise<string[]> {
    const listener = Bun.spawn(
      inNs(nodeNs, [process.execPath, "-e", `const s = require("node:dgram").createSocket("udp4"); s.on("message", (m) => console.log(m.toString())); s.bind(${PORT}, "0.0.0.0", () => console.log("ready")); setTimeout(() => process.exit(0), 1500);`]),
      { stdout: "pipe", stderr: "ignore" },
    );
    const reader = listener.stdout.getReader();
    let seen = "";
    while (!seen.includes("ready")) seen += new TextDecoder().decode((await reader.read()).value);
    const sends = addresses.map((a) => `s.send(${JSON.stringify(a)}, ${PORT}, ${JSON.stringify(a)})`).join("; ");
    await must(inNs(peerNs, [process.execPath, "-e", `const s = require("node:dgram").createSocket("udp4"); s.bind(() => { s.setBroadcast(true); ${sends}; setTimeout(() => s.close(), 200); });`]));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    await listener.exited;
    return seen.split("\n").filter((line) => line !== "" && line !== "ready").sort();
  }

  test("without an ACL both arrive (the setup works); with one that allows only tcp/22 from elsewhere, neither unicast nor the mesh broadcast does", async () => {
    await load(false);
    expect(await delivered(["100.64.0.5", "100.64.255.255"])).toEqual(["100.64.0.5", "100.64.255.255"]);
    await load(true);
    expect(await delivered(["100.64.0.5", "100.64.255.255"])).toEqual([]);
  });
});
