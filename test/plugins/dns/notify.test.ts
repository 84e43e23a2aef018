/**
 * The NOTIFY sender against a secondary played by a UDP socket in the test: the answer is
 * checked with the TSIG key as it is when the answer arrives, not as it was when sent.
 */
import { afterEach, expect, spyOn, test } from "bun:test";
import { decodeMessage, decodeQuery, encodeResponse, Opcode } from "../../../plugins/dns/message.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { Notifier, notifySources, type NotifyOptions, type NotifySources } from "../../../plugins/dns/notify.ts";
import { appendUnsignedError, readTsig, sign, TsigError, type TsigKey } from "../../../plugins/dns/tsig.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { captureLog } from "../../helpers/http.ts";

const stops: Array<() => unknown> = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

const origin = parseName("example.org.", null);
const zone = Zone.build(origin, parseZoneFile("@ 3600 SOA ns1 hostmaster 7 1h 15m 1w 300\n@ 3600 NS ns1\nns1 3600 A 192.0.2.53\n", { origin, defaultTtl: 3600 }));
const keyName = parseName("fleet.", null);
const secret = () => new Uint8Array(32).fill(7);

test("a NOTIFY is answered even when the key it was signed with was overwritten meanwhile (a newer view of the keys)", async () => {
  let current: TsigKey | null = { name: keyName, algorithm: "hmac-sha256", secret: secret() };
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => current, now: () => Date.now(), retryDelaysMs: [5_000] });
  stops.push(() => notifier.stop());
  const received = Promise.withResolvers<{ data: Uint8Array; port: number; address: string }>();
  const secondary = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data, port, address) => received.resolve({ data, port, address }) } });
  stops.push(() => secondary.close());

  notifier.notify(zone, [{ secondary: "ns2", address: "127.0.0.1", port: secondary.port, keyName }]);
  const { data, port, address } = await received.promise;
  // Meanwhile the keys were read again: the old copy is overwritten, the same key is current.
  const signedWith = current!;
  current = { ...signedWith, secret: secret() };
  signedWith.secret.fill(0);

  const query = decodeQuery(data);
  expect(query.opcode).toBe(Opcode.NOTIFY);
  const requestMac = readTsig(data, query.tsigStart).mac;
  const answer = encodeResponse({ id: query.id, opcode: Opcode.NOTIFY, rcode: 0, aa: true, tc: false, rd: false, ra: false, question: query.question!, answer: [], authority: [], additional: [], edns: null }, 512);
  secondary.send(sign(answer, current, { kind: "response", requestMac }, Date.now()).message, port, address);
  for (let i = 0; i < 200 && !log.lines.some((l) => l.msg === "dns notify answered"); i++) await Bun.sleep(10);
  expect(log.lines.filter((l) => String(l.msg).startsWith("dns notify")).map((l) => l.msg)).toEqual(["dns notify answered"]);
  expect(decodeMessage(data).questions.map((q) => q.type)).toEqual([6]); // the SOA question
});

test("a secondary that is not listening (ICMP port unreachable) is retried and given up on; the process goes on (found in review: it ended it)", async () => {
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [50, 50] });
  stops.push(() => notifier.stop());
  const closed = await Bun.udpSocket({ hostname: "127.0.0.1" });
  const port = closed.port;
  closed.close(); // nothing listens there now: the kernel answers with port unreachable

  notifier.notify(zone, [{ secondary: "ns2", address: "127.0.0.1", port, keyName }]);
  for (let i = 0; i < 300 && !log.lines.some((l) => l.msg === "dns notify not answered; the secondary will see the change at its next SOA refresh"); i++) await Bun.sleep(10);
  expect(log.lines.some((l) => l.msg === "dns notify socket error")).toBe(true); // the refusal arrived, and was handled
  expect(log.lines.some((l) => l.msg === "dns notify not answered; the secondary will see the change at its next SOA refresh")).toBe(true);
});

test("a host without IPv6: the failed bind is tried again at each send, not kept; stop closes the IPv4 socket and resolves (found in review: it threw)", async () => {
  const log = captureLog();
  const bindUdp = Bun.udpSocket;
  const binds: string[] = [];
  const noIpv6 = spyOn(Bun, "udpSocket").mockImplementation(((options: { hostname?: string }) => {
    binds.push(String(options.hostname));
    return options.hostname === "::" ? Promise.reject(new Error("EAFNOSUPPORT")) : bindUdp(options as never);
  }) as never);
  stops.push(() => noIpv6.mockRestore());
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [1] });
  const received = Promise.withResolvers<void>();
  const secondary = await bindUdp({ hostname: "127.0.0.1", socket: { data: () => received.resolve() } });
  stops.push(() => secondary.close());

  notifier.notify(zone, [
    { secondary: "ns6", address: "2001:db8::53", port: 53, keyName },
    { secondary: "ns2", address: "127.0.0.1", port: secondary.port, keyName },
  ]);
  await received.promise;
  for (let i = 0; i < 300 && log.lines.filter((l) => l.msg === "dns notify could not be sent").length < 2; i++) await Bun.sleep(10);
  expect(binds.filter((h) => h === "::")).toEqual(["::", "::"]); // both sends to ns6 tried to bind
  const ipv4 = await (notifier as unknown as { sockets: Map<string, Promise<{ closed: boolean }>> }).sockets.get("0.0.0.0")!;
  await notifier.stop(); // threw the bind's error before, and left the IPv4 socket open
  expect(ipv4.closed).toBe(true);
});

/** A secondary that answers each NOTIFY with `answer(its query)`; what the notifier logged once a line starting with `until` came. */
async function notifyAnsweredWith(answer: (query: Uint8Array) => Uint8Array, until: string, sources?: NotifySources, options?: NotifyOptions) {
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [60_000], sources });
  stops.push(() => notifier.stop());
  let from: string | null = null;
  const secondary = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data: (s, data, port, address) => {
        from = address;
        s.send(answer(data), port, address);
      },
    },
  });
  stops.push(() => secondary.close());
  notifier.notify(zone, [{ secondary: "ns2", address: "127.0.0.1", port: secondary.port, keyName }], options);
  for (let i = 0; i < 300 && !log.lines.some((l) => String(l.msg).startsWith(until)); i++) await Bun.sleep(10);
  return { lines: log.lines.filter((l) => String(l.msg).startsWith("dns notify")), inFlight: notifier.inFlight, from: from as string | null };
}

/** The NOTIFY answer with `rcode`, before a TSIG is added, and the request's MAC it chains to. */
function errorAnswer(query: Uint8Array, rcode: number) {
  const decoded = decodeQuery(query);
  const unsigned = encodeResponse({ id: decoded.id, opcode: Opcode.NOTIFY, rcode, aa: false, tc: false, rd: false, ra: false, question: decoded.question!, answer: [], authority: [], additional: [], edns: null }, 512);
  return { unsigned, request: readTsig(query, decoded.tsigStart) };
}

test("a signed error answer (NOTAUTH: the secondary does not serve the zone) ends the retries with a warning naming the rcode, not 'answered' (found in review)", async () => {
  const key: TsigKey = { name: keyName, algorithm: "hmac-sha256", secret: secret() };
  const seen = await notifyAnsweredWith((query) => {
    const { unsigned, request } = errorAnswer(query, 9);
    return sign(unsigned, key, { kind: "response", requestMac: request.mac }, Date.now()).message;
  }, "dns notify answered");
  expect(seen.lines.map((l) => [l.level, l.msg, l.rcode])).toEqual([["warn", "dns notify answered with an error; the secondary will see the change at its next SOA refresh (does it serve the zone, and take NOTIFY from us?)", "NOTAUTH"]]);
  expect(seen.inFlight).toBe(0);
});

test("an unsigned error answer (BADKEY: the secondary does not know our key) is a warning that it rejected our TSIG, at once; the retries go on, as it could be forged (found in review)", async () => {
  const seen = await notifyAnsweredWith((query) => {
    const { unsigned, request } = errorAnswer(query, 9);
    return appendUnsignedError(unsigned, request, TsigError.BADKEY);
  }, "dns notify rejected");
  expect(seen.lines.map((l) => [l.level, l.rcode, l.tsig_error])).toEqual([["warn", "NOTAUTH", "BADKEY"]]);
  expect(String(seen.lines[0]!.msg)).toContain("does not take our TSIG");
  expect(seen.inFlight).toBe(1);
});

test("NOTIFY leaves from the listener's address, not the one the system picks; a rejection names it (found in review: Knot refused NOTIFY from 127.0.0.1 for a primary on 127.0.0.2)", async () => {
  // A second loopback address stands for a host with several: the system picks 127.0.0.1 to reach 127.0.0.1.
  const seen = await notifyAnsweredWith(
    (query) => {
      const { unsigned, request } = errorAnswer(query, 9);
      return appendUnsignedError(unsigned, request, TsigError.BADKEY);
    },
    "dns notify rejected",
    { 4: { local: "127.0.0.2" } },
  );
  expect(seen.from).toBe("127.0.0.2");
  expect(seen.lines.map((l) => [l.tsig_error, l.source])).toEqual([["BADKEY", "127.0.0.2"]]);
  expect(String(seen.lines[0]!.msg)).toContain("NOTIFY from our source address");
});

test("an unsigned NOTAUTH without a TSIG error says the secondary does not serve the zone or refused us, not that it rejects our TSIG (found in review)", async () => {
  const seen = await notifyAnsweredWith((query) => errorAnswer(query, 9).unsigned, "dns notify rejected");
  expect(seen.lines.map((l) => [l.rcode, l.tsig_error, l.source])).toEqual([["NOTAUTH", null, "0.0.0.0"]]);
  expect(String(seen.lines[0]!.msg)).toContain("does not serve this zone or refused us");
  expect(String(seen.lines[0]!.msg)).not.toContain("TSIG");
});

test("the NOTIFY source of each family: the first UDP listener's address of that family, unless it listens on every address; to a secondary off this host, the first not on loopback or link-local (found in review: EINVAL from 127.0.0.1)", () => {
  const listeners = ["0.0.0.0", "localhost", "127.0.0.2", "127.0.0.3", "::", "fe80::1", "::ffff:192.0.2.1", "2001:db8::53"].map((address) => ({ address }));
  expect(notifySources(listeners)).toEqual({ 4: { local: "127.0.0.2", routable: "192.0.2.1" }, 6: { local: "fe80::1", routable: "2001:db8::53" } });
  expect(notifySources([{ address: "127.0.0.1" }, { address: "::1" }])).toEqual({ 4: { local: "127.0.0.1" }, 6: { local: "::1" } });
  expect(notifySources([{ address: "0.0.0.0" }, { address: "::" }])).toEqual({});
});

test("a NOTIFY to a secondary off this host never leaves from a loopback listener: it is sent, from the routable listener or the system's choice (found in review)", async () => {
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [60_000], sources: notifySources([{ address: "127.0.0.1" }]) });
  // 192.0.2.1 (TEST-NET-1) answers nothing; a socket bound to 127.0.0.1 could not even send to it (EINVAL).
  notifier.notify(zone, [{ secondary: "ns2", address: "192.0.2.1", port: 53, keyName }]);
  await Bun.sleep(50);
  await notifier.stop();
  expect(log.lines.filter((l) => l.msg === "dns notify could not be sent")).toEqual([]);
});

test("a zone new to catalog consumers: their first NOTAUTH (the zone not taken from the catalog yet) is said at debug level and sent again, also after a change replaced the NOTIFY; a TSIG refusal is warned of still", async () => {
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [30, 60_000] });
  stops.push(() => notifier.stop());
  const queries: Uint8Array[] = [];
  let badKey = false;
  const secondary = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data: (s, data, port, address) => {
        queries.push(data);
        const { unsigned, request } = errorAnswer(data, 9);
        s.send(badKey ? appendUnsignedError(unsigned, request, TsigError.BADKEY) : unsigned, port, address);
      },
    },
  });
  stops.push(() => secondary.close());
  const to = [{ secondary: "ns2", address: "127.0.0.1", port: secondary.port, keyName }];
  const rejections = () => log.lines.filter((l) => String(l.msg).startsWith("dns notify rejected")).map((l) => l.level);

  notifier.notify(zone, to, { viaCatalog: true });
  for (let i = 0; i < 300 && queries.length < 2; i++) await Bun.sleep(10);
  expect(queries.length).toBe(2); // sent again: the secondary may take the zone from the catalog meanwhile
  // A record set right after the zone was made: its NOTIFY replaces the first, still expected to be refused.
  notifier.notify(zone, to);
  for (let i = 0; i < 300 && rejections().length < 2; i++) await Bun.sleep(10);
  expect(rejections()).toEqual(["debug", "debug"]);

  badKey = true;
  notifier.notify(zone, to, { viaCatalog: true });
  for (let i = 0; i < 300 && rejections().length < 3; i++) await Bun.sleep(10);
  expect(rejections()).toEqual(["debug", "debug", "warn"]);
});

test("a signed NOTAUTH from a catalog consumer for a zone new to it (BIND signs its refusals) is said at debug level, and the NOTIFY stays pending to be sent again", async () => {
  const key: TsigKey = { name: keyName, algorithm: "hmac-sha256", secret: secret() };
  const seen = await notifyAnsweredWith(
    (query) => {
      const { unsigned, request } = errorAnswer(query, 9);
      return sign(unsigned, key, { kind: "response", requestMac: request.mac }, Date.now()).message;
    },
    "dns notify refused",
    undefined,
    { viaCatalog: true },
  );
  expect(seen.lines.map((l) => [l.level, l.msg, l.rcode])).toEqual([["debug", "dns notify refused: the secondary does not serve the zone yet (it learns of it from the catalog zone); sent again", "NOTAUTH"]]);
  expect(seen.inFlight).toBe(1);
});

/** A NOTIFY refused at every attempt by a secondary answering `answer`, retried quickly: what was logged once the retries ended. */
async function refusedThroughout(answer: (query: Uint8Array) => Uint8Array, options?: NotifyOptions) {
  const log = captureLog();
  const notifier = new Notifier({ log: log.logger, tsigKey: () => ({ name: keyName, algorithm: "hmac-sha256", secret: secret() }), now: () => Date.now(), retryDelaysMs: [20, 20, 20] });
  stops.push(() => notifier.stop());
  let sends = 0;
  const secondary = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data: (s, data, port, address) => {
        sends++;
        s.send(answer(data), port, address);
      },
    },
  });
  stops.push(() => secondary.close());
  notifier.notify(zone, [{ secondary: "ns2", address: "127.0.0.1", port: secondary.port, keyName }], options);
  for (let i = 0; i < 300 && (sends === 0 || notifier.inFlight > 0); i++) await Bun.sleep(10);
  expect([sends, notifier.inFlight]).toEqual([4, 0]);
  return log.lines.filter((l) => String(l.msg).startsWith("dns notify"));
}

const CATALOG_REFUSAL = "dns notify refused until the retries ran out: the secondary does not serve this zone, new to it; has it taken the zone from the catalog zone? (is it configured as a consumer of the catalog, and do the member template's primary and ACL name us?)";

test("a zone new to catalog consumers refused at every attempt (unsigned NOTAUTH, as Knot answers): the end is a warning with the real cause, how many refusals, never 'not answered' (found in review)", async () => {
  const lines = await refusedThroughout((query) => errorAnswer(query, 9).unsigned, { viaCatalog: true });
  expect(lines.map((l) => l.level)).toEqual(["debug", "warn"]);
  expect([lines[1]!.msg, lines[1]!.refusals, lines[1]!.attempts, lines[1]!.rcode]).toEqual([CATALOG_REFUSAL, 4, 4, "NOTAUTH"]);
});

test("the same, refused signed (REFUSED, as BIND answers): the same warning at the end", async () => {
  const key: TsigKey = { name: keyName, algorithm: "hmac-sha256", secret: secret() };
  const lines = await refusedThroughout((query) => {
    const { unsigned, request } = errorAnswer(query, 5);
    return sign(unsigned, key, { kind: "response", requestMac: request.mac }, Date.now()).message;
  }, { viaCatalog: true });
  expect(lines.map((l) => [l.level, l.msg, l.refusals, l.rcode])).toEqual([
    ["debug", "dns notify refused: the secondary does not serve the zone yet (it learns of it from the catalog zone); sent again", undefined, "REFUSED"],
    ["warn", CATALOG_REFUSAL, 4, "REFUSED"],
  ]);
});

test("a NOTIFY refused without a valid signature at every attempt, no catalog: warned of at once, and given up on as refused, not as 'not answered' (found in review)", async () => {
  const lines = await refusedThroughout((query) => errorAnswer(query, 9).unsigned);
  expect(lines.map((l) => [l.level, l.msg, l.refusals])).toEqual([
    ["warn", "dns notify rejected without a valid signature: the secondary does not serve this zone or refused us (is the zone configured there, and does it allow NOTIFY from our source address?)", undefined],
    ["warn", "dns notify given up: the secondary refused it (warned of above); it will see the change at its next SOA refresh, if it serves the zone", 4],
  ]);
});

test("a zone new to a catalog consumer refused as new, then with a TSIG error: the key's refusal is warned of when it comes, and the end says given up, not that the zone was not taken from the catalog", async () => {
  let answers = 0;
  const lines = await refusedThroughout((query) => {
    const { unsigned, request } = errorAnswer(query, 9);
    return answers++ === 0 ? unsigned : appendUnsignedError(unsigned, request, TsigError.BADKEY);
  }, { viaCatalog: true });
  expect(lines.map((l) => [l.level, l.tsig_error ?? null, l.refusals ?? null])).toEqual([["debug", null, null], ["warn", "BADKEY", null], ["warn", null, 4]]);
  expect(String(lines[1]!.msg)).toContain("does not take our TSIG");
  expect(String(lines[2]!.msg)).toStartWith("dns notify given up");
});
