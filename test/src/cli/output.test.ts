import { describe, expect, test } from "bun:test";
import { printable } from "../../../src/cli/output.ts";

describe("printable", () => {
  test("control characters a server could put in a message are shown, not obeyed; text, line breaks and tabs stay", () => {
    expect(printable("ok: naïve ünïcödé ✓\n\tindented")).toBe("ok: naïve ünïcödé ✓\n\tindented");
    expect(printable("\u001b]0;pwned\u0007title")).toBe("\\u001b]0;pwned\\u0007title");
    expect(printable("line\roverwritten")).toBe("line\\u000doverwritten");
    expect(printable("\u009b31mred")).toBe("\\u009b31mred"); // the 8-bit CSI
    expect(printable("usr_a\u202egnp.exe")).toBe("usr_a\\u202egnp.exe"); // right-to-left override
  });
});
