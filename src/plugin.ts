/**
 * The plugin contract. A service (dns, secrets, mesh, ...) is one object of this shape;
 * main.ts holds the one list of plugins that makes up the binary. A plugin gets the kernel
 * and nothing else: it imports from src/, never from another plugin.
 */
import type { TObject } from "@sinclair/typebox";
import type { AnyElysia } from "elysia";
import type { AuditLog } from "./audit/log.ts";
import type { BuildInfo } from "./build-info.ts";
import type { Config } from "./config/schema.ts";
import type { IdentityRegistry } from "./auth/principal.ts";
import type { KeySource } from "./crypto/key-operations.ts";
import type { Seal } from "./crypto/seal.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { ShieldSlot } from "./intel/shield.ts";
import type { RecordProviders } from "./record-providers.ts";
import type { Migration, MigrationSet } from "./store/migrate.ts";
import type { Store } from "./store/store.ts";

/** An audit action type a plugin may record, such as "secrets.secret.update". */
export interface AuditActionType {
  type: string;
  description: string;
}

/** Stops what `start` started; must be safe to call after a partial start. */
export type Stop = () => Promise<void>;

export interface Clock {
  /** Milliseconds since the epoch. Tests pass a fixed clock. */
  now(): number;
  /**
   * Milliseconds on a clock that never goes back (performance.now), for how long a wait or a
   * rate has run: the wall clock steps back and forth (NTP, a VM resumed). Absent: now().
   */
  elapsed?(): number;
}

export const systemClock: Clock = { now: () => Date.now(), elapsed: () => performance.now() };

/** What every plugin receives. `settings` is the plugin's own config section, validated. */
export interface Kernel<Settings = unknown> {
  readonly settings: Settings;
  /** The whole configuration, read-only: plugins read their own section through `settings`. */
  readonly config: Readonly<Config>;
  readonly store: Store;
  /** Seal state; `seal.keyring()` gives the keyring or throws SealedError (503). */
  readonly seal: Seal;
  /** Record an event inside the store transaction that makes the change: `audit.record(tx, ...)`. */
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly clock: Clock;
  readonly build: BuildInfo;
  /** When this process started serving (ms since the epoch). */
  readonly startedAt: number;
  /** Where the root key comes from (for unseal and rekey). */
  readonly keySource: KeySource;
  /** The identity service's slot: the iam plugin provides it, the guard consults it. */
  readonly identity: IdentityRegistry;
  /** Every service name that API keys can be made for (the plugins' `service`). */
  readonly services: readonly string[];
  /** Every scope a credential can be made with (knownScopes of the plugins' `scopes`): what no route requires grants nothing. */
  readonly scopes: readonly string[];
  /** Names another plugin has the DNS server answer (the mesh's node names): see record-providers.ts. */
  readonly records: RecordProviders;
  /** The shield's slot: the intel plugin fills it; the HTTP guard and the DNS server ask it. */
  readonly shield: ShieldSlot;
  /**
   * The metrics registry served at GET /metrics (the metrics plugin). Resolve a labelled
   * series once and keep it: recording is then a field update, cheap enough for hot paths.
   */
  readonly metrics: Metrics;
}

export interface CommandOption {
  type: "string" | "boolean";
  description: string;
  short?: string;
}

/** What a CLI command gets: parsed arguments and where to write. */
export interface CommandContext {
  /** Positional arguments after the command words. */
  args: string[];
  options: Record<string, string | boolean | undefined>;
  /** --json: print data as JSON instead of text. */
  json: boolean;
  out(text: string): void;
  err(text: string): void;
  /**
   * A client for the API: the instance --data/--config name, else CITADEL_SERVER, else the
   * server of the stored login (citadel login), else this machine's Citadel (docs/cli.md has the
   * whole rule); with CITADEL_TOKEN or the stored token unless `anonymous`.
   */
  api(options?: { anonymous?: boolean; server?: string }): Promise<ApiClient>;
  /** Where the CLI keeps its login ($XDG_CONFIG_HOME, else ~/.config). */
  configHome: string;
  /** The process environment (for `citadel run`, which hands it on to the command it starts). */
  env: Readonly<Record<string, string | undefined>>;
  /** The configured data directory (for commands that work on the files, such as audit verify). */
  dataDir(): string;
  /** The whole configuration, as `serve` would load it (for commands that work on this machine: doctor, reports). */
  config(): Readonly<Config>;
  /** The kernel's and every plugin's migrations (for commands that check a database this binary would run on: restore). */
  migrations(): readonly MigrationSet[];
}

export interface ApiClient {
  readonly baseUrl: string;
  /** What the server is pinned by, when it is: its public key pin (sha256//...), or a certificate (PEM) pinned whole. */
  readonly pinned?: string;
  /**
   * Sends a JSON request; resolves with the parsed body, or throws an ApiError with the problem.
   * `confirmed`: the user already confirmed a destructive operation (--yes), so the server's
   * 428 confirmation request is answered once with its token. `worksLong`: the server's work
   * grows with the data (a backup, a re-encryption of every value): the answer is waited for as
   * long as it takes, not the usual 30 s (Ctrl-C stops the waiting, not the work).
   */
  request<T = unknown>(method: string, path: string, body?: unknown, options?: { confirmed?: boolean; worksLong?: boolean }): Promise<T>;
  /** Like `request`, for answers that are not JSON (exports). */
  requestText(method: string, path: string): Promise<string>;
  /**
   * Sends a request; resolves once the answer's head is in (a refusal throws as `request` does)
   * with its body's pieces, each read when the one before was taken: an answer of any size (an
   * export) is never held whole. No limit on the whole: a wait of more than `idleTimeoutMs` for
   * the head or the next piece fails, as does an answer that breaks off.
   */
  requestStream(method: string, path: string, options?: { idleTimeoutMs?: number }): Promise<AsyncIterable<Uint8Array>>;
}

export interface Command {
  /** The words after `citadel`, for example ["system", "info"]. */
  words: readonly string[];
  summary: string;
  /** Synopsis of positional arguments, for example "<zone> [name]". */
  args?: string;
  /** Largest number of positional arguments accepted (default 0). */
  maxArgs?: number;
  options?: Readonly<Record<string, CommandOption>>;
  run(ctx: CommandContext): Promise<number>;
}

export interface SetupResult {
  summary: Record<string, unknown>;
  lines: string[];
}

export interface Plugin<Settings = unknown> {
  /** Also the URL prefix (/v1/<name>) and the config section ([<name>]). */
  name: string;
  /** Service name inside API keys (citadel_<service>_...), for plugins that have keys. */
  service?: string;
  /** The plugin's config section; validated with the rest of the config at start-up. */
  settings?: TObject;
  /** Token scopes the plugin's routes require, such as "dns:write". */
  scopes: readonly string[];
  actions: readonly AuditActionType[];
  migrations: readonly Migration[];
  /** The plugin's routes, mounted under /v1/<name>. */
  routes?(k: Kernel<Settings>): AnyElysia;
  /** Routes at paths a standard fixes (the OAuth endpoints), mounted as they are. */
  rootRoutes?(k: Kernel<Settings>): AnyElysia;
  /**
   * First-time setup, run by `citadel init` and the first start of the embedded default
   * (the first organization and its owner). Returns what to show the operator once, or null
   * when there was nothing to do.
   */
  setup?(k: Kernel<Settings>, options: Readonly<Record<string, string | boolean | undefined>>): Promise<SetupResult | null>;
  /**
   * Host-local recovery (`citadel recover`): gives an operator their account back when no one
   * can log in to do it through the API (the only operator lost their password or second
   * factor). Whoever runs it can write the database already; it does properly, and on the
   * record, what they could otherwise only do by hand. `options`: `email` (whose account),
   * `clear_allowlist` (an organization or workspace whose address allowlist is to be emptied),
   * `invoker` (who ran it, for the audit event: uid and sudo user) and `invoker_uids` (the same
   * by number only, for the chained reason). Null when the plugin has nothing to do.
   */
  recover?(k: Kernel<Settings>, options: Readonly<Record<string, string | boolean | undefined>>): Promise<SetupResult | null>;
  /** Starts listeners and timers; resolves with the function that stops them. */
  start?(k: Kernel<Settings>): Promise<Stop>;
  commands?: readonly Command[];
}

/** Identity function that lets TypeScript infer a plugin's settings type. */
export function definePlugin<Settings>(plugin: Plugin<Settings>): Plugin<Settings> {
  return plugin;
}

/**
 * Checks the wiring of the plugin list, so a mistake stops start-up (and the test suite)
 * with a clear message instead of surfacing as a strange route or a silent shadowing.
 */
export function checkPlugins(plugins: readonly Plugin<any>[], kernelCommands: readonly Command[] = []): void {
  const names = new Set<string>();
  const commandWords = new Set(kernelCommands.map((c) => c.words.join(" ")));
  for (const p of plugins) {
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(p.name)) throw new Error(`plugin name ${JSON.stringify(p.name)}: use lower-case letters, digits and dashes`);
    if (names.has(p.name)) throw new Error(`two plugins are named ${p.name}`);
    names.add(p.name);
    for (const scope of p.scopes) if (!scope.startsWith(`${p.name}:`)) throw new Error(`plugin ${p.name}: scope ${scope} must start with "${p.name}:"`);
    for (const action of p.actions) if (!action.type.startsWith(`${p.name}.`)) throw new Error(`plugin ${p.name}: audit action ${action.type} must start with "${p.name}."`);
    for (const command of p.commands ?? []) {
      const words = command.words.join(" ");
      if (commandWords.has(words)) throw new Error(`plugin ${p.name}: the command "${words}" exists already`);
      commandWords.add(words);
    }
  }
}
