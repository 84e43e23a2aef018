/**
 * Rate-limit refusals in the audit log: one event per client and minute, so a flood is
 * recorded, not amplified.
 */
import type { AuditEventInput } from "../audit/event.ts";
import { BoundedMap } from "../bounded-map.ts";
import { clientKey } from "../net/ip.ts";
import { auditRequest } from "./audit-request.ts";
import { requestMeta } from "./request-meta.ts";

/**
 * Says yes to a key at most once per window. It remembers at most `capacity` keys (a
 * BoundedMap: a spray of new keys costs O(1) each and forgets the keys sampled longest ago,
 * never all of them at once, which would open every window again).
 */
export class OncePerWindow {
  private readonly last: BoundedMap<string, number>;

  constructor(
    private readonly windowMs: number,
    capacity: number,
    private readonly now: () => number,
  ) {
    this.last = new BoundedMap(capacity);
  }

  due(key: string): boolean {
    const at = this.now();
    const previous = this.last.get(key);
    if (previous !== undefined && previous > at) {
      // The clock went back: no time has passed since that sample, so the window starts again
      // now, rather than stay shut until the clock is back where it was.
      this.last.set(key, at);
      return false;
    }
    if (previous !== undefined && previous > at - this.windowMs) return false;
    this.last.set(key, at);
    return true;
  }
}

/** A minute per key, and at most this many keys remembered. */
const WINDOW_MS = 60_000;
const CAPACITY = 10_000;

export function oncePerMinute(now: () => number): OncePerWindow {
  return new OncePerWindow(WINDOW_MS, CAPACITY, now);
}

/**
 * The edge's per-address refusals (the request carries its meta). Keyed as the limiter counts
 * clients: an IPv6 client is its /64, so addresses rotated within one /64 are one client here
 * too. The event carries the request id of the 429 it samples.
 */
export function sampledRateLimitEvents(record: (event: AuditEventInput) => void, now: () => number): (request: Request) => void {
  const sampler = oncePerMinute(now);
  return (request) => {
    if (!sampler.due(clientKey(requestMeta(request).client))) return;
    record({ action: "auth.rate_limit", actor: { kind: "anonymous" }, outcome: "failure", reason: "address limit", request: auditRequest(request) });
  };
}
