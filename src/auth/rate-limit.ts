/**
 * Token buckets, in process: each key (an address, an organization) has `burst` tokens,
 * refilled at `perSecond`; a request takes one. Idle buckets are forgotten, so an attacker
 * spraying addresses costs bounded memory.
 */
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
  private buckets = new Map<string, Bucket>();

  constructor(
    readonly policy: BucketPolicy,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {}

  take(key: string, cost = 1): RateDecision {
    const now = this.now();
    const { perSecond, burst } = this.policy;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.evictLeastRecentlyUsed();
      bucket = { tokens: burst, at: now };
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      bucket.at = now;
      this.buckets.delete(key); // re-inserted below: the Map's order is the order of last use
    }
    this.buckets.set(key, bucket);
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

  /**
   * Forgets the bucket used longest ago: O(1), so a flood of new addresses costs no more per
   * request than one address (a scan or sort per new key would make the limiter the bottleneck).
   */
  private evictLeastRecentlyUsed(): void {
    const oldest = this.buckets.keys().next();
    if (!oldest.done) this.buckets.delete(oldest.value);
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
