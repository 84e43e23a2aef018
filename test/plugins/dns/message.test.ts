import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodeMessage,
  decodeQuery,
  encodeFormErr,
  encodeResponse,
  FormatError,
  Opcode,
  Rcode,
  type ResourceRecord,
  type Response,
} from "../../../plugins/dns/message.ts";
import { nameEquals, nameToWire, parseName, type Name } from "../../../plugins/dns/names.ts";
import { splitTokens } from "../../../plugins/dns/presentation.ts";
import { parseRdata, RRType } from "../../../plugins/dns/rdata.ts";
import { rdataByType } from "./arbitraries.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ""), "hex"));
const origin = parseName("example.com.", null);
const n = (text: string) => parseName(text, origin);
const rdata = (type: number, text: string) => parseRdata(type, splitTokens(text), origin);
const rr = (name: string, type: number, text: string, ttl = 300): ResourceRecord => ({
  name: n(name),
  type,
  class: 1,
  ttl,
  rdata: rdata(type, text),
});

const response = (over: Partial<Response>): Response => ({
  id: 0x1234,
  opcode: Opcode.QUERY,
  rcode: Rcode.NOERROR,
  aa: true,
  tc: false,
  rd: false,
  ra: false,
  question: { name: n("www"), type: RRType.A, class: 1 },
  answer: [],
  authority: [],
  additional: [],
  edns: null,
  ...over,
});

/** Every error decodeQuery throws must be a FormatError. */
const onlyFormatError = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
  }
};

// www.Example.com A IN, RD, with OPT: payload 4096, DO.
const QUERY_HEX = `
  1234 0100 0001 0000 0000 0001
  03 777777 07 4578616d706c65 03 636f6d 00 0001 0001
  00 0029 1000 00 00 8000 0000`;

describe("decodeQuery", () => {
  test("known answer", () => {
    const q = decodeQuery(unhex(QUERY_HEX));
    expect(q.id).toBe(0x1234);
    expect(q.opcode).toBe(Opcode.QUERY);
    expect(q.flags).toBe(0x0100);
    expect(q.rd).toBe(true);
    expect(nameEquals(q.question!.name, n("www.example.com."))).toBe(true);
    expect(new TextDecoder().decode(q.question!.name[1])).toBe("Example");
    expect(q.question!.type).toBe(RRType.A);
    expect(q.question!.class).toBe(1);
    expect(hex(q.rawQname!)).toBe("037777770745" + "78616d706c6503636f6d00");
    expect(q.edns).toEqual({ udpPayloadSize: 4096, version: 0, dnssecOk: true, options: new Uint8Array(0) });
  });

  test("no EDNS, RD clear", () => {
    const q = decodeQuery(unhex("abcd 0000 0001 0000 0000 0000 00 0006 0001"));
    expect(q).toMatchObject({ id: 0xabcd, rd: false, edns: null });
    expect(q.question!.name).toEqual([]);
    expect(q.question!.type).toBe(RRType.SOA);
  });

  test.each([
    ["short header", "1234 0100 0001 0000 0000"],
    ["QDCOUNT 0 for QUERY", "1234 0100 0000 0000 0000 0000"],
    ["QDCOUNT 2", "1234 0100 0002 0000 0000 0000 00 0001 0001 00 0001 0001"],
    ["truncated question", "1234 0100 0001 0000 0000 0000 00 0001 00"],
    ["truncated name", "1234 0100 0001 0000 0000 0000 03 7777"],
    ["trailing garbage", "1234 0100 0001 0000 0000 0000 00 0001 0001 ff"],
    ["missing record", "1234 0100 0001 0001 0000 0000 00 0001 0001"],
    ["extended label type", "1234 0100 0001 0000 0000 0000 41 00 0001 0001"],
    ["pointer to itself", "1234 0100 0001 0000 0000 0000 c00c 0001 0001"],
    ["pointer into the header", "1234 0100 0001 0000 0000 0000 c002 0001 0001"],
    // Answer owner at 17 points forward to 19, which points back to 17.
    ["two pointers to each other", "1234 0100 0001 0001 0000 0000 00 0001 0001 c013 c011 0001 0001 00000000 0000"],
    ["OPT not at root", "1234 0100 0001 0000 0000 0001 00 0001 0001 01 61 00 0029 1000 00000000 0000"],
    [
      "two OPTs",
      "1234 0100 0001 0000 0000 0002 00 0001 0001 00 0029 1000 00000000 0000 00 0029 1000 00000000 0000",
    ],
    ["OPT option truncated", "1234 0100 0001 0000 0000 0001 00 0001 0001 00 0029 1000 00000000 0003 000a 00"],
    ["OPT option overruns", "1234 0100 0001 0000 0000 0001 00 0001 0001 00 0029 1000 00000000 0004 000a 0001"],
    ["record data overruns", "1234 0100 0001 0000 0000 0001 00 0001 0001 00 0029 1000 00000000 0005 000a 0000"],
  ])("%s → FormatError", (_, h) => {
    expect(() => decodeQuery(unhex(h))).toThrow(FormatError);
  });

  test("a name longer than 255 octets → FormatError", () => {
    const labels = Array.from({ length: 5 }, () => "3f" + "61".repeat(63)).join("");
    expect(() => decodeQuery(unhex(`1234 0100 0001 0000 0000 0000 ${labels} 00 0001 0001`))).toThrow(FormatError);
  });

  test("records in answer and authority are tolerated and skipped", () => {
    const q = decodeQuery(
      unhex(`1234 0000 0001 0001 0001 0000 01 61 00 0001 0001
             c00c 0001 0001 0000012c 0004 c0000201
             01 62 c00c 0002 0001 0000012c 0002 c00c`),
    );
    expect(nameEquals(q.question!.name, n("a."))).toBe(true);
  });

  test("EDNS: payload under 512 is 512, version and DO read, options kept raw", () => {
    const q = decodeQuery(unhex("1234 0000 0001 0000 0000 0001 00 0001 0001 00 0029 0100 00 01 0000 0006 000a 0002 abcd"));
    expect(q.edns).toEqual({ udpPayloadSize: 512, version: 1, dnssecOk: false, options: unhex("000a0002abcd") });
  });

  test("NOTIFY without a question is allowed", () => {
    const q = decodeQuery(unhex("1234 2000 0000 0000 0000 0000"));
    expect(q.opcode).toBe(Opcode.NOTIFY);
    expect(q.question).toBeNull();
    expect(q.rawQname).toBeNull();
  });

  test("a long backward pointer chain is refused", () => {
    // Question root at 12; then 300 answer records whose owners each point to the previous owner.
    const parts = ["1234 0000 0001 012c 0000 0000 00 0001 0001"];
    let prev = 12;
    let at = 17;
    for (let i = 0; i < 300; i++) {
      parts.push((0xc000 | prev).toString(16) + "0001 0001 00000000 0000");
      prev = at;
      at += 12;
    }
    const packet = unhex(parts.join(""));
    // Followed pointer by pointer this would be exponential and hit the test's timeout.
    expect(() => decodeQuery(packet)).toThrow(FormatError);
  });

  test("robustness: random bytes only ever give FormatError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        onlyFormatError(() => decodeQuery(bytes));
        onlyFormatError(() => decodeMessage(bytes));
        encodeFormErr(bytes);
      }),
      { numRuns: 10000 },
    );
  });

  test("robustness: mutated valid queries only ever give FormatError", () => {
    const base = unhex(
      `1234 0100 0001 0001 0000 0002 03 777777 07 4578616d706c65 03 636f6d 00 0001 0001
       c00c 0005 0001 0000012c 0006 03 666f6f c010
       00 0029 1000 00 00 8000 0006 000a 0002 abcd
       c010 0001 0001 00000000 0004 c0000201`,
    );
    expect(decodeQuery(base).edns!.dnssecOk).toBe(true);
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(mutation, fc.nat({ max: 4 }), fc.nat({ max: 1 }), (edits, cut, mode) => {
        const bytes = base.slice(0, mode === 0 ? base.length : base.length - cut);
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        onlyFormatError(() => decodeQuery(bytes));
        onlyFormatError(() => decodeMessage(bytes));
      }),
      { numRuns: 15000 },
    );
  });
});

describe("encodeResponse", () => {
  test("known answer with compression", () => {
    const out = encodeResponse(
      response({
        rd: true,
        question: { name: n("www"), type: RRType.A, class: 1 },
        answer: [rr("www", RRType.A, "192.0.2.1")],
        authority: [rr("@", RRType.NS, "ns1", 3600)],
      }),
      512,
    );
    expect(hex(out)).toBe(
      unhexed(`1234 8500 0001 0001 0001 0000
        03 777777 07 6578616d706c65 03 636f6d 00 0001 0001
        c00c 0001 0001 0000012c 0004 c0000201
        c010 0002 0001 00000e10 0006 03 6e7331 c010`),
    );
  });

  test("the question echoes qnameWire and owners point to it", () => {
    const raw = nameToWire(parseName("WWW.Example.COM.", null));
    const out = encodeResponse(response({ qnameWire: raw, answer: [rr("www", RRType.A, "192.0.2.1")] }), 512);
    expect(hex(out.subarray(12, 12 + raw.length))).toBe(hex(raw));
    expect(hex(out.subarray(33, 35))).toBe("c00c");
  });

  test("compression shrinks a response with repeated names", () => {
    const answer = ["a", "b", "c", "d"].map((h) => rr("www", RRType.NS, `${h}.ns.example.com.`));
    const out = encodeResponse(response({ question: { name: n("www"), type: RRType.NS, class: 1 }, answer }), 65535);
    const uncompressed =
      12 + 17 + 4 + answer.reduce((sum, r) => sum + nameToWire(r.name).length + 10 + r.rdata.length, 0);
    expect(out.length).toBeLessThan(uncompressed - 40);
    const back = decodeMessage(out);
    expect(back.answer.map((r) => hex(r.rdata))).toEqual(answer.map((r) => hex(r.rdata)));
  });

  test("SRV, NAPTR and SVCB targets are not compressed; MX and SOA names are", () => {
    const records = [
      rr("www", RRType.A, "192.0.2.1"),
      rr("_sip._tcp", RRType.SRV, "0 5 5060 www.example.com."),
      rr("www", RRType.NAPTR, '100 10 "S" "SIP+D2U" "" www.example.com.'),
      rr("www", RRType.HTTPS, "1 www.example.com."),
    ];
    const out = encodeResponse(response({ answer: records }), 65535);
    const target = hex(nameToWire(n("www")));
    // The question's name, then each of SRV, NAPTR and HTTPS data carries it in full.
    expect(hex(out).split(target).length - 1).toBe(4);
    const back = decodeMessage(out);
    expect(back.answer.map((r) => hex(r.rdata))).toEqual(records.map((r) => hex(r.rdata)));

    const mx = encodeResponse(
      response({ answer: [rr("www", RRType.MX, "10 www"), rr("@", RRType.SOA, "www www 1 2 3 4 5")] }),
      65535,
    );
    expect(hex(mx).split(target).length - 1).toBe(1);
    expect(hex(mx)).toContain("000a" + "c00c"); // MX preference then a pointer to the qname
  });

  test("case-insensitive matching writes the first occurrence's case", () => {
    const out = encodeResponse(
      response({ question: { name: n("WWW.EXAMPLE.COM."), type: 1, class: 1 }, answer: [rr("www", 1, "192.0.2.1")] }),
      512,
    );
    expect(hex(out.subarray(33, 35))).toBe("c00c");
    expect(new TextDecoder().decode(decodeMessage(out).answer[0]!.name[0])).toBe("WWW");
  });

  test("extended RCODE goes into OPT; above 15 without EDNS is refused", () => {
    const out = encodeResponse(response({ rcode: Rcode.BADVERS, edns: { udpPayloadSize: 1232, dnssecOk: true } }), 512);
    const m = decodeMessage(out);
    expect(m.rcode).toBe(Rcode.BADVERS);
    expect(m.flags & 0xf).toBe(0);
    expect(m.edns).toEqual({ udpPayloadSize: 1232, version: 0, dnssecOk: true, options: new Uint8Array(0) });
    expect(() => encodeResponse(response({ rcode: Rcode.BADVERS }), 512)).toThrow(RangeError);
    expect(decodeMessage(encodeResponse(response({ rcode: Rcode.NXDOMAIN }), 512)).rcode).toBe(3);
  });

  test("truncation: TC, at most maxSize, whole RRsets only, OPT kept", () => {
    // 20 RRsets of 5 AAAA records each.
    const answer = Array.from({ length: 100 }, (_, i) => rr(`h${Math.floor(i / 5)}`, RRType.AAAA, `2001:db8::${i}`));
    const additional = [rr("ns1", RRType.A, "192.0.2.53")];
    const out = encodeResponse(response({ answer, additional, edns: { udpPayloadSize: 512, dnssecOk: false } }), 512);
    expect(out.length).toBeLessThanOrEqual(512);
    const m = decodeMessage(out);
    expect(m.tc).toBe(true);
    expect(m.edns).not.toBeNull();
    expect(m.answer.length).toBeGreaterThan(0);
    expect(m.answer.length % 5).toBe(0);
    expect(m.answer.map((r) => hex(r.rdata))).toEqual(answer.slice(0, m.answer.length).map((r) => hex(r.rdata)));
    expect(m.additional).toEqual([]);
    // The next RRset would not have fit.
    const more = encodeResponse(response({ answer: answer.slice(0, m.answer.length + 5) }), 65535);
    expect(more.length + 11).toBeGreaterThan(512);
  });

  test("truncation drops additional before authority before answer; TC only when required data is left out", () => {
    const answer = [rr("www", RRType.A, "192.0.2.1")];
    const authority = Array.from({ length: 3 }, (_, i) => rr("@", RRType.NS, `ns${i}`));
    const additional = Array.from({ length: 40 }, (_, i) => rr(`ns${i % 3}`, RRType.AAAA, `2001:db8::${i}`));
    const m = decodeMessage(encodeResponse(response({ answer, authority, additional }), 512));
    // Optional additional data left out is not truncation (RFC 2181 section 9)...
    expect(m.tc).toBe(false);
    expect(m.answer.length).toBe(1);
    expect(m.authority.length).toBe(3);
    expect(m.additional.length).toBeLessThan(40);
    // ...but a referral's glue is required (RFC 9471): then it is.
    expect(decodeMessage(encodeResponse({ ...response({ answer, authority, additional }), additionalRequired: true }, 512)).tc).toBe(true);
    const noAnswerRoom = Array.from({ length: 60 }, (_, i) => rr("www", RRType.AAAA, `2001:db8::${i}`));
    expect(decodeMessage(encodeResponse(response({ answer: noAnswerRoom }), 512)).tc).toBe(true);
    // RRsets here are runs of equal owner and type: ns0, ns1, ns2, ns0, ... each one record.
    const full = decodeMessage(encodeResponse(response({ answer, authority, additional }), 65535));
    expect(full.tc).toBe(false);
    expect(full.additional.length).toBe(40);
  });

  test("the encoder reuses its buffer but returns independent copies", () => {
    const a = encodeResponse(response({ id: 1 }), 512);
    const b = encodeResponse(response({ id: 2 }), 512);
    expect(a[1]).toBe(1);
    expect(b[1]).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// Round trip of generated record sets

const COMPRESSIBLE = new Set<number>([RRType.NS, RRType.CNAME, RRType.PTR, RRType.MX, RRType.SOA]);
const ldh = fc.stringMatching(/^[a-zA-Z0-9]{1,8}$/).map((s) => new TextEncoder().encode(s));
const lowerBytes = (b: Uint8Array) => b.map((x) => (x >= 0x41 && x <= 0x5a ? x + 0x20 : x));
const isLetter = (x: number) => (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7a;
/** The name with the case of some letters flipped, chosen by the bits of `mask`. */
const flipCase = (name: Name, mask: number): Name =>
  name.map((label, i) => label.map((x, j) => ((mask >> ((i * 3 + j) % 30)) & 1 && isLetter(x) ? x ^ 0x20 : x)));

/** Names from a small pool (so they repeat), in random case; rdata of every known type. */
const recordSet = fc
  .array(fc.array(ldh, { minLength: 0, maxLength: 3 }), { minLength: 1, maxLength: 4 })
  .chain((pool) => {
    const poolName = fc.tuple(fc.nat({ max: pool.length - 1 }), fc.nat()).map(([i, mask]) => flipCase(pool[i]!, mask));
    const poolWire = poolName.map(nameToWire);
    const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));
    const byType: [number, fc.Arbitrary<Uint8Array>][] = [
      ...Object.values(rdataByType),
      [RRType.NS, poolWire],
      [RRType.CNAME, poolWire],
      [RRType.MX, fc.tuple(fc.uint8Array({ minLength: 2, maxLength: 2 }), poolWire).map(([p, w]) => cat(p, w))],
      [
        RRType.SOA,
        fc.tuple(poolWire, poolWire, fc.uint8Array({ minLength: 20, maxLength: 20 })).map(([a, b, c]) => cat(a, b, c)),
      ],
    ];
    const record = fc
      .tuple(poolName, fc.constantFrom(...byType).chain(([type, data]) => data.map((d) => [type, d] as const)), fc.nat())
      .map(([name, [type, rdata], ttl]): ResourceRecord => ({ name, type, class: 1, ttl, rdata }));
    const section = fc.array(record, { maxLength: 8 });
    return fc.tuple(poolName, section, section, section);
  });

function expectSameRecords(got: ResourceRecord[], want: ResourceRecord[]) {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    const w = want[i]!;
    expect(nameEquals(g.name, w.name)).toBe(true);
    expect([g.type, g.class, g.ttl]).toEqual([w.type, w.class, w.ttl]);
    // Compressed rdata names come back in the case of their first occurrence in the message.
    if (COMPRESSIBLE.has(w.type)) expect(hex(lowerBytes(g.rdata))).toBe(hex(lowerBytes(w.rdata)));
    else expect(hex(g.rdata)).toBe(hex(w.rdata));
  });
}

describe("round trip", () => {
  test("encodeResponse → decodeMessage gives back the records", () => {
    fc.assert(
      fc.property(recordSet, fc.boolean(), ([qname, answer, authority, additional], withEdns) => {
        const res = response({
          question: { name: qname, type: RRType.A, class: 1 },
          answer,
          authority,
          additional,
          edns: withEdns ? { udpPayloadSize: 4096, dnssecOk: true } : null,
        });
        const out = encodeResponse(res, 65535);
        const m = decodeMessage(out);
        expect(m.tc).toBe(false);
        expect(m.qr).toBe(true);
        expect(m.id).toBe(0x1234);
        expect(m.questions.length).toBe(1);
        expect(hex(nameToWire(m.questions[0]!.name))).toBe(hex(nameToWire(qname)));
        expectSameRecords(m.answer, answer);
        expectSameRecords(m.authority, authority);
        expectSameRecords(m.additional, additional);
        expect(m.edns !== null).toBe(withEdns);
        // Compression never makes it bigger than writing names in full.
        const full = [...answer, ...authority, ...additional].reduce(
          (sum, r) => sum + nameToWire(r.name).length + 10 + r.rdata.length,
          12 + nameToWire(qname).length + 4 + (withEdns ? 11 : 0),
        );
        expect(out.length).toBeLessThanOrEqual(full);
      }),
      { numRuns: 500 },
    );
  });

  test("decodeQuery reads back an encoded query-shaped message", () => {
    fc.assert(
      fc.property(recordSet, ([qname]) => {
        const out = encodeResponse(response({ question: { name: qname, type: 28, class: 1 } }), 512);
        out[2]! &= 0x7f; // clear QR
        const q = decodeQuery(out);
        expect(hex(q.rawQname!)).toBe(hex(nameToWire(qname)));
        expect(q.question!.type).toBe(28);
      }),
      { numRuns: 200 },
    );
  });
});

describe("encodeFormErr", () => {
  test("echoes id, opcode and RD", () => {
    expect(hex(encodeFormErr(unhex("beef 2100 0001 0000 0000 0000 ff ff"))!)).toBe("beefa1010000000000000000");
  });

  test("with an OPT record (root, type 41, the payload size, version 0) when asked", () => {
    expect(hex(encodeFormErr(unhex("beef 0100 0001 0000 0000 0001 ff ff"), 1232)!)).toBe("beef81010000000000000001" + "00002904d0000000000000");
  });

  test("null for a short header or a response", () => {
    expect(encodeFormErr(unhex("beef 0100 0001 0000 0000"))).toBeNull();
    expect(encodeFormErr(unhex("beef 8100 0001 0000 0000 0000"))).toBeNull();
  });
});

function unhexed(h: string) {
  return hex(unhex(h));
}
