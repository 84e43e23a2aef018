/**
 * The [iam] token expiries: the default, given when none is asked for, is capped at the maximum
 * (found in review: with a default of 30 and a maximum of 7, every token or key made without an
 * expiry was refused for an `expires_in_days` nobody sent, and device logins got 30-day tokens).
 * Capped, not refused: a maximum set alone below the default's own default is a sound config.
 */
import { expect, test } from "bun:test";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";
import { defaultTokenDays, type IamSettings } from "../../../plugins/iam/settings.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const load = (env: Record<string, string>) => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.iam as IamSettings;
const newCitadel = stoppedAfterEach();

test("the default expiry is capped at the maximum; a maximum set alone below 30 is a config that loads", () => {
  expect(defaultTokenDays(load({ CITADEL_IAM_TOKEN_MAX_DAYS: "7" }))).toBe(7);
  expect(defaultTokenDays(load({ CITADEL_IAM_TOKEN_DEFAULT_DAYS: "400" }))).toBe(365);
  expect(defaultTokenDays(load({ CITADEL_IAM_TOKEN_DEFAULT_DAYS: "5", CITADEL_IAM_TOKEN_MAX_DAYS: "7" }))).toBe(5);
  expect(defaultTokenDays(load({}))).toBe(30);
});

test("a token made without an expiry under a maximum below the default gets the maximum, not a refusal", async () => {
  const c = await newCitadel({ config: { iam: { token_max_days: 7 } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const made = await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "ci", scopes: ["read"] } });
  expect(made.status).toBe(200);
  expect(Date.parse(made.body.expires_at) - c.clock.now()).toBe(7 * 86_400_000);
});
