/**
 * Who the DNS server tells which of the nodes' names (split horizon). Loopback and the prefixes
 * of [mesh] dns_clients are told every name: the operator chose them. A client inside a mesh
 * network's prefixes is told that network's names (`<network>.<domain>` and every name below
 * it: its nodes look up their peers) and the domain itself (its SOA and NS, which name no
 * network, and which every negative answer below it carries anyway), not another network's,
 * whichever organization it belongs to: any organization admin can make a network, as large
 * as 10.0.0.0/8, and its clients must not learn every other network's names by it. Everyone
 * else is answered REFUSED: an authoritative server that faces the Internet must not publish a
 * private mesh's names and addresses to it.
 *
 * The client is its address alone: networks whose prefixes overlap (two organizations may
 * number theirs alike; each organization's first network takes the same default pool) cannot
 * be told apart, and a client inside both is told both networks' names.
 */
import { cidrContains, isLoopback, networkOf, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../../src/net/ip.ts";

/** A network as the horizon sees it: its prefixes, and the name its own names are at or below ("prod.mesh.internal."). */
interface NetworkHorizon {
  prefixes: Cidr[];
  domain: string;
}

export class DnsClients {
  private readonly apex: string;
  private networkHorizons: NetworkHorizon[] = [];

  /**
   * `domain`: [mesh] domain; `configured`: [mesh] dns_clients; `networks`: every organization's
   * networks, their names and prefixes as stored ("100.64.0.0/16", "fd7a:115c:a1e0::/48").
   */
  constructor(
    domain: string,
    private readonly configured: readonly Cidr[],
    private readonly networks: () => ReadonlyArray<{ name: string; ipv4: string; ipv6: string }>,
  ) {
    // Names are compared as the horizon hands them: lower-case, absolute.
    this.apex = `${domain.toLowerCase().replace(/\.$/, "")}.`;
    this.refresh();
  }

  /** The networks changed (one made or removed): their names and prefixes are read again. */
  refresh(): void {
    this.networkHorizons = this.networks().map((n) => ({
      prefixes: [networkOf(n.ipv4), networkOf(n.ipv6)].filter((cidr): cidr is Cidr => cidr !== null),
      domain: `${n.name}.${this.apex}`, // network names are lower-case DNS labels
    }));
  }

  /** May `client` be told `name` (at or below the domain, lower-case text form: RecordProvider.mayAsk)? */
  allows(client: string, name: string): boolean {
    const ip = clientAddress(client);
    if (ip === null) return false;
    if (isLoopback(ip) || this.configured.some((prefix) => cidrContains(prefix, ip))) return true;
    const inside = this.networkHorizons.filter((n) => n.prefixes.some((prefix) => cidrContains(prefix, ip)));
    if (inside.length === 0) return false;
    return name === this.apex || inside.some((n) => isAtOrBelow(name, n.domain));
  }
}

/** The client's address, unmapped: a dual-stack listener reports an IPv4 client as ::ffff:a.b.c.d, which ::/0 must not take for IPv6. */
function clientAddress(client: string): IpAddress | null {
  const parsed = parseIp(client);
  return parsed === null ? null : unmapIpv4(parsed); // null: a form we cannot read (a scoped link-local address)
}

/** `name` is `domain` or below it, both in text form: the dot before `domain` must part labels, not be one escaped inside a label ("a\.prod..."). */
function isAtOrBelow(name: string, domain: string): boolean {
  if (name === domain) return true;
  const dot = name.length - domain.length - 1;
  return dot > 0 && name.endsWith(domain) && name[dot] === "." && partsLabels(name, dot);
}

/** The dot at `at` parts labels: an even number of backslashes before it (`\\.` is a backslash that ends a label, `\.` a dot inside one). */
function partsLabels(text: string, at: number): boolean {
  let backslashes = 0;
  while (at - backslashes - 1 >= 0 && text[at - backslashes - 1] === "\\") backslashes++;
  return backslashes % 2 === 0;
}
