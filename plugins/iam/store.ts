/**
 * All SQL of the iam plugin. Functions take the database (or the open transaction) first.
 */
import type { Database } from "bun:sqlite";
import type { Role } from "../../src/auth/rbac.ts";
import type { PageEnd } from "../../src/http/cursor.ts";
import { emailKey } from "./email-key.ts";

export type CredentialKind = "session" | "pat" | "device" | "service" | "workload" | "console";

export interface OrganizationRow {
  id: string;
  name: string;
  require_mfa: number;
  ip_allowlist: string;
  created_at: number;
  deleted_at: number | null;
}

export interface UserRow {
  id: string;
  email: string;
  name: string | null;
  password_hash: string;
  /** Moves with every password set (not with a rehash of the same one). */
  password_version: number;
  operator: number;
  must_change_password: number;
  totp_secret: Uint8Array | null;
  totp_pending: Uint8Array | null;
  totp_enabled_at: number | null;
  totp_last_step: number | null;
  failed_logins: number;
  locked_until: number | null;
  created_at: number;
  deleted_at: number | null;
}

export interface WorkspaceRow {
  id: string;
  organization_id: string;
  name: string;
  ip_allowlist: string;
  created_at: number;
  deleted_at: number | null;
}

export interface CredentialRow {
  id: string;
  kind: CredentialKind;
  hash: Uint8Array;
  name: string | null;
  user_id: string | null;
  organization_id: string | null;
  service: string | null;
  scopes: string | null;
  workspace_id: string | null;
  ip_allowlist: string;
  parent_id: string | null;
  created_at: number;
  expires_at: number | null;
  idle_timeout_ms: number | null;
  last_used_at: number | null;
  last_used_from: string | null;
  revoked_at: number | null;
}

export interface DeviceGrantRow {
  id: string;
  device_code_hash: Uint8Array;
  user_code: string;
  client_name: string;
  client_address: string;
  scopes: string;
  created_at: number;
  expires_at: number;
  interval_s: number;
  last_poll_at: number | null;
  status: "pending" | "approved" | "denied" | "consumed";
  user_id: string | null;
  decided_at: number | null;
}

// --- organizations -------------------------------------------------------------------

export const organizationById = (db: Database, id: string) =>
  db.query<OrganizationRow, [string]>("SELECT * FROM organizations WHERE id = ? AND deleted_at IS NULL").get(id);

export const organizationByName = (db: Database, name: string) =>
  db.query<OrganizationRow, [string]>("SELECT * FROM organizations WHERE name = ? AND deleted_at IS NULL").get(name);

export function insertOrganization(tx: Database, row: Pick<OrganizationRow, "id" | "name" | "created_at">): void {
  tx.query("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)").run(row.id, row.name, row.created_at);
}

export function updateOrganization(tx: Database, id: string, changes: { name?: string; require_mfa?: boolean; ip_allowlist?: string }): void {
  if (changes.name !== undefined) tx.query("UPDATE organizations SET name = ? WHERE id = ?").run(changes.name, id);
  if (changes.require_mfa !== undefined) tx.query("UPDATE organizations SET require_mfa = ? WHERE id = ?").run(changes.require_mfa ? 1 : 0, id);
  if (changes.ip_allowlist !== undefined) tx.query("UPDATE organizations SET ip_allowlist = ? WHERE id = ?").run(changes.ip_allowlist, id);
}

/** Its pending invitations go with it: nobody can accept them any more. */
/** Whether the organization was live (and now is deleted): false when it was deleted already. */
export function softDeleteOrganization(tx: Database, id: string, now: number): boolean {
  const changed = tx.query("UPDATE organizations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL").run(now, id).changes > 0;
  tx.query("DELETE FROM invitations WHERE organization_id = ?").run(id);
  return changed;
}

export const organizationsOf = (db: Database, userId: string) =>
  db
    .query<OrganizationRow & { role: Role }, [string]>(
      "SELECT o.*, m.role FROM organizations o JOIN memberships m ON m.organization_id = o.id WHERE m.user_id = ? AND o.deleted_at IS NULL ORDER BY o.name",
    )
    .all(userId);

/**
 * A page of the user's live organizations (only `only`, when not null), by name, after `after`:
 * the user's memberships read through memberships_by_user, a user's few sorted.
 */
export const organizationsPageOf = (db: Database, userId: string, only: string | null, after: PageEnd<string> | null, limit: number) =>
  db
    .query<OrganizationRow & { role: Role; row: number }, [string, string | null, string, number, number]>(
      `SELECT o.*, o.rowid AS row, m.role FROM organizations o JOIN memberships m ON m.organization_id = o.id
        WHERE m.user_id = ?1 AND o.deleted_at IS NULL AND (?2 IS NULL OR o.id = ?2) AND (o.name, o.rowid) > (?3, ?4)
        ORDER BY o.name, o.rowid LIMIT ?5`,
    )
    .all(userId, only, after?.value ?? "", after?.row ?? -1, limit);

/** The organization alone (a token of it that is no user's), as a page of organizationsPageOf's kind, without a role. */
export const organizationPage = (db: Database, id: string, after: PageEnd<string> | null) =>
  db
    .query<OrganizationRow & { role: null; row: number }, [string, string, number]>(
      "SELECT o.*, o.rowid AS row, NULL AS role FROM organizations o WHERE o.id = ?1 AND o.deleted_at IS NULL AND (o.name, o.rowid) > (?2, ?3)",
    )
    .all(id, after?.value ?? "", after?.row ?? -1);

export const allOrganizations = (db: Database) => db.query<OrganizationRow, []>("SELECT * FROM organizations WHERE deleted_at IS NULL ORDER BY name").all();

export const activeServices = (db: Database, orgId: string) =>
  db.query<{ service: string; activated_at: number }, [string]>("SELECT service, activated_at FROM service_activations WHERE organization_id = ? ORDER BY service").all(orgId);

export const serviceActive = (db: Database, orgId: string, service: string) =>
  db.query<{ one: number }, [string, string]>("SELECT 1 AS one FROM service_activations WHERE organization_id = ? AND service = ?").get(orgId, service) !== null;

export const activateService = (tx: Database, orgId: string, service: string, now: number) =>
  tx.query("INSERT INTO service_activations (organization_id, service, activated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING").run(orgId, service, now);

export const deactivateService = (tx: Database, orgId: string, service: string) =>
  tx.query("DELETE FROM service_activations WHERE organization_id = ? AND service = ?").run(orgId, service);

// --- users and memberships ----------------------------------------------------------

export { emailKey };

export const userById = (db: Database, id: string) => db.query<UserRow, [string]>("SELECT * FROM users WHERE id = ? AND deleted_at IS NULL").get(id);

/**
 * The live user the address names. Two of them may share a key only if made before keys were
 * (the review's three accounts): the one whose address is the very one typed, else the oldest.
 */
export const userByEmail = (db: Database, email: string) =>
  db
    .query<UserRow, [string, string]>("SELECT * FROM users WHERE email_key = ? AND deleted_at IS NULL ORDER BY email = ? DESC, created_at, id LIMIT 1")
    .get(emailKey(email), email.trim());

/**
 * Whose account an email names, deleted accounts included (an erasure waiting out its grace
 * period): the subject a login attempt's personal data (the email typed) is kept under, so that
 * the erasure shreds it too. (Once erased for good, the account's email is gone.)
 */
export const subjectOfEmail = (db: Database, email: string) =>
  db
    .query<{ id: string }, [string, string]>("SELECT id FROM users WHERE email_key = ? ORDER BY deleted_at IS NOT NULL, email = ? DESC, created_at, id LIMIT 1")
    .get(emailKey(email), email.trim())?.id;

export const anyUser = (db: Database) => db.query("SELECT 1 FROM users WHERE deleted_at IS NULL LIMIT 1").get() !== null;

/**
 * A page of the live users, by address (as the column compares them: case aside in A-Z), after
 * `after`: a seek of users_email, which holds the live users in that order (and, being unique,
 * never two at the same address: the row id only keeps the order total).
 */
export const usersPage = (db: Database, after: PageEnd<string> | null, limit: number) =>
  db
    .query<UserRow & { row: number }, [string, number, number]>(
      "SELECT *, rowid AS row FROM users WHERE deleted_at IS NULL AND email >= ?1 AND (email > ?1 OR rowid > ?2) ORDER BY email, rowid LIMIT ?3",
    )
    .all(after?.value ?? "", after?.row ?? -1, limit);

export function insertUser(tx: Database, row: Pick<UserRow, "id" | "email" | "name" | "password_hash" | "operator" | "must_change_password" | "created_at">): void {
  tx.query("INSERT INTO users (id, email, email_key, name, password_hash, operator, must_change_password, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
    row.id,
    row.email,
    emailKey(row.email),
    row.name,
    row.password_hash,
    row.operator,
    row.must_change_password,
    row.created_at,
  );
}

/** A new password chosen by the user: the one-time password is spent. */
export const setPassword = (tx: Database, userId: string, hash: string) =>
  tx.query("UPDATE users SET password_hash = ?, password_version = password_version + 1, must_change_password = 0 WHERE id = ?").run(hash, userId);

/** A password made up for the user (citadel recover): they must replace it at their first login. */
export const setOneTimePassword = (tx: Database, userId: string, hash: string) =>
  tx.query("UPDATE users SET password_hash = ?, password_version = password_version + 1, must_change_password = 1 WHERE id = ?").run(hash, userId);

/** A re-hash of the same password (stronger parameters): nothing else changes. */
export const rehashPassword = (tx: Database, userId: string, hash: string) => tx.query("UPDATE users SET password_hash = ? WHERE id = ?").run(hash, userId);

export const softDeleteUser = (tx: Database, id: string, now: number) => tx.query("UPDATE users SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL").run(now, id);

export const setTotpPending = (tx: Database, userId: string, secret: Uint8Array | null) =>
  tx.query("UPDATE users SET totp_pending = ? WHERE id = ?").run(secret, userId);

export const enableTotp = (tx: Database, userId: string, secret: Uint8Array, step: number, now: number) =>
  tx.query("UPDATE users SET totp_secret = ?, totp_pending = NULL, totp_enabled_at = ?, totp_last_step = ? WHERE id = ?").run(secret, now, step, userId);

export const disableTotp = (tx: Database, userId: string) =>
  tx.query("UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_enabled_at = NULL, totp_last_step = NULL WHERE id = ?").run(userId);

/** Records the TOTP step used, only if it is newer than the last: true when it was. */
export const advanceTotpStep = (tx: Database, userId: string, step: number) =>
  tx.query("UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)").run(step, userId, step).changes === 1;

/**
 * The user's role in the organization, or null. A deleted user's membership stays (until
 * erased) but is no one's: it grants nothing and counts for nothing, as for the last owner
 * (found in review: a deleted holder of a workspace key counted as one still holding it).
 */
export const roleOf = (db: Database, orgId: string, userId: string) =>
  db
    .query<{ role: Role }, [string, string]>("SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND m.user_id = ? AND u.deleted_at IS NULL")
    .get(orgId, userId)?.role ?? null;

/** When the live user's membership began; a role change keeps it, a removal ends it (and a re-add starts another). */
export const memberSince = (db: Database, orgId: string, userId: string) =>
  db
    .query<{ created_at: number }, [string, string]>("SELECT m.created_at FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND m.user_id = ? AND u.deleted_at IS NULL")
    .get(orgId, userId)?.created_at ?? null;

/** The role a membership row records, its user deleted or not: removing a deleted user's row is still tidying up. */
export const recordedRoleOf = (db: Database, orgId: string, userId: string) =>
  db.query<{ role: Role }, [string, string]>("SELECT role FROM memberships WHERE organization_id = ? AND user_id = ?").get(orgId, userId)?.role ?? null;

export const membersOf = (db: Database, orgId: string) =>
  db
    .query<{ user_id: string; email: string; name: string | null; role: Role; created_at: number; mfa: number }, [string]>(
      "SELECT m.user_id, u.email, u.name, m.role, m.created_at, u.totp_enabled_at IS NOT NULL AS mfa FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND u.deleted_at IS NULL ORDER BY u.email",
    )
    .all(orgId);

/**
 * A page of the organization's members, by address as membersOf orders them (the user's row id
 * breaks ties), after `after`. The address is the users table's, so no one index gives the
 * organization's members in that order; of the two ways, the one that reads fewer rows:
 *  - sorted: the organization's memberships read through their primary key (those after the
 *    cursor), and sorted for the first `limit`: its cost grows with the organization;
 *  - walked: the live users in address order (users_email) from the cursor, each looked up among
 *    the organization's memberships until `limit` are found: its cost grows with the users there
 *    are for each member (measured: 35 ms a page for an organization of 500 among 50,000
 *    users, walked; 75 ms for one of all of them, sorted; each the other way about 3 ms).
 */
export function membersPage(db: Database, orgId: string, after: PageEnd<string> | null, limit: number) {
  const rows = walkUsersForMembers(db, orgId, limit) ? "users u CROSS JOIN memberships m ON m.user_id = u.id" : "memberships m CROSS JOIN users u ON u.id = m.user_id";
  return db
    .query<{ user_id: string; email: string; name: string | null; role: Role; created_at: number; mfa: number; row: number }, [string, string, number, number]>(
      `SELECT m.user_id, u.email, u.name, m.role, m.created_at, u.totp_enabled_at IS NOT NULL AS mfa, u.rowid AS row FROM ${rows}
        WHERE m.organization_id = ?1 AND u.deleted_at IS NULL AND u.email >= ?2 AND (u.email > ?2 OR u.rowid > ?3)
        ORDER BY u.email, u.rowid LIMIT ?4`,
    )
    .all(orgId, after?.value ?? "", after?.row ?? -1, limit);
}

/**
 * Whether walking the users reads fewer rows than sorting the organization's m members: a walk
 * reads about `limit` × users / m users, each costing about WALKED_USER_COST members sorted, so
 * it is the cheaper when m² > WALKED_USER_COST × limit × users. The users are counted by the
 * highest row id (one seek: a user's row stays when the user is deleted, and erased), the
 * members only up to the bound that decides (a few thousand index entries at most, never the
 * whole organization). Exported for the tests, which read a page both ways.
 */
export function walkUsersForMembers(db: Database, orgId: string, limit: number): boolean {
  const users = db.query<{ n: number | null }, []>("SELECT max(rowid) AS n FROM users").get()?.n ?? 0;
  const bound = Math.ceil(Math.sqrt(WALKED_USER_COST * limit * users));
  const members = db.query<{ n: number }, [string, number]>("SELECT count(*) AS n FROM (SELECT 1 FROM memberships WHERE organization_id = ? LIMIT ?)").get(orgId, bound)!.n;
  return members >= bound;
}

/** A user walked (read through users_email, then its row, then its membership looked up) costs about this many members sorted (measured). */
const WALKED_USER_COST = 3;

export const upsertMembership = (tx: Database, orgId: string, userId: string, role: Role, now: number) =>
  tx
    .query("INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role")
    .run(orgId, userId, role, now);

export const deleteMembership = (tx: Database, orgId: string, userId: string) =>
  tx.query("DELETE FROM memberships WHERE organization_id = ? AND user_id = ?").run(orgId, userId);

/**
 * Whether the user is the organization's last owner: a live owner with no other live owner
 * beside them. A deleted user's owner membership stays (until erased) but owns nothing: a
 * deleted user is never the last owner, and does not count as another for anyone else.
 */
export const isLastOwner = (db: Database, orgId: string, userId: string) => {
  const isLiveOwner = db
    .query("SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND m.user_id = ? AND m.role = 'owner' AND u.deleted_at IS NULL")
    .get(orgId, userId);
  if (!isLiveOwner) return false;
  const otherLiveOwner = db
    .query("SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND m.user_id != ? AND m.role = 'owner' AND u.deleted_at IS NULL")
    .get(orgId, userId);
  return !otherLiveOwner;
};

/** The live organizations the user owns: a deleted one keeps its memberships, but needs no owner kept. */
export const ownedOrganizations = (db: Database, userId: string) =>
  db
    .query<{ organization_id: string }, [string]>(
      "SELECT m.organization_id FROM memberships m JOIN organizations o ON o.id = m.organization_id AND o.deleted_at IS NULL WHERE m.user_id = ? AND m.role = 'owner'",
    )
    .all(userId)
    .map((r) => r.organization_id);

// --- invitations --------------------------------------------------------------------

export interface InvitationRow {
  id: string;
  organization_id: string;
  email: string;
  role: Role;
  invited_by: string;
  created_at: number;
  expires_at: number;
}

export const insertInvitation = (tx: Database, row: InvitationRow) =>
  tx
    .query("INSERT INTO invitations (id, organization_id, email, email_key, role, invited_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    .run(row.id, row.organization_id, row.email, emailKey(row.email), row.role, row.invited_by, row.created_at, row.expires_at);

/** An organization's pending invitations, oldest first. */
export const invitationsOf = (db: Database, orgId: string, now: number) =>
  db.query<InvitationRow, [string, number]>("SELECT * FROM invitations WHERE organization_id = ? AND expires_at > ? ORDER BY created_at, rowid").all(orgId, now);

/** A page of invitationsOf, after `after` (created_at, then the row's order of insertion). */
export const invitationsPageOf = (db: Database, orgId: string, now: number, after: PageEnd<number> | null, limit: number) =>
  db
    .query<InvitationRow & { row: number }, [string, number, number, number, number]>(
      "SELECT *, rowid AS row FROM invitations WHERE organization_id = ?1 AND expires_at > ?2 AND (created_at, rowid) > (?3, ?4) ORDER BY created_at, rowid LIMIT ?5",
    )
    .all(orgId, now, after?.value ?? Number.MIN_SAFE_INTEGER, after?.row ?? -1, limit);

export const invitationToAddress = (db: Database, orgId: string, email: string) =>
  db.query<InvitationRow, [string, string]>("SELECT * FROM invitations WHERE organization_id = ? AND email_key = ?").get(orgId, emailKey(email));

/** A page of the pending invitations to an address, into organizations that still exist, oldest first, after `after`. */
export const invitationsPageTo = (db: Database, email: string, now: number, after: PageEnd<number> | null, limit: number) =>
  db
    .query<InvitationRow & { organization_name: string; inviter_email: string | null; row: number }, [string, number, number, number, number]>(
      `SELECT i.*, i.rowid AS row, o.name AS organization_name, u.email AS inviter_email FROM invitations i
         JOIN organizations o ON o.id = i.organization_id AND o.deleted_at IS NULL
         LEFT JOIN users u ON u.id = i.invited_by AND u.deleted_at IS NULL
       WHERE i.email_key = ?1 AND i.expires_at > ?2 AND (i.created_at, i.rowid) > (?3, ?4) ORDER BY i.created_at, i.rowid LIMIT ?5`,
    )
    .all(emailKey(email), now, after?.value ?? Number.MIN_SAFE_INTEGER, after?.row ?? -1, limit);

export const invitationById = (db: Database, id: string) => db.query<InvitationRow, [string]>("SELECT * FROM invitations WHERE id = ?").get(id);

/** The invitation, if it is addressed to this email (compared by their keys, as users are). */
export const invitationByIdTo = (db: Database, id: string, email: string) =>
  db.query<InvitationRow, [string, string]>("SELECT * FROM invitations WHERE id = ? AND email_key = ?").get(id, emailKey(email));

export const deleteInvitation = (tx: Database, id: string) => tx.query("DELETE FROM invitations WHERE id = ?").run(id);

/** Expired invitations hold an email address for nothing: dropped whenever invitations are written, and now and then. */
export const purgeExpiredInvitations = (tx: Database, now: number) => tx.query("DELETE FROM invitations WHERE expires_at <= ?").run(now);

export const anyInvitationExpired = (db: Database, now: number) => db.query<{ one: number }, [number]>("SELECT 1 AS one FROM invitations WHERE expires_at <= ? LIMIT 1").get(now) !== null;

/** Whether a (not deleted) user with this address is a member of the organization. */
export const isMemberByEmail = (db: Database, orgId: string, email: string) =>
  db
    .query<{ one: number }, [string, string]>("SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? AND u.email_key = ? AND u.deleted_at IS NULL")
    .get(orgId, emailKey(email)) !== null;

// --- workspaces ---------------------------------------------------------------------

export const workspaceById = (db: Database, id: string) =>
  db
    .query<WorkspaceRow, [string]>(
      "SELECT * FROM workspaces w WHERE id = ? AND deleted_at IS NULL AND (SELECT deleted_at FROM organizations WHERE id = w.organization_id) IS NULL",
    )
    .get(id);

export const workspacesOf = (db: Database, orgId: string) =>
  db.query<WorkspaceRow, [string]>("SELECT * FROM workspaces WHERE organization_id = ? AND deleted_at IS NULL ORDER BY name").all(orgId);

/** A page of workspacesOf, after `after`: a seek of workspaces_name (organization, name). */
export const workspacesPageOf = (db: Database, orgId: string, after: PageEnd<string> | null, limit: number) =>
  db
    .query<WorkspaceRow & { row: number }, [string, string, number, number]>(
      "SELECT *, rowid AS row FROM workspaces WHERE organization_id = ?1 AND deleted_at IS NULL AND name >= ?2 AND (name > ?2 OR rowid > ?3) ORDER BY name, rowid LIMIT ?4",
    )
    .all(orgId, after?.value ?? "", after?.row ?? -1, limit);

export const insertWorkspace = (tx: Database, row: Pick<WorkspaceRow, "id" | "organization_id" | "name" | "ip_allowlist" | "created_at">) =>
  tx.query("INSERT INTO workspaces (id, organization_id, name, ip_allowlist, created_at) VALUES (?, ?, ?, ?, ?)").run(row.id, row.organization_id, row.name, row.ip_allowlist, row.created_at);

export function updateWorkspace(tx: Database, id: string, changes: { name?: string; ip_allowlist?: string }): void {
  if (changes.name !== undefined) tx.query("UPDATE workspaces SET name = ? WHERE id = ?").run(changes.name, id);
  if (changes.ip_allowlist !== undefined) tx.query("UPDATE workspaces SET ip_allowlist = ? WHERE id = ?").run(changes.ip_allowlist, id);
}

export const softDeleteWorkspace = (tx: Database, id: string, now: number) =>
  tx.query("UPDATE workspaces SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL").run(now, id);

export const workspaceRoleOf = (db: Database, workspaceId: string, userId: string) =>
  db.query<{ role: Role }, [string, string]>("SELECT role FROM workspace_members WHERE workspace_id = ? AND user_id = ?").get(workspaceId, userId)?.role ?? null;

export const workspaceMembers = (db: Database, workspaceId: string) =>
  db.query<{ user_id: string; role: Role }, [string]>("SELECT user_id, role FROM workspace_members WHERE workspace_id = ? ORDER BY user_id").all(workspaceId);

export const setWorkspaceRole = (tx: Database, workspaceId: string, userId: string, role: Role) =>
  tx
    .query("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?, ?, ?) ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role")
    .run(workspaceId, userId, role);

export const clearWorkspaceRole = (tx: Database, workspaceId: string, userId: string) =>
  tx.query("DELETE FROM workspace_members WHERE workspace_id = ? AND user_id = ?").run(workspaceId, userId);

/** Stops narrowing the user's role in every workspace of the organization (deleted ones too): they left it. */
export const clearMemberWorkspaceRoles = (tx: Database, orgId: string, userId: string) =>
  tx.query("DELETE FROM workspace_members WHERE user_id = ? AND workspace_id IN (SELECT id FROM workspaces WHERE organization_id = ?)").run(userId, orgId);

/** Stops narrowing anyone's role in the workspace: it was deleted. */
export const clearWorkspaceRoles = (tx: Database, workspaceId: string) => tx.query("DELETE FROM workspace_members WHERE workspace_id = ?").run(workspaceId);

// --- credentials ----------------------------------------------------------------------

export const credentialById = (db: Database, id: string) => db.query<CredentialRow, [string]>("SELECT * FROM credentials WHERE id = ?").get(id);

/** What authenticating a token needs, in one read: the credential and its user's standing. */
export interface AuthenticationRow {
  kind: CredentialKind;
  hash: Uint8Array;
  user_id: string | null;
  organization_id: string | null;
  service: string | null;
  scopes: string | null;
  workspace_id: string | null;
  ip_allowlist: string;
  created_at: number;
  expires_at: number | null;
  idle_timeout_ms: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
  /** 1 when the credential has a user and that user exists (not deleted). */
  user_active: number;
  operator: number | null;
  mfa: number | null;
  must_change_password: number | null;
}

// Scalar subqueries rather than a join: through bun:sqlite the join measured 17 µs a call,
// this 2 µs, and it runs for every authenticated request. Returns the prepared statement,
// which the caller keeps (no statement-cache lookup by SQL text per request).
export const credentialForAuthentication = (db: Database) =>
  db.prepare<AuthenticationRow, [string]>(
      `SELECT c.kind, c.hash, c.user_id, c.organization_id, c.service, c.scopes, c.workspace_id, c.ip_allowlist, c.created_at,
              c.expires_at, c.idle_timeout_ms, c.last_used_at, c.revoked_at,
              coalesce((SELECT deleted_at IS NULL FROM users WHERE id = c.user_id), 0) AS user_active,
              (SELECT operator FROM users WHERE id = c.user_id) AS operator,
              (SELECT totp_enabled_at IS NOT NULL FROM users WHERE id = c.user_id) AS mfa,
              (SELECT must_change_password FROM users WHERE id = c.user_id) AS must_change_password
       FROM credentials c WHERE c.id = ?`,
  );

/** Moved by triggers on every change to what credentialForAuthentication reads (migrations 0002, 0003). */
export const authenticationGeneration = (db: Database) => db.prepare<{ generation: number }, []>("SELECT generation FROM authentication_generation WHERE id = 1");

const AUTHENTICATION_TRIGGERS = ["credentials_inserted", "credentials_updated", "credentials_deleted", "users_inserted", "users_updated", "users_deleted"];

/** The triggers that move the authentication generation and are not in the database (on their table, moving it). */
export function missingAuthenticationTriggers(db: Database): string[] {
  const present = new Map(db.query<{ name: string; tbl_name: string; sql: string }, []>("SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'trigger'").all().map((r) => [r.name, r]));
  return AUTHENTICATION_TRIGGERS.filter((name) => {
    const trigger = present.get(name);
    return !trigger || trigger.tbl_name !== name.slice(0, name.indexOf("_")) || !trigger.sql.includes("generation = generation + 1");
  });
}

export type NewCredentialRow = Omit<CredentialRow, "last_used_at" | "last_used_from" | "revoked_at">;

/** A credential row with everything optional left empty: no user, organization, scopes, limits. */
export function credentialRow(row: Pick<NewCredentialRow, "id" | "kind" | "hash" | "created_at"> & Partial<NewCredentialRow>): NewCredentialRow {
  return {
    name: null,
    user_id: null,
    organization_id: null,
    service: null,
    scopes: null,
    workspace_id: null,
    ip_allowlist: "[]",
    parent_id: null,
    expires_at: null,
    idle_timeout_ms: null,
    ...row,
  };
}

export function insertCredential(tx: Database, row: NewCredentialRow): void {
  tx.query(
    `INSERT INTO credentials (id, kind, hash, name, user_id, organization_id, service, scopes, workspace_id, ip_allowlist, parent_id, created_at, expires_at, idle_timeout_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    row.id,
    row.kind,
    row.hash,
    row.name,
    row.user_id,
    row.organization_id,
    row.service,
    row.scopes,
    row.workspace_id,
    row.ip_allowlist,
    row.parent_id,
    row.created_at,
    row.expires_at,
    row.idle_timeout_ms,
  );
}

/** True when `userId` is the only operator left: removing them would leave the appliance without one. */
export const isLastOperator = (db: Database, userId: string) => {
  const operators = db.query<{ id: string }, []>("SELECT id FROM users WHERE operator = 1 AND deleted_at IS NULL LIMIT 2").all();
  return operators.length === 1 && operators[0]!.id === userId;
};

/** Revokes a credential and every credential made from it (workload tokens and their children). */
export const revokeCredential = (tx: Database, id: string, now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (SELECT ? UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id)
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(id, now);

/** Revokes the credentials `where` picks (an SQL condition on the credentials, with its parameters), and every credential made from them. */
const revokeCredentialsWhere = (tx: Database, where: string, parameters: string[], now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (
         SELECT id FROM credentials WHERE ${where}
         UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id)
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(...parameters, now);

/** Revokes the credentials bound to a workspace or an organization (`column` names which), and every credential made from them. */
const revokeBoundCredentials = (column: "workspace_id" | "organization_id") => (tx: Database, id: string, now: number) =>
  revokeCredentialsWhere(tx, `${column} = ?`, [id], now);

/** Revokes the credentials restricted to a workspace, and every credential made from them (a deleted workspace's tokens must not outlive it). */
export const revokeWorkspaceCredentials = revokeBoundCredentials("workspace_id");

/** Revokes every credential bound to the organization (its API keys, PATs restricted to it) and every credential made from them. */
export const revokeOrganizationCredentials = revokeBoundCredentials("organization_id");

/**
 * Revokes a member's credentials bound to the organization (the API keys they made, their
 * tokens restricted to it or to a workspace of it) and every credential made from them: what
 * leaving it ends for good, so that joining again brings none of it back.
 */
export const revokeMemberCredentials = (tx: Database, orgId: string, userId: string, now: number) =>
  revokeCredentialsWhere(tx, "organization_id = ? AND user_id = ?", [orgId, userId], now);

/** Revokes the user's credentials of `kinds`, and every credential made from them (an API key a PAT made has no user of its own). */
/** Every kind of credential a user makes: what deleting them (or asking for their erasure) revokes. */
export const EVERY_USER_CREDENTIAL: readonly CredentialKind[] = ["session", "pat", "device", "workload", "console", "service"];

export const revokeUserCredentials = (tx: Database, userId: string, kinds: readonly CredentialKind[], now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (
         SELECT id FROM credentials WHERE user_id = ? AND kind IN (${kinds.map(() => "?").join(", ")})
         UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id)
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(userId, ...kinds, now);

/** A credential and every credential it was made from (its parent, the parent's parent...). */
export const lineageOf = (db: Database, id: string): Set<string> =>
  new Set(
    db
      .query<{ id: string }, [string]>(
        `WITH RECURSIVE up(id, parent) AS (SELECT id, parent_id FROM credentials WHERE id = ?
           UNION SELECT c.id, c.parent_id FROM credentials c JOIN up ON c.id = up.parent)
         SELECT id FROM up`,
      )
      .all(id)
      .map((r) => r.id),
  );

/**
 * Ends logins — sessions and CLI logins — with the short-lived credentials made from them
 * (workload and console tokens), but not the personal access tokens and API keys made with
 * them: made on purpose, named and listed, they stay for their owner to review and revoke by
 * name. A password change, an MFA reset and `citadel recover` end logins, not CI's tokens.
 */
const NOT_MADE_ON_PURPOSE = "c.kind NOT IN ('pat', 'service')";

/** Ends one login (see NOT_MADE_ON_PURPOSE). */
export const endLogin = (tx: Database, id: string, now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (SELECT ? UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id WHERE ${NOT_MADE_ON_PURPOSE})
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(id, now);

/** Ends every login of the user (see NOT_MADE_ON_PURPOSE). */
export const endUserLogins = (tx: Database, userId: string, now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (
         SELECT id FROM credentials WHERE user_id = ? AND kind IN ('session', 'device')
         UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id WHERE ${NOT_MADE_ON_PURPOSE})
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(userId, now);

/** Ends every login of every user (see NOT_MADE_ON_PURPOSE): after a restore. */
export const endAllLogins = (tx: Database, now: number) =>
  tx
    .query(
      `WITH RECURSIVE family(id) AS (
         SELECT id FROM credentials WHERE kind IN ('session', 'device')
         UNION SELECT c.id FROM credentials c JOIN family f ON c.parent_id = f.id WHERE ${NOT_MADE_ON_PURPOSE})
       UPDATE credentials SET revoked_at = ? WHERE id IN (SELECT id FROM family) AND revoked_at IS NULL`,
    )
    .run(now);

/** Revokes one credential as of `at` (a revocation carried over from before a restore), if it is not revoked already. */
export const revokeAt = (tx: Database, id: string, at: number) => tx.query("UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(at, id);

/** Turns the user's approved device logins that were not yet picked up into denied ones. */
export const denyApprovedDeviceGrants = (tx: Database, userId: string) => tx.query("UPDATE device_grants SET status = 'denied' WHERE user_id = ? AND status = 'approved'").run(userId);

/** Revokes one credential, leaving what it made alone (logging out). */
export const revokeOnly = (tx: Database, id: string, now: number) => tx.query("UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(now, id);

export const credentialsOfUser = (db: Database, userId: string, kinds: readonly CredentialKind[]) =>
  db
    .query<CredentialRow, string[]>(`SELECT * FROM credentials WHERE user_id = ? AND kind IN (${kinds.map(() => "?").join(", ")}) AND revoked_at IS NULL ORDER BY created_at DESC`)
    .all(userId, ...kinds);

/**
 * A page of the user's live credentials of `kinds`, newest first (then the last made first),
 * before `before`: each kind's read backwards through credentials_live_by_user, which holds
 * them in that order, and merged. One range over the kinds would read every one of them and
 * sort them all (a CI account's workload tokens, one a job, for each page).
 */
export function credentialsPageOf(db: Database, userId: string, kinds: readonly CredentialKind[], before: PageEnd<number> | null, limit: number): Array<CredentialRow & { row: number }> {
  const newestOfKind = `SELECT * FROM (SELECT *, rowid AS row FROM credentials WHERE user_id = ? AND kind = ? AND revoked_at IS NULL AND (created_at, rowid) < (?, ?) ORDER BY created_at DESC, rowid DESC LIMIT ?)`;
  const sql = `${kinds.map(() => newestOfKind).join(" UNION ALL ")} ORDER BY created_at DESC, row DESC LIMIT ?`;
  const params = kinds.flatMap((kind) => [userId, kind, before?.value ?? Number.MAX_SAFE_INTEGER, before?.row ?? Number.MAX_SAFE_INTEGER, limit]);
  return db.query<CredentialRow & { row: number }, Array<string | number>>(sql).all(...params, limit);
}

/**
 * A page of the organization's live API keys, newest first (then the last made first), before
 * `before`: read backwards through credentials_live_by_org, which holds them in that order.
 */
export const apiKeysPageOf = (db: Database, orgId: string, before: PageEnd<number> | null, limit: number) =>
  db
    .query<CredentialRow & { row: number }, [string, number, number, number]>(
      "SELECT *, rowid AS row FROM credentials WHERE organization_id = ?1 AND kind = 'service' AND revoked_at IS NULL AND (created_at, rowid) < (?2, ?3) ORDER BY created_at DESC, rowid DESC LIMIT ?4",
    )
    .all(orgId, before?.value ?? Number.MAX_SAFE_INTEGER, before?.row ?? Number.MAX_SAFE_INTEGER, limit);

/** Where a pruning pass has got to, in the order of expiry (then row). */
export interface PruneCursor {
  expiresAt: number;
  row: number;
}

/**
 * Deletes, of the next `limit` credentials (after `cursor`) that expired before `expiredBefore`,
 * those from which no credential still kept was made: a token that a dead login made and that
 * works still keeps its maker's row (parent_id must not point at nothing). Expiry alone decides,
 * revoked or not: every credential has one, and a revoked credential's row stays until then,
 * so that its copy in a restored backup, which the restore may not know was revoked, is dead
 * anyway. Returns how many went and where the next pass starts (null: none left).
 */
export function pruneExpiredCredentials(tx: Database, expiredBefore: number, cursor: PruneCursor | null, limit: number): { deleted: number; next: PruneCursor | null } {
  const batch = tx
    .query<{ id: string; expires_at: number; row: number; kept: number }, [number, number, number, number]>(
      `WITH RECURSIVE
         batch(id, expires_at, row) AS (
           SELECT id, expires_at, rowid FROM credentials WHERE expires_at <= ?1 AND (expires_at, rowid) > (?2, ?3)
           ORDER BY expires_at, rowid LIMIT ?4),
         made(root, id) AS (SELECT id, id FROM batch UNION SELECT m.root, c.id FROM credentials c JOIN made m ON c.parent_id = m.id)
       SELECT b.id, b.expires_at, b.row,
              b.id IN (SELECT m.root FROM made m CROSS JOIN credentials c ON c.id = m.id WHERE coalesce(c.expires_at > ?1, 1)) AS kept
       FROM batch b ORDER BY b.expires_at, b.row`,
    )
    .all(expiredBefore, cursor?.expiresAt ?? Number.MIN_SAFE_INTEGER, cursor?.row ?? 0, limit);
  const remove = tx.query("DELETE FROM credentials WHERE id = ?");
  let deleted = 0;
  for (const c of batch) if (!c.kept) deleted += remove.run(c.id).changes;
  const last = batch.at(-1);
  return { deleted, next: batch.length < limit || !last ? null : { expiresAt: last.expires_at, row: last.row } };
}

export const recordUse = (tx: Database, id: string, at: number, from: string) =>
  tx.query("UPDATE credentials SET last_used_at = ?, last_used_from = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)").run(at, from, id, at);

// --- recovery codes ---------------------------------------------------------------------

export function replaceRecoveryCodes(tx: Database, userId: string, hashes: Uint8Array[]): void {
  tx.query("DELETE FROM recovery_codes WHERE user_id = ?").run(userId);
  const insert = tx.query("INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)");
  for (const hash of hashes) insert.run(userId, hash);
}

export const useRecoveryCode = (tx: Database, userId: string, hash: Uint8Array, now: number) =>
  tx.query("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at IS NULL").run(now, userId, hash).changes === 1;

export const unusedRecoveryCodes = (db: Database, userId: string) =>
  db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM recovery_codes WHERE user_id = ? AND used_at IS NULL").get(userId)!.n;

// --- device grants -------------------------------------------------------------------

export const insertDeviceGrant = (tx: Database, row: Omit<DeviceGrantRow, "last_poll_at" | "user_id" | "decided_at" | "status">) =>
  tx
    .query(
      "INSERT INTO device_grants (id, device_code_hash, user_code, client_name, client_address, scopes, created_at, expires_at, interval_s, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
    )
    .run(row.id, row.device_code_hash, row.user_code, row.client_name, row.client_address, row.scopes, row.created_at, row.expires_at, row.interval_s);

export const deviceGrantByCodeHash = (db: Database, hash: Uint8Array) => db.query<DeviceGrantRow, [Uint8Array]>("SELECT * FROM device_grants WHERE device_code_hash = ?").get(hash);

export const pendingDeviceGrantByUserCode = (db: Database, userCode: string) =>
  db.query<DeviceGrantRow, [string]>("SELECT * FROM device_grants WHERE user_code = ? AND status = 'pending' ORDER BY created_at DESC LIMIT 1").get(userCode);

export const decideDeviceGrant = (tx: Database, id: string, status: "approved" | "denied", userId: string, now: number) =>
  tx.query("UPDATE device_grants SET status = ?, user_id = ?, decided_at = ? WHERE id = ? AND status = 'pending'").run(status, userId, now, id).changes === 1;

export const pollDeviceGrant = (tx: Database, id: string, now: number, interval: number) =>
  tx.query("UPDATE device_grants SET last_poll_at = ?, interval_s = ? WHERE id = ?").run(now, interval, id);

export const consumeDeviceGrant = (tx: Database, id: string) => tx.query("UPDATE device_grants SET status = 'consumed' WHERE id = ? AND status = 'approved'").run(id).changes === 1;

export const anyDeviceGrantExpiredBy = (db: Database, at: number) => db.query<{ one: number }, [number]>("SELECT 1 AS one FROM device_grants WHERE expires_at <= ? LIMIT 1").get(at) !== null;

/** Every device login expired by `at`, whatever became of it (pending, decided or consumed). */
export const purgeDeviceGrantsExpiredBy = (tx: Database, at: number) => tx.query("DELETE FROM device_grants WHERE expires_at <= ?").run(at);
