/**
 * Forwards the audit log, event by event as they are committed, to where an operator's log
 * shipper or SIEM reads it (audit.forward) — what Vault's audit devices are for. The log in the
 * database stays the record (hash chain, checkpoints); the copy is for alerting and retention
 * elsewhere.
 *
 * It follows the committed log rather than the writes: events get their sequence number inside
 * the transaction that writes them, and SQLite commits one writer at a time, so everything
 * after the last number handed over is exactly what is new — none lost to a rollback, none
 * forwarded that was rolled back. The position is kept in the database (audit_forward_cursor)
 * and moved after the copy is written: a crash in between repeats those events at the next
 * start (each carries its id and seq), it never skips one.
 */
import { appendFileSync } from "node:fs";
import type { Database } from "bun:sqlite";
import type { Keyring } from "../crypto/keyring.ts";
import type { Seal } from "../crypto/seal.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import type { StoredEvent } from "./event.ts";
import { auditEventView, type AuditEventView } from "./query.ts";

/** Events handed over per round: a backlog (forwarding turned on again) goes out in slices. */
const BATCH = 1000;

/** Where forwarded events go: each receives one round's events, in order, and throws when it could not write them. */
export type AuditSink = (events: ForwardedEvent[]) => void;

/** An event as forwarded: the stored fields, and its personal data only when asked for. */
export interface ForwardedEvent extends Omit<AuditEventView, "source_address" | "user_agent" | "personal"> {
  source_address?: AuditEventView["source_address"];
  user_agent?: AuditEventView["user_agent"];
  personal?: AuditEventView["personal"];
  /** Personal data was asked for, but this event's could not be read: Citadel was sealed. */
  personal_withheld?: "sealed";
}

/** One JSON line per event on the given logger ("msg":"audit event"), whatever its level. */
export function journalSink(lines: Logger): AuditSink {
  return (events) => {
    for (const event of events) lines.info("audit event", { event });
  };
}

/**
 * JSON lines appended to `path` (made 0600), opened for each round: a file rotated away by
 * renaming is followed by a new one at the next event.
 */
export function fileSink(path: string): AuditSink {
  return (events) => appendFileSync(path, events.map((e) => `${JSON.stringify(e)}\n`).join(""), { mode: 0o600 });
}

export interface AuditForwarderOptions {
  store: Store;
  seal: Seal;
  sink: AuditSink;
  personalData: boolean;
  log: Logger;
  intervalMs?: number;
}

/** Starts forwarding; resolves with the way to stop (which forwards what is left first). */
export function startAuditForwarder({ store, seal, sink, personalData, log, intervalMs = 250 }: AuditForwarderOptions): () => Promise<void> {
  let running: Promise<void> | null = null;
  let failingSince: number | null = null;
  const round = async () => {
    for (;;) {
      const cursor = forwardCursor(store.db);
      const rows = store.db.query<StoredEvent, [number, number]>("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?").all(cursor, BATCH);
      if (rows.length === 0) return;
      // Sealed, no personal data can be read: the events go without it (marked), rather than
      // wait — the unseal attempts of a sealed appliance are what a SIEM most needs to see.
      const keyring = personalData ? seal.keyringIfUnsealed() : null;
      const events = rows.map((row) => forwarded(row, personalData, keyring));
      sink(events); // throws when the copy could not be written: the cursor stays
      const last = rows.at(-1)!.seq;
      await store.write((tx) => tx.run("UPDATE audit_forward_cursor SET seq = ? WHERE singleton = 1 AND seq < ?", [last, last]));
      if (rows.length < BATCH) return;
    }
  };
  const tick = () => {
    if (running) return running;
    running = round()
      .then(() => {
        if (failingSince !== null) log.info("audit forwarding works again");
        failingSince = null;
      })
      .catch((error) => {
        // Said once when it starts failing, then once a minute: a full disk must not flood the journal.
        const now = performance.now();
        if (failingSince === null || now - failingSince >= 60_000) log.error("could not forward audit events: they stay in the log and go out once this works", { error });
        if (failingSince === null || now - failingSince >= 60_000) failingSince = now;
      })
      .finally(() => (running = null));
    return running;
  };
  startAtHead(store.db);
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
    await tick(); // what the last moments wrote
  };
}

/**
 * The first time forwarding is on, it starts with the events written from then on; the history
 * is in `citadel audit export`. (Turned off and on again, it goes on where it stopped.)
 */
function startAtHead(db: Database): void {
  db.run("INSERT OR IGNORE INTO audit_forward_cursor (singleton, seq) VALUES (1, (SELECT coalesce(max(seq), 0) FROM audit_events))");
}

function forwardCursor(db: Database): number {
  return db.query<{ seq: number }, []>("SELECT seq FROM audit_forward_cursor WHERE singleton = 1").get()?.seq ?? 0;
}

function forwarded(row: StoredEvent, personalData: boolean, keyring: Keyring | null): ForwardedEvent {
  const { source_address, user_agent, personal, ...stored } = auditEventView(row, keyring);
  if (!personalData) return stored;
  if (!keyring && row.personal !== null) return { ...stored, personal_withheld: "sealed" };
  return { ...stored, source_address, user_agent, personal };
}
