/**
 * The appliance's secondaries and their TSIG keys (operators only): who may transfer zones
 * (AXFR/IXFR) and who is sent NOTIFY on every change. A secondary is an address and a key; a
 * transfer is allowed only when it comes from that address AND is signed with that key, for
 * every zone or the zones the secondary lists.
 *
 * The listener works from `TransferView`, an in-memory copy rebuilt after every change: the
 * answer path asks it synchronously and never touches SQLite. A key's secret is decrypted
 * the first time a signed message needs it and kept in the newest view only (a new view on
 * every change overwrites what the one before decrypted); sealing overwrites and drops it at
 * once (Seal.onSeal), and a sealed Citadel signs nothing (every signed query is BADKEY).
 */
import type { Database } from "bun:sqlite";
import type { AuditEventInput } from "../../src/audit/event.ts";
import { actorOf } from "../../src/auth/principal.ts";
import { ConflictError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { formatIp, parseIp, unmapIpv4, type IpAddress } from "../../src/net/ip.ts";
import { lowerName, NameError, nameToText, parseName, type Name } from "./names.ts";
import type { Caller, DnsKernel } from "./service.ts";
import { ChangeFeed } from "./change-feed.ts";
import * as sql from "./store.ts";
import type { TransferPolicy } from "./transfer.ts";
import type { CatalogMember, CatalogSubscriber } from "./catalog.ts";
import { generateSecret, isSupportedAlgorithm, TSIG_ALGORITHMS, type TsigKey } from "./tsig.ts";

const KEY_OWNER = "dns/tsig";
const keyContext = (name: string) => `dns/tsig/${name}`;
const DNS_PORT = 53;

export interface NewTsigKey {
  name: string;
  algorithm?: string;
  /** An existing secret (base64) to import; a new random one when absent. */
  secret?: string;
}

export interface NewSecondary {
  name: string;
  address: string;
  port?: number;
  tsig_key: string;
  zones?: string[];
}

/** A NOTIFY target: a secondary of one zone. */
export interface NotifyTarget {
  secondary: string;
  address: string;
  port: number;
  keyName: Name;
}

const canonical = (name: Name) => nameToText(lowerName(name));

/** "1.2.3.4" or "2001:db8::1" (IPv4-mapped IPv6 unmapped) in canonical form; null when not an IP. */
export function canonicalAddress(text: string): string | null {
  const ip = parseIp(text.trim());
  return ip ? formatIp(unmapIpv4(ip)) : null;
}

/**
 * A secondary's address, canonical: one host that transfers from us and is sent NOTIFY. The
 * unspecified, broadcast and multicast addresses name no such host (a NOTIFY sent there would
 * go to no one, or to every host of a network).
 */
function secondaryAddress(text: string): string {
  const ip = parseIp(text.trim());
  if (ip === null) throw new InvalidError(`"${text}" is not an IP address`, "address");
  const unmapped = unmapIpv4(ip);
  const problem = notOneHost(unmapped);
  if (problem !== null) throw new InvalidError(`"${text}" is ${problem}, not a secondary's address`, "address");
  return formatIp(unmapped);
}

function notOneHost(ip: IpAddress): string | null {
  const bytes = ip.bytes;
  if (bytes.every((octet) => octet === 0)) return "the unspecified address";
  if (ip.family === 4 && bytes.every((octet) => octet === 255)) return "the broadcast address";
  const multicast = ip.family === 4 ? (bytes[0]! & 0xf0) === 0xe0 : bytes[0] === 0xff; // 224.0.0.0/4, ff00::/8
  return multicast ? "a multicast address" : null;
}

export class TransferService {
  private readonly changes: ChangeFeed;
  /** The newest view: the only one that may hold decrypted keys. */
  private latest: TransferView | null = null;

  constructor(private readonly k: DnsKernel) {
    this.changes = new ChangeFeed(k.store);
    k.seal.onSeal(() => this.latest?.forgetSecrets());
  }

  /** Calls `listener` after every committed change (the listener reloads what it serves). */
  onChange(listener: () => void): () => void {
    return this.changes.onChange(listener);
  }

  private write<T>(fn: (tx: Database) => T): Promise<T> {
    return this.changes.write(fn);
  }

  // --- TSIG keys -------------------------------------------------------------------------

  tsigKeys() {
    return { items: sql.tsigKeys(this.k.store.db).map(keyView) };
  }

  /** Creates (or imports) a key; the secret is in the answer this once and never again. */
  async createTsigKey(caller: Caller, input: NewTsigKey) {
    const name = keyName(input.name);
    const algorithm = (input.algorithm ?? "hmac-sha256").toLowerCase();
    if (!isSupportedAlgorithm(algorithm)) throw new InvalidError(`the algorithm must be one of ${TSIG_ALGORITHMS.join(", ")}`, "algorithm");
    const secret = input.secret === undefined ? generateSecret(algorithm) : importedSecret(input.secret);
    const now = this.k.clock.now();
    await this.write((tx) => {
      if (sql.tsigKey(tx, name)) throw new ConflictError(`The TSIG key ${name} exists already.`);
      const envelope = this.k.seal.keyring().encrypt(tx, KEY_OWNER, keyContext(name), secret);
      sql.insertTsigKey(tx, { name, algorithm, secret: envelope, created_at: now });
      this.k.audit.record(tx, event(caller, "dns.tsig.create", { type: "dns_tsig_key", id: name }, `${algorithm}${input.secret === undefined ? "" : ", imported"}`));
    });
    return { name, algorithm, secret: Buffer.from(secret).toString("base64"), created_at: new Date(now).toISOString() };
  }

  async deleteTsigKey(caller: Caller, nameText: string) {
    const name = keyName(nameText);
    await this.write((tx) => {
      const users = sql.secondariesUsing(tx, name);
      if (users.length > 0) throw new ConflictError(`The TSIG key ${name} is used by the secondary ${users.map((s) => s.name).join(", ")}: remove it first.`);
      if (!sql.deleteTsigKey(tx, name)) throw new NotFoundError(`No TSIG key ${name}.`);
      this.k.audit.record(tx, event(caller, "dns.tsig.delete", { type: "dns_tsig_key", id: name }, null));
    });
  }

  // --- secondaries -----------------------------------------------------------------------

  secondaries() {
    return { items: sql.secondaries(this.k.store.db).map(secondaryView) };
  }

  async createSecondary(caller: Caller, input: NewSecondary) {
    const name = input.name.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) throw new InvalidError("a secondary's name is 1–63 letters, digits, dots, dashes or underscores", "name");
    const address = secondaryAddress(input.address);
    const port = input.port ?? DNS_PORT;
    const key = keyName(input.tsig_key);
    // An empty list would be a secondary that may transfer nothing and is never told of a change.
    if (input.zones?.length === 0) throw new InvalidError("a secondary's zones are at least one zone, or absent for every zone", "zones");
    const zones = input.zones?.map((z, i) => {
      if (z === EVERY_HOSTED_ZONE) return z;
      if (z.includes("*")) throw new InvalidError(`zones[${i}]: a zone's name has no wildcard; * alone is every hosted zone`, "zones");
      try {
        return canonical(parseName(z, []));
      } catch (e) {
        if (e instanceof NameError) throw new InvalidError(`zones[${i}]: ${e.message}`, "zones");
        throw e;
      }
    });
    const row: sql.SecondaryRow = { name, address, notify_port: port, tsig_key: key, zones: zones ? JSON.stringify([...new Set(zones)]) : null, created_at: this.k.clock.now() };
    await this.write((tx) => {
      if (!sql.tsigKey(tx, key)) throw new InvalidError(`No TSIG key ${key}: create it first (citadel dns tsig create)`, "tsig_key");
      if (sql.secondary(tx, name)) throw new ConflictError(`The secondary ${name} exists already.`);
      sql.insertSecondary(tx, row);
      this.k.audit.record(tx, event(caller, "dns.secondary.create", { type: "dns_secondary", id: name }, `${address} port ${port}, key ${key}, ${zonesSaid(zones)}`));
    });
    return secondaryView(row);
  }

  async deleteSecondary(caller: Caller, name: string) {
    await this.write((tx) => {
      if (!sql.deleteSecondary(tx, name)) throw new NotFoundError(`No secondary ${name}.`);
      this.k.audit.record(tx, event(caller, "dns.secondary.delete", { type: "dns_secondary", id: name }, null));
    });
  }

  /** What the listener and the notifier work from, read once now. The view it replaces keeps no key material. */
  view(): TransferView {
    const db = this.k.store.db;
    this.latest?.forgetSecrets();
    this.latest = new TransferView(this.k, sql.tsigKeys(db), sql.secondaries(db));
    return this.latest;
  }
}

/** An immutable in-memory copy of the keys and secondaries, asked on the answer path. */
export class TransferView implements TransferPolicy {
  private readonly keys = new Map<string, sql.TsigKeyRow>();
  private readonly secondaries: Array<{ row: sql.SecondaryRow; zones: Set<string> | null }>;
  /** The secondaries' addresses, canonical (as the listeners report a client). */
  private readonly addresses: Set<string>;

  constructor(
    private readonly k: DnsKernel,
    keys: sql.TsigKeyRow[],
    secondaries: sql.SecondaryRow[],
  ) {
    for (const key of keys) this.keys.set(key.name, key);
    this.secondaries = secondaries.map((row) => ({ row, zones: row.zones === null ? null : new Set(JSON.parse(row.zones) as string[]) }));
    this.addresses = new Set(secondaries.flatMap((row) => [row.address, `::ffff:${row.address}`]));
  }

  /** A configured secondary's address: the DNS shield leaves it alone (its SOA checks come over spoofable UDP). */
  isSecondary(client: string): boolean {
    return this.addresses.has(client);
  }

  /** Keys decrypted by the keyring they came from: overwritten and dropped when Citadel seals. */
  private readonly decrypted = new Map<string, { keyring: object; key: TsigKey }>();

  /**
   * The key named `name` with its secret, or null when there is none or Citadel is sealed.
   * Decrypted once per view (a view is made again on every change of keys): a signed query is
   * checked before any rate limit applies over TCP, so each must not cost a database read and
   * a decryption.
   */
  readonly tsigKey = (name: Name): TsigKey | null => {
    const keyring = this.k.seal.keyringIfUnsealed();
    if (!keyring) return null;
    const id = canonical(name);
    const cached = this.decrypted.get(id);
    if (cached && cached.keyring === keyring) return cached.key;
    const row = this.keys.get(id);
    if (!row) return null;
    const key = { name: parseName(row.name, null), algorithm: row.algorithm, secret: keyring.decrypt(KEY_OWNER, keyContext(row.name), row.secret) };
    this.decrypted.set(id, { keyring, key });
    return key;
  };

  /** Overwrites and drops the decrypted keys: on sealing (onSeal), and when a newer view replaces this one. */
  forgetSecrets(): void {
    for (const { key } of this.decrypted.values()) key.secret.fill(0);
    this.decrypted.clear();
  }

  /**
   * May `client`, signing with `keyName`, transfer `zone`? A secondary for every zone may; one
   * whose zones say `*` (every hosted zone) may transfer a record provider's own zone only when
   * it names it, as it is sent NOTIFY for it only then.
   */
  allowed(client: string, zone: Name, keyName: Name | null, providerOwned = false): boolean {
    if (keyName === null) return false;
    const address = canonicalAddress(client);
    const key = canonical(keyName);
    const zoneName = canonical(zone);
    const covers = (zones: Set<string> | null) => zones === null || zones.has(zoneName) || (!providerOwned && zones.has(EVERY_HOSTED_ZONE));
    return this.secondaries.some((s) => s.row.address === address && s.row.tsig_key === key && covers(s.zones));
  }

  /**
   * The secondaries to NOTIFY about a change of `zone`. A record provider's own zone (one no
   * hosted zone contains: mesh.internal.) goes only to those that list it: one set for "every
   * zone" was set up for the hosted zones, never configured that one, and answered each NOTIFY
   * of it (on every mesh write) with NOTAUTH, five times over. One that serves both says so
   * with `*` and that zone.
   */
  notifyTargets(zone: Name, providerOwned = false): NotifyTarget[] {
    const zoneName = canonical(zone);
    return this.secondaries.filter((s) => toldOf(s.zones, zoneName, providerOwned)).map(notifyTarget);
  }

  /**
   * Who is served a catalog zone (catalog.ts): the secondaries grouped by what authenticates them
   * (address and key), each group's view the zones one of them is told of, as by NOTIFY.
   */
  catalogSubscribers(): CatalogSubscriber[] {
    const groups = new Map<string, Array<{ row: sql.SecondaryRow; zones: Set<string> | null }>>();
    for (const s of this.secondaries) {
      const view = `${s.row.address} ${s.row.tsig_key}`;
      groups.set(view, [...(groups.get(view) ?? []), s]);
    }
    return [...groups].map(([view, group]) => ({
      view,
      address: group[0]!.row.address,
      tsigKey: group[0]!.row.tsig_key,
      secondaries: group.map((s) => s.row.name),
      covers: (member: CatalogMember) => group.some((s) => toldOf(s.zones, member.name, member.providerOwned)),
      selection: group.map((s) => JSON.stringify(s.zones === null ? null : [...s.zones].sort())).sort().join("\n"),
      targets: group.map(notifyTarget),
    }));
  }
}

/**
 * Is a secondary of `zones` told of the zone `zoneName` (canonical)? Every hosted zone when it
 * lists none or `*`; a record provider's own zone only when it names it.
 */
function toldOf(zones: Set<string> | null, zoneName: string, providerOwned: boolean): boolean {
  if (providerOwned) return zones?.has(zoneName) === true;
  return zones === null || zones.has(EVERY_HOSTED_ZONE) || zones.has(zoneName);
}

const notifyTarget = (s: { row: sql.SecondaryRow }): NotifyTarget => ({ secondary: s.row.name, address: s.row.address, port: s.row.notify_port, keyName: parseName(s.row.tsig_key, null) });

/** In a secondary's zones: every hosted zone (a record provider's own zone is named beside it). */
const EVERY_HOSTED_ZONE = "*";

/** A secondary's zones as the audit log says them. */
function zonesSaid(zones: string[] | undefined): string {
  if (!zones) return "every zone";
  const named = zones.filter((z) => z !== EVERY_HOSTED_ZONE);
  if (named.length === zones.length) return `zones ${named.join(" ")}`;
  return named.length === 0 ? "every hosted zone" : `every hosted zone and ${named.join(" ")}`;
}

function keyName(text: string): string {
  try {
    const name = parseName(text.trim(), []);
    if (name.length === 0) throw new InvalidError("a TSIG key needs a name", "name");
    return canonical(name);
  } catch (e) {
    if (e instanceof NameError) throw new InvalidError(`"${text}" is not a key name: ${e.message}`, "name");
    throw e;
  }
}

function importedSecret(text: string): Uint8Array {
  const secret = /^[A-Za-z0-9+/]+={0,2}$/.test(text.trim()) ? Buffer.from(text.trim(), "base64") : Buffer.alloc(0);
  // RFC 8945 section 6: at least as long as the hash output is advised; 16 octets is the floor we accept.
  if (secret.length < 16) throw new InvalidError("the secret must be base64 of at least 16 octets", "secret");
  return new Uint8Array(secret);
}

function keyView(row: sql.TsigKeyRow) {
  return { name: row.name, algorithm: row.algorithm, created_at: new Date(row.created_at).toISOString() };
}

function secondaryView(row: sql.SecondaryRow) {
  return {
    name: row.name,
    address: row.address,
    port: row.notify_port,
    tsig_key: row.tsig_key,
    zones: row.zones === null ? null : (JSON.parse(row.zones) as string[]),
    created_at: new Date(row.created_at).toISOString(),
  };
}

function event(caller: Caller, action: string, resource: { type: string; id: string }, reason: string | null): AuditEventInput {
  return { action, outcome: "success", resource, reason, actor: actorOf(caller.principal), request: caller.request };
}
