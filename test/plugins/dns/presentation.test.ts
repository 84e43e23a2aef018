import { describe, expect, test } from "bun:test";
import { parseTtl, splitTokens, tokenize, TokenError } from "../../../plugins/dns/presentation.ts";

describe("parseTtl", () => {
  test.each([
    ["0", 0],
    ["3600", 3600],
    ["1h", 3600],
    ["1H30m", 5400],
    ["1w2d3h4m5s", 788645],
    ["2147483647", 2147483647],
    ["2147483648", null],
    ["1h1w", null], // units in descending order only
    ["1y", null],
    ["1h30", null],
    ["", null],
    ["-1", null],
  ] as const)("%p → %p", (text, seconds) => {
    expect(parseTtl(text)).toBe(seconds);
  });
});

describe("tokenize", () => {
  test("tokens keep quotes and escapes raw; comments and parentheses are dropped", () => {
    expect(splitTokens('a "b c;" \\; d\\ e (f ; g\n h) "x\\"y"')).toEqual(['a', '"b c;"', "\\;", "d\\ e", "f", "h", '"x\\"y"']);
  });

  test("logical lines know their first line and whether the owner is omitted", () => {
    expect(tokenize("a 1\n\n b ( 2\n 3 )\nc")).toEqual([
      { line: 1, ownerOmitted: false, tokens: ["a", "1"] },
      { line: 3, ownerOmitted: true, tokens: ["b", "2", "3"] },
      { line: 5, ownerOmitted: false, tokens: ["c"] },
    ]);
  });

  test.each([
    ["a (", 1, '"(" is not closed'],
    ["a\nb )", 2, '")" without "("'],
    ['a "b\n\n', 3, "not closed"],
    ["a \\", 1, "backslash"],
  ] as const)("%p is refused at line %p", (text, line, message) => {
    expect(() => tokenize(text)).toThrow(TokenError);
    expect(() => tokenize(text)).toThrow(message);
    try {
      tokenize(text);
    } catch (e) {
      expect((e as TokenError).line).toBe(line);
    }
  });
});
