/**
 * The dns plugin's tables. A zone belongs to an organization; its name is unique among live
 * zones (one Citadel gives one answer per name). The SOA is kept as the zone's own columns and
 * rendered as a record; every other record is one row, its data in wire form.
 */
import type { Migration } from "../../src/store/migrate.ts";

export const dnsMigrations: readonly Migration[] = [
  {
    id: "0001_dns",
    up: `CREATE TABLE dns_zones (
      id              TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL,
      name            TEXT NOT NULL,             -- canonical presentation, lower-case, absolute ("example.org.")
      ttl             INTEGER NOT NULL,          -- the SOA's TTL, and the default of records without one
      soa_mname       TEXT NOT NULL,
      soa_rname       TEXT NOT NULL,
      soa_refresh     INTEGER NOT NULL,
      soa_retry       INTEGER NOT NULL,
      soa_expire      INTEGER NOT NULL,
      soa_minimum     INTEGER NOT NULL,
      serial          INTEGER NOT NULL,          -- RFC 1982 serial, YYYYMMDDnn while it keeps up with the date
      created_at      INTEGER NOT NULL,
      updated_at      INTEGER NOT NULL,
      deleted_at      INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX dns_zones_live_name ON dns_zones (name) WHERE deleted_at IS NULL;
    CREATE INDEX dns_zones_org ON dns_zones (organization_id, name);

    CREATE TABLE dns_records (
      zone_id TEXT NOT NULL REFERENCES dns_zones (id),
      owner   TEXT NOT NULL,                     -- canonical presentation, lower-case, absolute
      type    INTEGER NOT NULL,
      ttl     INTEGER NOT NULL,
      rdata   BLOB NOT NULL,                     -- wire form, names uncompressed
      PRIMARY KEY (zone_id, owner, type, rdata)
    ) STRICT, WITHOUT ROWID;`,
  },
];
