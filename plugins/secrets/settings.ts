/** The [secrets] config section. */
import { Type, type Static } from "@sinclair/typebox";
import { ConfigError } from "../../src/config/error.ts";
import { section } from "../../src/config/schema.ts";
import { mayLeaveItsPath } from "../../src/net/url-prefix.ts";

export const SecretsSettings = section("Secrets: value size, share links, webhooks.", {
  max_value_bytes: Type.Integer({ default: 65_536, minimum: 1, maximum: 1_048_576, description: "Largest secret value accepted (bytes, UTF-8)." }),
  share_default_ttl_hours: Type.Integer({ default: 24, minimum: 1, maximum: 8760, description: "How long a share link lives when none is asked for." }),
  share_max_ttl_hours: Type.Integer({ default: 168, minimum: 1, maximum: 8760, description: "Longest life a share link may be given." }),
  share_max_views: Type.Integer({ default: 100, minimum: 1, maximum: 10_000, description: "Most views a share link may allow." }),
  webhook_allowed_urls: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'URL prefixes webhooks may be sent to, such as "https://hooks.example.org/" (http or https; no credentials, query or fragment). Empty: no webhooks (Citadel makes no outbound connection unless allowed here).',
  }),
  webhooks_per_workspace: Type.Integer({
    default: 20,
    minimum: 1,
    maximum: 1000,
    description: "Most webhooks one workspace may have: every change queues one delivery per webhook, in the change's own transaction (a 5,000-entry import, 5,000 per webhook).",
  }),
  webhook_max_attempts: Type.Integer({ default: 8, minimum: 1, maximum: 50, description: "Deliveries tried this many times (back-off doubling from 5 s, at most 1 h) before giving up." }),
  webhook_timeout_seconds: Type.Integer({ default: 10, minimum: 1, maximum: 120, description: "How long one delivery attempt waits for the receiver." }),
}, checkSecretsSettings);
export type SecretsSettings = Static<typeof SecretsSettings>;

/** The section's checks across keys and within lists, run when the config is loaded. */
function checkSecretsSettings(s: { share_default_ttl_hours: number; share_max_ttl_hours: number; webhook_allowed_urls: readonly string[] }): void {
  checkShareTtls(s);
  checkWebhookPrefixes(s);
}

/**
 * A default life longer than the longest allowed would refuse every link made without a TTL
 * (422, naming secrets.share_max_ttl_hours): refused at start-up instead, naming both keys.
 */
export function checkShareTtls(s: Record<"share_default_ttl_hours" | "share_max_ttl_hours", number>): void {
  if (s.share_default_ttl_hours > s.share_max_ttl_hours) {
    throw new ConfigError(`secrets.share_default_ttl_hours: must be at most secrets.share_max_ttl_hours (${s.share_max_ttl_hours}), is ${s.share_default_ttl_hours}`);
  }
}

/**
 * Each allowed prefix, checked when the config is loaded: a typo stops start-up naming the key
 * (exit 2). Unchecked, a prefix that does not parse allowed nothing, and said nothing.
 */
export function checkWebhookPrefixes(s: { webhook_allowed_urls: readonly string[] }): void {
  for (const text of s.webhook_allowed_urls) {
    const problem = prefixProblem(text);
    if (problem) throw new ConfigError(`secrets.webhook_allowed_urls: ${JSON.stringify(text)} ${problem}`);
  }
}

function prefixProblem(text: string): string | null {
  const url = URL.parse(text);
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) return 'is not an absolute http or https URL, such as "https://hooks.example.org/"';
  if (url.username || url.password) return "has credentials: webhooks carry none (the signature authenticates Citadel)";
  // The raw text too: the parser drops an empty query ("...?") from url.search.
  if (url.search || url.hash || /[?#]/.test(text)) return "has a query or a fragment: a prefix is a scheme, a host, a port and a path";
  // Every URL under it would be refused by the sender: the prefix would allow nothing.
  if (mayLeaveItsPath(url.pathname)) return "has an encoded separator (%2F, %5C, %2E, %25, %00) or a dot segment in its path, which no webhook URL may have: it would allow nothing";
  return null;
}
