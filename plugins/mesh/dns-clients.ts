/**
 * Who the DNS server tells the nodes' names (split horizon): loopback, the addresses of every
 * mesh network (its nodes look up their peers), and the prefixes of [mesh] dns_clients.
 * Everyone else is answered REFUSED for them: an authoritative server that faces the Internet
 * must not publish a private mesh's names and addresses to it.
 */
import { cidrContains, isLoopback, networkOf, parseIp, unmapIpv4, type Cidr } from "../../src/net/ip.ts";

export class DnsClients {
  private prefixes: Cidr[] = [];

  /** `configured`: [mesh] dns_clients; `networks`: the networks' prefixes as stored ("100.64.0.0/16", "fd7a:115c:a1e0::/48"). */
  constructor(
    private readonly configured: readonly Cidr[],
    private readonly networks: () => ReadonlyArray<{ ipv4: string; ipv6: string }>,
  ) {
    this.refresh();
  }

  /** The networks changed (one made or removed): their prefixes are read again. */
  refresh(): void {
    const own = this.networks().flatMap((n) => [networkOf(n.ipv4), networkOf(n.ipv6)].filter((cidr): cidr is Cidr => cidr !== null));
    this.prefixes = [...this.configured, ...own];
  }

  allows(client: string): boolean {
    const parsed = parseIp(client);
    if (parsed === null) return false; // an address Bun reports in a form we cannot read (a scoped link-local one)
    // Matched unmapped: a dual-stack listener reports an IPv4 client as ::ffff:a.b.c.d, which ::/0 must not take for IPv6.
    const ip = unmapIpv4(parsed);
    return isLoopback(ip) || this.prefixes.some((prefix) => cidrContains(prefix, ip));
  }
}
