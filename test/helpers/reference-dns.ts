/**
 * Reference authoritative servers for tests and benchmarks: Knot DNS (knotd) or NSD started as
 * real processes on 127.0.0.1 in a temporary directory, serving given zone files, plus a small
 * UDP/TCP client to query them.
 *
 * Everything a server writes (config, zone files, journal/timer databases, pid and log files,
 * control socket) stays in its temporary directory, which `stop()` removes. Nothing runs as
 * another user and nothing is daemonised: the process (and, for NSD, its children) is ours and
 * is stopped by its pid, also when the test process exits without calling `stop()`.
 *
 * A missing binary is a skip on a developer machine (`referenceSkipReason` says why) and a
 * failure in CI (`CI=true`), where .ci/run installs both servers.
 *
 * Knot can also run as a secondary: `role: "secondary"` with `primary` (and optionally `tsig`)
 * transfers the zones from another server instead of loading files. Callers that need more add
 * raw configuration: `config` is inserted before the zones (Knot: `key:`, `remote:`, `acl:`
 * sections — Knot needs a definition before it is referenced; NSD: more `key:`/`pattern:`
 * clauses), `zoneConfig` is added to every zone entry, and `serverConfig` to the server section.
 */
import type { Subprocess } from "bun";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeMessage, type Message } from "../../plugins/dns/message.ts";
import { nameToWire, parseName, type Name } from "../../plugins/dns/names.ts";
import { atRunEnd } from "./run-end.ts";

export type ReferenceKind = "knot" | "nsd";

const BINARIES: Record<ReferenceKind, string> = { knot: "knotd", nsd: "nsd" };
const PACKAGES: Record<ReferenceKind, string> = { knot: "knot", nsd: "nsd" };

export interface ReferenceZone {
  /** The zone's origin, absolute ("example.org."). */
  origin: string;
  /** The zone file text (with or without $ORIGIN); omitted for a zone transferred as a secondary. */
  text?: string;
  /** Knot only: raw lines added to this zone's entry alone, without indentation (`catalog-role: interpret`). */
  config?: string;
}

export interface ReferenceOptions {
  zones: ReferenceZone[];
  /** Knot only: "secondary" transfers every zone from `primary` (AXFR/IXFR, NOTIFY accepted from it). */
  role?: "primary" | "secondary";
  primary?: { address: string; port: number };
  /** TSIG for the transfers and NOTIFY of a secondary (and available as key `tsig.name` to `config`). */
  tsig?: { name: string; algorithm: "hmac-sha256"; secretBase64: string };
  /** Raw configuration placed before the zones (see the file comment). */
  config?: string;
  /** Raw lines added to every zone entry, written without indentation (the helper indents them). */
  zoneConfig?: string;
  /** Raw lines added to the server section, without indentation. */
  serverConfig?: string;
  /**
   * Knot only: more templates by id (a catalog's members' template), each with the default
   * template's storage and journal and, for a secondary, the transfers from `primary` with its
   * NOTIFY ACL that every zone entry has.
   */
  templates?: string[];
  /** Answering threads/processes (Knot udp-workers, NSD server-count). Default 1. */
  workers?: number;
  /** Run the server under `taskset -c <cpus>` when taskset exists (benchmarks). */
  cpus?: string;
  /**
   * What "ready" means: "zones" (default) waits until every zone answers its SOA with AA (for a
   * secondary: until it has transferred); "listening" only until the port answers at all.
   */
  ready?: "zones" | "listening";
  readyTimeoutMs?: number;
}

export interface ReferenceServer {
  kind: ReferenceKind;
  /** `knotd 3.2.6`, `nsd 4.6.1`. */
  version: string;
  /** The UDP and TCP port on 127.0.0.1. */
  port: number;
  /** The main process (NSD forks its workers below it). */
  pid: number;
  /** The temporary directory with config, zones, logs. */
  dir: string;
  /** The server's log so far (for failure messages). */
  log(): string;
  /** utime + stime of the server and every process below it, in seconds. */
  cpuSeconds(): number;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

/** The binary's path, or null when it is not installed. */
export function referenceBinary(kind: ReferenceKind): string | null {
  return Bun.which(BINARIES[kind]) ?? Bun.which(BINARIES[kind], { PATH: "/usr/sbin:/usr/local/sbin:/sbin" });
}

const notInstalled = (kind: ReferenceKind) =>
  `${BINARIES[kind]} is not installed (apt-get install -y --no-install-recommends ${PACKAGES[kind]})`;

/**
 * Why a test needing `kind` should be skipped, or null when it can run. In CI a missing server is
 * not a reason to skip: the test runs and fails in `startReference`.
 */
export function referenceSkipReason(kind: ReferenceKind): string | null {
  if (referenceBinary(kind) !== null || process.env.CI === "true") return null;
  return notInstalled(kind);
}

/**
 * Starts `kind` serving `options.zones`. Resolves once it is ready (see `options.ready`); null
 * when the binary is missing outside CI; throws when it is missing in CI or does not start.
 */
export async function startReference(kind: ReferenceKind, options: ReferenceOptions): Promise<ReferenceServer | null> {
  const binary = referenceBinary(kind);
  if (binary === null) {
    if (process.env.CI === "true") throw new Error(`${notInstalled(kind)}: CI must install it`);
    return null;
  }
  if (kind === "nsd" && options.role === "secondary") throw new Error("only Knot is supported as a secondary here");
  // A free port can be taken between probing and binding (the server then exits): try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freeUdpTcpPort();
    try {
      return await launch(kind, binary, port, options);
    } catch (e) {
      if (!(e instanceof StartError && e.exited) || attempt === 3) throw e;
    }
  }
}

class StartError extends Error {
  constructor(
    message: string,
    readonly exited: boolean,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping

/** Servers not stopped yet: killed when the test run (or a script) ends, so none outlives a failed test. */
const running = new Map<number, { dir: string; descendants: () => number[] }>();
atRunEnd(() => {
  for (const [pid, { dir, descendants }] of running) {
    killAll(processes([pid, ...descendants()]));
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A process by pid and start time: a pid alone may have been reused by the time it is killed. */
interface Started {
  pid: number;
  start: string;
}

const processes = (pids: number[]): Started[] => pids.flatMap((pid) => (statOf(pid) ? [{ pid, start: statOf(pid)!.start }] : []));

function killAll(list: Started[]): void {
  for (const p of list) {
    if (statOf(p.pid)?.start !== p.start) continue; // gone, or another process now
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {}
  }
}

async function launch(kind: ReferenceKind, binary: string, port: number, options: ReferenceOptions): Promise<ReferenceServer> {
  const dir = mkdtempSync(join(tmpdir(), `citadel-ref-${kind}-`));
  mkdirSync(join(dir, "db"));
  const zones = options.zones.map((zone, i) => ({ ...zone, origin: absolute(zone.origin), file: `zone${i}.db` }));
  for (const zone of zones) if (zone.text !== undefined) writeFileSync(join(dir, zone.file), withOrigin(zone.origin, zone.text));
  const configFile = join(dir, kind === "knot" ? "knot.conf" : "nsd.conf");
  writeFileSync(configFile, kind === "knot" ? knotConfig(dir, port, zones, options) : nsdConfig(dir, port, zones, options));

  const logFile = join(dir, "server.log");
  // -d keeps NSD in the foreground (knotd stays there without -d): the pid is the server's.
  const command = kind === "knot" ? [binary, "-c", configFile] : [binary, "-d", "-c", configFile];
  const taskset = options.cpus !== undefined ? Bun.which("taskset") : null;
  const proc = Bun.spawn(taskset ? [taskset, "-c", options.cpus!, ...command] : command, {
    cwd: dir,
    stdin: "ignore",
    stdout: Bun.file(logFile),
    stderr: Bun.file(join(dir, "stderr.log")),
  });
  const descendants = () => descendantsOf(proc.pid);
  running.set(proc.pid, { dir, descendants });
  const log = () => [logFile, join(dir, "stderr.log"), join(dir, "nsd.log")].map(readOrEmpty).join("");

  const stop = async () => {
    if (!running.has(proc.pid)) return;
    const children = processes(descendants());
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
    await proc.exited;
    clearTimeout(timer);
    killAll(children); // a worker NSD did not take down with it
    running.delete(proc.pid);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitReady(proc, port, zones, options);
  } catch (e) {
    const exited = proc.exitCode !== null || proc.signalCode !== null;
    const text = log();
    await stop();
    throw new StartError(`${BINARIES[kind]} did not start on port ${port}: ${e instanceof Error ? e.message : e}\n${text}`, exited);
  }
  return {
    kind,
    version: await versionOf(kind, binary),
    port,
    pid: proc.pid,
    dir,
    log,
    cpuSeconds: () => processTreeCpuSeconds(proc.pid),
    stop,
  };
}

const absolute = (origin: string) => (origin.endsWith(".") ? origin : `${origin}.`);
/** A zone file that does not depend on the server's idea of the origin. */
const withOrigin = (origin: string, text: string) => (/^\s*\$ORIGIN/im.test(text) ? text : `$ORIGIN ${origin}\n${text}`);
const indent = (text: string | undefined, spaces: number) =>
  (text ?? "")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => " ".repeat(spaces) + line)
    .join("\n");

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/**
 * knot.conf: everything under `dir`, one zone entry per zone. Zone files are loaded whole and
 * never written back, and there is no journal for a primary, so nothing persists between runs
 * (and semantic checks are off: a test zone may hold what Knot would only warn about).
 */
function knotConfig(dir: string, port: number, zones: Array<ReferenceZone & { file: string }>, o: ReferenceOptions): string {
  const secondary = o.role === "secondary";
  if (secondary && !o.primary) throw new Error("a secondary needs options.primary");
  const workers = o.workers ?? 1;
  const sections = [
    `server:
    rundir: "${dir}"
    listen: 127.0.0.1@${port}
    udp-workers: ${workers}
    tcp-workers: ${workers}
    background-workers: 1
${indent(o.serverConfig, 4)}`,
    `database:
    storage: "${dir}/db"`,
    `log:
  - target: stderr
    any: warning`,
  ];
  if (o.tsig) {
    sections.push(`key:
  - id: ${o.tsig.name}
    algorithm: ${o.tsig.algorithm}
    secret: ${o.tsig.secretBase64}`);
  }
  if (secondary) {
    const key = o.tsig ? `\n    key: ${o.tsig.name}` : "";
    sections.push(`remote:
  - id: primary
    address: ${o.primary!.address}@${o.primary!.port}${key}`);
    sections.push(`acl:
  - id: notify-from-primary
    address: ${o.primary!.address}
    action: notify${key}`);
  }
  if (o.config) sections.push(o.config);
  const storage = `storage: "${dir}"
zonefile-sync: -1
zonefile-load: ${secondary ? "none" : "whole"}
journal-content: ${secondary ? "changes" : "none"}
semantic-checks: off`;
  const transfers = secondary ? "master: primary\nacl: notify-from-primary" : "";
  const templates = (o.templates ?? []).map((id) => `  - id: ${id}\n${indent(storage, 4)}${transfers ? `\n${indent(transfers, 4)}` : ""}`);
  sections.push(["template:", `  - id: default\n${indent(storage, 4)}`, ...templates].join("\n"));
  const zoneEntries = zones.map((z) => {
    const lines = [`  - domain: ${z.origin}`, `    file: ${z.file}`];
    if (secondary) lines.push(indent(transfers, 4));
    if (o.zoneConfig) lines.push(indent(o.zoneConfig, 4));
    if (z.config) lines.push(indent(z.config, 4));
    return lines.join("\n");
  });
  sections.push(`zone:\n${zoneEntries.join("\n")}`);
  return sections.join("\n") + "\n";
}

/** nsd.conf: no privilege drop, no chroot, no database file, no control socket; all files under `dir`. */
function nsdConfig(dir: string, port: number, zones: Array<ReferenceZone & { file: string }>, o: ReferenceOptions): string {
  const zoneEntries = zones.map((z) => `zone:\n    name: ${z.origin}\n    zonefile: ${z.file}\n${indent(o.zoneConfig, 4)}`);
  return `server:
    ip-address: 127.0.0.1@${port}
    username: ""
    chroot: ""
    zonesdir: "${dir}"
    database: ""
    zonelistfile: "${dir}/zone.list"
    xfrdfile: "${dir}/xfrd.state"
    xfrdir: "${dir}"
    pidfile: "${dir}/nsd.pid"
    logfile: "${dir}/nsd.log"
    server-count: ${o.workers ?? 1}
    verbosity: 0
    # Response rate limiting is on by default (200 answers/s per netblock, then TC or silence):
    # tests and benchmarks ask that fast from one address on purpose.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
${indent(o.serverConfig, 4)}
remote-control:
    control-enable: no
${o.config ?? ""}
${zoneEntries.join("\n")}
`;
}

/** Polls until every zone answers its SOA with AA (or, for "listening", until anything answers). */
async function waitReady(proc: Subprocess, port: number, zones: ReferenceZone[], o: ReferenceOptions): Promise<void> {
  const deadline = Date.now() + (o.readyTimeoutMs ?? 10_000);
  const client = await DnsClient.open(port, { timeoutMs: 200, retries: 0 });
  try {
    let pending = zones.map((z) => z.origin);
    while (pending.length > 0) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`it exited (${proc.exitCode ?? proc.signalCode})`);
      if (Date.now() > deadline) throw new Error(`no authoritative SOA for ${pending.join(", ")} in time`);
      const still: string[] = [];
      for (const origin of pending) {
        const reply = await client.query(buildQuery({ name: parseName(origin, null), type: 6 })).catch(() => null);
        const ok = reply !== null && (o.ready === "listening" || (reply.rcode === 0 && reply.aa && reply.answer.length > 0));
        if (!ok) still.push(origin);
      }
      pending = still;
      if (pending.length > 0) await Bun.sleep(20);
    }
  } finally {
    client.close();
  }
}

async function versionOf(kind: ReferenceKind, binary: string): Promise<string> {
  const proc = Bun.spawn([binary, kind === "knot" ? "--version" : "-v"], { stdout: "pipe", stderr: "pipe" });
  const text = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
  await proc.exited;
  return `${BINARIES[kind]} ${text.match(/version (\S+)/i)?.[1] ?? "?"}`;
}

/** A port that is free for both UDP and TCP on 127.0.0.1 a moment ago. */
export async function freeUdpTcpPort(): Promise<number> {
  for (;;) {
    const udp = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
    const port = udp.port;
    try {
      const tcp = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      tcp.stop(true);
      return port;
    } catch {
      // taken for TCP: try another
    } finally {
      udp.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Parent pid, utime + stime (ticks) and start time of a process, or null when it is gone. */
function statOf(pid: number): { ppid: number; ticks: number; start: string } | null {
  try {
    // The command name may contain spaces and parentheses: fields start after the last ") ".
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(") ") + 2).split(" ");
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), start: fields[19]! };
  } catch {
    return null;
  }
}

/** Every live process below `pid`. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = statOf(Number(entry));
    if (stat === null) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(entry));
    children.set(stat.ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/**
 * CPU seconds (user + system) used by `pid` and its live descendants. NSD answers in forked
 * children, whose time the parent's own counters do not include while they run.
 */
export function processTreeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendantsOf(pid)]) ticks += statOf(p)?.ticks ?? 0;
  return ticks / CLOCK_TICKS;
}

// ---------------------------------------------------------------------------------------------
// Queries

export interface QuerySpec {
  name: Name;
  type: number;
  class?: number;
  id?: number;
  /** RD in the header (servers echo it); default off, as a resolver asks an authoritative server. */
  rd?: boolean;
  /** An OPT record with this payload size and DO bit; none when omitted. */
  edns?: { payload: number; dnssecOk?: boolean; version?: number };
}

/** A query packet: header, one question (the name's octets as given, case included), optional OPT. */
export function buildQuery(q: QuerySpec): Uint8Array {
  const qname = nameToWire(q.name);
  const packet = new Uint8Array(12 + qname.length + 4 + (q.edns ? 11 : 0));
  const view = new DataView(packet.buffer);
  view.setUint16(0, q.id ?? 0);
  view.setUint16(2, q.rd ? 0x0100 : 0);
  view.setUint16(4, 1);
  view.setUint16(10, q.edns ? 1 : 0);
  packet.set(qname, 12);
  let at = 12 + qname.length;
  view.setUint16(at, q.type);
  view.setUint16(at + 2, q.class ?? 1);
  at += 4;
  if (q.edns) {
    packet[at] = 0; // root owner
    view.setUint16(at + 1, 41);
    view.setUint16(at + 3, q.edns.payload);
    packet[at + 6] = q.edns.version ?? 0;
    view.setUint16(at + 7, q.edns.dnssecOk ? 0x8000 : 0);
    view.setUint16(at + 9, 0);
  }
  return packet;
}

interface Pending {
  packet: Uint8Array;
  resolve: (m: Message & { wire: Uint8Array }) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  tries: number;
}

/**
 * A UDP client for one server on 127.0.0.1: queries get fresh ids and are matched to replies by
 * id; a query unanswered after `timeoutMs` is sent again up to `retries` times.
 */
export class DnsClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  private constructor(
    private readonly socket: import("bun").udp.Socket<"uint8array">,
    readonly port: number,
    private readonly timeoutMs: number,
    private readonly retries: number,
  ) {}

  static async open(port: number, { timeoutMs = 1000, retries = 2 } = {}): Promise<DnsClient> {
    let client: DnsClient | null = null;
    const socket = await Bun.udpSocket({
      hostname: "127.0.0.1",
      binaryType: "uint8array",
      socket: {
        data: (_s, data) => client?.received(new Uint8Array(data)),
        // ICMP "port unreachable" while a server is still starting: the retry or timeout handles it.
        error: () => {},
      },
    });
    client = new DnsClient(socket, port, timeoutMs, retries);
    return client;
  }

  /** Sends `packet` (its id is replaced) and resolves with the decoded reply and its octets. */
  query(packet: Uint8Array): Promise<Message & { wire: Uint8Array }> {
    if (this.pending.size >= 0xffff) return Promise.reject(new Error("too many queries in flight"));
    let id = this.nextId;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    this.nextId = (id + 1) & 0xffff;
    const copy = packet.slice();
    copy[0] = id >>> 8;
    copy[1] = id & 0xff;
    return new Promise((resolve, reject) => {
      const entry: Pending = { packet: copy, resolve, reject, tries: 0, timer: undefined as never };
      this.pending.set(id, entry);
      this.send(id, entry);
    });
  }

  private send(id: number, entry: Pending): void {
    entry.tries++;
    this.socket.send(entry.packet, this.port, "127.0.0.1");
    entry.timer = setTimeout(() => {
      if (entry.tries <= this.retries) return this.send(id, entry);
      this.pending.delete(id);
      entry.reject(new Error(`no answer from 127.0.0.1:${this.port} after ${entry.tries} tries`));
    }, this.timeoutMs);
  }

  private received(wire: Uint8Array): void {
    if (wire.length < 12) return;
    const id = (wire[0]! << 8) | wire[1]!;
    const entry = this.pending.get(id);
    if (!entry) return; // late reply to a retried query
    this.pending.delete(id);
    clearTimeout(entry.timer);
    try {
      entry.resolve({ ...decodeMessage(wire), wire });
    } catch (e) {
      entry.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  close(): void {
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new Error("client closed"));
    }
    this.pending.clear();
    this.socket.close();
  }
}

/** One query over TCP (a connection of its own); resolves with the decoded reply and its octets. */
export async function queryTcp(port: number, packet: Uint8Array, timeoutMs = 3000): Promise<Message & { wire: Uint8Array }> {
  const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
  let buffered = new Uint8Array(0);
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        const joined = new Uint8Array(buffered.length + chunk.length);
        joined.set(buffered);
        joined.set(chunk, buffered.length);
        buffered = joined;
        if (buffered.length >= 2 && buffered.length >= 2 + ((buffered[0]! << 8) | buffered[1]!)) {
          resolve(buffered.slice(2, 2 + ((buffered[0]! << 8) | buffered[1]!)));
        }
      },
      close: () => reject(new Error("connection closed before the reply")),
      error: (_s, e) => reject(e),
    },
  });
  const timer = setTimeout(() => reject(new Error(`no TCP answer from 127.0.0.1:${port}`)), timeoutMs);
  const framed = new Uint8Array(2 + packet.length);
  framed[0] = packet.length >>> 8;
  framed[1] = packet.length & 0xff;
  framed.set(packet, 2);
  socket.write(framed);
  try {
    const wire = await promise;
    return { ...decodeMessage(wire), wire };
  } finally {
    clearTimeout(timer);
    socket.end();
  }
}
