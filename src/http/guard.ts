/**
 * The guard: runs before every route's handler and enforces what the route declared (see
 * access.ts). Deny by default: a route without a declaration is refused. In order it checks
 * the shield's verdict on the client address (refused: 403; throttled: the strict bucket), the
 * stricter login/token rate limit, the token (via the identity service; a loopback client of a
 * `loopbackPublic` route needs none), the token's address allowlist, operator status, the
 * scope (and a service key's one service), then the
 * target organization or workspace — membership, role, workspace narrowing, allowlists,
 * service activation, required MFA, the organization's rate limit — and finally, for
 * destructive routes, the confirmation token. Failures are audited and answered with the
 * problem envelope: 401, 403, 404, 428 or 429.
 */
import type { AuditEventInput } from "../audit/event.ts";
import type { Confirmations } from "../auth/confirmations.ts";
import { actorOf, roleHolder, type IdentityProvider, type IdentityRegistry, type OrganizationFacts, type Principal, type WorkspaceFacts } from "../auth/principal.ts";
import { rateLimitHeaders, type RateLimiter } from "../auth/rate-limit.ts";
import { effectiveRole, permissionForScope, roleAllows, type Permission } from "../auth/rbac.ts";
import { scopeService, scopesGrant } from "../auth/scopes.ts";
import { BoundedMap } from "../bounded-map.ts";
import { toCidr, type Assessment, type Shield, type ShieldSlot } from "../intel/shield.ts";
import type { ShieldVerdictCounters } from "../metrics.ts";
import { cidrContains, clientKey, formatCidr, isLoopback, parseIp, type Cidr } from "../net/ip.ts";
import type { AccessSpec } from "./access.ts";
import { auditRequest } from "./audit-request.ts";
import { HttpProblem } from "./problem.ts";
import { oncePerMinute } from "./rate-limit-audit.ts";
import { requestMeta } from "./request-meta.ts";

export interface GuardOptions {
  identity: IdentityRegistry;
  /** The shield (intel): its verdict on the client address comes before everything else. */
  shield?: ShieldSlot;
  /** Counts the shield's verdicts on HTTP clients (metrics). */
  verdicts?: ShieldVerdictCounters;
  confirmations: Confirmations;
  limits: { auth: RateLimiter; organization: RateLimiter };
  /** Records a security event in its own transaction, without making the request wait. */
  recordSecurityEvent: (event: AuditEventInput) => void;
  now: () => number;
}

export interface Guard {
  /** Synchronous by type (`undefined`, not `void`): an async guard's refusal would float away unheeded. */
  (spec: AccessSpec | undefined, request: Request, params: Record<string, string>, route: string): undefined;
  /**
   * Records a refusal the route's handler made (a ForbiddenError) of a caller the guard let in,
   * as the guard records its own: the same event, heard by the shield too. Called by the app's
   * error handler, so a successful request never pays for it.
   */
  refusedInHandler?(principal: Principal, request: Request, route: string, why: string): void;
}

export function createGuard({ identity, shield, verdicts, confirmations, limits, recordSecurityEvent, now }: GuardOptions): Guard {
  // One rate-limit event per key and minute: a flood is recorded, not amplified.
  const limitEvents = oncePerMinute(now);
  /** Tells the shield about a refusal of the caller's own doing: each counts there, though the audit log samples rate limits. */
  const observe = (request: Request, signal: "invalid_token" | "http_forbidden" | "http_rate_limited") => shield?.current?.observe(requestMeta(request).client, signal);

  /**
   * 429, sampled in the audit log. Not told to the shield: see addressLimited. An
   * organization's limit names the organization (and the workspace the request was for), in
   * its reason and its event's columns, so that its own events find it.
   */
  const limited = (key: string, decision: ReturnType<RateLimiter["take"]>, request: Request, principal?: Principal, where: Where = NOWHERE): never => {
    if (limitEvents.due(key)) {
      const limitOf = where.organization ? `organization ${where.organization}` : key.split(":")[0];
      recordSecurityEvent({
        action: "auth.rate_limit",
        actor: principal ? actorOf(principal) : { kind: "anonymous" },
        outcome: "failure",
        reason: `${decision.policy.name} limit for ${limitOf}`,
        ...where,
        request: requestContext(request),
      });
    }
    throw new HttpProblem(429, "rate_limited", `Too many requests; retry in ${decision.retryAfter} s.`, rateLimitHeaders(decision));
  };
  /**
   * 429 from a bucket of the caller's address: its own doing, which the shield hears of. An
   * organization's limit is reached by all its members together, and a throttled prefix's by
   * all its addresses: held against none of them.
   */
  const addressLimited = (key: string, decision: ReturnType<RateLimiter["take"]>, request: Request, principal?: Principal): never => {
    observe(request, "http_rate_limited");
    return limited(key, decision, request, principal);
  };

  /**
   * The strict bucket a throttled client takes from, kept a few seconds per client: finding it
   * takes a whole assessment, and a throttled client keeps coming. Looked up anew once the
   * decision or entry that made it may have ended, or the clock went back.
   */
  const throttleBuckets = new BoundedMap<string, { key: string; from: number; until: number }>(MAX_THROTTLED);
  const throttleBucket = (current: Shield, client: string): string => {
    const at = now();
    const known = throttleBuckets.get(client);
    if (known && known.from <= at && at < known.until) return known.key;
    const { key, until } = throttledBy(current.assess(client, { dryRun: true }), client);
    throttleBuckets.set(client, { key, from: at, until: Math.min(until, at + THROTTLE_BUCKET_MS) });
    return key;
  };

  /** Every refusal costs the caller's address a token of the strict bucket: a prober soon gets 429. */
  const failed = (request: Request, principal?: Principal) => {
    const key = `address:${clientKey(requestMeta(request).client)}`;
    const decision = limits.auth.take(key);
    if (!decision.allowed) addressLimited(key, decision, request, principal);
  };

  /**
   * A refusal of a caller whose token was good, for the audit log and the shield: the guard's
   * own, and its handler's. One in an organization's (or workspace's) rules names it.
   */
  const recordRefusal = (p: Principal, request: Request, route: string, why: string, where: Where = NOWHERE) => {
    observe(request, "http_forbidden");
    recordSecurityEvent({ action: "auth.permission.deny", actor: actorOf(p), outcome: "failure", reason: `${request.method} ${route}: ${why}`, ...where, request: requestContext(request) });
  };

  /** The organization (and workspace) each request let in acts in: a refusal its handler makes names them as the guard's do. */
  const placeOfRequest = new WeakMap<Request, Where>();

  const guard: Guard = function guard(spec, request, params, route) {
    const meta = requestMeta(request);
    // The shield first: a refused address learns nothing more, not even which routes exist.
    // Its decisions are audited where they are made (the intel plugin), not once per request.
    const current = shield?.current;
    const verdict = current ? current.decide(meta.client, "http") : "allow";
    if (current && verdicts) verdicts[verdict].value++; // no shield, no verdict to count
    if (verdict === "refuse" || verdict === "drop") throw new HttpProblem(403, "forbidden", "Requests from your address are refused.");
    if (verdict === "throttle" && current) {
      // A throttled address (or prefix) shares the strict login bucket for every request. A
      // prefix's bucket is emptied by all of its addresses together: its 429 is held against
      // none of them, as an organization's is not (found in review: a neighbour's first
      // requests each counted against it).
      const key = throttleBucket(current, meta.client);
      const decision = limits.auth.take(key);
      if (!decision.allowed) (key.startsWith("address:") ? addressLimited : limited)(key, decision, request);
    }
    if (!spec) throw new HttpProblem(403, "forbidden", "This route declares no access rule, so it is closed.");
    if (spec.authLimit) {
      const key = `address:${clientKey(meta.client)}`; // an IPv6 client counts as its /64
      const decision = limits.auth.take(key);
      if (!decision.allowed) addressLimited(key, decision, request);
    }
    if (spec.public) return;
    // Whatever token it sends, if any — but not for a request a proxy on this host forwarded
    // without being a trusted proxy: its client is somewhere else, and only looks local.
    if (spec.loopbackPublic && isLoopbackClient(meta.client) && !forwarded(request)) return;

    const provider = identity.provider;
    const token = bearerToken(request);
    if (!token || !provider) {
      throw new HttpProblem(401, "unauthorized", "Send a token: Authorization: Bearer citadel_...", { "www-authenticate": 'Bearer realm="citadel"' });
    }
    const result = provider.authenticate(token, meta.client, now());
    if (!result.ok) {
      // Guessing tokens is throttled like guessing passwords. The limit is taken first: once an
      // address is limited, its flood is one rate-limit event a minute, not one row per request.
      observe(request, "invalid_token");
      failed(request);
      recordSecurityEvent({ action: "auth.token.reject", actor: { kind: "anonymous" }, outcome: "failure", reason: result.reason, request: requestContext(request) });
      throw new HttpProblem(401, "unauthorized", REJECTIONS[result.reason], { "www-authenticate": 'Bearer realm="citadel", error="invalid_token"' });
    }
    const p = result.principal;
    meta.principal = p;
    const deny = (why: string, code = "forbidden", headers?: Record<string, string>, where?: Where): never => {
      recordRefusal(p, request, route, why, where);
      failed(request, p);
      throw new HttpProblem(403, code, `${why[0]!.toUpperCase()}${why.slice(1)}.`, headers);
    };

    if (!allowedFrom(meta.client, p.ipAllowlist)) deny("this token may not be used from your address");
    if (p.mustChangePassword && !spec.beforePasswordChange) deny("change your one-time password first (POST /v1/iam/me/password)", "password_change_required");
    if (spec.operator && !p.operator) deny("only an operator may do this");
    if (spec.scope) {
      if (p.service && scopeService(spec.scope) !== p.service) deny(`this API key is for the ${p.service} service only`);
      // RFC 6750's name for it, so that a client can tell "ask for a wider token" from "not allowed".
      if (p.scopes !== "all" && !scopesGrant(p.scopes, spec.scope)) {
        deny(`the token lacks the scope ${spec.scope}`, "insufficient_scope", { "www-authenticate": `Bearer realm="citadel", error="insufficient_scope", scope="${spec.scope}"` });
      }
    }

    // A credential bound to one organization (an API key, a token made by one) stays under that
    // organization's rules on every route: a route that names none acts in the credential's.
    const routeNamesOrganization = spec.org !== undefined || spec.workspace !== undefined;
    let organizationId = spec.org ? params[spec.org] : !spec.workspace ? (p.organizationId ?? undefined) : undefined;
    const workspace = spec.workspace ? provider.workspace(params[spec.workspace] ?? "") : null;
    if (spec.workspace) {
      if (!workspace) throw new HttpProblem(404, "not_found", "No such workspace.");
      organizationId = workspace.organizationId;
    }
    if (organizationId !== undefined) {
      const org = provider.organization(organizationId);
      if (!org && !routeNamesOrganization) deny("the organization this credential belongs to no longer exists");
      if (!org) throw new HttpProblem(404, "not_found", "No such organization.");
      const permission = spec.permission ?? (spec.scope ? permissionForScope(spec.scope) : "admin");
      const where = { organization: org.id, workspace: workspace?.id ?? null };
      const refusal = organizationRefusal(provider, p, meta.client, { org, workspace, routeNamesOrganization, permission });
      if (refusal) deny(refusal.why, refusal.code, undefined, { ...where, workspace: refusal.workspace ?? where.workspace });
      const decision = limits.organization.take(`org:${org.id}`);
      if (!decision.allowed) limited(`org:${org.id}`, decision, request, p, where);
      placeOfRequest.set(request, where);
    }

    if (spec.confirm) {
      // A body the edge refused is answered before the confirmation is spent: sent again
      // without that body, the same confirmation must still work.
      const refusedBody = requestMeta(request).refusedBody;
      if (refusedBody) throw refusedBody;
      const binding = `${p.tokenId}|${request.method} ${route}|${JSON.stringify(params)}`;
      const presented = request.headers.get("x-citadel-confirm");
      const giveBack = presented ? confirmations.consume(presented, binding) : null;
      // A body that then fails the route's schema (422) gives it back: nothing was done.
      if (giveBack) requestMeta(request).unspendConfirmation = giveBack;
      else {
        const { token: confirmation, expiresInSeconds } = confirmations.issue(binding);
        throw new HttpProblem(
          428,
          "confirmation_required",
          `${presented ? "That confirmation was not valid for this request. " : ""}This cannot be undone: repeat the same request with the header X-Citadel-Confirm: ${confirmation} within ${expiresInSeconds} s.`,
          {},
          { confirmation_token: confirmation, expires_in: expiresInSeconds },
        );
      }
    }
  };
  // As the guard's own refusals, a handler's cost the address a token of the strict bucket; once
  // it is empty they are no longer recorded one by one (the 403 stands: the error handler must
  // not turn it into a 429), so a caller cannot write audit rows as fast as it sends requests.
  guard.refusedInHandler = (p, request, route, why) => {
    const key = `address:${clientKey(requestMeta(request).client)}`;
    if (limits.auth.take(key).allowed) recordRefusal(p, request, route, why, placeOfRequest.get(request));
    else observe(request, "http_forbidden");
  };
  return guard;
}

/** The organization and workspace a refusal was made in, for its audit event's columns. */
interface Where {
  organization?: string | null;
  workspace?: string | null;
}
const NOWHERE: Where = {};

/** Why a request is refused: said to the caller (capitalized) and recorded; `code` is the problem's, "forbidden" when none. */
export interface Refusal {
  why: string;
  code?: string;
  /**
   * The workspace whose rule refused it, when the route names none: a token restricted to a
   * workspace stays under its rules there, and the refusal is recorded in it.
   */
  workspace?: string;
}

/**
 * The rules of the organization (and the workspace) a request acts in, for the principal making
 * it: the organization and workspace a credential is bound to, the allowlists, the service's
 * activation for an API key, the membership and role of whoever bounds it (`roleHolder`), and
 * required MFA. Why they refuse it, or null.
 */
export function organizationRefusal(
  provider: IdentityProvider,
  p: Principal,
  client: string,
  at: { org: OrganizationFacts; workspace: WorkspaceFacts | null; routeNamesOrganization: boolean; permission: Permission },
): Refusal | null {
  const { org, workspace, routeNamesOrganization } = at;
  if (p.organizationId && p.organizationId !== org.id) return { why: "this credential belongs to another organization" };
  if (p.workspaceId && routeNamesOrganization && workspace?.id !== p.workspaceId) return { why: "this token is restricted to another workspace" };
  if (!allowedFrom(client, org.ipAllowlist)) return { why: "the organization does not allow requests from your address" };
  // As with the organization: a token restricted to a workspace stays under its allowlist on a route that names none.
  const boundWorkspace = p.workspaceId && !routeNamesOrganization ? provider.workspace(p.workspaceId) : undefined;
  if (boundWorkspace === null) return { why: "the workspace this token is restricted to no longer exists", workspace: p.workspaceId! };
  const listing = workspace ?? boundWorkspace;
  if (listing && !allowedFrom(client, listing.ipAllowlist)) return { why: "the workspace does not allow requests from your address", workspace: listing.id };
  if (p.service && !org.serviceActive(p.service)) return { why: `the ${p.service} service is not activated for this organization` };
  // The role that bounds the caller: the user's, or — for a service key — its maker's, so that
  // a key outlives neither the membership nor the role it was made under.
  const holder = roleHolder(p);
  if (!holder) return null;
  const key = p.userId === null;
  const orgRole = provider.roleIn(holder, org.id);
  if (!orgRole) return { why: key ? "the member who made this API key is no longer a member of this organization" : "you are not a member of this organization" };
  // The role governs what is done in the organization; a route about the user alone (their
  // profile, their tokens) only needs the membership the bound token still depends on. A
  // key has no such routes: its maker's role always applies.
  if (routeNamesOrganization || key) {
    const role = effectiveRole(orgRole, workspace ? provider.workspaceRole(holder, workspace.id) : null);
    const what = at.permission.replace("_", " ");
    if (!roleAllows(role, at.permission)) return { why: key ? `the member who made this API key is ${role} here, which does not allow ${what}` : `your role (${role}) does not allow ${what}` };
  }
  // Of a key's maker too: a key made before the organization required MFA must not outlast it.
  if (org.requireMfa && !p.mfa) {
    return { why: key ? "this organization requires two-factor authentication, which the member who made this API key has not enrolled" : "this organization requires two-factor authentication: enrol TOTP first", code: "mfa_required" };
  }
  return null;
}

/**
 * The rules of the organization a credential is bound to, where a request names none and needs
 * `permission` there: what the guard applies on such a route, and the token exchange to the
 * token it exchanges (which must not mint, from where the organization refuses it, what the
 * organization would refuse it). Why they refuse it, or null; a credential bound to none has none.
 */
export function boundOrganizationRefusal(provider: IdentityProvider, p: Principal, client: string, permission: Permission): Refusal | null {
  if (!p.organizationId) return null;
  const org = provider.organization(p.organizationId);
  if (!org) return { why: "the organization this credential belongs to no longer exists" };
  return organizationRefusal(provider, p, client, { org, workspace: null, routeNamesOrganization: false, permission });
}

/** Throttled clients whose bucket is remembered, and for how long at most. */
const MAX_THROTTLED = 10_000;
const THROTTLE_BUCKET_MS = 10_000;

/**
 * The bucket a throttle is charged to: the client's own (an IPv6 client's /64), unless what
 * throttles it — a decision, a deny entry — is on a wider prefix (a /24, a /56, a /48): then one
 * bucket for that prefix, not one per address or /64 of it, which would let a /56 send 256
 * times what the throttle means to allow. With how long that holds.
 */
function throttledBy(a: Assessment, client: string): { key: string; until: number } {
  const by = a.source === "decision" ? a.decision : a.source === "denylist" ? a.manual : null;
  const cidr = by && toCidr(by.target);
  if (!by || !cidr || cidr.prefix >= (cidr.family === 4 ? 32 : 64)) return { key: `address:${clientKey(client)}`, until: by?.until ?? Infinity };
  return { key: `prefix:${formatCidr(cidr)}`, until: by.until ?? Infinity };
}

const REJECTIONS = {
  malformed: "That is not a Citadel token.",
  unknown: "The token is not valid.",
  expired: "The token has expired.",
  revoked: "The token was revoked.",
  disabled: "The account behind this token is disabled.",
} as const;

function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  if (!header || !/^bearer /i.test(header)) return null;
  return header.slice(7).trim() || null;
}

function isLoopbackClient(client: string): boolean {
  const ip = parseIp(client);
  return ip !== null && isLoopback(ip);
}

function allowedFrom(client: string, allowlist: readonly Cidr[]): boolean {
  if (allowlist.length === 0) return true;
  const ip = parseIp(client);
  return ip !== null && allowlist.some((c) => cidrContains(c, ip));
}

const requestContext = auditRequest;

/** Headers a reverse proxy adds. Seen on a loopback request whose peer is not a trusted proxy (else the client would be the forwarded one). */
function forwarded(request: Request): boolean {
  const h = request.headers;
  return h.has("x-forwarded-for") || h.has("forwarded") || h.has("x-real-ip");
}
