import { expect, test } from "bun:test";
import { base32Decode, base32Encode, otpauthUri, totp, verifyTotp } from "../../../src/auth/totp.ts";

// RFC 6238 appendix B: the seeds are the ASCII strings below; 8 digits.
const SEEDS = {
  sha1: Buffer.from("12345678901234567890"),
  sha256: Buffer.from("12345678901234567890123456789012"),
  sha512: Buffer.from("1234567890123456789012345678901234567890123456789012345678901234"),
};
const VECTORS: Array<[number, string, string, string]> = [
  [59, "94287082", "46119246", "90693936"],
  [1111111109, "07081804", "68084774", "25091201"],
  [1111111111, "14050471", "67062674", "99943326"],
  [1234567890, "89005924", "91819424", "93441116"],
  [2000000000, "69279037", "90698825", "38618901"],
  [20000000000, "65353130", "77737706", "47863826"],
];

test("RFC 6238 appendix B known answers (SHA-1, SHA-256, SHA-512)", () => {
  for (const [seconds, sha1, sha256, sha512] of VECTORS) {
    expect(totp(SEEDS.sha1, seconds * 1000, { digits: 8 })).toBe(sha1);
    expect(totp(SEEDS.sha256, seconds * 1000, { digits: 8, algorithm: "sha256" })).toBe(sha256);
    expect(totp(SEEDS.sha512, seconds * 1000, { digits: 8, algorithm: "sha512" })).toBe(sha512);
  }
});

test("verification allows one step of drift and says which step matched", () => {
  const secret = SEEDS.sha1;
  const now = 1111111111_000;
  expect(verifyTotp(secret, totp(secret, now), now)).toBe(Math.floor(now / 30000));
  expect(verifyTotp(secret, totp(secret, now - 30_000), now)).toBe(Math.floor(now / 30000) - 1);
  expect(verifyTotp(secret, totp(secret, now - 90_000), now)).toBeNull();
  expect(verifyTotp(secret, "12345", now)).toBeNull();
  expect(verifyTotp(secret, "abcdef", now)).toBeNull();
});

test("base32 (RFC 4648) and the otpauth URI", () => {
  expect(base32Encode(Buffer.from("foobar"))).toBe("MZXW6YTBOI");
  expect(base32Decode("MZXW6YTBOI").toString()).toBe("foobar");
  expect(base32Decode("mzxw 6ytb oi======").toString()).toBe("foobar");
  expect(otpauthUri("Citadel", "alice@example.org", Buffer.from("foobar"))).toBe(
    "otpauth://totp/Citadel:alice%40example.org?secret=MZXW6YTBOI&issuer=Citadel&algorithm=SHA1&digits=6&period=30",
  );
});

test("a code typed in groups, as apps show it, is the code (found in review)", () => {
  const secret = SEEDS.sha1;
  const now = 1111111111_000;
  const code = totp(secret, now);
  const step = Math.floor(now / 30000);
  for (const typed of [`${code.slice(0, 3)} ${code.slice(3)}`, ` ${code} `, `${code.slice(0, 2)} ${code.slice(2, 4)}\t${code.slice(4)}`]) expect(verifyTotp(secret, typed, now)).toBe(step);
  expect(verifyTotp(secret, `${code.slice(0, 3)}-${code.slice(3)}`, now)).toBeNull(); // only whitespace is left out
});
