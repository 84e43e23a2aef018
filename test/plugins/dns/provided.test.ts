/**
 * Record providers: another plugin's names served by the DNS server through the kernel's
 * registry — merged into the hosted zone that contains the provider's domain (replacing what the
 * zone held below it), or served as a zone of their own; bad records left out with a log line;
 * a provider's change gives its zone a new serial, so secondaries see it.
 */
import { describe, expect, test } from "bun:test";
import { dnsPlugin } from "../../../plugins/dns/index.ts";
import { Rcode } from "../../../plugins/dns/message.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { withProvidedRecords } from "../../../plugins/dns/provided.ts";
import { rdataToText, RRType } from "../../../plugins/dns/rdata.ts";
import { soaSerial } from "../../../plugins/dns/transfer.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import type { ProvidedRecord, RecordProvider } from "../../../src/record-providers.ts";
import { captureLog } from "../../helpers/http.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { buildQuery, DnsClient } from "../../helpers/reference-dns.ts";

const origin = parseName("example.org.", null);
const hosted = Zone.build(
  origin,
  parseZoneFile("@ 300 IN SOA ns1 hostmaster 7 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\nold.mesh A 192.0.2.99\n", { origin, defaultTtl: 300 }),
);
const provider = (records: ProvidedRecord[], domain = "mesh.example.org."): RecordProvider => ({ name: "mesh", domain, records: () => records });
const withoutSoa = (lines: string[]) => lines.filter((l) => !l.endsWith(" SOA"));
const answers = (zone: Zone, name: string, type: number) => zone.lookup(parseName(name, null), type).answer.map((r) => rdataToText(r.type, r.rdata));

describe("withProvidedRecords", () => {
  test("a provider's names replace the hosted zone's below its domain; the rest of the zone stays", () => {
    const log = captureLog();
    const [zone] = withProvidedRecords([hosted], [provider([{ name: "db1.mesh.example.org.", type: "AAAA", ttl: 60, data: "fd00::1" }, { name: "db1", type: "A", ttl: 60, data: "100.64.0.1" }])], () => 1, log.logger);
    expect(answers(zone!, "db1.mesh.example.org.", RRType.AAAA)).toEqual(["fd00::1"]);
    expect(answers(zone!, "db1.mesh.example.org.", RRType.A)).toEqual(["100.64.0.1"]); // relative to the domain
    expect(zone!.lookup(parseName("old.mesh.example.org.", null), RRType.A).rcode).toBe(Rcode.NXDOMAIN);
    expect(answers(zone!, "www.example.org.", RRType.A)).toEqual(["192.0.2.80"]);
    expect(zone!.serial()).toBe(7);
  });

  test("a hosted zone below the provider's domain (made before the provider) is not served, and says so", () => {
    const log = captureLog();
    const below = Zone.build(parseName("x.mesh.example.org.", null), parseZoneFile("@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.9\ndb1 A 192.0.2.66\n", { origin: parseName("x.mesh.example.org.", null), defaultTtl: 300 }));
    const zones = withProvidedRecords([hosted, below], [provider([{ name: "db1.x.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.7" }])], () => 1, log.logger);
    expect(zones.map((z) => nameToText(z.origin))).toEqual(["example.org."]);
    expect(answers(zones[0]!, "db1.x.mesh.example.org.", RRType.A)).toEqual(["100.64.0.7"]);
    expect(log.lines.find((l) => String(l.msg).includes("below a record provider's domain"))).toMatchObject({ level: "warn", zone: "x.mesh.example.org." });
  });

  test("bad records are left out and logged; the good ones and the zone are served", () => {
    const log = captureLog();
    const bad = [
      { name: "x.example.net.", type: "A", ttl: 60, data: "192.0.2.1" },
      { name: "y.mesh.example.org.", type: "A", ttl: 60, data: "not-an-address" },
      { name: "z.mesh.example.org.", type: "SOA", ttl: 60, data: "a b 1 2 3 4 5" },
      { name: "t.mesh.example.org.", type: "A", ttl: -1, data: "192.0.2.1" },
    ];
    const [zone] = withProvidedRecords([hosted], [provider([...bad, { name: "ok.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.9" }])], () => 1, log.logger);
    expect(answers(zone!, "ok.mesh.example.org.", RRType.A)).toEqual(["100.64.0.9"]);
    expect(log.lines.filter((l) => l.msg === "dns: a provided record was left out").length).toBe(4);
  });

  test("names that break the zone (a CNAME beside data) are not served, nor what the zone held below the domain (found in review); the rest of the zone is", () => {
    const log = captureLog();
    const clash = [{ name: "n.mesh.example.org.", type: "CNAME", ttl: 60, data: "www.example.org." }, { name: "n.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.2" }];
    const [zone] = withProvidedRecords([hosted], [provider(clash)], () => 1, log.logger);
    expect(zone!.lookup(parseName("n.mesh.example.org.", null), RRType.A).rcode).toBe(Rcode.NXDOMAIN);
    // Stored before the API refused such names: it must not answer for the provider's.
    expect(zone!.lookup(parseName("old.mesh.example.org.", null), RRType.A).rcode).toBe(Rcode.NXDOMAIN);
    expect([answers(zone!, "www.example.org.", RRType.A), zone!.serial()]).toEqual([["192.0.2.80"], 7]);
    expect(log.lines.some((l) => l.msg === "dns: a record provider's names do not fit; they are not served")).toBe(true);
  });

  test("a delegation stored on the way down to the provider's domain is not served: the provider's names are, and it is logged (found in review)", () => {
    const log = captureLog();
    const tld = parseName("org.", null);
    const above = Zone.build(tld, parseZoneFile("@ 300 IN SOA ns1.example.net. hostmaster.example.net. 1 3600 600 86400 60\n@ NS ns1.example.net.\nexample NS ns.example\nexample DS 1 13 2 0000000000000000000000000000000000000000000000000000000000000000\nns.example A 192.0.2.66\nelsewhere NS ns.example.net.\n", { origin: tld, defaultTtl: 300 }));
    const [zone] = withProvidedRecords([above], [provider([{ name: "db1.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }])], () => 1, log.logger);
    const asked = zone!.lookup(parseName("db1.mesh.example.org.", null), RRType.A);
    expect([asked.aa, asked.answer.map((r) => rdataToText(r.type, r.rdata))]).toEqual([true, ["100.64.0.1"]]);
    expect(zone!.lookup(parseName("example.org.", null), RRType.DS).answer).toEqual([]);
    // A delegation off the way stays one.
    expect(zone!.lookup(parseName("x.elsewhere.org.", null), RRType.A).authority.map((r) => rdataToText(r.type, r.rdata))).toEqual(["ns.example.net."]);
    expect(log.lines.filter((l) => String(l.msg).startsWith("dns: a delegation above a record provider's domain is not served"))).toEqual([
      expect.objectContaining({ level: "warn", zone: "org.", delegation: "example.org.", domain: "mesh.example.org." }),
    ]);
  });

  test("a domain no hosted zone contains is served as a zone of its own, with an SOA and the given serial", () => {
    const zones = withProvidedRecords([hosted], [provider([{ name: "a.mesh.internal.", type: "A", ttl: 30, data: "100.64.0.3" }], "mesh.internal.")], () => 1_800_000_000, captureLog().logger);
    expect(zones.map((z) => nameToText(z.origin))).toEqual(["example.org.", "mesh.internal."]);
    expect(answers(zones[1]!, "a.mesh.internal.", RRType.A)).toEqual(["100.64.0.3"]);
    expect(zones[1]!.serial()).toBe(1_800_000_000);
    expect(zones[1]!.lookup(parseName("nope.mesh.internal.", null), RRType.A).authority[0]?.type).toBe(RRType.SOA);
  });
});

describe("record providers on the kernel", () => {
  test("another organization's zone above the provider's domain cannot delegate its names away (found in review)", async () => {
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
    try {
      const operator = await c.login(c.owner.email, c.owner.password);
      c.kernel.records.register({ name: "mesh", domain: "mesh.lab.example.org.", records: () => [{ name: "db1.mesh.lab.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }] });
      const outsider = await c.addUser(operator, "outsider@example.org");
      const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other", owner: outsider.id } });
      const theirs = `/v1/dns/orgs/${other.body.id}/zones`;
      expect((await c.send("POST", theirs, outsider.token, { json: { name: "example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
      const cut = await c.send("PUT", `${theirs}/example.org/rrsets/lab/NS`, outsider.token, { json: { records: ["ns.attacker.net."] } });
      expect([cut.status, cut.body.detail]).toEqual([409, "lab.example.org. NS: a delegation there would hand mesh.lab.example.org., whose names mesh serves, to other name servers."]);
      const imported = await c.send("POST", `${theirs}/example.org/import`, outsider.token, { json: { content: "@ NS ns1.example.net.\nlab NS ns.attacker.net.\n" } });
      expect([imported.status, imported.body.detail]).toEqual([409, "line 2: lab.example.org. NS: a delegation there would hand mesh.lab.example.org., whose names mesh serves, to other name servers."]);
      // A delegation off the way is theirs to make.
      expect((await c.send("PUT", `${theirs}/example.org/rrsets/elsewhere/NS`, outsider.token, { json: { records: ["ns.example.net."] } })).status).toBe(200);

      const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
      const client = await DnsClient.open(port);
      // The listener reloads after each change: ask until it has the provider's names (or 10 s pass).
      let reply = await client.query(buildQuery({ name: parseName("db1.mesh.lab.example.org.", null), type: RRType.A }));
      for (const deadline = Date.now() + 10_000; reply.answer.length === 0 && Date.now() < deadline; await Bun.sleep(20)) {
        reply = await client.query(buildQuery({ name: parseName("db1.mesh.lab.example.org.", null), type: RRType.A }));
      }
      expect([reply.rcode, reply.aa, reply.answer.map((r) => rdataToText(r.type, r.rdata))]).toEqual([Rcode.NOERROR, true, ["100.64.0.1"]]);
      client.close();

      // A zone of theirs deeper down serves the domain: the delegation to it hands nothing over.
      expect((await c.send("POST", theirs, outsider.token, { json: { name: "lab.example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
      expect((await c.send("PUT", `${theirs}/example.org/rrsets/lab/NS`, outsider.token, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
    } finally {
      await c.stop();
    }
  });

  test("a hosted zone takes no records at or below a provider's domain: they would never be served, or answer for the provider's names (found in review)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const zone = `/v1/dns/orgs/${c.owner.organization}/zones/example.org`;
    expect((await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.org", ns: ["ns1.example.net."] } })).status).toBe(200);
    c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: () => [{ name: "db1.mesh.example.org.", type: "A", ttl: 60, data: "100.64.0.1" }] });
    for (const [name, type] of [["evil.mesh", "A"], ["db1.mesh", "A"], ["mesh", "NS"], ["mesh", "TXT"]] as const) {
      const put = await c.send("PUT", `${zone}/rrsets/${name}/${type}`, owner, { json: { records: [type === "NS" ? "ns.example.net." : type === "TXT" ? '"x"' : "192.0.2.66"] } });
      expect([name, put.status, put.body.detail]).toEqual([name, 409, `${name}.example.org. ${type}: the name is at or below mesh.example.org., whose names mesh serves.`]);
    }
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: "@ NS ns1.example.net.\nwww A 192.0.2.80\ndb1.mesh A 192.0.2.66\n" } });
    expect([imported.status, imported.body.detail]).toEqual([409, "line 3: db1.mesh.example.org. A: the name is at or below mesh.example.org., whose names mesh serves."]);
    expect(withoutSoa(((await c.send("GET", `${zone}/records`, owner)).body.items as Array<{ name: string; type: string }>).map((r) => `${r.name} ${r.type}`))).toEqual(["example.org. NS"]);
    // One stored before the refusal can still be removed.
    c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) SELECT id, 'old.mesh.example.org.', 1, 60, x'c0000263' FROM dns_zones WHERE name = 'example.org.'").run();
    expect((await c.send("PUT", `${zone}/rrsets/old.mesh/A`, owner, { json: { records: [] } })).status).toBe(200);
    expect(withoutSoa(((await c.send("GET", `${zone}/records`, owner)).body.items as Array<{ name: string; type: string }>).map((r) => `${r.name} ${r.type}`))).toEqual(["example.org. NS"]);
    await c.stop();
  });

  test("registered by another plugin, answered by the listener; a change bumps the hosted zone's stored serial", async () => {
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
    try {
      const owner = await c.login(c.owner.email, c.owner.password);
      const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
      expect((await c.send("POST", zones, owner, { json: { name: "example.org" } })).status).toBe(200);
      const before = (await c.send("GET", `${zones}/example.org`, owner)).body.serial as number;

      let records: ProvidedRecord[] = [{ name: "db1.mesh.example.org.", type: "AAAA", ttl: 60, data: "fd00::1" }];
      const unregister = c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: () => records });
      const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
      const client = await DnsClient.open(port);
      // The serial bump is a store write and the reload follows it: ask until the answer is the expected one (or 10 s pass).
      const ask = async (name: string, type: number, expected: { rcode: number; data?: string[] }) => {
        let got: { rcode: number; data: string[] } = { rcode: -1, data: [] };
        for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
          const reply = await client.query(buildQuery({ name: parseName(name, null), type }));
          got = { rcode: reply.rcode, data: reply.answer.map((r) => rdataToText(r.type, r.rdata)) };
          if (got.rcode === expected.rcode && (expected.data === undefined || JSON.stringify(got.data) === JSON.stringify(expected.data))) break;
          await Bun.sleep(20);
        }
        return expected.data === undefined ? { rcode: got.rcode } : got;
      };
      expect(await ask("db1.mesh.example.org.", RRType.AAAA, { rcode: Rcode.NOERROR, data: ["fd00::1"] })).toEqual({ rcode: Rcode.NOERROR, data: ["fd00::1"] });
      const bumped = (await c.send("GET", `${zones}/example.org`, owner)).body.serial as number;
      expect(bumped).toBeGreaterThan(before);
      // The provider's domain is its own: no zone may be made at or below it.
      for (const name of ["mesh.example.org", "x.mesh.example.org"]) {
        const taken = await c.send("POST", zones, owner, { json: { name } });
        expect([name, taken.status, taken.body.detail]).toEqual([name, 409, `${name}. is at or below mesh.example.org., whose names mesh serves.`]);
      }

      records = [{ name: "db2.mesh.example.org.", type: "AAAA", ttl: 60, data: "fd00::2" }];
      c.kernel.records.changed("mesh");
      expect(await ask("db2.mesh.example.org.", RRType.AAAA, { rcode: Rcode.NOERROR, data: ["fd00::2"] })).toEqual({ rcode: Rcode.NOERROR, data: ["fd00::2"] });
      expect(await ask("db1.mesh.example.org.", RRType.AAAA, { rcode: Rcode.NXDOMAIN })).toEqual({ rcode: Rcode.NXDOMAIN });
      expect((await c.send("GET", `${zones}/example.org`, owner)).body.serial).toBeGreaterThan(bumped);

      unregister();
      expect(await ask("db2.mesh.example.org.", RRType.AAAA, { rcode: Rcode.NXDOMAIN })).toEqual({ rcode: Rcode.NXDOMAIN });
      client.close();
    } finally {
      await c.stop();
    }
  });

  test("an own zone's serial moves only when the provider's names do, and a restart does not take it back (found in review: it took the clock again, below a burst's serial)", async () => {
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
    let stopAgain = async () => {};
    try {
      let records: ProvidedRecord[] = [{ name: "db1.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::1" }];
      c.kernel.records.register({ name: "mesh", domain: "mesh.internal.", records: () => records });
      const serial = async () => {
        const port = (c.log.lines.findLast((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
        const client = await DnsClient.open(port);
        try {
          const reply = await client.query(buildQuery({ name: parseName("mesh.internal.", null), type: RRType.SOA }));
          return soaSerial(reply.answer[0]!.rdata);
        } finally {
          client.close();
        }
      };
      const first = await serial();
      // The mesh reports every write, an ACL edit too: the same names move nothing.
      for (let i = 0; i < 20; i++) c.kernel.records.changed("mesh");
      expect(await serial()).toBe(first);
      records = [{ name: "db2.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::2" }];
      c.kernel.records.changed("mesh");
      records = [{ name: "db3.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::3" }];
      c.kernel.records.changed("mesh");
      expect(await serial()).toBe(first + 2); // the clock stands still here: one more per change

      // A restart at the same time (a second later is alike: the clock is below the serial).
      await c.kernel.store.write(() => undefined); // what was written behind is committed
      await c.stop();
      const stop = await dnsPlugin.start!({ ...c.kernel, config: c.config, settings: c.config.dns, log: c.log.logger, services: [], scopes: [] } as never);
      stopAgain = stop;
      expect(await serial()).toBe(first + 2);
      records = [{ name: "db4.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::4" }];
      c.kernel.records.changed("mesh");
      expect(await serial()).toBe(first + 3);
    } finally {
      await c.stop();
      await stopAgain();
    }
  });

  test("a hosted zone's serial does not move for a provider's report that changes no name, nor at a restart", async () => {
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
    let stopAgain = async () => {};
    try {
      const owner = await c.login(c.owner.email, c.owner.password);
      const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
      expect((await c.send("POST", zones, owner, { json: { name: "example.org" } })).status).toBe(200);
      c.kernel.records.register({ name: "mesh", domain: "mesh.example.org.", records: () => [{ name: "db1.mesh.example.org.", type: "AAAA", ttl: 60, data: "fd00::1" }] });
      await c.kernel.store.write(() => undefined);
      const serial = async () => (await c.send("GET", `${zones}/example.org`, owner)).body.serial as number;
      const registered = await serial();
      for (let i = 0; i < 20; i++) c.kernel.records.changed("mesh");
      await c.kernel.store.write(() => undefined);
      expect(await serial()).toBe(registered);
      await c.stop();
      stopAgain = await dnsPlugin.start!({ ...c.kernel, config: c.config, settings: c.config.dns, log: c.log.logger, services: [], scopes: [] } as never);
      expect(await serial()).toBe(registered);
    } finally {
      await c.stop();
      await stopAgain();
    }
  });
});
