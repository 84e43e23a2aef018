/**
 * Addresses a peer cannot reach a node at: every peer sends its handshakes and keepalives to a
 * node's endpoint, and one of these would turn them on themselves (loopback, link-local,
 * unspecified) or nowhere (multicast, broadcast). The control plane refuses them as endpoints
 * (service.ts, checkEndpoint); the agent treats a name resolving to one as unresolved
 * (endpoints.ts). One list, so the two cannot disagree.
 */
import { cidrContains, parseCidr, unmapIpv4, type IpAddress } from "../../src/net/ip.ts";

const UNREACHABLE_ENDPOINTS = ["127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::/96", "fe80::/10", "ff00::/8"].map((c) => parseCidr(c)!);

/** True for a loopback, link-local, multicast, broadcast or unspecified address (an IPv4-mapped IPv6 one as its IPv4 address). */
export function isUnreachableEndpoint(ip: IpAddress): boolean {
  const address = unmapIpv4(ip);
  return UNREACHABLE_ENDPOINTS.some((cidr) => cidrContains(cidr, address));
}
