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
 * The client is its address alone. Networks of one organization whose prefixes overlap cannot be
 * told apart: a client inside both is told both networks' names. Networks of two organizations
 * no longer overlap (a new network's prefixes are refused over another organization's, its
 * default pool is free of every organization's), but ones made before may (each organization's
 * first network took 100.64.0.0/16): a client inside networks of more than one organization is
 * told none of their names, as a stranger, and each such overlap is logged so that the operator
 * renumbers one of the networks.
 */
import type { Logger } from "../../src/log.ts";
import { cidrContains, isLoopback, networkOf, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../../src/net/ip.ts";

/** A network as stored: its name, its organization and its prefixes ("100.64.0.0/16", "fd7a:115c:a1e0::/48"). */
export interface StoredNetwork {
  name: string;
  organization_id: string;
  ipv4: string;
  ipv6: string;
}

/** A network as the horizon sees it: as stored, its prefixes read, and the name its own names are at or below ("prod.mesh.internal."). */
interface NetworkHorizon {
  stored: StoredNetwork;
  prefixes: Cidr[];
  domain: string;
}

export class DnsClients {
  private readonly apex: string;
  private networkHorizons: NetworkHorizon[] = [];
  /** The networks as last read, as one string: overlaps are looked for again only when it changes. */
  private lastRead = "";
  /** The overlaps across organizations warned of (pairs of network names), so that each is told once. */
  private warned = new Set<string>();

  /**
   * `domain`: [mesh] domain; `configured`: [mesh] dns_clients; `networks`: every organization's
   * networks; `log`: told of networks of two organizations that overlap (when first read, at
   * start or when one arises).
   */
  constructor(
    domain: string,
    private readonly configured: readonly Cidr[],
    private readonly networks: () => ReadonlyArray<StoredNetwork>,
    private readonly log: Pick<Logger, "warn"> | null = null,
  ) {
    // Names are compared as the horizon hands them: lower-case, absolute.
    this.apex = `${domain.toLowerCase().replace(/\.$/, "")}.`;
    this.refresh();
  }

  /** The networks changed (one made or removed): their names and prefixes are read again. */
  refresh(): void {
    const networks = this.networks();
    const read = networks.map((n) => `${n.name} ${n.organization_id} ${n.ipv4} ${n.ipv6}`).join("\n");
    if (read === this.lastRead) return; // a node's change: no network's prefixes changed
    this.lastRead = read;
    this.networkHorizons = networks.map((n) => ({
      stored: n,
      prefixes: [networkOf(n.ipv4), networkOf(n.ipv6)].filter((cidr): cidr is Cidr => cidr !== null),
      domain: `${n.name}.${this.apex}`, // network names are lower-case DNS labels
    }));
    this.warnOfOverlaps();
  }

  /** May `client` be told `name` (at or below the domain, lower-case text form: RecordProvider.mayAsk)? */
  allows(client: string, name: string): boolean {
    const ip = clientAddress(client);
    if (ip === null) return false;
    if (isLoopback(ip) || this.configured.some((prefix) => cidrContains(prefix, ip))) return true;
    const inside = this.networkHorizons.filter((n) => n.prefixes.some((prefix) => cidrContains(prefix, ip)));
    // Inside networks of two organizations: whose client it is cannot be known, and telling it
    // both would tell one organization's nodes the other's names.
    if (inside.length === 0 || !ofOneOrganization(inside)) return false;
    return name === this.apex || inside.some((n) => isAtOrBelow(name, n.domain));
  }

  /** Each overlap across organizations is logged once, naming both networks; one that goes away and comes back is logged again. */
  private warnOfOverlaps(): void {
    const overlapping = new Map(overlapsAcrossOrganizations(this.networkHorizons).map(([a, b]) => [`${a.stored.name} ${b.stored.name}`, [a.stored, b.stored]]));
    for (const [pair, networks] of overlapping) {
      if (this.warned.has(pair)) continue;
      this.log?.warn("mesh: networks of two organizations overlap: a client at an address inside both is told neither's DNS names; renumber one (docs/mesh.md, DNS names)", {
        networks: networks.map((n) => ({ name: n.name, organization: n.organization_id, ipv4: n.ipv4, ipv6: n.ipv6 })),
      });
    }
    this.warned = new Set(overlapping.keys());
  }
}

function ofOneOrganization(networks: readonly NetworkHorizon[]): boolean {
  return networks.every((n) => n.stored.organization_id === networks[0]!.stored.organization_id);
}

/** Pairs of networks of different organizations with a prefix in common (read once per change of the networks: a pair each, n² is fine). */
function overlapsAcrossOrganizations(networks: readonly NetworkHorizon[]): Array<[NetworkHorizon, NetworkHorizon]> {
  const pairs: Array<[NetworkHorizon, NetworkHorizon]> = [];
  for (let i = 0; i < networks.length; i++) {
    for (let j = i + 1; j < networks.length; j++) {
      const [a, b] = [networks[i]!, networks[j]!];
      if (a.stored.organization_id !== b.stored.organization_id && a.prefixes.some((x) => b.prefixes.some((y) => overlap(x, y)))) pairs.push([a, b]);
    }
  }
  return pairs;
}

/** Two prefixes of one family with an address in common: one holds the other's first address. */
function overlap(x: Cidr, y: Cidr): boolean {
  return x.family === y.family && (cidrContains(x, y) || cidrContains(y, x));
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
