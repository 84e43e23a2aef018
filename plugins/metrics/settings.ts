/** The [metrics] config section: who may scrape GET /metrics without a token. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const MetricsSettings = section("Prometheus metrics at GET /metrics.", {
  allow_loopback: Type.Boolean({
    default: true,
    description:
      "Let loopback clients (a Prometheus or agent on this host) scrape without a token; others need an operator's token with the scope metrics:read. Behind a local reverse proxy, list it in http.trusted_proxies or set this to false.",
  }),
});
export type MetricsSettings = Static<typeof MetricsSettings>;
