/** Erasure requests: each is soft-deleted at once and erased for good when due. */
import type { Migration } from "../../src/store/migrate.ts";

export const subjectMigrations: readonly Migration[] = [
  {
    id: "0001_subject_erasures",
    up: `CREATE TABLE subject_erasures (
      id           TEXT PRIMARY KEY,
      kind         TEXT NOT NULL CHECK (kind IN ('user', 'organization')),
      subject_id   TEXT NOT NULL,
      requested_at INTEGER NOT NULL,
      requested_by TEXT,
      due_at       INTEGER NOT NULL,
      erased_at    INTEGER,
      summary      TEXT
    ) STRICT;
    CREATE UNIQUE INDEX subject_erasures_pending ON subject_erasures (kind, subject_id) WHERE erased_at IS NULL;`,
  },
];
