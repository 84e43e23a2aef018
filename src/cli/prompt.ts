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
    const text = await new Response(Bun.stdin.stream()).text();
    return text.split("\n", 1)[0]!.trim();
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

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
      yield buffered.slice(0, end).replace(/\r$/, "");
      buffered = buffered.slice(end + 1);
    }
  }
  if (buffered !== "") yield buffered.replace(/\r$/, "");
}

/** What was typed after an Enter, ahead of the next question: kept for it, not dropped. */
let typedAhead = "";
const terminalDecoder = new TextDecoder();

/** Ctrl-D: at the start of an empty line, the end of input (as a terminal in canonical mode has it); never part of what is typed. */
const END_OF_INPUT = "\u0004";

/**
 * One line from the terminal in raw mode (no echo). A listener, not `for await` over stdin:
 * leaving such a loop destroys the stream, and the next question (a new password after the
 * current one) failed with "The operation was aborted" while what was typed then echoed.
 * `oneLineOnly`: text arriving with the Enter is a paste of several lines, refused (else it is
 * kept for the next question: typed ahead of it).
 */
function readTerminalLine(prompt: string, { oneLineOnly = false } = {}): Promise<string> {
  const stdin = process.stdin;
  // A prompt may name what a server said (the login's account): shown, never obeyed.
  process.stderr.write(printable(oneLine(prompt)));
  stdin.setRawMode(true);
  return new Promise((resolve, reject) => {
    let line = "";
    /** Takes typed text; true once a line is complete (the rest is kept for the next question). */
    const take = (text: string): boolean => {
      for (let i = 0; i < text.length; i++) {
        const char = text[i]!;
        if (char === "\r" || char === "\n") {
          const rest = text.slice(char === "\r" && text[i + 1] === "\n" ? i + 2 : i + 1);
          if (oneLineOnly && rest !== "") throw new Error("a value of several lines was pasted, and a prompt reads one: pipe it on standard input instead");
          typedAhead = rest;
          return true;
        }
        if (char === "\u0003") throw new Error("cancelled");
        if (char === END_OF_INPUT) {
          if (line === "") throw new Error(`${prompt.replace(/:\s*$/, "")}: input ended (Ctrl-D)`);
          continue; // mid-line, a terminal would send the line so far without an Enter: here only Enter ends it
        }
        if (char === "\u007f") line = line.slice(0, -1);
        else line += char;
      }
      return false;
    };
    const finish = (error?: unknown) => {
      stdin.removeListener("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (error === undefined) resolve(line);
      else reject(error);
    };
    const onData = (chunk: Buffer | string) => {
      try {
        if (take(typeof chunk === "string" ? chunk : terminalDecoder.decode(chunk, { stream: true }))) finish();
      } catch (error) {
        finish(error);
      }
    };
    const ahead = typedAhead;
    typedAhead = "";
    try {
      if (take(ahead)) return finish();
    } catch (error) {
      return finish(error);
    }
    stdin.on("data", onData);
    stdin.resume();
  });
}
