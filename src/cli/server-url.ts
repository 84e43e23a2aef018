/**
 * A Citadel server's URL as a user names it (`citadel login --server`, CITADEL_SERVER,
 * `citadel mesh join --server`): one rule for all, checked before anything is sent, and one
 * spelling, so that the same server named twice is recognized as one.
 */

import { isLoopbackHost } from "../net/ip.ts";

/**
 * What is wrong with a server's URL, or null. Requests go under its path, so no query or
 * fragment either. The URL is kept (the stored login, a node's state) and shown (messages,
 * reports): no user:password@ in it — tokens and keys authenticate. No spaces or control
 * characters: the URL parser drops those at the ends and tabs and line breaks inside, so the
 * URL checked would not be the text used.
 */
export function serverUrlProblem(url: string): string | null {
  const parsed = URL.parse(url);
  if (parsed === null || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) return "an https:// URL, such as https://citadel.example:8443";
  if (/[\s\p{Cc}]/u.test(url)) return "no spaces or control characters in the URL (nor around it)";
  if (parsed.username !== "" || parsed.password !== "") return "no user:password@ in the URL: it is kept and shown (the stored login, a node's state, messages); a token or a node's key authenticates";
  if (parsed.search || parsed.hash || /[?#]/.test(url)) return "no query or fragment: the control plane's address, and its path behind a reverse proxy";
  // A token, a password, a node's enrollment key would cross the network readable by anyone on
  // the way: Citadel itself never serves plain HTTP but on loopback (a proxy in front of it does).
  if (parsed.protocol === "http:" && !isLoopbackHost(parsed.hostname)) return "an https:// URL: http:// only to this machine (a loopback address), as a token or a key would cross the network in the clear";
  return null;
}

/**
 * The URL as kept and compared, of one serverUrlProblem accepts: as parsed (scheme and host in
 * lower case, no default port), without trailing slashes — https://Host:443/ and https://host
 * are one server.
 */
export function normalizedServerUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
}
