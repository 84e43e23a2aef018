/**
 * In-process HTTP testing: the real app and edge on an in-memory store with a fixed clock,
 * driven by Request objects (no sockets). `send` returns status, headers and parsed body.
 */
import type { AnyElysia } from "elysia";
import { createHttpApp, type MountedRoutes, type ReadinessCheck } from "../../src/http/app.ts";
import { connect } from "node:net";
import { createEdge, HttpRequestMetrics, startHttpServer } from "../../src/http/edge.ts";
import type { RateLimiter } from "../../src/auth/rate-limit.ts";
import type { Guard } from "../../src/http/guard.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { parseCidr } from "../../src/net/ip.ts";
import { KERNEL_ACTIONS } from "../../src/audit/actions.ts";
import { AuditLog } from "../../src/audit/log.ts";
import { IdentityRegistry } from "../../src/auth/principal.ts";
import { RecordProviders } from "../../src/record-providers.ts";
import { ShieldSlot } from "../../src/intel/shield.ts";
import { Metrics } from "../../src/metrics.ts";
import { Keyring } from "../../src/crypto/keyring.ts";
import { generateRootKey } from "../../src/crypto/root-key.ts";
import { Seal } from "../../src/crypto/seal.ts";
import { encodeShare, splitSecret } from "../../src/crypto/shamir.ts";
import type { AuditActionType, Clock, Kernel } from "../../src/plugin.ts";
import { kernelMigrations } from "../../src/store/kernel-migrations.ts";
import { migrate } from "../../src/store/migrate.ts";
import { ReadMemo } from "../../src/store/read-memo.ts";
import { openStore, type Store } from "../../src/store/store.ts";
import { loadConfig } from "../../src/config/load.ts";
import { buildConfigSchema } from "../../src/config/schema.ts";

export const BASE = "https://citadel.test";

export interface TestEdgeOptions {
  mounts?: MountedRoutes[];
  rootRoutes?: AnyElysia[];
  guard?: Guard;
  readiness?: ReadinessCheck[];
  sealed?: () => boolean;
  bodyLimit?: number;
  trustedProxies?: string[];
  /** The socket peer every request appears to come from. */
  peer?: string;
  /** Serve as over TLS (default) or plain HTTP. */
  tls?: boolean;
  /** Count requests into this registry (as main.ts does). */
  metrics?: Metrics;
  /** Each request's reads in one transaction (as main.ts does with Store.snapshot). */
  snapshot?: <T>(fn: () => T) => T;
  /** The per-address limit, and who is told of its refusals (as main.ts does). */
  perAddress?: RateLimiter;
  onRateLimited?: (request: Request) => void;
  shield?: ShieldSlot;
  /** The idle timeout of listen()'s server, and the one the edge gives back after a long answer. */
  idleTimeoutSeconds?: number;
}

export interface CapturedLog {
  lines: Array<Record<string, unknown>>;
  logger: Logger;
}

export function captureLog(): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, logger: createLogger({ level: "debug", sink: (line) => lines.push(JSON.parse(line)) }) };
}

export function testEdge(options: TestEdgeOptions = {}) {
  const log = captureLog();
  const bodyLimit = options.bodyLimit ?? 1024 * 1024;
  const app: AnyElysia = createHttpApp({
    mounts: options.mounts ?? [],
    rootRoutes: options.rootRoutes,
    guard: options.guard,
    tls: options.tls ?? true,
    readiness: options.readiness ?? [],
    log: log.logger,
    info: { version: "test" },
  });
  const edge = createEdge({
    app,
    log: log.logger,
    bodyLimit,
    trustedProxies: (options.trustedProxies ?? []).map((c) => parseCidr(c)!),
    tls: options.tls ?? true,
    requests: options.metrics && new HttpRequestMetrics(options.metrics),
    sealed: options.sealed,
    snapshot: options.snapshot,
    perAddress: options.perAddress,
    onRateLimited: options.onRateLimited,
    shield: options.shield,
    idleTimeoutSeconds: options.idleTimeoutSeconds ?? 10,
  });
  const peer = options.peer ?? "127.0.0.1";
  // The socket peer: fixed, or per request through a test-only header (this shim is not the edge).
  const server = {
    requestIP: (request: Request) => {
      const address = request.headers.get("x-test-peer") ?? peer;
      return { address, family: address.includes(":") ? "IPv6" : "IPv4", port: 40000 };
    },
    timeout: () => {}, // no socket to time out
  };
  const fetch = async (request: Request) => edge(request, server as never);
  /** The same edge behind a real socket on 127.0.0.1 (what Bun itself does to a request and an answer); stop() it. */
  const listen = () => startHttpServer({ fetch: edge, address: "127.0.0.1", port: 0, idleTimeoutSeconds: options.idleTimeoutSeconds ?? 10, bodyLimit, log: log.logger });
  return { app, log, fetch, listen, send: (method: string, path: string, init: SendInit = {}) => send(fetch, method, path, init) };
}

/**
 * Sends `text` as it is over a new connection and gives back everything the server wrote until
 * it closed: for requests fetch() cannot make (HTTP/1.0, no Host, a Host with a space).
 * Ask for "Connection: close" in an HTTP/1.1 request.
 */
export function rawHttp(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(text));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("end", () => resolve(received));
    socket.on("error", reject);
  });
}

/** The status code and the header fields (names in lower case) of a raw HTTP response. */
export function parseRawResponse(raw: string): { status: number; headers: Map<string, string>; body: string } {
  const [head = "", ...rest] = raw.split("\r\n\r\n");
  const [statusLine = "", ...fields] = head.split("\r\n");
  const headers = new Map(fields.map((f) => [f.slice(0, f.indexOf(":")).toLowerCase(), f.slice(f.indexOf(":") + 1).trim()] as const));
  return { status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") };
}

export interface SendInit {
  json?: unknown;
  body?: RequestInit["body"];
  headers?: Record<string, string>;
}

export interface Sent {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

export async function send(fetch: (r: Request) => Promise<Response>, method: string, path: string, init: SendInit = {}): Promise<Sent> {
  const headers: Record<string, string> = { ...init.headers };
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers["content-type"] ??= "application/json";
  }
  const response = await fetch(new Request(BASE + path, { method, headers, body }));
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, text, body: parsed };
}

/**
 * A clock the test moves: `advance` lets time pass (moved back, only the wall time steps back,
 * as a system's would); `step` moves the wall time alone, as NTP's correction does.
 */
export const fixedClock = (start = Date.UTC(2026, 0, 1)): Clock & { advance(ms: number): void; step(ms: number): void } => {
  let now = start;
  let elapsed = 0;
  return {
    now: () => now,
    elapsed: () => elapsed,
    advance: (ms) => {
      now += ms;
      elapsed += Math.max(0, ms);
    },
    step: (ms) => void (now += ms),
  };
};

export interface TestKernelOptions<S> extends Partial<Kernel<S>> {
  /** Leave the kernel sealed (default: unsealed with a fresh root key). */
  sealed?: boolean;
  /** Action types to register besides the kernel's. */
  actions?: readonly AuditActionType[];
  /** "shamir": the root key is split 3 of 5 (see `shares`), and the kernel starts sealed. */
  sealMethod?: "key_file" | "shamir";
}

/**
 * A kernel for a plugin under test: an in-memory store with the kernel's migrations, a
 * fresh root key (a key file method, never written), a fixed clock and default config.
 */
export function testKernel<S = unknown>(options: TestKernelOptions<S> = {}): Kernel<S> & { store: Store; rootKey: Buffer; shares: string[] } {
  const { config } = loadConfig({ schema: buildConfigSchema([]), env: {}, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });
  const clock = options.clock ?? fixedClock();
  const store = openStore({ path: ":memory:" });
  migrate(store.db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const rootKey = generateRootKey();
  const method = options.sealMethod ?? "key_file";
  const shamir = method === "shamir" ? { shares: 5, threshold: 3 } : undefined;
  const keyId = store.db.transaction(() => Keyring.initialize(store.db, rootKey, method, clock.now(), shamir))();
  const shares = shamir ? splitSecret(rootKey, 5, 3).map((s) => encodeShare(keyId, s)) : [];
  const seal = new Seal(store.db, clock.now, null, new ReadMemo(store));
  if (!(options.sealed ?? method === "shamir")) seal.unsealWithKey(rootKey);
  const audit = new AuditLog({ now: clock.now, keyring: () => seal.keyringIfUnsealed(), inserted: (tx, rows) => store.leaveOutOfChangeStamp(tx, rows) });
  audit.register([...KERNEL_ACTIONS, ...(options.actions ?? [])]);
  return {
    settings: undefined as S,
    config,
    store,
    seal,
    audit,
    log: captureLog().logger,
    clock,
    build: { version: "1.2.3", commit: "abc1234", buildTime: "2026-01-01T00:00:00.000Z", compiled: true },
    startedAt: clock.now(),
    keySource: { method, keyFile: "/nonexistent/root.key", credential: "citadel-root-key", credentialsDirectory: undefined },
    identity: new IdentityRegistry(),
    services: [],
    scopes: [],
    records: new RecordProviders(),
    shield: new ShieldSlot(),
    metrics: new Metrics(),
    rootKey,
    shares,
    ...options,
  } as Kernel<S> & { store: Store; rootKey: Buffer; shares: string[] };
}
