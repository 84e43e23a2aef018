/**
 * The `metrics` plugin: GET /metrics in the Prometheus text format (the fixed path scrapers
 * expect, so a root route rather than /v1/metrics). The registry itself is the kernel's
 * (`k.metrics`): the HTTP edge, the guard and the DNS server record into it; this plugin adds
 * what is read at scrape time (service.ts) and serves it all. See docs/metrics.md.
 */
import { Elysia } from "elysia";
import { access } from "../../src/http/access.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../../src/metrics.ts";
import { definePlugin } from "../../src/plugin.ts";
import { registerApplianceMetrics } from "./service.ts";
import { MetricsSettings } from "./settings.ts";

const METRICS_RESPONSE = { description: "The metrics, in the Prometheus text exposition format 0.0.4", content: { "text/plain": { schema: { type: "string" as const } } } };

export const metricsPlugin = definePlugin<MetricsSettings>({
  name: "metrics",
  settings: MetricsSettings,
  scopes: ["metrics:read"],
  actions: [],
  migrations: [],

  async start(k) {
    const remove = registerApplianceMetrics(k);
    return async () => remove();
  },

  rootRoutes: (k) => {
    // Appliance-wide figures (every organization's traffic): operators only, like the DNS
    // analytics. A Prometheus on this host needs no token unless allow_loopback is off.
    const rule = { operator: true, scope: "metrics:read" } as const;
    return new Elysia({ name: "metrics" }).get("/metrics", () => new Response(k.metrics.render(), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } }), {
      detail: {
        summary: "Prometheus metrics: HTTP and DNS traffic, shield verdicts, seal state, key ages, audit checkpoints, backups (loopback, or operators with metrics:read)",
        tags: ["metrics"],
        responses: { 200: METRICS_RESPONSE },
        ...access(k.settings.allow_loopback ? { ...rule, loopbackPublic: true } : rule),
      },
    });
  },
});
