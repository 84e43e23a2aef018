/**
 * What the listener serves follows the store one change at a time: a change builds again only
 * the zone it changed (and the zones a record provider's names join it with), not every zone of
 * every organization (found in review: four zones of 47,000 records held every answer and API
 * call some two seconds on each change to any zone).
 */
import { describe, expect, test } from "bun:test";
import { dnsServiceOf } from "../../../plugins/dns/index.ts";
import { Rcode } from "../../../plugins/dns/message.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { rdataToText, RRType, typeToText } from "../../../plugins/dns/rdata.ts";
import type { ProvidedRecord } from "../../../src/record-providers.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { buildQuery, DnsClient } from "../../helpers/reference-dns.ts";

async function setup() {
  const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
  const client = await DnsClient.open(port);
  // The zones built for serving, by name, in order (the service builds one zone per call).
  const dns = dnsServiceOf(c.kernel as never);
  const built: string[] = [];
  const build = dns.zone.bind(dns);
  dns.zone = (id: string) => {
    const zone = build(id);
    built.push(zone ? nameToText(zone.origin) : `(${id})`);
    return zone;
  };
  const ask = async (name: string, type: number = RRType.A) => {
    const reply = await client.query(buildQuery({ name: parseName(name, null), type }));
    return { rcode: reply.rcode, data: reply.answer.map((r) => rdataToText(r.type, r.rdata)), authority: reply.authority.map((r) => `${nameToText(r.name)} ${typeToText(r.type)}`) };
  };
  /** Asks until the answer is `expected` (a provider's change reaches the listener after a store write), or 10 s pass. */
  const askUntil = async (name: string, expected: { rcode: number; data: string[] }) => {
    let got = await ask(name);
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && (got.rcode !== expected.rcode || JSON.stringify(got.data) !== JSON.stringify(expected.data)); ) {
      await Bun.sleep(20);
      got = await ask(name);
    }
    return { rcode: got.rcode, data: got.data };
  };
  const put = async (zone: string, name: string, records: string[]) => (await c.send("PUT", `${zones}/${zone}/rrsets/${name}/A`, owner, { json: { records } })).status;
  /** DELETE asks for confirmation: asked, then confirmed with the token. */
  const remove = async (zone: string) => {
    const asked = await c.send("DELETE", `${zones}/${zone}`, owner);
    return (await c.send("DELETE", `${zones}/${zone}`, owner, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status;
  };
  const stop = async () => {
    client.close();
    await c.stop();
  };
  return { c, owner, zones, built, ask, askUntil, put, remove, stop };
}

describe("the served zones after a change", () => {
  test("a change builds only its zone again; the other zones are served as they were", async () => {
    const { c, owner, zones, built, ask, put, remove, stop } = await setup();
    try {
      for (const name of ["a.test", "b.test", "c.test"]) expect((await c.send("POST", zones, owner, { json: { name } })).status).toBe(200);
      expect(await put("b.test", "www", ["192.0.2.2"])).toBe(200);
      built.length = 0;
      expect(await put("a.test", "www", ["192.0.2.1"])).toBe(200);
      expect(built).toEqual(["a.test."]);
      expect((await ask("www.a.test.")).data).toEqual(["192.0.2.1"]);
      expect((await ask("www.b.test.")).data).toEqual(["192.0.2.2"]);
      // An import, a zone made and a zone deleted: each builds the one zone (a deleted one none).
      built.length = 0;
      expect((await c.send("POST", `${zones}/c.test/import`, owner, { json: { content: "@ NS ns1.example.net.\nwww A 192.0.2.3\n" } })).status).toBe(200);
      expect((await c.send("POST", zones, owner, { json: { name: "d.test" } })).status).toBe(200);
      expect(await remove("a.test")).toBe(200);
      expect(built).toEqual(["c.test.", "d.test."]);
      expect((await ask("www.c.test.")).data).toEqual(["192.0.2.3"]);
      expect((await ask("www.a.test.")).rcode).toBe(Rcode.REFUSED);
      expect((await ask("www.b.test.")).data).toEqual(["192.0.2.2"]);
      // A change that is refused builds nothing.
      built.length = 0;
      expect((await c.send("PUT", `${zones}/b.test/rrsets/www/CNAME`, owner, { json: { records: ["x.example."] } })).status).toBe(422);
      expect(built).toEqual([]);
    } finally {
      await stop();
    }
  });

  test("a record provider's names stay merged into their zone whatever else changes, and move with the provider", async () => {
    const { c, owner, zones, built, ask, askUntil, put, remove, stop } = await setup();
    try {
      for (const name of ["example.org", "other.test"]) expect((await c.send("POST", zones, owner, { json: { name } })).status).toBe(200);
      let records: ProvidedRecord[] = [{ name: "db1.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }];
      const unregister = c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: () => records });
      expect(await askUntil("db1.mesh.example.org.", { rcode: Rcode.NOERROR, data: ["100.64.0.1"] })).toEqual({ rcode: Rcode.NOERROR, data: ["100.64.0.1"] });
      // Another zone's change leaves the provider's zone alone; its own change merges the names again.
      built.length = 0;
      expect(await put("other.test", "www", ["192.0.2.9"])).toBe(200);
      expect(await put("example.org", "www", ["192.0.2.80"])).toBe(200);
      expect(built).toEqual(["other.test.", "example.org."]);
      expect((await ask("db1.mesh.example.org.")).data).toEqual(["100.64.0.1"]);
      expect((await ask("www.example.org.")).data).toEqual(["192.0.2.80"]);

      records = [{ name: "db2.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.2" }];
      c.kernel.records.changed("mesh");
      expect(await askUntil("db2.mesh.example.org.", { rcode: Rcode.NOERROR, data: ["100.64.0.2"] })).toEqual({ rcode: Rcode.NOERROR, data: ["100.64.0.2"] });
      expect((await ask("db1.mesh.example.org.")).rcode).toBe(Rcode.NXDOMAIN);

      // Registered again with a domain no hosted zone holds: its names leave example.org and are a zone of their own.
      c.kernel.records.register({ name: "mesh", domain: "mesh.corp.example.", records: () => [{ name: "db3.mesh.corp.example.", type: "A", ttl: 60, data: "100.64.0.3" }] });
      expect(await askUntil("db3.mesh.corp.example.", { rcode: Rcode.NOERROR, data: ["100.64.0.3"] })).toEqual({ rcode: Rcode.NOERROR, data: ["100.64.0.3"] });
      expect(await askUntil("db2.mesh.example.org.", { rcode: Rcode.NXDOMAIN, data: [] })).toEqual({ rcode: Rcode.NXDOMAIN, data: [] });
      expect((await ask("www.example.org.")).data).toEqual(["192.0.2.80"]);
      expect((await ask("nope.mesh.corp.example.")).authority).toEqual(["mesh.corp.example. SOA"]);

      // A zone made above that domain takes the names in, and the provider's own zone goes; deleted, it comes back.
      expect((await c.send("POST", zones, owner, { json: { name: "corp.example" } })).status).toBe(200);
      expect((await ask("db3.mesh.corp.example.")).data).toEqual(["100.64.0.3"]);
      expect((await ask("nope.mesh.corp.example.")).authority).toEqual(["corp.example. SOA"]);
      expect(await remove("corp.example")).toBe(200);
      expect((await ask("nope.mesh.corp.example.")).authority).toEqual(["mesh.corp.example. SOA"]);
      expect((await ask("db3.mesh.corp.example.")).data).toEqual(["100.64.0.3"]);

      unregister(); // (the first registration's: replaced, it removes nothing)
      expect((await ask("db3.mesh.corp.example.")).data).toEqual(["100.64.0.3"]);
      c.kernel.records.register({ name: "mesh", domain: "mesh.corp.example.", records: () => [] })();
      expect(await askUntil("db3.mesh.corp.example.", { rcode: Rcode.REFUSED, data: [] })).toEqual({ rcode: Rcode.REFUSED, data: [] });
    } finally {
      await stop();
    }
  });
});
