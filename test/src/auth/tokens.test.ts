import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checksum, generateToken, hashToken, hasValidChecksum, parseToken, TOKEN_REGEX, tokenMatches, tokenShape } from "../../../src/auth/tokens.ts";

describe("tokens", () => {
  test("CRC-32 known answer: CRC-32(\"123456789\") = 0xCBF43926", () => {
    expect((Bun.hash.crc32("123456789") >>> 0).toString(16)).toBe("cbf43926");
    // and its base62 form is what the token carries
    let n = 0xcbf43926;
    let b62 = "";
    for (let i = 0; i < 6; i++) {
      b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[n % 62] + b62;
      n = Math.floor(n / 62);
    }
    expect(checksum("123456789")).toBe(b62);
  });

  test("round trip: kind and prefix come back, the regex for scanners matches", () => {
    for (const kind of ["pat", "ses", "wlt", "con", "dns", "secrets"]) {
      const t = generateToken(kind);
      expect(t.token).toMatch(new RegExp(`^citadel_${kind}_${t.prefix}_`));
      expect(parseToken(t.token)).toEqual({ kind, prefix: t.prefix });
      expect(TOKEN_REGEX.test(`export TOKEN=${t.token} # leaked`)).toBe(true);
      expect(t.hash.equals(hashToken(t.token))).toBe(true);
    }
  });

  test("property: any one-character change is refused by the checksum or the shape", () => {
    const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";
    fc.assert(
      fc.property(fc.nat(), fc.nat(), (at, by) => {
        const { token } = generateToken("pat");
        const i = at % token.length;
        const replacement = alphabet[(alphabet.indexOf(token[i]!) + 1 + (by % (alphabet.length - 1))) % alphabet.length]!;
        const changed = token.slice(0, i) + replacement + token.slice(i + 1);
        if (changed !== token) expect(parseToken(changed)).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  test("the shape alone: kind and prefix without the checksum, which is asked separately", () => {
    for (const kind of ["pat", "node", "secrets"]) {
      const { token, prefix } = generateToken(kind);
      const badChecksum = token.slice(0, -6) + (token.endsWith("000000") ? "000001" : "000000");
      expect(tokenShape(token)).toEqual({ kind, prefix });
      expect(tokenShape(badChecksum)).toEqual({ kind, prefix });
      expect([hasValidChecksum(token), hasValidChecksum(badChecksum)]).toEqual([true, false]);
      expect(parseToken(badChecksum)).toBeNull();
    }
    for (const notAToken of ["citadel_pat_short", "citadel_Pat_abcdefgh_" + "a".repeat(38), "xcitadel_pat_abcdefgh_" + "a".repeat(38), "citadel_pat_abcdefgh_" + "a".repeat(39), "citadel_pat_abcdefgh_" + "a".repeat(37) + "-"]) {
      expect(tokenShape(notAToken)).toBeNull();
    }
  });

  test("comparison against the stored hash", () => {
    const a = generateToken("pat");
    const b = generateToken("pat");
    expect(tokenMatches(a.token, a.hash)).toBe(true);
    expect(tokenMatches(b.token, a.hash)).toBe(false);
    expect(parseToken("citadel_pat_short")).toBeNull();
    expect(parseToken("Bearer something")).toBeNull();
  });
});
