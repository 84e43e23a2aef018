/**
 * Text forms of a NodeConfig: a wg-quick(8) file, the `wg setconf` subset of it (what
 * `wg-quick strip` prints), and an nftables script that enforces the node's firewall. Pure and
 * deterministic: the same config renders to the same bytes, so agents and the server can
 * compare by hash.
 *
 * Field values (keys, endpoints, addresses) are written as they are: the service validates
 * them when they enter the store. Free text (names in comments) is flattened to one line so
 * that a name can never add a config line.
 */
import { isInterfaceName, type FirewallRule, type NodeConfig, type PeerConfig, type PortMatch } from "./types.ts";
import { cidrWithin, formatCidr, networkOf, parseCidr, type Cidr } from "../../src/net/ip.ts";
import { NOT_INTERNET } from "./exits.ts";

/** The comment written where the private key would go when the caller has none. */
export const PRIVATE_KEY_PLACEHOLDER = "# PrivateKey: kept on the node";

/** A wg-quick file for the node; without `privateKey`, a comment stands where it would go. */
export function renderWgQuick(config: NodeConfig, privateKey?: string): string {
  const lines = [
    `# Citadel mesh ${oneLine(config.network.name)}, node ${oneLine(config.node.name)}`,
    "[Interface]",
    privateKey === undefined ? PRIVATE_KEY_PLACEHOLDER : `PrivateKey = ${privateKey}`,
  ];
  if (config.addresses.length > 0) lines.push(`Address = ${config.addresses.join(", ")}`);
  if (config.listenPort > 0) lines.push(`ListenPort = ${config.listenPort}`);
  if (config.mtu > 0) lines.push(`MTU = ${config.mtu}`);
  if (config.dns.length > 0) {
    // wg-quick takes entries that are not addresses as search domains.
    const entries = config.searchDomain === null ? config.dns : [...config.dns, config.searchDomain];
    lines.push(`DNS = ${entries.join(", ")}`);
  }
  return lines.join("\n") + "\n" + renderPeers(config.peers);
}

/** The `wg setconf` / `wg syncconf` form: no Address, MTU or DNS, which only wg-quick knows. */
export function renderSetconf(config: NodeConfig, privateKey?: string): string {
  const lines = [`# Citadel mesh ${oneLine(config.network.name)}, node ${oneLine(config.node.name)}`, "[Interface]"];
  if (privateKey !== undefined) lines.push(`PrivateKey = ${privateKey}`);
  if (config.listenPort > 0) lines.push(`ListenPort = ${config.listenPort}`);
  return lines.join("\n") + "\n" + renderPeers(config.peers);
}

/**
 * Peer blocks, each preceded by a blank line. Plans share one frozen PeerConfig per node
 * among all configs that list it, so the text of a frozen peer is cached: rendering a full
 * mesh then formats each peer once rather than once per config.
 */
function renderPeers(peers: readonly PeerConfig[]): string {
  let out = "";
  for (const peer of peers) {
    let text = peerTexts.get(peer);
    if (text === undefined) {
      text = renderPeer(peer);
      if (Object.isFrozen(peer)) peerTexts.set(peer, text);
    }
    out += text;
  }
  return out;
}

const peerTexts = new WeakMap<PeerConfig, string>();

function renderPeer(peer: PeerConfig): string {
  const name = oneLine(peer.name);
  // Everything after PublicKey is the same for both blocks, except AllowedIPs.
  let common = "";
  if (peer.presharedKey !== null) common += `PresharedKey = ${peer.presharedKey}\n`;
  const rest = (peer.endpoint !== null ? `Endpoint = ${peer.endpoint}\n` : "") + (peer.keepalive > 0 ? `PersistentKeepalive = ${peer.keepalive}\n` : "");
  const routes = peer.allowedIps.length > 0 ? `AllowedIPs = ${peer.allowedIps.join(", ")}\n` : "";
  let text = `\n# ${name}\n[Peer]\nPublicKey = ${peer.publicKey}\n${common}${routes}${rest}`;
  // During a rotation the peer may already handshake with its next key; with no AllowedIPs
  // that block routes nothing until the rotation completes and the plan moves the routes.
  if (peer.nextPublicKey !== null) text += `\n# ${name} (next key)\n[Peer]\nPublicKey = ${peer.nextPublicKey}\n${common}${rest}`;
  return text;
}

function oneLine(text: string): string {
  return /[\r\n\u2028\u2029]/.test(text) ? text.replace(/[\r\n\u2028\u2029]+/g, " ") : text;
}

// ---------------------------------------------------------------------------------------------
// nftables


/**
 * The nftables table a node's firewall lives in: `citadel_` and the interface name, whose
 * characters (letters, digits, _ . -) nft takes in an identifier as they are, so that two
 * interfaces never share a table.
 */
export function nftablesTableName(interfaceName: string): string {
  return `citadel_${interfaceName}`;
}

/**
 * The interface whose name gives the table that `interfaceName`'s firewall lived in before, when
 * that differs: "-" and "." were made "_", so wgc-a and wgc_a shared one table, and each agent
 * replaced the other's policy. The agent retires that table (retireNftablesTable) in the same
 * script that loads the new one, when it filters this interface (else it is the other's own).
 */
export function formerNftablesTableInterface(interfaceName: string): string | null {
  const former = interfaceName.replace(/[.-]/g, "_");
  return former === interfaceName ? null : former;
}

/** Script lines that delete a table if it exists (declaring it first makes the delete succeed when it does not). */
export function retireNftablesTable(table: string): string {
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/**
 * An `nft -f` script that replaces the node's table in one transaction: declaring the table
 * first makes the delete succeed when it does not exist yet, and redefining it after the delete
 * means no packet ever sees a half-applied policy. Only traffic arriving on the mesh interface
 * is filtered; the rest of the host's firewall is not touched.
 *
 * It is filtered in prerouting, before the host's own DNAT: what is addressed to this node
 * goes through the node's policy (mesh_in) with the destination and port the peer sent it to,
 * so a port the host publishes by DNAT (a container's) is under the ACL like any other; what is
 * addressed to another mesh address is left to the forward chain (a hub relays it under the
 * mesh's forward rules; any other node drops it); anything else from the mesh is dropped, since
 * WireGuard checks a packet's source, never where it goes: no peer may route through this node
 * to its other networks, whatever the ACL — but for the subnet routes this node serves, which
 * pass under the ACL's rules for them (mesh_routes), decided in prerouting too, before DNAT: an
 * address in a route that the host DNATs (a Kubernetes ClusterIP) would otherwise pass the
 * forward chain as DNATed, on any port. With no ACL the table still exists, accepts what is
 * addressed to the node, the mesh or its routes, and applying it removes a previous policy.
 */
export function renderNftables(config: NodeConfig, interfaceName: string = config.network.interfaceName, { relay = false }: { relay?: boolean } = {}): string {
  if (!isInterfaceName(interfaceName)) throw new Error(`${JSON.stringify(interfaceName)} is not a usable interface name`);
  const name = nftablesTableName(interfaceName);
  const iface = `"${interfaceName}"`;
  const meshPrefixes = config.addresses.map((a) => networkOf(a)).filter((c) => c !== null);
  const exit = config.firewall?.exit;
  const out = [
    `# Citadel mesh ${oneLine(config.network.name)}, node ${oneLine(config.node.name)}: firewall of ${interfaceName}`,
    retireNftablesTable(name).trimEnd(),
    `table inet ${name} {`,
    "\tchain prerouting {",
    "\t\ttype filter hook prerouting priority -150; policy accept;",
    // Whatever the host delivers to itself is under the policy: its addresses, broadcast,
    // multicast, and anycast (with IPv6 forwarding on, Linux answers the subnet-router anycast address).
    `\t\tiifname ${iface} fib daddr type { local, broadcast, anycast, multicast } jump mesh_in`,
    ...meshPrefixes.map((c) => `\t\tiifname ${iface} ${c.family === 4 ? "ip" : "ip6"} daddr ${formatCidr(c)} accept`),
    // The subnet routes it serves: under the ACL's rules for them here, before the host's DNAT
    // (kube-proxy's, a port forward) can rewrite the destination to one the forward chain lets by.
    ...routeMatches(config.routes ?? []).map((match) => `\t\tiifname ${iface} ${match} ${config.firewall === null ? "accept" : "jump mesh_routes"}`),
    // An exit node: the internet, under the ACL's rules for autogroup:internet, before the host's DNAT too.
    ...(exit ? internetMatches(meshPrefixes).map((match) => `\t\tiifname ${iface} ${match} jump mesh_exit`) : []),
    `\t\tiifname ${iface} drop`,
    "\t}",
    "\tchain mesh_in {",
  ];
  const meshForward = config.firewall !== null && config.firewall.forward !== null;
  if (config.firewall === null) out.push("\t\taccept", "\t}");
  else out.push(...chainBody(config.firewall.input), "\t}");
  out.push("\tchain forward {", "\t\ttype filter hook forward priority 0; policy accept;");
  // Between mesh peers only a hub relays (only hubs have forward rules): under them when the mesh has an ACL.
  out.push(`\t\tiifname ${iface} oifname ${iface} ${meshForward ? "jump mesh_fwd" : relay ? "accept" : "drop"}`);
  // Out of the mesh: replies to what the host's containers or LAN opened through the mesh
  // (masqueraded), and what was DNATed, which prerouting judged with the address and port the
  // peer asked for (mesh_in: a port this host publishes; mesh_routes: an address in a route).
  out.push(`\t\tiifname ${iface} ct state established,related accept`, `\t\tiifname ${iface} ct status dnat accept`);
  // To the subnet routes this node serves: under the ACL's rules for them (as in prerouting), or all with no ACL.
  const routes = routeMatches(config.routes ?? []);
  for (const match of routes) out.push(`\t\tiifname ${iface} ${match} ${config.firewall === null ? "accept" : "jump mesh_routes"}`);
  if (exit) for (const match of internetMatches(meshPrefixes)) out.push(`\t\tiifname ${iface} ${match} jump mesh_exit`);
  out.push(`\t\tiifname ${iface} drop`, "\t}");
  if (meshForward) out.push("\tchain mesh_fwd {", ...chainBody(config.firewall!.forward!), "\t}");
  if (routes.length > 0 && config.firewall !== null) out.push("\tchain mesh_routes {", ...chainBody(config.firewall.routes ?? []), "\t}");
  if (exit) out.push("\tchain mesh_exit {", ...chainBody(exit), "\t}");
  const masquerade = [
    ...(config.masquerade && routes.length > 0 ? masqueradeRules(iface, meshPrefixes, addressSets(config.routes ?? [])) : []),
    // An exit node always masquerades: the mesh's addresses are private, and replies must find their way back.
    ...(exit ? masqueradeRules(iface, meshPrefixes, internetDestinations(meshPrefixes)) : []),
  ];
  if (masquerade.length > 0) out.push("\tchain mesh_masquerade {", "\t\ttype nat hook postrouting priority 100; policy accept;", ...masquerade, "\t}");
  if (config.exit) out.push(...exitClientChains(config, iface));
  out.push("}", "");
  return out.join("\n");
}

/**
 * What the internet is, per family, as a match on the destination: not the mesh's own prefixes
 * and none of the ranges that are not the internet (exits.ts NOT_INTERNET). One set per family,
 * without overlapping elements (nft refuses them in some versions): a pool inside such a range
 * adds nothing, and such a range inside a pool is left to the pool.
 */
function internetDestinations(meshPrefixes: readonly Cidr[]): AddressSets {
  const sets = { ip: "", ip6: "" };
  for (const family of ["ip", "ip6"] as const) {
    const pools = meshPrefixes.filter((prefix) => (prefix.family === 4) === (family === "ip"));
    const ranges = NOT_INTERNET[family].map((text) => parseCidr(text)!).filter((range) => !pools.some((pool) => cidrWithin(range, pool)));
    const extra = pools.filter((pool) => !ranges.some((range) => cidrWithin(pool, range)));
    sets[family] = `!= { ${[...ranges, ...extra].map(formatCidr).join(", ")} }`;
  }
  return sets;
}

/** `ip daddr != { ... }` and `ip6 daddr != { ... }`: what an exit node forwards to the internet. */
function internetMatches(meshPrefixes: readonly Cidr[]): string[] {
  const sets = internetDestinations(meshPrefixes);
  return [`ip daddr ${sets.ip}`, `ip6 daddr ${sets.ip6}`];
}

/**
 * The nftables half of wg-quick's default route (as `wg-quick up` loads it in its own table) for
 * a node using an exit node, its fwmark being its listen port: its own address answers nothing
 * arriving on another interface unless sent from this host (preraw), and the fwmark that keeps
 * the tunnel's UDP out of the tunnel is carried by conntrack to the replies (postmangle,
 * premangle), so that reverse-path filtering (with src_valid_mark) finds their way back outside
 * the tunnel too.
 */
function exitClientChains(config: NodeConfig, iface: string): string[] {
  const own = config.addresses.map((address) => address.slice(0, address.indexOf("/")));
  const mark = config.listenPort;
  return [
    "\tchain exit_preraw {",
    "\t\ttype filter hook prerouting priority -300; policy accept;",
    ...own.map((address) => `\t\tiifname != ${iface} ${address.includes(":") ? "ip6" : "ip"} daddr ${address} fib saddr type != local drop`),
    "\t}",
    "\tchain exit_premangle {",
    "\t\ttype filter hook prerouting priority -150; policy accept;",
    "\t\tmeta l4proto udp meta mark set ct mark",
    "\t}",
    "\tchain exit_postmangle {",
    "\t\ttype filter hook postrouting priority -150; policy accept;",
    `\t\tmeta l4proto udp meta mark ${mark} ct mark set meta mark`,
    "\t}",
  ];
}

/**
 * The rules of a router's masquerade (Tailscale's --snat-subnet-routes), and an exit node's:
 * what arrived on the mesh interface from the mesh's prefixes and leaves for a route it serves
 * (or the internet) goes out with the address of the interface it leaves by, so hosts there
 * answer the router and need no route back to the mesh. Source NAT, after the forward chain
 * judged the packet with its mesh source (the ACL's rules see who sent it); conntrack undoes it
 * on the replies. In the node's own table (chain mesh_masquerade), at the srcnat priority (100,
 * written as a number for older nft): the host's own NAT chains are left alone, and the chain
 * goes with the table when masquerading is turned off.
 */
function masqueradeRules(iface: string, meshPrefixes: readonly Cidr[], destinations: AddressSets): string[] {
  const lines: string[] = [];
  for (const prefix of meshPrefixes) {
    const family = prefix.family === 4 ? "ip" : "ip6";
    if (destinations[family] !== null) lines.push(`\t\tiifname ${iface} ${family} saddr ${formatCidr(prefix)} ${family} daddr ${destinations[family]} masquerade`);
  }
  return lines;
}

/** `ip daddr { ... }` and `ip6 daddr { ... }` for the routes of each family there are. */
function routeMatches(routes: readonly string[]): string[] {
  const sets = addressSets(routes);
  return (["ip", "ip6"] as const).flatMap((family) => (sets[family] === null ? [] : [`${family} daddr ${sets[family]}`]));
}

function chainBody(rules: readonly FirewallRule[]): string[] {
  const lines = ["\t\tct state established,related accept", "\t\tct state invalid drop"];
  for (const rule of rules) {
    const ports = portClauses(rule.ports);
    const sources = addressSets(rule.sources);
    const destinations = rule.destinations === null ? null : addressSets(rule.destinations);
    for (const family of ["ip", "ip6"] as const) {
      const saddr = sources[family];
      if (saddr === null) continue;
      let match = `${family} saddr ${saddr}`;
      if (destinations !== null) {
        const daddr = destinations[family];
        if (daddr === null) continue; // an empty set is a syntax error, and would match nothing
        match += ` ${family} daddr ${daddr}`;
      }
      for (const clause of ports[family]) lines.push(`\t\t${match}${clause} accept`);
    }
  }
  lines.push("\t\tdrop");
  return lines;
}

interface AddressSets {
  /** `{ a, b }` of the family's addresses, or null when there are none. */
  ip: string | null;
  ip6: string | null;
}

/**
 * Plans share one frozen address list per ACL rule among the configs of every node outside
 * it, so the set text of a frozen list is cached: a hub network's thousand firewalls then
 * format each rule's sets once.
 */
const addressSetTexts = new WeakMap<readonly string[], AddressSets>();

/** Addresses split by family into set literals, duplicates dropped (nft refuses some overlapping set elements). */
function addressSets(addresses: readonly string[]): AddressSets {
  const cached = addressSetTexts.get(addresses);
  if (cached) return cached;
  const ip: string[] = [];
  const ip6: string[] = [];
  const seen = new Set<string>();
  for (const address of addresses) {
    if (seen.has(address)) continue;
    seen.add(address);
    (address.includes(":") ? ip6 : ip).push(address);
  }
  const sets = { ip: ip.length > 0 ? `{ ${ip.join(", ")} }` : null, ip6: ip6.length > 0 ? `{ ${ip6.join(", ")} }` : null };
  if (Object.isFrozen(addresses)) addressSetTexts.set(addresses, sets);
  return sets;
}

/**
 * The protocol/port matches of a rule, per family, each with a leading space (or empty: the
 * rule accepts every protocol). "22" without a protocol means TCP and UDP, so it is written
 * into both port sets; overlapping ranges are merged because nft refuses overlapping
 * elements in some versions.
 */
function portClauses(ports: readonly PortMatch[]): { ip: string[]; ip6: string[] } {
  if (ports.some((p) => p.protocol === "any" && p.from === null)) return { ip: [""], ip6: [""] };
  let tcpAll = false;
  let udpAll = false;
  let icmp = false;
  const tcp: [number, number][] = [];
  const udp: [number, number][] = [];
  for (const p of ports) {
    if (p.protocol === "icmp") icmp = true;
    else if (p.from === null || p.to === null) {
      if (p.protocol === "tcp") tcpAll = true;
      if (p.protocol === "udp") udpAll = true;
    } else {
      if (p.protocol !== "udp") tcp.push([p.from, p.to]);
      if (p.protocol !== "tcp") udp.push([p.from, p.to]);
    }
  }
  const common: string[] = [];
  if (tcpAll) common.push(" meta l4proto tcp");
  else if (tcp.length > 0) common.push(` tcp dport { ${formatRanges(tcp)} }`);
  if (udpAll) common.push(" meta l4proto udp");
  else if (udp.length > 0) common.push(` udp dport { ${formatRanges(udp)} }`);
  return {
    ip: icmp ? [...common, " meta l4proto icmp"] : common,
    ip6: icmp ? [...common, " meta l4proto ipv6-icmp"] : common,
  };
}

function formatRanges(ranges: [number, number][]): string {
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged: [number, number][] = [];
  for (const [from, to] of ranges) {
    const last = merged[merged.length - 1];
    if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  return merged.map(([from, to]) => (from === to ? String(from) : `${from}-${to}`)).join(", ");
}
