/**
 * Exit nodes, as Tailscale's and Headscale's: a node that carries the rest of the internet for
 * the nodes that choose it. It offers the two default routes together (`0.0.0.0/0` and `::/0`,
 * as Tailscale writes an exit node in its route lists) beside its subnet routes, an operator
 * approves them, and a node uses it only when it chose it itself (its own token: Tailscale's
 * `--exit-node`) and the ACL lets it reach `autogroup:internet` (deny by default: no policy, or
 * `*`, is not enough). Pure: what the service checks and what the planner and renderer share.
 *
 * "The internet" is what an exit node forwards to: every address but the mesh's own and the
 * private, shared, link-local, loopback, multicast and special-purpose ranges (NOT_INTERNET),
 * as Tailscale's autogroup:internet leaves them out — so an exit node's own LAN, when its
 * addresses are private, is not opened to the nodes using it (serve it as a subnet route, under
 * the ACL, for that).
 */
import { InvalidError } from "../../src/errors.ts";
import { parseCidr } from "../../src/net/ip.ts";

/** The routes an exit node offers, in route order: both, always together. */
export const EXIT_ROUTES = ["0.0.0.0/0", "::/0"] as const;

/**
 * Addresses that are not the internet (besides the mesh's own pools), per nftables family: the
 * private, shared, loopback, link-local and multicast ranges, and every range of IANA's
 * special-purpose registries (RFC 6890 and its updates) that is not globally reachable —
 * documentation, benchmarking, IETF protocol assignments, discard-only, deprecated site-local —
 * with the translations that reach IPv4 from IPv6 on the exit node's side: NAT64 (64:ff9b::/96,
 * 64:ff9b:1::/48) and 6to4 (2002::/16, and its relays' 192.88.99.0/24) may carry a packet to
 * the exit node's LAN through a gateway there. An exit node's LAN with private addresses is
 * thus never opened; a LAN with public (globally reachable) addresses is the internet to it.
 */
export const NOT_INTERNET = {
  ip: [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
  ],
  ip6: [
    "::/127", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:2::/48", "2001:10::/28",
    "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
  ],
} as const;

/**
 * A route list as sent (advertised or approved), the exit routes taken out: `exit` when it holds
 * both default routes, `routes` the rest (subnet routes, for routes.ts to check). One default
 * route without the other is refused (InvalidError naming `field`): an exit node carries both
 * families, or a node would send one family through it and the other out directly.
 */
export function splitExitRoutes(list: unknown, field: string): { routes: unknown; exit: boolean } {
  if (!Array.isArray(list)) return { routes: list, exit: false };
  const isDefault = (text: unknown) => typeof text === "string" && text.includes("/") && parseCidr(text)?.prefix === 0;
  const defaults = new Set(list.filter(isDefault).map((text) => (parseCidr(text as string)!.family === 4 ? EXIT_ROUTES[0] : EXIT_ROUTES[1])));
  if (defaults.size === 1) {
    const [given] = defaults;
    const missing = EXIT_ROUTES.find((route) => route !== given)!;
    throw new InvalidError(`${field}: ${given} without ${missing}: an exit node offers both default routes, 0.0.0.0/0 and ::/0, together`, field);
  }
  return { routes: list.filter((text) => !isDefault(text)), exit: defaults.size === 2 };
}

/** A route list as shown: the subnet routes, then the exit routes when `exit`. */
export function withExitRoutes(routes: readonly string[], exit: boolean): string[] {
  return exit ? [...routes, ...EXIT_ROUTES] : [...routes];
}
