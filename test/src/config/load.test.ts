import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Type } from "@sinclair/typebox";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../../src/config/load.ts";
import { buildConfigSchema, section } from "../../../src/config/schema.ts";
import { lockDataDirectory } from "../../../src/file-lock.ts";

const plugin = { name: "dns", settings: section("DNS", { port: Type.Integer({ default: 5353, minimum: 1, maximum: 65535 }) }) };
/** A section with a rule across its keys, which the loader runs after the schema. */
const ranged = {
  name: "window",
  settings: section("A window", { low: Type.Integer({ default: 1, minimum: 0 }), high: Type.Integer({ default: 10, minimum: 0 }) }, (s) => {
    if (s.high < s.low) throw new ConfigError(`window.high: must be at least window.low (${s.low}), is ${s.high}`);
  }),
};
const schema = buildConfigSchema([plugin, ranged]);
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "citadel-config-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(toml: string | null, env: Record<string, string> = {}, flags: { data?: string } = {}) {
  const path = join(dir, `c-${Math.random().toString(36).slice(2)}.toml`);
  if (toml !== null) writeFileSync(path, toml);
  return loadConfig({ schema, env, configFlag: toml === null ? undefined : path, dataFlag: flags.data, cwd: dir });
}

describe("good configurations", () => {
  test("no file at all: every default", () => {
    const { config, configFileExists, configPathExplicit } = load(null);
    expect(configFileExists).toBe(false);
    expect(configPathExplicit).toBe(false);
    expect(config.http).toEqual({
      address: "127.0.0.1",
      port: 8443,
      body_limit_bytes: 1048576,
      idle_timeout_seconds: 30,
      trusted_proxies: [],
      public_url: "",
      tls: { enabled: true, cert_file: "tls/cert.pem", key_file: "tls/key.pem" },
    });
    expect(config.data_dir).toBe(join(dir, ".citadel"));
    expect(config.dns).toEqual({ port: 5353 });
    expect(config.window).toEqual({ low: 1, high: 10 });
  });

  const good: Array<[string, string, Record<string, string>, (c: any) => unknown, unknown]> = [
    ["file sets a port", "[http]\nport = 9443\n", {}, (c) => c.http.port, 9443],
    ["env beats file", "[http]\nport = 9443\n", { CITADEL_HTTP_PORT: "7443" }, (c) => c.http.port, 7443],
    ["nested env key", "", { CITADEL_HTTP_TLS_ENABLED: "false" }, (c) => c.http.tls.enabled, false],
    ["env number, decimal with a fraction or exponent", "", { CITADEL_RATE_LIMIT_AUTH_PER_SECOND: "2.5" }, (c) => c.rate_limit.auth.per_second, 2.5],
    ["env list", "", { CITADEL_HTTP_TRUSTED_PROXIES: "10.0.0.0/8, fd00::/8" }, (c) => c.http.trusted_proxies, ["10.0.0.0/8", "fd00::/8"]],
    ["plugin section", "[dns]\nport = 53\n", {}, (c) => c.dns.port, 53],
    ["plugin env", "", { CITADEL_DNS_PORT: "5300" }, (c) => c.dns.port, 5300],
    ["log level", '[log]\nlevel = "debug"\n', {}, (c) => c.log.level, "debug"],
    ["a section's check passes", "[window]\nlow = 5\nhigh = 5\n", {}, (c) => c.window, { low: 5, high: 5 }],
    ["plain HTTP on loopback", "[http]\naddress = \"::1\"\n[http.tls]\nenabled = false\n", {}, (c) => c.http.tls.enabled, false],
    ["data dir from env", "", { CITADEL_DATA: "/srv/citadel" }, (c) => c.data_dir, "/srv/citadel"],
    ["non-config CITADEL_ variables are left alone", "", { CITADEL_TOKEN: "x", CITADEL_CONFIG: "" }, (c) => c.http.port, 8443],
  ];
  for (const [name, toml, env, pick, expected] of good) {
    test(name, () => expect(pick(load(toml, env).config)).toEqual(expected));
  }

  test("a public URL: https anywhere, http to a loopback host", () => {
    for (const url of ["https://citadel.example.eu/citadel/", "https://[2001:db8::1]:8443", "http://127.0.0.1:8080/citadel", "http://localhost/", "http://[::1]/c"]) {
      expect(load(`[http]\npublic_url = "${url}"\n`).config.http.public_url).toBe(url);
    }
  });

  test("--data beats CITADEL_DATA and the file", () => {
    const { config } = load('data_dir = "/a"\n', { CITADEL_DATA: "/b" }, { data: "/c" });
    expect(config.data_dir).toBe("/c");
  });
});

describe("the installed instance's config (citadel install), for commands run on a server", () => {
  test("read when nothing names a config or data directory and ./.citadel has none; otherwise not", () => {
    const installed = join(dir, "etc-citadel.toml");
    writeFileSync(installed, 'data_dir = "/var/lib/citadel"\n');
    const cwd = join(dir, "elsewhere");
    mkdirSync(cwd, { recursive: true });
    const at = (inputs: { cwd?: string; env?: Record<string, string>; data?: string; installedConfig?: string }) =>
      loadConfig({ schema, env: inputs.env ?? {}, dataFlag: inputs.data, cwd: inputs.cwd ?? cwd, installedConfig: "installedConfig" in inputs ? inputs.installedConfig : installed });
    expect([at({}).configPath, at({}).config.data_dir]).toEqual([installed, "/var/lib/citadel"]);
    // Not for serve and init (main.ts leaves it out), nor when a data directory is named.
    expect(at({ installedConfig: undefined }).config.data_dir).toBe(join(cwd, ".citadel"));
    expect(at({ data: "d" }).config.data_dir).toBe(join(cwd, "d"));
    expect(at({ env: { CITADEL_DATA: "e" } }).config.data_dir).toBe(join(cwd, "e"));
    // A ./.citadel with a config is this directory's Citadel.
    mkdirSync(join(cwd, ".citadel"));
    writeFileSync(join(cwd, ".citadel", "citadel.toml"), "");
    expect(at({}).configPath).toBe(join(cwd, ".citadel", "citadel.toml"));
    // No installed instance: the default as ever.
    expect(at({ cwd: dir, installedConfig: join(dir, "absent.toml") }).configPath).toBe(join(dir, ".citadel", "citadel.toml"));
  });

  test("for a client command, a ./.citadel that is no instance of this user's on loopback is passed over for the installed one (found in review)", () => {
    const installed = join(dir, "etc-client.toml");
    writeFileSync(installed, 'data_dir = "/var/lib/citadel"\n');
    const cwd = mkdtempSync(join(dir, "project-"));
    const local = join(cwd, ".citadel");
    mkdirSync(local, { mode: 0o700 });
    writeFileSync(join(local, "citadel.toml"), '[http]\naddress = "127.0.0.1"\n');
    const client = (installedConfig?: string) => loadConfig({ schema, env: {}, cwd, installedConfig, client: true }).configPath;
    // No database: a checked-out repository's, not an instance started here.
    expect(client(installed)).toBe(installed);
    expect(() => client()).toThrow(`${local} is not used to choose the server: it holds no database (citadel.db)`);
    // A command that is no client (doctor, audit verify) acts on it as before.
    expect(loadConfig({ schema, env: {}, cwd, installedConfig: installed }).configPath).toBe(join(local, "citadel.toml"));
    writeFileSync(join(local, "citadel.db"), "", { mode: 0o600 });
    // A running Citadel holds the data directory's lock (here this process, as citadel serve would).
    const running = lockDataDirectory(local, "serve");
    if ("refused" in running) throw new Error(running.refused);
    try {
      expect(client(installed)).toBe(join(local, "citadel.toml"));
      writeFileSync(join(local, "citadel.toml"), '[http]\naddress = "192.0.2.1"\n');
      expect(client(installed)).toBe(installed);
      expect(() => client()).toThrow("its http.address 192.0.2.1 is not a loopback address");
      writeFileSync(join(local, "citadel.toml"), '[http]\naddress = "0.0.0.0"\n'); // reached over loopback
      expect(client(installed)).toBe(join(local, "citadel.toml"));
      chmodSync(local, 0o720);
      expect(() => client()).toThrow("its group or others may enter it (mode 720; citadel serve makes it 700)");
      chmodSync(local, 0o700);
    } finally {
      running.release();
    }
  });

  test("for a client command, a ./.citadel as citadel serve makes it counts only while a Citadel runs on it, holding its lock (found in review)", () => {
    const cwd = mkdtempSync(join(dir, "project-"));
    const local = join(cwd, ".citadel");
    // What a `git clone` makes: 0755 directories, 0644 files, any file as the database.
    mkdirSync(local, { mode: 0o755 });
    chmodSync(local, 0o755);
    writeFileSync(join(local, "citadel.toml"), '[http]\naddress = "127.0.0.1"\n');
    writeFileSync(join(local, "citadel.db"), "junk", { mode: 0o644 });
    chmodSync(join(local, "citadel.db"), 0o644);
    const client = () => loadConfig({ schema, env: {}, cwd, client: true }).configPath;
    expect(() => client()).toThrow("its group or others may enter it (mode 755; citadel serve makes it 700)");
    chmodSync(local, 0o700);
    expect(() => client()).toThrow("its citadel.db is open to group or others (mode 644; citadel serve makes it 600)");
    rmSync(join(local, "citadel.db"));
    mkdirSync(join(local, "citadel.db"));
    expect(() => client()).toThrow("its citadel.db is not a regular file");
    rmSync(join(local, "citadel.db"), { recursive: true });
    writeFileSync(join(local, "citadel.db"), "junk", { mode: 0o600 });
    // As a clone under umask 077 is: nothing runs on it, whatever lock file it carries.
    const notRunning = "the instance in it is not running (citadel serve holds its lock, citadel.lock, while it runs), or it is not yours";
    expect(() => client()).toThrow(notRunning);
    writeFileSync(join(local, "citadel.lock"), "123 serve\n", { mode: 0o600 });
    expect(() => client()).toThrow(notRunning);
    // A link to a lock another Citadel holds is not this directory's lock.
    const elsewhere = mkdtempSync(join(dir, "running-"));
    const other = lockDataDirectory(elsewhere, "serve");
    if ("refused" in other) throw new Error(other.refused);
    try {
      rmSync(join(local, "citadel.lock"));
      symlinkSync(join(elsewhere, "citadel.lock"), join(local, "citadel.lock"));
      expect(() => client()).toThrow(notRunning);
    } finally {
      other.release();
    }
    rmSync(join(local, "citadel.lock"));
    const running = lockDataDirectory(local, "serve");
    if ("refused" in running) throw new Error(running.refused);
    try {
      expect(client()).toBe(join(local, "citadel.toml"));
    } finally {
      running.release();
    }
    expect(() => client()).toThrow(notRunning);
  });

  // Root may look anywhere: the look is made as user nobody then (runuser), as an operator without sudo would.
  const asRoot = process.getuid?.() === 0;
  test.skipIf(asRoot && !Bun.which("runuser"))("one this user may not look at stops with what to do, not the lookup of an empty ./.citadel (found in review)", async () => {
    const open = mkdtempSync(join(tmpdir(), "citadel-installed-"));
    chmodSync(open, 0o755);
    const etc = join(open, "etc-citadel");
    mkdirSync(etc);
    writeFileSync(join(etc, "citadel.toml"), "");
    const installed = join(etc, "citadel.toml");
    const lookup = async () => {
      const script = `
        const { loadConfig } = await import(${JSON.stringify(import.meta.resolve("../../../src/config/load.ts"))});
        const { buildConfigSchema } = await import(${JSON.stringify(import.meta.resolve("../../../src/config/schema.ts"))});
        try {
          console.log(JSON.stringify({ path: loadConfig({ schema: buildConfigSchema([]), env: {}, cwd: ${JSON.stringify(open)}, installedConfig: ${JSON.stringify(installed)} }).configPath }));
        } catch (error) {
          console.log(JSON.stringify({ error: error.name + ": " + error.message }));
        }`;
      const argv = [...(asRoot ? ["runuser", "-u", "nobody", "--"] : []), process.execPath, "-e", script];
      const child = Bun.spawn(argv, { cwd: open, stdout: "pipe", stderr: "inherit" });
      expect(await child.exited).toBe(0);
      return JSON.parse(await new Response(child.stdout).text());
    };
    try {
      chmodSync(etc, 0o000);
      expect(await lookup()).toEqual({ error: `ConfigError: cannot read ${installed}: run as root or as a member of group citadel` });
      chmodSync(etc, 0o755);
      expect(await lookup()).toEqual({ path: installed });
    } finally {
      chmodSync(etc, 0o700);
      rmSync(open, { recursive: true, force: true });
    }
  });
});

describe("bad configurations stop start-up naming the key", () => {
  const bad: Array<[string, string, Record<string, string>, RegExp]> = [
    ["unknown top-level key", "colour = 1\n", {}, /^colour: unknown key/],
    ["unknown nested key", "[http]\nprot = 1\n", {}, /^http\.prot: unknown key/],
    ["wrong type", '[http]\nport = "8443"\n', {}, /^http\.port: must be an integer/],
    ["out of range", "[http]\nport = 70000\n", {}, /^http\.port: must be at most 65535/],
    ["below minimum", "[http]\nbody_limit_bytes = 10\n", {}, /^http\.body_limit_bytes: must be at least 1024/],
    ["not an IP", '[http]\naddress = "example.org"\n', {}, /^http\.address: must be an IP address/],
    ["bad CIDR in a list", '[http]\ntrusted_proxies = ["10.0.0.0/8", "10.0.0.1/8"]\n', {}, /^http\.trusted_proxies\[1\]: must be a CIDR/],
    ["bad enum", '[log]\nlevel = "loud"\n', {}, /^log\.level: must be one of: debug, info, warn, error/],
    ["section of the wrong type", "http = 3\n", {}, /^http: must be a table/],
    ["empty path", '[http.tls]\ncert_file = ""\n', {}, /^http\.tls\.cert_file: must not be empty/],
    ["plain HTTP off loopback", '[http]\naddress = "0.0.0.0"\n[http.tls]\nenabled = false\n', {}, /^http\.tls\.enabled: plain HTTP is only allowed on a loopback address/],
    // The device login's page, where people type their password, is made from it (http.public_url).
    ["public URL not a URL", '[http]\npublic_url = "citadel.example.eu/citadel"\n', {}, /^http\.public_url: must be an absolute URL such as https:\/\/citadel\.example\.eu\/citadel, and it is "citadel\.example\.eu\/citadel"$/],
    ["public URL in plain HTTP to another host", '[http]\npublic_url = "http://citadel.example.eu/citadel"\n', {}, /^http\.public_url: must be an https URL \(http only to a loopback host/],
    ["public URL of another scheme", '[http]\npublic_url = "ftp://citadel.example.eu/"\n', {}, /^http\.public_url: must be an https URL, and it is/],
    // Refused rather than repaired by the URL parser: the address people are shown is the one checked.
    ["public URL with spaces around it", "", { CITADEL_HTTP_PUBLIC_URL: " https://citadel.example.eu/citadel " }, /^http\.public_url: must be an absolute URL/],
    ["public URL with a tab in it", "", { CITADEL_HTTP_PUBLIC_URL: "https://citadel.example.eu/cit\tadel" }, /^http\.public_url: must be an absolute URL/],
    ["public URL without its slashes", '[http]\npublic_url = "https:citadel.example.eu/citadel"\n', {}, /^http\.public_url: must be an absolute URL/],
    ["public URL with a user name", '[http]\npublic_url = "https://admin@citadel.example.eu/"\n', {}, /^http\.public_url: must not carry a user name or password/],
    ["public URL with a query", '[http]\npublic_url = "https://citadel.example.eu/citadel?"\n', {}, /^http\.public_url: must not have a query or a fragment/],
    ["public URL with a fragment", "", { CITADEL_HTTP_PUBLIC_URL: "https://citadel.example.eu/#x" }, /^http\.public_url: must not have a query or a fragment/],
    ["plugin key out of range", "[dns]\nport = 0\n", {}, /^dns\.port: must be at least 1/],
    ["a plugin section's check, from the file", "[window]\nlow = 5\nhigh = 2\n", {}, /^window\.high: must be at least window\.low \(5\), is 2$/],
    ["a plugin section's check, against a default", "", { CITADEL_WINDOW_HIGH: "0" }, /^window\.high: must be at least window\.low \(1\), is 0$/],
    // The schema first: the check is never given a value of the wrong type.
    ["a wrong type is the schema's error, not the check's", '[window]\nhigh = "2"\n', {}, /^window\.high: must be an integer/],
    ["TOML syntax", "[http\nport = 1\n", {}, /\.toml:1:\d+: invalid TOML: /],
    ["duplicate key", "[http]\nport = 1\nport = 2\n", {}, /\.toml:3:1: invalid TOML: trying to redefine/],
    ["unknown env variable", "", { CITADEL_HTTP_PROT: "1" }, /^environment variable CITADEL_HTTP_PROT: not a configuration key \(did you mean CITADEL_HTTP_PORT\?\)/],
    ["env not an integer", "", { CITADEL_HTTP_PORT: "eighty" }, /^environment variable CITADEL_HTTP_PORT: must be an integer/],
    ["env not a boolean", "", { CITADEL_HTTP_TLS_ENABLED: "maybe" }, /^environment variable CITADEL_HTTP_TLS_ENABLED: must be true or false/],
    // Decimal only (found in review: Number() took 0x10 as 16).
    ["env number in hex", "", { CITADEL_RATE_LIMIT_AUTH_PER_SECOND: "0x10" }, /^environment variable CITADEL_RATE_LIMIT_AUTH_PER_SECOND: must be a number/],
    ["env value out of range names the variable", "", { CITADEL_HTTP_PORT: "99999" }, /^http\.port: must be at most 65535 \(in environment variable CITADEL_HTTP_PORT\)/],
    // The audit log in the clear over the network: only with insecure = true, as the CLI refuses http:// to another host.
    ["syslog in plain TCP to another host", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "siem.example.eu"\ntls = false\n', {}, /^audit\.forward\.syslog\.tls: plain TCP is only allowed to a loopback address, and audit\.forward\.syslog\.address is siem\.example\.eu \(set audit\.forward\.syslog\.insecure = true/],
    ["syslog in plain TCP to a LAN address", "", { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "10.0.0.5", CITADEL_AUDIT_FORWARD_SYSLOG_TLS: "false" }, /^audit\.forward\.syslog\.tls: plain TCP is only allowed to a loopback address/],
    ["syslog without an address", '[audit.forward]\nto = "syslog"\n', {}, /^audit\.forward\.syslog\.address: required when audit\.forward\.to is "syslog"$/],
    ["syslog address with a port", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "siem.example:6514"\n', {}, /^audit\.forward\.syslog\.address: a host name or address, without a port \(use audit\.forward\.syslog\.port\), and it is siem\.example:6514$/],
    ["syslog loopback address with a port, in plain TCP", "", { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "127.0.0.1:514", CITADEL_AUDIT_FORWARD_SYSLOG_TLS: "false" }, /^audit\.forward\.syslog\.address: a host name or address, without a port \(use audit\.forward\.syslog\.port\)/],
    ["syslog address an IPv6 address with a port after it", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "2001:db8:0:0:0:0:0:5:6514"\n', {}, /^audit\.forward\.syslog\.address: a host name or address, without a port/],
    ["syslog address with a scheme", '[audit.forward.syslog]\naddress = "tcp://siem"\n', {}, /^audit\.forward\.syslog\.address: must be a host name or an IP address/],
    ["syslog IPv6 address in brackets", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "[::1]"\n', {}, /^audit\.forward\.syslog\.address: must be a host name or an IP address, without brackets or a port /],
    ["syslog IPv6 address in brackets with a port", "", { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "[::1]:6514" }, /^audit\.forward\.syslog\.address: must be a host name or an IP address, without brackets or a port /],
    ["syslog pinned and with a CA", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "siem"\nca_file = "ca.pem"\nfingerprint = "' + "AB".repeat(32) + '"\n', {}, /^audit\.forward\.syslog\.fingerprint: set with audit\.forward\.syslog\.ca_file; set one/],
    ["syslog fingerprint not SHA-256", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "siem"\nfingerprint = "AB:CD"\n', {}, /^audit\.forward\.syslog\.fingerprint: must be a SHA-256 fingerprint, 64 hex digits/],
    ["syslog client certificate without its key", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "siem"\ncert_file = "client.pem"\n', {}, /^audit\.forward\.syslog\.cert_file: set without audit\.forward\.syslog\.key_file; a client certificate needs both$/],
    ["syslog TLS settings without TLS", '[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\naddress = "127.0.0.1"\ntls = false\nca_file = "ca.pem"\n', {}, /^audit\.forward\.syslog\.ca_file: set, but audit\.forward\.syslog\.tls is false$/],
    ["syslog facility unknown", '[audit.forward.syslog]\nfacility = "security"\n', {}, /^audit\.forward\.syslog\.facility: must be one of: kern, /],
    ["syslog app name with a space", '[audit.forward.syslog]\napp_name = "cita del"\n', {}, /^audit\.forward\.syslog\.app_name: must be printable ASCII without spaces/],
  ];
  for (const [name, toml, env, expected] of bad) {
    test(name, () => {
      let error: unknown;
      try {
        load(toml, env);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(expected);
    });
  }

  test("syslog in plain TCP: to a collector on this host, or elsewhere when the operator says insecure; settings for it are not checked while to is not syslog", () => {
    const syslog = (lines: string) => load(`[audit.forward]\nto = "syslog"\n[audit.forward.syslog]\n${lines}`).config.audit.forward.syslog;
    for (const address of ["127.0.0.1", "::1", "localhost"]) expect(syslog(`address = "${address}"\nport = 514\ntls = false\n`)).toMatchObject({ address, tls: false });
    expect(syslog('address = "siem.example.eu"\ntls = false\ninsecure = true\n')).toMatchObject({ tls: false, insecure: true });
    expect(syslog('address = "siem.example.eu"\n')).toMatchObject({ port: 6514, tls: true, facility: "authpriv", app_name: "citadel" });
    expect(syslog('address = "2001:db8::5"\n')).toMatchObject({ address: "2001:db8::5" }); // a colon in an IPv6 address is no port
    expect(load('[audit.forward.syslog]\naddress = "siem.example.eu"\ntls = false\n').config.audit.forward.to).toBe("off");
  });

  test("a file value error names the file", () => {
    expect(() => load("[http]\nport = -1\n")).toThrow(/http\.port: must be at least 0 \(in .*\.toml\)/);
  });

  test("a file that is not UTF-8 is refused, naming it, rather than read with its bytes replaced (found in review: data_dir silently changed)", () => {
    const path = join(dir, "latin1.toml");
    writeFileSync(path, Buffer.concat([Buffer.from('data_dir = "/srv/d'), Buffer.from([0xe9]), Buffer.from('ta"\n')]));
    expect(() => loadConfig({ schema, env: {}, configFlag: path, cwd: dir })).toThrow(new ConfigError(`${path}: not UTF-8 text (TOML files are UTF-8): save it as UTF-8`));
    // UTF-8 itself, beyond ASCII, is read as written.
    writeFileSync(path, 'data_dir = "/srv/d\u00e9ta"\n');
    expect(loadConfig({ schema, env: {}, configFlag: path, cwd: dir }).config.data_dir).toBe("/srv/d\u00e9ta");
  });

  test("a named config file that does not exist", () => {
    expect(() => loadConfig({ schema, env: {}, configFlag: join(dir, "missing.toml"), cwd: dir })).toThrow(/cannot read config file .*missing\.toml: no such file/);
  });

  test("CITADEL_CONFIG naming a directory", () => {
    mkdirSync(join(dir, "adir"), { recursive: true });
    expect(() => loadConfig({ schema, env: { CITADEL_CONFIG: join(dir, "adir") }, cwd: dir })).toThrow(/is a directory/);
  });

  test("a config path that cannot be read (a file used as a directory)", () => {
    const file = join(dir, "plain-file");
    writeFileSync(file, "");
    expect(() => loadConfig({ schema, env: {}, configFlag: join(file, "citadel.toml"), cwd: dir })).toThrow(/cannot read config file .*plain-file\/citadel\.toml: a path component is not a directory/);
  });
});
