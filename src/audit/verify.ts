/**
 * Verifying the audit log: walk the chain from the first event, recompute every hash, check
 * every link, and check the signed checkpoints (those in the database, and one the operator
 * kept elsewhere). It needs no key: hashes and Ed25519 public keys are enough, so it runs on
 * a sealed instance, on a copy of the database, or on a backup.
 */
import type { Database } from "bun:sqlite";
import { constantTimeEqual } from "../crypto/aead.ts";
import type { Keyring } from "../crypto/keyring.ts";
import { checkpointMessage, isOwnSigningKey, isSigningKeyOf, signingKeyId, verifyCheckpointSignature, type ExportedCheckpoint } from "./checkpoints.ts";
import { eventHash, GENESIS_HASH, type StoredEvent } from "./event.ts";

/** How many problems a report lists (it counts them all). */
const MAX_LISTED = 100;

export interface VerifyProblem {
  /** The event (or checkpoint) found wrong; null when its own seq is not a number (a tampered table). */
  seq: number | null;
  id: string | null;
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  events: number;
  head: { seq: number; hash: string } | null;
  /** The first thing found wrong; null when everything verifies. */
  first_problem: VerifyProblem | null;
  /**
   * Everything found wrong, up to MAX_LISTED, in the order found (the checkpoints, then the
   * chain from its start, then truncation): one damaged event does not hide the
   * others (after a break in the chain, each later event is still checked against its own
   * hash and the event before it).
   */
  problems: VerifyProblem[];
  /** How many problems there are in all (more than `problems` holds when over MAX_LISTED). */
  problem_count: number;
  /** `verified`: the checkpoints (the file's included) whose signature holds, by a key of this Citadel's when the keyring is at hand. */
  checkpoints: { verified: number; latest_seq: number | null };
  /** Events after the latest signed checkpoint: covered by the chain, not yet by a signature. */
  unsigned_tail: number;
}

/**
 * With `keyring` (an unsealed instance), each signing key must also be one this Citadel made
 * (its private half opens with the keyring): a database writer without the root key cannot
 * re-sign a rewritten log. Without it (sealed, a copy, a backup), keep a checkpoint file.
 */
export function verifyAuditChain(db: Database, options: { checkpoint?: ExportedCheckpoint; keyring?: Keyring } = {}): VerifyReport {
  const checkpoints = db
    .query<{ seq: number; hash: Uint8Array; time: number; key_id: string; signature: Uint8Array; public_key: Uint8Array | null }, []>(
      "SELECT c.seq, c.hash, c.time, c.key_id, c.signature, k.public_key FROM audit_checkpoints c LEFT JOIN audit_signing_keys k ON k.id = c.key_id ORDER BY c.seq",
    )
    .all();
  const anchors = new Map<number, { hash: Uint8Array; what: string }>();
  const problems: VerifyProblem[] = [];
  let problemCount = 0;
  const fail = (p: VerifyProblem) => {
    problemCount++;
    if (problems.length < MAX_LISTED) problems.push(p);
  };

  const ownKeys = new Map<string, boolean>();
  let verified = 0;
  for (const c of checkpoints) {
    if (!wellFormed(c)) {
      fail({ seq: seqOrNull(c.seq), id: null, problem: `checkpoint ${String(c.seq)} is malformed (its seq, time, hash, signature or key is not of the stored form): checkpoints were tampered with` });
      continue;
    }
    if (c.public_key === null) {
      fail({ seq: c.seq, id: null, problem: `checkpoint ${c.seq} names the signing key ${c.key_id}, which is gone: signing keys were tampered with` });
      continue;
    }
    if (options.keyring && !ownKeys.has(c.key_id)) ownKeys.set(c.key_id, isOwnSigningKey(db, options.keyring, c.key_id, c.public_key));
    if (options.keyring && !ownKeys.get(c.key_id)) {
      fail({ seq: c.seq, id: null, problem: `checkpoint ${c.seq} is signed by ${c.key_id}, a key this Citadel did not make: the log was re-signed` });
    } else if (!verifyCheckpointSignature(c.public_key, checkpointMessage(c.seq, c.hash, c.time), c.signature)) {
      fail({ seq: c.seq, id: null, problem: `the signature of checkpoint ${c.seq} is not valid: checkpoints were tampered with` });
    } else verified++;
    anchors.set(c.seq, { hash: c.hash, what: `signed checkpoint ${c.seq}` });
  }
  const external = options.checkpoint && fileCheckpoint(db, options.checkpoint, fail);
  if (external) anchors.set(external.seq, { hash: external.hash, what: `the checkpoint file (seq ${external.seq})` });

  let prevHash: Uint8Array = GENESIS_HASH;
  let expectedSeq = 1;
  let events = 0;
  let head: VerifyReport["head"] = null;
  for (const row of db.query<StoredEvent, []>("SELECT * FROM audit_events ORDER BY seq").iterate()) {
    events++;
    // A table rebuilt without its constraints can hold anything: such a row is a finding, not a crash.
    if (!isHash(row.hash) || !isHash(row.prev_hash) || !Number.isSafeInteger(row.seq)) {
      fail({ seq: seqOrNull(row.seq), id: typeof row.id === "string" ? row.id : null, problem: "is malformed (its seq, hash or link is not of the stored form): the table was tampered with" });
      prevHash = isHash(row.hash) ? row.hash : new Uint8Array(0);
      if (Number.isSafeInteger(row.seq)) expectedSeq = row.seq + 1;
      continue;
    }
    // Where it stands in the chain, then what it holds: an edited event is reported even when
    // it also sits next to a deleted or reordered one.
    if (row.seq !== expectedSeq) {
      fail({ seq: row.seq, id: row.id, problem: `events ${expectedSeq}..${row.seq - 1} before this one are missing (deleted)` });
    } else if (!constantTimeEqual(row.prev_hash, prevHash)) {
      fail({ seq: row.seq, id: row.id, problem: "does not follow the event before it (an event was inserted, deleted or reordered here)" });
    }
    if (!contentsMatch(row)) fail({ seq: row.seq, id: row.id, problem: "its contents were changed after it was written" });
    const anchor = anchors.get(row.seq);
    if (anchor && !constantTimeEqual(anchor.hash, row.hash)) {
      fail({ seq: row.seq, id: row.id, problem: `does not match ${anchor.what}: the log was rewritten` });
    }
    prevHash = row.hash;
    expectedSeq = row.seq + 1;
    head = { seq: row.seq, hash: Buffer.from(row.hash).toString("hex") };
  }

  const signed = checkpoints.filter(wellFormed); // ordered by seq: the last is the latest
  const lastSeq = head?.seq ?? 0;
  const furthest = Math.max(signed.at(-1)?.seq ?? 0, external?.seq ?? 0);
  if (furthest > lastSeq) {
    fail({ seq: lastSeq + 1, id: null, problem: `the log ends at event ${lastSeq} but a checkpoint covers event ${furthest}: ${furthest - lastSeq} events were truncated` });
  }
  const latestSigned = signed.at(-1)?.seq ?? null;
  return {
    ok: problemCount === 0,
    events,
    head,
    first_problem: problems[0] ?? null,
    problems,
    problem_count: problemCount,
    checkpoints: { verified: verified + (external?.verified ? 1 : 0), latest_seq: latestSigned },
    unsigned_tail: Math.max(0, lastSeq - Math.max(latestSigned ?? 0, external?.seq ?? 0)),
  };
}

/**
 * The checkpoint file as an anchor of this log (`verified` when its signature holds), its
 * problems reported through `fail`; null when another installation signed it: held to this
 * log, its hash would read as a rewrite and its seq as a truncation, when it says nothing about
 * this log at all.
 */
function fileCheckpoint(db: Database, file: ExportedCheckpoint, fail: (p: VerifyProblem) => void): { seq: number; hash: Uint8Array; verified: boolean } | null {
  const hash = Buffer.from(file.hash, "hex");
  const publicKey = Buffer.from(file.public_key, "base64");
  if (!verifyCheckpointSignature(publicKey, checkpointMessage(file.seq, hash, file.time), Buffer.from(file.signature, "base64"))) {
    fail({ seq: file.seq, id: null, problem: "the signature of the checkpoint file is not valid" });
    return { seq: file.seq, hash, verified: false };
  }
  if (!isSigningKeyOf(db, publicKey)) {
    fail({ seq: file.seq, id: null, problem: `the checkpoint file is signed by key ${signingKeyId(publicKey)}, which this log never used: another installation's file? (or this log's signing keys were deleted)` });
    return null;
  }
  return { seq: file.seq, hash, verified: true };
}

const HASH_BYTES = 32;

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_BYTES;
}

/** False too when a field is of a type the canonical encoding cannot take (a rebuilt table). */
function contentsMatch(row: StoredEvent): boolean {
  try {
    return constantTimeEqual(eventHash(row.prev_hash, row), row.hash);
  } catch {
    return false;
  }
}

function seqOrNull(seq: unknown): number | null {
  return Number.isSafeInteger(seq) ? (seq as number) : null;
}

/** A checkpoint row of the stored form (a table rebuilt without its constraints can hold anything). */
function wellFormed(c: { seq: unknown; time: unknown; hash: unknown; signature: unknown; public_key: unknown }): boolean {
  return isHash(c.hash) && c.signature instanceof Uint8Array && (c.public_key === null || c.public_key instanceof Uint8Array) && Number.isSafeInteger(c.seq) && Number.isSafeInteger(c.time);
}
