/**
 * The mesh's data as the pure parts (plan.ts, render.ts, policy.ts) see it: plain values, no
 * store, no clock. The service builds these from its tables; the agent gets a NodeConfig in a
 * signed document and renders it for `wg` and `nft`.
 */

/**
 * A mesh interface name, as Linux, wg, wg-quick and nft (in a table name) all take it: 1–15 of
 * letters, digits, _ . - , not starting with - (a tool could read it as an option), and not
 * "." or ".." (the kernel refuses them). One rule for the API, the renderer and the agent.
 */
export const INTERFACE_NAME_RULE = "1–15 letters, digits or _ . -, not starting with -, not . or ..";

export function isInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$/.test(name) && name !== "." && name !== "..";
}

/** A WireGuard network of one organization. */
export interface MeshNetwork {
  id: string;
  name: string;
  /** IPv4 pool, "100.64.0.0/16". */
  ipv4: string;
  /** IPv6 ULA prefix, "fd7a:115c:a1e0::/48"; a node's IPv6 address has the same host number as its IPv4. */
  ipv6: string;
  /** UDP port nodes listen on (a node may override with its own port, or its endpoint's). */
  listenPort: number;
  mtu: number;
  /** PersistentKeepalive in seconds; 0 = off. */
  keepalive: number;
  /** "mesh": every allowed pair peers directly; "hub": spokes peer only with hubs, the first hub (by name) relays. */
  topology: "mesh" | "hub";
  /** Resolver addresses written as `DNS =` in wg-quick configs (empty: none). */
  dns: string[];
  /** Search domain for the nodes' names ("office.mesh.internal"), with `dns`; null: none. */
  searchDomain: string | null;
  /** The interface name agents create on nodes ("wgc-office"). */
  interfaceName: string;
}

/** An enrolled, enabled, unexpired node (the service leaves the others out). */
export interface MeshNode {
  id: string;
  name: string;
  tags: string[];
  /** Base64 X25519 public key (wg's form). */
  publicKey: string;
  /** The key the node is rotating to, accepted by peers during the overlap; null when not rotating. */
  nextPublicKey: string | null;
  /** "100.64.0.5" (no prefix length). */
  ipv4: string;
  /** "fd7a:115c:a1e0::5". */
  ipv6: string;
  /** "host:port" others reach it at; null when it cannot be reached (behind NAT). */
  endpoint: string | null;
  /** The port it listens on, set for it; absent or null: its endpoint's port, else the network's. */
  listenPort?: number | null;
  /** Relays for spokes in a hub network. */
  hub: boolean;
  /** When it enrolled (ms): of several hubs, the longest enrolled relays. Absent: name order alone. */
  enrolledAt?: number;
  /** Subnet routes in effect (advertised and approved), canonical; absent: none. Several nodes may offer one: the planner picks who serves it. */
  routes?: readonly string[];
  /**
   * The routes the control plane made this node serve (stored: routes.ts electPrimaries, failing
   * over on liveness); absent: none. A route no candidate offering it has here is served by the
   * candidate enrolled first.
   */
  primaryRoutes?: readonly string[];
  /** Its agent masquerades what it forwards from the mesh to the routes it serves (an operator's choice). */
  masqueradeRoutes?: boolean;
  /** It offers to be an exit node and an operator approved it (exits.ts); absent: not. */
  exitNode?: boolean;
  /** The id of the exit node it chose to use (its own choice); absent or null: none. */
  exitVia?: string | null;
}

/**
 * One ACL rule: traffic from any `src` to any `dst` on `ports` is allowed (replies follow).
 * Selectors: "*", "tag:<name>", "node:<name>", and in `dst` a prefix behind a subnet router. Ports: "*" (every protocol, ICMP too),
 * "22", "8000-8100", "tcp/5432", "udp/53", "icmp".
 */
export interface AclRule {
  src: string[];
  dst: string[];
  ports: string[];
}

/** A network's ACL policy: deny by default, no rules included (no one reaches anyone). No policy at all (null) lets every node reach every node. */
export interface AclPolicy {
  rules: AclRule[];
}

/** One [Peer] of a node's config. */
export interface PeerConfig {
  /** The peer node's name (a comment in rendered configs). */
  name: string;
  publicKey: string;
  /** During the peer's key rotation: its next key, rendered as a second [Peer] without AllowedIPs. */
  nextPublicKey: string | null;
  /** Base64 32-byte preshared key for this pair, or null. */
  presharedKey: string | null;
  /** CIDRs, sorted: the peer's own /32 and /128, and for a relaying hub what it relays. */
  allowedIps: string[];
  endpoint: string | null;
  /** Seconds; 0 = none. */
  keepalive: number;
}

/** A protocol/port filter an nftables rule matches. */
export interface PortMatch {
  /** "any" without ports = every protocol (ICMP too); "any" with ports ("22") = TCP or UDP on them. */
  protocol: "any" | "tcp" | "udp" | "icmp";
  /** Inclusive range; null for "*", "icmp", or every port of the protocol ("tcp/*"). */
  from: number | null;
  to: number | null;
}

/** Receiving-side filter: traffic from `sources` (addresses, no prefix) on `ports` is accepted. */
export interface FirewallRule {
  sources: string[];
  /** For a relaying hub's forward chain: the destinations; null in the input chain (this node). */
  destinations: string[] | null;
  ports: PortMatch[];
}

/** Everything one node needs, without its private key (which never leaves the node). */
export interface NodeConfig {
  network: { id: string; name: string; interfaceName: string };
  node: { id: string; name: string };
  /** Interface addresses with the network's prefix length: ["100.64.0.5/16", "fd7a:115c:a1e0::5/48"]. */
  addresses: string[];
  listenPort: number;
  mtu: number;
  dns: string[];
  searchDomain: string | null;
  peers: PeerConfig[];
  /** Subnet routes this node serves for the mesh (it forwards to them); absent: none. */
  routes?: string[];
  /**
   * With `routes`: what it forwards from the mesh's prefixes to them leaves with its own address
   * (nftables masquerade), so hosts there need no route back; absent: not (they need one).
   */
  masquerade?: boolean;
  /**
   * This node chose an exit node: `via` is the peer whose AllowedIPs carry 0.0.0.0/0 and ::/0
   * (its agent routes everything but the tunnel's own packets and the control plane through it,
   * as wg-quick does), or null when that one is not usable now (not approved, gone, or the ACL
   * does not let this node reach the internet): the agent then blocks what would have gone
   * through it rather than send it out directly (fail closed). Absent: it uses none.
   */
  exit?: { via: string | null };
  /**
   * null: no ACL (accept everything from the mesh). Otherwise deny by default. `routes`: what
   * may pass from the mesh to this node's subnet routes (absent when it serves none). `exit`:
   * on an exit node, who may go through it to the internet, on which ports (destinations null);
   * absent on any other node — and on an exit node no rule lets anyone use.
   */
  firewall: { input: FirewallRule[]; forward: FirewallRule[] | null; routes?: FirewallRule[]; exit?: FirewallRule[] } | null;
}
