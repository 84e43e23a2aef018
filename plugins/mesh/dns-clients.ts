/**
 * Who the DNS server tells which of the nodes' names (split horizon). Loopback and the prefixes
 * of [mesh] dns_clients are told every name: the operator chose them. A network's client — an
 * address (IPv4 or IPv6) of one of its active nodes, as Tailscale's MagicDNS answers its
 * tailnet's node addresses — is told that network's names (`<network>.<domain>` and every name
 * below it: its nodes look up their peers) and the domain itself (its SOA and NS, which name no
 * network, and which every negative answer below it carries anyway), not another network's,
 * whichever organization it belongs to. Everyone else is answered REFUSED: an authoritative
 * server that faces the Internet must not publish a private mesh's names and addresses to it.
 *
 * A node's address, not the network's prefix: any organization admin can make a network with
 * any prefix (as large as 10.0.0.0/8, over another organization's), and an address merely inside
 * it must not be told its names. A host behind a node (a subnet router's) is no node: its
 * prefixes go in [mesh] dns_clients.
 *
 * The client is its address alone. Networks of two organizations may overlap; enrollment never
 * gives a node an address held by a node of another organization's network made before its own
 * (freeHost, service.ts), but a network made earlier is not kept from the addresses of one made
 * after it (else a newcomer over its prefix could fill its pool), and nodes enrolled before
 * enrollment passed over any address may share one too. A client at an address of nodes of more
 * than one organization is told the names of the network made first (createdFirst) and of its
 * organization's other networks there — the one a newcomer cannot have taken it from — not the
 * others'; each such sharing is logged so that the operator renumbers one of the networks. A
 * client at nodes of two networks of one organization (whose prefixes cannot overlap but for
 * networks made before that was refused) is told both's names.
 */
import type { Logger } from "../../src/log.ts";
import { cidrContains, formatIp, isLoopback, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import type { ProviderView } from "../../src/record-providers.ts";

/** A network as stored: its id, name, organization, prefixes ("100.64.0.0/16", "fd7a:115c:a1e0::/48") and when it was made (ms). */
export interface StoredNetwork {
  id: string;
  name: string;
  organization_id: string;
  ipv4: string;
  ipv6: string;
  created_at: number;
}

/**
 * Which of two networks precedes the other at an address both hold (negative: `a`): the one made
 * first, then the lower id — a total order, so that two made in one millisecond are still told
 * apart, the same way by enrollment (freeHost) and by the DNS server.
 */
export function createdFirst(a: Pick<StoredNetwork, "id" | "created_at">, b: Pick<StoredNetwork, "id" | "created_at">): number {
  return a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * An active node's addresses and its network: what the mesh's records serve. The addresses are in
 * canonical text, as formatIp gives them ("100.64.0.5", "fd7a:115c:a1e0::5"): the keys a client's
 * address is looked up by, taken as they are.
 */
export interface ServedNode {
  network: StoredNetwork;
  ipv4: string;
  ipv6: string;
}

/** The view of a client told none of the mesh's names (a stranger). */
const NO_VIEW: ProviderView = { key: "", domains: [] };

export class DnsClients {
  private readonly apex: string;
  /** A node's address (canonical text) → the names its networks' own are at or below ("prod.mesh.internal."). */
  private domainsAt = new Map<string, readonly string[]>();
  /** A node's address → its view (viewOf): the ids of the networks whose names it is told, and their domains. */
  private viewsAt = new Map<string, ProviderView>();
  /** The keys of every view a client may have now (views), "" (told none) included. */
  private viewKeys: ReadonlySet<string> = new Set([""]);
  /** The addresses shared across organizations warned of (by the networks' names), so that each sharing is told once. */
  private warned = new Set<string>();
  /** The nodes' addresses and networks domainsAt was built from (addressPairs), so that a change that moves none rebuilds nothing. */
  private builtFrom: string | null = null;

  /**
   * `domain`: [mesh] domain; `configured`: [mesh] dns_clients; `nodes`: every organization's
   * active nodes whose names are served; `log`: told of nodes of two organizations at one address
   * (when first read, at start or when it arises).
   */
  constructor(
    domain: string,
    private readonly configured: readonly Cidr[],
    private readonly nodes: () => ReadonlyArray<ServedNode>,
    private readonly log: Pick<Logger, "warn"> | null = null,
  ) {
    // Names are compared as the horizon hands them: lower-case, absolute.
    this.apex = `${domain.toLowerCase().replace(/\.$/, "")}.`;
    this.refresh();
  }

  /**
   * The nodes may have changed (enrolled, removed, disabled, expired, a network made or removed):
   * their addresses are read again, and who is told what worked out again only if an address or
   * its network differs — most mesh changes (a key rotation, a retag, an ACL) move none, and with
   * 10,000 nodes the work is tens of milliseconds on the event loop. Returns whether it was.
   */
  refresh(): boolean {
    const nodes = this.nodes();
    const pairs = addressPairs(nodes);
    if (pairs === this.builtFrom) return false;
    this.builtFrom = pairs;
    const networksAt = new Map<string, StoredNetwork[]>();
    for (const node of nodes) {
      for (const address of [node.ipv4, node.ipv6]) {
        const networks = networksAt.get(address) ?? [];
        if (!networks.some((n) => n.name === node.network.name)) networks.push(node.network);
        networksAt.set(address, networks);
      }
    }
    const domainsAt = new Map<string, readonly string[]>();
    const viewsAt = new Map<string, ProviderView>();
    const views = new Map<string, ProviderView>([["", NO_VIEW]]);
    const shared = new Map<string, { networks: StoredNetwork[]; addresses: string[] }>();
    for (const [address, networks] of networksAt) {
      // At nodes of two organizations, telling it both would tell one organization's nodes the
      // other's names; telling it neither would let a newcomer switch off an older network's names
      // by taking its addresses. The organization of the network made first keeps it.
      const told = ofOneOrganization(networks) ? networks : ofFirstOrganization(networks);
      domainsAt.set(address, told.map((n) => `${n.name}.${this.apex}`)); // network names are lower-case DNS labels
      // By id, not name: a network made again under a gone one's name (by another organization)
      // is another view, and starts from no serial of the gone one's.
      const key = told.map((n) => n.id).sort().join(" ");
      const view = views.get(key) ?? { key, domains: told.map((n) => `${n.name}.${this.apex}`) };
      views.set(key, view);
      viewsAt.set(address, view);
      if (told.length < networks.length) noteShared(shared, networks, address);
    }
    this.domainsAt = domainsAt;
    this.viewsAt = viewsAt;
    this.viewKeys = new Set(views.keys());
    this.warnOfShared(shared);
    return true;
  }

  /** May `client` be told `name` (at or below the domain, lower-case text form: RecordProvider.mayAsk)? */
  allows(client: string, name: string): boolean {
    const ip = clientAddress(client);
    if (ip === null) return false;
    if (isLoopback(ip) || this.configured.some((prefix) => cidrContains(prefix, ip))) return true;
    const domains = this.domainsAt.get(formatIp(ip));
    if (domains === undefined) return false;
    return name === this.apex || domains.some((domain) => isAtOrBelow(name, domain));
  }

  /**
   * The view `client` has of the mesh's names (RecordProvider.viewOf): null when it is told every
   * name (loopback, [mesh] dns_clients), else the networks whose names it is told — clients told
   * the same networks' names share it, and the DNS server tells them a serial that moves only with
   * those names (and the domain's own records) — or the view of none ("") for the rest.
   */
  viewOf(client: string): ProviderView | null {
    const ip = clientAddress(client);
    if (ip === null) return NO_VIEW;
    if (isLoopback(ip) || this.configured.some((prefix) => cidrContains(prefix, ip))) return null;
    return this.viewsAt.get(formatIp(ip)) ?? NO_VIEW;
  }

  /** The keys of the views clients may have now (RecordProvider.views): a network without nodes has none. */
  views(): ReadonlySet<string> {
    return this.viewKeys;
  }

  /** Each set of networks whose nodes share addresses across organizations is logged once; one that goes away and comes back is logged again. */
  private warnOfShared(shared: Map<string, { networks: StoredNetwork[]; addresses: string[] }>): void {
    for (const [key, { networks, addresses }] of shared) {
      if (this.warned.has(key)) continue;
      this.log?.warn("mesh: nodes of networks of two organizations share addresses: a client at one is told only the names of the network made first (and of its organization's); renumber one network (docs/mesh.md, DNS names)", {
        networks: networks.map((n) => ({ name: n.name, organization: n.organization_id, ipv4: n.ipv4, ipv6: n.ipv6 })),
        addresses: addresses.slice(0, SHARED_ADDRESSES_LOGGED),
        shared: addresses.length,
      });
    }
    this.warned = new Set(shared.keys());
  }
}

/** How many of the shared addresses a warning names (two 10.0.0.0/8 networks may share thousands). */
const SHARED_ADDRESSES_LOGGED = 10;

/** `address` is shared by `networks`: noted under their names, in order (nodes are read in no order of theirs). */
function noteShared(shared: Map<string, { networks: StoredNetwork[]; addresses: string[] }>, networks: StoredNetwork[], address: string): void {
  const sorted = networks.toSorted((a, b) => a.name.localeCompare(b.name));
  const key = sorted.map((n) => n.name).join(" ");
  const entry = shared.get(key) ?? { networks: sorted, addresses: [] };
  entry.addresses.push(address);
  shared.set(key, entry);
}

function ofOneOrganization(networks: readonly StoredNetwork[]): boolean {
  return networks.every((n) => n.organization_id === networks[0]!.organization_id);
}

/** Those of `networks` of the organization of the one made first. */
function ofFirstOrganization(networks: readonly StoredNetwork[]): StoredNetwork[] {
  const first = networks.toSorted(createdFirst)[0]!;
  return networks.filter((n) => n.organization_id === first.organization_id);
}

/**
 * The nodes' addresses, each network's after its name, organization, prefixes, id and time made
 * (all that refresh reads of it): equal for two lists of nodes, in the same order, that hold the same
 * addresses in the same networks. The text itself, not a hash of it: a collision would keep
 * telling a client names it may no longer be told.
 */
function addressPairs(nodes: ReadonlyArray<ServedNode>): string {
  const parts: string[] = [];
  let network: StoredNetwork | null = null;
  for (const node of nodes) {
    if (node.network !== network) {
      network = node.network;
      parts.push(`\n${network.name} ${network.organization_id} ${network.ipv4} ${network.ipv6} ${network.id} ${network.created_at}:`);
    }
    parts.push(node.ipv4, node.ipv6);
  }
  return parts.join(" ");
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
