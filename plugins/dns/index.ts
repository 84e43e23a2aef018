/**
 * The `dns` plugin, control side: zones of an organization, their records by RRset, zone-file
 * import and export. Every change is validated as a whole zone before it is written (see
 * service.ts). The listener (server.ts) serves the zones DnsService builds, each built again
 * when it changes (ServedZones).
 */
import { isSubdomain, lowerName, nameToText, parseName, type Name } from "./names.ts";
import { startDnsServer, ZoneTable } from "./server.ts";
import { Elysia } from "elysia";
import { subjectsOf } from "../../src/subjects.ts";
import { dnsOrganizationDeletion, dnsSubjects } from "./subject.ts";
import { organizationDeletionsOf } from "../../src/workspace-deletions.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf } from "../../src/http/request-meta.ts";
import { dataPath } from "../../src/config/load.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { ConfigError } from "../../src/config/error.ts";
import { Lifecycle } from "../../src/lifecycle.ts";
import { dnsCommands } from "./commands.ts";
import { dnsMigrations } from "./migrations.ts";
import * as m from "./model.ts";
import { configuredNameservers, DnsService, type Caller } from "./service.ts";
import { DnssecService } from "./dnssec-service.ts";
import { AnalyticsQuery, AnalyticsResponse, DnsAnalytics } from "./analytics.ts";
import { Notifier, notifySources } from "./notify.ts";
import { withProvidedRecords } from "./provided.ts";
import { ProviderHorizon } from "./horizon.ts";
import { ViewSerials } from "./view-serials.ts";
import { bothObservers, QueryLog } from "./query-log.ts";
import { ShieldGate } from "./shield-gate.ts";
import { FloodWatch } from "./flood-watch.ts";
import { DomainSet, parseBlocklist } from "./blocklist.ts";
import { allowClients, ResolverOptionError, startResolver, type Resolver, type ResolverStats } from "./resolver.ts";
import { parseClientCidr } from "../../src/net/ip.ts";
import { readFileSync } from "node:fs";
import type { QueryObserver } from "./server.ts";
import { shieldVerdictCounters, type Counter, type Metrics, type ShieldVerdictCounters } from "../../src/metrics.ts";
import { Rcode } from "./message.ts";
import { RRType } from "./rdata.ts";
import { RCODE_NOTAUTH } from "./tsig.ts";
import { TransferService, type TransferView } from "./secondaries.ts";
import { Catalog, CatalogSerials, memberIdOfProvider, memberIdOfZone, type CatalogAnnouncement, type CatalogMember } from "./catalog.ts";
import { catalogName, DnsSettings, udpWithoutTcp } from "./settings.ts";
import * as sql from "./store.ts";
import type { Zone } from "./zone.ts";
import type { Logger } from "../../src/log.ts";
import type { RecordProvider } from "../../src/record-providers.ts";

const ACTIONS = [
  ["dns.zone.create", "A zone was created (its SOA and apex NS records)."],
  ["dns.zone.delete", "A zone and its records were removed."],
  ["dns.zone.import", "A zone's records were replaced from a zone file."],
  ["dns.rrset.update", "One RRset of a zone was replaced or removed."],
  ["dns.zone.dnssec.enable", "A zone was signed from then on (DNSSEC): a signing key was made for it."],
  ["dns.zone.dnssec.disable", "A zone's DNSSEC was turned off: its signing key was removed (both, during a key rollover)."],
  ["dns.zone.dnssec.denial", "A signed zone's denial of existence was switched (NSEC, NSEC3, or NSEC3 with another salt): it was signed again with the new chain."],
  ["dns.zone.dnssec.rollover.start", "A zone's key rollover started: a new signing key was made, published beside the zone's key and signing the zone too."],
  ["dns.zone.dnssec.rollover.finish", "A zone's key rollover finished: the old key was retired (its DNSKEY and signatures removed); the new key signs alone."],
  ["dns.zone.dnssec.policy", "A signed zone's CDS/CDNSKEY publication (none, rollover, always, or delete: the parent asked to remove the DS) or its key lifetime changed."],
  ["dns.zone.dnssec.rollover.ready", "A key rollover's new key became ready for the parent: the DS may be replaced by its own; its CDS/CDNSKEY are published when the zone publishes them."],
  ["dns.zone.dnssec.rollover.submitted", "An operator confirmed that the parent publishes the new key's DS alone: the schedule retires the old key after the parent delay."],
  ["dns.zone.dnssec.rollover.cancel", "A zone's key rollover was cancelled: its new key was removed; the zone's key signs alone again."],
  ["dns.tsig.create", "A TSIG key for zone transfers was created or imported."],
  ["dns.tsig.delete", "A TSIG key was removed."],
  ["dns.secondary.create", "A secondary was added: it may transfer zones and is sent NOTIFY."],
  ["dns.secondary.delete", "A secondary was removed."],
] as const;

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });

/** The service made per kernel (per store); the routes, the start hook, the listener and tests share one. */
const services = new WeakMap<object, DnsService>();
export function dnsServiceOf(k: Kernel<DnsSettings>): DnsService {
  let s = services.get(k.store);
  if (!s) services.set(k.store, (s = new DnsService(k)));
  return s;
}

/** The zones' DNSSEC settings, per kernel like the zones. */
const dnssecServices = new WeakMap<object, DnssecService>();
export function dnssecServiceOf(k: Kernel<DnsSettings>): DnssecService {
  let s = dnssecServices.get(k.store);
  if (!s) dnssecServices.set(k.store, (s = new DnssecService(k, dnsServiceOf(k))));
  return s;
}

/** The secondaries and TSIG keys, per kernel like the zones. */
const transferServices = new WeakMap<object, TransferService>();
export function transferServiceOf(k: Kernel<DnsSettings>): TransferService {
  let s = transferServices.get(k.store);
  if (!s) transferServices.set(k.store, (s = new TransferService(k)));
  return s;
}

/** The catalog zone, per kernel like the zones: null when `[dns] catalog` names none. */
const catalogs = new WeakMap<object, Catalog | null>();
export function catalogOf(k: Kernel<DnsSettings>): Catalog | null {
  if (!catalogs.has(k.store)) {
    const origin = catalogName(k.settings.catalog);
    catalogs.set(k.store, origin === null ? null : new Catalog(origin, new CatalogSerials(k)));
  }
  return catalogs.get(k.store)!;
}

/** The catalog's name as configured, canonical; null when there is none. */
function catalogText(k: Kernel<DnsSettings>): string | null {
  const catalog = catalogOf(k);
  return catalog === null ? null : nameToText(catalog.origin);
}

/** The query analytics made per kernel: the listener feeds them, the route reads them (empty when DNS is off). */
const analytics = new WeakMap<object, DnsAnalytics>();
export function dnsAnalyticsOf(k: Kernel<DnsSettings>): DnsAnalytics {
  let a = analytics.get(k.store);
  if (!a) analytics.set(k.store, (a = new DnsAnalytics({ now: () => k.clock.now(), retentionMinutes: k.settings.analytics_retention_minutes ?? 1440 })));
  return a;
}

/** One live zone, built for serving (null when there is none or it does not build). */
export function zoneFor(k: Kernel<DnsSettings>, zoneId: string): Zone | null {
  return dnsServiceOf(k).zone(zoneId);
}

const Z = "/orgs/:org/zones";
const ZONE = `${Z}/:zone`;
const tags = ["dns"];
const READ = { scope: "dns:read", org: "org" } as const;
const WRITE = { scope: "dns:write", org: "org" } as const;
const OPERATOR_READ = { operator: true, scope: "dns:read" } as const;
const OPERATOR_WRITE = { operator: true, scope: "dns:write" } as const;

export const dnsPlugin = definePlugin<DnsSettings>({
  name: "dns",
  service: "dns",
  settings: DnsSettings,
  scopes: ["dns:read", "dns:write"],
  actions: ACTIONS.map(([type, description]) => ({ type, description })),
  migrations: dnsMigrations,

  async start(k) {
    refuseCatalogOverZones(k);
    const dns = dnsServiceOf(k);
    const transfers = transferServiceOf(k);
    const unregisterSubjects = subjectsOf(k.store).register(dnsSubjects(dns));
    const unregisterDeletion = organizationDeletionsOf(k.store).register(dnsOrganizationDeletion(dns));
    // Before anything is served or announced: the zones then go out with their new serials.
    const advanced = await dns.advanceSerialsAfterRestore(k.config.data_dir);
    if (advanced > 0) k.log.warn("dns: after a restore, every zone's serial moved past the one it had before, so secondaries transfer the restored zones", { zones: advanced });
    try {
      configuredNameservers(k.settings.default_nameservers);
    } catch (error) {
      k.log.error("dns: [dns] default_nameservers holds a bad name: zones made without name servers are refused until it is fixed", { error: error instanceof Error ? error.message : String(error) });
    }
    for (const pair of dns.overlappingZones()) {
      k.log.warn("dns: a zone lies below another organization's zone (made before such zones were refused); the deeper one answers for its names: delete one", pair);
    }
    // The authoritative listeners and the filtering resolver are switched on apart: either may
    // run alone (an AdGuard-style resolver without public authoritative service), and both need
    // the hosted zones, which the resolver answers locally.
    const authoritative = k.settings.udp.length > 0 || k.settings.tcp.length > 0;
    const resolving = k.settings.resolver_udp.length > 0 || k.settings.resolver_tcp.length > 0;
    if (!authoritative && !resolving) {
      return async () => {
        unregisterSubjects();
        unregisterDeletion();
      };
    }
    let view: TransferView = transfers.view();
    // Secondaries transfer from the authoritative listener: NOTIFY only once it listens (not
    // without one configured, nor when it could not bind).
    let listening = false;
    // NOTIFY leaves from the UDP listener's address, which the secondaries know as the primary's.
    const sources = notifySources(k.settings.udp.flatMap((text) => parsedAddress(text) ?? []));
    const notifier = new Notifier({ log: k.log, tsigKey: (name) => view.tsigKey(name), now: () => k.clock.now(), sources });
    // The served zones follow the store one change at a time: only the zones that changed are
    // built again (see ServedZones). A zone whose serial moved is announced to its secondaries.
    const table = new ZoneTable();
    // What each provider last had served, and its own zone's serial (stored: a start does not take it back).
    const providerSerials = new ProviderSerials(k);
    const ownSerial = (provider: string) => providerSerials.ownSerial(provider);
    const zones = new ServedZones({
      table,
      versions: () => sql.liveZoneVersions(k.store.db),
      build: (zoneId) => dns.zone(zoneId),
      providers: () => k.records.list(),
      ownSerial,
      log: k.log,
      // A zone new to the served ones reaches catalog consumers through the catalog, whose
      // NOTIFY its own races: their first refusal of it is expected.
      announce: (zone, fresh) => {
        if (listening) notifier.notify(zone, targetsOf(view, zone), { viaCatalog: fresh && catalog !== null });
      },
    });
    const served = zones.served;
    const targetsOf = (transferView: TransferView, zone: Zone) => transferView.notifyTargets(zone.origin, zones.isProviderOwned(zone.origin));
    // The catalog zone's views follow the zones served and the secondaries; a view whose members
    // moved is announced to its secondaries, as a zone whose serial moved is.
    const catalog = authoritative ? catalogOf(k) : null;
    // A change of the zones is handed on as the members that came and went (it runs on the event
    // loop at every zone made or deleted, and costs what changed); a change of the secondaries,
    // rare, as every member.
    let catalogFrom: TransferView | null = null;
    const refreshCatalog = () => {
      // Taken whether or not there is a catalog: else they pile up for as long as Citadel runs
      // (found in review).
      const { added, removed } = zones.takeCatalogChanges();
      if (catalog === null) return;
      let announcements: CatalogAnnouncement[] = [];
      if (catalogFrom !== view) {
        catalogFrom = view;
        announcements = catalog.update(zones.catalogMembers(), view.catalogSubscribers());
      } else if (added.length > 0 || removed.length > 0) announcements = catalog.change(added, removed);
      for (const { zone, targets } of announcements) if (listening) notifier.notify(zone, targets);
    };
    const reload = () => {
      zones.update();
      refreshCatalog();
    };
    // A secondary just added is told about each of its zones at once, so it need not wait for
    // its own schedule to make the first transfer.
    const targetKey = (t: { address: string; port: number; keyName: Name }) => `${t.address} ${t.port} ${nameToText(t.keyName)}`;
    const unsubscribeTransfers = transfers.onChange(() => {
      const before = view;
      view = transfers.view();
      for (const origin of served.keys()) {
        const zone = table.get(parseName(origin, null));
        if (!zone) continue;
        const known = new Set(targetsOf(before, zone).map(targetKey));
        const added = targetsOf(view, zone).filter((t) => !known.has(targetKey(t)));
        // A consumer of the catalog just added learns of its zones from it, as it is announced below.
        if (added.length > 0 && listening) notifier.notify(zone, added, { viaCatalog: catalog !== null });
      }
      refreshCatalog();
    });
    // A provider's change of names gets its zone a new serial: stored for a hosted zone (whose
    // store change then rebuilds it), with the provider for its own zone. The zones its domain
    // touched, before and now, are built again with it. A change that changes no name (the mesh
    // reports every write, an ACL edit too) moves nothing and tells no secondary.
    const providerChanged = (provider: string) => {
      const change = providerSerials.seen(provider);
      if (change === null) return;
      zones.providerChanged(provider);
      const rows = change.moved ? change.domains.flatMap((domain) => unsignedHostRowOf(dns, domain) ?? []) : [];
      if (rows.length === 0) return reload();
      for (const row of new Map(rows.map((r) => [r.id, r])).values()) {
        void dns.bumpSerial(row.id).catch((e) => {
          k.log.error("dns: a zone's serial could not be bumped", { zone: row.name, error: String(e) });
          reload();
        });
      }
    };
    // The providers' names some clients are not told (the mesh's): followed as the providers change.
    // A secondary is told those of a zone it may transfer, asking as for a transfer (with its key).
    const horizon = new ProviderHorizon(
      (client, name, key) => {
        const zone = table.find(name);
        return zone !== null && view.allowed(client, zone.origin, key, zones.isProviderOwned(zone.origin));
      },
      (origin) => zones.isProviderOwned(origin),
    );
    horizon.update(k.records.list());
    // The serial each view of a provider's own zone is told (a mesh network's clients: its own
    // names' changes only), worked out as each zone is built and written behind from a timer.
    const viewSerials = new ViewSerials({
      horizon,
      rows: sql.viewSerials(k.store.db),
      floors: sql.viewFloors(k.store.db),
      persist: (changes) =>
        k.store
          .write((tx) => {
            for (const row of changes.floors) sql.saveViewFloor(tx, row);
            for (const { zone, view } of changes.dropped) sql.dropViewSerial(tx, zone, view);
            for (const row of changes.saved) sql.saveViewSerial(tx, row);
          })
          .catch((e) => k.log.error("dns: the views' serials could not be stored", { error: String(e) })),
      now: () => k.clock.now(),
    });
    table.onSet((zone) => viewSerials.prepare(zone));
    const unsubscribeHorizon = k.records.onChange(() => horizon.update(k.records.list()));
    const unsubscribeProviders = k.records.onChange(providerChanged);
    // Providers registered before this start may have changed since the last run: a new serial then.
    for (const provider of k.records.list()) {
      const change = providerSerials.seen(provider.name);
      zones.providerChanged(provider.name);
      const row = change?.moved ? unsignedHostRowOf(dns, provider.domain) : null;
      if (row) await dns.bumpSerial(row.id);
    }
    reload();
    const unsubscribe = dns.onChange(reload);
    const stopResigning = startResigning(k, dns);
    const queryLog = openQueryLog(k);

    /** The authoritative listeners; null when they cannot listen (the API still manages zones, the resolver still runs). */
    async function startAuthoritative(): Promise<Awaited<ReturnType<typeof startDnsServer>> | null> {
      try {
        const server = await startDnsServer({
          udp: k.settings.udp.map(parseAddress),
          tcp: k.settings.tcp.map(parseAddress),
          zones: table,
          observer: bothObservers(bothObservers(bothObservers(dnsAnalyticsOf(k), queryLog), shieldFeed(k)), queryMetrics(k.metrics)),
          gate: new ShieldGate({
            shield: k.shield,
            onVerdict: countVerdict(shieldVerdictCounters(k.metrics, "dns")),
            rate: k.settings.rrl_responses_per_second,
            throttledRate: k.settings.rrl_throttled_per_second,
            slip: k.settings.rrl_slip,
            trustLoopback: (k.config as { intel?: { trust_loopback?: boolean } }).intel?.trust_loopback ?? true,
            // The response rate limit measures time that passed, not what time it is: on a clock
            // that only goes forward, a wall clock stepped back (NTP, a resumed VM) starves no prefix.
            now: () => performance.now(),
            count: (what) => dnsAnalyticsOf(k).countShield(what),
            exempt: (client) => view.isSecondary(client),
          }),
          tsigKey: (name) => view.tsigKey(name),
          transfers: { allowed: (client, zone, key) => transferAllowed(k, view, client, zone, key, zones.isProviderOwned(zone)) },
          horizon,
          viewSerials,
          ...(catalog ? { catalog: { origin: catalog.origin, viewFor: (client: string, key: Name | null, transfer: boolean) => catalogViewFor(k, catalog, client, key, transfer) } } : {}),
          now: () => k.clock.now(),
          log: k.log,
        });
        k.log.info("dns listening", { udp: k.settings.udp, tcp: k.settings.tcp, zones: table.size });
        return server;
      } catch (error) {
        // Port 5353 is also mDNS's: a desktop's avahi may hold it.
        k.log.error("dns: cannot listen, authoritative DNS is off (set [dns] udp and tcp)", { udp: k.settings.udp, tcp: k.settings.tcp, error: error instanceof Error ? error.message : String(error) });
        return null;
      }
    }

    const server = authoritative ? await startAuthoritative() : null;
    if (server) {
      listening = true;
      // The zones loaded before the listener was up are announced now, and the catalog's views.
      for (const origin of served.keys()) {
        const zone = table.get(parseName(origin, null));
        if (zone) notifier.notify(zone, targetsOf(view, zone));
      }
      for (const { zone, targets } of catalog?.all() ?? []) notifier.notify(zone, targets);
      catalog?.serving(true);
    }
    const resolver = await startFilteringResolver(k, table, horizon, viewSerials);
    return async () => {
      unregisterSubjects();
      unregisterDeletion();
      unsubscribe();
      stopResigning();
      unsubscribeTransfers();
      unsubscribeProviders();
      unsubscribeHorizon();
      catalog?.serving(false);
      // Stopped in the reverse of this order (the resolver first, the query log last), each one
      // even when one before it fails: a socket left open would hold its port.
      const parts = new Lifecycle(k.log);
      parts.started("dns query log", () => queryLog?.close());
      parts.started("dns view serials", () => viewSerials.flush());
      parts.started("dns listeners", () => server?.stop());
      parts.started("dns notifier", () => notifier.stop());
      parts.started("dns resolver", () => resolver?.stop());
      await parts.stopAll();
    };
  },

  routes: (k) => {
    const dns = dnsServiceOf(k);
    const transfers = transferServiceOf(k);
    return new Elysia({ name: "dns" })
      .get("/analytics", ({ query }) => dnsAnalyticsOf(k).snapshot({ minutes: query.minutes }), {
        query: AnalyticsQuery,
        response: AnalyticsResponse,
        detail: { summary: "Query counts of the DNS listener since it started: by zone, type, rcode, transport, top names and client prefixes, per minute (operators)", tags, ...access({ operator: true, scope: "dns:read" }) },
      })
      .get("/tsig-keys", () => transfers.tsigKeys(), {
        response: m.TsigKeyList,
        detail: { summary: "The TSIG keys secondaries sign zone transfers with; never their secrets (operators)", tags, ...access(OPERATOR_READ) },
      })
      .post("/tsig-keys", ({ body, request }) => transfers.createTsigKey(caller(request), body), {
        body: m.NewTsigKey,
        response: m.CreatedTsigKey,
        detail: { summary: "Create (or import) a TSIG key; its secret is shown once (operators)", tags, ...access(OPERATOR_WRITE) },
      })
      .delete(
        "/tsig-keys/:name",
        async ({ params, request }) => {
          await transfers.deleteTsigKey(caller(request), params.name);
          return { ok: true as const };
        },
        { response: m.Done, detail: { summary: "Remove a TSIG key no secondary uses (operators)", tags, ...access(OPERATOR_WRITE) } },
      )
      .get("/secondaries", () => ({ ...transfers.secondaries(), catalog: catalogText(k) }), {
        response: m.SecondaryList,
        detail: { summary: "The secondaries that may transfer zones and are sent NOTIFY (operators)", tags, ...access(OPERATOR_READ) },
      })
      .post("/secondaries", ({ body, request }) => transfers.createSecondary(caller(request), body), {
        body: m.NewSecondary,
        response: m.Secondary,
        detail: { summary: "Add a secondary: transfers from its address signed with its key are allowed, NOTIFY is sent to it (operators)", tags, ...access(OPERATOR_WRITE) },
      })
      .get("/catalog", () => ({ name: catalogText(k), served: catalogOf(k)?.served ?? false, views: catalogOf(k)?.summary() ?? [] }), {
        response: m.Catalog,
        detail: { summary: "The catalog zone (RFC 9432) and each secondary's view of it: the zones it lists, its serial (operators)", tags, ...access(OPERATOR_READ) },
      })
      .delete(
        "/secondaries/:name",
        async ({ params, request }) => {
          await transfers.deleteSecondary(caller(request), params.name);
          return { ok: true as const };
        },
        { response: m.Done, detail: { summary: "Remove a secondary (operators)", tags, ...access(OPERATOR_WRITE) } },
      )
      .get(Z, ({ params }) => dns.list(params.org), {
        response: m.ZoneList,
        detail: { summary: "The organization's zones", tags, ...access(READ) },
      })
      .post(Z, ({ params, body, request }) => dns.create(caller(request), params.org, body), {
        body: m.NewZone,
        response: m.ZoneWithRecords,
        detail: { summary: "Create a zone (its SOA and apex NS records); zone names are unique across Citadel", tags, ...access(WRITE) },
      })
      .get(ZONE, ({ params }) => dns.show(params.org, params.zone), {
        response: m.ZoneWithRecords,
        detail: { summary: "A zone (by id or name) with its records", tags, ...access(READ) },
      })
      .delete(
        ZONE,
        async ({ params, request }) => {
          await dns.delete(caller(request), params.org, params.zone);
          return { ok: true as const };
        },
        { response: m.Done, detail: { summary: "Remove a zone and its records (asks for confirmation)", tags, ...access({ ...WRITE, permission: "delete", confirm: true }) } },
      )
      .get(`${ZONE}/dnssec`, ({ params }) => dnssecServiceOf(k).show(params.org, params.zone), {
        response: m.Dnssec,
        detail: { summary: "A zone's DNSSEC: whether it is signed, its keys (two during a key rollover, with the rollover's times), their DNSKEY and DS", tags, ...access(READ) },
      })
      .post(`${ZONE}/dnssec`, ({ params, body, request }) => dnssecServiceOf(k).enable(caller(request), params.org, params.zone, body ?? {}), {
        body: m.EnableDnssec,
        response: m.Dnssec,
        detail: {
          summary: "Sign the zone (DNSSEC, ECDSAP256SHA256): a new key; give the DS to the parent; NSEC unless the body asks for NSEC3 (422 for iterations or opt-out, with why); 409 for a zone holding a record provider's names",
          tags,
          ...access(WRITE),
        },
      })
      .patch(`${ZONE}/dnssec`, ({ params, body, request }) => dnssecServiceOf(k).update(caller(request), params.org, params.zone, body), {
        body: m.SetDenial,
        response: m.Dnssec,
        detail: {
          summary:
            "Change a signed zone's DNSSEC: its denial of existence (NSEC or NSEC3: one new serial signed with the whole new chain; 409 when already so; 422 for iterations or opt-out, with why), its CDS/CDNSKEY publication (none, rollover, always) and its key lifetime (days; 0: rolled by hand); 409 for an unsigned zone",
          tags,
          ...access(WRITE),
        },
      })
      .post(`${ZONE}/dnssec/ds-removal`, ({ params, request }) => dnssecServiceOf(k).requestDsRemoval(caller(request), params.org, params.zone), {
        response: m.Dnssec,
        // Asks the parent to make the zone insecure: as grave as disabling.
        detail: {
          summary: "Ask the parent to remove the DS (RFC 8078 delete CDS/CDNSKEY, the zone still signed): the first step of turning DNSSEC off; disable once the parent has no DS (asks for confirmation); 409 during a rollover",
          tags,
          ...access({ ...WRITE, permission: "delete", confirm: true }),
        },
      })
      .delete(`${ZONE}/dnssec`, ({ params, request }) => dnssecServiceOf(k).disable(caller(request), params.org, params.zone), {
        response: m.Dnssec,
        // Takes the zone offline for validators while the parent has its DS: as grave as a zone delete.
        detail: { summary: "Stop signing the zone (remove the DS at the parent first: asks for confirmation)", tags, ...access({ ...WRITE, permission: "delete", confirm: true }) },
      })
      .post(`${ZONE}/dnssec/rollover`, ({ params, request }) => dnssecServiceOf(k).startRollover(caller(request), params.org, params.zone), {
        response: m.Dnssec,
        detail: { summary: "Start a key rollover: a new key published beside the zone's, every RRset signed by both; 409 for an unsigned zone or one with a rollover in progress", tags, ...access(WRITE) },
      })
      .post(`${ZONE}/dnssec/rollover/finish`, ({ params, request }) => dnssecServiceOf(k).finishRollover(caller(request), params.org, params.zone), {
        response: m.Dnssec,
        // The confirmation is the operator's word that the parent publishes only the new DS, its TTL passed: Citadel cannot see it.
        detail: {
          summary: "Finish the key rollover: the old key and its signatures go (confirm that the parent publishes only the new DS and its TTL has passed); 409 with the time left before caches can have dropped the old key's",
          tags,
          ...access({ ...WRITE, permission: "delete", confirm: true }),
        },
      })
      .post(`${ZONE}/dnssec/rollover/submitted`, ({ params, request }) => dnssecServiceOf(k).confirmSubmission(caller(request), params.org, params.zone), {
        response: m.Dnssec,
        // The schedule removes the old key on this word: as grave as a finish.
        detail: {
          summary:
            "Confirm that the parent publishes the new key's DS alone (Knot's zone-ksk-submitted): the schedule finishes the rollover once [dns] dnssec_parent_delay has passed, waiting out the parent's DS TTL that resolvers may still hold the old DS for (asks for confirmation); 409 before replace_ds_from or when confirmed already; 404 with no rollover",
          tags,
          ...access({ ...WRITE, permission: "delete", confirm: true }),
        },
      })
      .delete(`${ZONE}/dnssec/rollover`, ({ params, query, request }) => dnssecServiceOf(k).cancelRollover(caller(request), params.org, params.zone, { force: query.force === true }), {
        query: m.CancelRolloverQuery,
        response: m.Dnssec,
        // Validators holding the new key's DS (resolvers keep it for the parent's DS TTL after it goes) fail the zone once the key goes: as grave as a finish.
        detail: {
          summary:
            "Cancel the key rollover: the new key and its signatures go (asks for confirmation). If the parent has the new DS: put the old DS back, wait for the parent's DS TTL, then cancel; leaving the rollover running is always safe (both keys sign). 409 once the parent's new DS is confirmed (submitted: finish instead), and, unless force=true, once the new key's CDS/CDNSKEY are published (a scanning parent may hold its DS: check it first)",
          tags,
          ...access({ ...WRITE, permission: "delete", confirm: true }),
        },
      })
      .get(`${ZONE}/records`, ({ params }) => dns.recordList(params.org, params.zone), {
        response: m.RecordList,
        detail: { summary: "A zone's records, the SOA first", tags, ...access(READ) },
      })
      .put(`${ZONE}/rrsets/:name/:type`, ({ params, body, request }) => dns.setRrset(caller(request), params.org, params.zone, params.name, params.type, body), {
        body: m.SetRrset,
        response: m.Rrset,
        detail: { summary: "Replace one RRset (name relative to the zone, @ for the apex); no records removes it; refused if the zone would be invalid", tags, ...access(WRITE) },
      })
      .post(`${ZONE}/import`, ({ params, body, request }) => dns.import(caller(request), params.org, params.zone, body), {
        body: m.ImportRequest,
        response: m.ImportResult,
        detail: { summary: "Replace the zone's records from a zone file, all or nothing; dry_run checks and counts only", tags, ...access(WRITE) },
      })
      .get(
        `${ZONE}/export`,
        ({ params }) => new Response(dns.export(params.org, params.zone), { headers: { "content-type": "text/plain; charset=utf-8" } }),
        { detail: { summary: "The zone as a zone file (RFC 1035)", tags, responses: { 200: EXPORT_RESPONSE }, ...access(READ) } },
      );
  },
  commands: dnsCommands,
});

const EXPORT_RESPONSE = { description: "The zone file", content: { "text/plain": { schema: { type: "string" as const } } } };

/** A zone's key in the served map: its origin, absolute, in lower case. */
const keyOf = (name: Name) => nameToText(lowerName(name));

/** Is one of the names at or below the other? */
const related = (a: Name, b: Name) => isSubdomain(a, b) || isSubdomain(b, a);

/**
 * The zones the listeners serve, kept in step with the store one change at a time. Every
 * change to a stored zone moves its serial (service.ts), so the zones to build again are those
 * whose id or serial differs from the one they were built from, and those gone; the others stay
 * as built. Rebuilding every zone on every change made one organization's large zones stall
 * every answer and every API call for as long as they took to build.
 *
 * A record provider's names go into the zone that holds its domain and push out the zones below
 * it (withProvidedRecords), so a change to any zone related to its domain, or to the provider,
 * merges it again into all of them, and in turn every other provider whose domain one of them
 * holds. Only those go through the merge; what it leaves out is no longer served.
 */
export class ServedZones {
  /** origin → the serial served: a zone whose serial moved is announced. */
  readonly served = new Map<string, number>();
  /** What the catalog lists, by name: each stored zone, and each provider's own zone served (catalogMembers). */
  private readonly members = new Map<string, CatalogMember>();
  /** The members that came and went since they were last taken (takeCatalogChanges). */
  private catalogChanges: { added: CatalogMember[]; removed: CatalogMember[] } = { added: [], removed: [] };
  /** Each stored zone as built, without any provider's names (null: it does not build), by origin; and as the catalog lists it. */
  private readonly stored = new Map<string, { id: string; version: string; origin: Name; zone: Zone | null; member: CatalogMember }>();
  /** The domain each provider had when last merged: a provider gone or moved leaves names to take back. */
  private readonly domains = new Map<string, Name>();
  /** Providers that changed since the last update. */
  private readonly changedProviders = new Set<string>();
  /** Names whose stored zone was deleted and made again since the last update. */
  private readonly renewed = new Set<string>();

  constructor(
    private readonly o: {
      table: ZoneTable;
      versions: () => Array<{ id: string; name: string; serial: number }>;
      build: (zoneId: string) => Zone | null;
      providers: () => RecordProvider[];
      ownSerial: (provider: string) => number;
      log: Logger;
      /** `fresh`: the zone was not served before (made, or come back). */
      announce: (zone: Zone, fresh: boolean) => void;
    },
  ) {}

  /** Is the zone at `origin` a record provider's own (served, not stored)? */
  isProviderOwned(origin: Name): boolean {
    return !this.stored.has(keyOf(origin));
  }

  /** The provider's names changed, or it came or went: the next update merges it again. */
  providerChanged(provider: string): void {
    this.changedProviders.add(provider);
  }

  /** Builds again the stored zones that changed, and serves them with what depends on them. */
  update(): void {
    const touched = new Map<string, Name>();
    const live = new Map(this.o.versions().map((v) => [v.name, v]));
    for (const [key, entry] of this.stored) {
      if (live.has(key)) continue;
      this.stored.delete(key);
      touched.set(key, entry.origin);
    }
    for (const [key, v] of live) {
      const version = `${v.id} ${v.serial}`;
      const before = this.stored.get(key);
      if (before?.version === version) continue;
      // Deleted and made again since the last update: another member of the catalog, new to the secondaries.
      if (before !== undefined && before.id !== v.id) this.renewed.add(key);
      const origin = before?.id === v.id ? before.origin : parseName(key, null);
      const member = before?.id === v.id ? before.member : { name: key, origin, id: memberIdOfZone(v.id), providerOwned: false };
      this.stored.set(key, { id: v.id, version, origin, zone: this.o.build(v.id), member });
      touched.set(key, origin);
    }
    const providers = this.o.providers();
    for (const name of this.changedProviders) {
      const before = this.domains.get(name);
      const now = providers.find((p) => p.name === name);
      if (before) this.touchDomain(touched, before);
      const domain = now ? domainOf(now) : null;
      if (domain) this.touchDomain(touched, domain);
      else if (now) this.o.log.error("dns: a record provider's domain is not a name", { provider: now.name, domain: now.domain });
    }
    this.changedProviders.clear();
    if (touched.size === 0) return;
    this.serve(touched, providers);
    // Only a touched zone (serve adds those it merges with) may have come, gone or changed hands.
    const providerOf = new Map([...this.domains].map(([provider, domain]) => [keyOf(domain), provider]));
    for (const key of touched.keys()) this.relist(key, providerOf);
  }

  /** The catalog's member for the zone `key` as it is now, against the one listed: a change is kept for takeCatalogChanges. */
  private relist(key: string, providerOf: Map<string, string>): void {
    const before = this.members.get(key);
    const now = this.memberOf(key, providerOf);
    if (before?.id === now?.id) return;
    if (before !== undefined) this.catalogChanges.removed.push(before);
    if (now === undefined) this.members.delete(key);
    else {
      this.members.set(key, now);
      this.catalogChanges.added.push(now);
    }
  }

  /**
   * The zone `key` as a catalog lists it: a stored zone by its row, built or not (found in
   * review: one that did not build left the catalog, and the consumers purged their copy, which
   * they would otherwise serve until it expires); a provider's own zone, by the provider, when
   * it is served.
   */
  private memberOf(key: string, providerOf: Map<string, string>): CatalogMember | undefined {
    const stored = this.stored.get(key);
    if (stored !== undefined) return stored.member;
    if (!this.served.has(key)) return undefined;
    const provider = providerOf.get(key);
    return provider === undefined ? undefined : { name: key, origin: this.domains.get(provider)!, id: memberIdOfProvider(provider, key), providerOwned: true };
  }

  /** Every member of the catalog, as it lists them. */
  catalogMembers(): Iterable<CatalogMember> {
    return this.members.values();
  }

  /** The members that came and went since the last call. */
  takeCatalogChanges(): { added: CatalogMember[]; removed: CatalogMember[] } {
    const changes = this.catalogChanges;
    this.catalogChanges = { added: [], removed: [] };
    return changes;
  }

  /** The domain itself (a provider's own zone) and every stored zone at, above or below it. */
  private touchDomain(touched: Map<string, Name>, domain: Name): void {
    touched.set(keyOf(domain), domain);
    for (const [key, entry] of this.stored) if (related(entry.origin, domain)) touched.set(key, entry.origin);
  }

  private serve(touched: Map<string, Name>, providers: RecordProvider[]): void {
    const merged = this.providersFor(touched, providers);
    const input = [...touched.keys()].flatMap((key) => this.stored.get(key)?.zone ?? []);
    const zones = withProvidedRecords(input, merged, this.o.ownSerial, this.o.log);
    const fresh = new Set(zones.map((z) => keyOf(z.origin)));
    for (const [key, origin] of touched) {
      if (fresh.has(key) || !this.served.delete(key)) continue;
      this.o.table.delete(origin);
    }
    for (const zone of zones) {
      this.o.table.set(zone);
      const key = keyOf(zone.origin);
      if (this.served.get(key) === zone.serial()) continue;
      const isNew = !this.served.has(key) || this.renewed.has(key);
      this.served.set(key, zone.serial());
      this.o.announce(zone, isNew);
    }
    this.renewed.clear();
    this.domains.clear();
    for (const provider of providers) {
      const domain = domainOf(provider);
      if (domain) this.domains.set(provider.name, domain);
    }
  }

  /** The providers whose domain a touched zone is related to; their zones join `touched`, until none is added. */
  private providersFor(touched: Map<string, Name>, providers: RecordProvider[]): RecordProvider[] {
    const merged = new Set<RecordProvider>();
    for (let added = true; added; ) {
      added = false;
      for (const provider of providers) {
        const domain = domainOf(provider);
        if (merged.has(provider) || domain === null || ![...touched.values()].some((origin) => related(origin, domain))) continue;
        merged.add(provider);
        this.touchDomain(touched, domain);
        added = true;
      }
    }
    return providers.filter((p) => merged.has(p));
  }
}

/** A provider's domain as a name; null when it is none (withProvidedRecords says so). */
function domainOf(provider: RecordProvider): Name | null {
  try {
    return parseName(provider.domain, null);
  } catch {
    return null;
  }
}

/**
 * What each record provider last had served (a fingerprint of its domain and records) and the
 * serial of its own zone, kept in the store: a serial moves only when the provider's names do,
 * and an own zone's serial never goes back — it took the clock at every start, lower after a
 * restart than the one a burst of changes had reached, and a secondary holding the higher one
 * then kept the stale names as "up to date". Memory is the truth while running; each move is
 * written behind it.
 */
class ProviderSerials {
  private readonly rows = new Map<string, sql.ProviderSerialRow>();
  /** The providers looked at since this start, with the domain they had then. */
  private readonly domains = new Map<string, string | null>();

  constructor(private readonly k: Kernel<DnsSettings>) {
    for (const row of sql.providerSerials(k.store.db)) this.rows.set(row.provider, row);
  }

  /**
   * Looks at `provider` again. Null when it serves what it did (nothing to do); else whether its
   * names moved since they were last served (false: only first seen since this start) and its
   * domains, before and now: the zones that held its names and those that hold them.
   */
  seen(provider: string): { moved: boolean; domains: string[] } | null {
    const now = this.k.records.list().find((p) => p.name === provider);
    const first = !this.domains.has(provider);
    const domains = [...new Set([this.domains.get(provider), now?.domain].filter((d): d is string => typeof d === "string"))];
    this.domains.set(provider, now?.domain ?? null);
    const fingerprint = fingerprintOf(now);
    const row = this.rows.get(provider);
    if (row?.fingerprint === fingerprint) return first ? { moved: false, domains } : null;
    const clock = Math.floor(this.k.clock.now() / 1000);
    const next = { provider, fingerprint, serial: row === undefined ? clock : Math.max(row.serial + 1, clock) };
    this.rows.set(provider, next);
    void this.k.store.write((tx) => sql.saveProviderSerial(tx, next)).catch((e) => this.k.log.error("dns: a record provider's serial could not be stored", { provider, error: String(e) }));
    return { moved: true, domains };
  }

  /** The serial of the provider's own zone. */
  ownSerial(provider: string): number {
    return this.rows.get(provider)?.serial ?? Math.floor(this.k.clock.now() / 1000);
  }
}

/** Its domain and records, in an order of their own; "" for a provider that is gone. */
function fingerprintOf(provider: RecordProvider | undefined): string {
  if (provider === undefined) return "";
  let lines: string[];
  try {
    lines = provider.records().map((r) => `${r.name} ${r.type} ${r.ttl} ${r.data}`);
  } catch (e) {
    return `failed ${String(e)}`; // withProvidedRecords logs it
  }
  return new Bun.CryptoHasher("sha256").update([provider.domain, ...lines.sort()].join("\n")).digest("hex");
}

/** How often the signed zones' signatures are looked at (they are signed again a week before they expire). */
const RESIGN_CHECK_MS = 10 * 60_000;

/**
 * Signs again the signed zones whose signatures run short (or that were answered SERVFAIL while
 * sealed): a new serial, which rebuilds each and has the secondaries transfer it. At start, at
 * every unseal, then every RESIGN_CHECK_MS. Returns the function that stops it.
 */
function startResigning(k: Kernel<DnsSettings>, dns: DnsService): () => void {
  const check = () => {
    for (const zone of dns.signer.refreshDue(k.clock.now())) {
      k.log.info("dns: a signed zone is signed again: its signatures were running short", { zone: zone.name });
      void dns.bumpSerial(zone.id).catch((e) => k.log.error("dns: a signed zone could not be signed again", { zone: zone.name, error: String(e) }));
    }
    // The key rollover schedule (dnssec-service.ts runSchedule): its state is stored, so this resumes it after a restart or an unseal.
    void dnssecServiceOf(k)
      .runSchedule()
      .catch((e) => k.log.error("dns: the key rollover schedule failed", { error: String(e) }));
  };
  check();
  const timer = setInterval(check, RESIGN_CHECK_MS);
  timer.unref?.();
  // Zones answered SERVFAIL while sealed, and signatures that ran short meanwhile, are signed
  // again at the unseal, not up to RESIGN_CHECK_MS later.
  const stopOnUnseal = k.seal.onUnseal(check);
  // An unattended rollover that waits for the parent's DS (the old key kept until an operator
  // confirms it: Citadel asks no parent) is what an operator must act on: alert on it above 0 for days.
  const removeMetric = k.metrics.onScrape({
    name: "citadel_dns_dnssec_rollovers_waiting_for_parent",
    type: "gauge",
    help: "Key rollovers whose new key is ready and that wait for the parent's new DS to be confirmed (citadel dns zone dnssec rollover submitted) before the old key goes.",
    read: () => dnssecServiceOf(k).waitingForParent(),
  });
  return () => {
    clearInterval(timer);
    stopOnUnseal();
    removeMetric();
  };
}

/** "127.0.0.1:5353" or "[::1]:53" → address and port (the config schema has checked the shape loosely). */
function parseAddress(text: string): { address: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65_535) throw new Error(`dns: "${text}" is not host:port (IPv6 in brackets: [::1]:53)`);
  return { address: match[1] ?? match[2]!, port };
}

/** parseAddress, or null for text it refuses (the listener's start says so). */
function parsedAddress(text: string): { address: string; port: number } | null {
  try {
    return parseAddress(text);
  } catch {
    return null;
  }
}

let lastRefusalLog = 0;

/** The transfer policy with its log lines: every transfer served, refusals at most once a second. */
function transferAllowed(k: Kernel<DnsSettings>, view: TransferView, client: string, zone: Name, key: Name | null, providerOwned: boolean): boolean {
  const allowed = view.allowed(client, zone, key, providerOwned);
  logTransfer(k, allowed, client, zone, key);
  return allowed;
}

function logTransfer(k: Kernel<DnsSettings>, allowed: boolean, client: string, zone: Name, key: Name | null): void {
  const fields = { client, zone: nameToText(zone), key: key ? nameToText(key) : null };
  if (allowed) k.log.info("dns zone transfer", fields);
  else if (k.clock.now() - lastRefusalLog >= 1000) {
    lastRefusalLog = k.clock.now();
    k.log.warn("dns zone transfer refused: not a secondary with its key", fields);
  }
}

/** The catalog's view for a secondary (the key is verified, or null), its transfers logged as a zone's are, refusals too. */
function catalogViewFor(k: Kernel<DnsSettings>, catalog: Catalog, client: string, key: Name | null, transfer: boolean): Zone | null {
  const view = catalog.viewFor(client, key);
  if (transfer) logTransfer(k, view !== null, client, catalog.origin, key);
  return view;
}

/**
 * `[dns] catalog` at or above a hosted zone's name (such as `com.`, or the zone's own): the
 * catalog would answer for every name of the zone on the authoritative listener, which would
 * serve it no more, and could not list it, so its secondaries would drop it. No such zone can be
 * made once the catalog is named (service.ts: 409), but one stored before can be there: start-up
 * stops naming the key and the zones (exit 2), as for any setting that cannot work (found in
 * review: a warning at each start, and the zones went unserved).
 */
function refuseCatalogOverZones(k: Kernel<DnsSettings>): void {
  const catalog = catalogName(k.settings.catalog);
  if (catalog === null) return;
  const held = sql.allLiveZones(k.store.db).filter((row) => isSubdomain(parseName(row.name, null), catalog)).map((row) => row.name);
  if (held.length === 0) return;
  const zones = held.length <= 5 ? held.join(", ") : `${held.slice(0, 5).join(", ")} and ${held.length - 5} more`;
  throw new ConfigError(
    `dns.catalog: ${JSON.stringify(k.settings.catalog)} is at or above the hosted zone${held.length > 1 ? "s" : ""} ${zones}, whose names the catalog would answer for instead: give the catalog a name of its own, such as "catalog.citadel.invalid." (or delete the zone)`,
  );
}

/**
 * The stored zone a provider's domain lies in, or null (also when the domain is not a name, and
 * when that zone is signed: it leaves the provider's names out, so their change changes nothing
 * it serves, and a new serial would only sign it all again and have every secondary transfer it
 * — or, while sealed, give it a serial no stored signature signs).
 */
function unsignedHostRowOf(dns: DnsService, domain: string) {
  let row: ReturnType<DnsService["hostZoneRow"]>;
  try {
    row = dns.hostZoneRow(parseName(domain, null));
  } catch {
    return null;
  }
  return row === null || dns.signer.isSigned(row.id) ? null : row;
}

/** The query log when [dns] query_log_sample asks for one (a file it cannot open is logged, and DNS serves without it). */
function openQueryLog(k: Kernel<DnsSettings>): QueryLog | null {
  if (k.settings.query_log_sample === 0) return null;
  const path = dataPath(k.config, "dns-queries.log");
  try {
    return new QueryLog({ path, sample: k.settings.query_log_sample, maxBytes: k.settings.query_log_max_mb * 1024 * 1024, client: k.settings.query_log_client, now: () => k.clock.now(), log: k.log });
  } catch (e) {
    k.log.error("dns query log: cannot open it; queries are not logged", { path, error: e instanceof Error ? e.message : String(e) });
    return null;
  }
}

/**
 * What the shield learns from DNS answers: REFUSED for a name no zone here serves (an open
 * resolver being probed) and NXDOMAIN — weighted more while its zone is under a
 * random-subdomain flood (flood-watch.ts).
 */
function shieldFeed(k: Kernel<DnsSettings>): QueryObserver {
  const floods = new FloodWatch({ perMinute: k.settings.random_subdomain_per_minute, now: () => k.clock.now() });
  return {
    observe(event) {
      const shield = k.shield.current;
      if (shield === null || event.gated) return; // the shield's own refusals are not held against the client again
      if (event.rcode === 3) shield.observe(event.client, event.zone !== null && floods.nxdomain(event.zone) ? "dns_random_subdomain" : "dns_nxdomain");
      else if (event.rcode === 5 && event.zone === null) shield.observe(event.client, "dns_refused");
    },
  };
}

/** Query types counted by name; any other type is counted as "other" (a client can send all 65,536). */
const COUNTED_QTYPES = ["other", ...Object.keys(RRType), "DNSKEY", "ANY", "AXFR", "IXFR"];
const QTYPE_SLOT = new Uint8Array(65_536);
for (const [name, type] of [...Object.entries(RRType), ["DNSKEY", 48], ["ANY", 255], ["AXFR", 252], ["IXFR", 251]] as const) QTYPE_SLOT[type] = COUNTED_QTYPES.indexOf(name);
const COUNTED_RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS", "other"];
const rcodeSlot = (rcode: number) => (rcode <= Rcode.REFUSED ? rcode : rcode === RCODE_NOTAUTH ? 6 : rcode === Rcode.BADVERS ? 7 : 8);

/**
 * citadel_dns_queries_total{transport,qtype,rcode}: every answered query (a dropped one has no
 * answer and is not seen here; the shield's drops are in citadel_shield_verdicts_total). Each
 * series is made on first use and then found by index, without building a label per query.
 */
function queryMetrics(metrics: Metrics): QueryObserver {
  const family = metrics.counter("citadel_dns_queries_total", "DNS queries the authoritative server answered, by transport, query type and response code.", ["transport", "qtype", "rcode"]);
  const series = new Array<Counter | undefined>(2 * COUNTED_RCODES.length * COUNTED_QTYPES.length).fill(undefined);
  return {
    observe(event) {
      const qtype = QTYPE_SLOT[event.qtype]!;
      const rcode = rcodeSlot(event.rcode);
      const i = ((event.transport === "udp" ? 0 : 1) * COUNTED_RCODES.length + rcode) * COUNTED_QTYPES.length + qtype;
      (series[i] ??= family.labels({ transport: event.transport, qtype: COUNTED_QTYPES[qtype]!, rcode: COUNTED_RCODES[rcode]! })).value++;
    },
  };
}


/**
 * The filtering resolver, when [dns] resolver_udp/resolver_tcp name addresses: the hosted zones
 * answered locally, the blocklists loaded (a bad line is skipped and counted; an unreadable file
 * is logged and leaves the resolver without it), forwarding only to the configured upstreams.
 */
async function startFilteringResolver(k: Kernel<DnsSettings>, zones: ZoneTable, horizon: ProviderHorizon, viewSerials: ViewSerials): Promise<Resolver | null> {
  const s = k.settings;
  if (s.resolver_udp.length === 0 && s.resolver_tcp.length === 0) return null;
  warnIfOpen(k);
  warnIfUdpOnly(k);
  const blocked: string[] = [];
  const allowed: string[] = [];
  for (const path of s.resolver_blocklists) {
    try {
      const list = parseBlocklist(readFileSync(dataPath(k.config, path), "utf8"));
      // A loop, not push(...entries): a spread passes each entry as an argument, and a list of
      // some 700,000 entries overflowed the stack and was dropped whole (filtering failed open).
      for (const domain of list.blocked) blocked.push(domain);
      for (const domain of list.allowed) allowed.push(domain);
      if (list.skipped > 0) k.log.warn("dns resolver: blocklist lines skipped", { path, skipped: list.skipped, first: list.errors[0]?.message });
    } catch (e) {
      k.log.error("dns resolver: a blocklist cannot be read; it is not used", { path, error: e instanceof Error ? e.message : String(e) });
    }
  }
  try {
    const resolver = await startResolver({
      udp: s.resolver_udp.map(parseAddress),
      tcp: s.resolver_tcp.map(parseAddress),
      upstreams: s.resolver_upstreams.map(parseAddress),
      blocklist: DomainSet.from(blocked),
      allowlist: DomainSet.from(allowed),
      blockMode: s.resolver_block_mode === "sinkhole" ? { kind: "sinkhole", ipv4: s.resolver_sinkhole_ipv4, ipv6: s.resolver_sinkhole_ipv6 } : { kind: "nxdomain" },
      privateNames: s.resolver_private_names,
      allowedClients: allowClients(s.resolver_clients),
      local: zones,
      // The providers' split horizon: a mesh network's client is told its own network's names only.
      horizon,
      viewSerials,
      log: k.log,
      // The cache's ages: a clock that never goes back (a wall clock stepped back served stale answers).
      now: () => k.clock.elapsed?.() ?? k.clock.now(),
    });
    // It logs where it listens, its lists and whether it forwards; its counts are metrics until it stops.
    const unregisterMetrics = resolverMetrics(k.metrics, resolver);
    return {
      ...resolver,
      stop: async () => {
        unregisterMetrics();
        await resolver.stop();
      },
    };
  } catch (e) {
    // Its settings were checked when the config was loaded: what is left is mostly a bind that
    // failed. Said without naming the authoritative server, which may not run either.
    const keys = e instanceof ResolverOptionError ? RESOLVER_OPTION_KEYS[e.option] : "resolver_udp and resolver_tcp";
    k.log.error(`dns resolver: cannot start, the resolver is off (check [dns] ${keys})`, {
      udp: s.resolver_udp,
      tcp: s.resolver_tcp,
      error: e instanceof Error ? e.message : String(e),
    });
    return null;
  }
}

/** The [dns] keys behind each of the resolver's options. */
const RESOLVER_OPTION_KEYS: Record<ResolverOptionError["option"], string> = {
  upstreams: "resolver_upstreams",
  blockMode: "resolver_sinkhole_ipv4 and resolver_sinkhole_ipv6",
  allowedClients: "resolver_clients",
};

/**
 * A client prefix of length 0 lets the whole Internet (of its family) use the resolver: an open
 * resolver, an amplification weapon for spoofed sources. Said at every start, not refused: the
 * resolver may listen only where nobody else can reach it.
 */
function warnIfOpen(k: Kernel<DnsSettings>): void {
  const open = k.settings.resolver_clients.filter((text) => parseClientCidr(text)?.prefix === 0);
  if (open.length > 0) {
    k.log.warn("dns resolver: [dns] resolver_clients lets every address use the resolver (an open resolver, which spoofed queries turn into an amplifier); give the mesh's or the LAN's prefixes", { resolver_clients: open });
  }
}

/** The resolver's stats() as citadel_dns_resolver_* metrics, read at scrape time. Returns the function that removes them. */
function resolverMetrics(metrics: Metrics, resolver: Resolver): () => void {
  const counters: Array<[keyof ResolverStats, string, string]> = [
    ["queries", "queries_total", "Packets the filtering resolver received that look like queries."],
    ["blocked", "blocked_total", "Queries the resolver answered from its blocklists (a blocked name, or a CNAME into a blocked domain)."],
    ["local", "local_total", "Queries the resolver answered from the hosted zones and the special-use names, without forwarding."],
    ["cacheHits", "cache_hits_total", "Queries the resolver answered from its cache."],
    ["cacheMisses", "cache_misses_total", "Queries the resolver found no cached answer for."],
    ["forwarded", "forwarded_total", "Questions the resolver sent upstream (one per miss not already being asked, whatever the tries)."],
    ["upstreamFailures", "upstream_failures_total", "Exchanges with one upstream that gave no usable answer (a timeout, an error, an unusable rcode)."],
    ["refused", "refused_total", "Queries the resolver refused: clients not allowed, nothing to forward to, classes and types it does not serve."],
    ["servfail", "servfail_total", "Queries the resolver answered SERVFAIL: no upstream answered, or something went wrong."],
  ];
  const removers = counters.map(([field, name, help]) => metrics.onScrape({ name: `citadel_dns_resolver_${name}`, type: "counter", help, read: () => resolver.stats()[field] }));
  removers.push(metrics.onScrape({ name: "citadel_dns_resolver_cached_answers", type: "gauge", help: "Answers in the resolver's cache now.", read: () => resolver.stats().cached }));
  return () => {
    for (const remove of removers) remove();
  };
}

/**
 * A resolver_udp address without TCP there: an answer over 1232 octets goes out truncated, and
 * the client's retry over TCP finds nobody (RFC 7766 asks a resolver for both). Said at every
 * start, not refused: a client that never gets such answers does not notice.
 */
function warnIfUdpOnly(k: Kernel<DnsSettings>): void {
  const alone = udpWithoutTcp(k.settings.resolver_udp, k.settings.resolver_tcp);
  if (alone.length > 0) {
    k.log.warn("dns resolver: [dns] resolver_udp addresses without resolver_tcp at the same address: answers too large for UDP cannot reach their clients there (RFC 7766); add them to resolver_tcp", { resolver_udp: alone });
  }
}

/** citadel_shield_verdicts_total{channel="dns"}: one increment per verdict, no label built. */
function countVerdict(verdicts: ShieldVerdictCounters) {
  return (action: keyof ShieldVerdictCounters) => void verdicts[action].value++;
}
