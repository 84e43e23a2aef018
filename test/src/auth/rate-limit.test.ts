/**
 * The in-process token buckets under a spray of addresses: memory stays bounded, a client in use
 * keeps its (spent) bucket, and new keys far past the bound stay cheap.
 */
import { expect, test } from "bun:test";
import { RateLimiter } from "../../../src/auth/rate-limit.ts";

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
