/**
 * Route guards shared by plugins. Until the identity service exists, the operator's routes
 * (unseal, seal, keys, audit) answer only to clients on this host.
 */
import { Elysia } from "elysia";
import type { AuditActor, AuditRequestContext } from "../audit/event.ts";
import { ForbiddenError } from "../errors.ts";
import { isLoopback, parseIp } from "../net/ip.ts";
import { requestMeta } from "./request-meta.ts";

/** Refuses (403) any client that is not on this host. Mount it before the routes it guards. */
export function loopbackOnly() {
  // No `name`: a named plugin is deduplicated, and a second plugin using this guard would lose it.
  return new Elysia().onBeforeHandle({ as: "scoped" }, ({ request }) => {
    const client = parseIp(requestMeta(request).client);
    if (!client || !isLoopback(client)) {
      throw new ForbiddenError("This route answers only to clients on this host until identity is set up.");
    }
  });
}

/** Who is acting on a loopback-only route: the operator at the console. */
export const OPERATOR: AuditActor = { kind: "operator" };

/** The request facts an audit event records (address and user agent are stored encrypted). */
export function auditRequest(request: Request): AuditRequestContext {
  const meta = requestMeta(request);
  return { id: meta.id, source: meta.client, userAgent: request.headers.get("user-agent") };
}
