/** The [dns] config section. The listener (server.ts) reads the addresses; the API reads default_ttl and the quotas. */
import { Type, type Static } from "@sinclair/typebox";
import { ConfigError } from "../../src/config/error.ts";
import { section } from "../../src/config/schema.ts";
import { formatIp, isLoopback, networkOf, parseCidr, parseIp, unmapIpv4, type IpAddress } from "../../src/net/ip.ts";
import { lowerName, NameError, parseName, type Name } from "./names.ts";

const PORT = "(6553[0-5]|655[0-2]\\d|65[0-4]\\d\\d|6[0-4]\\d{3}|[1-5]\\d{4}|\\d{1,4})";

/** host:port as the listeners read it (IPv6 in brackets), the port 0–65535: a typo stops start-up, not DNS. */
const Address = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: `^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]+):${PORT}$`,
  patternHint: 'host:port, such as "127.0.0.1:5353" or "[::1]:53"',
  description: 'host:port, such as "127.0.0.1:5353" or "[::1]:53"',
});

/** An upstream is asked at an address, never a name (resolving it would need a resolver): an IP literal and a port 1–65535. */
const Upstream = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: `^(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9a-fA-F:.]+\\]):(?!0+$)${PORT}$`,
  patternHint: 'an IP address and port, such as "9.9.9.9:53" or "[2620:fe::fe]:53"',
  description: 'IP:port, such as "9.9.9.9:53" or "[2620:fe::fe]:53"',
});

export const DnsSettings = section("Authoritative DNS: where it listens, and the default TTL of new zones and records.", {
  udp: Type.Array(Address, { default: ["127.0.0.1:5353"], maxItems: 16, description: "Addresses (host:port) to answer DNS over UDP on. Empty: no UDP listener." }),
  tcp: Type.Array(Address, { default: ["127.0.0.1:5353"], maxItems: 16, description: "Addresses (host:port) to answer DNS over TCP on. Empty: no TCP listener." }),
  default_nameservers: Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
    default: [],
    maxItems: 13,
    description: "Name servers (absolute host names, such as ns1.example.net.) a new zone gets when none are given; empty: ns1.<zone>, which needs an address in the zone before anyone can reach it.",
  }),
  default_ttl: Type.Integer({ default: 3600, minimum: 0, maximum: 2_147_483_647, description: "TTL (seconds) of a new zone when none is given; records without a TTL take their zone's." }),
  max_zones_per_organization: Type.Integer({
    default: 500,
    minimum: 1,
    maximum: 1_000_000,
    description: "Zones one organization may hold (a new one beyond is refused with 409). As Route 53's default per account; raise it for an organization that hosts many domains.",
  }),
  max_records_per_zone: Type.Integer({
    default: 10_000,
    minimum: 1,
    maximum: 10_000_000,
    description: "Records one zone may hold, its SOA aside (a change or an import beyond is refused). As Route 53's and Azure's default; each change to a zone builds it again, which takes over a second for 100,000 records.",
  }),
  dnssec_propagation_delay: Type.Integer({
    default: 3600,
    minimum: 0,
    maximum: 604_800,
    description:
      "DNSSEC key rollover: seconds added to the DNSKEY TTL and the zone's largest TTL before a rollover may finish (and the DNSKEY TTL before the DS may change at the parent), for every secondary to transfer the new key (Knot's propagation-delay). At least the SOA refresh when a secondary may miss a NOTIFY. A rollover keeps the value it started with.",
  }),
  dnssec_parent_delay: Type.Integer({
    default: 86_400,
    // Resolvers may hold the old DS for the parent's DS TTL after the parent changed it: the old key must outlive that.
    minimum: 3600,
    maximum: 2_592_000,
    description:
      "DNSSEC automatic rollover: seconds the schedule waits, once the parent is confirmed to publish the new DS alone (citadel dns zone dnssec rollover submitted), before it removes the old key: at least the parent's DS TTL (resolvers may hold the old DS that long after the parent's change; often a day) and its own propagation (Knot's parent-delay). A day by default, an hour at least; a rollover keeps the value of its confirmation.",
  }),
  query_log_sample: Type.Integer({ default: 0, minimum: 0, maximum: 1_000_000, description: "Query log: write one query in N to dns-queries.log in the data directory (1: every query). 0: no query log." }),
  query_log_max_mb: Type.Integer({ default: 64, minimum: 1, maximum: 65_536, description: "Query log: MiB on disk at most, the current file and the one rotated file together." }),
  query_log_client: Type.Union([Type.Literal("prefix"), Type.Literal("full"), Type.Literal("none")], { default: "prefix", description: "Query log: the client as its /24 or /56 prefix (personal data kept small), its full address, or not at all." }),
  rrl_responses_per_second: Type.Integer({ default: 100, minimum: 0, maximum: 1_000_000, description: "Response rate limiting over UDP: responses per second per client prefix (/24, /56). 0: off." }),
  rrl_throttled_per_second: Type.Integer({ default: 10, minimum: 0, maximum: 1_000_000, description: "The same for a client the shield throttles." }),
  random_subdomain_per_minute: Type.Integer({ default: 6000, minimum: 0, maximum: 100_000_000, description: "NXDOMAIN answers a minute for one zone from which it counts as under a random-subdomain flood (its askers then score more). 0: off." }),
  rrl_slip: Type.Integer({ default: 2, minimum: 0, maximum: 10, description: "Every Nth rate-limited query gets an empty reply with TC (the client retries over TCP); the others none. 0: never." }),
  resolver_udp: Type.Array(Address, { default: [], maxItems: 16, description: "Filtering resolver: addresses (host:port) to answer recursive queries on over UDP. Empty: no resolver." }),
  resolver_tcp: Type.Array(Address, { default: [], maxItems: 16, description: "Filtering resolver: the same over TCP." }),
  resolver_upstreams: Type.Array(Upstream, { default: [], maxItems: 8, description: "Where the resolver forwards (IP:port), tried in order. Empty: nothing ever leaves the host; unknown names are REFUSED." }),
  resolver_clients: Type.Array(Type.String({ maxLength: 64 }), { default: [], maxItems: 256, description: "Prefixes (besides loopback) allowed to use the resolver, such as the mesh's." }),
  resolver_blocklists: Type.Array(Type.String({ maxLength: 4096 }), { default: [], maxItems: 64, description: "Blocklist files (hosts or domain-list format) whose names are blocked." }),
  resolver_block_mode: Type.Union([Type.Literal("nxdomain"), Type.Literal("sinkhole")], { default: "nxdomain", description: "Blocked names: NXDOMAIN, or the sinkhole addresses." }),
  resolver_private_names: Type.Union([Type.Literal("local"), Type.Literal("forward")], {
    default: "local",
    description:
      'The reverse names of private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7...), local., home.arpa. and single-label names: answered here with NXDOMAIN, never told to the upstreams ("local"), or forwarded to upstreams that serve them, such as an Active Directory or a router\'s DNS ("forward").',
  }),
  resolver_sinkhole_ipv4: Type.String({ default: "0.0.0.0", maxLength: 64, description: "Sinkhole A answer for blocked names." }),
  resolver_sinkhole_ipv6: Type.String({ default: "::", maxLength: 64, description: "Sinkhole AAAA answer for blocked names." }),
  analytics_retention_minutes: Type.Integer({ default: 1440, minimum: 1, maximum: 10_080, description: "Minutes of per-minute query counts kept in memory for GET /v1/dns/analytics." }),
  catalog: Type.String({
    default: "",
    maxLength: 253,
    description:
      'The name of a catalog zone (RFC 9432) listing each secondary the zones it serves, such as "catalog.citadel.invalid.": a secondary configured with it serves every zone made here without a change to its configuration. Transferred only to a secondary, from its address with its TSIG key. Not at or above the name of a hosted zone (start-up stops). Empty: no catalog.',
  }),
}, checkDnsSettings);
export type DnsSettings = Static<typeof DnsSettings>;

/** The section's checks that the schema cannot say: the resolver's, the catalog's name. */
function checkDnsSettings(s: Parameters<typeof checkResolverSettings>[0] & { catalog: string }): void {
  checkResolverSettings(s);
  catalogName(s.catalog);
}

/**
 * `[dns] catalog` as a name, lower-cased; null when it is empty (no catalog). A name with or
 * without the final dot is absolute. Not the root, and no wildcard: a ConfigError names the key.
 */
export function catalogName(setting: string): Name | null {
  const text = setting.trim();
  if (text === "") return null;
  let name: Name;
  try {
    name = parseName(text.endsWith(".") ? text : `${text}.`, null);
  } catch (e) {
    if (e instanceof NameError) throw new ConfigError(`dns.catalog: ${JSON.stringify(setting)} is not a name: ${e.message}`);
    throw e;
  }
  if (name.length === 0) throw new ConfigError("dns.catalog: the root cannot be the catalog's name (such as catalog.citadel.invalid.)");
  if (name.some((label) => label.length === 1 && label[0] === 0x2a)) throw new ConfigError(`dns.catalog: ${JSON.stringify(setting)} has a wildcard label`);
  return lowerName(name);
}

/**
 * The resolver's upstreams, client prefixes and sinkhole addresses, checked when the config is loaded: a
 * typo stops start-up naming the key (exit 2). Checked only when the resolver started, it was
 * logged and the appliance ran without its resolver.
 */
export function checkResolverSettings(s: {
  resolver_udp: readonly string[];
  resolver_tcp: readonly string[];
  resolver_upstreams: readonly string[];
  resolver_clients: readonly string[];
  resolver_sinkhole_ipv4: string;
  resolver_sinkhole_ipv6: string;
}): void {
  for (const text of s.resolver_upstreams) {
    // The schema's pattern takes the shape only (\d{1,3} octets): 999.1.1.1:53 passed it.
    const upstream = ipAndPort(text);
    if (upstream === null) throw new ConfigError(`dns.resolver_upstreams: ${JSON.stringify(text)} is not an IP address and port, such as "9.9.9.9:53" or "[2620:fe::fe]:53"`);
    for (const key of ["resolver_udp", "resolver_tcp"] as const) {
      if (s[key].some((listener) => listensAt(listener, upstream))) {
        throw new ConfigError(`dns.resolver_upstreams: ${JSON.stringify(text)} is the resolver's own address (dns.${key}): it would forward to itself`);
      }
    }
  }
  for (const text of s.resolver_clients) {
    if (parseCidr(text) !== null) continue;
    // A prefix with host bits set (100.64.0.1/10) is most likely a typo for another prefix: not guessed.
    const why = networkOf(text) !== null ? "has host bits set (is it the network's address?)" : "is not an address prefix";
    throw new ConfigError(`dns.resolver_clients: ${JSON.stringify(text)} ${why}, such as "100.64.0.0/10" or "fd7a:115c:a1e0::/48"`);
  }
  for (const [key, family] of [["resolver_sinkhole_ipv4", 4], ["resolver_sinkhole_ipv6", 6]] as const) {
    if (parseIp(s[key])?.family !== family) throw new ConfigError(`dns.${key}: ${JSON.stringify(s[key])} is not an IPv${family} address`);
  }
}

interface IpAndPort {
  ip: IpAddress;
  port: number;
}

/** "9.9.9.9:53" or "[2620:fe::fe]:53" → the address and the port; null when the address is not an IP address. */
function ipAndPort(text: string): IpAndPort | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  const ip = match ? parseIp(match[1] ?? match[2]!) : null;
  return ip === null ? null : { ip: unmapIpv4(ip), port: Number(match![3]) };
}

/**
 * Whether a listener gets what is sent to `to`: at the same address and port, or on every
 * address (0.0.0.0, and [::], which takes IPv4 too) when `to` is an address of the host's own
 * (`own`: the host's addresses are not looked up).
 */
function reaches(to: IpAndPort, listener: IpAndPort, own: (ip: IpAddress) => boolean): boolean {
  if (listener.port !== to.port) return false;
  if (isUnspecified(listener.ip)) return own(to.ip) && (listener.ip.family === 6 || to.ip.family === 4);
  return formatIp(listener.ip) === formatIp(to.ip);
}

/** A listener (host:port) that gets what is sent to the upstream: the resolver itself. */
function listensAt(listener: string, upstream: IpAndPort): boolean {
  const at = ipAndPort(listener);
  return at !== null && reaches(upstream, at, isLoopback);
}

const isUnspecified = (ip: IpAddress) => ip.bytes.every((b) => b === 0);

/**
 * The resolver_udp addresses with no resolver_tcp listener at the same address and port (or on
 * every address): there, an answer too large for UDP is sent truncated and the client's retry
 * over TCP finds nobody (RFC 7766 asks for both). A host name matches only itself.
 */
export function udpWithoutTcp(udp: readonly string[], tcp: readonly string[]): string[] {
  return udp.filter((text) => {
    const at = ipAndPort(text);
    // A UDP address that is bound is the host's own: a TCP listener on every address gets it.
    if (at === null) return !tcp.some((t) => t.toLowerCase() === text.toLowerCase());
    return !tcp.some((t) => {
      const listener = ipAndPort(t);
      return listener !== null && reaches(at, listener, () => true);
    });
  });
}
