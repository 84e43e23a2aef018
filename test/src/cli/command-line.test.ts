import { describe, expect, test } from "bun:test";
import { helpText, parseCommandLine, usageText, UsageError } from "../../../src/cli/command-line.ts";
import type { Command } from "../../../src/plugin.ts";

const run = async () => 0;
const commands: Command[] = [
  { words: ["serve"], summary: "serve", run },
  { words: ["version"], summary: "version", run },
  { words: ["system", "info"], summary: "info", run },
  { words: ["dns", "zone", "show"], summary: "show a zone", args: "<zone>", maxArgs: 1, options: { serial: { type: "boolean", description: "only the serial" } }, run },
  { words: ["dns", "zone", "list"], summary: "list the zones", run },
  { words: ["dns", "top"], summary: "busiest names", run },
  { words: ["backup"], summary: "make a backup", run },
  { words: ["backup", "list"], summary: "list the backups", run },
];

describe("parseCommandLine", () => {
  const ok: Array<[string[], string, string[], Record<string, unknown>]> = [
    [["serve"], "serve", [], {}],
    [["--data", "/tmp/x", "serve"], "serve", [], { data: "/tmp/x" }],
    [["serve", "--config=/etc/c.toml"], "serve", [], { config: "/etc/c.toml" }],
    [["system", "info", "--json"], "system info", [], { json: true }],
    [["dns", "zone", "show", "example.org", "--serial"], "dns zone show", ["example.org"], { serial: true }],
    [["--json", "dns", "zone", "show", "example.org"], "dns zone show", ["example.org"], { json: true }],
  ];
  for (const [argv, words, args, options] of ok) {
    test(argv.join(" "), () => {
      const inv = parseCommandLine(argv, commands);
      if (inv.kind !== "run") throw new Error("expected a command");
      expect(inv.command.words.join(" ")).toBe(words);
      expect(inv.args).toEqual(args);
      expect(inv.options).toMatchObject(options);
    });
  }

  const bad: Array<[string[], RegExp]> = [
    [[], /no command given/],
    [["launch"], /^unknown command$/],
    [["system"], /^system is a group of commands: give one of them$/],
    [["serve", "--verbose"], /unknown flag '--verbose'/],
    [["serve", "extra"], /^unexpected argument #1: this command takes none$/],
    [["dns", "zone", "show", "a", "b"], /^unexpected argument #2: this command takes at most 1$/],
    [["serve", "--data"], /--data/],
    [["--bogus"], /unknown flag or missing command: --bogus/],
    [["--data", "/x", "--bogus"], /unknown flag or missing command: --bogus/],
    // Valid global flags without a command: the command is what is missing (found in review).
    [["--data", "/x"], /^missing command$/],
    [["--json"], /^missing command$/],
    [["--config=/c.toml"], /^missing command$/],
    [["help", "nothing"], /^unknown command$/],
    // A value beginning with a dash: how to give it is kept (found in review: cut to "argument is ambiguous").
    [["serve", "--data", "-x"], /^the argument after --data begins with a dash, so it is not taken as its value: give such a value as --data=-VALUE$/],
  ];
  for (const [argv, message] of bad) {
    test(`refuses ${JSON.stringify(argv)}`, () => {
      expect(() => parseCommandLine(argv, commands)).toThrow(UsageError);
      expect(() => parseCommandLine(argv, commands)).toThrow(message);
    });
  }

  test("help forms", () => {
    expect(parseCommandLine(["help"], commands)).toEqual({ kind: "help" });
    expect(parseCommandLine(["--help"], commands)).toEqual({ kind: "help" });
    expect(parseCommandLine(["help", "system", "info"], commands)).toMatchObject({ kind: "help", command: { words: ["system", "info"] } });
    expect(parseCommandLine(["serve", "-h"], commands)).toMatchObject({ kind: "help", command: { words: ["serve"] } });
  });

  test("a group's name is help's topic: its commands, not an unknown command (found in an operator's walkthrough)", () => {
    expect(parseCommandLine(["help", "dns"], commands)).toEqual({ kind: "help", group: ["dns"] });
    expect(parseCommandLine(["help", "dns", "zone"], commands)).toEqual({ kind: "help", group: ["dns", "zone"] });
    expect(parseCommandLine(["dns", "zone", "--help"], commands)).toEqual({ kind: "help", group: ["dns", "zone"] });
    expect(helpText(commands, { group: ["dns", "zone"] })).toBe(
      ["Usage: citadel dns zone <command> [arguments]", "", "Commands:", "  dns zone show  show a zone", "  dns zone list  list the zones", "", "Run `citadel help <command>` for the flags of one command."].join("\n"),
    );
    expect(helpText(commands, { group: ["dns"] })).toContain("  dns top        busiest names");
  });

  test("a group used as a command is a usage error listing its commands (found in an operator's walkthrough)", () => {
    for (const [argv, group] of [[["dns"], ["dns"]], [["dns", "zone"], ["dns", "zone"]], [["dns", "zone", "bogus"], ["dns", "zone"]], [["help", "dns", "bogus"], ["dns"]]] as const) {
      let error: unknown;
      try {
        parseCommandLine(argv, commands);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).group).toEqual(group);
      expect(helpText(commands, error as UsageError)).not.toContain("serve");
    }
  });

  test("an unknown command repeats only its leading command words, never what follows (found in an operator's walkthrough)", () => {
    const cases: Array<[string[], string]> = [
      [["dns", "purge", "citadel_pat_SECRET", "-w", "ws_SECRET"], "unknown command: dns ..."],
      [["dns", "zone", "top", "citadel_pat_SECRET"], "unknown command: dns zone top ..."],
      [["system", "dns", "zone", "info"], "unknown command: system dns zone ..."],
      [["dns", "serve"], "unknown command: dns serve"],
      [["citadel_pat_SECRET"], "unknown command"],
      [["help", "dns", "citadel_pat_SECRET"], "unknown command: dns ..."],
      [["--json", "ws_SECRET", "dns"], "unknown command"],
    ];
    for (const [argv, message] of cases) expect(() => parseCommandLine(argv, commands)).toThrow(new UsageError(message));
  });

  test("a command that begins others lists them in its help", () => {
    const help = parseCommandLine(["help", "backup"], commands);
    expect(help).toMatchObject({ kind: "help", command: { words: ["backup"] } });
    expect(helpText(commands, help as { command: Command })).toContain("Commands:\n  backup list  list the backups");
    expect(helpText(commands, { command: commands[0]! })).not.toContain("Commands:");
  });

  test("usage lists every command", () => {
    const text = usageText(commands);
    for (const c of commands) expect(text).toContain(c.words.join(" "));
  });
});
