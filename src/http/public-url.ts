/**
 * The addresses the API gives people to open (the device login's verification page): behind a
 * reverse proxy that serves Citadel under a path or another name, the request's own origin is
 * not where a browser reaches it, so the operator says where (http.public_url).
 */

/** http.public_url without its trailing slash, or, when it is not set, the request's scheme, host and port. */
export function publicBaseUrl(publicUrl: string, requestUrl: string): string {
  return publicUrl === "" ? new URL(requestUrl).origin : publicUrl.replace(/\/+$/, "");
}
