/**
 * The key lifecycle as operations: initialize, unseal at start, rotate the KEK, replace the
 * root key. Each records its audit event in the same transaction as its change. Used by
 * main.ts (start-up), the sys plugin (API) and the rotation schedule.
 */
import { existsSync } from "node:fs";
import type { AuditActor, AuditRequestContext } from "../audit/event.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import { InvalidError } from "../errors.ts";
import { Keyring, promoteRootKey, type SealMethod } from "./keyring.ts";
import { formatRootKey, generateRootKey, readRootKeyCredential, readRootKeyFile, rootKeyId, rootKeyVerifier, writeRootKeyFile } from "./root-key.ts";
import type { Seal } from "./seal.ts";
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
    rootKey = readRootKeyFile(source.keyFile);
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

/** Reads the root key from its configured source (not for Shamir, which waits for shares). */
export function readConfiguredRootKey(source: KeySource): Buffer {
  if (source.method === "key_file") return readRootKeyFile(source.keyFile);
  if (source.method === "systemd_credential") return readRootKeyCredential(source.credentialsDirectory, source.credential);
  throw new Error("a Shamir-sealed Citadel is unsealed with key shares (citadel unseal)");
}

/** Unseals with the configured key source and records the attempt; then finishes any interrupted rotation. */
export async function unsealFromSource(store: Store, seal: Seal, audit: AuditLog, source: KeySource, log: Logger, now: () => number): Promise<void> {
  const rootKey = readConfiguredRootKey(source);
  let promote: string | null;
  try {
    promote = seal.unsealWithKey(rootKey).promote;
  } catch (error) {
    await store.write((tx) => audit.record(tx, { action: "sys.unseal", actor: SYSTEM, outcome: "failure", reason: `${source.method}: not this Citadel's root key` }));
    throw error;
  } finally {
    rootKey.fill(0);
  }
  await store.write((tx) => {
    audit.record(tx, { action: "sys.unseal", actor: SYSTEM, outcome: "success", reason: source.method, resource: { type: "root_key", id: seal.keyring().rootId } });
    if (promote) {
      promoteRootKey(tx, promote);
      audit.record(tx, { action: "keys.root.promote", actor: SYSTEM, outcome: "success", resource: { type: "root_key", id: promote } });
    } else if (source.method === "key_file" && tx.run("DELETE FROM root_keys WHERE state = 'pending'").changes > 0) {
      // A key file rekey that died before writing the new file left a pending key nobody has.
      audit.record(tx, { action: "keys.root.discard", actor: SYSTEM, outcome: "success", reason: "a rekey stopped before the new key file was written; the old key stays" });
    }
  });
  await finishInterruptedRotation(store, seal.keyring(), log, now);
}

/**
 * What a KEK rotation killed half-way left: the DEKs still under an older KEK, re-wrapped.
 * Run at every unseal (from a key file or credential at start, from shares over the API).
 */
export async function finishInterruptedRotation(store: Store, keyring: Keyring, log: Logger, now: () => number): Promise<void> {
  const moved = await rewrapAll(store, keyring, now);
  if (moved > 0) log.info("finished an interrupted key rotation", { deks_rewrapped: moved });
}

/** Re-wraps every DEK still under an older KEK, in batches that each commit on their own. */
export async function rewrapAll(store: Store, keyring: Keyring, now: () => number, batch = 500): Promise<number> {
  let total = 0;
  for (;;) {
    const moved = await store.write((tx) => keyring.rewrapDeks(tx, batch, now()));
    total += moved;
    if (moved === 0) return total;
  }
}

/** Adds a KEK version, then moves every DEK to it. Safe to interrupt: the next unseal resumes. */
export async function rotateKek(store: Store, keyring: Keyring, audit: AuditLog, actor: AuditActor, now: () => number, request?: AuditRequestContext) {
  const version = await store.write((tx) => {
    const v = keyring.rotateKek(tx, now());
    audit.record(tx, { action: "keys.kek.rotate", actor, outcome: "success", resource: { type: "kek", id: String(v) }, request });
    return v;
  });
  return { version, rewrapped: await rewrapAll(store, keyring, now) };
}

export interface RekeyResult {
  keyId: string;
  /** True when the new key is already in use (key file written); false: pending until it unseals. */
  active: boolean;
  shares?: string[];
  rootKeyText?: string;
}

/**
 * Replaces the root key. The new key is recorded as pending first (both keys unseal), then:
 * a key file is written and the new key promoted at once; Shamir shares or a systemd
 * credential are handed out and the new key is promoted the first time it unseals.
 */
export async function rekey(store: Store, seal: Seal, audit: AuditLog, source: KeySource, actor: AuditActor, now: () => number, options: InitOptions = {}): Promise<RekeyResult> {
  const keyring = seal.keyring();
  // Shares and threshold as before unless given: a rekey replaces the key, not the keepers' arrangement.
  const current = keyring.status().root;
  const shamir = source.method === "shamir" ? shamirParameters({ shares: options.shares ?? current.shares ?? undefined, threshold: options.threshold ?? current.threshold ?? undefined }) : undefined;
  const newRoot = generateRootKey();
  const newId = rootKeyId(rootKeyVerifier(newRoot));
  await store.write((tx) => {
    keyring.beginRekey(tx, newRoot, source.method, now(), shamir);
    audit.record(tx, { action: "keys.root.rekey", actor, outcome: "success", resource: { type: "root_key", id: newId }, reason: `seal method ${source.method}` });
  });
  try {
    if (source.method === "key_file") {
      writeRootKeyFile(source.keyFile, newRoot);
      await store.write((tx) => {
        promoteRootKey(tx, newId);
        audit.record(tx, { action: "keys.root.promote", actor, outcome: "success", resource: { type: "root_key", id: newId } });
      });
      seal.unsealWithKey(newRoot);
      return { keyId: newId, active: true };
    }
    if (shamir) return { keyId: newId, active: false, shares: splitSecret(newRoot, shamir.shares, shamir.threshold).map((s) => encodeShare(newId, s)) };
    return { keyId: newId, active: false, rootKeyText: formatRootKey(newRoot) };
  } finally {
    newRoot.fill(0);
  }
}

/** Rotates the KEK when the active one is older than `days` (checked hourly while unsealed). */
export function startRotationSchedule(store: Store, seal: Seal, audit: AuditLog, days: number, now: () => number, log: Logger): () => Promise<void> {
  if (days <= 0) return async () => {};
  let running: Promise<unknown> | null = null;
  const check = () => {
    const keyring = seal.keyringIfUnsealed();
    if (!keyring || running) return;
    const active = store.db.query<{ created_at: number }, []>("SELECT created_at FROM keks WHERE retired_at IS NULL ORDER BY version DESC LIMIT 1").get();
    const pending = store.db.query("SELECT 1 FROM root_keys WHERE state = 'pending'").get();
    if (!active || pending || now() - active.created_at < days * 86_400_000) return;
    running = rotateKek(store, keyring, audit, SYSTEM, now)
      .then(({ version }) => log.info("rotated the key-encryption key on schedule", { version }))
      .catch((error) => log.error("scheduled key rotation failed", { error }))
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
