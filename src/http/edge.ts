/**
 * The HTTP edge: what happens to every request around the app. It fixes the request id and
 * the client address, refuses oversized bodies before reading them, sets the security
 * headers, and writes the one access-log line. `startHttpServer` binds it with Bun.serve.
 */
import type { Server } from "bun";
import type { AnyElysia } from "elysia";
import type { Logger } from "../log.ts";
import { cidrContains, formatIp, parseIp, unmapIpv4, type Cidr } from "../net/ip.ts";
import { payloadTooLarge, problemFor, problemResponse } from "./problem.ts";
import { attachRequestMeta, requestIdFor, type RequestMeta } from "./request-meta.ts";

export interface EdgeOptions {
  app: AnyElysia;
  log: Logger;
  bodyLimit: number;
  trustedProxies: readonly Cidr[];
  /** HSTS is only meaningful (and only sent) over TLS. */
  tls: boolean;
}

export type FetchHandler = (request: Request, server: Server<undefined>) => Promise<Response>;

const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export function createEdge({ app, log, bodyLimit, trustedProxies, tls }: EdgeOptions): FetchHandler {
  const handle = app.compile().fetch as (request: Request) => Promise<Response>;
  const securityHeaders: Array<[string, string]> = [
    ["x-content-type-options", "nosniff"],
    ["referrer-policy", "no-referrer"],
    ["cache-control", "no-store"],
    ["x-frame-options", "DENY"],
    ["cross-origin-resource-policy", "same-origin"],
    ["content-security-policy", API_CSP],
  ];
  if (tls) securityHeaders.push(["strict-transport-security", "max-age=63072000; includeSubDomains"]);

  return async function edge(request, server) {
    const started = performance.now();
    const meta: RequestMeta = {
      id: requestIdFor(request.headers.get("x-request-id")),
      client: clientAddress(request, server, trustedProxies),
      route: null,
    };
    let response: Response;
    try {
      const declared = Number(request.headers.get("content-length") ?? 0);
      if (declared > bodyLimit) {
        response = problemResponse(problemFor(payloadTooLarge(bodyLimit)), meta.id);
      } else if (request.method === "HEAD") {
        // HEAD is GET without the body (RFC 9110 9.3.2); routes only declare GET.
        const get = new Request(request.url, { method: "GET", headers: request.headers });
        attachRequestMeta(get, meta);
        const full = await handle(get);
        response = new Response(null, { status: full.status, headers: full.headers });
      } else {
        attachRequestMeta(request, meta);
        response = await handle(request);
      }
    } catch (error) {
      log.error("request failed", { request_id: meta.id, error });
      response = problemResponse(problemFor(error), meta.id);
    }
    response = withHeaders(response, securityHeaders, meta.id);
    const line: Record<string, unknown> = {
      method: request.method,
      route: meta.route,
      status: response.status,
      duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      request_id: meta.id,
      client: meta.client,
    };
    if (meta.route === null) line.path = new URL(request.url).pathname.slice(0, 256);
    log.info("request", line);
    return response;
  };
}

function withHeaders(response: Response, securityHeaders: Array<[string, string]>, requestId: string): Response {
  let headers = response.headers;
  try {
    headers.set("x-request-id", requestId);
  } catch {
    // Immutable headers (a Response that came from fetch): copy it once.
    response = new Response(response.body, response);
    headers = response.headers;
    headers.set("x-request-id", requestId);
  }
  for (const [name, value] of securityHeaders) if (!headers.has(name)) headers.set(name, value);
  return response;
}

/**
 * The socket peer, unless the peer is a trusted proxy: then the right-most X-Forwarded-For
 * hop that is not itself a trusted proxy (hops further left are the client's own claims).
 */
export function clientAddress(request: Request, server: Pick<Server<undefined>, "requestIP">, trusted: readonly Cidr[]): string {
  const peerText = server.requestIP(request)?.address;
  const peer = peerText ? parseIp(peerText) : null;
  if (!peer) return "unknown";
  const isTrusted = (ip: ReturnType<typeof parseIp> & {}) => trusted.some((c) => cidrContains(c, ip));
  if (trusted.length === 0 || !isTrusted(peer)) return formatIp(unmapIpv4(peer));
  const forwarded = request.headers.get("x-forwarded-for");
  let client = peer;
  if (forwarded) {
    const hops = forwarded.split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseIp(hops[i]!.trim());
      if (!hop) break; // garbage: trust nothing further left
      client = hop;
      if (!isTrusted(hop)) break;
    }
  }
  return formatIp(unmapIpv4(client));
}

export interface HttpServerOptions {
  fetch: FetchHandler;
  address: string;
  port: number;
  tls?: { cert: string; key: string };
  idleTimeoutSeconds: number;
  bodyLimit: number;
  log: Logger;
}

export interface HttpServer {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes the rest. */
  stop(graceMs?: number): Promise<void>;
}

export function startHttpServer(options: HttpServerOptions): HttpServer {
  const server = Bun.serve({
    hostname: options.address,
    port: options.port,
    ...(options.tls ? { tls: options.tls } : {}),
    idleTimeout: options.idleTimeoutSeconds,
    // A backstop only: the edge answers 413 itself, in the error envelope, well before this.
    maxRequestBodySize: options.bodyLimit * 2 + 65_536,
    development: false,
    fetch: options.fetch,
    error(error) {
      options.log.error("unhandled server error", { error });
      return problemResponse(problemFor(error), "unknown");
    },
  });
  const host = options.address.includes(":") ? `[${options.address}]` : options.address;
  return {
    url: `${options.tls ? "https" : "http"}://${host}:${server.port}`,
    port: server.port!,
    async stop(graceMs = 4000) {
      let timer: Timer | undefined;
      const graceful = server.stop(false);
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([graceful, deadline]);
      clearTimeout(timer);
      await server.stop(true);
    },
  };
}
