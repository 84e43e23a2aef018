/**
 * What identity holds about a data subject (src/subjects.ts), and its erasure: a user's
 * profile, memberships and credentials; an organization's members, workspaces and keys.
 * Hard erasure anonymizes the rows other tables point at (so references stay valid) and
 * deletes the rest; the subject's audit data is shredded by the subject plugin.
 */
import type { Database } from "bun:sqlite";
import { ConflictError } from "../../src/errors.ts";
import type { Store } from "../../src/store/store.ts";
import type { SubjectContributor } from "../../src/subjects.ts";
import type { Keyring } from "../../src/crypto/keyring.ts";
import { userKeyOwner } from "./service.ts";
import * as sql from "./store.ts";

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

interface CredentialRow {
  id: string;
  kind: string;
  name: string | null;
  organization_id: string | null;
  service: string | null;
  scopes: string | null;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  last_used_from: string | null;
  revoked_at: number | null;
}

const credentialView = (c: CredentialRow) => ({
  id: c.id,
  kind: c.kind,
  name: c.name,
  organization: c.organization_id,
  service: c.service,
  scopes: c.scopes ? JSON.parse(c.scopes) : null,
  created_at: iso(c.created_at),
  expires_at: iso(c.expires_at),
  last_used_at: iso(c.last_used_at),
  last_used_from: c.last_used_from,
  revoked_at: iso(c.revoked_at),
});

/**
 * Invitations `i` to the address of the user (bound twice, as the user's id), compared by its
 * key, as logins and invitations are (found in review: an invitation to "ZOË@" was the user's
 * "zoë@" to see and accept, yet neither exported nor erased with them) — but not one a live
 * account other than them has: their address is unique
 * among live accounts only, and a new account may take it while they are soft-deleted (the
 * grace period), whose invitations are its own, neither exported with nor erased with theirs.
 */
const TO_SUBJECT_ADDRESS = `i.email_key = (SELECT email_key FROM users WHERE id = ?) AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email_key = i.email_key AND o.deleted_at IS NULL AND o.id <> ?)`;

export function iamSubjects(store: Store, keyring: () => Keyring): SubjectContributor {
  const db = store.db;
  return {
    name: "iam",
    export: (subject) => (subject.kind === "user" ? exportUser(db, subject.id) : exportOrganization(db, subject.id)),
    softDelete(tx, subject, now) {
      if (subject.kind === "user") {
        if (sql.isLastOperator(tx, subject.id)) throw new ConflictError("The user is the last operator: make another operator first.");
        for (const org of sql.ownedOrganizations(tx, subject.id)) {
          if (sql.isLastOwner(tx, org, subject.id)) throw new ConflictError(`The user is the last owner of organization ${org}: transfer ownership (or erase the organization) first.`);
        }
        sql.softDeleteUser(tx, subject.id, now);
        // API keys too (they stop at once anyway, their maker gone): listed as revoked, with
        // the request's audit event, rather than vanishing unannounced at the erasure for good.
        sql.revokeUserCredentials(tx, subject.id, sql.EVERY_USER_CREDENTIAL, now);
      } else {
        sql.softDeleteOrganization(tx, subject.id, now);
        tx.query("UPDATE credentials SET revoked_at = ? WHERE organization_id = ? AND revoked_at IS NULL").run(now, subject.id);
      }
    },
    erase: (tx, subject, now) => (subject.kind === "user" ? eraseUser(tx, subject.id, now, keyring()) : eraseOrganization(tx, subject.id, now)),
  };
}

function exportUser(db: Database, id: string) {
  const user = db.query<sql.UserRow, [string]>("SELECT * FROM users WHERE id = ?").get(id);
  if (!user) return null;
  return {
    user: { id: user.id, email: user.email, name: user.name, operator: user.operator === 1, mfa: user.totp_enabled_at !== null, created_at: iso(user.created_at), deleted_at: iso(user.deleted_at) },
    memberships: db.query<{ organization_id: string; role: string; created_at: number }, [string]>("SELECT organization_id, role, created_at FROM memberships WHERE user_id = ?").all(id).map((m) => ({ organization: m.organization_id, role: m.role, since: iso(m.created_at) })),
    workspace_roles: db.query<{ workspace_id: string; role: string }, [string]>("SELECT workspace_id, role FROM workspace_members WHERE user_id = ?").all(id).map((w) => ({ workspace: w.workspace_id, role: w.role })),
    credentials: db.query<CredentialRow, [string]>("SELECT * FROM credentials WHERE user_id = ? ORDER BY created_at").all(id).map(credentialView),
    invitations: db
      .query<{ id: string; organization_id: string; role: string; created_at: number; expires_at: number }, [string, string]>(
        `SELECT i.id, i.organization_id, i.role, i.created_at, i.expires_at FROM invitations i WHERE ${TO_SUBJECT_ADDRESS}`,
      )
      .all(id, id)
      .map((i) => ({ id: i.id, organization: i.organization_id, role: i.role, sent_at: iso(i.created_at), expires_at: iso(i.expires_at) })),
    device_logins: db.query<{ client_name: string; client_address: string; created_at: number; status: string }, [string]>("SELECT client_name, client_address, created_at, status FROM device_grants WHERE user_id = ?").all(id).map((d) => ({ client: d.client_name, address: d.client_address, at: iso(d.created_at), status: d.status })),
  };
}

function exportOrganization(db: Database, id: string) {
  const org = db.query<{ id: string; name: string; require_mfa: number; ip_allowlist: string; created_at: number; deleted_at: number | null }, [string]>("SELECT * FROM organizations WHERE id = ?").get(id);
  if (!org) return null;
  return {
    organization: { id: org.id, name: org.name, require_mfa: org.require_mfa === 1, ip_allowlist: storedList(org.ip_allowlist), created_at: iso(org.created_at), deleted_at: iso(org.deleted_at) },
    members: db
      .query<{ user_id: string; email: string; role: string; created_at: number }, [string]>("SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = ?")
      .all(id)
      .map((m) => ({ user: m.user_id, email: m.email, role: m.role, since: iso(m.created_at) })),
    workspaces: db.query<{ id: string; name: string; created_at: number; deleted_at: number | null }, [string]>("SELECT id, name, created_at, deleted_at FROM workspaces WHERE organization_id = ?").all(id).map((w) => ({ id: w.id, name: w.name, created_at: iso(w.created_at), deleted_at: iso(w.deleted_at) })),
    services: db.query<{ service: string; activated_at: number }, [string]>("SELECT service, activated_at FROM service_activations WHERE organization_id = ?").all(id).map((s) => ({ service: s.service, since: iso(s.activated_at) })),
    api_keys: db.query<CredentialRow, [string]>("SELECT * FROM credentials WHERE organization_id = ? AND kind = 'service' ORDER BY created_at").all(id).map(credentialView),
    invitations: sql.invitationsOf(db, id, 0).map((i) => ({ id: i.id, email: i.email, role: i.role, invited_by: i.invited_by, sent_at: iso(i.created_at), expires_at: iso(i.expires_at) })),
  };
}

function eraseUser(tx: Database, id: string, now: number, keyring: Keyring): string | null {
  if (!tx.query("SELECT 1 FROM users WHERE id = ?").get(id)) return null;
  keyring.destroyOwner(tx, userKeyOwner(id), now); // the TOTP secret's key: copies of the file cannot give it back
  const credentials = tx.query("DELETE FROM credentials WHERE user_id = ?").run(id).changes;
  tx.query("DELETE FROM recovery_codes WHERE user_id = ?").run(id);
  tx.query("DELETE FROM workspace_members WHERE user_id = ?").run(id);
  tx.query("DELETE FROM memberships WHERE user_id = ?").run(id);
  tx.query("DELETE FROM device_grants WHERE user_id = ?").run(id);
  // Those they sent, and those to their address (compared as the users table does) that are not another live account's.
  tx.query(`DELETE FROM invitations AS i WHERE i.invited_by = ? OR ${TO_SUBJECT_ADDRESS}`).run(id, id, id);
  // The row stays (other tables name it), with nothing personal in it.
  tx.query(
    "UPDATE users SET email = ?, name = NULL, password_hash = '', operator = 0, totp_secret = NULL, totp_pending = NULL, totp_enabled_at = NULL, totp_last_step = NULL, failed_logins = 0, locked_until = NULL, deleted_at = coalesce(deleted_at, ?) WHERE id = ?",
  ).run(`erased-${id}@erased.invalid`, now, id);
  return `profile anonymized, ${credentials} credential(s) deleted`;
}

function eraseOrganization(tx: Database, id: string, now: number): string | null {
  if (!tx.query("SELECT 1 FROM organizations WHERE id = ?").get(id)) return null;
  const workspaces = tx.query<{ id: string }, [string]>("SELECT id FROM workspaces WHERE organization_id = ?").all(id);
  for (const w of workspaces) tx.query("DELETE FROM workspace_members WHERE workspace_id = ?").run(w.id);
  const credentials = tx.query("DELETE FROM credentials WHERE organization_id = ?").run(id).changes;
  tx.query("DELETE FROM memberships WHERE organization_id = ?").run(id);
  tx.query("DELETE FROM service_activations WHERE organization_id = ?").run(id);
  tx.query("DELETE FROM invitations WHERE organization_id = ?").run(id);
  tx.query("UPDATE workspaces SET name = 'erased-' || id, ip_allowlist = '[]', deleted_at = coalesce(deleted_at, ?) WHERE organization_id = ?").run(now, id);
  tx.query("UPDATE organizations SET name = ?, ip_allowlist = '[]', deleted_at = coalesce(deleted_at, ?) WHERE id = ?").run(`erased-${id}`, now, id);
  return `organization anonymized, ${workspaces.length} workspace(s), ${credentials} credential(s) deleted`;
}

/** A stored allowlist as it is: its entries, or its text when it is no JSON list (an export hides nothing, and fails on nothing). */
function storedList(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}
