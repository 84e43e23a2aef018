/**
 * The node's side of the API: enrollment with a pre-auth key, then requests signed in with the
 * node token, over TLS pinned to the certificate seen at join (when it was self-signed).
 */
import { ApiError } from "../../src/cli/api-client.ts";

export interface NodeConnection {
  server: string;
  certificate: string | null;
  token?: string;
}

/**
 * The control plane no longer takes this node — not a passing failure: its token is not valid
 * (the node was removed, or its network), or the node is disabled or expired, or its
 * organization was deleted.
 */
export class NodeRefusedError extends ApiError {}

/**
 * True when an answer to a request made with the node's token refuses the node for good (see
 * NodeRefusedError): a 401, or a 403 `standing_ended` (service.ts, authenticateNode) — not the
 * shield's 403 `forbidden` for an address, which may pass.
 */
export function refusesNode(status: number, code: string | undefined): boolean {
  return status === 401 || (status === 403 && code === "standing_ended");
}

export type ConfigFetch = { status: 304 } | { status: 200; body: string; signature: string | null; etag: string | null };

async function caList(certificate: string | null): Promise<string[] | undefined> {
  if (!certificate) return undefined;
  const { rootCertificates } = await import("node:tls");
  return [...rootCertificates, certificate];
}

async function send(connection: NodeConnection, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const ca = await caList(connection.certificate);
  try {
    return await fetch(new URL(path, connection.server), {
      method,
      signal: AbortSignal.timeout(30_000),
      headers: {
        ...headers,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(connection.token ? { authorization: `Bearer ${connection.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      ...(ca ? { tls: { ca } } : {}),
    });
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error instanceof Error ? error.message : String(error));
    throw new ApiError(`cannot reach the control plane at ${connection.server} (${code})`);
  }
}

async function failure(connection: NodeConnection, response: Response): Promise<never> {
  let problem: { detail?: string; code?: string } = {};
  try {
    problem = (await response.json()) as typeof problem;
  } catch {
    // not a problem document
  }
  // Without a token (enrollment) a 401 is about the pre-auth key, not the node.
  const refused = Boolean(connection.token) && refusesNode(response.status, problem.code);
  throw new (refused ? NodeRefusedError : ApiError)(`${problem.detail ?? `HTTP ${response.status}`} (${problem.code ?? response.status})`, response.status, problem.code);
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
