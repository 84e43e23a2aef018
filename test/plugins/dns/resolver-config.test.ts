/**
 * The filtering resolver as the dns plugin starts it from [dns] resolver_*: the hosted zones
 * answered locally, names from a blocklist file blocked, and with no upstream configured,
 * everything else REFUSED (nothing leaves the host).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeQuery, encodeResponse, Rcode } from "../../../plugins/dns/message.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { rdataToText, RRType } from "../../../plugins/dns/rdata.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { buildQuery, DnsClient } from "../../helpers/reference-dns.ts";

/** An upstream answering every A question with 192.0.2.1 for `ttl` seconds, counting the questions. */
async function countingUpstream(ttl: number) {
  const upstream = { port: 0, asked: 0, close: () => {} };
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    binaryType: "uint8array",
    socket: {
      data(s, data, port, address) {
        upstream.asked++;
        const query = decodeQuery(data);
        const record = { name: query.question!.name, type: RRType.A, class: 1, ttl, rdata: Uint8Array.of(192, 0, 2, 1) };
        s.send(encodeResponse({ id: query.id, opcode: 0, rcode: 0, aa: false, tc: false, rd: true, ra: false, question: query.question!, answer: [record], authority: [], additional: [], edns: null }, 512), port, address);
      },
    },
  });
  upstream.port = socket.port;
  upstream.close = () => socket.close();
  return upstream;
}

test("hosted zones answered, blocklisted names sinkholed, the rest refused without an upstream", async () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-resolver-"));
  const blocklist = join(dir, "ads.txt");
  writeFileSync(blocklist, "# ads\n0.0.0.0 ads.example.net\ntracker.example.com\n");
  const c = await testCitadel({
    config: { dns: { udp: ["127.0.0.1:0"], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_blocklists: [blocklist], resolver_block_mode: "sinkhole" } },
  });
  try {
    const owner = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    expect((await c.send("POST", zones, owner, { json: { name: "corp.example" } })).status).toBe(200);
    expect((await c.send("PUT", `${zones}/corp.example/rrsets/db/A`, owner, { json: { records: ["10.0.0.5"] } })).status).toBe(200);
    const started = c.log.lines.find((l) => l.msg === "dns resolver listening")!;
    expect(started).toMatchObject({ upstreams: [], blocklist: 2, forwarding: expect.stringContaining("off") });
    const client = await DnsClient.open((started.udp as number[])[0]!);
    const ask = async (name: string, type: number = RRType.A) => {
      const reply = await client.query(buildQuery({ name: parseName(name, null), type, rd: true }));
      return { rcode: reply.rcode, data: reply.answer.map((r) => rdataToText(r.type, r.rdata)) };
    };
    expect(await ask("db.corp.example.")).toEqual({ rcode: Rcode.NOERROR, data: ["10.0.0.5"] });
    expect(await ask("x.ads.example.net.")).toEqual({ rcode: Rcode.NOERROR, data: ["0.0.0.0"] });
    expect(await ask("tracker.example.com.", RRType.AAAA)).toEqual({ rcode: Rcode.NOERROR, data: ["::"] });
    expect((await ask("www.example.org.")).rcode).toBe(Rcode.REFUSED);
    client.close();
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the resolver runs alone, with the authoritative listeners off, and still answers the hosted zones as they change (found in review)", async () => {
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"] } } });
  try {
    expect(c.log.lines.some((l) => l.msg === "dns listening")).toBe(false);
    const started = c.log.lines.find((l) => l.msg === "dns resolver listening")!;
    expect(started).toBeDefined();
    const owner = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    expect((await c.send("POST", zones, owner, { json: { name: "corp.example" } })).status).toBe(200);
    expect((await c.send("PUT", `${zones}/corp.example/rrsets/db/A`, owner, { json: { records: ["10.0.0.6"] } })).status).toBe(200);
    const client = await DnsClient.open((started.udp as number[])[0]!);
    const reply = await client.query(buildQuery({ name: parseName("db.corp.example.", null), type: RRType.A, rd: true }));
    expect([reply.rcode, reply.answer.map((r) => rdataToText(r.type, r.rdata))]).toEqual([Rcode.NOERROR, ["10.0.0.6"]]);
    client.close();
  } finally {
    await c.stop();
  }
});

test("a resolver that cannot bind is logged as off, without claiming an authoritative server that is off too (found in review)", async () => {
  const taken = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: [`127.0.0.1:${taken.port}`] } } });
  try {
    const failed = c.log.lines.find((l) => String(l.msg).startsWith("dns resolver: cannot start"));
    expect(failed).toMatchObject({ msg: "dns resolver: cannot start, the resolver is off (check [dns] resolver_udp and resolver_tcp)", udp: [`127.0.0.1:${taken.port}`] });
    expect(c.log.lines.some((l) => String(l.msg).includes("authoritative"))).toBe(false);
  } finally {
    await c.stop();
    taken.close();
  }
});

test("a resolver that cannot start for an option's sake is logged naming that key, not the listeners' (found in review)", async () => {
  // The config check refuses these at load; the kernel is given them unchecked here.
  for (const [dns, key] of [
    [{ resolver_upstreams: ["999.1.1.1:53"] }, "resolver_upstreams"],
    [{ resolver_clients: ["mesh"] }, "resolver_clients"],
    [{ resolver_block_mode: "sinkhole", resolver_sinkhole_ipv4: "::1" }, "resolver_sinkhole_ipv4 and resolver_sinkhole_ipv6"],
  ] as const) {
    const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], ...dns } } });
    try {
      const failed = c.log.lines.find((l) => String(l.msg).startsWith("dns resolver: cannot start"));
      expect(failed?.msg).toBe(`dns resolver: cannot start, the resolver is off (check [dns] ${key})`);
    } finally {
      await c.stop();
    }
  }
});

test("a resolver_udp address without TCP at the same address is said at start (found in review: answers over 1232 octets failed for the mesh's clients)", async () => {
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_tcp: [] } } });
  try {
    const warning = c.log.lines.find((l) => String(l.msg).startsWith("dns resolver: [dns] resolver_udp addresses without resolver_tcp"));
    expect(warning).toMatchObject({ level: "warn", resolver_udp: ["127.0.0.1:0"] });
  } finally {
    await c.stop();
  }
  const both = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_tcp: ["127.0.0.1:0"] } } });
  try {
    expect(both.log.lines.some((l) => String(l.msg).includes("without resolver_tcp"))).toBe(false);
    expect(both.log.lines.some((l) => l.msg === "dns resolver listening")).toBe(true);
  } finally {
    await both.stop();
  }
});

test("resolver_clients that let every address in (0.0.0.0/0, ::/0) start with a warning naming the key (found in review: silent)", async () => {
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_clients: ["100.64.0.0/10", "0.0.0.0/0", "::/0"] } } });
  try {
    const warning = c.log.lines.find((l) => String(l.msg).startsWith("dns resolver: [dns] resolver_clients lets every address"));
    expect(warning).toMatchObject({ level: "warn", resolver_clients: ["0.0.0.0/0", "::/0"] });
    expect(c.log.lines.some((l) => l.msg === "dns resolver listening")).toBe(true);
  } finally {
    await c.stop();
  }
  const mesh = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_clients: ["100.64.0.0/10"] } } });
  try {
    expect(mesh.log.lines.some((l) => String(l.msg).includes("resolver_clients lets every address"))).toBe(false);
  } finally {
    await mesh.stop();
  }
});

test("a blocklist of a million lines is loaded and used, not dropped as unreadable (found in review: a spread of its entries overflowed the stack and filtering failed open)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-resolver-"));
  const blocklist = join(dir, "big.txt");
  const entries = 1_000_000;
  writeFileSync(blocklist, Array.from({ length: entries }, (_, i) => `0.0.0.0 ad${i}.example.net`).join("\n"));
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_blocklists: [blocklist] } } });
  try {
    expect(c.log.lines.some((l) => String(l.msg).startsWith("dns resolver: a blocklist cannot be read"))).toBe(false);
    const started = c.log.lines.find((l) => l.msg === "dns resolver listening")!;
    expect(started).toMatchObject({ blocklist: entries });
    const client = await DnsClient.open((started.udp as number[])[0]!);
    const reply = await client.query(buildQuery({ name: parseName(`ad${entries - 1}.example.net.`, null), type: RRType.A, rd: true }));
    expect(reply.rcode).toBe(Rcode.NXDOMAIN);
    client.close();
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the cache ages answers on a clock that never goes back: a wall clock stepped back serves nothing stale, one stepped forward expires nothing (found in review)", async () => {
  const upstream = await countingUpstream(60);
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_upstreams: [`127.0.0.1:${upstream.port}`] } } });
  try {
    const started = c.log.lines.find((l) => l.msg === "dns resolver listening")!;
    const client = await DnsClient.open((started.udp as number[])[0]!);
    const ask = async () => (await client.query(buildQuery({ name: parseName("www.example.org.", null), type: RRType.A, rd: true }))).answer.map((rr) => rr.ttl);
    expect(await ask()).toEqual([60]);
    c.clock.step(3_600_000); // NTP's correction forward: no time passed
    c.clock.advance(10_000);
    expect([await ask(), upstream.asked]).toEqual([[50], 1]);
    c.clock.step(-7_200_000); // and back, past where it began
    c.clock.advance(51_000); // 61 s since the answer came: expired
    expect([await ask(), upstream.asked]).toEqual([[60], 2]);
    client.close();
  } finally {
    await c.stop();
    upstream.close();
  }
});

test("the resolver's counts are metrics (citadel_dns_resolver_*), gone when it stops (found in review: stats() was read by nothing)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-resolver-"));
  const blocklist = join(dir, "ads.txt");
  writeFileSync(blocklist, "ads.example.net\n");
  const c = await testCitadel({ config: { dns: { udp: [], tcp: [], resolver_udp: ["127.0.0.1:0"], resolver_tcp: ["127.0.0.1:0"], resolver_blocklists: [blocklist] } } });
  try {
    const started = c.log.lines.find((l) => l.msg === "dns resolver listening")!;
    const client = await DnsClient.open((started.udp as number[])[0]!);
    for (const name of ["x.ads.example.net.", "localhost.", "www.example.org."]) await client.query(buildQuery({ name: parseName(name, null), type: RRType.A, rd: true }));
    client.close();
    const samples = Object.fromEntries(c.kernel.metrics.render().split("\n").filter((line) => line.startsWith("citadel_dns_resolver_")).map((line) => line.split(" ")));
    expect(samples).toEqual({
      citadel_dns_resolver_queries_total: "3",
      citadel_dns_resolver_blocked_total: "1",
      citadel_dns_resolver_local_total: "1",
      citadel_dns_resolver_cache_hits_total: "0",
      citadel_dns_resolver_cache_misses_total: "0",
      citadel_dns_resolver_forwarded_total: "0",
      citadel_dns_resolver_upstream_failures_total: "0",
      citadel_dns_resolver_refused_total: "1",
      citadel_dns_resolver_servfail_total: "0",
      citadel_dns_resolver_cached_answers: "0",
    });
    expect(c.kernel.metrics.render()).toContain("# TYPE citadel_dns_resolver_cached_answers gauge");
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  expect(c.kernel.metrics.render()).not.toContain("citadel_dns_resolver_");
});
