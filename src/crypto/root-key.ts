/**
 * The root key: 256 random bits that wrap the key-encryption keys. It never touches the
 * database; only a verifier (an HMAC of a fixed label under the key) is stored, so a key
 * presented at unseal can be checked without storing anything that reveals it.
 */
import { createHmac, randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeFsError, writeFileAtomic } from "../files.ts";
import { KEY_BYTES, constantTimeEqual } from "./aead.ts";

export function generateRootKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** What the database keeps about a root key: HMAC-SHA256(key, label). */
export function rootKeyVerifier(key: Uint8Array): Buffer {
  return createHmac("sha256", key).update("citadel/root-key-verifier/v1").digest();
}

/** A short public name for a root key (it prefixes its Shamir shares): 8 hex digits of its verifier's hash. */
export function rootKeyId(verifier: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(verifier).digest("hex").slice(0, 8);
}

export function verifies(key: Uint8Array, verifier: Uint8Array): boolean {
  return constantTimeEqual(rootKeyVerifier(key), verifier);
}

export class RootKeyError extends Error {
  override readonly name = "RootKeyError";
}

/**
 * Reads a root key file: 64 hex digits (a trailing newline allowed) or 32 raw bytes. Refuses
 * a file that group or others can read, naming it, before reading a byte of it. `ownOnly`:
 * the key the service takes into use, which must also be owned by the user it runs as, or
 * root (as ssh's StrictModes): a file of another user's is that user's to read or replace.
 * (Not for a command that reads the service's file as root, nor for a file the operator names.)
 */
export function readRootKeyFile(path: string, { planted = false, ownOnly = false }: { planted?: boolean; ownOnly?: boolean } = {}): Buffer {
  // Checked and read through one descriptor: what is read is what was checked. `planted`: the
  // file lies in a directory someone else controls (root reading the service's data
  // directory), so a link is not followed, and only a regular file is read — a FIFO put there
  // would hang the command, a device would be opened. A path the operator names may be a
  // link, or a pipe (`--key-file <(pass show citadel)`).
  const flags = planted ? constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY : constants.O_RDONLY;
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch (error) {
    const link = planted && (error as NodeJS.ErrnoException).code === "ELOOP";
    throw new RootKeyError(link ? `root key file ${path} is a link: not followed in a directory another user controls` : `root key file ${path}: ${describeFsError(error)}`);
  }
  try {
    const stat = fstatSync(fd);
    // A directory is never a key file (a pipe the operator names may be): refused as such, rather
    // than read into an EISDIR naming nothing, or judged by its mode (chmod 600 would not help).
    if (stat.isDirectory() || (planted && !stat.isFile())) throw new RootKeyError(`root key file ${path} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new RootKeyError(`root key file ${path} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
    }
    if (ownOnly) refuseOtherOwner(path, stat.uid);
    return parseWiping(readKeyBytes(fd, path), `root key file ${path}`);
  } finally {
    closeSync(fd);
  }
}

/** The bytes of the open key file; a read that fails is a RootKeyError naming the file. */
function readKeyBytes(fd: number, path: string): Buffer {
  try {
    return readFileSync(fd);
  } catch (error) {
    throw new RootKeyError(`root key file ${path}: ${describeFsError(error)}`);
  }
}

/** Refuses a key file owned by a user other than this process's and root. */
function refuseOtherOwner(path: string, owner: number): void {
  const uid = process.getuid?.();
  if (uid === undefined || owner === uid || owner === 0) return;
  throw new RootKeyError(`root key file ${path} is owned by uid ${owner}, neither this process's user (uid ${uid}) nor root: that user can read or replace it; run: chown ${uid} ${path}`);
}

/** Reads the root key from a systemd credential ($CREDENTIALS_DIRECTORY/<name>). */
export function readRootKeyCredential(credentialsDirectory: string | undefined, name: string): Buffer {
  if (!credentialsDirectory) {
    throw new RootKeyError(`seal.method is "systemd_credential" but $CREDENTIALS_DIRECTORY is not set: start Citadel from its systemd unit (LoadCredentialEncrypted=${name}:...)`);
  }
  const path = join(credentialsDirectory, name);
  try {
    return parseWiping(readFileSync(path), `systemd credential ${name}`);
  } catch (error) {
    if (error instanceof RootKeyError) throw error;
    throw new RootKeyError(`systemd credential ${name}: cannot read ${path}: ${describeFsError(error)}`);
  }
}

/** parseRootKey, then the bytes read are wiped (the key's text stays only in a string until it is collected). */
export function parseWiping(data: Buffer, what: string): Buffer {
  try {
    return parseRootKey(data, what);
  } finally {
    data.fill(0);
  }
}

export function parseRootKey(data: Uint8Array, what: string): Buffer {
  // A view, not a copy: the caller may wipe `data`, and a copy would be left behind.
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (data.length === KEY_BYTES) return Buffer.from(data);
  throw new RootKeyError(`${what}: not a root key (expected 64 hex digits)`);
}

/** The text form of a key file: 64 hex digits and a newline. */
export function formatRootKey(key: Uint8Array): string {
  return `${Buffer.from(key).toString("hex")}\n`;
}

/** Writes a key file atomically, mode 0600. */
export function writeRootKeyFile(path: string, key: Uint8Array): void {
  writeFileAtomic(path, formatRootKey(key), 0o600);
}
