import { afterEach, describe, expect, test } from "bun:test";
import { createLogger, silentLogger } from "../../../src/log.ts";
import { DomainSet } from "../../../plugins/dns/blocklist.ts";
import { ProviderHorizon } from "../../../plugins/dns/horizon.ts";
import { decodeMessage, decodeQuery, encodeResponse, Rcode, type Message, type Query, type ResourceRecord } from "../../../plugins/dns/message.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { RRType, rdataToText } from "../../../plugins/dns/rdata.ts";
import {
  allowClients,
  bunOutbound,
  startResolver,
  toCachedAnswer,
  type Outbound,
  type Resolver,
  type ResolverOptions,
} from "../../../plugins/dns/resolver.ts";
import { startDnsServer, ZoneTable, type QueryEvent } from "../../../plugins/dns/server.ts";
import { parseIp } from "../../../src/net/ip.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { soaSerial } from "../../../plugins/dns/transfer.ts";
import { ViewSerials } from "../../../plugins/dns/view-serials.ts";
import { buildQuery, DnsClient, freeUdpTcpPort, queryTcp } from "../../helpers/reference-dns.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures

const build = (origin: string, text: string) => {
  const o = parseName(origin, null);
  return Zone.build(o, parseZoneFile(text, { origin: o, defaultTtl: 3600 }));
};

const bigTxt = Array.from({ length: 20 }, (_, i) => `big TXT "${String(i).padStart(3, "0")}${"b".repeat(196)}"`).join("\n");

/** What the upstream serves: an ordinary zone, a short TTL, a CNAME into a blocked domain, an answer too big for UDP. */
const UPSTREAM_ZONES = [
  build(
    "example.org.",
    `$TTL 3600
@ SOA ns1 hostmaster 1 1h 15m 1w 300
@ NS ns1
ns1 A 192.0.2.53
www A 192.0.2.1
www AAAA 2001:db8::1
short 30 A 192.0.2.2
cloak CNAME x.ads.example.net.
${bigTxt}
`,
  ),
  build(
    "example.net.",
    `$TTL 600
@ SOA ns1 hostmaster 1 1h 15m 1w 60
@ NS ns1
ns1 A 192.0.2.54
ok.ads A 192.0.2.9
`,
  ),
];

const LOCAL_ZONE = build(
  "mesh.internal.",
  `$TTL 60
@ SOA ns hostmaster 1 1h 15m 1w 60
@ NS ns
ns A 10.0.0.1
db A 10.0.0.5
`,
);

const blocklist = DomainSet.from(["ads.example.net", "tracker.example", "*.wild.example"]);
const allowlist = DomainSet.from(["ok.ads.example.net"]);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The repo's own authoritative server on one port for UDP and TCP, counting what it is asked. */
async function startUpstream(): Promise<{ port: number; events: Array<Pick<QueryEvent, "transport" | "qtype"> & { qname: string }> }> {
  const zones = new ZoneTable();
  for (const zone of UPSTREAM_ZONES) zones.set(zone);
  const events: Array<Pick<QueryEvent, "transport" | "qtype"> & { qname: string }> = [];
  for (let attempt = 1; ; attempt++) {
    const port = await freeUdpTcpPort();
    try {
      const server = await startDnsServer({
        udp: [{ address: "127.0.0.1", port }],
        tcp: [{ address: "127.0.0.1", port }],
        zones,
        log: silentLogger,
        observer: { observe: (e) => events.push({ transport: e.transport, qtype: e.qtype, qname: nameToText(e.qname) }) },
      });
      cleanups.push(server.stop);
      return { port, events };
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
}

interface Started {
  resolver: Resolver;
  client: DnsClient;
  udp: number;
  tcp: number;
  ask(name: string, type?: number, edns?: boolean): Promise<Message & { wire: Uint8Array }>;
  askTcp(name: string, type?: number): Promise<Message & { wire: Uint8Array }>;
}

async function start(options: Partial<ResolverOptions> = {}): Promise<Started> {
  const resolver = await startResolver({
    udp: [{ address: "127.0.0.1", port: 0 }],
    tcp: [{ address: "127.0.0.1", port: 0 }],
    upstreams: [],
    blocklist,
    allowlist,
    blockMode: { kind: "sinkhole" },
    log: silentLogger,
    upstreamTimeoutMs: 500,
    ...options,
  });
  cleanups.push(resolver.stop);
  const [udp, tcp] = [resolver.udpPorts[0]!, resolver.tcpPorts[0]!];
  const client = await DnsClient.open(udp, { timeoutMs: 3000, retries: 0 });
  cleanups.push(() => client.close());
  const packet = (name: string, type: number, edns: boolean) =>
    buildQuery({ name: parseName(name.endsWith(".") ? name : `${name}.`, null), type, rd: true, ...(edns ? { edns: { payload: 1232 } } : {}) });
  return {
    resolver,
    client,
    udp,
    tcp,
    ask: (name, type = RRType.A, edns = true) => client.query(packet(name, type, edns)),
    askTcp: (name, type = RRType.A) => queryTcp(tcp, packet(name, type, true)),
  };
}

/** An Outbound that counts every socket asked of it. */
function countingOutbound(): Outbound & { count: number } {
  const counter = {
    count: 0,
    udpSocket: (options: Parameters<Outbound["udpSocket"]>[0]) => {
      counter.count++;
      return bunOutbound.udpSocket(options);
    },
    connect: (options: Parameters<Outbound["connect"]>[0]) => {
      counter.count++;
      return bunOutbound.connect(options);
    },
  };
  return counter;
}

const rdata = (m: Message, section: "answer" | "authority" = "answer") => m[section].map((rr) => `${nameToText(rr.name)} ${rr.ttl} ${rr.type} ${rdataToText(rr.type, rr.rdata)}`);

/** A port nobody listens on (UDP there is answered by ICMP port unreachable). */
async function deadPort(): Promise<number> {
  const socket = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const port = socket.port;
  socket.close();
  return port;
}

// ---------------------------------------------------------------------------------------------
// Blocking

describe("blocked names", () => {
  test("are sinkholed: A → 0.0.0.0, AAAA → ::, other types NODATA with a short SOA; AA clear, RA set", async () => {
    const { ask, resolver } = await start();
    const a = await ask("x.ads.example.net");
    expect(a.rcode).toBe(Rcode.NOERROR);
    expect(a.aa).toBe(false);
    expect(a.ra).toBe(true);
    expect(a.rd).toBe(true);
    expect(rdata(a)).toEqual(["x.ads.example.net. 10 1 0.0.0.0"]);
    const aaaa = await ask("tracker.example", RRType.AAAA);
    expect(rdata(aaaa)).toEqual(["tracker.example. 10 28 ::"]);
    const mx = await ask("tracker.example", RRType.MX);
    expect(mx.rcode).toBe(Rcode.NOERROR);
    expect(mx.answer).toEqual([]);
    expect(rdata(mx, "authority")).toEqual(["tracker.example. 10 6 citadel.invalid. hostmaster.citadel.invalid. 1 1800 900 604800 10"]);
    expect(resolver.stats()).toMatchObject({ queries: 3, blocked: 3, forwarded: 0 });
  });

  test("the sinkhole addresses and the TTL can be set; the query's case is echoed", async () => {
    const { ask } = await start({ blockMode: { kind: "sinkhole", ipv4: "192.0.2.250", ipv6: "2001:db8::250" }, blockTtl: 5 });
    const a = await ask("WWW.Tracker.Example");
    expect(nameToText(a.questions[0]!.name)).toBe("WWW.Tracker.Example.");
    expect(rdata(a)).toEqual(["WWW.Tracker.Example. 5 1 192.0.2.250"]);
    expect(rdata(await ask("tracker.example", RRType.AAAA))).toEqual(["tracker.example. 5 28 2001:db8::250"]);
  });

  test("NXDOMAIN mode: NXDOMAIN with the synthesized SOA, over UDP and TCP", async () => {
    const { ask, askTcp } = await start({ blockMode: { kind: "nxdomain" } });
    for (const reply of [await ask("a.b.tracker.example"), await askTcp("tracker.example", RRType.TXT)]) {
      expect(reply.rcode).toBe(Rcode.NXDOMAIN);
      expect(reply.aa).toBe(false);
      expect(reply.ra).toBe(true);
      expect(reply.answer).toEqual([]);
      expect(reply.authority.map((rr) => [rr.type, rr.ttl])).toEqual([[RRType.SOA, 10]]);
    }
  });

  test("*.domain blocks below the domain only; the allowlist wins over the blocklist", async () => {
    const upstream = await startUpstream();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    expect(rdata(await ask("a.wild.example"))).toEqual(["a.wild.example. 10 1 0.0.0.0"]);
    // wild.example itself goes upstream (which does not serve it: REFUSED there, so SERVFAIL here).
    expect((await ask("wild.example")).rcode).toBe(Rcode.SERVFAIL);
    expect(rdata(await ask("ok.ads.example.net"))).toEqual(["ok.ads.example.net. 600 1 192.0.2.9"]);
    expect(rdata(await ask("no.ads.example.net"))).toEqual(["no.ads.example.net. 10 1 0.0.0.0"]);
  });

  test("a forwarded answer whose CNAME leads into a blocked domain is blocked (CNAME cloaking)", async () => {
    const upstream = await startUpstream();
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    expect(rdata(await ask("cloak.example.org"))).toEqual(["cloak.example.org. 10 1 0.0.0.0"]);
    expect(rdata(await ask("cloak.example.org"))).toEqual(["cloak.example.org. 10 1 0.0.0.0"]); // from the cache too
    expect(resolver.stats()).toMatchObject({ blocked: 2, forwarded: 1, cacheHits: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// Forwarding and the cache

describe("forwarding", () => {
  test("answers from the upstream, then from the cache without asking it again", async () => {
    const upstream = await startUpstream();
    const { ask, askTcp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const first = await ask("www.example.org");
    expect(first.rcode).toBe(Rcode.NOERROR);
    expect(first.aa).toBe(false);
    expect(first.ra).toBe(true);
    expect(first.edns?.udpPayloadSize).toBe(1232);
    expect(rdata(first)).toEqual(["www.example.org. 3600 1 192.0.2.1"]);
    expect(upstream.events).toEqual([{ transport: "udp", qtype: RRType.A, qname: "www.example.org." }]);

    const second = await ask("WWW.EXAMPLE.ORG");
    // The owner is written as a pointer to the question, so it takes the client's case too.
    expect(rdata(second)).toEqual(["WWW.EXAMPLE.ORG. 3600 1 192.0.2.1"]);
    expect(nameToText(second.questions[0]!.name)).toBe("WWW.EXAMPLE.ORG.");
    expect(rdata(await askTcp("www.example.org"))).toEqual(["www.example.org. 3600 1 192.0.2.1"]);
    expect(upstream.events).toHaveLength(1);
    expect(resolver.stats()).toMatchObject({ queries: 3, cacheMisses: 1, cacheHits: 2, forwarded: 1, upstreamFailures: 0, cached: 1 });
  });

  test("TTLs count down with the clock; an expired answer is asked again", async () => {
    let clock = 1_700_000_000_000;
    const upstream = await startUpstream();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], now: () => clock });
    expect(rdata(await ask("short.example.org"))).toEqual(["short.example.org. 30 1 192.0.2.2"]);
    clock += 12_500;
    expect(rdata(await ask("short.example.org"))).toEqual(["short.example.org. 18 1 192.0.2.2"]);
    clock += 17_000;
    expect(rdata(await ask("short.example.org"))).toEqual(["short.example.org. 1 1 192.0.2.2"]);
    expect(upstream.events).toHaveLength(1);
    clock += 1_000;
    expect(rdata(await ask("short.example.org"))).toEqual(["short.example.org. 30 1 192.0.2.2"]);
    expect(upstream.events).toHaveLength(2);
  });

  test("negative answers are cached for the SOA minimum (RFC 2308), with the SOA's TTL counting down", async () => {
    let clock = 1_700_000_000_000;
    const upstream = await startUpstream();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], now: () => clock });
    const nx = await ask("nothing.example.org");
    expect(nx.rcode).toBe(Rcode.NXDOMAIN);
    expect(nx.authority.map((rr) => [nameToText(rr.name), rr.type, rr.ttl])).toEqual([["example.org.", RRType.SOA, 300]]);
    const nodata = await ask("www.example.org", RRType.MX);
    expect([nodata.rcode, nodata.answer.length, nodata.authority[0]!.ttl]).toEqual([Rcode.NOERROR, 0, 300]);
    clock += 299_000;
    expect((await ask("nothing.example.org")).authority[0]!.ttl).toBe(1);
    expect(upstream.events).toHaveLength(2);
    clock += 1_000;
    expect((await ask("nothing.example.org")).rcode).toBe(Rcode.NXDOMAIN);
    expect(upstream.events).toHaveLength(3);
  });

  test("cacheMaxTtl caps both how long an answer is kept and the TTLs clients see", async () => {
    let clock = 1_700_000_000_000;
    const upstream = await startUpstream();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], now: () => clock, cacheMaxTtl: 60 });
    expect(rdata(await ask("www.example.org"))).toEqual(["www.example.org. 60 1 192.0.2.1"]);
    clock += 60_000;
    await ask("www.example.org");
    expect(upstream.events).toHaveLength(2);
  });

  test("the cache is bounded: the least recently used answer goes first", async () => {
    const upstream = await startUpstream();
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], cacheSize: 2 });
    await ask("www.example.org");
    await ask("www.example.org", RRType.AAAA);
    await ask("www.example.org"); // A is now the most recently used
    await ask("short.example.org"); // evicts AAAA
    expect(upstream.events).toHaveLength(3);
    await ask("www.example.org");
    expect(upstream.events).toHaveLength(3);
    await ask("www.example.org", RRType.AAAA);
    expect(upstream.events).toHaveLength(4);
    expect(resolver.stats().cached).toBe(2);
  });

  test("identical questions asked at once share one upstream exchange", async () => {
    const upstream = await startUpstream();
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const replies = await Promise.all(Array.from({ length: 10 }, () => ask("www.example.org")));
    for (const reply of replies) expect(rdata(reply)).toEqual(["www.example.org. 3600 1 192.0.2.1"]);
    expect(upstream.events).toHaveLength(1);
    expect(resolver.stats()).toMatchObject({ forwarded: 1, cacheMisses: 10 });
  });

  test("a truncated upstream reply is asked again over TCP; the client gets TC over small UDP, all over TCP", async () => {
    const upstream = await startUpstream();
    const { ask, askTcp } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const tcp = await askTcp("big.example.org", RRType.TXT);
    expect(tcp.rcode).toBe(Rcode.NOERROR);
    expect(tcp.tc).toBe(false);
    expect(tcp.answer).toHaveLength(20);
    expect(upstream.events.map((e) => e.transport)).toEqual(["udp", "tcp"]);
    const udp = await ask("big.example.org", RRType.TXT, false);
    expect(udp.tc).toBe(true);
    expect(udp.wire.length).toBeLessThanOrEqual(512);
    expect(upstream.events).toHaveLength(2);
  });

  test("an upstream that is down, then one that times out, are skipped for the next", async () => {
    const upstream = await startUpstream();
    // It answers after 1.5 s, later than upstreamTimeoutMs (and earlier than the 2 s default): its
    // address in the answer would say the configured timeout was not applied.
    const late = await fakeUpstream((query, reply) =>
      void setTimeout(() => {
        try {
          reply(answerFor(query, [192, 0, 2, 99]));
        } catch {
          // the test is over and its sockets closed
        }
      }, 1500),
    );
    const { ask, resolver } = await start({
      upstreams: [
        { address: "127.0.0.1", port: await deadPort() },
        { address: "127.0.0.1", port: late },
        { address: "127.0.0.1", port: upstream.port },
      ],
      upstreamTimeoutMs: 500, // also what the answering upstream gets: room for a loaded machine
    });
    expect(rdata(await ask("www.example.org"))).toEqual(["www.example.org. 3600 1 192.0.2.1"]);
    expect(resolver.stats()).toMatchObject({ forwarded: 1, upstreamFailures: 2 });
  });

  test("an upstream that gave no reply is tried last for 30 s, then first again (found in review: every uncached name waited for it)", async () => {
    let clock = 1_000_000;
    const upstream = await startUpstream();
    let silentAsked = 0;
    const silent = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: () => void silentAsked++ } });
    cleanups.push(() => silent.close());
    const { ask, resolver } = await start({
      upstreams: [
        { address: "127.0.0.1", port: silent.port },
        { address: "127.0.0.1", port: upstream.port },
      ],
      upstreamTimeoutMs: 300,
      now: () => clock,
    });
    expect(rdata(await ask("www.example.org"))).toEqual(["www.example.org. 3600 1 192.0.2.1"]);
    expect([silentAsked, upstream.events.length]).toEqual([1, 1]);
    clock += 29_000;
    await ask("www.example.org", RRType.AAAA);
    await ask("short.example.org");
    expect([silentAsked, upstream.events.length, resolver.stats().upstreamFailures]).toEqual([1, 3, 1]);
    clock += 1_000;
    await ask("ns1.example.org");
    expect([silentAsked, upstream.events.length, resolver.stats().upstreamFailures]).toEqual([2, 4, 2]);
  });

  test("upstreams tried last are still tried when none other replies", async () => {
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: await deadPort() }, { address: "127.0.0.1", port: await deadPort() }] });
    expect((await ask("www.example.org")).rcode).toBe(Rcode.SERVFAIL);
    expect((await ask("short.example.org")).rcode).toBe(Rcode.SERVFAIL);
    expect(resolver.stats().upstreamFailures).toBe(4);
  });

  test("stopping ends the exchanges under way at once", async () => {
    const silent = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => silent.close());
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: silent.port }], upstreamTimeoutMs: 30_000 });
    const pending = ask("www.example.org").catch(() => null);
    for (const deadline = Date.now() + 10_000; resolver.stats().cacheMisses === 0 && Date.now() < deadline; ) await Bun.sleep(5);
    expect(resolver.stats().cacheMisses).toBe(1);
    await resolver.stop();
    await Bun.sleep(10);
    expect(resolver.stats().upstreamFailures).toBe(1);
    expect(resolver.stats().servfail).toBe(1);
    void pending;
  });

  test("SERVFAIL when no upstream answers; the failure is not cached", async () => {
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: await deadPort() }] });
    expect((await ask("www.example.org")).rcode).toBe(Rcode.SERVFAIL);
    expect((await ask("www.example.org")).rcode).toBe(Rcode.SERVFAIL);
    expect(resolver.stats()).toMatchObject({ forwarded: 2, upstreamFailures: 2, servfail: 2, cached: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// Anti-spoofing

/** A hand-made upstream: `respond` gets each query and a way to send datagrams back (or from a stranger socket). */
async function fakeUpstream(respond: (query: Query, reply: (bytes: Uint8Array, fromStranger?: boolean) => void) => void) {
  // The resolver's connected socket refuses the stranger's datagrams: the ICMP error comes back here.
  const stranger = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { error() {} } });
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(s, data, port, address) {
        const query = decodeQuery(data);
        respond(query, (bytes, fromStranger) => (fromStranger ? stranger : s).send(bytes, port, address));
      },
    },
  });
  cleanups.push(() => {
    socket.close();
    stranger.close();
  });
  return socket.port;
}

function answerFor(query: Query, address: number[], patch: { id?: number; qname?: string; qr?: boolean } = {}): Uint8Array {
  const question = patch.qname ? { ...query.question!, name: parseName(patch.qname, null) } : query.question!;
  const record: ResourceRecord = { name: question.name, type: RRType.A, class: 1, ttl: 300, rdata: Uint8Array.from(address) };
  const wire = encodeResponse(
    { id: patch.id ?? query.id, opcode: 0, rcode: 0, aa: false, tc: false, rd: true, ra: false, question, answer: [record], authority: [], additional: [], edns: null },
    512,
  );
  if (patch.qr === false) wire[2]! &= 0x7f;
  return wire;
}

describe("bounds (found in review)", () => {
  const record = (name: string, type: number, ttl: number, rdata: Uint8Array): ResourceRecord => ({ name: parseName(name, null), type, class: 1, ttl, rdata });
  const answerOf = (sections: Partial<Pick<Message, "answer" | "authority">>, type: number = RRType.A) =>
    ({ rcode: Rcode.NOERROR, questions: [{ name: parseName("q.example.", null), type, class: 1 }], answer: [], authority: [], additional: [], ...sections }) as unknown as Message;

  test("an answer costs the cache what its records are in memory, not their compressed size; past 256 records it is not kept", () => {
    const deep = `${Array.from({ length: 120 }, () => "a").join(".")}.example.`;
    const entry = toCachedAnswer(answerOf({ answer: Array.from({ length: 20 }, () => record(deep, RRType.A, 300, Uint8Array.of(192, 0, 2, 1))) }), 0, 86_400);
    expect(entry.size).toBeGreaterThan(20 * 121 * 96); // on the wire: about 20 × 16 octets
    expect(entry.ttl).toBe(300);
    const huge = toCachedAnswer(answerOf({ answer: Array.from({ length: 257 }, () => record("q.example.", RRType.A, 300, Uint8Array.of(192, 0, 2, 1))) }), 0, 86_400);
    expect(huge.ttl).toBe(0);
  });

  test("NODATA at the end of a CNAME chain is cached for the SOA's MINIMUM (RFC 2308 §5); a chain without a SOA for its TTL", () => {
    const soa = new Uint8Array(22);
    new DataView(soa.buffer).setUint32(18, 60); // MINIMUM 60
    const cname = record("q.example.", RRType.CNAME, 3600, Uint8Array.of(1, 0x74, 7, ...new TextEncoder().encode("example"), 0));
    expect(toCachedAnswer(answerOf({ answer: [cname], authority: [record("example.", RRType.SOA, 3600, soa)] }), 0, 86_400).ttl).toBe(60);
    expect(toCachedAnswer(answerOf({ answer: [cname] }), 0, 86_400).ttl).toBe(3600);
    expect(toCachedAnswer(answerOf({ answer: [cname], authority: [record("example.", RRType.SOA, 3600, soa)] }, RRType.CNAME), 0, 86_400).ttl).toBe(3600);
  });

  test("queries waiting for an upstream are bounded per client: past 128, SERVFAIL at once", async () => {
    const silent = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => silent.close());
    const { udp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: silent.port }], upstreamTimeoutMs: 20_000 });
    const replies: number[] = [];
    const client = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => void replies.push(data[3]! & 0x0f) } });
    cleanups.push(() => client.close());
    for (let i = 0; i < 540; i++) {
      client.send(buildQuery({ id: i, name: parseName("slow.example.org.", null), type: RRType.A, rd: true }), udp, "127.0.0.1");
      if (i % 50 === 49) await Bun.sleep(10); // the receive buffer holds a few hundred at once
    }
    const past = () => resolver.stats().queries - 128; // the queries that found the bound reached (a few may be lost on the way)
    for (const until = Date.now() + 5000; (past() <= 0 || replies.length < past()) && Date.now() < until; ) await Bun.sleep(20);
    expect(past()).toBeGreaterThan(0);
    expect(replies.length).toBe(past()); // answered at once, long before the upstream's 20 s
    expect(replies.every((rcode) => rcode === Rcode.SERVFAIL)).toBe(true);
    expect(resolver.stats().forwarded).toBe(1);
  });
});

/** A UDP client bound to `address` (any of 127/8 is loopback), collecting the replies it gets. */
async function clientAt(address: string) {
  const replies: Message[] = [];
  const socket = await Bun.udpSocket({ hostname: address, binaryType: "uint8array", socket: { data: (_s, data) => void replies.push(decodeMessage(data)) } });
  cleanups.push(() => socket.close());
  return { socket, replies };
}

describe("an allowlisted question (found in review)", () => {
  test("is not blocked by CNAME cloaking, forwarded or chased from a hosted zone", async () => {
    const upstream = await startUpstream();
    const local = new ZoneTable();
    local.set(build("mesh.internal.", `$TTL 60\n@ SOA ns hostmaster 1 1h 15m 1w 60\n@ NS ns\nns A 10.0.0.1\nad CNAME x.ads.example.net.\n`));
    const { ask, resolver } = await start({
      upstreams: [{ address: "127.0.0.1", port: upstream.port }],
      local,
      allowlist: DomainSet.from(["ok.ads.example.net", "cloak.example.org", "ad.mesh.internal"]),
    });
    const cloak = await ask("cloak.example.org");
    expect([cloak.rcode, rdata(cloak)]).toEqual([Rcode.NOERROR, ["cloak.example.org. 3600 5 x.ads.example.net."]]);
    const ad = await ask("ad.mesh.internal");
    expect([ad.rcode, rdata(ad)]).toEqual([Rcode.NXDOMAIN, ["ad.mesh.internal. 60 5 x.ads.example.net."]]);
    expect(resolver.stats().blocked).toBe(0);
    // The target itself, asked directly, is still blocked.
    expect(rdata(await ask("x.ads.example.net"))).toEqual(["x.ads.example.net. 10 1 0.0.0.0"]);
  });
});

describe("a hosted zone's CNAME out of the zone (found in review)", () => {
  const aliases = () => {
    const local = new ZoneTable();
    local.set(
      build(
        "mesh.internal.",
        `$TTL 60
@ SOA ns hostmaster 1 1h 15m 1w 60
@ NS ns
ns A 10.0.0.1
web CNAME www.example.org.
gone CNAME nothing.example.org.
ad CNAME x.ads.example.net.
hop CNAME db.other.internal.
loop CNAME back.other.internal.
`,
      ),
    );
    local.set(
      build(
        "other.internal.",
        `$TTL 60
@ SOA ns hostmaster 1 1h 15m 1w 60
@ NS ns
ns A 10.0.0.1
db A 10.0.0.9
back CNAME loop.mesh.internal.
`,
      ),
    );
    return local;
  };

  test("the target is resolved and appended: upstream, other hosted zones, NXDOMAIN; a blocked target blocks the answer; loops stop", async () => {
    const upstream = await startUpstream();
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], local: aliases() });
    const web = await ask("web.mesh.internal");
    expect([web.rcode, web.aa, web.ra]).toEqual([Rcode.NOERROR, false, true]);
    expect(rdata(web)).toEqual(["web.mesh.internal. 60 5 www.example.org.", "www.example.org. 3600 1 192.0.2.1"]);
    const gone = await ask("gone.mesh.internal");
    expect([gone.rcode, rdata(gone), rdata(gone, "authority")]).toEqual([Rcode.NXDOMAIN, ["gone.mesh.internal. 60 5 nothing.example.org."], ["example.org. 300 6 ns1.example.org. hostmaster.example.org. 1 3600 900 604800 300"]]);
    expect(rdata(await ask("ad.mesh.internal"))).toEqual(["ad.mesh.internal. 10 1 0.0.0.0"]);
    const hop = await ask("hop.mesh.internal");
    expect([hop.aa, rdata(hop)]).toEqual([true, ["hop.mesh.internal. 60 5 db.other.internal.", "db.other.internal. 60 1 10.0.0.9"]]);
    const loop = await ask("loop.mesh.internal");
    expect([loop.rcode, rdata(loop)]).toEqual([Rcode.NOERROR, ["loop.mesh.internal. 60 5 back.other.internal.", "back.other.internal. 60 5 loop.mesh.internal."]]);
    expect(rdata(await ask("web.mesh.internal", RRType.CNAME))).toEqual(["web.mesh.internal. 60 5 www.example.org."]); // the CNAME itself asked
    expect(resolver.stats()).toMatchObject({ local: 5, blocked: 1, forwarded: 2 }); // web and gone: the blocked target is never asked
  });

  test("with no upstream, the chain as far as the hosted zones take it", async () => {
    const { ask } = await start({ local: aliases() });
    expect(rdata(await ask("web.mesh.internal"))).toEqual(["web.mesh.internal. 60 5 www.example.org."]);
    expect(rdata(await ask("hop.mesh.internal"))).toEqual(["hop.mesh.internal. 60 5 db.other.internal.", "db.other.internal. 60 1 10.0.0.9"]);
  });
});

describe("water torture (found in review)", () => {
  test("two clients flooding unique names an upstream never answers hold an eighth of the questions each; a third client is still answered", async () => {
    const port = await fakeUpstream((query, reply) => {
      if (nameToText(query.question!.name) === "answered.example.org.") reply(answerFor(query, [192, 0, 2, 7]));
    });
    const { udp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port }], upstreamTimeoutMs: 20_000 });
    const flooders = [await clientAt("127.0.0.2"), await clientAt("127.0.0.3")];
    for (let i = 0; i < 600; i++) {
      for (const { socket } of flooders) socket.send(buildQuery({ id: i, name: parseName(`r${i}-${socket.port}.example.org.`, null), type: RRType.A, rd: true }), udp, "127.0.0.1");
      if (i % 25 === 24) await Bun.sleep(10); // the receive buffer holds a few hundred at once
    }
    // Every query past the two shares is answered SERVFAIL at once (a few may be lost on the way).
    const answered = () => flooders.reduce((n, f) => n + f.replies.length, 0);
    const past = () => resolver.stats().queries - 2 * 128;
    for (const until = Date.now() + 5000; (past() <= 0 || answered() < past()) && Date.now() < until; ) await Bun.sleep(20);
    expect(answered()).toBe(past());
    expect(resolver.stats().forwarded).toBe(256);

    const other = await clientAt("127.0.0.4");
    other.socket.send(buildQuery({ id: 7, name: parseName("answered.example.org.", null), type: RRType.A, rd: true }), udp, "127.0.0.1");
    for (const until = Date.now() + 5000; other.replies.length === 0 && Date.now() < until; ) await Bun.sleep(20);
    expect(other.replies.map((m) => [m.rcode, rdata(m)])).toEqual([[Rcode.NOERROR, ["answered.example.org. 300 1 192.0.2.7"]]]);
  });

  test("eight clients flooding hold three quarters of the forwarding slots between them; a client with few queries waiting is still answered", async () => {
    const port = await fakeUpstream((query, reply) => {
      if (nameToText(query.question!.name).startsWith("answered")) reply(answerFor(query, [192, 0, 2, 7]));
    });
    const { udp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port }], upstreamTimeoutMs: 20_000 });
    const flooders = await Promise.all([2, 3, 4, 5, 6, 7, 8, 9].map((n) => clientAt(`127.0.0.${n}`)));
    for (let i = 0; i < 160; i++) {
      for (const { socket } of flooders) socket.send(buildQuery({ id: i, name: parseName(`r${i}-${socket.port}.example.org.`, null), type: RRType.A, rd: true }), udp, "127.0.0.1");
      if (i % 4 === 3) await Bun.sleep(10); // the receive buffer holds a few hundred at once
    }
    // Eight shares of 128 would be all 1,024 slots: the busy clients' limit stops them at 768.
    const answered = () => flooders.reduce((n, f) => n + f.replies.length, 0);
    const past = () => resolver.stats().queries - 768;
    for (const until = Date.now() + 5000; (past() <= 0 || answered() < past()) && Date.now() < until; ) await Bun.sleep(20);
    expect(answered()).toBe(past());
    expect(resolver.stats().forwarded).toBe(768);

    const other = await clientAt("127.0.0.10");
    for (let i = 0; i < 3; i++) other.socket.send(buildQuery({ id: i, name: parseName(`answered${i}.example.org.`, null), type: RRType.A, rd: true }), udp, "127.0.0.1");
    for (const until = Date.now() + 5000; other.replies.length < 3 && Date.now() < until; ) await Bun.sleep(20);
    expect(other.replies.map((m) => m.rcode)).toEqual([Rcode.NOERROR, Rcode.NOERROR, Rcode.NOERROR]);
  });
});

describe("anti-spoofing", () => {
  test("replies with another ID, another question, not marked as replies, or from another port are ignored", async () => {
    let queries = 0;
    const port = await fakeUpstream((query, reply) => {
      queries++;
      expect(query.rd).toBe(true);
      reply(answerFor(query, [6, 6, 6, 1], { id: (query.id + 1) & 0xffff }));
      reply(answerFor(query, [6, 6, 6, 2], { qname: "other.example.org." }));
      reply(answerFor(query, [6, 6, 6, 3], { qr: false }));
      reply(answerFor(query, [6, 6, 6, 4]), true);
      reply(Uint8Array.of(1, 2, 3));
      setTimeout(() => reply(answerFor(query, [192, 0, 2, 77])), 50);
    });
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port }] });
    expect(rdata(await ask("spoofed.example.org"))).toEqual(["spoofed.example.org. 300 1 192.0.2.77"]);
    expect(queries).toBe(1);
    expect(resolver.stats().upstreamFailures).toBe(0);
  });

  test("only forged replies: the exchange times out and the next upstream answers", async () => {
    const forger = await fakeUpstream((query, reply) => reply(answerFor(query, [6, 6, 6, 6], { id: query.id ^ 0x5555 })));
    const honest = await fakeUpstream((query, reply) => reply(answerFor(query, [192, 0, 2, 78])));
    const { ask, resolver } = await start({
      upstreams: [
        { address: "127.0.0.1", port: forger },
        { address: "127.0.0.1", port: honest },
      ],
      upstreamTimeoutMs: 500, // the honest upstream gets it too: room for a loaded machine
    });
    expect(rdata(await ask("x.example.org"))).toEqual(["x.example.org. 300 1 192.0.2.78"]);
    expect(resolver.stats().upstreamFailures).toBe(1);
  });

  test("an IPv6 upstream is asked from an IPv6 socket and its replies are recognised", async () => {
    const socket = await Bun.udpSocket({
      hostname: "::1",
      port: 0,
      binaryType: "uint8array",
      socket: {
        data: (s, data, port, address) => {
          s.send(answerFor(decodeQuery(data), [192, 0, 2, 66]), port, address);
        },
      },
    }).catch(() => null);
    if (socket === null) {
      console.warn("no IPv6 loopback here: skipped");
      return;
    }
    cleanups.push(() => socket.close());
    const { ask } = await start({ upstreams: [{ address: "0:0:0:0:0:0:0:1", port: socket.port }] });
    expect(rdata(await ask("v6.example.org"))).toEqual(["v6.example.org. 300 1 192.0.2.66"]);
  });

  test("query IDs and source ports vary from one exchange to the next", async () => {
    const seen: Array<{ id: number; port: number }> = [];
    const socket = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      binaryType: "uint8array",
      socket: {
        data(s, data, port, address) {
          const query = decodeQuery(data);
          seen.push({ id: query.id, port });
          s.send(answerFor(query, [192, 0, 2, 1]), port, address);
        },
      },
    });
    cleanups.push(() => socket.close());
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: socket.port }] });
    for (let i = 0; i < 8; i++) await ask(`n${i}.example.org`);
    expect(new Set(seen.map((s) => s.id)).size).toBeGreaterThan(6);
    expect(new Set(seen.map((s) => s.port)).size).toBeGreaterThan(6);
  });
});

// ---------------------------------------------------------------------------------------------
// Nothing leaves the host, and only clients may ask

describe("with no upstream configured", () => {
  test("nothing leaves the host: no outbound socket is ever created, names not blocked are REFUSED", async () => {
    const outbound = countingOutbound();
    const lines: string[] = [];
    const log = createLogger({ level: "debug", sink: (line) => lines.push(line) });
    const { ask, askTcp, resolver } = await start({ upstreams: [], outbound, log });
    for (const type of [RRType.A, RRType.AAAA, RRType.MX, RRType.TXT, 255]) {
      const reply = await ask("www.example.org", type);
      expect(reply.rcode).toBe(Rcode.REFUSED);
      expect(reply.ra).toBe(true);
      expect(reply.answer).toEqual([]);
    }
    expect((await askTcp("www.example.org")).rcode).toBe(Rcode.REFUSED);
    expect((await ask("ok.ads.example.net")).rcode).toBe(Rcode.REFUSED); // allowlisted, so not blocked: nowhere to ask
    expect(rdata(await ask("ads.example.net"))).toEqual(["ads.example.net. 10 1 0.0.0.0"]);
    expect(outbound.count).toBe(0);
    expect(resolver.stats()).toMatchObject({ forwarded: 0, cacheMisses: 0, upstreamFailures: 0, refused: 7, blocked: 1 });
    expect(lines.some((line) => line.includes("no upstream is configured") && line.includes("www.example.org."))).toBe(true);
    expect(lines.some((line) => line.includes("forwarding") && line.includes("refused"))).toBe(true);
  });

  test("the same counter does count when an upstream is configured (the check above can fail)", async () => {
    const upstream = await startUpstream();
    const outbound = countingOutbound();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], outbound });
    await ask("www.example.org");
    await ask("big.example.org", RRType.TXT);
    expect(outbound.count).toBe(3); // two UDP exchanges and one TCP retry
  });

  test("local zones are answered without forwarding (AA set), and still nothing leaves", async () => {
    const outbound = countingOutbound();
    const local = new ZoneTable();
    local.set(LOCAL_ZONE);
    const { ask, resolver } = await start({ upstreams: [], outbound, local });
    const db = await ask("db.mesh.internal");
    expect([db.rcode, db.aa, db.ra]).toEqual([Rcode.NOERROR, true, true]);
    expect(rdata(db)).toEqual(["db.mesh.internal. 60 1 10.0.0.5"]);
    expect((await ask("nope.mesh.internal")).rcode).toBe(Rcode.NXDOMAIN);
    expect(outbound.count).toBe(0);
    expect(resolver.stats().local).toBe(2);
  });
});

describe("names a record provider tells only some clients (split horizon, found in review)", () => {
  // The mesh's names inside a hosted zone, as the dns plugin serves them, and another hosted zone
  // whose CNAME leads into them (a chain the resolver chases).
  const zones = () => {
    const local = new ZoneTable();
    local.set(
      build(
        "example.org.",
        `$TTL 60
@ SOA ns hostmaster 1 1h 15m 1w 60
@ NS ns
ns A 10.0.0.1
www A 192.0.2.1
db CNAME db1.prod.mesh
gone CNAME nothing.prod.mesh
@ MX 10 mail.prod.mesh
db1.prod.mesh A 100.64.0.1
mail.prod.mesh A 100.64.0.2
`,
      ),
    );
    local.set(build("other.internal.", `$TTL 60\n@ SOA ns hostmaster 1 1h 15m 1w 60\n@ NS ns\nns A 10.0.0.1\ndb CNAME db1.prod.mesh.example.org.\n`));
    return local;
  };
  // Both addresses are let in (loopback); the provider tells its names to 127.0.0.2 only (a mesh network's client, say).
  const horizon = () => {
    const h = new ProviderHorizon(() => false);
    h.update([{ name: "mesh", domain: "mesh.example.org.", records: () => [], mayAsk: (client) => client === "127.0.0.2" }]);
    return h;
  };
  const additional = (m: Message) => m.additional.map((rr) => nameToText(rr.name));

  test("a client not told them is REFUSED them, whatever the transport, and the rest of the zones carries nothing of them", async () => {
    const { ask, askTcp, resolver } = await start({ local: zones(), horizon: horizon() });
    for (const [name, type] of [
      ["db1.prod.mesh.example.org", RRType.A],
      ["nothing.prod.mesh.example.org", RRType.A],
      ["mesh.example.org", RRType.SOA],
    ] as const) {
      for (const reply of [await ask(name, type), await askTcp(name, type)]) {
        expect({ name, rcode: reply.rcode, records: [...reply.answer, ...reply.authority, ...reply.additional.filter((rr) => rr.type !== 41)] }).toEqual({ name, rcode: Rcode.REFUSED, records: [] });
      }
    }
    expect(rdata(await ask("www.example.org"))).toEqual(["www.example.org. 60 1 192.0.2.1"]);
    // A CNAME into them stops there, whether its target exists or not (as the authoritative server answers it).
    for (const name of ["db.example.org", "gone.example.org"]) {
      const reply = await ask(name);
      expect([reply.rcode, reply.answer.length, reply.authority, rdata(reply)[0]?.split(" ")[2]]).toEqual([Rcode.NOERROR, 1, [], "5"]);
    }
    const chased = await ask("db.other.internal");
    expect([chased.rcode, rdata(chased)]).toEqual([Rcode.NOERROR, ["db.other.internal. 60 5 db1.prod.mesh.example.org."]]);
    const mx = await ask("example.org", RRType.MX);
    expect([rdata(mx), additional(mx)]).toEqual([["example.org. 60 15 10 mail.prod.mesh.example.org."], []]);
    expect(resolver.stats().refused).toBe(6);
  });

  test("a client told them is answered them, and the chains into them", async () => {
    const { udp } = await start({ local: zones(), horizon: horizon() });
    const { socket, replies } = await clientAt("127.0.0.2");
    const questions: Array<[string, number]> = [
      ["db1.prod.mesh.example.org.", RRType.A],
      ["db.example.org.", RRType.A],
      ["db.other.internal.", RRType.A],
      ["example.org.", RRType.MX],
    ];
    questions.forEach(([name, type], id) => socket.send(buildQuery({ id, name: parseName(name, null), type, rd: true }), udp, "127.0.0.1"));
    for (const until = Date.now() + 5000; replies.length < questions.length && Date.now() < until; ) await Bun.sleep(10);
    const byId = (id: number) => replies.find((m) => m.id === id)!;
    expect(rdata(byId(0))).toEqual(["db1.prod.mesh.example.org. 60 1 100.64.0.1"]);
    expect(rdata(byId(1))).toEqual(["db.example.org. 60 5 db1.prod.mesh.example.org.", "db1.prod.mesh.example.org. 60 1 100.64.0.1"]);
    expect(rdata(byId(2))).toEqual(["db.other.internal. 60 5 db1.prod.mesh.example.org.", "db1.prod.mesh.example.org. 60 1 100.64.0.1"]);
    expect(additional(byId(3))).toContain("mail.prod.mesh.example.org.");
  });
});

describe("the SOA serial of a view (view-serials.ts), as the authoritative server tells it", () => {
  test("a network's client of a provider's own zone is told its view's serial in a negative answer, which the other networks' changes do not move", async () => {
    const zoneAt = (serial: number, mesh: string) => build("mesh.example.org.", `$TTL 60\n@ SOA ns hostmaster ${serial} 1h 15m 1w 60\n@ NS ns\nns A 10.0.0.1\n${mesh}`);
    const local = new ZoneTable();
    local.set(zoneAt(1, "db1.prod A 100.64.0.1\n"));
    const horizon = new ProviderHorizon(() => false);
    // 127.0.0.2 is a client of prod (told prod's names); 127.0.0.1 is told every name (loopback).
    const prod = { key: "net_prod", domains: ["prod.mesh.example.org."] };
    horizon.update([{ name: "mesh", domain: "mesh.example.org.", records: () => [], mayAsk: (client, name) => client !== "127.0.0.2" || name === "mesh.example.org." || name.endsWith(".prod.mesh.example.org."), viewOf: (client) => (client === "127.0.0.2" ? prod : null), views: () => new Set(["", "net_prod"]) }]);
    const viewSerials = new ViewSerials({ horizon, rows: [], floors: [], persist: () => {}, now: () => 1_800_000_000_000 });
    local.onSet((zone) => viewSerials.prepare(zone));
    const { ask, udp } = await start({ local, horizon, viewSerials });
    const { socket, replies } = await clientAt("127.0.0.2");
    const serialOf = (m: Message) => soaSerial(m.authority.find((rr) => rr.type === RRType.SOA)!.rdata);
    const fromClient = async (id: number) => {
      socket.send(buildQuery({ id, name: parseName("nothing.prod.mesh.example.org.", null), type: RRType.A, rd: true }), udp, "127.0.0.1");
      for (const until = Date.now() + 5000; !replies.some((m) => m.id === id) && Date.now() < until; ) await Bun.sleep(10);
      return serialOf(replies.find((m) => m.id === id)!);
    };
    expect([serialOf(await ask("nope.mesh.example.org")), await fromClient(1)]).toEqual([1, 1_800_000_000]);
    // Another network's names change: the zone's serial moves, the view's does not.
    local.set(zoneAt(2, "db1.prod A 100.64.0.1\ndb2.ops A 100.80.0.2\n"));
    expect([serialOf(await ask("nope.mesh.example.org")), await fromClient(2)]).toEqual([2, 1_800_000_000]);
    // Its own do: it moves (RFC 1982, one past the clock's second here).
    local.set(zoneAt(3, "db1.prod A 100.64.0.1\ndb3.prod A 100.64.0.3\ndb2.ops A 100.80.0.2\n"));
    expect(await fromClient(3)).toBe(1_800_000_001);
  });
});

describe("clients", () => {
  test("a client not allowed gets nothing over UDP (no reflection), and over TCP its connection is closed at once (it holds no slot)", async () => {
    const upstream = await startUpstream();
    const { askTcp, udp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], allowedClients: () => false });
    for (const name of ["www.example.org", "ads.example.net"]) {
      const { promise, resolve } = Promise.withResolvers<Uint8Array | null>();
      const socket = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => resolve(data) } });
      cleanups.push(() => socket.close());
      socket.send(buildQuery({ name: parseName(`${name}.`, null), type: RRType.A, rd: true }), udp, "127.0.0.1");
      setTimeout(() => resolve(null), 300);
      expect(await promise).toBeNull();
    }
    await expect(askTcp("www.example.org")).rejects.toThrow("connection closed before the reply");
    expect(upstream.events).toHaveLength(0);
    expect(resolver.stats()).toMatchObject({ refused: 3, forwarded: 0, blocked: 0 });
  });

  test("a malformed packet from a stranger gets nothing; from a client, FORMERR", async () => {
    const garbage = Uint8Array.of(0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f);
    const send = async (allowed: boolean) => {
      const { udp } = await start({ allowedClients: () => allowed });
      const { promise, resolve } = Promise.withResolvers<Uint8Array | null>();
      const socket = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => resolve(data) } });
      cleanups.push(() => socket.close());
      socket.send(garbage, udp, "127.0.0.1");
      setTimeout(() => resolve(null), allowed ? 10_000 : 300); // the FORMERR comes at once; time for a loaded machine
      return promise;
    };
    expect(await send(false)).toBeNull();
    expect(decodeMessage((await send(true))!).rcode).toBe(Rcode.FORMERR);
  });

  test("allowClients: loopback plus the given prefixes", () => {
    const allowed = allowClients(["100.64.0.0/10", "fd7a:115c:a1e0::/48"]);
    expect(["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "100.64.0.1", "100.127.255.255", "fd7a:115c:a1e0::5"].map(allowed)).toEqual(Array(7).fill(true));
    expect(["192.0.2.1", "100.128.0.1", "::2", "fd7a:115c:a1e1::5", "not an address", "fe80::1%eth0"].map(allowed)).toEqual(Array(6).fill(false));
    expect(() => allowClients(["10.0.0.1/8"])).toThrow("is not an address prefix");
    // An IPv4-mapped prefix is the IPv4 prefix it spells (found in review: it matched no client).
    const mapped = allowClients(["::ffff:192.0.2.0/120"]);
    expect(["192.0.2.7", "192.0.3.7"].map(mapped)).toEqual([true, false]);
  });
});

// ---------------------------------------------------------------------------------------------
// Protocol details

describe("TCP idle", () => {
  test("a frame trickled byte by byte does not keep a connection: only whole messages are activity", async () => {
    const { tcp } = await start({ tcpIdleMs: 500 });
    let closed = false;
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: tcp, socket: { data() {}, close: () => void (closed = true), error: () => void (closed = true) } });
    cleanups.push(() => void socket.end());
    const started = Date.now();
    // A length prefix promising 300 bytes, then one byte every 100 ms: never a whole message.
    socket.write(Uint8Array.of(0x01, 0x2c));
    while (!closed && Date.now() - started < 10_000) {
      socket.write(Uint8Array.of(0));
      await Bun.sleep(100);
    }
    expect(closed).toBe(true);
  }, 15_000);
});

describe("TCP slots", () => {
  test("one client holds at most an eighth of them", async () => {
    const { tcp } = await start({ maxTcpConnections: 8 }); // at least 4 per client
    const open = async () => {
      let closed = false;
      const socket = await Bun.connect({ hostname: "127.0.0.1", port: tcp, socket: { data() {}, close: () => void (closed = true), error: () => void (closed = true) } });
      cleanups.push(() => void socket.end());
      return { socket, closed: () => closed };
    };
    const mine = [await open(), await open(), await open(), await open()];
    const fifth = await open();
    for (const until = Date.now() + 10_000; !fifth.closed() && Date.now() < until; ) await Bun.sleep(20);
    expect(fifth.closed()).toBe(true);
    expect(mine.map((m) => m.closed())).toEqual([false, false, false, false]);
  });
});

describe("protocol", () => {
  test("OPT only when the query had one; EDNS version 1 is BADVERS; other classes and transfers REFUSED", async () => {
    const { ask, client } = await start();
    expect((await ask("tracker.example", RRType.A, false)).edns).toBeNull();
    expect((await ask("tracker.example")).edns).not.toBeNull();
    const badvers = await client.query(buildQuery({ name: parseName("tracker.example.", null), type: RRType.A, edns: { payload: 1232, version: 1 } }));
    expect(badvers.rcode).toBe(Rcode.BADVERS);
    const chaos = await client.query(buildQuery({ name: parseName("version.bind.", null), type: RRType.TXT, class: 3 }));
    expect(chaos.rcode).toBe(Rcode.REFUSED);
    const axfr = await client.query(buildQuery({ name: parseName("example.org.", null), type: 252 }));
    expect(axfr.rcode).toBe(Rcode.REFUSED);
  });

  test("DO is copied from the query into the reply's OPT (RFC 3225 §3), though no signatures come (found in review)", async () => {
    const upstream = await startUpstream();
    const { client } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const ask = (name: string, dnssecOk: boolean) => client.query(buildQuery({ name: parseName(name, null), type: RRType.A, rd: true, edns: { payload: 1232, dnssecOk } }));
    for (const name of ["tracker.example.", "www.example.org."]) {
      expect([name, (await ask(name, true)).edns?.dnssecOk]).toEqual([name, true]);
      expect([name, (await ask(name, false)).edns?.dnssecOk]).toEqual([name, false]);
    }
    expect((await ask("www.example.org.", true)).answer.map((rr) => rr.type)).toEqual([RRType.A]); // no RRSIG
  });

  test("invalid options are refused at start", async () => {
    const base = { udp: [], tcp: [], blocklist, log: silentLogger };
    await expect(startResolver({ ...base, upstreams: [{ address: "dns.example", port: 53 }], blockMode: { kind: "nxdomain" } })).rejects.toThrow("not an IP address");
    await expect(startResolver({ ...base, upstreams: [{ address: "192.0.2.1", port: 0 }], blockMode: { kind: "nxdomain" } })).rejects.toThrow("invalid port");
    await expect(startResolver({ ...base, upstreams: [], blockMode: { kind: "sinkhole", ipv4: "::1" } })).rejects.toThrow("IPv4");
    await expect(startResolver({ ...base, upstreams: [], blockMode: { kind: "nxdomain" }, cacheSize: -1 })).rejects.toThrow("cacheSize");
  });

  test("kdig agrees (blocked, forwarded, over UDP and TCP)", async () => {
    const kdig = Bun.which("kdig");
    if (kdig === null) {
      if (process.env.CI === "true") throw new Error("kdig is not installed: CI must install knot-dnsutils");
      console.warn("kdig is not installed: skipped");
      return;
    }
    const upstream = await startUpstream();
    const { udp, tcp } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const dig = async (...args: string[]) => {
      const proc = Bun.spawn([kdig, "@127.0.0.1", "+time=2", "+retry=0", ...args], { stdout: "pipe", stderr: "pipe" });
      const text = await new Response(proc.stdout).text();
      await proc.exited;
      return text;
    };
    expect((await dig("-p", String(udp), "+short", "ads.example.net", "A")).trim()).toBe("0.0.0.0");
    expect((await dig("-p", String(udp), "+short", "www.example.org", "AAAA")).trim()).toBe("2001:db8::1");
    expect((await dig("-p", String(tcp), "+tcp", "+short", "www.example.org", "A")).trim()).toBe("192.0.2.1");
    const full = await dig("-p", String(udp), "tracker.example", "A");
    expect(full).toMatch(/flags: qr rd ra;/i);
  });
});

describe("clients gone away (found in review)", () => {
  test("a reply to a client that closed its socket costs no other client its reply", async () => {
    // The upstream holds its answer until the dead clients have closed: each reply to one of them
    // then draws an ICMP port unreachable, which the kernel reports on the listener's next send.
    const held: Array<() => void> = [];
    const upstream = await fakeUpstream((query, reply) => void held.push(() => reply(answerFor(query, [192, 0, 2, 7]))));
    const { udp, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream }], upstreamTimeoutMs: 10_000 });
    const answered = new Set<number>();
    const open = async (i: number | null) => {
      const socket = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: () => void (i !== null && answered.add(i)) } });
      cleanups.push(() => void (socket.closed || socket.close()));
      return socket;
    };
    const live = await Promise.all(Array.from({ length: 20 }, (_, i) => open(i)));
    const dead = await Promise.all(Array.from({ length: 20 }, () => open(null)));
    const packet = buildQuery({ name: parseName("www.example.org.", null), type: RRType.A, rd: true });
    // Interleaved, so that every reply to a live client follows one to a dead client.
    for (let i = 0; i < 20; i++) {
      dead[i]!.send(packet, udp, "127.0.0.1");
      live[i]!.send(packet, udp, "127.0.0.1");
    }
    for (const until = Date.now() + 5000; (resolver.stats().queries < 40 || held.length === 0) && Date.now() < until; ) await Bun.sleep(5);
    expect([resolver.stats().queries, held.length]).toEqual([40, 1]);
    for (const socket of dead) socket.close();
    held[0]!();
    // Replies over loopback come at once; the wait only bounds the failing case.
    for (const until = Date.now() + 2000; answered.size < 20 && Date.now() < until; ) await Bun.sleep(5);
    expect(answered.size).toBe(20);
  });
});

describe("special-use and private names (found in review: all forwarded)", () => {
  const reverse = (address: string) => {
    const ip = parseIp(address)!;
    if (ip.family === 4) return `${[...ip.bytes].reverse().join(".")}.in-addr.arpa`;
    return `${[...ip.bytes].flatMap((b) => [b >> 4, b & 15]).reverse().map((n) => n.toString(16)).join(".")}.ip6.arpa`;
  };

  test("are answered here, never forwarded: localhost, private and shared-space reverse zones, local, home.arpa, invalid, single-label names", async () => {
    const upstream = await startUpstream();
    const { ask, resolver } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }] });
    const localhost = await ask("localhost");
    expect([localhost.rcode, localhost.aa, rdata(localhost)]).toEqual([Rcode.NOERROR, true, ["localhost. 10800 1 127.0.0.1"]]);
    expect(rdata(await ask("LocalHost", RRType.AAAA))).toEqual(["LocalHost. 10800 28 ::1"]);
    expect(rdata(await ask("app.localhost"))).toEqual(["app.localhost. 10800 1 127.0.0.1"]);
    const mx = await ask("localhost", RRType.MX);
    expect([mx.rcode, mx.answer.length, rdata(mx, "authority")]).toEqual([Rcode.NOERROR, 0, ["localhost. 10800 6 localhost. nobody.invalid. 1 3600 1200 604800 10800"]]);
    expect(rdata(await ask(reverse("127.0.0.1"), RRType.PTR))).toEqual([`${reverse("127.0.0.1")}. 10800 12 localhost.`]);
    expect(rdata(await ask(reverse("::1"), RRType.PTR))).toEqual([`${reverse("::1")}. 10800 12 localhost.`]);

    for (const address of ["100.64.0.5", "100.127.255.1", "10.1.2.3", "172.16.0.1", "172.31.9.9", "192.168.1.1", "169.254.1.1", "127.0.0.2", "0.1.2.3", "fd7a:115c:a1e0::5", "fc00::1", "fe80::1", "febf::1", "::"]) {
      const ptr = await ask(reverse(address), RRType.PTR);
      expect([address, ptr.rcode, ptr.aa, ptr.authority.map((rr) => rr.type)]).toEqual([address, address === "::" ? Rcode.NOERROR : Rcode.NXDOMAIN, true, [RRType.SOA]]);
    }
    const apex = await ask("168.192.in-addr.arpa", RRType.SOA);
    expect([apex.rcode, rdata(apex)]).toEqual([Rcode.NOERROR, ["168.192.in-addr.arpa. 10800 6 168.192.in-addr.arpa. nobody.invalid. 1 3600 1200 604800 10800"]]);
    for (const name of ["printer.local", "nas.home.arpa", "x.invalid", "x.test", "x.onion", "wpad"]) {
      const nx = await ask(name);
      expect([name, nx.rcode, nx.aa]).toEqual([name, Rcode.NXDOMAIN, true]);
    }
    expect((await ask("wpad", RRType.AAAA)).rcode).toBe(Rcode.NXDOMAIN);
    expect(upstream.events).toEqual([]);

    // Their neighbours are public, and forwarded: 100.0.0.0/10 is not the shared space, 172.32/16 not private; a TLD's NS.
    for (const [name, type] of [[reverse("100.63.0.5"), RRType.PTR], [reverse("172.32.0.1"), RRType.PTR], ["org", RRType.NS]] as const) await ask(name, type);
    expect(upstream.events.map((e) => e.qname)).toEqual([`${reverse("100.63.0.5")}.`, `${reverse("172.32.0.1")}.`, "org."]);
    expect(resolver.stats()).toMatchObject({ forwarded: 3 });
  });

  test("with private_names forward, the private names go to the upstream (an Active Directory, a router); the special-use ones stay here (found in review)", async () => {
    const upstream = await startUpstream();
    const { ask } = await start({ upstreams: [{ address: "127.0.0.1", port: upstream.port }], privateNames: "forward" });
    for (const [name, type] of [[reverse("192.168.1.10"), RRType.PTR], [reverse("100.64.0.5"), RRType.PTR], ["dc1.corp.local", RRType.A], ["nas.home.arpa", RRType.A], ["nas", RRType.A]] as const) await ask(name, type);
    expect(upstream.events.map((e) => e.qname)).toEqual([`${reverse("192.168.1.10")}.`, `${reverse("100.64.0.5")}.`, "dc1.corp.local.", "nas.home.arpa.", "nas."]);
    for (const name of ["localhost", "x.invalid", "x.test", "x.onion", reverse("127.0.0.2")]) await ask(name, name.endsWith("arpa") ? RRType.PTR : RRType.A);
    expect(upstream.events).toHaveLength(5);
  });

  test("the hosted zones answer first; with no upstream, they are answered all the same", async () => {
    const local = new ZoneTable();
    local.set(build("home.arpa.", "$TTL 60\n@ SOA ns hostmaster 1 1h 15m 1w 60\n@ NS ns\nns A 192.168.1.1\nnas A 192.168.1.10\n"));
    const { ask } = await start({ local });
    expect(rdata(await ask("nas.home.arpa"))).toEqual(["nas.home.arpa. 60 1 192.168.1.10"]);
    expect(rdata(await ask("printer.home.arpa"), "authority")).toEqual(["home.arpa. 60 6 ns.home.arpa. hostmaster.home.arpa. 1 3600 900 604800 60"]); // the hosted zone's NXDOMAIN
    expect(rdata(await ask("localhost"))).toEqual(["localhost. 10800 1 127.0.0.1"]);
    expect((await ask("printer.local")).rcode).toBe(Rcode.NXDOMAIN);
    expect((await ask("www.example.org")).rcode).toBe(Rcode.REFUSED);
  });
});
