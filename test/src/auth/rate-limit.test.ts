/**
 * The in-process token buckets under a spray of addresses: memory stays bounded, a client in use
 * keeps its (spent) bucket, and new keys far past the bound stay cheap.
 */
import { expect, test } from "bun:test";
import { RateLimiter, rateLimitHeaders } from "../../../src/auth/rate-limit.ts";
import { fixedClock } from "../../helpers/http.ts";

const policy = { name: "auth", perSecond: 1, burst: 3 };
const sprayed = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

test("a spray of new addresses does not refill the bucket of a client that keeps asking", () => {
  const limiter = new RateLimiter(policy, () => 0, 1000);
  for (let i = 0; i < 3; i++) limiter.take("192.0.2.7");
  for (let i = 0; i < 10_000; i++) {
    limiter.take(sprayed(i));
    if (i % 100 === 0) expect(limiter.take("192.0.2.7").allowed).toBe(false);
  }
});

test("a client that stopped asking is forgotten once enough others came (its bucket is full again)", () => {
  const limiter = new RateLimiter(policy, () => 0, 1000);
  for (let i = 0; i < 3; i++) limiter.take("192.0.2.7");
  for (let i = 0; i < 1000; i++) limiter.take(sprayed(i));
  expect(limiter.take("192.0.2.7").allowed).toBe(true);
});

test("500,000 new addresses at the default bound finish (each costs the same, however many came before)", () => {
  const limiter = new RateLimiter(policy, () => 0);
  for (let i = 0; i < 500_000; i++) limiter.take(sprayed(i));
  expect(limiter.take(sprayed(499_999)).remaining).toBe(1);
});

test("a clock stepped back (NTP, a resumed VM) counts as no time passed: the bucket keeps what it had, never below zero (found in review)", () => {
  const clock = fixedClock();
  const limiter = new RateLimiter(policy, clock.now);
  expect(limiter.take("192.0.2.7").remaining).toBe(2);
  clock.advance(-3_600_000);
  const after = limiter.take("192.0.2.7");
  expect([after.allowed, after.remaining]).toEqual([true, 1]); // as it would have been without the step
  expect(rateLimitHeaders(after).ratelimit).toBe('"auth";r=1;t=2');
  clock.advance(1000); // and time counts again from the step on
  expect(limiter.take("192.0.2.7").remaining).toBe(1);
});
