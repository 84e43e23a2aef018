/** The [mesh] config section: the DNS domain of node names, who is told them, how agents poll, when a router is offline, and the timers of key rotation. */
import { Type, type Static } from "@sinclair/typebox";
import { ConfigError } from "../../src/config/error.ts";
import { section } from "../../src/config/schema.ts";
import { networkOf, parseClientCidr, type Cidr } from "../../src/net/ip.ts";

export const MeshSettings = section("WireGuard mesh: node names in DNS, how agents poll, when a subnet router is offline, how long a key rotation waits.", {
  domain: Type.String({
    default: "mesh.internal.",
    maxLength: 200,
    // DNS labels only: the domain goes into every node's wg-quick config (its DNS search line),
    // where a newline would add directives of its own (PostUp runs a shell command as root).
    pattern: "^$|^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?$",
    patternHint: 'a domain name of letters, digits and hyphens, such as "mesh.internal." (or "" for no names)',
    description: 'Nodes are named <node>.<network>.<domain> in the DNS server ("" : no names). ".internal" is reserved for private use (ICANN, 2024).',
  }),
  dns_clients: Type.Array(Type.String({ maxLength: 64 }), {
    default: [],
    maxItems: 256,
    description:
      'Prefixes, besides loopback and the mesh nodes\' own addresses (each told its own network\'s names), whose clients the DNS server tells the node names ("10.0.0.0/8"); everyone else is answered REFUSED for them. "0.0.0.0/0" tells every IPv4 client and "::/0" every IPv6 one, each only its own family (both: everyone; the names and addresses of the mesh become public where the server is reachable).',
  }),
  dns_ttl: Type.Integer({ default: 60, minimum: 0, maximum: 86_400, description: "TTL (seconds) of the nodes' A and AAAA records." }),
  poll_seconds: Type.Integer({ default: 30, minimum: 1, maximum: 3600, description: "How often agents ask for their config (they send its ETag, so an unchanged config costs a 304)." }),
  router_offline_after_seconds: Type.Integer({
    default: 90,
    minimum: 2,
    maximum: 86_400,
    description:
      "A subnet router whose agent has not asked for its config for this many seconds is offline: each route it serves that an online node offers too moves to that node (HA subnet routers), with a new version, and stays there when it comes back. At least twice poll_seconds.",
  }),
  max_nodes_per_network: Type.Integer({ default: 4096, minimum: 2, maximum: 65_534, description: "Enrollment stops at this many nodes in one network (each change sends every node a new config)." }),
  rotation_wait_minutes: Type.Integer({
    default: 10,
    minimum: 0,
    maximum: 10_080,
    description: "A node rotating its key switches once every peer has applied a config that accepts the new key, or after this many minutes (peers that were offline follow on their next poll).",
  }),
}, (s) => {
  dnsClientPrefixes(s.dns_clients);
  routerWindowFitsPolls(s.router_offline_after_seconds, s.poll_seconds);
});
export type MeshSettings = Static<typeof MeshSettings>;

/**
 * [mesh] dns_clients as prefixes, checked when the config is loaded: a typo stops start-up
 * naming the key (exit 2) rather than leaving the names refused to the clients it meant.
 */
export function dnsClientPrefixes(texts: readonly string[]): Cidr[] {
  return texts.map((text) => {
    const cidr = parseClientCidr(text); // ::ffff:10.0.0.0/104 is the IPv4 prefix it spells: clients are matched unmapped
    if (cidr !== null) return cidr;
    // A prefix with host bits set (10.0.0.1/8) is most likely a typo for another prefix: not guessed.
    const why = networkOf(text) !== null ? "has host bits set (is it the network's address?)" : "is not an address prefix";
    throw new ConfigError(`mesh.dns_clients: ${JSON.stringify(text)} ${why}, such as "10.0.0.0/8" or "fd00::/8"`);
  });
}

/**
 * A window shorter than two polls would take a router offline between two of its polls, and
 * move its routes back and forth (each move a new version for the whole network): refused at
 * start-up, naming both keys.
 */
function routerWindowFitsPolls(windowSeconds: number, pollSeconds: number): void {
  if (windowSeconds >= 2 * pollSeconds) return;
  throw new ConfigError(
    `mesh.router_offline_after_seconds: ${windowSeconds} is less than twice mesh.poll_seconds (${pollSeconds}): a router would be offline between two of its polls; give at least ${2 * pollSeconds}`,
  );
}

/** How often the control plane judges subnet routers: a third of the window, between 1 and 15 seconds. */
export function routerCheckMs(settings: Pick<MeshSettings, "router_offline_after_seconds">): number {
  return Math.min(15_000, Math.max(1000, Math.floor((settings.router_offline_after_seconds * 1000) / 3)));
}
