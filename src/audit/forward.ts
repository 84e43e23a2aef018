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
import { writeLines } from "../line-output.ts";
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { Database } from "bun:sqlite";
import type { Keyring } from "../crypto/keyring.ts";
import type { Seal } from "../crypto/seal.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Store } from "../store/store.ts";
import type { StoredEvent } from "./event.ts";
import { auditEventView, type AuditEventView } from "./query.ts";

/** Events handed over per round: a backlog (forwarding turned on again) goes out in slices. */
const BATCH = 1000;

/**
 * Where forwarded events go: each receives one round's events, in order, and throws (or
 * rejects: a network sink) when it could not write them. `giveUp` is aborted when the forwarder
 * stops and can wait no longer: a sink that waits (on a collector) fails the round then.
 */
export type AuditSink = ((events: ForwardedEvent[], giveUp?: AbortSignal) => void | Promise<void>) & {
  /**
   * Events it took already must be written again (a syslog connection lost under them): when
   * nothing is new, the forwarder hands it a round without events for that.
   */
  owesResend?: () => boolean;
};

/**
 * How long a stop waits for the sink (the round under way and the last one) before it gives up:
 * a collector that never answers must not hold the stop past main's deadline (4.5 s all told),
 * which would leave the store unclosed. What was not written goes at the next start.
 */
const STOP_PATIENCE_MS = 2000;

/** An event as forwarded: the stored fields, and its personal data only when asked for. */
export interface ForwardedEvent extends Omit<AuditEventView, "source_address" | "user_agent" | "personal"> {
  source_address?: AuditEventView["source_address"];
  user_agent?: AuditEventView["user_agent"];
  personal?: AuditEventView["personal"];
  /** Personal data was asked for, but this event's could not be read: Citadel was sealed. */
  personal_withheld?: "sealed";
}

/**
 * One JSON line per event on standard output (`fd`), as the log's lines are
 * (`{"time":…,"level":"info","msg":"audit event","event":{…}}`), whatever log.level says. Written
 * at once, not buffered like the log: a write that fails throws, so the events are not counted
 * as forwarded (the log's writer drops what it cannot write).
 */
export function journalSink(fd = 1, now: () => number = Date.now): AuditSink {
  return (events) => {
    const time = new Date(now()).toISOString();
    const lines = events.map((event) => `${JSON.stringify({ time, level: "info", msg: "audit event", event })}\n`).join("");
    // A round that failed part-way through a line (a full pipe) left it open: the next write to
    // standard output, this sink's or the log's, ends it first, so that no line is glued to it.
    writeLines(fd, lines, JOURNAL_PATIENCE_MS);
  };
}

/** How long a full standard output is waited for before a round fails (and is retried later). */
const JOURNAL_PATIENCE_MS = 1000;

/**
 * JSON lines appended to `path` (made 0600), opened for each round: a file rotated away by
 * renaming is followed by a new one at the next event. Whole lines only: a write cut short (a
 * full disk) is cut back to where it began, and a half line left by a crash is ended before the
 * next, so a retry never glues an event to a broken line. Synced (`sync`, fsync) before the round
 * counts as done: the cursor moves past these events in a synchronous=FULL commit, and a power
 * loss must not leave it past lines still in the page cache.
 */
export function fileSink(path: string, sync: (fd: number) => void = fsyncSync): AuditSink {
  return (events) => {
    // A regular file only: a FIFO opened here for reading and writing takes the events into a
    // pipe that closing throws away, with no reader ever having them (the journal is for shippers).
    const exists = existsSync(path);
    if (exists && !statSync(path).isFile()) throw new Error(`audit.forward.file ${path} is not a regular file`);
    const fd = openSync(path, "a+", 0o600); // appending, and reading its last byte
    let start = 0;
    try {
      start = fstatSync(fd).size;
      const lines = events.map((e) => `${JSON.stringify(e)}\n`).join("");
      try {
        writeFully(fd, endsMidLine(fd, start) ? `\n${lines}` : lines);
        sync(fd);
      } catch (error) {
        try {
          ftruncateSync(fd, start);
        } catch {
          // not a regular file (a device, a pipe): nothing to cut back
        }
        throw error;
      }
    } finally {
      closeSync(fd);
    }
    // A new file's name (after a rotation), lost, takes its lines with it. An empty file's too: a
    // first round that made it and then failed left it empty, and its name unsynced.
    if (!exists || start === 0) syncDirectory(dirname(path), sync);
  };
}

function syncDirectory(path: string, sync: (fd: number) => void): void {
  const fd = openSync(path, "r");
  try {
    sync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Whether the file's last byte (of `size`) is not a newline: a line was left unfinished. */
function endsMidLine(fd: number, size: number): boolean {
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  try {
    return readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
  } catch {
    return false; // not readable (a device): nothing known
  }
}

/**
 * Writes all of `text` or throws (a short write is continued; EAGAIN, a full pipe, is waited out
 * a little). `wrote` is told of each part written: where a failure left off.
 */
function writeFully(fd: number, text: string, wrote: (part: Buffer) => void = () => {}): void {
  let rest = Buffer.from(text);
  for (let waits = 0; rest.length > 0; ) {
    try {
      const written = writeSync(fd, rest);
      if (written > 0) wrote(rest.subarray(0, written));
      rest = rest.subarray(written);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || ++waits > 1000) throw error;
      Bun.sleepSync(1);
    }
  }
}

export interface AuditForwarderOptions {
  store: Store;
  seal: Seal;
  sink: AuditSink;
  personalData: boolean;
  log: Logger;
  /** Where to expose how far behind forwarding is, and whether it is failing. */
  metrics?: Metrics;
  intervalMs?: number;
}

/**
 * Starts forwarding; resolves with the way to stop (which forwards what is left first, giving
 * up on the sink after STOP_PATIENCE_MS).
 */
export function startAuditForwarder({ store, seal, sink, personalData, log, metrics, intervalMs = 250 }: AuditForwarderOptions): () => Promise<void> {
  let running: Promise<void> | null = null;
  /** While rounds fail: when the failure was last logged (null: the last round worked). */
  let failingSince: number | null = null;
  let stopping = false;
  const giveUp = new AbortController();
  /** Forwards what is new, batch by batch; once stopping, one batch more at most (a backlog waits for the next start). */
  const round = async () => {
    for (let batches = 0; !stopping || batches < 1; batches++) {
      const cursor = forwardCursor(store.db);
      const rows = store.db.query<StoredEvent, [number, number]>("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?").all(cursor, BATCH);
      if (rows.length === 0) {
        if (sink.owesResend?.()) await sink([], giveUp.signal);
        return;
      }
      // Sealed, no personal data can be read: the events go without it (marked), rather than
      // wait — the unseal attempts of a sealed appliance are what a SIEM most needs to see.
      const keyring = personalData ? seal.keyringIfUnsealed() : null;
      const events = rows.map((row) => forwarded(store.db, row, personalData, keyring));
      await sink(events, giveUp.signal); // throws when the copy could not be written: the cursor stays
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
        if (failingSince !== null && now - failingSince < 60_000) return;
        log.error("could not forward audit events: they stay in the log and go out once this works", { error });
        failingSince = now;
      })
      .finally(() => (running = null));
    return running;
  };
  beginAuditForwarding(store.db);
  // An alert on these is how a SIEM's silence is noticed: a sink that fails, or cannot keep up.
  const unregister = [
    metrics?.onScrape({
      name: "citadel_audit_forward_pending_events",
      type: "gauge",
      help: "Audit events committed but not yet forwarded (audit.forward).",
      read: () => (store.db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_events").get()?.seq ?? 0) - forwardCursor(store.db),
    }),
    metrics?.onScrape({ name: "citadel_audit_forward_failing", type: "gauge", help: "1 while forwarding audit events fails (the sink cannot be written), else 0.", read: () => (failingSince === null ? 0 : 1) }),
  ];
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return async () => {
    for (const remove of unregister) remove?.();
    clearInterval(timer);
    stopping = true; // a running round ends after its batch: a stop must not wait for a backlog
    const patience = setTimeout(() => giveUp.abort(), STOP_PATIENCE_MS);
    try {
      await running;
      await tick(); // what the last moments wrote
    } finally {
      clearTimeout(patience);
    }
  };
}

/**
 * The first time forwarding is on, it starts with the events written from then on (called
 * before anything is written at start: unseal and first setup are forwarded too); the history is
 * in `citadel audit export`. Turned off and on again, it goes on where it stopped.
 */
export function beginAuditForwarding(db: Database): void {
  db.run("INSERT OR IGNORE INTO audit_forward_cursor (singleton, seq) VALUES (1, (SELECT coalesce(max(seq), 0) FROM audit_events))");
}

function forwardCursor(db: Database): number {
  return db.query<{ seq: number }, []>("SELECT seq FROM audit_forward_cursor WHERE singleton = 1").get()?.seq ?? 0;
}

function forwarded(db: Database, row: StoredEvent, personalData: boolean, keyring: Keyring | null): ForwardedEvent {
  const { source_address, user_agent, personal, ...stored } = auditEventView(db, row, keyring);
  if (!personalData) return stored;
  if (!keyring && row.personal !== null) return { ...stored, personal_withheld: "sealed" };
  return { ...stored, source_address, user_agent, personal };
}
