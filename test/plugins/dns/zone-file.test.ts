import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { nameToText, parseName, type Name } from "../../../plugins/dns/names.ts";
import { rdataToText, typeToText } from "../../../plugins/dns/rdata.ts";
import { parseZoneFile, printZoneFile, ZoneFileError, type ZoneRecord } from "../../../plugins/dns/zone-file.ts";
import { anyRdata, label } from "./arbitraries.ts";

const origin = parseName("example.com.", null);

/** Records as readable one-liners: `owner ttl TYPE rdata @line`. */
const show = (records: ZoneRecord[]) =>
  records.map((r) => `${nameToText(r.name)} ${r.ttl} ${typeToText(r.type)} ${rdataToText(r.type, r.rdata)} @${r.line}`);
const parse = (text: string, defaultTtl?: number) => show(parseZoneFile(text, { origin, defaultTtl }));

describe("parseZoneFile: tricky inputs", () => {
  test.each<[string, string, string[]]>([
    [
      "parentheses across lines with comments inside",
      `@ 3600 IN SOA ns1 hostmaster ( ; primary and mailbox
            2024010101 ; serial
            1h         ; refresh (the ; in a comment is fine)
            15m 1w
            1d )
www A 192.0.2.1`,
      [
        "example.com. 3600 SOA ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 86400 @1",
        "www.example.com. 7 A 192.0.2.1 @6", // no $TTL: the default from the options
      ],
    ],
    [
      "a quoted ; is data, an unquoted one a comment",
      `$TTL 60\n@ TXT "a;b" "c d" ; comment "not a string"`,
      ['example.com. 60 TXT "a;b" "c d" @2'],
    ],
    [
      "escaped dot and \\DDD in owners",
      `$TTL 60\na\\.b A 192.0.2.1\n\\065\\032x.other. A 192.0.2.2\n\\@ A 192.0.2.3`,
      [
        "a\\.b.example.com. 60 A 192.0.2.1 @2",
        "A\\032x.other. 60 A 192.0.2.2 @3",
        "\\@.example.com. 60 A 192.0.2.3 @4",
      ],
    ],
    [
      "$ORIGIN changes mid-file, relative $ORIGIN too",
      `$TTL 60\nwww A 192.0.2.1\n$ORIGIN sub\nwww A 192.0.2.2\n$ORIGIN other.org.\n@ MX 10 mail`,
      [
        "www.example.com. 60 A 192.0.2.1 @2",
        "www.sub.example.com. 60 A 192.0.2.2 @4",
        "other.org. 60 MX 10 mail.other.org. @6",
      ],
    ],
    [
      "an omitted owner is the previous owner",
      `$TTL 60\nwww A 192.0.2.1\n  AAAA 2001:db8::1\n\tTXT "x"\nmail A 192.0.2.9`,
      [
        "www.example.com. 60 A 192.0.2.1 @2",
        "www.example.com. 60 AAAA 2001:db8::1 @3",
        'www.example.com. 60 TXT "x" @4',
        "mail.example.com. 60 A 192.0.2.9 @5",
      ],
    ],
    [
      "TTL and class in either order, each optional",
      `a 300 IN A 192.0.2.1\nb IN 300 A 192.0.2.2\nc 300 A 192.0.2.3\nd in a 192.0.2.4\ne CLASS1 1 A 192.0.2.5`,
      [
        "a.example.com. 300 A 192.0.2.1 @1",
        "b.example.com. 300 A 192.0.2.2 @2",
        "c.example.com. 300 A 192.0.2.3 @3",
        "d.example.com. 7 A 192.0.2.4 @4",
        "e.example.com. 1 A 192.0.2.5 @5",
      ],
    ],
    [
      "$TTL with units, later $TTL applies to later lines",
      `$TTL 1w2d3h4m5s\na A 192.0.2.1\n$ttl 1H\nb A 192.0.2.2\nc 2d A 192.0.2.3`,
      ["a.example.com. 788645 A 192.0.2.1 @2", "b.example.com. 3600 A 192.0.2.2 @4", "c.example.com. 172800 A 192.0.2.3 @5"],
    ],
    [
      "CRLF line ends, blank and comment-only lines, names that look like types",
      `$TTL 60\r\n\r\n; just a comment\r\n   ; indented comment\r\nA A 192.0.2.1\r\nmx MX 0 .\r\n`,
      ["A.example.com. 60 A 192.0.2.1 @5", "mx.example.com. 60 MX 0 . @6"],
    ],
    [
      "quoted strings spanning lines inside parentheses, escapes kept",
      `$TTL 60\n@ TXT ( "first"\n  "sec\\"ond" "\\059" )\nnext TXT x`,
      ['example.com. 60 TXT "first" "sec\\"ond" ";" @2', 'next.example.com. 60 TXT "x" @4'],
    ],
    [
      "generic type and data",
      `$TTL 60\n@ TYPE999 \\# 2 abcd\n@ type1 \\# 4 c0000201`,
      ["example.com. 60 TYPE999 \\# 2 ABCD @2", "example.com. 60 A 192.0.2.1 @3"],
    ],
  ])("%s", (_, text, expected) => {
    expect(parse(text, 7)).toEqual(expected);
  });
});

describe("parseZoneFile: bad lines", () => {
  test.each<[string, string, number, string]>([
    ["$INCLUDE is refused", "$TTL 60\n$INCLUDE /etc/passwd", 2, "$INCLUDE is not supported"],
    ["unknown directive", "$GENERATE 1-2 a A 1.2.3.4", 1, "unknown directive"],
    ["$TTL without a value", "$TTL", 1, "$TTL needs a value"],
    ["bad $TTL", "$TTL 1y", 1, '"1y" is not a TTL'],
    ["TTL above 2^31-1", "a 2147483648 A 192.0.2.1", 1, "is not a TTL"],
    ["class CH", "$TTL 60\nok A 192.0.2.1\nversion CH TXT x", 3, "class CH is not supported"],
    ["class HS", "a HS A 192.0.2.1", 1, "class HS is not supported"],
    ["unknown type", "$TTL 60\na\tFOO 1", 2, '"FOO" is not a record type'],
    ["no type", "$TTL 60\na 60 IN", 2, "the record type is missing"],
    ["no TTL anywhere", "a A 192.0.2.1", 1, "no TTL is given"],
    ["bad rdata names the type", "$TTL 60\n\na A 192.0.2.300", 3, "A: not an IPv4 address"],
    ["bad owner", "$TTL 60\na..b A 192.0.2.1", 2, "empty label"],
    ["omitted owner first", "$TTL 60\n  A 192.0.2.1", 2, "no record comes before"],
    ["unclosed parenthesis names its line", "$TTL 60\na TXT ( x\ny\n", 2, '"(" is not closed'],
    ["stray )", "$TTL 60\na TXT x )", 2, '")" without "("'],
    ["unclosed quote", '$TTL 60\na TXT "x\n', 3, "a quoted string is not closed"],
    ["error after a multi-line record", "$TTL 60\n@ TXT ( a\n b )\nc MX x y", 4, "MX: the preference must be 0–65535"],
  ])("%s", (_, text, line, message) => {
    let error: unknown;
    let result: unknown = "nothing thrown";
    try {
      result = parseZoneFile(text, { origin });
    } catch (e) {
      error = e;
    }
    expect(result).toBe("nothing thrown"); // never partial results
    expect(error).toBeInstanceOf(ZoneFileError);
    expect((error as ZoneFileError).line).toBe(line);
    expect((error as ZoneFileError).message).toStartWith(`line ${line}: `);
    expect((error as ZoneFileError).message).toContain(message);
  });
});

describe("printZoneFile", () => {
  test("known output: $ORIGIN, @ for the apex, relative inside, absolute outside", () => {
    const records = parseZoneFile(
      `$TTL 60\n@ SOA ns1 hostmaster 1 2 3 4 5\nwww.Sub A 192.0.2.1\nx.other. TXT "a b"\n\\$x TYPE999 \\# 0`,
      { origin },
    );
    expect(printZoneFile(origin, records)).toBe(
      [
        "$ORIGIN example.com.",
        "@ 60 IN SOA ns1.example.com. hostmaster.example.com. 1 2 3 4 5",
        "www.Sub 60 IN A 192.0.2.1",
        'x.other. 60 IN TXT "a b"',
        "\\$x 60 IN TYPE999 \\# 0",
        "",
      ].join("\n"),
    );
  });

  // Owners inside the origin (the usual case) and outside it, with any label octets.
  const owner = (zone: Name) =>
    fc.oneof(
      fc.array(label(), { maxLength: 3 }).map((labels): Name => [...labels, ...zone]),
      fc.array(label(), { maxLength: 3 }),
    );
  const record = (zone: Name) =>
    fc.record({ name: owner(zone), ttl: fc.integer({ min: 0, max: 0x7fffffff }), data: anyRdata });

  test("property: parseZoneFile(printZoneFile(records)) gives the same records", () => {
    const zone = fc.oneof(fc.constant(origin), fc.array(label(), { maxLength: 2 }));
    fc.assert(
      fc.property(
        zone.chain((z) => fc.tuple(fc.constant(z), fc.array(record(z), { maxLength: 8 }))),
        ([zone, generated]) => {
          const records = generated.map((r, i) => ({ name: r.name, ttl: r.ttl, ...r.data, line: i + 2 }));
          const text = printZoneFile(zone, records);
          const back = parseZoneFile(text, { origin: parseName("unused.", null) });
          const strip = (rs: readonly ZoneRecord[]) => rs.map(({ name, ttl, type, rdata }) => ({ name, ttl, type, rdata }));
          expect(strip(back)).toEqual(strip(records));
          expect(back.map((r) => r.line)).toEqual(records.map((r) => r.line));
        },
      ),
      { numRuns: 300 },
    );
  });
});
