/** Flags the identity commands share: how a credential's scopes and allowlist are given. */
import { UsageError } from "../../src/cli/command-line.ts";
import type { CommandContext } from "../../src/plugin.ts";

export const ALLOW_FROM = { "allow-from": { type: "string", description: 'Comma-separated CIDRs it may be used from ("none": any address)' } } as const;

/**
 * --allow-from "a,b" as a list of CIDRs; "none" clears the list; absent: undefined. Only "none"
 * clears it: an empty value, or commas around nothing (`","`), is a usage error, since an
 * empty list lets in every address.
 */
export function allowFromOption(ctx: CommandContext): string[] | undefined {
  const raw = ctx.options["allow-from"];
  if (raw === undefined) return undefined;
  if (typeof raw === "string" && raw.trim() === "none") return [];
  const list = typeof raw === "string" ? raw.split(",").map((c) => c.trim()).filter(Boolean) : [];
  if (list.length === 0) throw new UsageError('--allow-from: comma-separated CIDRs, or "none" to allow any address');
  return list;
}

/** --scope "a b" or "a,b" as a list, else `fallback`. */
export function scopesOption(ctx: CommandContext, fallback: string): string[] {
  return String(ctx.options.scope ?? fallback).split(/[\s,]+/).filter(Boolean);
}
