/**
 * The syslog sink of audit forwarding (audit.forward.to = "syslog"), for a SIEM's collector:
 * each event one RFC 5424 message whose MSG is the event's JSON (the file sink's line), sent
 * over TCP in octet-counting frames ("LEN SP MSG", LEN the bytes of MSG: RFC 6587 §3.4.1, the
 * framing of RFC 5425) — TLS (RFC 5425) unless the collector is on this host, or the operator
 * said `insecure`. One connection, kept open between rounds and made again when it is lost.
 *
 * Syslog over TCP has no acknowledgement (RELP has one; it is not spoken here). A round counts
 * as delivered once every byte of its frames was handed to this host's TCP stack — for TLS,
 * encrypted and written (the write's callback) — and only then does the cursor move. That is
 * not the collector having read them: one that restarts throws away what its buffers held, with
 * no word of it. So what went on a connection in its last minute (ResendWindow) goes again,
 * first, on the next one after any close or failure — a duplicate rather than a loss. What is
 * lost after that (the collector's host crashing with what it had received, more unread than the
 * window holds, what a collector left unread for over a minute before it closed) is lost to the
 * copy, not to the log: `citadel audit export` has it.
 *
 * node:net and node:tls are loaded (60 ms) only when a connection is made.
 */
import { hostname as systemHostname } from "node:os";
import type { Socket } from "node:net";
import type { ConnectionOptions, TLSSocket } from "node:tls";
import type { AuditSink, ForwardedEvent } from "./forward.ts";

/** The facilities of RFC 5424 §6.2.1, by the names syslog.conf uses (audit: "log audit"). */
export const SYSLOG_FACILITIES = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9, authpriv: 10, ftp: 11, ntp: 12, audit: 13, alert: 14, clock: 15,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
} as const;
export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

/** Severities (RFC 5424 §6.2.1): a refused or failed act stands out from the rest. */
const WARNING = 4;
const NOTICE = 5;

export interface SyslogTarget {
  host: string;
  port: number;
  /** null: plain TCP (a collector on this host, or `insecure`). */
  tls: SyslogTls | null;
  facility: SyslogFacility;
  appName: string;
}

export interface SyslogTls {
  /** PEM CA certificates the collector's certificate must chain to, instead of the system's. */
  ca?: string;
  /** The SHA-256 fingerprint of the one certificate the collector may present (hex, colons or not). */
  fingerprint?: string;
  /** A client certificate (PEM) and its key, for a collector that asks for one. */
  cert?: string;
  key?: string;
}

/** What RFC 5424's header says of the sender: the same for every message. */
export interface SyslogSender {
  hostname: string;
  appName: string;
  procId: string;
  facility: SyslogFacility;
}

/**
 * One event as an octet-counted RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
 * MSGID - MSG`, MSGID the action, no structured data, MSG the event's JSON (UTF-8, no BOM, so
 * that a collector's JSON parser takes it as it is).
 */
export function syslogFrame(event: ForwardedEvent, sender: SyslogSender): Buffer {
  const priority = SYSLOG_FACILITIES[sender.facility] * 8 + (event.outcome === "failure" ? WARNING : NOTICE);
  const header = `<${priority}>1 ${event.time} ${sender.hostname} ${sender.appName} ${sender.procId} ${headerField(event.action, 32)} -`;
  const message = Buffer.from(`${header} ${JSON.stringify(event)}`);
  return Buffer.concat([Buffer.from(`${message.length} `), message]);
}

/** A header field: printable US-ASCII without spaces, at most `max` characters; else "-" (the nil value). */
function headerField(value: string, max: number): string {
  return /^[!-~]+$/.test(value) && value.length <= max ? value : "-";
}

export interface SyslogSinkOptions {
  /** How long a connection may take, or a round's write go without progress (64 KiB taken), before the round fails. */
  timeoutMs?: number;
  /** The wait before trying a collector that failed again, doubled at each failure up to `maxBackoffMs`. */
  firstBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a connection must stay open to be trusted (see `syslogSink`). */
  trustAfterMs?: number;
  now?: () => number;
  hostname?: string;
}

export type SyslogSink = AuditSink & { close(): void; owesResend(): boolean };

/**
 * Sends each round's events to the collector, all or the round fails (the forwarder keeps them
 * and logs the failure). Memory stays one round's frames and the ResendWindow's (the same
 * buffers once written; written 64 KiB at a time, never copied whole): a collector
 * that reads slowly is waited for (as long as it takes some at least every `timeoutMs`), never
 * queued for. A collector that cannot be reached is tried again after a wait that doubles (1 s
 * up to 30 s), not at every round.
 *
 * A connection is trusted once it stayed open `trustAfterMs` (3 s): only then is the wait reset.
 * One the collector closes before, with events written on it, failed (rsyslog's MaxSessions, a
 * load balancer without a backend, a TLS 1.3 server refusing the client certificate after the
 * handshake looked done to the client): otherwise each round would connect, write, count as
 * delivered and be thrown away, four times a second, with no word. The first round on a
 * connection made after a failure waits until it is trusted, and fails if it closes first; over
 * TLS, the first round on any connection waits a second (TLS_ALERT_WAIT_MS) for the server's alert.
 */
export function syslogSink(target: SyslogTarget, options: SyslogSinkOptions = {}): SyslogSink {
  const { timeoutMs = 10_000, firstBackoffMs = 1000, maxBackoffMs = 30_000, trustAfterMs = 3000, now = () => performance.now() } = options;
  const sender: SyslogSender = { hostname: headerField(options.hostname ?? systemHostname(), 255), appName: target.appName, procId: String(process.pid), facility: target.facility };
  const where = `the syslog collector ${target.host}:${target.port}`;
  let connection: Connection | null = null;
  /** A round is under way: a close is its failure, said by it. */
  let sending = false;
  const recent = new ResendWindow();
  let backoffMs = 0;
  let nextTryAt = 0;
  let lastFailure = "";

  const failed = (reason: string) => {
    lastFailure = reason;
    backoffMs = backoffMs === 0 ? firstBackoffMs : Math.min(backoffMs * 2, maxBackoffMs);
    nextTryAt = now() + backoffMs;
  };
  /** The collector closed the connection between rounds: a restart, or a failure if it was not trusted yet. */
  const lost = (socket: Socket, error: Error | null) => {
    const closed = connection;
    if (closed?.socket !== socket) return;
    connection = null;
    recent.lost(now());
    if (sending) return;
    if (isTrusted(closed)) backoffMs = 0;
    else if (recent.owed) failed(`${closedEarly(closed)}${error ? ` (${reasonOf(error)})` : ""}, with events written on it (they go again)`);
  };
  const isTrusted = (open: Connection) => now() - open.openedAt >= trustAfterMs;
  const closedEarly = (closed: Connection) => `it closed the connection ${((now() - closed.openedAt) / 1000).toFixed(1)} s after accepting it`;
  /** The first round on `open` waits until its `trustedAt`; one that closes before fails. */
  const trusted = async (open: Connection, giveUp: AbortSignal | undefined) => {
    const wait = open.trustedAt - now();
    if (wait <= 0) return;
    try {
      // The timeout cannot come first: the wait is all there is to wait for.
      await until(open.socket, wait + timeoutMs, giveUp, "", (done) => setTimeout(done, wait).unref());
    } catch (error) {
      throw (error as Error).message === CLOSED ? new Error(closedEarly(open)) : error;
    }
  };

  const send = async (events: ForwardedEvent[], giveUp?: AbortSignal) => {
    if (events.length === 0 && !recent.owed) return;
    if (giveUp?.aborted) throw new Error(`${where}: not tried, ${STOPPING}`);
    if (now() < nextTryAt) throw new Error(`${where}: ${lastFailure}; trying again in ${Math.ceil((nextTryAt - now()) / 1000)} s`);
    const frames = events.map((event) => syslogFrame(event, sender));
    sending = true;
    try {
      let open = connection;
      if (!open) {
        const socket = await connected(target, timeoutMs, giveUp, lost);
        // After a failure, nothing on a connection counts until it is trusted; over TLS, not before the server's alert could come.
        const settleMs = backoffMs > 0 ? trustAfterMs : target.tls ? Math.min(TLS_ALERT_WAIT_MS, trustAfterMs) : 0;
        connection = open = { socket, openedAt: now(), trustedAt: now() + settleMs };
        // What the last connection may have lost goes first: the order kept, repeated rather than lost.
        await written(socket, recent.owedFrames(), timeoutMs, giveUp);
      }
      await written(open.socket, frames, timeoutMs, giveUp);
      await trusted(open, giveUp);
      if (connection !== open) throw new Error(CLOSED); // as the last write's callback came
      // The resend is done once its round is: one on a connection that failed is still owed, however old.
      recent.resent();
      recent.wrote(frames, now());
      if (isTrusted(open)) backoffMs = 0;
    } catch (error) {
      connection?.socket.destroy();
      connection = null;
      recent.lost(now());
      failed(reasonOf(error));
      throw new Error(`${where}: ${lastFailure}`);
    } finally {
      sending = false;
    }
  };
  return Object.assign(send, { close: () => connection?.socket.end(), owesResend: () => recent.owed });
}

interface Connection {
  socket: Socket;
  openedAt: number;
  /** Until then, a round written on it counts only once it is still open then. */
  trustedAt: number;
}

/** How long the first round on a TLS connection waits for an alert: a server that refuses the client's certificate (TLS 1.3) says so after the client thinks the handshake done. */
const TLS_ALERT_WAIT_MS = 1000;

/** What went on a lost connection is written again on the next: the newest, as much as the two ends' buffers hold. */
const RESEND_MAX_BYTES = 8 * 1024 * 1024;
const RESEND_MAX_EVENTS = 10_000;
/**
 * A frame written this long ago is taken as read: the collector has had a minute to read it and
 * what was ahead of it (the window: 8 MiB at 140 KB/s). A close that comes later owes nothing of
 * it; one that comes sooner owes it once more. Counted from when the frame was first written,
 * never from a resend: a collector, or a load balancer in front of it, that closes idle
 * connections would otherwise get what is kept again at every close, for ever.
 */
const IDLE_READ_MS = 60_000;

/**
 * The frames written on the connection in the last IDLE_READ_MS (RESEND_MAX_BYTES and
 * RESEND_MAX_EVENTS at most, the newest kept): when the connection is lost — the collector closed
 * it (a restart, an idle timeout), a write failed or timed out — they are owed to the next one,
 * first. The kernel's buffers on both ends hold megabytes a restarting collector never reads, and
 * the write's callback cannot tell. rsyslog's ResendLastMSGOnReconnect does the same for one
 * message. Written again, they keep the time they were first written: an event goes again only
 * for a close within a minute of it.
 */
class ResendWindow {
  private frames: Buffer[] = [];
  /** When each of `frames` was first written (resending is not writing anew). */
  private writtenAt: number[] = [];
  private bytes = 0;
  /** The connection they went on was lost: the next one takes them first. */
  owed = false;

  wrote(frames: Buffer[], at: number): void {
    this.forgetRead(at);
    for (const frame of frames) {
      this.frames.push(frame);
      this.writtenAt.push(at);
      this.bytes += frame.length;
    }
    this.trim();
  }

  /** The connection was lost at `at`: what it took in the last minute is owed (once, for the first loss: until a round on a new connection works). */
  lost(at: number): void {
    if (this.owed) return;
    this.forgetRead(at);
    this.owed = this.frames.length > 0;
  }

  owedFrames(): Buffer[] {
    return this.owed ? [...this.frames] : [];
  }

  resent(): void {
    this.owed = false;
  }

  /** Forgets the frames written IDLE_READ_MS or more before `at` (the oldest first: they were written in order). */
  private forgetRead(at: number): void {
    let cut = 0;
    while (cut < this.frames.length && at - this.writtenAt[cut]! >= IDLE_READ_MS) cut++;
    this.drop(cut);
  }

  private trim(): void {
    let cut = 0;
    for (let bytes = this.bytes; bytes > RESEND_MAX_BYTES || this.frames.length - cut > RESEND_MAX_EVENTS; cut++) bytes -= this.frames[cut]!.length;
    this.drop(cut);
  }

  private drop(count: number): void {
    for (const frame of this.frames.splice(0, count)) this.bytes -= frame.length;
    this.writtenAt.splice(0, count);
  }
}

/** A connection to the collector, TLS verified (or pinned) before it is returned; `lost` is told when it closes. */
async function connected(target: SyslogTarget, timeoutMs: number, giveUp: AbortSignal | undefined, lost: (socket: Socket, error: Error | null) => void): Promise<Socket> {
  const socket = target.tls
    ? (await import("node:tls")).connect({ host: target.host, port: target.port, ...tlsOptions(target.tls) })
    : (await import("node:net")).connect({ host: target.host, port: target.port });
  // Nothing is read from a collector, and what one sends is not kept.
  socket.on("data", () => {});
  // Told to the pending connect or write, or with the close (a TLS alert: why the collector closed).
  let error: Error | null = null;
  socket.on("error", (e) => (error = e));
  // The collector's end (a restart) is known before the next round: it goes on a new connection.
  socket.once("end", () => socket.destroy());
  socket.once("close", () => lost(socket, error));
  await until(socket, timeoutMs, giveUp, "could not connect", (done) => socket.once(target.tls ? "secureConnect" : "connect", () => done()));
  if (target.tls?.fingerprint) refuseUnpinned(socket as TLSSocket, target.tls.fingerprint);
  socket.setKeepAlive(true, 60_000); // a collector gone without a word is found out while idle
  return socket;
}

function tlsOptions(tls: SyslogTls): ConnectionOptions {
  const client = tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {};
  // Pinned, that very certificate is accepted whatever its issuer and names, as `citadel login
  // --fingerprint` accepts the server's (checked in refuseUnpinned, before a byte is written).
  if (tls.fingerprint) return { ...client, rejectUnauthorized: false };
  return { ...client, ...(tls.ca ? { ca: tls.ca } : {}) };
}

function refuseUnpinned(socket: TLSSocket, fingerprint: string): void {
  const presented = socket.getPeerCertificate().fingerprint256 ?? "";
  if (normalizedFingerprint(presented) === normalizedFingerprint(fingerprint)) return;
  socket.destroy();
  throw new Error(`it presented the certificate ${presented}, not the one pinned (audit.forward.syslog.fingerprint)`);
}

export function normalizedFingerprint(fingerprint: string): string {
  return fingerprint.toUpperCase().replace(/[^0-9A-F]/g, "");
}

/**
 * A round is written this much at a time, each part's callback awaited: the timeout is on
 * progress (a collector that reads slowly but reads), not on the whole round. Bun's socket tells
 * nothing of a write's progress before its callback (bytesWritten and writableLength stay the
 * whole buffer until then).
 */
const WRITE_SLICE_BYTES = 64 * 1024;

/** All of `frames` handed to the TCP stack (each slice's callback), or an error. */
async function written(socket: Socket, frames: Buffer[], timeoutMs: number, giveUp: AbortSignal | undefined): Promise<void> {
  for (const slice of slices(frames, WRITE_SLICE_BYTES)) {
    await until(socket, timeoutMs, giveUp, "the collector took no more of the events", (done) => socket.write(slice, (error) => done(error ?? undefined)));
  }
}

/**
 * `frames` end to end, cut in pieces of `size` bytes (the last shorter), one piece copied at a
 * time: not all of them at once, which would double the memory of a resend (8 MiB).
 */
function* slices(frames: Buffer[], size: number): Generator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for (const frame of frames) {
    for (let at = 0; at < frame.length; ) {
      const part = frame.subarray(at, at + size - length);
      parts.push(part);
      length += part.length;
      at += part.length;
      if (length < size) continue;
      yield Buffer.concat(parts, length);
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(parts, length);
}

const CLOSED = "the connection was closed";

/** Why a round was given up before its end. */
const STOPPING = "given up: Citadel is stopping";

/**
 * What `start` waits for (it calls `done`), or the socket's error, its close, the timeout or
 * `giveUp` (the socket destroyed then: a connect or write under way ends) as a rejection.
 */
function until(socket: Socket, timeoutMs: number, giveUp: AbortSignal | undefined, timedOut: string, start: (done: (error?: Error) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      giveUp?.removeEventListener("abort", stopping);
      socket.off("error", done).off("close", closed);
      if (error) reject(error);
      else resolve();
    };
    const fail = (reason: string) => {
      done(new Error(reason));
      socket.destroy();
    };
    const closed = () => done(new Error(CLOSED));
    const stopping = () => fail(STOPPING);
    const timer = setTimeout(() => fail(`${timedOut} within ${timeoutMs / 1000} s`), timeoutMs);
    socket.once("error", done).once("close", closed);
    giveUp?.addEventListener("abort", stopping, { once: true });
    if (giveUp?.aborted) stopping();
    else start(done);
  });
}

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : String(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
