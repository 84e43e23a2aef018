/**
 * The optional DNS query log: one JSON line per sampled query, in a file that can never fill
 * the disk. Off by default ([dns] query_log_sample = 0).
 *
 * - Sampled: each query is logged with probability 1/N (random, so a client cannot dodge a
 *   counter by timing its queries).
 * - Bounded: the log is `dns-queries.log` plus at most one rotated `dns-queries.log.1`, each at
 *   most half of `query_log_max_mb`: when the current file would grow past its half, it replaces
 *   the rotated one and a new file starts. Disk use is capped at the configured size.
 * - Off the answer path: `observe` only appends a line to a memory buffer; the buffer is written
 *   once a second, and lines beyond a bounded buffer are dropped (and counted) rather than
 *   slowing answers down.
 * - Personal data: client addresses are personal data under the GDPR, so by default only their
 *   prefix (/24, /56) is written; "full" and "none" are the alternatives.
 */
import { closeSync, fstatSync, openSync, renameSync, writeSync } from "node:fs";
import type { Logger } from "../../src/log.ts";
import { clientPrefix } from "./analytics.ts";
import { nameFromWire, nameToText, type Name } from "./names.ts";
import { typeToText } from "./rdata.ts";
import type { QueryEvent, QueryObserver } from "./server.ts";

export type ClientDetail = "prefix" | "full" | "none";

export interface QueryLogOptions {
  path: string;
  /** Log one query in `sample` on average (1: every query). */
  sample: number;
  /** Bytes on disk at most, both files together. */
  maxBytes: number;
  client: ClientDetail;
  now: () => number;
  log: Logger;
  /** Milliseconds between writes. Default 1000. */
  flushMs?: number;
}

const HEADER_LENGTH = 12;

/** Lines kept in memory between writes at most (and never more than half the cap: one file); more are dropped and counted. */
const MAX_BUFFERED_BYTES = 1 << 20;

export class QueryLog implements QueryObserver {
  private buffer: string[] = [];
  private bufferedBytes = 0;
  /** The open log file, or -1 after a rotation that could not open the new one (opened again at the next flush). */
  private fd = -1;
  private size = 0;
  private readonly timer: ReturnType<typeof setInterval>;
  /** What one file can take: half of the cap. */
  private readonly half: number;
  /** Lines buffered at most: what one write can put in a file, so that a burst is dropped (and counted) here, not cut. */
  private readonly maxBuffered: number;
  /** Sampled lines dropped because the buffer was full (reported in the log, not lost silently). */
  dropped = 0;

  constructor(private readonly options: QueryLogOptions) {
    this.half = Math.floor(options.maxBytes / 2);
    this.maxBuffered = Math.min(MAX_BUFFERED_BYTES, this.half);
    this.openFile();
    this.timer = setInterval(() => this.flush(), options.flushMs ?? 1000);
    this.timer.unref?.();
  }

  observe(event: QueryEvent): void {
    if (this.options.sample > 1 && Math.random() * this.options.sample >= 1) return;
    const line = `${JSON.stringify({
      time: new Date(this.options.now()).toISOString(),
      client: this.clientText(event.client),
      transport: event.transport,
      zone: event.zone ? nameToText(event.zone) : null,
      qname: nameToText(askedName(event)),
      qtype: typeToText(event.qtype),
      rcode: event.rcode,
      bytes: event.bytes,
    })}\n`;
    if (this.bufferedBytes + line.length > this.maxBuffered) {
      this.dropped++;
      return;
    }
    this.buffer.push(line);
    this.bufferedBytes += line.length;
  }

  private clientText(client: string): string | null {
    if (this.options.client === "none") return null;
    return this.options.client === "full" ? client : clientPrefix(client);
  }

  /** Writes the buffered lines, rotating first when they would take the file past its half of the cap. */
  flush(): void {
    if (this.buffer.length === 0) return;
    const text = this.buffer.join("");
    this.buffer = [];
    this.bufferedBytes = 0;
    const bytes = Buffer.from(text);
    const half = this.half;
    try {
      if (this.fd < 0) this.openFile();
      if (this.size + bytes.length > half) this.rotate();
      // A burst larger than a whole file is cut: the cap holds whatever arrives. The buffer is
      // bounded by the half already, so only lines longer in UTF-8 than counted get here.
      const chunk = bytes.length > half ? bytes.subarray(0, bytes.lastIndexOf(10, half - 1) + 1) : bytes;
      this.dropped += linesIn(bytes.subarray(chunk.length));
      writeSync(this.fd, chunk);
      this.size += chunk.length;
      if (this.dropped > 0) {
        this.options.log.warn("dns query log: lines dropped (the log could not keep up)", { dropped: this.dropped });
        this.dropped = 0;
      }
    } catch (e) {
      this.options.log.error("dns query log: write failed", { path: this.options.path, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /**
   * Renamed while still open, closed only once renamed: a rename that fails leaves the file open
   * and in use. A closed descriptor is never kept — its number goes to the next file or socket
   * the process opens, and lines would be written into it (found in review).
   */
  private rotate(): void {
    try {
      renameSync(this.options.path, `${this.options.path}.1`);
    } catch (e) {
      // Deleted by hand (docs/gdpr.md advises it after an erasure): there is nothing to keep.
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    this.closeFile();
    this.openFile();
  }

  private openFile(): void {
    this.fd = openSync(this.options.path, "a", 0o600);
    this.size = fstatSync(this.fd).size;
  }

  private closeFile(): void {
    const fd = this.fd;
    this.fd = -1;
    closeSync(fd);
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
    if (this.fd >= 0) this.closeFile();
  }
}

/**
 * The name as the client sent it, case included (0x20 randomisation, probes): on a cache hit
 * `event.qname` is the spelling of the query that filled the cache. Decoded here, for the sampled
 * queries only, so that a hit stays cheap.
 */
function askedName(event: QueryEvent): Name {
  return event.query ? nameFromWire(event.query, HEADER_LENGTH).name : event.qname;
}

function linesIn(bytes: Uint8Array): number {
  let lines = 0;
  for (const b of bytes) if (b === 10) lines++;
  return lines;
}

/** Both observers for the listener: the analytics, and the query log when there is one. */
export function bothObservers(first: QueryObserver, second: QueryObserver | null): QueryObserver {
  if (second === null) return first;
  return {
    observe(event) {
      first.observe(event);
      second.observe(event);
    },
  };
}
