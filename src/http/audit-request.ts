/** Helpers routes share for what they put in audit events. */
import type { AuditRequestContext } from "../audit/event.ts";
import { requestMeta } from "./request-meta.ts";

/** The request facts an audit event records (address and user agent are stored encrypted). */
export function auditRequest(request: Request): AuditRequestContext {
  const meta = requestMeta(request);
  return { id: meta.id, source: meta.client, userAgent: request.headers.get("user-agent") };
}
