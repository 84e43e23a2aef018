import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { aesGcmDecrypt, aesGcmEncrypt, constantTimeEqual, DecryptionError, envelopeKeyVersion, openEnvelope, randomKey, sealEnvelope } from "../../../src/crypto/aead.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

// The AES-256 cases of the GCM specification (McGrew & Viega, test cases 13–16), also in NIST's CAVP set.
const K15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const P15 =
  "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const VECTORS = [
  { name: "TC13: empty", key: "00".repeat(32), iv: "00".repeat(12), pt: "", aad: "", ct: "", tag: "530f8afbc74536b9a963b4f1c4cb738b" },
  { name: "TC14: one zero block", key: "00".repeat(32), iv: "00".repeat(12), pt: "00".repeat(16), aad: "", ct: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919" },
  {
    name: "TC15: four blocks",
    key: K15,
    iv: "cafebabefacedbaddecaf888",
    pt: P15,
    aad: "",
    ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
    tag: "b094dac5d93471bdec1a502270e3cc6c",
  },
  {
    name: "TC16: with AAD, partial block",
    key: K15,
    iv: "cafebabefacedbaddecaf888",
    pt: P15.slice(0, 120),
    aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    tag: "76fc6ece0f4e1768cddf8853bb2d551b",
  },
];

describe("AES-256-GCM known answers", () => {
  for (const v of VECTORS) {
    test(v.name, () => {
      const sealed = aesGcmEncrypt(hex(v.key), hex(v.iv), hex(v.pt), hex(v.aad));
      expect(sealed.toString("hex")).toBe(v.ct + v.tag);
      expect(aesGcmDecrypt(hex(v.key), hex(v.iv), sealed, hex(v.aad)).toString("hex")).toBe(v.pt);
    });
    test(`${v.name}: every flipped tag bit is refused (bad tags)`, () => {
      const sealed = aesGcmEncrypt(hex(v.key), hex(v.iv), hex(v.pt), hex(v.aad));
      for (let bit = 0; bit < 128; bit += 7) {
        const bad = Buffer.from(sealed);
        bad[bad.length - 16 + (bit >> 3)]! ^= 1 << (bit & 7);
        expect(() => aesGcmDecrypt(hex(v.key), hex(v.iv), bad, hex(v.aad))).toThrow(DecryptionError);
      }
    });
  }

  test("a truncated or empty tag is refused", () => {
    const v = VECTORS[2]!;
    const sealed = aesGcmEncrypt(hex(v.key), hex(v.iv), hex(v.pt), hex(v.aad));
    expect(() => aesGcmDecrypt(hex(v.key), hex(v.iv), sealed.subarray(0, sealed.length - 1), hex(v.aad))).toThrow(DecryptionError);
    expect(() => aesGcmDecrypt(hex(v.key), hex(v.iv), Buffer.alloc(0), hex(v.aad))).toThrow(DecryptionError);
  });
});

describe("envelope", () => {
  const key = randomKey();
  const aad = Buffer.from("secrets/ws_1/row_9");

  test("round trip, names its key version, fresh nonce each time", () => {
    const a = sealEnvelope(key, 7, Buffer.from("hello"), aad);
    const b = sealEnvelope(key, 7, Buffer.from("hello"), aad);
    expect(envelopeKeyVersion(a)).toBe(7);
    expect(a.equals(b)).toBe(false);
    expect(openEnvelope(key, a, aad).toString()).toBe("hello");
  });

  test("property: any single flipped byte, wrong AAD or wrong key fails loudly", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(), (plaintext, at) => {
        const envelope = sealEnvelope(key, 1, plaintext, aad);
        const bad = Buffer.from(envelope);
        bad[at % bad.length]! ^= 0x01;
        expect(() => openEnvelope(key, bad, aad)).toThrow(DecryptionError);
        expect(() => openEnvelope(key, envelope, Buffer.from("secrets/ws_1/row_10"))).toThrow(DecryptionError);
        expect(() => openEnvelope(randomKey(), envelope, aad)).toThrow(DecryptionError);
        expect(openEnvelope(key, envelope, aad).equals(Buffer.from(plaintext))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  test("constant-time equality", () => {
    expect(constantTimeEqual(Buffer.from("abc"), Buffer.from("abc"))).toBe(true);
    expect(constantTimeEqual(Buffer.from("abc"), Buffer.from("abd"))).toBe(false);
    expect(constantTimeEqual(Buffer.from("abc"), Buffer.from("abcd"))).toBe(false);
  });
});
