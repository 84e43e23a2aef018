/**
 * CLI: citadel intel status | ip <ip> | decisions [--lift IP] | allow <cidr> | deny <cidr> |
 * manual [--remove ID [--yes]] | lists | list import <name> <file>|--url URL --weight N [--yes] | list delete <name> |
 * policy | policy set <file> [--yes].
 * All for operators.
 */
import { UsageError } from "../../src/cli/command-line.ts";
import { choiceOption, fileOrStdinText, integerOption, needArgs, print, table } from "../../src/cli/output.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";

/** What the shield does on one channel, and why. */
interface ChannelReport {
  score: number;
  reasons: string[];
  action: string;
  source: string;
  decision: { until: string } | null;
}

interface IpReport extends ChannelReport {
  ip: string;
  country: string | null;
  asn: number | null;
  organisation: string | null;
  lists: string[];
  shadow: boolean;
  /** DNS over UDP (a server before this field sends none). */
  dns?: ChannelReport;
}

/** "drop — by decision until …", "(shadow mode)" when the decision is not enforced. */
const verdictLine = (r: ChannelReport, shadow: boolean) => `${r.action}${shadow && r.source === "decision" ? " (shadow mode)" : ""} — by ${r.source}${r.decision ? ` until ${r.decision.until}` : ""}`;
const scoreLine = (r: ChannelReport, indent: string) => `score ${r.score}${r.reasons.length ? `:\n${indent}  ${r.reasons.join(`\n${indent}  `)}` : ""}`;

interface DecisionView {
  id: string;
  target: string;
  action: string;
  score: number;
  reasons: string[];
  until: string;
  shadow: boolean;
}

const MANUAL_OPTIONS = {
  minutes: { type: "string", description: "Lasts this many minutes (default: until removed)" },
  reason: { type: "string", description: "Why (kept in the audit log)" },
} as const;

async function addManual(ctx: CommandContext, kind: "allow" | "deny") {
  needArgs(ctx, 1, `citadel intel ${kind} <address|cidr>`);
  const action = choiceOption(ctx, "action", ["throttle", "refuse", "drop"]);
  const body: Record<string, unknown> = { kind, target: ctx.args[0] };
  const minutes = integerOption(ctx, "minutes", 1, 5_256_000);
  if (minutes !== undefined) body.minutes = minutes;
  if (typeof ctx.options.reason === "string") body.reason = ctx.options.reason;
  if (kind === "deny" && action !== undefined) body.action = action;
  // Only a deny covering one's own address needs it: without it the server answers 409.
  if (kind === "deny" && ctx.options.yes === true) body.lock_out = true;
  const api = await ctx.api();
  const entry = await api.request<{ id: string; target: string; action: string; until: string | null }>("POST", "/v1/intel/manual", body);
  print(ctx, entry, `${kind === "allow" ? "allowed" : `denied (${entry.action})`} ${entry.target}${entry.until ? ` until ${entry.until}` : ""} (${entry.id})`);
  return 0;
}

export const intelCommands: Command[] = [
  {
    words: ["intel", "status"],
    summary: "The shield: geo databases (licence, date), lists, decisions, verdicts given",
    async run(ctx) {
      const api = await ctx.api();
      const s = await api.request<{ enabled: boolean; shadow: boolean; geo: Array<{ kind: string; path: string | null; buildDate: string | null; licence: string | null; error: string | null }>; lists: Array<{ name: string; weight: number; entries: number }>; decisions: number; manual: number; verdicts: Record<string, number> }>("GET", "/v1/intel/status");
      const geo = table([["DATABASE", "PATH", "DATE", "LICENCE", "ERROR"], ...s.geo.map((g) => [g.kind, g.path ?? "(embedded)", g.buildDate ?? "", g.licence ?? "", g.error ?? ""])]);
      const lists = s.lists.length === 0 ? "no reputation lists" : table([["LIST", "WEIGHT", "ENTRIES"], ...s.lists.map((l) => [l.name, String(l.weight), String(l.entries)])]);
      const verdicts = Object.entries(s.verdicts).map(([a, n]) => `${a} ${n}`).join(", ");
      print(ctx, s, `shield ${s.enabled ? "on" : "off"}${s.shadow ? " (shadow mode: only manual deny entries enforced)" : ""}; ${s.decisions} decision(s) in force, ${s.manual} manual entr${s.manual === 1 ? "y" : "ies"}; verdicts: ${verdicts}\n\n${geo}\n\n${lists}`);
      return 0;
    },
  },
  {
    words: ["intel", "ip"],
    summary: "What is known about an address, its score with reasons, and what the shield does",
    args: "<ip>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel intel ip <ip>");
      const api = await ctx.api();
      const r = await api.request<IpReport>("GET", `/v1/intel/ip/${encodeURIComponent(ctx.args[0]!)}`);
      const lines = [
        `${r.ip}: ${verdictLine(r, r.shadow)}`,
        `country ${r.country ?? "unknown"}, ${r.asn ? `AS${r.asn}${r.organisation ? ` ${r.organisation}` : ""}` : "ASN unknown"}`,
        `lists: ${r.lists.length ? r.lists.join(", ") : "none"}`,
        scoreLine(r, ""),
        // Over UDP, what DNS traffic did counts too, and DNS-only decisions apply.
        ...(r.dns ? [`DNS over UDP: ${verdictLine(r.dns, r.shadow)}`, `  ${scoreLine(r.dns, "  ")}`] : []),
      ];
      print(ctx, r, lines.join("\n"));
      return 0;
    },
  },
  {
    words: ["intel", "decisions"],
    summary: "Decisions in force (--lift IP ends one early; --lift-all --yes ends them all)",
    options: {
      lift: { type: "string", description: "End the decision on this address" },
      "lift-all": { type: "boolean", description: "End every decision in force (after fixing a policy that made them wrongly; needs --yes)" },
      yes: { type: "boolean", description: "Yes, end every decision in force" },
    },
    async run(ctx) {
      if (ctx.options["lift-all"] === true) {
        if (typeof ctx.options.lift === "string") throw new UsageError("--lift or --lift-all, not both");
        if (ctx.options.yes !== true) throw new UsageError("this ends every decision in force, and forgets what their addresses did: add --yes");
        const r = await (await ctx.api()).request<{ lifted: number }>("DELETE", "/v1/intel/decisions", undefined, { confirmed: true });
        print(ctx, r, `${r.lifted} decision(s) lifted`);
        return 0;
      }
      const api = await ctx.api();
      if (typeof ctx.options.lift === "string") {
        await api.request("DELETE", `/v1/intel/decisions/${encodeURIComponent(ctx.options.lift)}`);
        print(ctx, { ok: true }, `decision on ${ctx.options.lift} lifted`);
        return 0;
      }
      const list = await api.request<{ items: DecisionView[] }>("GET", "/v1/intel/decisions");
      const rows = list.items.map((d) => [d.target, d.action + (d.shadow ? " (shadow)" : ""), String(d.score), d.until, d.reasons.join("; ")]);
      print(ctx, list, list.items.length === 0 ? "no decisions in force" : table([["ADDRESS", "ACTION", "SCORE", "UNTIL", "REASONS"], ...rows]));
      return 0;
    },
  },
  { words: ["intel", "allow"], summary: "Always allow an address or CIDR (allow wins over everything)", args: "<address|cidr>", maxArgs: 1, options: MANUAL_OPTIONS, run: (ctx) => addManual(ctx, "allow") },
  {
    words: ["intel", "deny"],
    summary: "Refuse (or throttle, or drop) an address or CIDR",
    args: "<address|cidr>",
    maxArgs: 1,
    options: { ...MANUAL_OPTIONS, action: { type: "string", description: "throttle, refuse (default) or drop" }, yes: { type: "boolean", description: "Yes, deny it though it covers my own address (I will be refused)" } },
    run: (ctx) => addManual(ctx, "deny"),
  },
  {
    words: ["intel", "manual"],
    summary: "Manual allow and deny entries (--remove ID removes one)",
    options: {
      remove: { type: "string", description: "The entry to remove (man_...)" },
      yes: { type: "boolean", description: "Yes, remove it though it is the allow entry that shields my own address" },
    },
    async run(ctx) {
      const api = await ctx.api();
      if (typeof ctx.options.remove === "string") {
        // Only removing the allow entry that shields one's own address needs it: without it the server answers 409.
        const lockOut = ctx.options.yes === true ? "?lock_out=true" : "";
        await api.request("DELETE", `/v1/intel/manual/${encodeURIComponent(ctx.options.remove)}${lockOut}`);
        print(ctx, { ok: true }, `${ctx.options.remove} removed`);
        return 0;
      }
      const list = await api.request<{ items: Array<{ id: string; kind: string; target: string; action: string | null; until: string | null; reason: string | null }> }>("GET", "/v1/intel/manual");
      const rows = list.items.map((e) => [e.id, e.kind === "allow" ? "allow" : `deny (${e.action})`, e.target, e.until ?? "", e.reason ?? ""]);
      print(ctx, list, list.items.length === 0 ? "no manual entries" : table([["ID", "KIND", "TARGET", "UNTIL", "REASON"], ...rows]));
      return 0;
    },
  },
  {
    words: ["intel", "list", "import"],
    summary: "Create or replace a reputation list from a file, or from an https URL the server fetches again every --refresh-minutes (plain, FireHOL netset, Spamhaus DROP)",
    args: "<name> <file|-> | <name> --url URL",
    maxArgs: 2,
    options: {
      weight: { type: "string", description: "Score points for an address on the list (required)" },
      url: { type: "string", description: "Fetch the list from this https URL (the server fetches it, now and at every refresh)" },
      "refresh-minutes": { type: "string", description: "With --url: how often it is fetched again (15-10080; default: the server's)" },
      format: { type: "string", description: "auto (default), plain, firehol or spamhaus" },
      yes: { type: "boolean", description: "Yes, take it though it would refuse my own address" },
    },
    async run(ctx) {
      const url = typeof ctx.options.url === "string" ? ctx.options.url : undefined;
      needArgs(ctx, url === undefined ? 2 : 1, "citadel intel list import <name> <file> --weight N, or <name> --url URL --weight N");
      if (url !== undefined && ctx.args.length > 1) throw new UsageError("give the list's file or --url, not both");
      const weight = integerOption(ctx, "weight", 0, 100);
      if (weight === undefined) throw new UsageError("--weight: the score points of the list (0-100)");
      const refreshMinutes = integerOption(ctx, "refresh-minutes", 15, 10_080);
      if (refreshMinutes !== undefined && url === undefined) throw new UsageError("--refresh-minutes is for a list fetched from --url");
      const format = choiceOption(ctx, "format", ["auto", "plain", "firehol", "spamhaus"] as const);
      const source = url !== undefined ? { url, ...(refreshMinutes !== undefined ? { refresh_minutes: refreshMinutes } : {}) } : { content: await fileOrStdinText(ctx.args[1]!) };
      const api = await ctx.api();
      const r = await api.request<{ name: string; entries: number; bad_lines: number; format: string; bad_lines_shown?: Array<{ line: number; text: string; problem: string }> }>(
        "PUT",
        `/v1/intel/lists/${encodeURIComponent(ctx.args[0]!)}`,
        { weight, ...source, ...(format !== undefined ? { format } : {}), ...(ctx.options.yes === true ? { lock_out: true } : {}) },
      );
      // The bad lines by number, as the API names them (the first few): what to fix in the file.
      const bad = (r.bad_lines_shown ?? []).map((b) => `\n  line ${b.line}: ${b.problem}: ${b.text}`).join("");
      const shown = r.bad_lines_shown?.length ?? 0; // (a server before this field sends none)
      const more = r.bad_lines > shown ? `\n  (and ${r.bad_lines - shown} more)` : "";
      print(ctx, r, `${r.name}: ${r.entries} entries (${r.format})${r.bad_lines ? `, ${r.bad_lines} bad lines skipped:${bad}${more}` : ""}`);
      return 0;
    },
  },
  {
    words: ["intel", "policy"],
    summary: "The shield's policy in force: points by country, ASN, anonymity and behaviour, the thresholds (policy set FILE changes it)",
    maxArgs: 0,
    async run(ctx) {
      const api = await ctx.api();
      const policy = await api.request<Record<string, unknown>>("GET", "/v1/intel/policy");
      print(ctx, policy, JSON.stringify(policy, null, 2)); // nested maps: JSON reads best
      return 0;
    },
  },
  {
    words: ["intel", "policy", "set"],
    summary: "Set the points by country, ASN, anonymity and behaviour from a JSON file (- for standard input), as PUT /v1/intel/policy takes it",
    args: "<file|->",
    maxArgs: 1,
    options: { yes: { type: "boolean", description: "Yes, set it though it would refuse my own address" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel intel policy set <file|->");
      const text = await fileOrStdinText(ctx.args[0]!);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new UsageError(`${ctx.args[0] === "-" ? "standard input" : ctx.args[0]} is not JSON: give an object such as {"countries": {"XX": 30}}`);
      }
      // Only points that would refuse one's own address need it: without it the server answers 409.
      if (ctx.options.yes === true && typeof body === "object" && body !== null && !Array.isArray(body)) body = { ...body, lock_out: true };
      const api = await ctx.api();
      const policy = await api.request<Record<string, unknown>>("PUT", "/v1/intel/policy", body);
      print(ctx, policy, `policy set:\n${JSON.stringify(policy, null, 2)}`);
      return 0;
    },
  },
  {
    words: ["intel", "list", "delete"],
    summary: "Remove a reputation list",
    args: "<name>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel intel list delete <name>");
      const api = await ctx.api();
      await api.request("DELETE", `/v1/intel/lists/${encodeURIComponent(ctx.args[0]!)}`);
      print(ctx, { ok: true }, `${ctx.args[0]} deleted`);
      return 0;
    },
  },
];
