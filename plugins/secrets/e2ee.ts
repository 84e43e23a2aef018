/**
 * The cryptography of end-to-end-encrypted workspaces, run on the members' machines. The
 * server stores and serves only what these functions output (e2ee-keys.ts, service.ts) and
 * holds no key that opens any of it.
 *
 *   user key pair      X25519. The public key is base64url of the raw 32 bytes; the private
 *                      key is sealed by the user's passphrase:
 *                        c1.pk.<b64url( kdf=1 | m u32 | t u32 | p u8 | salt 16 | nonce 12 | ct+tag 48 )>
 *                      argon2id(passphrase NFC, salt, m, t, p) → 32-byte AES-256-GCM key; the
 *                      header (and the "c1.pk" label) is the AAD, so the recorded parameters
 *                      cannot be changed without failing.
 *   workspace key      32 random bytes, wrapped for each member (ECIES):
 *                        c1.wk.<b64url( ephemeral public 32 | nonce 12 | ct+tag )>
 *                      the plaintext is the key (32 bytes: ct+tag 48), or for a key made by
 *                      a client that binds values (e2ee enable, e2ee rotate) the key and one
 *                      byte of marks, bit 0 "values bound" (ct+tag 49). The mark is under the
 *                      tag: a server, which never holds the key, cannot strip it from a copy
 *                      of it (it could only wrap a key of its own, which the pins catch where
 *                      the version was seen: e2ee-pins.ts).
 *                      key = HKDF-SHA256(X25519(ephemeral, recipient),
 *                                        salt = ephemeral pub ‖ recipient pub,
 *                                        info = "citadel e2ee wrap v1|<workspace>|<user>");
 *                      AAD = "c1.wk" ‖ len-prefixed workspace ‖ len-prefixed user.
 *   secret value       c2.v.<b64url( version u32 | key version u32 | nonce 12 | ct+tag )>,
 *                      under HKDF(workspace key, info "citadel e2ee value key v1"); AAD =
 *                      "c2.v" ‖ len-prefixed workspace, environment and name ‖ version ‖ key
 *                      version, so a ciphertext copied to another secret, environment or
 *                      workspace fails, and so does one served as another version of its
 *                      secret than the one it was written as, or as encrypted with another
 *                      version of the workspace key (the header in the clear is what the server
 *                      checks a write against, and what a refusal names; the AAD binds it).
 *                      Values written before: c1.v.<b64url( nonce 12 | ct+tag )>, AAD
 *                      "c1.v" ‖ workspace, environment, name — still read, bound to no version
 *                      (and refused where a key marked "values bound" says none can be
 *                      genuine: commands.ts, unboundRefusal).
 *
 * Every failure to open (wrong key, wrong passphrase, other context, flipped bit) is a
 * DecryptionError with a message meant for the person at the keyboard.
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { aesGcmDecrypt, aesGcmEncrypt, DecryptionError } from "../../src/crypto/aead.ts";
import { passphraseKey } from "../../src/auth/password.ts";
import { decodeBase64url } from "../../src/encoding.ts";

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SALT_BYTES = 16;

/** argon2id parameters of a sealed private key: OWASP's minimum (m = 19 MiB, t = 2, p = 1). */
const SEAL_PARAMETERS = { memoryKiB: 19_456, iterations: 2, parallelism: 1 } as const;
/** What a sealed key may ask of the machine opening it (a damaged or hostile one asks no more). */
const PARAMETER_LIMITS = { memoryKiB: [19_456, 1_048_576], iterations: [2, 10], parallelism: [1, 8] } as const;
const KDF_ARGON2ID = 1;
const SEALED_HEADER_BYTES = 1 + 4 + 4 + 1 + SALT_BYTES;
const SEALED_BYTES = SEALED_HEADER_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES;
const WRAPPED_BYTES = KEY_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES;
/** A copy that carries its byte of marks. */
const MARKED_WRAPPED_BYTES = WRAPPED_BYTES + 1;
const MARK_VALUES_BOUND = 0x01;

const PK_PREFIX = "c1.pk.";
const WK_PREFIX = "c1.wk.";
const VALUE_PREFIX = "c2.v.";
/** Values from before they named their version: still read, never written. */
const UNBOUND_VALUE_PREFIX = "c1.v.";
/** A value's header: the version of the secret it is stored as, and the workspace key version it is encrypted with. */
const VALUE_HEADER_BYTES = 8;

// DER wrappers of a raw X25519 key (RFC 8410): node:crypto imports keys as PKCS#8 / SPKI.
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");


export interface WrapContext {
  workspace: string;
  user: string;
}

export interface ValueContext {
  workspace: string;
  environment: string;
  name: string;
  /** The version of the secret the value is (written: will be) stored as. */
  version: number;
  /** The version of the workspace key it is (to be) encrypted with: the key the caller holds as that version. */
  keyVersion: number;
}

/** What a member's copy of a workspace key says of it besides the key (under the copy's tag). */
export interface KeyMarks {
  /**
   * Made by a client that binds every value it writes to its version (e2ee enable, e2ee
   * rotate): no value under this key is of the format before, nor is any current value once
   * it is the workspace's current key.
   */
  valuesBound: boolean;
}

/** The public half (base64url of its raw 32 bytes) of a raw X25519 private key. */
export function publicKeyOf(privateKey: Uint8Array): string {
  const jwk = createPublicKey(privateKeyObject(privateKey)).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("X25519 public key export returned no key");
  return jwk.x;
}

/**
 * What people compare to know they hold the same public key, read aloud or side by side:
 * `SHA256:` and the unpadded base64 of the key's SHA-256 (the form of `ssh-keygen -l`).
 */
export function publicKeyFingerprint(publicKey: string): string {
  return `SHA256:${createHash("sha256").update(decodePublicKey(publicKey)).digest("base64").replace(/=+$/, "")}`;
}

/** A new X25519 key pair: the public key as base64url of its raw 32 bytes, the private key raw. */
export function generateUserKeyPair(): { publicKey: string; privateKey: Uint8Array } {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  if (typeof jwk.d !== "string" || typeof jwk.x !== "string") throw new Error("X25519 key generation returned no key");
  return { publicKey: jwk.x, privateKey: new Uint8Array(Buffer.from(jwk.d, "base64url")) };
}

/** Seals a private key with a passphrase (argon2id → AES-256-GCM): `c1.pk.…`. */
export async function sealPrivateKey(privateKey: Uint8Array, passphrase: string): Promise<string> {
  checkBytes(privateKey, KEY_BYTES, "a private key");
  checkPassphrase(passphrase);
  const { memoryKiB, iterations, parallelism } = SEAL_PARAMETERS;
  const out = Buffer.alloc(SEALED_HEADER_BYTES);
  out[0] = KDF_ARGON2ID;
  out.writeUInt32BE(memoryKiB, 1);
  out.writeUInt32BE(iterations, 5);
  out[9] = parallelism;
  const salt = randomBytes(SALT_BYTES);
  salt.copy(out, 10);
  const key = await passphraseKey(passphrase, salt, { memoryKiB, iterations, parallelism });
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const sealed = aesGcmEncrypt(key, nonce, privateKey, Buffer.concat([label(PK_PREFIX), out]));
    return PK_PREFIX + Buffer.concat([out, nonce, sealed]).toString("base64url");
  } finally {
    key.fill(0);
  }
}

/** Opens what sealPrivateKey made; a wrong passphrase (or damaged key) throws DecryptionError. */
export async function openPrivateKey(sealed: string, passphrase: string): Promise<Uint8Array> {
  checkPassphrase(passphrase);
  const data = decodeVersioned(sealed, PK_PREFIX, "a private key sealed by citadel (c1.pk.…)");
  if (data.length !== SEALED_BYTES || data[0] !== KDF_ARGON2ID) throw new DecryptionError("not a private key sealed by this version of citadel");
  const memoryKiB = data.readUInt32BE(1);
  const iterations = data.readUInt32BE(5);
  const parallelism = data[9]!;
  if (!within(memoryKiB, PARAMETER_LIMITS.memoryKiB) || !within(iterations, PARAMETER_LIMITS.iterations) || !within(parallelism, PARAMETER_LIMITS.parallelism)) {
    throw new DecryptionError(`the sealed key asks for argon2id parameters out of bounds (m=${memoryKiB}, t=${iterations}, p=${parallelism})`);
  }
  const header = data.subarray(0, SEALED_HEADER_BYTES);
  const key = await passphraseKey(passphrase, data.subarray(10, SEALED_HEADER_BYTES), { memoryKiB, iterations, parallelism });
  try {
    const nonce = data.subarray(SEALED_HEADER_BYTES, SEALED_HEADER_BYTES + NONCE_BYTES);
    const plain = aesGcmDecrypt(key, nonce, data.subarray(SEALED_HEADER_BYTES + NONCE_BYTES), Buffer.concat([label(PK_PREFIX), header]));
    const privateKey = new Uint8Array(plain);
    plain.fill(0);
    return privateKey;
  } catch (e) {
    if (e instanceof DecryptionError) throw new DecryptionError("wrong passphrase, or the key was damaged");
    throw e;
  } finally {
    key.fill(0);
  }
}

/** A new workspace key: 32 random bytes. */
export function newWorkspaceKey(): Uint8Array {
  return new Uint8Array(randomBytes(KEY_BYTES));
}

/**
 * Wraps a workspace key for one member (ECIES to their X25519 public key): `c1.wk.…`, with
 * its marks inside (a key without any, from before, is wrapped as it always was).
 */
export function wrapWorkspaceKey(workspaceKey: Uint8Array, recipientPublicKey: string, context: WrapContext, marks: KeyMarks = { valuesBound: false }): string {
  checkBytes(workspaceKey, KEY_BYTES, "a workspace key");
  checkContext(context, ["workspace", "user"]);
  const recipient = decodePublicKey(recipientPublicKey);
  const { privateKey: ephemeral } = generateKeyPairSync("x25519");
  const ephemeralPublic = rawPublicKey(ephemeral);
  let key: Buffer;
  try {
    key = wrapKey(ephemeral, recipient, ephemeralPublic, recipient, context);
  } catch {
    throw new TypeError("that X25519 public key is not usable (a low-order point)");
  }
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const plaintext = marks.valuesBound ? Buffer.concat([workspaceKey, Buffer.from([MARK_VALUES_BOUND])]) : workspaceKey;
    const sealed = aesGcmEncrypt(key, nonce, plaintext, wrapAad(context));
    return WK_PREFIX + Buffer.concat([ephemeralPublic, nonce, sealed]).toString("base64url");
  } finally {
    key.fill(0);
  }
}

/** Inverse of wrapWorkspaceKey, the key alone; another recipient, workspace or user (or a flipped bit) throws DecryptionError. */
export function unwrapWorkspaceKey(wrapped: string, privateKey: Uint8Array, context: WrapContext): Uint8Array {
  return unwrapMarkedWorkspaceKey(wrapped, privateKey, context).key;
}

/** As unwrapWorkspaceKey, with the marks the copy carries (a key from before carries none). */
export function unwrapMarkedWorkspaceKey(wrapped: string, privateKey: Uint8Array, context: WrapContext): { key: Uint8Array } & KeyMarks {
  checkBytes(privateKey, KEY_BYTES, "a private key");
  checkContext(context, ["workspace", "user"]);
  const data = decodeVersioned(wrapped, WK_PREFIX, "a workspace key wrapped by citadel (c1.wk.…)");
  if (data.length !== WRAPPED_BYTES && data.length !== MARKED_WRAPPED_BYTES) throw new DecryptionError("not a workspace key wrapped by this version of citadel");
  const own = privateKeyObject(privateKey);
  const ephemeralPublic = data.subarray(0, KEY_BYTES);
  let key: Buffer;
  try {
    key = wrapKey(own, ephemeralPublic, ephemeralPublic, rawPublicKey(own), context);
  } catch {
    throw new DecryptionError("this wrapped workspace key is damaged");
  }
  let plain: Buffer;
  try {
    plain = aesGcmDecrypt(key, data.subarray(KEY_BYTES, KEY_BYTES + NONCE_BYTES), data.subarray(KEY_BYTES + NONCE_BYTES), wrapAad(context));
  } catch (e) {
    if (e instanceof DecryptionError) throw new DecryptionError("this workspace key was not wrapped for your key pair, or for this workspace and user, or it was damaged");
    throw e;
  } finally {
    key.fill(0);
  }
  return readMarks(plain);
}

/**
 * The key and marks of an opened copy. Outside the decryption's try on purpose: a mark this
 * version does not know opened fine, and its message (upgrade) must not become "not wrapped for you".
 */
function readMarks(plain: Buffer): { key: Uint8Array } & KeyMarks {
  const workspaceKey = new Uint8Array(plain.subarray(0, KEY_BYTES));
  // The form the server sees is the mark it goes by: a marked copy marks nothing else.
  const marked = plain.length > KEY_BYTES;
  const known = !marked || plain[KEY_BYTES] === MARK_VALUES_BOUND;
  plain.fill(0);
  if (!known) {
    workspaceKey.fill(0);
    throw new DecryptionError("this workspace key carries marks this version of citadel does not know: upgrade citadel");
  }
  return { key: workspaceKey, valuesBound: marked };
}

/**
 * Whether a wrapped copy has the form of one that carries marks: what the server can know of a
 * key version binding values (it cannot open the copy to read the mark; only a binding client
 * makes that form, and a copy that lies about it opens for nobody).
 */
export function isMarkedWrappedKey(wrapped: string): boolean {
  if (typeof wrapped !== "string" || !wrapped.startsWith(WK_PREFIX)) return false;
  return decodeBase64url(wrapped.slice(WK_PREFIX.length))?.length === MARKED_WRAPPED_BYTES;
}

/**
 * Encrypts one secret value for a workspace, bound to its workspace, environment, name, the
 * version it will be stored as and the workspace key version it is encrypted with: `c2.v.…`.
 */
export function encryptValue(workspaceKey: Uint8Array, plaintext: string, context: ValueContext): string {
  checkBytes(workspaceKey, KEY_BYTES, "a workspace key");
  checkValueContext(context);
  if (typeof plaintext !== "string") throw new TypeError("a secret value is a string");
  const key = valueKey(workspaceKey);
  try {
    const header = valueHeader(context);
    const nonce = randomBytes(NONCE_BYTES);
    const sealed = aesGcmEncrypt(key, nonce, Buffer.from(plaintext, "utf8"), valueAad(VALUE_PREFIX, context, header));
    return VALUE_PREFIX + Buffer.concat([header, nonce, sealed]).toString("base64url");
  } finally {
    key.fill(0);
  }
}

/**
 * Inverse of encryptValue, for the version the value was asked for as (or the server says it
 * is) and the key version the caller opens it with: a value written as another version — an
 * older value passed off as a newer one — or under another key version, another key or
 * context, or a flipped bit throws DecryptionError. A value from before values named their
 * version (`c1.v.…`) opens with its workspace, environment and name alone (isVersionBound
 * tells them apart).
 */
export function decryptValue(workspaceKey: Uint8Array, ciphertext: string, context: ValueContext): string {
  checkBytes(workspaceKey, KEY_BYTES, "a workspace key");
  checkValueContext(context);
  const unbound = typeof ciphertext === "string" && ciphertext.startsWith(UNBOUND_VALUE_PREFIX);
  const prefix = unbound ? UNBOUND_VALUE_PREFIX : VALUE_PREFIX;
  // Both formats named: a value this one does not know (plaintext, or a newer format) is neither.
  const data = decodeVersioned(ciphertext, prefix, "a value encrypted by citadel (c2.v.…, or c1.v.… from before values named their version)");
  const headerBytes = unbound ? 0 : VALUE_HEADER_BYTES;
  if (data.length < headerBytes + NONCE_BYTES + TAG_BYTES) throw new DecryptionError("this encrypted value is too short: it was damaged");
  const header = data.subarray(0, headerBytes);
  if (!unbound) checkHeader(header, context);
  const key = valueKey(workspaceKey);
  try {
    const nonce = data.subarray(headerBytes, headerBytes + NONCE_BYTES);
    return aesGcmDecrypt(key, nonce, data.subarray(headerBytes + NONCE_BYTES), valueAad(prefix, context, header)).toString("utf8");
  } catch (e) {
    if (e instanceof DecryptionError) throw new DecryptionError(`this value does not open with this workspace key as ${context.environment}/${context.name}${unbound ? "" : ` version ${context.version}`}: another workspace key, a value copied from elsewhere, or damaged`);
    throw e;
  } finally {
    key.fill(0);
  }
}

/** Refuses a value whose header names another version, or another key version, than it is opened as. */
function checkHeader(header: Buffer, context: ValueContext): void {
  const where = `${context.environment}/${context.name}`;
  const version = header.readUInt32BE(0);
  if (version !== context.version) {
    throw new DecryptionError(`the server served ${where} as version ${context.version}, but its value was written as version ${version}: refused (an older value passed off as a newer one, or a damaged one)`);
  }
  const keyVersion = header.readUInt32BE(4);
  if (keyVersion !== context.keyVersion) {
    throw new DecryptionError(`the server says ${where} version ${context.version} is encrypted with version ${context.keyVersion} of the workspace key, but its value names version ${keyVersion}: refused (a value relabelled, or a damaged one)`);
  }
}

/** Whether a value names the version it was written as (`c2.v.…`), not one from before (`c1.v.…`). */
export function isVersionBound(ciphertext: string): boolean {
  return ciphertext.startsWith(VALUE_PREFIX);
}

/**
 * The length of encryptValue's answer for a plaintext of `bytes` bytes (prefix, base64url of
 * header, nonce, ciphertext and tag): what a value limit in plaintext bytes allows of
 * ciphertext. A value from before (no header) is 8 bytes shorter: it may hold up to 8 more.
 */
export function e2eeCiphertextLength(bytes: number): number {
  return VALUE_PREFIX.length + Math.ceil(((VALUE_HEADER_BYTES + NONCE_BYTES + bytes + TAG_BYTES) * 4) / 3);
}

/**
 * Whether `s` has the form of a value encrypted by encryptValue, or by the format before it
 * (the server's check that an end-to-end-encrypted workspace receives no plaintext). It cannot
 * tell whether it opens.
 */
export function isE2eeCiphertext(s: string): boolean {
  return e2eeValueForm(s) !== null;
}

/**
 * The version an end-to-end-encrypted value says it was written as (the server checks a write
 * against it), or null for a value of the format before, which names none.
 */
export function e2eeValueVersion(s: string): number | null {
  return e2eeValueHeader(s)?.version ?? null;
}

/**
 * What an end-to-end-encrypted value's header names — the version it is stored as and the
 * workspace key version it is encrypted with — or null for a value of the format before.
 */
export function e2eeValueHeader(s: string): { version: number; keyVersion: number } | null {
  const form = e2eeValueForm(s);
  return form?.version == null ? null : { version: form.version, keyVersion: form.keyVersion! };
}

/** A value's form; a header naming version 0 or key version 0, which no client makes, is none. */
function e2eeValueForm(s: string): { version: number | null; keyVersion: number | null } | null {
  if (typeof s !== "string") return null;
  const unbound = s.startsWith(UNBOUND_VALUE_PREFIX);
  if (!unbound && !s.startsWith(VALUE_PREFIX)) return null;
  const data = decodeBase64url(s.slice(VALUE_PREFIX.length)); // both prefixes have 5 characters
  const headerBytes = unbound ? 0 : VALUE_HEADER_BYTES;
  if (data === null || data.length < headerBytes + NONCE_BYTES + TAG_BYTES) return null;
  if (unbound) return { version: null, keyVersion: null };
  const [version, keyVersion] = [data.readUInt32BE(0), data.readUInt32BE(4)];
  return version === 0 || keyVersion === 0 ? null : { version, keyVersion };
}

// ---------------------------------------------------------------------------------------------

/** The AES key of a wrapped workspace key: HKDF-SHA256 over X25519(own, peer). */
function wrapKey(own: KeyObject, peer: Uint8Array, ephemeralPublic: Uint8Array, recipientPublic: Uint8Array, context: WrapContext): Buffer {
  // BoringSSL refuses a low-order peer point (an all-zero result); check anyway.
  const shared = diffieHellman({ privateKey: own, publicKey: publicKeyObject(peer) });
  try {
    if (shared.every((b) => b === 0)) throw new Error("X25519 produced the all-zero secret");
    const salt = Buffer.concat([ephemeralPublic, recipientPublic]);
    const info = `citadel e2ee wrap v1|${context.workspace}|${context.user}`;
    return Buffer.from(hkdfSync("sha256", shared, salt, info, KEY_BYTES));
  } finally {
    shared.fill(0);
  }
}

function valueKey(workspaceKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", workspaceKey, Buffer.alloc(0), "citadel e2ee value key v1", KEY_BYTES));
}

function wrapAad(context: WrapContext): Buffer {
  return Buffer.concat([label(WK_PREFIX), lengthPrefixed(context.workspace), lengthPrefixed(context.user)]);
}

/** The AAD of a value: of the format before, without the version header (`header` empty). */
function valueAad(prefix: string, context: ValueContext, header: Buffer): Buffer {
  return Buffer.concat([label(prefix), lengthPrefixed(context.workspace), lengthPrefixed(context.environment), lengthPrefixed(context.name), header]);
}

function valueHeader(context: ValueContext): Buffer {
  const header = Buffer.alloc(VALUE_HEADER_BYTES);
  header.writeUInt32BE(context.version, 0);
  header.writeUInt32BE(context.keyVersion, 4);
  return header;
}

function privateKeyObject(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: "der", type: "pkcs8" });
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: "der", type: "spki" });
}

function rawPublicKey(key: KeyObject): Buffer {
  const der = createPublicKey(key).export({ format: "der", type: "spki" });
  return Buffer.from(der.subarray(der.length - KEY_BYTES));
}

function decodePublicKey(publicKey: string): Buffer {
  const raw = typeof publicKey === "string" && publicKey.length === 43 ? decodeBase64url(publicKey) : null;
  if (!raw || raw.length !== KEY_BYTES) throw new TypeError("an X25519 public key is base64url of 32 bytes (43 characters)");
  if (raw.every((b) => b === 0)) throw new TypeError("that X25519 public key is not usable (all zeros)");
  return raw;
}

function decodeVersioned(s: string, prefix: string, what: string): Buffer {
  if (typeof s !== "string" || !s.startsWith(prefix)) throw new DecryptionError(`not ${what}`);
  const data = decodeBase64url(s.slice(prefix.length));
  if (!data) throw new DecryptionError(`not ${what}: it is not base64url`);
  return data;
}

function lengthPrefixed(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

function label(prefix: string): Buffer {
  return Buffer.from(prefix.slice(0, -1), "ascii"); // "c1.pk", "c1.wk", "c2.v" (and "c1.v" before it)
}

function checkBytes(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new TypeError(`${what} has ${length} bytes`);
}

function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== "string" || passphrase.length === 0) throw new TypeError("a passphrase may not be empty");
}

function checkContext(context: object, fields: readonly string[]): void {
  for (const field of fields) {
    const value = (context as Record<string, unknown>)[field];
    if (typeof value !== "string" || value.length === 0) throw new TypeError(`the context needs a non-empty ${field}`);
  }
}

function checkValueContext(context: ValueContext): void {
  checkContext(context, ["workspace", "environment", "name"]);
  if (!isUint32From1(context.version)) throw new TypeError("the context needs the value's version, a whole number from 1");
  if (!isUint32From1(context.keyVersion)) throw new TypeError("the context needs the workspace key's version, a whole number from 1");
}

function isUint32From1(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1 && n <= 0xffff_ffff;
}

function within(n: number, [min, max]: readonly [number, number]): boolean {
  return n >= min && n <= max;
}
