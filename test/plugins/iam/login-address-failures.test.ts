/**
 * The failed logins counted per address alone (every account tried from it) are counted over
 * `iam.login_lock_minutes`: an address that typos now and then over a long uptime (a NAT, a
 * proxy not in trusted_proxies) is not held forever, while guesses sprayed over its accounts
 * within that window still are (found in review: the count never decayed).
 */
import { describe, expect, test } from "bun:test";
import type { IamSettings } from "../../../plugins/iam/settings.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const ADDRESS = "198.51.100.77";
const from = { headers: { "x-test-peer": ADDRESS } };

async function app() {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  await c.addUser(operator, "bystander@example.org");
  const settings = c.config.iam as IamSettings;
  const login = (email: string, password: string) => c.send("POST", "/v1/iam/login", undefined, { json: { email, password }, ...from });
  return { c, settings, login };
}

describe("failed logins per address", () => {
  test("typos spread over more than the lock window do not throttle the address's logins", async () => {
    const { c, settings, login } = await app();
    const windowMs = settings.login_lock_minutes * 60_000;
    // 20 typos, 66 s apart (22 minutes in all), each followed by the right password.
    for (let i = 0; i < 20; i++) {
      expect((await login(c.owner.email, "a-typo-in-it")).status).toBe(401);
      c.clock.advance(33_000);
      expect((await login(c.owner.email, c.owner.password)).status).toBe(200);
      c.clock.advance(33_000);
    }
    expect(20 * 66_000).toBeGreaterThan(windowMs);
    c.clock.advance(120_000);
    expect((await login(c.owner.email, "a-typo-in-it")).status).toBe(401);
    expect((await login(c.owner.email, c.owner.password)).status).toBe(200);
    expect((await login("bystander@example.org", "correct-horse-battery-9")).status).toBe(200);
  });

  test("failures over the address's accounts within the lock window still throttle all of them", async () => {
    const { c, settings, login } = await app();
    const windowMs = settings.login_lock_minutes * 60_000;
    const slowdownAfter = settings.login_slowdown_after * 5;
    // Each guess at another account (its pair never slows down), spread over most of the window.
    for (let i = 0; i < slowdownAfter; i++) {
      if (i > 0) c.clock.advance(Math.floor((windowMs * 0.9) / slowdownAfter));
      expect((await login(`guess-${i}@example.org`, "a-guess-at-it")).status).toBe(401);
    }
    const throttled = await login("bystander@example.org", "correct-horse-battery-9");
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});
