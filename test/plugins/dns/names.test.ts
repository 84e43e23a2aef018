import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  isSubdomain,
  lowerName,
  nameEquals,
  NameError,
  nameFromWire,
  nameToRelativeText,
  nameToText,
  nameToWire,
  parseName,
  type Name,
} from "../../../plugins/dns/names.ts";
import { name as nameArb } from "./arbitraries.ts";

const enc = new TextEncoder();
/** A name from plain ASCII labels, to keep tables short. */
const n = (...labels: string[]): Name => labels.map((l) => enc.encode(l));
const origin = n("example", "com");
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("parseName", () => {
  test.each<[string, Name | null, Name]>([
    ["example.com.", null, n("example", "com")],
    [".", null, []],
    ["@", origin, origin],
    ["www", origin, n("www", "example", "com")],
    ["a.b", origin, n("a", "b", "example", "com")],
    ["www.other.", origin, n("www", "other")],
    ["a\\.b.c.", null, n("a.b", "c")],
    ["\\065\\000z.", null, [Uint8Array.of(65, 0, 0x7a)]],
    ["\\\\.", null, n("\\")],
    ["\\@.", null, n("@")],
    ["a\\ b.", null, n("a b")],
    ["\\..", null, n(".")],
    ["x\\.", origin, n("x.", "example", "com")],
    ["WWW.Example.COM.", null, n("WWW", "Example", "COM")],
    // A label written in Unicode is its A-label, the form resolvers ask for (found in review);
    // escaped octets stay as written (RFC 1035).
    ["é.", null, n("xn--9ca")],
    ["Bücher.Example.", null, n("xn--bcher-kva", "Example")],
    ["www.bücher", origin, n("www", "xn--bcher-kva", "example", "com")],
    ["*.zoë.", null, n("*", "xn--zo-ija")],
    ["b\\195\\188cher.", null, [Uint8Array.of(0x62, 195, 188, 0x63, 0x68, 0x65, 0x72)]],
  ])("%p (origin %p)", (text, o, expected) => {
    expect(parseName(text, o)).toEqual(expected);
  });

  test.each<[string, Name | null, RegExp]>([
    ["", origin, /empty/],
    ["a..b.", null, /empty label/],
    [".a.", null, /empty label/],
    ["www", null, /relative/],
    ["@", null, /origin/],
    ["\\256.", null, /not an octet/],
    ["\\12.", null, /three digits/],
    ["a\\", null, /backslash/],
    ["a b.", null, /unescaped/],
    ["bü\\.x.", null, /mixes escapes and Unicode in the label "bü.x": write it in its xn-- form/],
    ["ü/evil.", null, /"ü\/evil" in "ü\/evil." is not an internationalized label \(IDNA\): write it in its xn-- form/],
    ["_ü.", null, /not an internationalized label/],
    ["\u00ad.", null, /not an internationalized label/],
    ["xn--ü.", null, /not an internationalized label/],
    [`${"ü".repeat(60)}.`, null, /63/], // its A-label is 66 octets
    ['a"b.', null, /unescaped/],
    [`${"a".repeat(64)}.`, null, /63/],
    [`${"a".repeat(63)}.`.repeat(4), null, /255/],
    [`${"a".repeat(63)}.`.repeat(3) + "a".repeat(62), n(), /255/],
  ])("%p is refused", (text, o, message) => {
    expect(() => parseName(text, o)).toThrow(NameError);
    expect(() => parseName(text, o)).toThrow(message);
  });

  test("the longest name, 255 octets on the wire, is accepted", () => {
    const text = `${"a".repeat(63)}.`.repeat(3) + `${"a".repeat(61)}.`;
    expect(nameToWire(parseName(text, null)).length).toBe(255);
  });
});

describe("nameToText", () => {
  test.each<[Name, string]>([
    [[], "."],
    [n("www", "example", "com"), "www.example.com."],
    [n("a.b", "c"), "a\\.b.c."],
    [n('q"(x);@$\\'), 'q\\"\\(x\\)\\;\\@\\$\\\\.'],
    [[Uint8Array.of(0, 32, 127, 200)], "\\000\\032\\127\\200."],
  ])("%p → %p", (name, text) => {
    expect(nameToText(name)).toBe(text);
  });

  test("relative printing: @ for the origin, labels inside it, absolute outside", () => {
    expect(nameToRelativeText(origin, origin)).toBe("@");
    expect(nameToRelativeText(n("a.b", "WWW", "Example", "com"), origin)).toBe("a\\.b.WWW");
    expect(nameToRelativeText(n("other", "org"), origin)).toBe("other.org.");
  });

  test("property: parseName(nameToText(n)) = n, absolute and relative", () => {
    fc.assert(
      fc.property(nameArb(5), (name) => {
        expect(parseName(nameToText(name), null)).toEqual(name);
        const under = [...name.slice(0, 3), ...origin];
        expect(parseName(nameToRelativeText(under, origin), origin)).toEqual(under);
      }),
    );
  });
});

describe("wire form", () => {
  test("known answer", () => {
    expect(hex(nameToWire(n("www", "example", "com")))).toBe("03777777076578616d706c6503636f6d00");
    expect(hex(nameToWire([]))).toBe("00");
  });

  test("property: nameFromWire(nameToWire(n)) = n", () => {
    fc.assert(
      fc.property(nameArb(5), (name) => {
        const wire = nameToWire(name);
        expect(nameFromWire(wire, 0)).toEqual({ name, next: wire.length });
      }),
    );
  });

  test("truncated names and compression pointers are refused", () => {
    expect(() => nameFromWire(Uint8Array.of(3, 0x61), 0)).toThrow(NameError);
    expect(() => nameFromWire(Uint8Array.of(1, 0x61), 0)).toThrow(/truncated/);
    expect(() => nameFromWire(Uint8Array.of(0xc0, 0x0c), 0)).toThrow(/compressed/);
  });
});

describe("comparison", () => {
  test("equality folds ASCII case only", () => {
    expect(nameEquals(n("WWW", "Example", "COM"), n("www", "example", "com"))).toBe(true);
    expect(nameEquals(n("é"), [enc.encode("É")])).toBe(false);
    expect(nameEquals([Uint8Array.of(0xc0)], [Uint8Array.of(0xe0)])).toBe(false); // not Latin-1 folding
    expect(nameEquals(n("a"), n("a", "b"))).toBe(false);
    expect(nameEquals(n("a.b"), n("a", "b"))).toBe(false);
  });

  test("lowerName lowers ASCII letters only", () => {
    expect(lowerName([Uint8Array.of(0x41, 0x5a, 0x5b, 0xc0)])).toEqual([Uint8Array.of(0x61, 0x7a, 0x5b, 0xc0)]);
  });

  test.each([
    ["www.Example.com.", "example.com.", true],
    ["example.com.", "example.com.", true],
    ["com.", "example.com.", false],
    ["wwwexample.com.", "example.com.", false],
    ["a.", ".", true],
  ] as const)("isSubdomain(%s, %s) = %p", (name, zone, expected) => {
    expect(isSubdomain(parseName(name, null), parseName(zone, null))).toBe(expected);
  });

  test("property: a name equals its lowered form and lies within its parent", () => {
    fc.assert(
      fc.property(nameArb(5), (name) => {
        expect(nameEquals(name, lowerName(name))).toBe(true);
        expect(isSubdomain(name, name.slice(1))).toBe(true);
      }),
    );
  });
});
