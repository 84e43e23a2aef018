/**
 * CITADEL_* environment overrides. Every leaf key of the schema has one variable, derived
 * from its path (`http.tls.cert_file` → CITADEL_HTTP_TLS_CERT_FILE) unless the schema names
 * another (`data_dir` → CITADEL_DATA). Values are typed by the schema; a variable that names
 * no key is an error, so a typo never goes unnoticed.
 */
import { Kind, type TObject, type TSchema } from "@sinclair/typebox";
import { ConfigError } from "./error.ts";

/** Variables that belong to Citadel but are not configuration keys. */
export const NON_CONFIG_VARIABLES = new Set(["CITADEL_CONFIG", "CITADEL_TOKEN", "CITADEL_SERVER"]);

export interface EnvOverride {
  variable: string;
  path: string[];
  value: unknown;
}

export interface ConfigLeaf {
  path: string[];
  variable: string;
  schema: TSchema;
}

/** Every leaf key of the schema with its environment variable, in schema order. */
export function configLeaves(schema: TObject, prefix: string[] = []): ConfigLeaf[] {
  const out: ConfigLeaf[] = [];
  for (const [key, child] of Object.entries(schema.properties)) {
    const path = [...prefix, key];
    if (child[Kind] === "Object") out.push(...configLeaves(child as TObject, path));
    else out.push({ path, variable: (child.env as string | undefined) ?? `CITADEL_${path.join("_").toUpperCase()}`, schema: child });
  }
  return out;
}

export function envOverrides(schema: TObject, env: Readonly<Record<string, string | undefined>>): EnvOverride[] {
  const leaves = configLeaves(schema);
  const byVariable = new Map(leaves.map((l) => [l.variable, l]));
  const out: EnvOverride[] = [];
  for (const [variable, raw] of Object.entries(env)) {
    if (!variable.startsWith("CITADEL_") || raw === undefined || NON_CONFIG_VARIABLES.has(variable)) continue;
    const leaf = byVariable.get(variable);
    if (!leaf) {
      const hint = closest(variable, [...byVariable.keys()]);
      throw new ConfigError(`environment variable ${variable}: not a configuration key${hint ? ` (did you mean ${hint}?)` : ""}`);
    }
    out.push({ variable, path: leaf.path, value: coerce(raw, leaf.schema, variable) });
  }
  return out;
}

/** Environment values are strings; give them the schema's type. The value is never echoed. */
function coerce(raw: string, schema: TSchema, variable: string): unknown {
  const fail = (what: string) => new ConfigError(`environment variable ${variable}: must be ${what}`);
  switch (schema[Kind]) {
    case "Integer":
      if (!/^-?\d+$/.test(raw.trim())) throw fail("an integer");
      return Number(raw.trim());
    case "Number": {
      // Decimal only: Number() also reads 0x10, 0b1 and 0o7, which a config file's TOML would not.
      const n = Number(raw.trim());
      if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw.trim()) || !Number.isFinite(n)) throw fail("a number");
      return n;
    }
    case "Boolean":
      if (/^(true|1|yes|on)$/i.test(raw.trim())) return true;
      if (/^(false|0|no|off)$/i.test(raw.trim())) return false;
      throw fail("true or false");
    case "Array":
      // Comma-separated: CITADEL_HTTP_TRUSTED_PROXIES=10.0.0.0/8,fd00::/8
      return raw.trim() === "" ? [] : raw.split(",").map((s) => s.trim());
    default:
      return raw;
  }
}

/** The most similar known variable, when it is plausibly a typo of it. */
function closest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= 3 ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
