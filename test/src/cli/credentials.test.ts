import { afterAll, afterEach, describe, expect, spyOn, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiClient } from "../../../src/cli/api-client.ts";
import { CredentialsFileError, credentialsPath, loginWithDeviceFlow, logout, readStoredLogin, refuseLoginInTheClear, type StoredLogin, trustOf, upgradeStoredPin } from "../../../src/cli/credentials.ts";
import { publicKeyPin } from "../../../src/cli/pin.ts";
import { generateSelfSignedCertificate } from "../../../src/http/self-signed.ts";
import type { CommandContext } from "../../../src/plugin.ts";
import { freePort } from "../../helpers/binary.ts";

const configHome = mkdtempSync(join(tmpdir(), "citadel-credentials-"));
afterAll(() => rmSync(configHome, { recursive: true, force: true }));

const ISSUED = `citadel_pat_abcdefgh_${"x".repeat(38)}`;
let server: ReturnType<typeof Bun.serve> | undefined;
afterEach(() => server?.stop(true));

/**
 * A device-flow server that answers the token endpoint's polls with `refusals` in turn, then
 * approves; answers /v1/iam/me with `me`, and records logouts and polls.
 */
async function deviceFlowServer(me: () => Response, refusals: Array<() => Response> = [], tls?: { cert: string; key: string }) {
  const logouts: string[] = [];
  const polls = { count: 0 };
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(tls ? { tls } : {}),
    fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/oauth/device/code") return Response.json({ device_code: "d", user_code: "ABCD-EFGH", verification_uri: "u", verification_uri_complete: "u", expires_in: 60, interval: 0 });
      if (path === "/oauth/token") return refusals[polls.count++]?.() ?? Response.json({ access_token: ISSUED });
      if (path === "/v1/iam/me") return me();
      if (path === "/v1/iam/logout") {
        logouts.push(request.headers.get("authorization") ?? "");
        return Response.json({});
      }
      return new Response("no", { status: 404 });
    },
  });
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${server.port}`, logouts, polls };
}

function context(url: string, lines: string[]): CommandContext {
  return {
    args: [],
    options: {},
    json: false,
    out: (text) => lines.push(text),
    err: (text) => lines.push(text),
    api: async () => createApiClient({ baseUrl: url }),
    configHome,
    env: {},
    dataDir: () => "",
    config: () => {
      throw new Error("no config here");
    },
    migrations: () => [],
  };
}

test("a token issued but not kept is revoked, not left valid with nobody holding it (found in review)", async () => {
  const { url, logouts } = await deviceFlowServer(() => Response.json({ detail: "boom", code: "internal" }, { status: 500 }));
  const lines: string[] = [];
  await expect(loginWithDeviceFlow(context(url, lines))).rejects.toThrow("boom (internal); the token just issued was revoked");
  expect(logouts).toEqual([`Bearer ${ISSUED}`]);
  expect(existsSync(credentialsPath(configHome))).toBe(false);
});

test("a login pinned by --fingerprint keeps the certificate it was answered over, whose key is the pin: the next command pins it at once, with no look at the server first (found in review)", async () => {
  const served = await generateSelfSignedCertificate({ dnsNames: ["citadel.example"], ipAddresses: ["127.0.0.1"], validDays: 30, now: new Date() });
  const { url } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }), [], { cert: served.certPem, key: served.keyPem });
  const lines: string[] = [];
  const ctx = context(url, lines);
  expect(await loginWithDeviceFlow({ ...ctx, options: { server: url, fingerprint: publicKeyPin(served.certPem) } })).toBe(0);
  const stored = readStoredLogin(configHome)!;
  expect(Object.keys(stored).sort()).toEqual(["certificate", "server", "token", "token_id"]);
  expect(new X509Certificate(stored.certificate!).fingerprint256).toBe(new X509Certificate(served.certPem).fingerprint256);
  expect(trustOf(stored)).toBe(stored.certificate);
});

test("a token kept is not revoked", async () => {
  const { url, logouts } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }));
  const lines: string[] = [];
  expect(await loginWithDeviceFlow(context(url, lines))).toBe(0);
  expect(lines.at(-1)).toContain("as a@example.com");
  expect(logouts).toEqual([]);
  rmSync(credentialsPath(configHome));
});

const PREVIOUS = `citadel_pat_previous_${"y".repeat(38)}`;

function storePreviousLogin(url: string) {
  mkdirSync(join(configHome, "citadel"), { recursive: true, mode: 0o700 });
  writeFileSync(credentialsPath(configHome), JSON.stringify({ server: url, token: PREVIOUS, token_id: "previous" }), { mode: 0o600 });
}

test("a new login logs the token it replaces out, which leaves it no live device login behind (found in an operator's walkthrough)", async () => {
  const { url, logouts } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }));
  storePreviousLogin(url);
  const lines: string[] = [];
  expect(await loginWithDeviceFlow(context(url, lines))).toBe(0);
  expect(logouts).toEqual([`Bearer ${PREVIOUS}`]);
  expect(lines.at(-1)).toBe("Logged out the previous login's token (id previous); the tokens made with it stay.");
  expect(JSON.parse(readFileSync(credentialsPath(configHome), "utf8")).token).toBe(ISSUED);
  rmSync(credentialsPath(configHome));
});

test("a replaced token that cannot be logged out is named, with how to revoke it; the new login stays (found in an operator's walkthrough)", async () => {
  const { url } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }));
  const gone = `http://127.0.0.1:${await freePort()}`;
  storePreviousLogin(gone);
  const lines: string[] = [];
  expect(await loginWithDeviceFlow(context(url, lines))).toBe(0);
  expect(lines.at(-1)).toContain("The previous login's token (id previous) could not be logged out (");
  expect(lines.at(-1)).toContain(`revoke it with citadel token revoke previous on ${gone} (log in there to do so) (the tokens made with it go too), else it stays valid until it expires.`);
  expect(JSON.parse(readFileSync(credentialsPath(configHome), "utf8")).token).toBe(ISSUED);
  rmSync(credentialsPath(configHome));
});

test("a poll refused by the login rate limit (429) is waited out, not the end of the login (found in review)", async () => {
  const limited = { status: 429, headers: { "retry-after": "1" } };
  const { url, polls } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }), [
    () => Response.json({ type: "about:blank", title: "Too Many Requests", status: 429, detail: "Too many requests; retry in 1 s.", code: "rate_limited" }, limited), // Citadel's own
    () => new Response("", limited), // a proxy's, with nothing but the header
    () => Response.json({ detail: "Waiting for approval.", code: "authorization_pending" }, { status: 400 }),
  ]);
  const lines: string[] = [];
  expect(await loginWithDeviceFlow(context(url, lines))).toBe(0);
  expect(lines.at(-1)).toContain("as a@example.com");
  expect(polls.count).toBe(4);
  expect(existsSync(credentialsPath(configHome))).toBe(true);
  rmSync(credentialsPath(configHome));
});

test("logout with a token the server refuses already (revoked, expired) forgets it and says so, instead of claiming it stays valid (found in review)", async () => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: await freePort(),
    fetch: () => Response.json({ detail: "The token was revoked.", code: "unauthorized" }, { status: 401, headers: { "www-authenticate": 'Bearer realm="citadel", error="invalid_token"' } }),
  });
  const url = `http://127.0.0.1:${server.port}`;
  mkdirSync(join(configHome, "citadel"), { recursive: true, mode: 0o700 });
  writeFileSync(credentialsPath(configHome), JSON.stringify({ server: url, token: ISSUED, token_id: "abcdefgh" }), { mode: 0o600 });
  const out: string[] = [];
  const err: string[] = [];
  const ctx = { ...context(url, out), err: (text: string) => err.push(text) };
  expect(await logout(ctx)).toBe(0);
  expect(existsSync(credentialsPath(configHome))).toBe(false);
  expect(out.join("\n")).toContain("already refused the token, so there was nothing to revoke: The token was revoked.");
  expect(err.join("\n")).not.toContain("stays valid");
});

test("logout from a server that cannot be reached fails (exit 1) naming the token's id and how to revoke it; the login is forgotten here (found in review)", async () => {
  const gone = `http://127.0.0.1:${await freePort()}`;
  mkdirSync(join(configHome, "citadel"), { recursive: true, mode: 0o700 });
  writeFileSync(credentialsPath(configHome), JSON.stringify({ server: gone, token: ISSUED, token_id: "abcdefgh" }), { mode: 0o600 });
  const lines: string[] = [];
  const refused = logout(context(gone, lines));
  await expect(refused).rejects.toThrow(`the stored login is forgotten here, but its token (id abcdefgh) could not be revoked on ${gone} (cannot reach Citadel at ${gone}`);
  await expect(refused).rejects.toThrow(`revoke it with citadel token revoke abcdefgh on ${gone} (log in there to do so) (the tokens made with it go too), else it stays valid until it expires`);
  expect(lines).toEqual([]);
  expect(existsSync(credentialsPath(configHome))).toBe(false);
});

test("logout --json answers JSON, logged in or not", async () => {
  rmSync(credentialsPath(configHome), { force: true });
  const out: string[] = [];
  const ctx = { ...context("http://127.0.0.1:1", out), json: true };
  expect(await logout(ctx)).toBe(0);
  expect(out.map((line) => JSON.parse(line))).toEqual([{ logged_out: false }]);
});

test("a stored login of another shape is refused naming the file, not read into 'baseUrl.replace' errors later (found in review)", () => {
  mkdirSync(join(configHome, "citadel"), { recursive: true, mode: 0o700 });
  const path = credentialsPath(configHome);
  for (const stored of [{}, [], "text", { server: 1, token: "t", token_id: "i" }, { server: "notaurl", token: "t", token_id: "i" }, { server: "https://h:8443", token: "t" }, { server: "https://h:8443", token: "t", token_id: "i", certificate: 5 }]) {
    writeFileSync(path, JSON.stringify(stored), { mode: 0o600 });
    expect(() => readStoredLogin(configHome)).toThrow(`${path} is not a stored login (a server URL, a token and its id); remove it and run citadel login`);
  }
  writeFileSync(path, JSON.stringify({ server: "https://h:8443", token: "t", token_id: "i" }), { mode: 0o600 });
  expect(readStoredLogin(configHome)).toEqual({ server: "https://h:8443", token: "t", token_id: "i" });
  rmSync(path);
});

test("a login stored by an earlier version with user:password@ in its server's URL is read without it, and stored so (found in review: refused, logout could not revoke its token)", () => {
  const home = mkdtempSync(join(tmpdir(), "citadel-credentials-userinfo-"));
  try {
    mkdirSync(join(home, "citadel"), { recursive: true, mode: 0o700 });
    for (const server of ["https://admin:hunter2@127.0.0.1:38813/", "https://ops:hunter2@ss@127.0.0.1:38813"]) {
      writeFileSync(credentialsPath(home), JSON.stringify({ server, token: "citadel_pat_x", token_id: "tok_1" }), { mode: 0o600 });
      expect(readStoredLogin(home)).toEqual({ server: "https://127.0.0.1:38813", token: "citadel_pat_x", token_id: "tok_1" });
      const kept = readFileSync(credentialsPath(home), "utf8");
      expect(kept).not.toContain("hunter2");
      expect(JSON.parse(kept).server).toBe("https://127.0.0.1:38813");
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test("a stored login trusts its server by the certificate it holds when that is over the pin's key (or there is no pin: pinned before pins named the key), else by the pin", async () => {
  const selfSigned = () => generateSelfSignedCertificate({ dnsNames: ["citadel.example"], ipAddresses: [], validDays: 30, now: new Date() });
  const [{ certPem }, other] = await Promise.all([selfSigned(), selfSigned()]);
  const login = { server: "https://citadel.example:8443", token: ISSUED, token_id: "tok_1" };
  expect(trustOf({ ...login, certificate: certPem })).toBe(certPem);
  expect(trustOf({ ...login, pin: publicKeyPin(certPem), certificate: certPem })).toBe(certPem);
  expect(trustOf({ ...login, pin: publicKeyPin(certPem), certificate: other.certPem })).toBe(publicKeyPin(certPem));
  expect(trustOf({ ...login, pin: publicKeyPin(certPem) })).toBe(publicKeyPin(certPem));
  expect(trustOf(login)).toBeUndefined();
});

test("a stored login's certificate is pinned as it is; the server renewed over the same key meanwhile answers, and the file keeps the renewed certificate, rewritten whole, still 0600; the same certificate, or a login replaced meanwhile, is left alone (found in review: the look, routed apart from fetch, locked logins out)", async () => {
  const home = mkdtempSync(join(tmpdir(), "citadel-credentials-renewed-"));
  try {
    const original = await generateSelfSignedCertificate({ dnsNames: ["citadel.example"], ipAddresses: ["127.0.0.1"], validDays: 30, now: new Date() });
    const renewed = await generateSelfSignedCertificate({ dnsNames: ["citadel.example"], ipAddresses: ["127.0.0.1"], validDays: 60, now: new Date(), keyPem: original.keyPem });
    server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: renewed.certPem, key: renewed.keyPem }, fetch: () => Response.json({ ok: true }) });
    mkdirSync(join(home, "citadel"), { recursive: true, mode: 0o700 });
    const old = { server: `https://127.0.0.1:${server.port}`, token: ISSUED, token_id: "tok_1", certificate: original.certPem };
    const file = () => JSON.parse(readFileSync(credentialsPath(home), "utf8"));
    writeFileSync(credentialsPath(home), JSON.stringify(old), { mode: 0o600 });
    // As the CLI makes its client for a stored login (main.ts, upgradingPin).
    const clientFor = (stored: StoredLogin) => createApiClient({ baseUrl: stored.server, trust: trustOf(stored), upgradeTrust: (pin) => upgradeStoredPin(home, stored, pin) });
    expect(await clientFor(readStoredLogin(home)!).request("GET", "/")).toEqual({ ok: true });
    expect(new X509Certificate(file().certificate).fingerprint256).toBe(new X509Certificate(renewed.certPem).fingerprint256);
    expect({ ...file(), certificate: "" }).toEqual({ ...old, certificate: "" });
    expect(statSync(credentialsPath(home)).mode & 0o777).toBe(0o600);
    // Now the one the server presents: pinned as it is, the file not written again.
    const kept = readFileSync(credentialsPath(home), "utf8");
    writeFileSync(credentialsPath(home), kept.replace("\n}", "}"), { mode: 0o600 });
    expect(await clientFor(readStoredLogin(home)!).request("GET", "/")).toEqual({ ok: true });
    expect(readFileSync(credentialsPath(home), "utf8")).toBe(kept.replace("\n}", "}"));
    // Another login stored since: not touched.
    const stored = { ...old, certificate: original.certPem };
    const other = { ...old, token: "citadel_pat_y", token_id: "tok_2" };
    writeFileSync(credentialsPath(home), JSON.stringify(other), { mode: 0o600 });
    upgradeStoredPin(home, stored, publicKeyPin(original.certPem));
    expect(file()).toEqual(other);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test("a stored certificate that is no certificate is handed on as it is, for the client to refuse with its advice", () => {
  expect(trustOf({ server: "https://citadel.example", token: ISSUED, token_id: "tok_1", certificate: "not a certificate" })).toBe("not a certificate");
});

describe("a login an earlier version stored over plain HTTP to another machine (found in review: refused as 'not a stored login', it failed every command and logout could not revoke it)", () => {
  const IN_THE_CLEAR = { server: "http://citadel.lan:8080", token: PREVIOUS, token_id: "previous" };

  function store(login: object): void {
    mkdirSync(join(configHome, "citadel"), { recursive: true, mode: 0o700 });
    writeFileSync(credentialsPath(configHome), JSON.stringify(login), { mode: 0o600 });
  }

  test("is read: a stored login is checked for its shape, whatever its scheme", () => {
    store(IN_THE_CLEAR);
    expect(readStoredLogin(configHome)).toEqual(IN_THE_CLEAR);
    rmSync(credentialsPath(configHome));
  });

  test("is refused where it would be used, saying why and how to replace it; one over HTTPS or to this machine is not", () => {
    const refused = (() => {
      try {
        refuseLoginInTheClear(IN_THE_CLEAR);
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toBeInstanceOf(CredentialsFileError);
    expect((refused as Error).message).toBe(
      "the stored login is to http://citadel.lan:8080, plain HTTP to another machine: its token would cross the network in the clear, so it is not sent. Log in again over HTTPS (citadel login --server https://citadel.lan:PORT, the address it serves HTTPS on), which revokes this token, or revoke it with citadel logout",
    );
    for (const server of ["https://citadel.lan:8443", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]) expect(() => refuseLoginInTheClear({ ...IN_THE_CLEAR, server })).not.toThrow();
  });

  test("a new login replaces it and revokes its token, as the refusal says", async () => {
    const { url } = await deviceFlowServer(() => Response.json({ email: "a@example.com" }));
    store(IN_THE_CLEAR);
    const realFetch = globalThis.fetch;
    const sentThere: Array<[string, string | null]> = [];
    const fetched = spyOn(globalThis, "fetch").mockImplementation((async (target: string, init?: RequestInit) => {
      if (!String(target).startsWith(IN_THE_CLEAR.server)) return realFetch(target, init);
      sentThere.push([String(target), new Headers(init?.headers).get("authorization")]);
      return Response.json({});
    }) as unknown as typeof fetch);
    try {
      const lines: string[] = [];
      expect(await loginWithDeviceFlow(context(url, lines))).toBe(0);
      expect(sentThere).toEqual([["http://citadel.lan:8080/v1/iam/logout", `Bearer ${PREVIOUS}`]]);
      // Said, as citadel logout says it (found in review: it went in the clear unsaid).
      expect(lines.at(-1)).toBe("Logged out the previous login's token (id previous) (it crossed the network in the clear once more to be revoked, plain HTTP to http://citadel.lan:8080, as it did at every request); the tokens made with it stay.");
    } finally {
      fetched.mockRestore();
      rmSync(credentialsPath(configHome));
    }
  });

  test("logout revokes its token, sent in the clear once more (the only way to end it), says so, and forgets it", async () => {
    store(IN_THE_CLEAR);
    const sent: Array<[string, string | null]> = [];
    const fetched = spyOn(globalThis, "fetch").mockImplementation((async (url: string, init?: RequestInit) => {
      sent.push([String(url), new Headers(init?.headers).get("authorization")]);
      return Response.json({});
    }) as unknown as typeof fetch);
    try {
      const out: string[] = [];
      const err: string[] = [];
      expect(await logout({ ...context(IN_THE_CLEAR.server, out), err: (text: string) => err.push(text) })).toBe(0);
      expect(sent).toEqual([["http://citadel.lan:8080/v1/iam/logout", `Bearer ${PREVIOUS}`]]);
      expect(out).toEqual(["Logged out."]);
      expect(err).toEqual(["The login is to http://citadel.lan:8080, plain HTTP to another machine: its token crosses the network in the clear once more to be revoked (as it did at every request)."]);
      expect(existsSync(credentialsPath(configHome))).toBe(false);
    } finally {
      fetched.mockRestore();
    }
  });
});
