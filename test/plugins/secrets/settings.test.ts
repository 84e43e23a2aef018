/** [secrets] settings checked when the config is loaded: a typo stops start-up naming the key, not the webhooks. */
import { expect, test } from "bun:test";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

const load = (env: Record<string, string>) => () => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });
const prefixes = (...urls: string[]) => load({ CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: urls.join(",") });

test("webhook_allowed_urls: absolute http(s) URLs without credentials, query or fragment (found in review: any text was taken, and one that does not parse allowed nothing, silently)", () => {
  expect(prefixes("https://hooks.example.org/", "http://127.0.0.1:8080/hooks", "https://[2001:db8::1]/x")).not.toThrow();
  expect(prefixes("hooks.example.org/x")).toThrow(new ConfigError('secrets.webhook_allowed_urls: "hooks.example.org/x" is not an absolute http or https URL, such as "https://hooks.example.org/"'));
  expect(prefixes("https://hooks.example.org/", "ftp://a/")).toThrow('secrets.webhook_allowed_urls: "ftp://a/" is not an absolute http or https URL');
  expect(prefixes("https://u:p@h/")).toThrow(new ConfigError('secrets.webhook_allowed_urls: "https://u:p@h/" has credentials: webhooks carry none (the signature authenticates Citadel)'));
  for (const bad of ["https://h/x?token=1", "https://h/x?", "https://h/x#part"]) {
    expect(prefixes(bad)).toThrow(new ConfigError(`secrets.webhook_allowed_urls: ${JSON.stringify(bad)} has a query or a fragment: a prefix is a scheme, a host, a port and a path`));
  }
});

test("webhook_allowed_urls: a prefix whose path no webhook URL may have (an encoded separator, a dot segment) is refused — it allowed nothing, silently (found in review)", () => {
  for (const bad of ["https://hooks.example.org/team%2Fa/", "https://h/a%5Cb/", "https://h/x%00/", "https://h/a/..;/b/"]) {
    expect(prefixes(bad)).toThrow(`secrets.webhook_allowed_urls: ${JSON.stringify(bad)} has an encoded separator`);
  }
  expect(prefixes("https://hooks.example.org/team-a/")).not.toThrow();
});

test("share_default_ttl_hours above share_max_ttl_hours is a config error naming both keys, against the defaults too (found in review: taken, then every link made without a TTL was refused, 422)", () => {
  expect(load({ CITADEL_SECRETS_SHARE_DEFAULT_TTL_HOURS: "200" })).toThrow(new ConfigError("secrets.share_default_ttl_hours: must be at most secrets.share_max_ttl_hours (168), is 200"));
  expect(load({ CITADEL_SECRETS_SHARE_MAX_TTL_HOURS: "12" })).toThrow(new ConfigError("secrets.share_default_ttl_hours: must be at most secrets.share_max_ttl_hours (12), is 24"));
  expect(load({ CITADEL_SECRETS_SHARE_DEFAULT_TTL_HOURS: "12", CITADEL_SECRETS_SHARE_MAX_TTL_HOURS: "12" })).not.toThrow();
  expect(load({ CITADEL_SECRETS_SHARE_DEFAULT_TTL_HOURS: "200", CITADEL_SECRETS_SHARE_MAX_TTL_HOURS: "720" })).not.toThrow();
});
