/**
 * Zone transfers and TSIG against kdig (Knot's client, an independent implementation of RFC 8945
 * and RFC 5936): a signed AXFR of a zone larger than one message verifies message by message,
 * IXFR answers current secondaries with the SOA alone, and what is not allowed is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { silentLogger } from "../../../src/log.ts";
import { decodeMessage, Rcode } from "../../../plugins/dns/message.ts";
import { nameEquals, parseName, type Name } from "../../../plugins/dns/names.ts";
import { answerAll, answerQuery, startDnsServer, ZoneTable, type DnsServer } from "../../../plugins/dns/server.ts";
import { ShieldGate } from "../../../plugins/dns/shield-gate.ts";
import { TYPE_AXFR, TYPE_IXFR, type TransferPolicy } from "../../../plugins/dns/transfer.ts";
import { readTsig, sign, verify, type TsigKey } from "../../../plugins/dns/tsig.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { ShieldSlot } from "../../../src/intel/shield.ts";
import { requireTool } from "../../helpers/tools.ts";

const origin = parseName("example.org.", null);
const hosts = Array.from({ length: 1500 }, (_, i) => `host${i} 300 IN A 10.${(i >> 8) & 255}.${i & 255}.1`).join("\n");
const zone = Zone.build(
  origin,
  parseZoneFile(`@ 3600 IN SOA ns1 hostmaster 2026112301 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\n${hosts}\n`, { origin, defaultTtl: 3600 }),
);
const secret = new Uint8Array(32).map((_, i) => i * 7 + 1);
const key: TsigKey = { name: parseName("transfer-key.", null), algorithm: "hmac-sha256", secret };
const keyArg = `hmac-sha256:transfer-key:${Buffer.from(secret).toString("base64")}`;
const wrongKeyArg = `hmac-sha256:transfer-key:${Buffer.from(new Uint8Array(32).fill(9)).toString("base64")}`;

/** Only 127.0.0.1 signing with transfer-key. */
const policy: TransferPolicy = { allowed: (client, _zone, keyName) => client === "127.0.0.1" && keyName !== null && nameEquals(keyName, key.name) };
const findKey = (name: Name) => (nameEquals(name, key.name) ? key : null);

const kdig = requireTool("kdig", "knot-dnsutils");
let server: DnsServer;
let port: number;
let udpPort: number;

beforeAll(async () => {
  const zones = new ZoneTable();
  zones.set(zone);
  server = await startDnsServer({ udp: [{ address: "127.0.0.1", port: 0 }], tcp: [{ address: "127.0.0.1", port: 0 }], zones, tsigKey: findKey, transfers: policy, log: silentLogger });
  port = server.tcpPorts[0]!;
  udpPort = server.udpPorts[0]!;
});
afterAll(() => server?.stop());

async function dig(...args: string[]): Promise<{ out: string; code: number }> {
  const over = args.includes("+notcp") ? udpPort : port;
  const proc = Bun.spawn([kdig!, "@127.0.0.1", "-p", String(over), "+time=3", "+retry=0", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { out: out + err, code: await proc.exited };
}

describe.skipIf(kdig === null)("transfers with kdig", () => {
  test("a signed AXFR: every record once, the SOA first and last, every message's TSIG verified", async () => {
    const { out, code } = await dig("-y", keyArg, "AXFR", "example.org.", "+nocomments", "+nostats");
    expect(code).toBe(0);
    const lines = out.split("\n").filter((l) => /\sIN\s/.test(l));
    expect(lines.length).toBe(1 + 1 + 1 + 1500 + 1);
    expect(lines[0]).toMatch(/\tSOA\t/);
    expect(lines.at(-1)).toMatch(/\tSOA\t/);
    expect(lines.filter((l) => /^host742\.example\.org\.\s/.test(l))[0]).toMatch(/10\.2\.230\.1$/);
    expect(out).not.toMatch(/;; ERROR|failed|BADSIG|BADKEY/);
  });

  test("the transfer takes several messages, each one signed", async () => {
    const { out, code } = await dig("-y", keyArg, "AXFR", "example.org.");
    expect(code).toBe(0);
    expect(out).toMatch(/Received \d+ B \(([2-9]|\d{2,}) messages, 1504 records\)/);
  });

  test("IXFR from a current secondary: the SOA alone; from one behind: the whole zone", async () => {
    const current = await dig("-y", keyArg, "IXFR=2026112301", "example.org.", "+nocomments", "+nostats");
    expect(current.out.split("\n").filter((l) => /\sIN\s/.test(l)).length).toBe(1);
    const behind = await dig("-y", keyArg, "IXFR=2026112200", "example.org.", "+nocomments", "+nostats");
    expect(behind.out.split("\n").filter((l) => /\sIN\s/.test(l)).length).toBe(1504);
  });

  test("unsigned, with a wrong secret, or for a name that is not an apex: refused, NOTAUTH", async () => {
    expect((await dig("AXFR", "example.org.")).out).toMatch(/REFUSED/);
    expect((await dig("-y", wrongKeyArg, "AXFR", "example.org.")).out).toMatch(/NOTAUTH|BADSIG/);
    expect((await dig("-y", keyArg, "AXFR", "host1.example.org.")).out).toMatch(/NOTAUTH/);
  });

  test("a signed ordinary query gets a signed answer kdig verifies", async () => {
    const { out, code } = await dig("-y", keyArg, "+notcp", "A", "host5.example.org.");
    expect(code).toBe(0);
    expect(out).toMatch(/NOERROR/);
    expect(out).toMatch(/TSIG PSEUDOSECTION/);
    expect(out).toMatch(/\tA\t10\.0\.5\.1/);
    expect(out).not.toMatch(/;; ERROR|BADSIG|failed/);
  });
});

describe("TSIG in process", () => {
  const ctx = { zones: (() => { const z = new ZoneTable(); z.set(zone); return z; })(), gate: { decide: () => "answer" as const }, tsigKey: findKey, transfers: policy, now: () => 1_800_000_000_000 };

  function axfrQuery(id: number): Uint8Array {
    const qname = new Uint8Array([7, ...Buffer.from("example"), 3, ...Buffer.from("org"), 0]);
    const p = new Uint8Array(12 + qname.length + 4);
    p.set([id >> 8, id & 255, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    p.set(qname, 12);
    p.set([0, TYPE_AXFR, 0, 1], 12 + qname.length);
    return p;
  }

  test("each message of an AXFR chains to the one before (RFC 8945 section 5.3.1)", () => {
    const request = sign(axfrQuery(77), key, { kind: "request" }, ctx.now());
    const messages = answerAll(request.message, "127.0.0.1", "tcp", ctx);
    expect(messages.length).toBeGreaterThan(1);
    let chain: Parameters<typeof verify>[3] = { kind: "response", requestMac: request.mac };
    for (const m of messages) {
      const tsigStart = tsigOffset(m);
      const tsig = readTsig(m, tsigStart);
      expect(verify(m, tsig, findKey, chain, ctx.now()).error).toBe(0);
      chain = { kind: "continuation", priorMac: tsig.mac };
    }
    // Out of order, a message does not verify.
    const second = messages[1]!;
    expect(verify(second, readTsig(second, tsigOffset(second)), findKey, { kind: "response", requestMac: request.mac }, ctx.now()).error).not.toBe(0);
  });

  test("a query signed outside the fudge window is NOTAUTH BADTIME, signed at the request's time with ours in Other Data: the client can check it and learn the offset (RFC 8945 section 5.2.3; found in review)", () => {
    const clientNow = ctx.now() - 1_000_000; // the client's clock is 1000 s behind ours
    const request = sign(axfrQuery(78), key, { kind: "request" }, clientNow);
    const [reply] = answerAll(request.message, "127.0.0.1", "tcp", ctx);
    expect(decodeMessage(reply!).rcode).toBe(9);
    const tsig = readTsig(reply!, tsigOffset(reply!));
    expect([tsig.error, tsig.mac.length, tsig.timeSigned]).toEqual([18, 32, clientNow / 1000]);
    expect(Buffer.from(tsig.other).readUIntBE(0, 6)).toBe(ctx.now() / 1000);
    expect(tsig.other.length).toBe(6);
    expect(verify(reply!, tsig, findKey, { kind: "response", requestMac: request.mac }, clientNow).error).toBe(0);
  });

  test("an IXFR without the secondary's SOA in authority is FORMERR, not 'current' (RFC 1995 section 3; found in review)", () => {
    const ixfr = axfrQuery(80);
    ixfr[ixfr.length - 3] = TYPE_IXFR;
    const [reply] = answerAll(sign(ixfr, key, { kind: "request" }, ctx.now()).message, "127.0.0.1", "tcp", ctx);
    const message = decodeMessage(reply!);
    expect([message.rcode, message.answer.length]).toEqual([Rcode.FORMERR, 0]);
  });

  test("a MAC cut to less than half the hash (or 10 octets), or longer than it, is FORMERR; a truncation the RFC allows is BADTRUNC (RFC 8945 section 5.2.2.1)", () => {
    const request = sign(axfrQuery(81), key, { kind: "request" }, ctx.now()).message;
    const answer = (macLength: number) => decodeMessage(answerAll(withMacLength(request, macLength), "127.0.0.1", "tcp", ctx)[0]!);
    for (const length of [0, 8, 10, 15, 33]) {
      const reply = answer(length);
      expect([length, reply.rcode, reply.additional.some((r) => r.type === 250)]).toEqual([length, Rcode.FORMERR, false]);
    }
    for (const length of [16, 20, 31]) {
      const reply = answerAll(withMacLength(request, length), "127.0.0.1", "tcp", ctx)[0]!;
      expect([length, decodeMessage(reply).rcode, readTsig(reply, tsigOffset(reply)).error]).toEqual([length, 9, 22]);
    }
    expect(answer(32).rcode).toBe(Rcode.NOERROR);
  });

  test("BADTRUNC is signed when the truncated MAC verified, a truncated MAC that does not verify is BADSIG, unsigned (RFC 8945 section 5.3.2; found in review)", () => {
    const request = sign(axfrQuery(82), key, { kind: "request" }, ctx.now());
    const truncatedRequest = withMacLength(request.message, 16);
    const reply = answerAll(truncatedRequest, "127.0.0.1", "tcp", ctx)[0]!;
    const tsig = readTsig(reply, tsigOffset(reply));
    expect([decodeMessage(reply).rcode, tsig.error, tsig.mac.length]).toEqual([9, 22, 32]);
    const requestMac = readTsig(truncatedRequest, tsigOffset(truncatedRequest)).mac;
    expect(verify(reply, tsig, findKey, { kind: "response", requestMac }, ctx.now()).error).toBe(0);

    const forged = withMacLength(request.message, 16);
    forged[forged.length - 6 - 16]! ^= 0xff; // the MAC's first octet: its 16, then the original ID, the error and an empty Other
    const refused = answerAll(forged, "127.0.0.1", "tcp", ctx)[0]!;
    const unsigned = readTsig(refused, tsigOffset(refused));
    expect([decodeMessage(refused).rcode, unsigned.error, unsigned.mac.length]).toEqual([9, 16, 0]);
  });

  test("a TSIG record that is not the last record is FORMERR", () => {
    const request = sign(axfrQuery(79), key, { kind: "request" }, ctx.now()).message;
    // Append an empty OPT after the TSIG: ARCOUNT 2, TSIG first.
    const bad = new Uint8Array([...request, 0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
    bad[11] = 2;
    expect(decodeMessage(answerAll(bad, "127.0.0.1", "tcp", ctx)[0]!).rcode).toBe(Rcode.FORMERR);
  });
});

describe("a configured secondary's signed query past the UDP rate limit (found in review)", () => {
  const now = 1_800_000_000_000;
  const secondary = "192.0.2.53";
  const zones = new ZoneTable();
  zones.set(zone);

  /** The real gate: 5 answers a second per /24, every other limited query TC; only `secondary` is exempt. */
  function exhaustedGate(counted: string[] = []): ShieldGate {
    const gate = new ShieldGate({ shield: new ShieldSlot(), rate: 5, throttledRate: 1, slip: 2, trustLoopback: false, now: () => now, exempt: (client) => client === secondary, count: (what) => counted.push(what) });
    // Others in its /24 (a spoofer could be any of them) use up the prefix's answers.
    for (let i = 1; i <= 20; i++) gate.decide(`192.0.2.${i}`, [], 1, "udp");
    counted.length = 0;
    return gate;
  }
  const soaQuery = (id: number) => new Uint8Array([id >> 8, id & 255, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, ...Buffer.from("example"), 3, ...Buffer.from("org"), 0, 0, 6, 0, 1]);
  const answers = (gate: ShieldGate, packet: Uint8Array, client: string) =>
    Array.from({ length: 4 }, () => answerQuery(packet, client, "udp", zones, gate, { tsigKey: findKey, now: () => now }));

  test("is answered, signed, with the SOA: a secondary that checks TSIG throws an unsigned TC away", () => {
    const request = sign(soaQuery(90), key, { kind: "request" }, now);
    for (const reply of answers(exhaustedGate(), request.message, secondary)) {
      expect(reply).not.toBeNull();
      const message = decodeMessage(reply!);
      expect([message.rcode, message.tc, message.answer.map((r) => r.type)]).toEqual([Rcode.NOERROR, false, [6]]);
      expect(verify(reply!, readTsig(reply!, tsigOffset(reply!)), findKey, { kind: "response", requestMac: request.mac }, now).error).toBe(0);
    }
  });

  test("a replay is limited as anyone's (RFC 8945 section 5.2.3; found in review: a captured one replayed within the fudge was answered each time); other checks of the key are not, in the same second or earlier (found in review: secondaries sharing a key were limited)", () => {
    const gate = exhaustedGate();
    const vouchedTimes = new Map<string, number>();
    const ask = (packet: Uint8Array) => {
      const reply = answerQuery(packet, secondary, "udp", zones, gate, { tsigKey: findKey, now: () => now, vouchedTimes });
      return reply === null || decodeMessage(reply).tc ? "limited" : "answered";
    };
    const signedAt = (id: number, at: number) => sign(soaQuery(id), key, { kind: "request" }, at).message;
    const captured = signedAt(94, now - 2_000);
    expect(ask(captured)).toBe("answered");
    expect([ask(captured), ask(captured)]).toEqual(["limited", "limited"]);
    expect(ask(signedAt(95, now - 2_000))).toBe("answered"); // another check in the same second (another zone, a sharer of the key)
    expect(ask(signedAt(96, now - 3_000))).toBe("answered"); // a sharer whose clock is behind
    expect(ask(signedAt(97, now - 1_000))).toBe("answered"); // the secondary's next check
    expect(ask(signedAt(96, now - 3_000))).toBe("limited"); // each of them replayed
    expect(ask(signedAt(95, now - 2_000))).toBe("limited");
  });

  test("the analytics count what the gate's limit did in the end: nothing for the answered ones, slipped or rate_limited for the others (found in review: the answered ones were counted as limited)", () => {
    const counted: string[] = [];
    const gate = exhaustedGate(counted);
    const vouchedTimes = new Map<string, number>();
    const ask = (packet: Uint8Array, client = secondary) => answerQuery(packet, client, "udp", zones, gate, { tsigKey: findKey, now: () => now, vouchedTimes });
    const signed = sign(soaQuery(100), key, { kind: "request" }, now).message;
    for (const packet of [signed, sign(soaQuery(101), key, { kind: "request" }, now).message]) expect(decodeMessage(ask(packet)!).tc).toBe(false);
    expect(counted).toEqual([]);
    const wrongKey: TsigKey = { ...key, secret: new Uint8Array(32).fill(9) };
    const limited = [signed, sign(soaQuery(102), wrongKey, { kind: "request" }, now).message, soaQuery(103), signed, sign(soaQuery(104), key, { kind: "request" }, now).message, soaQuery(105)];
    const outcomes = limited.map((packet, i) => ask(packet, i === 4 ? "192.0.2.54" : secondary)).map((r) => (r === null ? "rate_limited" : decodeMessage(r).tc ? "slipped" : "answered"));
    expect(outcomes).not.toContain("answered"); // a replay, a wrong key, unsigned, from another address of the prefix
    expect(counted).toEqual(outcomes);
  });

  test("unsigned, signed with a wrong key, or from another address of the prefix: still limited (TC or nothing)", () => {
    const wrongKey: TsigKey = { ...key, secret: new Uint8Array(32).fill(9) };
    const limited = (packet: Uint8Array, client: string) => new Set(answers(exhaustedGate(), packet, client).map((r) => (r === null ? "drop" : decodeMessage(r).tc && decodeMessage(r).additional.length === 0 ? "tc" : "answered")));
    expect(limited(soaQuery(91), secondary)).toEqual(new Set(["drop", "tc"]));
    expect(limited(sign(soaQuery(92), wrongKey, { kind: "request" }, now).message, secondary)).toEqual(new Set(["drop", "tc"]));
    expect(limited(sign(soaQuery(93), key, { kind: "request" }, now).message, "192.0.2.54")).toEqual(new Set(["drop", "tc"]));
  });
});

/** A signed message whose TSIG MAC is cut to (or padded to) `length` octets, MAC Size and RDLENGTH to match. */
function withMacLength(m: Uint8Array, length: number): Uint8Array {
  const start = tsigOffset(m);
  const wireLength = (name: Name) => name.reduce((n, l) => n + 1 + l.length, 1);
  const rdata = start + wireLength(decodeMessage(m).additional.at(-1)!.name) + 10;
  const macSizeAt = rdata + wireLength(readTsig(m, start).algorithm) + 8;
  const macLength = (m[macSizeAt]! << 8) | m[macSizeAt + 1]!;
  const mac = m.subarray(macSizeAt + 2, macSizeAt + 2 + macLength);
  const newMac = new Uint8Array(length).map((_, i) => mac[i] ?? 0);
  const out = new Uint8Array([...m.subarray(0, macSizeAt), length >> 8, length & 255, ...newMac, ...m.subarray(macSizeAt + 2 + macLength)]);
  const rdlength = out.length - rdata;
  out[rdata - 2] = rdlength >> 8;
  out[rdata - 1] = rdlength & 255;
  return out;
}

/** Where the (last) TSIG record starts: found by walking the message's records. */
function tsigOffset(m: Uint8Array): number {
  const message = decodeMessage(m);
  expect(message.additional.at(-1)?.type).toBe(250);
  // The TSIG is last; its RDATA is at the end, so search back for its owner by re-encoding length.
  const rdlength = message.additional.at(-1)!.rdata.length;
  const ownerLength = message.additional.at(-1)!.name.reduce((n, l) => n + 1 + l.length, 1);
  return m.length - rdlength - 10 - ownerLength;
}
