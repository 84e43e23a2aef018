/**
 * Seal state: whether the keys are in memory. Sealed, Citadel can serve health and the
 * unseal API and nothing that needs a key. Unsealing takes the root key itself (key file,
 * systemd credential) or Shamir shares one at a time until the threshold is met; either way
 * the key is checked against a stored verifier, so a wrong key never unseals anything.
 */
import type { Database } from "bun:sqlite";
import { SealedError } from "../errors.ts";
import type { ReadMemo } from "../store/read-memo.ts";
import { Keyring, unsealableRoots, type RootKeyRecord, type SealMethod } from "./keyring.ts";
import { verifies } from "./root-key.ts";
import { combineShares, decodeShare, ShareFormatError, type Share } from "./shamir.ts";

export interface SealStatus {
  sealed: boolean;
  initialized: boolean;
  method: RootKeyRecord["method"] | null;
  /** Shamir: shares needed and shares received so far. */
  threshold: number | null;
  progress: number;
  /** The id of the root key in use (or expected), also the prefix of its shares. */
  key_id: string | null;
}

/** A share or key was refused; the message is safe to show. */
export class UnsealError extends Error {
  override readonly name = "UnsealError";
}

export interface UnsealResult {
  /** True when this call unsealed (false: more shares are needed). */
  unsealed: boolean;
  /**
   * The pending root of an unfinished rekey, when that is the key used: the caller promotes it
   * (promoteRootKey) in the same transaction as its audit event, since using it proves the
   * operator has stored it.
   */
  promote: string | null;
  status: SealStatus;
}

export class Seal {
  private keyringInMemory: Keyring | null = null;
  private shares = new Map<number, Share>();
  private sharesKeyId: string | null = null;
  private readonly sealListeners = new Set<() => void>();
  private readonly unsealListeners = new Set<() => void>();
  /** The tail of the key operations queued so far (exclusive); settles when the last one ends. */
  private keyOperations: Promise<unknown> = Promise.resolve();

  /**
   * `method`: the configured seal method. While a seal migration is pending, the key that
   * unseals under it is the pending one, and status() describes that key (its method, its
   * threshold, its id), so that `citadel unseal` asks for the new shares.
   */
  constructor(
    private readonly db: Database,
    private readonly now: () => number = Date.now,
    private readonly method: SealMethod | null = null,
    /** Handed to every keyring: the DEK rows its decryptions look up, remembered (Keyring). */
    private readonly dekRows?: ReadMemo,
  ) {}

  get sealed(): boolean {
    return this.keyringInMemory === null;
  }

  /** The keyring, or SealedError (HTTP 503) when sealed. */
  keyring(): Keyring {
    if (!this.keyringInMemory) throw new SealedError();
    return this.keyringInMemory;
  }

  /** The keyring when unsealed, else null (for work that can go on without keys). */
  keyringIfUnsealed(): Keyring | null {
    return this.keyringInMemory;
  }

  /**
   * Once shares have been given, they say which key is being rebuilt (a rekey's pending one,
   * while the old one still unseals too): the status is that key's, its threshold and its id,
   * which `citadel unseal` counts its prompt toward.
   */
  status(): SealStatus {
    const roots = unsealableRoots(this.db); // the active key first
    const active = roots.find((r) => r.state === "active") ?? null;
    const expected = roots.find((r) => r.id === this.sharesKeyId) ?? roots.find((r) => r.method === this.method) ?? active;
    return {
      sealed: this.sealed,
      initialized: active !== null,
      method: expected?.method ?? null,
      threshold: expected?.threshold ?? null,
      progress: this.shares.size,
      key_id: this.keyringInMemory?.rootId ?? expected?.id ?? null,
    };
  }

  /**
   * Unseals with the root key itself (copied: the caller wipes its buffer). A key matching the
   * pending root of an unfinished rekey is reported in `promote`.
   */
  unsealWithKey(rootKey: Buffer): UnsealResult {
    const match = this.useKey(rootKey);
    for (const listener of this.unsealListeners) listener();
    return { unsealed: true, promote: match.state === "pending" ? match.id : null, status: this.status() };
  }

  /**
   * Puts the keyring of `rootKey` (a rekey's new key, which wraps every KEK already) in place of
   * `current`, only while `current` is still the one in memory: sealed meanwhile, Citadel stays
   * sealed. Returns whether it did.
   */
  replaceKeyring(current: Keyring, rootKey: Buffer): boolean {
    if (this.keyringInMemory !== current) return false;
    this.useKey(rootKey);
    return true;
  }

  /**
   * Runs `operation` once the key operations queued before it (unseal, seal, a rotation's
   * steps, rekey) have ended, and holds back those queued after it until it ends: each sees
   * the keyring and the root keys as the one before left them (a seal sent during a rekey is
   * not undone by it). A failure is its caller's; the next operation runs all the same.
   */
  exclusive<T>(operation: () => T | Promise<T>): Promise<T> {
    const result = this.keyOperations.then(operation);
    this.keyOperations = result.catch(() => {});
    return result;
  }

  /** Checks `rootKey` against the stored verifiers and keeps a copy of it in a new keyring. */
  private useKey(rootKey: Buffer): RootKeyRecord {
    const match = unsealableRoots(this.db).find((r) => verifies(rootKey, r.verifier));
    if (!match) throw new UnsealError("this is not the root key of this Citadel");
    this.keyringInMemory?.wipe();
    this.keyringInMemory = new Keyring(this.db, Buffer.from(rootKey), this.now, this.dekRows);
    this.resetShares();
    return match;
  }

  /** Takes one Shamir share; unseals once the threshold is met. */
  submitShare(text: string): UnsealResult {
    if (!this.sealed) return { unsealed: false, promote: null, status: this.status() };
    let decoded: { keyId: string; share: Share };
    try {
      decoded = decodeShare(text);
    } catch (error) {
      throw new UnsealError(error instanceof ShareFormatError ? error.message : "not a key share");
    }
    const roots = unsealableRoots(this.db);
    const root = roots.find((r) => r.id === decoded.keyId);
    if (!root || root.method !== "shamir" || !root.threshold) {
      throw new UnsealError(`this share belongs to key ${decoded.keyId}, which does not unseal this Citadel`);
    }
    if (this.sharesKeyId !== null && this.sharesKeyId !== decoded.keyId) {
      throw new UnsealError(`this share belongs to key ${decoded.keyId}, but the shares given so far belong to ${this.sharesKeyId}`);
    }
    if (this.shares.has(decoded.share.x)) throw new UnsealError(`share ${decoded.share.x} was already given`);
    this.sharesKeyId = decoded.keyId;
    this.shares.set(decoded.share.x, decoded.share);
    if (this.shares.size < root.threshold) return { unsealed: false, promote: null, status: this.status() };
    const combined = combineShares([...this.shares.values()]);
    const key = Buffer.from(combined.buffer, combined.byteOffset, combined.byteLength); // a view: wiping it wipes the result
    this.resetShares();
    try {
      if (!verifies(key, root.verifier)) {
        throw new UnsealError("the shares do not rebuild the root key (one of them is wrong); start again");
      }
      return this.unsealWithKey(key);
    } finally {
      key.fill(0);
    }
  }

  /** Forgets (and overwrites) the shares given so far. */
  resetShares(): void {
    for (const share of this.shares.values()) share.y.fill(0);
    this.shares = new Map();
    this.sharesKeyId = null;
  }

  /**
   * Drops the keys from memory, and has everything that holds material decrypted with them
   * (onSeal) drop it too, now rather than at its next use.
   */
  seal(): void {
    this.keyringInMemory?.wipe();
    this.keyringInMemory = null;
    this.resetShares();
    const failures: unknown[] = [];
    for (const listener of this.sealListeners) {
      try {
        listener();
      } catch (error) {
        failures.push(error); // the others still drop theirs
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, "sealed, but something failed to drop what it had decrypted");
  }

  /**
   * Calls `listener` whenever Citadel unseals, for work that waited for the keys (an
   * interrupted re-encryption on an instance that starts sealed). It must not throw: start
   * the work and return; returns the way to stop.
   */
  onUnseal(listener: () => void): () => void {
    this.unsealListeners.add(listener);
    return () => this.unsealListeners.delete(listener);
  }

  /** Calls `listener` whenever Citadel seals (it must drop what it decrypted); returns the way to stop. */
  onSeal(listener: () => void): () => void {
    this.sealListeners.add(listener);
    return () => this.sealListeners.delete(listener);
  }
}
