import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { CidrSet } from "../../../src/intel/cidr-set.ts";
import { cidrContains, formatIp, parseCidr, parseIp, type Cidr, type IpAddress } from "../../../src/net/ip.ts";

const ip = (text: string): IpAddress => parseIp(text)!;
const setOf = (...cidrs: string[]) => CidrSet.build(cidrs);

describe("CidrSet membership", () => {
  test("range edges are exact", () => {
    const set = setOf("10.0.0.0/8", "192.168.1.128/25", "203.0.113.7");
    const cases: Array<[string, boolean]> = [
      ["9.255.255.255", false],
      ["10.0.0.0", true],
      ["10.255.255.255", true],
      ["11.0.0.0", false],
      ["192.168.1.127", false],
      ["192.168.1.128", true],
      ["192.168.1.255", true],
      ["192.168.2.0", false],
      ["203.0.113.6", false],
      ["203.0.113.7", true],
      ["203.0.113.8", false],
    ];
    for (const [address, expected] of cases) expect([address, set.containsText(address)]).toEqual([address, expected]);
  });

  test("the ends of the address space", () => {
    const set = setOf("0.0.0.0/32", "255.255.255.255/32", "::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
    for (const address of ["0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]) expect(set.containsText(address)).toBe(true);
    for (const address of ["0.0.0.1", "255.255.255.254", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"]) expect(set.containsText(address)).toBe(false);
    expect(set.ranges).toBe(4);
    const everything = setOf("0.0.0.0/0", "::/0");
    for (const address of ["0.0.0.0", "255.255.255.255", "::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]) expect(everything.containsText(address)).toBe(true);
  });

  test("overlapping, nested, duplicate and adjacent entries merge; gaps do not", () => {
    const cases: Array<[string[], number]> = [
      [["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"], 1], // nested
      [["10.0.0.0/16", "10.0.0.0/16", "10.0.0.0/16"], 1], // duplicates
      [["10.0.0.0/9", "10.128.0.0/9"], 1], // adjacent halves
      [["10.0.0.1", "10.0.0.0", "10.0.0.2", "10.0.0.3"], 1], // adjacent hosts, out of order
      [["10.0.0.0/24", "10.0.2.0/24"], 2], // a one-/24 gap
      [["0.0.0.0/1", "128.0.0.0/1"], 1], // the whole space
      [["2001:db8::/33", "2001:db8:8000::/33"], 1],
      [["2001:db8::/32", "2001:db8:1::/48", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"], 1],
      [["2001:db8::/64", "2001:db8:0:2::/64"], 2],
      [["::/1", "8000::/1"], 1],
      [["10.0.0.0/8", "::ffff:10.0.0.0/104"], 2], // families never merge with each other
    ];
    for (const [cidrs, ranges] of cases) {
      const set = CidrSet.build(cidrs);
      expect([cidrs, set.ranges]).toEqual([cidrs, ranges]);
      expect(set.size).toBe(cidrs.length);
    }
  });

  test("match returns the merged range", () => {
    const set = setOf("10.0.0.0/24", "10.0.1.0/24", "2001:db8::/48", "2001:db8:1::/48");
    const range = (address: string) => {
      const m = set.match(ip(address));
      return m && `${formatIp(m.first)}-${formatIp(m.last)}`;
    };
    expect(range("10.0.1.77")).toBe("10.0.0.0-10.0.1.255");
    expect(range("::ffff:10.0.0.1")).toBe("10.0.0.0-10.0.1.255");
    expect(range("2001:db8:1::1")).toBe("2001:db8::-2001:db8:1:ffff:ffff:ffff:ffff:ffff");
    expect(range("10.0.2.0")).toBeNull();
    expect(range("2001:db8:2::")).toBeNull();
  });

  test("IPv4-mapped IPv6 addresses match IPv4 entries, as cidrContains does", () => {
    const set = setOf("10.0.0.0/8", "2001:db8::/32");
    expect(set.contains(ip("::ffff:10.1.2.3"))).toBe(true);
    expect(set.contains(ip("::ffff:11.1.2.3"))).toBe(false);
    expect(set.contains(ip("::10.1.2.3"))).toBe(false); // IPv4-compatible, deprecated: not mapped
    expect(set.contains(ip("::ffff:0:10.1.2.3"))).toBe(false); // IPv4-translated: not mapped either
    // An IPv6 entry spelled in mapped form still matches the mapped address (and only it).
    const mappedEntry = setOf("::ffff:192.0.2.0/120");
    expect(mappedEntry.contains(ip("::ffff:192.0.2.9"))).toBe(true);
    expect(mappedEntry.contains(ip("192.0.2.9"))).toBe(false);
  });

  test("IPv6 prefixes /0 to /128: first and last are in, their neighbours are out", () => {
    const base = toBig(ip("2001:db8:85a3:8d3:1319:8a2e:370:7348").bytes);
    for (let prefix = 0; prefix <= 128; prefix++) {
      const host = (1n << BigInt(128 - prefix)) - 1n;
      const first = base & ~host & MAX128;
      const last = first | host;
      const set = CidrSet.build([{ family: 6, bytes: fromBig(first), prefix }]);
      expect([prefix, set.contains(v6(first)), set.contains(v6(last))]).toEqual([prefix, true, true]);
      if (first > 0n) expect([prefix, set.contains(v6(first - 1n))]).toEqual([prefix, false]);
      if (last < MAX128) expect([prefix, set.contains(v6(last + 1n))]).toEqual([prefix, false]);
    }
  });

  test("IPv4 prefixes /0 to /32 likewise", () => {
    for (let prefix = 0; prefix <= 32; prefix++) {
      const host = prefix === 32 ? 0 : 2 ** (32 - prefix) - 1;
      const first = 0xc0a80101 - (0xc0a80101 % (host + 1));
      const last = first + host;
      const set = CidrSet.build([{ family: 4, bytes: v4(first).bytes, prefix }]);
      expect([prefix, set.contains(v4(first)), set.contains(v4(last))]).toEqual([prefix, true, true]);
      if (first > 0) expect([prefix, set.contains(v4(first - 1))]).toEqual([prefix, false]);
      if (last < 0xffffffff) expect([prefix, set.contains(v4(last + 1))]).toEqual([prefix, false]);
    }
  });

  test("host bits in a Cidr object are ignored, not trusted", () => {
    const set = CidrSet.build([{ family: 4, bytes: Uint8Array.of(10, 0, 0, 77), prefix: 24 }]);
    expect(set.containsText("10.0.0.0")).toBe(true);
    expect(set.containsText("10.0.0.255")).toBe(true);
  });

  test("text that is not an address is not in the set; a bad entry refuses the build", () => {
    const set = setOf("0.0.0.0/0", "::/0");
    for (const bad of ["", "10.0.0", "10.0.0.0/8", "fe80::1%eth0", "banana"]) expect(set.containsText(bad)).toBe(false);
    expect(() => setOf("10.0.0.1/8")).toThrow(/not a CIDR/);
    expect(() => setOf("nonsense")).toThrow(/not a CIDR/);
    expect(() => CidrSet.build([{ family: 4, bytes: new Uint8Array(4), prefix: 33 }])).toThrow(/not a CIDR/);
    expect(() => CidrSet.build([{ family: 6, bytes: new Uint8Array(4), prefix: 8 }])).toThrow(/not a CIDR/);
  });

  test("an empty set contains nothing", () => {
    const set = CidrSet.build([]);
    expect([set.size, set.ranges, set.byteLength]).toEqual([0, 0, 0]);
    expect(set.containsText("1.2.3.4")).toBe(false);
    expect(set.containsText("::1")).toBe(false);
    expect(set.match(ip("::ffff:1.2.3.4"))).toBeNull();
  });
});

describe("CidrSet against a naive matcher", () => {
  // Bytes from a small alphabet most of the time, so entries overlap, nest and touch.
  const byte = fc.oneof(fc.constantFrom(0, 1, 127, 128, 254, 255), fc.integer({ min: 0, max: 255 }));
  const v4Cidr = fc.tuple(fc.array(byte, { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 })).map(([b, p]) => masked(4, b, p));
  const v6Prefix = fc.oneof(fc.integer({ min: 0, max: 128 }), fc.integer({ min: 100, max: 128 }));
  // IPv6 bytes: one of a few bases with a few bytes changed, so entries share prefixes of
  // every length and their order is decided deep in the address as well as at its top.
  const v6Bytes = fc
    .tuple(
      fc.constantFrom([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(12).fill(0)], new Array<number>(16).fill(0), new Array<number>(16).fill(0xff)),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), byte), { maxLength: 3 }),
    )
    .map(([base, changes]) => {
      const b = [...base];
      for (const [i, value] of changes) b[i] = value;
      return b;
    });
  const v6Cidr = fc.tuple(fc.oneof(v6Bytes, fc.array(byte, { minLength: 16, maxLength: 16 })), v6Prefix).map(([b, p]) => masked(6, b, p));
  const address = fc.oneof(
    fc.array(byte, { minLength: 4, maxLength: 4 }).map((b): IpAddress => ({ family: 4, bytes: Uint8Array.from(b) })),
    v6Bytes.map((b): IpAddress => ({ family: 6, bytes: Uint8Array.from(b) })),
  );

  test("property: same answers at random addresses and at every entry's edges", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(v4Cidr, v6Cidr), { maxLength: 40 }), fc.array(address, { maxLength: 40 }), (cidrs, randomProbes) => {
        const set = CidrSet.build(cidrs);
        const probes = [...randomProbes, ...cidrs.flatMap(edgesOf)];
        probes.push(...probes.filter((p) => p.family === 4).map(mapped));
        for (const probe of probes) {
          const expected = cidrs.some((c) => cidrContains(c, probe));
          expect([formatIp(probe), set.contains(probe)]).toEqual([formatIp(probe), expected]);
          const m = set.match(probe);
          expect(m !== null).toBe(expected);
          if (m) {
            const at = probe.family === 6 && m.first.family === 4 ? { family: 4 as const, bytes: probe.bytes.slice(12) } : probe;
            expect(compare(m.first.bytes, at.bytes) <= 0 && compare(at.bytes, m.last.bytes) <= 0).toBe(true);
          }
        }
        expect(set.size).toBe(cidrs.length);
        expect(set.ranges).toBeLessThanOrEqual(cidrs.length);
      }),
      { numRuns: 1500 },
    );
  });
});

describe("a million entries", () => {
  test("builds in well under the test budget and answers at the edges", () => {
    // 750,000 IPv4 hosts two apart (10.0.0.0, 10.0.0.2, …) and 250,000 IPv6 /64s two apart,
    // given in a scrambled order: nothing merges, so ranges must equal entries.
    const v4Count = 750_000;
    const v6Count = 250_000;
    const cidrs: Cidr[] = [];
    for (let i = 0; i < v4Count; i++) cidrs.push({ family: 4, bytes: v4(0x0a000000 + 2 * ((i * 7919) % v4Count)).bytes, prefix: 32 });
    for (let i = 0; i < v6Count; i++) {
      const n = 2 * ((i * 7919) % v6Count);
      const bytes = new Uint8Array(16);
      bytes.set([0x20, 0x01, 0x0d, 0xb8, 0, n >>> 16, (n >>> 8) & 0xff, n & 0xff]);
      cidrs.push({ family: 6, bytes, prefix: 64 });
    }
    const set = CidrSet.build(cidrs); // its speed is measured by scripts/bench/intel.ts, not here
    expect(set.size).toBe(1_000_000);
    expect(set.ranges).toBe(1_000_000);
    expect(set.byteLength).toBe(v4Count * 8 + v6Count * 32);
    const lastV4 = 0x0a000000 + 2 * (v4Count - 1);
    expect([set.contains(v4(0x0a000000)), set.contains(v4(0x0a000001)), set.contains(v4(lastV4)), set.contains(v4(lastV4 + 1))]).toEqual([true, false, true, false]);
    expect(set.containsText("::ffff:10.0.0.4")).toBe(true);
    expect(set.containsText("2001:db8::ffff:ffff:ffff:ffff")).toBe(true); // n = 0
    expect(set.containsText("2001:db8:0:1::")).toBe(false); // n = 1
    expect(set.containsText("2001:db8:7:a11e::1")).toBe(true); // n = 499,998 = 0x7a11e
    expect(set.containsText("2001:db8:7:a120::")).toBe(false); // n = 500,000: past the end
  });
});

// ---- helpers ----

const MAX128 = (1n << 128n) - 1n;

function toBig(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function fromBig(n: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  for (let i = 15; i >= 0; i--, n >>= 8n) bytes[i] = Number(n & 0xffn);
  return bytes;
}

function v6(n: bigint): IpAddress {
  return { family: 6, bytes: fromBig(n) };
}

function v4(n: number): IpAddress {
  return { family: 4, bytes: Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff) };
}

function masked(family: 4 | 6, raw: number[], prefix: number): Cidr {
  const bytes = Uint8Array.from(raw, (b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff));
  const cidr = { family, bytes, prefix };
  if (!parseCidr(`${formatIp(cidr)}/${prefix}`)) throw new Error("test bug: host bits left");
  return cidr;
}

/** First and last address of a CIDR and their outside neighbours (where they exist). */
function edgesOf(cidr: Cidr): IpAddress[] {
  const bits = cidr.family === 4 ? 32 : 128;
  const max = (1n << BigInt(bits)) - 1n;
  const first = toBig(cidr.bytes);
  const last = first | ((1n << BigInt(bits - cidr.prefix)) - 1n);
  const at = (n: bigint): IpAddress => {
    const bytes = fromBig(n);
    return cidr.family === 4 ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
  };
  return [first, last, first - 1n, last + 1n].filter((n) => n >= 0n && n <= max).map(at);
}

function mapped(address: IpAddress): IpAddress {
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(address.bytes, 12);
  return { family: 6, bytes };
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}
