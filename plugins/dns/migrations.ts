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
  {
    id: "0002_dns_transfers",
    // The appliance's secondaries (an operator's NSD/Knot fleet) and the TSIG keys they sign
    // with. A key's secret is a keyring envelope: the server needs it to compute HMACs, so it
    // cannot be a hash, and it is never stored or shown in the clear after creation.
    up: `CREATE TABLE dns_tsig_keys (
      name       TEXT PRIMARY KEY,                -- canonical key name ("transfer.example.")
      algorithm  TEXT NOT NULL,                   -- hmac-sha256 | hmac-sha384 | hmac-sha512
      secret     BLOB NOT NULL,                   -- keyring envelope of the raw secret
      created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE dns_secondaries (
      name        TEXT PRIMARY KEY,               -- the operator's label
      address     TEXT NOT NULL,                  -- the secondary's IP: transfers come from it, NOTIFY goes to it
      notify_port INTEGER NOT NULL,
      tsig_key    TEXT NOT NULL REFERENCES dns_tsig_keys (name),
      zones       TEXT,                           -- JSON array of zone names; NULL: every zone
      created_at  INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0003_dns_soa_ttl",
    // The SOA's own TTL, apart from the zone's default TTL for records given without one: an
    // imported SOA's TTL (which bounds negative caching, RFC 2308) was lost. NULL: the default.
    // From here on dns_zones.ttl is that default only (0001's comment predates this; an applied
    // migration's text is checksummed and never edited).
    up: `ALTER TABLE dns_zones ADD COLUMN soa_ttl INTEGER;`,
  },
  {
    id: "0004_dns_provider_serials",
    // What each record provider last had served, and the serial of its own zone (one no hosted
    // zone contains, as mesh.internal.): a start or a change that changes no name moves no
    // serial, and a start no longer takes an own zone's serial back to the clock.
    up: `CREATE TABLE dns_provider_serials (
      provider    TEXT PRIMARY KEY,               -- the provider's name ("mesh")
      fingerprint TEXT NOT NULL,                  -- SHA-256 of its domain and records as last served
      serial      INTEGER NOT NULL                -- its own zone's serial
    ) STRICT;`,
  },
  {
    id: "0005_dns_dnssec",
    // A signed zone's key: one combined signing key (flags 257, algorithm 13) per zone; a row is
    // what makes the zone signed. The private key is a keyring envelope of its PKCS#8 form, never
    // stored in the clear; the DNSKEY data is public (the DS for the parent is made from it).
    // The RRSIGs of the zone's last signing, public too, are kept with the serial they sign: a
    // sealed Citadel, which cannot reach the key, serves them again at that serial.
    up: `CREATE TABLE dns_zone_keys (
      zone_id       TEXT PRIMARY KEY REFERENCES dns_zones (id),
      algorithm     INTEGER NOT NULL,             -- 13: ECDSAP256SHA256
      dnskey        BLOB NOT NULL,                -- the DNSKEY record data
      private_key   BLOB NOT NULL,                -- keyring envelope of the PKCS#8 private key
      created_at    INTEGER NOT NULL,
      signed_serial INTEGER,                      -- the serial the stored RRSIGs sign (NULL: none yet)
      rrsigs        BLOB                          -- those RRSIGs (dnssec.ts encodeRrsigs)
    ) STRICT;`,
  },
  {
    id: "0006_dns_dnssec_rollover",
    // A key rollover's new key (docs/dns.md, "Key rollover"): at most one per zone, beside the
    // zone's key in dns_zone_keys, which stays the zone's key until the rollover finishes (this
    // key then takes its place there) or is cancelled (this row goes). Meanwhile both DNSKEYs are
    // published and every RRset is signed by both; the RRSIGs dns_zone_keys stores are both
    // keys'. The private key is a keyring envelope, bound to this table's row. The TTLs are the
    // zone's at the start, the propagation delay the configuration's then: the rollover may
    // finish once no cache can hold what the old key alone signed (the DNSKEY RRset and the
    // zone's data from before the start), and a configuration changed meanwhile moves nothing.
    up: `CREATE TABLE dns_zone_incoming_keys (
      zone_id          TEXT PRIMARY KEY REFERENCES dns_zones (id),
      algorithm        INTEGER NOT NULL,          -- 13: ECDSAP256SHA256
      dnskey           BLOB NOT NULL,             -- the DNSKEY record data
      private_key      BLOB NOT NULL,             -- keyring envelope of the PKCS#8 private key
      created_at       INTEGER NOT NULL,          -- when the rollover started: published and signing from then on
      published_serial INTEGER NOT NULL,          -- the serial that first published it
      dnskey_ttl       INTEGER NOT NULL,          -- the DNSKEY RRset's TTL (the SOA's) at the start, seconds
      max_ttl          INTEGER NOT NULL,          -- the largest TTL in the zone at the start, seconds
      propagation_delay INTEGER NOT NULL          -- [dns] dnssec_propagation_delay at the start, seconds
    ) STRICT;`,
  },
  {
    id: "0007_dns_catalog",
    // The catalog zone's serial per view (RFC 9432: each secondary is served the catalog of its
    // own zones, chosen by its address and TSIG key) and the members it was last served for: the
    // serial moves when the members do and only then, a restart included. Not derived from the
    // zones' rows: an erasure removes rows, two changes may fall in one second, and a restore
    // takes rows back, and a catalog's serial must never go back.
    up: `CREATE TABLE dns_catalog_serials (
      view        TEXT PRIMARY KEY,               -- the secondaries' address and TSIG key ("192.0.2.53 transfer.example.org.")
      fingerprint TEXT NOT NULL,                  -- SHA-256 of the catalog's name and members as last served to them
      serial      INTEGER NOT NULL                -- that view's serial
    ) STRICT;`,
  },
  {
    id: "0008_dns_nsec3",
    // How a signed zone proves names and types absent (docs/dns.md, "NSEC3"): its NSEC chain, as
    // every zone signed before this, or NSEC3 (RFC 5155) with RFC 9276's parameters — SHA-1, no
    // additional iterations, no opt-out (none of them stored: Citadel offers no other) — and a
    // salt, empty unless the operator set one. Kept with the key: it goes when signing ends.
    up: `ALTER TABLE dns_zone_keys ADD COLUMN denial TEXT NOT NULL DEFAULT 'nsec' CHECK (denial IN ('nsec', 'nsec3'));
    ALTER TABLE dns_zone_keys ADD COLUMN nsec3_salt BLOB NOT NULL DEFAULT x'' CHECK (length(nsec3_salt) <= 255);`,
  },
  {
    id: "0009_dns_dnssec_cds",
    // CDS/CDNSKEY (RFC 7344, RFC 8078) and the automatic key rollover (docs/dns.md, "CDS and
    // CDNSKEY", "Automatic rollover"). Per signed zone: what Citadel publishes at the apex for the
    // parent to scan — nothing (every zone signed before this: publishing would change what a
    // served serial holds), the new key while a rollover waits for the parent, the zone's key
    // always, or RFC 8078's delete records — and the key's lifetime in days (0: rolled by hand).
    // Per rollover: when the new key became ready for the parent (CDS for it published from
    // then, the serial moved), when the operator confirmed that the parent publishes its DS
    // (Citadel asks no parent) and the wait configured then, and whether the schedule started it. The
    // key's activation (when it began to sign alone: its signing, or its rollover's finish), from
    // which its lifetime counts, as Knot's; a key signing before this counts from its creation.
    up: `ALTER TABLE dns_zone_keys ADD COLUMN cds TEXT NOT NULL DEFAULT 'none' CHECK (cds IN ('none', 'rollover', 'always', 'delete'));
    ALTER TABLE dns_zone_keys ADD COLUMN csk_lifetime INTEGER NOT NULL DEFAULT 0 CHECK (csk_lifetime >= 0);
    ALTER TABLE dns_zone_keys ADD COLUMN cds_since INTEGER;
    ALTER TABLE dns_zone_keys ADD COLUMN activated_at INTEGER;
    UPDATE dns_zone_keys SET activated_at = created_at;
    ALTER TABLE dns_zone_incoming_keys ADD COLUMN ready_at INTEGER;
    ALTER TABLE dns_zone_incoming_keys ADD COLUMN submitted_at INTEGER;
    ALTER TABLE dns_zone_incoming_keys ADD COLUMN parent_delay INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dns_zone_incoming_keys ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0 CHECK (automatic IN (0, 1));`,
  },
  {
    id: "0010_dns_view_serials",
    // The serial each view of a provider's own zone with split-horizon names is told (view-serials.ts: a mesh
    // network's clients, told that network's names), with the fingerprint of what the view was
    // told when it last moved: it moves when that does and only then, a restart included, so a
    // client never learns the pace of changes it is not told of, and never sees the serial go back;
    // and the floor a new view starts from (not the zone's serial, which counts every view's changes).
    up: `CREATE TABLE dns_view_serials (
      zone        TEXT NOT NULL,                  -- the zone's name, canonical ("mesh.internal.")
      view        TEXT NOT NULL,                  -- the provider's key of the view (the mesh's: its network ids)
      fingerprint TEXT NOT NULL,                  -- SHA-256 of what the view was told (the apex's records, the SOA's serial left out, and its domains' records)
      serial      INTEGER NOT NULL,               -- the view's serial
      PRIMARY KEY (zone, view)
    ) STRICT;
    CREATE TABLE dns_view_floors (
      zone   TEXT PRIMARY KEY,                    -- the zone's name, canonical
      serial INTEGER NOT NULL                     -- the zone's serial when it first had views: new views start from it, no tenant's change moves it
    ) STRICT;`,
  },
  {
    id: "0011_dns_zone_rrsigs",
    // A signed zone's stored RRSIGs (what a sealed start serves) one row per RRset they sign,
    // rather than all of them in dns_zone_keys.rrsigs, one blob written again whole at every
    // change: a change to a signed zone writes the rows of the RRsets it signed and removes
    // those of the RRsets it removed. dns_zone_keys.signed_serial still says which serial they
    // sign. A blob stored before stays, and is read, until the zone's next signing writes rows
    // (and sets it to NULL). (0009 and 0010 went to CDS/CDNSKEY and view serials, made at the same time.)
    up: `CREATE TABLE dns_zone_rrsigs (
      zone_id TEXT NOT NULL REFERENCES dns_zones (id),
      rrset   TEXT NOT NULL,                     -- "owner type": the owner in canonical presentation, lower-case, absolute; the type covered as a number
      rrsigs  BLOB NOT NULL,                     -- the RRset's RRSIGs, as dnssec.ts encodeRrsigs writes them
      PRIMARY KEY (zone_id, rrset)
    ) STRICT, WITHOUT ROWID;`,
  },
];
