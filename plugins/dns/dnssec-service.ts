/**
 * DNSSEC of hosted zones, the control side: turning signing on and off per zone (audited), its
 * denial of existence (NSEC, or NSEC3 with RFC 9276's parameters, chosen at enable and switched
 * later), the DS and DNSKEY to give the parent, the key rollover, and the keys each signed zone
 * is signed with when it is built (ZoneSigner). A private key is a keyring envelope (as the TSIG
 * secrets are), decrypted when a zone is signed and kept only while Citadel is unsealed.
 *
 * A zone is signed each time it is built — after every change, each change moving its serial —
 * at the time of that change (the zone's updated_at), keeping the RRSIGs of the RRsets the change
 * left as they were (signZone with the signatures served until then). Signatures last
 * VALIDITY_MS; `refreshDue` names the zones whose earliest signature has less than
 * REFRESH_BEFORE_MS left, whose serial the plugin then bumps so that they are signed again and
 * transferred.
 *
 * A key rollover is the double-signature one of RFC 7583 (section 3.3, for a CSK), driven by the
 * operator, who alone can change the DS at the parent: `startRollover` makes a new key, published
 * beside the zone's key and signing every RRset too, so that validators holding either key's DS
 * validate; the operator replaces the DS at the registrar; `finishRollover` retires the old key —
 * refused until no cache can hold what the old key alone signed (the DNSKEY RRset's TTL, the
 * zone's largest TTL and the propagation delay since the start), and only on the operator's
 * confirmation that the parent publishes the new DS alone, its TTL passed: Citadel asks no one.
 * `cancelRollover` drops the new key.
 *
 * A switch of the denial of existence (`setDenial`) is one new serial, signed in the switch's own
 * transaction as every write that moves a signed zone's serial is (DnsService.signInWrite; 503
 * `sealed` when the keys are out of reach): with the whole new chain (NSEC records and their
 * RRSIGs gone, every NSEC3 and the NSEC3PARAM signed, the other RRSIGs kept), stored with that
 * serial, before it replaces the one served — there is no moment when answers carry a chain
 * half made, nor a serial with no signatures stored should Citadel seal right after.
 */
import type { Database } from "bun:sqlite";
import type { Keyring } from "../../src/crypto/keyring.ts";
import { actorOf } from "../../src/auth/principal.ts";
import { ConflictError, InvalidError, NotFoundError, SealedError } from "../../src/errors.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { isSubdomain, NameError, parseName, type Name } from "./names.ts";
import {
  ALGORITHM,
  ALGORITHM_NAME,
  decodeRrsigs,
  DELETE_SIGNAL,
  dnskeyText,
  dsOf,
  dsText,
  generateSigningKey,
  keyTag,
  NSEC_DENIAL,
  parentSignalFor,
  REFRESH_BEFORE_MS,
  changedRows,
  signaturesOf,
  signChange,
  signingKeyFrom,
  signZone,
  unavailableSigned,
  VALIDITY_MS,
  withStoredSignatures,
  type Denial,
  type RrsetChange,
  type ParentSignal,
  type SigningKey,
  type ZoneSignatures,
} from "./dnssec.ts";
import { MAX_SALT_OCTETS, NSEC3_HASH_NAME, Nsec3CollisionError, nsec3paramText, saltText, type Nsec3Params } from "./nsec3.ts";
import { nextSerial, type Caller, type DnsKernel, type DnsService } from "./service.ts";
import * as sql from "./store.ts";
import type { RR, Zone } from "./zone.ts";

/** A signed zone as served, and the version of its row it was made from. */
interface ServedVersion {
  serial: number;
  updatedAt: number;
  zone: Zone;
}

const KEY_OWNER = "dns/dnssec";
/** The envelope of the zone's key is bound to its row in dns_zone_keys, a rollover's new key's to its row in dns_zone_incoming_keys. */
const keyContext = (zoneId: string) => `dns/dnssec/${zoneId}`;
const incomingKeyContext = (zoneId: string) => `dns/dnssec/${zoneId}/incoming`;

type KeyRole = "active" | "incoming";

/**
 * The zones' signing keys, decrypted once per keyring; dropped when Citadel seals. While sealed
 * a signed zone is served with the RRSIGs stored at its last signing when they sign its current
 * serial — a write that moves a signed zone's serial signs it in its own transaction
 * (`signedInWrite`), refused while sealed, so they do unless a restore moved the serial — else
 * answered SERVFAIL: never unsigned, which validators holding the parent's DS reject.
 */
export class ZoneSigner {
  /** Decrypted keys by `zone role`, with the envelope they came from: a key replaced (a rollover's finish) is decrypted again, never served stale. */
  private readonly keys = new Map<string, { keyring: Keyring; envelope: Uint8Array; key: SigningKey }>();
  /** Signed zones answered SERVFAIL while sealed: signed again once unsealed (refreshDue). */
  private readonly unsigned = new Set<string>();
  /** The signatures each signed zone is served with: its next signing keeps those of unchanged RRsets. */
  private readonly current = new Map<string, ZoneSignatures>();
  /** The signed zone served, and the version of its row it was made from (serial, updated_at): what a change edits (signChangeInWrite). */
  private readonly versions = new Map<string, ServedVersion>();

  constructor(private readonly k: DnsKernel) {
    k.seal.onSeal(() => this.keys.clear());
  }

  /** `zone` (built from `row`) signed when the zone has a key (and a rollover's new key beside it); as it is otherwise. */
  signed(row: sql.ZoneRow, zone: Zone): Zone {
    const stored = sql.zoneKey(this.k.store.db, row.id);
    if (!stored) return zone;
    const incoming = sql.incomingKey(this.k.store.db, row.id);
    const keys = this.signingKeys(stored, incoming);
    const denial = denialOf(stored);
    const parent = parentSignalOf(row.name, stored, incoming);
    try {
      if (keys === null) return this.signedWhileSealed(row, zone, [stored, ...(incoming ? [incoming] : [])], denial, parent);
      this.unsigned.delete(row.id);
      const served = this.remember(row.id, signZone(zone, keys, row.updated_at, this.current.get(row.id), denial, parent), row);
      if (stored.signed_serial !== row.serial) sql.saveZoneRrsigs(this.k.store.db, row.id, row.serial, signaturesOf(served)!.storedRows());
      return served;
    } catch (error) {
      if (!(error instanceof Nsec3CollisionError)) throw error;
      // Never served unsigned (validators holding the DS would reject it), nor with a chain that proves nothing.
      this.current.delete(row.id);
      this.versions.delete(row.id);
      this.k.log.error("dns: a signed zone's NSEC3 chain cannot be made: two of its names have the same hash; its names are answered SERVFAIL", { zone: row.name, names: error.names });
      return unavailableSigned(zone);
    }
  }

  /**
   * `zone`, built from `row` in the write that changed it (`tx`), signed with the denial of
   * existence the write leaves (`tx`'s key row: a switch of it signs the new chain here), its
   * signatures stored with its serial in that transaction; SealedError (503 `sealed`) while
   * sealed. The signatures served until then are kept where they still sign. Those made here
   * become the served ones (`adopt`) only once the write has committed: it may yet roll back.
   * A change that would give two names one NSEC3 hash is refused (409, naming them): the zone
   * stays served as it was, rather than answered SERVFAIL as a zone stored so is (`signed`).
   */
  signedInWrite(tx: Database, row: sql.ZoneRow, zone: Zone): Zone {
    const stored = sql.zoneKey(tx, row.id)!;
    const incoming = sql.incomingKey(tx, row.id);
    const keys = this.signingKeys(stored, incoming);
    if (keys === null) throw new SealedError(`Citadel is sealed: ${row.name} is signed, and cannot change until its keys are back (unseal, then try again).`);
    let served: Zone;
    try {
      served = signZone(zone, keys, row.updated_at, this.current.get(row.id), denialOf(stored), parentSignalOf(row.name, stored, incoming));
    } catch (error) {
      if (error instanceof Nsec3CollisionError) throw new ConflictError(`${row.name} cannot be signed so: ${error.message}`);
      throw error;
    }
    sql.saveZoneRrsigs(tx, row.id, row.serial, signaturesOf(served)!.storedRows());
    return served;
  }

  /**
   * `served` (a signed zone as its row was before this write: `before`) with `soa` as its SOA and
   * `changes` made, signed by editing it (dnssec.ts signChange) in the write that made them,
   * its signatures stored with `after`'s serial in that transaction: what signedInWrite does,
   * at the cost of what changed. Null when signChange cannot be sure of the edit: the caller
   * builds the zone whole and signs it so (signedInWrite). SealedError while sealed.
   */
  signChangeInWrite(tx: Database, before: sql.ZoneRow, after: sql.ZoneRow, served: Zone, soa: RR, changes: readonly RrsetChange[]): Zone | null {
    const stored = sql.zoneKey(tx, before.id)!;
    const incoming = sql.incomingKey(tx, before.id);
    const keys = this.signingKeys(stored, incoming);
    if (keys === null) throw new SealedError(`Citadel is sealed: ${before.name} is signed, and cannot change until its keys are back (unseal, then try again).`);
    const zone = signChange(served, soa, changes, keys, after.updated_at, denialOf(stored), parentSignalOf(before.name, stored, incoming));
    if (zone === null) return null;
    // The rows of the RRsets it signed and removed; all of them when those stored are not the served zone's (another serial's, or an older Citadel's blob).
    const rows = changedRows(signaturesOf(zone)!)!;
    if (!sql.saveChangedRrsigs(tx, before.id, before.serial, after.serial, rows.removed, rows.signed)) sql.saveZoneRrsigs(tx, before.id, after.serial, signaturesOf(zone)!.storedRows());
    return zone;
  }

  /** The signed zone served for `row` as it is now (its serial and updated_at), if that is the one this signer made last. */
  servedAt(row: Pick<sql.ZoneRow, "id" | "serial" | "updated_at">): Zone | null {
    const version = this.versions.get(row.id);
    return version !== undefined && version.serial === row.serial && version.updatedAt === row.updated_at ? version.zone : null;
  }

  /** A zone signed in its write (`signedInWrite`), committed and now served: its signatures are those the next signing keeps. */
  adopt(zoneId: string, served: Zone, version: { serial: number; updatedAt: number }): void {
    this.unsigned.delete(zoneId);
    this.remember(zoneId, served, { serial: version.serial, updated_at: version.updatedAt });
  }

  private signedWhileSealed(row: sql.ZoneRow, zone: Zone, keys: ReadonlyArray<{ dnskey: Uint8Array }>, denial: Denial, parent: ParentSignal | null): Zone {
    const stored = sql.zoneKey(this.k.store.db, row.id)!;
    if (stored.signed_serial === row.serial) {
      const dnskeys = keys.map((key) => new Uint8Array(key.dnskey));
      const rrsigs = sql.storedRrsigs(this.k.store.db, row.id, stored.rrsigs).flatMap(decodeRrsigs);
      const served = withStoredSignatures(zone, dnskeys, rrsigs, denial, parent);
      if (served !== null) {
        this.remember(row.id, served, row);
        this.k.log.info("dns: Citadel is sealed: a signed zone is served with the signatures stored at its serial", { zone: row.name, serial: row.serial, keys: dnskeys.length });
        return served;
      }
    }
    this.unsigned.add(row.id);
    this.current.delete(row.id);
    this.versions.delete(row.id);
    this.k.log.error("dns: Citadel is sealed and a signed zone has no signatures stored for its serial: its names are answered SERVFAIL until it is unsealed", { zone: row.name, serial: row.serial });
    return unavailableSigned(zone);
  }

  private remember(zoneId: string, served: Zone, row: Pick<sql.ZoneRow, "serial" | "updated_at">): Zone {
    this.current.set(zoneId, signaturesOf(served)!);
    this.versions.set(zoneId, { serial: row.serial, updatedAt: row.updated_at, zone: served });
    return served;
  }

  /** When the first of the zone's served signatures expires (null: not signed here yet). */
  expiresAt(zoneId: string): number | null {
    return this.current.get(zoneId)?.expiresAt ?? null;
  }

  /** The zone's key, then a rollover's new key when there is one; null while sealed. */
  private signingKeys(stored: sql.ZoneKeyRow, incoming: sql.IncomingKeyRow | null): SigningKey[] | null {
    const keyring = this.k.seal.keyringIfUnsealed();
    if (!keyring) return null;
    const keys = [this.decrypted(keyring, stored.zone_id, "active", stored.private_key)];
    if (incoming) keys.push(this.decrypted(keyring, stored.zone_id, "incoming", incoming.private_key));
    else this.keys.delete(`${stored.zone_id} incoming`);
    return keys;
  }

  private decrypted(keyring: Keyring, zoneId: string, role: KeyRole, envelope: Uint8Array): SigningKey {
    const at = `${zoneId} ${role}`;
    const cached = this.keys.get(at);
    if (cached && cached.keyring === keyring && Buffer.from(cached.envelope).equals(envelope)) return cached.key;
    const pkcs8 = keyring.decrypt(KEY_OWNER, role === "active" ? keyContext(zoneId) : incomingKeyContext(zoneId), envelope);
    const key = signingKeyFrom(pkcs8);
    pkcs8.fill(0);
    this.keys.set(at, { keyring, envelope: new Uint8Array(envelope), key });
    return key;
  }

  /** Does the zone have DNSSEC on? */
  isSigned(zoneId: string, db: Database = this.k.store.db): boolean {
    return sql.zoneKey(db, zoneId) !== null;
  }

  /** Holds a decrypted key of the zone in memory (tests: a deleted zone's must be gone). */
  holdsKey(zoneId: string): boolean {
    return this.keys.has(`${zoneId} active`) || this.keys.has(`${zoneId} incoming`);
  }

  /** Drops the zone's decrypted keys: a rollover finished or was cancelled (the signatures served stay, to be kept where they still sign). */
  forgetKeys(zoneId: string): void {
    this.keys.delete(`${zoneId} active`);
    this.keys.delete(`${zoneId} incoming`);
  }

  /** Drops the zone's decrypted keys and signatures: its signing ended (disabled, or the zone deleted or erased). */
  forget(zoneId: string): void {
    this.forgetKeys(zoneId);
    this.unsigned.delete(zoneId);
    this.current.delete(zoneId);
    this.versions.delete(zoneId);
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

export type KeyState = "active" | "incoming" | "retiring";

/** One of a signed zone's keys: the zone's key (active), or during a rollover the old one (retiring) and the new one (incoming). */
export interface DnssecKeyView {
  key_tag: number;
  state: KeyState;
  dnskey: string;
  ds: string;
  created_at: string;
  /** Citadel publishes a key in the serial that makes it: the same time as created_at. */
  published_at: string;
}

/** A key rollover in progress, and its timings (TTLs and the delay in seconds). */
export interface RolloverView {
  started_at: string;
  /** The serial that first published the new key: each secondary should serve it, or a later one. */
  published_serial: number;
  /** From when caches hold the new DNSKEY: the DS at the parent may be replaced by the new key's. */
  replace_ds_from: string;
  /** From when `finish` is accepted (caches can no longer hold what the old key alone signed). */
  finish_possible_at: string;
  can_finish: boolean;
  /** The TTLs at the start and the propagation delay configured then, as the wait counts them (rolloverWaits). */
  dnskey_ttl: number;
  max_ttl: number;
  propagation_delay: number;
  /** When the new key became ready for the parent (its CDS/CDNSKEY published from then); null before replace_ds_from's schedule check. */
  ready_at: string | null;
  /** When an operator confirmed that the parent publishes the new DS alone (`rollover submitted`: Citadel asks no parent). */
  submitted_at: string | null;
  /** From when the schedule finishes it by itself (null: not before the parent is confirmed). */
  auto_finish_at: string | null;
  /** Started by the schedule (the key's lifetime ran out), not by an operator. */
  automatic: boolean;
  /** What the rollover waits for now (waitingFor). */
  waiting_for: RolloverWait;
  waiting: string;
}

/**
 * propagation: the new DNSKEY to reach every cache and secondary (the DS may not change yet);
 * parent: the parent to publish the new DS (`rollover submitted`); parent_delay:
 * the DS TTL after the parent's change, and the caches of what the old key alone signed; finish:
 * nothing — the schedule finishes it at its next check (a manual finish is possible too).
 */
export type RolloverWait = "propagation" | "parent" | "parent_delay" | "finish";

/** What the zone publishes for the parent (RFC 7344, 8078), and its key's schedule. */
export interface CdsView {
  mode: sql.CdsMode;
  /** When the mode was last set (null: as signed). */
  since: string | null;
  /** The CDS and CDNSKEY records served now (presentation form); empty when Citadel publishes none. */
  cds: string[];
  cdnskey: string[];
}

export interface DnssecView {
  zone: string;
  enabled: boolean;
  algorithm: string | null;
  /** The zone's key: during a rollover the old one, which signs until the rollover finishes. */
  key_tag: number | null;
  /** Every DNSKEY served (two during a rollover), and the DS of each. */
  dnskey: string[];
  ds: string[];
  signatures_expire_at: string | null;
  created_at: string | null;
  keys: DnssecKeyView[];
  rollover: RolloverView | null;
  /** How the zone proves names and types absent: "nsec" (its names can be listed by walking the chain) or "nsec3" (hashed); null unsigned. */
  denial: sql.DenialMode | null;
  nsec3: Nsec3View | null;
  /** CDS/CDNSKEY publication (null unsigned). */
  cds: CdsView | null;
  /** The key's lifetime in days (0: rolled by hand; null unsigned), and when the schedule starts the next rollover (null: none scheduled, or one in progress). */
  csk_lifetime_days: number | null;
  /** When the zone's key began to sign alone (its signing, or its rollover's finish): its lifetime counts from then. */
  activated_at: string | null;
  next_rollover_at: string | null;
}

/** A zone's NSEC3 parameters (RFC 9276's: only the salt can differ). */
export interface Nsec3View {
  hash_algorithm: string;
  iterations: number;
  /** Hex; "" for none (RFC 9276's advice). */
  salt: string;
  opt_out: boolean;
  /** The NSEC3PARAM record at the apex, presentation form. */
  nsec3param: string;
}

/** What a request may say of a zone's denial of existence (enable and set). */
export interface DenialInput {
  denial?: sql.DenialMode;
  nsec3?: { salt?: string; iterations?: number; opt_out?: boolean };
}

/** What enable and PATCH may say of the key's schedule and what is published for the parent (the delete request has its own route). */
export interface PolicyInput {
  cds?: "none" | "rollover" | "always";
  csk_lifetime_days?: number;
}

/** Who acts: a caller of the API, or the schedule (audited as the system). */
export type Actor = Caller | "system";

/** A key lifetime below this is refused: a rollover at a parent whose DS TTL is a day takes days. */
export const MIN_CSK_LIFETIME_DAYS = 7;
/** New signings publish CDS/CDNSKEY while a rollover waits for the parent, as Knot's default (docs/dns.md). */
export const DEFAULT_CDS: sql.CdsMode = "rollover";

/** Turning DNSSEC on and off for a zone, its denial of existence, its key rollover, and what to give the parent. */
export class DnssecService {
  constructor(
    private readonly k: DnsKernel,
    private readonly dns: DnsService,
  ) {}

  show(organizationId: string, zone: string): DnssecView {
    const row = this.dns.zoneRow(organizationId, zone);
    return this.view(row, sql.zoneKey(this.k.store.db, row.id), sql.incomingKey(this.k.store.db, row.id), this.dns.signer.expiresAt(row.id));
  }

  /**
   * Signs the zone from now on: a new key, sealed in the keyring, and a new serial (secondaries
   * transfer the signed zone), proving absence with NSEC unless `input` asks for NSEC3
   * (requestedDenial: 422 for parameters RFC 9276 advises against). Refused (409) for a zone
   * holding a record provider's names.
   */
  async enable(caller: Caller, organizationId: string, zone: string, input: DenialInput & PolicyInput = {}): Promise<DnssecView> {
    const requested = requestedDenial(input);
    const cds = requestedCds(input.cds) ?? DEFAULT_CDS;
    const lifetime = requestedLifetime(input.csk_lifetime_days) ?? 0;
    const { pkcs8, dnskey } = generateSigningKey();
    try {
      return await this.dns.zoneWrite((tx) => {
        const row = this.dns.zoneRow(organizationId, zone, tx);
        if (sql.zoneKey(tx, row.id)) throw new ConflictError(`${row.name} is signed already.`);
        this.refuseProvidedNames(row);
        this.refuseUndelegatedZones(tx, row, requested);
        this.refuseUnsignableRecords(tx, row);
        const now = this.k.clock.now();
        const envelope = this.k.seal.keyring().encrypt(tx, KEY_OWNER, keyContext(row.id), pkcs8);
        sql.insertZoneKey(tx, { zone_id: row.id, algorithm: ALGORITHM, dnskey, private_key: envelope, created_at: now, denial: requested.denial, nsec3_salt: requested.nsec3_salt, cds, csk_lifetime: lifetime });
        const serial = nextSerial(row.serial, now);
        sql.updateZoneSoa(tx, row.id, row, serial, now);
        const denial = requested.denial === "nsec3" ? `, ${denialText(requested)}` : "";
        const policy = `; CDS/CDNSKEY: ${cds}; key lifetime: ${lifetimeText(lifetime)}`;
        this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.enable", `${row.name}: signed with a ${ALGORITHM_NAME} key, tag ${keyTag(dnskey)}${denial}${policy}; serial ${serial}`));
        const expiresAt = this.dns.signInWrite(tx, row.id);
        return this.view({ ...row, serial, updated_at: now }, sql.zoneKey(tx, row.id), null, expiresAt);
      });
    } finally {
      pkcs8.fill(0);
    }
  }

  /**
   * Switches a signed zone's denial of existence (NSEC ⇄ NSEC3, or NSEC3 with another salt): a
   * new serial whose signing, in this write, makes the whole new chain at once (the class
   * comment), audited. Validators need nothing new: the DNSKEY and DS stay. 409 for an unsigned
   * zone, or one that proves absence so already; 422 for parameters RFC 9276 advises against;
   * 503 `sealed` while the keys are out of reach.
   */
  async setDenial(caller: Caller, organizationId: string, zone: string, input: DenialInput): Promise<DnssecView> {
    return this.update(caller, organizationId, zone, input);
  }

  /**
   * PATCH: the denial of existence (setDenial's switch, 409 when it is so already), what is
   * published for the parent (`cds`) and the key's lifetime, any of them in one write, each
   * audited. A change of what is served (a switch, or another CDS/CDNSKEY set) moves the serial,
   * signed in this write; a lifetime changes only the schedule. 422 when nothing is asked.
   */
  async update(caller: Caller, organizationId: string, zone: string, input: DenialInput & PolicyInput): Promise<DnssecView> {
    const switching = input.denial !== undefined || input.nsec3 !== undefined;
    const requested = switching ? requestedDenial(input) : null;
    const cds = requestedCds(input.cds);
    const lifetime = requestedLifetime(input.csk_lifetime_days);
    if (requested === null && cds === null && lifetime === null) throw new InvalidError("nothing to change: give denial, cds or csk_lifetime_days", "denial");
    return this.dns.zoneWrite((tx) => {
      const row = this.dns.zoneRow(organizationId, zone, tx);
      const key = sql.zoneKey(tx, row.id);
      if (!key) throw new ConflictError(`${row.name} is not signed: citadel dns zone dnssec enable${requested?.denial === "nsec3" ? " --nsec3" : ""} signs it.`);
      const incoming = sql.incomingKey(tx, row.id);
      const now = this.k.clock.now();
      const before = signalText(parentSignalOf(row.name, key, incoming));
      const changes: string[] = [];
      if (requested !== null) {
        if (key.denial === requested.denial && Buffer.from(key.nsec3_salt).equals(requested.nsec3_salt)) throw new ConflictError(`${row.name} proves absence with ${denialText(key)} already.`);
        sql.setZoneDenial(tx, row.id, requested.denial, requested.nsec3_salt);
      }
      if (cds !== null && cds !== key.cds) {
        sql.setZoneCds(tx, row.id, cds, now);
        changes.push(`CDS/CDNSKEY ${key.cds} → ${cds}`);
      }
      if (lifetime !== null && lifetime !== key.csk_lifetime) {
        sql.setZoneKeyLifetime(tx, row.id, lifetime);
        const due = nextRolloverAt({ ...key, csk_lifetime: lifetime });
        const soon = due !== null && incoming === null && due <= now ? " (the key is older: the rollover starts at the schedule's next check, within 10 minutes)" : "";
        changes.push(`key lifetime ${lifetimeText(key.csk_lifetime)} → ${lifetimeText(lifetime)}${soon}`);
      }
      const after = sql.zoneKey(tx, row.id)!;
      const signalChanged = signalText(parentSignalOf(row.name, after, incoming)) !== before;
      let current = row;
      let expiresAt = this.dns.signer.expiresAt(row.id);
      if (requested !== null || signalChanged) {
        const serial = nextSerial(row.serial, now);
        sql.updateZoneSoa(tx, row.id, row, serial, now);
        current = { ...row, serial, updated_at: now };
        if (requested !== null) {
          this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.denial", `${row.name}: denial of existence ${denialText(key)} → ${denialText(requested)}, the zone signed again with the new chain; serial ${serial}`));
        }
        expiresAt = this.dns.signInWrite(tx, row.id);
      }
      if (changes.length > 0) {
        const served = signalChanged ? `; published now: ${signalText(parentSignalOf(row.name, after, incoming)) || "no CDS/CDNSKEY"}; serial ${current.serial}` : "";
        this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.policy", `${row.name}: ${changes.join(", ")}${served}`));
      }
      return this.view(current, after, incoming, expiresAt);
    });
  }

  /**
   * The first step of turning DNSSEC off with the parent's help (RFC 8078 section 4): the zone
   * stays signed and publishes the delete CDS and CDNSKEY, so that a parent that scans for them
   * removes the DS; once it has (and its TTL passed), `disable` ends the signing. A zone whose
   * parent never had a DS can be disabled at once. 409 during a rollover (finish or cancel it
   * first: the parent would be asked for two things) or when it is asked already.
   */
  async requestDsRemoval(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => {
      const row = this.dns.zoneRow(organizationId, zone, tx);
      const key = sql.zoneKey(tx, row.id);
      if (!key) throw new NotFoundError(`${row.name} is not signed.`);
      if (key.cds === "delete") throw new ConflictError(`${row.name} asks its parent to remove the DS already (since ${key.cds_since === null ? "its signing" : iso(key.cds_since)}): once the parent has no DS for it (dig +norecurse DS ${row.name} @<parent server>) and the DS TTL passed, citadel dns zone dnssec disable ${row.name} --yes.`);
      const incoming = sql.incomingKey(tx, row.id);
      if (incoming) throw new ConflictError(`${row.name} has a key rollover in progress (new key tag ${keyTag(incoming.dnskey)}): finish or cancel it before asking the parent to remove the DS.`);
      const now = this.k.clock.now();
      sql.setZoneCds(tx, row.id, "delete", now);
      const serial = nextSerial(row.serial, now);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      this.k.audit.record(
        tx,
        event(caller, row, "dns.zone.dnssec.policy", `${row.name}: CDS/CDNSKEY ${key.cds} → delete: the parent is asked to remove the DS (RFC 8078 section 4: CDS 0 0 0 00, CDNSKEY 0 3 0 AA==); still signed; serial ${serial}`),
      );
      const expiresAt = this.dns.signInWrite(tx, row.id);
      return this.view({ ...row, serial, updated_at: now }, sql.zoneKey(tx, row.id), null, expiresAt);
    });
  }

  /**
   * Stops signing: the key goes (both keys during a rollover), and the zone is served without
   * DNSKEY, RRSIG and NSEC from its next serial. Resolvers that validate fail the zone while the
   * parent still has a DS for it: the DS goes first (and its TTL passes).
   */
  async disable(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => {
      const row = this.dns.zoneRow(organizationId, zone, tx);
      const key = sql.zoneKey(tx, row.id);
      if (!key) throw new NotFoundError(`${row.name} is not signed.`);
      const incoming = sql.incomingKey(tx, row.id);
      sql.deleteZoneKeys(tx, row.id);
      const now = this.k.clock.now();
      const serial = nextSerial(row.serial, now);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      this.dns.signer.forget(row.id);
      const removed = incoming ? `key tags ${keyTag(key.dnskey)} and ${keyTag(incoming.dnskey)} (the new key of a rollover in progress) removed` : `key tag ${keyTag(key.dnskey)} removed`;
      this.k.audit.record(tx, event(caller, row, "dns.zone.dnssec.disable", `${row.name}: ${removed}; serial ${serial}`));
      return this.view(row, null, null);
    });
  }

  /**
   * Starts a key rollover: a new key (sealed in the keyring, as the zone's), published beside
   * the zone's key, and every RRset signed by both from a new serial, which secondaries
   * transfer. Validators holding either key's DS validate the zone meanwhile. 409 for a zone
   * that is not signed, has a rollover in progress, or asks its parent to remove the DS.
   */
  async startRollover(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => this.startIn(tx, this.dns.zoneRow(organizationId, zone, tx), caller));
  }

  private startIn(tx: Database, row: sql.ZoneRow, actor: Actor): DnssecView {
    const key = sql.zoneKey(tx, row.id);
    if (!key) throw new ConflictError(`${row.name} is not signed: there is no key to roll over (citadel dns zone dnssec enable signs it).`);
    const pending = sql.incomingKey(tx, row.id);
    if (pending) throw new ConflictError(`${row.name} has a key rollover in progress (new key tag ${keyTag(pending.dnskey)}): finish or cancel it first.`);
    if (key.cds === "delete") throw new ConflictError(`${row.name} asks its parent to remove the DS (CDS/CDNSKEY delete): a new key would ask it for a DS again. Set another CDS mode first (citadel dns zone dnssec set ${row.name} --cds rollover).`);
    const { pkcs8, dnskey } = keyBeside(new Uint8Array(key.dnskey));
    try {
      const now = this.k.clock.now();
      const serial = nextSerial(row.serial, now);
      const dnskeyTtl = dnskeyTtlOf(row);
      const incoming: sql.IncomingKeyRow = {
        zone_id: row.id,
        algorithm: ALGORITHM,
        dnskey,
        private_key: this.k.seal.keyring().encrypt(tx, KEY_OWNER, incomingKeyContext(row.id), pkcs8),
        created_at: now,
        published_serial: serial,
        dnskey_ttl: dnskeyTtl,
        max_ttl: Math.max(dnskeyTtl, sql.largestRecordTtl(tx, row.id) ?? 0),
        propagation_delay: this.k.settings.dnssec_propagation_delay,
        ready_at: null,
        submitted_at: null,
        parent_delay: 0,
        automatic: actor === "system" ? 1 : 0,
      };
      sql.insertIncomingKey(tx, incoming);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      const finishFrom = iso(finishPossibleAt(incoming));
      const why = actor === "system" ? ` by the schedule: key tag ${keyTag(key.dnskey)} reached its lifetime (${lifetimeText(key.csk_lifetime)})` : "";
      this.k.audit.record(
        tx,
        event(actor, row, "dns.zone.dnssec.rollover.start", `${row.name}: key rollover started${why}: new key tag ${keyTag(dnskey)} published beside key tag ${keyTag(key.dnskey)}, both sign the zone; serial ${serial}; the DS may change at the parent from ${iso(replaceDsFrom(incoming))}; finish possible from ${finishFrom}`),
      );
      const expiresAt = this.dns.signInWrite(tx, row.id);
      return this.view({ ...row, serial, updated_at: now }, key, incoming, expiresAt);
    } finally {
      pkcs8.fill(0);
    }
  }

  /**
   * The new key is ready for the parent (no cache holds the DNSKEY RRset without it): from now
   * on the zone publishes CDS/CDNSKEY for it alone (when its mode publishes any: a new serial,
   * signed here), so that a parent that scans replaces the DS. Audited; the schedule's step at
   * replace_ds_from, or part of the operator's confirmation of the submission.
   */
  private markReady(tx: Database, row: sql.ZoneRow, key: sql.ZoneKeyRow, incoming: sql.IncomingKeyRow, actor: Actor): { row: sql.ZoneRow; incoming: sql.IncomingKeyRow; expiresAt: number | null } {
    const now = this.k.clock.now();
    const before = signalText(parentSignalOf(row.name, key, incoming));
    const ready = { ...incoming, ready_at: now };
    sql.setIncomingReady(tx, row.id, now);
    const after = parentSignalOf(row.name, key, ready);
    let current = row;
    let expiresAt = this.dns.signer.expiresAt(row.id);
    if (signalText(after) !== before) {
      const serial = nextSerial(row.serial, now);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      current = { ...row, serial, updated_at: now };
      expiresAt = this.dns.signInWrite(tx, row.id);
    }
    const published = after !== null && after.cds.length > 0 ? `its CDS and CDNSKEY published for the parent to scan; serial ${current.serial}` : `CDS/CDNSKEY ${key.cds}: give the registrar its DS by hand`;
    this.k.audit.record(tx, event(actor, row, "dns.zone.dnssec.rollover.ready", `${row.name}: new key tag ${keyTag(incoming.dnskey)} ready for the parent (caches hold it since the start): the DS at the parent may be replaced by its own; ${published}`));
    return { row: current, incoming: ready, expiresAt };
  }

  /**
   * The operator's word that the parent publishes the new key's DS alone (`rollover submitted`,
   * Knot's `zone-ksk-submitted`): the schedule finishes the rollover by itself once
   * [dns] dnssec_parent_delay (the parent's DS TTL) has passed since and the caches of what the
   * old key alone signed have expired (finish_possible_at). 409 before replace_ds_from (the parent
   * should not have the new DS yet: caches may lack its key) or when confirmed already.
   */
  async confirmSubmission(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => {
      let row = this.dns.zoneRow(organizationId, zone, tx);
      const { key, incoming } = this.rollover(tx, row);
      const now = this.k.clock.now();
      if (incoming.submitted_at !== null) throw new ConflictError(`${row.name}'s new key's DS was confirmed at the parent already (${iso(incoming.submitted_at)}, by an operator).`);
      const from = replaceDsFrom(incoming);
      if (now < from) {
        throw new HttpProblem(
          409,
          "conflict",
          `${row.name}'s new key (tag ${keyTag(incoming.dnskey)}) may not be at the parent yet: ${durationText(from - now)} left (from ${iso(from)}) until caches hold its DNSKEY. A resolver holding the old DNSKEY RRset and the new DS fails the zone: if the registrar has it already, put the old DS back until then.`,
          { "retry-after": String(Math.ceil((from - now) / 1000)) },
          { replace_ds_from: iso(from) },
        );
      }
      let current = incoming;
      let expiresAt = this.dns.signer.expiresAt(row.id);
      if (incoming.ready_at === null) ({ row, incoming: current, expiresAt } = this.markReady(tx, row, key, incoming, caller));
      const parentDelay = this.k.settings.dnssec_parent_delay;
      sql.setIncomingSubmitted(tx, row.id, now, parentDelay);
      current = { ...current, submitted_at: now, parent_delay: parentDelay };
      this.k.audit.record(
        tx,
        event(caller, row, "dns.zone.dnssec.rollover.submitted", `${row.name}: confirmed: the parent publishes new key tag ${keyTag(incoming.dnskey)}'s DS alone; the schedule retires key tag ${keyTag(key.dnskey)} from ${iso(autoFinishAt(current)!)} (parent delay ${parentDelay} s)`),
      );
      return this.view(row, key, current, expiresAt);
    });
  }

  /**
   * Finishes the rollover: the old key goes (its DNSKEY and its signatures), the new one signs
   * alone from a new serial. Refused (409, with the time left) until caches can no longer hold
   * what the old key alone signed: the DNSKEY RRset's TTL, the zone's largest TTL and the
   * propagation delay since the start, TTLs as they were then. That the parent publishes only
   * the new key's DS, and that its TTL has passed, Citadel cannot see: the route asks for a
   * confirmation, which is the operator saying so.
   */
  async finishRollover(caller: Caller, organizationId: string, zone: string): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => this.finishIn(tx, this.dns.zoneRow(organizationId, zone, tx), caller));
  }

  private finishIn(tx: Database, row: sql.ZoneRow, actor: Actor): DnssecView {
    const { key, incoming } = this.rollover(tx, row);
    const now = this.k.clock.now();
    const from = finishPossibleAt(incoming);
    if (now < from) {
      const waits = rolloverWaits(incoming);
      // A 409 `conflict` as any other, with the time for a client to act on without reading the text: a member and Retry-After.
      throw new HttpProblem(
        409,
        "conflict",
        `${row.name}'s key rollover cannot finish yet: ${durationText(from - now)} left (from ${iso(from)}). The new key (tag ${keyTag(incoming.dnskey)}) is published since ${iso(incoming.created_at)}; until then caches may hold the DNSKEY RRset without it (TTL ${waits.dnskeyTtl} s) or records the old key alone signed (TTL up to ${waits.maxTtl} s), and secondaries may still be transferring it ([dns] dnssec_propagation_delay at the start, ${waits.delay} s).`,
        { "retry-after": String(Math.ceil((from - now) / 1000)) },
        { finish_possible_at: iso(from) },
      );
    }
    // The new key becomes the zone's key, its envelope made again for that row (each envelope is bound to its row).
    const keyring = this.k.seal.keyring();
    const pkcs8 = keyring.decrypt(KEY_OWNER, incomingKeyContext(row.id), incoming.private_key);
    let envelope: Uint8Array;
    try {
      envelope = keyring.encrypt(tx, KEY_OWNER, keyContext(row.id), pkcs8);
    } finally {
      pkcs8.fill(0);
    }
    // Its lifetime counts from now, when it begins to sign alone: a parent that took long does not shorten it.
    sql.replaceZoneKey(tx, row.id, { algorithm: incoming.algorithm, dnskey: incoming.dnskey, private_key: envelope, created_at: incoming.created_at, activated_at: now });
    sql.deleteIncomingKey(tx, row.id);
    const serial = nextSerial(row.serial, now);
    sql.updateZoneSoa(tx, row.id, row, serial, now);
    this.dns.signer.forgetKeys(row.id);
    this.forgetWaiting(row.id);
    const [oldTag, newTag] = [keyTag(key.dnskey), keyTag(incoming.dnskey)];
    const confirmed =
      actor === "system"
        ? `by the schedule: the parent's DS confirmed by an operator at ${iso(incoming.submitted_at ?? now)}, ${incoming.parent_delay} s (the parent delay) passed since`
        : `confirmed: the parent publishes key tag ${newTag}'s DS alone, its TTL passed`;
    this.k.audit.record(tx, event(actor, row, "dns.zone.dnssec.rollover.finish", `${row.name}: key rollover finished: key tag ${oldTag} retired (its DNSKEY and signatures removed), key tag ${newTag} signs alone; ${confirmed}; serial ${serial}`));
    const expiresAt = this.dns.signInWrite(tx, row.id);
    return this.view({ ...row, serial, updated_at: now }, sql.zoneKey(tx, row.id), null, expiresAt);
  }

  /**
   * The rollover schedule's step for each zone that has one (at start, at every unseal, then
   * every few minutes: index.ts): start a rollover when the key reached its lifetime; mark the
   * new key ready for the parent at replace_ds_from (its CDS published); finish once the parent
   * is confirmed to publish the new DS (`rollover submitted`) and both the parent delay and
   * finish_possible_at have passed. Never removes a key the parent may still point at: without
   * the confirmation it waits, and says so once in the log. Each step is its own write, audited
   * as the system; state is in the store, so a restart resumes where it was. Nothing while
   * sealed (a new key cannot be sealed, nor the zone signed).
   */
  async runSchedule(): Promise<Array<{ zone: string; step: ScheduleStep }>> {
    if (this.k.seal.keyringIfUnsealed() === null) return [];
    const done: Array<{ zone: string; step: ScheduleStep }> = [];
    const db = this.k.store.db;
    for (const zone of sql.scheduledZones(db)) {
      try {
        // Read first: a zone where nothing is due, or whose rollover waits for the parent, takes no
        // write (no transaction, no reload of the listeners).
        const key = sql.zoneKey(db, zone.id);
        const incoming = sql.incomingKey(db, zone.id);
        const due = key === null ? null : dueStep(key, incoming, this.k.clock.now());
        if (due === null) continue;
        if (due === "waiting for the parent") {
          done.push({ zone: zone.name, step: due });
          const at = `${zone.id} ${incoming?.created_at}`;
          if (this.waitingLogged.has(at)) continue;
          this.waitingLogged.add(at);
          this.k.log.warn("dns: a key rollover waits for the parent: the old key stays until the parent's DS for the new key is confirmed (citadel dns zone dnssec rollover submitted)", { zone: zone.name, new_key_tag: incoming ? keyTag(incoming.dnskey) : null });
          continue;
        }
        const step = await this.dns.zoneWrite((tx) => this.scheduleStep(tx, zone.id));
        if (step === null) continue;
        done.push({ zone: zone.name, step });
        this.k.log.info(`dns: key rollover schedule: ${step}`, { zone: zone.name });
      } catch (error) {
        this.k.log.error("dns: the key rollover schedule could not act on a zone; it tries again at its next check", { zone: zone.name, error: error instanceof Error ? error.message : String(error) });
      }
    }
    return done;
  }

  /** Zones whose rollover waits for the parent, logged once each (per rollover): `zone id` + ` ` + the new key's creation. */
  private readonly waitingLogged = new Set<string>();

  /** A rollover of the zone ended (finished or cancelled): its "waits" line is no longer needed. */
  private forgetWaiting(zoneId: string): void {
    for (const at of this.waitingLogged) if (at.startsWith(`${zoneId} `)) this.waitingLogged.delete(at);
  }

  /** How many rollovers' waits are remembered as logged (tests: none once they ended). */
  waitingRemembered(): number {
    return this.waitingLogged.size;
  }

  /** The zones whose rollover waits for the parent's DS to be confirmed (the metric). */
  waitingForParent(): number {
    return sql.scheduledZones(this.k.store.db).filter((z) => {
      const incoming = sql.incomingKey(this.k.store.db, z.id);
      return incoming !== null && incoming.ready_at !== null && incoming.submitted_at === null;
    }).length;
  }

  /** The schedule's step for the zone, taken in `tx` when one is due (checked again there: the state may have changed since the read). */
  private scheduleStep(tx: Database, zoneId: string): ScheduleStep | null {
    const row = sql.liveZoneById(tx, zoneId);
    const key = row ? sql.zoneKey(tx, zoneId) : null;
    if (!row || !key) return null;
    const incoming = sql.incomingKey(tx, zoneId);
    const step = dueStep(key, incoming, this.k.clock.now());
    if (step === "rollover started") this.startIn(tx, row, "system");
    else if (step === "new key ready for the parent") this.markReady(tx, row, key, incoming!, "system");
    else if (step === "rollover finished") this.finishIn(tx, row, "system");
    return step;
  }

  /**
   * Cancels the rollover: the new key goes (its DNSKEY and its signatures), the zone's key signs
   * alone again from a new serial. Validators holding the new key's DS fail the zone from then
   * on — resolvers keep it for the parent's DS TTL after the registrar drops it: the route asks
   * for a confirmation that the old DS is back and that TTL has passed.
   *
   * Refused (409) once the parent is confirmed to publish the new key's DS (`rollover submitted`):
   * the cancel would remove exactly the key that DS points at — finish instead. Refused too, unless
   * `force`, once the new key is ready and the zone has published its CDS/CDNSKEY: a parent that
   * scans for them may already hold the new DS, which Citadel cannot see (Knot offers no cancel
   * there at all); the operator checks the parent and forces.
   */
  async cancelRollover(caller: Caller, organizationId: string, zone: string, options: { force?: boolean } = {}): Promise<DnssecView> {
    return this.dns.zoneWrite((tx) => {
      const row = this.dns.zoneRow(organizationId, zone, tx);
      const { key, incoming } = this.rollover(tx, row);
      const newTag = keyTag(incoming.dnskey);
      if (incoming.submitted_at !== null) {
        throw new ConflictError(
          `${row.name}'s rollover cannot be cancelled: the parent publishes the new key's DS (tag ${newTag}; confirmed ${iso(incoming.submitted_at)}), and cancelling would remove the key it points at, failing the zone for every validator. Finish it (citadel dns zone dnssec rollover finish ${row.name} --yes), or wait for the schedule to finish it from ${iso(autoFinishAt(incoming)!)}.`,
        );
      }
      const published = cdsPublishedFor(key, incoming);
      if (published && options.force !== true) {
        throw new ConflictError(
          `${row.name} has published the new key's CDS/CDNSKEY since ${iso(incoming.ready_at!)}: a parent that scans for them may already hold the new key's DS (tag ${newTag}), and cancelling would remove the key it points at. Check the parent (dig +norecurse DS ${row.name} @<parent server>): if it has the new DS, leave the rollover running (always safe: both keys sign), or finish it; if it has only the old DS, cancel with force (citadel dns zone dnssec rollover cancel ${row.name} --force --yes; API: ?force=true).`,
        );
      }
      sql.deleteIncomingKey(tx, row.id);
      const now = this.k.clock.now();
      const serial = nextSerial(row.serial, now);
      sql.updateZoneSoa(tx, row.id, row, serial, now);
      this.dns.signer.forgetKeys(row.id);
      const forced = published ? ", forced: the operator checked that the parent holds no DS of the new key, whose CDS/CDNSKEY were published" : "";
      this.k.audit.record(
        tx,
        event(caller, row, "dns.zone.dnssec.rollover.cancel", `${row.name}: key rollover cancelled${forced}: new key tag ${newTag} removed (its DNSKEY and signatures), key tag ${keyTag(key.dnskey)} signs alone; serial ${serial}`),
      );
      const expiresAt = this.dns.signInWrite(tx, row.id);
      this.forgetWaiting(row.id);
      return this.view({ ...row, serial, updated_at: now }, key, null, expiresAt);
    });
  }

  /** The zone's keys during its rollover; 404 when it has none in progress. */
  private rollover(tx: Database, row: sql.ZoneRow): { key: sql.ZoneKeyRow; incoming: sql.IncomingKeyRow } {
    const key = sql.zoneKey(tx, row.id);
    const incoming = sql.incomingKey(tx, row.id);
    if (!key || !incoming) throw new NotFoundError(`${row.name} has no key rollover in progress.`);
    return { key, incoming };
  }

  private view(row: sql.ZoneRow, key: sql.ZoneKeyRow | null, incoming: sql.IncomingKeyRow | null, expiresAt: number | null = null): DnssecView {
    if (!key) {
      return { zone: row.name, enabled: false, algorithm: null, key_tag: null, dnskey: [], ds: [], signatures_expire_at: null, created_at: null, keys: [], rollover: null, denial: null, nsec3: null, cds: null, csk_lifetime_days: null, activated_at: null, next_rollover_at: null };
    }
    const origin = parseName(row.name, null);
    const keyView = (dnskey: Uint8Array, state: KeyState, createdAt: number): DnssecKeyView => ({
      key_tag: keyTag(dnskey),
      state,
      dnskey: `${row.name} IN DNSKEY ${dnskeyText(dnskey)}`,
      ds: `${row.name} IN DS ${dsText(dsOf(origin, dnskey))}`,
      created_at: iso(createdAt),
      published_at: iso(createdAt),
    });
    const keys = [keyView(new Uint8Array(key.dnskey), incoming ? "retiring" : "active", key.created_at)];
    if (incoming) keys.push(keyView(new Uint8Array(incoming.dnskey), "incoming", incoming.created_at));
    return {
      zone: row.name,
      enabled: true,
      algorithm: ALGORITHM_NAME,
      key_tag: keys[0]!.key_tag,
      dnskey: keys.map((k) => k.dnskey),
      ds: keys.map((k) => k.ds),
      signatures_expire_at: iso(expiresAt ?? row.updated_at + VALIDITY_MS),
      created_at: iso(key.created_at),
      keys,
      rollover: incoming ? this.rolloverView(incoming) : null,
      denial: key.denial,
      nsec3: key.denial === "nsec3" ? nsec3View(row.name, nsec3ParamsOf(key)) : null,
      cds: cdsView(row.name, key, incoming),
      csk_lifetime_days: key.csk_lifetime,
      activated_at: iso(key.activated_at),
      next_rollover_at: incoming ? null : nullableIso(nextRolloverAt(key)),
    };
  }

  private rolloverView(incoming: sql.IncomingKeyRow): RolloverView {
    const finishAt = finishPossibleAt(incoming);
    const waits = rolloverWaits(incoming);
    const waiting = waitingFor(incoming, this.k.clock.now());
    return {
      ready_at: nullableIso(incoming.ready_at),
      submitted_at: nullableIso(incoming.submitted_at),
      auto_finish_at: nullableIso(autoFinishAt(incoming)),
      automatic: incoming.automatic === 1,
      waiting_for: waiting.code,
      waiting: waiting.text,
      started_at: iso(incoming.created_at),
      published_serial: incoming.published_serial,
      replace_ds_from: iso(replaceDsFrom(incoming)),
      finish_possible_at: iso(finishAt),
      can_finish: this.k.clock.now() >= finishAt,
      dnskey_ttl: waits.dnskeyTtl,
      max_ttl: waits.maxTtl,
      propagation_delay: waits.delay,
    };
  }

  /**
   * A zone served here below this one without a delegation to it: the signed zone's NSEC or
   * NSEC3 chain would deny its names, and validators would fail every one.
   */
  private refuseUndelegatedZones(tx: Database, row: sql.ZoneRow, denial: Pick<sql.ZoneKeyRow, "denial">): void {
    const undelegated = this.dns.undelegatedZonesIn(tx, row);
    if (undelegated.length === 0) return;
    throw new ConflictError(
      `${row.name} holds ${undelegated.join(", ")}, served here with no delegation to ${undelegated.length === 1 ? "it" : "them"}: signed, ${row.name}'s ${chainName(denial)} records would deny ${undelegated.length === 1 ? "its" : "their"} names to validators. Delegate ${undelegated.length === 1 ? "it" : "them"} first (NS records in ${row.name}).`,
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

const iso = (ms: number) => new Date(ms).toISOString();
const nullableIso = (ms: number | null) => (ms === null ? null : iso(ms));

/** What one check of the rollover schedule did for a zone. */
export type ScheduleStep = "rollover started" | "new key ready for the parent" | "waiting for the parent" | "rollover finished";

/** The schedule's step due now for a zone with these key rows (null: nothing until a later check). */
function dueStep(key: sql.ZoneKeyRow, incoming: sql.IncomingKeyRow | null, now: number): ScheduleStep | null {
  if (!incoming) {
    const due = nextRolloverAt(key);
    return due === null || now < due ? null : "rollover started";
  }
  if (incoming.ready_at === null) return now < replaceDsFrom(incoming) ? null : "new key ready for the parent";
  const finishAt = autoFinishAt(incoming);
  if (finishAt === null) return "waiting for the parent";
  return now < finishAt ? null : "rollover finished";
}

/**
 * The CDS and CDNSKEY a signed zone publishes, from its key rows alone (every change of them
 * moves the serial, so one serial always serves one set): none for `none` (null: stored ones
 * served); the delete records for `delete`; for `always` the zone's key, or a rollover's new key
 * once it is ready for the parent; for `rollover` the new key once ready, nothing otherwise
 * (an empty set: stored ones are left out). The new key alone, not both: the set is what the
 * parent's DS set should become (RFC 7344 section 4.1), and before it is ready a parent that
 * took it would point at a key some caches lack.
 */
export function parentSignalOf(zone: string, key: Pick<sql.ZoneKeyRow, "cds" | "dnskey">, incoming: Pick<sql.IncomingKeyRow, "dnskey" | "ready_at"> | null): ParentSignal | null {
  const origin = parseName(zone, null);
  const ready = incoming !== null && incoming.ready_at !== null ? [new Uint8Array(incoming.dnskey)] : null;
  switch (key.cds) {
    case "none":
      return null;
    case "delete":
      return DELETE_SIGNAL;
    case "always":
      return parentSignalFor(origin, ready ?? [new Uint8Array(key.dnskey)]);
    case "rollover":
      return parentSignalFor(origin, ready ?? []);
  }
}

/**
 * Has the zone published the rollover's new key's CDS/CDNSKEY? From its ready step when the mode
 * publishes any (rollover, always); a mode set to none after that step published them until then.
 */
function cdsPublishedFor(key: Pick<sql.ZoneKeyRow, "cds" | "cds_since">, incoming: Pick<sql.IncomingKeyRow, "ready_at">): boolean {
  if (incoming.ready_at === null) return false;
  return key.cds === "rollover" || key.cds === "always" || (key.cds_since !== null && key.cds_since >= incoming.ready_at);
}

/**
 * The set in presentation form ("" for an empty one): to compare two sets, and for audit reasons.
 * Null differs from empty: the zone's stored CDS/CDNSKEY (if any) are served then, left out otherwise.
 */
function signalText(signal: ParentSignal | null): string {
  if (signal === null) return "none of Citadel's (any the zone stores served)";
  return [...signal.cds.map((d) => `CDS ${dsText(d)}`), ...signal.cdnskey.map((d) => `CDNSKEY ${dnskeyText(d)}`)].join("; ");
}

function cdsView(zone: string, key: sql.ZoneKeyRow, incoming: sql.IncomingKeyRow | null): CdsView {
  const signal = parentSignalOf(zone, key, incoming);
  return {
    mode: key.cds,
    since: nullableIso(key.cds_since),
    cds: (signal?.cds ?? []).map((d) => `${zone} IN CDS ${dsText(d)}`),
    cdnskey: (signal?.cdnskey ?? []).map((d) => `${zone} IN CDNSKEY ${dnskeyText(d)}`),
  };
}

/** A CDS mode a request asks for (null: none asked); "delete" has its own route, with a confirmation. */
export function requestedCds(mode: string | undefined): sql.CdsMode | null {
  if (mode === undefined) return null;
  if (mode === "delete") throw new InvalidError("cds delete asks the parent to remove the DS: POST .../dnssec/ds-removal (citadel dns zone dnssec disable --via-cds), which asks for a confirmation", "cds");
  if (mode !== "none" && mode !== "rollover" && mode !== "always") throw new InvalidError(`cds must be none, rollover or always, not "${mode}"`, "cds");
  return mode;
}

/** A key lifetime a request asks for, in days (null: none asked): 0, or at least MIN_CSK_LIFETIME_DAYS. */
export function requestedLifetime(days: number | undefined): number | null {
  if (days === undefined) return null;
  if (!Number.isInteger(days) || days < 0 || days > 36_500) throw new InvalidError("csk_lifetime_days must be a whole number of days from 0 (rolled by hand) to 36500", "csk_lifetime_days");
  if (days > 0 && days < MIN_CSK_LIFETIME_DAYS) {
    throw new InvalidError(
      `csk_lifetime_days must be 0 or at least ${MIN_CSK_LIFETIME_DAYS}: a rollover takes the DNSKEY TTL, the zone's largest TTL, the propagation delay and the parent's DS TTL, often days; a shorter lifetime would start the next one before the last settled`,
      "csk_lifetime_days",
    );
  }
  return days;
}

const lifetimeText = (days: number) => (days === 0 ? "none (rolled by hand)" : `${days} days`);

/**
 * When the schedule starts the zone's next rollover (null: its lifetime is 0, or it asks the
 * parent to remove the DS): a lifetime after the key began to sign alone (Knot counts from the
 * activation too), so a parent slower than the lifetime does not start the next rollover at once.
 */
export function nextRolloverAt(key: Pick<sql.ZoneKeyRow, "csk_lifetime" | "cds" | "activated_at">): number | null {
  if (key.csk_lifetime === 0 || key.cds === "delete") return null;
  return key.activated_at + key.csk_lifetime * 86_400_000;
}

/** From when the schedule finishes the rollover (null: the parent's DS is not confirmed yet): the parent delay after the confirmation, and never before finish_possible_at. */
export function autoFinishAt(incoming: Pick<sql.IncomingKeyRow, "submitted_at" | "parent_delay" | "created_at" | "dnskey_ttl" | "max_ttl" | "propagation_delay">): number | null {
  if (incoming.submitted_at === null) return null;
  return Math.max(finishPossibleAt(incoming), incoming.submitted_at + incoming.parent_delay * 1000);
}

/** What the rollover waits for now, and in words. */
function waitingFor(incoming: sql.IncomingKeyRow, now: number): { code: RolloverWait; text: string } {
  if (incoming.ready_at === null) {
    return { code: "propagation", text: `the new DNSKEY to reach caches and secondaries: the DS may change at the parent from ${iso(replaceDsFrom(incoming))}` };
  }
  const finishAt = autoFinishAt(incoming);
  if (finishAt === null) {
    return { code: "parent", text: "the parent to publish the new key's DS alone: confirm it (citadel dns zone dnssec rollover submitted), and the schedule finishes the rollover; the old key stays until then" };
  }
  if (now < finishAt) return { code: "parent_delay", text: `the parent's DS TTL (resolvers may hold the old DS that long after the parent's change: [dns] dnssec_parent_delay, ${incoming.parent_delay} s, covers it) and the caches of the old key's records: the schedule finishes the rollover from ${iso(finishAt)}` };
  return { code: "finish", text: "nothing: the schedule finishes the rollover at its next check" };
}

/** The records that prove absence in a zone signed so: "NSEC" or "NSEC3". */
export const chainName = (key: Pick<sql.ZoneKeyRow, "denial">) => (key.denial === "nsec3" ? "NSEC3" : "NSEC");

/** The NSEC3 parameters of a key row: its salt, 0 iterations (RFC 9276: the only count Citadel signs with). */
const nsec3ParamsOf = (key: Pick<sql.ZoneKeyRow, "nsec3_salt">): Nsec3Params => ({ salt: new Uint8Array(key.nsec3_salt), iterations: 0 });

/** The denial of existence a signed zone's key row says. */
function denialOf(key: Pick<sql.ZoneKeyRow, "denial" | "nsec3_salt">): Denial {
  return key.denial === "nsec3" ? { mode: "nsec3", params: nsec3ParamsOf(key) } : NSEC_DENIAL;
}

/** "NSEC", or "NSEC3 (SHA-1, 0 iterations, no salt)": for audit events and messages. */
function denialText(key: Pick<sql.ZoneKeyRow, "denial" | "nsec3_salt">): string {
  if (key.denial !== "nsec3") return "NSEC";
  const salt = key.nsec3_salt.length === 0 ? "no salt" : `salt ${saltText(new Uint8Array(key.nsec3_salt))}`;
  return `NSEC3 (${NSEC3_HASH_NAME}, 0 iterations, ${salt})`;
}

function nsec3View(zone: string, params: Nsec3Params): Nsec3View {
  return {
    hash_algorithm: NSEC3_HASH_NAME,
    iterations: params.iterations,
    salt: Buffer.from(params.salt).toString("hex").toUpperCase(),
    opt_out: false,
    nsec3param: `${zone} IN NSEC3PARAM ${nsec3paramText(params)}`,
  };
}

/**
 * The denial of existence a request asks for (NSEC when it names none), checked against the
 * parameters RFC 9276 section 3.1 sets — InvalidError (422) naming the field and the reason:
 * iterations 0, opt-out off; the salt may be given (hex, "-" or "" for none), though it buys
 * nothing (docs/dns.md).
 */
export function requestedDenial(input: DenialInput): Pick<sql.ZoneKeyRow, "denial" | "nsec3_salt"> {
  const denial = input.denial ?? "nsec";
  const nsec3 = input.nsec3;
  if (denial !== "nsec3") {
    if (nsec3 !== undefined) throw new InvalidError("NSEC3 parameters are given for a zone whose denial of existence is NSEC: ask for denial nsec3, or leave them out", "nsec3");
    return { denial: "nsec", nsec3_salt: new Uint8Array(0) };
  }
  if (nsec3?.iterations !== undefined && nsec3.iterations !== 0) {
    throw new InvalidError(
      "NSEC3 iterations must be 0 (RFC 9276 section 3.1): each additional iteration costs every validator as much as an attacker, whose offline dictionary attack on the hashes still finds short and common names, and validators treat answers with more iterations as insecure, or fail them (section 3.2)",
      "nsec3.iterations",
    );
  }
  if (nsec3?.opt_out === true) {
    throw new InvalidError(
      "NSEC3 opt-out is not offered: it leaves the unsigned delegations in an opt-out span unproven, so that one can be added there without a validator noticing (RFC 5155 section 12.2), and what it saves — an NSEC3 per unsigned delegation — matters only for very large zones of mostly unsigned delegations, such as top-level domains (RFC 9276 section 3.1). Citadel gives every delegation its NSEC3",
      "nsec3.opt_out",
    );
  }
  return { denial: "nsec3", nsec3_salt: saltFrom(nsec3?.salt ?? "") };
}

/** A salt in hex ("-" or "" for none, as NSEC3PARAM's presentation and RFC 9276 write it). */
function saltFrom(text: string): Uint8Array {
  if (text === "" || text === "-") return new Uint8Array(0);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(text)) throw new InvalidError(`the NSEC3 salt "${text}" is not hex octets (or - for none, as RFC 9276 advises)`, "nsec3.salt");
  if (text.length > MAX_SALT_OCTETS * 2) throw new InvalidError(`the NSEC3 salt is ${text.length / 2} octets: at most ${MAX_SALT_OCTETS} (and none is advised: RFC 9276 section 3.1)`, "nsec3.salt");
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** The DNSKEY RRset's TTL: the SOA's (dnssec.ts SignedLayout). */
const dnskeyTtlOf = (row: sql.ZoneRow) => row.soa_ttl ?? row.ttl;

/**
 * What a rollover waits for, in seconds: the DNSKEY RRset's TTL (a cache may hold the set without
 * the new key) and the zone's largest TTL (records the old key alone signed), as they were at the
 * start, when the old key last signed alone, and the propagation delay configured then, for the
 * secondaries to transfer the new serial (RFC 7583 section 3.3). The sum of all three: the
 * conservative wait, as Knot's. A TTL counts at most the signatures' validity (VALIDITY_MS, 14
 * days): a validator keeps an RRset no longer than its RRSIG is valid (RFC 4035 section 5.3.3),
 * and every RRSIG of the old key alone was made before the start, so has expired 14 days after
 * it; a larger TTL (up to 68 years is allowed) would put the finish out of reach for nothing.
 */
export function rolloverWaits(incoming: Pick<sql.IncomingKeyRow, "dnskey_ttl" | "max_ttl" | "propagation_delay">): { dnskeyTtl: number; maxTtl: number; delay: number } {
  const validity = VALIDITY_MS / 1000;
  return { dnskeyTtl: Math.min(incoming.dnskey_ttl, validity), maxTtl: Math.min(incoming.max_ttl, validity), delay: incoming.propagation_delay };
}

/** From when the DS at the parent may be replaced: no cache holds the DNSKEY RRset without the new key. */
function replaceDsFrom(incoming: Pick<sql.IncomingKeyRow, "created_at" | "dnskey_ttl" | "max_ttl" | "propagation_delay">): number {
  const waits = rolloverWaits(incoming);
  return incoming.created_at + (waits.dnskeyTtl + waits.delay) * 1000;
}

/** From when a rollover may finish: no cache holds what the old key alone signed (rolloverWaits). */
export function finishPossibleAt(incoming: Pick<sql.IncomingKeyRow, "created_at" | "dnskey_ttl" | "max_ttl" | "propagation_delay">): number {
  const waits = rolloverWaits(incoming);
  return incoming.created_at + (waits.dnskeyTtl + waits.maxTtl + waits.delay) * 1000;
}

/** A new key whose tag differs from the zone's key's: a validator, and a signing that keeps RRSIGs, tell keys apart by their tags. */
function keyBeside(current: Uint8Array): { pkcs8: Uint8Array; dnskey: Uint8Array } {
  for (;;) {
    const made = generateSigningKey();
    if (keyTag(made.dnskey) !== keyTag(current)) return made;
    made.pkcs8.fill(0);
  }
}

/**
 * A time left in its two largest units, rounded up in the smaller one — "2 h 5 min", "4 min 10 s",
 * "30 s" — never shorter than it is: an operator who comes back after it is not refused again.
 */
export function durationText(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  if (seconds >= 3600) {
    const minutes = Math.ceil(seconds / 60);
    const [h, m] = [Math.floor(minutes / 60), minutes % 60];
    return m > 0 ? `${h} h ${m} min` : `${h} h`;
  }
  const [m, s] = [Math.floor(seconds / 60), seconds % 60];
  if (m > 0) return s > 0 ? `${m} min ${s} s` : `${m} min`;
  return `${s} s`;
}

function event(actor: Actor, zone: sql.ZoneRow, action: string, reason: string) {
  return {
    action,
    outcome: "success" as const,
    organization: zone.organization_id,
    resource: { type: "dns_zone", id: zone.id },
    reason,
    actor: actor === "system" ? { kind: "system" as const } : actorOf(actor.principal),
    request: actor === "system" ? null : actor.request,
  };
}
