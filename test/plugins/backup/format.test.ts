/**
 * The backup file format: round trips at the chunk boundaries, and every kind of damage —
 * any flipped byte, truncation, extra bytes, reordered chunks, a wrong key or passphrase —
 * fails with a message that says what is wrong.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OWASP_MINIMUM } from "../../../src/auth/password.ts";
import { formatRootKey, generateRootKey, parseRootKey, rootKeyId, rootKeyVerifier } from "../../../src/crypto/root-key.ts";
import { encodeShare, splitSecret } from "../../../src/crypto/shamir.ts";
import { InvalidError, UnavailableError } from "../../../src/errors.ts";
import { BackupError } from "../../../plugins/backup/errors.ts";
import { FIXED_HEADER_BYTES, hashFile, MAGIC, openBackup, readBackupHeader, sealBackup } from "../../../plugins/backup/format.ts";
import { newPassphraseBackupKeys, newRootKeyBackupKeys, openingKeys, rootKeyFromShares, type BackupKeys, type KeySupply } from "../../../plugins/backup/keys.ts";
import type { Manifest } from "../../../plugins/backup/manifest.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-backup-format-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const path = (name: string) => join(dir, `${counter++}-${name}`);

const CHUNK = 1024;
const rootKey = generateRootKey();

async function manifestFor(plain: string): Promise<Manifest> {
  return {
    created_at: "2026-06-01T12:00:00.000Z",
    reason: "on_demand",
    citadel: { version: "1.2.3", commit: "abc1234" },
    instance_id: "inst-1",
    root_key_id: rootKeyId(rootKeyVerifier(rootKey)),
    database: await hashFile(plain),
    migrations: { kernel: "0001_instance" },
    audit_head: { seq: 7, hash: "ab".repeat(32) },
  };
}

/** A backup of `size` random bytes; returns the plaintext and the backup's path. */
async function backupOf(size: number, keys: BackupKeys = newRootKeyBackupKeys(rootKey)) {
  const plain = path("plain");
  const data = randomBytes(size);
  writeFileSync(plain, data);
  const file = path("backup");
  await sealBackup(plain, file, keys, await manifestFor(plain), CHUNK);
  return { data, file };
}

async function failure(file: string, supply: KeySupply = { rootKey }): Promise<string> {
  try {
    await openBackup(file, supply);
  } catch (error) {
    expect(error).toBeInstanceOf(BackupError);
    return (error as Error).message;
  }
  throw new Error("the damaged backup opened");
}

describe("round trip", () => {
  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5000]) {
    test(`${size} bytes (chunks of ${CHUNK}) come back exactly, mode 0600`, async () => {
      const { data, file } = await backupOf(size);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const out = path("out");
      const opened = await openBackup(file, { rootKey }, out);
      expect(Buffer.compare(readFileSync(out), data)).toBe(0);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      expect(opened.manifest.database.bytes).toBe(size);
      // Every chunk but the last is full; the last (possibly empty) is sealed as final.
      const chunks = Math.floor(size / CHUNK) + 1;
      expect(statSync(file).size).toBe(FIXED_HEADER_BYTES + opened.header.authenticated.length - FIXED_HEADER_BYTES + 16 + size + 16 * chunks);
    });
  }

  test("the file starts with the magic, and the manifest reads without a key", async () => {
    const { file } = await backupOf(2000);
    expect(readFileSync(file).subarray(0, 8).equals(MAGIC)).toBe(true);
    const header = await readBackupHeader(file);
    expect(header.version).toBe(1);
    expect(header.chunkBytes).toBe(CHUNK);
    expect(header.derivation).toMatchObject({ kind: "root_key", rootKeyId: rootKeyId(rootKeyVerifier(rootKey)) });
    expect(header.manifest).toMatchObject({ audit_head: { seq: 7 }, citadel: { version: "1.2.3" }, database: { bytes: 2000 } });
    // ... and it is in the file in clear, where an operator (or citadel doctor) can read it.
    expect(readFileSync(file).toString("latin1")).toContain('"audit_head":{"seq":7');
  });

  test("two backups of the same data share no key material: fresh salt and nonce prefix each time", async () => {
    const a = await readBackupHeader((await backupOf(100)).file);
    const b = await readBackupHeader((await backupOf(100)).file);
    expect(a.derivation.salt.equals(b.derivation.salt)).toBe(false);
    expect(a.noncePrefix.equals(b.noncePrefix)).toBe(false);
    expect(a.keyCheck.equals(b.keyCheck)).toBe(false);
  });

  test("a file that changes between hashing and encrypting is refused: unavailable (the API's 503), worth another try", async () => {
    const plain = path("plain");
    writeFileSync(plain, randomBytes(3000));
    const manifest = await manifestFor(plain);
    writeFileSync(plain, randomBytes(3000));
    const error = await sealBackup(plain, path("backup"), newRootKeyBackupKeys(rootKey), manifest, CHUNK).catch((e) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error.message).toBe("the snapshot changed while it was being encrypted; try again");
  });
});

describe("damage is detected", () => {
  test("every single flipped byte, anywhere in the file, makes it fail", async () => {
    const { file } = await backupOf(2 * CHUNK + 300);
    const original = readFileSync(file);
    const messages = new Set<string>();
    for (let offset = 0; offset < original.length; offset++) {
      const damaged = Buffer.from(original);
      damaged[offset]! ^= 0x01;
      const copy = path("flipped");
      writeFileSync(copy, damaged);
      messages.add((await failure(copy)).replace(/\d+/g, "N"));
      rmSync(copy);
    }
    // Each region fails with its own reason (a sample: header, manifest, chunks).
    const all = [...messages].join("\n");
    expect(all).toContain("is not a Citadel backup");
    expect(all).toContain("format version N");
    expect(all).toContain("the backup's header or manifest was altered (it fails authentication)");
    expect(all).toContain("the root key does not open this backup: its header's key parameters were altered");
    expect(all).toContain("chunk N of N fails authentication");
  });

  test("a flipped byte in the header, the manifest, each chunk: the message names the place", async () => {
    const { file } = await backupOf(2 * CHUNK + 300);
    const original = readFileSync(file);
    const header = await readBackupHeader(file);
    const bodyStart = header.authenticated.length + 16;
    const flipAt = async (offset: number) => {
      const damaged = Buffer.from(original);
      damaged[offset]! ^= 0x80;
      const copy = path("flipped");
      writeFileSync(copy, damaged);
      return failure(copy);
    };
    expect(await flipAt(64)).toBe("the backup's header or manifest was altered (it fails authentication)"); // nonce prefix
    expect(await flipAt(FIXED_HEADER_BYTES + 20)).toMatch(/manifest (is not valid JSON|is malformed)|header or manifest was altered/);
    expect(await flipAt(bodyStart - 1)).toBe("the backup's header or manifest was altered (it fails authentication)"); // the header tag
    expect(await flipAt(bodyStart + 5)).toStartWith("chunk 1 of 3 fails authentication");
    expect(await flipAt(bodyStart + CHUNK + 16 + 5)).toStartWith("chunk 2 of 3 fails authentication");
    expect(await flipAt(original.length - 1)).toStartWith("chunk 3 of 3 fails authentication");
  });

  test("truncation anywhere, and bytes appended, are reported as such", async () => {
    const { file } = await backupOf(2 * CHUNK);
    const original = readFileSync(file);
    const header = await readBackupHeader(file);
    const bodyStart = header.authenticated.length + 16;
    const cut = async (length: number) => {
      const copy = path("cut");
      writeFileSync(copy, original.subarray(0, length));
      return failure(copy);
    };
    expect(await cut(0)).toContain("is not a Citadel backup");
    expect(await cut(50)).toBe("the backup is truncated inside its header");
    expect(await cut(FIXED_HEADER_BYTES + 3)).toBe("the backup is truncated inside its manifest");
    // At a chunk boundary (the empty final chunk is gone) and inside a chunk.
    expect(await cut(original.length - 16)).toBe(`the backup is truncated: 16 of its ${original.length} bytes are missing`);
    expect(await cut(bodyStart + CHUNK + 16)).toMatch(/^the backup is truncated: \d+ of its \d+ bytes are missing$/);
    expect(await cut(original.length - 1)).toMatch(/^the backup is truncated: 1 of/);
    const longer = path("longer");
    writeFileSync(longer, Buffer.concat([original, Buffer.from("x")]));
    expect(await failure(longer)).toBe("the backup has 1 unexpected bytes after its end");
  });

  test("reordered or repeated chunks fail at the first one out of place", async () => {
    const { file } = await backupOf(3 * CHUNK + 10);
    const original = readFileSync(file);
    const header = await readBackupHeader(file);
    const bodyStart = header.authenticated.length + 16;
    const sealed = CHUNK + 16;
    const chunk = (i: number) => original.subarray(bodyStart + i * sealed, bodyStart + (i + 1) * sealed);
    const head = original.subarray(0, bodyStart);
    const tail = original.subarray(bodyStart + 3 * sealed);
    const swapped = path("swapped");
    writeFileSync(swapped, Buffer.concat([head, chunk(1), chunk(0), chunk(2), tail]));
    expect(await failure(swapped)).toStartWith("chunk 1 of 4 fails authentication");
    const repeated = path("repeated");
    writeFileSync(repeated, Buffer.concat([head, chunk(0), chunk(1), chunk(1), tail]));
    expect(await failure(repeated)).toStartWith("chunk 3 of 4 fails authentication");
  });

  test("chunks of another backup (same root key) do not fit", async () => {
    const a = await backupOf(2 * CHUNK);
    const b = await backupOf(2 * CHUNK);
    const bytesA = readFileSync(a.file);
    const bytesB = readFileSync(b.file);
    const bodyA = (await readBackupHeader(a.file)).authenticated.length + 16;
    const bodyB = (await readBackupHeader(b.file)).authenticated.length + 16;
    const spliced = path("spliced");
    writeFileSync(spliced, Buffer.concat([bytesA.subarray(0, bodyA), bytesB.subarray(bodyB)]));
    expect(await failure(spliced)).toStartWith("chunk 1 of 3 fails authentication");
  });
});

describe("keys", () => {
  test("the key is derived from the root key: another root key is named, not guessed at", async () => {
    const { file } = await backupOf(500);
    const other = generateRootKey();
    expect(await failure(file, { rootKey: other })).toBe(
      `this backup is encrypted under root key ${rootKeyId(rootKeyVerifier(rootKey))}, but the key given is ${rootKeyId(rootKeyVerifier(other))}`,
    );
    expect(await failure(file, {})).toStartWith(`this backup is encrypted under root key ${rootKeyId(rootKeyVerifier(rootKey))}: give that key`);
  });

  test("root-key derivation: HKDF with the per-backup salt; the same key and salt give the same keys, never the root key itself", async () => {
    const keys = newRootKeyBackupKeys(rootKey);
    const again = await openingKeys(keys.derivation, keys.check, { rootKey });
    expect(again.encryption.equals(keys.encryption)).toBe(true);
    expect(keys.encryption.equals(rootKey)).toBe(false);
    expect(keys.encryption).toHaveLength(32);
    const otherSalt = newRootKeyBackupKeys(rootKey);
    expect(otherSalt.encryption.equals(keys.encryption)).toBe(false);
  });

  test("a new machine opens a backup with nothing but the backup and the root key file (or its shares)", async () => {
    const { data, file } = await backupOf(1500);
    const fromFile = parseRootKey(Buffer.from(formatRootKey(rootKey)), "key file");
    const out = path("out");
    await openBackup(file, { rootKey: fromFile }, out);
    expect(readFileSync(out).equals(data)).toBe(true);

    const id = rootKeyId(rootKeyVerifier(rootKey));
    const shares = splitSecret(rootKey, 5, 3).map((s) => encodeShare(id, s));
    const rebuilt = rootKeyFromShares(`# keepers 1, 3, 5\n${shares[0]}\n\n${shares[2]}\n${shares[4]}\n`);
    await openBackup(file, { rootKey: rebuilt });
    expect(() => rootKeyFromShares(`${shares[0]}\n${shares[1]}\n`)).toThrow(`the shares do not rebuild root key ${id}`);
    expect(() => rootKeyFromShares(`${shares[0]}\n${shares[1]}x\n`)).toThrow(/key share 2: not a Citadel key share/);
  });

  test("a passphrase backup opens with its passphrase only; a wrong one is told apart from tampering", async () => {
    const passphrase = "correct horse battery staple";
    const keys = await newPassphraseBackupKeys(passphrase, OWASP_MINIMUM);
    const { data, file } = await backupOf(2500, keys);
    const header = await readBackupHeader(file);
    expect(header.derivation).toMatchObject({ kind: "passphrase", argon2: OWASP_MINIMUM });
    const out = path("out");
    await openBackup(file, { passphrase }, out);
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(await failure(file, { passphrase: "correct horse battery stapler" })).toBe("wrong passphrase (or the header's key parameters were altered)");
    expect(await failure(file, { rootKey })).toBe("this backup is encrypted with a passphrase: give it (--passphrase-file)");
  });

  test("a passphrase is normalized (NFC) and must be long enough", async () => {
    const keys = await newPassphraseBackupKeys("caf\u00e9 au lait s'il vous pla\u00eet", OWASP_MINIMUM);
    const { file } = await backupOf(10, keys);
    await openBackup(file, { passphrase: "cafe\u0301 au lait s'il vous pla\u00eet" });
    await expect(newPassphraseBackupKeys("short", OWASP_MINIMUM)).rejects.toThrow(new InvalidError("a backup passphrase needs at least 12 characters", "passphrase"));
  });

  test("a header that asks for absurd argon2id parameters is refused before any work", async () => {
    const keys = await newPassphraseBackupKeys("a long enough passphrase", OWASP_MINIMUM);
    const { file } = await backupOf(10, keys);
    const bytes = readFileSync(file);
    bytes.writeUInt32BE(64 * 1024 * 1024, 20); // 64 GiB of memory
    const hostile = path("hostile");
    writeFileSync(hostile, bytes);
    expect(await failure(hostile, { passphrase: "a long enough passphrase" })).toBe("the backup asks for argon2id parameters out of bounds (m=67108864 KiB, t=2, p=1)");
  });
});
