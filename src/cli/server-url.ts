/**
 * A Citadel server's URL as a user names it (`citadel login --server`, CITADEL_SERVER,
 * `citadel mesh join --server`): one rule for all, checked before anything is sent, and one
 * spelling, so that the same server named twice is recognized as one.
 */

/** What is wrong with a server's URL, or null. Requests go under its path, so no query or fragment either. */
export function serverUrlProblem(url: string): string | null {
  const parsed = URL.parse(url);
  if (parsed === null || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) return "an https:// URL, such as https://citadel.example:8443";
  if (parsed.search || parsed.hash || /[?#]/.test(url)) return "no query or fragment: the control plane's address, and its path behind a reverse proxy";
  return null;
}

/** The URL as kept and compared: https://host:8443/ and https://host:8443 are one server. */
export function normalizedServerUrl(url: string): string {
  return url.replace(/\/+$/, "");
}
