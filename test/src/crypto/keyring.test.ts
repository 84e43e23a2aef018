import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { DecryptionError } from "../../../src/crypto/aead.ts";
import { KeyDestroyedError, Keyring, onDekReplaced, promoteRootKey, unsealableRoots, type ReplacedDek } from "../../../src/crypto/keyring.ts";
import { generateRootKey } from "../../../src/crypto/root-key.ts";
import { SealedError } from "../../../src/errors.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";
import { ReadMemo } from "../../../src/store/read-memo.ts";

function setup() {
  const db = new Database(":memory:", { strict: true });
  db.run("PRAGMA foreign_keys = ON");
  migrate(db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const root = generateRootKey();
  Keyring.initialize(db, root, "key_file", 1000);
  return { db, root, keyring: new Keyring(db, Buffer.from(root), () => 2000) };
}

describe("keyring", () => {
  test("encrypts per owner and context; the database never holds a plaintext key", () => {
    const { db, root, keyring } = setup();
    const ct = keyring.encrypt(db, "workspace/ws_1/secrets", "secrets/s_1/v1", "correct horse");
    expect(keyring.decrypt("workspace/ws_1/secrets", "secrets/s_1/v1", ct).toString()).toBe("correct horse");
    const dump = Buffer.from(db.serialize());
    expect(dump.includes(root)).toBe(false);
    expect(dump.includes(Buffer.from(root.toString("hex")))).toBe(false);
    expect(dump.includes(Buffer.from("correct horse"))).toBe(false);
  });

  test("a data key's row remembered for decryptions is frozen: every request that finds it shares it", () => {
    const { db, root } = setup();
    const remembered: unknown[] = [];
    const memo = new (class extends ReadMemo {
      override get<T>(kind: string, key: string, read: () => T): T {
        const answer = super.get(kind, key, read);
        remembered.push(answer);
        return answer;
      }
    })({ changeStamp: () => 1 });
    const keyring = new Keyring(db, Buffer.from(root), () => 2000, memo);
    const ct = keyring.encrypt(db, "o", "c", "kept");
    expect(keyring.decrypt("o", "c", ct).toString()).toBe("kept");
    expect(keyring.decrypt("o", "c", ct).toString()).toBe("kept");
    expect(remembered.length).toBe(2);
    expect(remembered[1]).toBe(remembered[0]);
    expect(Object.isFrozen(remembered[0])).toBe(true);
  });

  test("AAD binding: two rows' ciphertexts swapped fail to decrypt, loudly", () => {
    const { db, keyring } = setup();
    const a = keyring.encrypt(db, "workspace/ws_1/secrets", "secrets/row_a", "value a");
    const b = keyring.encrypt(db, "workspace/ws_1/secrets", "secrets/row_b", "value b");
    expect(() => keyring.decrypt("workspace/ws_1/secrets", "secrets/row_a", b)).toThrow(DecryptionError);
    expect(() => keyring.decrypt("workspace/ws_1/secrets", "secrets/row_b", a)).toThrow(DecryptionError);
    // ...and a ciphertext moved to another owner fails too
    expect(() => keyring.decrypt("workspace/ws_2/secrets", "secrets/row_a", a)).toThrow();
  });

  test("wiped (sealed), it refuses with SealedError rather than use an all-zero key (found in review: a DecryptionError, a 500)", () => {
    const { db, keyring } = setup();
    const ct = keyring.encrypt(db, "o", "c", "x");
    keyring.wipe();
    expect(() => keyring.decrypt("o", "c", ct)).toThrow(SealedError);
    expect(() => keyring.encrypt(db, "o2", "c", "x")).toThrow(SealedError);
    expect(() => keyring.rotateKek(db, 3000)).toThrow(SealedError);
    expect(() => keyring.deriveFromRootKey(new Uint8Array(16), "backup")).toThrow(SealedError);
  });

  test("a wrong root key opens nothing", () => {
    const { db, keyring } = setup();
    const ct = keyring.encrypt(db, "o", "c", "x");
    const impostor = new Keyring(db, generateRootKey());
    expect(() => impostor.decrypt("o", "c", ct)).toThrow();
  });

  test("destroying an owner's keys makes its values unreadable for good; new values use a new key", () => {
    const { db, keyring } = setup();
    const old = keyring.encrypt(db, "audit-subject/u_1", "e1", "alice@example.org");
    expect(keyring.destroyOwner(db, "audit-subject/u_1", 3000)).toBe(1);
    expect(() => keyring.decrypt("audit-subject/u_1", "e1", old)).toThrow(KeyDestroyedError);
    const fresh = keyring.encrypt(db, "audit-subject/u_1", "e2", "new data");
    expect(keyring.decrypt("audit-subject/u_1", "e2", fresh).toString()).toBe("new data");
    expect(() => keyring.decrypt("audit-subject/u_1", "e1", old)).toThrow(KeyDestroyedError);
  });

  test("DEK rotation: old values stay readable, new ones use the new version", () => {
    const { db, keyring } = setup();
    const v1 = keyring.encrypt(db, "o", "c1", "one");
    expect(keyring.rotateDek(db, "o", 3000)).toBe(2);
    const v2 = keyring.encrypt(db, "o", "c2", "two");
    expect([v1[4], v2[4]]).toEqual([1, 2]);
    expect(keyring.decrypt("o", "c1", v1).toString()).toBe("one");
    expect(keyring.decrypt("o", "c2", v2).toString()).toBe("two");
  });

  test("KEK rotation re-wraps every DEK; an interrupted rotation stays readable and resumes", () => {
    const { db, keyring } = setup();
    const values = Array.from({ length: 25 }, (_, i) => ({ owner: `o${i}`, ct: keyring.encrypt(db, `o${i}`, "c", `v${i}`) }));
    expect(keyring.rotateKek(db, 3000)).toBe(2);
    expect(keyring.rewrapDeks(db, 10, 3000).moved).toBe(10); // "killed" after one batch
    for (const v of values) expect(keyring.decrypt(v.owner, "c", v.ct).toString()).toBe(`v${v.owner.slice(1)}`);
    expect(keyring.status().deks_to_rewrap).toBe(15);
    while (keyring.rewrapDeks(db, 10, 3000).moved > 0);
    const status = keyring.status();
    expect(status.deks_to_rewrap).toBe(0);
    expect(status.keks.find((k) => k.version === 1)!.retired_at).toBe(3000);
    expect(db.query("SELECT count(*) AS n FROM kek_wraps WHERE kek_version = 1").get()).toEqual({ n: 0 }); // old KEK erased
    for (const v of values) expect(keyring.decrypt(v.owner, "c", v.ct).toString()).toBe(`v${v.owner.slice(1)}`);
  });

  test("after a KEK rotation no copy of a key outlives its cache entry: a DEK's stale copy and a retired KEK are overwritten (found in review)", () => {
    const { db, keyring } = setup();
    const ct = keyring.encrypt(db, "o", "c", "kept");
    type Cache = Map<string | number, { key: Buffer }>;
    const dekCache = (keyring as unknown as { dekCache: Cache }).dekCache;
    const kekCache = (keyring as unknown as { kekCache: Cache }).kekCache;
    const staleDek = [...dekCache.values()][0]!.key;
    const oldKek = kekCache.get(1)!.key;
    const dekBytes = Buffer.from(staleDek);
    keyring.rotateKek(db, 3000);
    while (keyring.rewrapDeks(db, 10, 3000).moved > 0);
    expect(kekCache.has(1)).toBe(false);
    expect(oldKek.every((b) => b === 0)).toBe(true);
    expect(keyring.decrypt("o", "c", ct).toString()).toBe("kept"); // unwrapped again under KEK 2
    expect(staleDek.every((b) => b === 0)).toBe(true);
    expect([...dekCache.values()][0]!.key.equals(dekBytes)).toBe(true); // the same DEK, one live copy
  });

  test("a DEK made in a write that rolled back is overwritten when the next write makes that version again", () => {
    const { db, keyring } = setup();
    expect(() =>
      db.transaction(() => {
        keyring.encrypt(db, "o", "c", "lost");
        throw new Error("rolled back");
      })(),
    ).toThrow("rolled back");
    const dekCache = (keyring as unknown as { dekCache: Map<string, { key: Buffer }> }).dekCache;
    const orphan = [...dekCache.values()][0]!.key;
    expect(orphan.some((b) => b !== 0)).toBe(true);
    const ct = keyring.encrypt(db, "o", "c", "kept");
    expect(orphan.every((b) => b === 0)).toBe(true);
    expect(keyring.decrypt("o", "c", ct).toString()).toBe("kept");
  });

  test("rekey: both roots unseal while pending; after promotion only the new one", () => {
    const { db, root, keyring } = setup();
    const ct = keyring.encrypt(db, "o", "c", "kept");
    const newRoot = generateRootKey();
    const newId = keyring.beginRekey(db, newRoot, "key_file", 3000);
    expect(unsealableRoots(db).map((r) => r.state).sort()).toEqual(["active", "pending"]);
    expect(new Keyring(db, Buffer.from(root)).decrypt("o", "c", ct).toString()).toBe("kept");
    expect(new Keyring(db, Buffer.from(newRoot)).decrypt("o", "c", ct).toString()).toBe("kept");
    expect(() => keyring.rotateKek(db, 3000)).toThrow(/pending/);
    promoteRootKey(db, newId);
    expect(unsealableRoots(db).map((r) => r.id)).toEqual([newId]);
    expect(new Keyring(db, Buffer.from(newRoot)).decrypt("o", "c", ct).toString()).toBe("kept");
    expect(() => new Keyring(db, Buffer.from(root)).decrypt("o", "c", ct)).toThrow(/not wrapped/);
  });
});

describe("an owner whose newest data key does not unwrap (found in review: every write for it failed, 500, for good)", () => {
  /** Flips the last byte of the wrapped bytes in `table`'s row matching `where`. */
  function damage(db: Database, table: "kek_wraps" | "deks", where: string) {
    const { wrapped } = db.query(`SELECT wrapped FROM ${table} WHERE ${where}`).get() as { wrapped: Uint8Array };
    const altered = Buffer.from(wrapped);
    altered[altered.length - 1]! ^= 1;
    db.run(`UPDATE ${table} SET wrapped = ? WHERE ${where}`, [altered]);
  }
  const deksOf = (db: Database, owner: string) => db.query("SELECT version, kek_version FROM deks WHERE owner = ? ORDER BY version").all(owner);

  test("its KEK does not open: a write makes a new version under the active KEK, said once; the old value reads as damaged", () => {
    const { db, root, keyring } = setup();
    const old = keyring.encrypt(db, "x", "c1", "old");
    keyring.rotateKek(db, 3000); // KEK v2; x's key stays under v1 (a rotation not re-wrapped)
    damage(db, "kek_wraps", "kek_version = 1");
    const replaced: ReplacedDek[] = [];
    const stop = onDekReplaced(db, (r) => replaced.push(r));
    try {
      const fresh = new Keyring(db, Buffer.from(root)); // as after a restart: nothing cached
      const ct = fresh.encrypt(db, "x", "c2", "new");
      expect(fresh.decrypt("x", "c2", ct).toString()).toBe("new");
      expect(fresh.encrypt(db, "x", "c3", "newer")).toBeDefined(); // the new version serves: no second replacement
      expect(deksOf(db, "x")).toEqual([{ version: 1, kek_version: 1 }, { version: 2, kek_version: 2 }]);
      expect(() => fresh.decrypt("x", "c1", old)).toThrow(DecryptionError);
      expect(replaced).toEqual([{ owner: "x", version: 2, replaced: { version: 1, kek_version: 1 }, cause: `KEK v1 does not open with root key ${fresh.rootId}` }]);
    } finally {
      stop();
    }
  });

  test("its own wrapped bytes altered, or its KEK without a wrap: likewise, each cause named", () => {
    const { db, root, keyring } = setup();
    keyring.encrypt(db, "a", "c", "x");
    damage(db, "deks", "owner = 'a'");
    keyring.encrypt(db, "b", "c", "x");
    keyring.rotateKek(db, 3000);
    db.run("DELETE FROM kek_wraps WHERE kek_version = 1");
    const replaced: ReplacedDek[] = [];
    const stop = onDekReplaced(db, (r) => replaced.push(r));
    try {
      const fresh = new Keyring(db, Buffer.from(root));
      fresh.encrypt(db, "a", "c2", "y");
      fresh.encrypt(db, "b", "c2", "y");
      expect(replaced.map((r) => [r.owner, r.version, r.cause])).toEqual([
        ["a", 2, "KEK v1 has no wrap for root key " + fresh.rootId],
        ["b", 2, "KEK v1 has no wrap for root key " + fresh.rootId],
      ]);
    } finally {
      stop();
    }
  });

  test("a data key whose own bytes are altered, under a KEK that opens, is named as such", () => {
    const { db, root, keyring } = setup();
    keyring.encrypt(db, "a", "c", "x");
    damage(db, "deks", "owner = 'a'");
    const replaced: ReplacedDek[] = [];
    const stop = onDekReplaced(db, (r) => replaced.push(r));
    try {
      const fresh = new Keyring(db, Buffer.from(root));
      fresh.encrypt(db, "a", "c2", "y");
      expect(replaced.map((r) => [r.owner, r.version, r.replaced.kek_version, r.cause])).toEqual([["a", 2, 1, "its wrapped bytes do not open (damaged or altered)"]]);
    } finally {
      stop();
    }
  });

  test("counted damaged once a re-wrap meets it: at once under an older KEK, after the next rotation under the active one (found in review: the docs said counted, and status showed 0)", () => {
    const { db, root, keyring } = setup();
    keyring.encrypt(db, "old", "c", "x");
    keyring.rotateKek(db, 3000); // KEK v2; old's key stays under v1 (a rotation not re-wrapped)
    damage(db, "kek_wraps", "kek_version = 1");
    keyring.encrypt(db, "active", "c", "x");
    damage(db, "deks", "owner = 'active'");
    const fresh = new Keyring(db, Buffer.from(root));
    fresh.encrypt(db, "old", "c2", "y");
    fresh.encrypt(db, "active", "c2", "y");
    expect(fresh.status().deks_damaged).toBe(1); // old's v1, under KEK v1 that does not open; active's v1 not yet
    fresh.rotateKek(db, 4000);
    fresh.rewrapDeks(db, 500, 4000);
    expect(fresh.status().deks_damaged).toBe(2);
  });

  test("a wiped keyring still refuses (SealedError), and an active KEK that does not open still fails: nothing is made", () => {
    const { db, root, keyring } = setup();
    keyring.encrypt(db, "x", "c", "v");
    damage(db, "kek_wraps", "kek_version = 1");
    const fresh = new Keyring(db, Buffer.from(root));
    expect(() => fresh.encrypt(db, "x", "c2", "v")).toThrow(DecryptionError);
    fresh.wipe();
    expect(() => fresh.encrypt(db, "x", "c2", "v")).toThrow(SealedError);
    expect(deksOf(db, "x")).toEqual([{ version: 1, kek_version: 1 }]);
  });
});
