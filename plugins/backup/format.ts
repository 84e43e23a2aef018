/**
 * The backup file format, version 1. Everything is big-endian:
 *
 *   offset  bytes
 *        0      8  magic 89 43 42 4B 0D 0A 1A 0A ("\x89CBK\r\n\x1a\n": a transfer that mangles
 *                  line ends or the high bit shows as "not a backup", not as tampering)
 *        8      2  format version (1)
 *       10      1  key kind: 1 = root key (HKDF-SHA256), 2 = passphrase (argon2id)
 *       11      1  reserved, 0
 *       12      8  root key id (8 hex digits, ASCII; zero for a passphrase)
 *       20     12  argon2id memory (KiB), iterations, parallelism: u32 each (zero for a root key)
 *       32     32  salt of the key derivation
 *       64      8  nonce prefix (random)
 *       72      4  chunk size C: plaintext bytes per chunk
 *       76      4  manifest length M
 *       80     16  key check (see keys.ts): a wrong key is told apart from tampering
 *       96      M  manifest, UTF-8 JSON, in clear (see manifest.ts)
 *     96+M     16  header tag: AES-256-GCM over nothing, AAD = bytes 0 .. 96+M,
 *                  nonce = prefix ‖ FFFFFFFF
 *   112+M     ...  chunks: chunk i is AES-256-GCM(plaintext bytes [iC, iC+C)) ‖ tag,
 *                  nonce = prefix ‖ u32(i), AAD = "citadel backup v1 chunk" ‖ header tag ‖ u32(i) ‖ final (1 byte)
 *
 * Every chunk but the last holds exactly C bytes; the last holds fewer (possibly none), and
 * only it is sealed with final = 1. The index in the nonce and the AAD catches reordered or
 * repeated chunks, the final flag a file cut at a chunk boundary, and the header tag in each
 * chunk's AAD ties the chunks to this header and manifest. The key is new for every backup
 * (a fresh salt), so nonces never repeat under one key. Chunking keeps memory flat: a backup
 * is written and checked a chunk at a time.
 */
import { randomBytes } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { describeFsError } from "../../src/files.ts";
import { aesGcmDecrypt, aesGcmEncrypt, DecryptionError } from "../../src/crypto/aead.ts";
import { SealedError, UnavailableError } from "../../src/errors.ts";
import { BackupError, BackupFileUnreadable } from "./errors.ts";
import { KEY_CHECK_BYTES, openingKeys, SALT_BYTES, type BackupKeys, type KeyDerivation, type KeySupply } from "./keys.ts";
import { parseManifest, type Manifest } from "./manifest.ts";

export const MAGIC = Buffer.from([0x89, 0x43, 0x42, 0x4b, 0x0d, 0x0a, 0x1a, 0x0a]);
export const FORMAT_VERSION = 1;
export const FIXED_HEADER_BYTES = 96;
const TAG_BYTES = 16;
const KIND_ROOT_KEY = 1;
const KIND_PASSPHRASE = 2;
const NONCE_PREFIX_BYTES = 8;
const HEADER_TAG_INDEX = 0xffffffff;
const CHUNK_LABEL = Buffer.from("citadel backup v1 chunk");

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
const CHUNK_LIMITS = [1024, 64 * 1024 * 1024] as const;
const MAX_MANIFEST_BYTES = 1024 * 1024;

/** The parts of a header that were read from a file. */
export interface BackupHeader {
  version: number;
  derivation: KeyDerivation;
  noncePrefix: Buffer;
  chunkBytes: number;
  keyCheck: Buffer;
  /** Bytes 0 .. 96+M: what the header tag authenticates. */
  authenticated: Buffer;
  headerTag: Buffer;
  manifest: Manifest;
}

/** Plaintext size and SHA-256 of a file, read a chunk at a time. */
export async function hashFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  for await (const chunk of Bun.file(path).stream()) {
    hasher.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hasher.digest("hex") };
}

/** Sealing wiped the keys of the backup being written (a SealedError: the API answers 503 sealed). */
const abandoned = () => new SealedError("the backup was abandoned: Citadel was sealed while it was being written");

/**
 * Encrypts the file at `plainPath` into a backup at `outPath` (created, mode 0600; the
 * caller renames it into place). `manifest.database` must describe the plaintext: it is
 * checked again while encrypting, so a file that changed in between is refused. The caller
 * removes `outPath` when this throws.
 * Returns the backup's size and the SHA-256 of its bytes (to check a download against).
 */
export async function sealBackup(plainPath: string, outPath: string, keys: BackupKeys, manifest: Manifest, chunkBytes = DEFAULT_CHUNK_BYTES): Promise<{ bytes: number; sha256: string }> {
  if (!Number.isInteger(chunkBytes) || chunkBytes < CHUNK_LIMITS[0] || chunkBytes > CHUNK_LIMITS[1]) throw new Error(`chunk size ${chunkBytes} is out of bounds`);
  if (keys.wiped) throw abandoned();
  const manifestBytes = Buffer.from(JSON.stringify(manifest), "utf8");
  const noncePrefix = randomBytes(NONCE_PREFIX_BYTES);
  const head = Buffer.concat([encodeFixedHeader(keys.derivation, noncePrefix, chunkBytes, manifestBytes.length, keys.check), manifestBytes]);
  const headerTag = aesGcmEncrypt(keys.encryption, nonce(noncePrefix, HEADER_TAG_INDEX), Buffer.alloc(0), head);

  const fileHash = new Bun.CryptoHasher("sha256");
  const plainHash = new Bun.CryptoHasher("sha256");
  const input = await open(plainPath, "r");
  const output = await open(outPath, "wx", 0o600);
  let written = 0;
  const write = async (data: Uint8Array) => {
    fileHash.update(data);
    await writeAll(output, data);
    written += data.length;
  };
  try {
    await write(head);
    await write(headerTag);
    const buffer = Buffer.alloc(chunkBytes);
    let plainBytes = 0;
    for (let index = 0; ; index++) {
      if (index >= HEADER_TAG_INDEX) throw new BackupError("the database is too large for one backup");
      const length = await readFull(input, buffer, plainBytes);
      const plaintext = buffer.subarray(0, length);
      plainHash.update(plaintext);
      plainBytes += length;
      const final = length < chunkBytes;
      // Wiped while this awaited (Citadel was sealed): a key of zeros must never encrypt anything.
      if (keys.wiped) throw abandoned();
      await write(aesGcmEncrypt(keys.encryption, nonce(noncePrefix, index), plaintext, chunkAad(headerTag, index, final)));
      if (final) break;
    }
    if (plainBytes !== manifest.database.bytes || plainHash.digest("hex") !== manifest.database.sha256) {
      // Something outside Citadel wrote to its private snapshot: a fresh one may well do.
      throw new UnavailableError("the snapshot changed while it was being encrypted; try again");
    }
    await output.sync();
  } finally {
    await input.close();
    await output.close();
  }
  return { bytes: written, sha256: fileHash.digest("hex") };
}

/** Reads and checks a backup's header and manifest, without a key (nothing is authenticated yet). */
export async function readBackupHeader(path: string): Promise<BackupHeader> {
  const file = await openForReading(path);
  try {
    return await readHeader(file, path);
  } finally {
    await file.close();
  }
}

export interface OpenedBackup {
  header: BackupHeader;
  manifest: Manifest;
}

/**
 * Opens a backup with the key the operator supplied and checks all of it: the key, the
 * header and manifest, the length, every chunk's tag and order, the final chunk, and the
 * SHA-256 of the plaintext. With `plainOut`, the database is written there (created, mode
 * 0600); the caller removes it when this throws. Throws BackupError naming the first problem.
 */
export async function openBackup(path: string, supply: KeySupply, plainOut?: string): Promise<OpenedBackup> {
  const file = await openForReading(path);
  let output: FileHandle | undefined;
  let keys: BackupKeys | undefined;
  try {
    const header = await readHeader(file, path);
    keys = await openingKeys(header.derivation, header.keyCheck, supply);
    try {
      aesGcmDecrypt(keys.encryption, nonce(header.noncePrefix, HEADER_TAG_INDEX), header.headerTag, header.authenticated);
    } catch (error) {
      if (error instanceof DecryptionError) throw new BackupError("the backup's header or manifest was altered (it fails authentication)");
      throw error;
    }
    const { manifest, chunkBytes } = header;
    const chunks = Math.floor(manifest.database.bytes / chunkBytes) + 1;
    const bodyStart = header.authenticated.length + TAG_BYTES;
    const expected = bodyStart + manifest.database.bytes + chunks * TAG_BYTES;
    const actual = (await file.stat()).size;
    if (actual < expected) throw new BackupError(`the backup is truncated: ${expected - actual} of its ${expected} bytes are missing`);
    if (actual > expected) throw new BackupError(`the backup has ${actual - expected} unexpected bytes after its end`);

    if (plainOut !== undefined) output = await open(plainOut, "wx", 0o600);
    const plainHash = new Bun.CryptoHasher("sha256");
    const buffer = Buffer.alloc(chunkBytes + TAG_BYTES);
    let position = bodyStart;
    for (let index = 0; index < chunks; index++) {
      const final = index === chunks - 1;
      const sealedLength = final ? manifest.database.bytes - index * chunkBytes + TAG_BYTES : chunkBytes + TAG_BYTES;
      const sealed = buffer.subarray(0, sealedLength);
      if ((await readFull(file, sealed, position)) !== sealedLength) throw new BackupError("the backup is truncated");
      position += sealedLength;
      let plaintext: Buffer;
      try {
        plaintext = aesGcmDecrypt(keys.encryption, nonce(header.noncePrefix, index), sealed, chunkAad(header.headerTag, index, final));
      } catch (error) {
        if (error instanceof DecryptionError) throw new BackupError(`chunk ${index + 1} of ${chunks} fails authentication: the backup was altered, cut short, or its chunks reordered`);
        throw error;
      }
      plainHash.update(plaintext);
      if (output) await writeAll(output, plaintext);
    }
    if (plainHash.digest("hex") !== manifest.database.sha256) throw new BackupError("the decrypted database does not match the SHA-256 in the manifest");
    await output?.sync();
    return { header, manifest };
  } finally {
    keys?.wipe();
    await file.close();
    await output?.close();
  }
}

function encodeFixedHeader(derivation: KeyDerivation, noncePrefix: Buffer, chunkBytes: number, manifestLength: number, keyCheck: Buffer): Buffer {
  const out = Buffer.alloc(FIXED_HEADER_BYTES);
  MAGIC.copy(out, 0);
  out.writeUInt16BE(FORMAT_VERSION, 8);
  if (derivation.kind === "root_key") {
    out[10] = KIND_ROOT_KEY;
    out.write(derivation.rootKeyId, 12, 8, "latin1");
  } else {
    out[10] = KIND_PASSPHRASE;
    out.writeUInt32BE(derivation.argon2.memoryKiB, 20);
    out.writeUInt32BE(derivation.argon2.iterations, 24);
    out.writeUInt32BE(derivation.argon2.parallelism, 28);
  }
  derivation.salt.copy(out, 32);
  noncePrefix.copy(out, 64);
  out.writeUInt32BE(chunkBytes, 72);
  out.writeUInt32BE(manifestLength, 76);
  keyCheck.copy(out, 80);
  return out;
}

async function readHeader(file: FileHandle, path: string): Promise<BackupHeader> {
  const fixed = Buffer.alloc(FIXED_HEADER_BYTES);
  const got = await readFull(file, fixed, 0);
  if (got < MAGIC.length || !fixed.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError(`${path} is not a Citadel backup`);
  if (got < FIXED_HEADER_BYTES) throw new BackupError("the backup is truncated inside its header");
  const version = fixed.readUInt16BE(8);
  if (version !== FORMAT_VERSION) throw new BackupError(`the backup has format version ${version}; this Citadel reads version ${FORMAT_VERSION} (it was made by a newer Citadel?)`);
  if (fixed[11] !== 0) throw new BackupError("the backup's header is damaged (reserved byte set)");
  const salt = Buffer.from(fixed.subarray(32, 32 + SALT_BYTES));
  let derivation: KeyDerivation;
  if (fixed[10] === KIND_ROOT_KEY) {
    const rootKeyId = fixed.toString("latin1", 12, 20);
    if (!/^[0-9a-f]{8}$/.test(rootKeyId)) throw new BackupError("the backup's header is damaged (root key id)");
    derivation = { kind: "root_key", rootKeyId, salt };
  } else if (fixed[10] === KIND_PASSPHRASE) {
    derivation = { kind: "passphrase", salt, argon2: { memoryKiB: fixed.readUInt32BE(20), iterations: fixed.readUInt32BE(24), parallelism: fixed.readUInt32BE(28) } };
  } else {
    throw new BackupError(`the backup's header is damaged (unknown key kind ${fixed[10]})`);
  }
  const chunkBytes = fixed.readUInt32BE(72);
  if (chunkBytes < CHUNK_LIMITS[0] || chunkBytes > CHUNK_LIMITS[1]) throw new BackupError(`the backup's header is damaged (chunk size ${chunkBytes})`);
  const manifestLength = fixed.readUInt32BE(76);
  if (manifestLength > MAX_MANIFEST_BYTES) throw new BackupError(`the backup's header is damaged (manifest length ${manifestLength})`);
  const rest = Buffer.alloc(manifestLength + TAG_BYTES);
  if ((await readFull(file, rest, FIXED_HEADER_BYTES)) !== rest.length) throw new BackupError("the backup is truncated inside its manifest");
  const manifestBytes = rest.subarray(0, manifestLength);
  return {
    version,
    derivation,
    noncePrefix: Buffer.from(fixed.subarray(64, 64 + NONCE_PREFIX_BYTES)),
    chunkBytes,
    keyCheck: Buffer.from(fixed.subarray(80, 80 + KEY_CHECK_BYTES)),
    authenticated: Buffer.concat([fixed, manifestBytes]),
    headerTag: Buffer.from(rest.subarray(manifestLength)),
    manifest: parseManifest(manifestBytes),
  };
}

function nonce(prefix: Buffer, index: number): Buffer {
  const out = Buffer.alloc(12);
  prefix.copy(out, 0);
  out.writeUInt32BE(index, NONCE_PREFIX_BYTES);
  return out;
}

function chunkAad(headerTag: Buffer, index: number, final: boolean): Buffer {
  const tail = Buffer.alloc(5);
  tail.writeUInt32BE(index, 0);
  tail[4] = final ? 1 : 0;
  return Buffer.concat([CHUNK_LABEL, headerTag, tail]);
}

async function openForReading(path: string): Promise<FileHandle> {
  let file: FileHandle;
  try {
    file = await open(path, "r");
  } catch (error) {
    throw new BackupFileUnreadable(`cannot read ${path}: ${describeFsError(error)}`);
  }
  // A directory opens too, and fails only at the first read, with a bare EISDIR.
  if ((await file.stat()).isFile()) return file;
  await file.close();
  throw new BackupFileUnreadable(`${path} is not a backup file (it is a directory or another kind of file)`);
}

/** Reads until `buffer` is full or the file ends; returns how many bytes were read. */
async function readFull(file: FileHandle, buffer: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

async function writeAll(file: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await file.write(data, done, data.length - done)).bytesWritten;
}
