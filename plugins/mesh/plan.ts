/**
 * Turns a network, its nodes and its ACL policy into every node's NodeConfig: which peers a
 * node has, what it routes to each, and what its firewall accepts. Pure: same input, same
 * output, byte for byte (peers sorted by name, addresses in numeric order, IPv4 first).
 *
 * Semantics:
 * - Policy. None (null): everyone may reach everyone and `firewall` is null. A policy: deny by
 *   default — one without rules lets nobody reach anybody. A node's `firewall.input` has one rule per ACL rule whose `dst` holds the node,
 *   with `sources` = the IPv4 and IPv6 addresses of the rule's `src` nodes other than itself
 *   (a rule left with no sources is omitted) and the rule's ports.
 * - "mesh" topology. X peers with every other node Y such that X may reach Y or Y may reach X
 *   (either way, since replies need the tunnel too). Y's AllowedIPs are its own /32 and /128.
 * - "hub" topology. Hubs are the nodes with `hub`, by name; the first is the relay hub.
 *   A hub peers like a mesh node, plus with every spoke whatever the policy (it relays).
 *   A spoke peers with the hubs only, never with another spoke. Its relay-hub peer routes the
 *   hub's own addresses plus those of every other spoke the spoke may reach or be reached by;
 *   past 32 AllowedIPs it routes the network's two prefixes instead (a coarse route: the hub's
 *   forward chain still enforces the policy, and other hubs' /32s win by longest prefix).
 *   Other hubs route only their own addresses. With a policy, every hub gets
 *   `firewall.forward`: one rule per ACL rule with the src and dst nodes' addresses, this hub
 *   left out of both (it forwards only between others); omitted when either side is empty.
 *   Spokes and mesh nodes have `forward` null. With no hub at all, spokes have no peers.
 * - Subnet routes. A route (a node's `routes`: advertised and approved) is served by one node:
 *   of those offering it, the one whose `primaryRoutes` hold it (the control plane stores who
 *   serves a route, and moves it when its router goes offline), else the one enrolled first
 *   (then by name), as the relay hub is chosen — in a hub network only hubs serve routes
 *   (spokes peer with hubs alone). Node x may reach a
 *   route when there is no policy, or a rule with x in `src` has a `dst` prefix overlapping it,
 *   unless x offers that route itself (a standby router, on the LAN already).
 *   Then x and the router peer (the router needs x as a peer to take its packets), and the
 *   router's AllowedIPs in x's config carry the route after its own addresses. The router's
 *   config lists what it serves (`routes`) and, with a policy, `firewall.routes`: one rule per
 *   ACL rule reaching them, with its src nodes (the router left out) and as destinations the
 *   narrower of each overlapping dst prefix and route. A router the operator asked to masquerade
 *   (`masqueradeRoutes`) has `masquerade` in its config, only while it serves a route.
 * - Exit nodes (exits.ts). A node that chose an exit node (`exitVia`) uses it while it is one
 *   (`exitNode`; a hub, in a hub network), is not itself, and a rule lets the node reach
 *   autogroup:internet — never with no policy. Then the two peer, and the exit node's AllowedIPs
 *   in the node's config end with 0.0.0.0/0 and ::/0; the node's config has `exit.via` = its
 *   name, or null when the one it chose is not usable (its agent then blocks the internet
 *   rather than send it out directly). An exit node's config has, with a policy,
 *   `firewall.exit`: one rule per ACL rule reaching autogroup:internet, with its src nodes (the
 *   exit node left out) and its ports; absent when no rule has one.
 * - Every peer gets `endpoint` = its endpoint, `keepalive` = the network's, `nextPublicKey`
 *   = its next key, and `presharedKey` = presharedKey(self, peer) (the caller returns the same
 *   key for both directions of a pair).
 * - `addresses` = the node's IPv4 and IPv6 with the network's prefix lengths; `listenPort` =
 *   the node's own listen port when it has one, else the port of its endpoint when it has
 *   one, else the network's.
 *
 * Speed: a 1,000-node full mesh is a million peer entries, so everything per node (its /32
 * and /128 strings, its PeerConfig) is made once and shared by every config that lists it;
 * only a preshared key forces a per-pair object. Shared parts are frozen: a caller that
 * wants to change a config must copy it.
 */
import { formatCidr, formatIp, parseCidr, parseIp, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import { AclMatrix, hasNode, nodeSetMembers, type CompiledRule, type NodeSet } from "./policy.ts";
import { EXIT_ROUTES } from "./exits.ts";
import { overlaps, primaryRoutes } from "./routes.ts";
import type { AclPolicy, FirewallRule, MeshNetwork, MeshNode, NodeConfig, PeerConfig } from "./types.ts";

/** Returns the preshared key of a pair (the same for (a, b) and (b, a)), or null for none. */
export type PresharedKeyOf = (a: MeshNode, b: MeshNode) => string | null;

/** Past this many AllowedIPs on a spoke's relay-hub peer, the network's prefixes are routed instead. */
export const MAX_RELAY_ALLOWED_IPS = 32;

/** Every node's config, keyed by node id (in node-name order). */
export function planNetwork(network: MeshNetwork, nodes: MeshNode[], policy: AclPolicy | null, presharedKey?: PresharedKeyOf): Map<string, NodeConfig> {
  const plan = new MeshPlan(network, nodes, policy, presharedKey);
  const out = new Map<string, NodeConfig>();
  for (let i = 0; i < plan.nodes.length; i++) out.set(plan.nodes[i]!.id, plan.configAt(i));
  return out;
}

/** One node's config, identical to planNetwork's entry for it. Throws when the id is not among `nodes`. */
export function planNode(
  network: MeshNetwork,
  nodes: MeshNode[],
  policy: AclPolicy | null,
  nodeId: string,
  presharedKey?: PresharedKeyOf,
): NodeConfig {
  const plan = new MeshPlan(network, nodes, policy, presharedKey);
  const config = plan.config(nodeId);
  if (!config) throw new Error(`node ${nodeId} is not in network ${network.id}`);
  return config;
}

function frozen<T extends object>(value: T): T {
  return Object.freeze(value) as T;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function parseAddress(text: string, family: 4 | 6, what: string): IpAddress {
  const ip = parseIp(text);
  if (!ip || ip.family !== family) throw new Error(`${what}: ${JSON.stringify(text)} is not an IPv${family} address`);
  return ip;
}

function parsePrefix(text: string, family: 4 | 6, what: string): Cidr {
  const cidr = parseCidr(text);
  if (!cidr || cidr.family !== family) throw new Error(`${what}: ${JSON.stringify(text)} is not an IPv${family} prefix`);
  return cidr;
}

/** The port of "host:port" or "[v6]:port", or null. */
function endpointPort(endpoint: string): number | null {
  const match = /:(\d{1,5})$/.exec(endpoint);
  if (!match) return null;
  const port = Number(match[1]);
  return port >= 1 && port <= 65535 ? port : null;
}

/**
 * The port a node listens on when it is not the network's: its own (a port forward from another
 * number, a host in two networks), else its endpoint's (what peers send to); null: neither.
 */
function ownListenPort(node: MeshNode): number | null {
  return node.listenPort ?? (node.endpoint !== null ? endpointPort(node.endpoint) : null);
}

/**
 * The precomputed state planNetwork and planNode share: nodes sorted by name, their strings,
 * the evaluated policy. Build it once and call `config` for as many nodes as needed.
 */
export class MeshPlan {
  /** The nodes in name order (ties by id); indices below are positions here. */
  readonly nodes: readonly MeshNode[];
  readonly acl: AclMatrix;
  private readonly byId = new Map<string, number>();
  private readonly v4: string[] = [];
  private readonly v6: string[] = [];
  /** [ipv4/32, ipv6/128] per node. */
  private readonly ownRoutes: string[][] = [];
  /** Positions in numeric IPv4 / IPv6 order, to sort any subset without comparing addresses. */
  private readonly rank4: Int32Array;
  private readonly rank6: Int32Array;
  private readonly order4: number[];
  private readonly order6: number[];
  private readonly isHub: NodeSet;
  /** Hub indices, the longest enrolled first (then by name); hubs[0] relays. */
  private readonly hubs: number[];
  private readonly coarseRoute: string[];
  private readonly prefix4: number;
  private readonly prefix6: number;
  private readonly words: number;
  /** Per node, its PeerConfig without a preshared key, made on first use. */
  private readonly sharedPeers: (PeerConfig | undefined)[];
  /** Per node, the subnet routes it serves, and for each the nodes that may reach it (never itself). */
  private readonly served: { route: string; prefix: Cidr; reach: NodeSet }[][];
  /** Per node, the nodes it peers with for subnet routes and exit nodes: routers it reaches, those reaching its routes, its exit node, those using it. */
  private readonly routePeers: NodeSet[];
  /** Per node, the exit node it uses (an index), -1 when it uses none or the one it chose is not usable. */
  private readonly exitOf: Int32Array;
  /** Per rule, the sorted addresses of its src / dst nodes, made on first use. */
  private readonly srcAddresses = new Map<CompiledRule, string[]>();
  private readonly dstAddresses = new Map<CompiledRule, string[]>();

  constructor(
    readonly network: MeshNetwork,
    nodes: readonly MeshNode[],
    policy: AclPolicy | null,
    private readonly presharedKey?: PresharedKeyOf,
  ) {
    this.nodes = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.acl = AclMatrix.compile(policy, this.nodes);
    const n = this.nodes.length;
    this.words = (n + 31) >>> 5;
    const net4 = parsePrefix(network.ipv4, 4, `network ${network.id} ipv4`);
    const net6 = parsePrefix(network.ipv6, 6, `network ${network.id} ipv6`);
    this.prefix4 = net4.prefix;
    this.prefix6 = net6.prefix;
    this.coarseRoute = frozen([formatCidr(net4), formatCidr(net6)]);

    const bytes4: Uint8Array[] = [];
    const bytes6: Uint8Array[] = [];
    this.isHub = new Uint32Array(this.words);
    this.hubs = [];
    this.nodes.forEach((node, i) => {
      this.byId.set(node.id, i);
      const ip4 = parseAddress(node.ipv4, 4, `node ${node.name} ipv4`);
      const ip6 = parseAddress(node.ipv6, 6, `node ${node.name} ipv6`);
      bytes4.push(ip4.bytes);
      bytes6.push(ip6.bytes);
      // Canonical spellings, so that the same address is never written two ways.
      const a4 = formatIp(ip4);
      const a6 = formatIp(ip6);
      this.v4.push(a4);
      this.v6.push(a6);
      this.ownRoutes.push(frozen([`${a4}/32`, `${a6}/128`]));
      if (node.hub) {
        this.isHub[i >>> 5]! |= 1 << (i & 31);
        this.hubs.push(i);
      }
    });
    // The relay is the hub enrolled first, not the one whose name sorts first: whoever holds a
    // hub key could otherwise make their node every spoke's relay by its name alone.
    this.hubs.sort((a, b) => (this.nodes[a]!.enrolledAt ?? 0) - (this.nodes[b]!.enrolledAt ?? 0) || a - b);
    const indices = Array.from({ length: n }, (_, i) => i);
    this.order4 = [...indices].sort((a, b) => compareBytes(bytes4[a]!, bytes4[b]!));
    this.order6 = [...indices].sort((a, b) => compareBytes(bytes6[a]!, bytes6[b]!));
    this.rank4 = new Int32Array(n);
    this.rank6 = new Int32Array(n);
    this.order4.forEach((node, rank) => (this.rank4[node] = rank));
    this.order6.forEach((node, rank) => (this.rank6[node] = rank));
    this.sharedPeers = new Array<PeerConfig | undefined>(n);
    this.served = this.serveRoutes();
    this.routePeers = Array.from({ length: n }, () => new Uint32Array(this.words));
    const peerUp = (x: number, p: number) => {
      this.routePeers[x]![p >>> 5]! |= 1 << (p & 31);
      this.routePeers[p]![x >>> 5]! |= 1 << (x & 31);
    };
    this.served.forEach((routes, p) => {
      for (const { reach } of routes) for (const x of nodeSetMembers(reach)) peerUp(x, p);
    });
    this.exitOf = this.useExits();
    this.exitOf.forEach((e, x) => {
      if (e >= 0) peerUp(x, e);
    });
  }

  /** Whether node i is an exit node in effect: approved, and a hub in a hub network (spokes peer with hubs alone). */
  private isExit(i: number): boolean {
    return this.nodes[i]!.exitNode === true && (this.network.topology !== "hub" || hasNode(this.isHub, i));
  }

  /**
   * Per node, the exit node it uses: the one it chose, while that one is an exit node in effect,
   * is not itself, and a rule lets this node reach autogroup:internet (never with no policy:
   * deny by default). An exit node uses none itself: its own default route carries its users'
   * traffic.
   */
  private useExits(): Int32Array {
    const out = new Int32Array(this.nodes.length).fill(-1);
    const internet = this.acl.rules.filter((rule) => rule.dstInternet);
    this.nodes.forEach((node, x) => {
      if (!node.exitVia || this.isExit(x) || this.acl.allowAll) return;
      const e = this.byId.get(node.exitVia);
      if (e === undefined || e === x || !this.isExit(e)) return;
      if (internet.some((rule) => hasNode(rule.src, x))) out[x] = e;
    });
    return out;
  }

  /** Who serves which route (see the header), and who may reach each. */
  private serveRoutes(): { route: string; prefix: Cidr; reach: NodeSet }[][] {
    const n = this.nodes.length;
    const candidates = Array.from({ length: n }, (_, i) => i).filter((i) => this.network.topology !== "hub" || hasNode(this.isHub, i));
    candidates.sort((a, b) => (this.nodes[a]!.enrolledAt ?? 0) - (this.nodes[b]!.enrolledAt ?? 0) || a - b);
    const stored = new Map<string, string>();
    for (const node of this.nodes) for (const route of node.primaryRoutes ?? []) stored.set(route, node.id);
    const primaries = primaryRoutes(
      candidates.map((i) => ({ id: this.nodes[i]!.id, routes: this.nodes[i]!.routes ?? [] })),
      stored,
    );
    const offeredBy = this.offeredBy();
    const served = Array.from({ length: n }, () => [] as { route: string; prefix: Cidr; reach: NodeSet }[]);
    candidates.forEach((p, k) => {
      served[p] = primaries[k]!.map((route) => {
        const prefix = parseCidr(route);
        if (!prefix) throw new Error(`node ${this.nodes[p]!.name}: ${JSON.stringify(route)} is not a prefix`);
        const reach = new Uint32Array(this.words);
        if (this.acl.allowAll) for (let i = 0; i < n; i++) reach[i >>> 5]! |= 1 << (i & 31);
        for (const rule of this.acl.rules) {
          if (!rule.dstPrefixes.some((d) => overlaps(d, prefix))) continue;
          for (let w = 0; w < this.words; w++) reach[w]! |= rule.src[w]!;
        }
        // The router reaches its LAN itself, not through the mesh; so does a standby offering the
        // same route: given it, its agent would route its own LAN into the tunnel.
        for (const i of offeredBy.get(route) ?? []) reach[i >>> 5]! &= ~(1 << (i & 31));
        return { route, prefix, reach };
      });
    });
    return served;
  }

  /** Per route, the nodes offering it (served or not: a standby, a spoke in a hub network). */
  private offeredBy(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    this.nodes.forEach((node, i) => {
      for (const route of node.routes ?? []) out.set(route, [...(out.get(route) ?? []), i]);
    });
    return out;
  }

  /** The config of the node with this id, or null when it is not in the network. */
  config(nodeId: string): NodeConfig | null {
    const index = this.byId.get(nodeId);
    return index === undefined ? null : this.configAt(index);
  }

  /** The config of the node at this position of `nodes`. */
  configAt(x: number): NodeConfig {
    const node = this.nodes[x]!;
    const network = this.network;
    const hubTopology = network.topology === "hub";
    const spoke = hubTopology && !hasNode(this.isHub, x);
    const routes = this.served[x]!;
    const config: NodeConfig = {
      network: { id: network.id, name: network.name, interfaceName: network.interfaceName },
      node: { id: node.id, name: node.name },
      addresses: [`${this.v4[x]}/${this.prefix4}`, `${this.v6[x]}/${this.prefix6}`],
      listenPort: ownListenPort(node) ?? network.listenPort,
      mtu: network.mtu,
      dns: [...network.dns],
      searchDomain: network.searchDomain,
      peers: spoke ? this.spokePeers(x) : this.directPeers(x, hubTopology),
      firewall: this.acl.allowAll
        ? null
        : { input: this.inputRules(x), forward: hubTopology && !spoke ? this.forwardRules(x) : null },
    };
    // Only on a node that chose one (an exit node's own choice stands aside: see useExits).
    if (node.exitVia && !this.isExit(x)) config.exit = { via: this.exitOf[x]! >= 0 ? this.nodes[this.exitOf[x]!]!.name : null };
    if (config.firewall && this.isExit(x)) {
      const exit = this.exitRules(x);
      if (exit.length > 0) config.firewall.exit = exit;
    }
    // Only on a router: the configs of every other node stay as they were before routes existed.
    if (routes.length > 0) {
      config.routes = routes.map((r) => r.route);
      if (config.firewall) config.firewall.routes = this.routeRules(x);
      if (node.masqueradeRoutes) config.masquerade = true;
    }
    return config;
  }

  /** The set of nodes x talks to in either direction, itself excluded. */
  private talksWith(x: number): NodeSet {
    const out = this.acl.reachableFrom(x);
    const inc = this.acl.reachingTo(x);
    const viaRoutes = this.routePeers[x]!;
    const set = new Uint32Array(this.words);
    for (let w = 0; w < this.words; w++) set[w] = out[w]! | inc[w]! | viaRoutes[w]!;
    set[x >>> 5]! &= ~(1 << (x & 31));
    return set;
  }

  /** Mesh nodes and hubs: a direct peer for each node talked with (and, for a hub, every spoke). */
  private directPeers(x: number, hub: boolean): PeerConfig[] {
    const set = this.talksWith(x);
    if (hub) {
      for (let w = 0; w < this.words; w++) set[w]! |= ~this.isHub[w]!;
      // The complement above also set the unused bits past the last node; clear them and x.
      const n = this.nodes.length;
      if (n & 31) set[this.words - 1]! &= (1 << (n & 31)) - 1;
      set[x >>> 5]! &= ~(1 << (x & 31));
    }
    const members = nodeSetMembers(set);
    const peers = new Array<PeerConfig>(members.length);
    for (let k = 0; k < members.length; k++) peers[k] = this.peer(x, members[k]!, null);
    return peers;
  }

  /** A spoke: the hubs, the relay hub routing the other spokes it talks with. */
  private spokePeers(x: number): PeerConfig[] {
    return this.hubs.map((h, k) => this.peer(x, h, k === 0 ? this.relayRoutes(x, h) : null));
  }

  private relayRoutes(x: number, relay: number): string[] {
    const set = this.talksWith(x);
    for (let w = 0; w < this.words; w++) set[w]! &= ~this.isHub[w]!;
    let count = 0;
    for (let w = 0; w < this.words; w++) count += popcount(set[w]!);
    if (2 * (count + 1) > MAX_RELAY_ALLOWED_IPS) return this.coarseRoute;
    const members = nodeSetMembers(set);
    members.push(relay);
    const by4 = [...members].sort((a, b) => this.rank4[a]! - this.rank4[b]!);
    const by6 = members.sort((a, b) => this.rank6[a]! - this.rank6[b]!);
    return [...by4.map((i) => this.ownRoutes[i]![0]!), ...by6.map((i) => this.ownRoutes[i]![1]!)];
  }

  /** Node y as a peer of node x; `routes` overrides y's own /32 and /128; y's subnet routes x may reach follow. */
  private peer(x: number, y: number, routes: string[] | null): PeerConfig {
    const psk = this.presharedKey ? this.presharedKey(this.nodes[x]!, this.nodes[y]!) : null;
    const subnets = this.served[y]!.filter((r) => hasNode(r.reach, x)).map((r) => r.route);
    // x's exit node: the default routes too, last (wg-quick's way: the agent routes them through a table of their own).
    if (this.exitOf[x] === y) subnets.push(...EXIT_ROUTES);
    if (subnets.length > 0) routes = [...(routes ?? this.ownRoutes[y]!), ...subnets];
    if (psk === null && routes === null) return this.sharedPeer(y);
    const other = this.nodes[y]!;
    return {
      name: other.name,
      publicKey: other.publicKey,
      nextPublicKey: other.nextPublicKey,
      presharedKey: psk,
      allowedIps: routes ?? this.ownRoutes[y]!,
      endpoint: other.endpoint,
      keepalive: this.network.keepalive,
    };
  }

  private sharedPeer(y: number): PeerConfig {
    let peer = this.sharedPeers[y];
    if (!peer) {
      const other = this.nodes[y]!;
      peer = frozen<PeerConfig>({
        name: other.name,
        publicKey: other.publicKey,
        nextPublicKey: other.nextPublicKey,
        presharedKey: null,
        allowedIps: this.ownRoutes[y]!,
        endpoint: other.endpoint,
        keepalive: this.network.keepalive,
      });
      this.sharedPeers[y] = peer;
    }
    return peer;
  }

  private inputRules(x: number): FirewallRule[] {
    const rules: FirewallRule[] = [];
    for (const rule of this.acl.rulesInto(x)) {
      const sources = this.without(this.addressesOf(rule, "src"), rule.src, x);
      if (sources.length > 0) rules.push({ sources, destinations: null, ports: rule.ports });
    }
    return rules;
  }

  private forwardRules(x: number): FirewallRule[] {
    const rules: FirewallRule[] = [];
    for (const rule of this.acl.rules) {
      const sources = this.without(this.addressesOf(rule, "src"), rule.src, x);
      const destinations = this.without(this.addressesOf(rule, "dst"), rule.dst, x);
      if (sources.length > 0 && destinations.length > 0) rules.push({ sources, destinations, ports: rule.ports });
    }
    return rules;
  }

  /** Router x: per ACL rule reaching its routes, the rule's sources and the parts of the routes it reaches. */
  private routeRules(x: number): FirewallRule[] {
    const rules: FirewallRule[] = [];
    for (const rule of this.acl.rules) {
      const destinations = new Set<string>();
      for (const { prefix } of this.served[x]!) {
        for (const d of rule.dstPrefixes) if (overlaps(d, prefix)) destinations.add(formatCidr(d.prefix >= prefix.prefix ? d : prefix));
      }
      const sources = this.without(this.addressesOf(rule, "src"), rule.src, x);
      if (sources.length > 0 && destinations.size > 0) rules.push({ sources, destinations: [...destinations], ports: rule.ports });
    }
    return rules;
  }

  /** Exit node x: per ACL rule reaching autogroup:internet, its sources (x left out) and ports. */
  private exitRules(x: number): FirewallRule[] {
    const rules: FirewallRule[] = [];
    for (const rule of this.acl.rules) {
      if (!rule.dstInternet) continue;
      const sources = this.without(this.addressesOf(rule, "src"), rule.src, x);
      if (sources.length > 0) rules.push({ sources, destinations: null, ports: rule.ports });
    }
    return rules;
  }

  /** The addresses of a rule's side, IPv4 then IPv6, each in numeric order (cached, frozen). */
  private addressesOf(rule: CompiledRule, side: "src" | "dst"): string[] {
    const cache = side === "src" ? this.srcAddresses : this.dstAddresses;
    let list = cache.get(rule);
    if (!list) {
      const set = rule[side];
      const members = side === "src" ? rule.srcMembers : rule.dstMembers;
      list = [];
      // Walking the global numeric order is linear; sorting each rule's members would not be.
      if (members.length > 0) {
        for (const i of this.order4) if (hasNode(set, i)) list.push(this.v4[i]!);
        for (const i of this.order6) if (hasNode(set, i)) list.push(this.v6[i]!);
      }
      frozen(list);
      cache.set(rule, list);
    }
    return list;
  }

  /** `list` without node x's addresses (the shared list itself when x is not in it). */
  private without(list: string[], set: NodeSet, x: number): string[] {
    if (!hasNode(set, x)) return list;
    const v4 = this.v4[x];
    const v6 = this.v6[x];
    return list.filter((address) => address !== v4 && address !== v6);
  }
}

function popcount(word: number): number {
  word -= (word >>> 1) & 0x55555555;
  word = (word & 0x33333333) + ((word >>> 2) & 0x33333333);
  return (((word + (word >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
