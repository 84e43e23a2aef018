/** The [intel] config section: the shield's data, its defaults, and whether it enforces. */
import { Type, type Static } from "@sinclair/typebox";
import { ConfigError } from "../../src/config/error.ts";
import { section } from "../../src/config/schema.ts";

const Path = Type.String({ maxLength: 4096, description: "Path to an .mmdb file (a relative one is inside the data directory); empty: none" });
/** A threshold: at least 1 (at 0 every client, having done nothing, would be acted on). */
const Threshold = (d: number, description: string) => Type.Integer({ default: d, minimum: 1, maximum: 100, description });

export const IntelSettings = section("IP intelligence and the shield: geo databases, scoring thresholds, enforcement.", {
  enabled: Type.Boolean({ default: true, description: "Score client addresses and enforce decisions in the HTTP guard and the DNS server." }),
  shadow: Type.Boolean({ default: false, description: "Shadow mode: make, record and audit decisions, but enforce none (manual deny entries are still enforced)." }),
  trust_loopback: Type.Boolean({ default: true, description: "Always allow loopback clients (the operator's own tools), and exempt them from DNS rate limiting." }),
  geo_city: Type.String({ ...Path, default: "" }),
  geo_asn: Type.String({ ...Path, default: "" }),
  geo_anonymous: Type.String({ ...Path, default: "" }),
  geo_poll_seconds: Type.Integer({ default: 5, minimum: 0, maximum: 3600, description: "How often the geo files are checked for a change (then reloaded without dropping lookups); 0: read once, at start." }),
  threshold_throttle: Threshold(40, "Score from which an address is throttled (1–100; at most threshold_refuse)."),
  threshold_refuse: Threshold(70, "Score from which an address is refused (HTTP 403, DNS REFUSED); at most threshold_drop."),
  threshold_drop: Threshold(90, "Score from which an address is dropped (DNS: no answer; HTTP: 403)."),
  decision_minutes: Type.Integer({ default: 15, minimum: 1, maximum: 10_080, description: "How long a decision made from the score lasts." }),
}, checkThresholds);
export type IntelSettings = Static<typeof IntelSettings>;

/**
 * What the schema cannot say: the thresholds do not decrease (a refuse threshold below the
 * throttle one would refuse what was meant to be slowed down). Checked by the config loader
 * with the rest of the section, so every command refuses such a config before doing anything
 * (also with enabled = false: turning the shield on must not be what reveals it).
 */
export function checkThresholds(s: Record<"threshold_throttle" | "threshold_refuse" | "threshold_drop", number>): void {
  if (s.threshold_refuse < s.threshold_throttle) throw new ConfigError(`intel.threshold_refuse: must be at least intel.threshold_throttle (${s.threshold_throttle}), is ${s.threshold_refuse}`);
  if (s.threshold_drop < s.threshold_refuse) throw new ConfigError(`intel.threshold_drop: must be at least intel.threshold_refuse (${s.threshold_refuse}), is ${s.threshold_drop}`);
}
