/**
 * Reading a secret (a key share) from the terminal without echoing it, or from standard
 * input when it is not a terminal, so that it never lands in shell history.
 */
export async function readSecretLine(prompt: string): Promise<string> {
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
 * script may answer a prompt after reading what came before it). Unlike key shares, a password
 * is kept as typed: spaces at its ends are part of it.
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

async function readTerminalLine(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  let line = "";
  try {
    for await (const chunk of stdin) {
      for (const char of String(chunk)) {
        if (char === "\r" || char === "\n") return line;
        if (char === "\u0003") throw new Error("cancelled");
        if (char === "\u007f") line = line.slice(0, -1);
        else line += char;
      }
    }
    return line;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}
