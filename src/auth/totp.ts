/**
 * TOTP (RFC 6238) over HOTP (RFC 4226): HMAC-SHA1, 30-second steps, 6 digits, which is what
 * every authenticator app speaks. Verification accepts one step either side for clock
 * drift and returns the step it matched, so a caller can refuse a code used before.
 */
import { createHmac, randomBytes } from "node:crypto";
import { constantTimeEqual } from "../crypto/aead.ts";

export interface TotpOptions {
  algorithm?: "sha1" | "sha256" | "sha512";
  digits?: number;
  period?: number;
}

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function base32Encode(data: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=-]/g, "").toUpperCase();
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const char of clean) {
    const index = B32.indexOf(char);
    if (index < 0) throw new Error("not base32");
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** A new TOTP secret: 20 random bytes (the size of an HMAC-SHA1 key). */
export function newTotpSecret(): Buffer {
  return randomBytes(20);
}

/** The code for a given step counter (HOTP, RFC 4226 §5.3). */
export function hotp(secret: Uint8Array, counter: number, { algorithm = "sha1", digits = 6 }: TotpOptions = {}): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, secret).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = ((mac[offset]! & 0x7f) << 24) | (mac[offset + 1]! << 16) | (mac[offset + 2]! << 8) | mac[offset + 3]!;
  return String(binary % 10 ** digits).padStart(digits, "0");
}

export function totpStep(timeMs: number, period = 30): number {
  return Math.floor(timeMs / 1000 / period);
}

export function totp(secret: Uint8Array, timeMs: number, options: TotpOptions = {}): string {
  return hotp(secret, totpStep(timeMs, options.period), options);
}

/**
 * The step a code matches within ±`window` steps of now, or null. Compared in constant time.
 * Whitespace is left out: apps show a code in groups ("123 456"), and people type it so (found in review).
 */
export function verifyTotp(secret: Uint8Array, typed: string, timeMs: number, window = 1, options: TotpOptions = {}): number | null {
  const code = typed.replace(/\s/g, "");
  if (!/^\d{6,8}$/.test(code)) return null;
  const now = totpStep(timeMs, options.period);
  let matched: number | null = null;
  for (let step = now - window; step <= now + window; step++) {
    // Every candidate is checked, so timing does not tell which step matched.
    if (constantTimeEqual(Buffer.from(hotp(secret, step, options)), Buffer.from(code)) && matched === null) matched = step;
  }
  return matched;
}

/** The URI authenticator apps read from a QR code (Google Authenticator key URI format). */
export function otpauthUri(issuer: string, account: string, secret: Uint8Array): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  return `otpauth://totp/${label}?secret=${base32Encode(secret)}&issuer=${encodeURIComponent(issuer)}&algorithm=SHA1&digits=6&period=30`;
}
