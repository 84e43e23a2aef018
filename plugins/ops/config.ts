/** The configuration the doctor and the sovereignty report look at, and its sections. */
import { ConfigError } from "../../src/config/error.ts";
import { INSTALLED_CONFIG_FILE, locateConfigFile, type ConfigInputs } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { isLoopback, parseIp } from "../../src/net/ip.ts";
import type { CommandContext } from "../../src/plugin.ts";

/** The whole configuration (listen addresses, TLS files, the seal, every plugin's section), as serve loads it. */
export function commandConfig(ctx: CommandContext): { config: Config } {
  return { config: ctx.config() as Config };
}

/** What names the instance a command runs on: the flags, the environment, the working directory. */
export function instanceInputs(ctx: Pick<CommandContext, "env" | "options">, cwd = process.cwd()): Omit<ConfigInputs, "schema"> {
  return {
    env: ctx.env,
    configFlag: typeof ctx.options.config === "string" ? ctx.options.config : undefined,
    dataFlag: typeof ctx.options.data === "string" ? ctx.options.data : undefined,
    cwd,
  };
}

/**
 * Why the operator's token must not go to the server `config` names, or null. The doctor and
 * the report look at any instance, a stopped one too, so their config is loaded as serve loads
 * it; but the token follows the client commands' rule (loadConfig's `client`). An instance named
 * by --config, --data, CITADEL_CONFIG or CITADEL_DATA, or the installed one, is the operator's
 * choice. A ./.citadel merely found in the working directory counts only when it is an instance
 * of this user's running here on loopback: a checked-out repository's would otherwise name the
 * listener and the certificate the token is sent to.
 */
export function tokenDoubt(inputs: Omit<ConfigInputs, "schema">, config: Config): string | null {
  if (!locateConfigFile({ ...inputs, installedConfig: INSTALLED_CONFIG_FILE }).implicitLocal) return null;
  try {
    locateConfigFile({ ...inputs, client: true }); // throws why, as a client command is refused
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return listensOnLoopback(config) ? null : `its http.address ${config.http.address} is not a loopback address`;
}

/** As the client commands take it: a wildcard listener is reached over loopback too. */
function listensOnLoopback(config: Config): boolean {
  const { address } = config.http;
  const ip = parseIp(address);
  return address === "0.0.0.0" || address === "::" || (ip !== null && isLoopback(ip));
}

/** A plugin's section as plain data (absent when that plugin is not in this binary). */
export function sectionOf(config: Config, name: string): Record<string, unknown> {
  const value = config[name];
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** Typed reads of a section's keys: undefined when absent or of another type. */
export const stringsAt = (section: Record<string, unknown>, key: string): string[] | undefined => {
  const value = section[key];
  return Array.isArray(value) && value.every((v) => typeof v === "string") ? (value as string[]) : undefined;
};

export const numberAt = (section: Record<string, unknown>, key: string): number | undefined => (typeof section[key] === "number" ? (section[key] as number) : undefined);

export const stringAt = (section: Record<string, unknown>, key: string): string | undefined => (typeof section[key] === "string" ? (section[key] as string) : undefined);
