/**
 * The error form of the OAuth endpoints (RFC 6749 section 5.2): a problem document that also
 * carries `error` and `error_description`, which an OAuth client reads.
 */
import { HttpProblem, type ProblemInit } from "./problem.ts";

export function oauthError(status: number, error: string, description: string): HttpProblem {
  return new HttpProblem(status, error, description, {}, { error, error_description: description });
}

/** The OAuth endpoints: the token endpoint, the device authorization endpoint, its approval page. */
export function isOAuthPath(path: string): boolean {
  return path.startsWith("/oauth/");
}

/**
 * A refusal of an OAuth endpoint's request made outside its handler (the edge's body checks, the
 * schema's), in the OAuth error form: a client reads `error`, and found none (found in review).
 * A malformed or invalid request is 400 invalid_request (RFC 6749 section 5.2); a body too large
 * or of the wrong type keeps its status, which says more. Anything else (401, 429, 503) is not
 * about the request's parameters and is left as it is.
 */
export function inOAuthForm(init: ProblemInit): ProblemInit {
  if (init.extra?.error !== undefined) return init; // the handler's own (oauthError)
  const description = init.detail ?? "The request is not valid.";
  const extra = { ...init.extra, error: "invalid_request", error_description: description };
  if (init.status === 400 || init.status === 422) return { ...init, status: 400, code: "invalid_request", extra };
  if (init.status === 413 || init.status === 415) return { ...init, extra };
  return init;
}
