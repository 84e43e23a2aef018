import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { isIPv4, isIPv6 } from "node:net";
import { cidrContains, cidrWithin, formatCidr, formatIp, isLoopback, parseCidr, parseClientCidr, parseIp } from "../../../src/net/ip.ts";

describe("parseIp", () => {
  const valid: Array<[string, string]> = [
    ["0.0.0.0", "0.0.0.0"],
    ["192.168.1.255", "192.168.1.255"],
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8::1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // RFC 5952 4.2.3: the first of equal runs
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // 4.2.2: one zero group is not compressed
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ["fe80::", "fe80::"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ];
  for (const [input, canonical] of valid) test(`accepts ${input}`, () => expect(formatIp(parseIp(input)!)).toBe(canonical));

  const invalid = ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.-4", " 1.2.3.4", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", "12345::", "fe80::1%eth0", "1.2.3.4::", "g::1", "::1.2.3", "1:2:3:4:5:6:7::8:9"];
  for (const input of invalid) test(`refuses ${JSON.stringify(input)}`, () => expect(parseIp(input)).toBeNull());

  test("property: agrees with node:net on what is an address (outside its leniencies)", () => {
    const candidate = fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.string({ unit: fc.constantFrom(..."0123456789abcdef:.".split("")), maxLength: 20 }),
    );
    fc.assert(
      fc.property(candidate, (s) => {
        const ours = parseIp(s) !== null;
        const node = isIPv4(s) || isIPv6(s);
        if (ours) expect(node).toBe(true); // everything we accept is an address
        if (node && !/(^|[.:])0\d/.test(s)) expect(ours).toBe(true); // we refuse only leading zeros
      }),
      { numRuns: 3000 },
    );
  });

  test("property: format is canonical (parse ∘ format = id on bytes)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (s) => {
        const ip = parseIp(s)!;
        const again = parseIp(formatIp(ip))!;
        expect(again.bytes).toEqual(ip.bytes);
        expect(formatIp(again)).toBe(formatIp(ip));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("CIDR", () => {
  test("parses and refuses host bits, bad prefixes", () => {
    expect(formatCidr(parseCidr("10.0.0.0/8")!)).toBe("10.0.0.0/8");
    expect(formatCidr(parseCidr("2001:db8::/32")!)).toBe("2001:db8::/32");
    expect(formatCidr(parseCidr("192.0.2.7")!)).toBe("192.0.2.7/32");
    for (const bad of ["10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1", "10/8"]) expect(parseCidr(bad)).toBeNull();
  });

  const membership: Array<[string, string, boolean]> = [
    ["10.0.0.0/8", "10.255.1.2", true],
    ["10.0.0.0/8", "11.0.0.0", false],
    ["192.168.1.0/25", "192.168.1.127", true],
    ["192.168.1.0/25", "192.168.1.128", false],
    ["0.0.0.0/0", "203.0.113.9", true],
    ["0.0.0.0/0", "::1", false],
    ["10.0.0.0/8", "::ffff:10.1.2.3", true],
    ["2001:db8::/33", "2001:db8:7fff::1", true],
    ["2001:db8::/33", "2001:db8:8000::1", false],
    ["::/0", "2001:db8::1", true],
  ];
  for (const [cidr, ip, inside] of membership) {
    test(`${ip} ${inside ? "in" : "not in"} ${cidr}`, () => expect(cidrContains(parseCidr(cidr)!, parseIp(ip)!)).toBe(inside));
  }

  test("property: an address is inside every prefix of itself, and its neighbour past the prefix is not", () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 1, max: 32 }), (s, prefix) => {
        const ip = parseIp(s)!;
        const bits = Buffer.from(ip.bytes).readUInt32BE(0);
        const network = prefix === 32 ? bits : (bits & ~((1 << (32 - prefix)) - 1)) >>> 0;
        const cidr = parseCidr(`${formatIp({ family: 4, bytes: new Uint8Array(Buffer.from([network >>> 24, (network >>> 16) & 255, (network >>> 8) & 255, network & 255])) })}/${prefix}`)!;
        expect(cidrContains(cidr, ip)).toBe(true);
        const flipped = new Uint8Array(ip.bytes);
        flipped[(prefix - 1) >> 3]! ^= 0x80 >> ((prefix - 1) & 7); // flip the last bit inside the prefix
        expect(cidrContains(cidr, { family: 4, bytes: flipped })).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  test("loopback", () => {
    expect(isLoopback(parseIp("127.0.0.1")!)).toBe(true);
    expect(isLoopback(parseIp("127.8.9.10")!)).toBe(true);
    expect(isLoopback(parseIp("::1")!)).toBe(true);
    expect(isLoopback(parseIp("::ffff:127.0.0.1")!)).toBe(true);
    expect(isLoopback(parseIp("0.0.0.0")!)).toBe(false);
    expect(isLoopback(parseIp("::")!)).toBe(false);
    expect(isLoopback(parseIp("10.0.0.1")!)).toBe(false);
  });
});

describe("cidrWithin", () => {
  test("a range inside another: same family, a prefix at least as long, inside its network", () => {
    const c = (text: string) => parseCidr(text)!;
    expect(cidrWithin(c("10.1.0.0/16"), c("10.0.0.0/8"))).toBe(true);
    expect(cidrWithin(c("10.0.0.0/8"), c("10.0.0.0/8"))).toBe(true);
    expect(cidrWithin(c("10.0.0.0/8"), c("10.1.0.0/16"))).toBe(false); // wider
    expect(cidrWithin(c("11.0.0.0/16"), c("10.0.0.0/8"))).toBe(false);
    expect(cidrWithin(c("2001:db8:1::/48"), c("2001:db8::/32"))).toBe(true);
    expect(cidrWithin(c("2001:db9::/48"), c("2001:db8::/32"))).toBe(false);
    expect(cidrWithin(c("::ffff:10.0.0.0/104"), c("10.0.0.0/8"))).toBe(false); // another family
  });
});

describe("parseClientCidr", () => {
  test("an IPv4-mapped prefix of /96 or longer is the IPv4 prefix it spells; anything else as parseCidr has it (found in review)", () => {
    const text = (t: string) => {
      const cidr = parseClientCidr(t);
      return cidr && formatCidr(cidr);
    };
    expect(text("::ffff:192.0.2.0/120")).toBe("192.0.2.0/24");
    expect(text("::ffff:192.0.2.9")).toBe("192.0.2.9/32");
    expect(text("::ffff:0.0.0.0/96")).toBe("0.0.0.0/0");
    expect(text("::fffe:0:0/95")).toBe("::fffe:0:0/95"); // shorter: it reaches beyond the mapped addresses
    expect(text("::192.0.2.0/120")).toBe("::c000:200/120"); // IPv4-compatible, not mapped
    expect(text("2001:db8::/32")).toBe("2001:db8::/32");
    expect(text("192.0.2.0/24")).toBe("192.0.2.0/24");
    expect(text("::ffff:192.0.2.1/120")).toBeNull(); // host bits, as parseCidr
    expect(cidrContains(parseClientCidr("::ffff:192.0.2.0/120")!, parseIp("192.0.2.9")!)).toBe(true);
  });
});
