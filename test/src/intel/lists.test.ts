import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ListFetchError, MAX_REPORTED, fetchList, parseList, redactedUrl, refreshProblem, type FetchLike, type ParsedFormat, type ParsedList } from "../../../src/intel/lists.ts";
import { CidrSet } from "../../../src/intel/cidr-set.ts";
import { formatCidr } from "../../../src/net/ip.ts";

const cidrsOf = (list: ParsedList) => list.cidrs.map(formatCidr);
const problemsOf = (list: ParsedList) => list.errors.map((e) => [e.line, e.problem]);

describe("parseList: plain", () => {
  const cases: Array<{ name: string; text: string; cidrs: string[]; errorLines?: number[] }> = [
    { name: "addresses and CIDRs, both families", text: "1.2.3.4\n10.0.0.0/8\n2001:db8::/32\n::1\n", cidrs: ["1.2.3.4/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"] },
    { name: "whole-line # and ; comments, blank and blank-ish lines", text: "# a list\n; another comment\n\n   \n\t\n1.2.3.4\n", cidrs: ["1.2.3.4/32"] },
    { name: "trailing comments", text: "1.2.3.4 # bad host\n10.0.0.0/8;reserved\n2001:db8::/32\t; doc\n", cidrs: ["1.2.3.4/32", "10.0.0.0/8", "2001:db8::/32"] },
    { name: "CRLF line ends", text: "# header\r\n1.2.3.4\r\n5.6.7.0/24 # x\r\n\r\n", cidrs: ["1.2.3.4/32", "5.6.7.0/24"] },
    { name: "leading and trailing spaces", text: "   1.2.3.4   \n\t10.0.0.0/8\t\n", cidrs: ["1.2.3.4/32", "10.0.0.0/8"] },
    { name: "a byte-order mark", text: "\uFEFF1.2.3.4\n", cidrs: ["1.2.3.4/32"] },
    { name: "no final newline", text: "1.2.3.4\n5.6.7.8", cidrs: ["1.2.3.4/32", "5.6.7.8/32"] },
    { name: "an empty text", text: "", cidrs: [] },
    { name: "only comments", text: "# nothing\n;here\n", cidrs: [] },
    { name: "IPv6 with an embedded IPv4 and upper case (an IPv4-mapped address is the IPv4 one)", text: "::FFFF:192.0.2.1\n2001:DB8::/48\n", cidrs: ["192.0.2.1/32", "2001:db8::/48"] },
    {
      name: "garbage lines are reported by number, the rest is kept",
      text: "1.2.3.4\nhello\n256.1.1.1\n1.2.3.4 5.6.7.8\n10.0.0.0/33\n2001:db8::/129\n10.0.0.0/\n1.2.3.4-1.2.3.9\nfe80::1%eth0\n10.0.0.0/08\n5.6.7.8\n",
      cidrs: ["1.2.3.4/32", "5.6.7.8/32"],
      errorLines: [2, 3, 4, 5, 6, 7, 8, 9, 10],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const list = parseList(c.text, "plain");
      expect(cidrsOf(list)).toEqual(c.cidrs);
      expect(list.errors.map((e) => e.line)).toEqual(c.errorLines ?? []);
      expect(list.errorCount).toBe(c.errorLines?.length ?? 0);
      expect(list.format).toBe("plain");
    });
  }

  test("errors say what is wrong and quote the line", () => {
    const list = parseList("# head\n1.2.3.4 5.6.7.8 # two\nnope\n10.0.0.0/40\n", "plain");
    expect(list.errors).toEqual([
      { line: 2, text: "1.2.3.4 5.6.7.8 # two", problem: "expected one address or CIDR per line" },
      { line: 3, text: "nope", problem: "not an IP address or CIDR: nope" },
      { line: 4, text: "10.0.0.0/40", problem: "prefix must be 0 to 32: 10.0.0.0/40" },
    ]);
  });

  test("a prefix with a leading zero is refused as such, not as out of range (found in review)", () => {
    const list = parseList("1.2.3.4/08\n2001:db8::/032\n1.2.3.0/24\n", "plain");
    expect(list.errors).toEqual([
      { line: 1, text: "1.2.3.4/08", problem: "a prefix length is written without leading zeros: 1.2.3.4/08" },
      { line: 2, text: "2001:db8::/032", problem: "a prefix length is written without leading zeros: 2001:db8::/032" },
    ]);
    expect(cidrsOf(list)).toEqual(["1.2.3.0/24"]);
  });

  test("host bits set: normalised to the network, reported as a warning", () => {
    const list = parseList("10.0.0.1/8\n192.168.1.77/24\n2001:db8::1/32\n10.0.0.0/8\n", "plain");
    expect(cidrsOf(list)).toEqual(["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "10.0.0.0/8"]);
    expect(list.errors).toEqual([]);
    expect(list.warningCount).toBe(3);
    expect(list.warnings[0]).toEqual({ line: 1, text: "10.0.0.1/8", problem: "host bits set; used 10.0.0.0/8" });
    expect(list.warnings.map((w) => w.line)).toEqual([1, 2, 3]);
  });

  test("host bits on a prefix shorter than /8 (IPv4) or /16 (IPv6) are refused, never widened", () => {
    const text = "192.0.2.1/0\n2001:db8::1/0\n203.0.113.0/2\n10.0.0.1/7\n2001:db8::1/15\n10.0.0.1/8\n2001:db8::1/16\n";
    const list = parseList(text, "plain");
    expect(cidrsOf(list)).toEqual(["10.0.0.0/8", "2001::/16"]);
    expect(list.errors.map((e) => e.line)).toEqual([1, 2, 3, 4, 5]);
    expect(list.errors[0]!.problem).toBe("host bits set on a prefix shorter than /8 (it would widen to 0.0.0.0/0): 192.0.2.1/0");
    expect(list.errors[1]!.problem).toBe("host bits set on a prefix shorter than /16 (it would widen to ::/0): 2001:db8::1/0");
    expect(CidrSet.build(list.cidrs).containsText("8.8.8.8")).toBe(false);
  });

  test("a well-formed /0 is refused (no reputation covers every address); other short prefixes are kept", () => {
    const list = parseList("0.0.0.0/0\n::/0\n224.0.0.0/3\n0.0.0.0/8\n", "firehol");
    expect(cidrsOf(list)).toEqual(["224.0.0.0/3", "0.0.0.0/8"]);
    expect(problemsOf(list)).toEqual([
      [1, "covers every address, which no reputation list means: 0.0.0.0/0"],
      [2, "covers every address, which no reputation list means: ::/0"],
    ]);
  });

  test("IPv4-mapped prefixes of /96 or longer are IPv4 prefixes, with the IPv4 rules; shorter ones stay IPv6", () => {
    const text = "::ffff:203.0.113.0/120\n::ffff:198.51.100.7/124\n::ffff:0.0.0.0/96\n::ffff:10.0.0.1/100\n::ffff:0:0/95\n";
    const list = parseList(text, "plain");
    expect(cidrsOf(list)).toEqual(["203.0.113.0/24", "198.51.100.0/28", "::fffe:0:0/95"]);
    expect(problemsOf(list)).toEqual([
      [3, "covers every address, which no reputation list means: ::ffff:0.0.0.0/96"],
      [4, "host bits set on a prefix shorter than /8 (it would widen to 0.0.0.0/4): ::ffff:10.0.0.1/100"],
    ]);
    const set = CidrSet.build(list.cidrs);
    expect([set.containsText("203.0.113.9"), set.containsText("198.51.100.9"), set.containsText("::ffff:203.0.113.9")]).toEqual([true, true, true]);
  });

  test("problems are kept in detail up to a cap and counted beyond it", () => {
    const list = parseList(`${"junk\n".repeat(MAX_REPORTED + 500)}1.2.3.4\n`, "plain");
    expect(list.errors.length).toBe(MAX_REPORTED);
    expect(list.errorCount).toBe(MAX_REPORTED + 500);
    expect(cidrsOf(list)).toEqual(["1.2.3.4/32"]);
    const long = parseList(`${"x".repeat(5000)}\n`, "plain");
    expect(long.errors[0]!.text.length).toBeLessThanOrEqual(201);
  });
});

const FIREHOL = `#
# firehol_level1
#
# ipv4 hash:net ipset
#
# A firewall blacklist composed from IP lists, providing
# maximum protection with minimum false positives.
#
# Maintainer      : FireHOL
# Maintainer URL  : http://iplists.firehol.org/
# List source URL :
# Source File Date: Tue Feb 13 22:12:39 UTC 2024
#
# Category        : attacks
# Version         : 32175
#
# This File Date  : Tue Feb 13 22:20:40 UTC 2024
# Update Frequency: 1 min
# Aggregation     : none
# Entries         : 4 subnets, 16781569 unique IPs
#
# Generated by FireHOL's update-ipsets.sh
# Processed with FireHOL's iprange
#
0.0.0.0/8
1.10.16.0/20
5.188.10.179
223.254.0.0/16
`;

describe("parseList: FireHOL netsets", () => {
  test("header metadata is skipped, entries kept", () => {
    const list = parseList(FIREHOL, "firehol");
    expect(cidrsOf(list)).toEqual(["0.0.0.0/8", "1.10.16.0/20", "5.188.10.179/32", "223.254.0.0/16"]);
    expect(list.errorCount).toBe(0);
    expect(list.format).toBe("firehol");
  });

  test("an IPv6 netset with CRLF and a garbage line", () => {
    const text = "# Maintainer      : FireHOL\r\n# Entries         : 2 subnets\r\n2001:db8::/32\r\n<html>\r\n2a00:1450::/29\r\n";
    const list = parseList(text, "firehol");
    expect(cidrsOf(list)).toEqual(["2001:db8::/32", "2a00:1450::/29"]);
    expect(problemsOf(list)).toEqual([[4, "not an IP address or CIDR: <html>"]]);
  });
});

const SPAMHAUS_TEXT = `; Spamhaus DROP List 2024/02/14 - (c) 2024 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Wed, 14 Feb 2024 03:59:16 GMT
; Expires: Wed, 14 Feb 2024 05:31:48 GMT
1.10.16.0/20 ; SBL256894
1.19.0.0/16 ; SBL434604
2.56.192.0/22 ; SBL459831
`;

const SPAMHAUS_JSON = `{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}
{"cidr":"1.19.0.0/16","sblid":"SBL434604","rir":"apnic"}
{"cidr":"2a06:5280::/29","sblid":"SBL611003","rir":"ripencc"}
{"type":"metadata","timestamp":1707883156,"size":172,"records":3,"copyright":"(c) 2024 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}
`;

describe("parseList: Spamhaus", () => {
  test("DROP text: ; headers and trailing SBL ids", () => {
    const list = parseList(SPAMHAUS_TEXT, "spamhaus");
    expect(cidrsOf(list)).toEqual(["1.10.16.0/20", "1.19.0.0/16", "2.56.192.0/22"]);
    expect([list.errorCount, list.format]).toEqual([0, "spamhaus"]);
  });

  test("DROPv6 text with CRLF", () => {
    const list = parseList("; Spamhaus DROPv6 List\r\n2001:678:738::/48 ; SBL598270\r\n2a06:5280::/29 ; SBL611003\r\n", "spamhaus");
    expect(cidrsOf(list)).toEqual(["2001:678:738::/48", "2a06:5280::/29"]);
  });

  test("JSON lines: entries kept, metadata line read and checked", () => {
    const list = parseList(SPAMHAUS_JSON, "spamhaus");
    expect(cidrsOf(list)).toEqual(["1.10.16.0/20", "1.19.0.0/16", "2a06:5280::/29"]);
    expect([list.errorCount, list.format]).toEqual([0, "spamhaus-json"]);
  });

  test("JSON lines with CRLF, blank lines and bad records", () => {
    const text = [
      '{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}',
      "",
      '{"cidr":"1.10.16.1/20","sblid":"SBL1"}',
      '{"sblid":"SBL2"}',
      '{"cidr":"not-an-ip"}',
      '{"cidr":"1.2.3.0/24"',
      "null",
      '{"cidr":42}',
      '{"type":"metadata","records":7}', // broken lines count as records: the file has 7
      "",
    ].join("\r\n");
    const list = parseList(text, "auto");
    expect(list.format).toBe("spamhaus-json");
    expect(cidrsOf(list)).toEqual(["1.10.16.0/20", "1.10.16.0/20"]);
    expect(list.warnings.map((w) => w.line)).toEqual([3]);
    expect(problemsOf(list)).toEqual([
      [4, 'no "cidr" string'],
      [5, "not an IP address or CIDR: not-an-ip"],
      [6, "not valid JSON"],
      [7, "not a JSON object"],
      [8, 'no "cidr" string'],
    ]);
  });

  test("JSON lines cut short: the metadata count gives it away", () => {
    const text = '{"cidr":"1.10.16.0/20","sblid":"SBL256894"}\n{"type":"metadata","timestamp":1707883156,"records":1500}\n';
    const list = parseList(text, "spamhaus");
    expect(problemsOf(list)).toEqual([[2, "metadata announces 1500 records, the file has 1"]]);
    expect(cidrsOf(list)).toEqual(["1.10.16.0/20"]);
  });

  test("JSON lines are complete only with their metadata line and its count", () => {
    expect(parseList(SPAMHAUS_JSON).incomplete).toBeNull();
    const cut = parseList('{"cidr":"1.10.16.0/20","sblid":"SBL256894"}\n{"cidr":"1.19.0.0/16","sb', "spamhaus");
    expect(cut.incomplete).toContain("no metadata line");
    const short = parseList('{"cidr":"1.10.16.0/20","sblid":"SBL256894"}\n{"type":"metadata","records":1500}\n', "spamhaus");
    expect(short.incomplete).toBe("metadata announces 1500 records, the file has 1");
    expect(parseList(SPAMHAUS_TEXT).incomplete).toBeNull(); // the text lists have no such line
  });
});

describe("refreshProblem: a refreshed list that looks cut short or broken", () => {
  const lines = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `10.${from + i}.0.0/16\n`).join("");
  const check = (previous: { entries: number; errors: number; endsWithNewline?: boolean }, text: string) => refreshProblem({ endsWithNewline: true, ...previous }, text, parseList(text));

  test("a whole list like the last one passes", () => {
    expect(check({ entries: 50, errors: 0 }, lines(50))).toBeNull();
    expect(check({ entries: 50, errors: 0 }, lines(26))).toBeNull(); // lists shrink
  });

  test("a last line without its newline: cut short", () => {
    expect(check({ entries: 50, errors: 0 }, `${lines(49)}10.200.0`)).toContain("no newline");
  });

  test("unless the list never ended its last line: its publisher writes it so (found in review: it froze for good)", () => {
    expect(check({ entries: 2, errors: 0, endsWithNewline: false }, `${lines(2)}10.200.0.0/16`)).toBeNull();
  });

  test("fewer than half the entries it had", () => {
    expect(check({ entries: 50, errors: 0 }, lines(24))).toBe("24 entries, fewer than half of the 50 the list had");
  });

  test("more than a tenth of the lines bad, unless the list had as many before", () => {
    const text = `${lines(40)}${"<html>\n".repeat(10)}`;
    expect(check({ entries: 40, errors: 0 }, text)).toBe("10 bad lines of 50");
    expect(check({ entries: 40, errors: 10 }, text)).toBeNull();
  });
});

describe("parseList: auto-detection", () => {
  const cases: Array<[string, string, ParsedFormat]> = [
    ["Spamhaus text by its header", SPAMHAUS_TEXT, "spamhaus"],
    ["Spamhaus text by its SBL ids alone", "1.10.16.0/20 ; SBL256894\n", "spamhaus"],
    ["Spamhaus JSON lines", SPAMHAUS_JSON, "spamhaus-json"],
    ["Spamhaus JSON lines after blank lines", `\n\n${SPAMHAUS_JSON}`, "spamhaus-json"],
    ["FireHOL by its metadata", FIREHOL, "firehol"],
    ["plain with # comments", "# my list\n1.2.3.4\n", "plain"],
    ["plain with ; comments", "; my list\n1.2.3.4 ; why\n", "plain"],
    ["empty", "", "plain"],
  ];
  for (const [name, text, format] of cases) {
    test(name, () => {
      const list = parseList(text);
      expect(list.format).toBe(format);
      expect(list.errorCount).toBe(0);
    });
  }

  test("a forced text format does not reinterpret JSON lines", () => {
    const list = parseList(SPAMHAUS_JSON, "plain");
    expect(list.cidrs).toEqual([]);
    expect(list.errorCount).toBe(4);
  });
});

describe("fetchList", () => {
  let server: ReturnType<typeof Bun.serve>;
  let base: string;
  const LIST = "# test list\n1.2.3.4\n10.0.0.0/8\n";

  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const path = new URL(req.url).pathname;
        switch (path) {
          case "/list.txt":
            return new Response(LIST);
          case "/big":
            return new Response("1.2.3.4\n".repeat(10_000)); // 80,000 bytes, with Content-Length
          case "/big-streamed":
            // No Content-Length: only counting while reading can stop it.
            return new Response(
              new ReadableStream({
                async pull(controller) {
                  controller.enqueue(new TextEncoder().encode("1.2.3.4\n".repeat(1000)));
                  await Bun.sleep(1);
                },
              }),
            );
          case "/missing":
            return new Response("not here", { status: 404 });
          case "/slow-headers":
            await Bun.sleep(2000);
            return new Response(LIST);
          case "/slow-body":
            return new Response(
              new ReadableStream({
                async start(controller) {
                  controller.enqueue(new TextEncoder().encode("1.2.3.4\n"));
                  await Bun.sleep(2000);
                  controller.close();
                },
              }),
            );
          case "/redirect":
            return Response.redirect("/list.txt", 302);
          default:
            return new Response("?", { status: 500 });
        }
      },
    });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.stop(true));

  const failure = async (promise: Promise<unknown>): Promise<ListFetchError> => {
    const error = await promise.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ListFetchError);
    return error as ListFetchError;
  };

  /** The loopback server above is plain http: tests allow it, production never does. */
  const LOOPBACK = { allowLoopbackHttp: true };

  test("reads a list from loopback over http where tests allow it", async () => {
    expect(await fetchList(`${base}/list.txt`, LOOPBACK)).toBe(LIST);
  });

  test("a body past maxBytes is abandoned, declared or streamed", async () => {
    const declared = await failure(fetchList(`${base}/big`, { ...LOOPBACK, maxBytes: 50_000 }));
    expect([declared.problem, declared.message]).toEqual(["too_large", `${base}/big: larger than 50000 bytes`]);
    const streamed = await failure(fetchList(`${base}/big-streamed`, { ...LOOPBACK, maxBytes: 100_000, timeoutMs: 5000 }));
    expect(streamed.problem).toBe("too_large");
    expect(await fetchList(`${base}/big`, { ...LOOPBACK, maxBytes: 80_000 })).toHaveLength(80_000); // exactly at the cap is fine
  });

  test("non-200 answers fail with the status", async () => {
    const error = await failure(fetchList(`${base}/missing`, LOOPBACK));
    expect([error.problem, error.message]).toEqual(["status", `${base}/missing: HTTP 404`]);
  });

  test("the timeout covers waiting for headers and for the body", async () => {
    // The headers come after 2 s, the body never ends: "timeout" (not a list, nor a wait for ever) is the 200 ms limit.
    for (const path of ["/slow-headers", "/slow-body"]) {
      const error = await failure(fetchList(`${base}${path}`, { ...LOOPBACK, timeoutMs: 200 }));
      expect([path, error.problem]).toEqual([path, "timeout"]);
    }
  });

  test("only https; plain http to 127.0.0.1 and ::1 only where tests allow it; nothing is fetched for a refused URL (found in review: loopback http was allowed in production)", async () => {
    const calls: string[] = [];
    const spy: FetchLike = async (url) => {
      calls.push(url);
      return new Response("1.2.3.4\n");
    };
    for (const url of ["http://127.0.0.1:8080/list", "http://[::1]:8080/list", "http://user:pass@127.0.0.1/list", "http://example.com/list", "ftp://example.com/list", "file:///etc/passwd", "data:text/plain,1.2.3.4", "not a url"]) {
      expect([url, (await failure(fetchList(url, { fetch: spy }))).problem]).toEqual([url, "url"]);
    }
    for (const url of ["http://example.com/list", "http://localhost/list", "http://127.0.0.2/list"]) {
      expect([url, (await failure(fetchList(url, { fetch: spy, ...LOOPBACK }))).problem]).toEqual([url, "url"]);
    }
    expect(calls).toEqual([]);
    expect(await fetchList("https://example.com/list", { fetch: spy })).toBe("1.2.3.4\n");
    for (const url of ["http://127.0.0.1:8080/list", "http://[::1]:8080/list"]) expect(await fetchList(url, { fetch: spy, ...LOOPBACK })).toBe("1.2.3.4\n");
    expect(calls).toEqual(["https://example.com/list", "http://127.0.0.1:8080/list", "http://[::1]:8080/list"]);
  });

  describe("redirects: followed within the list URL's origin over https only (found in review: any https host, and from there loopback http)", () => {
    /** A publisher at https://lists.example whose paths redirect as `redirects` says; every request is recorded. */
    const publisher = (redirects: Record<string, string>) => {
      const calls: string[] = [];
      const fetch: FetchLike = async (url) => {
        calls.push(url);
        const location = redirects[new URL(url).pathname];
        return location === undefined ? new Response(LIST) : new Response(null, { status: 302, headers: { location } });
      };
      return { calls, fetch };
    };

    test("a redirect within the origin is followed, relative or absolute", async () => {
      const p = publisher({ "/old": "/new", "/moved": "https://lists.example/list.txt" });
      expect(await fetchList("https://lists.example/old", { fetch: p.fetch })).toBe(LIST);
      expect(await fetchList("https://lists.example/moved", { fetch: p.fetch })).toBe(LIST);
      expect(p.calls).toEqual(["https://lists.example/old", "https://lists.example/new", "https://lists.example/moved", "https://lists.example/list.txt"]);
    });

    test("a redirect to another origin or to plain http is refused, and not fetched", async () => {
      const p = publisher({
        "/elsewhere": "https://other.example/list.txt?key=s3cret",
        "/other-port": "https://lists.example:8443/list.txt",
        "/local": "http://127.0.0.1:8080/admin",
        "/local-tls": "https://127.0.0.1/admin",
        "/downgrade": "http://lists.example/list.txt",
      });
      const refused = async (path: string) => {
        const error = await failure(fetchList(`https://lists.example${path}`, { fetch: p.fetch, ...LOOPBACK }));
        return [error.problem, error.message];
      };
      expect(await refused("/elsewhere")).toEqual(["url", "https://lists.example/elsewhere: redirects to another origin, https://other.example/list.txt: refused (give the list's URL there, if it is the publisher's)"]);
      expect((await refused("/other-port"))[0]).toBe("url");
      expect(await refused("/local")).toEqual(["url", "https://lists.example/local: redirects to http://127.0.0.1:8080/admin, not https://: refused"]);
      expect((await refused("/local-tls"))[0]).toBe("url");
      expect((await refused("/downgrade"))[0]).toBe("url");
      expect(p.calls).toEqual(["/elsewhere", "/other-port", "/local", "/local-tls", "/downgrade"].map((path) => `https://lists.example${path}`));
    });

    test("from a loopback list tests allow over http, a redirect (to plain http, even within the origin) is refused", async () => {
      const error = await failure(fetchList(`${base}/redirect`, LOOPBACK));
      expect([error.problem, error.message]).toEqual(["url", `${base}/redirect: redirects to ${base}/list.txt, not https://: refused`]);
    });

    test("more than 5 redirects fail", async () => {
      const p = publisher({ "/loop": "/loop" });
      expect((await failure(fetchList("https://lists.example/loop", { fetch: p.fetch }))).problem).toBe("status");
      expect(p.calls).toHaveLength(6);
    });
  });

  test("errors do not repeat a URL's query or credentials", async () => {
    const failing: FetchLike = async () => new Response("no", { status: 403 });
    const error = await failure(fetchList("https://user:pass@lists.example/drop.txt?key=s3cret", { fetch: failing }));
    expect(error.message).toBe("https://lists.example/drop.txt: HTTP 403");
  });

  test("network failures are reported as such", async () => {
    const broken: FetchLike = async () => {
      throw new TypeError("connection refused");
    };
    const error = await failure(fetchList("https://lists.example/drop.txt", { fetch: broken }));
    expect([error.problem, error.message]).toEqual(["network", "https://lists.example/drop.txt: connection refused"]);
  });
});

describe("redactedUrl (found in review: a list URL's credentials were shown in full)", () => {
  test("drops user:password and the query; text that is no URL is not shown", () => {
    expect(redactedUrl("https://feeds.example.org/drop.txt?api_key=s3cret&x=1")).toBe("https://feeds.example.org/drop.txt");
    expect(redactedUrl("https://user:s3cret@feeds.example.org:8443/drop.txt#frag")).toBe("https://feeds.example.org:8443/drop.txt");
    expect(redactedUrl("https://")).toBe("(not a URL)");
  });
});
