/**
 * A caller as a plugin's service takes it, for tests that call a service directly (races with
 * an HTTP request, writes the API cannot time): the given user's login session, an operator
 * with every scope, from no address in particular.
 */
import type { Principal } from "../../src/auth/principal.ts";

export function operatorCaller(userId: string): { principal: Principal; request: {} } {
  const principal: Principal = {
    kind: "session",
    tokenId: "test",
    userId,
    organizationId: null,
    scopes: "all",
    service: null,
    workspaceId: null,
    ipAllowlist: [],
    operator: true,
    mfa: false,
    mustChangePassword: false,
  };
  return { principal, request: {} };
}
