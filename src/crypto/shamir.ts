/**
 * Shamir's secret sharing over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1): the root key
 * is split byte by byte into n shares, any k of which rebuild it and k-1 of which reveal
 * nothing. Shares are printed as text with the key's id and a checksum, so a mistyped share
 * or one from another key set is refused on entry rather than rebuilding a wrong key.
 */
import { randomBytes } from "node:crypto";

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x ^= (x << 1) ^ (x & 0x80 ? 0x11b : 0); // multiply by the generator 3
    x &= 0xff;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255]!;
}

function mul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a]! + LOG[b]!]!;
}

function div(a: number, b: number): number {
  if (b === 0) throw new Error("division by zero in GF(256)");
  return a === 0 ? 0 : EXP[LOG[a]! + 255 - LOG[b]!]!;
}

export interface Share {
  /** The evaluation point, 1..255. */
  x: number;
  y: Uint8Array;
}

/** Splits `secret` into `shares` shares, any `threshold` of which rebuild it. */
export function splitSecret(secret: Uint8Array, shares: number, threshold: number): Share[] {
  if (!Number.isInteger(threshold) || threshold < 2) throw new Error("the threshold must be at least 2");
  if (!Number.isInteger(shares) || shares < threshold || shares > 255) throw new Error("shares must be between the threshold and 255");
  const out: Share[] = Array.from({ length: shares }, (_, i) => ({ x: i + 1, y: new Uint8Array(secret.length) }));
  for (let b = 0; b < secret.length; b++) {
    const coefficients = [secret[b]!, ...randomBytes(threshold - 1)];
    for (const share of out) {
      // Horner's rule: evaluate the polynomial at share.x.
      let y = 0;
      for (let c = coefficients.length - 1; c >= 0; c--) y = mul(y, share.x) ^ coefficients[c]!;
      share.y[b] = y;
    }
  }
  return out;
}

/** Rebuilds the secret from shares by Lagrange interpolation at 0. Needs distinct x values. */
export function combineShares(shares: readonly Share[]): Uint8Array {
  if (shares.length === 0) throw new Error("no shares");
  const length = shares[0]!.y.length;
  if (new Set(shares.map((s) => s.x)).size !== shares.length) throw new Error("duplicate share");
  if (shares.some((s) => s.y.length !== length || s.x < 1 || s.x > 255)) throw new Error("shares of different shapes");
  const secret = new Uint8Array(length);
  for (let i = 0; i < shares.length; i++) {
    let basis = 1; // l_i(0) = Π_{j≠i} x_j / (x_j - x_i); subtraction is XOR in GF(2^8)
    for (let j = 0; j < shares.length; j++) {
      if (i !== j) basis = mul(basis, div(shares[j]!.x, shares[j]!.x ^ shares[i]!.x));
    }
    for (let b = 0; b < length; b++) secret[b]! ^= mul(shares[i]!.y[b]!, basis);
  }
  return secret;
}

const SHARE_PATTERN = /^citadel-share-([0-9a-f]{8})-([0-9]{1,3})-([0-9a-f]{64})-([0-9a-f]{8})$/;

/** "citadel-share-<key id>-<x>-<64 hex>-<crc32>" */
export function encodeShare(keyId: string, share: Share): string {
  const body = `${keyId}-${share.x}-${Buffer.from(share.y).toString("hex")}`;
  return `citadel-share-${body}-${crc32Hex(body)}`;
}

export class ShareFormatError extends Error {
  override readonly name = "ShareFormatError";
}

export function decodeShare(text: string): { keyId: string; share: Share } {
  const m = text.trim().toLowerCase().match(SHARE_PATTERN);
  if (!m) throw new ShareFormatError("not a Citadel key share (expected citadel-share-<id>-<n>-<64 hex digits>-<checksum>)");
  const [, keyId, x, y, checksum] = m as unknown as [string, string, string, string, string];
  if (crc32Hex(`${keyId}-${Number(x)}-${y}`) !== checksum) throw new ShareFormatError("the share's checksum does not match: it was mistyped");
  const xValue = Number(x);
  if (xValue < 1 || xValue > 255) throw new ShareFormatError("the share's number is out of range");
  return { keyId, share: { x: xValue, y: Buffer.from(y, "hex") } };
}

function crc32Hex(text: string): string {
  return (Bun.hash.crc32(text) >>> 0).toString(16).padStart(8, "0");
}
