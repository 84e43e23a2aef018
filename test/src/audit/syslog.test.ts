import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { startAuditForwarder, type ForwardedEvent } from "../../../src/audit/forward.ts";
import { syslogSink, type SyslogTarget, type SyslogTls } from "../../../src/audit/syslog.ts";
import { generateSelfSignedCertificate } from "../../../src/http/self-signed.ts";
import { Metrics } from "../../../src/metrics.ts";
import { captureLog, testKernel } from "../../helpers/http.ts";

type Kernel = ReturnType<typeof testKernel>;

/** An audited act; `outcome` failure is a refused one. */
const act = (k: Kernel, reason: string, outcome: "success" | "failure" = "success") =>
  k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome, reason, request: { id: "req-1", source: "198.51.100.7", userAgent: "curl/8" } }));

interface Frame {
  /** The LEN the frame began with. */
  length: number;
  message: string;
}

interface CollectorTls {
  cert: string;
  key: string;
  /** Asks for a client certificate, and keeps the subject CN of each one presented. */
  requestCert?: boolean;
}

/** Buffer.concat, for the collectors: a test watches the sink's own copies by replacing it. */
const unwatchedConcat = Buffer.concat;

/**
 * A syslog collector on 127.0.0.1: splits what it reads into octet-counted frames (LEN SP MSG)
 * and fails the test on anything else. `restart` listens again on the same port.
 */
function collector(tls?: CollectorTls, port = 0) {
  const frames: Frame[] = [];
  const clients: string[] = [];
  let bytesRead = 0;
  let opened = 0;
  const connections = new Set<Socket<unknown>>();
  const pending = new Map<Socket<unknown>, Buffer>();
  let server: TCPSocketListener<unknown>;
  const listen = (on: number) =>
    Bun.listen({
      hostname: "127.0.0.1",
      port: on,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(tls.requestCert ? { requestCert: true, rejectUnauthorized: false } : {}) } } : {}),
      socket: {
        open(socket) {
          opened++;
          connections.add(socket);
        },
        handshake(socket) {
          const cn = (socket as unknown as { getPeerCertificate(): { subject?: { CN?: string } } }).getPeerCertificate()?.subject?.CN;
          if (cn) clients.push(cn);
        },
        data(socket, data) {
          bytesRead += data.length;
          let buffer = unwatchedConcat([pending.get(socket) ?? Buffer.alloc(0), data]);
          for (;;) {
            const space = buffer.indexOf(0x20);
            if (space < 0) break;
            const digits = buffer.subarray(0, space).toString("latin1");
            if (!/^[1-9][0-9]*$/.test(digits)) throw new Error(`not an octet count: ${JSON.stringify(digits)}`);
            const length = Number(digits);
            if (buffer.length < space + 1 + length) break;
            frames.push({ length, message: buffer.subarray(space + 1, space + 1 + length).toString("utf8") });
            buffer = buffer.subarray(space + 1 + length);
          }
          pending.set(socket, buffer);
        },
        close(socket) {
          pending.delete(socket);
          connections.delete(socket);
        },
      },
    });
  server = listen(port);
  return {
    frames,
    clients,
    bytesRead: () => bytesRead,
    /** Connections accepted so far, and still open. */
    opened: () => opened,
    open: () => connections.size,
    port: server.port,
    /** Half a frame left at a close (a crash mid-write) would be here. */
    leftover: () => [...pending.values()].reduce((sum, b) => sum + b.length, 0),
    stop: () => server.stop(true),
    restart: () => {
      server = listen(server.port);
    },
  };
}

/** The octet-counted frames at the start of `bytes`, and what is left after them (a frame cut short). */
function framesIn(bytes: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  for (;;) {
    const space = bytes.indexOf(0x20);
    if (space < 0) return { frames, rest: bytes };
    const length = Number(bytes.subarray(0, space).toString("latin1"));
    if (!(length > 0) || bytes.length < space + 1 + length) return { frames, rest: bytes };
    frames.push({ length, message: bytes.subarray(space + 1, space + 1 + length).toString("utf8") });
    bytes = bytes.subarray(space + 1 + length);
  }
}

/**
 * A collector on 127.0.0.1 that reads slowly: after each chunk it reads (Bun reads up to 512 KiB
 * at a time), it stops reading for `pauseMs`. One connection at a time; `ended` once it closed.
 */
async function slowCollector(pauseMs: number) {
  const { createServer } = await import("node:net");
  const chunks: Buffer[] = [];
  const pauses = new Set<Timer>();
  let ended = false;
  const server = createServer((socket) => {
    socket.on("data", (data: Buffer) => {
      chunks.push(data);
      socket.pause();
      const pause = setTimeout(() => {
        pauses.delete(pause);
        socket.resume();
      }, pauseMs);
      pauses.add(pause);
    });
    socket.on("close", () => (ended = true));
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  return {
    port: (server.address() as { port: number }).port,
    ended: () => ended,
    bytesRead: () => chunks.reduce((sum, chunk) => sum + chunk.length, 0),
    received: () => framesIn(Buffer.concat(chunks)),
    stop: () => {
      for (const pause of pauses) clearTimeout(pause);
      server.close();
    },
  };
}

/** `count` events made up, each with a reason of `reasonBytes`: a round as big as wanted. */
const bulkyEvents = (count: number, reasonBytes: number): ForwardedEvent[] =>
  Array.from({ length: count }, (_, i) => ({
    id: `evt_${i + 1}`,
    seq: i + 1,
    time: "2026-06-01T09:12:03.114Z",
    actor: { kind: "operator", organization: null, user: null, token: null },
    action: "sys.seal",
    resource: null,
    organization: null,
    workspace: null,
    request_id: null,
    outcome: "success",
    reason: "x".repeat(reasonBytes),
    subject: null,
    hash: "0".repeat(64),
  }));

const certificate = (dnsNames: string[], ipAddresses: string[]) => generateSelfSignedCertificate({ dnsNames, ipAddresses, validDays: 30, now: new Date() });

function forwarder(k: Kernel, target: Partial<SyslogTarget> & { port: number }, options: { intervalMs?: number; personalData?: boolean } = {}) {
  const sink = syslogSink({ host: "127.0.0.1", tls: null, facility: "authpriv", appName: "citadel", ...target }, { hostname: "citadel-test.example", firstBackoffMs: 5, maxBackoffMs: 20, trustAfterMs: 50 });
  const log = captureLog();
  const metrics = new Metrics();
  const stop = startAuditForwarder({ store: k.store, seal: k.seal, sink, personalData: options.personalData ?? false, log: log.logger, metrics, intervalMs: options.intervalMs ?? 60_000 });
  return {
    log,
    metrics,
    stop: async () => {
      await stop();
      sink.close();
    },
  };
}

/** Waits (polling, no deadline asserted) until `done`; the test's own timeout is the limit. */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await Bun.sleep(5);
}

/** The RFC 5424 header fields and MSG of a message with no structured data. */
function parsed(message: string) {
  const match = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$/s.exec(message);
  if (!match) throw new Error(`not an RFC 5424 message: ${message}`);
  const [, pri, timestamp, hostname, appName, procId, msgId, msg] = match;
  return { pri: Number(pri), timestamp, hostname, appName, procId, msgId, event: JSON.parse(msg!) };
}

describe("forwarding to a syslog collector", () => {
  test("octet-counted RFC 5424 messages, LEN the bytes of each, the header filled in, MSG the event's JSON; every event once, in order", async () => {
    const c = collector();
    const k = testKernel();
    const f = forwarder(k, { port: c.port, tls: null });
    await act(k, "one");
    await act(k, "refused: ünïcödé €", "failure"); // more bytes than characters
    await act(k, "three");
    await f.stop();
    await until(() => c.frames.length === 3);
    c.stop();

    const wire = c.frames.reduce((sum, frame) => sum + `${frame.length} `.length + frame.length, 0);
    expect(wire).toBe(c.bytesRead()); // nothing between frames, nothing after
    for (const frame of c.frames) expect(Buffer.byteLength(frame.message)).toBe(frame.length);
    expect(c.leftover()).toBe(0);

    const messages = c.frames.map((frame) => parsed(frame.message));
    expect(messages.map((m) => m.event.reason)).toEqual(["one", "refused: ünïcödé €", "three"]);
    const first = messages[0]!.event.seq;
    expect(messages.map((m) => m.event.seq)).toEqual([first, first + 1, first + 2]);
    // authpriv (10) × 8 + notice (5), or warning (4) for a failure.
    expect(messages.map((m) => m.pri)).toEqual([85, 84, 85]);
    for (const m of messages) {
      expect(m).toMatchObject({ timestamp: m.event.time, hostname: "citadel-test.example", appName: "citadel", procId: String(process.pid), msgId: "sys.seal" });
      expect(m.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(m.event).toMatchObject({ action: "sys.seal", outcome: expect.any(String), request_id: "req-1", hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(Object.keys(m.event)).not.toContain("source_address"); // personal data only when asked for, as for the file
    }
  });

  test("personal data when asked for, decrypted as the file sink has it", async () => {
    const c = collector();
    const k = testKernel();
    const f = forwarder(k, { port: c.port }, { personalData: true });
    await act(k, "with personal data");
    await f.stop();
    await until(() => c.frames.length === 1);
    c.stop();
    expect(parsed(c.frames[0]!.message).event).toMatchObject({ source_address: "198.51.100.7", user_agent: "curl/8" });
  });

  test("a collector that restarts loses no event: the rounds fail while it is down (logged, the metric says so), then go on a new connection, which takes first again the newest of what went on the last one", async () => {
    const c = collector();
    const k = testKernel();
    const f = forwarder(k, { port: c.port }, { intervalMs: 5 });
    const reasons = () => c.frames.map((frame) => parsed(frame.message).event.reason);
    await act(k, "before 1");
    await act(k, "before 2");
    await until(() => c.frames.length === 2);

    c.stop();
    await act(k, "while down 1");
    await act(k, "while down 2");
    await until(() => f.metrics.render().includes("citadel_audit_forward_failing 1\n"));
    expect(f.log.lines.filter((l) => String(l.msg).startsWith("could not forward audit events"))).toHaveLength(1);
    expect(String((f.log.lines.find((l) => l.level === "error")!.error as { message: string }).message)).toContain(`the syslog collector 127.0.0.1:${c.port}:`);

    c.restart();
    await act(k, "after");
    await until(() => reasons().includes("after"));
    await f.stop();
    c.stop();
    // The stopped collector may not have read "before 1" and "before 2": they go again (deduplicated on id).
    expect(reasons()).toEqual(["before 1", "before 2", "before 1", "before 2", "while down 1", "while down 2", "after"]);
    expect(f.log.lines.some((l) => l.msg === "audit forwarding works again")).toBe(true);
  });

  test("what went on a connection just before the collector closed it goes again on a new one, though nothing new is written", async () => {
    const c = collector();
    const k = testKernel();
    const f = forwarder(k, { port: c.port }, { intervalMs: 5 });
    await act(k, "the last for a while");
    await until(() => c.frames.length === 1);
    c.stop();
    c.restart();
    await until(() => c.frames.length === 2);
    await f.stop();
    c.stop();
    expect(c.frames.map((frame) => parsed(frame.message).event.reason)).toEqual(["the last for a while", "the last for a while"]);
    expect(c.opened()).toBe(2);
  });
});

describe("a collector that restarts under a backlog", () => {
  /** `count` audited acts in one transaction: a round of the forwarder's (1,000 events), about 400 KB. */
  const acts = (k: Kernel, count: number, from: number) =>
    k.store.write((tx) => {
      for (let i = 0; i < count; i++) k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success", reason: `backlog ${from + i}`, request: { id: "req-1" } });
    });

  test("loses no event: the newest of what went on a connection goes again on the next, a duplicate rather than a loss", async () => {
    for (let run = 0; run < 3; run++) {
      const c = collector();
      const k = testKernel();
      const f = forwarder(k, { port: c.port }, { intervalMs: 5 });
      const first = k.store.db.query<{ seq: number }, []>("SELECT coalesce(max(seq), 0) AS seq FROM audit_events").get()!.seq + 1;
      const writing = (async () => {
        for (let t = 0; t < 20; t++) await acts(k, 1000, t * 1000);
      })();
      // Restarted five times while the backlog goes out: what it had not read yet is gone with it.
      for (let restart = 0; restart < 5; restart++) {
        await Bun.sleep(150);
        c.stop();
        c.restart();
      }
      await writing;
      // One event more, once the restarts are over: when it is in, all before it is.
      await act(k, "after the restarts");
      await until(() => c.frames.some((frame) => frame.message.includes('"reason":"after the restarts"')));
      await f.stop();
      await until(() => c.open() === 0);
      c.stop();
      const received = new Set(c.frames.map((frame) => parsed(frame.message).event.seq as number));
      const missing = Array.from({ length: 20_001 }, (_, i) => first + i).filter((seq) => !received.has(seq));
      expect({ run, missing: missing.length, from: missing[0] }).toEqual({ run, missing: 0, from: undefined });
    }
  }, 60_000);
});

describe("what goes again on the next connection", () => {
  /** A sink on a clock the test moves: how long ago a frame was written is what the test says. */
  const clocked = (port: number) => {
    let clock = 0;
    const sink = syslogSink({ host: "127.0.0.1", port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", now: () => clock });
    return { sink, later: (ms: number) => void (clock += ms) };
  };
  const seqs = (frames: Frame[]) => frames.map((frame) => parsed(frame.message).event.seq as number);

  test("the newest 10,000 events of the last minute, however long the kernel has had them: a collector that reads slowly has them unread when it restarts", async () => {
    const c = collector();
    const { sink, later } = clocked(c.port);
    const events = bulkyEvents(12_000, 10);
    await sink(events.slice(0, 6000));
    later(20_000);
    await sink(events.slice(6000));
    later(20_000);
    c.stop(); // a restart: what it had not read is gone
    await until(sink.owesResend);
    c.restart();
    const before = c.frames.length;
    await sink([]);
    sink.close();
    await until(() => c.frames.length === before + 10_000);
    c.stop();
    expect(seqs(c.frames.slice(before))).toEqual(events.slice(2000).map((event) => event.seq));
  });

  test("copied 64 KiB at a time as it is written again, not whole: memory stays what is kept, not twice that", async () => {
    const c = collector();
    const { sink, later } = clocked(c.port);
    const events = bulkyEvents(2000, 2048); // some 5 MB kept
    await sink(events);
    later(10_000);
    c.stop();
    await until(sink.owesResend);
    c.restart();
    const before = c.frames.length;
    const concat = Buffer.concat;
    let largestCopy = 0;
    Buffer.concat = (list: readonly Uint8Array[], length?: number) => {
      const joined = concat(list, length);
      largestCopy = Math.max(largestCopy, joined.length);
      return joined;
    };
    try {
      await sink([]);
    } finally {
      Buffer.concat = concat;
    }
    sink.close();
    await until(() => c.frames.length === before + 2000);
    c.stop();
    expect(seqs(c.frames.slice(before))).toEqual(events.map((event) => event.seq));
    expect(largestCopy).toBe(64 * 1024);
  });

  test("not what was written a minute or more before the close: the collector has had a minute to read it", async () => {
    const c = collector();
    const { sink, later } = clocked(c.port);
    const events = bulkyEvents(101, 10);
    await sink(events.slice(0, 100));
    later(60_000);
    await sink(events.slice(100));
    c.stop();
    await until(sink.owesResend);
    c.restart();
    const before = c.frames.length;
    await sink([]);
    sink.close();
    await until(() => c.open() === 0);
    c.stop();
    expect(seqs(c.frames.slice(before))).toEqual([101]);
  });
});

describe("a collector, or a load balancer in front of it, that closes idle connections", () => {
  /** Closes each connection once it has had nothing for 300 ms; `closed` counts them. */
  function idleClosingCollector() {
    const frames: Frame[] = [];
    const idle = new Map<Socket<unknown>, Timer>();
    let closed = 0;
    const closeWhenIdle = (socket: Socket<unknown>) => {
      clearTimeout(idle.get(socket));
      idle.set(socket, setTimeout(() => socket.end(), 300));
    };
    const pending = new Map<Socket<unknown>, Buffer>();
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: closeWhenIdle,
        data(socket, data) {
          closeWhenIdle(socket);
          const { frames: read, rest } = framesIn(unwatchedConcat([pending.get(socket) ?? Buffer.alloc(0), data]));
          frames.push(...read);
          pending.set(socket, rest);
        },
        close(socket) {
          clearTimeout(idle.get(socket));
          idle.delete(socket);
          pending.delete(socket);
          closed++;
        },
      },
    });
    return { port: server.port, frames, closed: () => closed, open: () => idle.size, stop: () => server.stop(true) };
  }

  test("gets an event again only for a close within a minute of it: each event at most twice, over many closes, while events trickle in", async () => {
    const c = idleClosingCollector();
    let clock = 0;
    const sink = syslogSink({ host: "127.0.0.1", port: c.port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", now: () => clock });
    const events = bulkyEvents(212, 10);
    // A burst, then one event every 30 s (as the sink's clock has it); the connection closed after 30 s idle each time.
    const rounds = [events.slice(0, 200), ...events.slice(200).map((event) => [event])];
    for (const [i, round] of rounds.entries()) {
      await sink(round); // what the last close owes first, then the new event
      clock += 30_000;
      await until(() => c.closed() === i + 1);
      await until(sink.owesResend); // the close came within a minute of the last event
    }
    await sink([]); // the owed resend of the last close, as the forwarder's next round makes it
    sink.close();
    await until(() => c.open() === 0);
    c.stop();
    const times = new Map<number, number>();
    for (const seq of c.frames.map((frame) => parsed(frame.message).event.seq as number)) times.set(seq, (times.get(seq) ?? 0) + 1);
    // Each once as written, once more for the close that came 30 s after it; not again at the next, a minute after.
    expect(events.filter((event) => times.get(event.seq) !== 2)).toEqual([]);
    expect(c.frames).toHaveLength(2 * events.length);
  });
});

describe("a collector that closes each connection right after accepting it (its session limit reached, a load balancer without a backend)", () => {
  /** Reads the first bytes of each connection, then closes it. */
  function closingCollector() {
    let opened = 0;
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: () => void opened++,
        data: (socket) => void socket.end(),
      },
    });
    return { port: server.port, opened: () => opened, stop: () => server.stop(true) };
  }

  test("fails, and is tried again after a wait that doubles: a round on a connection made after a failure counts only once the connection is trusted", async () => {
    const c = closingCollector();
    let clock = 0;
    const sink = syslogSink({ host: "127.0.0.1", port: c.port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", now: () => clock, trustAfterMs: 2000 });
    // Nothing tells the first round from one a collector reads: it is written, then owed when the connection closes.
    await sink(bulkyEvents(3, 10));
    await until(sink.owesResend);
    const failures: string[] = [];
    for (const waited of [1000, 2000, 4000]) {
      await Promise.resolve(sink([])).catch((error: Error) => failures.push(error.message)); // waiting: not tried
      clock += waited;
      await Promise.resolve(sink([])).catch((error: Error) => failures.push(error.message)); // tried: written again, closed before it is trusted
    }
    c.stop();
    const where = `the syslog collector 127.0.0.1:${c.port}`;
    expect(failures).toEqual([
      `${where}: it closed the connection 0.0 s after accepting it, with events written on it (they go again); trying again in 1 s`,
      `${where}: it closed the connection 0.0 s after accepting it`,
      `${where}: it closed the connection 0.0 s after accepting it; trying again in 2 s`,
      `${where}: it closed the connection 0.0 s after accepting it`,
      `${where}: it closed the connection 0.0 s after accepting it; trying again in 4 s`,
      `${where}: it closed the connection 0.0 s after accepting it`,
    ]);
    expect(c.opened()).toBe(4);
    expect(sink.owesResend()).toBe(true);
  });

  test("what it was owed stays owed while it keeps closing, past the minute after which a close would owe it no more: a resend on a connection that failed is not done", async () => {
    const c = closingCollector();
    let clock = 0;
    const sink = syslogSink({ host: "127.0.0.1", port: c.port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", now: () => clock, trustAfterMs: 2000, maxBackoffMs: 30_000 });
    await sink(bulkyEvents(3, 10));
    await until(sink.owesResend);
    for (let tries = 0; tries < 4; tries++) {
      clock += 30_000;
      await Promise.resolve(sink([])).catch(() => {}); // written again, closed before it is trusted
    }
    c.stop();
    expect(c.opened()).toBe(5);
    expect(sink.owesResend()).toBe(true);
  });

  test("the forwarder says so, once, and the metric stays 1; events after the first failure are not counted as delivered", async () => {
    const c = closingCollector();
    const k = testKernel();
    const f = forwarder(k, { port: c.port }, { intervalMs: 5 });
    await act(k, "written, then the connection closed");
    await until(() => f.metrics.render().includes("citadel_audit_forward_failing 1\n"));
    await act(k, "never trusted");
    await until(() => c.opened() >= 4);
    const pending = f.metrics.render().match(/^citadel_audit_forward_pending_events (\d+)$/m)?.[1];
    const failing = f.metrics.render().match(/^citadel_audit_forward_failing (\d+)$/m)?.[1];
    await f.stop();
    c.stop();
    expect({ pending, failing }).toEqual({ pending: "1", failing: "1" });
    const errors = f.log.lines.filter((l) => l.level === "error").map((l) => String((l.error as { message: string }).message));
    expect(errors).toEqual([expect.stringContaining(`the syslog collector 127.0.0.1:${c.port}: it closed the connection 0.0 s after accepting it`)]);
  });

  test("over TLS, a collector that refuses the client certificate after the handshake looked done to Citadel (TLS 1.3): nothing counted as delivered, its alert logged", async () => {
    const server = await certificate(["collector.test"], ["127.0.0.1"]);
    let handshakes = 0;
    const refusing = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: server.certPem, key: server.keyPem, requestCert: true, rejectUnauthorized: true },
      socket: { handshake: () => void handshakes++, data() {} },
    });
    const k = testKernel();
    const sink = syslogSink({ host: "127.0.0.1", port: refusing.port, tls: { ca: server.certPem }, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", firstBackoffMs: 5, maxBackoffMs: 20 });
    const log = captureLog();
    const metrics = new Metrics();
    const stop = startAuditForwarder({ store: k.store, seal: k.seal, sink, personalData: false, log: log.logger, metrics, intervalMs: 5 });
    await act(k, "refused");
    await until(() => handshakes >= 2);
    const pending = metrics.render().match(/^citadel_audit_forward_pending_events (\d+)$/m)?.[1];
    await stop();
    sink.close();
    refusing.stop(true);
    expect(pending).toBe("1");
    const errors = log.lines.filter((l) => l.level === "error").map((l) => String((l.error as { message: string }).message));
    expect(errors[0]).toContain("CERTIFICATE_REQUIRED");
  });
});

describe("a collector that reads slowly", () => {
  test("takes a round of megabytes whole, once: the timeout is on progress (10 s without any taken), not on the whole round", async () => {
    const c = await slowCollector(30);
    const sink = syslogSink({ host: "127.0.0.1", port: c.port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", timeoutMs: 400 });
    // 24 MiB: far more than the kernel's buffers hold, read 512 KiB every 30 ms: longer than
    // the timeout all told, never that long without progress.
    const events = bulkyEvents(1000, 24 * 1024);
    await sink(events);
    sink.close();
    await until(c.ended);
    c.stop();
    const { frames, rest } = c.received();
    expect(frames.map((frame) => parsed(frame.message).event.seq)).toEqual(events.map((event) => event.seq));
    expect(rest.length).toBe(0);
  });
});

describe("a collector that accepts and never answers", () => {
  test("a round waiting on it is given up when the forwarder stops: the TLS handshake never answered; the events stay for the next start", async () => {
    let connections = 0;
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void connections++, data() {} } });
    const k = testKernel();
    const f = forwarder(k, { port: silent.port, tls: {} }, { intervalMs: 5 });
    await act(k, "never delivered");
    await until(() => connections > 0); // the round waits on the handshake
    await f.stop();
    silent.stop(true);
    const errors = f.log.lines.filter((l) => l.level === "error").map((l) => String((l.error as { message: string }).message));
    expect(errors).toEqual([`the syslog collector 127.0.0.1:${silent.port}: given up: Citadel is stopping`]);
    const { cursor, last } = k.store.db.query<{ cursor: number; last: number }, []>("SELECT (SELECT seq FROM audit_forward_cursor) AS cursor, (SELECT max(seq) FROM audit_events) AS last").get()!;
    expect(cursor).toBe(last - 1); // "never delivered" is next
  });

  test("a write waiting on a collector that reads nothing is given up: the round fails", async () => {
    const c = await slowCollector(60_000); // reads its first chunk, then nothing
    const sink = syslogSink({ host: "127.0.0.1", port: c.port, tls: null, facility: "authpriv", appName: "citadel" }, { hostname: "citadel-test.example", timeoutMs: 60_000 });
    const giveUp = new AbortController();
    const round = Promise.resolve(sink(bulkyEvents(1000, 24 * 1024), giveUp.signal)); // more than the kernel's buffers hold
    await until(() => c.bytesRead() > 0);
    giveUp.abort();
    await expect(round).rejects.toThrow(`the syslog collector 127.0.0.1:${c.port}: given up: Citadel is stopping`);
    sink.close();
    c.stop();
  });
});

describe("syslog over TLS", () => {
  const client = certificate(["citadel-client"], []);

  test("the collector's certificate checked against ca_file, a client certificate presented when configured", async () => {
    const server = await certificate(["collector.test"], ["127.0.0.1"]);
    const c = collector({ cert: server.certPem, key: server.keyPem, requestCert: true });
    const k = testKernel();
    const f = forwarder(k, { port: c.port, tls: { ca: server.certPem, cert: (await client).certPem, key: (await client).keyPem } });
    await act(k, "over TLS");
    await f.stop();
    await until(() => c.frames.length === 1);
    c.stop();
    expect(parsed(c.frames[0]!.message).event.reason).toBe("over TLS");
    expect(c.clients).toEqual(["citadel-client"]);
  });

  test("refused, nothing sent, when the certificate does not verify: another CA's, or not for the address", async () => {
    const server = await certificate(["collector.test"], []); // no IP address: not for 127.0.0.1
    const other = await certificate(["collector.test"], ["127.0.0.1"]);
    const c = collector({ cert: server.certPem, key: server.keyPem });
    const k = testKernel();
    for (const tls of [{ ca: other.certPem }, { ca: server.certPem }, {}] satisfies SyslogTls[]) {
      const f = forwarder(k, { port: c.port, tls });
      await act(k, "not sent");
      await f.stop();
      expect(f.log.lines.filter((l) => l.level === "error")).toHaveLength(1);
    }
    c.stop();
    expect(c.bytesRead()).toBe(0);
  });

  test("a pinned fingerprint accepts that certificate whatever its names and issuer, and refuses any other before a byte is sent", async () => {
    const server = await certificate(["collector.test"], []);
    const c = collector({ cert: server.certPem, key: server.keyPem });
    const k = testKernel();
    const fingerprint = new X509Certificate(server.certPem).fingerprint256;

    const wrong = forwarder(k, { port: c.port, tls: { fingerprint: new X509Certificate((await client).certPem).fingerprint256 } });
    await act(k, "pinned");
    await wrong.stop();
    expect(String((wrong.log.lines.find((l) => l.level === "error")!.error as { message: string }).message)).toContain(`it presented the certificate ${fingerprint}, not the one pinned`);
    expect(c.bytesRead()).toBe(0);

    const pinned = forwarder(k, { port: c.port, tls: { fingerprint: fingerprint.replaceAll(":", "").toLowerCase() } });
    await pinned.stop();
    await until(() => c.frames.length === 1);
    c.stop();
    expect(parsed(c.frames[0]!.message).event.reason).toBe("pinned");
  });
});
