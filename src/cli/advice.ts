/**
 * What to do about a refusal, said after its message. The server says what is wrong; only the
 * client knows where the token came from (CITADEL_TOKEN, the stored login) and what kind it is
 * (a user's token, a service API key), and so what fixes it.
 */
import { TOKEN_KINDS } from "../auth/tokens.ts";
import { ApiError, type RefusalFacts } from "./api-client.ts";
import { LOGIN_SCOPE } from "./credentials.ts";

/** Kinds of token a person holds; any other kind is a service API key. */
const USER_KINDS: ReadonlySet<string> = new Set(Object.values(TOKEN_KINDS));

/** One line of advice for an error, or undefined when there is nothing more to say. */
export function adviceFor(error: unknown): string | undefined {
  if (!(error instanceof ApiError)) return undefined;
  // Only the guard's Bearer challenge is about the token: a wrong password is a 401 too.
  if (error.status === 401 && /^bearer\b/i.test(error.facts.challenge ?? "")) return afterRefusedToken(error.facts);
  if (error.code === "insufficient_scope") return afterMissingScope(error.facts);
  return undefined;
}

function afterRefusedToken({ token }: RefusalFacts): string | undefined {
  if (!token) return "log in first: citadel login (or set CITADEL_TOKEN)";
  if (token.origin === "CITADEL_TOKEN") return "CITADEL_TOKEN is not valid: set it to a working token, or unset it to use the stored login";
  if (token.origin === "login") return "the stored login no longer works: run citadel login";
  return undefined; // a token the command made itself (a session): the message says it all
}

function afterMissingScope({ scope, token }: RefusalFacts): string {
  const needed = scope ?? "the scope named above";
  // A credential cannot make one wider than itself: the advice names a way that has the scope.
  if (token && !USER_KINDS.has(token.kind)) {
    return `an API key has the scopes it was made with: have one made with ${needed} (citadel apikey create NAME --service ${token.kind} --scope "${needed}", from your login or by an organization admin)`;
  }
  if (token?.origin === "login") {
    // Logging in again replaces the token: ask for what the default gives as well, or lose it.
    const scopes = [...new Set([...LOGIN_SCOPE.split(" "), scope ?? "<scope>"])].join(" ");
    return `a token has the scopes asked for when it was made: log in asking for ${needed} too: citadel login --scope "${scopes}" (and any other scope you use; see docs/identity.md)`;
  }
  if (token?.origin === "CITADEL_TOKEN") {
    return `a token has the scopes asked for when it was made, and makes none wider: unset CITADEL_TOKEN and use a login that has ${needed} (citadel login --scope "... ${needed}"), or make a token with it from such a login (citadel token create NAME --scope "${needed}")`;
  }
  return `a token has the scopes asked for when it was made; this needs ${needed}`;
}
