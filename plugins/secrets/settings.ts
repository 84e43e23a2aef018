/** The [secrets] config section. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const SecretsSettings = section("Secrets: value size, share links, webhooks.", {
  max_value_bytes: Type.Integer({ default: 65_536, minimum: 1, maximum: 1_048_576, description: "Largest secret value accepted (bytes, UTF-8)." }),
  share_default_ttl_hours: Type.Integer({ default: 24, minimum: 1, maximum: 8760, description: "How long a share link lives when none is asked for." }),
  share_max_ttl_hours: Type.Integer({ default: 168, minimum: 1, maximum: 8760, description: "Longest life a share link may be given." }),
  share_max_views: Type.Integer({ default: 100, minimum: 1, maximum: 10_000, description: "Most views a share link may allow." }),
  webhook_allowed_urls: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'URL prefixes webhooks may be sent to, such as "https://hooks.example.org/". Empty: no webhooks (Citadel makes no outbound connection unless allowed here).',
  }),
  webhooks_per_workspace: Type.Integer({
    default: 20,
    minimum: 1,
    maximum: 1000,
    description: "Most webhooks one workspace may have: every change queues one delivery per webhook, in the change's own transaction (a 5,000-entry import, 5,000 per webhook).",
  }),
  webhook_max_attempts: Type.Integer({ default: 8, minimum: 1, maximum: 50, description: "Deliveries tried this many times (back-off doubling from 5 s, at most 1 h) before giving up." }),
  webhook_timeout_seconds: Type.Integer({ default: 10, minimum: 1, maximum: 120, description: "How long one delivery attempt waits for the receiver." }),
});
export type SecretsSettings = Static<typeof SecretsSettings>;
