/**
 * `citadel sovereignty report`: what this Citadel is made of, whom it talks to, where its data
 * lives and how it is protected — for the operator who must answer those questions to an
 * auditor or a regulator. Built from the SBOM, the configuration, the database (read-only)
 * and the files on disk; key ages come from the running server when it answers an operator.
 */
import type { Database } from "bun:sqlite";
import { X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { dataPath } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { publicKeyPin } from "../../src/crypto/public-key-pin.ts";
import { EMBEDDED_COUNTRY_DB } from "../../src/intel/geo-embedded.ts";
import { acceptedListUrl, redactedUrl } from "../../src/intel/lists.ts";
import { underPrefix } from "../../src/net/url-prefix.ts";
import { numberAt, sectionOf, stringAt, stringsAt } from "./config.ts";
import { backupDir, describeCertificateKey, keyAges } from "./doctor.ts";
import type { KeyAges } from "./key-ages.ts";
import type { ServerView } from "./local-server.ts";
import { keptRootKeyFiles, pathInfo, type PathInfo } from "./on-disk.ts";
import { licenceOf, type CycloneDxBom } from "./sbom.ts";
import { DATABASE_FILE, describeDatabaseProblem, listSources, secondaries, signingKeys, webhooks, type DatabaseProblem } from "./store.ts";

/** Where `citadel mesh join` keeps a node's state unless told otherwise (--state). */
export const MESH_STATE_DIR = "/var/lib/citadel-mesh";

export interface Dependency {
  name: string;
  version: string;
  licence: string;
  purl: string | null;
}

export interface Destination {
  kind: "secrets_webhook" | "dns_resolver_upstream" | "reputation_list" | "dns_notify" | "mesh_control_plane" | "audit_syslog" | "system_resolver";
  destination: string;
  /** False when configured but never contacted (a resolver upstream with no resolver listening). */
  active: boolean;
  detail: string;
}

export interface DataLocation {
  what: string;
  path: string | null;
  kind: PathInfo["kind"] | "none";
  bytes: number;
  mode: number | null;
  note: string | null;
}

export interface Algorithm {
  use: string;
  algorithm: string;
}

export interface SovereigntyReport {
  dependencies: {
    sbom: string;
    /** Compiled into the binary, the runtime first. */
    in_binary: Dependency[];
    /** Installed to build, type-check or test it; not in the binary. */
    build_only: Dependency[];
    licences: Record<string, number>;
  };
  outbound: {
    /** True when nothing is configured to leave this host: never while something is unknown. */
    none: boolean;
    /** What could not be read, so destinations may be missing from the list (empty: the list is whole). */
    unknown: string[];
    destinations: Destination[];
    /** secrets.webhook_allowed_urls: where webhooks may point, each as its origin and "/…" for a path (null: unknown). */
    webhook_allowed_prefixes: string[] | null;
  };
  data: DataLocation[];
  algorithms: Algorithm[];
  keys: {
    ages: KeyAges | null;
    note: string | null;
    signing_keys: Array<{ purpose: string; id: string; created_at: string; age_days: number }>;
    tls_certificate: { key: string; not_before: string; not_after: string; fingerprint_sha256: string; public_key_pin: string } | null;
  };
}

export interface SovereigntyInputs {
  config: Config;
  configPath: string;
  sbom: CycloneDxBom;
  server: ServerView;
  db: Database | null;
  /** Why db is null although the file is there (null: there is none, never initialized). */
  databaseProblem: DatabaseProblem | null;
  now: number;
  /** The mesh node state directory to look in. */
  meshStateDir: string;
  /** The CLI's stored login, when there is one on this machine. */
  loginFile: string | null;
  /** Where the system resolver's name servers are listed (default /etc/resolv.conf). */
  resolvConf?: string;
}

/** Assembles the four parts of the report; nothing here connects anywhere but the local server. */
export function sovereigntyReport(inputs: SovereigntyInputs): SovereigntyReport {
  const destinations = outboundDestinations(inputs);
  const unknown = unknownOutbound(inputs);
  const allowed = stringsAt(sectionOf(inputs.config, "secrets"), "webhook_allowed_urls")?.map(redactedPrefix) ?? null;
  const { ages, note } = keyAges(inputs);
  return {
    dependencies: dependencies(inputs.sbom),
    outbound: { none: unknown.length === 0 && !destinations.some((d) => d.active), unknown, destinations, webhook_allowed_prefixes: allowed },
    data: dataLocations(inputs),
    algorithms: algorithms(inputs.config),
    keys: {
      ages,
      note,
      signing_keys: (inputs.db ? signingKeys(inputs.db) : []).map((k) => ({ purpose: k.purpose, id: k.id, created_at: new Date(k.created_at).toISOString(), age_days: Math.floor(((inputs.now - k.created_at) / 86_400_000) * 10) / 10 })),
      tls_certificate: certificate(inputs.config),
    },
  };
}

function dependencies(sbom: CycloneDxBom): SovereigntyReport["dependencies"] {
  const made = sbom.metadata.properties.find((p) => p.name === "citadel:sbom-made")?.value ?? "unknown";
  const as = (c: CycloneDxBom["components"][number]): Dependency => ({ name: c.group ? `${c.group}/${c.name}` : c.name, version: c.version, licence: licenceOf(c), purl: c.purl ?? null });
  const inBinary = sbom.components.filter((c) => c.scope !== "excluded").map(as);
  const licences: Record<string, number> = {};
  for (const d of inBinary) licences[d.licence] = (licences[d.licence] ?? 0) + 1;
  return { sbom: `CycloneDX ${sbom.specVersion}, made ${made} (${sbom.metadata.timestamp})`, in_binary: inBinary, build_only: sbom.components.filter((c) => c.scope === "excluded").map(as), licences };
}

/**
 * Whether the allowed prefixes let a webhook in, as far as the file tells without keys: a URL an
 * earlier version stored whole is judged whole; one stored encrypted shows its origin only, which
 * settles it when no prefix has that origin (refused) or one allows the whole origin (let in),
 * and leaves it unknown (null) when only prefixes with a path have it.
 */
function webhookPermitted(hook: { url: string; whole: boolean }, allowed: readonly string[]): boolean | null {
  if (hook.whole) return allowed.some((prefix) => underPrefix(hook.url, prefix));
  const origin = URL.parse(hook.url)?.origin;
  const sameOrigin = allowed.filter((prefix) => URL.parse(prefix)?.origin === origin);
  if (sameOrigin.length === 0) return false;
  return sameOrigin.some((prefix) => URL.parse(prefix)!.pathname === "/") ? true : null;
}

function outboundDestinations({ config, db, meshStateDir, resolvConf = RESOLV_CONF }: SovereigntyInputs): Destination[] {
  const out: Destination[] = [];
  const secrets = sectionOf(config, "secrets");
  const allowed = stringsAt(secrets, "webhook_allowed_urls");
  for (const hook of db ? webhooks(db) : []) {
    const permitted = allowed === undefined ? null : webhookPermitted(hook, allowed);
    out.push({
      kind: "secrets_webhook",
      destination: originOf(hook.url), // a hook's path may hold its secret (Slack's do): the host is where data goes
      active: permitted !== false,
      detail: `webhook ${hook.id} of workspace ${hook.workspace_id}: ${transportOf(hook.url, "POST")} of change events (names and versions, never values), signed HMAC-SHA256${permitted === false ? "; not under secrets.webhook_allowed_urls, so deliveries are refused" : permitted === null && allowed !== undefined ? "; its path is stored encrypted, so whether secrets.webhook_allowed_urls lets it in is checked by the server at each delivery (a refused one is logged at start)" : ""}`,
    });
  }
  const dns = sectionOf(config, "dns");
  const resolverOn = (stringsAt(dns, "resolver_udp") ?? []).length + (stringsAt(dns, "resolver_tcp") ?? []).length > 0;
  for (const upstream of stringsAt(dns, "resolver_upstreams") ?? []) {
    out.push({ kind: "dns_resolver_upstream", destination: upstream, active: resolverOn, detail: resolverOn ? "the filtering resolver forwards the names it does not host or block here (DNS over UDP/TCP, unencrypted)" : "configured, but unused: the resolver has no listener (dns.resolver_udp/resolver_tcp)" });
  }
  for (const list of db ? listSources(db) : []) {
    // One stored when loopback http was taken (for tests) is no longer fetched.
    const fetched = acceptedListUrl(URL.parse(list.url));
    out.push({
      kind: "reputation_list",
      destination: redactedUrl(list.url),
      active: fetched,
      detail: `reputation list ${list.name}, fetched${list.refresh_minutes ? ` every ${list.refresh_minutes} minutes` : " when imported"} (${transportOf(list.url, "GET")})${fetched ? "" : "; not https://, so its refreshes are refused"}`,
    });
  }
  for (const s of db ? secondaries(db) : []) {
    out.push({ kind: "dns_notify", destination: `${s.address.includes(":") ? `[${s.address}]` : s.address}:${s.notify_port}`, active: true, detail: `DNS secondary ${s.name}: NOTIFY after each zone change (UDP, TSIG-signed); it transfers zones in from there` });
  }
  const node = meshNode(meshStateDir);
  if (node) out.push({ kind: "mesh_control_plane", destination: node.server, active: true, detail: node.detail });
  const syslog = syslogCollector(config);
  if (syslog) out.push(syslog);
  const resolver = systemResolver(out, resolvConf);
  if (resolver) out.push(resolver);
  return out;
}

/** The collector audit.forward.to = "syslog" sends every audit event to: the one connection the kernel makes. */
function syslogCollector(config: Config): Destination | null {
  const forward = config.audit.forward;
  if (forward.to !== "syslog") return null;
  const { address, port, tls, fingerprint, ca_file } = forward.syslog;
  const host = isIP(address) === 6 ? `[${address}]` : address;
  const trust = fingerprint !== "" ? "its certificate pinned by fingerprint" : ca_file !== "" ? "its certificate checked against audit.forward.syslog.ca_file" : "its certificate checked against the system's CAs";
  return {
    kind: "audit_syslog",
    destination: `${tls ? "tls" : "tcp"}://${host}:${port}`,
    active: true,
    detail: `the syslog collector of audit.forward: ${forwardedAuditNote(forward.personal_data)} (RFC 5424 over ${tls ? `TLS, ${trust}` : "plain TCP, unencrypted"})`,
  };
}

const RESOLV_CONF = "/etc/resolv.conf";

/**
 * The destinations named by a host name are looked up first, through the system resolver: its
 * name servers are asked those names, a connection of its own that leaves the host (a local stub,
 * such as systemd-resolved's 127.0.0.53, asks its upstreams in turn). None when every
 * destination is an address.
 */
export function systemResolver(destinations: Destination[], resolvConf: string): Destination | null {
  const named = destinations.filter((d) => hostNameOf(d.destination) !== null);
  if (named.length === 0) return null;
  const names = [...new Set(named.map((d) => hostNameOf(d.destination)!))];
  const servers = systemNameServers(resolvConf);
  const where = servers === null ? `no ${resolvConf} to read` : servers.length === 0 ? `${resolvConf} names none` : `the name servers of ${resolvConf}`;
  return {
    kind: "system_resolver",
    destination: servers?.length ? servers.join(", ") : "the system resolver",
    active: named.some((d) => d.active),
    detail: `the host names above (${names.join(", ")}) are looked up through the system resolver (${where}, unless /etc/hosts names them): the names asked leave this host`,
  };
}

/** The host name of a destination given as a URL; null for an address (nothing to look up) or no URL. */
function hostNameOf(destination: string): string | null {
  const host = URL.parse(destination)?.hostname;
  if (!host || host.startsWith("[") || isIP(host) !== 0) return null;
  return host;
}

/** The name servers in a resolv.conf file (its `nameserver` lines), or null when it cannot be read. */
function systemNameServers(path: string): string[] | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  return text.split("\n").flatMap((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1] ?? []);
}

/**
 * What kept the list of destinations from being whole: the database (webhooks, reputation
 * lists, DNS secondaries are kept there) or the mesh state directory this user cannot read.
 */
function unknownOutbound({ databaseProblem, meshStateDir }: SovereigntyInputs): string[] {
  const out: string[] = [];
  if (databaseProblem) out.push(`${describeDatabaseProblem(databaseProblem)}: its webhooks, reputation lists and DNS secondaries are not listed`);
  if (pathInfo(join(meshStateDir, "node.json")).kind === "unreadable") out.push(`cannot look inside ${meshStateDir} as this user: whether this machine is a mesh node is not known`);
  return out;
}

/** This machine as a mesh node: the control plane it polls, from its state file. */
function meshNode(dir: string): { server: string; detail: string } | null {
  const path = join(dir, "node.json");
  if (pathInfo(path).kind !== "file") return null;
  try {
    const state = JSON.parse(readFileSync(path, "utf8")) as { server?: string; name?: string; network?: string };
    if (typeof state.server !== "string") return null;
    // Its origin, as a webhook's: a server given as https://user:password@host keeps them in node.json.
    return { server: originOf(state.server), detail: `this machine is mesh node ${state.name ?? "?"} of network ${state.network ?? "?"}: its agent polls the control plane for signed configs (${transportOf(state.server, "requests")}), and WireGuard talks to the network's peers` };
  } catch {
    return { server: "(unknown)", detail: `this machine is a mesh node (${path}), but its state file could not be read by this user` };
  }
}

function dataLocations({ config, configPath, meshStateDir, loginFile }: SovereigntyInputs): DataLocation[] {
  const out: DataLocation[] = [];
  const at = (what: string, path: string, note: string | null = null, always = true) => {
    const info = pathInfo(path, { followLink: true }); // a data directory reached through a link is where the data is
    if (!always && info.kind === "missing") return;
    const partly = info.kind === "directory" && !info.complete ? "not all of it readable by this user: the size counts what is" : null;
    out.push({ what, path, kind: info.kind, bytes: info.bytes, mode: info.mode, note: [note, partly].filter(Boolean).join("; ") || null });
  };
  const none = (what: string, note: string) => out.push({ what, path: null, kind: "none", bytes: 0, mode: null, note });
  const db = join(config.data_dir, DATABASE_FILE);
  at("data directory", config.data_dir, "everything below, in total");
  at("config file", configPath);
  at("database", db, "secrets, identities, zones, the audit log: values and personal data encrypted (AES-256-GCM)");
  at("database write-ahead log", `${db}-wal`, "recent writes not yet folded into the database (same protection)");
  at("database shared memory", `${db}-shm`, "an index of the write-ahead log, no data");
  for (const path of setAsideDatabases(config.data_dir)) at(...setAsideDatabase(path));
  if (config.http.tls.enabled) {
    at("TLS certificate", dataPath(config, config.http.tls.cert_file));
    at("TLS private key", dataPath(config, config.http.tls.key_file));
  } else none("TLS", "off: a reverse proxy on this host terminates TLS");
  rootKeyLocations(config, at, none);
  at("backups", backupDir(config), "encrypted; each names the root key (or passphrase) that opens it");
  const dns = sectionOf(config, "dns");
  const sample = numberAt(dns, "query_log_sample");
  const queryLog = dataPath(config, "dns-queries.log");
  if (sample || pathInfo(queryLog).kind !== "missing") {
    at("DNS query log", queryLog, `${sample ? `one query in ${sample}; client as ${stringAt(dns, "query_log_client") ?? "configured"}` : "not written now (dns.query_log_sample = 0)"}; no erasure reaches it (docs/gdpr.md)`);
    at("DNS query log (rotated)", `${queryLog}.1`, null, false);
  }
  // Where the resolver reads them (plugins/dns/index.ts): a relative path is inside the data directory.
  for (const file of stringsAt(dns, "resolver_blocklists") ?? []) at("resolver blocklist", dataPath(config, file), "read at start, nothing written");
  const intel = sectionOf(config, "intel");
  const geo = (["geo_city", "geo_asn", "geo_anonymous"] as const).flatMap((key) => (stringAt(intel, key) ? [[key, stringAt(intel, key)!] as const] : []));
  if (geo.length === 0) none("geo database", `the country database embedded in the binary (ip-location-db; ${EMBEDDED_COUNTRY_DB.licence})`);
  // Where the intel plugin opens them: a relative path is inside the data directory.
  for (const [key, file] of geo) at(`geo database (intel.${key})`, dataPath(config, file), "read and reloaded on change, nothing written");
  at("mesh node state", meshStateDir, "this machine's node identity and WireGuard private key", false);
  if (loginFile) at("CLI login", loginFile, "this user's token for `citadel` commands");
  const forward = config.audit.forward;
  if (forward.to === "file") at("forwarded audit log", dataPath(config, forward.file), forwardedAuditNote(forward.personal_data));
  if (forward.to === "journal") none("forwarded audit log", `on standard output with the logs (the journal under systemd): ${forwardedAuditNote(forward.personal_data)}`);
  if (forward.to === "syslog") none("forwarded audit log", `sent to the syslog collector ${syslogCollector(config)!.destination.replace(/^\w+:\/\//, "")} (outbound connections): ${forwardedAuditNote(forward.personal_data)}`);
  const ownFiles = [...(forward.to === "file" ? ["the forwarded audit log"] : []), ...(sample ? ["the DNS query log"] : [])];
  none("logs", `JSON lines on standard output (the journal under systemd): Citadel writes no log file of its own${ownFiles.length > 0 ? ` besides ${ownFiles.join(" and ")}` : ""}`);
  return out;
}

/**
 * The databases `citadel restore` renamed aside (`citadel.db.before-restore-<time>`, with the
 * -wal and -shm it had), sorted; none when the directory cannot be read. Copies no erasure
 * reaches (docs/gdpr.md): an auditor must see them as much as the database itself.
 */
function setAsideDatabases(dataDir: string): string[] {
  try {
    return readdirSync(dataDir)
      .filter((name) => name.startsWith(`${DATABASE_FILE}.before-restore-`))
      .sort()
      .map((name) => join(dataDir, name));
  } catch {
    return []; // not ours to read: the data directory's own line says so
  }
}

function setAsideDatabase(path: string): [what: string, path: string, note: string] {
  if (path.endsWith("-wal")) return ["set-aside database's write-ahead log", path, "its writes not yet folded into it (the same copy)"];
  if (path.endsWith("-shm")) return ["set-aside database's shared memory", path, "an index of its write-ahead log, no data"];
  return ["database set aside by a restore", path, "a full copy of the database as it last ran (`citadel restore` kept it): no erasure reaches it; delete it once the restored instance is known good"];
}

/** What the forwarded audit events hold (audit.forward.personal_data): beyond `citadel audit erase` either way. */
function forwardedAuditNote(personalData: boolean): string {
  return personalData
    ? "every audit event as a JSON line, with its personal data (addresses, user agents, emails) decrypted (audit.forward.personal_data): no erasure reaches it, purge it by its own retention"
    : "every audit event as a JSON line, without personal data (audit.forward.personal_data = false); no erasure reaches it";
}

/**
 * Where the root key is, by the seal method; then every root key file still on this disk,
 * whatever the method: one where seal.key_file points though the method reads none (left by a
 * seal migration, or the new key of one to a key file), and the earlier keys rekeys kept beside
 * it. "Never on this disk" is said only when it is true: doctor warns of those files, and an
 * auditor reading this report must see them too.
 */
function rootKeyLocations(config: Config, at: (what: string, path: string, note: string | null) => void, none: (what: string, note: string) => void): void {
  const keyFile = dataPath(config, config.seal.key_file);
  const leftover = config.seal.method !== "key_file" && pathInfo(keyFile).kind !== "missing";
  const kept = keptRootKeyFiles(keyFile);
  if (config.seal.method === "key_file") at("root key file", keyFile, "whoever has it and the database has everything: keep a copy offline, apart from backups");
  else if (config.seal.method === "systemd_credential") {
    const installed = "/etc/citadel/root-key.cred"; // citadel install's place (the unit loads it)
    at("root key (systemd credential, encrypted)", existsSync(installed) ? installed : join("/etc/credstore.encrypted", config.seal.credential), "sealed to this machine's TPM2 or host key by systemd-creds");
  } else none("root key", leftover || kept.length > 0 ? "Shamir shares held by their keepers; yet root key files are still on this disk (below)" : "Shamir shares held by their keepers; never on this disk");
  if (leftover) {
    at("root key file (left over)", keyFile, `seal method ${config.seal.method} reads no key file: the key of an earlier seal method, or the new one of a migration to key_file; whoever has it and the database has everything (citadel doctor tells which)`);
  }
  for (const path of kept) at("earlier root key (kept by a rekey)", path, "opens the backups made under it: move it off this host, next to those backups");
}

function algorithms(config: Config): Algorithm[] {
  const iam = sectionOf(config, "iam");
  const m = numberAt(iam, "argon2_memory_kib");
  const t = numberAt(iam, "argon2_iterations");
  const p = numberAt(iam, "argon2_parallelism");
  const cert = certificate(config);
  return [
    { use: "values and personal data at rest", algorithm: "AES-256-GCM, 96-bit random nonce, AAD binding each ciphertext to its row; root key (256-bit) → versioned KEKs → per-owner DEKs" },
    { use: "root key check", algorithm: "HMAC-SHA256 verifier (the root key itself is never stored)" },
    ...(config.seal.method === "shamir" ? [{ use: "root key split", algorithm: "Shamir's secret sharing over GF(2^8)" }] : []),
    { use: "passwords", algorithm: m && t && p ? `argon2id, m=${m} KiB, t=${t}, p=${p}` : "argon2id, parameters in [iam] argon2_memory_kib, argon2_iterations, argon2_parallelism" },
    { use: "tokens and API keys", algorithm: "SHA-256 of the whole token stored, compared in constant time" },
    { use: "second factor", algorithm: "TOTP (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps" },
    { use: "audit log", algorithm: "SHA-256 hash chain; checkpoints signed with Ed25519" },
    { use: "end-to-end-encrypted workspaces (on members' machines)", algorithm: "X25519 + HKDF-SHA256 + AES-256-GCM; private keys sealed with argon2id (m=19456 KiB, t=2, p=1)" },
    { use: "share links", algorithm: "AES-256-GCM under HKDF-SHA256 of a key kept in the URL fragment (argon2id with a passphrase)" },
    { use: "webhook signatures", algorithm: "HMAC-SHA256 over timestamp and body" },
    { use: "DNS zone transfers and NOTIFY", algorithm: "TSIG: HMAC-SHA256, -SHA384 or -SHA512" },
    { use: "mesh", algorithm: "configs signed with Ed25519; WireGuard (Curve25519/X25519, ChaCha20-Poly1305, BLAKE2s), optional preshared keys" },
    { use: "HTTPS", algorithm: config.http.tls.enabled ? `TLS; the certificate's key: ${cert?.key ?? "unreadable"}` : "off (plain HTTP on loopback behind a proxy)" },
  ];
}

function certificate(config: Config): SovereigntyReport["keys"]["tls_certificate"] {
  if (!config.http.tls.enabled) return null;
  try {
    const cert = new X509Certificate(readFileSync(dataPath(config, config.http.tls.cert_file), "utf8"));
    return { key: describeCertificateKey(cert), not_before: new Date(cert.validFrom).toISOString(), not_after: new Date(cert.validTo).toISOString(), fingerprint_sha256: cert.fingerprint256, public_key_pin: publicKeyPin(cert) };
  } catch {
    return null;
  }
}

/**
 * How requests to a URL travel, by its scheme: http:// is accepted for webhooks (an operator's
 * prefix may allow it) and for a mesh control plane, and sends in the clear — said so, never
 * called HTTPS.
 */
function transportOf(url: string, what: string): string {
  const scheme = URL.parse(url)?.protocol;
  if (scheme === "https:") return `HTTPS ${what}`;
  if (scheme === "http:") return `unencrypted HTTP ${what}`;
  return `${what} over an unknown scheme`;
}

/**
 * An allowed webhook prefix as its origin, and "/…" for a path: a prefix may name one hook
 * whole, and its path is then that hook's secret (Slack's are), which the hook's own line hides.
 */
function redactedPrefix(prefix: string): string {
  const url = URL.parse(prefix);
  if (!url) return "(not a URL)";
  return url.pathname === "/" ? `${url.origin}/` : `${url.origin}/…`;
}

/** A URL's origin (scheme, host, port): what a report handed to an auditor needs, without a path that may be a secret or credentials. */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(not a URL)";
  }
}
