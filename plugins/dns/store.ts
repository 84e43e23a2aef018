/** All SQL of the dns plugin. Functions take the database (or the open transaction) first. */
import type { Database } from "bun:sqlite";
import type { ViewFloorRow, ViewSerialRow } from "./view-serials.ts";

export interface ZoneRow {
  id: string;
  organization_id: string;
  name: string;
  ttl: number;
  /** The SOA record's TTL; null: `ttl`. */
  soa_ttl: number | null;
  soa_mname: string;
  soa_rname: string;
  soa_refresh: number;
  soa_retry: number;
  soa_expire: number;
  soa_minimum: number;
  serial: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export interface RecordRow {
  zone_id: string;
  owner: string;
  type: number;
  ttl: number;
  rdata: Uint8Array;
}

export type Soa = Pick<ZoneRow, "soa_ttl" | "soa_mname" | "soa_rname" | "soa_refresh" | "soa_retry" | "soa_expire" | "soa_minimum">;

export const liveZoneById = (db: Database, id: string) => db.query<ZoneRow, [string]>("SELECT * FROM dns_zones WHERE id = ? AND deleted_at IS NULL").get(id);

export const liveZoneByName = (db: Database, name: string) => db.query<ZoneRow, [string]>("SELECT * FROM dns_zones WHERE name = ? AND deleted_at IS NULL").get(name);

export const liveZonesOf = (db: Database, organizationId: string) =>
  db.query<ZoneRow, [string]>("SELECT * FROM dns_zones WHERE organization_id = ? AND deleted_at IS NULL ORDER BY name").all(organizationId);

/** How many live zones the organization holds (the [dns] max_zones_per_organization quota). */
export const liveZoneCount = (db: Database, organizationId: string) =>
  db.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM dns_zones WHERE organization_id = ? AND deleted_at IS NULL").get(organizationId)!.n;

export const allLiveZones = (db: Database) => db.query<ZoneRow, []>("SELECT * FROM dns_zones WHERE deleted_at IS NULL ORDER BY name").all();

/**
 * Each live zone's name, id and serial, without its records: what tells the listener which
 * zones to build again (every change to a zone moves its serial).
 */
export const liveZoneVersions = (db: Database) => db.query<{ id: string; name: string; serial: number }, []>("SELECT id, name, serial FROM dns_zones WHERE deleted_at IS NULL").all();

/**
 * Serials of the deleted zones of that name, in the order they were deleted. Names are unique
 * among live zones across the appliance, and the secondaries serve every organization's zones,
 * so a zone made again continues from these, whoever made the earlier ones.
 */
export const deletedSerials = (db: Database, name: string) =>
  db
    .query<{ serial: number }, [string]>("SELECT serial FROM dns_zones WHERE name = ? AND deleted_at IS NOT NULL ORDER BY deleted_at, rowid")
    .all(name)
    .map((row) => row.serial);

/** Every zone's serial, deleted ones too (a zone made again continues from them). */
export const allZoneSerials = (db: Database) => db.query<{ id: string; name: string; serial: number }, []>("SELECT id, name, serial FROM dns_zones").all();

/** The serials of every zone, live and deleted, by name. */
export function serialsByName(db: Database): Map<string, number[]> {
  const byName = new Map<string, number[]>();
  for (const row of db.query<{ name: string; serial: number }, []>("SELECT name, serial FROM dns_zones").all()) byName.set(row.name, [...(byName.get(row.name) ?? []), row.serial]);
  return byName;
}

export const setSerial = (tx: Database, id: string, serial: number) => tx.query("UPDATE dns_zones SET serial = ? WHERE id = ?").run(serial, id);

export function insertZone(tx: Database, row: ZoneRow): void {
  tx.query(
    `INSERT INTO dns_zones (id, organization_id, name, ttl, soa_ttl, soa_mname, soa_rname, soa_refresh, soa_retry, soa_expire, soa_minimum, serial, created_at, updated_at, deleted_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`,
  ).run(row.id, row.organization_id, row.name, row.ttl, row.soa_ttl, row.soa_mname, row.soa_rname, row.soa_refresh, row.soa_retry, row.soa_expire, row.soa_minimum, row.serial, row.created_at, row.updated_at);
}

/** A new serial (and SOA fields, on import) for the zone. */
export function updateZoneSoa(tx: Database, id: string, soa: Soa, serial: number, now: number): void {
  tx.query("UPDATE dns_zones SET soa_ttl = ?, soa_mname = ?, soa_rname = ?, soa_refresh = ?, soa_retry = ?, soa_expire = ?, soa_minimum = ?, serial = ?, updated_at = ? WHERE id = ?").run(
    soa.soa_ttl,
    soa.soa_mname,
    soa.soa_rname,
    soa.soa_refresh,
    soa.soa_retry,
    soa.soa_expire,
    soa.soa_minimum,
    serial,
    now,
    id,
  );
}

export function deleteZone(tx: Database, id: string, now: number): void {
  tx.query("DELETE FROM dns_records WHERE zone_id = ?").run(id);
  deleteZoneKeys(tx, id);
  tx.query("UPDATE dns_zones SET deleted_at = ?, updated_at = ? WHERE id = ?").run(now, now, id);
}

export const recordsOf = (db: Database, zoneId: string) =>
  db.query<RecordRow, [string]>("SELECT * FROM dns_records WHERE zone_id = ? ORDER BY owner, type, rdata").all(zoneId);

/** How many records the zone stores (its SOA aside: the zone's fields). */
export const recordCount = (db: Database, zoneId: string) => db.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM dns_records WHERE zone_id = ?").get(zoneId)!.n;

/** How many records the zone stores at `owner` of `type`. */
export const rrsetCount = (db: Database, zoneId: string, owner: string, type: number) =>
  db.query<{ n: number }, [string, string, number]>("SELECT COUNT(*) AS n FROM dns_records WHERE zone_id = ? AND owner = ? AND type = ?").get(zoneId, owner, type)!.n;

export function insertRecord(tx: Database, row: RecordRow): void {
  tx.query("INSERT OR REPLACE INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, ?, ?, ?, ?)").run(row.zone_id, row.owner, row.type, row.ttl, row.rdata);
}

export const deleteRrset = (tx: Database, zoneId: string, owner: string, type: number) => tx.query("DELETE FROM dns_records WHERE zone_id = ? AND owner = ? AND type = ?").run(zoneId, owner, type);

export const deleteRecordsOf = (tx: Database, zoneId: string) => tx.query("DELETE FROM dns_records WHERE zone_id = ?").run(zoneId);

// --- transfers -----------------------------------------------------------------------------

export interface TsigKeyRow {
  name: string;
  algorithm: string;
  secret: Uint8Array;
  created_at: number;
}

export interface SecondaryRow {
  name: string;
  address: string;
  notify_port: number;
  tsig_key: string;
  zones: string | null;
  created_at: number;
}

export const tsigKeys = (db: Database) => db.query<TsigKeyRow, []>("SELECT * FROM dns_tsig_keys ORDER BY name").all();
export const tsigKey = (db: Database, name: string) => db.query<TsigKeyRow, [string]>("SELECT * FROM dns_tsig_keys WHERE name = ?").get(name);
export const insertTsigKey = (tx: Database, row: TsigKeyRow) =>
  tx.query("INSERT INTO dns_tsig_keys (name, algorithm, secret, created_at) VALUES (?, ?, ?, ?)").run(row.name, row.algorithm, row.secret, row.created_at);
export const deleteTsigKey = (tx: Database, name: string) => tx.query("DELETE FROM dns_tsig_keys WHERE name = ?").run(name).changes > 0;

export const secondaries = (db: Database) => db.query<SecondaryRow, []>("SELECT * FROM dns_secondaries ORDER BY name").all();
export const secondary = (db: Database, name: string) => db.query<SecondaryRow, [string]>("SELECT * FROM dns_secondaries WHERE name = ?").get(name);
export const secondariesUsing = (db: Database, key: string) => db.query<SecondaryRow, [string]>("SELECT * FROM dns_secondaries WHERE tsig_key = ?").all(key);
export const insertSecondary = (tx: Database, row: SecondaryRow) =>
  tx
    .query("INSERT INTO dns_secondaries (name, address, notify_port, tsig_key, zones, created_at) VALUES (?, ?, ?, ?, ?, ?)")
    .run(row.name, row.address, row.notify_port, row.tsig_key, row.zones, row.created_at);
export const deleteSecondary = (tx: Database, name: string) => tx.query("DELETE FROM dns_secondaries WHERE name = ?").run(name).changes > 0;

// --- record providers ----------------------------------------------------------------------

export interface ProviderSerialRow {
  provider: string;
  fingerprint: string;
  serial: number;
}

export const providerSerials = (db: Database) => db.query<ProviderSerialRow, []>("SELECT * FROM dns_provider_serials").all();
export const setProviderSerial = (tx: Database, provider: string, serial: number) => tx.query("UPDATE dns_provider_serials SET serial = ? WHERE provider = ?").run(serial, provider);
export const saveProviderSerial = (tx: Database, row: ProviderSerialRow) =>
  tx
    .query("INSERT INTO dns_provider_serials (provider, fingerprint, serial) VALUES (?, ?, ?) ON CONFLICT (provider) DO UPDATE SET fingerprint = excluded.fingerprint, serial = excluded.serial")
    .run(row.provider, row.fingerprint, row.serial);

// --- the serials of a zone's views (view-serials.ts) -------------------------------------------

export const viewSerials = (db: Database) => db.query<ViewSerialRow, []>("SELECT * FROM dns_view_serials").all();
export const setViewSerial = (tx: Database, row: ViewSerialRow) => tx.query("UPDATE dns_view_serials SET fingerprint = ?, serial = ? WHERE zone = ? AND view = ?").run(row.fingerprint, row.serial, row.zone, row.view);
export const saveViewSerial = (tx: Database, row: ViewSerialRow) =>
  tx
    .query("INSERT INTO dns_view_serials (zone, view, fingerprint, serial) VALUES (?, ?, ?, ?) ON CONFLICT (zone, view) DO UPDATE SET fingerprint = excluded.fingerprint, serial = excluded.serial")
    .run(row.zone, row.view, row.fingerprint, row.serial);

export const dropViewSerial = (tx: Database, zone: string, view: string) => tx.query("DELETE FROM dns_view_serials WHERE zone = ? AND view = ?").run(zone, view);
export const viewFloors = (db: Database) => db.query<ViewFloorRow, []>("SELECT * FROM dns_view_floors").all();
/** A zone's floor is set once (view-serials.ts): a second one is ignored. */
export const saveViewFloor = (tx: Database, row: ViewFloorRow) => tx.query("INSERT INTO dns_view_floors (zone, serial) VALUES (?, ?) ON CONFLICT (zone) DO NOTHING").run(row.zone, row.serial);

// --- the catalog zone ----------------------------------------------------------------------

export interface CatalogSerialRow {
  view: string;
  fingerprint: string;
  serial: number;
}

export const catalogSerials = (db: Database) => db.query<CatalogSerialRow, []>("SELECT * FROM dns_catalog_serials").all();
export const setCatalogSerial = (tx: Database, view: string, fingerprint: string, serial: number) =>
  tx.query("UPDATE dns_catalog_serials SET fingerprint = ?, serial = ? WHERE view = ?").run(fingerprint, serial, view);
export const saveCatalogSerial = (tx: Database, row: CatalogSerialRow) =>
  tx
    .query("INSERT INTO dns_catalog_serials (view, fingerprint, serial) VALUES (?, ?, ?) ON CONFLICT (view) DO UPDATE SET fingerprint = excluded.fingerprint, serial = excluded.serial")
    .run(row.view, row.fingerprint, row.serial);

// --- DNSSEC ----------------------------------------------------------------------------------

export interface ZoneKeyRow {
  zone_id: string;
  algorithm: number;
  dnskey: Uint8Array;
  /** Keyring envelope of the PKCS#8 private key. */
  private_key: Uint8Array;
  created_at: number;
  /** The serial the stored RRSIGs sign (null: none stored yet); the RRSIGs are in dns_zone_rrsigs (storedRrsigs), or in this blob, stored whole by an older Citadel. */
  signed_serial: number | null;
  rrsigs: Uint8Array | null;
  /** How absence is proven (migration 0008): the NSEC chain, or NSEC3 hashed with `nsec3_salt` (empty: none) and 0 iterations. */
  denial: DenialMode;
  nsec3_salt: Uint8Array;
  /** What Citadel publishes as CDS/CDNSKEY at the apex (migration 0009), since when (ms; null: since signing began). */
  cds: CdsMode;
  cds_since: number | null;
  /** The key's lifetime in days: the schedule starts a rollover once it is that old (0: rolled by hand), counted from `activated_at`. */
  csk_lifetime: number;
  /** When the key began to sign alone (ms): the zone's signing, or its rollover's finish — a slow parent does not shorten the next key's life. */
  activated_at: number;
}

export type DenialMode = "nsec" | "nsec3";
/** RFC 7344/8078 publication: none; the new key while a rollover waits for the parent (Knot's `rollover`); the zone's key always; the delete records (RFC 8078 section 4). */
export type CdsMode = "none" | "rollover" | "always" | "delete";

export const zoneKey = (db: Database, zoneId: string) => db.query<ZoneKeyRow, [string]>("SELECT * FROM dns_zone_keys WHERE zone_id = ?").get(zoneId);
export const insertZoneKey = (tx: Database, row: Omit<ZoneKeyRow, "signed_serial" | "rrsigs" | "cds_since" | "activated_at">) =>
  tx
    .query("INSERT INTO dns_zone_keys (zone_id, algorithm, dnskey, private_key, created_at, denial, nsec3_salt, cds, csk_lifetime, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    .run(row.zone_id, row.algorithm, row.dnskey, row.private_key, row.created_at, row.denial, row.nsec3_salt, row.cds, row.csk_lifetime, row.created_at);
/** The zone's CDS/CDNSKEY publication becomes another (its serial moves in the same transaction when what is published changes). */
export const setZoneCds = (tx: Database, zoneId: string, cds: CdsMode, since: number) => tx.query("UPDATE dns_zone_keys SET cds = ?, cds_since = ? WHERE zone_id = ?").run(cds, since, zoneId);
export const setZoneKeyLifetime = (tx: Database, zoneId: string, days: number) => tx.query("UPDATE dns_zone_keys SET csk_lifetime = ? WHERE zone_id = ?").run(days, zoneId);
/** The zone's denial of existence becomes another (its serial moves in the same transaction: the next signing makes the new chain). */
export const setZoneDenial = (tx: Database, zoneId: string, denial: DenialMode, nsec3Salt: Uint8Array) =>
  tx.query("UPDATE dns_zone_keys SET denial = ?, nsec3_salt = ? WHERE zone_id = ?").run(denial, nsec3Salt, zoneId);
/**
 * The zone's stored RRSIGs become `rrsets`' (each RRset's, by `owner type`: migration 0011),
 * signing `serial`; those stored before go, a blob of an older Citadel's with them.
 */
export function saveZoneRrsigs(db: Database, zoneId: string, serial: number, rrsets: Iterable<{ rrset: string; rrsigs: Uint8Array }>): void {
  db.query("DELETE FROM dns_zone_rrsigs WHERE zone_id = ?").run(zoneId);
  const insert = db.query("INSERT INTO dns_zone_rrsigs (zone_id, rrset, rrsigs) VALUES (?, ?, ?)");
  for (const r of rrsets) insert.run(zoneId, r.rrset, r.rrsigs);
  db.query("UPDATE dns_zone_keys SET signed_serial = ?, rrsigs = NULL WHERE zone_id = ?").run(serial, zoneId);
}

/**
 * The stored RRSIGs of a change: those of `removed` RRsets go, those of `signed` ones are written
 * (over any stored), and they sign `serial` — when they signed `previous` (the serial the change
 * was made on) and are stored as rows; false, writing nothing, otherwise (saveZoneRrsigs then).
 */
export function saveChangedRrsigs(tx: Database, zoneId: string, previous: number, serial: number, removed: readonly string[], signed: Iterable<{ rrset: string; rrsigs: Uint8Array }>): boolean {
  const stored = tx.query<{ signed_serial: number | null; legacy: number }, [string]>("SELECT signed_serial, rrsigs IS NOT NULL AS legacy FROM dns_zone_keys WHERE zone_id = ?").get(zoneId);
  if (stored === null || stored.signed_serial !== previous || stored.legacy !== 0) return false;
  const remove = tx.query("DELETE FROM dns_zone_rrsigs WHERE zone_id = ? AND rrset = ?");
  for (const rrset of removed) remove.run(zoneId, rrset);
  const write = tx.query("INSERT OR REPLACE INTO dns_zone_rrsigs (zone_id, rrset, rrsigs) VALUES (?, ?, ?)");
  for (const r of signed) write.run(zoneId, r.rrset, r.rrsigs);
  tx.query("UPDATE dns_zone_keys SET signed_serial = ? WHERE zone_id = ?").run(serial, zoneId);
  return true;
}

/** The zone's stored RRSIGs, each encoded (encodeRrsigs): a blob an older Citadel stored whole, else one per RRset. */
export function storedRrsigs(db: Database, zoneId: string, blob: Uint8Array | null): Uint8Array[] {
  if (blob !== null) return [new Uint8Array(blob)];
  return db.query<{ rrsigs: Uint8Array }, [string]>("SELECT rrsigs FROM dns_zone_rrsigs WHERE zone_id = ?").all(zoneId).map((r) => new Uint8Array(r.rrsigs));
}
/** The zone's key becomes another (a rollover's new key, its envelope made again for this row); the stored RRSIGs stay until the next signing. */
export const replaceZoneKey = (tx: Database, zoneId: string, key: Pick<ZoneKeyRow, "algorithm" | "dnskey" | "private_key" | "created_at" | "activated_at">) =>
  tx
    .query("UPDATE dns_zone_keys SET algorithm = ?, dnskey = ?, private_key = ?, created_at = ?, activated_at = ? WHERE zone_id = ?")
    .run(key.algorithm, key.dnskey, key.private_key, key.created_at, key.activated_at, zoneId);
/** Every key of the zone, a rollover's new one too: its signing ended (disabled, the zone deleted or erased). */
export function deleteZoneKeys(tx: Database, zoneId: string): void {
  tx.query("DELETE FROM dns_zone_incoming_keys WHERE zone_id = ?").run(zoneId);
  tx.query("DELETE FROM dns_zone_rrsigs WHERE zone_id = ?").run(zoneId);
  tx.query("DELETE FROM dns_zone_keys WHERE zone_id = ?").run(zoneId);
}

/** A rollover's new key (migration 0006): published and signing beside the zone's key until the rollover finishes or is cancelled. */
export interface IncomingKeyRow {
  zone_id: string;
  algorithm: number;
  dnskey: Uint8Array;
  /** Keyring envelope of the PKCS#8 private key (its own context: dnssec-service.ts). */
  private_key: Uint8Array;
  /** When the rollover started: the key is published, and signs, from then on. */
  created_at: number;
  /** The serial that first published it. */
  published_serial: number;
  /** The DNSKEY RRset's TTL and the largest TTL in the zone at the start (seconds). */
  dnskey_ttl: number;
  max_ttl: number;
  /** [dns] dnssec_propagation_delay at the start (seconds): a configuration changed during the rollover does not move it. */
  propagation_delay: number;
  /** When the new key became ready for the parent (migration 0009): its CDS/CDNSKEY published from then (null: not yet). */
  ready_at: number | null;
  /** When the parent was confirmed to publish the new key's DS alone, and by whom; the wait after it ([dns] dnssec_parent_delay then, seconds). */
  submitted_at: number | null;
  parent_delay: number;
  /** 1: the schedule started it (the key's lifetime ran out). */
  automatic: number;
}

export const incomingKey = (db: Database, zoneId: string) => db.query<IncomingKeyRow, [string]>("SELECT * FROM dns_zone_incoming_keys WHERE zone_id = ?").get(zoneId);
export const insertIncomingKey = (tx: Database, row: Omit<IncomingKeyRow, "ready_at" | "submitted_at" | "parent_delay">) =>
  tx
    .query("INSERT INTO dns_zone_incoming_keys (zone_id, algorithm, dnskey, private_key, created_at, published_serial, dnskey_ttl, max_ttl, propagation_delay, automatic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    .run(row.zone_id, row.algorithm, row.dnskey, row.private_key, row.created_at, row.published_serial, row.dnskey_ttl, row.max_ttl, row.propagation_delay, row.automatic);
/** The rollover's new key is ready for the parent (its CDS published from the serial this write moves to). */
export const setIncomingReady = (tx: Database, zoneId: string, at: number) => tx.query("UPDATE dns_zone_incoming_keys SET ready_at = ? WHERE zone_id = ?").run(at, zoneId);
/** The parent publishes the new key's DS alone (the operator's word: Citadel asks no parent): the schedule finishes after `parentDelay` seconds. */
export const setIncomingSubmitted = (tx: Database, zoneId: string, at: number, parentDelay: number) =>
  tx.query("UPDATE dns_zone_incoming_keys SET submitted_at = ?, parent_delay = ? WHERE zone_id = ?").run(at, parentDelay, zoneId);
export const deleteIncomingKey = (tx: Database, zoneId: string) => tx.query("DELETE FROM dns_zone_incoming_keys WHERE zone_id = ?").run(zoneId).changes > 0;

/** The largest TTL among the zone's stored records (null: it has none besides its SOA). */
export const largestRecordTtl = (db: Database, zoneId: string) => db.query<{ ttl: number | null }, [string]>("SELECT MAX(ttl) AS ttl FROM dns_records WHERE zone_id = ?").get(zoneId)!.ttl;

/** The live signed zones, with when they last changed (their signatures' time). */
export const signedZones = (db: Database) =>
  db.query<{ id: string; name: string; updated_at: number }, []>("SELECT z.id, z.name, z.updated_at FROM dns_zones z JOIN dns_zone_keys k ON k.zone_id = z.id WHERE z.deleted_at IS NULL").all();

/** The live signed zones the rollover schedule looks at: a key lifetime set, or a rollover in progress. */
export const scheduledZones = (db: Database) =>
  db
    .query<{ id: string; name: string; organization_id: string }, []>(
      "SELECT z.id, z.name, z.organization_id FROM dns_zones z JOIN dns_zone_keys k ON k.zone_id = z.id LEFT JOIN dns_zone_incoming_keys i ON i.zone_id = z.id WHERE z.deleted_at IS NULL AND (k.csk_lifetime > 0 OR i.zone_id IS NOT NULL) ORDER BY z.name",
    )
    .all();
