/**
 * The compiled binary, end to end: first start on an empty data directory, TLS pinned by
 * the printed fingerprint, graceful stop, restart on the same data, and the CLI's errors.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { ensureBinary, firstLogin, freePort, login, oneTimePassword, OWNER_PASSPHRASE, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { pinnedGet } from "../helpers/pinned-https.ts";

const data = tempDir();
const running: RunningCitadel[] = [];
let port: number;

beforeAll(async () => {
  await ensureBinary();
  port = await freePort();
});
afterAll(() => {
  for (const r of running) r.proc.kill("SIGKILL");
  data.remove();
});

const mode = (path: string) => statSync(path).mode & 0o777;

describe("first start on an empty data directory", () => {
  let citadel: RunningCitadel;
  let fingerprint: string;

  beforeAll(async () => {
    citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port) });
    running.push(citadel);
    fingerprint = citadel.fingerprint!;
  });

  test("prints the URL, the public key pin clients pin, and the certificate's SHA-256 fingerprint", async () => {
    expect(citadel.url).toBe(`https://127.0.0.1:${port}`);
    expect(fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(citadel.pin).toMatch(/^sha256\/\/[A-Za-z0-9+/]{43}=$/);
    expect(citadel.stderr()).toContain(`serving https://127.0.0.1:${port}`);
    expect(citadel.stderr()).toContain(`TLS public key pin: ${citadel.pin} (certificate SHA-256 fingerprint ${fingerprint})`);
  });

  test("creates the defaults with owner-only modes", () => {
    expect(mode(data.path)).toBe(0o700);
    expect(mode(join(data.path, "tls"))).toBe(0o700);
    for (const file of ["citadel.toml", "citadel.db", "tls/cert.pem", "tls/key.pem"]) expect([file, mode(join(data.path, file))]).toEqual([file, 0o600]);
  });

  test("writes a config that documents every key and parses", () => {
    const text = readFileSync(join(data.path, "citadel.toml"), "utf8");
    expect(text).toContain("#port = 8443");
    expect(text).toContain("# Environment: CITADEL_HTTP_TLS_CERT_FILE");
    expect(() => parse(text)).not.toThrow();
  });

  test("/healthz answers over TLS to a client that pins the printed fingerprint", async () => {
    const res = await pinnedGet(citadel.url, fingerprint, "/healthz");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: "ok" });
    expect(res.headers["strict-transport-security"]).toContain("max-age=");
    // Another fingerprint for sure (one in 256 starts with "00" already).
    const other = (fingerprint.startsWith("00") ? "11" : "00") + fingerprint.slice(2);
    await expect(pinnedGet(citadel.url, other, "/healthz")).rejects.toThrow(/not the pinned/);
  });

  test("/readyz answers; the build is baked in", async () => {
    expect((await pinnedGet(citadel.url, fingerprint, "/readyz")).status).toBe(200);
    const version = JSON.parse((await runCitadel(["version", "--json"])).stdout);
    expect(version.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(version.commit).not.toBe("dev");
    expect(Date.parse(version.build_time)).toBeGreaterThan(0);
  });

  test("the first start makes the first organization and owner, with a one-time password shown once", () => {
    expect(citadel.stderr()).toMatch(/Organization "default" \(org_\w+\) with owner admin@localhost/);
    expect(oneTimePassword(citadel.stderr())).toMatch(/^[0-9A-Za-z]{20}$/);
  });

  test("the API refuses without a token; the CLI talks to it with one, through the data directory's certificate", async () => {
    expect((await pinnedGet(citadel.url, fingerprint, "/v1/system/info")).status).toBe(401);
    const token = await firstLogin(citadel.url, readFileSync(join(data.path, "tls/cert.pem"), "utf8"), oneTimePassword(citadel.stderr()));
    const refused = await runCitadel(["system", "info", "--data", data.path], { CITADEL_HTTP_PORT: String(port) });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("(unauthorized");
    const res = await runCitadel(["system", "info", "--json", "--data", data.path], { CITADEL_HTTP_PORT: String(port), CITADEL_TOKEN: token });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).uptime_seconds).toBeGreaterThanOrEqual(0);
  });

  test("the binary checks requests as the source does: out-of-range numbers in a query are 422 (found in review)", async () => {
    // bun build --minify once renamed what Elysia's validator relied on: the binary let
    // ?limit=-1 through as a string, and SQLite read LIMIT '-11' as no limit at all.
    const certificate = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
    const token = await login(citadel.url, certificate, "admin@localhost", OWNER_PASSPHRASE);
    for (const path of ["/v1/audit/events?limit=-1", "/v1/audit/events?limit=0", "/v1/audit/events?limit=99999999999999999999999", "/v1/dns/analytics?minutes=-5"]) {
      const res = await fetch(`${citadel.url}${path}`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: certificate } });
      const body = (await res.json()) as { code?: string };
      expect([path, res.status, body.code]).toEqual([path, 422, "validation_failed"]);
    }
  });

  test("logs one JSON line per request", async () => {
    for (const until = Date.now() + 10_000; !citadel.logs().some((l) => l.msg === "request" && l.route === "/healthz") && Date.now() < until; ) await Bun.sleep(10);
    const lines = citadel.logs().filter((l) => l.msg === "request" && l.route === "/healthz");
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatchObject({ method: "GET", status: 200, client: "127.0.0.1" });
    expect(typeof lines[0]!.request_id).toBe("string");
  });

  test("SIGTERM stops it with exit code 0 within 5 s", async () => {
    const { code, ms } = await citadel.stop();
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
    expect(citadel.logs().some((l) => l.msg === "stopped")).toBe(true);
  });

  test("a second start reuses the data directory: same certificate, same config, no migrations", async () => {
    const configBefore = readFileSync(join(data.path, "citadel.toml"), "utf8");
    const again = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port) });
    running.push(again);
    expect(again.fingerprint).toBe(fingerprint);
    expect(again.logs().some((l) => l.msg === "applied migrations" || l.msg === "generated a self-signed TLS certificate")).toBe(false);
    expect(readFileSync(join(data.path, "citadel.toml"), "utf8")).toBe(configBefore);
    expect((await pinnedGet(again.url, fingerprint, "/healthz")).status).toBe(200);
    expect((await again.stop()).code).toBe(0);
  });
});

describe("the command line refuses bad input", () => {
  test("a bad config value: exit 2 and a message naming the key", async () => {
    const dir = tempDir();
    const res = await runCitadel(["serve", "--data", dir.path], { CITADEL_HTTP_PORT: "99999" });
    dir.remove();
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("http.port: must be at most 65535 (in environment variable CITADEL_HTTP_PORT)");
  });

  test("a config file with an unknown key: exit 2 naming the key and the file", async () => {
    const dir = tempDir();
    const file = join(dir.path, "c.toml");
    await Bun.write(file, "[http]\nport = 8443\nbind = \"0.0.0.0\"\n");
    const res = await runCitadel(["serve", "--config", file, "--data", join(dir.path, "data")]);
    dir.remove();
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`http.bind: unknown key (in ${file})`);
  });

  test("plain HTTP on a public address is refused", async () => {
    const dir = tempDir();
    const res = await runCitadel(["serve", "--data", dir.path], { CITADEL_HTTP_ADDRESS: "0.0.0.0", CITADEL_HTTP_TLS_ENABLED: "false" });
    dir.remove();
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("http.tls.enabled: plain HTTP is only allowed on a loopback address");
  });

  // A rule across keys (a section's check) is the loader's too: refused before anything is made
  // (found in review: serve initialized the data directory, printed a one-time password for an
  // owner, wrote the root key, and only then stopped when the intel plugin started).
  test("thresholds that decrease: every command exits 2 naming the key, the data directory untouched", async () => {
    const dir = tempDir();
    const dataDir = join(dir.path, "data");
    const env = { CITADEL_INTEL_THRESHOLD_REFUSE: "10", CITADEL_INTEL_THRESHOLD_THROTTLE: "50" };
    const results = [];
    for (const command of ["serve", "init", "doctor"]) results.push({ command, ...(await runCitadel([command, "--data", dataDir], env)) });
    const made = existsSync(dataDir);
    dir.remove();
    for (const res of results) {
      expect({ command: res.command, code: res.code }).toEqual({ command: res.command, code: 2 });
      expect(res.stderr).toBe("citadel: intel.threshold_refuse: must be at least intel.threshold_throttle (50), is 10\n");
      expect(res.stdout).toBe("");
    }
    expect(made).toBe(false);
  });

  test("a data directory open to others is refused", async () => {
    const dir = tempDir();
    Bun.spawnSync(["chmod", "755", dir.path]);
    const res = await runCitadel(["init", "--data", dir.path]);
    dir.remove();
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("is open to group or others (mode 755); run: chmod 700");
  });

  test("an unknown command or flag prints usage and exits 2", async () => {
    for (const args of [["frobnicate"], ["serve", "--verbose"], []]) {
      const res = await runCitadel(args);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain("Usage: citadel");
    }
  });

  test("valid global flags without a command: missing command, with usage, exit 2 (found in review)", async () => {
    for (const args of [["--data", "/x"], ["--json"]]) {
      const res = await runCitadel(args);
      expect([res.code, res.stderr.split("\n")[0]]).toEqual([2, "citadel: missing command"]);
      expect(res.stderr).toContain("Usage: citadel");
    }
  });

  test("with no login and no Citadel here, the CLI also names how to log in to one elsewhere (found in review)", async () => {
    const dir = tempDir();
    const res = await runCitadel(["whoami", "--data", dir.path]);
    dir.remove();
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("has Citadel been started here (citadel init)? For a Citadel elsewhere: citadel login --server URL --fingerprint sha256//... (the public key pin it prints)");
  });

  test("help and version exit 0", async () => {
    expect((await runCitadel(["help"])).code).toBe(0);
    const version = await runCitadel(["version", "--json"]);
    expect(version.code).toBe(0);
    expect(Object.keys(JSON.parse(version.stdout))).toEqual(["version", "commit", "build_time"]);
  });

  test("init is idempotent", async () => {
    const dir = tempDir();
    const first = await runCitadel(["init", "--json", "--data", dir.path]);
    const second = await runCitadel(["init", "--json", "--data", dir.path]);
    dir.remove();
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).created).toBe(true);
    expect(JSON.parse(second.stdout).created).toBe(false);
    expect(JSON.parse(second.stdout).tls_fingerprint_sha256).toBe(JSON.parse(first.stdout).tls_fingerprint_sha256);
  });

  test("the CLI says clearly when nothing is listening", async () => {
    const dir = tempDir();
    await runCitadel(["init", "--data", dir.path]);
    const res = await runCitadel(["system", "info", "--data", dir.path], { CITADEL_HTTP_PORT: String(await freePort()) });
    dir.remove();
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^citadel: cannot reach Citadel at https:\/\/127\.0\.0\.1:\d+ \(.+\); is it running\?\n$/);
  });
});
