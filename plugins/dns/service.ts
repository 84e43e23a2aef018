/**
 * DNS zones and their records, the control side. Every change builds the whole candidate zone
 * with Zone.build inside the write transaction, before anything is written: a change that would
 * leave a zone a server must not load (CNAME beside data, an owner outside the zone, data below
 * a delegation, a bad TTL, name or record data) is refused with InvalidError naming the record,
 * and nothing changes. A change that passes writes the records, bumps the SOA serial and records
 * its audit event in the same transaction. One exception: an RRset changed in a signed zone is
 * made by editing the signed zone served (signedChange, dnssec.ts signChange), which takes only
 * changes whose place it checks itself and leaves every other to the whole build.
 */
import type { Database } from "bun:sqlite";
import type { AuditEventInput, AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, type Principal } from "../../src/auth/principal.ts";
import { ConflictError, ForbiddenError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { RecordProvider } from "../../src/record-providers.ts";
import { claimRestoreStep, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
import { isSubdomain, lowerName, NameError, nameFromWire, nameToText, parseName, type Name } from "./names.ts";
import { TokenError } from "./presentation.ts";
import { parseRdata, parseRecordData, rdataIdentity, rdataToText, RdataError, RRType, storedRdataToText, typeFromText, typeToText, unstorableType } from "./rdata.ts";
import { catalogName, type DnsSettings } from "./settings.ts";
import { ChangeFeed } from "./change-feed.ts";
import { chainName, ZoneSigner } from "./dnssec-service.ts";
import { signaturesOf, unsignableRecord, type RrsetChange } from "./dnssec.ts";
import * as sql from "./store.ts";
import { parseZoneFile, printZoneFile, ZoneFileError } from "./zone-file.ts";
import { MAX_TTL, Zone, ZoneError, type RR } from "./zone.ts";

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

export interface SoaInput {
  /** The SOA record's own TTL; default: the zone's TTL. */
  ttl?: number;
  /** Default: the first name server. */
  mname?: string;
  rname: string;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export interface NewZone {
  name: string;
  soa?: SoaInput;
  ttl?: number;
  /** Name servers for the apex NS RRset; default: the SOA's mname. */
  ns?: string[];
}

export type DnsKernel = Kernel<DnsSettings>;

/** Default SOA timers (RFC 1912 section 2.2 ranges). */
const SOA_DEFAULTS = { refresh: 3600, retry: 900, expire: 1_209_600, minimum: 300 } as const;
const TWO_31 = 2 ** 31;
const TWO_32 = 2 ** 32;

/** Canonical text of a name: absolute, ASCII lower-case. */
export const canonical = (name: Name) => nameToText(lowerName(name));

/** RFC 1982 section 3.2: is serial `a` before `b`? */
export function serialLess(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < TWO_31) || (a > b && a - b > TWO_31));
}

/** The serial after `current`: today's YYYYMMDD00 when current is before it, else current + 1 (mod 2^32). */
export function nextSerial(current: number, now: number): number {
  const d = new Date(now);
  const dated = (d.getUTCFullYear() * 10_000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate()) * 100;
  return serialLess(current, dated) ? dated : (current + 1) % TWO_32;
}

/**
 * How far a zone's serial jumps at the first start after a restore when the database the restore
 * replaced is not there to tell how far the serial got (a restore on a new machine, or the old
 * database damaged). The secondaries may hold any serial the zone reached after the backup, or,
 * a lagging one, an older serial than the backup's. RFC 1982 lets one step reach at most
 * 2^31 - 1 ahead; half of that leaves the same margin both ways: a secondary up to 2^30 ahead
 * (a billion changes, or a thousand years of date-based serials) sees a newer zone, and so does
 * one up to 2^30 behind. A date-based serial (today's, or tomorrow's) would not do: a zone with
 * more than a hundred changes a day runs ahead of the date, and its secondaries would keep
 * serving the pre-restore zone. The serial no longer reads as a date after the jump.
 */
export const RESTORE_SERIAL_STEP = 2 ** 30;

/**
 * A restored zone's new serial. `previous`: the serials the database the restore replaced held
 * for the zone's name (live and deleted zones: the secondaries may hold any), or null when that
 * database is unknown. The serial continues past the highest the zone ever had, so secondaries
 * transfer the restored zone rather than serving the one from before the restore.
 */
export function serialAfterRestore(restored: number, previous: readonly number[] | null, now: number): number {
  if (previous === null) return (restored + RESTORE_SERIAL_STEP) % TWO_32;
  return nextSerial(highestSerial([restored, ...previous]), now);
}

/** The highest of `serials` in serial arithmetic (RFC 1982), or 0 when there is none. */
function highestSerial(serials: readonly number[]): number {
  return serials.reduce((high, s) => (serialLess(high, s) ? s : high), serials[0] ?? 0);
}

/** A zone name from the API or CLI: absolute or not, never the root. */
export function parseZoneName(text: string): Name {
  let name: Name;
  try {
    name = parseName(text, []);
  } catch (e) {
    if (e instanceof NameError) throw new InvalidError(e.message, "name");
    throw e;
  }
  if (name.length === 0) throw new InvalidError("the root zone is not served", "name");
  if (name[0]!.length === 1 && name[0]![0] === 0x2a) {
    // Zone.build would say "a wildcard NS has no defined meaning" of the apex NS it makes.
    throw new InvalidError(`a zone's name cannot be a wildcard (${nameToText(name)}): a wildcard is a record in the zone above it (${nameToText(name.slice(1))})`, "name");
  }
  return name;
}

/**
 * A top-level domain (a single-label zone, `com.`) holds every name below it: the resolver
 * answers all of them from it, and since zones of two organizations cannot overlap, the first
 * organization to make it would shut every other one out of the whole domain (`example.com`
 * refused to its owner). Only an operator makes one (a private `lan.`, say).
 */
function refuseTopLevelDomain(caller: Caller, name: string, origin: Name): void {
  if (origin.length === 1 && !caller.principal.operator) {
    throw new ForbiddenError(`${name} is a top-level domain: only an operator makes a zone for one, as it holds every name below it for one organization.`);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const iso = (ms: number) => new Date(ms).toISOString();

/** Runs `fn`, turning the zone library's refusals into InvalidError on `field`. */
function refusing<T>(field: string, fn: () => T, prefix = ""): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ZoneError || e instanceof RdataError || e instanceof NameError || e instanceof ZoneFileError || e instanceof TokenError) {
      throw new InvalidError(`${prefix}${e.message}`, field);
    }
    throw e;
  }
}

export class DnsService {
  private readonly changes: ChangeFeed;
  /** Signs the zones that have DNSSEC on, as they are built. */
  readonly signer: ZoneSigner;
  /**
   * Signed zones signed in the write that changed them (`signInWrite`), each with the version
   * it is: the build after the commit (the listener's) takes it rather than build and sign the
   * zone again. At most one per zone, replaced by its next write; dropped when a write fails.
   */
  private readonly signedInWrites = new Map<string, { serial: number; updatedAt: number; zone: Zone }>();

  constructor(private readonly k: DnsKernel) {
    this.changes = new ChangeFeed(k.store);
    this.signer = new ZoneSigner(k);
  }

  /** A write to a zone made elsewhere in the plugin (its DNSSEC): the listener reloads after it. */
  zoneWrite<T>(fn: (tx: Database) => T): Promise<T> {
    return this.write(fn);
  }

  /** Calls `listener` after every committed change (the listener reloads what it serves). */
  onChange(listener: () => void): () => void {
    return this.changes.onChange(listener);
  }

  private write<T>(fn: (tx: Database) => T): Promise<T> {
    return this.changes.write(fn).catch((error: unknown) => {
      // Rolled back (its own refusal, or a batch the disk refused): a zone signed in it signs nothing stored.
      this.signedInWrites.clear();
      throw error;
    });
  }

  /**
   * Signs a signed zone in the write (`tx`) that moved its serial: its signatures are stored with
   * that serial in the same transaction. SealedError (503 `sealed`) while sealed: the write is
   * refused. Nothing for an unsigned zone. Every write to a signed zone's records or serial ends
   * with it. Signed only once committed (when the listener builds the zone), a seal in between —
   * a write queued in the store as Citadel sealed, or one committed in the batch of the seal's
   * own audit event — left the new serial with no signatures, and the zone answered SERVFAIL
   * until the unseal. Returns when the first of its signatures expires (null: not signed).
   */
  signInWrite(tx: Database, zoneId: string): number | null {
    const row = sql.liveZoneById(tx, zoneId);
    if (row === null || !this.signer.isSigned(zoneId, tx)) return null;
    let built: Zone;
    try {
      built = Zone.build(originOf(row), this.records(row, tx), { loading: true });
    } catch (e) {
      // Only a zone stored by an older Citadel can fail so (a write checks what it stores): not served, it is not signed either.
      if (e instanceof ZoneError) throw new ConflictError(`${row.name} as stored does not build (${e.message}): it is not served, so it cannot be signed.`);
      throw e;
    }
    const zone = this.signer.signedInWrite(tx, row, built);
    this.signedInWrites.set(zoneId, { serial: row.serial, updatedAt: row.updated_at, zone });
    return signaturesOf(zone)!.expiresAt;
  }

  /** Has the listener reload now, after a change another plugin committed (iam deleting an organization). */
  changedElsewhere(): void {
    this.changes.tell();
  }

  /** Has the listener reload after a change made elsewhere in the store (an erasure). */
  async reloaded(): Promise<void> {
    await this.changes.write(() => undefined);
  }

  private get db(): Database {
    return this.k.store.db;
  }

  private now(): number {
    return this.k.clock.now();
  }

  // --- reading ---------------------------------------------------------------------------

  list(organizationId: string) {
    return { items: sql.liveZonesOf(this.db, organizationId).map(zoneView) };
  }

  /** The zone named by id or name, if it belongs to the organization (404 otherwise: not visible). */
  zoneRow(organizationId: string, zone: string, db: Database = this.db): sql.ZoneRow {
    let row: sql.ZoneRow | null = null;
    if (/^dnsz_[A-Za-z0-9]+$/.test(zone)) row = sql.liveZoneById(db, zone);
    if (!row) {
      try {
        row = sql.liveZoneByName(db, canonical(parseName(zone, [])));
      } catch (e) {
        if (!(e instanceof NameError)) throw e;
      }
    }
    if (!row || row.organization_id !== organizationId) throw new NotFoundError(`No zone ${zone} in this organization.`);
    return row;
  }

  show(organizationId: string, zone: string) {
    const row = this.zoneRow(organizationId, zone);
    const records = this.records(row).map(recordView);
    return { ...zoneView(row), records, problems: nameServerProblems(row.name, records) };
  }

  recordList(organizationId: string, zone: string) {
    const row = this.zoneRow(organizationId, zone);
    return { zone: row.name, serial: row.serial, items: this.records(row).map(recordView) };
  }

  export(organizationId: string, zone: string): string {
    const row = this.zoneRow(organizationId, zone);
    return printZoneFile(originOf(row), this.records(row).map((r) => ({ ...r, line: 0 })));
  }

  /**
   * Every zone the organization has stored, soft-deleted ones too (deleted_at), each as a zone
   * file: what a data subject export holds (src/subjects.ts). An erasure request soft-deletes
   * the zones and they stay stored until the erasure; a zone deleted through the API keeps its
   * name, SOA and serial (its records are gone).
   */
  storedZones(organizationId: string) {
    const rows = this.db.query<sql.ZoneRow, [string]>("SELECT * FROM dns_zones WHERE organization_id = ? ORDER BY name, created_at").all(organizationId);
    return rows.map((row) => ({
      ...zoneView(row),
      deleted_at: row.deleted_at === null ? null : iso(row.deleted_at),
      zone_file: printZoneFile(originOf(row), this.records(row).map((r) => ({ ...r, line: 0 }))),
    }));
  }

  /** Every record of a stored zone, its SOA first (rendered from the zone's fields). */
  private records(row: sql.ZoneRow, db: Database = this.db): RR[] {
    return [soaRecord(row), ...storedRecords(db, row.id)];
  }

  /** Every live zone, built: what the DNS listener serves. A zone that no longer builds is logged and left out. */
  loadZones(): Zone[] {
    const zones: Zone[] = [];
    for (const row of sql.allLiveZones(this.db)) {
      const zone = this.build(row);
      if (zone) zones.push(zone);
    }
    return zones;
  }

  /** The live stored zone containing `domain` (the deepest), if any. */
  hostZoneRow(domain: Name, db: Database = this.db): sql.ZoneRow | null {
    for (let skip = 0; skip < domain.length; skip++) {
      const row = sql.liveZoneByName(db, canonical(domain.slice(skip)));
      if (row) return row;
    }
    return null;
  }

  /**
   * A new serial for a zone whose served content changed without a change to its stored records
   * (a record provider's names): secondaries see the change, and the serial survives a restart.
   */
  async bumpSerial(zoneId: string): Promise<void> {
    await this.write((tx) => {
      const row = sql.liveZoneById(tx, zoneId);
      if (!row) return;
      // Sealed since it was asked for (by the re-signing): a signed zone keeps its serial and the
      // signatures stored with it; the unseal signs it again (ZoneSigner.refreshDue).
      if (this.signer.isSigned(zoneId, tx) && this.k.seal.keyringIfUnsealed() === null) return;
      sql.updateZoneSoa(tx, row.id, row, nextSerial(row.serial, this.now()), this.now());
      this.signInWrite(tx, row.id);
    });
  }

  /**
   * At the first start after `citadel restore` (the restore marker is there): every zone's
   * serial moves past the highest the zone reached before the restore (serialAfterRestore),
   * read from the database the restore replaced. The restored serials are older than what the
   * secondaries hold: without this, they would not transfer again until the serial caught up,
   * and would serve the pre-restore zone meanwhile. The start announces the zones (NOTIFY) once
   * the listener is up, as at every start. Once per restore (claimRestoreStep): run again, the
   * step would move the serials on by 2^30 each time, past what RFC 1982 can compare. Returns
   * how many zones moved.
   */
  async advanceSerialsAfterRestore(dataDir: string): Promise<number> {
    const state = restoreState(dataDir);
    if (state.kind === "none") return 0;
    const before = readPrevious(state.previous, (db) => (hasTable(db, "dns_zones") ? sql.serialsByName(db) : new Map<string, number[]>()));
    // A record provider's own zone (mesh.internal.) too (found in review: the restored serial,
    // with the restored names, went back below what the secondaries held).
    const providersBefore = readPrevious(state.previous, (db) => new Map(hasTable(db, "dns_provider_serials") ? sql.providerSerials(db).map((p) => [p.provider, [p.serial]] as const) : []));
    // And each view of the catalog zone, which a secondary holds as it holds a zone: past every
    // view's serial, as a view's serial moves (catalog.ts): the secondary may have held another
    // view's since the backup (its key changed).
    const catalogBefore = readPrevious(state.previous, (db) => (hasTable(db, "dns_catalog_serials") ? sql.catalogSerials(db) : []));
    // And each view's serial of a zone with split-horizon names (view-serials.ts): its clients
    // hold it as a cache does, and a view's serial never goes back.
    const viewsBefore = readPrevious(state.previous, (db) => (hasTable(db, "dns_view_serials") ? sql.viewSerials(db) : []));
    const now = this.now();
    return this.write((tx) => {
      if (!claimRestoreStep(tx, state.id, "dns", now)) return 0;
      const zones = sql.allZoneSerials(tx);
      for (const zone of zones) sql.setSerial(tx, zone.id, serialAfterRestore(zone.serial, before === null ? null : (before.get(zone.name) ?? []), now));
      const providers = sql.providerSerials(tx);
      for (const p of providers) sql.setProviderSerial(tx, p.provider, serialAfterRestore(p.serial, providersBefore === null ? null : (providersBefore.get(p.provider) ?? []), now));
      // One the backup had no row for (made before the rows were): its serial continues from the
      // previous database's, and the empty fingerprint makes the first start count as a change.
      const missing = [...(providersBefore ?? [])].filter(([provider]) => !providers.some((p) => p.provider === provider));
      for (const [provider, serials] of missing) sql.saveProviderSerial(tx, { provider, fingerprint: "", serial: serialAfterRestore(serials[0]!, serials, now) });
      const views = sql.catalogSerials(tx);
      const everyViewBefore = catalogBefore === null ? null : catalogBefore.map((v) => v.serial);
      for (const v of views) sql.setCatalogSerial(tx, v.view, v.fingerprint, serialAfterRestore(v.serial, everyViewBefore, now));
      const missingViews = (catalogBefore ?? []).filter((before) => !views.some((v) => v.view === before.view));
      for (const { view, serial } of missingViews) sql.saveCatalogSerial(tx, { view, fingerprint: "", serial: serialAfterRestore(serial, everyViewBefore, now) });
      const zoneViews = sql.viewSerials(tx);
      const idOf = (v: { zone: string; view: string }) => `${v.zone}\n${v.view}`;
      const zoneViewsBefore = viewsBefore === null ? null : new Map(viewsBefore.map((v) => [idOf(v), v.serial]));
      for (const v of zoneViews) {
        const before = zoneViewsBefore === null ? null : zoneViewsBefore.has(idOf(v)) ? [zoneViewsBefore.get(idOf(v))!] : [];
        sql.setViewSerial(tx, { ...v, serial: serialAfterRestore(v.serial, before, now) });
      }
      const missingZoneViews = (viewsBefore ?? []).filter((before) => !zoneViews.some((v) => idOf(v) === idOf(before)));
      for (const v of missingZoneViews) sql.saveViewSerial(tx, { ...v, fingerprint: "", serial: serialAfterRestore(v.serial, [v.serial], now) });
      return zones.length + providers.length + missing.length + views.length + missingViews.length + zoneViews.length + missingZoneViews.length;
    });
  }

  /** One live zone, built (null when there is none, or it does not build). */
  zone(zoneId: string): Zone | null {
    const row = sql.liveZoneById(this.db, zoneId);
    const signed = this.signedInWrites.get(zoneId);
    this.signedInWrites.delete(zoneId);
    if (!row) return null;
    if (signed?.serial === row.serial && signed.updatedAt === row.updated_at) {
      this.signer.adopt(zoneId, signed.zone, signed);
      return signed.zone;
    }
    return this.build(row);
  }

  private build(row: sql.ZoneRow): Zone | null {
    try {
      return this.signer.signed(row, Zone.build(originOf(row), this.records(row), { loading: true }));
    } catch (error) {
      this.k.log.error("a stored zone does not build; it is not served", { zone: row.name, error: String(error) });
      return null;
    }
  }

  // --- writing ---------------------------------------------------------------------------

  async create(caller: Caller, organizationId: string, input: NewZone) {
    const origin = parseZoneName(input.name);
    const name = canonical(origin);
    refuseTopLevelDomain(caller, name, origin);
    const ttl = input.ttl ?? this.k.settings.default_ttl;
    // Without name servers given: the appliance's as configured (its names as the world knows
    // them), else ns1.<zone>, which `problems` then says needs an address.
    const defaults = input.ns === undefined && this.k.settings.default_nameservers.length > 0 ? configuredNameservers(this.k.settings.default_nameservers) : null;
    const soaIn: SoaInput = input.soa ?? { rname: `hostmaster.${name}`, ...SOA_DEFAULTS };
    // Checked before the SOA, whose primary is the first of them unless told otherwise.
    const given = input.ns?.map((n, i) => nameServerName(n, origin, `ns[${i}]`));
    const mname = soaIn.mname ?? input.ns?.[0] ?? defaults?.[0] ?? `ns1.${name}`;
    const soa: sql.Soa = {
      soa_ttl: "ttl" in soaIn ? (soaIn.ttl ?? null) : null,
      soa_mname: canonical(nameServerName(mname, origin, "soa.mname")),
      soa_rname: canonical(refusing("soa.rname", () => parseName(soaIn.rname, origin))),
      soa_refresh: soaIn.refresh,
      soa_retry: soaIn.retry,
      soa_expire: soaIn.expire,
      soa_minimum: soaIn.minimum,
    };
    const ns = given ?? (defaults ?? [soa.soa_mname]).map((n) => parseName(n, null));
    if (ns.length === 0) throw new InvalidError("a zone needs at least one name server", "ns");
    const now = this.now();
    const row: sql.ZoneRow = { id: newId("dnsz"), organization_id: organizationId, name, ttl, ...soa, serial: 0, created_at: now, updated_at: now, deleted_at: null };
    const records: RR[] = ns.map((n) => ({ name: origin, ttl, type: RRType.NS, rdata: parseRdata(RRType.NS, [nameToText(n)], origin) }));
    await this.write((tx) => {
      this.requireLiveOrganization(tx, organizationId);
      if (sql.liveZoneByName(tx, name)) throw new ConflictError(`The zone ${name} exists already.`);
      this.refuseOverZoneQuota(tx, organizationId);
      this.refuseOverlap(tx, origin, organizationId);
      this.refuseUndelegatedInSigned(tx, origin);
      // Secondaries may still hold a deleted zone of this name: a lower serial would never be
      // transferred, so the new zone continues from the highest one it had.
      row.serial = nextSerial(highestSerial(sql.deletedSerials(tx, name)), now);
      const built = refusing("records", () => Zone.build(origin, [soaRecord(row), ...records]));
      sql.insertZone(tx, row);
      writeAll(tx, row.id, built);
      this.k.audit.record(tx, event(caller, row, "dns.zone.create", name));
    });
    return this.show(organizationId, row.id);
  }

  /**
   * In the write that makes a zone: the organization, which the guard found before the handler
   * ran, must still be live. One deleted meanwhile has had its zones deleted already: a zone made
   * after would outlive it, served and holding its name against every other organization, with
   * no route left to delete it (found in review). Changes to a zone need no such check: they
   * find the zone again in their write, and it went with its organization.
   */
  private requireLiveOrganization(tx: Database, organizationId: string): void {
    const identity = this.k.identity.provider;
    if (identity && !identity.organizationLiveIn(tx, organizationId)) throw new NotFoundError("No such organization: it was deleted meanwhile.");
  }

  /**
   * Pairs of zones of two organizations of which one lies at or below the other: refused since
   * this check exists, but a database from before may hold some. Said once at start-up, so
   * that an operator resolves them (the deeper zone answers for its names).
   */
  overlappingZones(): Array<{ above: string; below: string }> {
    const zones = sql.allLiveZones(this.db).map((row) => ({ row, origin: originOf(row) }));
    const found: Array<{ above: string; below: string }> = [];
    for (const a of zones) {
      for (const b of zones) {
        if (a !== b && a.row.organization_id !== b.row.organization_id && isSubdomain(b.origin, a.origin)) found.push({ above: a.row.name, below: b.row.name });
      }
    }
    return found;
  }

  /**
   * The deepest hosted zone answers for a name, so a zone at or below another organization's
   * would take its names over (`www.example.org` under someone else's `example.org`), and one
   * above it would be a step towards that. Zones of one organization may nest; zones of two
   * may not, and none may sit at or below a domain a plugin provides (the mesh's names). The
   * other organization's zone is not named: it is theirs.
   */
  private refuseOverlap(tx: Database, origin: Name, organizationId: string): void {
    for (const other of sql.allLiveZones(tx)) {
      if (other.organization_id === organizationId) continue;
      const theirs = originOf(other);
      if (isSubdomain(origin, theirs) || isSubdomain(theirs, origin)) {
        throw new ConflictError(`${nameToText(origin)} overlaps a zone of another organization: a zone can be neither above nor below another organization's.`);
      }
    }
    for (const { domain, provider } of this.providedDomains()) {
      if (isSubdomain(origin, domain)) throw new ConflictError(`${nameToText(origin)} is at or below ${provider.domain}, whose names ${provider.name} serves.`);
    }
    // The catalog answers for every name at or below its own (server.ts): such a zone would never be served.
    const catalog = catalogName(this.k.settings.catalog);
    if (catalog !== null && isSubdomain(origin, catalog)) {
      throw new ConflictError(`${nameToText(origin)} is at or below ${nameToText(catalog)}, the catalog zone's name ([dns] catalog), whose names are the catalog's.`);
    }
  }

  /**
   * A zone served here inside a signed zone, without a delegation to it there, has names the
   * signed zone's NSEC or NSEC3 chain denies: a validator holding the signed zone's DS fails every one.
   */
  private refuseUndelegatedInSigned(tx: Database, origin: Name): void {
    for (let skip = 1; skip < origin.length; skip++) {
      const above = sql.liveZoneByName(tx, canonical(origin.slice(skip)));
      const key = above === null ? null : sql.zoneKey(tx, above.id);
      if (above === null || key === null || delegatedFrom(tx, above, origin)) continue;
      throw new ConflictError(
        `${nameToText(origin)} lies in ${above.name}, which is signed (DNSSEC), with no delegation to it: its ${chainName(key)} records would deny every name of the new zone to validators. Delegate it first (NS records for ${nameToText(origin)} in ${above.name}).`,
      );
    }
  }

  /** Refuses records a signed zone cannot hold (unsignableRecord); an unsigned zone holds any. */
  private refuseUnsignable<R extends { name: Name; type: number }>(tx: Database, row: sql.ZoneRow, records: readonly R[], refuse: (message: string, record: R) => Error): void {
    if (sql.zoneKey(tx, row.id) === null) return;
    const origin = originOf(row);
    for (const r of records) {
      const why = unsignableRecord(r.name, r.type, origin);
      if (why !== null) throw refuse(why, r);
    }
  }

  /** The stored records of `row` a signed zone cannot hold, each as "owner TYPE: why". */
  unsignableRecordsIn(tx: Database, row: sql.ZoneRow): string[] {
    const origin = originOf(row);
    return storedRecords(tx, row.id).flatMap((r) => {
      const why = unsignableRecord(r.name, r.type, origin);
      return why === null ? [] : [`${canonical(r.name)} ${typeToText(r.type)}: ${why}`];
    });
  }

  /** The live zones served here below `row` that it does not delegate (no NS at or above them below its apex): what signing it would deny. */
  undelegatedZonesIn(tx: Database, row: sql.ZoneRow): string[] {
    return this.zonesUndelegatedBy(tx, row, storedRecords(tx, row.id));
  }

  /** The live zones served here below `row` that `records`, as its records, would not delegate. */
  private zonesUndelegatedBy(tx: Database, row: sql.ZoneRow, records: readonly RR[]): string[] {
    const origin = originOf(row);
    return sql
      .allLiveZones(tx)
      .filter((other) => other.id !== row.id && isSubdomain(originOf(other), origin) && !delegates(records, origin, originOf(other)))
      .map((other) => other.name);
  }

  /**
   * A change leaving a signed zone with `records` must keep its delegations to the zones served
   * here inside it (the NS at the cut, or above it): without one, the signed zone's NSEC or NSEC3
   * chain denies the nested zone's names, as when it is made undelegated. Only the zones the
   * change leaves undelegated count, so that one undelegated already (signed before this was
   * checked) does not block every other change.
   */
  private refuseUndelegating(tx: Database, row: sql.ZoneRow, records: readonly RR[]): void {
    const key = sql.zoneKey(tx, row.id);
    if (key === null) return;
    const before = new Set(this.undelegatedZonesIn(tx, row));
    const lost = this.zonesUndelegatedBy(tx, row, records).filter((name) => !before.has(name));
    if (lost.length === 0) return;
    const [it, its] = lost.length === 1 ? ["it", "its"] : ["them", "their"];
    throw new ConflictError(
      `${lost.join(", ")} ${lost.length === 1 ? "lies" : "lie"} in ${row.name}, which is signed (DNSSEC), and would be left with no delegation to ${it}: its ${chainName(key)} records would deny ${its} names to validators. Delegate ${it} first (NS records for ${lost.join(", ")} in ${row.name}), or delete ${it}.`,
    );
  }

  /**
   * Every zone is held in memory and built again on each change to it, so neither the zones of
   * one organization nor the records of one zone are without bound: one tenant must not make
   * the appliance slow (or out of memory) for all the others. The limits are [dns] settings.
   */
  private refuseOverZoneQuota(tx: Database, organizationId: string): void {
    const max = this.k.settings.max_zones_per_organization;
    if (sql.liveZoneCount(tx, organizationId) >= max) {
      throw new ConflictError(`The organization holds ${max} zones, as many as [dns] max_zones_per_organization allows: delete one, or ask an operator to raise the limit.`);
    }
  }

  /** Refuses a change that would leave a zone with more records than [dns] max_records_per_zone; one that shrinks the zone may always be made. */
  private refuseOverRecordQuota(zone: string, before: number, after: number, refuse: (message: string) => Error): void {
    const max = this.k.settings.max_records_per_zone;
    if (after > max && after > before) throw refuse(`${zone} would hold ${after} records, more than [dns] max_records_per_zone allows (${max}, its SOA aside): ask an operator to raise the limit.`);
  }

  /** The domains record providers own (the mesh's), each with its provider; one that is not a name is left to the listener, which logs it. */
  private providedDomains(): Array<{ domain: Name; provider: RecordProvider }> {
    const domains: Array<{ domain: Name; provider: RecordProvider }> = [];
    for (const provider of this.k.records.list()) {
      try {
        domains.push({ domain: parseName(provider.domain, []), provider });
      } catch (e) {
        if (!(e instanceof NameError)) throw e;
      }
    }
    return domains;
  }

  /**
   * A record provider's names are its own, served inside the hosted zone that contains its
   * domain (the deepest one), whichever organization's it is. A record at or below the domain
   * would never be served — the provider's replace them — until the provider's names failed to
   * fit the zone, when it would answer for them: refused, as a zone there is. A delegation in
   * the serving zone at the domain or on the way down to it (NS below the apex) would hand the
   * provider's names to the delegation's name servers: another organization's `org.` delegating
   * `example.org` took the mesh's `mesh.example.org.` names over so. A delegation in a zone that
   * does not serve the domain (a deeper zone here does) hands nothing over.
   */
  private refuseCuttingOffProviders(tx: Database, zone: sql.ZoneRow, records: readonly Owned[]): void {
    const origin = originOf(zone);
    for (const { domain, provider } of this.providedDomains()) {
      const serves = this.hostZoneRow(domain, tx)?.id === zone.id;
      for (const r of records) {
        const where = r.line === undefined ? "" : `line ${r.line}: `;
        if (isSubdomain(r.name, domain)) {
          throw new ConflictError(`${where}${canonical(r.name)} ${typeToText(r.type)}: the name is at or below ${provider.domain}, whose names ${provider.name} serves.`);
        }
        if (serves && r.type === RRType.NS && isSubdomain(domain, r.name) && r.name.length > origin.length) {
          throw new ConflictError(`${where}${canonical(r.name)} NS: a delegation there would hand ${provider.domain}, whose names ${provider.name} serves, to other name servers.`);
        }
      }
    }
  }

  async delete(caller: Caller, organizationId: string, zone: string) {
    await this.write((tx) => {
      const row = this.zoneRow(organizationId, zone, tx);
      sql.deleteZone(tx, row.id, this.now());
      this.k.audit.record(tx, event(caller, row, "dns.zone.delete", row.name));
      this.signer.forget(row.id);
    });
  }

  /** Replaces one RRset (`records` empty: removes it). `owner` is relative to the zone unless absolute; "@" is the apex. */
  async setRrset(caller: Caller, organizationId: string, zone: string, ownerText: string, typeText: string, input: { ttl?: number; records: string[] }) {
    const type = typeFromText(typeText);
    if (type === null) throw new InvalidError(`"${typeText}" is not a record type`, "type");
    if (type === RRType.SOA) throw new InvalidError("the SOA is the zone's own: it changes with an import", "type");
    // Removing is allowed: an older Citadel stored such types, and they must be able to go.
    const unstorable = unstorableType(type);
    if (unstorable !== null && input.records.length > 0) throw new InvalidError(`${typeToText(type)}: ${unstorable}`, "type");
    const initial = this.zoneRow(organizationId, zone);
    const origin = originOf(initial);
    const owner = refusing("name", () => parseName(ownerText, origin));
    const ownerKey = canonical(owner);
    const label = `${ownerKey} ${typeToText(type)}`;
    const ttl = input.ttl ?? initial.ttl;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL) throw new InvalidError(`${label}: the TTL must be 0–${MAX_TTL}`, "ttl");
    const wanted: RR[] = [];
    // By identity, not by a search of `wanted`: that was quadratic (1,000 records took a second).
    const identities = new Set<string>();
    input.records.forEach((text, i) => {
      const rdata = refusing(`records`, () => parseRecordData(type, text, origin), `${label} (records[${i}]): `);
      if (type === RRType.NS && !isHostName(nsTarget(rdata), origin)) throw new InvalidError(`${label} (records[${i}]): ${NOT_A_HOST_NAME}`, "records");
      // The first spelling of a record stays; one equal to it but for the case of a name goes.
      const identity = rdataIdentity(type, rdata);
      if (identities.has(identity)) return;
      identities.add(identity);
      wanted.push({ name: owner, ttl, type, rdata });
    });
    // As stored, and so as a zone built from the store holds it: the owner in lower case, the records in the order of their data.
    const stored = parseName(ownerKey, null);
    const rrset = wanted.map((r) => ({ ...r, name: stored })).sort((a, b) => Buffer.compare(a.rdata, b.rdata));
    return this.write((tx) => {
      const row = this.zoneRow(organizationId, zone, tx);
      if (wanted.length > 0) this.refuseUnsignable(tx, row, wanted, (message) => new InvalidError(`${label}: ${message}`, "type"));
      const now = this.now();
      const serial = nextSerial(row.serial, now);
      const next = { ...row, serial, updated_at: now };
      // A signed zone edited where the change falls (its records not read, the zone not built again), when the signer can be sure of it.
      const edited = this.signedChange(tx, row, next, { owner: stored, type, records: rrset });
      if (edited !== null) {
        // The zone's records counted (a scan of its rows) only when the change adds some: the quota refuses only growth.
        const replaced = sql.rrsetCount(tx, row.id, ownerKey, type);
        if (wanted.length > replaced) {
          const count = sql.recordCount(tx, row.id);
          this.refuseOverRecordQuota(row.name, count, count - replaced + wanted.length, (message) => new ConflictError(message));
        }
      } else {
        const stored = storedRecords(tx, row.id);
        const others = stored.filter((r) => !(r.type === type && canonical(r.name) === ownerKey));
        this.refuseOverRecordQuota(row.name, stored.length, others.length + wanted.length, (message) => new ConflictError(message));
        refusing("records", () => Zone.build(origin, [soaRecord(next), ...others, ...wanted]));
        if (type === RRType.NS) this.refuseUndelegating(tx, row, [...others, ...wanted]);
      }
      this.refuseCuttingOffProviders(tx, row, wanted);
      sql.deleteRrset(tx, row.id, ownerKey, type);
      for (const r of wanted) sql.insertRecord(tx, { zone_id: row.id, owner: ownerKey, type, ttl: r.ttl, rdata: r.rdata });
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      const what = wanted.length === 0 ? "removed" : `${wanted.length} record(s), TTL ${ttl}`;
      this.k.audit.record(tx, event(caller, row, "dns.rrset.update", `${label}: ${what}; serial ${serial}`));
      if (edited !== null) this.signedInWrites.set(row.id, { serial, updatedAt: now, zone: edited });
      else this.signInWrite(tx, row.id);
      return { zone: row.name, serial, name: ownerKey, type: typeToText(type), ttl, records: wanted.map((r) => rdataToText(type, r.rdata)) };
    });
  }

  /**
   * A signed zone's change (`row` becoming `next`, one RRset replaced) signed by editing the
   * zone served for `row` (ZoneSigner.signChangeInWrite): its signatures stored in `tx`. Null —
   * the caller reads the zone, builds and checks it whole, and signs it so (signInWrite) — when
   * the zone is not signed, when the signed zone at hand is not the one `row` says (a write
   * signed in this batch, else the one served, each with its serial and updated_at), or when
   * the signer cannot be sure of the edit (dnssec.ts signChange: a delegation, a CNAME beside
   * data, anything Zone.build would refuse or adjust, a rollover's or a refresh's signing).
   */
  private signedChange(tx: Database, row: sql.ZoneRow, next: sql.ZoneRow, change: RrsetChange): Zone | null {
    if (!this.signer.isSigned(row.id, tx)) return null;
    const pending = this.signedInWrites.get(row.id);
    const served = pending !== undefined ? (pending.serial === row.serial && pending.updatedAt === row.updated_at ? pending.zone : null) : this.signer.servedAt(row);
    if (served === null) return null;
    return this.signer.signChangeInWrite(tx, row, next, served, soaRecord(next), [change]);
  }

  /**
   * Replaces every record of the zone with a zone file's, all or nothing. An SOA in the file
   * sets the zone's SOA fields (its serial is taken only if it is ahead of the next one).
   */
  async import(caller: Caller, organizationId: string, zone: string, input: { content: string; dry_run?: boolean }) {
    const initial = this.zoneRow(organizationId, zone);
    const origin = originOf(initial);
    const parsed = refusing("content", () => parseZoneFile(input.content, { origin, defaultTtl: initial.ttl }));
    const soas = parsed.filter((r) => r.type === RRType.SOA);
    for (const s of soas) {
      if (canonical(s.name) !== initial.name) throw new InvalidError(`line ${s.line}: ${canonical(s.name)} SOA: the SOA must be at the zone apex`, "content");
    }
    if (soas.length > 1) throw new InvalidError(`line ${soas[1]!.line}: a zone has exactly one SOA`, "content");
    const fileSoa = soas[0] ? soaFields(soas[0].ttl, soas[0].rdata, soas[0].line, origin) : null;
    for (const r of parsed.filter((r) => r.type === RRType.NS)) {
      const target = nsTarget(r.rdata);
      if (!isHostName(target, origin)) throw new InvalidError(`line ${r.line}: ${canonical(r.name)} NS ${nameToText(target)}: ${NOT_A_HOST_NAME}`, "content");
    }
    const records: RR[] = parsed.filter((r) => r.type !== RRType.SOA).map(({ name, ttl, type, rdata }) => ({ name, ttl, type, rdata }));
    const owners: Owned[] = parsed.map(({ name, type, line }) => ({ name, type, line }));
    const run = (tx: Database) => {
      const row = this.zoneRow(organizationId, zone, tx);
      let serial = nextSerial(row.serial, this.now());
      if (fileSoa && serialLess(serial, fileSoa.serial)) serial = fileSoa.serial;
      const next: sql.ZoneRow = { ...row, ...(fileSoa?.soa ?? {}), serial };
      const built = refusing("records", () => Zone.build(origin, [soaRecord(next), ...records]));
      this.refuseUnsignable(tx, row, parsed, (message, r) => new InvalidError(`line ${r.line}: ${canonical(r.name)} ${typeToText(r.type)}: ${message}`, "content"));
      this.refuseCuttingOffProviders(tx, row, owners);
      this.refuseUndelegating(tx, row, records);
      const before = new Map(storedRecords(tx, row.id).map((r) => [recordKey(r), r.ttl]));
      const after = new Map(built.records().filter((r) => r.type !== RRType.SOA).map((r) => [recordKey(r), r.ttl]));
      const added = [...after.keys()].filter((key) => !before.has(key)).length;
      const removed = [...before.keys()].filter((key) => !after.has(key)).length;
      const changed = [...after].filter(([key, ttl]) => before.has(key) && before.get(key) !== ttl).length;
      this.refuseOverRecordQuota(row.name, before.size, after.size, (message) => new InvalidError(message, "content"));
      const result = { zone: row.name, dry_run: input.dry_run === true, serial: input.dry_run ? row.serial : serial, records: after.size, added, removed, changed, warnings: [...built.warnings] };
      if (input.dry_run) return result;
      sql.deleteRecordsOf(tx, row.id);
      writeAll(tx, row.id, built);
      sql.updateZoneSoa(tx, row.id, next, serial, this.now());
      this.k.audit.record(tx, event(caller, row, "dns.zone.import", `${row.name}: ${after.size} record(s), +${added} -${removed} ~${changed}; serial ${serial}`));
      this.signInWrite(tx, row.id);
      return result;
    };
    // A dry run reads inside no transaction: it writes nothing.
    return input.dry_run ? run(this.db) : this.write(run);
  }
}

// --- helpers -----------------------------------------------------------------------------

const originOf = (row: sql.ZoneRow): Name => parseName(row.name, null);

/** A record's owner and type, and where a zone file has it. */
type Owned = { name: Name; type: number; line?: number };

/** Does `zone` delegate `name` (an NS record at it, or above it below the zone's apex)? */
function delegatedFrom(db: Database, zone: sql.ZoneRow, name: Name): boolean {
  return delegates(storedRecords(db, zone.id), originOf(zone), name);
}

/** Do `records`, a zone's at `origin`, delegate `name` (an NS record at it, or above it below the apex)? */
function delegates(records: readonly RR[], origin: Name, name: Name): boolean {
  return records.some((r) => r.type === RRType.NS && r.name.length > origin.length && isSubdomain(name, r.name));
}

function storedRecords(db: Database, zoneId: string): RR[] {
  return sql.recordsOf(db, zoneId).map((r) => ({ name: parseName(r.owner, null), ttl: r.ttl, type: r.type, rdata: new Uint8Array(r.rdata) }));
}

/** Writes a built zone's records (every one but the SOA, which is the zone's fields). */
function writeAll(tx: Database, zoneId: string, zone: Zone): void {
  for (const r of zone.records()) {
    if (r.type === RRType.SOA) continue;
    sql.insertRecord(tx, { zone_id: zoneId, owner: canonical(r.name), type: r.type, ttl: r.ttl, rdata: r.rdata });
  }
}

const MAX_SOA_TIMER = 2_147_483_647;

const recordKey = (r: RR) => `${canonical(r.name)} ${r.type} ${hex(r.rdata)}`;

/** The zone's SOA fields as a record, with its own TTL (else the zone's default). */
export function soaRecord(row: sql.ZoneRow): RR {
  const origin = originOf(row);
  const tokens = [row.soa_mname, row.soa_rname, row.serial, row.soa_refresh, row.soa_retry, row.soa_expire, row.soa_minimum].map(String);
  return { name: origin, ttl: row.soa_ttl ?? row.ttl, type: RRType.SOA, rdata: parseRdata(RRType.SOA, tokens, origin) };
}

/**
 * An SOA record (its TTL and data) as the zone's fields and its serial. Its timers are 32-bit
 * on the wire, but the zone's fields hold 0–2147483647 as the API does (RFC 2181 section 8 and
 * RFC 2308 section 4 bound TTLs and the negative TTL so; a larger value is read as 0 or as
 * negative by some): refused here, whether written plainly or in the generic form.
 */
function soaFields(ttl: number, rdata: Uint8Array, line: number, origin: Name): { soa: sql.Soa; serial: number } {
  const [, rname, serial, refresh, retry, expire, minimum] = rdataToText(RRType.SOA, rdata).split(" ");
  const timers = { refresh, retry, expire, minimum };
  for (const [field, value] of Object.entries(timers)) {
    if (Number(value) > MAX_SOA_TIMER) throw new InvalidError(`line ${line}: SOA ${field} ${value} is above ${MAX_SOA_TIMER} (RFC 2181 section 8)`, "content");
  }
  // The primary name server, as a new zone's soa.mname is checked.
  const primary = nameFromWire(rdata, 0).name;
  if (!isHostName(primary, origin)) throw new InvalidError(`line ${line}: ${nameToText(origin)} SOA MNAME ${nameToText(primary)}: ${NOT_A_HOST_NAME}`, "content");
  return {
    soa: { soa_ttl: ttl, soa_mname: canonical(primary), soa_rname: canonical(parseName(rname!, null)), soa_refresh: Number(refresh), soa_retry: Number(retry), soa_expire: Number(expire), soa_minimum: Number(minimum) },
    serial: Number(serial),
  };
}

function zoneView(row: sql.ZoneRow) {
  return {
    id: row.id,
    organization: row.organization_id,
    name: row.name,
    ttl: row.ttl,
    serial: row.serial,
    soa: { ttl: row.soa_ttl ?? row.ttl, mname: row.soa_mname, rname: row.soa_rname, refresh: row.soa_refresh, retry: row.soa_retry, expire: row.soa_expire, minimum: row.soa_minimum },
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

function recordView(r: RR) {
  return { name: canonical(r.name), type: typeToText(r.type), ttl: r.ttl, data: storedRdataToText(r.type, r.rdata) };
}

function event(caller: Caller, zone: sql.ZoneRow, action: string, reason: string): AuditEventInput {
  return {
    action,
    outcome: "success",
    organization: zone.organization_id,
    resource: { type: "dns_zone", id: zone.id },
    reason,
    actor: actorOf(caller.principal),
    request: caller.request,
  };
}

/**
 * What would leave the zone (or a delegation in it) unreachable although it is served: a name
 * server named inside the zone with no address in it. Nothing can ask it — resolvers need its
 * address (glue) before they can — so a zone made with the default `ns1.<zone>` is lame until
 * that name gets an A or AAAA record, or other name servers are named.
 */
export function nameServerProblems(zone: string, records: ReadonlyArray<{ name: string; type: string; data: string }>): string[] {
  const withAddress = new Set(records.filter((r) => r.type === "A" || r.type === "AAAA").map((r) => r.name));
  const inZone = (name: string) => name === zone || name.endsWith(`.${zone}`);
  const problems: string[] = [];
  for (const ns of records.filter((r) => r.type === "NS")) {
    const target = ns.data.toLowerCase();
    if (inZone(target) && !withAddress.has(target)) {
      problems.push(`name server ${target} (NS of ${ns.name}) is in the zone but has no A or AAAA record: nothing can reach it; add one, or name other name servers`);
    }
  }
  return [...new Set(problems)];
}

const NOT_A_HOST_NAME = "a name server's host name, such as ns1.example.net (not the root, a wildcard or an address)";

/**
 * Can `name` be a name server's host name? Not the root, a wildcard or an address written as a
 * name, which would leave the zone (or the delegation) lame: an address is every label digits
 * (`192.0.2.53.`: no top-level domain is all digits), or the labels within `origin` are an IPv4
 * address (`192.0.2.53` without the final dot, in the API or a zone file, is
 * `192.0.2.53.<zone>`), or a label has a colon (`2001:db8::53`). `1.example.org.` is a host
 * name (found in review: every all-digit label within the zone was refused, `ns` of a new zone
 * too). Checked on the name, not its text, so that the generic form (`\# 1 00`, the root) is too.
 */
function isHostName(name: Name, origin: Name | null): boolean {
  const labels = name.map((label) => Buffer.from(label).toString("latin1"));
  const digits = (some: string[]) => some.length > 0 && some.every((label) => /^\d+$/.test(label));
  const anIpv4Address = (some: string[]) => some.length === 4 && some.every((label) => /^\d{1,3}$/.test(label) && Number(label) <= 255);
  const withinOrigin = origin !== null && isSubdomain(name, origin) ? labels.slice(0, name.length - origin.length) : [];
  return name.length > 0 && !labels.includes("*") && !digits(labels) && !anIpv4Address(withinOrigin) && !labels.some((label) => label.includes(":"));
}

/** The host an NS record names. */
const nsTarget = (rdata: Uint8Array): Name => nameFromWire(rdata, 0).name;

/**
 * `text` as a name server's host name, relative to `origin` unless absolute (null: it must
 * be); one that is not a host name is refused naming `field`, whether the API's `ns` or
 * `soa.mname` or the `[dns] default_nameservers` setting. Record data (PUT, import) is checked
 * the same way, naming the record.
 */
function nameServerName(text: string, origin: Name | null, field: string): Name {
  const name = refusing(field, () => parseName(text, origin));
  if (!isHostName(name, origin)) throw new InvalidError(NOT_A_HOST_NAME, field);
  return name;
}

/**
 * `[dns] default_nameservers` as absolute names, each once (whatever its case). A bad one is
 * refused naming the setting, not the field of the request that happened to use it.
 */
export function configuredNameservers(configured: readonly string[]): string[] {
  const seen = new Set<string>();
  const names: string[] = [];
  configured.forEach((text, i) => {
    const name = nameServerName(text.endsWith(".") ? text : `${text}.`, null, `dns.default_nameservers[${i}]`);
    const canonicalText = nameToText(lowerName(name));
    if (!seen.has(canonicalText)) names.push(canonicalText);
    seen.add(canonicalText);
  });
  return names;
}
