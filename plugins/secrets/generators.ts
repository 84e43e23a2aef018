/**
 * Value generators of the "rotate" action. Each draws from the operating system's CSPRNG;
 * the password generator picks characters by rejection sampling, so each is equally likely.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { InvalidError } from "../../src/errors.ts";

export const GENERATORS = ["password", "hex", "base64", "uuid"] as const;
export type Generator = (typeof GENERATORS)[number];

const PASSWORD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%+-.:=@^_~";

export function generateValue(generator: Generator, length?: number): string {
  switch (generator) {
    case "password":
      return randomPassword(checkLength(length ?? 32, 12, 256));
    case "hex":
      return randomBytes(checkLength(length ?? 32, 16, 512)).toString("hex");
    case "base64":
      return randomBytes(checkLength(length ?? 32, 16, 512)).toString("base64");
    case "uuid":
      if (length !== undefined) throw new InvalidError("a UUID has no length to choose", "length");
      return randomUUID();
  }
}

function checkLength(length: number, min: number, max: number): number {
  if (!Number.isInteger(length) || length < min || length > max) throw new InvalidError(`length: from ${min} to ${max}`, "length");
  return length;
}

function randomPassword(length: number): string {
  // The largest multiple of the alphabet's size below 256: bytes above it are drawn again.
  const limit = 256 - (256 % PASSWORD_ALPHABET.length);
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit) out += PASSWORD_ALPHABET[byte % PASSWORD_ALPHABET.length];
      if (out.length === length) break;
    }
  }
  return out;
}
