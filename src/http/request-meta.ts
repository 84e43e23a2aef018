/**
 * Per-request facts the edge establishes before routing (request id, client address) and
 * that handlers, the error mapper and the access log all need. Carried on the Request object
 * under a private symbol, so nothing has to be threaded through Elysia's context. (A
 * WeakMap keyed by requests did the same but made garbage collection measurably slower.)
 */
import type { Server } from "bun";
import type { Principal } from "../auth/principal.ts";
import type { HttpProblem } from "./problem.ts";

export interface RequestMeta {
  /** Echoed in X-Request-Id, in every problem body and in the log line. */
  id: string;
  /** The client: the socket peer, or the X-Forwarded-For hop a trusted proxy vouches for. */
  client: string;
  /** The matched route pattern (/v1/system/info), set once routing has happened. */
  route: string | null;
  /** The method the client sent, when the edge gave the app another for it (HEAD as GET). */
  sentMethod?: string;
  /** Who is calling, once the guard has checked their token. */
  principal?: Principal;
  /** The edge's refusal of the body (415, 400, 413 while reading), given once routing and the guard have passed. */
  refusedBody?: HttpProblem;
  /** The JSON body as the client sent it (the edge parsed it): to name fields its route does not know. */
  body?: unknown;
  /** Gives back the destructive route's confirmation the guard took, if the request is then refused unrun. */
  unspendConfirmation?: () => void;
  /** The request as Bun received it, and its server: what `worksLong` tells of a long answer. */
  received?: Request;
  server?: Pick<Server<undefined>, "timeout">;
  /** Set by `worksLong`: the edge gives the connection its idle timeout back once answered. */
  worksLong?: boolean;
}

/**
 * Tells the server that this request's answer takes a while to make (a backup, a walk of the
 * whole audit chain, a re-encryption of every value): its connection is not reset when the
 * client, waiting, sends nothing for the idle timeout (`http.idle_timeout_seconds`, there for
 * clients that go quiet while sending). Only for routes whose work grows with the data, called
 * once the guard has let the caller in: an operator or an admin, never anyone who connects.
 * The edge gives the connection its idle timeout back once the answer is made.
 */
export function worksLong(request: Request): void {
  const meta = requestMeta(request);
  if (!meta.received || !meta.server) return;
  meta.server.timeout(meta.received, 0);
  meta.worksLong = true;
}

/** The caller of a guarded route. Only routes that declare a scope or operator have one. */
export function principalOf(request: Request): Principal {
  const principal = requestMeta(request).principal;
  if (!principal) throw new Error("principalOf: this route is not guarded (declare its access)");
  return principal;
}

const META = Symbol("citadel.requestMeta");

type WithMeta = Request & { [META]?: RequestMeta };

export function attachRequestMeta(request: Request, meta: RequestMeta): void {
  (request as WithMeta)[META] = meta;
}

/** The request's meta; a request that did not come through the edge gets a fresh id. */
export function requestMeta(request: Request): RequestMeta {
  return ((request as WithMeta)[META] ??= { id: newRequestId(), client: "unknown", route: null });
}

/**
 * The path of a request URL, without building a URL object (this runs on hot paths). A URL
 * that starts with "/" is a path already (Bun's request.url without a usable Host).
 */
export function pathOf(url: string): string {
  const start = url.startsWith("/") ? 0 : url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The form of the ids Citadel makes itself: a process prefix and a base-36 counter below 2^53
 * (at most 11 digits; a B3 trace header's 16-hex-digit span id is not one of them).
 */
const OWN_REQUEST_ID = /^[0-9a-f]{16}-[0-9a-z]{1,11}$/i;

/**
 * Accepts a caller's X-Request-Id when it is a sane token, so traces join up; else makes one.
 * Not one of the form Citadel makes (this process's or an earlier one's, as seen in answers and
 * logs): a caller could then give its request the id of another one, and the log and the audit
 * would mix the two up.
 */
export function requestIdFor(inbound: string | null): string {
  return inbound !== null && VALID_REQUEST_ID.test(inbound) && !OWN_REQUEST_ID.test(inbound) ? inbound : newRequestId();
}

// Request ids: a random per-process prefix and a counter. Unique without a syscall or a
// random draw per request (a UUID per request cost a measurable share of the hot path);
// they are identifiers for logs, not secrets.
const PROCESS_PREFIX = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex");
let requestCounter = 0;

function newRequestId(): string {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${PROCESS_PREFIX}-${requestCounter.toString(36)}`;
}
