/** The [intel] config section: the shield's data, its defaults, and whether it enforces. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

const Path = Type.String({ maxLength: 4096, description: "Path to an .mmdb file; empty: none" });
const Points = (d: number, description: string) => Type.Integer({ default: d, minimum: 0, maximum: 100, description });

export const IntelSettings = section("IP intelligence and the shield: geo databases, scoring thresholds, enforcement.", {
  enabled: Type.Boolean({ default: true, description: "Score client addresses and enforce decisions in the HTTP guard and the DNS server." }),
  shadow: Type.Boolean({ default: false, description: "Shadow mode: make, record and audit decisions, but enforce none." }),
  trust_loopback: Type.Boolean({ default: true, description: "Always allow loopback clients (the operator's own tools), and exempt them from DNS rate limiting." }),
  geo_city: Type.String({ ...Path, default: "" }),
  geo_asn: Type.String({ ...Path, default: "" }),
  geo_anonymous: Type.String({ ...Path, default: "" }),
  geo_poll_seconds: Type.Integer({ default: 5, minimum: 1, maximum: 3600, description: "How often the geo files are checked for a change (then reloaded without dropping lookups)." }),
  threshold_throttle: Points(40, "Score from which an address is throttled."),
  threshold_refuse: Points(70, "Score from which an address is refused (HTTP 403, DNS REFUSED)."),
  threshold_drop: Points(90, "Score from which an address is dropped (DNS: no answer; HTTP: 403)."),
  decision_minutes: Type.Integer({ default: 15, minimum: 1, maximum: 10_080, description: "How long a decision made from the score lasts." }),
});
export type IntelSettings = Static<typeof IntelSettings>;
