/**
 * DNS in /metrics: queries through the in-process listener move the counters by transport,
 * query type and rcode, and the shield's verdicts on DNS clients are counted by action
 * (including a refusal and a drop for a denied address).
 */
import { expect, test } from "bun:test";
import { Rcode } from "../../../plugins/dns/message.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { parsePrometheusText, sampleValue } from "../../helpers/prometheus-text.ts";
import { buildQuery, DnsClient } from "../../helpers/reference-dns.ts";

/** One query from `from` (a loopback address of its own); the reply's rcode, or null without one. */
async function askFrom(from: string, port: number, packet: Uint8Array, waitMs = 10_000): Promise<number | null> {
  const { promise, resolve } = Promise.withResolvers<number | null>();
  const socket = await Bun.udpSocket({ hostname: from, binaryType: "uint8array", socket: { data: (_s, data) => resolve(data[3]! & 0x0f), error: () => resolve(null) } });
  const timer = setTimeout(() => resolve(null), waitMs);
  socket.send(packet, port, "127.0.0.1");
  const rcode = await promise;
  clearTimeout(timer);
  socket.close();
  return rcode;
}

test("DNS queries by transport, qtype and rcode, and the shield's DNS verdicts", async () => {
  // Loopback is not trusted by the shield here, so a manual deny on 127.0.0.2 is enforced.
  const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] }, intel: { trust_loopback: false } } });
  try {
    const owner = await c.login(c.owner.email, c.owner.password);
    expect((await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.org" } })).status).toBe(200);
    const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
    // No resend: a query sent twice (a reply late on a loaded machine) would be counted twice.
    const client = await DnsClient.open(port, { timeoutMs: 10_000, retries: 0 });
    const ask = async (name: string, type: number) => (await client.query(buildQuery({ name: parseName(name, null), type }))).rcode;
    // The zone is served once the reload after its creation has run.
    for (const deadline = Date.now() + 10_000; (await ask("example.org.", RRType.SOA)) !== Rcode.NOERROR && Date.now() < deadline; ) await Bun.sleep(20);

    const scrape = async () => parsePrometheusText((await c.send("GET", "/metrics")).text);
    const queries = (f: Map<string, any>, qtype: string, rcode: string) => sampleValue(f, "citadel_dns_queries_total", { transport: "udp", qtype, rcode }) ?? 0;
    const verdicts = (f: Map<string, any>, action: string) => sampleValue(f, "citadel_shield_verdicts_total", { channel: "dns", action }) ?? 0;
    const before = await scrape();

    for (let i = 0; i < 3; i++) expect(await ask("example.org.", RRType.SOA)).toBe(Rcode.NOERROR);
    for (let i = 0; i < 2; i++) expect(await ask("nope.example.org.", RRType.AAAA)).toBe(Rcode.NXDOMAIN);
    expect(await ask("example.net.", RRType.A)).toBe(Rcode.REFUSED); // no zone here
    expect(await ask("example.org.", 4242)).toBe(Rcode.NOERROR); // an unnamed type: "other"

    expect((await c.send("POST", "/v1/intel/manual", owner, { json: { kind: "deny", target: "127.0.0.2", action: "refuse" } })).status).toBe(200);
    expect((await c.send("POST", "/v1/intel/manual", owner, { json: { kind: "deny", target: "127.0.0.3", action: "drop" } })).status).toBe(200);
    const query = buildQuery({ id: 7, name: parseName("example.org.", null), type: RRType.A });
    expect(await askFrom("127.0.0.2", port, query)).toBe(Rcode.REFUSED);
    expect(await askFrom("127.0.0.3", port, query, 1000)).toBeNull();

    const after = await scrape();
    expect(queries(after, "SOA", "NOERROR") - queries(before, "SOA", "NOERROR")).toBe(3);
    expect(queries(after, "AAAA", "NXDOMAIN") - queries(before, "AAAA", "NXDOMAIN")).toBe(2);
    expect(queries(after, "A", "REFUSED") - queries(before, "A", "REFUSED")).toBe(2); // no zone, and the shield's refusal
    expect(queries(after, "other", "NOERROR") - queries(before, "other", "NOERROR")).toBe(1);
    expect(verdicts(after, "allow") - verdicts(before, "allow")).toBe(7);
    expect(verdicts(after, "refuse") - verdicts(before, "refuse")).toBe(1);
    expect(verdicts(after, "drop") - verdicts(before, "drop")).toBe(1);
    client.close();
  } finally {
    await c.stop();
  }
});
