/**
 * Addresses the API gives people to open, and the pages they open. Behind a reverse proxy that
 * serves Citadel under a path or another name, the request's own origin is not where a browser
 * reaches it, so the operator says where (http.public_url); and the pages use relative
 * addresses, which hold only at the page's one address (see pageWithoutTrailingSlash).
 */

/**
 * http.public_url as a base for paths (origin and path, without a trailing slash), or, when it
 * is not set, the request's scheme, host and port. Made from the parsed URL, as it was checked.
 */
export function publicBaseUrl(publicUrl: string, requestUrl: string): string {
  if (publicUrl === "") return new URL(requestUrl).origin;
  const url = new URL(publicUrl);
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * A redirect from a page's address with a trailing slash (/docs/) to the page's own (/docs),
 * or null. The router serves both, but the page's relative addresses ("docs/ui.js", "device")
 * resolve against the slash form to paths that do not exist. The Location is relative too
 * ("../docs"), so that it keeps a reverse proxy's path.
 */
export function pageWithoutTrailingSlash(request: Request): Response | null {
  const url = new URL(request.url);
  if (!url.pathname.endsWith("/") || url.pathname === "/") return null;
  const page = url.pathname.replace(/\/+$/, "").split("/").pop()!;
  return new Response(null, { status: 308, headers: { location: `../${page}${url.search}` } });
}
