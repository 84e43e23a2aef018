/**
 * The CLI's HTTP client. For now it talks to the Citadel configured on this machine: the
 * address and port from the config, and the TLS certificate from the data directory as the
 * only trusted certificate (so the self-signed default is pinned, not blindly accepted).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import type { Config } from "../config/schema.ts";
import { dataPath } from "../config/load.ts";
import type { ApiClient } from "../plugin.ts";
import { keyPinOf, NOT_THE_PINNED_CERTIFICATE, theNetworkEnvironment, withPinnedCertificate } from "./pin.ts";

export { NOT_THE_PINNED_CERTIFICATE };

/** Where a client's token came from: what to do about a refusal depends on it. */
export type TokenOrigin = "CITADEL_TOKEN" | "login";

/** What a refusal was about, beyond its message: enough to tell the user what to do. */
export interface RefusalFacts {
  /** The server's WWW-Authenticate challenge: a Bearer one means the token was missing or refused. */
  challenge?: string;
  /** The scope the server asked for (403 insufficient_scope). */
  scope?: string;
  /** The token the request carried, if any: where it came from and its kind (pat, ses, a service). */
  token?: { origin?: TokenOrigin; kind: string };
  /** The seconds a Retry-After header asked to wait (429, 503), when it named a time. */
  retryAfterSeconds?: number;
  /** How many more tries the server allows before it acts (a share link's passphrase: burned). */
  attemptsLeft?: number;
}

/** An API failure, carrying the server's problem document when there was one. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    readonly facts: RefusalFacts = {},
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  /**
   * What the server was pinned by (at login, at a node's join): its public key pin
   * (sha256//..., see pin.ts), whatever certificate over that key it presents; or a certificate
   * (PEM) over the pinned key seen before, pinned as it is without a look at the server, and
   * replaced by what the server presents over that key once it refuses the handshake with it
   * (withPinnedCertificate).
   */
  trust?: string;
  /**
   * Called once, with the key pin, when the server answered pinned by `trust`: whoever stored
   * `trust` keeps the certificate it answered over (certificateSeen), when it changed.
   */
  upgradeTrust?: (pin: string) => void;
  /**
   * The local instance's configured certificate (not pinned): trusted besides the system's
   * roots, as an operator may configure one from a public CA and renew it.
   */
  alsoTrust?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** What the server is pinned by, as `trust` (shown to `citadel login`, handed on to follow-up clients). */
  pinned?: string;
  /** Where `token` came from, for the advice given with a refusal. */
  tokenOrigin?: TokenOrigin;
}

/**
 * The system's root certificates and NODE_EXTRA_CA_CERTS's (a `ca` replaces Bun's defaults, the
 * only place those are counted: a proxy or server trusted through them was refused), with
 * `certificate`; node:tls is loaded (60 ms) only by commands that connect.
 */
async function withSystemRoots(certificate: string): Promise<string[]> {
  const { rootCertificates } = await import("node:tls");
  return [...rootCertificates, ...extraRoots(), certificate];
}

/**
 * TLS options under which a server may present the `pinned` certificate and no other: a
 * certificate from any CA for the same name (an enterprise CA's, one got by whoever controls its
 * DNS) was accepted as well, once the pinned one was added to the system's roots (found in
 * review). The roots (`roots`, the system's unless given) are only there to verify a pinned
 * certificate's chain when a CA issued it; what is accepted is that very certificate, at
 * whatever name or address the server is reached by, as an SSH host key or a Syncthing device
 * ID is: only the holder of its private key can present it. Checked for the name as well, the
 * default self-signed certificate (localhost, the short host name, loopback) was refused when
 * reached by the host's FQDN or LAN address, pinned or not (found in review). A key pin comes
 * here as the certificate presented over that key (see pin.ts, withPinnedCertificate). The
 * default roots hold NODE_EXTRA_CA_CERTS's too (extraRoots).
 */
export async function pinnedTls(pinned: string, roots?: readonly string[]) {
  const tls = await import("node:tls");
  let fingerprint: string;
  try {
    fingerprint = new X509Certificate(pinned).fingerprint256;
  } catch {
    throw new ApiError("the pinned certificate is not a PEM certificate: pin it again (log in, or join, again with --fingerprint sha256//..., the public key pin citadel serve prints)");
  }
  return {
    ca: [...(roots ?? [...tls.rootCertificates, ...extraRoots()]), pinned],
    checkServerIdentity(_host: string, presented: PeerCertificate): Error | undefined {
      if (presented.fingerprint256 === fingerprint) return undefined;
      return Object.assign(new Error(`it presented the certificate ${presented.fingerprint256}, not the one pinned, ${fingerprint}`), { code: NOT_THE_PINNED_CERTIFICATE });
    },
  };
}

/**
 * The certificates NODE_EXTRA_CA_CERTS names, which Bun's rootCertificates leave out. Bun checks
 * an https:// proxy's certificate against the request's own roots too: a proxy with a private CA,
 * trusted through NODE_EXTRA_CA_CERTS, refused every pinned request, which then advised pinning
 * the server again (found in review). Safe to add: what a pinned request accepts at the server is
 * the pinned certificate alone (checkServerIdentity), whatever the roots. Read at each request, as
 * small as it is; unreadable, none (Node ignores it so too, with a warning).
 */
function extraRoots(): string[] {
  const path = theNetworkEnvironment().NODE_EXTRA_CA_CERTS;
  if (!path) return [];
  try {
    return readFileSync(path, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  } catch {
    return [];
  }
}

/** How long a request may wait for its answer; a stream, for each piece of it. */
const TIMEOUT_MS = 30_000;

export function createApiClient({ baseUrl, trust, upgradeTrust, alsoTrust, token, pinned, tokenOrigin }: ApiClientOptions): ApiClient {
  let upgraded = false;
  /** Tells upgradeTrust, once, that the server answered over a certificate `trust` accepts. */
  const answeredOverPin = () => {
    if (upgraded || !trust || !upgradeTrust) return;
    upgraded = true;
    upgradeTrust(keyPinOf(trust));
  };
  /**
   * The answer to a request, its body unread; a refusal throws. `confirmed`: the user said yes
   * already, so a 428 is answered with its token, once. `signal` gives each request's signal.
   */
  const answer = async (method: string, path: string, signal: () => AbortSignal, body?: unknown, confirmed = false, confirm?: string): Promise<Response> => {
    if (token) checkTokenShape(token, tokenOrigin);
    const abort = signal();
    const fetchWith = (tls: object | undefined) =>
      fetch(urlOf(baseUrl, path), {
        method,
        signal: abort,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(confirm ? { "x-citadel-confirm": confirm } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...(tls ? { tls } : {}),
      });
    let response: Response;
    try {
      if (trust) response = await withPinnedCertificate(baseUrl, trust, async (certificate) => fetchWith(await pinnedTls(certificate)));
      else response = await fetchWith(alsoTrust ? { ca: await withSystemRoots(alsoTrust) } : undefined);
    } catch (error) {
      if (abort.reason instanceof ApiError) throw abort.reason; // a stream's idle timeout, which says what happened
      if (error instanceof ApiError) throw error; // a pinned certificate that is no certificate
      const code = (error as { code?: string }).code ?? "";
      const reason = code === NOT_THE_PINNED_CERTIFICATE ? (error as Error).message : code || (error instanceof Error ? error.message : String(error));
      if (/CERT|SSL|TLS|SELF_SIGNED|VERIFY/i.test(code)) {
        throw new ApiError(`the server at ${baseUrl} did not present a certificate this client trusts (${reason})${certificateAdvice(baseUrl, trust !== undefined, alsoTrust !== undefined, code)}`);
      }
      throw new ApiError(`cannot reach Citadel at ${baseUrl} (${reason}); is it running?`);
    }
    answeredOverPin();
    if (!response.ok) {
      const problem = problemOf(await response.text());
      // The user confirmed already (--yes): answer the server's confirmation request once.
      if (response.status === 428 && confirmed && !confirm && problem.confirmation_token) return answer(method, path, signal, body, confirmed, problem.confirmation_token);
      const facts: RefusalFacts = {
        challenge: response.headers.get("www-authenticate") ?? undefined,
        scope: askedScope(response, problem),
        retryAfterSeconds: retryAfterSeconds(response.headers.get("retry-after")),
        attemptsLeft: problem.attempts_left,
        ...(token ? { token: { origin: tokenOrigin, kind: token.split("_")[1] ?? "" } } : {}),
      };
      throw new ApiError(refusalMessage(response, problem), response.status, problem.code, facts);
    }
    return response;
  };
  /** The answer and its whole body, within TIMEOUT_MS for each request (unless the work is long: see ApiClient.request). */
  const send = async (method: string, path: string, body?: unknown, confirmed = false, worksLong = false): Promise<{ response: Response; text: string }> => {
    const response = await answer(method, path, () => (worksLong ? new AbortController().signal : AbortSignal.timeout(TIMEOUT_MS)), body, confirmed);
    return { response, text: await response.text() };
  };
  return {
    baseUrl,
    pinned,
    async request<T>(method: string, path: string, body?: unknown, options: { confirmed?: boolean; worksLong?: boolean } = {}): Promise<T> {
      const { response, text } = await send(method, path, body, options.confirmed === true, options.worksLong === true);
      // Every route answers JSON; only 204 means "nothing". An empty 200 left callers reading
      // fields of undefined.
      if (!text) {
        if (response.status === 204) return undefined as T;
        throw new ApiError(`the server answered with no body (HTTP ${response.status} from ${baseUrl}${path}) where JSON was expected`, response.status);
      }
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApiError(`unexpected answer from ${baseUrl}${path} (HTTP ${response.status}, not JSON)`, response.status);
      }
    },
    async requestText(method: string, path: string): Promise<string> {
      return (await send(method, path)).text;
    },
    async requestStream(method, path, { idleTimeoutMs = TIMEOUT_MS } = {}) {
      const what = `${baseUrl}${path}`;
      const idle = idleTimeout(idleTimeoutMs, what);
      idle.restart(); // for the head
      try {
        return piecesOf((await answer(method, path, () => idle.signal)).body, idle, what);
      } finally {
        idle.stop();
      }
    },
  };
}

/**
 * What to do about a certificate refused: pin a self-signed one by its key (the local
 * instance's certificate file says so itself), or pin again one whose key was replaced.
 */
function certificateAdvice(baseUrl: string, pinned: boolean, local: boolean, code: string): string {
  const login = `citadel login --server ${baseUrl} --fingerprint sha256//... (the public key pin citadel serve prints)`;
  // Pinned and expired: the server renews a self-signed one at start, in its last 30 days, over
  // the same key, which a key pin accepts as it is; a certificate pinned whole (before key pins) must be pinned again.
  if (pinned && code === "CERT_HAS_EXPIRED") return `; it has expired: restart that Citadel (it renews its self-signed certificate at start, over the same key) or replace the certificate; if its key changed, or this client pinned the old certificate itself, pin it again: ${login}`;
  if (pinned) return `; if the server's certificate was replaced, pin the new one: ${login}`;
  return local ? "" : `; for a self-signed certificate, pin it: ${login}`;
}

/**
 * Where a request goes: the API path after the base URL, its path included. `new URL(path,
 * base)` replaced a base's path with an absolute one: behind a reverse proxy at
 * https://host/citadel, requests went to https://host/v1/...
 */
export function urlOf(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
}

/** The pieces of an answer's body as they come, each within the idle time. */
async function* piecesOf(body: ReadableStream<Uint8Array> | null, idle: ReturnType<typeof idleTimeout>, what: string): AsyncGenerator<Uint8Array> {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      idle.restart();
      const piece = await nextPiece(reader.read(), idle.signal, what);
      idle.stop(); // the time the reader takes with a piece (a slow pipe) is not the server's silence
      if (piece.done) return;
      yield piece.value;
    }
  } finally {
    idle.stop();
    void reader.cancel().catch(() => {}); // given up on (a stall, a failed write): the connection is not left open
  }
}

/** An abort signal that fires once `ms` pass without a restart, its reason an ApiError that says so. */
function idleTimeout(ms: number, what: string) {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => clearTimeout(timer);
  return {
    signal: controller.signal,
    restart() {
      stop();
      timer = setTimeout(() => controller.abort(new ApiError(`the answer from ${what} stalled: nothing came for ${ms / 1000} s, so it was given up (incomplete)`)), ms);
    },
    stop,
  };
}

/** What `read` gives; an ApiError when the answer stalls first (`signal`) or breaks off. */
async function nextPiece<T>(read: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) throw signal.reason;
  let onAbort = () => {};
  // Raced rather than left to fetch: an abort is not sure to reach a read already waiting.
  const stalled = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([read, stalled]);
  } catch (error) {
    if (signal.reason instanceof ApiError) throw signal.reason;
    throw new ApiError(`the answer from ${what} broke off (incomplete): ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The fields of a problem document this client uses, each only when it has the expected type. */
interface Problem {
  detail?: string;
  code?: string;
  request_id?: string;
  confirmation_token?: string;
  attempts_left?: number;
}

/** A refusal's problem document; fields of another type are dropped (never shown as [object Object]). */
function problemOf(text: string): Problem {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {}; // not a problem document: an HTML error page, a proxy's plain text
  }
  if (typeof parsed !== "object" || parsed === null) return {};
  const record = parsed as Record<string, unknown>;
  const field = (name: string) => (typeof record[name] === "string" && record[name] !== "" ? (record[name] as string) : undefined);
  const attemptsLeft = Number.isSafeInteger(record.attempts_left) && (record.attempts_left as number) >= 0 ? (record.attempts_left as number) : undefined;
  return { detail: field("detail") ?? field("title"), code: field("code"), request_id: field("request_id"), confirmation_token: field("confirmation_token"), attempts_left: attemptsLeft };
}

/** One line for a refusal: the server's words when it sent any, else what the status means. */
function refusalMessage(response: Response, problem: Problem): string {
  const request = problem.request_id && `request ${problem.request_id}`;
  const aside = (...parts: Array<string | number | undefined>) => (parts.some(Boolean) ? ` (${parts.filter(Boolean).join(", ")})` : "");
  if (problem.detail) return `${problem.detail}${aside(problem.code ?? response.status, request)}`;
  if (response.status === 429) return `rate limited: ${retryAfter(response.headers.get("retry-after"))}${aside(problem.code, request)}`;
  return `the server answered ${response.status} with no problem document${aside(problem.code, request)}`;
}

function retryAfter(header: string | null): string {
  const seconds = retryAfterSeconds(header);
  return seconds === undefined ? "retry later" : `retry in ${seconds} s`;
}

/** Retry-After is seconds or an HTTP date (RFC 9110 §10.2.3); undefined when it is neither. */
function retryAfterSeconds(header: string | null): number | undefined {
  if (header && /^\d+$/.test(header.trim())) return Number(header.trim());
  const at = header ? Date.parse(header) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** The scope a 403 insufficient_scope names: its WWW-Authenticate header (RFC 6750 §3), else its detail. */
function askedScope(response: Response, problem: Problem): string | undefined {
  if (problem.code !== "insufficient_scope") return undefined;
  const header = /\bscope="([^"]*)"/.exec(response.headers.get("www-authenticate") ?? "")?.[1];
  return header || /\bscope ([a-z][a-z0-9:_-]*)/.exec(problem.detail ?? "")?.[1];
}

/**
 * Refuses a token that cannot be sent as one header value. fetch refused it itself, but with a
 * message that blamed the connection ("cannot reach Citadel ... is it running?").
 */
function checkTokenShape(token: string, origin: TokenOrigin | undefined): void {
  const bad = /[^\x21-\x7e]/.exec(token);
  if (!bad) return;
  const what = bad[0] === "\n" || bad[0] === "\r" ? "a newline" : bad[0] === " " || bad[0] === "\t" ? "a space" : "a character that is not printable ASCII";
  const [name, remedy] = origin === "login" ? ["the stored login's token", "run citadel login"] : [origin ?? "the token", "set it again without it"];
  throw new ApiError(`${name} holds ${what} (character ${bad.index + 1}): a Citadel token is one word, citadel_...; ${remedy}`);
}

/** A client for the instance this machine's config describes. */
export function localApiClient(config: Config, token?: string, tokenOrigin?: TokenOrigin): ApiClient {
  const baseUrl = localBaseUrl(config);
  if (baseUrl === null) throw new ApiError("http.port is 0 (a random port): cannot tell where Citadel listens");
  const { tls } = config.http;
  if (!tls.enabled) return createApiClient({ baseUrl, token, tokenOrigin });
  let certificate: string;
  try {
    certificate = readFileSync(dataPath(config, tls.cert_file), "utf8");
  } catch {
    throw new ApiError(`cannot read the TLS certificate ${dataPath(config, tls.cert_file)}; has Citadel been started here (citadel init)? For a Citadel elsewhere: citadel login --server URL --fingerprint sha256//... (the public key pin it prints)`);
  }
  // The configured certificate itself (which pins the self-signed default), plus the system's
  // roots for an operator's certificate from a public CA.
  return createApiClient({ baseUrl, alsoTrust: certificate, token, pinned: certificate, tokenOrigin });
}

/** Where the Citadel a config describes answers on this machine; null when it listens on a random port. */
export function localBaseUrl(config: Config): string | null {
  const { address, port, tls } = config.http;
  if (port === 0) return null;
  // A wildcard listener is reached over loopback.
  const host = address === "0.0.0.0" ? "127.0.0.1" : address === "::" ? "::1" : address;
  return `${tls.enabled ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
