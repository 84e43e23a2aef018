/**
 * The composition root, and the only module that reads process.env and argv. It reads top to
 * bottom: the plugin list, the kernel's own commands, then `serve`: config → data dir →
 * store → migrate → keys (initialize on first start, unseal) → kernel → plugins → listen →
 * wait for a signal → stop everything in reverse.
 */
// First, before any other module loads: a SIGHUP meanwhile would end the process (startup-hangup.ts).
import { endStartupHangups } from "./startup-hangup.ts";
import { X509Certificate } from "node:crypto";
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { auditPlugin } from "../plugins/audit/index.ts";
import { backupPlugin } from "../plugins/backup/index.ts";
import { refuseDuringRestore, settleInterruptedRestore } from "../plugins/backup/restore.ts";
import { sysPlugin } from "../plugins/sys/index.ts";
import { iamPlugin } from "../plugins/iam/index.ts";
import { secretsPlugin } from "../plugins/secrets/index.ts";
import { dnsPlugin } from "../plugins/dns/index.ts";
import { intelPlugin } from "../plugins/intel/index.ts";
import { installPlugin } from "../plugins/install/index.ts";
import { meshPlugin } from "../plugins/mesh/index.ts";
import { metricsPlugin } from "../plugins/metrics/index.ts";
import { opsPlugin } from "../plugins/ops/index.ts";
import { subjectPlugin } from "../plugins/subject/index.ts";
import { systemPlugin } from "../plugins/system/index.ts";
import { KERNEL_ACTIONS } from "./audit/actions.ts";
import { startCheckpointer } from "./audit/checkpointer.ts";
import { beginAuditForwarding, fileSink, journalSink, startAuditForwarder, type AuditSink } from "./audit/forward.ts";
import { syslogSink, type SyslogFacility } from "./audit/syslog.ts";
import { AuditLog } from "./audit/log.ts";
import { knownScopes } from "./auth/scopes.ts";
import { buildInfo } from "./build-info.ts";
import { adviceFor } from "./cli/advice.ts";
import { type ApiClientOptions, createApiClient, localApiClient, localBaseUrl, type TokenOrigin } from "./cli/api-client.ts";
import { readStoredLogin, refuseLoginInTheClear, type StoredLogin, trustOf, upgradeStoredPin } from "./cli/credentials.ts";
import { normalizedServerUrl, serverUrlProblem } from "./cli/server-url.ts";
import { useNetworkEnvironment } from "./cli/pin.ts";
import { sameInstanceFlags } from "./cli/next-command.ts";
import { forStdout, needArgs, printable } from "./cli/output.ts";
import { commandHelpText, helpText, parseCommandLine, UsageError } from "./cli/command-line.ts";
import { ConfigError } from "./config/error.ts";
import { InvalidError } from "./errors.ts";
import { dataPath, INSTALLED_CONFIG_FILE, loadConfig, type LoadedConfig } from "./config/load.ts";
import { renderConfigToml } from "./config/render.ts";
import { buildConfigSchema, DEFAULT_TLS_CERT_FILE, DEFAULT_TLS_KEY_FILE, type Config } from "./config/schema.ts";
import { initializeKeys, isInitialized, leftoverKeyFileWarning, sealMethodMismatch, shamirParameters, startRotationSchedule, storedSealMethods, unsealFromSource, type KeySource } from "./crypto/key-operations.ts";
import type { SealMethod } from "./crypto/keyring.ts";
import { RootKeyError } from "./crypto/root-key.ts";
import { Seal, UnsealError } from "./crypto/seal.ts";
import { actAsDataDirectoryOwner, prepareDataDir } from "./data-dir.ts";
import { lockDataDirectory, type DataDirectoryWriter, type HeldLock } from "./file-lock.ts";
import { writeFileAtomic } from "./files.ts";
import { createHttpApp } from "./http/app.ts";
import { createEdge, HttpRequestMetrics, startHttpServer } from "./http/edge.ts";
import { loadOrCreateTls, readConfigured, readTls, renewSelfSigned, type TlsMaterial } from "./http/tls.ts";
import { tlsReloader, type TlsReloader } from "./http/tls-reload.ts";
import { Lifecycle } from "./lifecycle.ts";
import { createLogger, type Logger } from "./log.ts";
import { Metrics, shieldVerdictCounters } from "./metrics.ts";
import { parseCidr } from "./net/ip.ts";
import { checkPlugins, systemClock, type Command, type CommandContext, type Kernel, type Plugin, type SetupResult } from "./plugin.ts";
import { Confirmations } from "./auth/confirmations.ts";
import { IdentityRegistry } from "./auth/principal.ts";
import { RecordProviders } from "./record-providers.ts";
import { ShieldSlot } from "./intel/shield.ts";
import { RateLimiter } from "./auth/rate-limit.ts";
import { createGuard } from "./http/guard.ts";
import { sampledRateLimitEvents } from "./http/rate-limit-audit.ts";
import { kernelMigrations } from "./store/kernel-migrations.ts";
import { checkMigrations, migrate, MigrationError, type MigrationSet } from "./store/migrate.ts";
import { storeReadiness } from "./store/readiness.ts";
import { ReadMemo } from "./store/read-memo.ts";
import { openStore, storageFailureOf, type StorageFailure, type Store } from "./store/store.ts";

/** The binary is defined by this list. */
export const plugins: readonly Plugin<any>[] = [iamPlugin, systemPlugin, sysPlugin, auditPlugin, secretsPlugin, intelPlugin, meshPlugin, dnsPlugin, subjectPlugin, metricsPlugin, installPlugin, backupPlugin, opsPlugin];

checkPlugins(plugins, kernelCommands({}));
export const configSchema = buildConfigSchema(plugins);

type Env = Readonly<Record<string, string | undefined>>;

export async function main(argv: readonly string[], env: Env): Promise<number> {
  process.umask(0o077); // whatever we create is ours alone unless we say otherwise
  useNetworkEnvironment(env); // the proxy variables fetch reads: the certificate look goes its way
  const commands: Command[] = [...kernelCommands(env), ...plugins.flatMap((p) => p.commands ?? [])];
  let invocation;
  try {
    invocation = parseCommandLine(argv, commands);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`citadel: ${error.message}\n\n${helpText(commands, error)}\n`);
    return 2;
  }
  if (invocation.kind === "help") {
    process.stdout.write(`${helpText(commands, invocation)}\n`);
    return 0;
  }
  const { command, args, options } = invocation;
  // Only serve goes on to take SIGHUP (hangupHandler); any other command has its default back.
  if (command.words.join(" ") !== "serve") endStartupHangups();
  const ctx: CommandContext = {
    args,
    options,
    json: options.json === true,
    out: (text) => process.stdout.write(`${forStdout(text)}\n`),
    err: (text) => process.stderr.write(`${printable(text)}\n`),
    api: async (apiOptions = {}) => (apiOptions.server ? apiClientForServer(options, env, apiOptions.server) : apiClientFor(options, env, apiOptions.anonymous === true)),
    dataDir: () => configFor(options, env).config.data_dir,
    config: () => configFor(options, env).config,
    migrations: allMigrations,
    configHome: env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), ".config"),
    env,
  };
  try {
    return await command.run(ctx);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`citadel: ${printable(message)}\n`); // a server's words among them
    const advice = adviceFor(error);
    if (advice) process.stderr.write(`citadel: ${printable(advice)}\n`);
    if (error instanceof UsageError) {
      // A command's own usage check (a missing argument, a bad flag value) reads as the parser's.
      process.stderr.write(`\n${commandHelpText(error.command ?? command)}\n`);
      return 2;
    }
    return error instanceof ConfigError ? 2 : 1;
  }
}

function kernelCommands(env: Env): Command[] {
  return [
    {
      words: ["serve"],
      summary: "Run Citadel: the API and every service (creates the embedded default on first start)",
      run: (ctx) => serve(configFor(ctx.options, env, { installed: false }), env, instanceFlags(ctx.options)),
    },
    {
      words: ["init"],
      summary: "Create the data directory, config, TLS certificate, database and root key, then exit",
      options: {
        shares: { type: "string", description: "seal.method shamir: how many key shares to make (default 5)" },
        threshold: { type: "string", description: "seal.method shamir: how many shares unseal (default 3)" },
        "key-out": { type: "string", description: "seal.method systemd_credential: where to write the root key once (a path, or - for standard output)" },
        email: { type: "string", description: "The first owner's email (default admin@localhost)" },
        org: { type: "string", description: "The first organization's name (default: default)" },
      },
      run: (ctx) => init(ctx, configFor(ctx.options, env, { installed: false }), env),
    },
    {
      words: ["recover"],
      summary: "On the host: give an operator who cannot log in a one-time password (their two-factor authentication off, their logins ended), or empty an address allowlist that locks everyone out",
      args: "[<email>]",
      maxArgs: 1,
      options: {
        yes: { type: "boolean", description: "Yes, reset this operator's password and second factor (or clear that allowlist)" },
        "clear-allowlist": { type: "string", description: "An organization (org_...) or workspace (ws_...) whose address allowlist locks everyone out: it is emptied (any address)" },
      },
      run: (ctx) => recover(ctx, configFor(ctx.options, env), env),
    },
    {
      words: ["version"],
      summary: "Print the version, commit and build time",
      async run(ctx) {
        if (ctx.json) ctx.out(JSON.stringify({ version: buildInfo.version, commit: buildInfo.commit, build_time: buildInfo.buildTime }, null, 2));
        else ctx.out(`citadel ${buildInfo.version} (commit ${buildInfo.commit}, ${buildInfo.buildTime ? `built ${buildInfo.buildTime}` : "from source"})`);
        return 0;
      },
    },
    {
      words: ["tls", "renew"],
      summary: "Renew Citadel's self-signed TLS certificate now, over the same key (pins hold); --new-key for a key that may have leaked (every client must pin again). Then reload Citadel",
      options: { "new-key": { type: "boolean", description: "Make a new key pair too: clients that pinned the old public key are refused until they pin the new one" } },
      run: (ctx) => renewTls(ctx, configFor(ctx.options, env), env),
    },
    { words: ["help"], summary: "Show this help, or the help of one command", args: "[command]", maxArgs: 3, run: async () => 0 },
  ];
}

/**
 * Which server a client command talks to: the local instance --data or --config name on the
 * command line (a flag the operator typed beats an environment variable, as Vault's -address
 * beats VAULT_ADDR); else CITADEL_SERVER (refused together with CITADEL_DATA or CITADEL_CONFIG,
 * which name another); else the stored login (unless CITADEL_DATA or CITADEL_CONFIG point at a
 * local instance; one an earlier version stored over plain HTTP to another machine is refused,
 * refuseLoginInTheClear); else this machine's Citadel. The token: CITADEL_TOKEN, else the stored one
 * (for a local instance, when the login is to that very server). CITADEL_TOKEN is for
 * CITADEL_SERVER's server when both are set: never sent to another (refuseTokenForAnotherServer).
 */
function apiClientFor(options: Record<string, string | boolean | undefined>, env: Env, anonymous: boolean) {
  const configHome = env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), ".config");
  const stored = readStoredLogin(configHome);
  const namedOnCommandLine = options.data !== undefined || options.config !== undefined;
  // The variables as the flags: --help says `--data DIR (env CITADEL_DATA)`. Empty is unset.
  const namedInEnvironment = !!env.CITADEL_DATA || !!env.CITADEL_CONFIG;
  // Empty is unset, as CITADEL_SERVER is: `CITADEL_TOKEN= citadel ...` hid the stored login.
  const token = anonymous ? undefined : env.CITADEL_TOKEN || undefined;
  // Where the token comes from decides the advice given when it is refused.
  const credential = (storedToken: string | undefined): { token?: string; tokenOrigin?: TokenOrigin } =>
    token !== undefined ? { token, tokenOrigin: "CITADEL_TOKEN" } : storedToken && !anonymous ? { token: storedToken, tokenOrigin: "login" } : {};
  if (env.CITADEL_SERVER && !namedOnCommandLine) {
    if (namedInEnvironment) throw new ConfigError(serverAndInstanceNamed(env));
    const server = namedServer(env.CITADEL_SERVER);
    const sameServer = stored !== null && normalizedServerUrl(stored.server) === server;
    // The pin is handed on too: login and password make follow-up clients from it.
    const pinned = sameServer ? trustOf(stored) : undefined;
    return createApiClient({ baseUrl: server, trust: pinned, pinned, ...(sameServer ? upgradingPin(configHome, stored) : {}), ...credential(sameServer ? stored?.token : undefined) });
  }
  if (stored && !namedOnCommandLine && !namedInEnvironment) {
    refuseLoginInTheClear(stored);
    return createApiClient({ baseUrl: stored.server, trust: trustOf(stored), pinned: trustOf(stored), ...upgradingPin(configHome, stored), ...credential(stored.token) });
  }
  const config = configFor(options, env, { client: true }).config;
  const local = localBaseUrl(config);
  if (env.CITADEL_SERVER && token !== undefined) refuseTokenForAnotherServer(env.CITADEL_SERVER, local, options);
  const loggedInHere = stored && local !== null && new URL(stored.server).origin === new URL(local).origin;
  const { token: sent, tokenOrigin } = credential(loggedInHere ? stored.token : undefined);
  return localApiClient(config, sent, tokenOrigin);
}

/** For a login that pinned its server's certificate before pins named the key: the key pin is kept once the server presents it. */
function upgradingPin(configHome: string, stored: StoredLogin): Pick<ApiClientOptions, "upgradeTrust"> {
  return stored.certificate !== undefined && stored.pin === undefined ? { upgradeTrust: (pin) => upgradeStoredPin(configHome, stored, pin) } : {};
}

/** CITADEL_SERVER and CITADEL_DATA or CITADEL_CONFIG name two servers: which one was meant cannot be told. */
function serverAndInstanceNamed(env: Env): string {
  const local = env.CITADEL_DATA ? `CITADEL_DATA (${env.CITADEL_DATA})` : `CITADEL_CONFIG (${env.CITADEL_CONFIG})`;
  return `environment variables CITADEL_SERVER (${env.CITADEL_SERVER}) and ${local} both name the server to talk to: unset one of them (or name the local instance with --data or --config on the command line)`;
}

/**
 * The command line named a local instance while CITADEL_SERVER and CITADEL_TOKEN are set: the
 * token was meant for CITADEL_SERVER's server, and is sent to no other. The same server (the
 * local instance's own address) takes it.
 */
function refuseTokenForAnotherServer(serverVariable: string, local: string | null, options: Record<string, string | boolean | undefined>): void {
  const server = namedServer(serverVariable);
  // No address (a random port): localApiClient refuses it before anything is sent.
  if (local === null || new URL(local).origin === new URL(server).origin) return;
  const flag = options.data !== undefined ? "--data" : "--config";
  throw new ConfigError(
    `${flag} ${options.data ?? options.config} names a local instance (${local}), while CITADEL_TOKEN is CITADEL_SERVER's (${server}): it is not sent to another server. For this instance with your login to it: CITADEL_TOKEN= citadel ...; with a token of its own: unset CITADEL_SERVER. For CITADEL_SERVER: leave out ${flag}`,
  );
}

/** CITADEL_SERVER as a server's URL, checked as given (exit 2 naming the problem, before anything is sent), then normalized. */
function namedServer(value: string): string {
  const problem = serverUrlProblem(value);
  if (problem) throw new ConfigError(`environment variable CITADEL_SERVER: ${problem}`);
  return normalizedServerUrl(value);
}

/**
 * An anonymous client for a server named by what the user holds (a share link's origin): the
 * stored login's or this machine's pinned certificate when it is that server, else the system's
 * certificate authorities. Never sends a token: the link is the credential.
 */
function apiClientForServer(options: Record<string, string | boolean | undefined>, env: Env, server: string) {
  const origin = new URL(server).origin;
  const baseUrl = server.replace(/\/+$/, ""); // may carry a reverse proxy's path prefix
  const stored = readStoredLogin(env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), ".config"));
  if (stored && new URL(stored.server).origin === origin) return createApiClient({ baseUrl, trust: trustOf(stored) });
  try {
    const local = localApiClient(configFor(options, env, { client: true }).config);
    if (new URL(local.baseUrl).origin === origin) return local;
  } catch {
    // no Citadel on this machine: the system's authorities decide
  }
  return createApiClient({ baseUrl });
}

/**
 * The config of the Citadel a command acts on. `serve` and `init` make their data directory
 * where they are told (./.citadel by default); every other command, given no config or data
 * directory and finding no ./.citadel, acts on this machine's installed instance if there is one.
 * `client`: the server a client command sends credentials to, which a ./.citadel chooses only
 * when it is an instance of this user's on loopback (loadConfig's `client`).
 */
function configFor(options: Record<string, string | boolean | undefined>, env: Env, { installed = true, client = false } = {}): LoadedConfig {
  const dataFlag = options.data as string | undefined;
  // Named here, as CITADEL_SERVER's problems are: loadConfig names a variable or a file, and took
  // an empty --data for data_dir's value "in defaults" (or in whatever citadel.toml was there).
  if (dataFlag === "") throw new ConfigError("data_dir: must not be empty (in --data)");
  return loadConfig({
    schema: configSchema,
    env,
    configFlag: options.config as string | undefined,
    dataFlag,
    cwd: process.cwd(),
    ...(installed ? { installedConfig: INSTALLED_CONFIG_FILE } : {}),
    client,
  });
}

function keySource(config: Config, env: Env): KeySource {
  return {
    method: config.seal.method,
    keyFile: dataPath(config, config.seal.key_file),
    credential: config.seal.credential,
    credentialsDirectory: env.CREDENTIALS_DIRECTORY,
  };
}

interface Prepared {
  store: Store;
  seal: Seal;
  audit: AuditLog;
  tls: TlsMaterial | undefined;
  /** The data directory's lock: held until the command ends (let go after the store is closed). */
  lock: HeldLock;
  /** The kernel object a plugin receives. */
  kernelFor(plugin: Plugin<any>): Kernel;
}

/** The kernel's migrations and every plugin's: what a database this binary runs on holds. */
function allMigrations(): MigrationSet[] {
  return [{ owner: "kernel", migrations: kernelMigrations }, ...plugins.map((p) => ({ owner: p.name, migrations: p.migrations }))];
}

/** Everything `serve` and `init` share: data dir, default config, database, seal and audit, TLS. */
async function prepare(loaded: LoadedConfig, log: Logger, env: Env, command: DataDirectoryWriter): Promise<Prepared> {
  const { config } = loaded;
  prepareDataDir(config.data_dir);
  const lock = holdDataDirectory(config.data_dir, command);
  try {
    return await prepareLocked(loaded, log, env, lock);
  } catch (error) {
    lock.release();
    const storage = storageFailureOf(error);
    // "disk I/O error" alone does not say which disk, nor that it may be full.
    if (storage) throw new Error(`cannot write the database in ${config.data_dir}: ${storage.reason} (${storage.code})`, { cause: error });
    throw error;
  }
}

/** The data directory's lock, or the refusal that names who holds it. */
function holdDataDirectory(dataDir: string, command: DataDirectoryWriter): HeldLock {
  const lock = lockDataDirectory(dataDir, command);
  if ("refused" in lock) throw new ConfigError(`${lock.refused} (${dataDir}): stop it first, or give this one another data directory`);
  return lock;
}

async function prepareLocked(loaded: LoadedConfig, log: Logger, env: Env, lock: HeldLock): Promise<Prepared> {
  const { config } = loaded;
  settleInterruptedRestore(config.data_dir, log); // before the database is opened (or made)
  if (!loaded.configFileExists && !loaded.configPathExplicit) {
    const header = "Citadel configuration, generated on first start.\nEvery key is optional: a commented-out key shows its default.";
    writeFileAtomic(loaded.configPath, renderConfigToml(configSchema, { commented: true, header }), 0o600);
  }
  const onStorageFailure = (failure: StorageFailure) => log.error("cannot write the database: requests that change anything fail (503) until this is fixed", { data_dir: config.data_dir, ...failure });
  const store = openStore({ path: join(config.data_dir, "citadel.db"), onStorageFailure });
  try {
    const applied = migrate(store.db, allMigrations());
    if (applied.length > 0) log.info("applied migrations", { migrations: applied.map((m) => `${m.owner}/${m.id}`) });
    // Before anything is audited (citadel init, the first start's setup, the unseal): forwarded too.
    if (config.audit.forward.to !== "off") beginAuditForwarding(store.db);
    await store.write((tx) => {
      if (!tx.query("SELECT 1 FROM instance").get()) {
        tx.query("INSERT INTO instance (singleton, id, created_at) VALUES (1, ?, ?)").run(crypto.randomUUID(), systemClock.now());
      }
    });
    const tls = config.http.tls.enabled ? await loadOrCreateTls(tlsFiles(config), log) : undefined;
    return { ...kernelOver(store, config, log, env), tls, lock };
  } catch (error) {
    store.close();
    throw error;
  }
}

/** The seal, the audit log and the plugins' kernels over an open store: nothing made, nothing migrated. */
function kernelOver(store: Store, config: Config, log: Logger, env: Env): Omit<Prepared, "tls" | "lock"> {
  const seal = new Seal(store.db, systemClock.now, keySource(config, env).method, new ReadMemo(store));
  const audit = new AuditLog({ now: systemClock.now, keyring: () => seal.keyringIfUnsealed(), inserted: (tx, rows) => store.leaveOutOfChangeStamp(tx, rows) });
  audit.register(KERNEL_ACTIONS);
  for (const plugin of plugins) audit.register(plugin.actions);
  const identity = new IdentityRegistry();
  const records = new RecordProviders();
  const shield = new ShieldSlot();
  const metrics = new Metrics({ onReadError: (metric, error) => log.warn("metrics: a metric could not be read; it is left out of the scrape", { metric, error }) });
  const services = plugins.flatMap((p) => (p.service ? [p.service] : []));
  const scopes = knownScopes(plugins.flatMap((p) => p.scopes));
  const startedAt = systemClock.now();
  const kernels = new Map<Plugin<any>, Kernel>();
  const kernelFor = (plugin: Plugin<any>): Kernel => {
    let k = kernels.get(plugin);
    if (!k) {
      k = { settings: config[plugin.name], config, store, seal, audit, log: log.with({ plugin: plugin.name }), clock: systemClock, build: buildInfo, startedAt, keySource: keySource(config, env), identity, services, scopes, records, shield, metrics };
      kernels.set(plugin, k);
    }
    return k;
  };
  return { store, seal, audit, kernelFor };
}

/**
 * A config whose seal method is not the one the root key was made for (init run with
 * CITADEL_SEAL_METHOD, which the generated config does not record, then a start without it)
 * would look for a key file that never existed, or wait for shares no one holds: one message
 * naming both methods instead.
 */
function refuseOtherSealMethod(stored: SealMethod[], configured: SealMethod, loaded: LoadedConfig): void {
  const mismatch = sealMethodMismatch(stored, configured, loaded.configFileExists ? loaded.configPath : "the config");
  if (mismatch) throw new ConfigError(`seal.method: ${mismatch.problem}: ${mismatch.remedy}`);
}

/** Said at every start while a key file lies where the seal method does not read it (leftoverKeyFileWarning). */
function warnOfLeftoverKeyFile(source: KeySource, store: Store, log: Logger): void {
  const warning = leftoverKeyFileWarning(source, store.db);
  if (warning) log.warn(warning, { key_file: source.keyFile });
}

/** What serve and init print of the certificate: the public key pin clients pin it by. */
function tlsPinLine(tls: TlsMaterial): string {
  return `TLS public key pin: ${tls.publicKeyPin} (certificate SHA-256 fingerprint ${tls.fingerprint})`;
}

/**
 * `citadel tls renew`: a new self-signed certificate in the data directory, over the same key
 * unless --new-key; the running server serves it once reloaded (SIGHUP reads the files again).
 * Run as root on an installed system, it writes as the data directory's owner, whose files they
 * are. Recorded in the audit log (sys.tls.renew) when there is a database, as `citadel recover` is.
 */
async function renewTls(ctx: CommandContext, loaded: LoadedConfig, env: Env): Promise<number> {
  const { config } = loaded;
  if (!config.http.tls.enabled) throw new ConfigError("http.tls.enabled is false: there is no certificate to renew");
  const files = tlsFiles(config);
  if (!files.managed) throw new ConfigError(`http.tls: ${files.certPath} is a certificate you manage, not Citadel's self-signed one: renew it where it was issued, then systemctl reload citadel`);
  const invoker = invokerOf(env); // before acting as the data directory's owner
  actAsDataDirectoryOwner(config.data_dir);
  const previous = readTls(files);
  // Opened (and checked) before the renewal: a database this binary cannot write to stops it before anything changed.
  const store = existingStore(config);
  try {
    // The command says it all below; the log line is for a server's log.
    const renewed = await renewSelfSigned(files, createLogger({ level: "error" }), { newKey: ctx.options["new-key"] === true });
    const sameKey = renewed.publicKeyPin === previous.publicKeyPin;
    // The files are written: a record that fails is said, not made the renewal's failure.
    if (store) await recordTlsRenewal(store, config, env, invoker, previous, renewed).catch((error) => ctx.err(`warning: the renewal is done, but its audit event (sys.tls.renew) could not be recorded: ${error instanceof Error ? error.message : String(error)}`));
    const result = { cert_file: files.certPath, not_after: renewed.notAfter.toISOString(), public_key_pin: renewed.publicKeyPin, previous_public_key_pin: previous.publicKeyPin, same_key: sameKey };
    const consequence = sameKey
      ? "Same key: clients that pinned its public key accept it as they are."
      : `New key (was ${previous.publicKeyPin}): every client that pinned the old one is refused until it pins the new one: citadel login --server URL --fingerprint ${renewed.publicKeyPin}; a mesh node joins again (docs/mesh.md).`;
    ctx.out(ctx.json ? JSON.stringify(result, null, 2) : `Renewed the self-signed TLS certificate ${files.certPath}, valid until ${result.not_after}.\n${tlsPinLine(renewed)}\n${consequence}\nServe it: systemctl reload citadel (or send Citadel SIGHUP; a restart serves it too).`);
    return 0;
  } finally {
    store?.close();
  }
}

/** The data directory's database, opened as `citadel recover` opens it (this binary's schema, nothing migrated); null when there is none yet. */
function existingStore(config: Config): Store | null {
  const database = join(config.data_dir, "citadel.db");
  if (!existsSync(database)) return null;
  const store = openStore({ path: database });
  try {
    refuseUnlessCurrent(store);
    return store;
  } catch (error) {
    store.close();
    throw error;
  }
}

/**
 * The audit event of a renewal by hand (found in review: none was recorded, unlike recover's):
 * who ran it by host account numbers and both pins in the chained reason (the sudo user's name
 * is personal data, withheld while sealed), whether the key is new in the outcome's words.
 */
async function recordTlsRenewal(store: Store, config: Config, env: Env, invoker: { uids: string; named: string }, previous: TlsMaterial, renewed: TlsMaterial): Promise<void> {
  const { audit } = kernelOver(store, config, createLogger({ level: "warn" }), env);
  const key = renewed.publicKeyPin === previous.publicKeyPin ? `same key ${renewed.publicKeyPin}` : `new key ${renewed.publicKeyPin} (was ${previous.publicKeyPin})`;
  await store.write((tx) =>
    audit.record(tx, {
      action: "sys.tls.renew",
      actor: { kind: "system" },
      outcome: "success",
      resource: { type: "tls_certificate", id: renewed.fingerprint },
      reason: `host-local renewal by ${invoker.uids}: ${key}`,
      personal: { invoker: invoker.named },
    }),
  );
}

function tlsFiles(config: Config) {
  const { cert_file, key_file } = config.http.tls;
  return {
    certPath: dataPath(config, cert_file),
    keyPath: dataPath(config, key_file),
    managed: cert_file === DEFAULT_TLS_CERT_FILE && key_file === DEFAULT_TLS_KEY_FILE,
    listenAddress: config.http.address,
  };
}

async function init(ctx: CommandContext, loaded: LoadedConfig, env: Env): Promise<number> {
  const { config } = loaded;
  const source = keySource(config, env);
  const shares = ctx.options.shares === undefined ? undefined : Number(ctx.options.shares);
  const threshold = ctx.options.threshold === undefined ? undefined : Number(ctx.options.threshold);
  const keyOut = ctx.options["key-out"] as string | undefined;
  if ((shares !== undefined || threshold !== undefined) && source.method !== "shamir") {
    throw new UsageError('--shares and --threshold need seal.method = "shamir" (in the config, or CITADEL_SEAL_METHOD=shamir)');
  }
  if (source.method === "shamir") {
    try {
      shamirParameters({ shares, threshold });
    } catch (error) {
      if (!(error instanceof InvalidError)) throw error;
      // Named as the flag typed: --threshold alone, above the default 5 shares, is about --threshold.
      const thresholdAlone = error.field === "shares" && shares === undefined;
      throw new UsageError(thresholdAlone ? `--threshold: ${error.message} (5 shares by default: give --shares too)` : `--${error.field}: ${error.message}`);
    }
  }
  const { store, audit, tls, lock, kernelFor } = await prepare(loaded, createLogger({ level: "warn" }), env, "init");
  try {
    const created = !isInitialized(store);
    if (created && source.method === "systemd_credential" && keyOut === undefined) {
      throw new UsageError("seal.method systemd_credential: give --key-out FILE (or - for standard output) to receive the root key once");
    }
    // The file that receives the root key is made before the key: one that exists already
    // stops here, not after a key nothing else holds was committed.
    const keyFd = created && source.method === "systemd_credential" && keyOut !== undefined && keyOut !== "-" ? openSync(keyOut, "wx", 0o600) : undefined;
    let result: Awaited<ReturnType<typeof initializeKeys>> | null = null;
    let written = false;
    try {
      result = created ? await initializeKeys(store, audit, source, systemClock.now(), { shares, threshold }) : null;
      // Handed over at once: whatever fails after this, the key is not lost with it.
      if (result?.rootKeyText && keyOut === "-") process.stdout.write(result.rootKeyText);
      if (result?.rootKeyText && keyFd !== undefined) {
        writeFileSync(keyFd, result.rootKeyText);
        written = true;
      }
    } finally {
      if (keyFd !== undefined) {
        closeSync(keyFd);
        if (!written) rmSync(keyOut!, { force: true }); // made by us, empty: the next init may use the name
      }
    }
    let setups: SetupResult[];
    try {
      setups = await runSetups(kernelFor, ctx.options);
    } catch (error) {
      if (result?.shares) {
        ctx.err(`The root key was created, but the setup that followed failed (below). These shares are the only way to unseal it; give one to each keeper, then run citadel init${sameInstanceFlags(ctx.options)} again to finish:\n`);
        for (const share of result.shares) ctx.err(`  ${share}`);
      }
      throw error;
    }
    const summary = {
      data_dir: config.data_dir,
      config_file: loaded.configPath,
      created,
      seal_method: source.method,
      key_id: result?.keyId ?? null,
      shares: result?.shares ?? null,
      tls_fingerprint_sha256: tls?.fingerprint ?? null,
      tls_public_key_pin: tls?.publicKeyPin ?? null,
      ...Object.assign({}, ...setups.map((r) => r.summary)),
    };
    const say = keyOut === "-" ? ctx.err : ctx.out; // keep standard output for the key alone
    if (ctx.json && keyOut !== "-") say(JSON.stringify(summary, null, 2));
    else {
      say(created ? `Initialized Citadel in ${summary.data_dir} (seal method ${source.method}, root key ${summary.key_id})` : `Citadel is already initialized in ${summary.data_dir}`);
      say(`config: ${summary.config_file}`);
      if (tls) say(tlsPinLine(tls));
      if (source.method === "key_file" && created) say(`root key: ${source.keyFile} (mode 0600; keep a copy somewhere safe)`);
      if (result?.shares) {
        say(`\nKey shares (any ${threshold ?? 3} of ${result.shares.length} unseal). They are shown only now; give one to each keeper:\n`);
        for (const share of result.shares) say(`  ${share}`);
      }
      if (result?.rootKeyText && keyOut !== "-") {
        say(`root key written to ${keyOut}: encrypt it with  systemd-creds encrypt --name=${source.credential} ${keyOut} /etc/credstore.encrypted/${source.credential}  then delete ${keyOut}`);
      }
      for (const line of setups.flatMap((r) => r.lines)) say(line);
    }
    return 0;
  } finally {
    store.close();
    lock.release();
  }
}

/**
 * The break-glass for a locked-out operator (their account, or an address allowlist that shuts
 * out every address they have), on the host: it works on the database directly
 * (Citadel running or not, sealed or not), as whoever may write it — run as root on an
 * installed system, it acts as the data directory's owner so the files it touches stay the
 * service's. See Plugin.recover.
 */
async function recover(ctx: CommandContext, loaded: LoadedConfig, env: Env): Promise<number> {
  const holder = typeof ctx.options["clear-allowlist"] === "string" ? ctx.options["clear-allowlist"].trim() : undefined;
  if (holder === undefined) needArgs(ctx, 1, "<email> | --clear-allowlist <org_...|ws_...>");
  const email = ctx.args[0]?.trim();
  if (email === "") throw new UsageError("give the operator's email");
  if (holder === "") throw new UsageError("--clear-allowlist: give the organization (org_...) or workspace (ws_...)");
  if (ctx.options.yes !== true) {
    const doing = [holder && `empties the address allowlist of ${holder}`, email && `gives ${email} a one-time password, turns their two-factor authentication off and ends their logins`].filter(Boolean);
    throw new UsageError(`this ${doing.join(", and ")}: add --yes`);
  }
  const { config } = loaded;
  const database = join(config.data_dir, "citadel.db");
  const invoker = invokerOf(env); // before acting as the data directory's owner
  if (existsSync(config.data_dir)) {
    actAsDataDirectoryOwner(config.data_dir);
    // Beside a running server, but not beside a restore: what recover wrote would be put aside.
    refuseDuringRestore(config.data_dir);
  }
  // Nothing is made here (no database, config, certificate or schema): there must be a Citadel to recover.
  if (!existsSync(database)) throw new ConfigError(`no Citadel in ${config.data_dir} (no citadel.db): give --data or --config`);
  const store = openStore({ path: database });
  try {
    refuseUnlessCurrent(store);
    const { kernelFor } = kernelOver(store, config, createLogger({ level: "warn" }), env);
    const results: SetupResult[] = [];
    for (const plugin of plugins) {
      const result = plugin.recover ? await plugin.recover(kernelFor(plugin), { email, clear_allowlist: holder, invoker: invoker.named, invoker_uids: invoker.uids, ...instanceFlags(ctx.options) }) : null;
      if (result) results.push(result);
    }
    if (ctx.json) ctx.out(JSON.stringify(Object.assign({}, ...results.map((r) => r.summary)), null, 2));
    else for (const line of results.flatMap((r) => r.lines)) ctx.out(line);
    return 0;
  } finally {
    store.close();
  }
}

/**
 * A database this very binary would serve as it is: initialized, and with exactly its
 * migrations. Recovery never changes the schema: a newer binary migrating the database of a
 * running older service would leave that service unable to start again.
 */
function refuseUnlessCurrent(store: Store): void {
  let recorded: ReturnType<typeof checkMigrations>;
  try {
    recorded = checkMigrations(store.db, allMigrations());
  } catch (error) {
    if (!(error instanceof MigrationError)) throw error;
    throw new Error(`${error.message.replace(/; run that version or restore a backup$/, "")}: run the citadel binary the service runs`);
  }
  const applied = new Set(recorded.map((r) => `${r.owner}/${r.id}`));
  const missing = allMigrations().flatMap((set) => set.migrations.map((m) => `${set.owner}/${m.id}`)).filter((id) => !applied.has(id));
  if (recorded.length === 0 || !store.db.query("SELECT 1 FROM instance").get()) throw new Error("this is not an initialized Citadel database");
  if (missing.length > 0) {
    throw new Error(`this citadel is newer than the database (it would apply ${missing.join(", ")}): run the citadel binary the service runs, or start the service with this one first`);
  }
}

/** Who ran a host-local command, for its audit event: the uid, and the sudo user behind it. */
function invokerOf(env: Env): { uids: string; named: string } {
  const uid = process.getuid?.();
  // Only what sudo itself sets looks like this: the variables are the caller's to set.
  const user = /^[A-Za-z0-9._-]{1,32}$/.test(env.SUDO_USER ?? "") ? env.SUDO_USER : undefined;
  const sudoUid = /^\d{1,10}$/.test(env.SUDO_UID ?? "") ? env.SUDO_UID : undefined;
  const self = uid === undefined ? "an unknown user" : `uid ${uid}`;
  const named = user ? ` (sudo by ${user}${sudoUid ? `, uid ${sudoUid}` : ""})` : "";
  const byNumber = sudoUid ? ` (sudo by uid ${sudoUid})` : user ? " (sudo)" : "";
  return { uids: `${self}${byNumber}`, named: `${self}${named}` };
}

/** Each plugin's first-time setup (the first organization and owner); what to show once. */
async function runSetups(kernelFor: (p: Plugin<any>) => Kernel, options: Readonly<Record<string, string | boolean | undefined>>): Promise<SetupResult[]> {
  const results: SetupResult[] = [];
  for (const plugin of plugins) {
    const result = plugin.setup ? await plugin.setup(kernelFor(plugin), options) : null;
    if (result) results.push(result);
  }
  return results;
}

/**
 * The --data and --config a command was given: passed on to the plugins' setup and recovery,
 * whose printed next steps must name the same instance.
 */
function instanceFlags(options: CommandContext["options"]): { data?: string; config?: string } {
  const flags: { data?: string; config?: string } = {};
  if (typeof options.data === "string") flags.data = options.data;
  if (typeof options.config === "string") flags.config = options.config;
  return flags;
}

/** Where audit.forward sends the events (null: off); a syslog collector's files read and checked now. */
function auditForwardSink(config: Config): (AuditSink & { close?: () => void }) | null {
  const forward = config.audit.forward;
  if (forward.to === "off") return null;
  if (forward.to === "journal") return journalSink();
  if (forward.to === "file") return fileSink(dataPath(config, forward.file));
  const { address, port, tls, ca_file, fingerprint, cert_file, key_file, facility, app_name } = forward.syslog;
  const configured = (file: string) => dataPath(config, file);
  const client = cert_file === "" ? {} : readTls({ certPath: configured(cert_file), keyPath: configured(key_file) }, { cert: "audit.forward.syslog.cert_file", key: "audit.forward.syslog.key_file" });
  const trust = tls ? { ...(ca_file === "" ? {} : { ca: readCaFile(configured(ca_file)) }), ...(fingerprint === "" ? {} : { fingerprint }), ...client } : null;
  return syslogSink({ host: address, port, tls: trust, facility: facility as SyslogFacility, appName: app_name });
}

/** audit.forward.syslog.ca_file, which must hold a PEM certificate at least. */
function readCaFile(path: string): string {
  const pem = readConfigured(path, "audit.forward.syslog.ca_file");
  try {
    new X509Certificate(pem);
  } catch {
    throw new ConfigError(`audit.forward.syslog.ca_file: ${path} is not a PEM certificate`);
  }
  return pem;
}

async function serve(loaded: LoadedConfig, env: Env, flags: { data?: string; config?: string }): Promise<number> {
  const { config } = loaded;
  const log = createLogger({ level: config.log.level });
  // Listen for SIGTERM from the first moment: one that arrives during start-up stops the
  // service as soon as it is up, with exit code 0, instead of killing it half-started.
  const stopRequested = nextSignal(log);
  // SIGHUP from the first moment too: its default ends the process, and systemd, which counts
  // the service started at exec (Type=exec), may send `systemctl reload` during start-up.
  const hangups = hangupHandler(log);
  const lifecycle = new Lifecycle(log);
  const now = systemClock.now;
  try {
    // Its files (a CA, a client certificate) are read before the data directory is touched.
    const auditSink = auditForwardSink(config);
    const { store, seal, audit, tls, lock, kernelFor } = await prepare(loaded, log, env, "serve");
    lifecycle.started("data directory lock", () => lock.release());
    lifecycle.started("store", () => store.close());

    const source = keySource(config, env);
    if (!isInitialized(store)) {
      if (source.method !== "key_file") throw new ConfigError(`seal.method ${source.method}: this Citadel is not initialized; run citadel init first`);
      const { keyId } = await initializeKeys(store, audit, source, now());
      log.info("initialized the root key", { key_id: keyId, key_file: source.keyFile });
    }
    refuseOtherSealMethod(storedSealMethods(store), source.method, loaded);
    if (source.method === "shamir") log.warn("sealed: waiting for key shares (citadel unseal)");
    else await unsealFromSource(store, seal, audit, source, log, now);
    warnOfLeftoverKeyFile(source, store, log);
    lifecycle.started("seal", () => seal.seal());

    // The embedded default's first start sets up the first organization and owner too.
    for (const line of (await runSetups(kernelFor, flags)).flatMap((r) => r.lines)) process.stderr.write(`${line}\n`);
    for (const plugin of plugins) {
      if (plugin.start) lifecycle.started(`plugin ${plugin.name}`, await plugin.start(kernelFor(plugin)));
    }
    const metrics = kernelFor(plugins[0]!).metrics;
    const intervalMs = config.audit.checkpoint_interval_seconds * 1000;
    lifecycle.started("audit checkpoints", startCheckpointer({ store, seal, every: config.audit.checkpoint_every, intervalMs, now, log, metrics }));
    lifecycle.started("key rotation", startRotationSchedule(store, seal, audit, config.keys.rotation_days, now, log));

    const forward = config.audit.forward;
    if (auditSink) {
      const stopForwarding = startAuditForwarder({ store, seal, sink: auditSink, personalData: forward.personal_data, log, metrics });
      lifecycle.started("audit forwarding", async () => {
        await stopForwarding();
        auditSink.close?.();
      });
    }
    // Rate limits and their audit sample measure time that passed, not what time it is: on a
    // clock that only goes forward, a wall clock stepped back (NTP, a resumed VM) shuts no bucket.
    const elapsed = () => performance.now();
    const guard = createGuard({
      identity: kernelFor(plugins[0]!).identity,
      shield: kernelFor(plugins[0]!).shield,
      verdicts: shieldVerdictCounters(metrics, "http"),
      confirmations: new Confirmations(now),
      limits: {
        auth: new RateLimiter({ name: "auth", perSecond: config.rate_limit.auth.per_second, burst: config.rate_limit.auth.burst }, elapsed),
        organization: new RateLimiter({ name: "organization", perSecond: config.rate_limit.per_organization.per_second, burst: config.rate_limit.per_organization.burst }, elapsed),
      },
      recordSecurityEvent: (event) => void store.write((tx) => audit.record(tx, event)).catch((error) => log.error("could not record a security event", { error })),
      now,
    });
    const app = createHttpApp({
      mounts: plugins.flatMap((p) => (p.routes ? [{ name: p.name, routes: p.routes(kernelFor(p)) }] : [])),
      rootRoutes: plugins.flatMap((p) => (p.rootRoutes ? [p.rootRoutes(kernelFor(p))] : [])),
      tls: tls !== undefined,
      guard,
      readiness: [
        { name: "store", problem: storeReadiness(store) },
        { name: "seal", problem: () => (seal.sealed ? "sealed" : null) },
      ],
      log,
      info: { version: buildInfo.version },
    });
    const edge = createEdge({
      app,
      log,
      perAddress: new RateLimiter({ name: "address", perSecond: config.rate_limit.per_address.per_second, burst: config.rate_limit.per_address.burst }, elapsed),
      onRateLimited: sampledRateLimitEvents((event) => void store.write((tx) => audit.record(tx, event)).catch((error) => log.error("could not record a security event", { error })), elapsed),
      shield: kernelFor(plugins[0]!).shield,
      bodyLimit: config.http.body_limit_bytes,
      trustedProxies: config.http.trusted_proxies.map((c) => parseCidr(c)!),
      tls: tls !== undefined,
      idleTimeoutSeconds: config.http.idle_timeout_seconds,
      requests: new HttpRequestMetrics(metrics),
      sealed: () => seal.sealed,
      unsealAdvice: UNSEAL_ADVICE[source.method],
      snapshot: (fn) => store.snapshot(fn),
    });
    const server = startHttpServer({
      fetch: edge,
      address: config.http.address,
      port: config.http.port,
      tls: tls && { cert: tls.cert, key: tls.key },
      idleTimeoutSeconds: config.http.idle_timeout_seconds,
      bodyLimit: config.http.body_limit_bytes,
      log,
    });
    lifecycle.started("http", () => server.stop());
    lifecycle.started("reload on SIGHUP", hangups.serve(tls && tlsReloader({ files: tlsFiles(config), served: tls, server, store, audit, log, now })));

    process.stderr.write(`Citadel ${buildInfo.version} is serving ${server.url} (API docs: ${server.url}/docs)${seal.sealed ? " — sealed" : ""}\n`);
    if (tls) process.stderr.write(`${tlsPinLine(tls)}\n`);
    log.info("listening", { url: server.url, tls_fingerprint_sha256: tls?.fingerprint ?? null, tls_public_key_pin: tls?.publicKeyPin ?? null, version: buildInfo.version, sealed: seal.sealed });

    const signal = await stopRequested;
    log.info("stopping", { signal });
    const clean = await lifecycle.stopAll(STOP_DEADLINE_MS);
    log.info(clean ? "stopped" : "stopped, but not everything finished in time");
    log.flush();
    return clean ? 0 : 1;
  } catch (error) {
    await lifecycle.stopAll(STOP_DEADLINE_MS);
    log.flush();
    if (error instanceof MigrationError || error instanceof RootKeyError || error instanceof UnsealError) {
      process.stderr.write(`citadel: ${error.message}\n`);
      return error instanceof RootKeyError ? 2 : 1;
    }
    throw error;
  }
}

/** The sealed 503's advice, by seal method: only Shamir shares are given over the API. */
const UNSEAL_ADVICE: Record<SealMethod, string> = {
  shamir: "give it key shares with `citadel unseal`",
  key_file: "restart it (systemctl restart citadel) with its root key file in place",
  systemd_credential: "restart it (systemctl restart citadel) with its systemd credential in place",
};

/** systemd's default stop timeout is 90 s, but operators expect a prompt stop: 5 s all told. */
const STOP_DEADLINE_MS = 4500;

/**
 * SIGHUP (`systemctl reload citadel`) reads the TLS certificate again, once Citadel serves.
 * Before that (the certificate is about to be read anyway) and once it stops, the signal is
 * logged and ignored: never the default, which would end the process.
 */
function hangupHandler(log: Logger): { serve(reloader: TlsReloader | undefined): () => Promise<void> } {
  let reloader: TlsReloader | undefined;
  let state: "starting" | "serving" | "stopping" = "starting";
  let running: Promise<unknown> = Promise.resolve();
  process.on("SIGHUP", () => {
    if (state !== "serving") return log.warn(`SIGHUP while ${state}: ignored (the certificate is read at start)`);
    if (!reloader) return log.warn("SIGHUP: TLS is off (http.tls.enabled = false): nothing to reload");
    log.info("SIGHUP: reading the TLS certificate again");
    running = running.then(() => reloader!.reload()); // one reload at a time, in order
  });
  endStartupHangups(); // after this one is in place: never a moment with none
  return {
    serve(given) {
      reloader = given;
      state = "serving";
      // Stopped before the listener: a reload under way finishes, and none starts after.
      return async () => {
        state = "stopping";
        await running;
      };
    },
  };
}

/** Resolves on the first SIGTERM or SIGINT; a second one while stopping exits at once. */
function nextSignal(log: Logger): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: string) => {
      if (received) {
        log.warn("second signal while stopping: exiting now", { signal });
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
  });
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2), process.env);
  // process.exit drops what a pipe has not taken yet: an export read by a slow consumer was cut
  // at 64 KiB, with exit code 0. The output is ended and flushed first.
  await flushed(process.stdout);
  await flushed(process.stderr);
  process.exit(code);
}

/** Resolves once everything written to `stream` is out, or the reader has gone (EPIPE). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableFinished) return resolve(); // failed already (EPIPE), or ended
    stream.once("error", () => resolve());
    stream.end(() => resolve());
  });
}
