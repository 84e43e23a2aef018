/**
 * The intel plugin's tables: manual allow/deny entries, decisions (kept after they end, for the
 * record), reputation lists (their text, so a restart needs no download), and the policy set
 * through the API (country and ASN rules, weights) over the config's defaults.
 */
import type { Migration } from "../../src/store/migrate.ts";

export const intelMigrations: readonly Migration[] = [
  {
    id: "0001_intel",
    up: `CREATE TABLE intel_manual (
      id         TEXT PRIMARY KEY,
      kind       TEXT NOT NULL CHECK (kind IN ('allow', 'deny')),
      target     TEXT NOT NULL,                 -- an address or CIDR, canonical
      action     TEXT NOT NULL,                 -- for deny: throttle | refuse | drop
      reason     TEXT,
      until      INTEGER,                       -- NULL: until removed
      created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE intel_decisions (
      id       TEXT PRIMARY KEY,
      target   TEXT NOT NULL,
      action   TEXT NOT NULL,
      score    INTEGER NOT NULL,
      reasons  TEXT NOT NULL,                   -- JSON array of {text, points}
      since    INTEGER NOT NULL,
      until    INTEGER NOT NULL,
      shadow   INTEGER NOT NULL,
      ended_at INTEGER                          -- set when it expired or was lifted
    ) STRICT;
    CREATE INDEX intel_decisions_live ON intel_decisions (until) WHERE ended_at IS NULL;

    CREATE TABLE intel_lists (
      name            TEXT PRIMARY KEY,
      weight          INTEGER NOT NULL,
      format          TEXT NOT NULL,
      url             TEXT,                     -- refreshed from here only when set
      refresh_minutes INTEGER,
      content         TEXT NOT NULL,
      entries         INTEGER NOT NULL,
      errors          INTEGER NOT NULL,
      updated_at      INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE intel_policy (
      singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
      policy     TEXT NOT NULL,                 -- JSON: countries, asns, anonymous, behaviour
      updated_at INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0002_intel_decision_scope",
    // "dns": made from DNS evidence (unverified UDP sources), enforced by the DNS server only.
    up: `ALTER TABLE intel_decisions ADD COLUMN scope TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'dns'));`,
  },
  {
    id: "0003_intel_list_format_given",
    // The format the operator gave (NULL: auto), which a refresh parses with; \`format\` is the one found.
    up: `ALTER TABLE intel_lists ADD COLUMN format_given TEXT CHECK (format_given IN ('plain', 'firehol', 'spamhaus'));`,
  },
  {
    id: "0004_intel_list_url_encrypted",
    // The whole URL, encrypted (it may carry the publisher's credentials); `url` keeps what may be
    // shown of it. The rows stored before are encrypted at start, once unsealed (encryptStoredListUrls).
    up: `ALTER TABLE intel_lists ADD COLUMN url_encrypted BLOB;`,
  },
];
