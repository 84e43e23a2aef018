/**
 * Per-request facts the edge establishes before routing (request id, client address) and
 * that handlers, the error mapper and the access log all need. Keyed by the Request object,
 * so nothing has to be threaded through Elysia's context.
 */
export interface RequestMeta {
  /** Echoed in X-Request-Id, in every problem body and in the log line. */
  readonly id: string;
  /** The client: the socket peer, or the X-Forwarded-For hop a trusted proxy vouches for. */
  readonly client: string;
  /** The matched route pattern (/v1/system/info), set once routing has happened. */
  route: string | null;
}

const metas = new WeakMap<Request, RequestMeta>();

export function attachRequestMeta(request: Request, meta: RequestMeta): void {
  metas.set(request, meta);
}

/** The request's meta; requests that did not come through the edge (in-process tests) get a fresh id. */
export function requestMeta(request: Request): RequestMeta {
  let meta = metas.get(request);
  if (!meta) {
    meta = { id: Bun.randomUUIDv7(), client: "unknown", route: null };
    metas.set(request, meta);
  }
  return meta;
}

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts a caller's X-Request-Id when it is a sane token, so traces join up; else makes one. */
export function requestIdFor(inbound: string | null): string {
  return inbound !== null && VALID_REQUEST_ID.test(inbound) ? inbound : Bun.randomUUIDv7();
}
