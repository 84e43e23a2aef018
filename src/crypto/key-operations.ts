/**
 * The key lifecycle as operations: initialize, unseal at start, rotate the KEK, replace the
 * root key. Each records its audit event in the same transaction as its change. Used by
 * main.ts (start-up), the sys plugin (API) and the rotation schedule.
 */
import { existsSync, rmSync } from "node:fs";
import type { Database } from "bun:sqlite";
import type { AuditActor, AuditEventInput, AuditRequestContext } from "../audit/event.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import { ConflictError, InvalidError, SealedError } from "../errors.ts";
import { describeFsError, writeFileAtomic } from "../files.ts";
import { Keyring, pendingRekeyMessage, promoteRootKey, unsealableRoots, type DamagedDek, type DamagedKek, type DekId, type RewrapBatch, type SealMethod } from "./keyring.ts";
import { formatRootKey, generateRootKey, readRootKeyCredential, readRootKeyFile, rootKeyId, rootKeyVerifier, verifies, writeRootKeyFile } from "./root-key.ts";
import { UnsealError, type Seal } from "./seal.ts";
import { encodeShare, splitSecret } from "./shamir.ts";

export interface KeySource {
  method: SealMethod;
  /** Absolute path of the key file (method key_file). */
  keyFile: string;
  /** Credential name and $CREDENTIALS_DIRECTORY (method systemd_credential). */
  credential: string;
  credentialsDirectory: string | undefined;
}

export interface InitOptions {
  shares?: number;
  threshold?: number;
}

export interface RekeyOptions extends InitOptions {
  /** The seal method of the new root key, when it changes (a seal migration); by default the configured one. */
  method?: SealMethod;
}

export interface InitResult {
  keyId: string;
  /** Shamir: the shares, to print once. */
  shares?: string[];
  /** systemd_credential: the key, to hand to systemd-creds once. */
  rootKeyText?: string;
}

const SYSTEM: AuditActor = { kind: "system" };

export function isInitialized(store: Store): boolean {
  return store.db.query("SELECT 1 FROM root_keys WHERE state = 'active'").get() !== null;
}

/**
 * Creates the root key and KEK v1. For a key file, the file is written (atomically) before the
 * database commits; an existing key file from an interrupted earlier attempt is reused rather
 * than overwritten, so no key that may already protect data is ever lost.
 */
export async function initializeKeys(store: Store, audit: AuditLog, source: KeySource, now: number, options: InitOptions = {}): Promise<InitResult> {
  if (isInitialized(store)) throw new Error("Citadel is already initialized");
  let rootKey: Buffer;
  if (source.method === "key_file" && existsSync(source.keyFile)) {
    rootKey = readRootKeyFile(source.keyFile, { ownOnly: true });
  } else {
    rootKey = generateRootKey();
    if (source.method === "key_file") writeRootKeyFile(source.keyFile, rootKey);
  }
  try {
    const shamir = source.method === "shamir" ? shamirParameters(options) : undefined;
    const keyId = await store.write((tx) => {
      const id = Keyring.initialize(tx, rootKey, source.method, now, shamir);
      audit.record(tx, { action: "sys.init", actor: SYSTEM, outcome: "success", resource: { type: "root_key", id }, reason: `seal method ${source.method}` });
      return id;
    });
    const result: InitResult = { keyId };
    if (shamir) result.shares = splitSecret(rootKey, shamir.shares, shamir.threshold).map((s) => encodeShare(keyId, s));
    if (source.method === "systemd_credential") result.rootKeyText = formatRootKey(rootKey);
    return result;
  } finally {
    rootKey.fill(0); // whether or not it was committed
  }
}

/**
 * The Shamir scheme asked for (default 3 of 5), or an InvalidError naming the field (the API
 * answers it 422; `citadel init` names it as its flag, a usage error).
 */
export function shamirParameters(options: InitOptions): { shares: number; threshold: number } {
  const shares = options.shares ?? 5;
  const threshold = options.threshold ?? 3;
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > 255) throw new InvalidError("a whole number from 2 to 255", "threshold");
  if (!Number.isInteger(shares) || shares > 255) throw new InvalidError("a whole number up to 255", "shares");
  if (shares < threshold) throw new InvalidError(`${shares} shares cannot meet a threshold of ${threshold}: at least as many shares as the threshold`, "shares");
  return { shares, threshold };
}

/**
 * The seal methods the stored root keys were made for: the active key's, and a pending one's
 * while a rekey to another method waits for its first unseal.
 */
export function storedSealMethods(store: Store): SealMethod[] {
  return store.db.query<{ method: SealMethod }, []>("SELECT method FROM root_keys ORDER BY state = 'pending'").all().map((r) => r.method);
}

/**
 * What to tell the operator of a key file where seal.key_file points while the seal method is
 * another, or null. After a migration away from it, the file holds the old key, which opens
 * every backup made under it (never deleted here: it may be that key's only copy); during a
 * migration to a key file, it holds the new key, which must stay. The stored verifiers tell which.
 */
export function leftoverKeyFileWarning(source: KeySource, db: Database): string | null {
  if (source.method === "key_file" || !existsSync(source.keyFile)) return null;
  let key: Buffer;
  try {
    key = readRootKeyFile(source.keyFile);
  } catch (error) {
    return `seal.method is ${source.method}, and the file where seal.key_file points is not a usable root key file: ${error instanceof Error ? error.message : String(error)}`;
  }
  let holder: ReturnType<typeof unsealableRoots>[number] | undefined;
  try {
    holder = unsealableRoots(db).find((r) => verifies(key, r.verifier));
  } finally {
    key.fill(0);
  }
  if (holder?.state === "pending") return `the key file holds root key ${holder.id}, pending for a seal migration to key_file: keep it, and start with seal.method = "key_file" to finish the migration`;
  if (holder) {
    return `seal.method is ${source.method}, but the key file still holds this Citadel's root key ${holder.id} (it unseals until the key the migration made is first used, and opens the backups made under it after that): once migrated, move it off this host (keep it with those backups)`;
  }
  return `seal.method is ${source.method}, but a key file is still in place holding no key of this database: an earlier root key (it opens backups made under it) or one of an interrupted rekey. Move it off this host (keep it with those backups)`;
}

/**
 * Why `citadel serve` refuses the configured seal method, or null when it starts with it:
 * `stored` are the methods of the stored root keys, the active key's first, then a pending one's
 * (storedSealMethods). `where` names the config for the remedy. Shared with `citadel doctor`.
 */
export function sealMethodMismatch(stored: readonly string[], configured: string, where: string): { problem: string; remedy: string } | null {
  if (stored.length === 0 || stored.includes(configured)) return null;
  const [active, pending] = stored;
  if (pending !== undefined && pending !== active) {
    return { problem: `this Citadel's root key was made for seal method ${active}, and a seal migration to ${pending} is pending, but the config says ${configured}`, remedy: `set seal.method = "${pending}" (or "${active}") in ${where}` };
  }
  return { problem: `this Citadel's root key was made for seal method ${active}, but the config says ${configured}`, remedy: `set seal.method = "${active}" in ${where} (or CITADEL_SEAL_METHOD=${active})` };
}

/** Reads the root key from its configured source (not for Shamir, which waits for shares). */
export function readConfiguredRootKey(source: KeySource): Buffer {
  if (source.method === "key_file") return readRootKeyFile(source.keyFile, { ownOnly: true });
  if (source.method === "systemd_credential") return readRootKeyCredential(source.credentialsDirectory, source.credential);
  throw new Error("a Shamir-sealed Citadel is unsealed with key shares (citadel unseal)");
}

/** Unseals with the configured key source and records the attempt; then finishes any interrupted rotation. */
export async function unsealFromSource(store: Store, seal: Seal, audit: AuditLog, source: KeySource, log: Logger, now: () => number): Promise<void> {
  await seal.exclusive(async () => {
    let promote: string | null;
    try {
      promote = unsealWithConfiguredKey(seal, source);
      refuseUnusableActiveKek(seal);
    } catch (error) {
      // A key that is not this Citadel's, a key file or credential that is missing, unreadable
      // or not the service's alone, and an active KEK that does not open with the key: each an
      // unseal that failed, on record (the store is open; the start stops after this). Should
      // that record fail too (a full disk), the start still stops with the key's error: its
      // remedy (chmod 600) and its exit code (2) are what the operator needs; the store has
      // reported the disk's.
      const why = error instanceof ActiveKekError ? error.message : error instanceof UnsealError ? "not this Citadel's root key" : messageOf(error);
      await store.write((tx) => audit.record(tx, { action: "sys.unseal", actor: SYSTEM, outcome: "failure", reason: `${source.method}: ${why}` })).catch(() => {});
      throw error;
    }
    await store.write((tx) => {
      audit.record(tx, { action: "sys.unseal", actor: SYSTEM, outcome: "success", reason: source.method, resource: { type: "root_key", id: seal.keyring().rootId } });
      if (promote) {
        promoteRootKey(tx, promote);
        audit.record(tx, { action: "keys.root.promote", actor: SYSTEM, outcome: "success", resource: { type: "root_key", id: promote } });
      } else if (source.method === "key_file" && tx.run("DELETE FROM root_keys WHERE state = 'pending' AND method = 'key_file'").changes > 0) {
        // A key file rekey that died before writing the new file left a pending key nobody has.
        // (A pending key for another method is a seal migration waiting for its first start
        // with that method: its shares or credential are out there, so it stays.)
        audit.record(tx, { action: "keys.root.discard", actor: SYSTEM, outcome: "success", reason: "a rekey stopped before the new key file was written; the old key stays" });
      }
    });
  });
  await finishInterruptedRotation(store, seal, audit, log, now);
}

/** Unseals with the key read from the configured source; returns the pending root it promotes, if any. */
function unsealWithConfiguredKey(seal: Seal, source: KeySource): string | null {
  const rootKey = readConfiguredRootKey(source);
  try {
    return seal.unsealWithKey(rootKey).promote;
  } finally {
    rootKey.fill(0);
  }
}

/**
 * The root key is this Citadel's, but the active KEK does not open with it (its wrap damaged,
 * altered or gone). Unsealed so, Citadel would encrypt nothing — every login and every audit
 * event with personal data a 500 — while /readyz said it was ready. Only a restore mends it.
 */
export class ActiveKekError extends UnsealError {}

/**
 * Seals again what was just unsealed when its active KEK cannot serve, and throws ActiveKekError
 * naming the KEK, the root key and the remedy. For every unseal: from a key file or credential
 * at start (which stops, exit 1, as for a wrong key), from shares over the API. Before the
 * re-wrap of an unfinished rotation, which goes on past older KEKs that do not open, never past
 * the active one.
 */
export function refuseUnusableActiveKek(seal: Seal): void {
  const problem = seal.keyring().activeKekProblem();
  if (problem === null) return;
  seal.seal();
  throw new ActiveKekError(`${problem}: nothing can be encrypted, nor read what its data keys protect; restore a backup made before the damage (citadel restore, docs/backup.md)`);
}

/**
 * What a KEK rotation killed half-way left: the DEKs still under an older KEK, re-wrapped.
 * Run at every unseal (from a key file or credential at start, from shares over the API).
 * A damaged DEK, or an older KEK that does not open, does not stop it (nor the start): it is
 * logged and audited, and left. Only damaged ones left, there was no rotation to finish: every
 * start meets them again, and says what to do about them instead. Should the re-wrap fail all
 * the same, that is logged and audited, and the unseal stands: an unfinished rotation loses
 * nothing (every DEK names its KEK), and the next unseal tries again — a start stopped by it
 * took everything down, DNS included, for keys it could not mend. With nothing to re-wrap, an
 * older KEK the last DEKs of which were destroyed since (erasures) is retired all the same.
 */
export async function finishInterruptedRotation(store: Store, seal: Seal, audit: AuditLog, log: Logger, now: () => number): Promise<void> {
  if (!anyDekUnderAnOlderKek(store.db)) return retireEmptiedKeks(store, seal, log, now); // no rotation to finish: nothing to audit
  const resumed = { action: "keys.kek.rotate", actor: SYSTEM, reason: "the re-wrap of an interrupted rotation stopped (the next unseal tries again)" };
  let done: { moved: number; damaged: number };
  try {
    done = await failureAudited(store, audit, resumed, () => rewrapAll(store, seal, audit, log, now));
  } catch (error) {
    if (error instanceof SealedError) log.info("sealed before an interrupted key rotation was finished; the next unseal finishes it");
    else log.error("could not finish an interrupted key rotation; the next unseal tries again", { error: messageOf(error) });
    return;
  }
  if (done.moved > 0) log.info("finished an interrupted key rotation", { deks_rewrapped: done.moved, deks_damaged: done.damaged });
  else if (done.damaged > 0) log.warn(`${DAMAGED_DEKS_ADVICE} (docs/keys.md)`, { deks_damaged: done.damaged });
}

/**
 * Retires the older KEKs no DEK uses any more, their material erased (as a re-wrap does after
 * each batch): else one whose wrap does not open stayed live, and each rekey had to step past
 * it. Logged, not audited: it is the end of a rotation or erasure on record already. A failure
 * is logged and the unseal stands; the next unseal tries again.
 */
async function retireEmptiedKeks(store: Store, seal: Seal, log: Logger, now: () => number): Promise<void> {
  if (!anyEmptiedOlderKek(store.db)) return; // the usual start: no write
  try {
    const retired = await seal.exclusive(() => store.write((tx) => seal.keyring().retireUnusedKeks(tx, now())));
    if (retired.length > 0) log.info("retired KEKs no data key uses any more, their key material erased", { kek_versions: retired });
  } catch (error) {
    if (error instanceof SealedError) log.info("sealed before retiring the KEKs no data key uses any more; the next unseal does it");
    else log.error("could not retire the KEKs no data key uses any more; the next unseal tries again", { error: messageOf(error) });
  }
}

/** Whether a live KEK older than the active one has no DEK left: one to retire. */
function anyEmptiedOlderKek(db: Database): boolean {
  const emptied =
    "SELECT 1 FROM keks WHERE retired_at IS NULL AND version < (SELECT max(version) FROM keks WHERE retired_at IS NULL) AND NOT EXISTS (SELECT 1 FROM deks WHERE deks.kek_version = keks.version AND wrapped IS NOT NULL) LIMIT 1";
  return db.query(emptied).get() !== null;
}

/** Whether a DEK is still wrapped by a KEK older than the active one (a rotation unfinished, or damage left). */
function anyDekUnderAnOlderKek(db: Database): boolean {
  const older = "SELECT 1 FROM deks WHERE wrapped IS NOT NULL AND kek_version < (SELECT max(version) FROM keks WHERE retired_at IS NULL) LIMIT 1";
  return db.query(older).get() !== null;
}

/** What to do about data keys that do not unwrap: no rotation moves them. */
const DAMAGED_DEKS_ADVICE =
  "data keys that do not unwrap (damaged or altered) stay under an old KEK, and no rotation moves them: the audit names their owners (keys.kek.rotate failures: each data key's, or those under a KEK that does not open); restore a backup made before the damage, or destroy those owners' data (their erasure or deletion destroys their keys; the appliance's own keys — audit/, mesh/, dns/ — only a restore mends)";

/** Who re-wraps: a rotation's actor and request, or the system (resuming one at an unseal). */
export interface RewrapBy {
  actor: AuditActor;
  request?: AuditRequestContext;
}

/**
 * Re-wraps every DEK still under an older KEK, in batches that each commit on their own. Each
 * batch is a key operation of its own, with the keyring of its moment: a seal waits for one
 * batch only, and stops the rest (SealedError, a 503; the next unseal resumes); after a rekey,
 * the new key's keyring goes on. A DEK that does not unwrap stays under its KEK (kept for it),
 * logged and audited each time a re-wrap meets it, and the others go on (as the secrets'
 * re-encryption does with a damaged value); an older KEK that does not open likewise, with
 * every DEK under it, logged and audited once per re-wrap as the KEK's damage. Returns how many
 * DEKs moved, and how many were left.
 */
export async function rewrapAll(store: Store, seal: Seal, audit: AuditLog, log: Logger, now: () => number, by: RewrapBy = { actor: SYSTEM }, batch = 500) {
  let moved = 0;
  let damaged = 0;
  let after: DekId | null = null;
  const keksReported = new Set<number>();
  for (;;) {
    const done: RewrapBatch & { newlyDamagedKeks: DamagedKek[] } = await seal.exclusive(() =>
      store.write((tx) => {
        const result = seal.keyring().rewrapDeks(tx, batch, now(), after);
        const newlyDamagedKeks = result.damagedKeks.filter((kek) => !keksReported.has(kek.version));
        for (const dek of result.damaged) audit.record(tx, damagedDekEvent(dek, result.kek, by));
        for (const kek of newlyDamagedKeks) audit.record(tx, damagedKekEvent(kek, result.kek, seal.keyring().rootId, by));
        return { ...result, newlyDamagedKeks };
      }),
    );
    for (const dek of done.damaged) log.error(damagedDekMessage(dek), { owner: dek.owner, version: dek.version, kek_version: dek.kek_version });
    for (const kek of done.newlyDamagedKeks) {
      log.error(DAMAGED_KEK_MESSAGE, { kek_version: kek.version, deks: kek.deks, owners: kek.owners, first_owners: kek.firstOwners });
      keksReported.add(kek.version);
      damaged += kek.deks;
    }
    moved += done.moved;
    damaged += done.damaged.length;
    if (!done.last) return { moved, damaged };
    after = done.last;
  }
}

const DAMAGED_KEK_MESSAGE =
  "a KEK does not open with the root key (its stored wrap damaged, altered or missing): the data keys under it do not unwrap, and the key rotation leaves them under it, which is kept; restore a backup made before the damage (docs/keys.md)";

function damagedKekEvent(kek: DamagedKek, to: number, rootId: string, by: RewrapBy): AuditEventInput {
  const why =
    kek.wrap === "missing"
      ? `KEK v${kek.version} has no wrap for root key ${rootId} (left out by a rekey, as it did not open, or lost)`
      : `KEK v${kek.version} does not open with root key ${rootId} (its wrap damaged or altered)`;
  const reason = `${why}: the ${kek.deks} data keys under it do not unwrap, left under it, which is kept, by the re-wrap to KEK v${to}; restore a backup made before the damage, or destroy those owners' data (docs/keys.md); ${ownersNamed(kek)}`;
  return { action: "keys.kek.rotate", actor: by.actor, outcome: "failure", resource: { type: "kek", id: String(kek.version) }, reason, request: by.request };
}

/**
 * The owners of a damaged KEK's data keys, as its audit event names them: all of them, or the
 * first DAMAGED_KEK_OWNERS and how many more (named by a later re-wrap once these are destroyed).
 */
function ownersNamed(kek: DamagedKek): string {
  const more = kek.owners - kek.firstOwners.length;
  if (more === 0) return `their owners: ${kek.firstOwners.join(", ")}`;
  return `their owners: ${kek.firstOwners.join(", ")}, and ${more} more (named by the next re-wrap once these are destroyed)`;
}

function damagedDekMessage(dek: DamagedDek): string {
  if (dek.why === "kek_gone") return "a data key names a KEK that is gone (retired or lost): it does not unwrap, and the key rotation leaves it as it is";
  return "a data key does not unwrap (damaged or altered): the key rotation leaves it under its old KEK";
}

function damagedDekEvent(dek: DamagedDek, kek: number, by: RewrapBy): AuditEventInput {
  const left =
    dek.why === "kek_gone"
      ? `data key v${dek.version} names KEK v${dek.kek_version}, which is gone (retired or lost): it does not unwrap, left as it is`
      : `data key v${dek.version} does not unwrap (damaged or altered): left under KEK v${dek.kek_version}, which is kept`;
  return { action: "keys.kek.rotate", actor: by.actor, outcome: "failure", resource: { type: "dek", id: dek.owner }, reason: `${left}, by the re-wrap to KEK v${kek}`, request: by.request };
}

/**
 * Adds a KEK version, then moves every DEK to it. Safe to interrupt: the next unseal resumes.
 * Returns the new version, how many DEKs it moved and how many it left (damaged).
 */
export async function rotateKek(store: Store, seal: Seal, audit: AuditLog, log: Logger, actor: AuditActor, now: () => number, request?: AuditRequestContext) {
  const rotation = { action: "keys.kek.rotate", actor, request };
  const version = await failureAudited(store, audit, rotation, () =>
    seal.exclusive(() =>
      store.write((tx) => {
        const v = seal.keyring().rotateKek(tx, now());
        audit.record(tx, { ...rotation, outcome: "success", resource: { type: "kek", id: String(v) } });
        return v;
      }),
    ),
  );
  // The new KEK is on record as made; a re-wrap that stops is on record too, as a failure.
  const rewrap = { ...rotation, resource: { type: "kek", id: String(version) }, reason: `the re-wrap to KEK v${version} stopped (the next unseal finishes it)` };
  const { moved, damaged } = await failureAudited(store, audit, rewrap, () => rewrapAll(store, seal, audit, log, now, { actor, request }));
  return { version, rewrapped: moved, damaged };
}

/** A key operation's audit event, but for its outcome; `reason`, if given, goes before the error's message. */
type AttemptEvent = Omit<AuditEventInput, "outcome">;

/**
 * Runs `operation`; should it throw (refused: 409, 422; failed: 503, 500), records `event` as a
 * failure with the error's message, then throws the error on. Should that record fail to be
 * written too (the disk refusing writes), the caller still gets the operation's own error: the
 * store has reported the disk's.
 */
async function failureAudited<T>(store: Store, audit: AuditLog, event: AttemptEvent, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    const reason = event.reason ? `${event.reason}: ${messageOf(error)}` : messageOf(error);
    await store.write((tx) => audit.record(tx, { ...event, outcome: "failure", reason })).catch(() => {});
    throw error;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export interface RekeyResult {
  keyId: string;
  /** The root key before: backups made until the new key is in use need it. */
  previousKeyId: string;
  /** A key file rekey: where the old key was kept (backups made before need it). */
  keptKeyFile?: string;
  /** The new key's seal method: when it is not the configured one, a restart with it promotes the key. */
  method: SealMethod;
  /** True when the new key is already in use (key file written); false: pending until it unseals. */
  active: boolean;
  shares?: string[];
  rootKeyText?: string;
}

/**
 * Replaces the root key. The new key is recorded as pending first (both keys unseal), then:
 * a key file is written and the new key promoted at once; Shamir shares or a systemd
 * credential are handed out and the new key is promoted the first time it unseals.
 *
 * With `options.method` other than the configured method, this is a seal migration (a key
 * file to Shamir shares or a TPM-bound credential, or back): the new key stays pending while
 * this process keeps the old one, and the first start configured for the new method promotes
 * it when it unseals with it. Until then the old key keeps unsealing, under the old method.
 */
export function rekey(
  store: Store,
  seal: Seal,
  audit: AuditLog,
  source: KeySource,
  actor: AuditActor,
  now: () => number,
  options: RekeyOptions = {},
  request?: AuditRequestContext,
): Promise<RekeyResult> {
  const attempt = { action: "keys.root.rekey", actor, request, reason: `seal method ${options.method ?? source.method}` };
  return failureAudited(store, audit, attempt, () => seal.exclusive(() => replaceRootKey(store, seal, audit, source, actor, now, options, request)));
}

async function replaceRootKey(
  store: Store,
  seal: Seal,
  audit: AuditLog,
  source: KeySource,
  actor: AuditActor,
  now: () => number,
  options: RekeyOptions,
  request: AuditRequestContext | undefined,
): Promise<RekeyResult> {
  const keyring = seal.keyring();
  const method = options.method ?? source.method;
  const migrating = method !== source.method;
  if ((options.shares !== undefined || options.threshold !== undefined) && method !== "shamir") {
    throw new InvalidError(`shares and threshold are for seal method shamir; the new key's is ${method}`, "shares");
  }
  // Shares and threshold as before unless given: a rekey replaces the key, not the keepers' arrangement.
  const current = keyring.status().root;
  const before = current.method === "shamir" ? current : { shares: undefined, threshold: undefined };
  const shamir = method === "shamir" ? shamirParameters({ shares: options.shares ?? before.shares ?? undefined, threshold: options.threshold ?? before.threshold ?? undefined }) : undefined;
  const pending = unsealableRoots(store.db).find((r) => r.state === "pending");
  if (pending) throw new ConflictError(pendingRekeyMessage(pending)); // before a key file is written (checked again in the write)
  const newRoot = generateRootKey();
  const newId = rootKeyId(rootKeyVerifier(newRoot));
  try {
    // A migration to a key file writes it first, and only where no file is: whatever is there
    // may be the only copy of an earlier key (which older backups need). A key file rekey
    // replaces the file: the old key goes beside it first, as the backups made before need it.
    if (migrating && method === "key_file") writeNewKeyFile(source.keyFile, newRoot);
    const keptKeyFile = method === "key_file" && !migrating ? keepOldKeyFile(source.keyFile, keyring, store) : null;
    try {
      await store.write((tx) => {
        keyring.beginRekey(tx, newRoot, method, now(), shamir);
        const reason = migrating ? `seal method ${method} (a migration from ${source.method}; pending until a start with ${method})` : `seal method ${method}`;
        audit.record(tx, { action: "keys.root.rekey", actor, outcome: "success", resource: { type: "root_key", id: newId }, reason, request });
      });
    } catch (error) {
      if (migrating && method === "key_file") removeKeyFileOf(source.keyFile, rootKeyVerifier(newRoot)); // ours, and never recorded
      throw error;
    }
    if (method === "key_file" && !migrating) {
      try {
        writeRootKeyFile(source.keyFile, newRoot);
      } catch (error) {
        // Not written (disk full, permissions): the pending key would be nobody's. (Written but
        // the directory's fsync failed: it stays pending, and the next start promotes it.)
        if (keyFileHolds(source.keyFile, rootKeyVerifier(newRoot))) {
          throw new ConflictError(`the new key file was written, but not confirmed on disk (${describeFsError(error)}): restart Citadel, which makes it the root key`);
        }
        await store.write((tx) => {
          tx.run("DELETE FROM root_keys WHERE id = ? AND state = 'pending'", [newId]);
          audit.record(tx, { action: "keys.root.discard", actor, outcome: "success", resource: { type: "root_key", id: newId }, reason: "the new key file could not be written; the old key stays" });
        });
        throw new ConflictError(`seal.key_file: the new key file cannot be written there (${describeFsError(error)}); the old key stays in use`);
      }
      // The new key wraps every live KEK since beginRekey: its keyring serves from here on, before
      // the promotion deletes the old key's wraps (a request in between would find none for a
      // DEK not in the cache). Sealed meanwhile, Citadel stays sealed; the next start reads the new file.
      seal.replaceKeyring(keyring, newRoot);
      await store.write((tx) => {
        promoteRootKey(tx, newId);
        audit.record(tx, { action: "keys.root.promote", actor, outcome: "success", resource: { type: "root_key", id: newId } });
      });
      return { keyId: newId, previousKeyId: current.id, method, active: true, ...(keptKeyFile ? { keptKeyFile } : {}) };
    }
    const result = { keyId: newId, previousKeyId: current.id, method, active: false };
    if (method === "key_file") return result;
    if (shamir) return { ...result, shares: splitSecret(newRoot, shamir.shares, shamir.threshold).map((s) => encodeShare(newId, s)) };
    return { ...result, rootKeyText: formatRootKey(newRoot) };
  } finally {
    newRoot.fill(0);
  }
}

/** Writes a new key file, refusing (409) when a file is there already. */
function writeNewKeyFile(path: string, key: Uint8Array): void {
  try {
    writeFileAtomic(path, formatRootKey(key), 0o600, { replace: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new ConflictError("a file is already where seal.key_file points: it may be the only copy of an earlier root key (older backups need it). Move it somewhere safe, or point seal.key_file elsewhere, then rekey again");
    }
    // In place, and only what came after failed (the temporary name's removal, the directory's
    // sync): the key is written; refusing now would leave a key of no one where it lies.
    if (keyFileHolds(path, rootKeyVerifier(key))) return;
    // The operator's to put right (a directory missing or not the service's): said, not a 500.
    throw new ConflictError(`seal.key_file: the new key file cannot be written there (${describeFsError(error)}); its directory must exist and be writable by the service`);
  }
}

/**
 * Drops a pending root key: a rekey whose new shares or credential were lost, or a seal
 * migration given up. A key file written for a migration goes with it (only if it holds that
 * very key: whatever else is there is not ours to delete). Returns the dropped key's id.
 */
export function cancelRekey(store: Store, seal: Seal, audit: AuditLog, source: KeySource, actor: AuditActor, request?: AuditRequestContext): Promise<string | null> {
  return failureAudited(store, audit, { action: "keys.root.discard", actor, request }, () => seal.exclusive(() => dropPendingRootKey(store, seal, audit, source, actor, request)));
}

async function dropPendingRootKey(store: Store, seal: Seal, audit: AuditLog, source: KeySource, actor: AuditActor, request?: AuditRequestContext): Promise<string | null> {
  seal.keyring(); // an operator's act, while unsealed like every other key operation
  const pending = unsealableRoots(store.db).find((r) => r.state === "pending");
  if (!pending) return null;
  if (source.method === "key_file" && pending.method === "key_file" && keyFileHolds(source.keyFile, pending.verifier)) {
    // A key file rekey whose promotion failed after the file was replaced: the file holds the new
    // key only, and the old one is in this process's memory alone. Dropping the new key would
    // leave the file unable to unseal anything at the next start.
    throw new ConflictError("the key file already holds the pending root key (its rekey stopped before making it the root key): restart Citadel, which promotes it; it cannot be dropped");
  }
  const dropped = await store.write((tx) => {
    if (tx.run("DELETE FROM root_keys WHERE id = ? AND state = 'pending'", [pending.id]).changes === 0) return null;
    audit.record(tx, { action: "keys.root.discard", actor, outcome: "success", resource: { type: "root_key", id: pending.id }, reason: `rekey cancelled (seal method ${pending.method})`, request });
    return pending.id;
  });
  if (dropped && pending.method === "key_file" && source.method !== "key_file") removeKeyFileOf(source.keyFile, pending.verifier);
  return dropped;
}

/**
 * Keeps the root key in use as `<path>.<rootId>` (0600) before a rekey replaces the key file at
 * `path`: the backups made under it open with it alone. Written from the keyring, not copied
 * from the file, which may no longer be readable (its mode changed since the start) or hold
 * this key: the rekey must not replace the only copy of it. Returns where it is kept.
 */
function keepOldKeyFile(path: string, keyring: Keyring, store: Store): string {
  const kept = `${path}.${keyring.rootId}`;
  try {
    keyring.writeRootKeyFile(kept);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new ConflictError(`seal.key_file: the old key cannot be kept beside the key file (${describeFsError(error)}); nothing was changed`);
    const active = unsealableRoots(store.db).find((r) => r.id === keyring.rootId);
    if (!active) throw new ConflictError(`root key ${keyring.rootId} is no longer this Citadel's; nothing was changed`);
    keptBefore(kept, active.verifier); // a rekey stopped after keeping it: the same key is fine
  }
  return kept;
}

/** A kept key file there already: it must hold the key of `verifier`, else nothing is changed (409). */
function keptBefore(kept: string, verifier: Uint8Array): void {
  const name = kept.split("/").pop();
  let existing: Buffer;
  try {
    existing = readRootKeyFile(kept);
  } catch (unreadable) {
    throw new ConflictError(`${name} is there already and cannot be read as a key file (${unreadable instanceof Error ? unreadable.message : String(unreadable)}); nothing was changed`);
  }
  try {
    if (!verifies(existing, verifier)) throw new ConflictError(`${name} is there already and holds another key; nothing was changed`);
  } finally {
    existing.fill(0);
  }
}

/** Removes the key file at `path` if it holds the key of `verifier`. */
function removeKeyFileOf(path: string, verifier: Uint8Array): void {
  if (keyFileHolds(path, verifier)) rmSync(path);
}

/** Whether the key file at `path` holds the key of `verifier` (false when it is gone, unreadable or no key). */
function keyFileHolds(path: string, verifier: Uint8Array): boolean {
  let key: Buffer;
  try {
    key = readRootKeyFile(path);
  } catch {
    return false;
  }
  try {
    return verifies(key, verifier);
  } finally {
    key.fill(0);
  }
}

/** Rotates the KEK when the active one is older than `days` (checked hourly while unsealed). */
export function startRotationSchedule(store: Store, seal: Seal, audit: AuditLog, days: number, now: () => number, log: Logger): () => Promise<void> {
  if (days <= 0) return async () => {};
  let running: Promise<unknown> | null = null;
  let waitNoted = false;
  const check = () => {
    if (seal.sealed || running) return;
    const active = store.db.query<{ created_at: number }, []>("SELECT created_at FROM keks WHERE retired_at IS NULL ORDER BY version DESC LIMIT 1").get();
    if (!active || now() - active.created_at < days * 86_400_000) return;
    if (store.db.query("SELECT 1 FROM root_keys WHERE state = 'pending'").get()) {
      // A rotation would be refused (409) while a rekey is pending: said once, not every hour.
      if (!waitNoted) log.warn("the scheduled key rotation is due, and waits for the pending rekey: finish it (unseal with the new key) or cancel it (citadel keys rekey --cancel)");
      waitNoted = true;
      return;
    }
    waitNoted = false;
    running = rotateKek(store, seal, audit, log, SYSTEM, now)
      .then(({ version }) => log.info("rotated the key-encryption key on schedule", { version }))
      .catch((error) => {
        if (error instanceof SealedError) log.info("scheduled key rotation stopped by a seal; the next unseal finishes it", { error });
        else log.error("scheduled key rotation failed", { error });
      })
      .finally(() => (running = null));
  };
  check();
  const timer = setInterval(check, 3_600_000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
