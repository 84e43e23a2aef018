/**
 * Loads the configuration once, at start-up: defaults ← TOML file ← CITADEL_* environment
 * ← command-line flags. Anything wrong stops start-up with one ConfigError naming the key
 * (or the variable, or the file and line) and the problem; main.ts turns it into exit code 2.
 */
import { existsSync, lstatSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { Kind, type TObject, type TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError } from "@sinclair/typebox/value";
import { parse as parseTomlText, TomlError } from "smol-toml";
import { DATA_DIRECTORY_LOCK, dataDirectoryLockHeld } from "../file-lock.ts";
import { describeFsError } from "../files.ts";
import { pointerToPath } from "../json-pointer.ts";
import { isLoopback, parseIp } from "../net/ip.ts";
import { envOverrides } from "./env.ts";
import { ConfigError } from "./error.ts";
import { sectionCheckOf, type Config } from "./schema.ts";

export { ConfigError };

export const CONFIG_FILE_NAME = "citadel.toml";
/** Where `citadel install` puts the config (its units name it with --config). */
export const INSTALLED_CONFIG_FILE = "/etc/citadel/citadel.toml";

export interface ConfigInputs {
  schema: TObject;
  /** The environment variables (main.ts alone reads the real ones and passes them here). */
  env: Readonly<Record<string, string | undefined>>;
  /** --config */
  configFlag?: string;
  /** --data */
  dataFlag?: string;
  /** Base for relative paths (the working directory). */
  cwd: string;
  /**
   * An installed Citadel's config file (citadel install: /etc/citadel/citadel.toml), read when
   * nothing names a config file or data directory and the working directory's `.citadel` has
   * no config — so that `sudo citadel restore`, `doctor` or `audit verify` on a server act on
   * the installed instance, not on an empty `./.citadel`. main.ts leaves it out for `serve`
   * and `init`, which make a data directory where they are told (the README's embedded default).
   */
  installedConfig?: string;
  /**
   * For a client command, which sends credentials where the config says: the working
   * directory's `.citadel`, when nothing names the instance, counts only when it is an instance
   * of this user's running here and listening on loopback (localInstanceDoubt, listenerDoubt), as git trusts a
   * repository's config only in a safe directory. A checked-out repository or an unpacked
   * tarball must not choose the server a token, a key share or a password goes to.
   */
  client?: boolean;
}

export interface LoadedConfig {
  config: Config;
  /** The file that was read, or would be read (and may be generated) when absent. */
  configPath: string;
  /** True when the file was named by --config or CITADEL_CONFIG (so it must exist). */
  configPathExplicit: boolean;
  configFileExists: boolean;
}

export interface ConfigLocation {
  path: string;
  /** Named by --config or CITADEL_CONFIG, or the installed instance's: it must exist. */
  explicit: boolean;
  /** The working directory's `.citadel`, which nothing named: found, not chosen. */
  implicitLocal: boolean;
}

/**
 * Where the config file is: --config, CITADEL_CONFIG, else citadel.toml inside the data dir
 * (--data, CITADEL_DATA, else ./.citadel), else an installed instance's (`installedConfig`).
 */
export function locateConfigFile(inputs: Omit<ConfigInputs, "schema">): ConfigLocation {
  const named = inputs.configFlag ?? inputs.env.CITADEL_CONFIG;
  if (named !== undefined && named !== "") return { path: resolve(inputs.cwd, named), explicit: true, implicitLocal: false };
  const dataDir = inputs.dataFlag ?? inputs.env.CITADEL_DATA;
  if (dataDir !== undefined) return { path: resolve(inputs.cwd, dataDir, CONFIG_FILE_NAME), explicit: false, implicitLocal: false };
  const localDir = resolve(inputs.cwd, ".citadel");
  const doubt = inputs.client ? localInstanceDoubt(localDir) : null;
  if (doubt !== null) return passOverLocal(inputs, localDir, doubt);
  const local = join(localDir, CONFIG_FILE_NAME);
  if (inputs.installedConfig !== undefined && !existsSync(local) && installedConfigExists(inputs.installedConfig)) {
    return { path: inputs.installedConfig, explicit: true, implicitLocal: false };
  }
  return { path: local, explicit: false, implicitLocal: true };
}

/**
 * Why the working directory's `.citadel` is not taken for an instance of this user's running
 * here, or null (none there: the defaults, as ever). One is what `citadel serve` makes and
 * accepts (prepareDataDir): a directory this user owns that nobody else may enter, with a
 * database of this user's only they may read — and a Citadel running on it, holding its lock.
 * A `git clone` or an unpacked tarball can have the first (under umask 077), never the second;
 * another user cannot take the lock in a directory only this user may enter.
 */
function localInstanceDoubt(dir: string): string | null {
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    return null;
  }
  if (!stat.isDirectory()) return "it is not a directory";
  const notYours = ownerDoubt(stat.uid);
  if (notYours !== null) return notYours;
  if ((stat.mode & 0o077) !== 0) return `its group or others may enter it (mode ${(stat.mode & 0o777).toString(8)}; citadel serve makes it 700)`;
  const database = databaseDoubt(join(dir, "citadel.db"));
  if (database !== null) return database;
  if (!dataDirectoryLockHeld(dir)) return `the instance in it is not running (citadel serve holds its lock, ${DATA_DIRECTORY_LOCK}, while it runs), or it is not yours: start it (citadel serve, or bun run start)`;
  return null;
}

/** Why the database is not one `citadel serve` made for this user (a regular file, mode 600), or null. */
function databaseDoubt(path: string): string | null {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return "it holds no database (citadel.db): not an instance started here";
  }
  if (!stat.isFile()) return "its citadel.db is not a regular file: not an instance started here";
  const notYours = ownerDoubt(stat.uid);
  if (notYours !== null) return `its citadel.db: ${notYours}`;
  if ((stat.mode & 0o077) !== 0) return `its citadel.db is open to group or others (mode ${(stat.mode & 0o777).toString(8)}; citadel serve makes it 600)`;
  return null;
}

function ownerDoubt(owner: number): string | null {
  const uid = process.getuid?.();
  return uid === undefined || owner === uid ? null : `it belongs to user ${owner}, not to you (${uid})`;
}

/**
 * Where a client command's config is when the working directory's `.citadel` may not choose
 * the server: the installed instance's, or a refusal that says what to name instead.
 */
function passOverLocal(inputs: Omit<ConfigInputs, "schema">, localDir: string, doubt: string): ConfigLocation {
  if (inputs.installedConfig !== undefined && installedConfigExists(inputs.installedConfig)) return { path: inputs.installedConfig, explicit: true, implicitLocal: false };
  throw new ConfigError(`${localDir} is not used to choose the server: ${doubt}. Name the instance with --data DIR (or CITADEL_DATA), or the server with CITADEL_SERVER (or citadel login --server URL)`);
}

/**
 * Why a client command does not talk to the Citadel a found `.citadel` describes, or null: it
 * must listen on loopback (a wildcard listener is reached over loopback too), else the config
 * would send credentials to any address it names.
 */
function listenerDoubt(config: Config): string | null {
  const address = parseIp(config.http.address);
  const wildcard = config.http.address === "0.0.0.0" || config.http.address === "::";
  return address !== null && (isLoopback(address) || wildcard) ? null : `its http.address ${config.http.address} is not a loopback address`;
}

/**
 * Whether the installed config file is there. Its directory is root:citadel 0750, so another
 * user cannot even tell: that is not "absent", and falling back to ./.citadel would act on
 * (or advise to create) an instance that is not the installed one.
 */
function installedConfigExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    if (code === "EACCES" || code === "EPERM") throw new ConfigError(`cannot read ${path}: run as root or as a member of group citadel`);
    throw new ConfigError(`cannot read ${path}: ${describeFsError(error)}`);
  }
}

export function loadConfig(inputs: ConfigInputs): LoadedConfig {
  const location = locateConfigFile(inputs);
  const loaded = loadFrom(location, inputs);
  if (!inputs.client || !location.implicitLocal || !loaded.configFileExists) return loaded;
  const doubt = listenerDoubt(loaded.config);
  return doubt === null ? loaded : loadFrom(passOverLocal(inputs, dirname(location.path), doubt), inputs);
}

function loadFrom({ path, explicit }: ConfigLocation, inputs: ConfigInputs): LoadedConfig {
  const text = readConfigText(path, explicit);
  const fromFile = text === null ? {} : parseToml(text, path);

  const overrides = envOverrides(inputs.schema, inputs.env);
  const merged: Record<string, unknown> = structuredClone(fromFile);
  for (const o of overrides) setPath(merged, o.path, o.value);
  if (inputs.dataFlag !== undefined) merged.data_dir = inputs.dataFlag;

  const withDefaults = Value.Default(inputs.schema, merged) as Record<string, unknown>;
  const first = Value.Errors(inputs.schema, withDefaults).First();
  if (first) {
    const key = pointerToPath(first.path);
    const fromEnv = overrides.find((o) => key === o.path.join(".") || key.startsWith(o.path.join(".") + "["));
    const where = fromEnv ? `environment variable ${fromEnv.variable}` : text === null ? "defaults" : path;
    throw new ConfigError(`${key}: ${describe(first)} (in ${where})`);
  }

  checkSections(inputs.schema, withDefaults);
  const config = withDefaults as Config;
  config.data_dir = resolve(inputs.cwd, config.data_dir);
  return { config, configPath: path, configPathExplicit: explicit, configFileExists: text !== null };
}

/** Resolves a path from the config: absolute as given, relative ones inside the data dir. */
export function dataPath(config: Config, path: string): string {
  return isAbsolute(path) ? path : join(config.data_dir, path);
}

function readConfigText(path: string, explicit: boolean): string | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !explicit) return null;
    throw new ConfigError(`cannot read config file ${path}: ${describeFsError(err)}`);
  }
  // TOML is UTF-8. A lenient decoding would replace a stray byte by U+FFFD and carry on with a
  // value nobody wrote: a data_dir, a key file's path, silently another one.
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(`${path}: not UTF-8 text (TOML files are UTF-8): save it as UTF-8`);
  }
}

function parseToml(text: string, path: string): Record<string, unknown> {
  try {
    return parseTomlText(text) as Record<string, unknown>;
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const reason = error.message.split("\n", 1)[0]!.replace(/^Invalid TOML document:\s*/, "");
    throw new ConfigError(`${path}:${error.line}:${error.column}: invalid TOML: ${reason}`);
  }
}

/**
 * Rules the schema cannot say on its own: each section's check (see `section`), nested ones
 * included, here rather than when a plugin starts — by then `serve` would have made the data
 * directory, the database and the root key of an instance that cannot run.
 */
function checkSections(schema: TObject, value: Record<string, unknown>): void {
  sectionCheckOf(schema)?.(value);
  for (const [key, child] of Object.entries(schema.properties)) {
    if (child[Kind] === "Object") checkSections(child as TObject, value[key] as Record<string, unknown>);
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function describe(error: ValueError): string {
  const schema = error.schema as TSchema & Record<string, unknown>;
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return "unknown key";
    case ValueErrorType.ObjectRequiredProperty:
      return "is required";
    case ValueErrorType.Integer:
      return "must be an integer";
    case ValueErrorType.Number:
      return "must be a number";
    case ValueErrorType.Boolean:
      return "must be true or false";
    case ValueErrorType.String:
      return "must be a string";
    case ValueErrorType.Array:
      return "must be an array";
    case ValueErrorType.Object:
      return "must be a table";
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${schema.minimum}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${schema.maximum}`;
    case ValueErrorType.StringMinLength:
      return schema.minLength === 1 ? "must not be empty" : `must be at least ${schema.minLength} characters`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${schema.maxLength} characters`;
    case ValueErrorType.StringFormat:
      return schema.format === "ip" ? "must be an IP address" : schema.format === "cidr" ? "must be a CIDR such as 10.0.0.0/8" : `must be a valid ${schema.format}`;
    case ValueErrorType.StringPattern:
      // A pattern says little to a reader: the schema's own words (`patternHint`) when it has them.
      return typeof schema.patternHint === "string" ? `must be ${schema.patternHint}` : `must match ${schema.pattern}`;
    case ValueErrorType.Union: {
      const options = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const).filter((c) => c !== undefined);
      return options?.length ? `must be one of: ${options.join(", ")}` : "has the wrong type";
    }
    default:
      return error.message.toLowerCase();
  }
}
