/**
 * Renewing the self-signed certificate without breaking the clients that pinned it, on the
 * compiled binary: `citadel tls renew` keeps the key, so a CLI pinned by the public key goes on
 * after the reload; a login stored with the certificate itself (before pins named the key) is
 * trusted by that certificate's key, and keeps the key pin once it is used; `--new-key` makes
 * pinned clients refuse the server, saying so; a CLI that reaches the server only through a
 * proxy (HTTPS_PROXY) looks at its certificate through the proxy too.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publicKeyPin } from "../../src/cli/pin.ts";
import { connectProxy } from "../helpers/connect-proxy.ts";
import { callApi, ensureBinary, firstLogin, freePort, oneTimePassword, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";

const data = tempDir();
const home = mkdtempSync(join(tmpdir(), "citadel-tls-renew-home-"));
const loginFile = join(home, "citadel", "config.json");
let citadel: RunningCitadel;
let env: Record<string, string>;
let token: string;

const servedCertificate = () => readFileSync(join(data.path, "tls/cert.pem"), "utf8");

/** Sends SIGHUP and waits for the reload's log line `message`. */
async function reloadAndWaitFor(message: string): Promise<void> {
  const seen = citadel.logs().filter((l) => l.msg === message).length;
  citadel.proc.kill("SIGHUP");
  for (const deadline = Date.now() + 10_000; citadel.logs().filter((l) => l.msg === message).length === seen; ) {
    if (Date.now() > deadline) throw new Error(`no "${message}" in the log: ${JSON.stringify(citadel.logs().slice(-5))}`);
    await Bun.sleep(10);
  }
}

beforeAll(async () => {
  await ensureBinary();
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(await freePort()) });
  const operator = await firstLogin(citadel.url, servedCertificate(), oneTimePassword(citadel.stderr()));
  token = (await callApi(citadel.url, servedCertificate(), operator, "POST", "/v1/iam/me/tokens", { name: "stored", scopes: ["read", "iam:self"] })).body.token as string;
  // A login as an earlier version stored it: the certificate itself pinned.
  mkdirSync(join(home, "citadel"), { mode: 0o700 });
  writeFileSync(loginFile, JSON.stringify({ server: citadel.url, token, token_id: token.split("_")[2], certificate: servedCertificate() }), { mode: 0o600 });
  env = { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home };
});
afterAll(() => {
  citadel.proc.kill("SIGKILL");
  data.remove();
  rmSync(home, { recursive: true, force: true });
});

/** `citadel tls renew` over the same key, served once reloaded. */
async function renewOverTheSameKey(): Promise<void> {
  const before = new X509Certificate(servedCertificate()).fingerprint256;
  const renewed = await runCitadel(["--data", data.path, "tls", "renew"], env);
  expect(renewed.code).toBe(0);
  expect(renewed.stdout).toContain(`TLS public key pin: ${citadel.pin} (certificate SHA-256 fingerprint `);
  expect(renewed.stdout).toContain("Same key: clients that pinned its public key accept it as they are.");
  expect(new X509Certificate(servedCertificate()).fingerprint256).not.toBe(before);
  await reloadAndWaitFor("TLS certificate replaced over the same key: clients that pinned its public key accept it as they are");
}

test("a login that pinned the certificate goes on after a renewal over the same key, even one before its first use (found in review: refused), and keeps the renewed certificate, pinned by its key; a new key is refused, saying so", async () => {
  const whoami = () => runCitadel(["whoami", "--json"], env);
  await renewOverTheSameKey();
  const first = await whoami();
  expect([first.code, first.stderr]).toEqual([0, ""]);
  // Kept in place: the certificate the server answered over (pinned at once by the next command, without a look), over the key pinned; the file still 0600.
  const stored = JSON.parse(readFileSync(loginFile, "utf8"));
  expect([stored.pin, publicKeyPin(stored.certificate), new X509Certificate(stored.certificate).fingerprint256]).toEqual([undefined, citadel.pin, new X509Certificate(servedCertificate()).fingerprint256]);
  expect(statSync(loginFile).mode & 0o777).toBe(0o600);

  await renewOverTheSameKey();
  const afterRenewal = await whoami();
  expect([afterRenewal.code, afterRenewal.stderr]).toEqual([0, ""]);
  expect(JSON.parse(afterRenewal.stdout).email).toBe("admin@localhost");

  const newKey = await runCitadel(["--data", data.path, "tls", "renew", "--new-key", "--json"], env);
  expect(newKey.code).toBe(0);
  const { public_key_pin: newPin, same_key } = JSON.parse(newKey.stdout);
  expect([same_key, newPin === citadel.pin]).toEqual([false, false]);
  await reloadAndWaitFor("TLS certificate replaced over a new key: clients that pinned the old public key must pin the new one");
  const refused = await whoami();
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain(`did not present a certificate this client trusts (it presented a certificate with the public key ${newPin}, not the one pinned, ${citadel.pin}); if the server's certificate was replaced, pin the new one: citadel login --server ${citadel.url} --fingerprint sha256//...`);
}, 60_000);

test("each renewal by hand is in the audit log (sys.tls.renew): who ran it, the pins, whether the key is new (found in review: none was recorded)", () => {
  const db = new Database(join(data.path, "citadel.db"), { readonly: true });
  try {
    const events = db.query<{ actor_kind: string; outcome: string; resource_type: string; reason: string }, []>("SELECT actor_kind, outcome, resource_type, reason FROM audit_events WHERE action = 'sys.tls.renew' ORDER BY seq").all();
    const uid = process.getuid!();
    // The first test's three: two over the same key, then --new-key.
    expect(events.map((e) => [e.actor_kind, e.outcome, e.resource_type])).toEqual(Array(3).fill(["system", "success", "tls_certificate"]));
    expect(events[0]!.reason).toBe(`host-local renewal by uid ${uid}: same key ${citadel.pin}`);
    expect(events[2]!.reason).toMatch(new RegExp(`^host-local renewal by uid ${uid}: new key sha256//\\S+ \\(was ${citadel.pin!.replace(/[+/]/g, "\\$&")}\\)$`));
  } finally {
    db.close();
  }
});

test("tls renew refuses a certificate the operator manages: it is renewed where it was issued", async () => {
  const config = join(data.path, "other.toml");
  writeFileSync(config, `data_dir = ${JSON.stringify(data.path)}\n[http.tls]\ncert_file = "mine.pem"\nkey_file = "mine.key"\n`);
  const run = await runCitadel(["--config", config, "tls", "renew"], env);
  expect(run.code).toBe(2);
  expect(run.stderr).toContain("is a certificate you manage, not Citadel's self-signed one");
});

test("a CLI reachable to the server only through a proxy (HTTPS_PROXY): a login pinned by key, or by the certificate as before, works command after command (found in review: the look went straight to the server)", async () => {
  const proxy = await connectProxy({ "citadel.test": "127.0.0.1" });
  const proxied = mkdtempSync(join(tmpdir(), "citadel-tls-renew-proxied-"));
  try {
    const server = `https://citadel.test:${new URL(citadel.url).port}`;
    const proxiedEnv = { ...env, HOME: proxied, XDG_CONFIG_HOME: proxied, HTTPS_PROXY: proxy.url };
    const file = join(proxied, "citadel", "config.json");
    mkdirSync(join(proxied, "citadel"), { mode: 0o700 });
    for (const pinned of [{ pin: publicKeyPin(servedCertificate()) }, { certificate: servedCertificate() }]) {
      writeFileSync(file, JSON.stringify({ server, token, token_id: token.split("_")[2], ...pinned }), { mode: 0o600 });
      for (const _ of [1, 2]) {
        const run = await runCitadel(["whoami", "--json"], proxiedEnv);
        expect([Object.keys(pinned)[0], run.code, run.stderr]).toEqual([Object.keys(pinned)[0], 0, ""]);
      }
      // Kept: the pin, or the certificate the server answered over, whose key it is.
      const kept = JSON.parse(readFileSync(file, "utf8"));
      expect(kept.pin ?? publicKeyPin(kept.certificate)).toBe(publicKeyPin(servedCertificate()));
    }
    expect(new Set(proxy.tunnels)).toEqual(new Set([new URL(server).host]));
  } finally {
    await proxy.stop();
    rmSync(proxied, { recursive: true, force: true });
  }
}, 30_000);
