/**
 * The secrets plugin's tables. Workspaces themselves belong to iam; these tables hold what the
 * secrets service keeps per workspace. Values are stored only as keyring envelopes (or, in an
 * end-to-end-encrypted workspace, as the client's ciphertext): never in plaintext.
 */
import type { Migration } from "../../src/store/migrate.ts";

export const secretsMigrations: readonly Migration[] = [
  {
    id: "0001_secrets",
    up: `CREATE TABLE secrets_workspaces (
      workspace_id TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL,
      e2ee         INTEGER NOT NULL DEFAULT 0,
      created_at   INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE secrets_environments (
      id           TEXT PRIMARY KEY,
      workspace_id TEXT NOT NULL REFERENCES secrets_workspaces (workspace_id),
      name         TEXT NOT NULL,
      -- who may use it: 'members' (the workspace's roles), 'admins' (admin and owner),
      -- 'named' (only the users in allowed_users)
      protection   TEXT NOT NULL DEFAULT 'members' CHECK (protection IN ('members', 'admins', 'named')),
      allowed_users TEXT NOT NULL DEFAULT '[]',
      created_at   INTEGER NOT NULL,
      UNIQUE (workspace_id, name)
    ) STRICT;

    CREATE TABLE secrets (
      id             TEXT PRIMARY KEY,
      environment_id TEXT NOT NULL REFERENCES secrets_environments (id),
      name           TEXT NOT NULL,
      version        INTEGER NOT NULL,          -- the current version
      note           TEXT,
      rotation_days  INTEGER,                   -- remind to rotate this often
      expires_at     INTEGER,
      rotated_at     INTEGER NOT NULL,          -- when the value last changed
      created_at     INTEGER NOT NULL,
      created_by     TEXT NOT NULL,
      updated_at     INTEGER NOT NULL,
      updated_by     TEXT NOT NULL,
      deleted_at     INTEGER,
      deleted_by     TEXT,
      UNIQUE (environment_id, name)
    ) STRICT;

    CREATE TABLE secret_versions (
      secret_id   TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
      version     INTEGER NOT NULL,
      ciphertext  BLOB NOT NULL,
      dek_version INTEGER NOT NULL,             -- 0: a client's ciphertext (E2EE), not the keyring's
      origin      TEXT NOT NULL CHECK (origin IN ('set', 'import', 'rollback', 'rotate')),
      created_at  INTEGER NOT NULL,
      created_by  TEXT NOT NULL,
      PRIMARY KEY (secret_id, version)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX secret_versions_dek ON secret_versions (dek_version);

    CREATE TABLE secrets_shares (
      id              TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL,
      created_by      TEXT NOT NULL,
      ciphertext      BLOB NOT NULL,            -- the client's ciphertext, wrapped again by the keyring
      view_proof_hash BLOB NOT NULL,            -- SHA-256 of the proof a viewer derives from the link
      passphrase      INTEGER NOT NULL,
      max_views       INTEGER NOT NULL,
      views           INTEGER NOT NULL DEFAULT 0,
      source          TEXT,                     -- workspace/environment/name, when it carries a secret
      expires_at      INTEGER NOT NULL,
      created_at      INTEGER NOT NULL,
      revoked_at      INTEGER
    ) STRICT;
    CREATE INDEX secrets_shares_org ON secrets_shares (organization_id, created_at);

    CREATE TABLE secrets_user_keys (
      user_id            TEXT PRIMARY KEY,
      public_key         TEXT NOT NULL,
      sealed_private_key TEXT NOT NULL,         -- sealed by the user's passphrase, on the client
      created_at         INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE secrets_workspace_keys (
      workspace_id TEXT NOT NULL REFERENCES secrets_workspaces (workspace_id),
      user_id      TEXT NOT NULL,
      wrapped      TEXT NOT NULL,               -- the workspace key, wrapped to the user's public key
      wrapped_by   TEXT NOT NULL,
      created_at   INTEGER NOT NULL,
      PRIMARY KEY (workspace_id, user_id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE secrets_webhooks (
      id           TEXT PRIMARY KEY,
      workspace_id TEXT NOT NULL REFERENCES secrets_workspaces (workspace_id),
      url          TEXT NOT NULL,
      secret       BLOB NOT NULL,               -- the signing secret, a keyring envelope
      created_at   INTEGER NOT NULL,
      created_by   TEXT NOT NULL,
      deleted_at   INTEGER
    ) STRICT;

    CREATE TABLE secrets_webhook_deliveries (
      id              INTEGER PRIMARY KEY,
      webhook_id      TEXT NOT NULL REFERENCES secrets_webhooks (id),
      event           TEXT NOT NULL,            -- the JSON body: names, versions, actor; never a value
      state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
      attempts        INTEGER NOT NULL DEFAULT 0,
      next_attempt_at INTEGER NOT NULL,
      last_status     INTEGER,
      last_error      TEXT,
      created_at      INTEGER NOT NULL,
      delivered_at    INTEGER
    ) STRICT;
    CREATE INDEX secrets_webhook_deliveries_due ON secrets_webhook_deliveries (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX secrets_webhook_deliveries_hook ON secrets_webhook_deliveries (webhook_id, id);`,
  },
  {
    id: "0002_e2ee_key_versions",
    // An end-to-end-encrypted workspace's key can be replaced (after a member leaves): each
    // wrapped key and each stored value names the key version it belongs to.
    up: `ALTER TABLE secrets_workspaces ADD COLUMN e2ee_key_version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE secret_versions ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0; -- E2EE: the workspace key's version; 0 otherwise
    UPDATE secret_versions SET key_version = 1 WHERE dek_version = 0;
    CREATE TABLE secrets_workspace_keys_v2 (
      workspace_id TEXT NOT NULL REFERENCES secrets_workspaces (workspace_id),
      key_version  INTEGER NOT NULL,
      user_id      TEXT NOT NULL,
      wrapped      TEXT NOT NULL,
      wrapped_by   TEXT NOT NULL,
      created_at   INTEGER NOT NULL,
      PRIMARY KEY (workspace_id, key_version, user_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO secrets_workspace_keys_v2 SELECT workspace_id, 1, user_id, wrapped, wrapped_by, created_at FROM secrets_workspace_keys;
    DROP TABLE secrets_workspace_keys;
    ALTER TABLE secrets_workspace_keys_v2 RENAME TO secrets_workspace_keys;`,
  },
  {
    id: "0003_e2ee_enabled_by",
    // The first workspace key is set by whoever turned encryption on, and nobody else: an admin
    // must not plant a key of their own between someone enabling it and setting the key.
    up: `ALTER TABLE secrets_workspaces ADD COLUMN e2ee_enabled_by TEXT;`,
  },
  {
    id: "0004_webhook_delivery_heads",
    // Each webhook's next pending delivery, found with one index probe: the sender asks every
    // second, and numbering every due row to keep the first took 0.3 s with 200,000 waiting.
    up: `CREATE INDEX secrets_webhook_deliveries_head ON secrets_webhook_deliveries (webhook_id, next_attempt_at, id) WHERE state = 'pending';`,
  },
  {
    id: "0005_drop_webhook_due_index",
    // The index by due time served only the query 0004 replaced: every delivery written kept it for nothing.
    up: `DROP INDEX secrets_webhook_deliveries_due;`,
  },
  {
    id: "0006_share_passphrase_proofs",
    // A link's passphrase gates its view too: the server checks a proof of it before it spends a
    // view, and burns the link after a few wrong ones. Links made before have none (NULL) and
    // open as they did.
    up: `ALTER TABLE secrets_shares ADD COLUMN passphrase_proof_hash BLOB; -- SHA-256 of the proof a viewer derives from the link and the passphrase
    ALTER TABLE secrets_shares ADD COLUMN passphrase_kdf TEXT;            -- the passphrase's argon2id salt and parameters (JSON), for the viewer
    ALTER TABLE secrets_shares ADD COLUMN wrong_passphrases INTEGER NOT NULL DEFAULT 0;`,
  },
  {
    id: "0007_webhook_deliveries_pruned",
    // A deleted webhook keeps no URL (it can hold a token) and no deliveries; a webhook's log keeps
    // its newest 100 (what the API shows) and its pending ones. The sender keeps it so from now on.
    up: `DELETE FROM secrets_webhook_deliveries WHERE webhook_id IN (SELECT id FROM secrets_webhooks WHERE deleted_at IS NOT NULL);
    UPDATE secrets_webhooks SET url = '' WHERE deleted_at IS NOT NULL;
    DELETE FROM secrets_webhook_deliveries AS d WHERE state != 'pending'
      AND id < (SELECT id FROM secrets_webhook_deliveries WHERE webhook_id = d.webhook_id ORDER BY id DESC LIMIT 1 OFFSET 99);`,
  },
  {
    id: "0008_webhook_delivery_order",
    // Each webhook's deliveries go out in the order of the changes: its head is its oldest pending
    // delivery by id, whenever it is due (a retry holds back the newer), one index probe still.
    up: `DROP INDEX secrets_webhook_deliveries_head;
    CREATE INDEX secrets_webhook_deliveries_pending ON secrets_webhook_deliveries (webhook_id, id) WHERE state = 'pending';`,
  },
  {
    id: "0009_version_value_set_at",
    // When the value a version holds was set, which its rotation reminder counts from: a
    // rollback's copy and an end-to-end workspace's re-encryption keep their value's age. Before,
    // the age was guessed from the versions around a copy (a copy of a copy read as younger than
    // its value) and a re-encryption reset it. Versions written before are given that guess,
    // but a secret's current copy the time its secret row kept (the rollback set it from the
    // version it copied, which the guess would make younger).
    up: `ALTER TABLE secret_versions ADD COLUMN value_set_at INTEGER;
    UPDATE secret_versions SET value_set_at = created_at WHERE origin <> 'rollback';
    UPDATE secret_versions AS v SET value_set_at = coalesce((SELECT p.created_at FROM secret_versions p
      WHERE p.secret_id = v.secret_id AND p.version < v.version AND p.origin <> 'rollback' ORDER BY p.version DESC LIMIT 1), v.created_at)
    WHERE origin = 'rollback';
    UPDATE secret_versions AS v SET value_set_at = (SELECT s.rotated_at FROM secrets s WHERE s.id = v.secret_id)
    WHERE origin = 'rollback' AND version = (SELECT s.version FROM secrets s WHERE s.id = v.secret_id);`,
  },
  {
    id: "0010_webhook_url_encrypted",
    // The whole URL, encrypted under the webhook's key (its path or query can carry a token); `url`
    // keeps its origin. The rows stored before are encrypted at start, once unsealed
    // (Webhooks.encryptStoredUrls): a migration runs before the keys are there.
    up: `ALTER TABLE secrets_webhooks ADD COLUMN url_encrypted BLOB;`,
  },
];
