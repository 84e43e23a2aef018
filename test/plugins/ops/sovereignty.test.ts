/**
 * `citadel sovereignty report` on a data directory made by `citadel init` (in-process):
 * "none" when nothing is configured to leave the host; each configured destination when one
 * is (resolver upstreams, webhooks, reputation lists, NOTIFY targets, the mesh control plane);
 * where the data lives, with modes and sizes; the algorithms and key ages.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { loadConfig } from "../../../src/config/load.ts";
import type { Config } from "../../../src/config/schema.ts";
import { configSchema } from "../../../src/main.ts";
import type { CommandContext } from "../../../src/plugin.ts";
import { opsPlugin } from "../../../plugins/ops/index.ts";
import { freePort, opsFixture } from "./fixture.ts";
import { systemResolver, type SovereigntyReport } from "../../../plugins/ops/sovereignty.ts";

const fx = opsFixture("citadel-sovereignty-", { dns: false });
/** This machine's name servers, as the report names the system resolver. */
const SYSTEM_RESOLVER = existsSync("/etc/resolv.conf") ? [...readFileSync("/etc/resolv.conf", "utf8").matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]).join(", ") || "the system resolver" : "the system resolver";
const { work, HOME } = fx;
const dataDir = () => fx.dataDir();
const NO_MESH = join(work, "no-mesh-state");

type Report = SovereigntyReport & { citadel: { version: string }; data_dir: string };

async function run(words: string, dir: string, options: { json?: boolean; env?: Record<string, string>; meshState?: string; code?: number } = {}) {
  const out: string[] = [];
  const allEnv = { ...fx.env, ...options.env };
  const config = (): Config => loadConfig({ schema: configSchema, env: allEnv, dataFlag: dir, cwd: work }).config;
  const ctx: CommandContext & { config: () => Config } = {
    args: [],
    options: { data: dir, json: options.json, "mesh-state": options.meshState ?? NO_MESH },
    json: options.json === true,
    out: (text) => out.push(text),
    err: (text) => out.push(text),
    api: async () => {
      throw new Error("not used");
    },
    dataDir: () => config().data_dir,
    configHome: HOME,
    env: allEnv,
    config,
    migrations: () => [],
  };
  const code = await opsPlugin.commands!.find((c) => c.words.join(" ") === words)!.run(ctx);
  expect(code).toBe(options.code ?? 0);
  return out.join("\n");
}

const report = async (dir: string, options: { env?: Record<string, string>; meshState?: string } = {}) => JSON.parse(await run("sovereignty report", dir, { ...options, json: true })) as Report;

/** Writes rows the way the secrets, intel and dns plugins do, into the database file. */
function insert(dir: string, sql: string, ...values: Array<string | number | Uint8Array>) {
  const db = new Database(join(dir, "citadel.db"));
  try {
    db.query(sql).run(...values);
  } finally {
    db.close();
  }
}

describe("outbound connections", () => {
  test("none configured: none, nothing leaves this host", async () => {
    const dir = dataDir();
    const r = await report(dir);
    expect(r.outbound).toEqual({ none: true, unknown: [], destinations: [], webhook_allowed_prefixes: [] });
    expect(await run("sovereignty report", dir)).toContain("\nOutbound connections\n  none: nothing leaves this host\n");
  });

  test("a database file that is not SQLite: the list is unknown, never none, and the exit code is 1 (found in review)", async () => {
    const dir = dataDir();
    writeFileSync(join(dir, "citadel.db"), randomBytes(8192));
    const r = JSON.parse(await run("sovereignty report", dir, { json: true, code: 1 })) as Report;
    expect(r.outbound).toMatchObject({ none: false, unknown: ["the database file is not a readable SQLite database: its webhooks, reputation lists and DNS secondaries are not listed"] });
    expect(r.keys.note).toBe("the database file is not a readable SQLite database");
    expect(await run("sovereignty report", dir, { code: 1 })).toContain("\nOutbound connections\n  unknown: the database file is not a readable SQLite database");
  });

  test("a resolver with upstreams lists each upstream; upstreams without a resolver listener are listed as unused", async () => {
    const dir = dataDir();
    const upstreams = { CITADEL_DNS_RESOLVER_UPSTREAMS: "192.0.2.53:53,[2001:db8::53]:53" };
    const active = await report(dir, { env: { ...upstreams, CITADEL_DNS_RESOLVER_UDP: `127.0.0.1:${freePort()}` } });
    expect(active.outbound.none).toBe(false);
    expect(active.outbound.destinations.map((d) => [d.kind, d.destination, d.active])).toEqual([
      ["dns_resolver_upstream", "192.0.2.53:53", true],
      ["dns_resolver_upstream", "[2001:db8::53]:53", true],
    ]);
    const unused = await report(dir, { env: upstreams });
    expect(unused.outbound.none).toBe(true);
    expect(unused.outbound.destinations.map((d) => d.active)).toEqual([false, false]);
    expect(await run("sovereignty report", dir, { env: upstreams })).toContain("  (unused) dns resolver upstream: 192.0.2.53:53\n");
  });

  test("a webhook whose URL is stored encrypted (its origin alone in the clear) is judged by its origin: refused without a prefix of that origin, let in by one of the whole origin, else unknown (found in review: judged refused under a prefix with a path)", async () => {
    const dir = dataDir();
    const hook = (id: string, url: string) => insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, url_encrypted, secret, created_at, created_by) VALUES (?, 'ws_1', ?, x'00', x'00', 0, 'u_1')", id, url);
    hook("wh_1", "https://hooks.example.test/…");
    hook("wh_2", "https://elsewhere.example.test/…");
    hook("wh_3", "https://open.example.test/…");
    const r = await report(dir, { env: { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.example.test/citadel,https://open.example.test/" } });
    const byOrigin = new Map(r.outbound.destinations.filter((d) => d.kind === "secrets_webhook").map((d) => [d.destination, [d.active, d.detail]]));
    expect(byOrigin.get("https://elsewhere.example.test")).toEqual([false, expect.stringContaining("deliveries are refused")]);
    expect(byOrigin.get("https://open.example.test")).toEqual([true, expect.not.stringContaining("refused")]);
    expect(byOrigin.get("https://hooks.example.test")).toEqual([true, expect.stringContaining("its path is stored encrypted, so whether secrets.webhook_allowed_urls lets it in is checked by the server")]);
  });

  test("a webhook is listed by its origin (its path may hold its secret); one outside the allowed prefixes is listed as refused", async () => {
    const dir = dataDir();
    const hook = (id: string, url: string) => insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES (?, 'ws_1', ?, ?, 0, 'u_1')", id, url, new Uint8Array(8));
    hook("wh_1", "https://hooks.example.test/citadel/deploy");
    hook("wh_2", "https://elsewhere.example.test/x");
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by, deleted_at) VALUES ('wh_3', 'ws_1', 'https://deleted.example.test/', x'00', 0, 'u_1', 1)");
    // Under the prefix as written, but refused by the sender as a receiver could route it elsewhere: the report agrees (found in review).
    hook("wh_4", "https://hooks.example.test/citadel/..%2Fadmin");
    const r = await report(dir, { env: { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.example.test/citadel" } });
    expect(r.outbound.none).toBe(false);
    expect(r.outbound.webhook_allowed_prefixes).toEqual(["https://hooks.example.test/…"]);
    expect(r.outbound.destinations.map((d) => [d.kind, d.destination, d.active])).toEqual([
      ["secrets_webhook", "https://elsewhere.example.test", false],
      ["secrets_webhook", "https://hooks.example.test", false],
      ["secrets_webhook", "https://hooks.example.test", true],
      ["system_resolver", SYSTEM_RESOLVER, true],
    ]);
    expect(r.outbound.destinations[0]!.detail).toContain("deliveries are refused");
    const text = await run("sovereignty report", dir, { env: { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.example.test/citadel" } });
    expect(text).toContain("secrets webhook: https://hooks.example.test\n");
    expect(text).not.toContain("/citadel/deploy");
    expect(text).not.toContain("none: nothing leaves this host");
  });

  test("no secret of a URL is printed: an allowed prefix's path (it may name one hook whole) and a control plane's user:password (found in review)", async () => {
    const dir = dataDir();
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_1', 'ws_1', 'https://hooks.slack.test/services/T0/B0/HOOKSECRET', x'00', 0, 'u_1')");
    const mesh = join(work, `mesh-${basename(dir)}`);
    mkdirSync(mesh, { mode: 0o700 });
    writeFileSync(join(mesh, "node.json"), JSON.stringify({ server: "https://MESHUSER:MESHPASSWORD@control.example.test:8443", name: "laptop", network: "office" }), { mode: 0o600 });
    const env = { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.slack.test/services/T0/B0/HOOKSECRET,https://receiver.example.test/,http://plain.example.test" };
    const r = await report(dir, { meshState: mesh, env });
    expect(r.outbound.webhook_allowed_prefixes).toEqual(["https://hooks.slack.test/…", "https://receiver.example.test/", "http://plain.example.test/"]);
    expect(r.outbound.destinations.find((d) => d.kind === "mesh_control_plane")!.destination).toBe("https://control.example.test:8443");
    const text = await run("sovereignty report", dir, { meshState: mesh, env });
    expect(text).toContain("  webhooks may point under: https://hooks.slack.test/…, https://receiver.example.test/, http://plain.example.test/ (secrets.webhook_allowed_urls)\n");
    expect(text).toContain("  mesh control plane: https://control.example.test:8443\n");
    for (const secret of ["HOOKSECRET", "MESHUSER", "MESHPASSWORD"]) expect(text).not.toContain(secret);
  });

  test("destinations named by a host name add the system resolver that looks them up; addresses alone do not (found in review)", async () => {
    const dir = dataDir();
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_1', 'ws_1', 'https://hooks.example.test/in', x'00', 0, 'u_1')");
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_2', 'ws_1', 'https://192.0.2.10/in', x'00', 0, 'u_1')");
    insert(dir, "INSERT INTO intel_lists (name, weight, format, url, refresh_minutes, content, entries, errors, updated_at) VALUES ('drop', 50, 'plain', 'https://lists.example.test/drop.txt', 60, '', 0, 0, 0)");
    const env = { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.example.test/,https://192.0.2.10/" };
    const r = await report(dir, { env });
    expect(r.outbound.destinations.at(-1)).toEqual({
      kind: "system_resolver",
      destination: SYSTEM_RESOLVER,
      active: true,
      detail: `the host names above (hooks.example.test, lists.example.test) are looked up through the system resolver (${existsSync("/etc/resolv.conf") ? "the name servers of /etc/resolv.conf" : "no /etc/resolv.conf to read"}, unless /etc/hosts names them): the names asked leave this host`,
    });
    expect(await run("sovereignty report", dir, { env })).toContain(`  system resolver: ${SYSTEM_RESOLVER}\n`);

    // Addresses only (an IPv4 and an IPv6 webhook, a resolver upstream, a NOTIFY target): nothing to look up.
    const addresses = dataDir();
    insert(addresses, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_1', 'ws_1', 'https://192.0.2.10/in', x'00', 0, 'u_1')");
    insert(addresses, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_2', 'ws_1', 'https://[2001:db8::10]/in', x'00', 0, 'u_1')");
    const only = await report(addresses, { env: { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://192.0.2.10/,https://[2001:db8::10]/", CITADEL_DNS_RESOLVER_UPSTREAMS: "192.0.2.53:53", CITADEL_DNS_RESOLVER_UDP: `127.0.0.1:${freePort()}` } });
    expect(only.outbound.destinations.map((d) => d.kind)).toEqual(["secrets_webhook", "secrets_webhook", "dns_resolver_upstream"]);
  });

  test("the system resolver is named by the name servers of resolv.conf; without one, as the system resolver", () => {
    const webhook = { kind: "secrets_webhook", destination: "https://hooks.example.test", active: true, detail: "" } as const;
    const conf = join(work, "resolv.conf");
    writeFileSync(conf, "# made by hand\nsearch example.test\nnameserver 192.0.2.53\n; nameserver 192.0.2.99\n  nameserver   2001:db8::53  \noptions edns0\n");
    expect(systemResolver([webhook], conf)).toMatchObject({ destination: "192.0.2.53, 2001:db8::53", detail: expect.stringContaining(`(the name servers of ${conf}, unless /etc/hosts names them)`) });
    writeFileSync(conf, "search example.test\n");
    expect(systemResolver([webhook], conf)).toMatchObject({ destination: "the system resolver", detail: expect.stringContaining(`(${conf} names none, unless`) });
    const missing = join(work, "no-such-resolv.conf");
    expect(systemResolver([webhook], missing)).toMatchObject({ destination: "the system resolver", detail: expect.stringContaining(`(no ${missing} to read, unless`) });
    expect(systemResolver([{ ...webhook, active: false }], missing)!.active).toBe(false); // a refused webhook is not looked up
    expect(systemResolver([{ ...webhook, destination: "https://[2001:db8::1]:8443" }], missing)).toBeNull();
  });

  test("the transport is read from each URL's scheme: http is called unencrypted, never HTTPS (found in review)", async () => {
    const dir = dataDir();
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_1', 'ws_1', 'http://hooks.example.test/in', x'00', 0, 'u_1')");
    insert(dir, "INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES ('wh_2', 'ws_1', 'https://hooks.example.test/in', x'00', 0, 'u_1')");
    insert(dir, "INSERT INTO intel_lists (name, weight, format, url, refresh_minutes, content, entries, errors, updated_at) VALUES ('plain', 50, 'plain', 'http://lists.example.test/drop.txt', 60, '', 0, 0, 0)");
    const mesh = join(work, `mesh-${basename(dir)}`);
    mkdirSync(mesh, { mode: 0o700 });
    writeFileSync(join(mesh, "node.json"), JSON.stringify({ server: "http://control.example.test:8080", name: "laptop", network: "office" }), { mode: 0o600 });
    const r = await report(dir, { meshState: mesh, env: { CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "http://hooks.example.test/,https://hooks.example.test/" } });
    const detail = (kind: string) => r.outbound.destinations.filter((d) => d.kind === kind).map((d) => d.detail);
    expect(detail("secrets_webhook")).toEqual([
      expect.stringContaining("webhook wh_1 of workspace ws_1: unencrypted HTTP POST of change events"),
      expect.stringContaining("webhook wh_2 of workspace ws_1: HTTPS POST of change events"),
    ]);
    expect(detail("reputation_list")[0]).toContain("(unencrypted HTTP GET)");
    // Only https:// lists are fetched (found in review): one stored with http:// is listed, as refused.
    expect(detail("reputation_list")[0]).toEndWith("; not https://, so its refreshes are refused");
    expect(r.outbound.destinations.find((d) => d.kind === "reputation_list")!.active).toBe(false);
    expect(detail("mesh_control_plane")[0]).toContain("polls the control plane for signed configs (unencrypted HTTP requests)");
    expect(JSON.stringify(r.outbound.destinations)).not.toMatch(/HTTPS (GET|requests)/);
  });

  test("reputation lists fetched from a URL, DNS secondaries sent NOTIFY, and the mesh control plane of a node", async () => {
    const dir = dataDir();
    // A list URL's credentials and query (an API key) are not shown (found in review).
    insert(dir, "INSERT INTO intel_lists (name, weight, format, url, refresh_minutes, content, entries, errors, updated_at) VALUES ('drop', 50, 'spamhaus', 'https://user:hunter2@lists.example.test/drop.txt?api_key=SECRETKEY', 1440, '', 0, 0, 0)");
    insert(dir, "INSERT INTO intel_lists (name, weight, format, url, refresh_minutes, content, entries, errors, updated_at) VALUES ('inline', 10, 'plain', NULL, NULL, '192.0.2.0/24', 1, 0, 0)");
    insert(dir, "INSERT INTO dns_tsig_keys (name, algorithm, secret, created_at) VALUES ('transfer.', 'hmac-sha256', x'00', 0)");
    insert(dir, "INSERT INTO dns_secondaries (name, address, notify_port, tsig_key, zones, created_at) VALUES ('ns2', '2001:db8::2', 53, 'transfer.', NULL, 0)");
    const mesh = join(work, `mesh-${basename(dir)}`);
    mkdirSync(mesh, { mode: 0o700 });
    writeFileSync(join(mesh, "node.json"), JSON.stringify({ server: "https://control.example.test:8443", name: "laptop", network: "office" }), { mode: 0o600 });
    const r = await report(dir, { meshState: mesh });
    expect(r.outbound.destinations.map((d) => [d.kind, d.destination])).toEqual([
      ["reputation_list", "https://lists.example.test/drop.txt"],
      ["dns_notify", "[2001:db8::2]:53"],
      ["mesh_control_plane", "https://control.example.test:8443"],
      ["system_resolver", SYSTEM_RESOLVER],
    ]);
    expect(r.outbound.destinations[0]!.detail).toBe("reputation list drop, fetched every 1440 minutes (HTTPS GET)");
    expect(r.outbound.destinations[2]!.detail).toContain("mesh node laptop of network office");
  });
});

describe("the rest of the report", () => {
  test("dependencies from the SBOM, with versions and licences", async () => {
    const r = await report(dataDir());
    const elysia = r.dependencies.in_binary.find((d) => d.name === "elysia")!;
    expect(elysia).toMatchObject({ licence: "MIT", purl: `pkg:npm/elysia@${elysia.version}` });
    expect(r.dependencies.in_binary[0]).toMatchObject({ name: "bun", version: Bun.version, licence: "MIT" });
    expect(r.dependencies.build_only.map((d) => d.name)).toContain("typescript");
    expect(Object.values(r.dependencies.licences).reduce((a, b) => a + b, 0)).toBe(r.dependencies.in_binary.length);
    expect(r.dependencies.sbom).toMatch(/^CycloneDX 1\.5, made from the source checkout at run time/);
  });

  test("where the data lives: sizes and modes of the database, its WAL, the TLS files and the root key", async () => {
    const dir = dataDir();
    const r = await report(dir);
    const at = (what: string) => r.data.find((d) => d.what === what)!;
    expect(at("data directory")).toMatchObject({ path: dir, kind: "directory", mode: 0o700 });
    expect(at("data directory").bytes).toBeGreaterThan(at("database").bytes);
    expect(at("database")).toMatchObject({ path: join(dir, "citadel.db"), kind: "file", mode: 0o600 });
    expect(at("database").bytes).toBeGreaterThan(0);
    expect(at("database write-ahead log").path).toBe(join(dir, "citadel.db-wal"));
    expect(at("config file")).toMatchObject({ path: join(dir, "citadel.toml"), mode: 0o600 });
    expect(at("TLS private key")).toMatchObject({ path: join(dir, "tls/key.pem"), kind: "file", mode: 0o600 });
    expect(at("root key file")).toMatchObject({ path: join(dir, "root.key"), kind: "file", mode: 0o600, bytes: 65 });
    expect(at("backups")).toMatchObject({ path: join(dir, "backups"), kind: "missing" });
    expect(at("logs")).toMatchObject({ path: null, note: expect.stringContaining("standard output") });
    expect(r.data.some((d) => d.what === "DNS query log")).toBe(false);
    const logged = await report(dir, { env: { CITADEL_DNS_QUERY_LOG_SAMPLE: "10" } });
    expect(logged.data.find((d) => d.what === "DNS query log")).toMatchObject({ path: join(dir, "dns-queries.log"), note: "one query in 10; client as prefix; no erasure reaches it (docs/gdpr.md)" });
    // Named among the files Citadel writes of its own (found in review: "no log file" beside it).
    expect(logged.data.find((d) => d.what === "logs")?.note).toEndWith("Citadel writes no log file of its own besides the DNS query log");
  });

  test("a relative resolver blocklist is the one in the data directory, where the resolver reads it, whatever the current directory (found in review)", async () => {
    const dir = dataDir();
    writeFileSync(join(dir, "bl.txt"), "ads.example\n", { mode: 0o600 });
    const lists = { CITADEL_DNS_RESOLVER_BLOCKLISTS: "bl.txt,/nonexistent/abs.txt" };
    const r = await report(dir, { env: lists });
    expect(r.data.filter((d) => d.what === "resolver blocklist").map((d) => [d.path, d.kind])).toEqual([
      [join(dir, "bl.txt"), "file"],
      ["/nonexistent/abs.txt", "missing"],
    ]);
    const text = await run("sovereignty report", dir, { env: lists });
    expect(text).toContain(`${join(dir, "bl.txt")}  0600  12 B`);
    expect(text).not.toContain("bl.txt (absent)");
  });

  test("without geo files, the embedded country database is named with both its licences, as intel status names them (found in review)", async () => {
    const r = await report(dataDir());
    expect(r.data.filter((d) => d.what.startsWith("geo database")).map((d) => [d.what, d.path, d.note])).toEqual([
      ["geo database", null, "the country database embedded in the binary (ip-location-db; CC0-1.0 (package); data CC BY 4.0 NRO (attribution: nro.net))"],
    ]);
  });

  test("a relative geo file is looked for inside the data directory, where the intel plugin opens it", async () => {
    const dir = dataDir();
    const r = await report(dir, { env: { CITADEL_INTEL_GEO_CITY: "city.mmdb", CITADEL_INTEL_GEO_ASN: "/nonexistent/asn.mmdb" } });
    const geo = r.data.filter((d) => d.what.startsWith("geo database"));
    expect(geo.map((d) => [d.what, d.path, d.note])).toEqual([
      ["geo database (intel.geo_city)", join(dir, "city.mmdb"), "read and reloaded on change, nothing written"],
      ["geo database (intel.geo_asn)", "/nonexistent/asn.mmdb", "read and reloaded on change, nothing written"],
    ]);
  });

  test("the forwarded audit log and the databases a restore set aside are listed: copies no erasure reaches (found in review)", async () => {
    const dir = dataDir();
    const aside = join(dir, "citadel.db.before-restore-20260101T000000Z");
    for (const suffix of ["", "-wal", "-shm"]) writeFileSync(aside + suffix, "x", { mode: 0o600 });
    writeFileSync(join(dir, "forwarded.jsonl"), "{}\n", { mode: 0o600 });
    const toFile = { CITADEL_AUDIT_FORWARD_TO: "file", CITADEL_AUDIT_FORWARD_FILE: "forwarded.jsonl", CITADEL_AUDIT_FORWARD_PERSONAL_DATA: "true" };
    const r = await report(dir, { env: toFile });
    const at = (what: string) => r.data.find((d) => d.what === what);
    expect(at("forwarded audit log")).toMatchObject({ path: join(dir, "forwarded.jsonl"), kind: "file", mode: 0o600, note: expect.stringContaining("with its personal data (addresses, user agents, emails) decrypted") });
    expect(r.data.filter((d) => d.path?.startsWith(aside)).map((d) => [d.what, d.path, d.kind])).toEqual([
      ["database set aside by a restore", aside, "file"],
      ["set-aside database's shared memory", `${aside}-shm`, "file"],
      ["set-aside database's write-ahead log", `${aside}-wal`, "file"],
    ]);
    expect(at("database set aside by a restore")!.note).toContain("no erasure reaches it");
    expect(at("logs")!.note).toBe("JSON lines on standard output (the journal under systemd): Citadel writes no log file of its own besides the forwarded audit log");
    const text = await run("sovereignty report", dir, { env: toFile });
    expect(text).toContain(`forwarded audit log`);
    expect(text).toContain(`${join(dir, "forwarded.jsonl")}  0600  3 B — every audit event`);

    const journal = await report(dir, { env: { CITADEL_AUDIT_FORWARD_TO: "journal" } });
    expect(journal.data.find((d) => d.what === "forwarded audit log")).toMatchObject({ path: null, note: expect.stringMatching(/^on standard output with the logs \(the journal under systemd\): every audit event as a JSON line, without personal data/) });
    // Sent to a syslog collector: the one connection the kernel makes, listed with how it travels.
    const syslog = await report(dir, { env: { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "2001:db8::514" } });
    expect(syslog.outbound.destinations.filter((d) => d.kind === "audit_syslog")).toEqual([
      { kind: "audit_syslog", destination: "tls://[2001:db8::514]:6514", active: true, detail: expect.stringMatching(/^the syslog collector of audit\.forward: every audit event as a JSON line, without personal data .* \(RFC 5424 over TLS, its certificate checked against the system's CAs\)$/) },
    ]);
    expect(syslog.data.find((d) => d.what === "forwarded audit log")).toMatchObject({ path: null, note: expect.stringMatching(/^sent to the syslog collector \[2001:db8::514\]:6514 /) });
    const off = await report(dir);
    expect(off.data.some((d) => d.what === "forwarded audit log")).toBe(false);
  });

  test("root key files still on this disk are listed, whatever the seal method: never 'never on this disk' beside them (found in an operator's walkthrough)", async () => {
    const dir = dataDir();
    const kept = join(dir, "root.key.2d9b5f91");
    writeFileSync(kept, `${"ab".repeat(32)}\n`, { mode: 0o600 });
    const keyFile = await report(dir);
    expect(keyFile.data.filter((d) => d.what.includes("root key")).map((d) => [d.what, d.path])).toEqual([
      ["root key file", join(dir, "root.key")],
      ["earlier root key (kept by a rekey)", kept],
    ]);
    const shamir = await report(dir, { env: { CITADEL_SEAL_METHOD: "shamir" } });
    const at = (what: string) => shamir.data.find((d) => d.what === what);
    expect(at("root key")?.note).toBe("Shamir shares held by their keepers; yet root key files are still on this disk (below)");
    expect(at("root key file (left over)")).toMatchObject({ path: join(dir, "root.key"), kind: "file", mode: 0o600 });
    expect(at("earlier root key (kept by a rekey)")).toMatchObject({ path: kept, kind: "file" });
    expect(await run("sovereignty report", dir, { env: { CITADEL_SEAL_METHOD: "shamir" } })).toContain(`earlier root key (kept by a rekey)  ${kept}  0600`);
  });

  test("with Shamir shares and no key file on this disk, the root key is never on it", async () => {
    const dir = dataDir();
    rmSync(join(dir, "root.key"));
    const shamir = await report(dir, { env: { CITADEL_SEAL_METHOD: "shamir" } });
    expect(shamir.data.filter((d) => d.what.includes("root key"))).toEqual([{ what: "root key", path: null, kind: "none", bytes: 0, mode: null, note: "Shamir shares held by their keepers; never on this disk" }]);
  });

  test("algorithms and key ages (from the database file while the server is stopped)", async () => {
    const r = await report(dataDir(), { env: { CITADEL_IAM_ARGON2_MEMORY_KIB: "65536", CITADEL_IAM_ARGON2_ITERATIONS: "3" } });
    const algorithm = (use: string) => r.algorithms.find((a) => a.use === use)?.algorithm;
    expect(algorithm("values and personal data at rest")).toStartWith("AES-256-GCM");
    expect(algorithm("passwords")).toBe("argon2id, m=65536 KiB, t=3, p=1");
    expect(algorithm("audit log")).toContain("Ed25519");
    expect(algorithm("second factor")).toContain("TOTP");
    expect(algorithm("HTTPS")).toContain("ECDSA P-256");
    expect(r.keys.ages).toMatchObject({ source: "database", root: { method: "key_file", age_days: 0 }, active_kek: { version: 1 }, rotation_days: 90, rotation_due: false });
    expect(r.keys.tls_certificate!.fingerprint_sha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(r.keys.signing_keys).toEqual([]); // the audit signing key is made by the first checkpoint, once serving
  });
});

test("sovereignty sbom prints the CycloneDX document", async () => {
  const bom = JSON.parse(await run("sovereignty sbom", dataDir()));
  expect(bom).toMatchObject({ bomFormat: "CycloneDX", specVersion: "1.5" });
  expect(bom.components.some((c: { name: string }) => c.name === "elysia")).toBe(true);
});
