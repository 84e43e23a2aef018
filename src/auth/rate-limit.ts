/**
 * Token buckets, in process: each key (an address, an organization) has `burst` tokens,
 * refilled at `perSecond`; a request takes one. Idle buckets are forgotten, so an attacker
 * spraying addresses costs bounded memory.
 */
import { BoundedMap } from "../bounded-map.ts";

export interface BucketPolicy {
  /** Name for the RateLimit-Policy header. */
  name: string;
  perSecond: number;
  burst: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Tokens left after this request. */
  remaining: number;
  /** Seconds until a token is available (0 when allowed). */
  retryAfter: number;
  /** Seconds until the bucket is full again. */
  reset: number;
  policy: BucketPolicy;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  /**
   * Those not used lately are forgotten first, at O(1) per new key: a flood of new addresses
   * costs no more per request than one address (a forgotten bucket is a full one again).
   */
  private readonly buckets: BoundedMap<string, Bucket>;

  constructor(
    readonly policy: BucketPolicy,
    /** Milliseconds on a clock that only goes forward, by default; any origin. */
    private readonly now: () => number = () => performance.now(),
    maxKeys = 100_000,
  ) {
    this.buckets = new BoundedMap(maxKeys);
  }

  take(key: string, cost = 1): RateDecision {
    const now = this.now();
    const { perSecond, burst } = this.policy;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      // A clock that went back (a wall clock stepped by NTP, a resumed VM) counts as no time
      // passed: negative time would drain every bucket for as long as the step.
      const elapsedMs = Math.max(0, now - bucket.at);
      bucket.tokens = Math.min(burst, bucket.tokens + (elapsedMs / 1000) * perSecond);
      bucket.at = now;
    }
    const allowed = bucket.tokens >= cost;
    if (allowed) bucket.tokens -= cost;
    return {
      allowed,
      remaining: Math.floor(bucket.tokens),
      retryAfter: allowed ? 0 : Math.ceil((cost - bucket.tokens) / perSecond),
      reset: Math.ceil((burst - bucket.tokens) / perSecond),
      policy: this.policy,
    };
  }
}

/** The IETF RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers). */
export function rateLimitHeaders(d: RateDecision): Record<string, string> {
  const window = Math.ceil(d.policy.burst / d.policy.perSecond);
  const headers: Record<string, string> = {
    "ratelimit-policy": `"${d.policy.name}";q=${d.policy.burst};w=${window}`,
    ratelimit: `"${d.policy.name}";r=${d.remaining};t=${d.allowed ? d.reset : d.retryAfter}`,
  };
  if (!d.allowed) headers["retry-after"] = String(Math.max(1, d.retryAfter));
  return headers;
}
