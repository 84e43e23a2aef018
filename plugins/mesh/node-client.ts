/**
 * The node's side of the API: enrollment with a pre-auth key, then requests signed in with the
 * node token, over TLS pinned to the public key seen at join (when it was self-signed).
 */
import { ApiError, NOT_THE_PINNED_CERTIFICATE, pinnedTls, urlOf } from "../../src/cli/api-client.ts";
import { withPinnedCertificate } from "../../src/cli/pin.ts";
import { PROBLEM_CONTENT_TYPE } from "../../src/http/problem.ts";

export interface NodeConnection {
  server: string;
  /** The server's key pin, or the certificate a node pinned before (ApiClientOptions.trust); null for a publicly trusted one. */
  trust: string | null;
  token?: string;
  /** Called after each answer over the TLS `trust` pinned (the agent keeps a key pin for a certificate pinned before). */
  answeredOverPin?: () => void;
}

/**
 * The control plane no longer takes this node — not a passing failure: its token is not valid
 * (the node was removed, or its network), or the node is disabled or expired, or its
 * organization was deleted.
 */
export class NodeRefusedError extends ApiError {}

/**
 * True when an answer to a request made with the node's token refuses the node for good (see
 * NodeRefusedError): a 401 `unauthorized`, or a 403 `standing_ended` (service.ts,
 * authenticateNode) — not the shield's 403 `forbidden` for an address, which may pass. `code`
 * is that of Citadel's own problem document only (see problemOf): a reverse proxy's 401 (basic
 * auth, an SSO gateway, one that strips Authorization) must not cut off every node.
 */
export function refusesNode(status: number, code: string | undefined): boolean {
  return (status === 401 && code === "unauthorized") || (status === 403 && code === "standing_ended");
}

export type ConfigFetch = { status: 304 } | { status: 200; body: string; signature: string | null; etag: string | null };

async function send(connection: NodeConnection, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const fetchWith = (tls: object | undefined) =>
    fetch(urlOf(connection.server, path), {
      method,
      signal: AbortSignal.timeout(30_000),
      headers: {
        ...headers,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(connection.token ? { authorization: `Bearer ${connection.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      // A redirect is not the control plane's answer (a proxy's login page): it fails the request.
      redirect: "manual",
      ...(tls ? { tls } : {}),
    });
  const { trust } = connection;
  if (trust === null) return fetchOrExplain(connection, () => fetchWith(undefined));
  // Pinned at join: a certificate over that key and no other (the system's CAs vouch for none).
  const response = await fetchOrExplain(connection, () => withPinnedCertificate(connection.server, trust, async (certificate) => fetchWith(await pinnedTls(certificate))));
  connection.answeredOverPin?.();
  return response;
}

/** The response `fetching` gets, or an ApiError that says why there is none. */
async function fetchOrExplain(connection: NodeConnection, fetching: () => Promise<Response>): Promise<Response> {
  try {
    return await fetching();
  } catch (error) {
    if (error instanceof ApiError) throw error; // a pinned certificate that is no certificate
    const { code } = error as { code?: string };
    // Another certificate than the pinned one: the message names both.
    const reason = code && code !== NOT_THE_PINNED_CERTIFICATE ? code : error instanceof Error ? error.message : String(error);
    throw new ApiError(`cannot reach the control plane at ${connection.server} (${reason})`);
  }
}

/** Citadel's problem document (application/problem+json); empty for anything else, a proxy's page. */
async function problemOf(response: Response): Promise<{ detail?: string; code?: string }> {
  if (!response.headers.get("content-type")?.startsWith(PROBLEM_CONTENT_TYPE)) return {};
  try {
    return (await response.json()) as { detail?: string; code?: string };
  } catch {
    return {};
  }
}

async function failure(connection: NodeConnection, response: Response): Promise<never> {
  const problem = await problemOf(response);
  // Without a token (enrollment) a 401 is about the pre-auth key, not the node.
  const refused = Boolean(connection.token) && refusesNode(response.status, problem.code);
  const facts = { retryAfterSeconds: retryAfterSeconds(response.headers.get("retry-after")) };
  throw new (refused ? NodeRefusedError : ApiError)(`${problem.detail ?? `HTTP ${response.status}`} (${problem.code ?? response.status})`, response.status, problem.code, facts);
}

/** Retry-After (a 429, a 503): seconds or an HTTP date (RFC 9110 §10.2.3); undefined when it is neither. */
function retryAfterSeconds(header: string | null): number | undefined {
  if (header === null) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

export async function nodeRequest<T>(connection: NodeConnection, method: string, path: string, body?: unknown): Promise<T> {
  const response = await send(connection, method, path, body);
  if (!response.ok) return failure(connection, response);
  return (await response.json()) as T;
}

/** GET /v1/mesh/node/config with the ETag of the config in hand: 304 when it has not changed. */
export async function fetchConfig(connection: NodeConnection, etag: string | null): Promise<ConfigFetch> {
  const response = await send(connection, "GET", "/v1/mesh/node/config", undefined, etag ? { "if-none-match": etag } : {});
  if (response.status === 304) return { status: 304 };
  if (!response.ok) return failure(connection, response);
  return { status: 200, body: await response.text(), signature: response.headers.get("x-citadel-signature"), etag: response.headers.get("etag") };
}
