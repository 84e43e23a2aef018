import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { Keyring } from "../../../src/crypto/keyring.ts";
import { generateRootKey, rootKeyId, rootKeyVerifier } from "../../../src/crypto/root-key.ts";
import { Seal, UnsealError } from "../../../src/crypto/seal.ts";
import { encodeShare, splitSecret } from "../../../src/crypto/shamir.ts";
import { SealedError } from "../../../src/errors.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";

function shamirInstance() {
  const db = new Database(":memory:", { strict: true });
  migrate(db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const root = generateRootKey();
  const id = Keyring.initialize(db, root, "shamir", 1000, { shares: 5, threshold: 3 });
  const shares = splitSecret(root, 5, 3).map((s) => encodeShare(id, s));
  return { db, root, id, shares, seal: new Seal(db) };
}

describe("seal", () => {
  test("starts sealed: the keyring is refused with SealedError", () => {
    const { seal } = shamirInstance();
    expect(seal.sealed).toBe(true);
    expect(() => seal.keyring()).toThrow(SealedError);
    expect(seal.status()).toMatchObject({ sealed: true, initialized: true, method: "shamir", threshold: 3, progress: 0 });
  });

  test("takes shares one at a time until the threshold", () => {
    const { seal, shares, id } = shamirInstance();
    expect(seal.submitShare(shares[4]!).status.progress).toBe(1);
    expect(seal.submitShare(shares[1]!).unsealed).toBe(false);
    const done = seal.submitShare(shares[2]!);
    expect(done.unsealed).toBe(true);
    expect(seal.sealed).toBe(false);
    expect(seal.keyring().rootId).toBe(id);
    seal.seal();
    expect(seal.sealed).toBe(true);
  });

  test("sealing tells every listener at once, even when one fails; a listener can stop listening", () => {
    const { seal, shares } = shamirInstance();
    for (const share of shares.slice(0, 3)) seal.submitShare(share);
    const heard: string[] = [];
    seal.onSeal(() => heard.push("dns"));
    seal.onSeal(() => {
      throw new Error("broken listener");
    });
    const stop = seal.onSeal(() => heard.push("mesh"));
    expect(() => seal.seal()).toThrow("sealed, but something failed to drop what it had decrypted");
    expect(seal.sealed).toBe(true); // sealed all the same
    expect(heard).toEqual(["dns", "mesh"]);
    stop();
    expect(() => seal.seal()).toThrow(AggregateError);
    expect(heard).toEqual(["dns", "mesh", "dns"]);
  });

  test("a duplicate share, a mistyped share, or a share of another key is refused without counting", () => {
    const { seal, shares } = shamirInstance();
    seal.submitShare(shares[0]!);
    expect(() => seal.submitShare(shares[0]!)).toThrow(/already given/);
    expect(() => seal.submitShare(shares[1]!.replace(/.$/, (c) => (c === "0" ? "1" : "0")))).toThrow(/checksum/);
    const other = encodeShare("deadbeef", splitSecret(generateRootKey(), 3, 2)[0]!);
    expect(() => seal.submitShare(other)).toThrow(/does not unseal this Citadel/);
    expect(seal.status().progress).toBe(1);
  });

  test("shares that rebuild a wrong key never unseal, and the attempt starts over", () => {
    const { seal, id } = shamirInstance();
    // Well-formed shares with the right key id, but of another secret.
    const forged = splitSecret(generateRootKey(), 5, 3).map((s) => encodeShare(id, s));
    seal.submitShare(forged[0]!);
    seal.submitShare(forged[1]!);
    expect(() => seal.submitShare(forged[2]!)).toThrow(UnsealError);
    expect(() => seal.submitShare(forged[2]!)).not.toThrow(/already/); // progress was reset
    expect(seal.sealed).toBe(true);
  });

  test("unsealing with a key checks it against the verifier", () => {
    const { seal, root, db } = shamirInstance();
    expect(() => seal.unsealWithKey(generateRootKey())).toThrow(/not the root key/);
    expect(seal.unsealWithKey(root).unsealed).toBe(true);
    const stored = db.query<{ verifier: Uint8Array }, []>("SELECT verifier FROM root_keys").get()!;
    expect(Buffer.from(stored.verifier).equals(rootKeyVerifier(root))).toBe(true);
    expect(rootKeyId(stored.verifier)).toBe(seal.keyring().rootId);
  });
});
