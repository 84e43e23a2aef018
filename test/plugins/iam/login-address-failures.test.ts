/**
 * The failed logins counted per address alone (every account tried from it) are forgiven after
 * `iam.login_lock_minutes` without one: an address whose typos come now and then over a long
 * uptime (a NAT, a proxy not in trusted_proxies) is not held for them (found in review: the
 * count never decayed), while a guesser who keeps going — waiting out every slowdown — still
 * reaches the lock (found in review: a count over the window from its FIRST failure started
 * over while the guessing went on, and the lock was never reached).
 */
import { describe, expect, test } from "bun:test";
import type { IamSettings } from "../../../plugins/iam/settings.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const ADDRESS = "198.51.100.77";
const from = { headers: { "x-test-peer": ADDRESS } };

async function app() {
  // The IP shield off: it would refuse a guessing address on its own, and this is the login counter's test.
  const c = await newCitadel({ config: { intel: { enabled: false } } });
  const operator = await c.login(c.owner.email, c.owner.password);
  await c.addUser(operator, "bystander@example.org");
  const settings = c.config.iam as IamSettings;
  const login = (email: string, password: string) => c.send("POST", "/v1/iam/login", undefined, { json: { email, password }, ...from });
  return { c, settings, login };
}

describe("failed logins per address", () => {
  test("the count starts over after a quiet window: typos of long ago no longer throttle the address", async () => {
    const { c, settings, login } = await app();
    const windowMs = settings.login_lock_minutes * 60_000;
    const slowdownAfter = settings.login_slowdown_after * 5;
    // Each at another account (its pair never slows down): the address's count alone.
    for (let i = 0; i < slowdownAfter; i++) {
      c.clock.advance(2_000); // under the per-address request limit of the login endpoint
      expect((await login(`typo-${i}@example.org`, "a-typo-in-it")).status).toBe(401);
    }
    expect((await login("bystander@example.org", "correct-horse-battery-9")).status).toBe(429);

    c.clock.advance(windowMs + 60_000); // a quiet spell of the window's length after the wait imposed (a second) ran out
    expect((await login("one-more-typo@example.org", "a-typo-in-it")).status).toBe(401); // counted as the first of a new count
    expect((await login("bystander@example.org", "correct-horse-battery-9")).status).toBe(200);
  });

  test("failures within the window of each other still throttle every account from the address", async () => {
    const { c, settings, login } = await app();
    const windowMs = settings.login_lock_minutes * 60_000;
    const slowdownAfter = settings.login_slowdown_after * 5;
    // Spread over three windows, but never a whole window apart.
    for (let i = 0; i < slowdownAfter; i++) {
      if (i > 0) c.clock.advance(Math.floor((windowMs * 3) / slowdownAfter));
      expect((await login(`guess-${i}@example.org`, "a-guess-at-it")).status).toBe(401);
    }
    const throttled = await login("bystander@example.org", "correct-horse-battery-9");
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });

  test("a guesser who waits out every slowdown reaches the lock", async () => {
    const { c, settings, login } = await app();
    const lockAfter = settings.login_lock_after * 5;
    let guesses = 0;
    let longest = 0;
    while (guesses < lockAfter) {
      const res = await login(`spray-${guesses}@example.org`, "a-guess-at-it");
      if (res.status === 401) guesses++;
      else {
        expect(res.status).toBe(429);
        const wait = Number(res.headers.get("retry-after"));
        longest = Math.max(longest, wait);
        c.clock.advance(wait * 1000);
      }
    }
    const locked = await login("bystander@example.org", "correct-horse-battery-9");
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get("retry-after"))).toBe(settings.login_lock_minutes * 60);
    // The lock, not a slowdown that happens to last as long (found in review): waited out, the
    // next guess is counted on top and locks again at once; the count did not start over.
    c.clock.advance(settings.login_lock_minutes * 60_000);
    expect((await login("one-more@example.org", "a-guess-at-it")).status).toBe(401);
    const again = await login("bystander@example.org", "correct-horse-battery-9");
    expect([again.status, Number(again.headers.get("retry-after"))]).toEqual([429, settings.login_lock_minutes * 60]);
    expect(longest).toBeLessThanOrEqual(settings.login_lock_minutes * 60);
  });
});
