/**
 * Subnet routes: prefixes behind a node (its LAN, a container network) that it routes for the
 * mesh, as Tailscale's and Headscale's subnet routers do. The node advertises them (at
 * enrollment, or later with its own token); an operator approves them; only a route both
 * advertised and approved is in effect. Pure: the service checks what is sent and stores who
 * serves a route that several offer (electPrimaries: the one enrolled first, then failing over
 * on liveness); the planner (plan.ts) serves each route by the node stored for it.
 */
import { InvalidError } from "../../src/errors.ts";
import { cidrWithin, formatCidr, networkOf, parseCidr, unmapCidr, type Cidr } from "../../src/net/ip.ts";

/** At most this many routes a node advertises, and as many an operator approves for it. */
export const MAX_ROUTES_PER_NODE = 32;

/** Shorter than these, a route is much of the internet: an exit node in parts (0.0.0.0/1 and 128.0.0.0/1 make a default route). */
export const SHORTEST_PREFIX = { 4: 8, 6: 16 } as const;

/** Addresses no node routes for the mesh: they mean something on every host, or nothing as a route. */
const SPECIAL_RANGES: readonly { range: Cidr; what: string }[] = [
  ["0.0.0.0/8", "unspecified (\"this network\")"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local (the cloud metadata address among them)"],
  ["224.0.0.0/4", "multicast"],
  ["255.255.255.255/32", "broadcast"],
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["::ffff:0:0/96", "IPv4-mapped"],
  ["fe80::/10", "link-local"],
  ["ff00::/8", "multicast"],
].map(([text, what]) => ({ range: parseCidr(text!)!, what: what! }));

/** Another network of the organization's pool, which no route may overlap either. */
export interface OtherPool {
  network: string;
  pool: string;
}

/**
 * A list of routes as sent (advertised or approved), checked and in canonical form: unique,
 * IPv4 first, each family in numeric order. Refused (InvalidError naming `field`): a prefix
 * with host bits set (the network address is suggested), a default route (0.0.0.0/0, ::/0 —
 * an exit node's, which the service takes out first: exits.ts) or one in pieces (IPv4 shorter
 * than /8, IPv6 shorter than /16), loopback, unspecified, link-local,
 * multicast, broadcast and IPv4-mapped addresses, and a prefix overlapping the network's own
 * pools (its nodes' addresses must stay theirs) or those of the organization's other networks.
 */
export function checkRoutes(list: unknown, field: string, pools: readonly string[], otherPools: readonly OtherPool[] = []): string[] {
  if (!Array.isArray(list)) throw new InvalidError(`${field}: a list of prefixes (10.1.0.0/24, fd00:1::/64)`, field);
  if (list.length > MAX_ROUTES_PER_NODE) throw new InvalidError(`${field}: ${list.length} routes, at most ${MAX_ROUTES_PER_NODE} per node`, field);
  const own = pools.map((pool) => parseCidr(pool)).filter((pool) => pool !== null);
  const others = otherPools.flatMap(({ network, pool }) => {
    const cidr = parseCidr(pool);
    return cidr ? [{ network, pool: cidr }] : [];
  });
  const routes = list.map((text, i) => checkRoute(text, `${field}[${i}]`, own, others));
  return [...new Set(routes.map(formatCidr))].map((text) => parseCidr(text)!).sort(compareCidrs).map(formatCidr);
}

function checkRoute(text: unknown, at: string, pools: readonly Cidr[], others: readonly { network: string; pool: Cidr }[]): Cidr {
  if (typeof text !== "string") throw new InvalidError(`${at}: expected a prefix such as 10.1.0.0/24`, at);
  const route = text.includes("/") ? parseCidr(text) : null;
  if (!route) {
    const network = text.includes("/") ? networkOf(text) : null;
    if (network) throw new InvalidError(`${at}: ${JSON.stringify(text)} is not a network address (host bits are set): did you mean ${formatCidr(network)}?`, at);
    throw new InvalidError(`${at}: ${JSON.stringify(text)} is not a prefix (address/length, such as 10.1.0.0/24 or fd00:1::/64)`, at);
  }
  // The service takes 0.0.0.0/0 and ::/0 out first, together (exits.ts): here they are not subnet routes.
  if (route.prefix === 0) {
    throw new InvalidError(`${at}: ${text} is a default route, not a subnet route: an exit node offers 0.0.0.0/0 and ::/0 together`, at);
  }
  const shortest = SHORTEST_PREFIX[route.family];
  if (route.prefix < shortest) {
    throw new InvalidError(`${at}: ${text} is shorter than /${shortest} for IPv${route.family}: that much of the internet through one node is an exit node in parts (offer 0.0.0.0/0 and ::/0 for an exit node, or the networks behind it)`, at);
  }
  const special = SPECIAL_RANGES.find(({ range }) => overlaps(range, route));
  if (special) {
    const unmapped = special.what === "IPv4-mapped" ? unmapCidr(route) : route;
    const hint = unmapped.family === 4 && unmapped.prefix >= SHORTEST_PREFIX[4] ? ` (write it as ${formatCidr(unmapped)})` : "";
    throw new InvalidError(`${at}: ${text} overlaps ${formatCidr(special.range)}, ${special.what} addresses, which no node routes for the mesh${hint}`, at);
  }
  const overlapped = pools.find((pool) => overlaps(pool, route));
  if (overlapped) throw new InvalidError(`${at}: ${text} overlaps the network's own addresses (${formatCidr(overlapped)}): they are its nodes'`, at);
  const other = others.find(({ pool }) => overlaps(pool, route));
  if (other) throw new InvalidError(`${at}: ${text} overlaps the addresses of the organization's network ${other.network} (${formatCidr(other.pool)}): they are its nodes'`, at);
  return route;
}

/** True when one prefix lies inside the other. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return cidrWithin(a, b) || cidrWithin(b, a);
}

/** IPv4 before IPv6, then by address, then the shorter prefix first. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i]! - b.bytes[i]!;
  return a.prefix - b.prefix;
}

/** The routes in effect on a node: advertised and approved (both canonical lists). */
export function routesInEffect(advertised: readonly string[], approved: readonly string[]): string[] {
  const yes = new Set(approved);
  return advertised.filter((route) => yes.has(route));
}

/** Advertised, waiting for an operator's approval. */
export function pendingRoutes(advertised: readonly string[], approved: readonly string[]): string[] {
  const yes = new Set(approved);
  return advertised.filter((route) => !yes.has(route));
}

/**
 * Which node serves each route, when several offer the same prefix (WireGuard routes a prefix
 * to one peer only): the one `primaries` names (route → node id: the control plane stores who
 * serves a route, see electPrimaries) while it is among the candidates offering it, else the
 * candidate first in `candidates`' order — the planner gives them longest enrolled first, as it
 * picks the relay hub, so that no newcomer takes a route over by its name. Returns, per
 * candidate index, the routes it serves.
 */
export function primaryRoutes(candidates: readonly { id?: string; routes: readonly string[] }[], primaries: ReadonlyMap<string, string> = new Map()): string[][] {
  const servedBy = new Map<string, number>();
  candidates.forEach((candidate, i) => {
    for (const route of candidate.routes) {
      const named = primaries.get(route);
      const current = servedBy.get(route);
      if (current === undefined || (named !== undefined && candidate.id === named && candidates[current]!.id !== named)) servedBy.set(route, i);
    }
  });
  return candidates.map((candidate, i) => candidate.routes.filter((route) => servedBy.get(route) === i));
}

/** A node that may serve routes (active; a hub, in a hub network), as the election sees it. */
export interface RouteCandidate {
  id: string;
  /** Its routes in effect (advertised and approved). */
  routes: readonly string[];
  /** Its agent asked for its config within [mesh] router_offline_after_seconds. */
  online: boolean;
}

/**
 * A route whose router changes. `why`: "offline" — its router is still a candidate but its
 * agent went quiet, and an online one offers the route; "gone" — its router no longer offers it
 * (removed, disabled, expired, no longer a hub, the route withdrawn or its approval revoked);
 * "elected" — no node served it yet (newly in effect); "unserved" — no candidate offers it any
 * more (`to` null).
 */
export interface PrimaryChange {
  route: string;
  from: string | null;
  to: string | null;
  why: "offline" | "gone" | "elected" | "unserved";
}

/**
 * Who serves each route now, from who served it (`stored`, route → node id) and who offers it
 * (`candidates`, longest enrolled first), as Headscale's HA subnet routers do:
 * - a router keeps its routes while it is online, and while no other candidate offering them is
 *   (with none online, the route stays where it is: moving it to another silent node helps no one);
 * - an offline router's route goes to the first online candidate offering it;
 * - a route whose router no longer offers it, or that no node served yet, goes to the first
 *   online candidate offering it, else to the first candidate (enrolled first, as before liveness
 *   counted).
 * Sticky: a router that comes back finds its routes served by another, and does not take them
 * back — only that one going offline or away moves them again, so a router that flaps moves a
 * route once, not at each of its polls. Pure; the changes in route order.
 */
export function electPrimaries(candidates: readonly RouteCandidate[], stored: ReadonlyMap<string, string>): { primaries: Map<string, string>; changes: PrimaryChange[] } {
  const offering = new Map<string, RouteCandidate[]>();
  for (const candidate of candidates) for (const route of candidate.routes) offering.set(route, [...(offering.get(route) ?? []), candidate]);
  const primaries = new Map<string, string>();
  const changes: PrimaryChange[] = [];
  for (const [route, offers] of offering) {
    const from = stored.get(route) ?? null;
    const holder = offers.find((c) => c.id === from);
    const online = offers.find((c) => c.online);
    if (holder && (holder.online || !online)) {
      primaries.set(route, holder.id);
      continue;
    }
    const to = (online ?? offers[0]!).id;
    primaries.set(route, to);
    changes.push({ route, from, to, why: holder ? "offline" : from === null ? "elected" : "gone" });
  }
  for (const [route, from] of stored) if (!offering.has(route)) changes.push({ route, from, to: null, why: "unserved" });
  const order = (a: PrimaryChange, b: PrimaryChange) => compareCidrs(parseCidr(a.route)!, parseCidr(b.route)!);
  return { primaries, changes: changes.sort(order) };
}
