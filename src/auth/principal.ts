/**
 * Who is calling, once their token has been checked, and the interface through which the
 * kernel's guard asks the identity service (the iam plugin) about tokens, organizations,
 * workspaces and roles. The guard lives in src/http; the tables live in plugins/iam.
 */
import type { Database } from "bun:sqlite";
import type { Cidr } from "../net/ip.ts";
import type { Role } from "./rbac.ts";

export type PrincipalKind = "session" | "pat" | "service" | "workload" | "device" | "console";

export interface Principal {
  kind: PrincipalKind;
  /** The token's public prefix (its id in lists and audit events). */
  tokenId: string;
  /** The user behind it; null for a service API key. */
  userId: string | null;
  /**
   * For a service API key: the member who made it. The key acts with no more than that
   * member's current role (narrowed per workspace), and stops with their membership. Null
   * for a key made before keys recorded their maker.
   */
  madeBy?: string | null;
  /** Set for credentials bound to one organization (API keys, workload tokens). */
  organizationId: string | null;
  /** "all" for a login session: the user's role alone decides. */
  scopes: readonly string[] | "all";
  /** For a service API key: the one service it works for. */
  service: string | null;
  /** A token restricted to one workspace. */
  workspaceId: string | null;
  /** The token's own allowlist (empty: any address). */
  ipAllowlist: readonly Cidr[];
  /** May perform appliance-wide actions (seal, keys, audit verification). Never a credential restricted to an organization or a workspace. */
  operator: boolean;
  /** The user has TOTP enabled; for a service key, the member who made it (whose role bounds it). */
  mfa: boolean;
  /** The user logged in with a one-time password: only changing it is allowed. */
  mustChangePassword: boolean;
}

/** The user whose role bounds what `p` may do: the user, or the member who made a service key. */
export function roleHolder(p: Pick<Principal, "userId" | "madeBy">): string | null {
  return p.userId ?? p.madeBy ?? null;
}

export type AuthFailureReason = "malformed" | "unknown" | "expired" | "revoked" | "disabled";

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: AuthFailureReason };

export interface OrganizationFacts {
  id: string;
  ipAllowlist: readonly Cidr[];
  requireMfa: boolean;
  /** Whether a service is activated for this organization (its API keys work). Asked only for API keys. */
  serviceActive(service: string): boolean;
}

export interface WorkspaceFacts {
  id: string;
  organizationId: string;
  ipAllowlist: readonly Cidr[];
}

/** What the identity service answers. Synchronous: every answer is one indexed read. */
export interface IdentityProvider {
  authenticate(token: string, client: string, now: number): AuthResult;
  organization(id: string): OrganizationFacts | null;
  workspace(id: string): WorkspaceFacts | null;
  roleIn(userId: string, organizationId: string): Role | null;
  /**
   * When the user's current membership of the organization began (ms), or null when they are
   * no member. A right granted before it was granted under an earlier membership, which ended.
   */
  memberSince(userId: string, organizationId: string): number | null;
  /**
   * A credential, by its id (never its token): the user whose role it acts with (a token's user,
   * an API key's maker; null for a key made before makers were recorded) and whether it still
   * works at `now` (not revoked, not expired). A workload token answers for the key it was
   * exchanged from. Null for an id no credential has (never made, or deleted since: purged,
   * erased with its maker).
   */
  credentialStanding(id: string, now: number): { id: string; actsFor: string | null; usable: boolean } | null;
  workspaceRole(userId: string, workspaceId: string): Role | null;
  /**
   * Whether the organization is live (not deleted, nor being erased), read from `tx` now and
   * never remembered. Another service's write asks it inside its own transaction, where a
   * deletion that committed after the guard let the request in is seen: what it makes for the
   * organization would otherwise outlive it, the deletion having run before it was there.
   */
  organizationLiveIn(tx: Database, id: string): boolean;
  /** Whether the workspace and its organization are live, read from `tx` now, as organizationLiveIn. */
  workspaceLiveIn(tx: Database, id: string): boolean;
}

/** The kernel's slot for the identity service; empty until the iam plugin fills it. */
export class IdentityRegistry {
  private current: IdentityProvider | null = null;

  provide(provider: IdentityProvider): void {
    if (this.current) throw new Error("an identity provider is registered already");
    this.current = provider;
  }

  get provider(): IdentityProvider | null {
    return this.current;
  }
}

/** The audit actor for a principal: who, by which token (its id, never the token). */
export function actorOf(p: Principal) {
  return { kind: p.userId ? ("user" as const) : ("service" as const), user: p.userId, organization: p.organizationId, token: p.tokenId };
}
