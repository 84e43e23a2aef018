import { describe, expect, test } from "bun:test";
import { forStdout, printable } from "../../../src/cli/output.ts";

describe("printable", () => {
  test("control characters a server could put in a message are shown, not obeyed; text, line breaks and tabs stay", () => {
    expect(printable("ok: naïve ünïcödé ✓\n\tindented")).toBe("ok: naïve ünïcödé ✓\n\tindented");
    expect(printable("\u001b]0;pwned\u0007title")).toBe("\\u001b]0;pwned\\u0007title");
    expect(printable("line\roverwritten")).toBe("line\\u000doverwritten");
    expect(printable("\u009b31mred")).toBe("\\u009b31mred"); // the 8-bit CSI
    expect(printable("usr_a\u202egnp.exe")).toBe("usr_a\\u202egnp.exe"); // right-to-left override
  });
});

describe("forStdout (found in review: an audit reason someone chose reached the terminal raw)", () => {
  const withTerminal = (tty: boolean, fn: () => void) => {
    const before = Object.getOwnPropertyDescriptor(process.stdout, "isTTY");
    Object.defineProperty(process.stdout, "isTTY", { value: tty, configurable: true });
    try {
      fn();
    } finally {
      if (before) Object.defineProperty(process.stdout, "isTTY", before);
      else delete (process.stdout as { isTTY?: boolean }).isTTY;
    }
  };
  const hostile = "approved x\u001b]0;PWNED\u0007\u001b[2J\ttab\nline";

  test("on a terminal, control characters are shown as escapes; tabs and line breaks stay", () => {
    withTerminal(true, () => expect(forStdout(hostile)).toBe("approved x\\u001b]0;PWNED\\u0007\\u001b[2J\ttab\nline"));
  });

  test("piped or redirected, the data as it is", () => {
    withTerminal(false, () => expect(forStdout(hostile)).toBe(hostile));
  });
});
