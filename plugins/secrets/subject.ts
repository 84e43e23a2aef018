/**
 * What the secrets service holds about a data subject (src/subjects.ts). An organization: its
 * workspaces, environments, secrets (metadata; values decrypted only when the operator asked
 * for them), versions' authors, webhooks (their origin; whole URLs with the values; never their
 * signing secrets), shares' metadata.
 * A user: their end-to-end-encryption public key and the versions they wrote.
 *
 * Erasure of an organization is crypto-shredding: every workspace's data key, every webhook's
 * key (its signing secret and URL) and the organization's share-link key are destroyed, so every stored value,
 * version, secret and share is unreadable at once (in copies of the file too); the rows go too. A user's erasure
 * deletes their E2EE key material (the workspaces' wrapped keys for them included). A workspace
 * deleted in iam is erased the same way, on its own, and so are an organization's share links
 * when iam deletes it (src/workspace-deletions.ts).
 */
import type { Database } from "bun:sqlite";
import type { AuditLog } from "../../src/audit/log.ts";
import { DecryptionError } from "../../src/crypto/aead.ts";
import { KeyDestroyedError, type Keyring } from "../../src/crypto/keyring.ts";
import type { Store } from "../../src/store/store.ts";
import type { SubjectContributor } from "../../src/subjects.ts";
import type { OrganizationDeletionHandler, WorkspaceDeletionHandler } from "../../src/workspace-deletions.ts";
import { systemEvent, valueKeyOwner } from "./context.ts";
import { versionContext } from "./service.ts";
import { shareKeyOwner } from "./shares.ts";
import * as sql from "./store.ts";
import { webhookKeyOwner, webhookUrl } from "./webhooks.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function secretsSubjects(store: Store, keyring: () => Keyring, audit: AuditLog): SubjectContributor {
  const db = store.db;
  return {
    name: "secrets",
    export(subject, { secretValues }) {
      if (subject.kind === "user") {
        const key = db.query<{ public_key: string; created_at: number }, [string]>("SELECT public_key, created_at FROM secrets_user_keys WHERE user_id = ?").get(subject.id);
        const written = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM secret_versions WHERE created_by = ?").get(subject.id)!.n;
        if (!key && written === 0) return null;
        return { e2ee_public_key: key ? { public_key: key.public_key, created_at: iso(key.created_at) } : null, secret_versions_written: written };
      }
      const workspaces = db.query<{ workspace_id: string; e2ee: number; created_at: number }, [string]>("SELECT workspace_id, e2ee, created_at FROM secrets_workspaces WHERE organization_id = ?").all(subject.id);
      const shares = exportShares(db, subject.id);
      if (workspaces.length === 0 && shares.length === 0) return null;
      return { workspaces: workspaces.map((w) => exportWorkspace(db, keyring, w, secretValues)), shares };
    },
    erase(tx, subject, now) {
      if (subject.kind === "user") {
        const keys = tx.query("DELETE FROM secrets_user_keys WHERE user_id = ?").run(subject.id).changes;
        // Each workspace that loses a holder records it: the erasure's own event names none.
        for (const ws of sql.workspacesKeyedFor(tx, subject.id)) audit.record(tx, systemEvent(ws, { action: "secrets.e2ee.revoke", resource: { type: "user", id: subject.id }, reason: "their account was erased" }));
        sql.deleteKeysWrappedTo(tx, subject.id);
        return keys > 0 ? "end-to-end-encryption keys deleted" : null;
      }
      const workspaces = tx.query<{ workspace_id: string }, [string]>("SELECT workspace_id FROM secrets_workspaces WHERE organization_id = ?").all(subject.id);
      let destroyed = 0;
      for (const { workspace_id } of workspaces) destroyed += eraseWorkspace(tx, keyring(), workspace_id, now);
      destroyed += eraseShares(tx, keyring(), subject.id, now).destroyed;
      return workspaces.length === 0 && destroyed === 0 ? null : `${workspaces.length} workspace(s) deleted, ${destroyed} key(s) destroyed (values, webhook secrets, share links)`;
    },
  };
}

/**
 * Crypto-shreds the organization's share links: their key is destroyed (a copy of a link's
 * ciphertext opens no more) and their rows go. Runs inside `tx`; how many links and keys went.
 */
function eraseShares(tx: Database, keyring: Keyring, organizationId: string, now: number): { links: number; destroyed: number } {
  const destroyed = keyring.destroyOwner(tx, shareKeyOwner(organizationId), now);
  const links = tx.query("DELETE FROM secrets_shares WHERE organization_id = ?").run(organizationId).changes;
  return { links, destroyed };
}

/**
 * What goes of the secrets service when iam deletes an organization (src/workspace-deletions.ts),
 * beyond its workspaces (each deleted on its own): its share links and their key. A deleted
 * organization's links no longer opened, but their rows and key stayed for good, with no route
 * left to remove them (found in review).
 */
export function secretsOrganizationDeletion(keyring: () => Keyring): OrganizationDeletionHandler {
  return {
    name: "secrets",
    deleted(tx, organizationId, now) {
      const { links, destroyed } = eraseShares(tx, keyring(), organizationId, now);
      return links === 0 && destroyed === 0 ? null : `${links} share link(s) deleted, ${destroyed} key(s) destroyed`;
    },
  };
}

/** The organization's share links, metadata only: their ciphertext is the recipient's to read, through the link. */
function exportShares(db: Database, organizationId: string) {
  return db
    .query<{ id: string; created_by: string; created_at: number; expires_at: number; views: number; max_views: number; revoked_at: number | null }, [string]>(
      "SELECT id, created_by, created_at, expires_at, views, max_views, revoked_at FROM secrets_shares WHERE organization_id = ? ORDER BY created_at, id",
    )
    .all(organizationId)
    .map((s) => ({ id: s.id, created_by: s.created_by, created_at: iso(s.created_at), expires_at: iso(s.expires_at), views: s.views, max_views: s.max_views, revoked_at: iso(s.revoked_at) }));
}

/**
 * Crypto-shreds a workspace: its data key and its webhooks' signing-secret keys are destroyed,
 * so its values are unreadable at once (in copies of the file too), and its rows go — secrets
 * and versions (end-to-end-encrypted ciphertexts included), environments, wrapped workspace
 * keys, webhooks and their pending deliveries. Runs inside `tx`; the number of keys destroyed.
 */
export function eraseWorkspace(tx: Database, keyring: Keyring, workspaceId: string, now: number): number {
  let destroyed = keyring.destroyOwner(tx, valueKeyOwner(workspaceId), now);
  const environments = tx.query<{ id: string }, [string]>("SELECT id FROM secrets_environments WHERE workspace_id = ?").all(workspaceId);
  for (const env of environments) tx.query("DELETE FROM secrets WHERE environment_id = ?").run(env.id); // versions cascade
  tx.query("DELETE FROM secrets_environments WHERE workspace_id = ?").run(workspaceId);
  for (const hook of tx.query<{ id: string }, [string]>("SELECT id FROM secrets_webhooks WHERE workspace_id = ?").all(workspaceId)) destroyed += keyring.destroyOwner(tx, webhookKeyOwner(hook.id), now);
  tx.query("DELETE FROM secrets_webhook_deliveries WHERE webhook_id IN (SELECT id FROM secrets_webhooks WHERE workspace_id = ?)").run(workspaceId);
  tx.query("DELETE FROM secrets_webhooks WHERE workspace_id = ?").run(workspaceId);
  tx.query("DELETE FROM secrets_workspace_keys WHERE workspace_id = ?").run(workspaceId);
  tx.query("DELETE FROM secrets_workspaces WHERE workspace_id = ?").run(workspaceId);
  return destroyed;
}

/**
 * What goes of the secrets service when iam deletes a workspace (src/workspace-deletions.ts):
 * its data, and the share links carrying its secrets, revoked — its values unreadable at once
 * means through a link too (found in review: they opened on). Each revoked link has its
 * secrets.share.revoke event, as every other revocation does (found in review: only a count in
 * the deletion's). A link of a one-off value is no workspace's: it stays.
 */
export function secretsWorkspaceDeletion(keyring: () => Keyring, audit: AuditLog): WorkspaceDeletionHandler {
  return {
    name: "secrets",
    deleted(tx, workspaceId, now) {
      const ws = sql.workspaceRow(tx, workspaceId);
      if (!ws) return null; // never used: nothing held (a link's source is a workspace used)
      const revoked = sql.revokeSharesFrom(tx, ws.organization_id, workspaceId, now);
      for (const id of revoked) audit.record(tx, systemEvent(ws, { action: "secrets.share.revoke", resource: { type: "share", id }, reason: "its workspace was deleted" }));
      const destroyed = eraseWorkspace(tx, keyring(), workspaceId, now);
      return `data erased, ${destroyed} key(s) destroyed (values, webhook secrets)${revoked.length > 0 ? `, ${revoked.length} share link(s) revoked` : ""}`;
    },
  };
}

function exportWorkspace(db: Database, keyring: () => Keyring, w: { workspace_id: string; e2ee: number; created_at: number }, secretValues: boolean) {
  const environments = db.query<{ id: string; name: string; protection: string }, [string]>("SELECT id, name, protection FROM secrets_environments WHERE workspace_id = ? ORDER BY name").all(w.workspace_id);
  return {
    workspace: w.workspace_id,
    end_to_end_encrypted: w.e2ee === 1,
    created_at: iso(w.created_at),
    environments: environments.map((env) => ({
      name: env.name,
      protection: env.protection,
      secrets: db
        .query<{ id: string; name: string; version: number; note: string | null; created_at: number; created_by: string; updated_at: number; deleted_at: number | null }, [string]>(
          "SELECT id, name, version, note, created_at, created_by, updated_at, deleted_at FROM secrets WHERE environment_id = ? ORDER BY name",
        )
        .all(env.id)
        .map((s) => {
          const out: Record<string, unknown> = { name: s.name, version: s.version, note: s.note, created_at: iso(s.created_at), created_by: s.created_by, updated_at: iso(s.updated_at), deleted_at: iso(s.deleted_at) };
          if (secretValues) out.value = valueOf(db, keyring, w, s.id, s.version);
          return out;
        }),
    })),
    // A webhook URL can be a capability (a token in its path): only with the secret values.
    webhooks: db
      .query<{ id: string; url: string; url_encrypted: Uint8Array | null; created_at: number }, [string]>("SELECT id, url, url_encrypted, created_at FROM secrets_webhooks WHERE workspace_id = ? AND deleted_at IS NULL")
      .all(w.workspace_id)
      .map((h) => ({ id: h.id, url: secretValues ? wholeUrlOf(keyring, h) : originOf(h.url), created_at: iso(h.created_at) })),
  };
}

/**
 * The current version's value: clear text, or the client's ciphertext for an E2EE workspace
 * (the server cannot read it). A value that cannot be decrypted is named as such instead of
 * failing the whole export (the secrets API refuses and audits reading it).
 */
function valueOf(db: Database, keyring: () => Keyring, w: { workspace_id: string; e2ee: number }, secretId: string, version: number): string | { e2ee_ciphertext: string } | { unreadable: string } | null {
  const row = db.query<{ ciphertext: Uint8Array; dek_version: number }, [string, number]>("SELECT ciphertext, dek_version FROM secret_versions WHERE secret_id = ? AND version = ?").get(secretId, version);
  if (!row) return null;
  if (row.dek_version === 0) return { e2ee_ciphertext: Buffer.from(row.ciphertext).toString("base64") };
  try {
    return keyring().decrypt(valueKeyOwner(w.workspace_id), versionContext(secretId, version), row.ciphertext).toString("utf8");
  } catch (error) {
    if (error instanceof DecryptionError) return { unreadable: "the stored value does not decrypt (altered or damaged)" };
    if (error instanceof KeyDestroyedError) return { unreadable: "the stored value's data key is gone" };
    throw error;
  }
}

/** A webhook's whole URL (encrypted, as its signing secret is); its origin, so named, when that does not decrypt. */
function wholeUrlOf(keyring: () => Keyring, hook: { id: string; url: string; url_encrypted: Uint8Array | null }): string {
  try {
    return webhookUrl(keyring(), hook);
  } catch (error) {
    if (error instanceof DecryptionError || error instanceof KeyDestroyedError) return `${originOf(hook.url)} (the whole URL does not decrypt)`;
    throw error;
  }
}

/** "https://hooks.example.org/…": where it goes, without what may be a token in the rest. */
function originOf(url: string): string {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return "(hidden)";
  }
}
