/**
 * The whole application in-process, as main.ts composes it: every plugin, the guard, the
 * iam identity provider, an in-memory store, a fixed clock. Set up like a fresh install:
 * an operator who owns the "default" organization. Helpers log in and make credentials.
 */
import { afterEach } from "bun:test";
import { Confirmations } from "../../src/auth/confirmations.ts";
import { knownScopes } from "../../src/auth/scopes.ts";
import { RateLimiter } from "../../src/auth/rate-limit.ts";
import { loadConfig } from "../../src/config/load.ts";
import { writeRootKeyFile } from "../../src/crypto/root-key.ts";
import { createGuard } from "../../src/http/guard.ts";
import { configSchema, plugins } from "../../src/main.ts";
import { shieldVerdictCounters } from "../../src/metrics.ts";
import type { Kernel, Plugin } from "../../src/plugin.ts";
import { kernelMigrations } from "../../src/store/kernel-migrations.ts";
import { migrate } from "../../src/store/migrate.ts";
import { captureLog, fixedClock, testEdge, testKernel, type SendInit } from "./http.ts";

export interface TestCitadelOptions {
  /** The socket peer every request appears to come from. */
  peer?: string;
  /** Override config values (a partial config object, merged per section). */
  config?: Record<string, Record<string, unknown>>;
  /** "shamir": split 3 of 5 (`kernel.shares`) and start sealed. */
  sealMethod?: "key_file" | "shamir";
  /** Write the root key to this file and make it the configured key file. */
  keyFile?: string;
  /** Extra audit action types (for tests that record their own events). */
  actions?: Array<{ type: string; description: string }>;
}

export async function testCitadel(options: TestCitadelOptions = {}) {
  const clock = fixedClock(Date.UTC(2026, 5, 1));
  const seeded = testKernel({ clock, sealMethod: options.sealMethod, actions: [...plugins.flatMap((p) => p.actions), ...(options.actions ?? [])] });
  if (options.keyFile) writeRootKeyFile(options.keyFile, seeded.rootKey);
  const base = { ...seeded, keySource: { ...seeded.keySource, ...(options.keyFile ? { keyFile: options.keyFile } : {}) } };
  migrate(base.store.db, [{ owner: "kernel", migrations: kernelMigrations }, ...plugins.map((p) => ({ owner: p.name, migrations: p.migrations }))]);
  const { config } = loadConfig({ schema: configSchema, env: {}, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });
  // No DNS listener unless a test asks for one: in-process apps must not compete for port 5353.
  Object.assign(config.dns as object, { udp: [], tcp: [] });
  for (const [section, values] of Object.entries(options.config ?? {})) Object.assign(config[section] as object, values);
  const log = captureLog();
  const services = plugins.flatMap((p) => (p.service ? [p.service] : []));
  const scopes = knownScopes(plugins.flatMap((p) => p.scopes));
  const kernels = new Map<Plugin<any>, Kernel>();
  const kernelFor = (plugin: Plugin<any>): Kernel => {
    let k = kernels.get(plugin);
    if (!k) kernels.set(plugin, (k = { ...base, config, settings: config[plugin.name], services, scopes, log: log.logger }));
    return k;
  };
  const stops: Array<() => Promise<void>> = [];
  for (const plugin of plugins) if (plugin.start) stops.push(await plugin.start(kernelFor(plugin)));
  let owner: { email: string; password: string; organization: string; oneTimePassword?: string } | undefined;
  for (const plugin of plugins) {
    if (base.seal.sealed) break; // sealed (Shamir): no setup until unsealed
    const result = plugin.setup ? await plugin.setup(kernelFor(plugin), {}) : null;
    if (result) owner = { email: String(result.summary.owner), password: String(result.summary.one_time_password), organization: String(result.summary.organization) };
  }
  const guard = createGuard({
    identity: base.identity,
    shield: base.shield,
    verdicts: shieldVerdictCounters(base.metrics, "http"),
    confirmations: new Confirmations(clock.now),
    limits: {
      auth: new RateLimiter({ name: "auth", perSecond: config.rate_limit.auth.per_second, burst: config.rate_limit.auth.burst }, clock.now),
      organization: new RateLimiter({ name: "organization", perSecond: config.rate_limit.per_organization.per_second, burst: config.rate_limit.per_organization.burst }, clock.now),
    },
    recordSecurityEvent: (event) => void base.store.write((tx) => base.audit.record(tx, event)),
    now: clock.now,
  });
  const edge = testEdge({
    peer: options.peer,
    metrics: base.metrics,
    guard,
    sealed: () => base.seal.sealed,
    snapshot: (fn) => base.store.snapshot(fn),
    readiness: [{ name: "seal", problem: () => (base.seal.sealed ? "sealed" : null) }],
    mounts: plugins.flatMap((p) => (p.routes ? [{ name: p.name, routes: p.routes(kernelFor(p)) }] : [])),
    rootRoutes: plugins.flatMap((p) => (p.rootRoutes ? [p.rootRoutes(kernelFor(p))] : [])),
  });
  if (owner) {
    // As a fresh install's owner does first: log in with the one-time password and change it.
    const first = await edge.send("POST", "/v1/iam/login", { json: { email: owner.email, password: owner.password } });
    const changed = await edge.send("POST", "/v1/iam/me/password", {
      json: { current_password: owner.password, new_password: "owner-passphrase-2026" },
      headers: { authorization: `Bearer ${first.body.token}` },
    });
    if (changed.status !== 200) throw new Error(`changing the one-time password failed: ${changed.text}`);
    owner = { ...owner, oneTimePassword: owner.password, password: "owner-passphrase-2026" } as typeof owner;
  }
  const as = (token: string | undefined, init: SendInit = {}): SendInit => ({ ...init, headers: { ...init.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  const send = (method: string, path: string, token?: string, init: SendInit = {}) => edge.send(method, path, as(token, init));

  /** Logs in (password only); resolves with the session token. */
  const login = async (email: string, password: string) => {
    const res = await send("POST", "/v1/iam/login", undefined, { json: { email, password } });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
    return res.body.token as string;
  };
  /** Makes a user (as the operator) and, with a role, adds them to an organization. */
  const addUser = async (operatorToken: string, email: string, role?: string, organization = owner!.organization) => {
    const res = await send("POST", "/v1/iam/users", operatorToken, { json: { email, password: "correct-horse-battery-9" } });
    if (res.status !== 200) throw new Error(`user creation failed: ${res.status} ${res.text}`);
    if (role) {
      const added = await send("POST", `/v1/iam/orgs/${organization}/members`, operatorToken, { json: { email, role } });
      if (added.status !== 200) throw new Error(`membership failed: ${added.status} ${added.text}`);
    }
    return { id: res.body.user.id as string, token: await login(email, "correct-horse-battery-9") };
  };

  return {
    ...edge,
    send,
    kernel: base,
    config,
    clock,
    log,
    owner: owner!,
    login,
    addUser,
    async stop() {
      for (const stop of stops) await stop();
    },
  };
}

/**
 * `testCitadel` for a test file that stops what it starts: every instance made through the
 * function it returns is stopped after the test that made it.
 */
export function stoppedAfterEach(): (options?: Parameters<typeof testCitadel>[0]) => ReturnType<typeof testCitadel> {
  const running: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const c of running.splice(0)) await c.stop();
  });
  return async (options) => {
    const c = await testCitadel(options);
    running.push(c);
    return c;
  };
}

/** The confirmation token a dangerous request asks for (428): the first half of a confirmed request. */
export async function confirmationToken(c: Pick<Awaited<ReturnType<typeof testCitadel>>, "send">, method: string, path: string, token: string): Promise<string> {
  const ask = await c.send(method, path, token);
  if (ask.status !== 428) throw new Error(`${method} ${path} asked no confirmation: ${ask.status}`);
  return ask.body.confirmation_token as string;
}
