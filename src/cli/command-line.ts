/**
 * Command-line parsing for the one binary: `citadel [global flags] <command words> [args]`.
 * Commands come from main.ts (serve, init, ...) and from plugins (system info, ...). An
 * unknown command or flag is a UsageError, which main turns into usage text and exit 2.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Command, CommandOption } from "../plugin.ts";

export class UsageError extends Error {
  override readonly name = "UsageError";
  constructor(
    message: string,
    /** The command the user was reaching for, for a focused usage text. */
    readonly command?: Command,
  ) {
    super(message);
  }
}

export const GLOBAL_OPTIONS: Readonly<Record<string, CommandOption>> = {
  config: { type: "string", description: "Config file (default: citadel.toml in the data directory; env CITADEL_CONFIG)" },
  data: { type: "string", description: "Data directory (default: ./.citadel; env CITADEL_DATA)" },
  json: { type: "boolean", description: "Print data as JSON" },
  help: { type: "boolean", short: "h", description: "Show help" },
};

export type Invocation =
  | { kind: "help"; command?: Command }
  | { kind: "run"; command: Command; args: string[]; options: Record<string, string | boolean | undefined> };

export function parseCommandLine(argv: readonly string[], commands: readonly Command[]): Invocation {
  const { words, wordIndexes } = leadingWords(argv);
  if (words[0] === "help") {
    const topic = words.slice(1);
    if (topic.length === 0) return { kind: "help" };
    const command = findCommand(topic, commands);
    if (!command || command.words.length !== topic.length) throw new UsageError(`unknown command: ${topic.join(" ")}`);
    return { kind: "help", command };
  }
  const command = findCommand(words, commands);
  if (!command) {
    if (words.length === 0) {
      if (argv.includes("--help") || argv.includes("-h")) return { kind: "help" };
      const unknown = argv.find((token) => token.startsWith("-") && !isGlobalFlag(token));
      if (unknown) throw new UsageError(`unknown flag or missing command: ${unknown}`);
      throw new UsageError(argv.length === 0 ? "no command given" : "missing command");
    }
    throw new UsageError(`unknown command: ${words.join(" ")}`);
  }
  const rest = argv.filter((_, i) => !wordIndexes.slice(0, command.words.length).includes(i));
  const options = { ...GLOBAL_OPTIONS, ...command.options };
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...rest],
      options: options as ParseArgsConfig["options"],
      strict: true,
      allowPositionals: true,
    }) as typeof parsed;
  } catch (error) {
    throw new UsageError(cleanParseError(error), command);
  }
  if (parsed.values.help) return { kind: "help", command };
  const maxArgs = command.maxArgs ?? 0;
  if (parsed.positionals.length > maxArgs) {
    throw new UsageError(`unexpected argument: ${parsed.positionals[maxArgs]}`, command);
  }
  return { kind: "run", command, args: parsed.positionals, options: parsed.values };
}

/** The positional words before the first flag-like token's arguments, with their indexes. */
function leadingWords(argv: readonly string[]): { words: string[]; wordIndexes: number[] } {
  const words: string[] = [];
  const wordIndexes: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "--") break;
    if (token.startsWith("-")) {
      const name = token.replace(/^--?/, "");
      // A global string flag given as "--data DIR" consumes the next token.
      if (!name.includes("=") && GLOBAL_OPTIONS[name]?.type === "string") i++;
      continue;
    }
    words.push(token);
    wordIndexes.push(i);
  }
  return { words, wordIndexes };
}

/** `--data`, `--json=x`, `-h`: a global flag, which alone is valid, but no command. */
function isGlobalFlag(token: string): boolean {
  const name = token.replace(/^--?/, "").split("=")[0]!;
  return GLOBAL_OPTIONS[name] !== undefined || Object.values(GLOBAL_OPTIONS).some((o) => o.short === name);
}

/** The command whose words are the longest prefix of `words`. */
function findCommand(words: readonly string[], commands: readonly Command[]): Command | undefined {
  let best: Command | undefined;
  for (const command of commands) {
    const matches = command.words.every((w, i) => words[i] === w);
    if (matches && (!best || command.words.length > best.words.length)) best = command;
  }
  return best;
}

function cleanParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // node's messages end with advice about "--" that does not apply here; keep the first sentence.
  return message.split(/\.\s/)[0]!.replace(/^Unknown option/, "unknown flag").replace(/\.$/, "");
}

/** The overview printed by `citadel help` and on usage errors. */
export function usageText(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.words.join(" ").length)) + 2;
  const lines = [
    "Usage: citadel [--config FILE] [--data DIR] [--json] <command> [arguments]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.words.join(" ").padEnd(width)}${c.summary}`),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_OPTIONS),
    "",
    "Run `citadel help <command>` for the flags of one command.",
  ];
  return lines.join("\n");
}

export function commandHelpText(command: Command): string {
  const lines = [`Usage: citadel ${command.words.join(" ")}${command.args ? ` ${command.args}` : ""} [flags]`, "", command.summary];
  if (command.options && Object.keys(command.options).length > 0) lines.push("", "Flags:", ...flagLines(command.options));
  lines.push("", "Global flags:", ...flagLines(GLOBAL_OPTIONS));
  return lines.join("\n");
}

function flagLines(options: Readonly<Record<string, CommandOption>>): string[] {
  const entries = Object.entries(options).map(([name, o]) => [`${o.short ? `-${o.short}, ` : ""}--${name}${o.type === "string" ? " VALUE" : ""}`, o.description] as const);
  const width = Math.max(...entries.map(([f]) => f.length)) + 2;
  return entries.map(([flag, description]) => `  ${flag.padEnd(width)}${description}`);
}
