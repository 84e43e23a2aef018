/**
 * The manual allow and deny entries as the shield asks them, at every verdict it works out
 * afresh: per address family and prefix length, a map from the network to its entries. A lookup
 * costs one map lookup per prefix length in use (at most 33 for IPv4, 129 for IPv6), not a scan
 * of every entry — a flood of new addresses must not turn an operator's long deny list into
 * work per packet.
 *
 * Entries already expired when the index is built are left out; one that expires later stops
 * matching at its `until` (the service rebuilds the index when it sweeps expired rows away).
 */
import { parseCidr, type Cidr, type IpAddress } from "../net/ip.ts";
import { severity, type Action } from "./policy.ts";

export interface ManualEntry {
  id: string;
  kind: "allow" | "deny";
  /** An address or a CIDR, as given. */
  target: string;
  /** For deny entries: what is done (refuse by default). */
  action: Exclude<Action, "allow">;
  until: number | null;
  reason: string | null;
}

export class ManualIndex {
  private constructor(
    private readonly allows: PrefixTable,
    private readonly denies: PrefixTable,
    /** Entries indexed (live ones whose target parses). */
    readonly size: number,
  ) {}

  /** Indexes the entries still in force at `now`; those whose target does not parse are skipped. */
  static build(entries: readonly ManualEntry[], now: number): ManualIndex {
    const allows = new PrefixTable();
    const denies = new PrefixTable();
    let size = 0;
    for (const entry of entries) {
      if (!isLive(entry, now)) continue;
      const cidr = toCidr(entry.target);
      if (!cidr) continue;
      (entry.kind === "allow" ? allows : denies).add(cidr, entry);
      size++;
    }
    return new ManualIndex(allows, denies, size);
  }

  /** The allow entry in force for `ip` (the most specific), or null. */
  allowed(ip: IpAddress, now: number): ManualEntry | null {
    return this.allows.find(ip, now, () => false);
  }

  /**
   * The deny entry in force for `ip` that does the most (drop over refuse over throttle), the
   * most specific of equals — never the oldest: a throttle on a /24 must not soften a drop on
   * one of its addresses.
   */
  denied(ip: IpAddress, now: number): ManualEntry | null {
    return this.denies.find(ip, now, (candidate, best) => severity(candidate.action) > severity(best.action));
  }
}

/** Entries by family, then prefix length, then network. */
class PrefixTable {
  private readonly networks: Record<4 | 6, Map<number, Map<string, ManualEntry[]>>> = { 4: new Map(), 6: new Map() };
  /** The prefix lengths in use, longest first (the most specific match is met first). */
  private readonly lengths: Record<4 | 6, number[]> = { 4: [], 6: [] };

  add(cidr: Cidr, entry: ManualEntry): void {
    let byNetwork = this.networks[cidr.family].get(cidr.prefix);
    if (!byNetwork) {
      this.networks[cidr.family].set(cidr.prefix, (byNetwork = new Map()));
      this.lengths[cidr.family].push(cidr.prefix);
      this.lengths[cidr.family].sort((a, b) => b - a);
    }
    const key = networkKey(cidr.bytes, cidr.prefix);
    const entries = byNetwork.get(key);
    if (entries) entries.push(entry);
    else byNetwork.set(key, [entry]);
  }

  /** The first live entry holding `ip`, longest prefix first, replaced by any later one `better` than it. */
  find(ip: IpAddress, now: number, better: (candidate: ManualEntry, best: ManualEntry) => boolean): ManualEntry | null {
    const networks = this.networks[ip.family];
    let best: ManualEntry | null = null;
    for (const length of this.lengths[ip.family]) {
      const entries = networks.get(length)!.get(networkKey(ip.bytes, length));
      if (!entries) continue;
      for (const entry of entries) if (isLive(entry, now) && (best === null || better(entry, best))) best = entry;
    }
    return best;
  }
}

const isLive = (entry: ManualEntry, now: number) => entry.until === null || entry.until > now;

/** The first `prefix` bits of an address, as a map key (one character per byte, the last masked). */
function networkKey(bytes: Uint8Array, prefix: number): string {
  const whole = prefix >> 3;
  const rest = prefix & 7;
  let key = "";
  for (let i = 0; i < whole; i++) key += String.fromCharCode(bytes[i]!);
  if (rest > 0) key += String.fromCharCode(bytes[whole]! & (0xff << (8 - rest)) & 0xff);
  return key;
}

/** An address or CIDR as a CIDR (an address is its /32 or /128; host bits must be zero). */
export function toCidr(text: string): Cidr | null {
  const cidr = parseCidr(text.trim());
  return cidr && unmapCidr(cidr);
}

/**
 * ::ffff:a.b.c.d/n (n ≥ 96) is an IPv4 prefix written the IPv6 way: as IPv4, since the shield
 * matches clients by their unmapped address (a dual-stack socket's ::ffff:192.0.2.1 is 192.0.2.1).
 */
export function unmapCidr(cidr: Cidr): Cidr {
  if (cidr.family === 6 && cidr.prefix >= 96 && cidr.bytes.subarray(0, 10).every((b) => b === 0) && cidr.bytes[10] === 0xff && cidr.bytes[11] === 0xff) {
    return { family: 4, bytes: cidr.bytes.slice(12), prefix: cidr.prefix - 96 };
  }
  return cidr;
}
