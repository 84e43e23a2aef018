/**
 * What a route requires, declared as data next to the route:
 *
 *   .get("/orgs/:org/members", handler, { detail: { summary: "...", ...access({ scope: "iam:read", org: "org" }) } })
 *
 * The guard reads these declarations from the route table; a route without one is refused
 * (deny by default), and the authorization tests enumerate them from the same table.
 */
import type { Permission } from "../auth/rbac.ts";

export interface AccessSpec {
  /** No credentials needed (health, unseal, login, the OAuth endpoints). */
  public?: true;
  /**
   * With `public`: the guard lets the request through and the handler checks a credential of
   * its own kind (a mesh node's token), answering 401 without it. Named so that a reader, and
   * the authorization tests, can tell such a route from an open one.
   */
  ownCredential?: string;
  /**
   * With `scope` or `operator`: a loopback client (this host's own Prometheus or monitoring
   * agent) passes without a token; any other client needs what the rest of the declaration
   * says. For read-only routes that reveal nothing secret (GET /metrics). Behind a reverse
   * proxy on this host, the proxy must be in http.trusted_proxies, or every client looks local.
   */
  loopbackPublic?: true;
  /** The token scope the route needs, such as "secrets:write". */
  scope?: string;
  /** The role permission needed in the target organization (default: from the scope's action). */
  permission?: Permission;
  /** Name of the path parameter that holds the target organization's id. */
  org?: string;
  /** Name of the path parameter that holds the target workspace's id. */
  workspace?: string;
  /**
   * Any valid credential, whatever its scopes: for what a credential does to itself alone
   * (logging itself out — ending a token is never a privilege to withhold, as Vault's
   * revoke-self). Its organization's rules still apply.
   */
  anyScope?: true;
  /** Appliance operators only (seal, keys, audit verification). */
  operator?: true;
  /** Destructive: the first call answers 428 with a confirmation token to send back. */
  confirm?: true;
  /** Under the stricter rate limit of login and token endpoints. */
  authLimit?: true;
  /** Open to a user who still has to change a one-time password (who am I, change it, log out). */
  beforePasswordChange?: true;
  /**
   * For a GET at a fixed path whose handler reads the database at most once, or answers from
   * memory all but rarely (health, build facts, a mesh node's config poll): the edge runs it
   * without a read snapshot (Store.snapshot), whose BEGIN and COMMIT cost more than they save
   * there (about 2 µs per request on a busy socket).
   */
  noReadSnapshot?: true;
  /**
   * The route is a page a person reads (the device approval form): its refusals are pages too,
   * HTML with the refusal's status (401, 404, 429 with Retry-After), which the edge lets through
   * where it would replace any other error answer outside the problem envelope.
   */
  errorPages?: true;
}

export const ACCESS_KEY = "x-citadel-access";

/** The OpenAPI security scheme a route's requirement names (declared in openapi.ts: BEARER_SECURITY_SCHEME). */
export const BEARER_SCHEME = "bearer";

/** The `detail` fragment that declares a route's access (shown in the OpenAPI document too). */
export function access(spec: AccessSpec): { [ACCESS_KEY]: AccessSpec; security?: Array<Record<string, string[]>> } {
  if (!spec.public && !spec.scope && !spec.operator && !spec.anyScope) throw new Error("a route's access needs a scope, operator, anyScope or public");
  if (spec.anyScope && (spec.scope || spec.org || spec.workspace || spec.operator)) throw new Error("anyScope is for a credential acting on itself alone: no scope, organization, workspace or operator");
  if (spec.loopbackPublic && spec.public) throw new Error("loopbackPublic is for routes that are not public to everyone");
  // (That noReadSnapshot is only on GETs at fixed paths is checked where routes are known: withoutReadSnapshot.)
  return spec.public ? { [ACCESS_KEY]: spec, security: [] } : { [ACCESS_KEY]: spec, security: [{ [BEARER_SCHEME]: spec.scope ? [spec.scope] : [] }] };
}
