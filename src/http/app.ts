/**
 * The root Elysia app: health and readiness, the OpenAPI document and its docs page, the
 * plugins under /v1/<name>, the security headers and the one error mapper. What happens
 * before routing (request id, client address, rate limit, sealed gate, body checks) and the
 * access log live in edge.ts; nothing runs in Elysia's onRequest (see synchronous.ts).
 */
import { Elysia, t, type AnyElysia } from "elysia";
import { access, ACCESS_KEY, type AccessSpec } from "./access.ts";
import type { Guard } from "./guard.ts";
import type { Logger } from "../log.ts";
import { ForbiddenError } from "../errors.ts";
import { docsRoutes } from "./docs.ts";
import { inOAuthForm, isOAuthPath } from "./oauth-error.ts";
import { openApiDocument, type ApiInfo } from "./openapi.ts";
import { HttpProblem, problemFor, problemResponse, validationProblem, type ProblemInit } from "./problem.ts";
import { pathOf, requestMeta, type RequestMeta } from "./request-meta.ts";
import { securityHeaders } from "./security-headers.ts";
import { allowedMethods, locateInvalidParameter } from "./route-table.ts";
import { synchronous } from "./synchronous.ts";
import { unknownFields } from "./unknown-fields.ts";
import type { TSchema } from "@sinclair/typebox";

export interface MountedRoutes {
  /** Plugin name: the routes are mounted under /v1/<name>. */
  name: string;
  routes: AnyElysia;
}

export interface ReadinessCheck {
  name: string;
  /** Null when fine, else a short reason safe to show (no internals). */
  problem(): string | null;
}

export interface HttpAppOptions {
  mounts: readonly MountedRoutes[];
  /** Routes at fixed paths outside /v1 (the OAuth endpoints). */
  rootRoutes?: readonly AnyElysia[];
  /** Whether the API is served over TLS (HSTS is only sent then). */
  tls: boolean;
  readiness: readonly ReadinessCheck[];
  /** Enforces each route's declared access (src/http/guard.ts); without one, nothing is checked. */
  guard?: Guard;
  log: Logger;
  info: ApiInfo;
}

const Status = t.Object({ status: t.String() });

interface ErrorContext {
  code: unknown;
  error: unknown;
  request: Request;
  route: string;
}

export function createHttpApp({ mounts, rootRoutes = [], tls, readiness, guard, log, info }: HttpAppOptions): AnyElysia {
  let declarations: Map<string, Map<string, AccessSpec>> | undefined;
  // By route, then method: no key string is built per request.
  const accessOf = (method: string, route: string) => (declarations ??= accessByRoute(app)).get(route)?.get(method === "HEAD" ? "GET" : method);
  let bodySchemas: Map<string, TSchema> | undefined;
  const bodySchemaOf = (method: string, route: string) => (bodySchemas ??= bodyDeclarations(app)).get(`${method} ${route}`);
  let querySchemas: Map<string, TSchema> | undefined;
  const querySchemaOf = (method: string, route: string) => (querySchemas ??= queryDeclarations(app)).get(`${method} ${route}`);
  // Handlers destructure only what they use: Elysia builds just that part of the context.
  // encodeSchema off: Elysia's t.Integer is a transform (it coerces query strings), and a
  // response schema holding one was run through TypeBox's interpreted Value.Encode — 16 µs of a
  // secret list's 90. Responses are still checked against their schema (compiled Check); no
  // route returns a value that needs encoding (a Date is turned into ISO text by the route).
  const app = new Elysia({ name: "citadel", encodeSchema: false })
    .headers(securityHeaders({ tls })) // merged into every response as it is built
    .onError(({ code, error, request, route, set }) => {
      const meta = requestMeta(request);
      set.headers["x-request-id"] = meta.id;
      meta.route ??= route ?? null; // errors before the handler (validation) still name their route
      // The request failed its schema before the route ran (not the route's response): the
      // confirmation it brought still holds, for the same request with its body put right.
      if (code === "VALIDATION" && (error as { type?: string }).type !== "response") meta.unspendConfirmation?.();
      const problem = problemForElysia(app, { code, error, request, route });
      const init = isOAuthPath(pathOf(request.url)) ? inOAuthForm(problem) : problem;
      // The guard audits its own refusals; one the route's service makes of a caller the guard
      // let in is a refusal too, and goes to the same record (its message names no secret).
      if (error instanceof ForbiddenError && meta.principal) guard?.refusedInHandler?.(meta.principal, request, meta.route ?? route, error.message);
      if (init.code === "internal_error") log.error("request failed", { request_id: meta.id, route: meta.route, error });
      return problemResponse(init, meta.id);
    })
    // Transform runs before validation: an unauthenticated caller learns nothing of a route's
    // body shape, and gets 401, not 422 — nor 415 or 400 for a body the edge refused.
    .onTransform(
      { as: "global" },
      synchronous(({ request, route, params, set, qi }: TransformContext) => {
        const meta = requestMeta(request);
        meta.route = route;
        set.headers["x-request-id"] = meta.id;
        if (params) refuseUndecodableParams(params);
        guard?.(accessOf(request.method, route), request, (params ?? {}) as Record<string, string>, route);
        if (meta.refusedBody) throw meta.refusedBody;
        // A URL without '?' (qi -1, found by Elysia's router already) has no parameter to check.
        if (qi !== -1) refuseQuery(querySchemaOf(request.method, route), request.url, meta);
        if (meta.body !== undefined) refuseUnknown("body", unknownFields(bodySchemaOf(request.method, route), meta.body), meta);
      }),
    )
    .get("/healthz", synchronous(() => ({ status: "ok" })), {
      response: Status,
      detail: { summary: "Liveness: the process answers", tags: ["health"], ...access({ public: true, noReadSnapshot: true }) },
    })
    .get(
      "/readyz",
      synchronous(() => {
        const failing = readiness.flatMap((c) => {
          const problem = c.problem();
          return problem ? [`${c.name}: ${problem}`] : [];
        });
        if (failing.length > 0) throw new HttpProblem(503, "not_ready", failing.join("; "));
        return { status: "ready" };
      }),
      { response: Status, detail: { summary: "Readiness: the store answers and the service can take traffic", tags: ["health"], ...access({ public: true, noReadSnapshot: true }) } },
    );

  for (const mount of mounts) app.group(`/v1/${mount.name}`, (group) => group.use(mount.routes));
  for (const routes of rootRoutes) app.use(routes);

  let document: object | undefined;
  app.get("/openapi.json", () => (document ??= documentOfCompiledRoutes(app, info)), {
    detail: { summary: "This API's OpenAPI 3.1 document", tags: ["docs"], ...access({ public: true }) },
  });
  app.use(docsRoutes());
  return app;
}

/** Every route's declared access, by "METHOD /path/:pattern". */
export function accessDeclarations(app: AnyElysia): Map<string, AccessSpec> {
  const map = new Map<string, AccessSpec>();
  for (const route of app.routes) {
    const spec = (route.hooks as { detail?: Record<string, unknown> } | undefined)?.detail?.[ACCESS_KEY] as AccessSpec | undefined;
    if (spec) map.set(`${route.method.toUpperCase()} ${route.path}`, spec);
  }
  return map;
}

/** Every route's declared access, by path pattern, then method. */
function accessByRoute(app: AnyElysia): Map<string, Map<string, AccessSpec>> {
  const byRoute = new Map<string, Map<string, AccessSpec>>();
  for (const [declaration, spec] of accessDeclarations(app)) {
    const [method, route] = [declaration.slice(0, declaration.indexOf(" ")), declaration.slice(declaration.indexOf(" ") + 1)];
    let methods = byRoute.get(route);
    if (!methods) byRoute.set(route, (methods = new Map()));
    methods.set(method, spec);
  }
  return byRoute;
}

/**
 * Every route's body schema, by "METHOD /path/:pattern" — but the OAuth endpoints': an OAuth
 * server MUST ignore request parameters it does not know (RFC 6749 section 3.1), and clients
 * send some (client_secret, scope) to every server.
 */
function bodyDeclarations(app: AnyElysia): Map<string, TSchema> {
  const map = new Map<string, TSchema>();
  for (const route of app.routes) {
    if (route.path.startsWith("/oauth/")) continue;
    const body = (route.hooks as { body?: unknown } | undefined)?.body;
    // A route that takes no body takes no field either: `{"enabled": false}` sent to one that
    // activates a service must not answer 200 having done the opposite.
    map.set(`${route.method.toUpperCase()} ${route.path}`, body && typeof body === "object" ? (body as TSchema) : NO_FIELDS);
  }
  return map;
}

const NO_FIELDS = t.Object({});

/**
 * Every route's query schema, by "METHOD /path/:pattern": Elysia drops a parameter its route
 * does not declare, as it does a body's field, so `?acton=` for `?action=` exported the whole
 * audit log and `?versoin=1` read the current value. A route that declares none takes none.
 * Not the routes that must take what they do not know (ROUTES_TAKING_ANY_PARAMETER).
 */
function queryDeclarations(app: AnyElysia): Map<string, TSchema> {
  const map = new Map<string, TSchema>();
  for (const route of app.routes) {
    if (route.path.startsWith("/oauth/") || ROUTES_TAKING_ANY_PARAMETER.has(route.path)) continue;
    const query = (route.hooks as { query?: unknown } | undefined)?.query;
    map.set(`${route.method.toUpperCase()} ${route.path}`, query && typeof query === "object" ? (query as TSchema) : NO_FIELDS);
  }
  return map;
}

/**
 * Routes that ignore query parameters they do not know, besides the OAuth endpoints (/oauth/*,
 * the device approval page among them: RFC 6749 section 3.1, as for their bodies): pages a
 * browser opens from a link, which mail and chat tools decorate (`?utm_source=`), and their
 * assets; /metrics, where a Prometheus job may add its `params` to every target it scrapes; and
 * the health and readiness probes, which load balancers' checks may decorate (a cache buster)
 * and which change nothing whatever they are asked.
 */
const ROUTES_TAKING_ANY_PARAMETER = new Set(["/docs", "/docs/ui.js", "/docs/ui.css", "/v1/secrets/shares/:share", "/v1/secrets/share-page.js", "/metrics", "/healthz", "/readyz"]);

/** What the transform hook reads of Elysia's context. */
interface TransformContext {
  request: Request;
  route: string;
  params?: Record<string, string | undefined>;
  set: { headers: Record<string, string | number> };
  /** Elysia's index of the '?' in request.url (-1 for none): on every context, though not in its types. */
  qi?: number;
}

/**
 * Query parameters the route does not declare, or declares once but were given more than once,
 * are refused (422 naming them): Elysia keeps the last of `?version=1&version=2` in silence, so
 * the caller could not tell which was read. (No route takes a list in its query.)
 */
function refuseQuery(schema: TSchema | undefined, url: string, meta: RequestMeta): void {
  if (schema === undefined) return; // a route that takes any parameter (ROUTES_TAKING_ANY_PARAMETER, OAuth)
  // As Elysia decodes them (`+` is a space).
  const pairs = [...new URLSearchParams(url.slice(url.indexOf("?") + 1))];
  refuseUnknown("query", unknownFields(schema, Object.fromEntries(pairs)), meta);
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const [name] of pairs) (seen.has(name) ? repeated : seen).add(name);
  const pointer = (name: string) => `/${name.replaceAll("~", "~0").replaceAll("/", "~1")}`;
  refuseUnknown("query", [...repeated].map(pointer), meta, "given more than once");
  const properties = (schema.properties ?? {}) as Record<string, TSchema>;
  const notDecimal = pairs.filter(([name, value]) => Object.hasOwn(properties, name) && isQueryInteger(properties[name]!) && !DECIMAL_INTEGER.test(value));
  refuseUnknown("query", notDecimal.map(([name]) => pointer(name)), meta, "Expected integer");
}

/**
 * Elysia's t.Integer, which reads its text as JavaScript does a number: `?limit=0x10` was 16,
 * and "1e2", " 5 " and "" were numbers too. A query integer is plain decimal digits.
 */
const isQueryInteger = (schema: TSchema) => (schema.anyOf as TSchema[] | undefined)?.some((branch) => branch.type === "string" && branch.format === "integer") === true;
const DECIMAL_INTEGER = /^-?(0|[1-9][0-9]*)$/;

/**
 * A body with fields, or a URL with query parameters, its route does not know (or, `message`
 * says, given twice) is refused, 422 naming them (see unknown-fields.ts), once the guard has let
 * the caller in — and unrun, so a destructive route's confirmation stays.
 */
function refuseUnknown(location: "body" | "query", pointers: string[], meta: RequestMeta, message = location === "body" ? "unknown field" : "unknown parameter"): void {
  if (pointers.length === 0) return;
  meta.unspendConfirmation?.();
  const init = validationProblem(location, pointers.slice(0, 20).map((pointer) => ({ path: pointer, message })));
  throw new HttpProblem(422, init.code, init.detail ?? `The ${location} is not valid.`, {}, { errors: init.errors });
}

/** "METHOD <path>" of the routes whose refusals are HTML pages for a person (errorPages, see AccessSpec). */
export function withErrorPages(app: AnyElysia): Set<string> {
  return new Set([...accessDeclarations(app)].filter(([, spec]) => spec.errorPages).map(([route]) => route));
}

/** "GET <path>" of the GET routes at a fixed path that declare noReadSnapshot (see AccessSpec). */
export function withoutReadSnapshot(app: AnyElysia): Set<string> {
  const routes = new Set<string>();
  for (const [route, spec] of accessDeclarations(app)) {
    if (!spec.noReadSnapshot) continue;
    const [method, path] = route.split(" ") as [string, string];
    if (method !== "GET" || path.includes(":") || path.includes("*")) throw new Error(`${route}: noReadSnapshot is for GET routes at a fixed path`);
    routes.add(route);
  }
  return routes;
}

/**
 * Elysia compiles a route at its first request and adds to its schemas as it does (responses
 * get `additionalProperties: false`): the document is made once every route is compiled, or it
 * would depend on which requests came first (found in review).
 */
function documentOfCompiledRoutes(app: AnyElysia, info: ApiInfo): object {
  for (const route of (app.router as { history: Array<{ compile?: () => unknown }> }).history) route.compile?.();
  return openApiDocument(app, info);
}

/** Elysia's own error codes, then ours: one place decides what the client sees. */
function problemForElysia(app: AnyElysia, ctx: ErrorContext): ProblemInit {
  const { code, error, request } = ctx;
  if (error instanceof HttpProblem) return problemFor(error);
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause instanceof HttpProblem) return problemFor(cause);
  switch (code) {
    case "NOT_FOUND": {
      const allowed = allowedMethods(app, pathOf(request.url));
      const method = requestMeta(request).sentMethod ?? request.method; // HEAD, not the GET the edge made of it
      if (allowed.length > 0 && !allowed.includes(method)) {
        return {
          status: 405,
          code: "method_not_allowed",
          detail: `${method} is not allowed here; use ${allowed.join(", ")}.`,
          headers: { allow: allowed.join(", ") },
        };
      }
      return { status: 404, code: "not_found", detail: "No such route." };
    }
    case "VALIDATION": {
      const v = error as { type?: string; all?: Array<{ path: string; message: string }> };
      // A response that fails its own schema is our bug, not the client's.
      if (v.type === "response") return problemFor(new Error("response failed its schema"));
      if (v.type === "property") {
        // A coerced query or path parameter: Elysia does not say which, so find it.
        const field = locateInvalidParameter(app, request, ctx.route) ?? "parameters";
        const message = v.all?.[0]?.message ?? "Invalid value";
        return { status: 422, code: "validation_failed", detail: `${field}: ${message}`, errors: [{ field, message }] };
      }
      return validationProblem(v.type ?? "body", v.all ?? []);
    }
    case "PARSE":
      return { status: 400, code: "malformed_json", detail: "The request body is not valid JSON." };
    case "INVALID_COOKIE_SIGNATURE":
      return { status: 400, code: "bad_request", detail: "A cookie failed its signature check." };
    default:
      return problemFor(error);
  }
}

/**
 * A path segment Elysia could not percent-decode (`%ZZ`, `%C3%28`) reaches the route as null,
 * and a route reading it as text failed with a 500: refused here, for every route at once.
 */
function refuseUndecodableParams(params: Record<string, unknown>): void {
  for (const name in params) {
    if (params[name] === null) throw new HttpProblem(400, "bad_request", `The path segment for ${name} is not valid percent-encoded UTF-8.`);
  }
}
