/**
 * Whether a URL is under an operator's allowed prefix. One rule for the secrets plugin's webhook
 * sender, which connects only there, and for the sovereignty report, which says which webhooks
 * the sender refuses: two copies had drifted (the report's had no rule for encoded separators).
 */

/** Same scheme, host and port as the prefix, and a path under its path that no receiver could take for another. */
export function underPrefix(url: URL | string, prefix: string): boolean {
  const u = parsed(url);
  const p = parsed(prefix);
  if (!u || !p) return false; // a malformed prefix allows nothing
  if (mayLeaveItsPath(u.pathname)) return false;
  // "/hooks" allows "/hooks" and "/hooks/...", not "/hooks-admin".
  const path = p.pathname;
  return u.origin === p.origin && (u.pathname === path || u.pathname.startsWith(path.endsWith("/") ? path : `${path}/`));
}

/**
 * A path a receiver may take for another, outside the prefix, though the URL parser left it
 * under: the parser resolves "/hooks/../admin" but keeps "/hooks/..%2Fadmin" encoded, and a
 * receiver that decodes %2F (or %5C, or a %2E dot segment) routes it elsewhere; Tomcat and Jetty
 * drop a segment's ";parameters", so "/hooks/..;/admin" is "/hooks/../admin" to them; an encoded
 * percent sign is one of these to a receiver that decodes twice ("%252e"); NUL ends C strings.
 */
export function mayLeaveItsPath(pathname: string): boolean {
  if (/%(2f|5c|2e|25|00)/i.test(pathname)) return true;
  return pathname.split("/").some((segment) => {
    const withoutParameters = segment.split(";")[0];
    return withoutParameters === "." || withoutParameters === "..";
  });
}

function parsed(url: URL | string): URL | null {
  if (url instanceof URL) return url;
  try {
    return new URL(url);
  } catch {
    return null;
  }
}
