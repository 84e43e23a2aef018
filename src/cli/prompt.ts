import { UsageError } from "./command-line.ts";
import { oneLine, printable } from "./output.ts";

/**
 * Reading a key share from the terminal without echoing it, or from standard input when it is
 * not a terminal, so that it never lands in shell history. Trimmed: a share is encoded text, and
 * spaces pasted around it are never part of it. For anything typed as a secret (a password, a
 * passphrase, a value), spaces are: secretPrompter keeps them.
 */
export async function readKeyShare(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const first = await linesOf(Bun.stdin.stream()).next();
    return first.done ? "" : first.value.trim();
  }
  return (await readTerminalLine(prompt)).trim();
}

/**
 * Asks for several secrets in turn (a password, then a new one): from the terminal without
 * echo, or, when standard input is not a terminal, one line of it each, read as it arrives (a
 * script may answer a prompt after reading what came before it). Unlike key shares, a password,
 * a passphrase or a value is kept as typed: spaces at its ends are part of it.
 */
export function secretPrompter(): (prompt: string) => Promise<string> {
  let lines: AsyncIterator<string> | null = null;
  return async (prompt) => {
    if (process.stdin.isTTY) return readTerminalLine(prompt);
    lines ??= linesOf(Bun.stdin.stream());
    const next = await lines.next();
    if (next.done) throw new Error(`${prompt.replace(/:\s*$/, "")}: standard input has no more lines`);
    return next.value;
  };
}

/**
 * A secret's value, typed or pasted at the terminal without echo: one line. Text that comes
 * with its Enter (a paste of several lines: a PEM key) is refused rather than stored cut at its
 * first line; such a value is piped on standard input, where it is read whole.
 */
export function readValueAtTerminal(prompt: string): Promise<string> {
  return readTerminalLine(prompt, { oneLineOnly: true });
}

/**
 * The lines of a stream as they arrive, without their line ends. One longer than any answer
 * (MOST_LINE_CHARACTERS) is refused once past that, not gathered on (found in review:
 * `cat /dev/zero | citadel share open` grew without end, waiting for a newline).
 */
async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
      yield withinLineBound(buffered.slice(0, end).replace(/\r$/, ""));
      buffered = buffered.slice(end + 1);
    }
    withinLineBound(buffered.replace(/\r$/, ""));
  }
  if (buffered !== "") yield buffered.replace(/\r$/, "");
}

/** The longest line taken from standard input as an answer (a password, a link, a key share): far longer than any. */
const MOST_LINE_CHARACTERS = 65_536;

function withinLineBound(line: string): string {
  if (line.length > MOST_LINE_CHARACTERS) throw new UsageError(`a line of standard input is longer than ${MOST_LINE_CHARACTERS} characters, more than any answer: nothing was read further`);
  return line;
}

/** What was typed after an Enter, ahead of the next question: kept for it, not dropped. */
let typedAhead = "";
const terminalDecoder = new TextDecoder();

/** Ctrl-D: at the start of an empty line, the end of input (as a terminal in canonical mode has it); never part of what is typed. */
const END_OF_INPUT = "\u0004";
const CANCEL = "\u0003"; // Ctrl-C
const KILL_LINE = "\u0015"; // Ctrl-U
const ERASE_WORD = "\u0017"; // Ctrl-W
const ESCAPE = "\u001b";
/** Backspace, as terminals send it: DEL, or Ctrl-H. */
const ERASE = new Set(["\u007f", "\b"]);

/**
 * A line being typed at a prompt: its text, and where an escape sequence (an arrow key: ESC [ A)
 * begun in what came so far stands — "esc" after ESC, "csi" after ESC [, "ss3" after ESC O.
 */
export interface TypedLine {
  text: string;
  escape: "" | "esc" | "csi" | "ss3";
}

export const NOTHING_TYPED: TypedLine = { text: "", escape: "" };

/** What `editLine` made of some keys: the line so far, or the line ended by Enter and what came after it. */
export type Edited = { done: false; line: TypedLine } | { done: true; text: string; rest: string };

/**
 * Keys typed at a prompt in raw mode, applied to the line as a terminal in canonical mode would:
 * Backspace (DEL or Ctrl-H) erases one character (a whole code point), Ctrl-U the line, Ctrl-W
 * the last word; Enter ends it. Raw mode leaves all that to us: a password typed, cleared with
 * Ctrl-U and typed again was set with the Ctrl-U and the first attempt in it (found in review).
 * Escape sequences (arrow keys, Home, Delete) are dropped: with nothing echoed, no cursor moves.
 * Any other control character is refused (an error naming it) rather than kept unseen in a secret;
 * a tab is kept, as typed. Ctrl-C cancels; Ctrl-D ends the input on an empty line, else is ignored.
 * `what` names the question in errors.
 */
export function editLine(line: TypedLine, keys: string, what: string): Edited {
  let { text, escape } = line;
  for (let i = 0; i < keys.length; i++) {
    const char = keys[i]!;
    if (escape !== "") {
      const after = escapeAfter(escape, char);
      escape = after;
      if (after !== "" || !isControl(char)) continue; // part of the sequence, or its end
      // A control character cuts a sequence short (Esc, then Enter): it is a key of its own.
    }
    if (char === "\r" || char === "\n") return { done: true, text, rest: keys.slice(char === "\r" && keys[i + 1] === "\n" ? i + 2 : i + 1) };
    if (char === CANCEL) throw new Error("cancelled");
    if (char === END_OF_INPUT) {
      if (text === "") throw new Error(`${what}: input ended (Ctrl-D)`);
      continue; // mid-line, a terminal would send the line so far without an Enter: here only Enter ends it
    }
    if (ERASE.has(char)) text = withoutLastCodePoint(text);
    else if (char === KILL_LINE) text = "";
    else if (char === ERASE_WORD) text = withoutLastWord(text);
    else if (char === ESCAPE) escape = "esc";
    else if (char !== "\t" && isControl(char)) throw new Error(`${what}: ${keyName(char)} is not taken at a prompt (a control character, which would be kept unseen in what is typed): nothing was kept`);
    else text += char;
  }
  return { done: false, line: { text, escape } };
}

/** Where an escape sequence stands after `char`: "" once it ended (or was cut short). */
function escapeAfter(escape: TypedLine["escape"], char: string): TypedLine["escape"] {
  const code = char.charCodeAt(0);
  if (escape === "esc") return char === "[" ? "csi" : char === "O" ? "ss3" : ""; // else Alt and a key: both dropped
  // CSI (ECMA-48 §5.4): parameter and intermediate bytes (0x20-0x3F), then one final byte (0x40-0x7E).
  if (escape === "csi") return code >= 0x20 && code <= 0x3f ? "csi" : "";
  return ""; // SS3: one final byte
}

/** C0 and C1 control characters and DEL. */
const isControl = (char: string): boolean => /[\u0000-\u001f\u007f-\u009f]/.test(char);

/** Ctrl-T for U+0014; U+0085 for a C1 control. */
function keyName(char: string): string {
  const code = char.charCodeAt(0);
  return code < 0x20 ? `Ctrl-${String.fromCharCode(code + 0x40)}` : `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** The text without its last code point: never half a surrogate pair (an emoji). */
function withoutLastCodePoint(text: string): string {
  const last = text.codePointAt(text.length - 2);
  return text.slice(0, last !== undefined && last > 0xffff ? -2 : -1);
}

/** The text without its last word and the spaces after it, as Ctrl-W erases it (stty werase). */
function withoutLastWord(text: string): string {
  return text.replace(/\S*\s*$/u, "");
}

/**
 * One line from the terminal in raw mode (no echo), edited as editLine says. A listener, not
 * `for await` over stdin: leaving such a loop destroys the stream, and the next question (a new
 * password after the current one) failed with "The operation was aborted" while what was typed
 * then echoed. `oneLineOnly`: text arriving with the Enter is a paste of several lines, refused
 * (else it is kept for the next question: typed ahead of it).
 */
function readTerminalLine(prompt: string, { oneLineOnly = false } = {}): Promise<string> {
  const stdin = process.stdin;
  // A prompt may name what a server said (the login's account): shown, never obeyed.
  process.stderr.write(printable(oneLine(prompt)));
  stdin.setRawMode(true);
  const what = prompt.replace(/:\s*$/, "");
  return new Promise((resolve, reject) => {
    let line = NOTHING_TYPED;
    /** Takes typed keys; the line once it is complete (the rest is kept for the next question). */
    const take = (keys: string): string | null => {
      const edited = editLine(line, keys, what);
      if (!edited.done) {
        line = edited.line;
        return null;
      }
      if (oneLineOnly && edited.rest !== "") throw new Error("a value of several lines was pasted, and a prompt reads one: pipe it on standard input instead");
      typedAhead = edited.rest;
      return edited.text;
    };
    const finish = (result: { line: string } | { error: unknown }) => {
      stdin.removeListener("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if ("line" in result) resolve(result.line);
      else reject(result.error);
    };
    const onData = (chunk: Buffer | string) => {
      try {
        const typed = take(typeof chunk === "string" ? chunk : terminalDecoder.decode(chunk, { stream: true }));
        if (typed !== null) finish({ line: typed });
      } catch (error) {
        finish({ error });
      }
    };
    const ahead = typedAhead;
    typedAhead = "";
    try {
      const typed = take(ahead);
      if (typed !== null) return finish({ line: typed });
    } catch (error) {
      return finish({ error });
    }
    stdin.on("data", onData);
    stdin.resume();
  });
}
