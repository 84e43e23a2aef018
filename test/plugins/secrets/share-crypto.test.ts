import { describe, expect, test } from "bun:test";
import { createShareSecret, openShareSecret, parseShareUrl, shareKdfProblem, sharePassphraseProof, shareUrl, shareViewProof } from "../../../plugins/secrets/share-crypto.ts";

/** The same `c1.sh.` string with one byte of its payload flipped. */
function flip(s: string, index: number): string {
  const bytes = Buffer.from(s.slice(6), "base64url");
  bytes[index < 0 ? bytes.length + index : index]! ^= 0x01;
  return "c1.sh." + bytes.toString("base64url");
}

describe("share secrets without a passphrase", () => {
  test("round trip; the key is not in the ciphertext", async () => {
    const { linkKey, ciphertext, passphraseRequired } = await createShareSecret("päss wörd 🔑");
    expect(passphraseRequired).toBe(false);
    expect(linkKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ciphertext).toMatch(/^c1\.sh\.[A-Za-z0-9_-]+$/);
    expect(ciphertext).not.toContain(linkKey);
    expect(await openShareSecret(ciphertext, linkKey)).toBe("päss wörd 🔑");
    expect(await openShareSecret(ciphertext, linkKey, "ignored")).toBe("päss wörd 🔑");
    const empty = await createShareSecret("");
    expect(await openShareSecret(empty.ciphertext, empty.linkKey)).toBe("");
  });

  test("another link key, a damaged link key or a flipped byte fails", async () => {
    const { linkKey, ciphertext } = await createShareSecret("hunter2");
    const other = await createShareSecret("hunter2");
    const wrong = "the link or passphrase is wrong";
    await expect(openShareSecret(ciphertext, other.linkKey)).rejects.toThrow(wrong);
    await expect(openShareSecret(ciphertext, linkKey.slice(0, -1))).rejects.toThrow(wrong);
    await expect(openShareSecret(ciphertext, "")).rejects.toThrow(wrong);
    for (const at of [1, 13, -1]) await expect(openShareSecret(flip(ciphertext, at), linkKey)).rejects.toThrow(wrong);
    // Claiming a passphrase is needed (mode byte) changes the header: refused, not opened.
    await expect(openShareSecret(flip(ciphertext, 0), linkKey, "pw")).rejects.toThrow();
    await expect(openShareSecret("hunter2", linkKey)).rejects.toThrow("not a share made by citadel");
    await expect(openShareSecret("c1.sh.AAAA", linkKey)).rejects.toThrow("too short");
  });
});

describe("share secrets with a passphrase", () => {
  test("both the link and the passphrase are needed", async () => {
    const { linkKey, ciphertext, passphraseRequired } = await createShareSecret("hunter2", "open sesame");
    expect(passphraseRequired).toBe(true);
    const blob = Buffer.from(ciphertext.slice(6), "base64url");
    expect([blob[0], blob.readUInt32BE(1), blob.readUInt32BE(5), blob[9]]).toEqual([1, 19_456, 2, 1]); // argon2id parameters, then the salt
    expect(await openShareSecret(ciphertext, linkKey, "open sesame")).toBe("hunter2");
    await expect(openShareSecret(ciphertext, linkKey, "open sesame!")).rejects.toThrow("the link or passphrase is wrong");
    await expect(openShareSecret(ciphertext, linkKey)).rejects.toThrow("this link needs a passphrase");
    await expect(openShareSecret(ciphertext, linkKey, "")).rejects.toThrow("this link needs a passphrase");
    const other = await createShareSecret("x");
    await expect(openShareSecret(ciphertext, other.linkKey, "open sesame")).rejects.toThrow("the link or passphrase is wrong");
  });

  test("the passphrase requirement cannot be stripped, and an empty passphrase is refused", async () => {
    const { linkKey, ciphertext } = await createShareSecret("hunter2", "pw");
    const blob = Buffer.from(ciphertext.slice(6), "base64url");
    const stripped = "c1.sh." + Buffer.concat([Buffer.from([0]), blob.subarray(26)]).toString("base64url");
    await expect(openShareSecret(stripped, linkKey)).rejects.toThrow("the link or passphrase is wrong");
    blob.writeUInt32BE(0xffff_ffff, 1);
    await expect(openShareSecret("c1.sh." + blob.toString("base64url"), linkKey, "pw")).rejects.toThrow("out of bounds");
    await expect(createShareSecret("x", "")).rejects.toThrow("passphrase may not be empty");
  });
});

describe("passphrase proofs (the server checks one before it spends a view)", () => {
  test("made at creation from the passphrase stretched for the key; a viewer remakes it from the salt and parameters", async () => {
    const { linkKey, ciphertext, passphraseProof, passphraseKdf } = await createShareSecret("hunter2", "open sesame");
    const blob = Buffer.from(ciphertext.slice(6), "base64url");
    // The same salt and parameters as the ciphertext's header: one argon2id run serves both.
    expect(passphraseKdf).toEqual({ salt: blob.subarray(10, 26).toString("base64url"), memory_kib: 19_456, iterations: 2, parallelism: 1 });
    expect(passphraseProof).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await sharePassphraseProof(linkKey, "open sesame", passphraseKdf!)).toBe(passphraseProof!);
    expect(passphraseProof).not.toBe(shareViewProof(linkKey));
    expect(ciphertext).not.toContain(passphraseProof!);
  });

  test("it depends on the passphrase, the link key and the salt", async () => {
    const made = await createShareSecret("hunter2", "open sesame");
    const other = await createShareSecret("hunter2", "open sesame");
    const proof = made.passphraseProof!;
    expect(await sharePassphraseProof(made.linkKey, "open sesame!", made.passphraseKdf!)).not.toBe(proof);
    expect(await sharePassphraseProof(other.linkKey, "open sesame", made.passphraseKdf!)).not.toBe(proof);
    expect(await sharePassphraseProof(made.linkKey, "open sesame", other.passphraseKdf!)).not.toBe(proof);
    expect(other.passphraseProof).not.toBe(proof);
    await expect(sharePassphraseProof(made.linkKey, "", made.passphraseKdf!)).rejects.toThrow("this link needs a passphrase");
  });

  test("a link without a passphrase has none", async () => {
    const made = await createShareSecret("hunter2");
    expect([made.passphraseProof, made.passphraseKdf]).toEqual([undefined, undefined]);
  });

  test("salt and parameters out of bounds are refused, before anything is stretched (a hostile server asks for 4 GiB)", async () => {
    const { linkKey, passphraseKdf } = await createShareSecret("x", "pw");
    const kdf = passphraseKdf!;
    expect(shareKdfProblem(kdf)).toBeNull();
    expect(shareKdfProblem({ ...kdf, memory_kib: 1_048_576, iterations: 10, parallelism: 8 })).toBeNull(); // the upper bounds themselves
    const refused: Array<[Partial<typeof kdf>, keyof typeof kdf]> = [
      [{ memory_kib: 4_194_304 }, "memory_kib"],
      [{ memory_kib: 1024 }, "memory_kib"],
      [{ iterations: 1 }, "iterations"],
      [{ iterations: 2.5 }, "iterations"],
      [{ parallelism: 9 }, "parallelism"],
      [{ salt: "AAAA" }, "salt"],
      [{ salt: kdf.salt + "=" }, "salt"],
    ];
    for (const [change, field] of refused) {
      expect(shareKdfProblem({ ...kdf, ...change })?.field).toBe(field);
      await expect(sharePassphraseProof(linkKey, "pw", { ...kdf, ...change })).rejects.toThrow(`argon2id parameters out of bounds (${field}:`);
    }
    expect(shareKdfProblem(null as never)?.field).toBe("salt");
  });
});

describe("share URLs", () => {
  const key = "q".repeat(42) + "g";

  test("round trip", () => {
    const url = shareUrl("https://citadel.example.com", "shr_123", key);
    expect(url).toBe(`https://citadel.example.com/v1/secrets/shares/shr_123#${key}`);
    expect(parseShareUrl(url)).toEqual({ baseUrl: "https://citadel.example.com", id: "shr_123", linkKey: key });
    expect(shareUrl("https://citadel.example.com/", "shr_123", key)).toBe(url);
    const behindProxy = shareUrl("http://10.0.0.2:8443/citadel", "shr_9", key);
    expect(parseShareUrl(behindProxy)).toEqual({ baseUrl: "http://10.0.0.2:8443/citadel", id: "shr_9", linkKey: key });
  });

  test("a link with a real key opens", async () => {
    const { linkKey, ciphertext } = await createShareSecret("v");
    const parsed = parseShareUrl(shareUrl("https://c.example", "abc", linkKey));
    expect(await openShareSecret(ciphertext, parsed.linkKey)).toBe("v");
  });

  test("throws on links without a fragment, with a damaged key, or not share links at all", () => {
    expect(() => parseShareUrl("https://citadel.example.com/v1/secrets/shares/shr_123")).toThrow("no key after '#'");
    expect(() => parseShareUrl("https://citadel.example.com/v1/secrets/shares/shr_123#")).toThrow("no key after '#'");
    expect(() => parseShareUrl(`https://citadel.example.com/v1/secrets/shares/shr_123#${key.slice(1)}`)).toThrow("damaged");
    expect(() => parseShareUrl(`https://citadel.example.com/v1/secrets/other/shr_123#${key}`)).toThrow("not a share link");
    expect(() => parseShareUrl(`https://citadel.example.com/v1/secrets/shares/#${key}`)).toThrow("not a share link");
    expect(() => parseShareUrl("shr_123")).toThrow("not a URL");
    expect(() => parseShareUrl(`ftp://x/v1/secrets/shares/a#${key}`)).toThrow("http(s)");
  });
});
