import { describe, expect, test } from "bun:test";
import { DomainSet, MAX_REPORTED_ERRORS, normalizeDomain, parseBlocklist, type BlocklistFormat } from "../../../plugins/dns/blocklist.ts";
import { parseName } from "../../../plugins/dns/names.ts";

/** One line through the parser: what it blocks, allows, or the reason it was skipped. */
function one(line: string, format: BlocklistFormat = "auto") {
  const parsed = parseBlocklist(line, format);
  return { blocked: parsed.blocked, allowed: parsed.allowed, errors: parsed.errors.map((e) => e.reason) };
}

describe("parseBlocklist", () => {
  // [line, format, blocked, allowed, skipped-with-reason]
  const table: Array<[string, BlocklistFormat, string[], string[], string[]]> = [
    // hosts
    ["0.0.0.0 ads.example.com", "hosts", ["ads.example.com"], [], []],
    ["127.0.0.1 a.example b.example\tc.example", "hosts", ["a.example", "b.example", "c.example"], [], []],
    ["0.0.0.0 Ads.Example.COM.", "hosts", ["ads.example.com"], [], []],
    ["0.0.0.0 ads.example.com # inline comment", "hosts", ["ads.example.com"], [], []],
    ["  0.0.0.0   spaced.example  ", "hosts", ["spaced.example"], [], []],
    ["::1 localhost ip6-localhost ip6-loopback", "hosts", [], [], []],
    ["127.0.0.1 localhost localhost.localdomain", "hosts", [], [], []],
    ["255.255.255.255 broadcasthost", "hosts", [], [], []],
    ["0.0.0.0 0.0.0.0", "hosts", [], [], []],
    ["fe80::1%lo0 localhost", "hosts", [], [], []],
    [":: ads.v6.example", "hosts", ["ads.v6.example"], [], []],
    ["192.0.2.1 not-a-sinkhole.example", "hosts", ["not-a-sinkhole.example"], [], []],
    ["0.0.0.0 bücher.example", "hosts", ["xn--bcher-kva.example"], [], []],
    ["0.0.0.0 good.example bad..example", "hosts", ["good.example"], [], ["an empty label"]],
    ["0.0.0.0", "hosts", [], [], ["an address without names"]],
    ["ads.example.com", "hosts", [], [], ["a hosts line starts with an address"]],
    ["# 0.0.0.0 commented.example", "hosts", [], [], []],
    ["0.0.0.0 under_score.example", "hosts", ["under_score.example"], [], []],
    // domain lists
    ["ads.example.com", "domains", ["ads.example.com"], [], []],
    ["ads.example.com.", "domains", ["ads.example.com"], [], []],
    ["*.wild.example", "domains", ["*.wild.example"], [], []],
    ["localhost", "domains", ["localhost"], [], []],
    ["! adblock comment", "domains", [], [], []],
    ["[Adblock Plus 2.0]", "domains", [], [], []],
    ["||ads.example.com^", "domains", ["ads.example.com"], [], []],
    ["||ads.example.com^|", "domains", ["ads.example.com"], [], []],
    ["||*.wild.example^", "domains", ["*.wild.example"], [], []],
    ["@@||ok.example.com^", "domains", [], ["ok.example.com"], []],
    ["||ads.example.com^$important", "domains", [], [], ["rule modifiers are not supported"]],
    ["||ads.example.com", "domains", [], [], ["a rule without ^ matches more than a domain"]],
    ["||ads.example.com^/path", "domains", [], [], ["a rule that is not a whole domain"]],
    ["@@/regex/", "domains", [], [], ["only @@||domain^ exceptions are supported"]],
    ["example.com##.banner", "domains", [], [], ["not a domain name"]],
    ["/ads[0-9]+\\.example/", "domains", [], [], ["not a domain name"]],
    ["|https://ads.example/", "domains", [], [], ["not a domain name"]],
    ["two words.example", "domains", [], [], ["more than one word on a line"]],
    ["0.0.0.0 ads.example", "domains", [], [], ["a hosts line in a domain list"]],
    ["a".repeat(64) + ".example", "domains", [], [], ["not a domain name"]],
    [("a".repeat(63) + ".").repeat(4) + "ex", "domains", [], [], ["a domain longer than 253 characters"]],
    ["*.", "domains", [], [], ["an empty domain"]],
    ["ads.example.com\r", "domains", ["ads.example.com"], [], []],
    // auto takes each line for what it looks like
    ["0.0.0.0 h.example", "auto", ["h.example"], [], []],
    ["d.example", "auto", ["d.example"], [], []],
    ["||a.example^", "auto", ["a.example"], [], []],
    ["@@||a.example^", "auto", [], ["a.example"], []],
  ];
  for (const [line, format, blocked, allowed, errors] of table) {
    test(`${format}: ${JSON.stringify(line.length > 40 ? line.slice(0, 37) + "..." : line)}`, () => {
      expect(one(line, format)).toEqual({ blocked, allowed, errors });
    });
  }

  test("errors carry line numbers, a BOM and CRLF endings are read, blank lines and comments skipped", () => {
    const text = "\ufeff# a list\r\n\r\n0.0.0.0 one.example\r\n!!! not hosts\r\n0.0.0.0 two.example\r\n";
    const parsed = parseBlocklist(text, "hosts");
    expect(parsed.blocked).toEqual(["one.example", "two.example"]);
    expect(parsed.skipped).toBe(1);
    expect(parsed.errors[0]!.line).toBe(4);
    expect(parsed.errors[0]!.message).toBe('line 4: a hosts line starts with an address: "!!! not hosts"');
  });

  test("a list with many bad lines keeps the first errors and counts them all", () => {
    const text = Array.from({ length: 500 }, (_, i) => `bad line ${i}`).join("\n");
    const parsed = parseBlocklist(text, "domains");
    expect(parsed.skipped).toBe(500);
    expect(parsed.errors).toHaveLength(MAX_REPORTED_ERRORS);
    expect(parsed.errors.at(-1)!.line).toBe(MAX_REPORTED_ERRORS);
  });

  test("normalizeDomain", () => {
    expect(normalizeDomain("WWW.Example.ORG.")).toEqual({ domain: "www.example.org" });
    expect(normalizeDomain("*.Example.org")).toEqual({ domain: "*.example.org" });
    expect(normalizeDomain("a*b.example")).toEqual({ error: "not a domain name" });
    expect(normalizeDomain("")).toEqual({ error: "an empty domain" });
  });
});

describe("DomainSet", () => {
  const set = DomainSet.from(["ads.example.com", "*.wild.example", "TRACKER.test."]);
  const matchOf = (text: string) => set.match(parseName(text, null));

  test("a domain blocks itself and everything below it, case-insensitively", () => {
    expect(matchOf("ads.example.com.")).toBe("ads.example.com");
    expect(matchOf("x.ads.example.com.")).toBe("ads.example.com");
    expect(matchOf("a.b.c.ADS.Example.Com.")).toBe("ads.example.com");
    expect(matchOf("tracker.test.")).toBe("tracker.test");
    expect(matchOf("Deep.Tracker.Test.")).toBe("tracker.test");
  });

  test("a parent, a sibling or a longer label is not blocked", () => {
    expect(matchOf("example.com.")).toBeNull();
    expect(matchOf("www.example.com.")).toBeNull();
    expect(matchOf("xads.example.com.")).toBeNull();
    expect(matchOf("ads.example.com.evil.")).toBeNull();
    expect(matchOf("com.")).toBeNull();
    expect(matchOf(".")).toBeNull();
  });

  test("*.domain blocks what is below the domain, not the domain", () => {
    expect(matchOf("wild.example.")).toBeNull();
    expect(matchOf("a.wild.example.")).toBe("*.wild.example");
    expect(matchOf("b.a.wild.example.")).toBe("*.wild.example");
  });

  test("a label holding a dot does not pass for two labels", () => {
    // One label "ads.example" under "com": its text would read ads.example.com.
    const tricky = [new TextEncoder().encode("ads.example"), new TextEncoder().encode("com")];
    expect(set.match(tricky)).toBeNull();
    expect(matchOf("ads\\.example.com.")).toBeNull();
    // ...while a real parent still matches below an odd label.
    expect(matchOf("we\\.ird.ads.example.com.")).toBe("ads.example.com");
  });

  test("matchText", () => {
    expect(set.matchText("X.ADS.example.com.")).toBe("ads.example.com");
    expect(set.matchText("example.com")).toBeNull();
    expect(set.matchText("")).toBeNull();
  });

  test("add refuses what is not a domain; size counts entries", () => {
    const s = new DomainSet();
    expect(() => s.add("not a domain")).toThrow("not a domain name");
    s.add("a.example");
    s.add("A.example.");
    s.add("*.a.example");
    expect(s.size).toBe(2);
  });

  test("an allowlist is a DomainSet too: exceptions match the same way", () => {
    const parsed = parseBlocklist("||ads.example^\n@@||ok.ads.example^\n");
    const blocked = DomainSet.from(parsed.blocked);
    const allowed = DomainSet.from(parsed.allowed);
    const isBlocked = (name: string) => blocked.matchText(name) !== null && allowed.matchText(name) === null;
    expect(isBlocked("x.ads.example")).toBe(true);
    expect(isBlocked("ok.ads.example")).toBe(false);
    expect(isBlocked("deep.ok.ads.example")).toBe(false);
  });

  test("a big list (200,000 names) is parsed, loaded and matched exactly", () => {
    // Sizes at scale, not speed: timings belong to benchmarks, not to the suite.
    const lines: string[] = [];
    for (let i = 0; i < 200_000; i++) lines.push(`0.0.0.0 host${i}.tracker${i % 5000}.example`);
    const parsed = parseBlocklist(lines.join("\n"), "hosts");
    const big = DomainSet.from(parsed.blocked);
    expect(big.size).toBe(200_000);
    expect(big.match(parseName("a.b.host123456.tracker3456.example.", null))).toBe("host123456.tracker3456.example");
    expect(big.match(parseName("host123456.tracker3457.example.", null))).toBeNull();
    expect(big.match(parseName("www.some.unrelated.example.", null))).toBeNull();
  });
});
