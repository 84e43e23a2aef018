/**
 * IP addresses and CIDR prefixes, IPv4 and IPv6, as byte arrays. Used by trusted proxies
 * now and by allowlists, the shield and mesh addressing later, so it is strict: one
 * spelling of an address is accepted per RFC 4291/5952 rules and anything else is refused.
 */
export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

export interface Cidr {
  readonly family: IpFamily;
  /** The network address: host bits are zero. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

const IPV4_PART = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses a dotted-quad IPv4 address; null when it is not one (leading zeros refused). */
export function parseIpv4(text: string): IpAddress | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!IPV4_PART.test(part)) return null;
    bytes[i] = Number(part);
  }
  return { family: 4, bytes };
}

/** Parses an IPv6 address (with `::` and an optional trailing dotted quad); no zone ids. */
export function parseIpv6(text: string): IpAddress | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const pieces = half.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (!v4) return null;
        out.push((v4.bytes[0]! << 8) | v4.bytes[1]!, (v4.bytes[2]! << 8) | v4.bytes[3]!);
      } else {
        if (!HEX_GROUP.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted quad may only end the address, never sit before "::".
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return { family: 6, bytes };
}

/** Parses either family. */
export function parseIp(text: string): IpAddress | null {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

/** `::ffff:a.b.c.d` is how a dual-stack socket reports an IPv4 peer; treat it as IPv4. */
export function unmapIpv4(ip: IpAddress): IpAddress {
  if (ip.family !== 6) return ip;
  const b = ip.bytes;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return ip;
  if (b[10] !== 0xff || b[11] !== 0xff) return ip;
  return { family: 4, bytes: b.slice(12) };
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run compressed). */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLength = 1; // RFC 5952 4.2.2: a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/**
 * Parses `address/prefix` (or a bare address, meaning a host prefix). Host bits must be
 * zero: `10.0.0.1/8` is refused because it usually hides a typo.
 */
export function parseCidr(text: string): Cidr | null {
  const parsed = parsePrefixed(text);
  if (!parsed) return null;
  const masked = maskBytes(parsed.ip.bytes, parsed.prefix);
  if (!equalBytes(masked, parsed.ip.bytes)) return null; // host bits set: not a network
  return { family: parsed.ip.family, bytes: masked, prefix: parsed.prefix };
}

/**
 * Parses a CIDR that clients are matched against (an address allowlist). A client is matched
 * by its unmapped address (a dual-stack socket's ::ffff:192.0.2.1 is 192.0.2.1), so an
 * IPv4-mapped prefix of /96 or longer is taken as the IPv4 prefix it spells, or it would match
 * no client at all; a shorter one stays IPv6.
 */
export function parseClientCidr(text: string): Cidr | null {
  const cidr = parseCidr(text);
  return cidr && unmapCidr(cidr);
}

/** ::ffff:a.b.c.d/n with n ≥ 96 as a.b.c.d/(n − 96); any other prefix as it is. */
export function unmapCidr(cidr: Cidr): Cidr {
  if (cidr.family !== 6 || cidr.prefix < 96) return cidr;
  const unmapped = unmapIpv4({ family: 6, bytes: cidr.bytes });
  return unmapped.family === 4 ? { family: 4, bytes: unmapped.bytes, prefix: cidr.prefix - 96 } : cidr;
}

/** The network an interface address belongs to: "100.64.0.5/16" → 100.64.0.0/16 (host bits allowed, cleared). */
export function networkOf(text: string): Cidr | null {
  const parsed = text.includes("/") ? parsePrefixed(text) : null;
  return parsed && { family: parsed.ip.family, bytes: maskBytes(parsed.ip.bytes, parsed.prefix), prefix: parsed.prefix };
}

/** "address/prefix" (or an address alone: its full length), the prefix in range. */
function parsePrefixed(text: string): { ip: IpAddress; prefix: number } | null {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = ip.family === 4 ? 32 : 128;
  if (slash < 0) return { ip, prefix: max };
  const p = text.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > max) return null;
  return { ip, prefix: Number(p) };
}

/**
 * The unit that counts as one client for throttling: an IPv4 address, or the /64 of an IPv6
 * one (a single host usually has a whole /64, so counting addresses would count nothing).
 */
export function clientKey(text: string): string {
  let key = clientKeys.get(text);
  if (key === undefined) {
    const parsed = parseIp(text);
    const ip = parsed && unmapIpv4(parsed);
    key = !ip ? text : ip.family === 4 ? formatIp(ip) : formatCidr({ family: 6, bytes: maskBytes(ip.bytes, 64), prefix: 64 });
    if (clientKeys.size >= MAX_CLIENT_KEYS) clientKeys.clear();
    clientKeys.set(text, key);
  }
  return key;
}

// Every request asks for its client's key, often several times: parsing and formatting the
// address each time cost more than the rate-limit bucket it names. Bounded, so addresses
// sprayed by an attacker cost bounded memory.
const clientKeys = new Map<string, string>();
const MAX_CLIENT_KEYS = 10_000;

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr)}/${cidr.prefix}`;
}

/** True when `ip` lies inside `cidr`. IPv4-mapped IPv6 addresses match IPv4 prefixes. */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  const addr = cidr.family === 4 ? unmapIpv4(ip) : ip;
  if (addr.family !== cidr.family) return false;
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (addr.bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr.bytes[full]! & mask) === cidr.bytes[full];
}

/** True when every address of `inner` lies inside `outer` (same family, at least as long a prefix). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrContains(outer, inner);
}

/** Loopback: 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z). */
export function isLoopback(ip: IpAddress): boolean {
  const addr = unmapIpv4(ip);
  if (addr.family === 4) return addr.bytes[0] === 127;
  for (let i = 0; i < 15; i++) if (addr.bytes[i] !== 0) return false;
  return addr.bytes[15] === 1;
}

/** A URL's hostname (`localhost`, `127.0.0.1`, `[::1]`) names this machine's loopback. */
export function isLoopbackHost(hostname: string): boolean {
  if (hostname === "localhost") return true;
  const address = parseIp(hostname.replace(/^\[|\]$/g, ""));
  return address !== null && isLoopback(address);
}

function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] = bytes[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
