/**
 * DNSSEC of hosted zones, the control side: turning signing on and off per zone (audited), the
 * DS and DNSKEY to give the parent, and the key each signed zone is signed with when it is built
 * (ZoneSigner). The private key is a keyring envelope (as the TSIG secrets are), decrypted when
 * a zone is signed and kept only while Citadel is unsealed.
 *
 * A zone is signed each time it is built — after every change, each change moving its serial —
 * at the time of that change (the zone's updated_at), keeping the RRSIGs of the RRsets the change
 * left as they were (signZone with the signatures served until then). Signatures last
 * VALIDITY_MS; `refreshDue` names the zones whose earliest signature has less than
 * REFRESH_BEFORE_MS left, whose serial the plugin then bumps so that they are signed again and
 * transferred.
 */
import type { Database } from "bun:sqlite";
import type { Keyring } from "../../src/crypto/keyring.ts";
import { actorOf } from "../../src/auth/principal.ts";
import { ConflictError, NotFoundError } from "../../src/errors.ts";
import { isSubdomain, NameError, parseName, type Name } from "./names.ts";
import {
  ALGORITHM,
  ALGORITHM_NAME,
  decodeRrsigs,
  dnskeyText,
  dsOf,
  dsText,
  encodeRrsigs,
  generateSigningKey,
  keyTag,
  REFRESH_BEFORE_MS,
  signaturesOf,
  signingKeyFrom,
  signZone,
  unavailableSigned,
  VALIDITY_MS,
  withStoredSignatures,
  type SigningKey,
  type ZoneSignatures,
} from "./dnssec.ts";
import { nextSerial, type Caller, type DnsKernel, type DnsService } from "./service.ts";
import * as sql from "./store.ts";
import type { Zone } from "./zone.ts";

const KEY_OWNER = "dns/dnssec";
const keyContext = (zoneId: string) => `dns/dnssec/${zoneId}`;

/**
 * The zones' signing keys, decrypted once per keyring; dropped when Citadel seals. While sealed
 * a signed zone is served with the RRSIGs stored at its last signing when they sign its current
 * serial (its content cannot have changed since: writes need the keyring), else answered
 * SERVFAIL: never unsigned, which validators holding the parent's DS reject.
 */
export class ZoneSigner {
  private readonly keys = new Map<string, { keyring: Keyring; key: SigningKey }>();
  /** Signed zones answered SERVFAIL while sealed: signed again once unsealed (refreshDue). */
  private readonly unsigned = new Set<string>();
  /** The signatures each signed zone is served with: its next signing keeps those of unchanged RRsets. */
  private readonly current = new Map<string, ZoneSignatures>();

  constructor(private readonly k: DnsKernel) {
    k.seal.onSeal(() => this.keys.clear());
  }

  /** `zone` (built from `row`) signed when the zone has a key; as it is otherwise. */
  signed(row: sql.ZoneRow, zone: Zone): Zone {
    const stored = sql.zoneKey(this.k.store.db, row.id);
    if (!stored) return zone;
    const key = this.key(stored);
    if (key === null) return this.signedWhileSealed(row, zone, stored);
    this.unsigned.delete(row.id);
    const served = this.remember(row.id, signZone(zone, key, row.updated_at, this.current.get(row.id)));
    if (stored.signed_serial !== row.serial) sql.saveZoneRrsigs(this.k.store.db, row.id, row.serial, encodeRrsigs(signaturesOf(served)!.records()));
    return served;
  }

  private signedWhileSealed(row: sql.ZoneRow, zone: Zone, stored: sql.ZoneKeyRow): Zone {
    if (stored.signed_serial === row.serial && stored.rrsigs !== null) {
      const served = withStoredSignatures(zone, new Uint8Array(stored.dnskey), decodeRrsigs(new Uint8Array(stored.rrsigs)));
      if (served !== null) {
        this.remember(row.id, served);
        this.k.log.info("dns: Citadel is sealed: a signed zone is served with the signatures stored at its serial", { zone: row.name, serial: row.serial });
        return served;
      }
    }
    this.unsigned.add(row.id);
    this.current.delete(row.id);
    this.k.log.error("dns: Citadel is sealed and a signed zone has no signatures stored for its serial: its names are answered SERVFAIL until it is unsealed", { zone: row.name, serial: row.serial });
    return unavailableSigned(zone);
  }

  private remember(zoneId: string, served: Zone): Zone {
    this.current.set(zoneId, signaturesOf(served)!);
    return served;
  }

  /** When the first of the zone's served signatures expires (null: not signed here yet). */
  expiresAt(zoneId: string): number | null {
    return this.current.get(zoneId)?.expiresAt ?? null;
  }

  private key(stored: sql.ZoneKeyRow): SigningKey | null {
    const keyring = this.k.seal.keyringIfUnsealed();
    if (!keyring) return null;
    const cached = this.keys.get(stored.zone_id);
    if (cached && cached.keyring === keyring) return cached.key;
    const pkcs8 = keyring.decrypt(KEY_OWNER, keyContext(stored.zone_id), stored.private_key);
    const key = signingKeyFrom(pkcs8);
    pkcs8.fill(0);
    this.keys.set(stored.zone_id, { keyring, key });
    return key;
  }

  /** Does the zone have DNSSEC on? */
  isSigned(zoneId: string): boolean {
    return sql.zoneKey(this.k.store.db, zoneId) !== null;
  }

  /** Holds the zone's decrypted key in memory (tests: a deleted zone's must be gone). */
  holdsKey(zoneId: string): boolean {
    return this.keys.has(zoneId);
  }

  /** Drops the zone's decrypted key: its signing ended (disabled, or the zone deleted or erased). */
  forget(zoneId: string): void {
    this.keys.delete(zoneId);
    this.unsigned.delete(zoneId);
    this.current.delete(zoneId);
  }

  /**
   * The signed zones to sign again now: their signatures have less than REFRESH_BEFORE_MS left,
   * or they were answered SERVFAIL while sealed. None while sealed (the key is out of reach).
   */
  refreshDue(now: number): Array<{ id: string; name: string }> {
    if (this.k.seal.keyringIfUnsealed() === null) return [];
    // The earliest signature of the zone as served (a signing keeps unchanged RRsets' older ones);
    // before its first build here, those of its last change.
    const expiry = (z: { id: string; updated_at: number }) => this.expiresAt(z.id) ?? z.updated_at + VALIDITY_MS;
    return sql.signedZones(this.k.store.db).filter((z) => this.unsigned.has(z.id) || expiry(z) - REFRESH_BEFORE_MS <= now);
  }
}

export interface DnssecView {
  zone: string;
  enabled: boolean;
  algorithm: string | null;
  key_tag: number | null;
  dnskey: string[];
  ds: string[];
  signatures_expire_at: string | null;
  created_at: string | null;
}

/** Turning DNSSEC on and off for a zone, and what to give the parent. */
export class DnssecService {
  constructor(
    private readonly k: DnsKernel,
    private readonly dns: DnsService,
  ) {}

  show(organizationId: string, zone: string): DnssecView {
    const row = this.dns.zoneRow(organizationId, zone);
    return view(row, sql.zoneKey(this.k.store.db, row.id), this.dns.signer.expiresAt(row.id));
  }

  /**
   * Signs the zone from now on: a new key, sealed in the keyring, and a new serial (secondaries
   * transfer the signed zone). Refused (409) for a zone holding a record provider's names.
   */
  async enable(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    const { pkcs8, dnskey } = generateSigningKey();
    try {
      return await this.dns.zoneWrite((tx) => {
        const row = this.dns.zoneRow(organizationId, zone, tx);
        if (sql.zoneKey(tx, row.id)) throw new ConflictError(`${row.name} is signed already.`);
        this.refuseProvidedNames(row);
        this.refuseUndelegatedZones(tx, row);
        this.refuseUnsignableRecords(tx, row);
        const now = this.k.clock.now();
        const envelope = this.k.seal.keyring().encrypt(tx, KEY_OWNER, keyContext(row.id), pkcs8);
        sql.insertZoneKey(tx, { zone_id: row.id, algorithm: ALGORITHM, dnskey, private_key: envelope, created_at: now });
        const serial = nextSerial(row.serial, now);
        sql.updateZoneSoa(tx, row.id, row, serial, now);
        this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.enable", `${row.name}: signed with a ${ALGORITHM_NAME} key, tag ${keyTag(dnskey)}; serial ${serial}`));
        return view({ ...row, serial, updated_at: now }, sql.zoneKey(tx, row.id));
      });
    } finally {
      pkcs8.fill(0);
    }
  }

  /**
   * Stops signing: the key goes, and the zone is served without DNSKEY, RRSIG and NSEC from its
   * next serial. Resolvers that validate fail the zone while the parent still has its DS: the
   * DS goes first (and its TTL passes).
   */
  async disable(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => {
      const row = this.dns.zoneRow(organizationId, zone, tx);
      const key = sql.zoneKey(tx, row.id);
      if (!key) throw new NotFoundError(`${row.name} is not signed.`);
      sql.deleteZoneKey(tx, row.id);
      const now = this.k.clock.now();
      const serial = nextSerial(row.serial, now);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      this.dns.signer.forget(row.id);
      this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.disable", `${row.name}: key tag ${keyTag(key.dnskey)} removed; serial ${serial}`));
      return view(row, null);
    });
  }

  /**
   * A zone served here below this one without a delegation to it: the signed zone's NSEC chain
   * would deny its names, and validators would fail every one.
   */
  private refuseUndelegatedZones(tx: Database, row: sql.ZoneRow): void {
    const undelegated = this.dns.undelegatedZonesIn(tx, row);
    if (undelegated.length === 0) return;
    throw new ConflictError(
      `${row.name} holds ${undelegated.join(", ")}, served here with no delegation to ${undelegated.length === 1 ? "it" : "them"}: signed, ${row.name}'s NSEC records would deny ${undelegated.length === 1 ? "its" : "their"} names to validators. Delegate ${undelegated.length === 1 ? "it" : "them"} first (NS records in ${row.name}).`,
    );
  }

  /** Records the signer cannot sign so that validators accept them (unsignableRecord): they go first. */
  private refuseUnsignableRecords(tx: Database, row: sql.ZoneRow): void {
    const found = this.dns.unsignableRecordsIn(tx, row);
    if (found.length > 0) throw new ConflictError(`${row.name} holds records a signed zone cannot: ${[...new Set(found)].join("; ")}. Remove them first.`);
  }

  /**
   * A record provider's names (the mesh's nodes) change as nodes come and go, and are private:
   * signing them would mean signing on every change and an NSEC chain that lists them to anyone
   * who walks it.
   */
  private refuseProvidedNames(row: sql.ZoneRow): void {
    const origin = parseName(row.name, null);
    for (const provider of this.k.records.list()) {
      const domain = domainOf(provider.domain);
      if (domain === null || !isSubdomain(domain, origin)) continue;
      throw new ConflictError(
        `${row.name} holds ${provider.domain}, whose names ${provider.name} serves: they are private and change as they come and go, and Citadel does not sign them (an NSEC chain would list them to anyone). Sign a zone that holds no such names.`,
      );
    }
  }
}

function domainOf(text: string): Name | null {
  try {
    return parseName(text, null);
  } catch (e) {
    if (e instanceof NameError) return null;
    throw e;
  }
}

function view(row: sql.ZoneRow, key: sql.ZoneKeyRow | null, expiresAt: number | null = null): DnssecView {
  if (!key) return { zone: row.name, enabled: false, algorithm: null, key_tag: null, dnskey: [], ds: [], signatures_expire_at: null, created_at: null };
  const dnskey = new Uint8Array(key.dnskey);
  const origin = parseName(row.name, null);
  return {
    zone: row.name,
    enabled: true,
    algorithm: ALGORITHM_NAME,
    key_tag: keyTag(dnskey),
    dnskey: [`${row.name} IN DNSKEY ${dnskeyText(dnskey)}`],
    ds: [`${row.name} IN DS ${dsText(dsOf(origin, dnskey))}`],
    signatures_expire_at: new Date(expiresAt ?? row.updated_at + VALIDITY_MS).toISOString(),
    created_at: new Date(key.created_at).toISOString(),
  };
}

function event(caller: Caller, zone: sql.ZoneRow, action: string, reason: string) {
  return {
    action,
    outcome: "success" as const,
    organization: zone.organization_id,
    resource: { type: "dns_zone", id: zone.id },
    reason,
    actor: actorOf(caller.principal),
    request: caller.request,
  };
}
