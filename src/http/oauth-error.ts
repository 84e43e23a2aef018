/**
 * The error form of the OAuth endpoints (RFC 6749 section 5.2): a problem document that also
 * carries `error` and `error_description`, which an OAuth client reads.
 */
import { HttpProblem } from "./problem.ts";

export function oauthError(status: number, error: string, description: string): HttpProblem {
  return new HttpProblem(status, error, description, {}, { error, error_description: description });
}
