import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { addressesOf, allocateHost, hostOf, hostRange, randomUlaPrefix, validateNetworkPrefixes } from "../../../plugins/mesh/addresses.ts";
import { ConflictError, InvalidError } from "../../../src/errors.ts";
import { cidrContains, parseCidr, parseIp } from "../../../src/net/ip.ts";

describe("hostRange", () => {
  const cases: Array<[string, number, number]> = [
    ["100.64.0.0/16", 1, 65534],
    ["10.0.0.0/8", 1, 16777214],
    ["192.168.7.0/24", 1, 254],
    ["192.168.7.0/30", 1, 2],
    ["172.16.0.0/12", 1, 1048574],
  ];
  for (const [cidr, first, last] of cases) test(cidr, () => expect(hostRange(cidr)).toEqual({ first, last }));

  test("refuses pools smaller than /30 and malformed CIDRs", () => {
    expect(() => hostRange("192.168.7.0/31")).toThrow("too small: use /30 or larger");
    expect(() => hostRange("192.168.7.1/32")).toThrow("too small");
    expect(() => hostRange("192.168.7.1/24")).toThrow(InvalidError); // host bits set
    expect(() => hostRange("fd00::/48")).toThrow(InvalidError);
  });
});

describe("allocateHost", () => {
  const cases: Array<[string, number[], number]> = [
    ["100.64.0.0/16", [], 1],
    ["100.64.0.0/16", [1, 2, 3], 4],
    ["100.64.0.0/16", [2, 3], 1],
    ["100.64.0.0/16", [1, 3], 2],
    ["192.168.7.0/30", [1], 2],
  ];
  for (const [cidr, used, expected] of cases) test(`${cidr} with [${used}] → ${expected}`, () => expect(allocateHost(cidr, used)).toBe(expected));

  test("a full pool is refused with a clear message", () => {
    expect(() => allocateHost("100.64.0.0/30", [1, 2])).toThrow("pool 100.64.0.0/30 is full (2 addresses)");
    expect(() => allocateHost("100.64.0.0/30", new Set([2, 1]))).toThrow(ConflictError);
    expect(() => allocateHost("192.168.0.0/29", [1, 2, 3, 4, 5, 6])).toThrow("pool 192.168.0.0/29 is full (6 addresses)");
  });

  test("accepts any iterable", () => {
    function* used() {
      yield 1;
      yield 2;
    }
    expect(allocateHost("10.0.0.0/24", used())).toBe(3);
  });

  const smallPool = fc.integer({ min: 24, max: 30 }).map((prefix) => `10.20.30.0/${prefix}`);
  // A sequence of operations: allocate (true) or release the n-th allocated node (a number).
  const operations = fc.array(fc.oneof(fc.constant<true>(true), fc.nat()), { maxLength: 120 });

  test("property: never duplicates, never the network or broadcast, always inside the pool; full pool throws", () => {
    fc.assert(
      fc.property(smallPool, operations, (pool, ops) => {
        const cidr = parseCidr(pool)!;
        const { first, last } = hostRange(pool);
        const used = new Set<number>();
        for (const op of ops) {
          if (op === true) {
            if (used.size === last - first + 1) {
              expect(() => allocateHost(pool, used)).toThrow(ConflictError);
              continue;
            }
            const host = allocateHost(pool, used);
            expect(used.has(host)).toBe(false);
            expect(host).toBeGreaterThanOrEqual(1);
            expect(host).toBeLessThanOrEqual(2 ** (32 - cidr.prefix) - 2);
            const { ipv4 } = addressesOf(pool, "fd00:1::/48", host);
            expect(cidrContains(cidr, parseIp(ipv4)!)).toBe(true);
            const lastByte = parseIp(ipv4)!.bytes[3]!;
            const hostMask = 2 ** (32 - cidr.prefix) - 1;
            expect(lastByte & hostMask).not.toBe(0); // not the network address
            expect(lastByte & hostMask).not.toBe(hostMask); // not the broadcast
            used.add(host);
          } else if (used.size > 0) {
            const released = [...used][op % used.size]!;
            used.delete(released);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test("property: the first free number after the one given last, going round the pool", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 254 }), { maxLength: 200 }), fc.integer({ min: 0, max: 254 }), (taken, after) => {
        const host = allocateHost("192.168.1.0/24", taken, after);
        expect(taken.includes(host)).toBe(false);
        // Every number strictly between `after` and `host`, going round from 254 to 1, is taken.
        for (let h = (after % 254) + 1; h !== host; h = (h % 254) + 1) expect(taken.includes(h)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  test("property: no number is given twice before the whole pool has been given once", () => {
    fc.assert(
      fc.property(smallPool, operations, (pool, ops) => {
        const { first, last } = hostRange(pool);
        const used = new Set<number>();
        const everGiven = new Set<number>();
        let after = 0;
        for (const op of ops) {
          if (op === true) {
            if (used.size === last - first + 1) continue;
            const host = allocateHost(pool, used, after);
            if (everGiven.size < last - first + 1) expect(everGiven.has(host)).toBe(false);
            used.add(host);
            everGiven.add(host);
            after = host;
          } else if (used.size > 0) {
            used.delete([...used][op % used.size]!);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test("a released number comes back only once the round reaches it", () => {
    const used = new Set([1, 2, 3, 4, 5]);
    used.delete(3);
    expect(allocateHost("100.64.0.0/16", used, 5)).toBe(6);
    expect(allocateHost("192.168.7.0/29", used, 5)).toBe(6); // 1–6 usable
    expect(allocateHost("192.168.7.0/29", new Set([1, 2, 4, 5, 6]), 6)).toBe(3); // round again
    expect(allocateHost("192.168.7.0/29", new Set([1, 2, 4, 5, 6]), 0)).toBe(3);
    expect(allocateHost("100.64.0.0/16", used)).toBe(3); // nothing given yet: from the start
  });
});

describe("addressesOf / hostOf", () => {
  const cases: Array<[string, string, number, string, string]> = [
    ["100.64.0.0/16", "fd7a:115c:a1e0::/48", 5, "100.64.0.5", "fd7a:115c:a1e0::5"],
    ["100.64.0.0/16", "fd7a:115c:a1e0::/48", 256, "100.64.1.0", "fd7a:115c:a1e0::100"],
    ["100.64.0.0/16", "fd7a:115c:a1e0::/48", 65534, "100.64.255.254", "fd7a:115c:a1e0::fffe"],
    ["10.0.0.0/8", "fd00:1:2:3::/64", 16777214, "10.255.255.254", "fd00:1:2:3::ff:fffe"],
    ["192.168.7.0/24", "fd12:3456:789a::/48", 1, "192.168.7.1", "fd12:3456:789a::1"],
  ];
  for (const [pool, prefix, host, ipv4, ipv6] of cases) {
    test(`${pool} host ${host}`, () => {
      expect(addressesOf(pool, prefix, host)).toEqual({ ipv4, ipv6 });
      expect(hostOf(pool, ipv4)).toBe(host);
    });
  }

  test("refuses host numbers and addresses outside the usable range", () => {
    expect(() => addressesOf("100.64.0.0/30", "fd00::/48", 0)).toThrow("outside pool");
    expect(() => addressesOf("100.64.0.0/30", "fd00::/48", 3)).toThrow("outside pool");
    expect(() => addressesOf("100.64.0.0/30", "fd00::/48", 1.5)).toThrow("outside pool");
    expect(() => addressesOf("100.64.0.0/30", "100.64.0.0/16", 1)).toThrow("ipv6");
    expect(() => hostOf("100.64.0.0/16", "100.65.0.1")).toThrow("not inside pool");
    expect(() => hostOf("100.64.0.0/16", "100.64.0.0")).toThrow("network or broadcast");
    expect(() => hostOf("100.64.0.0/16", "100.64.255.255")).toThrow("network or broadcast");
    expect(() => hostOf("100.64.0.0/16", "fd00::1")).toThrow("not an IPv4 address");
  });

  const pool = fc.record({ a: fc.integer({ min: 0, max: 255 }), prefix: fc.integer({ min: 16, max: 30 }) }).map(({ a, prefix }) => {
    // 10.a.0.0 masked to the prefix: always a valid network address inside 10/8.
    const value = ((10 << 24) | (a << 16)) >>> 0;
    const mask = (0xffffffff << (32 - prefix)) >>> 0;
    const network = (value & mask) >>> 0;
    return `${network >>> 24}.${(network >>> 16) & 255}.${(network >>> 8) & 255}.${network & 255}/${prefix}`;
  });

  test("property: IPv6 pairing is consistent — both addresses carry the same host number", () => {
    fc.assert(
      fc.property(pool, fc.integer({ min: 1, max: 2 ** 16 }), fc.constantFrom("fd7a:115c:a1e0::/48", "fd00:aa:bb:cc::/64"), (cidr, seed, prefix) => {
        const { first, last } = hostRange(cidr);
        const host = first + (seed % (last - first + 1));
        const { ipv4, ipv6 } = addressesOf(cidr, prefix, host);
        expect(hostOf(cidr, ipv4)).toBe(host);
        const v6 = parseIp(ipv6)!;
        expect(cidrContains(parseCidr(prefix)!, v6)).toBe(true);
        const low = ((v6.bytes[12]! << 24) >>> 0) + (v6.bytes[13]! << 16) + (v6.bytes[14]! << 8) + v6.bytes[15]!;
        expect(low).toBe(host);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("randomUlaPrefix", () => {
  test("is an RFC 4193 /48 that passes validation, and random", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const prefix = randomUlaPrefix();
      expect(prefix).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/);
      expect(validateNetworkPrefixes("100.64.0.0/16", prefix).ipv6).toBe(prefix);
      seen.add(prefix);
    }
    expect(seen.size).toBe(50);
  });
});

describe("validateNetworkPrefixes", () => {
  const accepted: Array<[string, string]> = [
    ["100.64.0.0/10", "fd7a:115c:a1e0::/48"],
    ["100.64.0.0/16", "fd7a:115c:a1e0::/48"],
    ["10.0.0.0/8", "fd00::/64"],
    ["172.16.0.0/12", "fd00:1:2::/48"],
    ["172.31.255.252/30", "fd00:1:2:3::/64"],
    ["192.168.0.0/16", "fdff:ffff:ffff::/48"],
  ];
  for (const [ipv4, ipv6] of accepted) test(`accepts ${ipv4} + ${ipv6}`, () => expect(validateNetworkPrefixes(ipv4, ipv6)).toEqual({ ipv4, ipv6 }));

  test("returns the canonical spelling", () => expect(validateNetworkPrefixes("100.64.0.0/16", "FD7A:115C:A1E0:0::/48")).toEqual({ ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" }));

  const refused: Array<[string, string, "ipv4" | "ipv6", string]> = [
    ["8.8.0.0/16", "fd00::/48", "ipv4", "not private address space"],
    ["100.0.0.0/8", "fd00::/48", "ipv4", "not private address space"], // wider than 100.64/10
    ["172.32.0.0/16", "fd00::/48", "ipv4", "not private address space"],
    ["10.0.0.0/7", "fd00::/48", "ipv4", "between /8 and /30"],
    ["10.0.0.0/31", "fd00::/48", "ipv4", "between /8 and /30"],
    ["10.0.0.1/24", "fd00::/48", "ipv4", "host bits"],
    ["office", "fd00::/48", "ipv4", "not an IPv4 CIDR"],
    ["fd00::/48", "fd00::/48", "ipv4", "not an IPv4 CIDR"],
    ["10.0.0.0/16", "2001:db8::/48", "ipv6", "unique local"],
    ["10.0.0.0/16", "fe80::/64", "ipv6", "unique local"],
    // fc00::/8 is the other half of fc00::/7, for which RFC 4193 defines no assignment (found in review).
    ["10.0.0.0/16", "fc00::/48", "ipv6", "inside fd00::/8"],
    ["10.0.0.0/16", "fcff:1:2::/48", "ipv6", "inside fd00::/8"],
    ["10.0.0.0/16", "fd00::/47", "ipv6", "between /48 and /64"],
    ["10.0.0.0/16", "fd00::/80", "ipv6", "between /48 and /64"],
    ["10.0.0.0/16", "fd00::1/64", "ipv6", "host bits"],
    ["10.0.0.0/16", "10.0.0.0/16", "ipv6", "not an IPv6 prefix"],
  ];
  for (const [ipv4, ipv6, field, message] of refused) {
    test(`refuses ${ipv4} + ${ipv6} naming ${field}`, () => {
      let error: unknown;
      try {
        validateNetworkPrefixes(ipv4, ipv6);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidError);
      expect((error as InvalidError).field).toBe(field);
      expect((error as InvalidError).message).toStartWith(`${field}: `);
      expect((error as InvalidError).message).toContain(message);
    });
  }
});
