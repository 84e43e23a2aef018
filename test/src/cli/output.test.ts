import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiError } from "../../../src/cli/api-client.ts";
import { UsageError } from "../../../src/cli/command-line.ts";
import { fileOrStdinText, forStdout, integerOption, needArgs, oneLine, organizationOf, printable, table } from "../../../src/cli/output.ts";
import type { ApiClient, CommandContext } from "../../../src/plugin.ts";

describe("printable", () => {
  test("control characters a server could put in a message are shown, not obeyed; text, line breaks and tabs stay", () => {
    expect(printable("ok: naïve ünïcödé ✓\n\tindented")).toBe("ok: naïve ünïcödé ✓\n\tindented");
    expect(printable("\u001b]0;pwned\u0007title")).toBe("\\u001b]0;pwned\\u0007title");
    expect(printable("line\roverwritten")).toBe("line\\u000doverwritten");
    expect(printable("\u009b31mred")).toBe("\\u009b31mred"); // the 8-bit CSI
    expect(printable("usr_a\u202egnp.exe")).toBe("usr_a\\u202egnp.exe"); // right-to-left override
    expect(printable("refused\u2028citadel: ok\u2029")).toBe("refused\\u2028citadel: ok\\u2029"); // line and paragraph separators (found in review)
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

describe("shared argument and flag checks are usage errors (found in review: they exited 1 without usage)", () => {
  const ctx = (args: string[], options: Record<string, string | boolean | undefined> = {}) => ({ args, options }) as unknown as CommandContext;

  test("needArgs: a missing argument", () => {
    expect(() => needArgs(ctx([]), 1, "citadel x <name>")).toThrow(UsageError);
    expect(() => needArgs(ctx([]), 1, "citadel x <name>")).toThrow("missing argument; usage: citadel x <name>");
    expect(() => needArgs(ctx(["a"]), 1, "citadel x <name>")).not.toThrow();
  });

  test("integerOption: the range is named, the maximum included, and nothing too large for exact arithmetic slips through", () => {
    expect(integerOption(ctx([], { ttl: "24" }), "ttl", 1)).toBe(24);
    expect(integerOption(ctx([]), "ttl", 1)).toBeUndefined();
    for (const bad of ["0", "-1", "1.5", "1e3", " 1", "soon", "99999999999", "9007199254740993", "1".repeat(400)]) {
      expect(() => integerOption(ctx([], { ttl: bad }), "ttl", 1)).toThrow(UsageError);
      expect(() => integerOption(ctx([], { ttl: bad }), "ttl", 1)).toThrow("--ttl: a whole number from 1 to 2147483647");
    }
    expect(() => integerOption(ctx([], { views: "101" }), "views", 1, 100)).toThrow("--views: a whole number from 1 to 100");
    expect(integerOption(ctx([], { views: "100" }), "views", 1, 100)).toBe(100);
  });
});

describe("table (found in review: a name with a line break forged a row)", () => {
  test("each row on one line: line breaks and tabs in a cell are shown as \\n, \\r and \\t, and counted in its width", () => {
    const forged = "Eve\nusr_FAKE  boss@example.com  Boss  yes";
    expect(table([["ID", "NAME"], ["usr_1", forged], ["usr_2", "a\tb\rc"]])).toBe(["ID     NAME", "usr_1  Eve\\nusr_FAKE  boss@example.com  Boss  yes", "usr_2  a\\tb\\rc"].join("\n"));
    expect(oneLine("plain text, ünïcödé")).toBe("plain text, ünïcödé");
  });

  test("the other characters that end a line somewhere — U+2028, U+2029, NEL, vertical tab, form feed — are shown as \\u escapes (found in review)", () => {
    const forged = "Eve\u2028usr_FAKE\u2029boss\u0085x\u000by\u000cz";
    expect(oneLine(forged)).toBe("Eve\\u2028usr_FAKE\\u2029boss\\u0085x\\u000by\\u000cz");
    expect(table([["NAME"], [forged]]).split(/\r\n|[\n\r\u000b\u000c\u0085\u2028\u2029]/)).toEqual(["NAME", "Eve\\u2028usr_FAKE\\u2029boss\\u0085x\\u000by\\u000cz"]);
  });
});

describe("organizationOf without --org (found in review: a second request after a refusal had every run of a CI job refused once, and rate limited after a dozen)", () => {
  test("one request, GET /v1/iam/orgs; refused as out of scope, a usage error naming --org, and nothing more is asked", async () => {
    const find = async (refuse: boolean) => {
      const asked: string[] = [];
      const api = {
        async request(_method: string, path: string) {
          asked.push(path);
          if (refuse) throw new ApiError("the token lacks the scope iam:read", 403, "insufficient_scope");
          return { items: [{ id: "org_listed", name: "a" }] };
        },
      } as unknown as ApiClient;
      const found = await organizationOf({ options: {}, env: {} } as unknown as CommandContext, api).catch((error: Error) => error);
      return { found, asked };
    };
    expect(await find(false)).toEqual({ found: "org_listed", asked: ["/v1/iam/orgs"] });
    const refused = await find(true);
    expect(refused.asked).toEqual(["/v1/iam/orgs"]);
    expect(refused.found).toBeInstanceOf(UsageError);
    expect((refused.found as Error).message).toBe("this token may not list your organizations (the token lacks the scope iam:read): name the organization with --org ORG_ID");
  });
});

describe("fileOrStdinText", () => {
  test("a file larger than any server takes in a request is refused once past 64 MiB, a device without end too (found in review: read whole, however large; standard input: stdin-bounds.test.ts)", async () => {
    await expect(fileOrStdinText("/dev/zero", "--set /dev/zero")).rejects.toEqual(
      new UsageError("--set /dev/zero: larger than 64 MiB, the most a Citadel server takes in one request (http.body_limit_bytes at its most): nothing was read further or sent"),
    );
  });

  test("a file that cannot be read is a usage error naming it and why", async () => {
    await expect(fileOrStdinText("/nonexistent/zone.txt")).rejects.toEqual(new UsageError("/nonexistent/zone.txt: no such file"));
  });

  test("a file that is not UTF-8 is a usage error, not text with U+FFFD where it held something else (found in review: a Latin-1 zone file's é was stored replaced); a UTF-8 one is read as it is", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-text-"));
    try {
      writeFileSync(join(dir, "latin1.zone"), Buffer.from('t 300 IN TXT "caf\xe9"\n', "latin1"));
      writeFileSync(join(dir, "utf8.zone"), '\ufefft 300 IN TXT "café"\n');
      await expect(fileOrStdinText(join(dir, "latin1.zone"), "zone.txt")).rejects.toEqual(new UsageError("zone.txt is not UTF-8 text: save it as UTF-8"));
      expect(await fileOrStdinText(join(dir, "utf8.zone"))).toBe('\ufefft 300 IN TXT "café"\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
