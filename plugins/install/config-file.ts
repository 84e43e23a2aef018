/**
 * The installed /etc/citadel/citadel.toml: the schema rendered as documentation, with every
 * key at its default (commented out) except those this installation must fix: where the data
 * lives and how the root key is kept. Those few are set in place, beside their documentation,
 * and the result is parsed back to prove it; `citadel init` then validates it against the
 * schema before anything else happens.
 *
 * The rendering is config/citadel.example.toml, embedded: a test keeps that file equal to
 * renderConfigToml(configSchema) of the whole schema, every plugin's section included, and
 * the whole schema exists only in the composition root (src/main.ts), which a plugin cannot
 * import (main.ts is still running `main()` when a command runs: the import would wait on itself).
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Type } from "@sinclair/typebox";
import { parse as parseToml } from "smol-toml";
import exampleToml from "../../config/citadel.example.toml" with { type: "text" };
import { EXAMPLE_HEADER, renderConfigToml, tomlValue } from "../../src/config/render.ts";
import { ConfigError } from "../../src/config/error.ts";
import { SealConfig } from "../../src/config/schema.ts";
import type { SealMethod } from "../../src/crypto/keyring.ts";

const HEADER = [
  "Citadel configuration, written by `citadel install`, which never overwrites it.",
  "",
  "Every key is optional; a commented-out key shows its default. The keys that are set belong to",
  "this installation: data_dir is the unit's StateDirectory, and [seal] matches the unit's",
  "LoadCredentialEncrypted= line. Precedence, lowest first: defaults, this file, CITADEL_*",
  "environment variables, command-line flags. Relative paths are inside data_dir.",
].join("\n");

/** A header alone, rendered exactly as renderConfigToml renders one above the keys. */
const renderedHeader = (header: string) => renderConfigToml(Type.Object({}), { commented: true, header });

export interface InstalledSettings {
  dataDir: string;
  sealMethod: SealMethod;
  /** The credential name the unit loads (seal.credential), for method systemd_credential. */
  credential: string;
}

export function renderInstalledConfig(settings: InstalledSettings, example: string = exampleToml): string {
  const values: Setting[] = [
    { path: ["data_dir"], value: settings.dataDir },
    { path: ["seal", "method"], value: settings.sealMethod },
  ];
  if (settings.sealMethod === "systemd_credential") values.push({ path: ["seal", "credential"], value: settings.credential });
  const exampleHeader = renderedHeader(EXAMPLE_HEADER);
  if (!example.startsWith(exampleHeader)) throw new Error("config/citadel.example.toml does not start with its header: run `bun run config:example`");
  const text = setKeys(renderedHeader(HEADER) + example.slice(exampleHeader.length), values);
  const parsed = parseToml(text) as Record<string, unknown>;
  for (const { path, value } of values) {
    if (valueAt(parsed, path) !== value) throw new Error(`the installed config does not set ${path.join(".")} (the rendering changed?)`);
  }
  return text;
}

/** What an existing config says that an install must follow, or null when there is no config yet. */
export interface InstalledConfig {
  /**
   * data_dir as the service resolves it: a relative path (or the default, absent) is taken from
   * its working directory, which for a system unit without WorkingDirectory= is "/".
   */
  dataDir: string;
  method: SealMethod;
  /** seal.key_file as written: relative paths are inside data_dir. */
  keyFile: string;
  /** [backup] dir as written: relative paths are inside data_dir. */
  backupDir: string;
}

/**
 * The keys install follows, checked here as `citadel serve` would check them: a value install
 * took on trust decided what it ran (a seal method it does not know led to systemd-creds) and
 * where it wrote (a key_file that is no path ended in a TypeError). Refused before anything is
 * planned, naming the key.
 */
export function readInstalledConfig(path: string): InstalledConfig | null {
  if (!existsSync(path)) return null;
  let parsed: Record<string, unknown>;
  try {
    parsed = parseToml(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`${path}: ${error instanceof Error ? error.message.split("\n", 1)[0] : String(error)}; fix it, or move it away to have a new one written`);
  }
  // Absent keys mean the binary's defaults (src/config/schema.ts).
  const text = (keys: readonly string[], fallback: string, what: string) => {
    const value = valueAt(parsed, keys) ?? fallback;
    if (typeof value !== "string") throw new ConfigError(`${path}: ${keys.join(".")} must be a string (${what}), not ${JSON.stringify(value)}; fix it, or move it away to have a new one written`);
    return value;
  };
  const method = text(["seal", "method"], "key_file", "a seal method");
  if (!isSealMethod(method)) throw new ConfigError(`${path}: seal.method must be one of ${SEAL_METHODS.map((m) => `"${m}"`).join(", ")}, not ${JSON.stringify(method)}; fix it, or move it away to have a new one written`);
  return {
    dataDir: resolve("/", text(["data_dir"], ".citadel", "a path")),
    method,
    keyFile: text(["seal", "key_file"], "root.key", "a path"),
    backupDir: text(["backup", "dir"], "backups", "a path"),
  };
}

/** Every seal.method the binary knows, from its schema. */
const SEAL_METHODS: readonly string[] = SealConfig.properties.method.anyOf.map((literal) => literal.const);
const isSealMethod = (value: string): value is SealMethod => SEAL_METHODS.includes(value);

interface Setting {
  path: readonly string[];
  value: string;
}

/** Replaces each key's commented-out default line, inside its own table, with the value. */
function setKeys(text: string, settings: readonly Setting[]): string {
  const lines = text.split("\n");
  for (const { path, value } of settings) {
    const table = path.slice(0, -1).join(".");
    const key = path[path.length - 1]!;
    let inTable = table === ""; // top-level keys come before the first [table]
    const index = lines.findIndex((line) => {
      if (line.startsWith("[")) {
        inTable = line === `[${table}]`;
        return false;
      }
      return inTable && line.startsWith(`#${key} = `);
    });
    if (index < 0) throw new Error(`config key ${path.join(".")} is not in the rendered schema`);
    lines[index] = `${key} = ${tomlValue(value, path.join("."))}`;
  }
  return lines.join("\n");
}

function valueAt(tree: Record<string, unknown>, path: readonly string[]): unknown {
  let node: unknown = tree;
  for (const key of path) node = typeof node === "object" && node !== null ? (node as Record<string, unknown>)[key] : undefined;
  return node;
}
