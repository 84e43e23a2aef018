import { describe, expect, test } from "bun:test";
import { parseCommandLine, usageText, UsageError } from "../../../src/cli/command-line.ts";
import type { Command } from "../../../src/plugin.ts";

const run = async () => 0;
const commands: Command[] = [
  { words: ["serve"], summary: "serve", run },
  { words: ["version"], summary: "version", run },
  { words: ["system", "info"], summary: "info", run },
  { words: ["dns", "zone", "show"], summary: "show a zone", args: "<zone>", maxArgs: 1, options: { serial: { type: "boolean", description: "only the serial" } }, run },
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
    [["launch"], /unknown command: launch/],
    [["system"], /unknown command: system/],
    [["serve", "--verbose"], /unknown flag '--verbose'/],
    [["serve", "extra"], /unexpected argument: extra/],
    [["dns", "zone", "show", "a", "b"], /unexpected argument: b/],
    [["serve", "--data"], /--data/],
    [["--bogus"], /unknown flag or missing command: --bogus/],
    [["--data", "/x", "--bogus"], /unknown flag or missing command: --bogus/],
    // Valid global flags without a command: the command is what is missing (found in review).
    [["--data", "/x"], /^missing command$/],
    [["--json"], /^missing command$/],
    [["--config=/c.toml"], /^missing command$/],
    [["help", "nothing"], /unknown command: nothing/],
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

  test("usage lists every command", () => {
    const text = usageText(commands);
    for (const c of commands) expect(text).toContain(c.words.join(" "));
  });
});
