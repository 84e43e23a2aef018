/**
 * The country database that ships inside the binary, so that geo data works on a fresh
 * appliance with no download and no account: sapics' geo-whois-asn-country (GeoFeed, the five
 * RIRs' WHOIS and their IP-to-ASN-country data). `with { type: "file" }` makes
 * `bun build --compile` embed the file; at run time the path points into the binary's own
 * file system ($bunfs), from source it is the file in node_modules.
 */
import dbPath from "@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb" with { type: "file" };
// A JSON import is bundled too: the package's version is the data's date.
import pkg from "@ip-location-db/geo-whois-asn-country-mmdb/package.json" with { type: "json" };

export interface EmbeddedDatabase {
  /** npm package and version the data came from. */
  source: string;
  /** YYYY-MM-DD, from the package version (2.3.2026061719 was built on 2026-06-17). */
  date: string | null;
  /**
   * The package declares CC0-1.0, but its README says the underlying WHOIS/ASN data is the
   * NRO's, under CC BY 4.0 with attribution to nro.net: both are stated, the stricter one
   * (attribution) is what an operator must honour.
   */
  licence: string;
  path: string;
}

export const EMBEDDED_COUNTRY_DB: EmbeddedDatabase = {
  source: `${pkg.name}@${pkg.version}`,
  date: dateFromVersion(pkg.version),
  licence: `${pkg.license} (package); data CC BY 4.0 NRO (attribution: nro.net)`,
  path: dbPath,
};

/** `major.minor.YYYYMMDDHH` → `YYYY-MM-DD`; null when the scheme ever changes. */
export function dateFromVersion(version: string): string | null {
  const match = /^\d+\.\d+\.(\d{4})(\d{2})(\d{2})\d{2}$/.exec(version);
  return match ? `${match[1]}-${match[2]}-${match[3]}` : null;
}

/** The database's bytes (7.8 MB), read from the binary or node_modules. */
export async function readEmbeddedCountryDb(): Promise<Buffer> {
  return Buffer.from(await Bun.file(dbPath).arrayBuffer());
}
