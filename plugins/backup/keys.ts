/**
 * The keys a backup is encrypted with. Each backup gets its own 256-bit master key, from one
 * of two sources:
 *
 * - the root key: HKDF-SHA256(root key, a fresh 32-byte salt). The root key is what the
 *   operator keeps anyway (key file, systemd credential, Shamir shares), and a restored
 *   database needs that same key to unseal, so a backup adds no key to keep. A key stored
 *   inside the database would not do: the backup it opens is the only copy of it.
 * - a passphrase: argon2id with the parameters stored in the header, for a backup that must
 *   open without the root key (handed to someone else).
 *
 * From the master key come two keys that never meet: the AES-256-GCM key, and a short key
 * check stored in the header, so that a wrong key is reported as a wrong key rather than as
 * tampering.
 */
import { createHmac, hkdfSync, randomBytes } from "node:crypto";
import { passphraseKey, type Argon2Parameters } from "../../src/auth/password.ts";
import { constantTimeEqual } from "../../src/crypto/aead.ts";
import { rootKeyId, rootKeyVerifier } from "../../src/crypto/root-key.ts";
import { combineShares, decodeShare, ShareFormatError, type Share } from "../../src/crypto/shamir.ts";
import { InvalidError } from "../../src/errors.ts";
import { BackupError } from "./errors.ts";

export const SALT_BYTES = 32;
export const KEY_CHECK_BYTES = 16;

/** argon2id for backups: RFC 9106's second recommendation (64 MiB, 3 passes); a backup is an offline target for years. */
export const BACKUP_ARGON2: Argon2Parameters = { memoryKiB: 65_536, iterations: 3, parallelism: 1 };
/** What a backup's header may ask of the machine opening it: a damaged or hostile file asks no more. */
const ARGON2_LIMITS = { memoryKiB: [19_456, 2_097_152], iterations: [2, 20], parallelism: [1, 16] } as const;
/** Shorter passphrases are refused when a backup is made (an offline guess costs one argon2id). */
export const MIN_PASSPHRASE_CHARS = 12;

/**
 * The one length rule for a new backup's passphrase, in characters (code points, as typed:
 * an emoji is one, though JSON Schema's minLength would count it as two).
 */
export function checkNewPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE_CHARS) throw new InvalidError(`a backup passphrase needs at least ${MIN_PASSPHRASE_CHARS} characters`, "passphrase");
}

/** How the master key of one backup is derived: what the header records. */
export type KeyDerivation =
  | { kind: "root_key"; rootKeyId: string; salt: Buffer }
  | { kind: "passphrase"; argon2: Argon2Parameters; salt: Buffer };

/** A backup's keys, ready to use. `wipe` overwrites them; nothing may be encrypted with them after. */
export interface BackupKeys {
  derivation: KeyDerivation;
  encryption: Buffer;
  check: Buffer;
  readonly wiped: boolean;
  wipe(): void;
}

/** What an operator brings to open a backup: whichever its header asks for. */
export interface KeySupply {
  rootKey?: Buffer;
  passphrase?: string;
}

/** Fresh keys for a new backup under the root key. */
export function newRootKeyBackupKeys(rootKey: Uint8Array): BackupKeys {
  return newBackupKeysUnder(rootKeyId(rootKeyVerifier(rootKey)), (salt) => rootKeyMaster(rootKey, salt));
}

/**
 * The same from the keyring of a running Citadel, whatever unsealed it (a key file, a systemd
 * credential, Shamir shares): the keyring derives the master key; the root key stays inside.
 */
export function newKeyringBackupKeys(keyring: { rootId: string; deriveFromRootKey(salt: Uint8Array, info: string): Buffer }): BackupKeys {
  return newBackupKeysUnder(keyring.rootId, (salt) => keyring.deriveFromRootKey(salt, ROOT_KEY_MASTER_INFO));
}

function newBackupKeysUnder(id: string, masterFor: (salt: Buffer) => Buffer): BackupKeys {
  const derivation: KeyDerivation = { kind: "root_key", rootKeyId: id, salt: randomBytes(SALT_BYTES) };
  return fromMaster(derivation, masterFor(derivation.salt));
}

/** Fresh keys for a new backup under a passphrase (argon2id runs on its own threads). */
export async function newPassphraseBackupKeys(passphrase: string, argon2: Argon2Parameters = BACKUP_ARGON2): Promise<BackupKeys> {
  checkNewPassphrase(passphrase);
  const derivation: KeyDerivation = { kind: "passphrase", argon2, salt: randomBytes(SALT_BYTES) };
  return fromMaster(derivation, await passphraseKey(passphrase, derivation.salt, argon2));
}

/**
 * The keys of an existing backup, from what the operator supplied. Refuses, with a message
 * that says what is wrong, a missing key, another root key, or a key that fails the check.
 */
export async function openingKeys(derivation: KeyDerivation, expectedCheck: Uint8Array, supply: KeySupply): Promise<BackupKeys> {
  let keys: BackupKeys;
  if (derivation.kind === "root_key") {
    if (!supply.rootKey) throw new BackupError(`this backup is encrypted under root key ${derivation.rootKeyId}: give that key (--key-file, or --shares-file for Shamir shares)`);
    const given = rootKeyId(rootKeyVerifier(supply.rootKey));
    if (given !== derivation.rootKeyId) throw new BackupError(`this backup is encrypted under root key ${derivation.rootKeyId}, but the key given is ${given}`);
    keys = fromMaster(derivation, rootKeyMaster(supply.rootKey, derivation.salt));
  } else {
    if (supply.passphrase === undefined) throw new BackupError("this backup is encrypted with a passphrase: give it (--passphrase-file)");
    checkArgon2Limits(derivation.argon2);
    keys = fromMaster(derivation, await passphraseKey(supply.passphrase, derivation.salt, derivation.argon2));
  }
  if (!constantTimeEqual(keys.check, expectedCheck)) {
    keys.wipe();
    throw new BackupError(
      derivation.kind === "passphrase"
        ? "wrong passphrase (or the header's key parameters were altered)"
        : "the root key does not open this backup: its header's key parameters were altered",
    );
  }
  return keys;
}

export function checkArgon2Limits(p: Argon2Parameters): void {
  const within = (value: number, [low, high]: readonly [number, number]) => Number.isInteger(value) && value >= low && value <= high;
  if (!within(p.memoryKiB, ARGON2_LIMITS.memoryKiB) || !within(p.iterations, ARGON2_LIMITS.iterations) || !within(p.parallelism, ARGON2_LIMITS.parallelism)) {
    throw new BackupError(`the backup asks for argon2id parameters out of bounds (m=${p.memoryKiB} KiB, t=${p.iterations}, p=${p.parallelism})`);
  }
}

/**
 * The shares given are not shares of one key that can be combined (too few lines, one that is
 * not a share, shares of different keys, one twice): the input's fault, told apart from shares
 * that combine but do not rebuild the key (one is wrong, or fewer than the threshold).
 */
export class SharesUnusable extends BackupError {}

/** Rebuilds a root key from Shamir shares, one per line (blank lines and # comments ignored). */
export function rootKeyFromShares(text: string): Buffer {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (lines.length < 2) throw new SharesUnusable("give at least the threshold of key shares, one per line");
  const shares: Share[] = [];
  let keyId: string | undefined;
  for (const line of lines) {
    let decoded: ReturnType<typeof decodeShare>;
    try {
      decoded = decodeShare(line);
    } catch (error) {
      throw new SharesUnusable(`key share ${shares.length + 1}: ${error instanceof ShareFormatError ? error.message : String(error)}`);
    }
    if (keyId !== undefined && decoded.keyId !== keyId) throw new SharesUnusable(`the shares belong to different keys (${keyId}, ${decoded.keyId})`);
    keyId = decoded.keyId;
    shares.push(decoded.share);
  }
  let combined: Buffer;
  try {
    combined = Buffer.from(combineShares(shares));
  } catch (error) {
    throw new SharesUnusable(`the key shares do not combine: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (rootKeyId(rootKeyVerifier(combined)) !== keyId) {
    combined.fill(0);
    throw new BackupError(`the shares do not rebuild root key ${keyId}: one is wrong, or fewer than the threshold were given`);
  }
  return combined;
}

const ROOT_KEY_MASTER_INFO = "citadel backup v1: master key from the root key";

function rootKeyMaster(rootKey: Uint8Array, salt: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", rootKey, salt, ROOT_KEY_MASTER_INFO, 32));
}

function fromMaster(derivation: KeyDerivation, master: Buffer): BackupKeys {
  const encryption = Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), "citadel backup v1: AES-256-GCM", 32));
  const check = createHmac("sha256", master).update("citadel backup v1: key check").digest().subarray(0, KEY_CHECK_BYTES);
  master.fill(0);
  let wiped = false;
  return {
    derivation,
    encryption,
    check,
    get wiped() {
      return wiped;
    },
    wipe() {
      encryption.fill(0);
      wiped = true;
    },
  };
}
