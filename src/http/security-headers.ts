/**
 * Headers on every API response. The API serves JSON to programs, so the policy is the
 * strictest there is: nothing may be loaded, framed, sniffed, cached or referred.
 */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export function securityHeaders({ tls }: { tls: boolean }): Record<string, string> {
  return {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "content-security-policy": API_CSP,
    // HSTS means something only over TLS (RFC 6797 7.2: not sent over plain HTTP).
    ...(tls ? { "strict-transport-security": "max-age=63072000; includeSubDomains" } : {}),
  };
}
