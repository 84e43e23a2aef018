/**
 * WireGuard keys: X25519 (RFC 7748) through WebCrypto, spelled as `wg genkey`/`wg pubkey`/
 * `wg genpsk` spell them (base64 of 32 raw bytes), so keys made here and keys made by `wg`
 * are interchangeable in either direction.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { InvalidError } from "../../src/errors.ts";

/**
 * The DER header of an X25519 PKCS#8 PrivateKeyInfo (RFC 8410) up to the 32-byte key.
 * WebCrypto imports X25519 private keys only as PKCS#8 or JWK, so a raw key is wrapped.
 */
const X25519_PKCS8_PREFIX = Uint8Array.from(Buffer.from("302e020100300506032b656e04220420", "hex"));

/** u = 9, the Curve25519 base point: x25519(k, 9) is the public key of k. */
const BASE_POINT = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 9 : 0));

/**
 * 43 base64 characters and "=": the last character before "=" carries 4 bits of the key and
 * 2 zero bits, so only the 16 characters with zero low bits are canonical (wg refuses others).
 */
const WIREGUARD_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A new key pair for a node, as `wg genkey | tee private | wg pubkey` would produce. */
export async function generateKeyPair(): Promise<{ privateKey: string; publicKey: string }> {
  const scalar = crypto.getRandomValues(new Uint8Array(32));
  // Clamped as wg genkey clamps (RFC 7748 section 5): X25519 clamps anyway, but a stored key
  // that is already clamped is byte-identical to what wg would have written.
  scalar[0]! &= 248;
  scalar[31] = (scalar[31]! & 127) | 64;
  const publicKey = await x25519(scalar, BASE_POINT);
  return { privateKey: toBase64(scalar), publicKey: toBase64(publicKey) };
}

/** The public key of a private key, as `wg pubkey` prints it. */
export async function publicKeyOf(privateKeyBase64: string): Promise<string> {
  // The key itself is never put in the message: it is a secret and may be in a log line.
  if (!isWireGuardKey(privateKeyBase64)) throw new InvalidError("the private key is not a WireGuard key (base64 of 32 bytes)", "privateKey");
  return toBase64(await x25519(Buffer.from(privateKeyBase64, "base64"), BASE_POINT));
}

/**
 * `publicKeyOf` without awaiting (node:crypto, the same X25519): for descriptions that are
 * compared as text, which show the private key by its public half.
 */
export function publicKeyOfSync(privateKeyBase64: string): string {
  if (!isWireGuardKey(privateKeyBase64)) throw new InvalidError("the private key is not a WireGuard key (base64 of 32 bytes)", "privateKey");
  const pkcs8 = Buffer.concat([X25519_PKCS8_PREFIX, Buffer.from(privateKeyBase64, "base64")]);
  const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" });
  return toBase64(spki.subarray(spki.length - 32)); // the SubjectPublicKeyInfo ends with the 32-byte key
}

/** True for the one spelling wg accepts: 44 characters, canonical base64 of 32 bytes. */
export function isWireGuardKey(text: string): boolean {
  return WIREGUARD_KEY.test(text);
}

/**
 * The X25519 function of RFC 7748 section 5 (scalar clamped, top bit of u masked), exposed
 * so the known-answer vectors can be checked against exactly what key generation uses.
 */
export async function x25519(scalar: Uint8Array, uCoordinate: Uint8Array): Promise<Uint8Array> {
  if (scalar.length !== 32 || uCoordinate.length !== 32) throw new InvalidError("X25519 takes a 32-byte scalar and a 32-byte u-coordinate");
  const u = Uint8Array.from(uCoordinate);
  u[31]! &= 0x7f; // RFC 7748 section 5: implementations MUST mask the most significant bit
  const pkcs8 = new Uint8Array(X25519_PKCS8_PREFIX.length + 32);
  pkcs8.set(X25519_PKCS8_PREFIX);
  pkcs8.set(scalar, X25519_PKCS8_PREFIX.length);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, false, ["deriveBits"]);
  const publicKey = await crypto.subtle.importKey("raw", u, { name: "X25519" }, false, []);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256));
}

/** A fresh preshared key for a pair of peers, as `wg genpsk` prints it. */
export function generatePresharedKey(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(32)));
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}
