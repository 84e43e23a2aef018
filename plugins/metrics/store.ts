/** The metrics plugin's reads of the audit log's tables: the chain's head and the last checkpoint. */
import type { Database } from "bun:sqlite";

/** The sequence number of the newest audit event (the number of events), 0 when there is none. */
export function auditHeadSeq(db: Database): number {
  return db.query<{ seq: number }, []>("SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1").get()?.seq ?? 0;
}

/** The newest signed checkpoint: the event it covers up to, and when it was made (ms). */
export function lastAuditCheckpoint(db: Database): { seq: number; time: number } | null {
  return db.query<{ seq: number; time: number }, []>("SELECT seq, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").get();
}
