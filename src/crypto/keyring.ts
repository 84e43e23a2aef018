/**
 * The keyring: root key → versioned KEKs → per-owner DEKs → values.
 *
 * - A KEK is 256 random bits, stored wrapped by every root key allowed to unseal (one, or two
 *   while a rekey is pending). Rotation adds a KEK version and re-wraps DEKs in batches; a
 *   DEK always names the KEK that wraps it, so a rotation killed half-way leaves every DEK
 *   readable and the next batch simply continues.
 * - A DEK belongs to an owner ("workspace/ws_1/secrets", "audit-subject/user_7"), is
 *   versioned, and is stored wrapped by a KEK. Destroying an owner's DEKs (crypto-shredding)
 *   makes its values unreadable for good.
 * - A value is sealed with the owner's newest DEK and bound (AAD) to the owner and a
 *   caller-given context naming the row, so a ciphertext copied to another row or owner
 *   fails to decrypt.
 *
 * Unwrapped keys are cached together with the wrapped bytes they came from, and used only
 * when the database row still holds those bytes: a row rolled back or re-wrapped can never
 * be served from a stale cache entry.
 */
import { hkdfSync } from "node:crypto";
import type { Database } from "bun:sqlite";
import { ConflictError, SealedError } from "../errors.ts";
import { writeFileAtomic } from "../files.ts";
import { DecryptionError, envelopeKeyVersion, openEnvelope, randomKey, sealEnvelope } from "./aead.ts";
import type { ReadMemo } from "../store/read-memo.ts";
import { formatRootKey, rootKeyId, rootKeyVerifier } from "./root-key.ts";

export type SealMethod = "key_file" | "systemd_credential" | "shamir";

/** The owner's key was destroyed (erasure): its values are gone by design. */
export class KeyDestroyedError extends Error {
  override readonly name = "KeyDestroyedError";
}

/** A KEK has no wrap for this root key (retired, its material erased; left out by a rekey; lost). */
export class KekNotWrappedError extends Error {
  override readonly name = "KekNotWrappedError";
}

export interface RootKeyRecord {
  id: string;
  method: SealMethod;
  shares: number | null;
  threshold: number | null;
  state: "active" | "pending";
  created_at: number;
}

export interface KeyringStatus {
  root: RootKeyRecord;
  pending_root: RootKeyRecord | null;
  active_kek: number;
  keks: Array<{ version: number; created_at: number; retired_at: number | null; deks: number }>;
  deks: number;
  /** DEKs still wrapped by an older KEK, but the damaged ones: a rotation in progress (or interrupted). */
  deks_to_rewrap: number;
  /**
   * DEKs under an older KEK that do not unwrap: those a re-wrap found so, still as it found them,
   * and every one under an older KEK that does not open. No rotation moves them.
   */
  deks_damaged: number;
}

const utf8 = (text: string) => Buffer.from(text, "utf8");
const kekAad = (version: number, rootId: string) => utf8(`citadel/kek/${version}/root/${rootId}`);
const dekAad = (owner: string, version: number) => utf8(`citadel/dek/${owner}/${version}`);
const valueAad = (owner: string, context: string) => utf8(`citadel/value/${owner}/${context}`);

/** A DEK by its owner and version. */
export interface DekId {
  owner: string;
  version: number;
}

/**
 * A DEK that does not unwrap, under the KEK it names: its wrapped bytes do not open
 * ("altered"), or that KEK has no wrap for this root key any more ("kek_gone": retired, its
 * material erased, or never there).
 */
export interface DamagedDek extends DekId {
  kek_version: number;
  why: "altered" | "kek_gone";
}

/**
 * An older live KEK that does not open with this root key: its wrap for it is there but does not
 * open ("damaged": damaged, altered), or there is none ("missing": lost, or left out by a rekey
 * because it did not open). None of the `deks` DEKs under it unwraps; they belong to `owners`
 * owners, the first DAMAGED_KEK_OWNERS of which (in order) are in `firstOwners`.
 */
export interface DamagedKek {
  version: number;
  deks: number;
  wrap: "damaged" | "missing";
  owners: number;
  firstOwners: string[];
}

/** How many owners of a damaged KEK's DEKs are named: enough to act on, bounded for a log line and an audit event. */
export const DAMAGED_KEK_OWNERS = 100;

/**
 * What one batch of a re-wrap did: DEKs moved to KEK `kek`, DEKs left, the older KEKs that do
 * not open (every batch names them; the DEKs under them are not in its batch), where the next
 * batch starts.
 */
export interface RewrapBatch {
  moved: number;
  damaged: DamagedDek[];
  damagedKeks: DamagedKek[];
  last: DekId | null;
  kek: number;
}

/**
 * An owner's newest DEK that did not unwrap (`replaced`, under the KEK it names, and why:
 * `cause`), and the version made in its place under the active KEK for the owner's writes.
 */
export interface ReplacedDek {
  owner: string;
  version: number;
  replaced: { version: number; kek_version: number };
  cause: string;
}

type ReplacedDekListener = (replaced: ReplacedDek) => void;

/** Who hears of replaced DEKs, by database: the keyring changes at every unseal, they do not. */
const replacedDekListeners = new WeakMap<Database, Set<ReplacedDekListener>>();

/**
 * Calls `listener` whenever a keyring over `db` replaces an owner's newest DEK that does not
 * unwrap. It is called inside the writing transaction, which may yet roll back, and may be an
 * audit event's own (a person's audit key): it must be quick, must not throw, and must record
 * nothing in that transaction. Returns the way to stop.
 */
export function onDekReplaced(db: Database, listener: ReplacedDekListener): () => void {
  let listeners = replacedDekListeners.get(db);
  if (!listeners) replacedDekListeners.set(db, (listeners = new Set()));
  listeners.add(listener);
  return () => listeners.delete(listener);
}

interface DekRow {
  version: number;
  kek_version: number;
  wrapped: Uint8Array | null;
}

/**
 * The DEKs re-wraps found damaged, with the bytes they found (by database: the damage is of the
 * stored row, not of a root key, so a rekey's new keyring and the next unseal's know it too).
 * Every unseal re-wraps what an older KEK still holds, so after it every damaged DEK under an
 * older KEK is here; one no longer stored as found (moved, destroyed) is dropped when next read.
 */
const damagedByDatabase = new WeakMap<Database, Map<string, DekId & { kek_version: number; wrapped: Buffer }>>();

function damagedIn(db: Database): Map<string, DekId & { kek_version: number; wrapped: Buffer }> {
  let damaged = damagedByDatabase.get(db);
  if (!damaged) damagedByDatabase.set(db, (damaged = new Map()));
  return damaged;
}

export class Keyring {
  private readonly kekCache = new Map<number, { wrapped: Buffer; key: Buffer }>();
  private readonly dekCache = new Map<string, { wrapped: Buffer; key: Buffer }>();
  /**
   * Each owner's newest DEK version as last seen: a hint that turns the lookup into an
   * equality search (an ORDER BY ... DESC LIMIT 1 measured 5× slower). A stale hint only
   * costs the slow query: the row it names is always read from the database.
   */
  private readonly latestVersion = new Map<string, number>();
  /** Set by wipe: the root key is zeros now, and must not be used as a key. */
  private wiped = false;
  readonly rootId: string;

  /**
   * `dekRows` remembers the DEK rows decryptions look up, while the database is unchanged: a
   * read of a value then takes no SQLite read lock. Without it, each decryption reads its row.
   */
  constructor(
    private readonly db: Database,
    private readonly rootKey: Buffer,
    private readonly now: () => number = Date.now,
    private readonly dekRows?: ReadMemo,
  ) {
    this.rootId = rootKeyId(rootKeyVerifier(rootKey));
  }

  /** Sets up a fresh installation: the root key's record and KEK version 1. */
  static initialize(tx: Database, rootKey: Buffer, method: SealMethod, now: number, shamir?: { shares: number; threshold: number }): string {
    if (tx.query("SELECT 1 FROM root_keys").get()) throw new Error("the keyring is already initialized");
    const verifier = rootKeyVerifier(rootKey);
    const id = rootKeyId(verifier);
    tx.query("INSERT INTO root_keys (id, verifier, method, shares, threshold, state, created_at) VALUES (?, ?, ?, ?, ?, 'active', ?)").run(
      id,
      verifier,
      method,
      shamir?.shares ?? null,
      shamir?.threshold ?? null,
      now,
    );
    tx.query("INSERT INTO keks (version, created_at) VALUES (1, ?)").run(now);
    tx.query("INSERT INTO kek_wraps (kek_version, root_key_id, wrapped) VALUES (1, ?, ?)").run(id, sealEnvelope(rootKey, 1, randomKey(), kekAad(1, id)));
    return id;
  }

  /**
   * A key derived from the root key (HKDF-SHA256), for what must open without this database:
   * a backup is encrypted under it, and whoever holds the root key (its file, its credential
   * or enough Shamir shares) derives it again. The root key itself never leaves the keyring.
   */
  deriveFromRootKey(salt: Uint8Array, info: string, length = 32): Buffer {
    return Buffer.from(hkdfSync("sha256", this.root(), salt, info, length));
  }

  /**
   * Writes the root key as a key file at `path` (0600), never over a file already there (the
   * error's code is EEXIST): a rekey keeps the old key so beside the new key file. From memory,
   * not from the key file, which may have been made unreadable or replaced since the start.
   */
  writeRootKeyFile(path: string): void {
    writeFileAtomic(path, formatRootKey(this.root()), 0o600, { replace: false });
  }

  // --- values -------------------------------------------------------------------------

  /** Encrypts a value for `owner`, bound to `context` (which row it belongs to). */
  encrypt(tx: Database, owner: string, context: string, plaintext: Uint8Array | string): Buffer {
    const dek = this.currentDek(tx, owner);
    const data = typeof plaintext === "string" ? utf8(plaintext) : plaintext;
    return sealEnvelope(dek.key, dek.version, data, valueAad(owner, context));
  }

  /** Decrypts a value of `owner` stored under `context`; throws KeyDestroyedError after erasure. */
  decrypt(owner: string, context: string, envelope: Uint8Array): Buffer {
    const version = envelopeKeyVersion(envelope);
    // Frozen: a remembered row is shared by every decryption that finds it, so none may change it.
    const read = () => {
      const found = this.db.query<DekRow, [string, number]>("SELECT version, kek_version, wrapped FROM deks WHERE owner = ? AND version = ?").get(owner, version);
      return found && Object.freeze(found);
    };
    const row = this.dekRows ? this.dekRows.get("dek", dekCacheId(owner, version), read) : read();
    if (!row) throw new KeyDestroyedError(`no key ${owner} v${version}`);
    return openEnvelope(this.unwrapDek(owner, row), envelope, valueAad(owner, context));
  }

  /** Destroys every version of the owner's key (crypto-shredding); returns how many were destroyed. */
  destroyOwner(tx: Database, owner: string, now: number): number {
    const changes = destroyOwnerKeys(tx, owner, now);
    for (const [id, entry] of this.dekCache) {
      if (id.startsWith(`${owner}\0`)) {
        entry.key.fill(0);
        this.dekCache.delete(id);
      }
    }
    return changes;
  }

  /** The version of `owner`'s newest usable DEK, or null when it has none yet. */
  dekVersion(db: Database, owner: string): number | null {
    return db.query<{ v: number | null }, [string]>("SELECT max(version) AS v FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(owner)?.v ?? null;
  }

  /** Adds a new DEK version for `owner`; later encryptions use it. Returns the version. */
  rotateDek(tx: Database, owner: string, now: number): number {
    const latest = tx.query<{ v: number | null }, [string]>("SELECT max(version) AS v FROM deks WHERE owner = ?").get(owner)?.v ?? 0;
    return this.createDek(tx, owner, latest + 1, now).version;
  }

  private currentDek(tx: Database, owner: string): { version: number; key: Buffer } {
    const hinted = this.latestVersion.get(owner);
    let row =
      hinted === undefined
        ? null
        : tx.query<DekRow, [string, number]>("SELECT version, kek_version, wrapped FROM deks WHERE owner = ? AND version = ?").get(owner, hinted);
    if (!row || row.wrapped === null) {
      row = tx.query<DekRow, [string]>("SELECT version, kek_version, wrapped FROM deks WHERE owner = ? ORDER BY version DESC LIMIT 1").get(owner);
    }
    // An owner whose keys were destroyed starts a new version: old values stay unreadable.
    if (!row || row.wrapped === null) return this.createDek(tx, owner, (row?.version ?? 0) + 1, this.now());
    this.latestVersion.set(owner, row.version);
    try {
      return { version: row.version, key: this.unwrapDek(owner, row) };
    } catch (error) {
      if (!(error instanceof DecryptionError || error instanceof KekNotWrappedError)) throw error;
      return this.replaceDamagedDek(tx, owner, row);
    }
  }

  /**
   * An owner whose newest DEK does not unwrap (its bytes damaged, or its KEK's wrap damaged or
   * gone) gets a new version under the active KEK, as after an erasure: what the old one
   * encrypted stays unreadable (counted damaged once a re-wrap meets it: under the active KEK,
   * from the next rotation), and the owner's writes go on — else every one
   * failed for good, the operator's login among them (its audit event is encrypted with the
   * operator's key). The listeners hear of it; the new version serves from then on, so once.
   */
  private replaceDamagedDek(tx: Database, owner: string, row: DekRow): { version: number; key: Buffer } {
    const cause = !this.kekWrap(row.kek_version)
      ? `KEK v${row.kek_version} has no wrap for root key ${this.rootId}`
      : this.kekOpens(row.kek_version)
        ? "its wrapped bytes do not open (damaged or altered)"
        : `KEK v${row.kek_version} does not open with root key ${this.rootId}`;
    const latest = tx.query<{ v: number }, [string]>("SELECT max(version) AS v FROM deks WHERE owner = ?").get(owner)!.v;
    const created = this.createDek(tx, owner, latest + 1, this.now());
    const replaced: ReplacedDek = { owner, version: created.version, replaced: { version: row.version, kek_version: row.kek_version }, cause };
    for (const listener of replacedDekListeners.get(this.db) ?? []) listener(replaced);
    return created;
  }

  private createDek(tx: Database, owner: string, version: number, now: number): { version: number; key: Buffer } {
    const kek = this.activeKek(tx);
    const key = randomKey();
    const wrapped = sealEnvelope(kek.key, kek.version, key, dekAad(owner, version));
    tx.query("INSERT INTO deks (owner, version, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?)").run(owner, version, kek.version, wrapped, now);
    this.latestVersion.set(owner, version);
    // Cached at once so that seal's wipe reaches this key too (and the next use skips the unwrap).
    // Should the transaction roll back, the wrapped bytes will not match any row and the entry is ignored.
    const id = dekCacheId(owner, version);
    this.dekCache.get(id)?.key.fill(0); // from a write that was rolled back
    this.dekCache.set(id, { wrapped, key });
    return { version, key };
  }

  private unwrapDek(owner: string, row: DekRow): Buffer {
    if (row.wrapped === null) throw new KeyDestroyedError(`key ${owner} v${row.version} was destroyed`);
    const id = dekCacheId(owner, row.version);
    const cached = this.dekCache.get(id);
    if (cached && cached.wrapped.equals(row.wrapped)) return cached.key;
    const key = openEnvelope(this.kek(row.kek_version), row.wrapped, dekAad(owner, row.version));
    cached?.key.fill(0); // re-wrapped since, or from a rolled-back write: this copy must not outlive its entry
    this.dekCache.set(id, { wrapped: Buffer.from(row.wrapped), key });
    return key;
  }

  // --- KEKs ---------------------------------------------------------------------------

  private activeKek(db: Database): { version: number; key: Buffer } {
    const version = activeKekVersion(db);
    return { version, key: this.kek(version) };
  }

  /**
   * Why the active KEK cannot serve this root key — it has no wrap for it, or its wrap does not
   * open (damaged, altered) — or null when it opens. Without it nothing can be encrypted, nor
   * any DEK under it unwrapped: an unseal must not stand on it (an older KEK that does not open
   * costs only the DEKs under it, and is skipped).
   */
  activeKekProblem(): string | null {
    const version = activeKekVersion(this.db);
    if (!this.kekWrap(version)) return `KEK v${version}, the active one, has no wrap for root key ${this.rootId}`;
    if (!this.kekOpens(version)) return `KEK v${version} does not open with root key ${this.rootId} (its wrap damaged or altered), and it is the active one`;
    return null;
  }

  private kek(version: number): Buffer {
    // The root first: a keyring a rekey replaced is wiped, and the promotion that followed deleted
    // its root's wraps. Whoever still holds it gets the 503 of root(), not "not wrapped" (a 500).
    const root = this.root();
    const wrapped = this.kekWrap(version);
    if (!wrapped) throw new KekNotWrappedError(`KEK v${version} is not wrapped for root key ${this.rootId}`);
    const cached = this.kekCache.get(version);
    if (cached && cached.wrapped.equals(wrapped)) return cached.key;
    const key = openEnvelope(root, wrapped, kekAad(version, this.rootId));
    cached?.key.fill(0);
    this.kekCache.set(version, { wrapped: Buffer.from(wrapped), key });
    return key;
  }

  /**
   * The KEKs older than `active`, not retired, still holding DEKs, that do not open with this root
   * key (their wrap damaged, or none), with how many DEKs each holds. A retired KEK is not among
   * them: a DEK naming one is kek_gone, that one row's damage.
   */
  private unopenableKeks(db: Database, active: number): DamagedKek[] {
    const older = db.query<{ version: number }, [number]>("SELECT version FROM keks WHERE version < ? AND retired_at IS NULL ORDER BY version").all(active);
    const count = db.query<{ n: number; owners: number }, [number]>("SELECT count(*) AS n, count(DISTINCT owner) AS owners FROM deks WHERE kek_version = ? AND wrapped IS NOT NULL");
    const firstOwners = db.query<{ owner: string }, [number, number]>("SELECT DISTINCT owner FROM deks WHERE kek_version = ? AND wrapped IS NOT NULL ORDER BY owner LIMIT ?");
    const damaged: DamagedKek[] = [];
    for (const { version } of older) {
      const wrap = !this.kekWrap(version) ? "missing" : this.kekOpens(version) ? null : "damaged";
      const under = wrap ? count.get(version)! : null;
      if (!wrap || !under?.n) continue;
      damaged.push({ version, deks: under.n, wrap, owners: under.owners, firstOwners: firstOwners.all(version, DAMAGED_KEK_OWNERS).map((r) => r.owner) });
    }
    return damaged;
  }

  /** Whether KEK `version` has a wrap for this root key, and it opens. */
  private opensHere(version: number): boolean {
    return this.kekWrap(version) !== null && this.kekOpens(version);
  }

  private kekOpens(version: number): boolean {
    try {
      this.kek(version);
      return true;
    } catch (error) {
      if (error instanceof DecryptionError) return false;
      throw error;
    }
  }

  /** KEK `version` as wrapped for this root key, or null when it has no such wrap. */
  private kekWrap(version: number): Uint8Array | null {
    return this.db.query<{ wrapped: Uint8Array }, [number, string]>("SELECT wrapped FROM kek_wraps WHERE kek_version = ? AND root_key_id = ?").get(version, this.rootId)?.wrapped ?? null;
  }

  /** Adds a KEK version; DEKs move to it through `rewrapDeks`. Refused while a rekey is pending. */
  rotateKek(tx: Database, now: number): number {
    if (tx.query("SELECT 1 FROM root_keys WHERE state = 'pending'").get()) {
      // Its new root key wraps the KEKs there were when it began; a KEK added now would be
      // lost to it. A 409 saying what to do, not a 500.
      throw new ConflictError("a root key change (rekey) is pending: unseal with the new key first (for a seal migration, a start with its seal method) or cancel it (citadel keys rekey --cancel), then rotate");
    }
    const version = (tx.query<{ v: number | null }, []>("SELECT max(version) AS v FROM keks").get()?.v ?? 0) + 1;
    tx.query("INSERT INTO keks (version, created_at) VALUES (?, ?)").run(version, now);
    tx.query("INSERT INTO kek_wraps (kek_version, root_key_id, wrapped) VALUES (?, ?, ?)").run(version, this.rootId, sealEnvelope(this.root(), version, randomKey(), kekAad(version, this.rootId)));
    return version;
  }

  /**
   * Re-wraps up to `limit` DEKs still under an older KEK with the active one, in (owner,
   * version) order from just after `after`, then retires (and erases) KEKs no DEK uses any
   * more. A DEK that does not unwrap (damaged, altered) is left as it is, under its KEK, which
   * is therefore kept; so is one naming a KEK this root key has no wrap of (a retired one: its
   * row altered): one damaged key must not stop the rotation of all the others, nor the start
   * that resumes it. An older KEK whose wrap is there but does not open is the damage of every
   * DEK under it: they are all left under it, which is kept, and named in `damagedKeks` rather
   * than one by one. Returns what it moved and left, and the last DEK it looked at (where the
   * next batch starts; null: none was left).
   */
  rewrapDeks(tx: Database, limit: number, now: number, after: DekId | null = null): RewrapBatch {
    const active = this.activeKek(tx);
    const damagedKeks = this.unopenableKeks(tx, active.version);
    const rows = tx
      .query<DekRow & { owner: string }, [number, string, string, number, number]>(
        "SELECT owner, version, kek_version, wrapped FROM deks WHERE kek_version < ? AND kek_version NOT IN (SELECT value FROM json_each(?)) AND wrapped IS NOT NULL AND (owner, version) > (?, ?) ORDER BY owner, version LIMIT ?",
      )
      .all(active.version, JSON.stringify(damagedKeks.map((k) => k.version)), after?.owner ?? "", after?.version ?? -1, limit);
    const update = tx.query("UPDATE deks SET kek_version = ?, wrapped = ? WHERE owner = ? AND version = ?");
    const damaged: DamagedDek[] = [];
    const found = (row: DekRow & { owner: string }, why: DamagedDek["why"]) => {
      damaged.push({ owner: row.owner, version: row.version, kek_version: row.kek_version, why });
      damagedIn(this.db).set(dekCacheId(row.owner, row.version), { owner: row.owner, version: row.version, kek_version: row.kek_version, wrapped: Buffer.from(row.wrapped!) });
    };
    for (const row of rows) {
      if (!this.kekWrap(row.kek_version)) {
        found(row, "kek_gone");
        continue;
      }
      let key: Buffer;
      try {
        key = this.unwrapDek(row.owner, row);
      } catch (error) {
        if (!(error instanceof DecryptionError)) throw error;
        found(row, "altered");
        continue;
      }
      update.run(active.version, sealEnvelope(active.key, active.version, key, dekAad(row.owner, row.version)), row.owner, row.version);
    }
    const last = rows.at(-1);
    const moved = rows.length - damaged.length;
    this.retireUnusedKeks(tx, now);
    return { moved, damaged, damagedKeks, last: last ? { owner: last.owner, version: last.version } : null, kek: active.version };
  }

  /**
   * Retires the KEKs older than the active one that no DEK uses any more, and erases their key
   * material (whether their wrap opens or not); returns their versions. A re-wrap does it after
   * each batch; an unseal with nothing to re-wrap too, for a KEK emptied by erasures since.
   */
  retireUnusedKeks(tx: Database, now: number): number[] {
    const unused = "version < ? AND retired_at IS NULL AND NOT EXISTS (SELECT 1 FROM deks WHERE deks.kek_version = keks.version AND wrapped IS NOT NULL)";
    const retiring = tx.query<{ version: number }, [number]>(`SELECT version FROM keks WHERE ${unused}`).all(activeKekVersion(tx));
    for (const { version } of retiring) {
      tx.query("UPDATE keks SET retired_at = ? WHERE version = ?").run(now, version);
      tx.query("DELETE FROM kek_wraps WHERE kek_version = ?").run(version); // the old key material goes
      this.kekCache.get(version)?.key.fill(0); // from memory too (a rollback only costs an unwrap later)
      this.kekCache.delete(version);
    }
    return retiring.map((k) => k.version);
  }

  // --- root key changes -------------------------------------------------------------

  /**
   * Starts replacing the root key: every live KEK is wrapped for `newRoot` as well, and the
   * new root is recorded as pending. Until it is promoted, either root unseals, so a crash
   * or an operator who has not yet stored the new key loses nothing. An older KEK that does
   * not open is left out: there is nothing to wrap, its DEKs are damaged already (and stay
   * counted so, as a KEK with no wrap for the new key), and refusing would leave the root key
   * unchangeable until a restore. So is one no DEK uses any more (its owners destroyed), not yet
   * retired. The active KEK must open (it always does once unsealed).
   */
  beginRekey(tx: Database, newRoot: Buffer, method: SealMethod, now: number, shamir?: { shares: number; threshold: number }): string {
    const verifier = rootKeyVerifier(newRoot);
    const newId = rootKeyId(verifier);
    if (newId === this.rootId) throw new Error("the new root key is the current one");
    // One at a time: a second rekey would make the shares or credential handed out for the
    // first worthless without anyone deciding so.
    const pending = tx.query<{ id: string; method: SealMethod }, []>("SELECT id, method FROM root_keys WHERE state = 'pending'").get();
    if (pending) throw new ConflictError(pendingRekeyMessage(pending));
    tx.query("INSERT INTO root_keys (id, verifier, method, shares, threshold, state, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)").run(
      newId,
      verifier,
      method,
      shamir?.shares ?? null,
      shamir?.threshold ?? null,
      now,
    );
    const active = activeKekVersion(tx);
    const live = tx.query<{ version: number }, []>("SELECT version FROM keks WHERE retired_at IS NULL").all();
    for (const { version } of live) {
      if (version < active && !this.opensHere(version)) continue;
      tx.query("INSERT INTO kek_wraps (kek_version, root_key_id, wrapped) VALUES (?, ?, ?)").run(version, newId, sealEnvelope(newRoot, version, this.kek(version), kekAad(version, newId)));
    }
    return newId;
  }

  /**
   * The root key, or SealedError once wiped: whoever still holds this keyring after a seal (a
   * rotation between two batches, a request begun before it) gets the 503 of a sealed Citadel,
   * not a DecryptionError from an all-zero key taken for damage.
   */
  private root(): Buffer {
    if (this.wiped) throw new SealedError();
    return this.rootKey;
  }

  /** Overwrites the keys this keyring holds in memory (on seal). */
  wipe(): void {
    this.wiped = true;
    this.rootKey.fill(0);
    for (const entry of this.kekCache.values()) entry.key.fill(0);
    for (const entry of this.dekCache.values()) entry.key.fill(0);
    this.kekCache.clear();
    this.dekCache.clear();
  }

  status(): KeyringStatus {
    const roots = this.db.query<RootKeyRecord, []>("SELECT id, method, shares, threshold, state, created_at FROM root_keys").all();
    const keks = this.db
      .query<{ version: number; created_at: number; retired_at: number | null; deks: number }, []>(
        "SELECT version, created_at, retired_at, (SELECT count(*) FROM deks WHERE deks.kek_version = keks.version AND wrapped IS NOT NULL) AS deks FROM keks ORDER BY version",
      )
      .all();
    const active = keks.filter((k) => k.retired_at === null).at(-1)!;
    const unopenable = this.unopenableKeks(this.db, active.version);
    const damaged = this.stillDamaged(active.version, unopenable) + unopenable.reduce((n, k) => n + k.deks, 0);
    return {
      root: roots.find((r) => r.state === "active")!,
      pending_root: roots.find((r) => r.state === "pending") ?? null,
      active_kek: active.version,
      keks,
      deks: keks.reduce((n, k) => n + k.deks, 0),
      deks_to_rewrap: keks.filter((k) => k.version < active.version).reduce((n, k) => n + k.deks, 0) - damaged,
      deks_damaged: damaged,
    };
  }

  /**
   * How many DEKs found damaged are still stored as found, under a KEK older than `active`; but
   * those under a KEK in `unopenable`, counted with all the others under it.
   */
  private stillDamaged(active: number, unopenable: DamagedKek[]): number {
    const damaged = damagedIn(this.db);
    const underUnopenable = new Set(unopenable.map((k) => k.version));
    let count = 0;
    const row = this.db.query<{ kek_version: number; wrapped: Uint8Array | null }, [string, number]>("SELECT kek_version, wrapped FROM deks WHERE owner = ? AND version = ?");
    for (const [id, found] of damaged) {
      const now = row.get(found.owner, found.version);
      const asFound = now?.wrapped && now.kek_version === found.kek_version && found.wrapped.equals(now.wrapped);
      if (!asFound || found.kek_version >= active) damaged.delete(id);
      else if (!underUnopenable.has(found.kek_version)) count++;
    }
    return count;
  }
}

function activeKekVersion(db: Database): number {
  const row = db.query<{ v: number | null }, []>("SELECT max(version) AS v FROM keks WHERE retired_at IS NULL").get();
  if (!row?.v) throw new Error("the keyring has no active KEK");
  return row.v;
}

function dekCacheId(owner: string, version: number): string {
  return `${owner}\0${version}`;
}

/** Why a rekey is refused while another's new root key is pending, and what to do. */
export function pendingRekeyMessage(pending: { id: string; method: SealMethod }): string {
  return `a new root key (${pending.id}, seal method ${pending.method}) is pending already: unseal with it (for another seal method, start Citadel with that method), or drop it with citadel keys rekey --cancel, then rekey again`;
}

/** Makes a pending root key the active one and forgets the others (and their KEK wraps). */
export function promoteRootKey(tx: Database, rootId: string): void {
  tx.query("DELETE FROM root_keys WHERE id != ?").run(rootId);
  tx.query("UPDATE root_keys SET state = 'active' WHERE id = ?").run(rootId);
}

/** The root keys allowed to unseal, with their verifiers. */
export function unsealableRoots(db: Database): Array<RootKeyRecord & { verifier: Uint8Array }> {
  return db.query<RootKeyRecord & { verifier: Uint8Array }, []>("SELECT id, verifier, method, shares, threshold, state, created_at FROM root_keys ORDER BY state").all();
}

/**
 * The database half of `Keyring.destroyOwner`: a destroyed key is a `deks` row whose wrapped
 * bytes are gone (NULL). For work that must destroy keys while sealed (the carry-over after a
 * restore runs before unsealing); unsealed, use the keyring's, which also drops its cache.
 */
export function destroyOwnerKeys(tx: Database, owner: string, now: number): number {
  return tx.query("UPDATE deks SET wrapped = NULL, destroyed_at = ? WHERE owner = ? AND wrapped IS NOT NULL").run(now, owner).changes;
}
