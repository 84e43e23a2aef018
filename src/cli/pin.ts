/**
 * Pinning a server by its public key, as SSH pins a host key and HPKP (RFC 7469) pinned a
 * site's: the pin is the SHA-256 of the certificate's SubjectPublicKeyInfo, written as curl's
 * --pinnedpubkey takes it, `sha256//` and base64. A certificate renewed over the same key (as
 * Citadel renews its self-signed one) keeps the pin; a new key does not.
 *
 * Pins made before were a whole certificate (PEM): they are taken as its key pin (storedKeyPin),
 * so a certificate renewed over that key since is accepted too, and that certificate as the one
 * last seen over it; the one the server answered over is kept in its place once it changed
 * (ApiClientOptions.upgradeTrust).
 *
 * TLS verifies against certificates, not keys: a request is made with a certificate over the
 * pinned key pinned (pinnedTls), which checks its validity dates and chain as a pinned certificate
 * always was. That certificate is the one last seen, kept with the pin (storedTrust); only when
 * there is none, or the server refuses the handshake with it (renewed meanwhile), is the server
 * looked at first, to find what it presents and check its key (withPinnedCertificate).
 */
import { X509Certificate } from "node:crypto";
import { isIP, type Socket } from "node:net";
import type { PeerCertificate } from "node:tls";
import { isPublicKeyPin, publicKeyPin } from "../crypto/public-key-pin.ts";
import { cidrContains, parseCidr, parseIp } from "../net/ip.ts";
import { UsageError } from "./command-line.ts";

export { isPublicKeyPin, publicKeyPin };

/** The key pin that `trust` (a key pin, or a certificate pinned before) amounts to. */
export function keyPinOf(trust: string): string {
  return isPublicKeyPin(trust) ? trust : publicKeyPin(trust);
}

/**
 * What a certificate pinned before (PEM, a login file's `certificate`, node.json's) is checked
 * by: its key pin, so that one renewed over the same key since is accepted, as it is once the
 * pin is rewritten (found in review: a renewal before the first connection locked every such
 * client out). One that is no certificate stays as it is, for pinnedTls to refuse with its advice.
 */
export function storedKeyPin(certificate: string): string {
  try {
    return publicKeyPin(certificate);
  } catch {
    return certificate;
  }
}

/**
 * What a client that stores a pin gives as its trust (ApiClientOptions.trust): the certificate last
 * seen over the pinned key, kept with the pin, pinned at once without a look (withPinnedCertificate);
 * the key pin when none was kept, or the one kept is over another key. A certificate without a
 * pin is one pinned before pins named the key: trusted by its key too (storedKeyPin).
 */
export function storedTrust(pin: string | null | undefined, certificate: string | null | undefined): string | undefined {
  if (certificate === null || certificate === undefined) return pin ?? undefined;
  if (pin === null || pin === undefined || storedKeyPin(certificate) === pin) return certificate;
  return pin;
}

/** The code of the error a pinned client's connection fails with when another certificate is presented. */
export const NOT_THE_PINNED_CERTIFICATE = "CERT_NOT_PINNED";

/** How long looking at a server's certificate may take. */
const TIMEOUT_MS = 30_000;

/**
 * The certificate a server presents (PEM), read without trusting it: the caller decides. It is
 * reached the way fetch reaches it, through the proxy fetch would take (proxyFor): a server
 * reachable only through a proxy was not reached, and the request that followed never went out
 * (found in review). A failure carries the socket's code (ECONNREFUSED, ETIMEDOUT), as a failed
 * fetch does.
 */
export async function presentedCertificate(server: string): Promise<string> {
  const { connect } = await import("node:tls");
  const url = new URL(server);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 443);
  // SNI carries names only (RFC 6066 §3): none for an address.
  const servername = isIP(host) ? undefined : host;
  const proxy = proxyFor(url);
  const tunnel = proxy ? await tunnelThrough(proxy, host, port) : undefined;
  return new Promise((resolve, reject) => {
    const socket = connect({ ...(tunnel ? { socket: tunnel } : { host, port }), rejectUnauthorized: false, ...(servername ? { servername } : {}) }, () => {
      const presented: PeerCertificate = socket.getPeerCertificate();
      socket.end();
      resolve(new X509Certificate(presented.raw).toString());
    });
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
    socket.on("error", (error) => {
      tunnel?.destroy();
      reject(error);
    });
  });
}

type Environment = Record<string, string | undefined>;

/**
 * The process environment as Bun's fetch reads it for itself (the proxy variables,
 * NODE_EXTRA_CA_CERTS): the look at a server's certificate must take fetch's own route. Not
 * Citadel's configuration; handed over by main.ts at start (configuration flows one way).
 */
let networkEnvironment: Environment = {};

export function useNetworkEnvironment(env: Environment): void {
  networkEnvironment = env;
}

export function theNetworkEnvironment(): Environment {
  return networkEnvironment;
}

/**
 * The proxy fetch goes through to `url` (https:), chosen as Bun 1.4.5's fetch chooses it (the
 * cases in test/src/cli/proxy-choice.test.ts, which asks fetch itself): https_proxy, else
 * HTTPS_PROXY; when neither names one, all_proxy, else ALL_PROXY (found in review: fetch took
 * ALL_PROXY, the look did not). Empty is unset, `""` or `''` names none; a proxy named without a
 * scheme is an http: one. None when no_proxy, else NO_PROXY, names the URL (bypassesProxy). A URL
 * that is none, or an ALL_PROXY of another scheme (socks5:), fetch ignores: straight to the
 * server. HTTPS_PROXY of another scheme fails fetch: refused here too. Null: straight to the server.
 */
export function proxyFor(url: URL, env: Environment = networkEnvironment): URL | null {
  const named = proxyNamed(env);
  if (named === null) return null;
  if (bypassesProxy(url, firstSet(env.no_proxy, env.NO_PROXY) ?? "")) return null;
  const parsed = URL.parse(/^[a-z][a-z0-9+.-]*:\/\//i.test(named.proxy) ? named.proxy : `http://${named.proxy}`);
  if (parsed === null) return null;
  if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed;
  if (named.variable === "ALL_PROXY") return null;
  throw new Error(`HTTPS_PROXY is not an http:// or https:// proxy's URL (${withoutCredentials(parsed)})`);
}

/** The proxy the environment names for https: URLs, and the variable (pair) that names it; null for none. */
function proxyNamed(env: Environment): { variable: "HTTPS_PROXY" | "ALL_PROXY"; proxy: string } | null {
  const https = firstSet(env.https_proxy, env.HTTPS_PROXY);
  if (https !== undefined && !namesNone(https)) return { variable: "HTTPS_PROXY", proxy: https };
  const all = firstSet(env.all_proxy, env.ALL_PROXY);
  return all === undefined || namesNone(all) ? null : { variable: "ALL_PROXY", proxy: all };
}

const namesNone = (proxy: string) => proxy === '""' || proxy === "''";

/**
 * A proxy's URL as an error may quote it: its scheme and host, never the user and password it
 * may carry (found in review: socks5://user:hunter2@... was quoted whole, and the mesh agent
 * logged it at every failed poll).
 */
function withoutCredentials(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`;
}

const firstSet = (...values: Array<string | undefined>) => values.find((value) => value !== undefined && value !== "");

/**
 * Whether a NO_PROXY list (comma-separated, any case) names `url`: only an entry that is exactly
 * `*` names every URL (`*.*` none: found in review). Otherwise an entry names a host — the host
 * itself, a domain it lies in (`example.com`, `.example.com` or `*.example.com`), an address range
 * (`10.0.0.0/8`) an address lies in — and, with `:port` (`host:8443`, `[::1]:8443`), only at that
 * port, the URL's or 443 (found in review: such entries were taken to name nothing). One final dot
 * is dropped from the host and from an entry (`citadel.example.` is `citadel.example`).
 */
function bypassesProxy(url: URL, noProxy: string): boolean {
  const host = withoutFinalDot(url.hostname.replace(/^\[|\]$/g, "").toLowerCase());
  const port = Number(url.port || 443);
  const address = parseIp(host);
  return noProxy.split(",").some((text) => {
    const entry = noProxyEntry(text);
    if (entry === null) return false;
    if (entry.everything) return true;
    if (entry.port !== undefined && entry.port !== port) return false;
    if (address) {
      const range = parseCidr(entry.host);
      return range !== null && cidrContains(range, address);
    }
    return host === entry.host || host.endsWith(`.${entry.host}`);
  });
}

/** One NO_PROXY entry read: `*` (everything), or a host or range and the port it names; null for one that names nothing. */
function noProxyEntry(text: string): { everything: true } | { everything: false; host: string; port?: number } | null {
  const entry = text.trim().toLowerCase();
  if (entry === "*") return { everything: true };
  // [v6]:port, [v6], host:port; two colons or more without brackets are an IPv6 address.
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(entry);
  const [rawHost, rawPort] = bracketed ? [bracketed[1]!, bracketed[2]] : entry.split(":").length === 2 ? entry.split(":") : [entry, undefined];
  // A port names nothing but a number; a range with a port (10.0.0.0/8:443) names nothing, as for fetch.
  if (rawPort !== undefined && (!/^\d+$/.test(rawPort) || rawHost!.includes("/"))) return null;
  const host = withoutFinalDot(rawHost!.replace(/^\*?\./, ""));
  if (host === "") return null;
  return { everything: false, host, ...(rawPort === undefined ? {} : { port: Number(rawPort) }) };
}

const withoutFinalDot = (name: string) => name.replace(/\.$/, "");

/** The most a proxy's answer to CONNECT may hold before the tunnel: a proxy that goes on is not one. */
const PROXY_HEAD_MAX_BYTES = 16_384;

/**
 * Where the head of a proxy's answer ends (the offset of what follows it), or null while it has
 * not: at an empty line, its line ends CRLF or a bare LF, as RFC 9112 §2.2 lets a recipient take
 * them (found in review: a proxy answering `HTTP/1.1 200 OK\n\n` hung the look).
 */
function endOfHead(head: Buffer): number | null {
  const end = /\n\r?\n/.exec(head.toString("latin1"));
  return end ? end.index + end[0].length : null;
}

/** A connection to the proxy: over TLS, verified as any server is, for an https:// one. */
async function connectTo(proxy: URL, connected: () => void): Promise<Socket> {
  const host = proxy.hostname.replace(/^\[|\]$/g, "");
  if (proxy.protocol === "http:") return (await import("node:net")).connect({ host, port: Number(proxy.port || 80) }, connected);
  return (await import("node:tls")).connect({ host, port: Number(proxy.port || 443), ...(isIP(host) ? {} : { servername: host }) }, connected);
}

/**
 * A connection to `host`:`port` through `proxy`'s HTTP CONNECT tunnel (RFC 9110 §9.3.6), as
 * fetch opens it, with the proxy's credentials when its URL carries some; TLS goes on over it.
 */
async function tunnelThrough(proxy: URL, host: string, port: number): Promise<Socket> {
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const credentials = proxy.username || proxy.password ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString("base64")}\r\n` : "";
  const socket = await connectTo(proxy, () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${credentials}\r\n`));
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const answered = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = endOfHead(head);
      if (end === null) {
        if (head.length > PROXY_HEAD_MAX_BYTES) socket.destroy(new Error(`the proxy ${proxy.host} answered CONNECT with no end to its head`));
        return;
      }
      socket.off("data", answered);
      socket.pause(); // what follows is TLS's to read
      const status = head.subarray(0, head.indexOf("\n")).toString("latin1").replace(/\r$/, "");
      if (!/^HTTP\/1\.[01] 2\d\d\b/.test(status)) {
        socket.destroy(new Error(`the proxy ${proxy.host} refused the tunnel to ${authority} (${status})`));
        return;
      }
      if (end < head.length) socket.unshift(head.subarray(end));
      socket.setTimeout(0);
      resolve(socket);
    };
    socket.on("data", answered);
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`the proxy ${proxy.host} closed the connection before it opened the tunnel to ${authority}`)));
  });
}

/** The refusal of a certificate whose key is not the pinned one: the message names both pins. */
export function notThePinnedKey(presented: string, pin: string): Error {
  return Object.assign(new Error(`it presented a certificate with the public key ${publicKeyPin(presented)}, not the one pinned, ${pin}`), { code: NOT_THE_PINNED_CERTIFICATE });
}

/** For each server and key pin, the certificate last seen to match: one look per process, not per request. */
const seen = new Map<string, string>();

const seenKey = (server: string, pin: string) => `${new URL(server).host} ${pin}`;

/**
 * The certificate over `trust`'s key (ApiClientOptions.trust) that `server` was last seen to
 * present in this process: what a client keeps with its pin once the server answered, so that the
 * next process pins it at once. Undefined when none was.
 */
export function certificateSeen(server: string, trust: string): string | undefined {
  return seen.get(seenKey(server, isPublicKeyPin(trust) ? trust : storedKeyPin(trust)));
}

/** The certificate `server` presents, when its key is `pin`'s; else the refusal (code NOT_THE_PINNED_CERTIFICATE). */
export async function certificateWithPinnedKey(server: string, pin: string): Promise<string> {
  const presented = await presentedCertificate(server);
  if (publicKeyPin(presented) !== pin) throw notThePinnedKey(presented, pin);
  seen.set(seenKey(server, pin), presented);
  return presented;
}

/** Whether a failed request's error is the server's certificate refused (during the handshake: nothing was sent). */
function certificateRefused(error: unknown): boolean {
  return /CERT|SSL|TLS|SELF_SIGNED|VERIFY/i.test((error as { code?: string }).code ?? "");
}

const sameCertificate = (a: string, b: string) => new X509Certificate(a).fingerprint256 === new X509Certificate(b).fingerprint256;

/**
 * Runs `attempt` with the certificate to pin for `trust`: a key pin, or a certificate over the
 * pinned key seen before (storedTrust). A certificate in hand (that one, or the one seen last in
 * this process) is pinned at once, without a look at the server: the request goes the way fetch
 * routes it, so a setup that works never depends on how the look is routed (found in review:
 * logins and nodes working through ALL_PROXY, or past NO_PROXY=host:port, were locked out once
 * they looked first). Refused in the handshake (the server renewed it meanwhile), the server is
 * looked at, its key checked, and the request made once more with what it presents: the
 * handshake failed, so the request was not sent. When the look cannot help (it finds the same
 * certificate, refused for another reason such as its dates; or it cannot reach the server) the
 * request's own refusal stands.
 */
export async function withPinnedCertificate<T>(server: string, trust: string, attempt: (certificate: string) => Promise<T>): Promise<T> {
  const pin = isPublicKeyPin(trust) ? trust : storedKeyPin(trust);
  if (!isPublicKeyPin(pin)) return attempt(trust); // no certificate: pinnedTls refuses it with its advice
  const known = seen.get(seenKey(server, pin)) ?? (trust === pin ? undefined : trust);
  if (known === undefined) return attempt(await certificateWithPinnedKey(server, pin));
  try {
    const answer = await attempt(known);
    seen.set(seenKey(server, pin), known);
    return answer;
  } catch (refused) {
    if (!certificateRefused(refused)) throw refused;
    seen.delete(seenKey(server, pin));
    const presented = await certificateWithPinnedKey(server, pin).catch((lookFailed: { code?: string }) => {
      throw lookFailed.code === NOT_THE_PINNED_CERTIFICATE ? lookFailed : refused;
    });
    if (sameCertificate(presented, known)) throw refused;
    return attempt(presented);
  }
}

/** What the operator gave as `--fingerprint`, checked for its shape: a key pin, or a certificate's SHA-256 fingerprint. */
export type GivenPin = { pin: string } | { certificateFingerprint: string };

/**
 * `--fingerprint` read: a key pin (`sha256//` and the base64 of 32 bytes, as citadel serve
 * prints it; the prefix in any case), or 64 hex digits, with or without colons, taken as the
 * certificate's SHA-256 fingerprint (as earlier versions printed it, and as openssl x509
 * -fingerprint -sha256 does, its `sha256 Fingerprint=` too). Anything else is a usage error
 * before the server is reached: it connected, then reported a mismatch that read as an attack
 * and handed over the pin presented (found in review).
 */
export function givenPin(given: string): GivenPin {
  const text = given.trim();
  const key = /^sha256\/\/([A-Za-z0-9+/]{43}=)$/i.exec(text);
  if (key) return { pin: `sha256//${key[1]}` };
  const hex = text.replace(/^sha256 fingerprint=/i, "");
  if (/^[0-9a-f]{64}$/i.test(hex) || /^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/i.test(hex)) return { certificateFingerprint: hex.replace(/:/g, "").toUpperCase() };
  throw new UsageError(
    "--fingerprint: give the server's public key pin, sha256// and 44 base64 characters, as citadel serve prints it (TLS public key pin: ...), or its certificate's SHA-256 fingerprint, 64 hex digits (colons allowed)",
  );
}

/**
 * Checks the certificate a server presents against what the operator gave (`--fingerprint`,
 * read by givenPin): its key pin, or its certificate's fingerprint. Returns the key pin to keep.
 */
export async function pinOfServer(server: string, given: GivenPin): Promise<string> {
  const presented = await presentedCertificate(server);
  const x509 = new X509Certificate(presented);
  const pin = publicKeyPin(x509);
  if ("pin" in given ? given.pin === pin : given.certificateFingerprint === x509.fingerprint256.replace(/:/g, "")) {
    seen.set(seenKey(server, pin), presented); // the requests that follow pin it without looking again
    return pin;
  }
  const what = "pin" in given ? `the public key pin given, ${given.pin}` : `the certificate fingerprint given (64 hex digits are taken as the certificate's SHA-256 fingerprint, not its public key's)`;
  throw Object.assign(new Error(`the server presented a certificate with the public key ${pin} (certificate fingerprint ${x509.fingerprint256}), not ${what}: refusing to talk to it`), { code: NOT_THE_PINNED_CERTIFICATE });
}
