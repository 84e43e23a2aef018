/**
 * Response rate limiting (in the spirit of BIND's and Knot's RRL) for UDP: each client prefix
 * (/24 IPv4, /56 IPv6) gets `rate` responses a second (a token bucket, burst = rate). Past it,
 * every `slip`-th limited query gets an empty reply with TC set — a real resolver retries over
 * TCP, where a spoofed source cannot follow — and the others get nothing. An attacker spoofing a
 * victim's address so gets little amplification, and the victim's real resolvers still get
 * answers over TCP. TCP is never limited here.
 */
import { BoundedMap } from "../../src/bounded-map.ts";
import { clientPrefix } from "./analytics.ts";

export type RrlVerdict = "answer" | "truncate" | "drop";

interface Bucket {
  tokens: number;
  at: number;
  limited: number;
}

/**
 * Prefixes tracked at most. Past it the prefixes seen longest ago are forgotten (a BoundedMap),
 * never all at once: emptying the map let a spray of spoofed prefixes refill the bucket of
 * the victim a reflection attack aims at.
 */
const MAX_BUCKETS = 200_000;
const MAX_PREFIX_CACHE = 4096;

export class ResponseRateLimiter {
  private readonly buckets = new BoundedMap<string, Bucket>(MAX_BUCKETS);
  private readonly prefixes = new Map<string, string>();

  constructor(
    /** now: milliseconds, any origin; a clock that only goes forward is best. */
    private readonly options: { slip: number; now: () => number },
  ) {}

  /** Takes one response for `client` at `rate` per second (0: unlimited). */
  take(client: string, rate: number): RrlVerdict {
    if (rate <= 0) return "answer";
    const prefix = this.prefixOf(client);
    const now = this.options.now();
    let bucket = this.buckets.get(prefix);
    if (bucket === undefined) {
      bucket = { tokens: rate, at: now, limited: 0 };
      this.buckets.set(prefix, bucket);
    } else {
      // A clock that went back (a wall clock stepped by NTP, a resumed VM) counts as no time
      // passed, and time counts again from the step: kept at the later time, an empty bucket
      // refilled nothing until the clock caught up, the length of the step.
      const elapsedMs = Math.max(0, now - bucket.at);
      bucket.tokens = Math.min(rate, bucket.tokens + (elapsedMs / 1000) * rate);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return "answer";
    }
    bucket.limited++;
    const slip = this.options.slip;
    return slip > 0 && bucket.limited % slip === 0 ? "truncate" : "drop";
  }

  private prefixOf(client: string): string {
    let prefix = this.prefixes.get(client);
    if (prefix === undefined) {
      if (this.prefixes.size >= MAX_PREFIX_CACHE) this.prefixes.clear();
      this.prefixes.set(client, (prefix = clientPrefix(client)));
    }
    return prefix;
  }
}
