/**
 * The HTTP edge: what happens to every request around the app. It fixes the request id and
 * the client address, applies the per-address rate limit and the sealed gate, refuses
 * oversized bodies before reading them, runs the app's synchronous part in one read snapshot
 * (unless the route declares it needs none), writes the one access-log line and counts the
 * request (HttpRequestMetrics).
 * `startHttpServer` binds it with Bun.serve.
 */
import type { Server } from "bun";
import type { AnyElysia } from "elysia";
import { rateLimitHeaders, type RateLimiter } from "../auth/rate-limit.ts";
import { SealedError } from "../errors.ts";
import type { ShieldSlot } from "../intel/shield.ts";
import type { Logger } from "../log.ts";
import type { Counter, CounterFamily, Histogram, HistogramFamily, Metrics } from "../metrics.ts";
import { cidrContains, clientKey, formatIp, parseIp, unmapIpv4, type Cidr } from "../net/ip.ts";
import { withErrorPages, withoutReadSnapshot } from "./app.ts";
import { checkedJsonRequest, mayHaveBody, withEmptyBody } from "./body.ts";
import { inOAuthForm, isOAuthPath } from "./oauth-error.ts";
import { HttpProblem, payloadTooLarge, PROBLEM_CONTENT_TYPE, problemFor, problemForStatus, problemResponse, type ProblemInit } from "./problem.ts";
import { attachRequestMeta, pathOf, requestIdFor, type RequestMeta } from "./request-meta.ts";
import { securityHeaders } from "./security-headers.ts";

export interface EdgeOptions {
  app: AnyElysia;
  log: Logger;
  bodyLimit: number;
  trustedProxies: readonly Cidr[];
  /** HSTS is only meaningful (and only sent) over TLS. */
  tls: boolean;
  /** Every request, per client address, before anything else is done for it. */
  perAddress?: RateLimiter;
  /** Told of each refusal (to audit a sample of them); the request carries its meta. */
  onRateLimited?: (request: Request) => void;
  /** The shield (intel), told of each refusal by `perAddress` as of the guard's own: a flood is held against its address. */
  shield?: ShieldSlot;
  /** Counts every answer by method, route pattern and status, with its latency. */
  requests?: HttpRequestMetrics;
  /** While true, every path but those in SEALED_ROUTES answers 503 `sealed`. */
  sealed?: () => boolean;
  /** How to unseal, for the 503's detail (it depends on the seal method); by default every way. */
  unsealAdvice?: string;
  /** Runs the app's synchronous part of a request without a body in one read transaction (Store.snapshot). */
  snapshot?: <T>(fn: () => T) => T;
  /** The server's idle timeout, given back to a connection once a long answer (worksLong) is made. */
  idleTimeoutSeconds?: number;
}

/**
 * What answers while sealed: health, readiness, metrics (a sealed appliance is what monitoring
 * most needs to see), unsealing, and the API's own description.
 */
export const SEALED_ROUTES = new Set(["/healthz", "/readyz", "/metrics", "/v1/sys/seal-status", "/v1/sys/unseal", "/openapi.json", "/docs", "/docs/ui.js", "/docs/ui.css"]);

/**
 * Every remedy, when the edge is not told the seal method: `citadel unseal` alone misled the
 * operator of a key file or systemd credential, which is read only when Citadel starts.
 */
const UNSEAL_ADVICE = "give it key shares with `citadel unseal` (seal method shamir), or restart it with its key file or systemd credential in place";

export type FetchHandler = (request: Request, server: Server<undefined>) => Response | Promise<Response>;

export function createEdge({ app, log, bodyLimit, trustedProxies, tls, perAddress, onRateLimited, shield, requests, sealed = () => false, unsealAdvice = UNSEAL_ADVICE, snapshot = (fn) => fn(), idleTimeoutSeconds = 30 }: EdgeOptions): FetchHandler {
  const handle = app.compile().fetch as (request: Request) => Response | Promise<Response>;
  // Only GET routes at a fixed path may go without (a wrong declaration stops start-up): by
  // path, then method, so that no key string is built per request. Another method's route at
  // the same path keeps its snapshot (HEAD is GET).
  const unsnapshotted = new Set([...withoutReadSnapshot(app)].map((route) => route.slice("GET ".length)));
  const inSnapshot = (method: string, url: string) => !(unsnapshotted.has(pathOf(url)) && (method === "GET" || method === "HEAD"));
  const pages = withErrorPages(app);
  /** A refusal a page route answered as a page (HTML), for the person reading it. */
  const isErrorPage = (request: Request, meta: RequestMeta, response: Response) =>
    meta.route !== null && pages.has(`${request.method} ${meta.route}`) && response.headers.get("content-type")?.startsWith("text/html;") === true;
  const headers = securityHeaders({ tls });
  // Answers the edge gives itself, without the app: same envelope, same headers.
  const edgeProblem = (init: ProblemInit, requestId: string) => problemResponse({ ...init, headers: { ...headers, ...init.headers, "x-request-id": requestId } }, requestId);

  /**
   * A reverse proxy on this host that http.trusted_proxies does not name makes every client
   * behind it look like loopback: trusted by the shield, one rate-limit bucket for all. Said
   * once an hour, when a loopback request carries X-Forwarded-For.
   */
  let proxyWarnedAt = -Infinity;
  const loopbackTrusted = trustedProxies.some((c) => cidrContains(c, parseIp("127.0.0.1")!) || cidrContains(c, parseIp("::1")!));
  const noteUntrustedProxy = (request: Request) => {
    if (loopbackTrusted || !request.headers.has("x-forwarded-for") || performance.now() - proxyWarnedAt < 3_600_000) return;
    proxyWarnedAt = performance.now();
    log.warn("a request from loopback carries X-Forwarded-For, but http.trusted_proxies does not name loopback: every client behind that proxy is seen as this host (trusted by the IP shield, one rate-limit bucket). Add 127.0.0.1/32 (and ::1/128) to http.trusted_proxies if a proxy here forwards to Citadel");
  };

  // With a trailing slash too, as the router takes it (`/healthz/` is /healthz): a health checker that adds one.
  const closedBySeal = (request: Request) => sealed() && !SEALED_ROUTES.has(pathOf(request.url).replace(/(?<=.)\/$/, ""));
  const sealedProblem = (requestId: string) => edgeProblem(problemFor(new SealedError(`Citadel is sealed: ${unsealAdvice}.`)), requestId);

  const finish = (request: Request, meta: RequestMeta, started: number, response: Response): Response => {
    if (response.status >= 400 && response.headers.get("content-type") !== PROBLEM_CONTENT_TYPE && !isErrorPage(request, meta, response)) {
      // A handler answered an error outside the envelope (returned an Error, set a status):
      // its body may hold anything, so it never reaches the client.
      log.error("a route answered an error outside the problem envelope", { request_id: meta.id, route: meta.route, status: response.status });
      response = edgeProblem(problemForStatus(response.status), meta.id);
    }
    // Read once: each read of a Request's method is a call into Bun.
    const method = request.method;
    // Bun adds Date to every answer but HEAD's (RFC 9110 6.6.1: MUST on 2xx to 4xx).
    if (method === "HEAD") response.headers.set("date", new Date().toUTCString());
    // The long work is done: the connection is timed again, as a quiet client's must be.
    if (meta.worksLong) meta.server!.timeout(meta.received!, idleTimeoutSeconds);
    const elapsedMs = performance.now() - started;
    requests?.record(method, meta.route, response.status, elapsedMs / 1000);
    if (log.enabled("info")) log.preformatted("info", "request", accessLogMembers(method, request, meta, response.status, elapsedMs));
    return response;
  };
  const failed = (request: Request, meta: RequestMeta, started: number, error: unknown): Response => {
    if (error instanceof HttpProblem) return finish(request, meta, started, edgeProblem(problemFor(error), meta.id));
    log.error("request failed", { request_id: meta.id, error });
    return finish(request, meta, started, edgeProblem(problemFor(error), meta.id));
  };

  /**
   * The request with its body checked; or, when the body is refused, the request without it and
   * the refusal kept in the meta: the app answers it once routing and the guard have passed,
   * so an unknown route is 404, a wrong method 405 and a missing token 401 first.
   */
  const checkedOrRefused = async (request: Request, meta: RequestMeta): Promise<Request> => {
    try {
      const checked = await checkedJsonRequest(request, bodyLimit);
      meta.body = checked.body;
      return checked.request;
    } catch (error) {
      if (!(error instanceof HttpProblem)) throw error;
      meta.refusedBody = error;
      return withEmptyBody(request);
    }
  };

  /** Requests with a body: checked (type, size, JSON) before the app parses them. */
  const handleWithBody = async (request: Request, meta: RequestMeta, started: number): Promise<Response> => {
    try {
      const checked = await checkedOrRefused(request, meta);
      // Sealed while the body was arriving: the gate is asked again before the app runs.
      if (closedBySeal(request)) return finish(request, meta, started, sealedProblem(meta.id));
      attachRequestMeta(checked, meta);
      // No read snapshot: Elysia parses a body asynchronously, so the route would run after it ended.
      return finish(request, meta, started, await handle(checked));
    } catch (error) {
      return failed(request, meta, started, error);
    }
  };

  // Not an async function: a GET answered synchronously by the app goes back to Bun
  // without a promise, which is measurably cheaper on the hot path.
  return function edge(received, server) {
    const started = performance.now();
    const meta: RequestMeta = { id: "", client: "unknown", route: null, received, server };
    let request = received;
    try {
      meta.id = requestIdFor(received.headers.get("x-request-id"));
      meta.client = clientAddress(received, server, trustedProxies);
      if (meta.client.startsWith("127.") || meta.client === "::1") noteUntrustedProxy(received);
      // Read once: each read of a Request's URL or method is a call into Bun.
      const receivedUrl = received.url;
      request = canonicalRequest(received, receivedUrl);
      const url = request === received ? receivedUrl : request.url;
      const method = request.method;
      if (perAddress) {
        const decision = perAddress.take(clientKey(meta.client)) // an IPv6 client counts as its /64;
        if (!decision.allowed) {
          attachRequestMeta(request, meta); // so the audit event names the 429's request id
          onRateLimited?.(request);
          shield?.current?.observe(meta.client, "http_rate_limited");
          return finish(request, meta, started, edgeProblem({ status: 429, code: "rate_limited", detail: `Too many requests; retry in ${decision.retryAfter} s.`, headers: rateLimitHeaders(decision) }, meta.id));
        }
      }
      if (closedBySeal(request)) return finish(request, meta, started, sealedProblem(meta.id));
      const declared = request.headers.get("content-length");
      if (declared !== null && Number(declared) > bodyLimit) {
        // And the connection closed: the body it declared is not read, and not waited for either.
        const tooLarge = problemFor(payloadTooLarge(bodyLimit));
        const refused = isOAuthPath(pathOf(request.url)) ? inOAuthForm(tooLarge) : tooLarge;
        return finish(request, meta, started, edgeProblem({ ...refused, headers: { ...refused.headers, connection: "close" } }, meta.id));
      }
      if (mayHaveBody(method)) return handleWithBody(request, meta, started);
      // HEAD is GET without the body (RFC 9110 9.3.2); routes only declare GET. The GET's answer
      // goes back whole: Bun sends its header fields with the length of its body, and cancels
      // the body (a stream reads no further).
      const forApp = method === "HEAD" ? headAsGet(request, meta) : request;
      attachRequestMeta(forApp, meta);
      const result = inSnapshot(method, url) ? snapshot(() => handle(forApp)) : handle(forApp);
      if (result instanceof Promise) return result.then((response) => finish(request, meta, started, response), (error) => failed(request, meta, started, error));
      return finish(request, meta, started, result);
    } catch (error) {
      meta.id ||= requestIdFor(null);
      return failed(request, meta, started, error);
    }
  };
}

/** The GET a HEAD request is answered as; the meta keeps HEAD, for what names the method (a 405's detail). */
function headAsGet(request: Request, meta: RequestMeta): Request {
  meta.sentMethod = request.method;
  return new Request(request.url, { method: "GET", headers: request.headers });
}

/**
 * Elysia finds the path by searching for "/" from the 12th character of the URL, which
 * assumes a host of at least three characters: with `Host: a`, /zz/v1/x was routed as
 * /v1/x. A request whose URL is that short is re-issued on a fixed origin, so every part
 * of Citadel (router, sealed gate, log) sees the same path. So is one whose URL is the path
 * alone, as Bun gives it for HTTP/1.0 without Host (HAProxy's `option httpchk`) or an
 * invalid Host.
 */
function canonicalRequest(request: Request, url: string): Request {
  if (url.startsWith("/")) return new Request(`http://localhost${url}`, request);
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart >= 11) return request;
  return new Request(`http://localhost${pathStart < 0 ? "/" : url.slice(pathStart)}`, request);
}

/**
 * The access-log fields as JSON members. Only the path (unmatched routes) can hold
 * arbitrary characters and is escaped; method, route pattern, request id and address are
 * tokens by construction.
 */
function accessLogMembers(method: string, request: Request, meta: RequestMeta, status: number, elapsedMs: number): string {
  const duration = Math.round(elapsedMs * 1000) / 1000;
  const route = meta.route === null ? `null,"path":${JSON.stringify(pathOf(request.url).slice(0, 256))}` : `"${meta.route}"`;
  return `"method":"${method}","route":${route},"status":${status},"duration_ms":${duration},"request_id":"${meta.id}","client":"${meta.client}"`;
}

/** The methods counted by name; anything else (WebDAV verbs, garbage) is counted as "other". */
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"] as const;

function methodSlot(method: string): number {
  switch (method) {
    case "GET":
      return 0;
    case "HEAD":
      return 1;
    case "POST":
      return 2;
    case "PUT":
      return 3;
    case "PATCH":
      return 4;
    case "DELETE":
      return 5;
    case "OPTIONS":
      return 6;
    default:
      return 7;
  }
}

/** The route label of requests no route matched (404, 405) or answered before routing (413, 429, 503 while sealed). */
export const UNMATCHED_ROUTE = "unmatched";
/** Route patterns are the app's own, so few; this only bounds a bug that would label by path. */
const MAX_ROUTES = 2000;

/** One method on one route: its labels, its counters by status (made on first use) and its latency histogram. */
interface RouteMethodSeries {
  method: string;
  route: string;
  /** Indexed by the status code itself. */
  byStatus: Array<Counter | undefined>;
  duration: Histogram;
}

/**
 * `citadel_http_requests_total{method,route,status}` and
 * `citadel_http_request_duration_seconds{method,route}`. Recording a request is one map lookup
 * by the route pattern (the string Elysia matched, not one built per request), two array reads
 * and a histogram bucket search; label strings are made once per route, method and status.
 */
export class HttpRequestMetrics {
  private readonly requests: CounterFamily;
  private readonly durations: HistogramFamily;
  private readonly routes = new Map<string, Array<RouteMethodSeries | undefined>>();
  private readonly unmatched: Array<RouteMethodSeries | undefined> = [];

  constructor(metrics: Metrics) {
    this.requests = metrics.counter("citadel_http_requests_total", "HTTP requests answered, by method, route pattern and status.", ["method", "route", "status"]);
    this.durations = metrics.histogram("citadel_http_request_duration_seconds", "Time from receiving an HTTP request to its response (a streamed body may take longer), by method and route pattern.", ["method", "route"]);
  }

  record(method: string, route: string | null, status: number, seconds: number): void {
    const byMethod = route === null ? this.unmatched : (this.routes.get(route) ?? this.addRoute(route));
    const slot = methodSlot(method);
    const series = byMethod[slot] ?? this.addSeries(byMethod, slot, byMethod === this.unmatched ? UNMATCHED_ROUTE : route!);
    const counter = series.byStatus[status] ?? this.addStatus(series, status);
    counter.value++;
    series.duration.observe(seconds);
  }

  private addRoute(route: string): Array<RouteMethodSeries | undefined> {
    if (this.routes.size >= MAX_ROUTES) return this.unmatched;
    const byMethod: Array<RouteMethodSeries | undefined> = [];
    this.routes.set(route, byMethod);
    return byMethod;
  }

  private addSeries(byMethod: Array<RouteMethodSeries | undefined>, slot: number, route: string): RouteMethodSeries {
    const method = METHODS[slot]!;
    // Pre-sized so that a status is an index into a dense array, not a sparse one.
    const series = { method, route, byStatus: new Array<Counter | undefined>(600).fill(undefined), duration: this.durations.labels({ method, route }) };
    byMethod[slot] = series;
    return series;
  }

  private addStatus(series: RouteMethodSeries, status: number): Counter {
    const counter = this.requests.labels({ method: series.method, route: series.route, status: String(status) });
    series.byStatus[status] = counter;
    return counter;
  }
}

/**
 * The socket peer, unless the peer is a trusted proxy: then the right-most X-Forwarded-For
 * hop that is not itself a trusted proxy (hops further left are the client's own claims).
 */
export function clientAddress(request: Request, server: Pick<Server<undefined>, "requestIP">, trusted: readonly Cidr[]): string {
  const peerText = server.requestIP(request)?.address;
  if (!peerText) return "unknown";
  if (trusted.length === 0) {
    // The common case, kept cheap: the peer as the socket reports it, IPv4-mapped unwrapped.
    return peerText.startsWith("::ffff:") && peerText.includes(".") ? peerText.slice(7) : peerText;
  }
  const peer = parseIp(peerText);
  if (!peer) return "unknown";
  const isTrusted = (ip: ReturnType<typeof parseIp> & {}) => trusted.some((c) => cidrContains(c, ip));
  if (!isTrusted(peer)) return formatIp(unmapIpv4(peer));
  const forwarded = request.headers.get("x-forwarded-for");
  let client = peer;
  if (forwarded) {
    const hops = forwarded.split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseIp(withoutPort(hops[i]!.trim()));
      if (!hop) break; // garbage: trust nothing further left
      client = hop;
      if (!isTrusted(hop)) break;
    }
  }
  return formatIp(unmapIpv4(client));
}

/** Some proxies append the client's port: "192.0.2.1:4711", "[2001:db8::1]:443". */
function withoutPort(hop: string): string {
  const bracketed = hop.match(/^\[([^\]]+)\](?::\d+)?$/);
  if (bracketed) return bracketed[1]!;
  const v4 = hop.match(/^(\d+\.\d+\.\d+\.\d+):\d+$/);
  return v4 ? v4[1]! : hop;
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
  /**
   * Serves new connections with another certificate from now on: a second listener binds the
   * same port beside the first (SO_REUSEPORT), and the first stops accepting and finishes the
   * requests on its connections. Not seamless: a connection in the first one's accept queue or
   * mid-handshake at that instant is reset (64 clients over 40 reloads saw 200 resets), and its
   * client retries; docs/install.md says so.
   */
  replaceTls(tls: { cert: string; key: string }): void;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes the rest. */
  stop(graceMs?: number): Promise<void>;
}

/** How long a listener replaced by a new certificate may finish the requests on its connections. */
const RETIRED_GRACE_MS = 30_000;

export function startHttpServer(options: HttpServerOptions): HttpServer {
  // A TLS listener binds with SO_REUSEPORT so that its certificate can be replaced (above).
  // The option would also let another process of this user bind the port and share the
  // connections unnoticed: the port is first bound without it, which fails if anyone has it.
  if (options.tls && options.port !== 0) refuseTakenPort(options.address, options.port);
  const headers = securityHeaders({ tls: options.tls !== undefined });
  const serve = (tls: { cert: string; key: string } | undefined, port: number) =>
    Bun.serve({
      hostname: options.address,
      port,
      ...(tls ? { tls, reusePort: true } : {}),
      idleTimeout: options.idleTimeoutSeconds,
      // Not Bun's to refuse: it answered a declared length past its own limit with a bare 413 (no
      // envelope, no security headers, no log line). The edge answers any declared length over
      // the body limit before reading a byte, and counts a body of no declared length as it reads.
      maxRequestBodySize: 2 ** 40,
      development: false,
      fetch: options.fetch,
      // An error the edge did not catch (a bug in it): the same envelope and headers as its own
      // answers, under a request id of its own that the log line names.
      error(error) {
        const requestId = requestIdFor(null);
        options.log.error("unhandled server error", { request_id: requestId, error });
        const init = problemFor(error);
        return problemResponse({ ...init, headers: { ...headers, ...init.headers, "x-request-id": requestId } }, requestId);
      },
    });
  let current = serve(options.tls, options.port);
  const port = current.port!;
  const retired = new Map<ReturnType<typeof serve>, Promise<void>>();
  let stopped = false;
  const host = options.address.includes(":") ? `[${options.address}]` : options.address;
  return {
    url: `${options.tls ? "https" : "http"}://${host}:${port}`,
    port,
    replaceTls(tls) {
      if (!options.tls) throw new Error("a plain HTTP listener has no certificate to replace");
      if (stopped) throw new Error("the listener is stopped");
      const next = serve(tls, port);
      const old = current;
      current = next;
      const done = stopWithin(old, RETIRED_GRACE_MS).finally(() => retired.delete(old));
      retired.set(old, done);
    },
    async stop(graceMs = 4000) {
      stopped = true;
      await Promise.all([current, ...retired.keys()].map((server) => stopWithin(server, graceMs)));
    },
  };
}

async function stopWithin(server: { stop(force?: boolean): Promise<void> }, graceMs: number): Promise<void> {
  let timer: Timer | undefined;
  const graceful = server.stop(false);
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
  });
  await Promise.race([graceful, deadline]);
  clearTimeout(timer);
  await server.stop(true);
}

/** Throws Bun's own message when something listens on the address and port already. */
function refuseTakenPort(address: string, port: number): void {
  let probe: { stop(): void };
  try {
    probe = Bun.listen({ hostname: address, port, socket: { data() {} } });
  } catch (error) {
    if ((error as { code?: string }).code === "EADDRINUSE") throw new Error(`Failed to start server. Is port ${port} in use?`);
    throw error;
  }
  probe.stop();
}
