/** The iam plugin's tables. Credentials (sessions, tokens, keys) keep their prefix and SHA-256 only. */
import type { Migration } from "../../src/store/migrate.ts";

export const iamMigrations: readonly Migration[] = [
  {
    id: "0001_identity",
    up: `CREATE TABLE organizations (
      id           TEXT PRIMARY KEY,
      name         TEXT NOT NULL,
      require_mfa  INTEGER NOT NULL DEFAULT 0,
      ip_allowlist TEXT NOT NULL DEFAULT '[]',
      created_at   INTEGER NOT NULL,
      deleted_at   INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX organizations_name ON organizations (name) WHERE deleted_at IS NULL;

    CREATE TABLE users (
      id              TEXT PRIMARY KEY,
      email           TEXT NOT NULL COLLATE NOCASE,
      name            TEXT,
      password_hash   TEXT NOT NULL,
      operator        INTEGER NOT NULL DEFAULT 0,
      must_change_password INTEGER NOT NULL DEFAULT 0,
      totp_secret     BLOB,
      totp_pending    BLOB,
      totp_enabled_at INTEGER,
      totp_last_step  INTEGER,
      failed_logins   INTEGER NOT NULL DEFAULT 0,
      locked_until    INTEGER,
      created_at      INTEGER NOT NULL,
      deleted_at      INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX users_email ON users (email) WHERE deleted_at IS NULL;

    CREATE TABLE memberships (
      organization_id TEXT NOT NULL REFERENCES organizations (id),
      user_id         TEXT NOT NULL REFERENCES users (id),
      role            TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'owner')),
      created_at      INTEGER NOT NULL,
      PRIMARY KEY (organization_id, user_id)
    ) STRICT;
    CREATE INDEX memberships_by_user ON memberships (user_id);

    CREATE TABLE workspaces (
      id              TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL REFERENCES organizations (id),
      name            TEXT NOT NULL,
      ip_allowlist    TEXT NOT NULL DEFAULT '[]',
      created_at      INTEGER NOT NULL,
      deleted_at      INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX workspaces_name ON workspaces (organization_id, name) WHERE deleted_at IS NULL;

    CREATE TABLE workspace_members (
      workspace_id TEXT NOT NULL REFERENCES workspaces (id),
      user_id      TEXT NOT NULL REFERENCES users (id),
      role         TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'owner')),
      PRIMARY KEY (workspace_id, user_id)
    ) STRICT;

    CREATE TABLE credentials (
      id              TEXT PRIMARY KEY,
      kind            TEXT NOT NULL CHECK (kind IN ('session', 'pat', 'device', 'service', 'workload', 'console')),
      hash            BLOB NOT NULL,
      name            TEXT,
      user_id         TEXT REFERENCES users (id),
      organization_id TEXT REFERENCES organizations (id),
      service         TEXT,
      scopes          TEXT,
      workspace_id    TEXT REFERENCES workspaces (id),
      ip_allowlist    TEXT NOT NULL DEFAULT '[]',
      parent_id       TEXT,
      created_at      INTEGER NOT NULL,
      expires_at      INTEGER,
      idle_timeout_ms INTEGER,
      last_used_at    INTEGER,
      last_used_from  TEXT,
      revoked_at      INTEGER
    ) STRICT;
    CREATE INDEX credentials_by_user ON credentials (user_id, kind);
    CREATE INDEX credentials_by_org ON credentials (organization_id, kind);

    CREATE TABLE recovery_codes (
      user_id TEXT NOT NULL REFERENCES users (id),
      hash    BLOB NOT NULL,
      used_at INTEGER,
      PRIMARY KEY (user_id, hash)
    ) STRICT;

    CREATE TABLE service_activations (
      organization_id TEXT NOT NULL REFERENCES organizations (id),
      service         TEXT NOT NULL,
      activated_at    INTEGER NOT NULL,
      PRIMARY KEY (organization_id, service)
    ) STRICT;

    CREATE TABLE device_grants (
      id               TEXT PRIMARY KEY,
      device_code_hash BLOB NOT NULL UNIQUE,
      user_code        TEXT NOT NULL,
      client_name      TEXT NOT NULL,
      client_address   TEXT NOT NULL,
      scopes           TEXT NOT NULL,
      created_at       INTEGER NOT NULL,
      expires_at       INTEGER NOT NULL,
      interval_s       INTEGER NOT NULL,
      last_poll_at     INTEGER,
      status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
      user_id          TEXT REFERENCES users (id),
      decided_at       INTEGER
    ) STRICT;
    CREATE INDEX device_grants_user_code ON device_grants (user_code, status);`,
  },
  {
    // A counter that every change to credentials or users moves, kept by the database itself
    // so that no writer (present or future, in this process or another) can forget it: the
    // identity provider caches what it read about a credential for as long as it is unchanged.
    id: "0002_authentication_generation",
    up: `CREATE TABLE authentication_generation (
      id         INTEGER PRIMARY KEY CHECK (id = 1),
      generation INTEGER NOT NULL
    ) STRICT;
    INSERT INTO authentication_generation (id, generation) VALUES (1, 0);
    CREATE TRIGGER credentials_inserted AFTER INSERT ON credentials BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER credentials_updated AFTER UPDATE ON credentials BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER credentials_deleted AFTER DELETE ON credentials BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER users_inserted AFTER INSERT ON users BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER users_updated AFTER UPDATE ON users BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER users_deleted AFTER DELETE ON users BEGIN UPDATE authentication_generation SET generation = generation + 1; END;`,
  },
  {
    // Only the columns authentication reads move the generation (and so empty the cache of
    // credential rows): not the last use recorded every few seconds, nor a failed login's
    // counters, which anyone who knows an email address could otherwise bump at will.
    // A column added to credentialForAuthentication (store.ts) must be added here.
    id: "0003_authentication_generation_columns",
    up: `DROP TRIGGER credentials_updated;
    DROP TRIGGER users_updated;
    CREATE TRIGGER credentials_updated
      AFTER UPDATE OF id, kind, hash, user_id, organization_id, service, scopes, workspace_id, ip_allowlist, created_at, expires_at, idle_timeout_ms, revoked_at ON credentials
      BEGIN UPDATE authentication_generation SET generation = generation + 1; END;
    CREATE TRIGGER users_updated
      AFTER UPDATE OF id, operator, must_change_password, totp_enabled_at, deleted_at ON users
      BEGIN UPDATE authentication_generation SET generation = generation + 1; END;`,
  },
  {
    // A token restricted to a workspace is its organization's too (its MFA rule and allowlist
    // apply on every route): tokens made before this was recorded get it now.
    id: "0004_workspace_tokens_organization",
    up: `UPDATE credentials SET organization_id = (SELECT w.organization_id FROM workspaces w WHERE w.id = credentials.workspace_id)
         WHERE organization_id IS NULL AND workspace_id IS NOT NULL;`,
  },
  {
    // Moves when the password is set, not when its hash is redone with stronger parameters: a
    // login or a password change checked (outside the transaction, argon2 is slow) against a
    // password that changed meanwhile is refused, and a rehash is not such a change.
    id: "0005_password_version",
    up: `ALTER TABLE users ADD COLUMN password_version INTEGER NOT NULL DEFAULT 0;`,
  },
  {
    // A service key acts within its maker's role (credentials.user_id), from this version on.
    // Keys made before name their maker in the audit event of their creation (or, made by a
    // token, in that token's row): filled in from there, so that they are bound like new ones.
    // A key whose maker cannot be found keeps the old, organization-wide behaviour.
    id: "0006_service_key_makers",
    up: `UPDATE credentials SET user_id = COALESCE(
           (SELECT e.actor_user FROM audit_events e
             WHERE e.action = 'iam.api_key.create' AND e.resource_type = 'api_key' AND e.resource_id = credentials.id AND e.outcome = 'success' AND e.actor_user IS NOT NULL
             ORDER BY e.seq LIMIT 1),
           (SELECT p.user_id FROM credentials p WHERE p.id = credentials.parent_id))
         WHERE kind = 'service' AND user_id IS NULL
           AND EXISTS (SELECT 1 FROM users u WHERE u.id = COALESCE(
             (SELECT e.actor_user FROM audit_events e WHERE e.action = 'iam.api_key.create' AND e.resource_type = 'api_key' AND e.resource_id = credentials.id AND e.outcome = 'success' AND e.actor_user IS NOT NULL ORDER BY e.seq LIMIT 1),
             (SELECT p.user_id FROM credentials p WHERE p.id = credentials.parent_id)));`,
  },
  {
    // Invitations: an organization's admin invites an email address, and its user joins by
    // accepting. A row lives only while the invitation is pending (accepted, declined, revoked
    // and expired ones are deleted; the audit log keeps their history), so the email address
    // of someone who never joined is not kept longer than the invitation.
    id: "0007_invitations",
    up: `CREATE TABLE invitations (
      id              TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL REFERENCES organizations (id),
      email           TEXT NOT NULL COLLATE NOCASE,
      role            TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'owner')),
      invited_by      TEXT NOT NULL REFERENCES users (id),
      created_at      INTEGER NOT NULL,
      expires_at      INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX invitations_per_address ON invitations (organization_id, email);
    CREATE INDEX invitations_by_email ON invitations (email);`,
  },
  {
    // Revoking a credential walks down to what it made (parent_id): without an index, SQLite
    // built a throwaway one over the whole table for each revocation, logout or password change
    // (found in review: 0.8 s at 500,000 rows, the event loop blocked meanwhile). Listing a user's
    // live credentials reads only the unrevoked ones, newest first. Expiry finds what the
    // hourly purger may delete (iam.credential_retention_days).
    id: "0008_credential_indexes",
    up: `CREATE INDEX credentials_by_parent ON credentials (parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX credentials_live_by_user ON credentials (user_id, kind, created_at) WHERE revoked_at IS NULL;
    CREATE INDEX credentials_by_expiry ON credentials (expires_at);`,
  },
  {
    // Email addresses are compared by a key (store.ts emailKey: NFC, then lower case in every
    // script), not by COLLATE NOCASE, which folds A-Z alone: "éve@", "e\u0301ve@" and "ÉVE@" were
    // three accounts (found in review). The key is written with each row; rows made before get
    // theirs from the next migration (SQLite cannot normalize). Not unique: accounts made before
    // may share one, and must still log in (store.ts userByEmail); new ones are refused in the
    // write that makes them. A writer that changes an address and not its key (erasure, which
    // writes an ASCII placeholder) gets lower() of it from the trigger, so no old key, which is
    // personal data, stays behind.
    id: "0009_email_keys",
    up: `ALTER TABLE users ADD COLUMN email_key TEXT;
    ALTER TABLE invitations ADD COLUMN email_key TEXT;
    CREATE INDEX users_by_email_key ON users (email_key);
    CREATE INDEX invitations_by_email_key ON invitations (email_key);
    CREATE TRIGGER users_email_key_follows_email AFTER UPDATE OF email ON users
      WHEN NEW.email IS NOT OLD.email AND NEW.email_key IS OLD.email_key
      BEGIN UPDATE users SET email_key = lower(NEW.email) WHERE id = NEW.id; END;`,
  },
  {
    // The keys of the addresses 0009 found, computed as emailKey did when this was written (a
    // migration means what it meant then). The addresses themselves stay as they were typed.
    id: "0010_email_keys_backfill",
    up: (db) => {
      const key = (email: string) => email.trim().normalize("NFC").toLowerCase();
      for (const table of ["users", "invitations"]) {
        const rows = db.query<{ id: string; email: string }, []>(`SELECT id, email FROM ${table} WHERE email_key IS NULL`).all();
        const setKey = db.query(`UPDATE ${table} SET email_key = ? WHERE id = ?`);
        for (const row of rows) setKey.run(key(row.email), row.id);
      }
    },
  },
  {
    // The API keys list is read a page at a time, newest first: an organization's live keys in
    // that order, as credentials_live_by_user holds a user's. Through credentials_by_org, each
    // page read every key the organization ever had, revoked ones too, and sorted them.
    id: "0011_live_api_keys_index",
    up: `CREATE INDEX credentials_live_by_org ON credentials (organization_id, kind, created_at) WHERE revoked_at IS NULL;`,
  },
];
