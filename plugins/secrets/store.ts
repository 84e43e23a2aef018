/**
 * All SQL of the secrets plugin. Functions take the database (or the open transaction) first.
 */
import type { Database } from "bun:sqlite";

export type Protection = "members" | "admins" | "named";
export type VersionOrigin = "set" | "import" | "rollback" | "rotate";

export interface WorkspaceRow {
  workspace_id: string;
  organization_id: string;
  e2ee: number;
  /** Who turned end-to-end encryption on (a user id); null when off. */
  e2ee_enabled_by?: string | null;
  /** The current version of an end-to-end-encrypted workspace's key. */
  e2ee_key_version: number;
  created_at: number;
}

export interface EnvironmentRow {
  id: string;
  workspace_id: string;
  name: string;
  protection: Protection;
  allowed_users: string;
  created_at: number;
}

export interface SecretRow {
  id: string;
  environment_id: string;
  name: string;
  version: number;
  note: string | null;
  rotation_days: number | null;
  expires_at: number | null;
  rotated_at: number;
  created_at: number;
  created_by: string;
  updated_at: number;
  updated_by: string;
  deleted_at: number | null;
  deleted_by: string | null;
}

export interface VersionRow {
  secret_id: string;
  version: number;
  ciphertext: Uint8Array;
  dek_version: number;
  /** E2EE: the version of the workspace key the client encrypted with; 0 otherwise. */
  key_version: number;
  origin: VersionOrigin;
  created_at: number;
  created_by: string;
  /** When the value was set: created_at, or for a rollback's copy and a re-encryption the value's own time. */
  value_set_at: number;
}

export interface ShareRow {
  id: string;
  organization_id: string;
  created_by: string;
  ciphertext: Uint8Array;
  view_proof_hash: Uint8Array;
  passphrase: number;
  max_views: number;
  views: number;
  source: string | null;
  expires_at: number;
  created_at: number;
  revoked_at: number | null;
  /**
   * The SHA-256 of the passphrase proof, wrapped by the keyring (owner shares:<org>, context
   * secrets_shares:<id>:passphrase_proof); null for links made before passphrase proofs and links
   * without a passphrase.
   */
  passphrase_proof_hash: Uint8Array | null;
  /** JSON of the passphrase's ShareKdf (share-crypto.ts), with passphrase_proof_hash. */
  passphrase_kdf: string | null;
  wrong_passphrases: number;
}

export interface WebhookRow {
  id: string;
  workspace_id: string;
  /**
   * What may be shown of its URL: its origin ("https://hooks.example.org/…"). Whole in a row an
   * earlier version stored, until Webhooks.encryptStoredUrls encrypts it.
   */
  url: string;
  /** The whole URL, encrypted (its path or query can carry a token): see webhookUrl. */
  url_encrypted: Uint8Array | null;
  secret: Uint8Array;
  created_at: number;
  created_by: string;
  deleted_at: number | null;
}

export interface DeliveryRow {
  id: number;
  webhook_id: string;
  event: string;
  state: "pending" | "delivered" | "failed";
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

// --- workspaces and environments ---------------------------------------------------------

export const workspaceRow = (db: Database, id: string) =>
  db.query<WorkspaceRow, [string]>("SELECT * FROM secrets_workspaces WHERE workspace_id = ?").get(id);

export function insertWorkspace(tx: Database, row: WorkspaceRow): void {
  tx.query("INSERT INTO secrets_workspaces (workspace_id, organization_id, e2ee, created_at) VALUES (?, ?, ?, ?)").run(row.workspace_id, row.organization_id, row.e2ee, row.created_at);
}

/** Turns end-to-end encryption on (recording by whom: only they set the first key) or off. */
export const setE2ee = (tx: Database, workspaceId: string, on: boolean, by: string | null) =>
  tx.query("UPDATE secrets_workspaces SET e2ee = ?, e2ee_enabled_by = ? WHERE workspace_id = ?").run(on ? 1 : 0, on ? by : null, workspaceId);

export const environments = (db: Database, workspaceId: string) =>
  db.query<EnvironmentRow, [string]>("SELECT * FROM secrets_environments WHERE workspace_id = ? ORDER BY created_at, rowid").all(workspaceId);

export const environmentByName = (db: Database, workspaceId: string, name: string) =>
  db.query<EnvironmentRow, [string, string]>("SELECT * FROM secrets_environments WHERE workspace_id = ? AND name = ?").get(workspaceId, name);

export function insertEnvironment(tx: Database, row: EnvironmentRow): void {
  tx.query("INSERT INTO secrets_environments (id, workspace_id, name, protection, allowed_users, created_at) VALUES (?, ?, ?, ?, ?, ?)").run(
    row.id,
    row.workspace_id,
    row.name,
    row.protection,
    row.allowed_users,
    row.created_at,
  );
}

export const updateEnvironment = (tx: Database, id: string, protection: Protection, allowedUsers: string[]) =>
  tx.query("UPDATE secrets_environments SET protection = ?, allowed_users = ? WHERE id = ?").run(protection, JSON.stringify(allowedUsers), id);

export const environmentExists = (db: Database, id: string) => db.query<{ one: number }, [string]>("SELECT 1 AS one FROM secrets_environments WHERE id = ?").get(id) !== null;

export const deleteEnvironment = (tx: Database, id: string) => tx.query("DELETE FROM secrets_environments WHERE id = ?").run(id);

export const secretCountInWorkspace = (db: Database, workspaceId: string) =>
  db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM secrets s JOIN secrets_environments e ON e.id = s.environment_id WHERE e.workspace_id = ?").get(workspaceId)!.n;

export const secretCountInEnvironment = (db: Database, environmentId: string) =>
  db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM secrets WHERE environment_id = ?").get(environmentId)!.n;

// --- secrets and versions -----------------------------------------------------------------

export const secretByName = (db: Database, environmentId: string, name: string) =>
  db.query<SecretRow, [string, string]>("SELECT * FROM secrets WHERE environment_id = ? AND name = ?").get(environmentId, name);

// `CAST(? AS TEXT)`, not `?`: in Bun's SQLite (3.54) a query that compares a column to a bound
// parameter *and* has an ORDER BY is prepared again each time a value is bound — about 6 µs
// more a call here, growing with the SQL's length; without the ORDER BY, or with the
// parameter inside a CAST, it is not (docs/BENCHMARKS.md, issue 5). The cast keeps the plan
// (the unique index on environment and name, which also gives the order). This is the list
// behind `citadel secrets run`; the other 26 queries of that shape are not on hot paths.
export const secretsIn = (db: Database, environmentId: string, withDeleted: boolean) =>
  db
    .query<SecretRow, [string]>(`SELECT * FROM secrets WHERE environment_id = CAST(? AS TEXT) ${withDeleted ? "" : "AND deleted_at IS NULL"} ORDER BY name`)
    .all(environmentId);

export function insertSecret(tx: Database, row: SecretRow): void {
  tx.query(
    `INSERT INTO secrets (id, environment_id, name, version, note, rotation_days, expires_at, rotated_at, created_at, created_by, updated_at, updated_by)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(row.id, row.environment_id, row.name, row.version, row.note, row.rotation_days, row.expires_at, row.rotated_at, row.created_at, row.created_by, row.updated_at, row.updated_by);
}

/**
 * Moves a secret to a new current version, only if it is still at `expected` (optimistic
 * concurrency); `valueSetAt` is when the value it now holds was set (the reminder counts from it).
 */
export function advanceVersion(tx: Database, id: string, expected: number, next: number, at: number, valueSetAt: number, by: string): boolean {
  return tx.query("UPDATE secrets SET version = ?, rotated_at = ?, updated_at = ?, updated_by = ? WHERE id = ? AND version = ?").run(next, valueSetAt, at, by, id, expected).changes === 1;
}

/** When the value version `version` holds was set (a copy's is its source's), or undefined when there is no such version. */
export const valueSetAt = (db: Database, secretId: string, version: number) =>
  db.query<{ at: number }, [string, number]>("SELECT value_set_at AS at FROM secret_versions WHERE secret_id = ? AND version = ?").get(secretId, version)?.at;

export function updateMetadata(tx: Database, id: string, changes: { note?: string | null; rotation_days?: number | null; expires_at?: number | null }, at: number, by: string): void {
  const current = tx.query<SecretRow, [string]>("SELECT * FROM secrets WHERE id = ?").get(id)!;
  tx.query("UPDATE secrets SET note = ?, rotation_days = ?, expires_at = ?, updated_at = ?, updated_by = ? WHERE id = ?").run(
    changes.note !== undefined ? changes.note : current.note,
    changes.rotation_days !== undefined ? changes.rotation_days : current.rotation_days,
    changes.expires_at !== undefined ? changes.expires_at : current.expires_at,
    at,
    by,
    id,
  );
}

export const softDeleteSecret = (tx: Database, id: string, at: number, by: string) =>
  tx.query("UPDATE secrets SET deleted_at = ?, deleted_by = ? WHERE id = ? AND deleted_at IS NULL").run(at, by, id);

export const restoreSecret = (tx: Database, id: string) => tx.query("UPDATE secrets SET deleted_at = NULL, deleted_by = NULL WHERE id = ?").run(id);

export const purgeSecret = (tx: Database, id: string) => {
  tx.query("DELETE FROM secret_versions WHERE secret_id = ?").run(id);
  tx.query("DELETE FROM secrets WHERE id = ?").run(id);
};

export function insertVersion(tx: Database, row: VersionRow): void {
  tx.query("INSERT INTO secret_versions (secret_id, version, ciphertext, dek_version, key_version, origin, created_at, created_by, value_set_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").run(
    row.secret_id,
    row.version,
    row.ciphertext,
    row.dek_version,
    row.key_version,
    row.origin,
    row.created_at,
    row.created_by,
    row.value_set_at,
  );
}

export const versionOf = (db: Database, secretId: string, version: number) =>
  db.query<VersionRow, [string, number]>("SELECT * FROM secret_versions WHERE secret_id = ? AND version = ?").get(secretId, version);

export const versionsOf = (db: Database, secretId: string) =>
  db.query<Omit<VersionRow, "ciphertext" | "value_set_at">, [string]>("SELECT secret_id, version, dek_version, key_version, origin, created_at, created_by FROM secret_versions WHERE secret_id = ? ORDER BY version DESC").all(secretId);

/** Versions of a workspace's secrets still encrypted with a data key older than `dekVersion`. */
/** Versions still on a data key older than `dekVersion`, in a fixed order, after the first `skip` of them. */
export const versionsToReencrypt = (db: Database, workspaceId: string, dekVersion: number, limit: number, skip = 0) =>
  db
    .query<VersionRow, [string, number, number, number]>(
      `SELECT v.* FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN secrets_environments e ON e.id = s.environment_id
       WHERE e.workspace_id = ? AND v.dek_version > 0 AND v.dek_version < ? ORDER BY v.secret_id, v.version LIMIT ? OFFSET ?`,
    )
    .all(workspaceId, dekVersion, limit, skip);

export const countToReencrypt = (db: Database, workspaceId: string, dekVersion: number) =>
  db
    .query<{ n: number }, [string, number]>(
      `SELECT count(*) AS n FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN secrets_environments e ON e.id = s.environment_id
       WHERE e.workspace_id = ? AND v.dek_version > 0 AND v.dek_version < ?`,
    )
    .get(workspaceId, dekVersion)!.n;

export const replaceCiphertext = (tx: Database, secretId: string, version: number, ciphertext: Uint8Array, dekVersion: number) =>
  tx.query("UPDATE secret_versions SET ciphertext = ?, dek_version = ? WHERE secret_id = ? AND version = ?").run(ciphertext, dekVersion, secretId, version);

// --- share links --------------------------------------------------------------------------

export function insertShare(tx: Database, row: Omit<ShareRow, "views" | "revoked_at" | "wrong_passphrases">): void {
  tx.query(
    `INSERT INTO secrets_shares (id, organization_id, created_by, ciphertext, view_proof_hash, passphrase, max_views, source, expires_at, created_at, passphrase_proof_hash, passphrase_kdf)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(row.id, row.organization_id, row.created_by, row.ciphertext, row.view_proof_hash, row.passphrase, row.max_views, row.source, row.expires_at, row.created_at, row.passphrase_proof_hash, row.passphrase_kdf);
}

export const shareById = (db: Database, id: string) => db.query<ShareRow, [string]>("SELECT * FROM secrets_shares WHERE id = ?").get(id);

/** Where a page of share links ends: the last link on it (newest first, the id breaking ties). */
export interface ShareKey {
  created_at: number;
  id: string;
}

/** The organization's links, newest first: at most `limit`, after `after` (the last of the page before). */
export const sharesOf = (db: Database, organizationId: string, limit: number, after: ShareKey | null) =>
  db
    .query<ShareRow, [string, number | null, string | null, number]>(
      `SELECT * FROM secrets_shares WHERE organization_id = ?1 AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
        ORDER BY created_at DESC, id DESC LIMIT ?4`,
    )
    .all(organizationId, after?.created_at ?? null, after?.id ?? null, limit);

/**
 * Counts a view, only while views are left; the last view drops the ciphertext. Returns the
 * number of views with this one (which view it is), or null when it was not counted.
 */
export function countView(tx: Database, id: string, now: number): number | null {
  // Everything that makes a view allowed is checked again here, in the transaction that counts
  // it; and which view this is comes from the count itself, not from a read before it (views
  // opened at the same moment would all be "the first").
  const counted = tx
    .query<{ views: number; max_views: number }, [string, number]>("UPDATE secrets_shares SET views = views + 1 WHERE id = ? AND views < max_views AND revoked_at IS NULL AND expires_at > ? RETURNING views, max_views")
    .get(id, now);
  if (!counted) return null;
  if (counted.views >= counted.max_views) tx.query("UPDATE secrets_shares SET ciphertext = x'' WHERE id = ?").run(id);
  return counted.views;
}

/**
 * Counts a wrong passphrase for a link still open; returns how many it has had, or null when
 * it was revoked meanwhile. Counted in the transaction, so wrong passphrases sent at the same
 * moment are each counted.
 */
export const countWrongPassphrase = (tx: Database, id: string): number | null =>
  tx.query<{ wrong_passphrases: number }, [string]>("UPDATE secrets_shares SET wrong_passphrases = wrong_passphrases + 1 WHERE id = ? AND revoked_at IS NULL RETURNING wrong_passphrases").get(id)?.wrong_passphrases ?? null;

export const revokeShare = (tx: Database, id: string, at: number) =>
  tx.query("UPDATE secrets_shares SET revoked_at = ?, ciphertext = x'' WHERE id = ? AND revoked_at IS NULL").run(at, id);

/**
 * The links that carry a secret of the workspace (their source names it; a one-off value's link
 * has none) go with it: those still open are revoked, and every one's ciphertext is dropped (an
 * expired one's the sweep has not reached too). The ids of those revoked, oldest first.
 */
export function revokeSharesFrom(tx: Database, organizationId: string, workspaceId: string, at: number): string[] {
  // The source is "<workspace>/<environment>/<name>": compared as a prefix, not with LIKE (an id's "_" is a LIKE wildcard).
  return revokeSharesMatching(tx, "organization_id = ?1 AND substr(source, 1, length(?2) + 1) = ?2 || '/'", organizationId, workspaceId, at);
}

/**
 * The links that carry one secret (`source`, "<workspace>/<environment>/<name>") go with it, as
 * revokeSharesFrom's go with their workspace. Compared whole: DB's links are not DB_2's.
 */
export function revokeSharesOf(tx: Database, organizationId: string, source: string, at: number): string[] {
  return revokeSharesMatching(tx, "organization_id = ?1 AND source = ?2", organizationId, source, at);
}

/** Revokes the open links `which` selects (?1 the organization, ?2 the source), drops the ciphertext of all it selects; the ids revoked, oldest first. */
function revokeSharesMatching(tx: Database, which: string, organizationId: string, source: string, at: number): string[] {
  const revoked = tx
    .query<{ id: string; created_at: number }, [string, string, number]>(
      `UPDATE secrets_shares SET revoked_at = ?3, ciphertext = x'' WHERE ${which} AND revoked_at IS NULL AND expires_at > ?3 AND views < max_views RETURNING id, created_at`,
    )
    .all(organizationId, source, at);
  tx.query(`UPDATE secrets_shares SET ciphertext = x'' WHERE ${which} AND length(ciphertext) > 0`).run(organizationId, source);
  return revoked.sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id)).map((s) => s.id);
}

/**
 * The links still open whose source ("<workspace>/<environment>/<name>") names no secret there
 * is, not deleted, made no later than the link: one set again under the name after a purge is
 * another secret, not the one the link carries (a secret's created_at never changes). Oldest
 * first. One statement, the source split into its parts so that each lookup goes by the
 * environments' and secrets' unique indexes: a lookup per link from TypeScript took 1.4 s at
 * start for 100k open links.
 */
export const openSharesToSecretsGone = (db: Database, now: number) =>
  db
    .query<{ id: string; organization_id: string; workspace_id: string }, [number]>(
      `WITH open_links AS (
         SELECT id, organization_id, created_at, source, substr(source, instr(source, '/') + 1) AS environment_and_name
         FROM secrets_shares
         WHERE source IS NOT NULL AND revoked_at IS NULL AND expires_at > ?1 AND views < max_views
       ),
       sources AS (
         SELECT id, organization_id, created_at,
           substr(source, 1, instr(source, '/') - 1) AS workspace_id,
           substr(environment_and_name, 1, instr(environment_and_name, '/') - 1) AS environment,
           substr(environment_and_name, instr(environment_and_name, '/') + 1) AS name
         FROM open_links
       )
       SELECT id, organization_id, workspace_id FROM sources l
       WHERE NOT EXISTS (
         SELECT 1 FROM secrets_environments e JOIN secrets s ON s.environment_id = e.id
         WHERE e.workspace_id = l.workspace_id AND e.name = l.environment AND s.name = l.name
           AND s.deleted_at IS NULL AND s.created_at <= l.created_at
       )
       ORDER BY created_at, id`,
    )
    .all(now);

/** Drops the ciphertext of expired links (the row stays, for the audit trail and the list). */
export const dropExpiredShares = (tx: Database, now: number) =>
  tx.query("UPDATE secrets_shares SET ciphertext = x'' WHERE expires_at <= ? AND length(ciphertext) > 0").run(now);

// --- end-to-end encryption keys -----------------------------------------------------------

export const userKey = (db: Database, userId: string) =>
  db.query<{ user_id: string; public_key: string; sealed_private_key: string; created_at: number }, [string]>("SELECT * FROM secrets_user_keys WHERE user_id = ?").get(userId);

export const putUserKey = (tx: Database, userId: string, publicKey: string, sealedPrivateKey: string, at: number) =>
  tx
    .query("INSERT INTO secrets_user_keys (user_id, public_key, sealed_private_key, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET public_key = excluded.public_key, sealed_private_key = excluded.sealed_private_key, created_at = excluded.created_at")
    .run(userId, publicKey, sealedPrivateKey, at);

export const workspaceKey = (db: Database, workspaceId: string, keyVersion: number, userId: string) =>
  db
    .query<{ wrapped: string; wrapped_by: string; created_at: number }, [string, number, string]>(
      "SELECT wrapped, wrapped_by, created_at FROM secrets_workspace_keys WHERE workspace_id = ? AND key_version = ? AND user_id = ?",
    )
    .get(workspaceId, keyVersion, userId);

export const workspaceKeyHolders = (db: Database, workspaceId: string, keyVersion: number) =>
  db
    .query<{ user_id: string; wrapped_by: string; created_at: number }, [string, number]>(
      "SELECT user_id, wrapped_by, created_at FROM secrets_workspace_keys WHERE workspace_id = ? AND key_version = ? ORDER BY created_at, user_id",
    )
    .all(workspaceId, keyVersion);

/** Everyone who holds some version of the workspace's key. */
export const workspaceKeyHoldersOfAnyVersion = (db: Database, workspaceId: string) =>
  db.query<{ user_id: string }, [string]>("SELECT DISTINCT user_id FROM secrets_workspace_keys WHERE workspace_id = ?").all(workspaceId);

export const putWorkspaceKey = (tx: Database, workspaceId: string, keyVersion: number, userId: string, wrapped: string, by: string, at: number) =>
  tx
    .query(
      "INSERT INTO secrets_workspace_keys (workspace_id, key_version, user_id, wrapped, wrapped_by, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, key_version, user_id) DO UPDATE SET wrapped = excluded.wrapped, wrapped_by = excluded.wrapped_by, created_at = excluded.created_at",
    )
    .run(workspaceId, keyVersion, userId, wrapped, by, at);

/** Every version of the user's wrapped keys of this workspace: a removed member keeps none. */
/**
 * The workspace key versions `userId` holds that something still needs — the current one, or
 * one a stored value is encrypted with — with the workspace's organization and every other
 * holder of the same version.
 */
export const keysHeldWithOthers = (db: Database, userId: string, workspaceId?: string) =>
  db
    .query<{ workspace_id: string; organization_id: string; key_version: number; current: number; others: string | null }, [string, string | null, string | null]>(
      `SELECT k.workspace_id, w.organization_id, k.key_version, k.key_version = w.e2ee_key_version AS current,
              (SELECT group_concat(o.user_id, ' ') FROM secrets_workspace_keys o
                WHERE o.workspace_id = k.workspace_id AND o.key_version = k.key_version AND o.user_id != k.user_id) AS others
         FROM secrets_workspace_keys k JOIN secrets_workspaces w ON w.workspace_id = k.workspace_id
        WHERE k.user_id = ? AND (? IS NULL OR k.workspace_id = ?)
          AND (k.key_version = w.e2ee_key_version OR EXISTS (
                SELECT 1 FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN secrets_environments e ON e.id = s.environment_id
                 WHERE e.workspace_id = k.workspace_id AND v.dek_version = 0 AND v.key_version = k.key_version))`,
    )
    .all(userId, workspaceId ?? null, workspaceId ?? null);

export const deleteWorkspaceKeys = (tx: Database, workspaceId: string, userId: string) =>
  tx.query("DELETE FROM secrets_workspace_keys WHERE workspace_id = ? AND user_id = ?").run(workspaceId, userId).changes;

/** The workspaces holding a key (of any version) wrapped for the user, in their ids' order. */
export const workspacesKeyedFor = (db: Database, userId: string) =>
  db.query<WorkspaceRow, [string]>("SELECT * FROM secrets_workspaces WHERE workspace_id IN (SELECT workspace_id FROM secrets_workspace_keys WHERE user_id = ?) ORDER BY workspace_id").all(userId);

/** Every workspace key wrapped for the user, in every workspace (their key pair replaced, or their account erased). */
export const deleteKeysWrappedTo = (tx: Database, userId: string) => tx.query("DELETE FROM secrets_workspace_keys WHERE user_id = ?").run(userId);

export const setE2eeKeyVersion = (tx: Database, workspaceId: string, version: number) =>
  tx.query("UPDATE secrets_workspaces SET e2ee_key_version = ? WHERE workspace_id = ?").run(version, workspaceId);

/** Every wrapped copy of every version of the workspace's key, and its version back to 1 (encryption turned off, no secret left). */
export function forgetWorkspaceKeys(tx: Database, workspaceId: string): void {
  tx.query("DELETE FROM secrets_workspace_keys WHERE workspace_id = ?").run(workspaceId);
  setE2eeKeyVersion(tx, workspaceId, 1);
}

// --- webhooks -----------------------------------------------------------------------------

export const webhooksOf = (db: Database, workspaceId: string) =>
  db.query<WebhookRow, [string]>("SELECT * FROM secrets_webhooks WHERE workspace_id = ? AND deleted_at IS NULL ORDER BY created_at").all(workspaceId);

/** Every live webhook, of every workspace. */
export const liveWebhooks = (db: Database) => db.query<WebhookRow, []>("SELECT * FROM secrets_webhooks WHERE deleted_at IS NULL ORDER BY created_at").all();

export const webhookById = (db: Database, id: string) => db.query<WebhookRow, [string]>("SELECT * FROM secrets_webhooks WHERE id = ? AND deleted_at IS NULL").get(id);

export function insertWebhook(tx: Database, row: Omit<WebhookRow, "deleted_at">): void {
  tx.query("INSERT INTO secrets_webhooks (id, workspace_id, url, url_encrypted, secret, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)").run(
    row.id,
    row.workspace_id,
    row.url,
    row.url_encrypted,
    row.secret,
    row.created_at,
    row.created_by,
  );
}

/** The live webhooks whose URL an earlier version stored whole (not encrypted). */
export const webhooksWithWholeUrls = (db: Database) => db.query<WebhookRow, []>("SELECT * FROM secrets_webhooks WHERE deleted_at IS NULL AND url_encrypted IS NULL").all();

/** Puts the webhook's URL encrypted, and what may be shown of it in place of the whole one. */
export const setWebhookUrl = (tx: Database, id: string, shown: string, encrypted: Uint8Array) =>
  tx.query("UPDATE secrets_webhooks SET url = ?, url_encrypted = ? WHERE id = ?").run(shown, encrypted, id);

/**
 * Deletes the webhook's deliveries, pending ones too, and its URL (it can be a capability): the
 * row stays, with its id, for the audit events that name it. Nothing of it is shown any more.
 * Whether it was live (false: deleted already, by another request meanwhile).
 */
export function deleteWebhook(tx: Database, id: string, at: number): boolean {
  const marked = tx.query("UPDATE secrets_webhooks SET deleted_at = ?, url = '', url_encrypted = NULL WHERE id = ? AND deleted_at IS NULL").run(at, id).changes === 1;
  if (marked) tx.query("DELETE FROM secrets_webhook_deliveries WHERE webhook_id = ?").run(id);
  return marked;
}

/**
 * Deletes the webhook's finished deliveries older than its newest `kept` (the log the API
 * shows): pending ones stay, to be sent. One range of the (webhook_id, id) index.
 */
export const pruneDeliveries = (tx: Database, webhookId: string, kept: number) =>
  tx
    .query(
      `DELETE FROM secrets_webhook_deliveries WHERE webhook_id = ?1 AND state != 'pending'
         AND id < (SELECT id FROM secrets_webhook_deliveries WHERE webhook_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1)`,
    )
    .run(webhookId, kept);

/** Gives up every pending delivery of the webhook, unsent, `reason` as its last error; how many. */
export const giveUpPendingDeliveries = (tx: Database, webhookId: string, reason: string, at: number) =>
  tx.query("UPDATE secrets_webhook_deliveries SET state = 'failed', last_error = ?, next_attempt_at = ? WHERE webhook_id = ? AND state = 'pending'").run(reason, at, webhookId).changes;

export const enqueueDelivery = (tx: Database, webhookId: string, event: string, at: number) =>
  tx.query("INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, next_attempt_at, created_at) VALUES (?, ?, 'pending', ?, ?)").run(webhookId, event, at, at);

/** A due delivery, with the organization its webhook's workspace belongs to. */
export interface DueDelivery extends DeliveryRow {
  organization_id: string;
}

/**
 * The deliveries to start next: of each webhook, its oldest pending delivery if it is due (so a
 * webhook's deliveries go out in the order of the changes: a newer one waits until the one before
 * is delivered or given up), skipping the webhooks in `busy.webhooks` (one attempt at a time per
 * webhook, so a slow or failing receiver holds up only its own); of each organization no more than `perOrganization` less
 * its attempts in flight (`busy.organizations`), its oldest first, so an organization at its
 * share never stands in front of another's; the organizations with the fewest attempts then
 * first, so that one whose receivers hang cannot take back each slot it frees while another
 * waits; oldest first among equals; at most `limit`. Only webhooks that
 * still exist: a delivery of a deleted one (say, one left pending by a version that let an
 * in-flight attempt overwrite the deletion) must not take a place forever.
 */
export const nextDueFairly = (db: Database, now: number, busy: { webhooks: string[]; organizations: Record<string, number> }, perOrganization: number, limit: number) =>
  db
    .query<DueDelivery, [number, string, string, number, number]>(NEXT_DUE_FAIRLY)
    .all(now, JSON.stringify(busy.webhooks), JSON.stringify(busy.organizations), perOrganization, limit);

/** nextDueFairly's query (exported for the test of its plan). */
export const NEXT_DUE_FAIRLY = `WITH heads AS (
   -- Each webhook's oldest pending delivery (one probe of secrets_webhook_deliveries_pending), if due.
   SELECT d.*, s.organization_id
     FROM secrets_webhooks w
     JOIN secrets_workspaces s ON s.workspace_id = w.workspace_id
     JOIN secrets_webhook_deliveries d ON d.id = (
       SELECT id FROM secrets_webhook_deliveries
        WHERE webhook_id = w.id AND state = 'pending' ORDER BY id LIMIT 1)
    WHERE w.deleted_at IS NULL AND d.next_attempt_at <= ?
      AND w.id NOT IN (SELECT value FROM json_each(?))),
 per_organization AS (
   SELECT *, row_number() OVER (PARTITION BY organization_id ORDER BY next_attempt_at, id) AS org_place FROM heads)
 SELECT p.id, p.webhook_id, p.event, p.state, p.attempts, p.next_attempt_at, p.last_status, p.last_error, p.created_at, p.delivered_at, p.organization_id
   FROM per_organization p LEFT JOIN json_each(?) busy ON busy.key = p.organization_id
  WHERE p.org_place <= ? - coalesce(busy.value, 0)
  -- The least loaded organizations first (in flight, plus what goes before in this pick), then the
  -- oldest: a slot freed by an organization that fills its share goes to one waiting with fewer.
  ORDER BY coalesce(busy.value, 0) + p.org_place, p.next_attempt_at, p.id LIMIT ?`;

export const deliveriesOf = (db: Database, webhookId: string, limit: number) =>
  db.query<DeliveryRow, [string, number]>("SELECT * FROM secrets_webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?").all(webhookId, limit);

export interface AttemptOutcome {
  state: DeliveryRow["state"];
  status: number | null;
  error: string | null;
  nextAttemptAt: number;
  at: number;
}

/**
 * The outcome of one attempt, only for a delivery still pending: the webhook may have been
 * deleted while the request was in flight, its deliveries with it, and an attempt that
 * finishes afterwards writes nothing.
 */
export function recordAttempt(tx: Database, id: number, outcome: AttemptOutcome): void {
  tx.query("UPDATE secrets_webhook_deliveries SET state = ?, attempts = attempts + 1, last_status = ?, last_error = ?, next_attempt_at = ?, delivered_at = ? WHERE id = ? AND state = 'pending'").run(
    outcome.state,
    outcome.status,
    outcome.error,
    outcome.nextAttemptAt,
    outcome.state === "delivered" ? outcome.at : null,
    id,
  );
}
