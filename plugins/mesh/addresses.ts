/**
 * Mesh address allocation. A node is given one host number h in the network's IPv4 pool; its
 * IPv4 address is the pool's network address + h and its IPv6 address is the ULA prefix + h,
 * so either address names the node and the store keeps one number, not two addresses.
 */
import { ConflictError, InvalidError } from "../../src/errors.ts";
import { cidrContains, formatCidr, formatIp, parseCidr, parseIp, type Cidr } from "../../src/net/ip.ts";

/** Where a mesh may number its nodes: RFC 1918 and the RFC 6598 shared space Tailscale uses too. */
const PRIVATE_IPV4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"].map((text) => parseCidr(text)!);
/** RFC 4193 defines only the locally assigned half of fc00::/7 (L = 1); fc00::/8 has no assignment rule. */
const UNIQUE_LOCAL_IPV6 = parseCidr("fd00::/8")!;

/** /8 is the largest private block; /30 is the smallest pool with two usable addresses. */
const IPV4_PREFIX_RANGE = { min: 8, max: 30 };
/** /48 is what RFC 4193 hands out; /64 still leaves 64 bits, more than any IPv4 pool's 24. */
const IPV6_PREFIX_RANGE = { min: 48, max: 64 };

/** The usable host numbers of a pool: never 0 (the network address) nor the broadcast. */
export function hostRange(ipv4Cidr: string): { first: number; last: number } {
  const pool = parsePool(ipv4Cidr);
  // A /31 or /32 has no network/broadcast pair to skip (RFC 3021), but also no room for a mesh.
  if (pool.prefix > IPV4_PREFIX_RANGE.max) throw new InvalidError(`ipv4: pool ${ipv4Cidr} is too small: use /${IPV4_PREFIX_RANGE.max} or larger`, "ipv4");
  return { first: 1, last: 2 ** (32 - pool.prefix) - 2 };
}

/**
 * The first free host number after `after` (the number given last), wrapping round to the
 * pool's start: numbers are handed out in turn, so one released by a removed node is given
 * again only once the rest of the pool has been, as Headscale's sequential allocator does.
 * Until then, peers whose config is not yet renewed and resolvers still caching the old
 * node's name do not send its traffic to a newcomer at the same address.
 */
export function allocateHost(ipv4Cidr: string, used: Iterable<number> | Set<number>, after = 0): number {
  const { first, last } = hostRange(ipv4Cidr);
  const taken = used instanceof Set ? used : new Set(used);
  const size = last - first + 1;
  const start = Number.isInteger(after) && after >= first && after < last ? after + 1 : first;
  for (let step = 0; step < size; step++) {
    const host = first + ((start - first + step) % size);
    if (!taken.has(host)) return host;
  }
  throw new ConflictError(`pool ${ipv4Cidr} is full (${size} ${size === 1 ? "address" : "addresses"})`);
}

/** The node's two addresses, without prefix lengths ("100.64.0.5", "fd7a:115c:a1e0::5"). */
export function addressesOf(ipv4Cidr: string, ipv6Prefix: string, host: number): { ipv4: string; ipv6: string } {
  const { first, last } = hostRange(ipv4Cidr);
  if (!Number.isInteger(host) || host < first || host > last) throw new InvalidError(`host number ${host} is outside pool ${ipv4Cidr} (${first}–${last})`, "host");
  const prefix = parseCidr(ipv6Prefix);
  if (!prefix || prefix.family !== 6) throw new InvalidError(`ipv6: ${ipv6Prefix} is not an IPv6 prefix`, "ipv6");
  if (host >= 2 ** (128 - prefix.prefix)) throw new InvalidError(`ipv6: host number ${host} does not fit in ${ipv6Prefix}`, "ipv6");
  return { ipv4: formatIp(addHost(parsePool(ipv4Cidr), host)), ipv6: formatIp(addHost(prefix, host)) };
}

/** The host number of an address in the pool: the inverse of `addressesOf(...).ipv4`. */
export function hostOf(ipv4Cidr: string, ipv4: string): number {
  const pool = parsePool(ipv4Cidr);
  const address = parseIp(ipv4);
  if (!address || address.family !== 4) throw new InvalidError(`${ipv4} is not an IPv4 address`, "ipv4");
  if (!cidrContains(pool, address)) throw new InvalidError(`${ipv4} is not inside pool ${ipv4Cidr}`, "ipv4");
  const host = toUint32(address.bytes) - toUint32(pool.bytes);
  const { first, last } = hostRange(ipv4Cidr);
  if (host < first || host > last) throw new InvalidError(`${ipv4} is the network or broadcast address of ${ipv4Cidr}`, "ipv4");
  return host;
}

/** A fresh RFC 4193 prefix: fd + a 40-bit random Global ID, /48, so two meshes can be joined later. */
export function randomUlaPrefix(): string {
  const bytes = new Uint8Array(16);
  bytes[0] = 0xfd;
  bytes.set(crypto.getRandomValues(new Uint8Array(5)), 1);
  return formatCidr({ family: 6, bytes, prefix: 48 });
}

/**
 * Checks a network's pools when it is created, naming the field at fault, and returns their
 * canonical spelling. Public space is refused: mesh addresses would shadow real hosts.
 */
export function validateNetworkPrefixes(ipv4Cidr: string, ipv6Prefix: string): { ipv4: string; ipv6: string } {
  const v4 = parseCidr(ipv4Cidr);
  if (!v4 || v4.family !== 4) throw new InvalidError(`ipv4: ${JSON.stringify(ipv4Cidr)} is not an IPv4 CIDR with the host bits zero (like 100.64.0.0/16)`, "ipv4");
  if (v4.prefix < IPV4_PREFIX_RANGE.min || v4.prefix > IPV4_PREFIX_RANGE.max) {
    throw new InvalidError(`ipv4: ${ipv4Cidr} must be between /${IPV4_PREFIX_RANGE.min} and /${IPV4_PREFIX_RANGE.max}`, "ipv4");
  }
  if (!PRIVATE_IPV4.some((range) => inside(v4, range))) {
    throw new InvalidError(`ipv4: ${ipv4Cidr} is not private address space (${PRIVATE_IPV4.map(formatCidr).join(", ")})`, "ipv4");
  }
  const v6 = parseCidr(ipv6Prefix);
  if (!v6 || v6.family !== 6) throw new InvalidError(`ipv6: ${JSON.stringify(ipv6Prefix)} is not an IPv6 prefix with the host bits zero (like fd7a:115c:a1e0::/48)`, "ipv6");
  if (v6.prefix < IPV6_PREFIX_RANGE.min || v6.prefix > IPV6_PREFIX_RANGE.max) {
    throw new InvalidError(`ipv6: ${ipv6Prefix} must be between /${IPV6_PREFIX_RANGE.min} and /${IPV6_PREFIX_RANGE.max}`, "ipv6");
  }
  if (!inside(v6, UNIQUE_LOCAL_IPV6)) throw new InvalidError(`ipv6: ${ipv6Prefix} is not a locally assigned unique local prefix (inside fd00::/8, RFC 4193)`, "ipv6");
  return { ipv4: formatCidr(v4), ipv6: formatCidr(v6) };
}

function parsePool(ipv4Cidr: string): Cidr {
  const pool = parseCidr(ipv4Cidr);
  if (!pool || pool.family !== 4) throw new InvalidError(`ipv4: ${JSON.stringify(ipv4Cidr)} is not an IPv4 CIDR with the host bits zero`, "ipv4");
  return pool;
}

/** True when all of `inner` lies in `outer`. */
function inside(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, { family: inner.family, bytes: inner.bytes });
}

/** The address `host` places after the network address (the caller has checked it fits). */
function addHost(network: Cidr, host: number): { family: 4 | 6; bytes: Uint8Array } {
  const bytes = Uint8Array.from(network.bytes);
  let carry = host;
  for (let i = bytes.length - 1; i >= 0 && carry > 0; i--) {
    const sum = bytes[i]! + (carry % 256);
    bytes[i] = sum % 256;
    carry = Math.floor(carry / 256) + Math.floor(sum / 256);
  }
  return { family: network.family, bytes };
}

function toUint32(bytes: Uint8Array): number {
  return ((bytes[0]! << 24) >>> 0) + (bytes[1]! << 16) + (bytes[2]! << 8) + bytes[3]!;
}
