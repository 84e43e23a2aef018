/**
 * Geo data for an address: country (and, with a City database, continent and city), the
 * autonomous system, and anonymity flags, for the shield's policies and the audit trail.
 *
 * Sources, each optional except the first:
 * - the embedded country database (geo-whois-asn-country, in the binary: works offline), which
 *   answers nothing for private and other non-global addresses (geo-special.ts);
 * - an operator's GeoLite2/GeoIP2 City or Country database: its country wins over the embedded one;
 * - an ASN database (number and organisation);
 * - an Anonymous-IP database (VPN, hosting, proxies, Tor).
 *
 * Operator files are reloaded when they change (geo-source.ts). A configured file that is
 * missing or unusable at start does not stop the appliance: it starts on what it has (at
 * least the embedded countries), status() and the log say what is wrong, and the file is
 * picked up as soon as a usable one appears. Geo data refines decisions; refusing to start
 * without it would turn a stale download into an outage.
 *
 * Answers are cached per address string (two generations of `cacheSize`), and the cache is
 * emptied whenever a database is replaced.
 */
import type { Logger } from "../log.ts";
import { parseIp, unmapIpv4, type IpAddress } from "../net/ip.ts";
import { BoundedMap } from "../bounded-map.ts";
import { EXPECTED_TYPES, OpenedDatabase, type Projection } from "./geo-db.ts";
import { fieldPath, type FieldReader } from "./geo-decode.ts";
import { EMBEDDED_COUNTRY_DB, readEmbeddedCountryDb } from "./geo-embedded.ts";
import { isNonGlobal } from "./geo-special.ts";
import { DatabaseSource, type Slot, type SourceState } from "./geo-source.ts";

export { EMBEDDED_COUNTRY_DB } from "./geo-embedded.ts";

export interface AnonymousFlags {
  /** Any kind of anonymising network (is_anonymous, or any flag below). */
  any: boolean;
  vpn: boolean;
  hosting: boolean;
  publicProxy: boolean;
  residentialProxy: boolean;
  tor: boolean;
}

export interface GeoInfo {
  /** ISO 3166-1 alpha-2. */
  country: string | null;
  /** Continent code (EU, NA, ...), from a City/Country database. */
  continent?: string | null;
  /** English city name, from a City database. */
  city?: string | null;
  asn: number | null;
  organisation: string | null;
  /** null when no Anonymous-IP database is loaded (unknown, not "not anonymous"). */
  anonymous: AnonymousFlags | null;
}

export interface GeoDatabaseStatus {
  kind: "country-default" | "city" | "country" | "asn" | "anonymous";
  /** null for the embedded database. */
  path: string | null;
  databaseType: string | null;
  /** YYYY-MM-DD. */
  buildDate: string | null;
  licence: string | null;
  /** ISO 8601: when the data in service was loaded. */
  loadedAt: string | null;
  /** The last failure; the data in service (if any) is the last good one. */
  error: string | null;
  records?: number;
}

export interface GeoOptions {
  /** GeoLite2/GeoIP2 City or Country .mmdb. Paths are optional; "" counts as none. */
  city?: string;
  asn?: string;
  anonymous?: string;
  /** How often the files are checked for a change (ms). Default 5000; 0: never reloaded. */
  pollMs?: number;
  log: Logger;
  now?: () => number;
  /** Answers kept per generation of the address cache. Default 10 000; 0 turns it off. */
  cacheSize?: number;
}

interface CityRecord {
  country: string | null;
  continent: string | null;
  city: string | null;
}

interface AsnRecord {
  asn: number | null;
  organisation: string | null;
}

/** Answers are shared (cached), so they are frozen: a caller cannot change another's. */
const NOTHING: GeoInfo = Object.freeze({ country: null, continent: null, city: null, asn: null, organisation: null, anonymous: null });
const NOT_ANONYMOUS: AnonymousFlags = Object.freeze({ any: false, vpn: false, hosting: false, publicProxy: false, residentialProxy: false, tor: false });
const DEFAULT_POLL_MS = 5000;
const DEFAULT_CACHE = 10_000;

export class GeoIntel {
  private readonly cache: BoundedMap<string, GeoInfo>;

  private constructor(
    private readonly embedded: OpenedDatabase<string> | null,
    private readonly embeddedState: GeoDatabaseStatus,
    private readonly cityDb: DatabaseSource<CityRecord> | null,
    private readonly asnDb: DatabaseSource<AsnRecord> | null,
    private readonly anonymousDb: DatabaseSource<AnonymousFlags> | null,
    cacheSize: number,
  ) {
    this.cache = new BoundedMap(2 * cacheSize);
  }

  /** Loads every database (failures are reported in status(), never thrown) and starts polling. */
  static async open(options: GeoOptions): Promise<GeoIntel> {
    const now = options.now ?? Date.now;
    const log = options.log;
    const [embedded, embeddedState] = await openEmbedded(log, now);
    // The sources call back on a swap, before the instance exists: route it through a box.
    let onSwap = () => {};
    const source = <Kept>(slot: Slot, path: string | undefined, project: Projection<Kept>) =>
      path
        ? new DatabaseSource<Kept>({ slot, path, expectedType: EXPECTED_TYPES[slot], project, pollMs: options.pollMs ?? DEFAULT_POLL_MS, log, now, onSwap: () => onSwap() })
        : null;
    const geo = new GeoIntel(
      embedded,
      embeddedState,
      source("city", options.city, projectCity),
      source("asn", options.asn, projectAsn),
      source("anonymous", options.anonymous, projectAnonymous),
      options.cacheSize ?? DEFAULT_CACHE,
    );
    onSwap = () => geo.cache.clear(); // cached answers came from the old data
    await Promise.all([geo.cityDb, geo.asnDb, geo.anonymousDb].map((s) => s?.start()));
    return geo;
  }

  /** What is known about an address (IPv4, IPv6, or IPv4-mapped IPv6). Anything else: all null. */
  lookup(ip: string): GeoInfo {
    const cached = this.cache.get(ip);
    if (cached !== undefined) return cached;
    if (typeof ip !== "string") return NOTHING;
    const parsed = parseIp(ip);
    if (parsed === null) return NOTHING; // not cached: junk must not push real addresses out
    // ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket; databases file it under IPv4.
    return this.resolve(unmapIpv4(parsed), ip);
  }

  /** The same for an address already parsed (and unmapped); `text` is its cache key. */
  lookupAddress(address: IpAddress, text: string): GeoInfo {
    return this.cache.get(text) ?? this.resolve(address, text);
  }

  private resolve(address: IpAddress, ip: string): GeoInfo {
    const place = this.cityDb?.current?.find(address) ?? null;
    const network = this.asnDb?.current?.find(address) ?? null;
    const anonymousDb = this.anonymousDb?.current;
    const info: GeoInfo = Object.freeze({
      country: place?.country ?? (isNonGlobal(address) ? null : this.embedded?.find(address)) ?? null,
      continent: place?.continent ?? null,
      city: place?.city ?? null,
      asn: network?.asn ?? null,
      organisation: network?.organisation ?? null,
      // With the database loaded, an address it does not list is known not to be anonymous.
      anonymous: anonymousDb ? (anonymousDb.find(address) ?? NOT_ANONYMOUS) : null,
    });
    this.cache.set(ip, info);
    return info;
  }

  /** One entry per database: the embedded one first, then each configured file. */
  status(): GeoDatabaseStatus[] {
    const out: GeoDatabaseStatus[] = [{ ...this.embeddedState }];
    const add = (kind: GeoDatabaseStatus["kind"], source: { path: string; state: SourceState } | null) => {
      // The operator's own files: their licence (GeoLite2 EULA, a commercial one) is not in the file.
      if (source) out.push({ kind, path: source.path, ...source.state, licence: null });
    };
    // A Country database given as the "city" one is reported as what it is.
    const cityType = this.cityDb?.state.databaseType;
    add(cityType && !/city|enterprise/i.test(cityType) ? "country" : "city", this.cityDb);
    add("asn", this.asnDb);
    add("anonymous", this.anonymousDb);
    return out;
  }

  /** Stops polling; lookups keep answering from the data loaded. */
  close(): void {
    for (const source of [this.cityDb, this.asnDb, this.anonymousDb]) source?.close();
  }
}

async function openEmbedded(log: Logger, now: () => number): Promise<[OpenedDatabase<string> | null, GeoDatabaseStatus]> {
  const state: GeoDatabaseStatus = {
    kind: "country-default",
    path: null,
    databaseType: null,
    buildDate: EMBEDDED_COUNTRY_DB.date,
    licence: EMBEDDED_COUNTRY_DB.licence,
    loadedAt: null,
    error: null,
  };
  try {
    const db = new OpenedDatabase<string>(await readEmbeddedCountryDb(), projectCountryCode);
    state.databaseType = db.metadata.databaseType;
    state.buildDate = db.metadata.buildDate ?? state.buildDate;
    state.loadedAt = new Date(now()).toISOString();
    return [db, state];
  } catch (error) {
    // Only a broken build gets here; lookups still answer (with null countries).
    state.error = `embedded country database unusable: ${(error as Error).message}`;
    log.error("geo database not loaded", { database: "country-default", error: state.error });
    return [null, state];
  }
}

// Projections: the few fields kept from a record. A file is outside input: a field of the
// wrong type reads as absent.

const COUNTRY_CODE = fieldPath("country_code");
const COUNTRY = fieldPath("country", "iso_code");
const REGISTERED_COUNTRY = fieldPath("registered_country", "iso_code");
const CONTINENT = fieldPath("continent", "code");
const CITY_NAME = fieldPath("city", "names", "en");
const ASN = fieldPath("autonomous_system_number");
const ASN_ORGANISATION = fieldPath("autonomous_system_organization");
const ANONYMOUS = fieldPath("is_anonymous");
const VPN = fieldPath("is_anonymous_vpn");
const HOSTING = fieldPath("is_hosting_provider");
const PUBLIC_PROXY = fieldPath("is_public_proxy");
const RESIDENTIAL_PROXY = fieldPath("is_residential_proxy");
const TOR = fieldPath("is_tor_exit_node");

const text = (value: string | null): string | null => (value === "" ? null : value);

function projectCountryCode(fields: FieldReader, at: number): string | null {
  return text(fields.string(at, COUNTRY_CODE));
}

function projectCity(fields: FieldReader, at: number): CityRecord {
  return {
    // registered_country when there is no location country (anycast, satellite).
    country: text(fields.string(at, COUNTRY)) ?? text(fields.string(at, REGISTERED_COUNTRY)),
    continent: text(fields.string(at, CONTINENT)),
    city: text(fields.string(at, CITY_NAME)),
  };
}

function projectAsn(fields: FieldReader, at: number): AsnRecord {
  const asn = fields.integer(at, ASN);
  return { asn: asn !== null && asn >= 0 ? asn : null, organisation: text(fields.string(at, ASN_ORGANISATION)) };
}

function projectAnonymous(fields: FieldReader, at: number): AnonymousFlags {
  const flags = {
    vpn: fields.boolean(at, VPN) === true,
    hosting: fields.boolean(at, HOSTING) === true,
    publicProxy: fields.boolean(at, PUBLIC_PROXY) === true,
    residentialProxy: fields.boolean(at, RESIDENTIAL_PROXY) === true,
    tor: fields.boolean(at, TOR) === true,
  };
  const any = fields.boolean(at, ANONYMOUS) === true || Object.values(flags).includes(true);
  return Object.freeze({ any, ...flags });
}
