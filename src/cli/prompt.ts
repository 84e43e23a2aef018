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
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  let line = "";
  try {
    for await (const chunk of stdin) {
      for (const char of String(chunk)) {
        if (char === "\r" || char === "\n") return line.trim();
        if (char === "\u0003") throw new Error("cancelled");
        if (char === "\u007f") line = line.slice(0, -1);
        else line += char;
      }
    }
    return line.trim();
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}
