/**
 * Scopes: `service:action` (`dns:write`, `secrets:read`, `mesh:admin`, `shell:connect`) and
 * the coarse ones a PAT may carry instead: `read` (every `*:read`), `write` (every `*:read`
 * and `*:write`), `deploy` (every `*:deploy`), `shell` (`shell:connect`). Admin scopes are
 * never implied: they must be granted by name.
 */
export const COARSE_SCOPES = ["read", "write", "deploy", "shell"] as const;

const SCOPE = /^[a-z][a-z0-9-]*:[a-z][a-z0-9_-]*$/;

/** The console's scope: a service of its own (`shell`), required by a route of iam, which no plugin is named after. */
const CONSOLE_SCOPES = ["shell:connect"];

/** Every scope a credential can be made with: the coarse ones, the console's and the plugins' (`dns:write`). */
export function knownScopes(pluginScopes: readonly string[]): string[] {
  return [...COARSE_SCOPES, ...CONSOLE_SCOPES, ...pluginScopes];
}

export function isScope(scope: string): boolean {
  return SCOPE.test(scope) || (COARSE_SCOPES as readonly string[]).includes(scope);
}

/** True when the granted scopes include `required` (by name or through a coarse scope). */
export function scopesGrant(granted: readonly string[], required: string): boolean {
  if (granted.includes(required)) return true;
  const action = required.slice(required.indexOf(":") + 1);
  if (action === "read" && (granted.includes("read") || granted.includes("write"))) return true;
  if (action === "write" && granted.includes("write")) return true;
  if (action === "deploy" && granted.includes("deploy")) return true;
  if (required === "shell:connect" && granted.includes("shell")) return true;
  return false;
}

/** The service a scope belongs to (`dns` for `dns:write`); coarse scopes belong to none. */
export function scopeService(scope: string): string | null {
  const colon = scope.indexOf(":");
  return colon < 0 ? null : scope.slice(0, colon);
}

/** True when every scope of `child` is granted by `parent` (for token exchange). */
export function scopesWithin(child: readonly string[], parent: readonly string[]): boolean {
  return child.every((s) => (COARSE_SCOPES as readonly string[]).includes(s) ? parent.includes(s) || (s === "read" && parent.includes("write")) : scopesGrant(parent, s));
}
