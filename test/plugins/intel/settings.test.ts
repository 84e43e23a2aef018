/**
 * The [intel] thresholds: at least 1 (at 0 every client would be acted on), and not decreasing
 * (throttle ≤ refuse ≤ drop) — a config error at start naming the keys.
 */
import { expect, test } from "bun:test";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";
import { intelPlugin } from "../../../plugins/intel/index.ts";
import { checkThresholds, type IntelSettings } from "../../../plugins/intel/settings.ts";

const load = (env: Record<string, string>) => () => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });

test("a threshold of 0 is refused by the schema", () => {
  expect(load({ CITADEL_INTEL_THRESHOLD_THROTTLE: "0" })).toThrow("intel.threshold_throttle: must be at least 1");
  expect(load({ CITADEL_INTEL_THRESHOLD_THROTTLE: "1" })).not.toThrow();
});

test("thresholds that decrease are a config error naming both keys; equal ones are fine", () => {
  expect(() => checkThresholds({ threshold_throttle: 40, threshold_refuse: 30, threshold_drop: 90 })).toThrow("intel.threshold_refuse: must be at least intel.threshold_throttle (40), is 30");
  expect(() => checkThresholds({ threshold_throttle: 40, threshold_refuse: 70, threshold_drop: 60 })).toThrow("intel.threshold_drop: must be at least intel.threshold_refuse (70), is 60");
  expect(() => checkThresholds({ threshold_throttle: 50, threshold_refuse: 50, threshold_drop: 50 })).not.toThrow();
});

test("the plugin refuses to start with them", async () => {
  const settings = { ...(loadConfig({ schema: configSchema, env: {}, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.intel as IntelSettings), threshold_drop: 10 };
  // (The check comes first: nothing else of the kernel is touched.)
  await expect(intelPlugin.start!({ settings } as never)).rejects.toBeInstanceOf(ConfigError);
});
