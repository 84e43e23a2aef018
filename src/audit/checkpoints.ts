/**
 * Signed checkpoints: every N events or T seconds, the head of the chain (sequence number
 * and hash) is signed with an Ed25519 key whose private half is kept encrypted by the
 * keyring. An operator exports a checkpoint to a file kept elsewhere; `citadel audit verify
 * --checkpoint FILE` then proves the log was neither rewritten nor truncated before it.
 */
import type { Database } from "bun:sqlite";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import type { Keyring } from "../crypto/keyring.ts";

export interface ExportedCheckpoint {
  format: "citadel-audit-checkpoint-v1";
  seq: number;
  /** Hex SHA-256 of the chain at `seq`. */
  hash: string;
  time: number;
  key_id: string;
  /** Raw 32-byte Ed25519 public key, base64. */
  public_key: string;
  /** Ed25519 signature of checkpointMessage(seq, hash, time), base64. */
  signature: string;
}

const SIGNING_OWNER = "audit/checkpoint-signing";
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** What a checkpoint signature covers. */
export function checkpointMessage(seq: number, hash: Uint8Array, time: number): Buffer {
  return Buffer.from(`citadel-audit-checkpoint:v1:${seq}:${Buffer.from(hash).toString("hex")}:${time}`);
}

export function verifyCheckpointSignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

export interface CheckpointRecord {
  seq: number;
  hash: string;
  time: number;
  key_id: string;
}

/** Signs the current head of the chain, unless it is already signed. Returns the checkpoint or null. */
export function createCheckpoint(tx: Database, keyring: Keyring, now: number): CheckpointRecord | null {
  const head = tx.query<{ seq: number; hash: Uint8Array }, []>("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get();
  if (!head) return null;
  const last = tx.query<{ seq: number }, []>("SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").get();
  if (last && last.seq >= head.seq) return null;
  const signer = signingKey(tx, keyring, now);
  const signature = sign(null, checkpointMessage(head.seq, head.hash, now), signer.privateKey);
  tx.query("INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)").run(head.seq, head.hash, now, signer.id, signature);
  return { seq: head.seq, hash: Buffer.from(head.hash).toString("hex"), time: now, key_id: signer.id };
}

/**
 * True when the signing key `id` is one this Citadel made: its private half opens with the
 * keyring and matches `publicKey`. Someone who can write the database but holds no root key
 * can add a key pair and sign a rewritten log with it, but cannot make this check pass.
 */
export function isOwnSigningKey(db: Database, keyring: Keyring, id: string, publicKey: Uint8Array): boolean {
  const row = db.query<{ private_key: Uint8Array }, [string]>("SELECT private_key FROM audit_signing_keys WHERE id = ?").get(id);
  if (!row) return false;
  try {
    const der = keyring.decrypt(SIGNING_OWNER, `audit_signing_keys/${id}`, row.private_key);
    const raw = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" }).subarray(ED25519_SPKI_PREFIX.length);
    return Buffer.from(raw).equals(Buffer.from(publicKey));
  } catch {
    return false;
  }
}

/** The signing key, made on first use. The private key is stored encrypted by the keyring. */
function signingKey(tx: Database, keyring: Keyring, now: number): { id: string; privateKey: KeyObject } {
  const row = tx.query<{ id: string; private_key: Uint8Array }, []>("SELECT id, private_key FROM audit_signing_keys ORDER BY created_at DESC LIMIT 1").get();
  if (row) {
    const der = keyring.decrypt(SIGNING_OWNER, `audit_signing_keys/${row.id}`, row.private_key);
    return { id: row.id, privateKey: createPrivateKey({ key: der, format: "der", type: "pkcs8" }) };
  }
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(ED25519_SPKI_PREFIX.length);
  const id = signingKeyId(raw);
  const encrypted = keyring.encrypt(tx, SIGNING_OWNER, `audit_signing_keys/${id}`, privateKey.export({ format: "der", type: "pkcs8" }));
  tx.query("INSERT INTO audit_signing_keys (id, public_key, private_key, created_at) VALUES (?, ?, ?, ?)").run(id, raw, encrypted, now);
  return { id, privateKey };
}

/** A signing key's id: named by its raw public key. */
export function signingKeyId(publicKey: Uint8Array): string {
  return `ck_${new Bun.CryptoHasher("sha256").update(publicKey).digest("hex").slice(0, 16)}`;
}

/** Whether `publicKey` is one of this database's signing keys (one that signed its checkpoints). */
export function isSigningKeyOf(db: Database, publicKey: Uint8Array): boolean {
  return db.query<{ one: number }, [Uint8Array]>("SELECT 1 AS one FROM audit_signing_keys WHERE public_key = ?").get(publicKey) !== null;
}

export function listCheckpoints(db: Database, limit = 100): ExportedCheckpoint[] {
  return db
    .query<{ seq: number; hash: Uint8Array; time: number; key_id: string; signature: Uint8Array; public_key: Uint8Array }, [number]>(
      "SELECT c.seq, c.hash, c.time, c.key_id, c.signature, k.public_key FROM audit_checkpoints c JOIN audit_signing_keys k ON k.id = c.key_id ORDER BY c.seq DESC LIMIT ?",
    )
    .all(limit)
    .map((c) => ({
      format: "citadel-audit-checkpoint-v1",
      seq: c.seq,
      hash: Buffer.from(c.hash).toString("hex"),
      time: c.time,
      key_id: c.key_id,
      public_key: Buffer.from(c.public_key).toString("base64"),
      signature: Buffer.from(c.signature).toString("base64"),
    }));
}

/** Parses a checkpoint file; throws with a clear message when it is not one. */
export function parseCheckpointFile(text: string): ExportedCheckpoint {
  let value: Partial<ExportedCheckpoint>;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error("the checkpoint file is not JSON");
  }
  const ok =
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    value.format === "citadel-audit-checkpoint-v1" &&
    Number.isInteger(value.seq) &&
    /^[0-9a-f]{64}$/.test(value.hash ?? "") &&
    Number.isInteger(value.time) &&
    typeof value.public_key === "string" &&
    typeof value.signature === "string";
  if (!ok) throw new Error("the checkpoint file is not a Citadel audit checkpoint");
  return value as ExportedCheckpoint;
}
