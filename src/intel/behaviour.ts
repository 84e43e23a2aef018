/**
 * What an address has been doing: decaying counters per address (an IPv6 address's /64) and per
 * prefix (/24 IPv4, /56 IPv6), one per signal. A counter halves every `halfLifeMs` (10 minutes by default), so
 * "43 failed logins" means about 43 lately, and an address that stops is forgiven without a
 * sweep. The prefix counters catch what a client spreads over its neighbours.
 *
 * A prefix also keeps, per signal, the largest count one address of it holds (`top`), so its
 * neighbours are judged on what was spread over addresses (`spread`: the total less that one
 * address): twenty failed logins from one address are that address's doing, and must not
 * throttle an idle neighbour in its /24; one failed login from each of twenty addresses is the
 * neighbourhood's. Counters all halve at the same pace, so the largest one decays with them and
 * only an add can raise it: the record stays exact without listing the addresses.
 *
 * Memory is bounded: at most `maxKeys` keys per table (HTTP signals, DNS signals); those not
 * touched lately go first (a BoundedMap: O(1) per key, however many new keys a flood brings).
 */
import { BoundedMap } from "../bounded-map.ts";
import { formatIp, parseIp, unmapIpv4, type IpAddress } from "../net/ip.ts";

export const SIGNALS = ["failed_login", "invalid_token", "http_forbidden", "http_rate_limited", "dns_rate_limited", "dns_refused", "dns_nxdomain", "dns_random_subdomain"] as const;
export type Signal = (typeof SIGNALS)[number];

const NOTHING: Readonly<Record<Signal, number>> = Object.freeze(Object.fromEntries(SIGNALS.map((s) => [s, 0])) as Record<Signal, number>);

interface Counter {
  /** Decayed values per signal, as of `at`. */
  values: Float64Array;
  /** For a prefix: the largest decayed count of one of its addresses, per signal. */
  top: Float64Array | null;
  at: number;
}

export interface BehaviourOptions {
  now: () => number;
  halfLifeMs?: number;
  maxKeys?: number;
}

/** The address's keys (IPv4-mapped unmapped); null when it is no IP. */
export function addressAndPrefix(text: string): Keys | null {
  const parsed = parseIp(text);
  return parsed ? keysOf(unmapIpv4(parsed)) : null;
}

/** The same for a parsed (and unmapped) address. */
export function keysOf(ip: IpAddress): Keys {
  if (ip.family === 4) {
    const [a, b, c, d] = ip.bytes as unknown as [number, number, number, number];
    const text = `${a}.${b}.${c}.${d}`;
    return { ip: text, address: text, prefix: `${a}.${b}.${c}.0/24`, wide: null };
  }
  const bytes = ip.bytes.slice();
  bytes.fill(0, 8);
  const host = `${formatIp({ family: 6, bytes })}/64`;
  bytes[7] = 0;
  const prefix = `${formatIp({ family: 6, bytes })}/56`;
  bytes[6] = 0;
  return { ip: formatIp(ip), address: host, prefix, wide: `${formatIp({ family: 6, bytes })}/48` };
}

/**
 * The keys an address is counted under: the client it is (`address`), its prefix (/24, /56)
 * and, for IPv6, its /48 — a holder of a /48 has 256 /56s to rotate through, so their sum is
 * watched too.
 */
export interface Keys {
  /** The address itself, in canonical text. */
  ip: string;
  /**
   * The client: an IPv4 address, or an IPv6 address's /64, as the rate limits count it. One
   * host usually holds a whole /64: counted and decided per address, it would leave a refusal
   * by moving to the next one.
   */
  address: string;
  prefix: string;
  wide: string | null;
}

export class Behaviour {
  private readonly counters: BoundedMap<string, Counter>;
  private readonly halfLife: number;
  /**
   * Two tables: DNS signals come from UDP sources anyone can forge, in floods, so they get their
   * own table — a spoofed flood from random addresses can then evict only DNS counts, never the
   * failed logins of a brute-forcer (which come over TCP, from real addresses).
   */
  private readonly dns: BoundedMap<string, Counter>;

  constructor(private readonly options: BehaviourOptions) {
    this.halfLife = options.halfLifeMs ?? 10 * 60_000;
    const maxKeys = options.maxKeys ?? 200_000;
    this.counters = new BoundedMap(maxKeys);
    this.dns = new BoundedMap(maxKeys);
  }

  get halfLifeMinutes(): number {
    return this.halfLife / 60_000;
  }

  /** Counts `n` of `signal` for the address, its prefix and (IPv6) its /48. */
  add(address: string, prefix: string, signal: Signal, n = 1, wide: string | null = null): void {
    const i = SIGNALS.indexOf(signal);
    const now = this.options.now();
    const table = signal.startsWith("dns_") ? this.dns : this.counters;
    const own = this.touch(table, address, now, false);
    own.values[i] = own.values[i]! + n;
    for (const key of wide === null ? [prefix] : [prefix, wide]) {
      const counter = this.touch(table, key, now, true);
      counter.values[i] = counter.values[i]! + n;
      counter.top![i] = Math.max(counter.top![i]!, own.values[i]!);
    }
  }

  /** The decayed counts of a key (an address or a prefix), by signal. */
  counts(key: string): Readonly<Record<Signal, number>> {
    return this.read(key, false);
  }

  /**
   * A prefix's counts less, per signal, the largest share one address of it holds: what its
   * addresses did together, beyond its worst one (whose own counts speak for it).
   */
  spread(prefix: string): Readonly<Record<Signal, number>> {
    return this.read(prefix, true);
  }

  private read(key: string, lessTop: boolean): Readonly<Record<Signal, number>> {
    const http = this.counters.get(key);
    const dns = this.dns.get(key);
    if (!http && !dns) return NOTHING; // most addresses have done nothing worth counting
    const out = { ...NOTHING };
    const now = this.options.now();
    for (const counter of [http, dns]) {
      if (!counter) continue;
      this.decay(counter, now);
      const top = lessTop ? counter.top : null;
      SIGNALS.forEach((s, i) => (out[s] += top ? Math.max(0, counter.values[i]! - top[i]!) : counter.values[i]!));
    }
    return out;
  }

  get size(): number {
    return this.counters.size + this.dns.size;
  }

  /** Forgets a key's counts (an operator lifted its decision). */
  forget(key: string): void {
    this.counters.delete(key);
    this.dns.delete(key);
  }

  private touch(table: BoundedMap<string, Counter>, key: string, now: number, isPrefix: boolean): Counter {
    const counter = table.get(key); // (a hit keeps the key among the recently touched)
    if (counter) {
      this.decay(counter, now);
      return counter;
    }
    const fresh = { values: new Float64Array(SIGNALS.length), top: isPrefix ? new Float64Array(SIGNALS.length) : null, at: now };
    table.set(key, fresh);
    return fresh;
  }

  private decay(counter: Counter, now: number): void {
    if (now <= counter.at) return;
    const factor = 2 ** (-(now - counter.at) / this.halfLife);
    for (let i = 0; i < counter.values.length; i++) counter.values[i] = counter.values[i]! * factor;
    if (counter.top) for (let i = 0; i < counter.top.length; i++) counter.top[i] = counter.top[i]! * factor;
    counter.at = now;
  }
}
