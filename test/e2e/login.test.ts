/**
 * `citadel login` end to end on the compiled binary: the device flow from a real CLI
 * process, approval through the API, the stored token (mode 0600) used by later commands.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, callApi, ensureBinary, firstLogin, freePort, oneTimePassword, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";

const data = tempDir();
const configHome = mkdtempSync(join(tmpdir(), "citadel-login-home-"));
let citadel: RunningCitadel;
let operator: string;
let port: number;

beforeAll(async () => {
  await ensureBinary();
  port = await freePort();
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port) });
  operator = await firstLogin(citadel.url, readFileSync(join(data.path, "tls/cert.pem"), "utf8"), oneTimePassword(citadel.stderr()));
});
afterAll(async () => {
  citadel.proc.kill("SIGKILL");
  data.remove();
  rmSync(configHome, { recursive: true, force: true });
});

/** Runs `citadel login` with `args`, approves the code it shows through the API, and waits for it. */
async function loginApproved(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([BINARY, "login", ...args], { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  let shown = "";
  const reader = proc.stderr.getReader();
  while (!/code ([A-Z]{4}-[A-Z]{4})/.test(shown)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`citadel login ended early: ${shown}`);
    shown += new TextDecoder().decode(value);
  }
  const userCode = shown.match(/code ([A-Z]{4}-[A-Z]{4})/)![1]!;
  expect(shown).toContain(`${citadel.url}/oauth/device?user_code=${userCode}`);
  const approve = await fetch(`${citadel.url}/v1/iam/device/approve`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${operator}` },
    body: JSON.stringify({ user_code: userCode, approve: true }),
    tls: { ca: readFileSync(join(data.path, "tls/cert.pem"), "utf8") },
  });
  expect(approve.status).toBe(200);
  const rest = (async () => {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) shown += new TextDecoder().decode(chunk.value);
  })();
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited, rest]);
  return { code, stdout, stderr: shown };
}

test("citadel login: approve the shown code, then commands use the stored token", async () => {
  const env = { PATH: process.env.PATH ?? "", HOME: configHome, XDG_CONFIG_HOME: configHome, CITADEL_HTTP_PORT: String(port) };
  const { code, stdout } = await loginApproved(["--data", data.path], env);
  expect(code).toBe(0);
  expect(stdout).toContain("as admin@localhost");
  const file = join(configHome, "citadel", "config.json");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(statSync(join(configHome, "citadel")).mode & 0o777).toBe(0o700);
  const stored = JSON.parse(readFileSync(file, "utf8"));
  expect(stored.token).toMatch(/^citadel_pat_/);
  expect(stored.server).toBe(citadel.url);

  // Without --data: the stored login (server, pinned certificate, token) is used.
  const whoami = await runCitadel(["whoami", "--json"], env);
  expect(whoami.stderr).toBe("");
  expect(JSON.parse(whoami.stdout).email).toBe("admin@localhost");
  // An empty CITADEL_TOKEN is no token: the stored login is used (found in review: "log in first").
  const emptyToken = await runCitadel(["whoami", "--json"], { ...env, CITADEL_TOKEN: "" });
  expect([emptyToken.code, emptyToken.stderr]).toEqual([0, ""]);
  expect(JSON.parse(emptyToken.stdout).email).toBe("admin@localhost");
  // With --data naming that very instance: the stored login too (found in review: it was dropped).
  const local = await runCitadel(["--data", data.path, "whoami", "--json"], env);
  expect([local.code, local.stderr]).toEqual([0, ""]);
  expect(JSON.parse(local.stdout).email).toBe("admin@localhost");

  chmodSync(file, 0o644);
  const refused = await runCitadel(["whoami"], env);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain("is readable by others (mode 644)");
  chmodSync(file, 0o600);

  // A CI token made from this login outlives the logout (docs/identity.md).
  const made = await runCitadel(["token", "create", "ci", "--scope", "iam:self", "--json"], env);
  expect(made.code).toBe(0);
  const ciToken = JSON.parse(made.stdout).token as string;
  const me = (token: string) => fetch(`${citadel.url}/v1/iam/me`, { headers: { authorization: `Bearer ${token}` }, tls: { ca: readFileSync(join(data.path, "tls/cert.pem"), "utf8") } });
  expect((await me(ciToken)).status).toBe(200);

  const out = await runCitadel(["logout"], env);
  expect(out.stdout).toContain("Logged out.");
  expect(out.stderr).toBe("");
  // The token was revoked on the server too; the CI token stays.
  expect((await me(stored.token)).status).toBe(401);
  expect((await me(ciToken)).status).toBe(200);
}, 30_000);

test("citadel login --server with the printed fingerprint pins the certificate; a wrong fingerprint is refused", async () => {
  const env = { PATH: process.env.PATH ?? "", HOME: configHome, XDG_CONFIG_HOME: configHome };
  const wrong = await runCitadel(["login", "--server", citadel.url, "--fingerprint", "00".repeat(32)], env);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toContain("not the certificate fingerprint given (64 hex digits are taken as the certificate's SHA-256 fingerprint, not its public key's): refusing to talk to it");
  const check = await runCitadel(["token", "check", "citadel_pat_abcdefgh_" + "x".repeat(38)], env);
  expect(check.code).toBe(1);
  expect(check.stdout).toContain("not a Citadel token");
});

test("a --fingerprint of neither shape is a usage error (exit 2) before the server is reached, not a mismatch that reads as an attack (found in review)", async () => {
  const env = { PATH: process.env.PATH ?? "", HOME: configHome, XDG_CONFIG_HOME: configHome };
  const pin = citadel.pin!;
  for (const given of [pin.slice("sha256//".length), `sha256/${pin.slice(8)}`, `${pin}x`, "sha1 Fingerprint=AB:CD", "", "garbage"]) {
    const run = await runCitadel(["login", "--server", citadel.url, "--fingerprint", given], env);
    expect([given, run.code, run.stderr]).toEqual([given, 2, expect.stringContaining("--fingerprint: give the server's public key pin, sha256// and 44 base64 characters")]);
    expect([given, run.stderr]).toEqual([given, expect.not.stringContaining("refusing to talk to it")]);
  }
});

test("the fingerprint citadel serve prints is the one citadel login --server accepts", async () => {
  // The right fingerprint gets past pinning to the device flow (which we do not finish here).
  const env = { PATH: process.env.PATH ?? "", HOME: configHome, XDG_CONFIG_HOME: configHome };
  const proc = Bun.spawn([BINARY, "login", "--server", citadel.url, "--fingerprint", citadel.fingerprint!], { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  let shown = "";
  const reader = proc.stderr.getReader();
  while (!shown.includes("Waiting")) {
    const { value, done } = await reader.read();
    if (done) break;
    shown += new TextDecoder().decode(value);
  }
  proc.kill("SIGTERM");
  await proc.exited;
  expect(shown).toMatch(/check that it shows the code [A-Z]{4}-[A-Z]{4}/);
});

test("CITADEL_SERVER naming the stored login's server keeps its pinned certificate for the login that follows (found in review)", async () => {
  const home = mkdtempSync(join(tmpdir(), "citadel-login-home-"));
  try {
    const certificate = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
    // A token of its own as the stored login: the login that follows logs the one it replaces out.
    const previous = (await callApi(citadel.url, certificate, operator, "POST", "/v1/iam/me/tokens", { name: "stored", scopes: ["read", "iam:self"] })).body.token as string;
    const previousId = previous.split("_")[2];
    const file = join(home, "citadel", "config.json");
    mkdirSync(join(home, "citadel"), { mode: 0o700 });
    writeFileSync(file, JSON.stringify({ server: citadel.url, token: previous, token_id: previousId, certificate }), { mode: 0o600 });
    const env = { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home, CITADEL_SERVER: citadel.url };
    const { code, stderr } = await loginApproved([], env);
    expect(stderr).not.toContain("did not present a certificate");
    expect(code).toBe(0);
    expect(JSON.parse(readFileSync(file, "utf8")).token).toMatch(/^citadel_pat_/);
    // The login replaced is over (found in an operator's walkthrough: each login --scope left one more live).
    expect(stderr).toContain(`Logged out the previous login's token (id ${previousId}); the tokens made with it stay.`);
    expect((await callApi(citadel.url, certificate, previous, "GET", "/v1/iam/me")).status).toBe(401);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}, 30_000);

test("a refused token or a missing scope says what to do, by where the token came from; logout forgets a token refused already (found in review)", async () => {
  const home = mkdtempSync(join(tmpdir(), "citadel-login-home-"));
  try {
    const certificate = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
    const pat = async (scopes: string[]) => (await callApi(citadel.url, certificate, operator, "POST", "/v1/iam/me/tokens", { name: "t", scopes })).body.token as string;
    const narrow = await pat(["iam:self"]);
    const revoked = await pat(["read"]);
    expect((await callApi(citadel.url, certificate, operator, "DELETE", `/v1/iam/me/tokens/${revoked.split("_")[2]}`)).status).toBe(200);
    const file = join(home, "citadel", "config.json");
    mkdirSync(join(home, "citadel"), { mode: 0o700 });
    const storeLogin = (token: string) => writeFileSync(file, JSON.stringify({ server: citadel.url, token, token_id: token.split("_")[2], certificate }), { mode: 0o600 });
    const env = { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home };

    storeLogin(narrow);
    const viaLogin = await runCitadel(["system", "info"], env);
    expect([viaLogin.code, viaLogin.stderr]).toEqual([1, expect.stringContaining('citadel login --scope "read write iam:self system:read"')]);
    const viaEnv = await runCitadel(["system", "info"], { ...env, CITADEL_TOKEN: narrow });
    expect([viaEnv.code, viaEnv.stderr]).toEqual([1, expect.stringContaining('citadel token create NAME --scope "system:read"')]);

    storeLogin(revoked);
    const stale = await runCitadel(["whoami"], env);
    expect([stale.code, stale.stderr]).toEqual([1, expect.stringContaining("The token was revoked. (unauthorized")]);
    expect(stale.stderr).toContain("the stored login no longer works: run citadel login");
    const staleEnv = await runCitadel(["whoami"], { ...env, CITADEL_TOKEN: revoked });
    expect(staleEnv.stderr).toContain("CITADEL_TOKEN is not valid");

    const out = await runCitadel(["logout"], env);
    expect([out.code, out.stderr]).toEqual([0, ""]);
    expect(out.stdout).toContain("already refused the token, so there was nothing to revoke");
    expect(existsSync(file)).toBe(false);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
