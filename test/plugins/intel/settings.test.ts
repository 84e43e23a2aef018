/**
 * The [intel] thresholds: at least 1 (at 0 every client would be acted on), and not decreasing
 * (throttle ≤ refuse ≤ drop) — a config error naming the keys, from the loader, before any
 * command does anything.
 */
import { expect, test } from "bun:test";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";
import { checkThresholds } from "../../../plugins/intel/settings.ts";
import { testCitadel } from "../../helpers/citadel.ts";

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

test("the config loader refuses them, against the defaults too, and with the shield off", () => {
  expect(load({ CITADEL_INTEL_THRESHOLD_REFUSE: "10", CITADEL_INTEL_THRESHOLD_THROTTLE: "50" })).toThrow(new ConfigError("intel.threshold_refuse: must be at least intel.threshold_throttle (50), is 10"));
  expect(load({ CITADEL_INTEL_THRESHOLD_DROP: "60" })).toThrow(new ConfigError("intel.threshold_drop: must be at least intel.threshold_refuse (70), is 60"));
  expect(load({ CITADEL_INTEL_ENABLED: "false", CITADEL_INTEL_THRESHOLD_DROP: "60" })).toThrow(ConfigError);
  expect(load({ CITADEL_INTEL_THRESHOLD_THROTTLE: "70", CITADEL_INTEL_THRESHOLD_REFUSE: "70", CITADEL_INTEL_THRESHOLD_DROP: "70" })).not.toThrow();
});

test("geo_poll_seconds 0 (read the geo files once, as the docs say) is taken; below 0 is refused (found in review: refused)", () => {
  expect(load({ CITADEL_INTEL_GEO_POLL_SECONDS: "0" })().config.intel).toMatchObject({ geo_poll_seconds: 0 });
  expect(load({ CITADEL_INTEL_GEO_POLL_SECONDS: "-1" })).toThrow("intel.geo_poll_seconds: must be at least 0");
});

test("a relative geo file is opened inside the data directory, as every relative path in the config (found in review: from the server's working directory)", async () => {
  const c = await testCitadel({ config: { intel: { geo_asn: "asn.mmdb" } } });
  const operator = await c.login(c.owner.email, c.owner.password);
  const geo = (await c.send("GET", "/v1/intel/status", operator)).body.geo as Array<{ kind: string; path: string | null }>;
  // The test kernel's data directory is /nonexistent/data: the file is looked for there (and is missing).
  expect(geo.find((g) => g.kind === "asn")!.path).toBe("/nonexistent/data/asn.mmdb");
});
