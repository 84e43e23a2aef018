/**
 * Asking for secrets: several questions in turn, from a terminal (raw mode, no echo) and from a
 * pipe. The terminal case runs under a real pseudo-terminal (util-linux `script`).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { editLine, NOTHING_TYPED, type TypedLine } from "../../../src/cli/prompt.ts";

const FIXTURE = join(import.meta.dir, "../../fixtures/ask-three.ts");
const VALUE_FIXTURE = join(import.meta.dir, "../../fixtures/ask-value.ts");

/** Runs a fixture with `typed` written to its standard input piece by piece; its last JSON line. */
async function run(typed: string[], terminal: boolean, fixture = FIXTURE): Promise<any> {
  const argv = terminal ? ["script", "-qfec", `${process.execPath} ${fixture}`, "/dev/null"] : [process.execPath, fixture];
  const proc = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  await Bun.sleep(terminal ? 400 : 50); // the first question is asked
  for (const piece of typed) {
    proc.stdin.write(piece);
    await proc.stdin.flush();
    await Bun.sleep(150);
  }
  if (!terminal) proc.stdin.end();
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const last = out.replace(/\r/g, "").trim().split("\n").at(-1)!;
  return JSON.parse(last);
}

describe("secretPrompter", () => {
  test.skipIf(!Bun.which("script"))("at a terminal, one question after another (found in review: the second failed, 'The operation was aborted')", async () => {
    // Enter is \r in raw mode; a backspace edits; what is typed after an Enter waits for the next question.
    const got = await run(["one\r", "tw\x7fwo\rthr", "ee\r"], true);
    expect(got).toEqual({ answers: ["one", "two", "three"], terminal: true });
  }, 15_000);

  test("from a pipe, a line each, kept as typed (spaces included), CRLF and a last line without newline too", async () => {
    const got = await run([" spaced \r\n", "sec", "ond\nthird"], false);
    expect(got).toEqual({ answers: [" spaced ", "second", "third"], terminal: false });
  }, 15_000);
});

describe("readValueAtTerminal", () => {
  test.skipIf(!Bun.which("script"))("a value typed and Enter: the line, as typed", async () => {
    expect(await run([" typed value \r"], true, VALUE_FIXTURE)).toEqual({ value: " typed value " });
  }, 15_000);

  test.skipIf(!Bun.which("script"))("a paste of several lines is refused, not cut to its first line (found in review: a PEM key stored truncated)", async () => {
    const got = await run(["-----BEGIN PRIVATE KEY-----\rMIIEvQIBADANBg\r-----END PRIVATE KEY-----\r"], true, VALUE_FIXTURE);
    expect(got).toEqual({ error: "a value of several lines was pasted, and a prompt reads one: pipe it on standard input instead" });
  }, 15_000);

  test.skipIf(!Bun.which("script"))("Ctrl-D on an empty line ends input, an error; elsewhere it is never part of the value (found in review: stored as \\x04)", async () => {
    expect(await run(["\x04"], true, VALUE_FIXTURE)).toEqual({ error: "Value: input ended (Ctrl-D)" });
    expect(await run(["ab\x04c\r"], true, VALUE_FIXTURE)).toEqual({ value: "abc" });
  }, 15_000);

  test.skipIf(!Bun.which("script"))("a prompt is shown on one line with its control characters escaped: an account's name cannot rewrite the screen (found in review)", async () => {
    const prompt = JSON.stringify("Password for x\u001b[2J\nforged@example.com: ");
    const proc = Bun.spawn(["script", "-qfec", `${process.execPath} ${VALUE_FIXTURE} '${prompt}'`, "/dev/null"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    await Bun.sleep(400);
    proc.stdin.write("typed\r");
    await proc.stdin.flush();
    const screen = (await new Response(proc.stdout).text()).replace(/\r/g, "");
    await proc.exited;
    expect(screen).toContain("Password for x\\u001b[2J\\nforged@example.com: ");
    expect(screen).not.toContain("\u001b[2J");
  }, 15_000);
});

describe("editLine: keys at a prompt in raw mode, edited as a terminal in canonical mode would", () => {
  /** The line `keys` make, typed in the pieces given (a key's bytes may arrive apart); null while no Enter came. */
  function typed(...pieces: string[]): { text: string; rest: string } | null {
    let line: TypedLine = NOTHING_TYPED;
    for (const [i, piece] of pieces.entries()) {
      const edited = editLine(line, piece, "Password");
      if (edited.done) return { text: edited.text, rest: [edited.rest, ...pieces.slice(i + 1)].join("") };
      line = edited.line;
    }
    return null;
  }
  const line = (...pieces: string[]) => typed(...pieces)?.text;

  test("Ctrl-U clears the line: a password typed, cleared and typed again is the second one (found in review: set with \\x15 and the first in it)", () => {
    expect(line("Tmp-first\u0015Real-second\r")).toBe("Real-second");
  });

  test("Backspace as DEL or as Ctrl-H erases one character, a whole code point (an emoji is not left half a surrogate pair)", () => {
    expect(line("abc\u007f\bd\r")).toBe("ad");
    expect(line("a\u{1F511}\u007f\r")).toBe("a");
    expect(line("\u00e9t\u00e9\b\r")).toBe("\u00e9t");
    expect(line("\u007f\u007fok\r")).toBe("ok"); // nothing to erase: nothing happens
  });

  test("Ctrl-W erases the last word and the spaces after it", () => {
    expect(line("correct horse\u0017battery\r")).toBe("correct battery");
    expect(line("one two  \u0017\r")).toBe("one ");
    expect(line("\u0017x\r")).toBe("x");
  });

  test("escape sequences (arrow keys, Delete, Home, Alt and a key) are dropped, also when their bytes arrive apart", () => {
    expect(line("pa\u001b[Dss\u001b[3~\u001b[1;5C\u001bOH\u001bx\r")).toBe("pass");
    expect(line("pa\u001b", "[", "A", "ss\r")).toBe("pass");
    // Esc alone, then Enter: the Enter still ends the line; Esc, then a backspace: it still erases.
    expect(line("ab\u001b", "\u007f\r")).toBe("a");
    expect(line("pass\u001b", "\r")).toBe("pass");
  });

  test("any other control character is refused, named, rather than kept unseen; a tab is kept as typed", () => {
    expect(() => typed("pass\u0014word\r")).toThrow("Password: Ctrl-T is not taken at a prompt (a control character, which would be kept unseen in what is typed): nothing was kept");
    expect(() => typed("\u0000")).toThrow("Password: Ctrl-@ is not taken");
    expect(() => typed("a\u0085")).toThrow("Password: U+0085 is not taken");
    expect(line("a\tb\r")).toBe("a\tb");
  });

  test("Enter ends the line (\\r, \\n or \\r\\n) and what follows it is kept for the next question; Ctrl-C cancels; Ctrl-D ends input only on an empty line", () => {
    expect(typed("one\r\ntwo")).toEqual({ text: "one", rest: "two" });
    expect(typed("one\ntwo\r")).toEqual({ text: "one", rest: "two\r" });
    expect(typed("not yet")).toBeNull();
    expect(() => typed("ab\u0003")).toThrow("cancelled");
    expect(() => typed("\u0004")).toThrow("Password: input ended (Ctrl-D)");
    expect(line("a\u0004b\r")).toBe("ab");
  });
});

describe("the terminal prompt edits what is typed", () => {
  test.skipIf(!Bun.which("script"))("Ctrl-U, Ctrl-H and an arrow key at a real terminal: the line as the user sees it (found in review)", async () => {
    expect(await run(["Tmp\u0015Real-\u001b[Dpassx\b\r"], true, VALUE_FIXTURE)).toEqual({ value: "Real-pass" });
  }, 15_000);
});
