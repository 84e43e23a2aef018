/**
 * Addresses that are not on the public Internet (IANA's special-purpose registries, RFC 6890
 * and later): private, loopback, link-local, shared (CGNAT), documentation, benchmarking,
 * multicast, reserved. No country is theirs.
 *
 * Why this exists: the embedded geo-whois-asn-country data gives countries to some of them
 * (in 2.3.2026061719, 172.16.0.0/12 and 192.168.0.0/16 are "AU", 2001:db8::/32 is "JP"), which
 * would make a LAN client look Australian to a country policy. Operator databases are not
 * filtered: a custom database may place internal networks on purpose.
 */
import type { IpAddress } from "../net/ip.ts";

export function isNonGlobal(ip: IpAddress): boolean {
  return ip.family === 4 ? nonGlobalV4(ip.bytes) : nonGlobalV6(ip.bytes);
}

function nonGlobalV4(b: Uint8Array): boolean {
  const [a, x, y] = [b[0]!, b[1]!, b[2]!];
  switch (a) {
    case 0: // "this network"
    case 10: // private
    case 127: // loopback
      return true;
    case 100:
      return (x & 0xc0) === 64; // 100.64.0.0/10 shared address space (CGNAT)
    case 169:
      return x === 254; // link-local
    case 172:
      return (x & 0xf0) === 16; // 172.16.0.0/12 private
    case 192:
      return (x === 0 && (y === 0 || y === 2)) || x === 168; // IETF assignments, TEST-NET-1, private
    case 198:
      return (x & 0xfe) === 18 || (x === 51 && y === 100); // benchmarking, TEST-NET-2
    case 203:
      return x === 0 && y === 113; // TEST-NET-3
    default:
      return a >= 224; // multicast, reserved, broadcast
  }
}

function nonGlobalV6(b: Uint8Array): boolean {
  const group = (i: number) => (b[2 * i]! << 8) | b[2 * i + 1]!;
  const [g0, g1, g2] = [group(0), group(1), group(2)];
  if (g0 === 0 && g1 === 0 && g2 === 0 && group(3) === 0 && group(4) === 0 && group(5) === 0) return true; // ::/96: unspecified, loopback, deprecated IPv4-compatible
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 1) return true; // 64:ff9b:1::/48 local-use NAT64
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && group(3) === 0) return true; // 100::/64 discard
  if (g0 === 0x2001) {
    if (g1 === 0xdb8) return true; // documentation
    if (g1 === 2 && g2 === 0) return true; // 2001:2::/48 benchmarking
    if ((g1 & 0xfff0) === 0x10 || (g1 & 0xfff0) === 0x20) return true; // ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28
  }
  if (g0 === 0x3fff && g1 < 0x1000) return true; // 3fff::/20 documentation
  if (g0 === 0x5f00) return true; // SRv6 SIDs
  return g0 >= 0xfc00; // unique local, link-local, site-local, multicast
}
