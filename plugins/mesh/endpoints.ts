/**
 * Peers' endpoints given as DNS names, resolved by the agent before `wg` reads its file.
 *
 * A node may enroll with a name for its endpoint. wg resolves names while it parses the file,
 * and one that does not resolve fails the whole `wg syncconf` (a temporary failure is retried
 * for over a minute first): one node with a lapsed dynamic-DNS name, or a made-up one, would
 * keep every peer from applying any config — removals, disables and rotations included. So the
 * agent resolves each name itself, with a short timeout, and writes the address. A peer whose
 * name does not resolve is written without an Endpoint: WireGuard learns it when that peer
 * connects, and a device that already has one keeps it (`wg syncconf` leaves alone an endpoint
 * the file does not name).
 *
 * Only the file wg reads changes: the signed document keeps the name.
 */
import { lookup } from "node:dns/promises";
import { cidrContains, formatCidr, formatIp, parseIp, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import type { ParsedSetconf } from "./device.ts";
import { isUnreachableEndpoint } from "./unreachable.ts";

/** A name's addresses, IPv4 and IPv6, in the order the system's resolver prefers them. */
export type LookupHost = (host: string) => Promise<string[]>;

/** getaddrinfo, as wg itself would ask it (wg takes the first address too). */
export const lookupHost: LookupHost = async (host) => (await lookup(host, { all: true, verbatim: true })).map((found) => found.address);

/** Long enough for a resolver across the internet, short enough that a dead one does not stall the round. */
export const LOOKUP_TIMEOUT_MS = 3000;

export interface UnresolvedEndpoint {
  publicKey: string;
  /** As the config names it: "name:port". */
  endpoint: string;
  /** The resolver's error code (ENOTFOUND, EAI_AGAIN…) or what else went wrong. */
  reason: string;
}

export interface ResolvedSetconf {
  setconf: ParsedSetconf;
  unresolved: UnresolvedEndpoint[];
}

/**
 * The setconf with every peer's named endpoint made an address, or removed when the name does
 * not resolve. `meshPrefixes`: the mesh's own prefixes, where no endpoint may be (see resolveName).
 */
export async function resolveEndpoints(setconf: ParsedSetconf, lookupHost: LookupHost, timeoutMs = LOOKUP_TIMEOUT_MS, meshPrefixes: readonly Cidr[] = []): Promise<ResolvedSetconf> {
  const names = [...new Set(setconf.peers.map((peer) => namedHost(peer.endpoint)).filter((name) => name !== null))];
  const answers = new Map(await Promise.all(names.map(async (name) => [name, await resolveName(name, lookupHost, timeoutMs, meshPrefixes)] as const)));
  const unresolved: UnresolvedEndpoint[] = [];
  const peers = setconf.peers.map((peer) => {
    const name = namedHost(peer.endpoint);
    if (name === null) return peer;
    const answer = answers.get(name)!;
    if ("reason" in answer) {
      unresolved.push({ publicKey: peer.publicKey, endpoint: peer.endpoint!, reason: answer.reason });
      return { ...peer, endpoint: null };
    }
    return { ...peer, endpoint: withPort(answer.address, peer.endpoint!) };
  });
  return { setconf: { ...setconf, peers }, unresolved };
}

/** The host of a "host:port" endpoint when it is a name (an IPv6 address is in brackets); null otherwise. */
function namedHost(endpoint: string | null): string | null {
  if (endpoint === null || endpoint.startsWith("[")) return null;
  const host = endpoint.slice(0, endpoint.lastIndexOf(":"));
  return parseIp(host) === null ? host : null;
}

/** "198.51.100.2:51820" or "[2001:db8::2]:51820": the address with the endpoint's port. */
function withPort(address: string, endpoint: string): string {
  const port = endpoint.slice(endpoint.lastIndexOf(":") + 1);
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The first usable address the name resolves to, in canonical form, or why there is none. */
async function resolveName(name: string, lookupHost: LookupHost, timeoutMs: number, meshPrefixes: readonly Cidr[]): Promise<{ address: string } | { reason: string }> {
  let addresses: string[];
  try {
    addresses = await withTimeout(lookupHost(name), timeoutMs);
  } catch (error) {
    return { reason: (error as { code?: string }).code ?? (error instanceof Error ? error.message : String(error)) };
  }
  // An address with a zone ("fe80::1%eth0") is of no use to a peer elsewhere, nor to wg's parser.
  const ips = addresses.map((address) => parseIp(address)).filter((parsed) => parsed !== null);
  if (ips.length === 0) return { reason: "no address" };
  // What the control plane refuses as an endpoint is refused behind a name too: a name set to
  // 127.0.0.1 would have this node send the peer's handshakes to itself. Another address of the
  // same name may still do (found in review: a link-local first answer hid a public second one).
  // So is an address inside the mesh's own prefixes (the control plane refuses one given as an
  // address; a name it only sees as a name): the handshakes would be sent into the tunnel they
  // are to set up, and none would arrive (found in review).
  const inMesh = (ip: IpAddress) => meshPrefixes.some((prefix) => cidrContains(prefix, ip));
  const usable = ips.find((ip) => !isUnreachableEndpoint(ip) && !inMesh(ip));
  if (usable) return { address: formatIp(usable) };
  const first = ips[0]!;
  if (inMesh(first)) return { reason: `${formatIp(first)}: inside the mesh's own addresses (${meshPrefixes.map(formatCidr).join(", ")}), where its handshakes would go into the tunnel` };
  return { reason: `${formatIp(first)}: a loopback, link-local, multicast, broadcast or unspecified address` };
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
