import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import {
  DotenvError,
  isSecretName,
  parseDotenv,
  parseJsonSecrets,
  printDotenv,
  printJsonSecrets,
  SECRET_NAME,
  type SecretEntry,
} from "../../../plugins/secrets/dotenv.ts";

/** Entries from name/value pairs, to keep the tables short. */
const e = (...pairs: [string, string][]): SecretEntry[] => pairs.map(([name, value]) => ({ name, value }));

describe("secret names", () => {
  test.each([
    ["FOO", true],
    ["_x1", true],
    ["a", true],
    ["A".repeat(128), true],
    ["A".repeat(129), false],
    ["1FOO", false],
    ["FOO-BAR", false],
    ["FOO.BAR", false],
    ["", false],
    ["FÖÖ", false],
  ] as const)("%p → %p", (name, ok) => {
    expect(isSecretName(name)).toBe(ok);
    expect(SECRET_NAME.test(name)).toBe(ok);
  });
});

describe("parseDotenv accepts", () => {
  const cases: [string, string, SecretEntry[]][] = [
    ["nothing", "", []],
    ["blank and comment lines", "\n# a comment\n   \n  # indented comment\nA=1\n", e(["A", "1"])],
    ["no final newline", "A=1\nB=2", e(["A", "1"], ["B", "2"])],
    ["the export prefix", "export A=1\nexport\tB = 2\n", e(["A", "1"], ["B", "2"])],
    ["whitespace around =", "A = 1\nB\t=\t2\n  C=3\n", e(["A", "1"], ["B", "2"], ["C", "3"])],
    ["unquoted values, trimmed", "A=  hello world  \n", e(["A", "hello world"])],
    ["inline comments after whitespace", "A=1 # one\nB=two\t#two\nC= # only a comment\n", e(["A", "1"], ["B", "two"], ["C", ""])],
    ["# without whitespace before it is kept", "A=a#b\nB=#x\nC=http://h/p#frag\n", e(["A", "a#b"], ["B", "#x"], ["C", "http://h/p#frag"])],
    ["empty values", 'A=\nB=""\nC=\'\'\nD= \n', e(["A", ""], ["B", ""], ["C", ""], ["D", ""])],
    ["= inside values", "A=x=y==\n", e(["A", "x=y=="])],
    ["single quotes, literal", "A='a \\n \"b\" $X #c'\n", e(["A", 'a \\n "b" $X #c'])],
    ["single quotes over lines", "A='line 1\nline 2\n\n  line 4'\nB=2\n", e(["A", "line 1\nline 2\n\n  line 4"], ["B", "2"])],
    ["double quotes with escapes", 'A="a\\nb\\rc\\td\\"e\\\\f\\$g"\n', e(["A", 'a\nb\rc\td"e\\f$g'])],
    ["an escaped backtick, as a shell reads it", 'A="\\`id\\`"\n', e(["A", "`id`"])],
    ["unknown escapes kept as written", 'A="\\x\\u00e9\\\'"\n', e(["A", "\\x\\u00e9\\'"])],
    ["double quotes over lines", 'A="first\n  second \\"quoted\\"\nthird"\nB=2\n', e(["A", 'first\n  second "quoted"\nthird'], ["B", "2"])],
    ["an escaped backslash before the closing quote", 'A="x\\\\"\n', e(["A", "x\\"])],
    ["spaces kept inside quotes", 'A="  padded  "\nB=\'  p  \'\n', e(["A", "  padded  "], ["B", "  p  "])],
    ["a comment after the closing quote", "A=\"x\" # note\nB='y'\t#note\nC=\"z\"#tight\nD=\"w\"   \n", e(["A", "x"], ["B", "y"], ["C", "z"], ["D", "w"])],
    ["# inside quotes", 'A="a #b"\n', e(["A", "a #b"])],
    ["no interpolation", 'A=${B}\nB="$A ${A:-x}"\nC=\'${A}\'\n', e(["A", "${B}"], ["B", "$A ${A:-x}"], ["C", "${A}"])],
    ["CRLF line endings", "# c\r\nA=1\r\nB=\"x\r\ny\"\r\nC='p\r\nq'\r\n", e(["A", "1"], ["B", "x\ny"], ["C", "p\nq"])],
    ["a UTF-8 BOM", "\uFEFFA=1\n", e(["A", "1"])],
    ["Unicode values", "A=héllo wörld ✓\nB=\"日本 🔑\"\n", e(["A", "héllo wörld ✓"], ["B", "日本 🔑"])],
  ];
  test.each(cases)("%s", (_title, text, expected) => {
    expect(parseDotenv(text)).toEqual(expected);
  });

  test("a variable named export", () => {
    expect(parseDotenv("export=1\nexport X=2\n")).toEqual(e(["export", "1"], ["X", "2"]));
  });
});

describe("parseDotenv refuses, naming the line and never the value", () => {
  // [title, text, line, text from a value that must not appear in the message, message part]
  const cases: [string, string, number, string, string][] = [
    ["an invalid name", "A=1\n1BAD=s3cr3t\n", 2, "s3cr3t", "invalid name"],
    ["a dashed name", "\n\nMY-KEY=s3cr3t\n", 3, "s3cr3t", "invalid name"],
    ["an empty name", "=s3cr3t\n", 1, "s3cr3t", "invalid name"],
    ["a stray value line", "A=1\nsk_live_s3cr3t\n", 2, "s3cr3t", "no '='"],
    ["export without =", "export s3cr3t\n", 1, "s3cr3t", "no '='"],
    ["an unterminated double quote", 'A=1\n\n\nB="s3cr3t\nmore\n', 4, "s3cr3t", "unterminated double-quoted value"],
    ["an unterminated single quote", "A='s3cr3t\n", 1, "s3cr3t", "unterminated single-quoted value"],
    ["a double quote escaped at the end", 'A="s3cr3t\\"\n', 1, "s3cr3t", "unterminated double-quoted value"],
    ["garbage after a double quote", 'A="x" s3cr3t\n', 1, "s3cr3t", "after the closing double quote"],
    ["garbage after a multi-line quote", "A='x\ny's3cr3t\n", 2, "s3cr3t", "after the closing single quote"],
    ["quotes inside quotes", 'A="s3"cr3t"\n', 1, "cr3t", "after the closing double quote"],
    ["a name set twice", "# c\nFOO=1\n\n\n\n\nFOO=s3cr3t\n", 7, "s3cr3t", "line 7: FOO is set twice (first on line 2)"],
    ["a name set twice, first by export", "export FOO=a\nFOO='s3cr3t\n", 2, "s3cr3t", "FOO is set twice (first on line 1)"],
    ["CRLF counted as one line end", "A=1\r\nB=2\r\nC=\"s3cr3t\r\n", 3, "s3cr3t", "unterminated"],
  ];
  test.each(cases)("%s", (_title, text, line, secret, part) => {
    let caught: unknown;
    try {
      parseDotenv(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DotenvError);
    const err = caught as DotenvError;
    expect(err.line).toBe(line);
    expect(err.message.startsWith(`line ${line}: `)).toBe(true);
    expect(err.message).toContain(part);
    expect(err.message).not.toContain(secret);
  });

  test("the spec's message form", () => {
    expect(() => parseDotenv('A=1\n\n\nB="open\n')).toThrow("line 4: unterminated double-quoted value");
  });
});

describe("printDotenv", () => {
  test("one line per entry, in order: bare when simple, single-quoted when that holds it, else double-quoted with escapes", () => {
    const out = printDotenv(
      e(
        ["Z", "plain-value_1.2/3:4@5+6,7"],
        ["A", ""],
        ["SPACE", " a b "],
        ["TICK", "`id` $(id) ${HOME}"],
        ["PATHS", "C:\\Users\\x\\"],
        ["UNI", "ключ \u2028"],
        ["SINGLE", "it's"],
        ["ESC", 'q"b\\n\nr\rt\t$HOME'],
        ["BACKSLASHES", "a\\\\b"],
        ["CONTROL", "\u0001`"],
      ),
    );
    expect(out).toBe(
      [
        "Z=plain-value_1.2/3:4@5+6,7",
        "A=",
        "SPACE=' a b '",
        "TICK='`id` $(id) ${HOME}'",
        "PATHS='C:\\Users\\x\\'",
        "UNI='ключ \u2028'",
        'SINGLE="it\'s"',
        'ESC="q\\"b\\\\n\\nr\\rt\t\\$HOME"',
        'BACKSLASHES="a\\\\\\\\b"',
        'CONTROL="\u0001\\`"',
        "",
      ].join("\n"),
    );
  });

  test("a value never spans lines (found in review: a line-based reader such as kubectl --from-env-file took a value's further lines as variables, LD_PRELOAD included)", () => {
    const planted = printDotenv(e(["API_KEY", "abc\nLD_PRELOAD=/tmp/evil.so\nZ="], ["CR", "a\rB=1\r\n"]));
    expect(planted).toBe('API_KEY="abc\\nLD_PRELOAD=/tmp/evil.so\\nZ="\nCR="a\\rB=1\\r\\n"\n');
    const values = fc.string({ unit: fc.constantFrom(..."\n\r\t '\"\\$`=#aX_\u2028\u0085\u0001".split("")), maxLength: 16 });
    fc.assert(
      fc.property(fc.uniqueArray(fc.record({ name: fc.stringMatching(SECRET_NAME), value: fc.oneof(values, fc.string({ unit: "binary" })) }), { selector: (x) => x.name, maxLength: 6 }), (x) => {
        // As a reader taking a line per variable splits it (any of \n, \r\n, \r ends a line).
        const lines = printDotenv(x).split(/\r\n|\r|\n/).slice(0, -1);
        expect(lines.map((line) => line.slice(0, line.indexOf("=")))).toEqual(x.map((entry) => entry.name));
      }),
      { numRuns: 500 },
    );
  });

  test("a value with no ', no control character and no two backslashes in a row is written as it is, in single quotes: python-dotenv and node's dotenv read its backticks and $ without the backslash that \\` and \\$ left (found in review)", () => {
    const unit = fc.constantFrom(..."`$\\\" #{}()!=aé🔑".split(""));
    const value = fc.string({ unit, minLength: 1, maxLength: 16 }).filter((v) => !v.includes("\\\\") && !/^[A-Za-z0-9_.\/:@+,-]*$/.test(v));
    fc.assert(
      fc.property(value, (v) => {
        expect(printDotenv(e(["V", v]))).toBe(`V='${v}'\n`);
      }),
      { numRuns: 300 },
    );
  });

  test("nothing for no entries", () => {
    expect(printDotenv([])).toBe("");
  });

  test("refuses invalid names without quoting them, and repeated names", () => {
    expect(() => printDotenv(e(["OK", "1"], ["s3cr3t value", "x"]))).toThrow("entry 2: invalid secret name");
    expect(() => printDotenv(e(["bad-name", "x"]))).toThrow(/^entry 1: invalid secret name \(names are [^-]*\)$/);
    expect(() => printDotenv(e(["A", "1"], ["A", "2"]))).toThrow("entry 2: A appears twice");
  });
});

describe("JSON secrets", () => {
  test("reads a flat object in order", () => {
    expect(parseJsonSecrets('{"B": "2", "A": "x\\ny", "__proto__": "p"}')).toEqual(e(["B", "2"], ["A", "x\ny"], ["__proto__", "p"]));
    expect(parseJsonSecrets("\uFEFF{}")).toEqual([]);
    // A key's text inside a value is no key: only the object's own keys are checked for repeats.
    expect(parseJsonSecrets('{"A": "\\"A\\": \\"{\\\\\\"", "B": "{\\"A\\": [1]}"}')).toEqual(e(["A", '"A": "{\\"'], ["B", '{"A": [1]}']));
  });

  test("prints pretty JSON with a final newline, __proto__ included", () => {
    expect(printJsonSecrets(e(["B", "2"], ["__proto__", "p"]))).toBe('{\n  "B": "2",\n  "__proto__": "p"\n}\n');
    expect(printJsonSecrets([])).toBe("{}\n");
    expect(printJsonSecrets(e(["A", "1"]))).toBe(JSON.stringify({ A: "1" }, null, 2) + "\n");
  });

  test.each([
    ["invalid JSON", '{"A": s3cr3t}', "not valid JSON"],
    ["a trailing comma", '{"A": "s3cr3t",}', "not valid JSON"],
    ["an array", '["s3cr3t"]', "got an array"],
    ["a string", '"s3cr3t"', "got a string"],
    ["null", "null", "got null"],
    ["a number value", '{"PORT": 31337}', "PORT: the value must be a string, not a number"],
    ["a boolean value", '{"DEBUG": true}', "DEBUG: the value must be a string, not a boolean"],
    ["a nested object", '{"NESTED": {"k": "s3cr3t"}}', "NESTED: the value must be a string, not an object"],
    ["a null value", '{"N": null}', "N: the value must be a string, not null"],
    ["an invalid name, told by its place and never quoted (found in review)", '{"A": "1", "s3cr3t pasted as a name": "x"}', "entry 2: invalid secret name (names are"],
    ["a repeated key, named, never its values (found in review)", '{"A": "s3cr3t", "B": "x", "A": "31337"}', "A appears twice"],
    ["a repeated key written with an escape (found in review)", '{"A": "s3cr3t",\n  "\\u0041" : "31337"}', "A appears twice"],
  ])("refuses %s", (_title, text, message) => {
    let caught: unknown;
    try {
      parseJsonSecrets(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Error);
    const msg = (caught as Error).message;
    expect(msg).toContain(message);
    expect(msg).not.toContain("s3cr3t");
    expect(msg).not.toContain("31337");
  });

  test("printJsonSecrets refuses invalid and repeated names", () => {
    expect(() => printJsonSecrets(e(["1X", "v"]))).toThrow("entry 1: invalid secret name");
    expect(() => printJsonSecrets(e(["A", "1"], ["A", "2"]))).toThrow("A appears twice");
  });
});

describe("round trips", () => {
  const name = fc.stringMatching(SECRET_NAME);
  // Any code points (lone surrogates included), and strings dense in the characters that need care.
  const tricky = fc.string({ unit: fc.constantFrom(..."\n\r\t \"'\\$#=`{}a1-\u2028\u0000\uFEFF\u00e9".split("")), maxLength: 24 });
  const value = fc.oneof(fc.string({ unit: "binary" }), tricky, fc.constantFrom("", " ", "\r\n", '"', "'", "\\", "$X", "#"));
  const entries = fc.uniqueArray(fc.record({ name, value }), { selector: (x) => x.name, maxLength: 8 });

  test("parseDotenv(printDotenv(x)) is x", () => {
    fc.assert(
      fc.property(entries, (x) => {
        expect(parseDotenv(printDotenv(x))).toEqual(x);
      }),
      { numRuns: 500 },
    );
  });

  // What exports wrote before: line ends, tabs and `$` escaped, backticks as they are; then
  // (688cc6f) line ends and tabs as they are, backticks escaped. Files written so still import.
  const oldEscaping: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", $: "\\$" };
  const rawLineEnds: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\r": "\\r", $: "\\$", "`": "\\`" };
  const printedAsBefore = (x: readonly SecretEntry[], escaping: Record<string, string>, escaped: RegExp) =>
    x.map((entry) => `${entry.name}=${/^[A-Za-z0-9_.\/:@+,-]*$/.test(entry.value) ? entry.value : `"${entry.value.replace(escaped, (c) => escaping[c]!)}"`}\n`).join("");

  test("parseDotenv reads what earlier exports wrote, exactly", () => {
    expect(parseDotenv('A="l1\\nl2\\t`id`\\$X"\nB="l1\nl2\t\\`id\\`\\$X"\n')).toEqual(e(["A", "l1\nl2\t`id`$X"], ["B", "l1\nl2\t`id`$X"]));
    fc.assert(
      fc.property(entries, (x) => {
        expect(parseDotenv(printedAsBefore(x, oldEscaping, /[\\"\n\r\t$]/g))).toEqual(x);
        expect(parseDotenv(printedAsBefore(x, rawLineEnds, /[\\"\r$`]/g))).toEqual(x);
      }),
      { numRuns: 500 },
    );
  });

  test("parseJsonSecrets(printJsonSecrets(x)) is x", () => {
    fc.assert(
      fc.property(entries, (x) => {
        expect(parseJsonSecrets(printJsonSecrets(x))).toEqual(x);
      }),
      { numRuns: 500 },
    );
  });

  test("parseDotenv on any text returns entries or throws a DotenvError with a line in range", () => {
    const lineText = fc.string({ unit: fc.constantFrom(..."AB_1 =\"'\\#\t\r\nxport".split("")), maxLength: 16 });
    const text = fc.array(lineText, { maxLength: 6 }).map((ls) => ls.join("\n"));
    fc.assert(
      fc.property(text, (t) => {
        try {
          for (const entry of parseDotenv(t)) expect(isSecretName(entry.name)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(DotenvError);
          const line = (err as DotenvError).line;
          expect(line).toBeGreaterThanOrEqual(1);
          expect(line).toBeLessThanOrEqual(t.split(/\r\n?|\n/).length);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("a shell sourcing an export (found in review: `set -a; . ./e.env` ran a command hidden in a value's backticks)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-dotenv-bash-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ran = join(dir, "ran");

  /** What bash holds in each variable once it has sourced an export of `values` (named V0, V1, ...), and what it wrote to standard error. */
  function sourcedByBash(values: readonly string[]): { values: string[]; stderr: string } {
    const file = join(dir, "e.env");
    writeFileSync(file, printDotenv(values.map((value, i) => ({ name: `V${i}`, value }))));
    const names = values.map((_, i) => `V${i}`);
    const script = 'set -a; . "$1"; shift; for n in "$@"; do printf "%s\\0" "${!n}"; done';
    const run = Bun.spawnSync(["bash", "-c", script, "bash", file, ...names], { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
    const out = run.stdout.toString();
    return { values: out === "" ? [] : out.slice(0, -1).split("\0"), stderr: run.stderr.toString() };
  }

  test("reads each value without control characters byte for byte, and runs nothing: backticks, $(...), backslashes, quotes", () => {
    const values = [
      "`echo PWNED >&2`",
      `\`touch ${ran}\``,
      `$(touch ${ran})`,
      "${HOME} $HOME $$ $1",
      "back\\slash\\",
      "two\\\\backslashes",
      'say "hi" \\" \\`',
      "it's",
      "it's `touch " + ran + "` $(touch " + ran + ")",
      "#not a comment",
      "!history !! ~ *.txt {a,b}",
      "plain-value_1.2/3:4@5+6,7",
      "",
    ];
    expect(sourcedByBash(values)).toEqual({ values, stderr: "" });
    expect(existsSync(ran)).toBe(false);
  });

  test("a line end is read as \\n or \\r there (two characters: `citadel run` passes such a value as it is); tabs and other control characters as they are", () => {
    const values = ["line one\nline two\n\n  indented\t tab\n", "crlf\r\n", "bell\u0007`touch " + ran + "`"];
    expect(sourcedByBash(values)).toEqual({ values: ["line one\\nline two\\n\\n  indented\t tab\\n", "crlf\\r\\n", "bell\u0007`touch " + ran + "`"], stderr: "" });
    expect(existsSync(ran)).toBe(false);
  });

  test("for any value a shell can hold (no NUL): runs nothing, and reads it exactly but for line ends", () => {
    const unit = fc.constantFrom(...Array.from("`$()\\\"'\n\r\t\u0001 #{}!;&|<>*?~=a1é🔑"));
    const value = fc.oneof(fc.string({ unit, maxLength: 24 }), fc.string({ unit: "grapheme", maxLength: 12 }).filter((v) => !v.includes("\0")));
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), (values) => {
        const lineEndsAsWritten = values.map((v) => v.replaceAll("\n", "\\n").replaceAll("\r", "\\r"));
        expect(sourcedByBash(values)).toEqual({ values: lineEndsAsWritten, stderr: "" });
      }),
      { numRuns: 150 },
    );
    expect(existsSync(ran)).toBe(false);
  });
});
