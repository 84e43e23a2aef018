/** The [dns] config section. The listener (server.ts) reads the addresses; the API reads default_ttl. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

const Address = Type.String({ minLength: 1, maxLength: 64, description: 'host:port, such as "127.0.0.1:5353" or "[::1]:53"' });

export const DnsSettings = section("Authoritative DNS: where it listens, and the default TTL of new zones and records.", {
  udp: Type.Array(Address, { default: ["127.0.0.1:5353"], maxItems: 16, description: "Addresses (host:port) to answer DNS over UDP on. Empty: no UDP listener." }),
  tcp: Type.Array(Address, { default: ["127.0.0.1:5353"], maxItems: 16, description: "Addresses (host:port) to answer DNS over TCP on. Empty: no TCP listener." }),
  default_ttl: Type.Integer({ default: 3600, minimum: 0, maximum: 2_147_483_647, description: "TTL (seconds) of a new zone when none is given; records without a TTL take their zone's." }),
  query_log_sample: Type.Integer({ default: 0, minimum: 0, maximum: 1_000_000, description: "Query log: write one query in N to dns-queries.log in the data directory (1: every query). 0: no query log." }),
  query_log_max_mb: Type.Integer({ default: 64, minimum: 1, maximum: 65_536, description: "Query log: MiB on disk at most, the current file and the one rotated file together." }),
  query_log_client: Type.Union([Type.Literal("prefix"), Type.Literal("full"), Type.Literal("none")], { default: "prefix", description: "Query log: the client as its /24 or /56 prefix (personal data kept small), its full address, or not at all." }),
  rrl_responses_per_second: Type.Integer({ default: 100, minimum: 0, maximum: 1_000_000, description: "Response rate limiting over UDP: responses per second per client prefix (/24, /56). 0: off." }),
  rrl_throttled_per_second: Type.Integer({ default: 10, minimum: 0, maximum: 1_000_000, description: "The same for a client the shield throttles." }),
  rrl_slip: Type.Integer({ default: 2, minimum: 0, maximum: 10, description: "Every Nth rate-limited query gets an empty reply with TC (the client retries over TCP); the others none. 0: never." }),
  analytics_retention_minutes: Type.Integer({ default: 1440, minimum: 1, maximum: 10_080, description: "Minutes of per-minute query counts kept in memory for GET /v1/dns/analytics." }),
});
export type DnsSettings = Static<typeof DnsSettings>;
