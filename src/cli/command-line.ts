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
    /** Or the group of commands (`secrets`, `dns zone`) they were in, whose commands are listed. */
    readonly group?: readonly string[],
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
  | { kind: "help"; command?: Command; group?: readonly string[] }
  | { kind: "run"; command: Command; args: string[]; options: Record<string, string | boolean | undefined> };

export function parseCommandLine(argv: readonly string[], commands: readonly Command[]): Invocation {
  const { words, wordIndexes } = leadingWords(argv);
  if (words[0] === "help") {
    const topic = words.slice(1);
    if (topic.length === 0) return { kind: "help" };
    const command = findCommand(topic, commands);
    if (command && command.words.length === topic.length) return { kind: "help", command };
    if (isGroup(topic, commands)) return { kind: "help", group: topic };
    throw unknownCommand(topic, commands);
  }
  const command = findCommand(words, commands);
  if (!command) {
    const askedHelp = argv.includes("--help") || argv.includes("-h");
    if (words.length === 0) {
      if (askedHelp) return { kind: "help" };
      const unknown = argv.find((token) => token.startsWith("-") && !isGlobalFlag(token));
      if (unknown) throw new UsageError(`unknown flag or missing command: ${unknown}`);
      throw new UsageError(argv.length === 0 ? "no command given" : "missing command");
    }
    if (askedHelp && isGroup(words, commands)) return { kind: "help", group: words };
    throw unknownCommand(words, commands);
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
    // Its position, not its text: an extra argument may be a value or a token pasted by mistake.
    throw new UsageError(`unexpected argument #${maxArgs + 1}: this command takes ${maxArgs === 0 ? "none" : `at most ${maxArgs}`}`, command);
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

/** `secrets`, `dns zone`: words that begin longer commands, a group whose commands help lists. */
function isGroup(words: readonly string[], commands: readonly Command[]): boolean {
  return words.length > 0 && commands.some((c) => c.words.length > words.length && words.every((w, i) => c.words[i] === w));
}

/** The longest group that begins `words`, if any: where the user was, so its commands are listed. */
function enclosingGroup(words: readonly string[], commands: readonly Command[]): string[] | undefined {
  for (let n = words.length; n > 0; n--) if (isGroup(words.slice(0, n), commands)) return words.slice(0, n);
  return undefined;
}

/** Words that name no command: a group alone wants one of its commands, anything else is unknown. */
function unknownCommand(words: readonly string[], commands: readonly Command[]): UsageError {
  const group = enclosingGroup(words, commands);
  if (group && group.length === words.length) return new UsageError(`${group.join(" ")} is a group of commands: give one of them`, undefined, group);
  const echoed = commandWordsOf(words, commands);
  if (echoed.length === 0) return new UsageError("unknown command", undefined, group);
  return new UsageError(`unknown command: ${echoed.join(" ")}${echoed.length < words.length ? " ..." : ""}`, undefined, group);
}

/**
 * The leading words that are words of some command, at most as many as a command has: all of
 * an unknown command that is repeated on screen. What follows may be a value (a token pasted
 * as an argument, an id after -w), which would land in terminal logs.
 */
function commandWordsOf(words: readonly string[], commands: readonly Command[]): string[] {
  const known = new Set(commands.flatMap((c) => c.words));
  const longest = Math.max(...commands.map((c) => c.words.length));
  const leading: string[] = [];
  for (const word of words.slice(0, longest)) {
    if (!known.has(word)) break;
    leading.push(word);
  }
  return leading;
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
  // A value beginning with a dash (--reason -spam): node's way to give it is the point of its
  // message, which the first sentence alone lost (found in review).
  const ambiguous = /^Option '([^']+)' argument is ambiguous[\s\S]*? use '([^'=]+)=-XYZ'/.exec(message);
  if (ambiguous) return `the argument after ${ambiguous[1]} begins with a dash, so it is not taken as its value: give such a value as ${ambiguous[2]}=-VALUE`;
  // node's messages end with advice about "--" that does not apply here; keep the first sentence.
  return message.split(/\.\s/)[0]!.replace(/^Unknown option/, "unknown flag").replace(/\.$/, "");
}

/** The overview printed by `citadel help` and on usage errors. */
export function usageText(commands: readonly Command[]): string {
  const lines = [
    "Usage: citadel [--config FILE] [--data DIR] [--json] <command> [arguments]",
    "",
    "Commands:",
    ...commandLines(commands),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_OPTIONS),
    "",
    "Run `citadel help <command>` for the flags of one command.",
  ];
  return lines.join("\n");
}

/** What help prints, and a usage error after its message: one command's, one group's, or every command. */
export function helpText(commands: readonly Command[], topic: { command?: Command; group?: readonly string[] }): string {
  if (topic.command) {
    // `backup` is a command and begins `backup list`: its help names those too.
    const text = commandHelpText(topic.command);
    return isGroup(topic.command.words, commands) ? `${text}\n\nCommands:\n${commandLines(groupMembers(topic.command.words, commands)).join("\n")}` : text;
  }
  if (topic.group) return groupHelpText(topic.group, commands);
  return usageText(commands);
}

/** A group's commands with their summaries, as the overview lists them. */
export function groupHelpText(group: readonly string[], commands: readonly Command[]): string {
  return [
    `Usage: citadel ${group.join(" ")} <command> [arguments]`,
    "",
    "Commands:",
    ...commandLines(groupMembers(group, commands)),
    "",
    "Run `citadel help <command>` for the flags of one command.",
  ].join("\n");
}

function groupMembers(group: readonly string[], commands: readonly Command[]): Command[] {
  return commands.filter((c) => c.words.length > group.length && group.every((w, i) => c.words[i] === w));
}

function commandLines(commands: readonly Command[]): string[] {
  const width = Math.max(...commands.map((c) => c.words.join(" ").length)) + 2;
  return commands.map((c) => `  ${c.words.join(" ").padEnd(width)}${c.summary}`);
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
