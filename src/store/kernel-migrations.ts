/** The kernel's own tables. Plugins keep theirs in plugins/<name>/migrations. */
import type { Migration } from "./migrate.ts";

export const kernelMigrations: readonly Migration[] = [
  {
    id: "0001_instance",
    // One row: this installation's identity, made by the first start.
    up: `CREATE TABLE instance (
      singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
      id         TEXT NOT NULL,
      created_at INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0002_keyring",
    // Root keys are never stored: only their verifiers. KEKs are stored wrapped by each
    // root key that may unseal (two during a rekey); DEKs are stored wrapped by a KEK.
    up: `CREATE TABLE root_keys (
      id         TEXT PRIMARY KEY,
      verifier   BLOB NOT NULL,
      method     TEXT NOT NULL CHECK (method IN ('key_file', 'systemd_credential', 'shamir')),
      shares     INTEGER,
      threshold  INTEGER,
      state      TEXT NOT NULL CHECK (state IN ('active', 'pending')),
      created_at INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX root_keys_one_active ON root_keys (state) WHERE state = 'active';

    CREATE TABLE keks (
      version    INTEGER PRIMARY KEY,
      created_at INTEGER NOT NULL,
      retired_at INTEGER
    ) STRICT;

    CREATE TABLE kek_wraps (
      kek_version INTEGER NOT NULL REFERENCES keks (version),
      root_key_id TEXT NOT NULL REFERENCES root_keys (id) ON DELETE CASCADE,
      wrapped     BLOB NOT NULL,
      PRIMARY KEY (kek_version, root_key_id)
    ) STRICT;

    CREATE TABLE deks (
      owner        TEXT NOT NULL,
      version      INTEGER NOT NULL,
      kek_version  INTEGER NOT NULL REFERENCES keks (version),
      wrapped      BLOB,
      created_at   INTEGER NOT NULL,
      destroyed_at INTEGER,
      PRIMARY KEY (owner, version),
      CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
    ) STRICT;
    CREATE INDEX deks_by_kek ON deks (kek_version) WHERE wrapped IS NOT NULL;`,
  },
  {
    id: "0003_audit",
    // Append-only: triggers refuse UPDATE and DELETE. Each event's hash covers the previous
    // hash and the event's canonical encoding (personal data included only as ciphertext).
    up: `CREATE TABLE audit_events (
      seq           INTEGER PRIMARY KEY,
      id            TEXT NOT NULL UNIQUE,
      time          INTEGER NOT NULL,
      actor_kind    TEXT NOT NULL,
      actor_org     TEXT,
      actor_user    TEXT,
      actor_token   TEXT,
      action        TEXT NOT NULL,
      resource_type TEXT,
      resource_id   TEXT,
      organization  TEXT,
      workspace     TEXT,
      request_id    TEXT,
      outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
      reason        TEXT,
      subject       TEXT,
      personal      BLOB,
      prev_hash     BLOB NOT NULL,
      hash          BLOB NOT NULL
    ) STRICT;
    CREATE INDEX audit_events_by_time ON audit_events (time);
    CREATE INDEX audit_events_by_org ON audit_events (organization, seq);
    CREATE INDEX audit_events_by_action ON audit_events (action, seq);
    CREATE INDEX audit_events_by_actor ON audit_events (actor_user, seq);
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

    CREATE TABLE audit_signing_keys (
      id          TEXT PRIMARY KEY,
      public_key  BLOB NOT NULL,
      private_key BLOB NOT NULL,
      created_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE audit_checkpoints (
      seq       INTEGER PRIMARY KEY,
      hash      BLOB NOT NULL,
      time      INTEGER NOT NULL,
      key_id    TEXT NOT NULL REFERENCES audit_signing_keys (id),
      signature BLOB NOT NULL
    ) STRICT;
    CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
      BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
    CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
      BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;`,
  },
  {
    id: "0004_audit_signing_keys_append_only",
    // A checkpoint is only as good as the key that signed it: signing keys are never changed
    // or removed either (verification also refuses keys the keyring did not make).
    up: `CREATE TRIGGER audit_signing_keys_no_update BEFORE UPDATE ON audit_signing_keys
      BEGIN SELECT RAISE(ABORT, 'audit signing keys are append-only'); END;
    CREATE TRIGGER audit_signing_keys_no_delete BEFORE DELETE ON audit_signing_keys
      BEGIN SELECT RAISE(ABORT, 'audit signing keys are append-only'); END;`,
  },
  {
    id: "0005_audit_forward_cursor",
    // How far the audit log has been forwarded (audit.forward): kept with the events, so that a
    // restart goes on after the last event handed over, and a crash repeats some (never skips).
    up: `CREATE TABLE audit_forward_cursor (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      seq       INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0006_restore_steps",
    // The carry-over steps plugins ran after a restore (src/restore-marker.ts claimRestoreStep):
    // written with each step, so a start that fails before the restore marker goes does not
    // run them again.
    up: `CREATE TABLE restore_steps (
      restore_id TEXT NOT NULL,
      step       TEXT NOT NULL,
      done_at    INTEGER NOT NULL,
      PRIMARY KEY (restore_id, step)
    ) STRICT, WITHOUT ROWID;`,
  },
  {
    id: "0007_audit_query_indexes",
    // The audit API's filters walked the whole log from the newest event back when they matched
    // rarely (3 M events: a second and more, the event loop held — DNS answers too): a resource's
    // history, the failures. Failures are few, so their index is small and costs successes nothing.
    up: `CREATE INDEX audit_events_by_resource_id ON audit_events (resource_id, seq) WHERE resource_id IS NOT NULL;
    CREATE INDEX audit_events_by_resource_type ON audit_events (resource_type, seq) WHERE resource_type IS NOT NULL;
    CREATE INDEX audit_events_failures ON audit_events (seq) WHERE outcome = 'failure';`,
  },
  {
    id: "0008_write_probe",
    // What /readyz writes to learn whether the disk takes writes again (src/store/readiness.ts):
    // a counter, so that each probe changes bytes — a row rewritten as it was writes nothing.
    up: `CREATE TABLE write_probe (
      singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
      probes    INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0009_audit_workspace_index",
    // The audit API's workspace filter walked the whole log from the newest event back when it
    // matched rarely (300 k events: 128 ms, the event loop held). Partial: the many events of no
    // workspace (sign-ins, the system's) skip it.
    up: `CREATE INDEX audit_events_by_workspace ON audit_events (workspace, seq) WHERE workspace IS NOT NULL;`,
  },
];
