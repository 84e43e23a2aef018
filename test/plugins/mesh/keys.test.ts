import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { generateKeyPair, generatePresharedKey, isWireGuardKey, publicKeyOf, publicKeyOfSync, x25519 } from "../../../plugins/mesh/keys.ts";
import { requireTool } from "../../helpers/tools.ts";

const hex = (text: string) => Uint8Array.from(Buffer.from(text, "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const b64 = (text: string) => Buffer.from(text, "hex").toString("base64");

describe("x25519: RFC 7748 known answers", () => {
  // Section 5.2; the second u-coordinate has its top bit set, which X25519 must ignore.
  const vectors: Array<[string, string, string]> = [
    [
      "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
      "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
      "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ],
    [
      "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
      "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
      "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ],
  ];
  for (const [scalar, u, expected] of vectors) {
    test(`section 5.2: scalar ${scalar.slice(0, 8)}…`, async () => expect(toHex(await x25519(hex(scalar), hex(u)))).toBe(expected));
  }

  test("section 5.2: 1000 iterations", async () => {
    let k: Uint8Array = hex("0900000000000000000000000000000000000000000000000000000000000000");
    let u = k;
    for (let i = 1; i <= 1000; i++) {
      const next = await x25519(k, u);
      u = k;
      k = next;
      if (i === 1) expect(toHex(k)).toBe("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
    expect(toHex(k)).toBe("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
  });

  test("section 6.1: Diffie-Hellman", async () => {
    const alicePrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const alicePublic = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const bobPrivate = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const bobPublic = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(await publicKeyOf(b64(alicePrivate))).toBe(b64(alicePublic));
    expect(await publicKeyOf(b64(bobPrivate))).toBe(b64(bobPublic));
    expect([publicKeyOfSync(b64(alicePrivate)), publicKeyOfSync(b64(bobPrivate))]).toEqual([b64(alicePublic), b64(bobPublic)]);
    expect(toHex(await x25519(hex(alicePrivate), hex(bobPublic)))).toBe(shared);
    expect(toHex(await x25519(hex(bobPrivate), hex(alicePublic)))).toBe(shared);
  });

  test("refuses inputs that are not 32 bytes", async () => {
    await expect(x25519(new Uint8Array(31), new Uint8Array(32))).rejects.toThrow("32-byte");
  });
});

describe("key pairs", () => {
  test("generated private keys are clamped like wg genkey's, and unique", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { privateKey, publicKey } = await generateKeyPair();
      expect(isWireGuardKey(privateKey)).toBe(true);
      expect(isWireGuardKey(publicKey)).toBe(true);
      const raw = Buffer.from(privateKey, "base64");
      expect(raw[0]! & 7).toBe(0);
      expect(raw[31]! & 0xc0).toBe(0x40);
      expect(await publicKeyOf(privateKey)).toBe(publicKey);
      expect(publicKeyOfSync(privateKey)).toBe(publicKey);
      seen.add(privateKey);
    }
    expect(seen.size).toBe(20);
  });

  test("preshared keys are 32 random bytes in wg's spelling", () => {
    const a = generatePresharedKey();
    expect(isWireGuardKey(a)).toBe(true);
    expect(Buffer.from(a, "base64").length).toBe(32);
    expect(generatePresharedKey()).not.toBe(a);
  });

  test("publicKeyOf refuses a malformed key without echoing it", async () => {
    const secretish = "not-a-key-but-maybe-a-secret";
    const error = await publicKeyOf(secretish).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).not.toContain(secretish);
    expect(() => publicKeyOfSync(secretish)).toThrow(/^(?!.*not-a-key)/);
  });
});

describe("isWireGuardKey", () => {
  const accepted = ["yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="];
  for (const key of accepted) test(`accepts ${key}`, () => expect(isWireGuardKey(key)).toBe(true));

  const refused = [
    "",
    "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk", // no padding
    "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=", // non-zero trailing bits: not canonical
    "yAnz5TF-lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", // base64url alphabet
    "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk==",
    " yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
    Buffer.alloc(33).toString("base64"),
    Buffer.alloc(31).toString("base64"),
  ];
  for (const key of refused) test(`refuses ${JSON.stringify(key)}`, () => expect(isWireGuardKey(key)).toBe(false));

  test("property: exactly the base64 of 32 bytes is accepted", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), (bytes) => {
        const text = Buffer.from(bytes).toString("base64");
        expect(isWireGuardKey(text)).toBe(bytes.length === 32);
      }),
      { numRuns: 500 },
    );
  });
});

describe("agrees with wg(8)", () => {
  const wg = requireTool("wg", "wireguard-tools");

  async function wgTool(args: string[], stdin?: string): Promise<string> {
    const proc = Bun.spawn([wg!, ...args], { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(0);
    return out.trim();
  }

  test.skipIf(!wg)("publicKeyOf equals wg pubkey for keys from wg genkey", async () => {
    for (let i = 0; i < 5; i++) {
      const privateKey = await wgTool(["genkey"]);
      expect(isWireGuardKey(privateKey)).toBe(true);
      expect(await publicKeyOf(privateKey)).toBe(await wgTool(["pubkey"], `${privateKey}\n`));
    }
  });

  test.skipIf(!wg)("wg pubkey agrees with our generated pairs, and accepts our preshared keys", async () => {
    for (let i = 0; i < 5; i++) {
      const { privateKey, publicKey } = await generateKeyPair();
      expect(await wgTool(["pubkey"], `${privateKey}\n`)).toBe(publicKey);
    }
    // wg pubkey parses any 32-byte key, so it doubles as a check of the preshared key's spelling.
    expect(isWireGuardKey(await wgTool(["pubkey"], `${generatePresharedKey()}\n`))).toBe(true);
  });

  test.skipIf(!wg)("an unclamped private key has the same public key as for wg", async () => {
    const unclamped = Buffer.alloc(32, 0xff).toString("base64");
    expect(await publicKeyOf(unclamped)).toBe(await wgTool(["pubkey"], `${unclamped}\n`));
  });
});
