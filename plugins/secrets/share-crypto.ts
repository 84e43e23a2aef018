/**
 * One-time share links that the server alone cannot read. The client encrypts the value under
 * a random 32-byte link key that travels only in the URL's fragment (`#<linkKey>`, which
 * browsers and HTTP clients never send to the server); the server stores the ciphertext
 * (shares.ts). With a passphrase, the key needs both:
 *
 *   c1.sh.<b64url( mode 0 | nonce 12 | ct+tag )>
 *   c1.sh.<b64url( mode 1 | m u32 | t u32 | p u8 | salt 16 | nonce 12 | ct+tag )>
 *
 *   mode 0: key = HKDF-SHA256(ikm = linkKey, salt = "", info = "citadel share v1")
 *   mode 1: key = HKDF-SHA256(ikm = linkKey ‖ argon2id(passphrase NFC, salt, m, t, p),
 *                             salt = salt, info = "citadel share v1")
 *
 * AES-256-GCM with a fresh 96-bit nonce; the AAD is "c1.sh" ‖ the header (mode and argon2id
 * parameters), so dropping the passphrase requirement fails like any other tampering.
 *
 * A link with a passphrase also has a passphrase proof, which the server checks (its SHA-256)
 * before it spends a view or hands out the ciphertext, so that a link holder without the
 * passphrase gets nothing to guess at offline:
 *
 *   proof = b64url(HKDF-SHA256(ikm = linkKey ‖ argon2id(passphrase NFC, salt, m, t, p),
 *                              salt = salt, info = "citadel share passphrase proof v1"))
 *
 * Another info than the key's, so the proof opens nothing; and it needs the link key, so the
 * server (or whoever reads its database) cannot test passphrases against it. The argon2id salt
 * and parameters (not secret) go to the server with it, for the viewer to stretch the passphrase.
 */
import { createHmac, hkdfSync, randomBytes } from "node:crypto";
import { aesGcmDecrypt, aesGcmEncrypt, DecryptionError } from "../../src/crypto/aead.ts";
import { passphraseKey } from "../../src/auth/password.ts";
import { decodeBase64url } from "../../src/encoding.ts";

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SALT_BYTES = 16;
const PREFIX = "c1.sh.";
const LINK_KEY_CHARS = 43; // 32 bytes, base64url without padding
const SHARES_PATH = "/v1/secrets/shares/";

const MODE_LINK = 0;
const MODE_LINK_AND_PASSPHRASE = 1;
const PASSPHRASE_HEADER_BYTES = 1 + 4 + 4 + 1 + SALT_BYTES;

/** argon2id for a share's passphrase: OWASP's minimum (m = 19 MiB, t = 2, p = 1). */
const PARAMETERS = { memoryKiB: 19_456, iterations: 2, parallelism: 1 } as const;
/** What a ciphertext may ask of the machine opening it (a damaged or hostile one asks no more). */
const LIMITS = { memoryKiB: [19_456, 1_048_576], iterations: [2, 10], parallelism: [1, 8] } as const;

const WRONG = "the link or passphrase is wrong";
const NEEDS_PASSPHRASE = "this link needs a passphrase";

/** The argon2id salt and parameters of a link's passphrase, as the API carries them. */
export interface ShareKdf {
  salt: string;
  memory_kib: number;
  iterations: number;
  parallelism: number;
}

/**
 * Encrypts `value` for a share link. `linkKey` goes in the URL's fragment (shareUrl), never to
 * the server; `ciphertext` goes to the server. An empty passphrase is refused rather than
 * silently dropped.
 */
export async function createShareSecret(
  value: string,
  passphrase?: string,
): Promise<{ linkKey: string; ciphertext: string; passphraseRequired: boolean; passphraseProof?: string; passphraseKdf?: ShareKdf }> {
  if (typeof value !== "string") throw new TypeError("a shared value is a string");
  if (passphrase !== undefined && (typeof passphrase !== "string" || passphrase.length === 0)) throw new TypeError("a passphrase may not be empty (leave it out for a link without one)");
  const linkKey = randomBytes(KEY_BYTES);
  let header: Buffer;
  let key: Buffer;
  let passphraseCheck: { passphraseProof: string; passphraseKdf: ShareKdf } | undefined;
  if (passphrase === undefined) {
    header = Buffer.from([MODE_LINK]);
    key = deriveKey(linkKey, null, Buffer.alloc(0));
  } else {
    const { memoryKiB, iterations, parallelism } = PARAMETERS;
    header = Buffer.alloc(PASSPHRASE_HEADER_BYTES);
    header[0] = MODE_LINK_AND_PASSPHRASE;
    header.writeUInt32BE(memoryKiB, 1);
    header.writeUInt32BE(iterations, 5);
    header[9] = parallelism;
    const salt = randomBytes(SALT_BYTES);
    salt.copy(header, 10);
    const stretched = await passphraseKey(passphrase, salt, { memoryKiB, iterations, parallelism });
    // From the same stretched passphrase as the key: argon2id runs once (deriveKey wipes it).
    passphraseCheck = {
      passphraseProof: deriveProof(linkKey, stretched, salt),
      passphraseKdf: { salt: salt.toString("base64url"), memory_kib: memoryKiB, iterations, parallelism },
    };
    key = deriveKey(linkKey, stretched, salt);
  }
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const sealed = aesGcmEncrypt(key, nonce, Buffer.from(value, "utf8"), aad(header));
    return { linkKey: linkKey.toString("base64url"), ciphertext: PREFIX + Buffer.concat([header, nonce, sealed]).toString("base64url"), passphraseRequired: passphrase !== undefined, ...passphraseCheck };
  } finally {
    key.fill(0);
    linkKey.fill(0);
  }
}

/**
 * Opens what createShareSecret made. Throws "the link or passphrase is wrong" when the key or
 * passphrase does not open it, and "this link needs a passphrase" when one is needed and
 * none (or an empty one) was given. A passphrase given for a link that needs none is ignored.
 */
export async function openShareSecret(ciphertext: string, linkKey: string, passphrase?: string): Promise<string> {
  const data = typeof ciphertext === "string" && ciphertext.startsWith(PREFIX) ? decodeBase64url(ciphertext.slice(PREFIX.length)) : null;
  if (!data || data.length < 1) throw new DecryptionError("not a share made by citadel (c1.sh.…)");
  const mode = data[0];
  const headerBytes = mode === MODE_LINK ? 1 : mode === MODE_LINK_AND_PASSPHRASE ? PASSPHRASE_HEADER_BYTES : -1;
  if (headerBytes < 0) throw new DecryptionError("not a share made by this version of citadel");
  if (data.length < headerBytes + NONCE_BYTES + TAG_BYTES) throw new DecryptionError("this share's ciphertext is too short: it was damaged");
  const header = data.subarray(0, headerBytes);

  const rawLinkKey = typeof linkKey === "string" && linkKey.length === LINK_KEY_CHARS ? decodeBase64url(linkKey) : null;
  let key: Buffer;
  if (mode === MODE_LINK) {
    if (!rawLinkKey) throw new DecryptionError(WRONG);
    key = deriveKey(rawLinkKey, null, Buffer.alloc(0));
  } else {
    if (typeof passphrase !== "string" || passphrase.length === 0) throw new DecryptionError(NEEDS_PASSPHRASE);
    if (!rawLinkKey) throw new DecryptionError(WRONG);
    const memoryKiB = data.readUInt32BE(1);
    const iterations = data.readUInt32BE(5);
    const parallelism = data[9]!;
    if (!within(memoryKiB, LIMITS.memoryKiB) || !within(iterations, LIMITS.iterations) || !within(parallelism, LIMITS.parallelism)) {
      throw new DecryptionError(`this share asks for argon2id parameters out of bounds (m=${memoryKiB}, t=${iterations}, p=${parallelism})`);
    }
    const salt = data.subarray(10, PASSPHRASE_HEADER_BYTES);
    const stretched = await passphraseKey(passphrase, salt, { memoryKiB, iterations, parallelism });
    key = deriveKey(rawLinkKey, stretched, salt);
  }
  try {
    return aesGcmDecrypt(key, data.subarray(headerBytes, headerBytes + NONCE_BYTES), data.subarray(headerBytes + NONCE_BYTES), aad(header)).toString("utf8");
  } catch (e) {
    if (e instanceof DecryptionError) throw new DecryptionError(WRONG);
    throw e;
  } finally {
    key.fill(0);
  }
}

/**
 * What a viewer presents to open the link: derived from the link key, so holding the link is
 * needed to spend a view, and one-way, so the server (which keeps its SHA-256) learns nothing
 * that opens the ciphertext.
 */
export function shareViewProof(linkKey: string): string {
  return createHmac("sha256", Buffer.from(linkKey, "base64url")).update("citadel share view proof v1").digest("base64url");
}

/**
 * What a viewer presents besides the view proof for a link with a passphrase, made with the
 * salt and parameters the server's peek gave. They are checked against LIMITS first: a hostile
 * server must not make the viewer's machine spend gigabytes on argon2id.
 */
export async function sharePassphraseProof(linkKey: string, passphrase: string, kdf: ShareKdf): Promise<string> {
  const problem = shareKdfProblem(kdf);
  if (problem) throw new Error(`the server asks for argon2id parameters out of bounds (${problem.field}: ${problem.message})`);
  if (typeof passphrase !== "string" || passphrase.length === 0) throw new DecryptionError(NEEDS_PASSPHRASE);
  const rawLinkKey = typeof linkKey === "string" && linkKey.length === LINK_KEY_CHARS ? decodeBase64url(linkKey) : null;
  if (!rawLinkKey) throw new DecryptionError(WRONG);
  const salt = decodeBase64url(kdf.salt)!;
  const stretched = await passphraseKey(passphrase, salt, { memoryKiB: kdf.memory_kib, iterations: kdf.iterations, parallelism: kdf.parallelism });
  try {
    return deriveProof(rawLinkKey, stretched, salt);
  } finally {
    stretched.fill(0);
  }
}

/**
 * What is wrong with a link's argon2id salt and parameters, or null when nothing is: the server
 * refuses them at creation, and the viewer before it stretches anything (the same LIMITS that
 * guard the ciphertext's header).
 */
export function shareKdfProblem(kdf: ShareKdf): { field: keyof ShareKdf; message: string } | null {
  const salt = typeof kdf?.salt === "string" ? decodeBase64url(kdf.salt) : null;
  if (!salt || salt.length !== SALT_BYTES) return { field: "salt", message: `${SALT_BYTES} bytes, base64url` };
  const bounds: Array<[keyof ShareKdf, number, readonly [number, number]]> = [
    ["memory_kib", kdf.memory_kib, LIMITS.memoryKiB],
    ["iterations", kdf.iterations, LIMITS.iterations],
    ["parallelism", kdf.parallelism, LIMITS.parallelism],
  ];
  for (const [field, n, [min, max]] of bounds) {
    if (!Number.isInteger(n) || !within(n, [min, max])) return { field, message: `a whole number from ${min} to ${max}` };
  }
  return null;
}

/** `${baseUrl}/v1/secrets/shares/${id}#${linkKey}` (a trailing slash of baseUrl is dropped). */
export function shareUrl(baseUrl: string, id: string, linkKey: string): string {
  return `${baseUrl.replace(/\/+$/, "")}${SHARES_PATH}${encodeURIComponent(id)}#${linkKey}`;
}

/** Inverse of shareUrl. Throws on a URL that is not a share link or has no (valid) key after `#`. */
export function parseShareUrl(url: string): { baseUrl: string; id: string; linkKey: string } {
  const { baseUrl, id, parsed } = shareOfUrl(url);
  const linkKey = parsed.hash.slice(1);
  if (!linkKey) throw new Error("this share link has no key after '#': it was cut short (copy the whole link)");
  const raw = linkKey.length === LINK_KEY_CHARS ? decodeBase64url(linkKey) : null;
  if (!raw) throw new Error("this share link's key (after '#') is damaged: copy the whole link");
  return { baseUrl, id, linkKey };
}

/**
 * A share link's server and id, from its path alone: what ending it needs. A link seen where
 * its key was cut off (a proxy's log, a chat preview) is still one to revoke.
 */
export function shareOfUrl(url: string): { baseUrl: string; id: string; parsed: URL } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("not a share link: not a URL");
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error("not a share link: not an http(s) URL");
  const at = parsed.pathname.lastIndexOf(SHARES_PATH);
  const rawId = at < 0 ? "" : parsed.pathname.slice(at + SHARES_PATH.length);
  if (!rawId || rawId.includes("/")) throw new Error(`not a share link: its path does not end in ${SHARES_PATH}<id>`);
  let id: string;
  try {
    id = decodeURIComponent(rawId);
  } catch {
    throw new Error("not a share link: its id is not valid");
  }
  return { baseUrl: parsed.origin + parsed.pathname.slice(0, at), id, parsed };
}

// ---------------------------------------------------------------------------------------------

function deriveKey(linkKey: Uint8Array, stretched: Buffer | null, salt: Uint8Array): Buffer {
  const ikm = stretched ? Buffer.concat([linkKey, stretched]) : Buffer.from(linkKey);
  try {
    return Buffer.from(hkdfSync("sha256", ikm, salt, "citadel share v1", KEY_BYTES));
  } finally {
    ikm.fill(0);
    stretched?.fill(0);
  }
}

/** The passphrase proof (see the top of this file). Leaves `stretched` as it is: the caller wipes it. */
function deriveProof(linkKey: Uint8Array, stretched: Buffer, salt: Uint8Array): string {
  const ikm = Buffer.concat([linkKey, stretched]);
  try {
    return Buffer.from(hkdfSync("sha256", ikm, salt, "citadel share passphrase proof v1", KEY_BYTES)).toString("base64url");
  } finally {
    ikm.fill(0);
  }
}

function aad(header: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from("c1.sh", "ascii"), header]);
}

function within(n: number, [min, max]: readonly [number, number]): boolean {
  return n >= min && n <= max;
}
