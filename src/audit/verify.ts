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
import type { Store } from "../store/store.ts";
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

export interface VerifyOptions {
  /** A checkpoint the operator kept elsewhere (citadel audit checkpoint --out FILE). */
  checkpoint?: ExportedCheckpoint;
  keyring?: Keyring;
}

/**
 * With `keyring` (an unsealed instance), each signing key must also be one this Citadel made
 * (its private half opens with the keyring): a database writer without the root key cannot
 * re-sign a rewritten log. Without it (sealed, a copy, a backup), keep a checkpoint file.
 */
export function verifyAuditChain(db: Database, options: VerifyOptions = {}): VerifyReport {
  const walk = new ChainWalk(db, options);
  for (const row of db.query<StoredEvent, []>("SELECT * FROM audit_events ORDER BY seq").iterate()) walk.visit(row);
  return walk.report();
}

/** Events per slice of a walk on the running instance: about 30 ms of hashing. */
const SLICE_EVENTS = 10_000;

export interface SlicedVerifyOptions extends VerifyOptions {
  sliceEvents?: number;
  /** What runs between two slices (default: a turn of the event loop, for the API and DNS). */
  pause?: () => Promise<void>;
}

/** Another walk of the same database is under way: one at a time, each costs a whole pass over the log. */
export class VerifyBusyError extends Error {
  override readonly name = "VerifyBusyError";
}

const walking = new WeakSet<Database>();

/**
 * verifyAuditChain on a running instance: the same walk, in slices, yielding between them —
 * the whole chain at once held the one event loop about 3 s per million events. No read
 * transaction can span the pauses, so the walk verifies the log as it stood when it began: the
 * checkpoints and the last row are read in one snapshot, and the slices stop at that row
 * (events appended meanwhile are the next walk's). One walk per database at a time
 * (VerifyBusyError).
 */
export async function verifyAuditChainInSlices(store: Pick<Store, "db" | "snapshot">, options: SlicedVerifyOptions = {}): Promise<VerifyReport> {
  const { db } = store;
  const { sliceEvents = SLICE_EVENTS, pause = () => new Promise<void>((resolve) => setImmediate(resolve)) } = options;
  if (walking.has(db)) throw new VerifyBusyError("the audit log is being verified already: ask again when that is done");
  walking.add(db);
  try {
    const { walk, lastRow } = store.snapshot(() => ({ walk: new ChainWalk(db, options), lastRow: lastRowid(db) }));
    for (let after: WalkRow | null = null; lastRow !== null; await pause()) {
      const rows: WalkRow[] = store.snapshot(() => eventsAfter(db, after, lastRow, sliceEvents));
      for (const row of rows) walk.visit(row);
      if (rows.length < sliceEvents) break;
      after = rows.at(-1)!;
    }
    return walk.report();
  } finally {
    walking.delete(db);
  }
}

/**
 * Rowids travel as text: a seq set past 2^53 in a tampered table (the rowid, in the table as
 * made) would come back rounded as a number, and a slice would stop short of it.
 */
function lastRowid(db: Database): string | null {
  return db.query<{ last: string | null }, []>("SELECT CAST(max(rowid) AS TEXT) AS last FROM audit_events").get()?.last ?? null;
}

type WalkRow = StoredEvent & { walk_rowid: string };

/**
 * The next `limit` events in the walk's order (by seq, as verifyAuditChain reads them; rowid
 * breaks the ties a rebuilt table can hold) after the row `after`, up to the row `last`. The
 * position is the row itself, its seq compared in SQL: whatever a tampered table made of it
 * (text, a number past 2^53), it is never read back into a number.
 */
function eventsAfter(db: Database, after: WalkRow | null, last: string, limit: number): WalkRow[] {
  const rows = "SELECT CAST(rowid AS TEXT) AS walk_rowid, * FROM audit_events WHERE rowid <= CAST(?1 AS INTEGER)";
  const order = "ORDER BY seq, rowid LIMIT ?2";
  if (after === null) return db.query<WalkRow, [string, number]>(`${rows} ${order}`).all(last, limit);
  // NULL comes first in the order, and compares to nothing: after one, the other NULLs after it, then the rest.
  const next =
    after.seq === null
      ? "AND (seq IS NOT NULL OR rowid > CAST(?3 AS INTEGER))"
      : "AND (seq, rowid) > ((SELECT seq FROM audit_events WHERE rowid = CAST(?3 AS INTEGER)), CAST(?3 AS INTEGER))";
  return db.query<WalkRow, [string, number, string]>(`${rows} ${next} ${order}`).all(last, limit, after.walk_rowid);
}

/** One walk of the chain: the checkpoints first (the anchors), then every event in seq order, then the report. */
class ChainWalk {
  private readonly problems: VerifyProblem[] = [];
  private problemCount = 0;
  private readonly anchors = new Map<number, { hash: Uint8Array; what: string }>();
  /** The well-formed checkpoints, by seq: the last is the latest. */
  private readonly signed: CheckpointRow[];
  /** The checkpoint file, when it is this log's and its signature holds. */
  private readonly external: { seq: number; hash: Uint8Array } | null;
  private verified = 0;
  private prevHash: Uint8Array = GENESIS_HASH;
  private expectedSeq = 1;
  private events = 0;
  private head: VerifyReport["head"] = null;

  constructor(db: Database, options: VerifyOptions) {
    const checkpoints = db
      .query<CheckpointRow, []>(
        "SELECT c.seq, c.hash, c.time, c.key_id, c.signature, k.public_key FROM audit_checkpoints c LEFT JOIN audit_signing_keys k ON k.id = c.key_id ORDER BY c.seq",
      )
      .all();
    const ownKeys = new Map<string, boolean>();
    for (const c of checkpoints) {
      if (!wellFormed(c)) {
        this.fail({ seq: seqOrNull(c.seq), id: null, problem: `checkpoint ${String(c.seq)} is malformed (its seq, time, hash, signature or key is not of the stored form): checkpoints were tampered with` });
        continue;
      }
      if (c.public_key === null) {
        this.fail({ seq: c.seq, id: null, problem: `checkpoint ${c.seq} names the signing key ${c.key_id}, which is gone: signing keys were tampered with` });
        continue;
      }
      if (options.keyring && !ownKeys.has(c.key_id)) ownKeys.set(c.key_id, isOwnSigningKey(db, options.keyring, c.key_id, c.public_key));
      if (options.keyring && !ownKeys.get(c.key_id)) {
        this.fail({ seq: c.seq, id: null, problem: `checkpoint ${c.seq} is signed by ${c.key_id}, a key this Citadel did not make: the log was re-signed` });
      } else if (!verifyCheckpointSignature(c.public_key, checkpointMessage(c.seq, c.hash, c.time), c.signature)) {
        this.fail({ seq: c.seq, id: null, problem: `the signature of checkpoint ${c.seq} is not valid: checkpoints were tampered with` });
      } else this.verified++;
      this.anchors.set(c.seq, { hash: c.hash, what: `signed checkpoint ${c.seq}` });
    }
    this.signed = checkpoints.filter(wellFormed);
    this.external = options.checkpoint ? fileCheckpoint(db, options.checkpoint, (p) => this.fail(p)) : null;
    if (this.external) this.anchors.set(this.external.seq, { hash: this.external.hash, what: `the checkpoint file (seq ${this.external.seq})` });
  }

  visit(row: StoredEvent): void {
    this.events++;
    // A table rebuilt without its constraints can hold anything: such a row is a finding, not a crash.
    if (!isHash(row.hash) || !isHash(row.prev_hash) || !Number.isSafeInteger(row.seq)) {
      this.fail({ seq: seqOrNull(row.seq), id: typeof row.id === "string" ? row.id : null, problem: "is malformed (its seq, hash or link is not of the stored form): the table was tampered with" });
      this.prevHash = isHash(row.hash) ? row.hash : new Uint8Array(0);
      if (Number.isSafeInteger(row.seq)) this.expectedSeq = row.seq + 1;
      return;
    }
    // Where it stands in the chain, then what it holds: an edited event is reported even when
    // it also sits next to a deleted or reordered one.
    if (row.seq !== this.expectedSeq) {
      this.fail({ seq: row.seq, id: row.id, problem: `events ${this.expectedSeq}..${row.seq - 1} before this one are missing (deleted)` });
    } else if (!constantTimeEqual(row.prev_hash, this.prevHash)) {
      this.fail({ seq: row.seq, id: row.id, problem: "does not follow the event before it (an event was inserted, deleted or reordered here)" });
    }
    if (!contentsMatch(row)) this.fail({ seq: row.seq, id: row.id, problem: "its contents were changed after it was written" });
    const anchor = this.anchors.get(row.seq);
    if (anchor && !constantTimeEqual(anchor.hash, row.hash)) {
      this.fail({ seq: row.seq, id: row.id, problem: `does not match ${anchor.what}: the log was rewritten` });
    }
    this.prevHash = row.hash;
    this.expectedSeq = row.seq + 1;
    this.head = { seq: row.seq, hash: Buffer.from(row.hash).toString("hex") };
  }

  report(): VerifyReport {
    const { signed, external } = this;
    const lastSeq = this.head?.seq ?? 0;
    const furthest = Math.max(signed.at(-1)?.seq ?? 0, external?.seq ?? 0);
    if (furthest > lastSeq) {
      this.fail({ seq: lastSeq + 1, id: null, problem: `the log ends at event ${lastSeq} but a checkpoint covers event ${furthest}: ${furthest - lastSeq} events were truncated` });
    }
    const latestSigned = signed.at(-1)?.seq ?? null;
    return {
      ok: this.problemCount === 0,
      events: this.events,
      head: this.head,
      first_problem: this.problems[0] ?? null,
      problems: this.problems,
      problem_count: this.problemCount,
      checkpoints: { verified: this.verified + (external ? 1 : 0), latest_seq: latestSigned },
      unsigned_tail: Math.max(0, lastSeq - Math.max(latestSigned ?? 0, external?.seq ?? 0)),
    };
  }

  private fail(p: VerifyProblem): void {
    this.problemCount++;
    if (this.problems.length < MAX_LISTED) this.problems.push(p);
  }
}

interface CheckpointRow {
  seq: number;
  hash: Uint8Array;
  time: number;
  key_id: string;
  signature: Uint8Array;
  public_key: Uint8Array | null;
}

/**
 * The checkpoint file as an anchor of this log, its problems reported through `fail`; null when
 * its signature does not hold, or another installation signed it: held to this log, its hash
 * would read as a rewrite and its seq as a truncation, when it says nothing about this log at all
 * (found in review: one hex digit changed in the file made an intact log "rewritten").
 */
function fileCheckpoint(db: Database, file: ExportedCheckpoint, fail: (p: VerifyProblem) => void): { seq: number; hash: Uint8Array } | null {
  const hash = Buffer.from(file.hash, "hex");
  const publicKey = Buffer.from(file.public_key, "base64");
  if (!verifyCheckpointSignature(publicKey, checkpointMessage(file.seq, hash, file.time), Buffer.from(file.signature, "base64"))) {
    // Its seq is what the file claims, unsigned: a number past 2^53 is not an event's.
    fail({ seq: seqOrNull(file.seq), id: null, problem: "the signature of the checkpoint file is not valid: it anchors nothing" });
    return null;
  }
  if (!isSigningKeyOf(db, publicKey)) {
    fail({ seq: file.seq, id: null, problem: `the checkpoint file is signed by key ${signingKeyId(publicKey)}, which this log never used: another installation's file? (or this log's signing keys were deleted)` });
    return null;
  }
  return { seq: file.seq, hash };
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
