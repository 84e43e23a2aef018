/**
 * The [iam] token expiries: the default, given when none is asked for, is at most the maximum —
 * a config error naming both keys, from the loader, before any command does anything (found in
 * review: with a default of 30 and a maximum of 7, every token or key made without an expiry
 * was refused for an `expires_in_days` nobody sent, and device logins got 30-day tokens).
 */
import { expect, test } from "bun:test";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

const load = (env: Record<string, string>) => () => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });

test("a default expiry beyond the maximum is a config error naming both keys, against the defaults too", () => {
  expect(load({ CITADEL_IAM_TOKEN_DEFAULT_DAYS: "30", CITADEL_IAM_TOKEN_MAX_DAYS: "7" })).toThrow(new ConfigError("iam.token_default_days: must be at most iam.token_max_days (7), is 30"));
  // The default's default (30) against a maximum set alone.
  expect(load({ CITADEL_IAM_TOKEN_MAX_DAYS: "7" })).toThrow(new ConfigError("iam.token_default_days: must be at most iam.token_max_days (7), is 30"));
  expect(load({ CITADEL_IAM_TOKEN_DEFAULT_DAYS: "400" })).toThrow(new ConfigError("iam.token_default_days: must be at most iam.token_max_days (365), is 400"));
});

test("a default equal to the maximum, or below it, is taken", () => {
  expect(load({ CITADEL_IAM_TOKEN_DEFAULT_DAYS: "7", CITADEL_IAM_TOKEN_MAX_DAYS: "7" })().config.iam).toMatchObject({ token_default_days: 7, token_max_days: 7 });
  expect(load({})().config.iam).toMatchObject({ token_default_days: 30, token_max_days: 365 });
});
