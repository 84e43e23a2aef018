/**
 * The CLI's HTTP client. For now it talks to the Citadel configured on this machine: the
 * address and port from the config, and the TLS certificate from the data directory as the
 * only trusted certificate (so the self-signed default is pinned, not blindly accepted).
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.ts";
import { dataPath } from "../config/load.ts";
import type { ApiClient } from "../plugin.ts";

/** An API failure, carrying the server's problem document when there was one. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  /** A PEM certificate to trust besides the system's roots (the pinned self-signed one). */
  trust?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** The server's own certificate, when it is pinned (shown to `citadel login`). */
  certificate?: string;
}

/** The system's root certificates; node:tls is loaded (60 ms) only by commands that connect. */
async function withSystemRoots(certificate: string): Promise<string[]> {
  const { rootCertificates } = await import("node:tls");
  return [...rootCertificates, certificate];
}

export function createApiClient({ baseUrl, trust, token, certificate }: ApiClientOptions): ApiClient {
  /** `confirmed`: the user said yes already, so a 428 is answered with its token, once. */
  const send = async (method: string, path: string, body?: unknown, confirmed = false, confirm?: string): Promise<{ response: Response; text: string }> => {
    const ca = trust ? await withSystemRoots(trust) : undefined;
    let response: Response;
    try {
      response = await fetch(new URL(path, baseUrl), {
        method,
        signal: AbortSignal.timeout(30_000),
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(confirm ? { "x-citadel-confirm": confirm } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...(ca ? { tls: { ca } } : {}),
      });
    } catch (error) {
      const code = (error as { code?: string }).code ?? "";
      const reason = code || (error instanceof Error ? error.message : String(error));
      if (/CERT|SSL|TLS|SELF_SIGNED|VERIFY/i.test(code)) {
        throw new ApiError(`the server at ${baseUrl} did not present a certificate this client trusts (${reason})`);
      }
      throw new ApiError(`cannot reach Citadel at ${baseUrl} (${reason}); is it running?`);
    }
    const text = await response.text();
    if (!response.ok) {
      let problem: { detail?: string; title?: string; code?: string; request_id?: string; confirmation_token?: string } = {};
      try {
        problem = JSON.parse(text);
      } catch {
        // not a problem document: the status says enough
      }
      // The user confirmed already (--yes): answer the server's confirmation request once.
      if (response.status === 428 && confirmed && !confirm && problem.confirmation_token) return send(method, path, body, confirmed, problem.confirmation_token);
      const what = problem.detail ?? problem.title ?? `HTTP ${response.status}`;
      throw new ApiError(`${what} (${problem.code ?? response.status}${problem.request_id ? `, request ${problem.request_id}` : ""})`, response.status, problem.code);
    }
    return { response, text };
  };
  return {
    baseUrl,
    certificate,
    async request<T>(method: string, path: string, body?: unknown, options: { confirmed?: boolean } = {}): Promise<T> {
      const { response, text } = await send(method, path, body, options.confirmed === true);
      try {
        return (text ? JSON.parse(text) : undefined) as T;
      } catch {
        throw new ApiError(`unexpected answer from ${baseUrl}${path} (HTTP ${response.status}, not JSON)`, response.status);
      }
    },
    async requestText(method: string, path: string): Promise<string> {
      return (await send(method, path)).text;
    },
  };
}

/** A client for the instance this machine's config describes. */
export function localApiClient(config: Config, token?: string): ApiClient {
  const { address, port, tls } = config.http;
  // A wildcard listener is reached over loopback.
  const host = address === "0.0.0.0" ? "127.0.0.1" : address === "::" ? "::1" : address;
  const bracketed = host.includes(":") ? `[${host}]` : host;
  if (port === 0) throw new ApiError("http.port is 0 (a random port): cannot tell where Citadel listens");
  if (!tls.enabled) return createApiClient({ baseUrl: `http://${bracketed}:${port}`, token });
  let certificate: string;
  try {
    certificate = readFileSync(dataPath(config, tls.cert_file), "utf8");
  } catch {
    throw new ApiError(`cannot read the TLS certificate ${dataPath(config, tls.cert_file)}; has Citadel been started here (citadel init)?`);
  }
  // The configured certificate itself (which pins the self-signed default), plus the system's
  // roots for an operator's certificate from a public CA.
  return createApiClient({ baseUrl: `https://${bracketed}:${port}`, trust: certificate, token, certificate });
}
