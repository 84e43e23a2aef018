/** fast-check generators of names and valid wire record data, shared by the dns tests. */
import fc from "fast-check";
import { nameToWire, type Name } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";

/** Labels of any octets (dots, quotes, NULs included) — the hard cases for escaping. */
export const label = () => fc.uint8Array({ minLength: 1, maxLength: 12 });
export const name = (maxLabels = 4): fc.Arbitrary<Name> => fc.array(label(), { maxLength: maxLabels });

const u8 = () => fc.integer({ min: 0, max: 0xff });
const u16 = () => fc.integer({ min: 0, max: 0xffff });
const u32 = () => fc.integer({ min: 0, max: 0xffffffff });
const bytes = (minLength: number, maxLength: number) => fc.uint8Array({ minLength, maxLength });

const be16 = (n: number) => [n >> 8, n & 0xff];
const be32 = (n: number) => [...be16(Math.floor(n / 0x10000)), ...be16(n & 0xffff)];
const cs = (b: Uint8Array) => [b.length, ...b];
const wire = (...parts: (number[] | Uint8Array)[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));
const nameWire = (maxLabels = 3) => name(maxLabels).map(nameToWire);

/** SvcParams with consistent keys: sorted, unique, mandatory listing only present keys. */
const svcParams = fc
  .record({
    alpn: fc.option(fc.array(bytes(1, 8), { minLength: 1, maxLength: 3 })),
    noDefaultAlpn: fc.boolean(),
    port: fc.option(u16()),
    ipv4: fc.option(fc.array(bytes(4, 4), { minLength: 1, maxLength: 3 })),
    ech: fc.option(bytes(1, 20)),
    ipv6: fc.option(fc.array(bytes(16, 16), { minLength: 1, maxLength: 2 })),
    generic: fc.option(fc.tuple(fc.integer({ min: 7, max: 65534 }), bytes(0, 10))),
    mandatory: fc.boolean(),
  })
  .map((p) => {
    const params: [number, number[]][] = [];
    if (p.alpn) params.push([1, p.alpn.flatMap((id) => cs(id))]);
    if (p.noDefaultAlpn) params.push([2, []]);
    if (p.port !== null) params.push([3, be16(p.port)]);
    if (p.ipv4) params.push([4, p.ipv4.flatMap((a) => Array.from(a))]);
    if (p.ech) params.push([5, Array.from(p.ech)]);
    if (p.ipv6) params.push([6, p.ipv6.flatMap((a) => Array.from(a))]);
    if (p.generic) params.push([p.generic[0], Array.from(p.generic[1])]);
    if (p.mandatory && params.length > 0) params.unshift([0, params.flatMap(([key]) => be16(key))]);
    return params.flatMap(([key, value]) => [...be16(key), ...be16(value.length), ...value]);
  });

/** A valid wire RDATA generator for each type the codecs know, plus an unknown type. */
export const rdataByType: Record<string, [number, fc.Arbitrary<Uint8Array>]> = {
  A: [RRType.A, bytes(4, 4)],
  AAAA: [RRType.AAAA, bytes(16, 16)],
  NS: [RRType.NS, nameWire()],
  CNAME: [RRType.CNAME, nameWire()],
  PTR: [RRType.PTR, nameWire()],
  MX: [RRType.MX, fc.tuple(u16(), nameWire()).map(([p, n]) => wire(be16(p), n))],
  TXT: [RRType.TXT, fc.array(bytes(0, 40), { minLength: 1, maxLength: 3 }).map((ss) => wire(...ss.map(cs)))],
  SOA: [
    RRType.SOA,
    fc.tuple(nameWire(), nameWire(), fc.array(u32(), { minLength: 5, maxLength: 5 })).map(([m, r, ns]) =>
      wire(m, r, ns.flatMap(be32)),
    ),
  ],
  SRV: [RRType.SRV, fc.tuple(u16(), u16(), u16(), nameWire()).map(([a, b, c, n]) => wire(be16(a), be16(b), be16(c), n))],
  NAPTR: [
    RRType.NAPTR,
    fc
      .tuple(u16(), u16(), bytes(0, 5), bytes(0, 10), bytes(0, 20), nameWire())
      .map(([o, p, f, s, r, n]) => wire(be16(o), be16(p), cs(f), cs(s), cs(r), n)),
  ],
  DS: [RRType.DS, fc.tuple(u16(), u8(), u8(), bytes(1, 48)).map(([t, a, d, h]) => wire(be16(t), [a, d], h))],
  SSHFP: [RRType.SSHFP, fc.tuple(u8(), u8(), bytes(1, 32)).map(([a, t, h]) => wire([a, t], h))],
  TLSA: [RRType.TLSA, fc.tuple(u8(), u8(), u8(), bytes(1, 32)).map(([u, s, m, h]) => wire([u, s, m], h))],
  CAA: [
    RRType.CAA,
    fc
      .tuple(u8(), fc.stringMatching(/^[a-z0-9]{1,15}$/), bytes(0, 30))
      .map(([f, tag, v]) => wire([f], cs(new TextEncoder().encode(tag)), v)),
  ],
  SVCB: [RRType.SVCB, fc.tuple(u16(), nameWire(), svcParams).map(([p, n, s]) => wire(be16(p), n, s))],
  HTTPS: [RRType.HTTPS, fc.tuple(u16(), nameWire(), svcParams).map(([p, n, s]) => wire(be16(p), n, s))],
  TYPE999: [999, bytes(0, 20)],
};

/** Any type with valid data for it. */
export const anyRdata = fc.oneof(
  ...Object.values(rdataByType).map(([type, data]) => data.map((rdata) => ({ type, rdata }))),
);
