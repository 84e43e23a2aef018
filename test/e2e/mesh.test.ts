/**
 * A real WireGuard mesh, end to end, with the compiled binary: network namespaces joined by
 * veth pairs on a bridge (192.0.2.0/24, TEST-NET-1), the control plane serving HTTPS inside one
 * of them, four nodes that enroll with `citadel mesh join` (pinning the self-signed
 * certificate by fingerprint) and apply their signed configs with `citadel mesh agent` —
 * userspace WireGuard (wireguard-go), `wg syncconf`, addresses, nftables.
 *
 * Then: every pair pings over the mesh; a node rotates its key while agents run and pings still
 * pass; an ACL leaves forbidden pairs without a tunnel or stopped by the receiver's nftables
 * (allowed ports get through, others not); a subnet route: a LAN namespace behind db1 is
 * reached through it by the node the ACL lets, never by one it does not, even one that routes
 * the LAN into its tunnel by hand, and a node on that LAN itself keeps its own route, given the
 * LAN or a part of it; a second router for that LAN stands by and takes the route over once
 * db1's agent stops polling (and keeps it when db1 comes back), and masquerading there lets a LAN
 * host with no route back to the mesh answer; an exit node carries a node's internet traffic
 * (and not its control plane's), and blocks it once it is not usable; --dry-run shows the change first and touches
 * nothing; a node whose interface is gone comes back from its stored config with the control
 * plane down (a reboot).
 *
 * wireguard-go's control sockets live in /var/run/wireguard for the whole host, so each node
 * takes its own interface name (join --interface): names are per host, and here all hosts
 * share one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BINARY, ensureBinary, tempDir, ROOT } from "../helpers/binary.ts";
import { requireTool } from "../helpers/tools.ts";

const tools = ["ip", "wg", "wireguard-go", "ping", "nft"].map((t) => requireTool(t, { ip: "iproute2", wg: "wireguard-tools", "wireguard-go": "wireguard-go", ping: "iputils-ping", nft: "nftables" }[t]!));
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === "true") throw new Error("the mesh end-to-end test needs root (network namespaces); CI runs as root");
const runnable = isRoot && tools.every((t) => t !== null);

const id = `${process.pid % 100_000}`;
const BRIDGE_NS = `cmb${id}`;
const CONTROL_NS = `cmc${id}`;
/** A LAN behind db1 (node 3), which it routes for the mesh: 10.77.0.0/24, db1 at .1, a host at .2. */
const LAN_NS = `cml${id}`;
/** "The internet" behind ops1 (node 4), its exit node: a host at 45.0.0.1 and 2a0e:100::1, ops1 at .254 and ::254 (globally reachable ranges, in a namespace of their own: documentation ranges are not the internet to an exit node). */
const INET_NS = `cmi${id}`;
const SERVER = "192.0.2.100";
const PORT = 8443;
const NODES = [
  { n: 1, name: "web1", tags: "web" },
  { n: 2, name: "web2", tags: "web" },
  { n: 3, name: "db1", tags: "db" },
  { n: 4, name: "ops1", tags: "ops" },
] as const;
const nodeNs = (n: number) => `cmn${id}x${n}`;
const ifName = (n: number) => `wgm${id}n${n}`;
const meshIp = (n: number) => `100.64.0.${n}`;
/** [mesh] router_offline_after_seconds of the control plane here. */
const ROUTER_OFFLINE_AFTER_SECONDS = 6;

/** The tools live in /usr/sbin, which a non-login PATH may lack. */
const PATH = `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin`;
const data = tempDir("citadel-e2e-mesh-");
const home = tempDir("citadel-e2e-mesh-home-");
const stateOf = (n: number) => join(data.path, `node${n}`);
let server: Subprocess | null = null;
let token = "";
let fingerprint = "";
const agents: Subprocess[] = [];

async function sh(argv: string[], options: { allowFail?: boolean; stdin?: string; env?: Record<string, string> } = {}) {
  const proc = Bun.spawn(argv, {
    env: { PATH, HOME: home.path, XDG_CONFIG_HOME: home.path, ...options.env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !options.allowFail) throw new Error(`${argv.join(" ")} → ${code}\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

const inNs = (ns: string, argv: string[], options: Parameters<typeof sh>[1] = {}) => sh(["ip", "netns", "exec", ns, ...argv], options);

/** The citadel CLI on the control plane's host, as the operator (token in CITADEL_TOKEN). */
const operator = (args: string[]) => inNs(CONTROL_NS, [BINARY, "--data", join(data.path, "server"), ...args], { env: { CITADEL_HTTP_ADDRESS: SERVER, CITADEL_HTTP_PORT: String(PORT), CITADEL_TOKEN: token } });

/** The citadel CLI on node n. */
const onNode = (n: number, args: string[], allowFail = false) => inNs(nodeNs(n), [BINARY, ...args], { allowFail });

/** One request from inside the control plane's namespace. */
async function api(method: string, path: string, body?: unknown, bearer = token): Promise<{ status: number; body: any }> {
  const r = await inNs(CONTROL_NS, [process.execPath, join(ROOT, "test/helpers/netns-fetch.ts"), `https://${SERVER}:${PORT}${path}`, join(data.path, "server", "tls", "cert.pem"), method, bearer, body === undefined ? "" : JSON.stringify(body)]);
  return JSON.parse(r.stdout);
}

/** True when `from` gets an echo reply from `to` over the mesh. */
async function pings(from: number, to: string): Promise<boolean> {
  const r = await inNs(nodeNs(from), ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", to], { allowFail: true });
  return r.code === 0;
}

/** Which ordered pairs ping, as "1>3" strings, all at once. */
async function pingMatrix(): Promise<string[]> {
  const pairs = NODES.flatMap((a) => NODES.filter((b) => b.n !== a.n).map((b) => [a.n, b.n] as const));
  const results = await Promise.all(pairs.map(async ([a, b]) => ((await pings(a, meshIp(b))) ? `${a}>${b}` : null)));
  return results.filter((r): r is string => r !== null);
}

const allPairs = NODES.flatMap((a) => NODES.filter((b) => b.n !== a.n).map((b) => `${a.n}>${b.n}`));

async function agentOnce(n: number) {
  return onNode(n, ["mesh", "agent", "--once", "--state", stateOf(n)]);
}

/** Node n's agent, running (polling every second) until killed; kept in `agents` for the clean-up. */
function startAgent(n: number): Subprocess {
  const agent = Bun.spawn(["/usr/sbin/ip", "netns", "exec", nodeNs(n), BINARY, "mesh", "agent", "--interval", "1", "--state", stateOf(n)], { env: { PATH, HOME: home.path }, stdout: "ignore", stderr: "ignore", stdin: "ignore" });
  agents.push(agent);
  return agent;
}

/** Waits (up to `ms`) until `check` holds; returns whether it did. */
async function eventually(check: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await Bun.sleep(250)) if (await check()) return true;
  return check();
}

/** A TCP connect from node `from` to `address:port`, 2 s at most: "open" or "closed". */
async function tcpConnect(from: number, address: string, port: number): Promise<string> {
  const script = `setTimeout(() => { console.log("closed"); process.exit(0); }, 2000); await Bun.connect({ hostname: "${address}", port: ${port}, socket: { data() {}, open(s) { console.log("open"); s.end(); process.exit(0); }, connectError() { console.log("closed"); process.exit(0); } } }).catch(() => { console.log("closed"); process.exit(0); });`;
  return (await inNs(nodeNs(from), [process.execPath, "-e", script], { allowFail: true })).stdout.trim();
}

/** True while a wireguard-go process serves interface `name` (it exits a moment after the interface is deleted). */
function wireguardGoRuns(name: string): boolean {
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[0]!.endsWith("wireguard-go") && argv[1] === name) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

async function removeNetwork() {
  for (const a of agents) a.kill("SIGKILL");
  server?.kill("SIGKILL");
  for (const ns of [BRIDGE_NS, CONTROL_NS, LAN_NS, INET_NS, ...NODES.map((node) => nodeNs(node.n))]) {
    const pids = await sh(["ip", "netns", "pids", ns], { allowFail: true });
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) process.kill(Number(pid), "SIGKILL");
  }
  // wireguard-go's sockets outlive a killed process.
  for (const node of NODES) await sh(["rm", "-f", `/var/run/wireguard/${ifName(node.n)}.sock`, `/var/run/wireguard/wgh${id}n${node.n}.sock`], { allowFail: true });
  for (const ns of [BRIDGE_NS, CONTROL_NS, LAN_NS, INET_NS, ...NODES.map((node) => nodeNs(node.n))]) await sh(["ip", "netns", "del", ns], { allowFail: true });
}

async function cleanup() {
  await removeNetwork();
  data.remove();
  home.remove();
}

describe.skipIf(!runnable)("a WireGuard mesh of network namespaces", () => {
  beforeAll(async () => {
    await ensureBinary();
    await removeNetwork().catch(() => {});
    // The "switch": a bridge in its own namespace; every host gets a veth pair into it.
    await sh(["ip", "netns", "add", BRIDGE_NS]);
    await inNs(BRIDGE_NS, ["ip", "link", "add", "br0", "type", "bridge"]);
    await inNs(BRIDGE_NS, ["ip", "link", "set", "br0", "up"]);
    const hosts = [{ ns: CONTROL_NS, address: SERVER, port: "pc" }, ...NODES.map((node) => ({ ns: nodeNs(node.n), address: `192.0.2.${node.n}`, port: `p${node.n}` }))];
    for (const h of hosts) {
      await sh(["ip", "netns", "add", h.ns]);
      await sh(["ip", "link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", h.port, "netns", BRIDGE_NS]);
      await inNs(BRIDGE_NS, ["ip", "link", "set", h.port, "master", "br0", "up"]);
      await inNs(h.ns, ["ip", "link", "set", "lo", "up"]);
      await inNs(h.ns, ["ip", "address", "add", `${h.address}/24`, "dev", "eth0"]);
      await inNs(h.ns, ["ip", "link", "set", "eth0", "up"]);
    }

    // The control plane, serving HTTPS on the bridge (its self-signed certificate names 192.0.2.100).
    const serverData = join(data.path, "server");
    server = Bun.spawn(["/usr/sbin/ip", "netns", "exec", CONTROL_NS, BINARY, "serve", "--data", serverData], {
      // Routers are judged quickly here: offline 6 s after an agent's last poll (agents poll every second, --interval 1).
      env: { PATH, HOME: home.path, CITADEL_HTTP_ADDRESS: SERVER, CITADEL_HTTP_PORT: String(PORT), CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "", CITADEL_MESH_POLL_SECONDS: "2", CITADEL_MESH_ROUTER_OFFLINE_AFTER_SECONDS: String(ROUTER_OFFLINE_AFTER_SECONDS) },
      stdout: Bun.file(join(data.path, "server.out")),
      stderr: Bun.file(join(data.path, "server.err")),
      stdin: "ignore",
    });
    const deadline = Date.now() + 20_000;
    let listening: { tls_fingerprint_sha256?: string } | undefined;
    while (!listening) {
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`the control plane did not start: ${readFileSync(join(data.path, "server.err"), "utf8")}`);
      await Bun.sleep(50);
      let out = "";
      try {
        out = readFileSync(join(data.path, "server.out"), "utf8");
      } catch {
        // not yet
      }
      listening = out
        .split("\n")
        .filter((l) => l.includes('"msg":"listening"'))
        .map((l) => JSON.parse(l))[0];
    }
    fingerprint = listening.tls_fingerprint_sha256!;
    const oneTime = /One-time password for \S+: (\S+)/.exec(readFileSync(join(data.path, "server.err"), "utf8"))![1]!;
    const first = await api("POST", "/v1/iam/login", { email: "admin@localhost", password: oneTime }, "");
    await api("POST", "/v1/iam/me/password", { current_password: oneTime, new_password: "owner-passphrase-2026" }, first.body.token);
    token = (await api("POST", "/v1/iam/login", { email: "admin@localhost", password: "owner-passphrase-2026" }, "")).body.token;
    expect(token).toMatch(/^citadel_ses_/);

    // The operator makes the network and one key per tag; each node joins with its own.
    await operator(["mesh", "networks", "create", "office", "--keepalive", "5"]);
    for (const node of NODES) {
      const key = JSON.parse((await operator(["mesh", "keys", "create", "office", "--tags", node.tags, "--json"])).stdout).key as string;
      const joined = await onNode(node.n, ["mesh", "join", "--server", `https://${SERVER}:${PORT}`, "--key", key, "--fingerprint", fingerprint, "--name", node.name, "--endpoint", `192.0.2.${node.n}:51820`, "--interface", ifName(node.n), "--state", stateOf(node.n)]);
      expect(joined.stdout).toContain(`Enrolled ${node.name} (${meshIp(node.n)}`);
    }
  }, 120_000);

  afterAll(cleanup, 60_000);

  test("join kept the private key on the node: the server has only public keys, and they match `wg pubkey`", async () => {
    const nodes = JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items as Array<{ name: string; public_key: string }>;
    for (const node of NODES) {
      const state = JSON.parse(readFileSync(join(stateOf(node.n), "node.json"), "utf8"));
      const pub = (await sh(["wg", "pubkey"], { stdin: `${state.private_key}\n` })).stdout.trim();
      expect(nodes.find((x) => x.name === node.name)!.public_key).toBe(pub);
      expect(readFileSync(join(data.path, "server", "citadel.db")).includes(Buffer.from(state.private_key))).toBe(false);
    }
  });

  test("every pair pings over the mesh once the agents applied their configs (IPv4 and IPv6)", async () => {
    for (const node of NODES) await agentOnce(node.n);
    const show = await inNs(nodeNs(1), ["wg", "show", ifName(1), "peers"]);
    expect(show.stdout.trim().split("\n")).toHaveLength(3);
    expect(await pingMatrix()).toEqual(allPairs);
    const v6 = JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items.find((x: { name: string }) => x.name === "db1").ipv6;
    expect(await pings(1, v6)).toBe(true);
  }, 120_000);

  test("a node rotates its key while agents run: peers accept the new key first, then the old one is dropped; pings still pass", async () => {
    for (const node of NODES) agents.push(Bun.spawn(["/usr/sbin/ip", "netns", "exec", nodeNs(node.n), BINARY, "mesh", "agent", "--interval", "1", "--state", stateOf(node.n)], { env: { PATH, HOME: home.path }, stdout: "ignore", stderr: "ignore", stdin: "ignore" }));
    const before = JSON.parse(readFileSync(join(stateOf(1), "node.json"), "utf8")).private_key as string;
    const rotated = await onNode(1, ["mesh", "rotate", "--state", stateOf(1), "--json"]);
    const next = JSON.parse(rotated.stdout).next_public_key as string;
    const deadline = Date.now() + 60_000;
    let web1: { public_key: string; next_public_key: string | null } | undefined;
    while (Date.now() < deadline) {
      web1 = JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items.find((x: { name: string }) => x.name === "web1");
      if (web1!.public_key === next && web1!.next_public_key === null) break;
      await Bun.sleep(500);
    }
    expect(web1).toMatchObject({ public_key: next, next_public_key: null });
    expect(JSON.parse(readFileSync(join(stateOf(1), "node.json"), "utf8")).private_key).not.toBe(before);
    // Peers drop the old key at their next poll.
    const peersHaveOnlyNew = async () => {
      for (const n of [2, 3, 4]) {
        const peers = (await inNs(nodeNs(n), ["wg", "show", ifName(n), "peers"])).stdout;
        if (!peers.includes(next) || peers.split("\n").filter(Boolean).length !== 3) return false;
      }
      return true;
    };
    const until = Date.now() + 15_000;
    while (!(await peersHaveOnlyNew()) && Date.now() < until) await Bun.sleep(300);
    expect(await peersHaveOnlyNew()).toBe(true);
    expect(await pingMatrix()).toEqual(allPairs);
    // An nftables reload (or anyone) removes the node's table, or its interface goes: the agent
    // makes them so again at its next round, config unchanged (found in review).
    const table = ["nft", "list", "table", "inet", `citadel_${ifName(2)}`];
    const present = async () => (await inNs(nodeNs(2), table, { allowFail: true })).code === 0;
    expect(await present()).toBe(true);
    await inNs(nodeNs(2), ["nft", "flush", "ruleset"]);
    expect(await present()).toBe(false);
    const restored = Date.now() + 10_000;
    while (!(await present()) && Date.now() < restored) await Bun.sleep(200);
    expect(await present()).toBe(true);
    // A peer removed by hand, another's AllowedIPs changed: put back at the next round, config
    // unchanged, and the pairs ping again.
    const peersOf2 = async () => (await inNs(nodeNs(2), ["wg", "show", ifName(2), "allowed-ips"])).stdout.split("\n").filter(Boolean).sort();
    const configured = await peersOf2();
    const [removed, narrowed] = configured.map((line) => line.split("\t")[0]!);
    await inNs(nodeNs(2), ["wg", "set", ifName(2), "peer", removed!, "remove"]);
    await inNs(nodeNs(2), ["wg", "set", ifName(2), "peer", narrowed!, "allowed-ips", "10.255.255.1/32"]);
    expect(await peersOf2()).not.toEqual(configured);
    const resynced = Date.now() + 10_000;
    while (JSON.stringify(await peersOf2()) !== JSON.stringify(configured) && Date.now() < resynced) await Bun.sleep(200);
    expect(await peersOf2()).toEqual(configured);
    expect(await pingMatrix()).toEqual(allPairs);
    for (const a of agents.splice(0)) {
      a.kill("SIGTERM");
      await a.exited;
    }
  }, 120_000);

  test("ACL: forbidden pairs get no tunnel or are dropped by the receiver's nftables; allowed ports pass; --dry-run shows it first", async () => {
    const policy = {
      rules: [
        { src: ["tag:web"], dst: ["tag:db"], ports: ["tcp/5432"] },
        { src: ["tag:ops"], dst: ["*"], ports: ["*"] },
      ],
    };
    const file = join(home.path, "acl.json");
    await Bun.write(file, JSON.stringify(policy));
    await operator(["mesh", "acl", "office", "--set", file]);

    // The dry run names the peer web1 loses and changes nothing.
    const dry = await onNode(1, ["mesh", "agent", "--dry-run", "--state", stateOf(1)]);
    const web2Key = JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items.find((x: { name: string }) => x.name === "web2").public_key;
    expect(dry.stdout).toContain(`- peer ${web2Key}`);
    // The same plan as data for scripts.
    const plan = JSON.parse((await onNode(1, ["mesh", "agent", "--dry-run", "--json", "--state", stateOf(1)])).stdout);
    expect(plan).toMatchObject({ node: "web1", network: "office", create: false, firewall: { deny_by_default: true } });
    expect(plan.wireguard).toContain(`- peer ${web2Key}`);
    expect((await inNs(nodeNs(1), ["wg", "show", ifName(1), "peers"])).stdout).toContain(web2Key);

    for (const node of NODES) await agentOnce(node.n);
    expect((await inNs(nodeNs(1), ["wg", "show", ifName(1), "peers"])).stdout).not.toContain(web2Key);
    expect((await inNs(nodeNs(3), ["nft", "list", "ruleset"])).stdout).toContain("tcp dport 5432 accept");

    // Only ops reaches everyone by ping; web→db is TCP 5432 only; nothing else gets through.
    expect(await pingMatrix()).toEqual(["4>1", "4>2", "4>3"]);
    const listener = Bun.spawn(["/usr/sbin/ip", "netns", "exec", nodeNs(3), process.execPath, "-e", `for (const port of [5432, 5433]) Bun.listen({ hostname: "${meshIp(3)}", port, socket: { data() {} } }); console.log("listening"); await Bun.sleep(60_000);`], { stdout: "pipe", stderr: "ignore" });
    agents.push(listener);
    // Connect only once it listens (starting a process can take a while on a loaded machine).
    const reader = listener.stdout.getReader();
    for (let said = ""; !said.includes("listening"); ) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the listener on db1 exited before listening");
      said += new TextDecoder().decode(value);
    }
    expect(await tcpConnect(1, meshIp(3), 5432)).toBe("open");
    expect(await tcpConnect(1, meshIp(3), 5433)).toBe("closed"); // the tunnel exists; db1's nftables drops it
    expect(await tcpConnect(2, meshIp(3), 5432)).toBe("open");
    expect(await tcpConnect(4, meshIp(3), 5433)).toBe("open");
    listener.kill();
  }, 120_000);

  test("a subnet route: db1 advertises its LAN, the operator approves it, the ACL lets ops reach it through db1 and not web; a web node routing it into its tunnel by hand is dropped by db1", async () => {
    const host = "10.77.0.2";
    await sh(["ip", "netns", "add", LAN_NS]);
    await sh(["ip", "link", "add", "lan0", "netns", nodeNs(3), "type", "veth", "peer", "name", "eth0", "netns", LAN_NS]);
    await inNs(nodeNs(3), ["ip", "address", "add", "10.77.0.1/24", "dev", "lan0"]);
    await inNs(nodeNs(3), ["ip", "link", "set", "lan0", "up"]);
    for (const argv of [["ip", "link", "set", "lo", "up"], ["ip", "address", "add", `${host}/24`, "dev", "eth0"], ["ip", "link", "set", "eth0", "up"], ["ip", "route", "add", "default", "via", "10.77.0.1"]]) await inNs(LAN_NS, argv);

    // The node offers it; it is pending until the operator approves it.
    const advertised = await onNode(3, ["mesh", "routes", "--advertise", "10.77.0.0/24", "--state", stateOf(3)]);
    expect(advertised.stdout).toContain("Waiting for an operator's approval: 10.77.0.0/24");
    const db1 = async () => JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items.find((x: { name: string }) => x.name === "db1");
    expect(await db1()).toMatchObject({ pending_routes: ["10.77.0.0/24"], primary_routes: [] });
    await operator(["mesh", "nodes", "set", "office", "db1", "--approved-routes", "10.77.0.0/24"]);
    const router = await db1();
    expect(router).toMatchObject({ pending_routes: [], primary_routes: ["10.77.0.0/24"] });
    const file = join(home.path, "route-acl.json");
    await Bun.write(
      file,
      JSON.stringify({
        rules: [
          { src: ["tag:web"], dst: ["tag:db"], ports: ["tcp/5432"] },
          { src: ["tag:ops"], dst: ["*"], ports: ["*"] },
          { src: ["tag:ops"], dst: ["10.77.0.0/24"], ports: ["icmp"] },
        ],
      }),
    );
    await operator(["mesh", "acl", "office", "--set", file]);
    for (const node of NODES) await agentOnce(node.n);

    // ops1 reaches the LAN through db1, whose agent turned forwarding on.
    expect((await inNs(nodeNs(3), ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("1");
    expect(await pings(4, host)).toBe(true);
    expect((await inNs(nodeNs(4), ["ip", "route", "show", "10.77.0.0/24"])).stdout).toContain(`dev ${ifName(4)} proto 83`);
    // web1 has no route to it: not on db1's AllowedIPs, not in its kernel.
    const allowedOn1 = (await inNs(nodeNs(1), ["wg", "show", ifName(1), "allowed-ips"])).stdout;
    expect(allowedOn1).toContain(router.public_key);
    expect(allowedOn1).not.toContain("10.77.0.0/24");
    expect(await pings(1, host)).toBe(false);
    // Routed into the tunnel by hand, web1's packets reach db1, whose mesh_routes chain drops them.
    await inNs(nodeNs(1), ["wg", "set", ifName(1), "peer", router.public_key, "allowed-ips", `${meshIp(3)}/32,${router.ipv6}/128,10.77.0.0/24`]);
    await inNs(nodeNs(1), ["ip", "route", "replace", "10.77.0.0/24", "dev", ifName(1)]);
    expect(await pings(1, host)).toBe(false);
    expect(await pings(4, host)).toBe(true);
    expect((await inNs(nodeNs(3), ["nft", "list", "chain", "inet", `citadel_${ifName(3)}`, "mesh_routes"])).stdout).toContain("ip saddr 100.64.0.4 ip daddr 10.77.0.0/24 meta l4proto icmp accept\n\t\tdrop"); // nft lists a one-element set without braces
    // The agent puts web1's device back (its own route it never touched: removed here).
    await inNs(nodeNs(1), ["ip", "route", "del", "10.77.0.0/24", "dev", ifName(1)]);
    await agentOnce(1);
    expect((await inNs(nodeNs(1), ["wg", "show", ifName(1), "allowed-ips"])).stdout).not.toContain("10.77.0.0/24");

    // ops1 joins that LAN itself (a laptop carried into the office): its connected route stays
    // its way there; the agent yields its own route and says so, rather than taking the LAN over.
    await inNs(nodeNs(4), ["ip", "link", "add", "lan1", "type", "veth", "peer", "name", "lan1p"]);
    try {
      for (const argv of [["ip", "address", "add", "10.77.0.200/24", "dev", "lan1"], ["ip", "link", "set", "lan1", "up"], ["ip", "link", "set", "lan1p", "up"]]) await inNs(nodeNs(4), argv);
      const ran = await agentOnce(4);
      expect(ran.stderr).toContain("the subnet route 10.77.0.0/24 is not routed into");
      expect((await inNs(nodeNs(4), ["ip", "route", "show", "10.77.0.0/24"])).stdout.trim()).toBe("10.77.0.0/24 dev lan1 proto kernel scope link src 10.77.0.200");
      expect((await inNs(nodeNs(4), ["ip", "route", "get", host])).stdout).toContain("dev lan1");
      // Given the LAN's lower half as well (10.77.0.0/25, which holds no address of ops1), it
      // yields that too: the more specific route would pull that half, the host among it, into the tunnel.
      await onNode(3, ["mesh", "routes", "--advertise", "10.77.0.0/24,10.77.0.0/25", "--state", stateOf(3)]);
      await operator(["mesh", "nodes", "set", "office", "db1", "--approved-routes", "10.77.0.0/24,10.77.0.0/25"]);
      const halved = await agentOnce(4);
      expect((await inNs(nodeNs(4), ["wg", "show", ifName(4), "allowed-ips"])).stdout).toContain("10.77.0.0/25");
      expect(halved.stderr).toContain("the subnet route 10.77.0.0/25 is not routed into");
      expect((await inNs(nodeNs(4), ["ip", "route", "show", "10.77.0.0/25"])).stdout.trim()).toBe("");
      expect((await inNs(nodeNs(4), ["ip", "route", "get", host])).stdout).toContain("dev lan1");
    } finally {
      await inNs(nodeNs(4), ["ip", "link", "del", "lan1"]);
      await onNode(3, ["mesh", "routes", "--advertise", "10.77.0.0/24", "--state", stateOf(3)]);
      await operator(["mesh", "nodes", "set", "office", "db1", "--approved-routes", "10.77.0.0/24"]);
    }
    await agentOnce(4);
    expect((await inNs(nodeNs(4), ["ip", "route", "show", "10.77.0.0/24"])).stdout).toContain(`dev ${ifName(4)} proto 83`);
  }, 120_000);

  test("HA subnet routers: web2 offers db1's LAN too and stands by; db1's agent stops, and past router_offline_after_seconds the route fails over to web2 and ops1 reaches the LAN through it; db1 back does not take it back", async () => {
    const host = "10.77.0.2";
    const LAN = "10.77.0.0/24";
    // The LAN becomes a switch both routers are on: db1 at .1 (as before), web2 at .3.
    for (const argv of [["ip", "link", "add", "br0", "type", "bridge"], ["ip", "link", "set", "br0", "up"], ["ip", "address", "del", `${host}/24`, "dev", "eth0"], ["ip", "link", "set", "eth0", "master", "br0"], ["ip", "address", "add", `${host}/24`, "dev", "br0"], ["ip", "route", "add", "default", "via", "10.77.0.1"]]) await inNs(LAN_NS, argv);
    await sh(["ip", "link", "add", "lan0", "netns", nodeNs(2), "type", "veth", "peer", "name", "eth1", "netns", LAN_NS]);
    await inNs(LAN_NS, ["ip", "link", "set", "eth1", "master", "br0", "up"]);
    await inNs(nodeNs(2), ["ip", "address", "add", "10.77.0.3/24", "dev", "lan0"]);
    await inNs(nodeNs(2), ["ip", "link", "set", "lan0", "up"]);
    await onNode(2, ["mesh", "routes", "--advertise", LAN, "--state", stateOf(2)]);
    await operator(["mesh", "nodes", "set", "office", "web2", "--approved-routes", LAN]);
    const nodes = async () => JSON.parse((await operator(["mesh", "nodes", "office", "--json"])).stdout).items as Array<{ name: string; public_key: string; online: boolean; primary_routes: string[]; standby_routes: string[] }>;
    const view = async (name: string) => (await nodes()).find((x) => x.name === name)!;
    const routedTo = async () => (await inNs(nodeNs(4), ["wg", "show", ifName(4), "allowed-ips"])).stdout.split("\n").find((line) => line.includes(LAN))?.split("\t")[0];

    const db1 = startAgent(3);
    for (const n of [2, 4]) startAgent(n);
    // db1, enrolled first, serves it; web2 stands by.
    expect(await view("db1")).toMatchObject({ primary_routes: [LAN], standby_routes: [] });
    expect(await view("web2")).toMatchObject({ primary_routes: [], standby_routes: [LAN] });
    expect(await eventually(() => pings(4, host))).toBe(true);
    const keys = Object.fromEntries((await nodes()).map((x) => [x.name, x.public_key]));
    expect(await routedTo()).toBe(keys.db1);

    // db1's agent stops (its tunnel and forwarding stay, as after a crash of the agent alone):
    // once it has not polled for the window, web2 serves the route and ops1's agent moves it.
    db1.kill("SIGKILL");
    await db1.exited;
    expect(await eventually(async () => (await view("web2")).primary_routes.includes(LAN), 30_000)).toBe(true);
    expect(await view("db1")).toMatchObject({ online: false, primary_routes: [], standby_routes: [LAN] });
    expect(await eventually(async () => (await routedTo()) === keys.web2)).toBe(true);
    // Without masquerade the LAN answers through its own route back, which must follow the
    // router (a VRRP address, as keepalived moves it; or masquerade: the next test).
    await inNs(LAN_NS, ["ip", "route", "replace", "default", "via", "10.77.0.3"]);
    expect(await eventually(() => pings(4, host))).toBe(true);
    const events = JSON.parse((await operator(["audit", "list", "--action", "mesh.route.failover", "--json"])).stdout).events as Array<{ reason: string; actor: { kind: string } }>;
    expect(events).toHaveLength(1);
    expect(events[0]!.actor.kind).toBe("system");
    expect(events[0]!.reason).toMatch(new RegExp(`^${LAN.replaceAll(".", "\\.")}: node_\\w+ → node_\\w+ \\(offline: its agent not heard from for \\d+ s, \\[mesh\\] router_offline_after_seconds is ${ROUTER_OFFLINE_AFTER_SECONDS}\\)$`));

    // db1's agent comes back: it is online again and stands by; the route stays with web2.
    startAgent(3);
    expect(await eventually(async () => (await view("db1")).online)).toBe(true);
    await Bun.sleep(ROUTER_OFFLINE_AFTER_SECONDS * 1000);
    expect(await view("db1")).toMatchObject({ online: true, primary_routes: [], standby_routes: [LAN] });
    expect(await view("web2")).toMatchObject({ online: true, primary_routes: [LAN] });
    expect(await routedTo()).toBe(keys.web2);
    expect(await pings(4, host)).toBe(true);
    for (const a of agents.splice(0)) {
      a.kill("SIGTERM");
      await a.exited;
    }
  }, 120_000);

  test("masquerade: the LAN host without a route back to the mesh answers ops1 through web2 once web2 masquerades (its own table's nat chain); turned off, the chain goes and the answers stop", async () => {
    const host = "10.77.0.2";
    const table = ["nft", "list", "table", "inet", `citadel_${ifName(2)}`];
    await inNs(LAN_NS, ["ip", "route", "del", "default"]); // the LAN knows only itself
    for (const n of [2, 3, 4]) startAgent(n);
    expect(await pings(4, host)).toBe(false);

    await operator(["mesh", "nodes", "set", "office", "web2", "--masquerade-routes"]);
    expect(await eventually(async () => (await inNs(nodeNs(2), table)).stdout.includes("masquerade"))).toBe(true);
    const chain = (await inNs(nodeNs(2), table)).stdout;
    expect(chain).toContain("type nat hook postrouting priority srcnat; policy accept;");
    expect(chain).toContain(`iifname "${ifName(2)}" ip saddr 100.64.0.0/16 ip daddr 10.77.0.0/24 masquerade`);
    expect(await eventually(() => pings(4, host))).toBe(true);
    expect((await operator(["mesh", "nodes", "office"])).stdout.split("\n").find((line) => line.startsWith("web2"))).toContain("10.77.0.0/24, masquerading");
    // No other table was touched: the host's own NAT is its own.
    expect((await inNs(nodeNs(2), ["nft", "list", "tables"])).stdout.trim().split("\n")).toEqual([`table inet citadel_${ifName(2)}`]);

    await operator(["mesh", "nodes", "set", "office", "web2", "--no-masquerade-routes"]);
    expect(await eventually(async () => !(await inNs(nodeNs(2), table)).stdout.includes("masquerade"))).toBe(true);
    // Each ping run is a flow of its own (its ICMP id): no mapping of the masqueraded ones is reused.
    expect(await eventually(async () => !(await pings(4, host)), 10_000)).toBe(true);
    for (const a of agents.splice(0)) {
      a.kill("SIGTERM");
      await a.exited;
    }
  }, 120_000);

  test("an exit node: ops1 offers 0.0.0.0/0 and ::/0, the operator approves, the ACL lets web reach autogroup:internet, web1 chooses it: web1 reaches the internet through it (both families, masqueraded), its own control plane still directly; unapproved, web1's internet is blocked, not direct; --none takes it back", async () => {
    const internet4 = "45.0.0.1";
    const internet6 = "2a0e:100::1";
    await sh(["ip", "netns", "add", INET_NS]);
    await sh(["ip", "link", "add", "inet0", "netns", nodeNs(4), "type", "veth", "peer", "name", "eth0", "netns", INET_NS]);
    for (const argv of [["ip", "link", "set", "lo", "up"], ["ip", "address", "add", `${internet4}/24`, "dev", "eth0"], ["ip", "address", "add", `${internet6}/64`, "dev", "eth0", "nodad"], ["ip", "link", "set", "eth0", "up"]]) await inNs(INET_NS, argv);
    for (const argv of [["ip", "address", "add", "45.0.0.254/24", "dev", "inet0"], ["ip", "address", "add", "2a0e:100::254/64", "dev", "inet0", "nodad"], ["ip", "link", "set", "inet0", "up"]]) await inNs(nodeNs(4), argv);
    // web1 reaches its control plane at an address off its LAN, through its own default route
    // (192.0.2.100, which passes 203.0.113.100:8443 on to the server): the route an exit node's
    // default route would take over, were the control plane not kept outside the tunnel.
    await inNs(CONTROL_NS, ["nft", "-f", "-"], { stdin: `table ip citadel_test_dnat {\n\tchain pre {\n\t\ttype nat hook prerouting priority -100;\n\t\tip daddr 203.0.113.100 tcp dport ${PORT} dnat to ${SERVER}\n\t}\n}\n` });
    await inNs(nodeNs(1), ["ip", "route", "add", "default", "via", SERVER]);
    const state = join(stateOf(1), "node.json");
    const joined = readFileSync(state, "utf8");
    await Bun.write(state, JSON.stringify({ ...JSON.parse(joined), server: `https://203.0.113.100:${PORT}` }, null, 2));
    const ownRules = async () => (await inNs(nodeNs(1), ["ip", "rule", "show"])).stdout.split("\n").filter((line) => line.includes("proto 83"));
    try {
      await agentOnce(1); // the agent reaches the control plane at its new address
      expect(await pings(1, internet4)).toBe(false);

      await onNode(4, ["mesh", "routes", "--advertise", "", "--advertise-exit-node", "--state", stateOf(4)]);
      await operator(["mesh", "nodes", "set", "office", "ops1", "--approved-routes", "0.0.0.0/0,::/0"]);
      const file = join(home.path, "exit-acl.json");
      await Bun.write(file, JSON.stringify({ rules: [{ src: ["tag:web"], dst: ["tag:db"], ports: ["tcp/5432"] }, { src: ["tag:ops"], dst: ["*"], ports: ["*"] }, { src: ["tag:web"], dst: ["autogroup:internet"], ports: ["icmp", "tcp/443"] }] }));
      await operator(["mesh", "acl", "office", "--set", file]);
      const chosen = await onNode(1, ["mesh", "exit-node", "ops1", "--state", stateOf(1)]);
      expect(chosen.stdout).toContain("Exit node: ops1.");
      await agentOnce(4);
      await agentOnce(1);
      expect((await inNs(nodeNs(4), ["nft", "list", "table", "inet", `citadel_${ifName(4)}`])).stdout).toContain("jump mesh_exit");
      // The internet host has no route to the mesh: its answers are to ops1's address (masqueraded).
      expect(await eventually(() => pings(1, internet4))).toBe(true);
      expect(await pings(1, internet6)).toBe(true);
      expect((await inNs(nodeNs(1), ["ip", "route", "get", internet4])).stdout).toContain(`dev ${ifName(1)} table ${51820}`);
      expect((await inNs(nodeNs(1), ["ip", "route", "get", "203.0.113.100"])).stdout).toContain(`via ${SERVER} dev eth0`);
      expect((await inNs(nodeNs(1), ["ip", "route", "get", "192.0.2.4"])).stdout).toContain("dev eth0"); // the LAN, the exit node's endpoint among it
      expect(await ownRules()).toHaveLength(2);
      expect((await inNs(nodeNs(1), ["ip", "route", "show", "table", "51820"])).stdout).toContain("throw 203.0.113.100");
      expect((await agentOnce(1)).code).toBe(0); // the control plane is still reached, past the tunnel
      // Only what the ACL lets through: tcp/443 and ICMP, not tcp/80 (the exit node's mesh_exit drops it).
      const listener = Bun.spawn(["/usr/sbin/ip", "netns", "exec", INET_NS, process.execPath, "-e", `for (const port of [443, 80]) Bun.listen({ hostname: "${internet4}", port, socket: { data() {} } }); console.log("listening"); await Bun.sleep(60_000);`], { stdout: "pipe", stderr: "ignore" });
      agents.push(listener);
      const reader = listener.stdout.getReader();
      for (let said = ""; !said.includes("listening"); ) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the listener on the internet host exited before listening");
        said += new TextDecoder().decode(value);
      }
      expect(await tcpConnect(1, internet4, 443)).toBe("open");
      expect(await tcpConnect(1, internet4, 80)).toBe("closed");
      listener.kill();

      // The approval revoked: web1's choice stays, its internet is blocked (not sent out its own
      // default route), and its control plane is still reached.
      await operator(["mesh", "nodes", "set", "office", "ops1", "--approved-routes", ""]);
      const blocked = await agentOnce(1);
      expect(blocked.stderr).toContain("its internet traffic is blocked, not sent out directly");
      expect(await pings(1, internet4)).toBe(false);
      expect((await inNs(nodeNs(1), ["ip", "route", "get", internet4], { allowFail: true })).stderr).toContain("No route to host");
      expect((await operator(["mesh", "nodes", "office"])).stdout.split("\n").find((line) => line.startsWith("web1"))).toContain("exit via ops1 (not usable: blocked)");

      // No exit node: the agent's rules, table and fwmark go; the machine's own route is back.
      await onNode(1, ["mesh", "exit-node", "--none", "--state", stateOf(1)]);
      await agentOnce(1);
      expect(await ownRules()).toEqual([]);
      expect((await inNs(nodeNs(1), ["wg", "show", ifName(1), "fwmark"])).stdout.trim()).toBe("off");
      expect((await inNs(nodeNs(1), ["ip", "route", "get", internet4])).stdout).toContain(`via ${SERVER} dev eth0`);
    } finally {
      await Bun.write(state, joined);
      await inNs(nodeNs(1), ["ip", "route", "del", "default"], { allowFail: true });
    }
  }, 120_000);

  test("hub and spoke: spokes without endpoints peer only with the hub, which relays between them; an ACL takes forbidden spoke pairs' routes away and the hub gets a forward chain", async () => {
    await operator(["mesh", "networks", "create", "branch", "--topology", "hub", "--port", "51821", "--keepalive", "2"]);
    const hubKey = JSON.parse((await operator(["mesh", "keys", "create", "branch", "--hub", "--tags", "ops", "--json"])).stdout).key as string;
    const spokeKey = JSON.parse((await operator(["mesh", "keys", "create", "branch", "--reusable", "--tags", "web", "--json"])).stdout).key as string;
    const hubState = (n: number) => join(data.path, `hub-node${n}`);
    const hubIf = (n: number) => `wgh${id}n${n}`;
    const hubIp = (n: number) => `100.65.0.${n}`;
    // The hub first (host 1 of the pool), at a known endpoint; the spokes dial out (no endpoint).
    await onNode(4, ["mesh", "join", "--server", `https://${SERVER}:${PORT}`, "--key", hubKey, "--fingerprint", fingerprint, "--name", "hub", "--endpoint", "192.0.2.4:51821", "--interface", hubIf(4), "--state", hubState(4)]);
    for (const n of [1, 2, 3]) await onNode(n, ["mesh", "join", "--server", `https://${SERVER}:${PORT}`, "--key", spokeKey, "--fingerprint", fingerprint, "--name", `spoke${n}`, "--interface", hubIf(n), "--state", hubState(n)]);
    for (const n of [4, 1, 2, 3]) await onNode(n, ["mesh", "agent", "--once", "--state", hubState(n)]);
    expect((await inNs(nodeNs(1), ["wg", "show", hubIf(1), "peers"])).stdout.trim().split("\n")).toHaveLength(1); // the hub only
    expect((await inNs(nodeNs(4), ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("1");
    // Spoke to spoke through the hub (the spokes' keepalive lets the hub learn where they are).
    const eventually = async (from: number, to: string) => {
      for (let i = 0; i < 5; i++) if (await pings(from, to)) return true;
      return false;
    };
    expect(await eventually(1, hubIp(3))).toBe(true); // spoke1 is host 2, spoke2 host 3
    expect(await eventually(3, hubIp(2))).toBe(true);
    // An ACL in the hub network: spokes may reach the hub (ops) but not each other. The spokes
    // lose the routes; the hub's forward chain would drop what a spoke sent anyway.
    const file = join(home.path, "hub-acl.json");
    await Bun.write(file, JSON.stringify({ rules: [{ src: ["tag:web"], dst: ["tag:ops"], ports: ["*"] }] }));
    await operator(["mesh", "acl", "branch", "--set", file]);
    for (const n of [4, 1, 2, 3]) await onNode(n, ["mesh", "agent", "--once", "--state", hubState(n)]);
    expect(await eventually(1, hubIp(1))).toBe(true);
    expect(await pings(1, hubIp(3))).toBe(false);
    const hubRules = (await inNs(nodeNs(4), ["nft", "list", "ruleset"])).stdout;
    expect(hubRules).toContain("chain mesh_fwd");
    expect(hubRules).toMatch(/mesh_fwd \{[^}]*drop/s);
    // No longer a hub: forwarding stays on (the host may need it), and its table now drops what a
    // former spoke would send through it, mesh or not (found in review).
    await operator(["mesh", "nodes", "set", "branch", "hub", "--no-hub"]);
    await onNode(4, ["mesh", "agent", "--once", "--state", hubState(4)]);
    const demoted = (await inNs(nodeNs(4), ["nft", "list", "table", "inet", `citadel_${hubIf(4)}`])).stdout;
    expect(demoted).toContain(`iifname "${hubIf(4)}" oifname "${hubIf(4)}" drop`);
    expect(demoted).toContain(`iifname "${hubIf(4)}" drop`);
  }, 120_000);

  test("a phone: join --qr prints the whole config as a QR code and writes nothing", async () => {
    const key = JSON.parse((await operator(["mesh", "keys", "create", "office", "--json"])).stdout).key as string;
    const r = await inNs(CONTROL_NS, [BINARY, "mesh", "join", "--server", `https://${SERVER}:${PORT}`, "--key", key, "--fingerprint", fingerprint, "--name", "phone", "--qr", "--state", join(home.path, "phone")]);
    expect(r.stdout).toMatch(/[█▀▄]/);
    expect(r.stdout.split("\n").length).toBeGreaterThan(20);
    expect(r.stderr).toContain("Enrolled phone");
    expect(await Bun.file(join(home.path, "phone", "node.json")).exists()).toBe(false);
  });

  test("after a reboot the node comes back from its stored, signed config, even with the control plane down", async () => {
    server!.kill("SIGTERM");
    await server!.exited;
    await inNs(nodeNs(4), ["ip", "link", "del", ifName(4)]);
    // A userspace wireguard-go still running would hold the interface's control socket.
    await Bun.sleep(300);
    for (const until = Date.now() + 10_000; wireguardGoRuns(ifName(4)) && Date.now() < until; ) await Bun.sleep(50);
    const r = await onNode(4, ["mesh", "agent", "--once", "--state", stateOf(4)], true);
    expect(r.stderr).toContain("applied the stored config");
    expect(r.code).not.toBe(0); // and it says the control plane cannot be reached
    expect(await pings(4, meshIp(3))).toBe(true);
  }, 60_000);
});
