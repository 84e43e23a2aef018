/**
 * Serving the records of record providers (src/record-providers.ts): each provider owns a
 * domain; its records replace whatever a hosted zone holds at or below that domain, or, when no
 * hosted zone contains the domain, make a zone of their own (for resolvers that forward the
 * domain to Citadel). A provider's bad record is logged and left out, never the whole zone: a
 * plugin's mistake must not take a hosted zone off the air. Nor may the hosted zone's data take
 * the provider's names away: a delegation on the way down to its domain is not served.
 */
import type { Logger } from "../../src/log.ts";
import type { RecordProvider } from "../../src/record-providers.ts";
import { isSubdomain, lowerName, nameEquals, nameToText, parseName, type Name } from "./names.ts";
import { splitTokens } from "./presentation.ts";
import { parseRdata, RRType, typeFromText } from "./rdata.ts";
import { Zone, type RR } from "./zone.ts";
import { signaturesOf } from "./dnssec.ts";

/** TTL and negative TTL of a provider's own zone: its names change as nodes come and go. */
const OWN_ZONE_TTL = 60;

/** The provider's records in wire form; those that do not parse or lie outside its domain are logged and dropped. */
function providedRecords(provider: RecordProvider, domain: Name, log: Logger): RR[] {
  const out: RR[] = [];
  let records: ReturnType<RecordProvider["records"]>;
  try {
    records = provider.records();
  } catch (e) {
    log.error("dns: a record provider failed; its names are not served", { provider: provider.name, error: String(e) });
    return out;
  }
  for (const r of records) {
    try {
      const name = parseName(r.name, domain);
      if (!isSubdomain(name, domain)) throw new Error(`${r.name} is outside ${provider.domain}`);
      const type = typeFromText(r.type);
      if (type === null || type === RRType.SOA) throw new Error(`${r.type} is not a type a provider may give`);
      if (!Number.isInteger(r.ttl) || r.ttl < 0 || r.ttl > 0x7fffffff) throw new Error(`the TTL ${r.ttl} is out of range`);
      out.push({ name, type, ttl: r.ttl, rdata: parseRdata(type, splitTokens(r.data), domain) });
    } catch (e) {
      log.warn("dns: a provided record was left out", { provider: provider.name, record: `${r.name} ${r.type} ${r.data}`, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return out;
}

/** The hosted zone containing `domain` (the deepest one), if any. */
export function hostZone(zones: readonly Zone[], domain: Name): Zone | null {
  let best: Zone | null = null;
  for (const zone of zones) if (isSubdomain(domain, zone.origin) && (best === null || zone.origin.length > best.origin.length)) best = zone;
  return best;
}

/** A zone of a provider's own: an SOA and NS at the domain, then the provider's records. */
function ownZone(domain: Name, serial: number, records: RR[]): Zone {
  const apex = nameToText(lowerName(domain));
  const soa = parseRdata(RRType.SOA, [`ns.${apex}`, `hostmaster.${apex}`, String(serial), "3600", "600", "86400", String(OWN_ZONE_TTL)], domain);
  const ns = parseRdata(RRType.NS, [`ns.${apex}`], domain);
  return Zone.build(domain, [{ name: domain, type: RRType.SOA, ttl: OWN_ZONE_TTL, rdata: soa }, { name: domain, type: RRType.NS, ttl: OWN_ZONE_TTL, rdata: ns }, ...records]);
}

/**
 * `records` (of the zone at `origin`) without a delegation above `domain`, below the apex: it
 * would send the askers of the provider's names to its name servers, and leave the provider's
 * records below a zone cut, which no zone may hold. The API refuses such a delegation; one stored
 * before that (or before the provider's domain came) loses its NS and DS here, and is logged.
 */
function withoutCutsAbove(records: RR[], origin: Name, domain: Name, provider: RecordProvider, log: Logger): RR[] {
  const isCut = (r: RR) => (r.type === RRType.NS || r.type === RRType.DS) && isSubdomain(domain, r.name) && r.name.length > origin.length;
  const cuts = new Set(records.filter(isCut).map((r) => nameToText(lowerName(r.name))));
  for (const cut of cuts) {
    log.warn("dns: a delegation above a record provider's domain is not served: it would hand the provider's names to other name servers (remove it)", { zone: nameToText(origin), delegation: cut, provider: provider.name, domain: provider.domain });
  }
  return cuts.size === 0 ? records : records.filter((r) => !isCut(r));
}

/**
 * The hosted zone with the provider's records in place of its own below the domain. When they
 * do not fit (a CNAME beside data), the zone is served without them and without its own: what
 * it held there (stored before the API refused it) would otherwise answer for the provider's
 * names. `kept` is part of a zone that loaded, so it loads.
 */
function merged(host: Zone, kept: RR[], records: RR[], provider: RecordProvider, log: Logger): Zone {
  try {
    return Zone.build(host.origin, [...kept, ...records]);
  } catch (e) {
    log.error("dns: a record provider's names do not fit; they are not served", { provider: provider.name, domain: provider.domain, error: e instanceof Error ? e.message : String(e) });
    return Zone.build(host.origin, kept, { loading: true });
  }
}

/**
 * The zones to serve: `stored` with every provider's records merged in, plus a zone for each
 * provider whose domain no stored zone contains. `ownSerial(provider)` gives such a zone's serial.
 */
export function withProvidedRecords(stored: Zone[], providers: readonly RecordProvider[], ownSerial: (provider: string) => number, log: Logger): Zone[] {
  const zones = [...stored];
  for (const provider of providers) {
    let domain: Name;
    try {
      domain = parseName(provider.domain, null);
    } catch (e) {
      log.error("dns: a record provider's domain is not a name", { provider: provider.name, domain: provider.domain, error: String(e) });
      continue;
    }
    // A stored zone below the provider's domain (made before the provider or its domain came)
    // would answer for the provider's names, the deepest zone winning: it is not served.
    for (let i = zones.length - 1; i >= 0; i--) {
      const zone = zones[i]!;
      if (isSubdomain(zone.origin, domain) && !nameEquals(zone.origin, domain)) {
        log.warn("dns: a hosted zone below a record provider's domain is not served (delete it, or change the provider's domain)", { zone: nameToText(zone.origin), provider: provider.name, domain: provider.domain });
        zones.splice(i, 1);
      }
    }
    const records = providedRecords(provider, domain, log);
    const host = hostZone(zones, domain);
    if (host !== null && signaturesOf(host) !== undefined) {
      // Signing a zone that holds a provider's names is refused (dnssec-service.ts); a provider
      // whose domain came into one since is left out, rather than served unsigned inside it.
      log.error("dns: a record provider's domain lies in a signed zone: its names are not served (Citadel does not sign them; turn DNSSEC off or move the domain)", { provider: provider.name, domain: provider.domain, zone: nameToText(host.origin) });
      continue;
    }
    try {
      if (host === null) {
        zones.push(ownZone(domain, ownSerial(provider.name), records));
        continue;
      }
      // The provider owns its subtree; the zone's SOA and apex NS stay when it owns the apex.
      const kept = withoutCutsAbove(
        host.records().filter((r) => !isSubdomain(r.name, domain) || (nameEquals(r.name, host.origin) && (r.type === RRType.SOA || r.type === RRType.NS))),
        host.origin,
        domain,
        provider,
        log,
      );
      zones[zones.indexOf(host)] = merged(host, kept, records, provider, log);
    } catch (e) {
      log.error("dns: a record provider's names do not fit; they are not served", { provider: provider.name, domain: provider.domain, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return zones;
}
