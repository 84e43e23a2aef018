/**
 * The composition root, and the only module that reads process.env and argv. It reads top to
 * bottom: the plugin list, then `serve` (config → data dir → store → migrate → kernel →
 * plugins → listen → wait for a signal → stop everything in reverse).
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { systemPlugin } from "../plugins/system/index.ts";
import { buildInfo } from "./build-info.ts";
import { localApiClient } from "./cli/api-client.ts";
import { commandHelpText, parseCommandLine, usageText, UsageError } from "./cli/command-line.ts";
import { ConfigError } from "./config/error.ts";
import { dataPath, loadConfig, type LoadedConfig } from "./config/load.ts";
import { renderConfigToml } from "./config/render.ts";
import { buildConfigSchema, DEFAULT_TLS_CERT_FILE, DEFAULT_TLS_KEY_FILE, type Config } from "./config/schema.ts";
import { prepareDataDir } from "./data-dir.ts";
import { createHttpApp } from "./http/app.ts";
import { createEdge, startHttpServer } from "./http/edge.ts";
import { loadOrCreateTls, type TlsMaterial } from "./http/tls.ts";
import { Lifecycle } from "./lifecycle.ts";
import { createLogger, type Logger } from "./log.ts";
import { parseCidr } from "./net/ip.ts";
import { systemClock, type Command, type CommandContext, type Kernel, type Plugin } from "./plugin.ts";
import { kernelMigrations } from "./store/kernel-migrations.ts";
import { migrate, MigrationError } from "./store/migrate.ts";
import { openStore, type Store } from "./store/store.ts";

/** The binary is defined by this list. */
export const plugins: readonly Plugin<any>[] = [systemPlugin];

export const configSchema = buildConfigSchema(plugins);

type Env = Readonly<Record<string, string | undefined>>;

export async function main(argv: readonly string[], env: Env): Promise<number> {
  process.umask(0o077); // whatever we create is ours alone unless we say otherwise
  const commands: Command[] = [...kernelCommands(env), ...plugins.flatMap((p) => p.commands ?? [])];
  let invocation;
  try {
    invocation = parseCommandLine(argv, commands);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`citadel: ${error.message}\n\n${error.command ? commandHelpText(error.command) : usageText(commands)}\n`);
    return 2;
  }
  if (invocation.kind === "help") {
    process.stdout.write(`${invocation.command ? commandHelpText(invocation.command) : usageText(commands)}\n`);
    return 0;
  }
  const { command, args, options } = invocation;
  const ctx: CommandContext = {
    args,
    options,
    json: options.json === true,
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    api: async () => localApiClient(configFor(options, env).config),
  };
  try {
    return await command.run(ctx);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`citadel: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
}

function kernelCommands(env: Env): Command[] {
  return [
    {
      words: ["serve"],
      summary: "Run Citadel: the API and every service (creates the embedded default on first start)",
      run: (ctx) => serve(configFor(ctx.options, env)),
    },
    {
      words: ["init"],
      summary: "Create the data directory, config, TLS certificate and database, then exit",
      async run(ctx) {
        const loaded = configFor(ctx.options, env);
        const log = createLogger({ level: "warn" });
        const { store, tls, created } = await prepare(loaded, log);
        store.close();
        const summary = { data_dir: loaded.config.data_dir, config_file: loaded.configPath, created, tls_fingerprint_sha256: tls?.fingerprint ?? null };
        if (ctx.json) ctx.out(JSON.stringify(summary, null, 2));
        else {
          ctx.out(created ? `Initialized Citadel in ${summary.data_dir}` : `Citadel is already initialized in ${summary.data_dir}`);
          ctx.out(`config: ${summary.config_file}`);
          if (tls) ctx.out(`TLS certificate SHA-256 fingerprint: ${tls.fingerprint}`);
        }
        return 0;
      },
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
    { words: ["help"], summary: "Show this help, or the help of one command", args: "[command]", maxArgs: 3, run: async () => 0 },
  ];
}

function configFor(options: Record<string, string | boolean | undefined>, env: Env): LoadedConfig {
  return loadConfig({
    schema: configSchema,
    env,
    configFlag: options.config as string | undefined,
    dataFlag: options.data as string | undefined,
    cwd: process.cwd(),
  });
}

interface Prepared {
  store: Store;
  tls: TlsMaterial | undefined;
  /** True when this call created the installation (first start). */
  created: boolean;
}

/** Everything `serve` and `init` share: data dir, default config, database, TLS material. */
async function prepare(loaded: LoadedConfig, log: Logger): Promise<Prepared> {
  const { config } = loaded;
  prepareDataDir(config.data_dir);
  if (!loaded.configFileExists && !loaded.configPathExplicit) {
    const header = "Citadel configuration, generated on first start.\nEvery key is optional: a commented-out key shows its default.";
    writeFileSync(loaded.configPath, renderConfigToml(configSchema, { commented: true, header }), { mode: 0o600 });
  }
  const store = openStore({ path: join(config.data_dir, "citadel.db") });
  try {
    const applied = migrate(store.db, [
      { owner: "kernel", migrations: kernelMigrations },
      ...plugins.map((p) => ({ owner: p.name, migrations: p.migrations })),
    ]);
    if (applied.length > 0) log.info("applied migrations", { migrations: applied.map((m) => `${m.owner}/${m.id}`) });
    const created = await store.write((tx) => {
      const exists = tx.query("SELECT 1 FROM instance").get() !== null;
      if (!exists) tx.query("INSERT INTO instance (singleton, id, created_at) VALUES (1, ?, ?)").run(crypto.randomUUID(), systemClock.now());
      return !exists;
    });
    const tls = config.http.tls.enabled ? await loadOrCreateTls(tlsFiles(config), log) : undefined;
    return { store, tls, created };
  } catch (error) {
    store.close();
    throw error;
  }
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

async function serve(loaded: LoadedConfig): Promise<number> {
  const { config } = loaded;
  const log = createLogger({ level: config.log.level });
  const lifecycle = new Lifecycle(log);
  try {
    const { store, tls } = await prepare(loaded, log);
    lifecycle.started("store", () => store.close());

    const startedAt = systemClock.now();
    const kernelFor = (plugin: Plugin<any>): Kernel => ({
      settings: config[plugin.name],
      config,
      store,
      log: log.with({ plugin: plugin.name }),
      clock: systemClock,
      build: buildInfo,
      startedAt,
    });
    for (const plugin of plugins) {
      if (plugin.start) lifecycle.started(`plugin ${plugin.name}`, await plugin.start(kernelFor(plugin)));
    }

    const app = createHttpApp({
      mounts: plugins.flatMap((p) => (p.routes ? [{ name: p.name, routes: p.routes(kernelFor(p)) }] : [])),
      tls: tls !== undefined,
      readiness: [{ name: "store", problem: () => (store.ping() ? null : "unreachable") }],
      log,
      info: { version: buildInfo.version },
    });
    const edge = createEdge({
      app,
      log,
      bodyLimit: config.http.body_limit_bytes,
      trustedProxies: config.http.trusted_proxies.map((c) => parseCidr(c)!),
      tls: tls !== undefined,
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

    process.stderr.write(`Citadel ${buildInfo.version} is serving ${server.url} (API docs: ${server.url}/docs)\n`);
    if (tls) process.stderr.write(`TLS certificate SHA-256 fingerprint: ${tls.fingerprint}\n`);
    log.info("listening", { url: server.url, tls_fingerprint_sha256: tls?.fingerprint ?? null, version: buildInfo.version });

    const signal = await nextSignal(log);
    log.info("stopping", { signal });
    await lifecycle.stopAll();
    log.info("stopped");
    log.flush();
    return 0;
  } catch (error) {
    await lifecycle.stopAll();
    log.flush();
    if (error instanceof MigrationError) {
      process.stderr.write(`citadel: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
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
  process.exit(code);
}
