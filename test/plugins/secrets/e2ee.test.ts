import { describe, expect, test } from "bun:test";
import { createPrivateKey, createPublicKey } from "node:crypto";
import {
  decryptValue,
  e2eeCiphertextLength,
  e2eeValueHeader,
  e2eeValueVersion,
  encryptValue,
  generateUserKeyPair,
  isE2eeCiphertext,
  isMarkedWrappedKey,
  isVersionBound,
  newWorkspaceKey,
  openPrivateKey,
  sealPrivateKey,
  unwrapMarkedWorkspaceKey,
  unwrapWorkspaceKey,
  wrapWorkspaceKey,
} from "../../../plugins/secrets/e2ee.ts";
import { encryptUnboundValue, wrapWorkspaceKeyWithMark } from "../../helpers/e2ee.ts";

// What the server accepts (plugins/secrets/e2ee-keys.ts).
const SERVER_PUBLIC_KEY = /^[A-Za-z0-9_-]{43}$/;
const SERVER_SEALED = /^c1\.[a-z]{1,4}\.[A-Za-z0-9_-]{16,4096}$/;

/** The same versioned string with one byte of its payload flipped. */
function flip(s: string, index: number): string {
  const at = s.indexOf(".", 3) + 1;
  const bytes = Buffer.from(s.slice(at), "base64url");
  const i = index < 0 ? bytes.length + index : index;
  bytes[i]! ^= 0x01;
  return s.slice(0, at) + bytes.toString("base64url");
}

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
const b64url = (s: string) => Buffer.from(s, "hex").toString("base64url");

describe("user key pairs", () => {
  test("are standard raw X25519: the public key is what node:crypto derives from the private key", () => {
    const { publicKey, privateKey } = generateUserKeyPair();
    expect(privateKey).toBeInstanceOf(Uint8Array);
    expect(privateKey.length).toBe(32);
    expect(publicKey).toMatch(SERVER_PUBLIC_KEY);
    const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), privateKey]);
    const derived = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "jwk" });
    expect(derived.x).toBe(publicKey);
    expect(generateUserKeyPair().publicKey).not.toBe(publicKey);
  });

  test("seal and open with the passphrase; a wrong passphrase or a flipped byte fails clearly", async () => {
    const { privateKey } = generateUserKeyPair();
    const sealed = await sealPrivateKey(privateKey, "correct horse battery staple");
    expect(sealed).toMatch(/^c1\.pk\.[A-Za-z0-9_-]+$/);
    expect(sealed).toMatch(SERVER_SEALED);
    expect(sealed).not.toContain(Buffer.from(privateKey).toString("base64url"));
    // The argon2id parameters are recorded: kdf id 1, m = 19456 KiB, t = 2, p = 1, then a 16-byte salt.
    const blob = Buffer.from(sealed.slice("c1.pk.".length), "base64url");
    expect([blob[0], blob.readUInt32BE(1), blob.readUInt32BE(5), blob[9]]).toEqual([1, 19_456, 2, 1]);
    expect(blob.length).toBe(1 + 4 + 4 + 1 + 16 + 12 + 32 + 16);

    expect(await openPrivateKey(sealed, "correct horse battery staple")).toEqual(privateKey);
    await expect(openPrivateKey(sealed, "Correct horse battery staple")).rejects.toThrow("wrong passphrase, or the key was damaged");
    await expect(openPrivateKey(flip(sealed, -1), "correct horse battery staple")).rejects.toThrow("wrong passphrase, or the key was damaged");
  });

  test("a sealed key whose recorded parameters were changed does not open (and absurd ones are refused before hashing)", async () => {
    const { privateKey } = generateUserKeyPair();
    const sealed = await sealPrivateKey(privateKey, "pw");
    expect(sealed).not.toBe(await sealPrivateKey(privateKey, "pw")); // fresh salt and nonce each time
    const blob = Buffer.from(sealed.slice(6), "base64url");
    blob.writeUInt32BE(0xffff_ffff, 1); // m = 4 TiB
    await expect(openPrivateKey(`c1.pk.${blob.toString("base64url")}`, "pw")).rejects.toThrow("out of bounds");
    await expect(openPrivateKey("c1.pk.AAAA", "pw")).rejects.toThrow("not a private key sealed by this version");
    await expect(openPrivateKey("c1.wk." + sealed.slice(6), "pw")).rejects.toThrow("not a private key sealed by citadel");
    await expect(sealPrivateKey(privateKey, "")).rejects.toThrow("passphrase may not be empty");
    await expect(sealPrivateKey(privateKey.subarray(0, 31), "pw")).rejects.toThrow("32 bytes");
  });
});

describe("workspace keys", () => {
  const context = { workspace: "ws_1", user: "usr_alice" };

  test("wrap and unwrap round trip; each wrap has a fresh ephemeral key", () => {
    const alice = generateUserKeyPair();
    const key = newWorkspaceKey();
    expect(key.length).toBe(32);
    expect(newWorkspaceKey()).not.toEqual(key);
    const wrapped = wrapWorkspaceKey(key, alice.publicKey, context);
    expect(wrapped).toMatch(/^c1\.wk\.[A-Za-z0-9_-]+$/);
    expect(wrapped).toMatch(SERVER_SEALED);
    expect(Buffer.from(wrapped.slice(6), "base64url").length).toBe(32 + 12 + 32 + 16);
    expect(wrapWorkspaceKey(key, alice.publicKey, context)).not.toBe(wrapped);
    expect(unwrapWorkspaceKey(wrapped, alice.privateKey, context)).toEqual(key);
  });

  test("a second member: the same workspace key wrapped for two key pairs, each unwraps their own", () => {
    const alice = generateUserKeyPair();
    const bob = generateUserKeyPair();
    const key = newWorkspaceKey();
    const forAlice = wrapWorkspaceKey(key, alice.publicKey, { workspace: "ws_1", user: "usr_alice" });
    const forBob = wrapWorkspaceKey(key, bob.publicKey, { workspace: "ws_1", user: "usr_bob" });
    expect(unwrapWorkspaceKey(forAlice, alice.privateKey, { workspace: "ws_1", user: "usr_alice" })).toEqual(key);
    expect(unwrapWorkspaceKey(forBob, bob.privateKey, { workspace: "ws_1", user: "usr_bob" })).toEqual(key);
    // A value encrypted by one member opens for the other.
    const ciphertext = encryptValue(key, "s3cr3t", { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD", version: 1, keyVersion: 1 });
    const bobsKey = unwrapWorkspaceKey(forBob, bob.privateKey, { workspace: "ws_1", user: "usr_bob" });
    expect(decryptValue(bobsKey, ciphertext, { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD", version: 1, keyVersion: 1 })).toBe("s3cr3t");
  });

  test("the wrong recipient, another workspace or user, or a flipped byte fails", () => {
    const alice = generateUserKeyPair();
    const mallory = generateUserKeyPair();
    const wrapped = wrapWorkspaceKey(newWorkspaceKey(), alice.publicKey, context);
    const refused = /not wrapped for your key pair, or for this workspace and user, or it was damaged/;
    expect(() => unwrapWorkspaceKey(wrapped, mallory.privateKey, context)).toThrow(refused);
    expect(() => unwrapWorkspaceKey(wrapped, alice.privateKey, { workspace: "ws_2", user: "usr_alice" })).toThrow(refused);
    expect(() => unwrapWorkspaceKey(wrapped, alice.privateKey, { workspace: "ws_1", user: "usr_bob" })).toThrow(refused);
    // The pieces of the info string cannot be shifted around.
    expect(() => unwrapWorkspaceKey(wrapped, alice.privateKey, { workspace: "ws_1|usr", user: "alice" })).toThrow(refused);
    expect(() => unwrapWorkspaceKey(flip(wrapped, 40), alice.privateKey, context)).toThrow(refused); // nonce
    expect(() => unwrapWorkspaceKey(flip(wrapped, -1), alice.privateKey, context)).toThrow(refused); // tag
    expect(() => unwrapWorkspaceKey(flip(wrapped, 5), alice.privateKey, context)).toThrow(); // ephemeral key
    const short = "c1.wk." + Buffer.from(wrapped.slice(6), "base64url").subarray(0, -3).toString("base64url");
    expect(() => unwrapWorkspaceKey(short, alice.privateKey, context)).toThrow("not a workspace key wrapped by this version");
    expect(() => unwrapWorkspaceKey(wrapped + "!", alice.privateKey, context)).toThrow("not a workspace key wrapped by citadel");
  });

  test("RFC 7748 §6.1 key pairs work as recipients (raw little-endian X25519, as wg uses)", () => {
    const alicePrivate = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const alicePublic = b64url("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    const bobPrivate = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    const key = newWorkspaceKey();
    const wrapped = wrapWorkspaceKey(key, alicePublic, context);
    expect(unwrapWorkspaceKey(wrapped, alicePrivate, context)).toEqual(key);
    expect(() => unwrapWorkspaceKey(wrapped, bobPrivate, context)).toThrow();
  });

  test("refuses malformed public keys and contexts", () => {
    const key = newWorkspaceKey();
    expect(() => wrapWorkspaceKey(key, "not-a-key", context)).toThrow("base64url of 32 bytes");
    expect(() => wrapWorkspaceKey(key, Buffer.alloc(32).toString("base64url"), context)).toThrow("not usable");
    // A low-order point other than zero (u = 1).
    expect(() => wrapWorkspaceKey(key, b64url("01" + "00".repeat(31)), context)).toThrow("not usable");
    expect(() => wrapWorkspaceKey(key, generateUserKeyPair().publicKey, { workspace: "", user: "u" })).toThrow("non-empty workspace");
    expect(() => wrapWorkspaceKey(key.subarray(1), generateUserKeyPair().publicKey, context)).toThrow("32 bytes");
  });
});

describe("a key's marks", () => {
  test("a key made by a citadel that binds values carries the mark inside its copy; one from before carries none; the server sees only the form (found in review)", () => {
    const key = newWorkspaceKey();
    const bob = generateUserKeyPair();
    const context = { workspace: "ws_1", user: "usr_bob" };
    const marked = wrapWorkspaceKey(key, bob.publicKey, context, { valuesBound: true });
    const plain = wrapWorkspaceKey(key, bob.publicKey, context);
    expect(unwrapMarkedWorkspaceKey(marked, bob.privateKey, context)).toEqual({ key, valuesBound: true });
    expect(unwrapMarkedWorkspaceKey(plain, bob.privateKey, context)).toEqual({ key, valuesBound: false });
    expect(unwrapWorkspaceKey(marked, bob.privateKey, context)).toEqual(key);
    expect([isMarkedWrappedKey(marked), isMarkedWrappedKey(plain), isMarkedWrappedKey("c1.wk.AAAA")]).toEqual([true, false, false]);
    // The mark is under the tag: cut off, the copy no longer opens.
    const cut = "c1.wk." + Buffer.from(marked.slice(6), "base64url").subarray(0, -1).toString("base64url");
    expect(() => unwrapMarkedWorkspaceKey(cut, bob.privateKey, context)).toThrow();
  });

  test("a copy carrying a mark this citadel does not know says to upgrade, not that it was not wrapped for you (found in review)", () => {
    const key = newWorkspaceKey();
    const bob = generateUserKeyPair();
    const context = { workspace: "ws_1", user: "usr_bob" };
    // The helper's copy with the one known mark opens as wrapWorkspaceKey's does: it is a real copy.
    expect(unwrapMarkedWorkspaceKey(wrapWorkspaceKeyWithMark(key, bob.publicKey, context, 0x01), bob.privateKey, context)).toEqual({ key, valuesBound: true });
    const later = wrapWorkspaceKeyWithMark(key, bob.publicKey, context, 0x03);
    expect(isMarkedWrappedKey(later)).toBe(true);
    expect(() => unwrapMarkedWorkspaceKey(later, bob.privateKey, context)).toThrow("carries marks this version of citadel does not know: upgrade citadel");
    expect(() => unwrapWorkspaceKey(later, bob.privateKey, context)).toThrow("upgrade citadel");
    // Not for Bob at all: still the message of a copy that does not open.
    expect(() => unwrapMarkedWorkspaceKey(later, generateUserKeyPair().privateKey, context)).toThrow("not wrapped for your key pair");
  });
});

describe("values", () => {
  const context = { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD", version: 3, keyVersion: 1 };

  test("round trip, including empty and non-ASCII values; fresh nonce each time", () => {
    const key = newWorkspaceKey();
    for (const value of ["", "hunter2", "päss wörd ✓ 🔑", "x".repeat(10_000), "line1\nline2\0"]) {
      const ciphertext = encryptValue(key, value, context);
      expect(ciphertext.startsWith("c2.v.")).toBe(true);
      expect(isE2eeCiphertext(ciphertext)).toBe(true);
      expect([isVersionBound(ciphertext), e2eeValueVersion(ciphertext)]).toEqual([true, 3]);
      expect(decryptValue(key, ciphertext, context)).toBe(value);
    }
    expect(encryptValue(key, "same", context)).not.toBe(encryptValue(key, "same", context));
  });

  test("the length of a value's ciphertext is known from its plaintext's, so the server's limit is of the value itself (found in review)", () => {
    const key = newWorkspaceKey();
    for (const bytes of [0, 1, 2, 3, 16, 17, 100, 65_536]) expect(encryptValue(key, "x".repeat(bytes), context).length).toBe(e2eeCiphertextLength(bytes));
  });

  test("a ciphertext moved to another name, environment or workspace fails, as do another key and a flipped byte", () => {
    const key = newWorkspaceKey();
    const ciphertext = encryptValue(key, "hunter2", context);
    expect(() => decryptValue(key, ciphertext, { ...context, name: "API_KEY" })).toThrow("does not open");
    expect(() => decryptValue(key, ciphertext, { ...context, environment: "staging" })).toThrow("does not open");
    expect(() => decryptValue(key, ciphertext, { ...context, workspace: "ws_2" })).toThrow("does not open");
    expect(() => decryptValue(key, ciphertext, { ...context, environment: "pro", name: "dDB_PASSWORD" })).toThrow("does not open");
    expect(() => decryptValue(newWorkspaceKey(), ciphertext, context)).toThrow("does not open");
    for (const at of [16, 24, -1]) expect(() => decryptValue(key, flip(ciphertext, at), context)).toThrow("does not open");
    expect(() => decryptValue(key, flip(ciphertext, 4), context)).toThrow("refused"); // the header: it names no version it was opened as
    expect(() => decryptValue(key, "c2.v.AAAA", context)).toThrow("too short");
    expect(() => decryptValue(key, "c1.v.AAAA", context)).toThrow("too short");
    // Both formats named (found in review: the message named c2 alone).
    expect(() => decryptValue(key, "hunter2", context)).toThrow("not a value encrypted by citadel (c2.v.…, or c1.v.… from before values named their version)");
  });

  test("a value is bound to the version it was written as: served as another (an older value passed off as the current one), it is refused", () => {
    const key = newWorkspaceKey();
    const version1 = encryptValue(key, "the leaked password", { ...context, version: 1 });
    expect(decryptValue(key, version1, { ...context, version: 1 })).toBe("the leaked password");
    expect(() => decryptValue(key, version1, { ...context, version: 2 })).toThrow("the server served prod/DB_PASSWORD as version 2, but its value was written as version 1: refused");
    // Its version in the clear rewritten to the one served: the encryption binds the version, not the header alone.
    const relabelled = "c2.v." + Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from(version1.slice(5), "base64url").subarray(4)]).toString("base64url");
    expect(e2eeValueVersion(relabelled)).toBe(2);
    expect(() => decryptValue(key, relabelled, { ...context, version: 2 })).toThrow("does not open with this workspace key as prod/DB_PASSWORD version 2");
    expect(() => encryptValue(key, "v", { ...context, version: 0 })).toThrow("the value's version");
  });

  test("a value names the workspace key version it is encrypted with: opened as another, or with that number rewritten, it is refused (found in review)", () => {
    const key = newWorkspaceKey();
    const underKey1 = encryptValue(key, "v", context);
    expect(e2eeValueHeader(underKey1)).toEqual({ version: 3, keyVersion: 1 });
    expect(() => decryptValue(key, underKey1, { ...context, keyVersion: 2 })).toThrow("the server says prod/DB_PASSWORD version 3 is encrypted with version 2 of the workspace key, but its value names version 1: refused");
    const relabelled = "c2.v." + Buffer.concat([Buffer.from([0, 0, 0, 3, 0, 0, 0, 2]), Buffer.from(underKey1.slice(5), "base64url").subarray(8)]).toString("base64url");
    expect(() => decryptValue(key, relabelled, { ...context, keyVersion: 2 })).toThrow("does not open");
    expect(() => encryptValue(key, "v", { ...context, keyVersion: 0 })).toThrow("the workspace key's version");
  });

  test("a value written before values named their version still opens, as any version, and says it is not bound", () => {
    // Made by the format before (c1.v.), key 01 02 … 20, as a workspace's stored values are.
    const key = new Uint8Array(32).map((_, i) => i + 1);
    const unbound = "c1.v.-o0xMbINW3vgflUUqCISkg3JdPUlSERTvVGSgtalhvX7mWCoIgUo-XDwUs0jXtfK6KRfIFlGmhdqCCg5B61I2yir70zd";
    for (const version of [1, 7]) expect(decryptValue(key, unbound, { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD", version, keyVersion: 1 })).toBe("written before values named their version");
    expect([isE2eeCiphertext(unbound), isVersionBound(unbound), e2eeValueVersion(unbound)]).toEqual([true, false, null]);
    expect(() => decryptValue(key, unbound, { workspace: "ws_1", environment: "prod", name: "API_KEY", version: 1, keyVersion: 1 })).toThrow("does not open with this workspace key as prod/API_KEY:");
    // What the tests make of that format is that format.
    const made = encryptUnboundValue(key, "made by the tests", { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD" });
    expect(decryptValue(key, made, { workspace: "ws_1", environment: "prod", name: "DB_PASSWORD", version: 2, keyVersion: 1 })).toBe("made by the tests");
  });

  test("isE2eeCiphertext tells the format apart from plaintext", () => {
    const ok = encryptValue(newWorkspaceKey(), "vv", context); // 34 bytes: its last character carries bits that must be zero
    expect(isE2eeCiphertext(ok)).toBe(true);
    for (const s of ["", "hunter2", "c2.v.", "c1.v.", "c2.v.AAAA", "c1.v.AAAA", "c2.v.!!!!" + ok.slice(9), ok + "=", ok + "\n", "C2.V." + ok.slice(5), "c3.v." + ok.slice(5), "c1.wk." + ok.slice(5), ok.slice(0, -1) + "_", " " + ok]) {
      expect(isE2eeCiphertext(s)).toBe(false);
    }
    expect(isE2eeCiphertext(undefined as unknown as string)).toBe(false);
  });
});
