/**
 * What every part of the secrets service shares: the caller, the workspace's secrets-side row
 * (made on first use, with the default environments), and the environment protection check.
 */
import type { Database } from "bun:sqlite";
import type { AuditEventInput, AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, roleHolder, type Principal } from "../../src/auth/principal.ts";
import { effectiveRole, roleAllows, type Role } from "../../src/auth/rbac.ts";
import { ConflictError, ForbiddenError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { SecretsSettings } from "./settings.ts";
import * as sql from "./store.ts";

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

export const DEFAULT_ENVIRONMENTS = ["development", "staging", "production"] as const;
export const ENVIRONMENT_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** The keyring owner of a workspace's values: one DEK (with its versions) per workspace. */
export const valueKeyOwner = (workspaceId: string) => `workspace:${workspaceId}`;

/** Who did it, for the `*_by` columns: a user id, else the token id of a service key. */
export const byWhom = (p: Principal) => p.userId ?? p.tokenId;

export type SecretsKernel = Kernel<SecretsSettings>;

/**
 * The workspace's secrets row if it exists: synchronous, so that a read which finds it keeps
 * running in the request's read snapshot (an `await`, even of a value, would end it there).
 */
export function existingWorkspace(k: SecretsKernel, workspaceId: string): sql.WorkspaceRow | null {
  return sql.workspaceRow(k.store.db, workspaceId);
}

/**
 * The secrets-side row of a workspace, made with the default environments on first use. The
 * guard has checked the workspace exists; its organization comes from the identity service.
 * The write asks the identity service again whether the workspace (and its organization) is
 * live: a deletion committed meanwhile has removed what secrets held for it already, and a row
 * made after it outlived the workspace, with a secret and a live data key on it (found in
 * review). Refused as writeValue refuses a workspace deleted meanwhile.
 */
export async function ensureWorkspace(k: SecretsKernel, workspaceId: string): Promise<sql.WorkspaceRow> {
  const existing = sql.workspaceRow(k.store.db, workspaceId);
  if (existing) return existing;
  const facts = k.identity.provider?.workspace(workspaceId);
  if (!facts) throw new NotFoundError("No such workspace.");
  return k.store.write((tx) => {
    const again = sql.workspaceRow(tx, workspaceId);
    if (again) return again;
    requireLiveWorkspace(k, tx, workspaceId);
    const row = { workspace_id: workspaceId, organization_id: facts.organizationId, e2ee: 0, e2ee_key_version: 1, created_at: k.clock.now() };
    sql.insertWorkspace(tx, row);
    for (const name of DEFAULT_ENVIRONMENTS) {
      sql.insertEnvironment(tx, { id: newId("env"), workspace_id: workspaceId, name, protection: "members", allowed_users: "[]", created_at: row.created_at });
    }
    return row;
  });
}

/**
 * In a write that makes something for the workspace: the workspace and its organization must
 * be live as `tx` has them, asked of the identity service now (not as the guard found them).
 * Deleted meanwhile, what secrets held for it has gone already; its organization's erasure
 * asked for meanwhile keeps that until the erasure, and nothing new may join it.
 */
export function requireLiveWorkspace(k: SecretsKernel, tx: Database, workspaceId: string): void {
  if (!k.identity.provider?.workspaceLiveIn(tx, workspaceId)) throw new ConflictError(WORKSPACE_GONE);
}

/**
 * At the top of every write to what secrets holds for a workspace: its secrets-side row as `tx`
 * has it, the workspace live (requireLiveWorkspace). ensureWorkspace asks only when it makes
 * the row: a workspace used before and deleted since the request found it had its writes meet
 * a foreign key or a missing row (500s), or record a change to what the deletion had erased
 * already (found in review).
 */
export function liveWorkspaceRow(k: SecretsKernel, tx: Database, workspaceId: string): sql.WorkspaceRow {
  requireLiveWorkspace(k, tx, workspaceId);
  const row = sql.workspaceRow(tx, workspaceId);
  if (!row) throw new ConflictError(WORKSPACE_GONE);
  return row;
}

const WORKSPACE_GONE = "The workspace was deleted meanwhile.";

/**
 * Whether the caller may manage members — of the workspace when given, else of the organization
 * (operators may): who sees whole what can be a capability (webhook URLs) and revokes anyone's
 * share link.
 */
export function mayManageMembers(k: SecretsKernel, p: Principal, organizationId: string, ws?: sql.WorkspaceRow | null): boolean {
  if (p.operator) return true;
  if (!p.userId) return false; // a service key manages no one, whoever made it
  const role = ws ? roleInWorkspace(k, p, ws) : (k.identity.provider?.roleIn(p.userId, organizationId) ?? null);
  return role !== null && roleAllows(role, "manage_members");
}

/** The caller's role in the workspace (the organization role, narrowed by the workspace's; a service key's maker's). */
export function roleInWorkspace(k: SecretsKernel, p: Pick<Principal, "userId" | "madeBy">, ws: sql.WorkspaceRow): Role | null {
  const provider = k.identity.provider;
  const user = roleHolder(p);
  if (!user || !provider) return null;
  const orgRole = provider.roleIn(user, ws.organization_id);
  return orgRole && effectiveRole(orgRole, provider.workspaceRole(user, ws.workspace_id));
}

/**
 * An environment of the workspace, if the caller may use it. Protection narrows beyond the
 * workspace role: `admins` lets in admins and owners (and service API keys whose maker is one
 * here); `named` lets in the listed users only (no service keys). `env` is the environment's
 * row as the caller found it (read now unless given).
 */
export function environmentFor(k: SecretsKernel, caller: Caller, ws: sql.WorkspaceRow, name: string, env = sql.environmentByName(k.store.db, ws.workspace_id, name)): sql.EnvironmentRow {
  if (!env) throw new NotFoundError(`No environment named ${name} in this workspace.`);
  const p = caller.principal;
  // A service key made before keys named their maker has no role to go by: only admins could make one.
  const unboundKey = p.service !== null && !p.madeBy;
  if (!protectionLetsIn(env, { role: () => roleInWorkspace(k, p, ws), userId: p.userId, unboundKey })) {
    throw new ForbiddenError(env.protection === "admins" ? `The ${name} environment is open to admins and owners only.` : `The ${name} environment is open to named members only.`);
  }
  return env;
}

/**
 * Whether an environment's protection lets someone in: `members` anyone the workspace lets in,
 * `admins` an admin or owner of the workspace (or a key from before keys named their maker),
 * `named` one of the users it names. The one rule for callers (environmentFor) and for what a
 * webhook's maker may be told (webhooks.ts). The role is asked only when it matters.
 */
export function protectionLetsIn(env: sql.EnvironmentRow, who: { role: () => Role | null; userId: string | null; unboundKey: boolean }): boolean {
  if (env.protection === "admins") {
    if (who.unboundKey) return true;
    const role = who.role();
    return role === "admin" || role === "owner";
  }
  if (env.protection === "named") return who.userId !== null && (JSON.parse(env.allowed_users) as string[]).includes(who.userId);
  return true;
}

/** An audit event of this plugin, with the caller's actor, request and workspace filled in. */
export function event(caller: Caller, ws: sql.WorkspaceRow | null, fields: Omit<AuditEventInput, "actor" | "outcome" | "request"> & { outcome?: AuditEventInput["outcome"] }): AuditEventInput {
  return {
    outcome: "success",
    organization: ws?.organization_id,
    workspace: ws?.workspace_id,
    ...fields,
    actor: actorOf(caller.principal),
    request: caller.request,
  };
}

/**
 * An event of Citadel's own doing in a workspace (a link revoked with its secret or workspace, a
 * holder's keys dropped with their account): who caused it is on the event of what caused it.
 */
export function systemEvent(place: { organization_id: string; workspace_id: string }, fields: Pick<AuditEventInput, "action" | "resource" | "reason">): AuditEventInput {
  return { ...fields, actor: { kind: "system" }, outcome: "success", organization: place.organization_id, workspace: place.workspace_id };
}
