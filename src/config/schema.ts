/**
 * The one schema of the configuration: TypeBox gives the validator, the defaults, the
 * documentation (config/citadel.example.toml is rendered from it) and the TypeScript type.
 * Plugins add their own section under their name; see `buildConfigSchema`.
 */
import { FormatRegistry, Type, type Static, type TObject, type TProperties, type TSchema } from "@sinclair/typebox";
import { LOG_LEVELS } from "../log.ts";
import { isLoopback, isLoopbackHost, parseCidr, parseIp } from "../net/ip.ts";
import { SYSLOG_FACILITIES } from "../audit/syslog.ts";
import { ConfigError } from "./error.ts";

FormatRegistry.Set("ip", (value) => parseIp(value) !== null);
FormatRegistry.Set("cidr", (value) => parseCidr(value) !== null);

/** Where the generated TLS files live inside the data directory by default. */
export const DEFAULT_TLS_CERT_FILE = "tls/cert.pem";
export const DEFAULT_TLS_KEY_FILE = "tls/key.pem";

/**
 * A rule across a section's keys that the schema cannot say (one value at least another):
 * throws a ConfigError naming the key. The loader runs it right after the schema's validation,
 * so it sees valid values, and every command refuses the config before doing anything.
 */
export type SectionCheck<P extends TProperties> = (settings: Static<TObject<P>>) => void;

/** Where a section keeps its check: a symbol, so it is no JSON Schema keyword and never rendered. */
const SECTION_CHECK = Symbol("citadel.config.sectionCheck");

/** A section: closed to unknown keys (a typo is an error, not a silently ignored line). */
export function section<P extends TProperties>(description: string, properties: P, check?: SectionCheck<P>): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, default: {}, description, [SECTION_CHECK]: check });
}

/** The cross-key check a section declared, if any. */
export function sectionCheckOf(schema: TSchema): ((settings: unknown) => void) | undefined {
  return (schema as TSchema & { [SECTION_CHECK]?: (settings: unknown) => void })[SECTION_CHECK];
}

export const HttpTlsConfig = section("TLS for the HTTP API.", {
  enabled: Type.Boolean({
    default: true,
    description:
      "Serve HTTPS. Plain HTTP is allowed only when http.address is a loopback address (for a local reverse proxy).",
  }),
  cert_file: Type.String({
    default: DEFAULT_TLS_CERT_FILE,
    minLength: 1,
    description:
      "PEM certificate chain; relative paths are inside data_dir. At the default path a self-signed certificate for localhost is generated on first start. Read again, with key_file, on SIGHUP (systemctl reload citadel).",
  }),
  key_file: Type.String({
    default: DEFAULT_TLS_KEY_FILE,
    minLength: 1,
    description: "PEM private key for cert_file; refused when readable by everyone.",
  }),
});

export const HttpConfig = section("The HTTP API listener.", {
  address: Type.String({
    default: "127.0.0.1",
    format: "ip",
    description: "IP address to listen on (IPv4 or IPv6). Use 0.0.0.0 or :: to listen on every interface.",
  }),
  port: Type.Integer({ default: 8443, minimum: 0, maximum: 65535, description: "TCP port (0 picks a free one)." }),
  body_limit_bytes: Type.Integer({
    default: 1_048_576,
    minimum: 1024,
    maximum: 67_108_864,
    description: "Largest accepted request body; larger ones get 413.",
  }),
  idle_timeout_seconds: Type.Integer({
    default: 30,
    minimum: 1,
    maximum: 255,
    description: "Close a connection that sends nothing for this long.",
  }),
  trusted_proxies: Type.Array(Type.String({ format: "cidr" }), {
    default: [],
    description:
      "CIDRs of reverse proxies whose X-Forwarded-For header is believed. Empty: the client address is always the socket peer.",
  }),
  public_url: Type.String({
    default: "",
    maxLength: 2000,
    description:
      "The URL people reach this API at, when it is not the one they ask for: a reverse proxy that serves it under a path (https://host/citadel) or under another name. The device login's verification address is made from it. Empty: the scheme, host and port of each request.",
  }),
  tls: HttpTlsConfig,
}, (http) => {
  checkPlainHttpOnLoopback(http);
  checkPublicUrl(http.public_url);
});

/** Plain HTTP would send passwords and tokens in the clear: only to a reverse proxy on this host. */
function checkPlainHttpOnLoopback(http: { address: string; tls: { enabled: boolean } }): void {
  const address = parseIp(http.address);
  if (!http.tls.enabled && address && !isLoopback(address)) {
    throw new ConfigError(`http.tls.enabled: plain HTTP is only allowed on a loopback address, and http.address is ${http.address}`);
  }
}

/**
 * People type their password on the page at this URL: https, or http to a loopback host; a base
 * for paths, so no user name, query or fragment (what would "?x" + "/oauth/device" mean?).
 */
function checkPublicUrl(publicUrl: string): void {
  if (publicUrl === "") return;
  const problem = publicUrlProblem(publicUrl);
  if (problem) throw new ConfigError(`http.public_url: ${problem}, and it is ${JSON.stringify(publicUrl)}`);
}

function publicUrlProblem(publicUrl: string): string | null {
  // What the URL parser would quietly drop or repair (spaces, tabs, "https:host") is refused:
  // the address people are shown must be the one that was checked.
  if (/[\s\p{Cc}]/u.test(publicUrl) || !/^[a-z][a-z0-9+.-]*:\/\//i.test(publicUrl)) return "must be an absolute URL such as https://citadel.example.eu/citadel";
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    return "must be an absolute URL such as https://citadel.example.eu/citadel";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must be an https URL";
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) return "must be an https URL (http only to a loopback host: people type their password there)";
  if (url.username || url.password) return "must not carry a user name or password";
  if (url.search || url.hash || publicUrl.includes("?") || publicUrl.includes("#")) return "must not have a query or a fragment";
  return null;
}

export const LogConfig = section("Logging (JSON lines on standard output).", {
  level: Type.Union(
    LOG_LEVELS.map((l) => Type.Literal(l)),
    { default: "info", description: `Least severe level written: ${LOG_LEVELS.join(", ")}.` },
  ),
});

export const SealConfig = section("How the root key is obtained to unseal. See docs/keys.md.", {
  method: Type.Union([Type.Literal("key_file"), Type.Literal("systemd_credential"), Type.Literal("shamir")], {
    default: "key_file",
    description:
      "key_file: read seal.key_file at start (the embedded default); systemd_credential: read $CREDENTIALS_DIRECTORY/<seal.credential> at start; shamir: start sealed and wait for `citadel unseal` with enough key shares.",
  }),
  key_file: Type.String({
    default: "root.key",
    minLength: 1,
    description: "The root key file for method key_file (64 hex digits, mode 0600); relative paths are inside data_dir.",
  }),
  credential: Type.String({
    default: "citadel-root-key",
    pattern: "^[A-Za-z0-9_.-]+$",
    description: "The credential name for method systemd_credential (LoadCredentialEncrypted=<name>:<path> in the unit).",
  }),
});

export const KeysConfig = section("Key rotation.", {
  rotation_days: Type.Integer({
    default: 90,
    minimum: 0,
    maximum: 3650,
    description: "Rotate the key-encryption key automatically when the active one is older than this many days (0: only by `citadel keys rotate`).",
  }),
});

const bucket = (description: string, perSecond: number, burst: number) =>
  section(description, {
    per_second: Type.Number({ default: perSecond, exclusiveMinimum: 0, maximum: 1_000_000, description: "Sustained requests per second." }),
    burst: Type.Integer({ default: burst, minimum: 1, maximum: 1_000_000, description: "Requests allowed at once before the sustained rate applies." }),
  });

export const RateLimitConfig = section("Token-bucket rate limits (429 with Retry-After and RateLimit headers).", {
  per_address: bucket("Every request, per client address.", 100, 200),
  per_organization: bucket("Authenticated requests, per organization.", 200, 400),
  auth: bucket("Login, token and device-code endpoints, per client address.", 1, 10),
});

export const AuditForwardSyslogConfig = section("The collector for audit.forward.to = \"syslog\" (RFC 5424 messages over TCP, octet-counted; TLS as RFC 5425). See docs/audit.md.", {
  address: Type.String({
    default: "",
    maxLength: 253,
    pattern: "^[A-Za-z0-9.:_-]*$",
    patternHint: "a host name or an IP address, without brackets or a port",
    description:
      "Host name or IP address of the collector, without a port (that is port; required for to = \"syslog\"). An IPv6 address goes without brackets and cannot carry a port: 2001:db8::1:6514 is read as an address.",
  }),
  port: Type.Integer({ default: 6514, minimum: 1, maximum: 65535, description: "TCP port of the collector: 6514 is syslog over TLS; plain TCP is usually 514." }),
  tls: Type.Boolean({
    default: true,
    description: "Speak TLS (RFC 5425). Plain TCP is allowed only to a loopback address (a collector on this host) unless insecure = true.",
  }),
  insecure: Type.Boolean({
    default: false,
    description: "Allow tls = false to an address that is not loopback: every event, personal data included if forwarded, crosses the network in the clear.",
  }),
  ca_file: Type.String({
    default: "",
    description: "PEM CA certificate(s) the collector's certificate must chain to, instead of the system's; its name must match address. Empty: the system's roots.",
  }),
  fingerprint: Type.String({
    default: "",
    description:
      "SHA-256 fingerprint of the collector's certificate (hex, colons or not, as `citadel login --fingerprint` takes it): that certificate alone is accepted, whatever its issuer or names (a self-signed one). Not with ca_file.",
  }),
  cert_file: Type.String({ default: "", description: "PEM client certificate, for a collector that asks for one (with key_file)." }),
  key_file: Type.String({ default: "", description: "PEM private key of cert_file; refused when readable by everyone." }),
  facility: Type.Union(
    Object.keys(SYSLOG_FACILITIES).map((f) => Type.Literal(f)),
    { default: "authpriv", description: `The syslog facility of every message: ${Object.keys(SYSLOG_FACILITIES).join(", ")}.` },
  ),
  app_name: Type.String({
    default: "citadel",
    minLength: 1,
    maxLength: 48,
    pattern: "^[!-~]*$",
    patternHint: "printable ASCII without spaces",
    description: "APP-NAME of every message (RFC 5424: up to 48 printable ASCII characters).",
  }),
});

export const AuditForwardConfig = section("Forwarding every audit event, as it is committed, to where a log shipper or SIEM reads it.", {
  to: Type.Union([Type.Literal("off"), Type.Literal("journal"), Type.Literal("file"), Type.Literal("syslog")], {
    default: "off",
    description:
      'off; journal: one JSON line per event on standard output ("msg":"audit event"), which systemd puts in the journal; file: JSON lines appended to audit.forward.file; syslog: to the collector of [audit.forward.syslog].',
  }),
  file: Type.String({
    default: "audit.jsonl",
    minLength: 1,
    description: "The file for to = \"file\" (JSON lines, mode 0600 when made; relative paths are inside data_dir). Rotating it by renaming is fine: the next event makes a new one.",
  }),
  personal_data: Type.Boolean({
    default: false,
    description:
      "Forward the personal data of events too (source address, user agent), decrypted. Off by default: a copy outside Citadel is beyond `citadel audit erase` (GDPR).",
  }),
  syslog: AuditForwardSyslogConfig,
}, (forward) => {
  if (forward.to === "syslog") checkSyslogCollector(forward.syslog);
});

/**
 * The collector's settings that only make sense together. Plain TCP would carry the audit log
 * (personal data too, if asked for) in the clear: only to this host, as the CLI sends no token
 * over http:// to another — unless the operator says `insecure`.
 */
function checkSyslogCollector(syslog: Static<typeof AuditForwardSyslogConfig>): void {
  const key = (name: string) => `audit.forward.syslog.${name}`;
  if (syslog.address === "") throw new ConfigError(`${key("address")}: required when audit.forward.to is "syslog"`);
  // A colon belongs to an IPv6 address only: "siem.example:6514" would fail only when connecting,
  // and "127.0.0.1:514" with tls = false would be refused as not loopback.
  if (syslog.address.includes(":") && parseIp(syslog.address) === null) {
    throw new ConfigError(`${key("address")}: a host name or address, without a port (use ${key("port")}), and it is ${syslog.address}`);
  }
  if (!syslog.tls && !syslog.insecure && !isLoopbackHost(syslog.address)) {
    throw new ConfigError(`${key("tls")}: plain TCP is only allowed to a loopback address, and ${key("address")} is ${syslog.address} (set ${key("insecure")} = true to send the audit log in the clear)`);
  }
  if (!syslog.tls) {
    const tlsOnly = (["ca_file", "fingerprint", "cert_file", "key_file"] as const).find((name) => syslog[name] !== "");
    if (tlsOnly) throw new ConfigError(`${key(tlsOnly)}: set, but ${key("tls")} is false`);
  }
  if (syslog.ca_file !== "" && syslog.fingerprint !== "") throw new ConfigError(`${key("fingerprint")}: set with ${key("ca_file")}; set one (a pinned certificate is accepted whatever its issuer)`);
  if (syslog.fingerprint !== "" && !/^[0-9A-F]{64}$/i.test(syslog.fingerprint.replaceAll(":", ""))) {
    throw new ConfigError(`${key("fingerprint")}: must be a SHA-256 fingerprint, 64 hex digits (colons allowed), such as openssl x509 -noout -fingerprint -sha256 prints`);
  }
  if ((syslog.cert_file === "") !== (syslog.key_file === "")) throw new ConfigError(`${key(syslog.cert_file === "" ? "key_file" : "cert_file")}: set without ${key(syslog.cert_file === "" ? "cert_file" : "key_file")}; a client certificate needs both`);
}

export const AuditConfig = section("The audit log.", {
  checkpoint_every: Type.Integer({
    default: 1000,
    minimum: 1,
    maximum: 1_000_000,
    description: "Sign a checkpoint of the audit chain after this many new events...",
  }),
  checkpoint_interval_seconds: Type.Integer({
    default: 300,
    minimum: 1,
    maximum: 86_400,
    description: "...or after this many seconds, whichever comes first (only when there are new events).",
  }),
  forward: AuditForwardConfig,
});

const kernelProperties = {
  data_dir: Type.String({
    default: ".citadel",
    minLength: 1,
    env: "CITADEL_DATA",
    description:
      "Directory for the database, keys and generated files (mode 0700). Relative to the working directory. Also --data or CITADEL_DATA.",
  }),
  http: HttpConfig,
  log: LogConfig,
  seal: SealConfig,
  keys: KeysConfig,
  audit: AuditConfig,
  rate_limit: RateLimitConfig,
};

export const KernelConfig = Type.Object(kernelProperties, { additionalProperties: false });
export type KernelConfig = Static<typeof KernelConfig>;

/** The whole configuration: the kernel's sections plus one section per plugin (under its name). */
export type Config = KernelConfig & Record<string, unknown>;

export interface PluginSettingsSchema {
  name: string;
  settings?: TObject;
}

/** Composes the kernel schema with each plugin's section; a plugin cannot shadow a kernel key. */
export function buildConfigSchema(plugins: readonly PluginSettingsSchema[]): TObject {
  const properties: TProperties = { ...kernelProperties };
  for (const plugin of plugins) {
    if (!plugin.settings) continue;
    if (plugin.name in properties) throw new Error(`plugin ${plugin.name}: config section clashes with an existing key`);
    properties[plugin.name] = { ...plugin.settings, default: {} };
  }
  return Type.Object(properties, { additionalProperties: false });
}
