import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { combineShares, decodeShare, encodeShare, ShareFormatError, splitSecret } from "../../../src/crypto/shamir.ts";

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const schemeArb = fc.integer({ min: 2, max: 8 }).chain((k) => fc.tuple(fc.constant(k), fc.integer({ min: k, max: 10 })));

describe("Shamir secret sharing", () => {
  test("property: any k of n shares rebuild the secret", () => {
    fc.assert(
      fc.property(secretArb, schemeArb, fc.infiniteStream(fc.nat()), (secret, [k, n], picks) => {
        const shares = splitSecret(secret, n, k);
        const pool = [...shares];
        const chosen = [];
        const it = picks[Symbol.iterator]();
        while (chosen.length < k) chosen.push(pool.splice(it.next().value % pool.length, 1)[0]!);
        expect(Buffer.from(combineShares(chosen)).equals(Buffer.from(secret))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  test("property: k-1 shares do not rebuild the secret", () => {
    fc.assert(
      fc.property(secretArb, schemeArb, (secret, [k, n]) => {
        const shares = splitSecret(secret, n, k).slice(0, k - 1);
        const guess = k - 1 === 0 ? new Uint8Array(32) : combineShares(shares);
        expect(Buffer.from(guess).equals(Buffer.from(secret))).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  test("refuses duplicate shares and impossible schemes", () => {
    const shares = splitSecret(new Uint8Array(32).fill(7), 3, 2);
    expect(() => combineShares([shares[0]!, shares[0]!])).toThrow(/duplicate/);
    expect(() => splitSecret(new Uint8Array(32), 2, 3)).toThrow();
    expect(() => splitSecret(new Uint8Array(32), 300, 3)).toThrow();
    expect(() => splitSecret(new Uint8Array(32), 5, 1)).toThrow();
  });

  test("text form: round trip, and any one changed character is refused", () => {
    const [share] = splitSecret(new Uint8Array(32).fill(42), 3, 2);
    const text = encodeShare("0a1b2c3d", share!);
    expect(decodeShare(text)).toEqual({ keyId: "0a1b2c3d", share: { x: share!.x, y: Buffer.from(share!.y) } });
    expect(decodeShare(`  ${text.toUpperCase()}\n`).keyId).toBe("0a1b2c3d"); // case and spaces forgiven
    const alphabet = "0123456789abcdef";
    for (let i = "citadel-share-".length; i < text.length; i++) {
      if (text[i] === "-") continue;
      const changed = text.slice(0, i) + alphabet[(alphabet.indexOf(text[i]!) + 1) % 16] + text.slice(i + 1);
      expect(() => decodeShare(changed)).toThrow(ShareFormatError);
    }
    expect(() => decodeShare("hello")).toThrow(ShareFormatError);
  });
});
