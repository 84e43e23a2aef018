/**
 * The query log: sampled, JSON lines with the client reduced to its prefix by default, and never
 * more on disk than its cap — the current file and one rotated file, each at most half.
 */
import { afterEach, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type Name, nameToWire, parseName } from "../../../plugins/dns/names.ts";
import { QueryLog } from "../../../plugins/dns/query-log.ts";
import { type QueryEvent, startDnsServer, ZoneTable } from "../../../plugins/dns/server.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { silentLogger } from "../../../src/log.ts";
import { captureLog } from "../../helpers/http.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function queryLog(options: Partial<ConstructorParameters<typeof QueryLog>[0]> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "citadel-qlog-"));
  dirs.push(dir);
  const path = join(dir, "dns-queries.log");
  const captured = captureLog();
  const log = new QueryLog({ path, sample: 1, maxBytes: 1 << 20, client: "prefix", now: () => Date.UTC(2026, 10, 23, 12), log: captured.logger, flushMs: 60_000, ...options });
  return { log, path, logged: captured.lines };
}

/** A query's octets: the header (ID 0, one question) and the question, from which the log reads the client's spelling of the name. */
const queryFor = (name: Name, qtype = 28) => Uint8Array.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...nameToWire(name), qtype >> 8, qtype & 255, 0, 1]);

const event = (i: number, client = "192.0.2.57"): QueryEvent => ({
  client,
  zone: parseName("example.org.", null),
  qname: parseName(`host${i}.example.org.`, null),
  query: queryFor(parseName(`host${i}.example.org.`, null)),
  qtype: 28,
  rcode: 0,
  transport: "udp",
  bytes: 80,
  gated: false,
  time: Date.UTC(2026, 10, 23, 12),
});

test("a line per query: JSON with the client's prefix, the names and the type in text; file mode 0600", () => {
  const { log, path } = queryLog();
  log.observe(event(1));
  log.observe(event(2, "2001:db8:aa:bb:cc::1"));
  log.close();
  const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(lines).toEqual([
    { time: "2026-11-23T12:00:00.000Z", client: "192.0.2.0/24", transport: "udp", zone: "example.org.", qname: "host1.example.org.", qtype: "AAAA", rcode: 0, bytes: 80 },
    expect.objectContaining({ client: "2001:db8:aa::/56", qname: "host2.example.org." }),
  ]);
  expect(statSync(path).mode & 0o777).toBe(0o600);
});

test("client detail: full or none when configured", () => {
  for (const [client, expected] of [["full", "192.0.2.57"], ["none", null]] as const) {
    const { log, path } = queryLog({ client });
    log.observe(event(1));
    log.close();
    expect(JSON.parse(readFileSync(path, "utf8")).client).toBe(expected);
  }
});

test("the disk cap holds: two files at most, each within half of it, whatever the volume", () => {
  const { log, path } = queryLog({ maxBytes: 8192 });
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 200; i++) log.observe(event(round * 1000 + i));
    log.flush();
    expect(statSync(path).size).toBeLessThanOrEqual(4096);
    if (existsSync(`${path}.1`)) expect(statSync(`${path}.1`).size).toBeLessThanOrEqual(4096);
  }
  log.close();
  expect(existsSync(`${path}.2`)).toBe(false);
  // What is there is whole lines, the newest last.
  const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.length).toBeGreaterThan(0);
});

test("sampling: about one query in N is written", () => {
  const { log, path } = queryLog({ sample: 100 });
  for (let i = 0; i < 20_000; i++) log.observe(event(i));
  log.close();
  const written = readFileSync(path, "utf8").trim().split("\n").length;
  // Binomial(20000, 0.01): mean 200, sd ~14; ±6 sd.
  expect(written).toBeGreaterThan(115);
  expect(written).toBeLessThan(285);
});

test("a rotation that fails keeps the log's own file: nothing is written into a file opened afterwards, and close leaves it open (found in review)", () => {
  const { log, path } = queryLog({ maxBytes: 8192 });
  for (let i = 0; i < 10; i++) log.observe(event(i));
  log.flush();
  expect(statSync(path).size).toBeLessThan(4096);
  // The rotated name is taken by a non-empty directory: the rename fails.
  mkdirSync(`${path}.1`);
  writeFileSync(join(`${path}.1`, "keep"), "");
  for (let i = 0; i < 20; i++) log.observe(event(100 + i));
  log.flush();
  const unrelated = join(dirname(path), "unrelated");
  const fd = openSync(unrelated, "w");
  try {
    log.observe(event(200));
    log.flush();
    log.close();
    expect(readFileSync(unrelated, "utf8")).toBe("");
    writeSync(fd, "still open"); // throws EBADF when close() closed it
    expect(readFileSync(unrelated, "utf8")).toBe("still open");
  } finally {
    closeSync(fd);
  }
});

test("once the rotated name is free again, the log rotates and goes on", () => {
  const { log, path } = queryLog({ maxBytes: 8192 });
  mkdirSync(`${path}.1`);
  writeFileSync(join(`${path}.1`, "keep"), "");
  for (let i = 0; i < 40; i++) log.observe(event(i));
  log.flush();
  rmSync(`${path}.1`, { recursive: true });
  for (let i = 0; i < 40; i++) log.observe(event(100 + i));
  log.flush();
  log.observe(event(1000));
  log.close();
  expect(statSync(`${path}.1`).isFile()).toBe(true);
  expect(readFileSync(path, "utf8")).toContain("host1000.example.org.");
});

test("a burst larger than a file's half: every line is either written or counted as dropped (found in review: the cut lines vanished)", () => {
  const { log, path, logged } = queryLog({ maxBytes: 8192 });
  const sent = 100; // about 17 KB of lines, four times the 4 KiB half
  for (let i = 0; i < sent; i++) log.observe(event(i));
  log.close();
  const written = readFileSync(path, "utf8").trim().split("\n").length;
  const dropped = logged.filter((l) => String(l.msg).startsWith("dns query log: lines dropped")).reduce((n, l) => n + Number(l.dropped), 0);
  expect(written).toBeGreaterThan(0);
  expect(written + dropped).toBe(sent);
});

test("log files deleted by hand (a purge after an erasure): a new file is started at the next rotation, without an error", () => {
  const { log, path, logged } = queryLog({ maxBytes: 8192 });
  for (let i = 0; i < 10; i++) log.observe(event(i));
  log.flush();
  rmSync(path);
  for (let i = 0; i < 20; i++) log.observe(event(100 + i)); // past the file's half: a rotation
  log.flush();
  log.close();
  expect(logged.filter((l) => l.level === "error")).toEqual([]);
  expect(readFileSync(path, "utf8")).toContain("host119.example.org.");
  expect(existsSync(`${path}.1`)).toBe(false);
});

test("log files emptied in place (truncate, as docs/gdpr.md advises after an erasure) are written on without a restart", () => {
  const { log, path } = queryLog({ maxBytes: 8192 });
  for (let i = 0; i < 10; i++) log.observe(event(i));
  log.flush();
  truncateSync(path, 0);
  log.observe(event(500));
  log.close();
  const lines = readFileSync(path, "utf8").trim().split("\n");
  expect(lines.map((l) => JSON.parse(l).qname)).toEqual(["host500.example.org."]);
});

/** One UDP query to the server; its reply (or null after a while). */
async function udpAsk(port: number, packet: Uint8Array): Promise<Uint8Array | null> {
  const { promise, resolve } = Promise.withResolvers<Uint8Array | null>();
  const client = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => resolve(data), error: () => resolve(null) } });
  const timer = setTimeout(() => resolve(null), 10_000);
  client.send(packet, port, "127.0.0.1");
  const reply = await promise;
  clearTimeout(timer);
  client.close();
  return reply;
}

test("the name is logged as the client sent it, also when the reply came from the answer cache (found in review: a hit logged the first asker's case)", async () => {
  const origin = parseName("example.test.", null);
  const zones = new ZoneTable();
  zones.set(Zone.build(origin, parseZoneFile("@ 3600 SOA ns1 hostmaster 1 1h 15m 1w 300\n@ 3600 NS ns1\nwww 3600 A 192.0.2.1\n", { origin, defaultTtl: 3600 })));
  const { log, path } = queryLog();
  const server = await startDnsServer({ udp: [{ address: "127.0.0.1", port: 0 }], tcp: [], zones, observer: log, log: silentLogger });
  try {
    for (const spelling of ["www.example.test.", "WwW.ExAmPlE.TeSt.", "www.EXAMPLE.test."]) {
      expect(await udpAsk(server.udpPorts[0]!, queryFor(parseName(spelling, null), 1))).not.toBeNull();
    }
  } finally {
    await server.stop();
    log.close();
  }
  const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((l) => [l.qname, l.zone, l.rcode])).toEqual([
    ["www.example.test.", "example.test.", 0],
    ["WwW.ExAmPlE.TeSt.", "example.test.", 0],
    ["www.EXAMPLE.test.", "example.test.", 0],
  ]);
});
