/** The configuration the doctor and the sovereignty report look at, and its sections. */
import type { Config } from "../../src/config/schema.ts";
import type { CommandContext } from "../../src/plugin.ts";

/** The whole configuration (listen addresses, TLS files, the seal, every plugin's section), as serve loads it. */
export function commandConfig(ctx: CommandContext): { config: Config } {
  return { config: ctx.config() as Config };
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
