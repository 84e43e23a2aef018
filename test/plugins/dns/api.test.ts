/**
 * The dns control API over HTTP, in-process: zones, RRsets, import and export, whole-zone
 * validation before any write, serials, organizations, audit.
 */
import { describe, expect, test } from "bun:test";
import { dnsServiceOf } from "../../../plugins/dns/index.ts";
import { configuredNameservers, nextSerial } from "../../../plugins/dns/service.ts";
import { nameToText } from "../../../plugins/dns/names.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

async function setup() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const zones = `/v1/dns/orgs/${org}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "Example.ORG" } });
  expect(created.status).toBe(200);
  const zone = `${zones}/example.org`;
  return { c, owner, org, zones, zone, created: created.body };
}

const auditActions = (c: App) =>
  c.kernel.store.db.query("SELECT action, reason, organization, outcome FROM audit_events WHERE action LIKE 'dns.%' ORDER BY seq").all() as Array<{ action: string; reason: string; organization: string; outcome: string }>;
const recordsOf = async (c: App, owner: string, zone: string) =>
  ((await c.send("GET", `${zone}/records`, owner)).body.items as Array<{ name: string; type: string; ttl: number; data: string }>).map((r) => `${r.name} ${r.ttl} ${r.type} ${r.data}`);
const withoutSoa = (lines: string[]) => lines.filter((l) => !l.includes(" SOA "));

const ZONE_FILE = `$ORIGIN example.org.
$TTL 300
@        IN SOA ns1 hostmaster 1 7200 900 1209600 60
@        IN NS  ns1
@        IN NS  ns2.example.net.
ns1      IN A   192.0.2.53
@        IN MX  10 mail
mail     IN A   192.0.2.25
         IN AAAA 2001:db8::25
www  600 IN CNAME @
txt      IN TXT "hello world" "second string"
_sip._tcp IN SRV 10 5 5060 sip
sip      IN A 192.0.2.60
`;

describe("dns zones", () => {
  test("[dns] default_nameservers: a zone made without name servers gets the appliance's (as absolute names), and no problems", async () => {
    const c = await testCitadel({ config: { dns: { default_nameservers: ["ns1.example.net", "ns2.example.net."] } } });
    const owner = await c.login(c.owner.email, c.owner.password);
    const made = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.org" } });
    expect(made.body.soa.mname).toBe("ns1.example.net.");
    expect(made.body.records.filter((r: { type: string }) => r.type === "NS").map((r: { data: string }) => r.data)).toEqual(["ns1.example.net.", "ns2.example.net."]);
    expect(made.body.problems).toEqual([]);
    // An SOA given without its primary (the CLI's --rname alone): still the first name server (found in review: ns1.<zone>).
    const soa = { rname: "hostmaster.example.net.", refresh: 3600, retry: 900, expire: 1_209_600, minimum: 300 };
    const withSoa = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.info", soa } });
    expect([withSoa.body.soa.mname, withSoa.body.soa.rname]).toEqual(["ns1.example.net.", "hostmaster.example.net."]);
    const primary = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.edu", soa, ns: ["a.example.net."] } });
    expect(primary.body.soa.mname).toBe("a.example.net.");
    // Bad configured names are refused naming the setting; duplicates in another case count once.
    for (const [bad, index] of [[["bad..name"], 0], [["ns1.example.net", "*.example.net"], 1], [["192.0.2.1"], 0], [["."], 0]] as const) {
      const strict = await testCitadel({ config: { dns: { default_nameservers: bad } } });
      const session = await strict.login(strict.owner.email, strict.owner.password);
      const refused = await strict.send("POST", `/v1/dns/orgs/${strict.owner.organization}/zones`, session, { json: { name: "example.org" } });
      expect([refused.status, refused.body.errors?.[0]?.field]).toEqual([422, `dns.default_nameservers[${index}]`]);
    }
    expect(configuredNameservers(["NS1.Example.NET", "ns1.example.net."])).toEqual(["ns1.example.net."]);
    // Given ones still win.
    const given = await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, owner, { json: { name: "example.com", ns: ["a.example.com."] } });
    expect(given.body.records.filter((r: { type: string }) => r.type === "NS").map((r: { data: string }) => r.data)).toEqual(["a.example.com."]);
  });

  test("name servers given through the API are checked as the configured ones are: no root, wildcard or address (found in review: a lame zone was made)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    const soa = (mname: string) => ({ mname, rname: "hostmaster.example.net.", refresh: 3600, retry: 900, expire: 1_209_600, minimum: 300 });
    const refused: Array<[Record<string, unknown>, string]> = [
      [{ ns: ["."] }, "ns[0]"],
      [{ ns: ["ns1.example.net.", "*.example.net."] }, "ns[1]"],
      [{ ns: ["*"] }, "ns[0]"], // relative: *.example.org.
      [{ ns: ["192.0.2.53"] }, "ns[0]"],
      [{ ns: ["2001:db8::53"] }, "ns[0]"],
      [{ soa: soa(".") }, "soa.mname"],
      [{ ns: ["ns1.example.net."], soa: soa("*.example.net.") }, "soa.mname"],
    ];
    for (const [fields, field] of refused) {
      const res = await c.send("POST", zones, owner, { json: { name: "example.org", ...fields } });
      expect([fields, res.status, res.body.errors?.[0]]).toEqual([fields, 422, { field, message: "a name server's host name, such as ns1.example.net (not the root, a wildcard or an address)" }]);
    }
    // A wildcard zone name is refused as such, not as a wildcard NS.
    const wild = await c.send("POST", zones, owner, { json: { name: "*.wild.test" } });
    expect([wild.status, wild.body.errors?.[0]]).toEqual([422, { field: "name", message: "a zone's name cannot be a wildcard (*.wild.test.): a wildcard is a record in the zone above it (wild.test.)" }]);
    expect((await c.send("GET", zones, owner)).body.items).toEqual([]);
    const fine = await c.send("POST", zones, owner, { json: { name: "example.org", ns: ["ns1", "ns2.example.net."], soa: soa("ns1.example.net.") } });
    expect([fine.status, fine.body.soa.mname, fine.body.records.filter((r: { type: string }) => r.type === "NS").map((r: { data: string }) => r.data)]).toEqual([200, "ns1.example.net.", ["ns1.example.org.", "ns2.example.net."]]);
  });

  test("name servers in record data are checked as a new zone's are: PUT and import refuse the root, a wildcard or an address; stored ones stay and can go (found in review: only a new zone's were)", async () => {
    const { c, owner, zone } = await setup();
    const before = await recordsOf(c, owner, zone);
    const serial = (await c.send("GET", zone, owner)).body.serial;
    const message = "a name server's host name, such as ns1.example.net (not the root, a wildcard or an address)";
    const refusedPuts: Array<[string, string[], string]> = [
      ["@", ["."], "example.org. NS (records[0])"],
      ["@", ["ns1.example.net.", "*.example.net."], "example.org. NS (records[1])"],
      ["@", ["192.0.2.53."], "example.org. NS (records[0])"],
      ["@", ["192.0.2.53"], "example.org. NS (records[0])"], // relative: 192.0.2.53.example.org.
      ["@", ["2001:db8::53"], "example.org. NS (records[0])"],
      ["@", ["\\# 1 00"], "example.org. NS (records[0])"], // the root in the generic form
      ["sub", ["ns1.example.net.", "."], "sub.example.org. NS (records[1])"], // a delegation
    ];
    for (const [owner_, records, named] of refusedPuts) {
      const res = await c.send("PUT", `${zone}/rrsets/${owner_}/NS`, owner, { json: { records } });
      expect([records, res.status, res.body.errors?.[0]?.field, res.body.detail]).toEqual([records, 422, "records", `${named}: ${message}`]);
    }
    const soa = (mname: string) => `$ORIGIN example.org.\n@ 300 IN SOA ${mname} hostmaster 5 3600 600 86400 60\n`;
    const refusedImports: Array<[string, string]> = [
      [`${soa(".")}@ NS ns1.example.net.\n`, "line 2: example.org. SOA MNAME ."],
      [`${soa("*.example.net.")}@ NS ns1.example.net.\n`, "line 2: example.org. SOA MNAME *.example.net."],
      [`${soa("ns1.example.net.")}@ NS .\n`, "line 3: example.org. NS ."],
      [`${soa("ns1.example.net.")}@ NS ns1.example.net.\nsub NS 192.0.2.53\n`, "line 4: sub.example.org. NS 192.0.2.53.example.org."],
      [`${soa("ns1.example.net.")}@ NS ns1.example.net.\nsub NS \\# 1 00\n`, "line 4: sub.example.org. NS ."],
    ];
    for (const [content, named] of refusedImports) {
      for (const dry_run of [false, true]) {
        const res = await c.send("POST", `${zone}/import`, owner, { json: { content, dry_run } });
        expect([content, res.status, res.body.errors?.[0]?.field, res.body.detail]).toEqual([content, 422, "content", `${named}: ${message}`]);
      }
    }
    expect(await recordsOf(c, owner, zone)).toEqual(before);
    expect((await c.send("GET", zone, owner)).body.serial).toBe(serial);
    // Stored by an older Citadel: other changes go on, and such an RRset can be replaced or removed.
    const row = (await c.send("GET", zone, owner)).body;
    c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, 'old.example.org.', 2, 60, ?)").run(row.id, new Uint8Array([0]));
    c.kernel.store.db.query("UPDATE dns_zones SET soa_mname = '.' WHERE id = ?").run(row.id);
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.1"] } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/old/NS`, owner, { json: { records: [] } })).status).toBe(200);
    expect((await c.send("POST", `${zone}/import`, owner, { json: { content: "@ NS ns1.example.net.\n" } })).status).toBe(200);
    // Host names are fine, in the zone or not, relative or absolute.
    const fine = await c.send("PUT", `${zone}/rrsets/sub/NS`, owner, { json: { records: ["ns1.sub", "ns2.example.net."] } });
    expect([fine.status, fine.body.records]).toEqual([200, ["ns1.sub.example.org.", "ns2.example.net."]]);
    // All-digit labels that are no IPv4 address are host names, in the zone too (found in review: 1.example.org. was refused).
    const digits = await c.send("PUT", `${zone}/rrsets/sub/NS`, owner, { json: { records: ["1.example.org.", "10.20.example.org.", "1.2.3.example.org."] } });
    expect([digits.status, digits.body.records]).toEqual([200, ["1.example.org.", "10.20.example.org.", "1.2.3.example.org."]]);
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: ZONE_FILE } });
    expect([imported.status, (await c.send("GET", zone, owner)).body.soa.mname]).toEqual([200, "ns1.example.org."]);
  });

  test("a zone whose in-zone name server has no address says so, until it has one (a lame zone otherwise looks fine)", async () => {
    const { c, owner, zone, created } = await setup();
    expect(created.problems).toEqual([
      "name server ns1.example.org. (NS of example.org.) is in the zone but has no A or AAAA record: nothing can reach it; add one, or name other name servers",
    ]);
    expect((await c.send("PUT", `${zone}/rrsets/ns1/A`, owner, { json: { ttl: 300, records: ["192.0.2.53"] } })).status).toBe(200);
    expect((await c.send("GET", zone, owner)).body.problems).toEqual([]);
    // A delegation to a name server inside the zone needs its glue too.
    expect((await c.send("PUT", `${zone}/rrsets/sub/NS`, owner, { json: { ttl: 300, records: ["ns.sub.example.org.", "ns.example.net."] } })).status).toBe(200);
    expect((await c.send("GET", zone, owner)).body.problems).toEqual([
      "name server ns.sub.example.org. (NS of sub.example.org.) is in the zone but has no A or AAAA record: nothing can reach it; add one, or name other name servers",
    ]);
  });

  test("create a zone: canonical name, default SOA and NS, date-based serial; names unique (409)", async () => {
    const { c, owner, zones, created } = await setup();
    expect(created.name).toBe("example.org.");
    expect(created.serial).toBe(2026060100);
    expect(created.ttl).toBe(3600);
    expect(created.soa).toEqual({ ttl: 3600, mname: "ns1.example.org.", rname: "hostmaster.example.org.", refresh: 3600, retry: 900, expire: 1209600, minimum: 300 });
    expect(created.records.map((r: { type: string; data: string }) => `${r.type} ${r.data}`)).toEqual([
      "SOA ns1.example.org. hostmaster.example.org. 2026060100 3600 900 1209600 300",
      "NS ns1.example.org.",
    ]);
    const list = await c.send("GET", zones, owner);
    expect(list.body.items.map((z: { name: string }) => z.name)).toEqual(["example.org."]);
    expect((await c.send("POST", zones, owner, { json: { name: "example.org." } })).status).toBe(409);
    const bad = await c.send("POST", zones, owner, { json: { name: "bad..name" } });
    expect(bad.status).toBe(422);
    const custom = await c.send("POST", zones, owner, { json: { name: "example.net", ttl: 120, ns: ["ns.example.org."], soa: { mname: "ns.example.org.", rname: "dns", refresh: 1, retry: 2, expire: 3, minimum: 4 } } });
    expect(custom.status).toBe(200);
    expect([custom.body.ttl, custom.body.soa.rname, custom.body.records[1].data]).toEqual([120, "dns.example.net.", "ns.example.org."]);
    // By id too.
    expect((await c.send("GET", `${zones}/${custom.body.id}`, owner)).body.name).toBe("example.net.");
  });

  test("names written in Unicode are their xn-- form, the one resolvers ask for: zones, owners, record data, zone files (found in review)", async () => {
    const { c, owner, zones } = await setup();
    const made = await c.send("POST", zones, owner, { json: { name: "Bücher.example" } });
    expect([made.status, made.body.name]).toEqual([200, "xn--bcher-kva.example."]);
    const zone = `${zones}/${encodeURIComponent("bücher.example")}`;
    expect((await c.send("GET", zone, owner)).body.name).toBe("xn--bcher-kva.example.");
    const put = await c.send("PUT", `${zone}/rrsets/${encodeURIComponent("müller")}/CNAME`, owner, { json: { records: ["zoë.example."] } });
    expect([put.status, put.body.name, put.body.records]).toEqual([200, "xn--mller-kva.xn--bcher-kva.example.", ["xn--zo-ija.example."]]);
    const file = "$ORIGIN bücher.example.\n@ IN NS ns1.example.net.\nstraße IN A 192.0.2.1\nb\\195\\188ro IN A 192.0.2.2\n";
    expect((await c.send("POST", `${zone}/import`, owner, { json: { content: file } })).status).toBe(200);
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual([
      // Escaped octets are what the file says (RFC 1035): kept, not converted.
      "b\\195\\188ro.xn--bcher-kva.example. 3600 A 192.0.2.2",
      "xn--bcher-kva.example. 3600 NS ns1.example.net.",
      "xn--strae-oqa.xn--bcher-kva.example. 3600 A 192.0.2.1",
    ]);
    const bad = await c.send("POST", zones, owner, { json: { name: "bü/x.example" } });
    expect([bad.status, bad.body.errors?.[0]?.field, bad.body.detail]).toEqual([422, "name", expect.stringContaining("is not an internationalized label (IDNA): write it in its xn-- form")]);
  });

  test("set RRsets, list and export; an empty RRset removes it; every change bumps the serial", async () => {
    const { c, owner, zone } = await setup();
    const a = await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { ttl: 300, records: ["192.0.2.1", "192.0.2.2", "192.0.2.1"] } });
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ zone: "example.org.", serial: 2026060101, name: "www.example.org.", type: "A", ttl: 300, records: ["192.0.2.1", "192.0.2.2"] });
    const mx = await c.send("PUT", `${zone}/rrsets/@/mx`, owner, { json: { records: ["10 mail.example.org.", "20 mail2"] } });
    expect([mx.status, mx.body.serial, mx.body.ttl]).toEqual([200, 2026060102, 3600]);
    const txt = await c.send("PUT", `${zone}/rrsets/${encodeURIComponent("Txt.Example.org.")}/TXT`, owner, { json: { records: ['"v=spf1 -all"'] } });
    expect([txt.status, txt.body.name, txt.body.serial]).toEqual([200, "txt.example.org.", 2026060103]);
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual([
      "example.org. 3600 NS ns1.example.org.",
      "example.org. 3600 MX 10 mail.example.org.",
      "example.org. 3600 MX 20 mail2.example.org.",
      'txt.example.org. 3600 TXT "v=spf1 -all"',
      "www.example.org. 300 A 192.0.2.1",
      "www.example.org. 300 A 192.0.2.2",
    ]);
    const exported = await c.send("GET", `${zone}/export`, owner);
    expect(exported.status).toBe(200);
    expect(exported.headers.get("content-type")).toStartWith("text/plain");
    expect(exported.text).toStartWith("$ORIGIN example.org.\n@ 3600 IN SOA ns1.example.org. hostmaster.example.org. 2026060103 ");
    expect(exported.text).toContain("www 300 IN A 192.0.2.2\n");
    const removed = await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: [] } });
    expect([removed.status, removed.body.serial, removed.body.records]).toEqual([200, 2026060104, []]);
    expect((await recordsOf(c, owner, zone)).some((l) => l.startsWith("www."))).toBe(false);
    // The SOA is the zone's own; unknown types are refused.
    expect((await c.send("PUT", `${zone}/rrsets/@/SOA`, owner, { json: { records: [] } })).status).toBe(422);
    expect((await c.send("PUT", `${zone}/rrsets/www/BOGUS`, owner, { json: { records: ["x"] } })).status).toBe(422);
    expect((await c.send("GET", `${zone}`, owner)).body.serial).toBe(2026060104);
  });

  test("TXT written without quotes is one text, ; and parentheses included; exported and imported back unchanged (found in review: cut at ; and split at spaces)", async () => {
    const { c, owner, zone } = await setup();
    const dmarc = await c.send("PUT", `${zone}/rrsets/_dmarc/TXT`, owner, { json: { records: ["v=DMARC1; p=reject; rua=mailto:d@example.org"] } });
    expect([dmarc.status, dmarc.body.records]).toEqual([200, ['"v=DMARC1; p=reject; rua=mailto:d@example.org"']]);
    const spf = await c.send("PUT", `${zone}/rrsets/spf/TXT`, owner, { json: { records: ["v=spf1 (a) mx -all"] } });
    expect([spf.status, spf.body.records]).toEqual([200, ['"v=spf1 (a) mx -all"']]);
    const dkim = await c.send("PUT", `${zone}/rrsets/s1._domainkey/TXT`, owner, { json: { records: [`v=DKIM1; k=rsa; p=${"A".repeat(392)}`] } });
    expect([dkim.status, dkim.body.records[0].split('" "').length]).toEqual([200, 2]); // 255 + 155 octets
    // Quoted strings with anything but white space outside their quotes: refused, nothing written.
    const mixed = await c.send("PUT", `${zone}/rrsets/spf/TXT`, owner, { json: { records: ['"v=spf1" -all'] } });
    expect([mixed.status, mixed.body.errors?.[0]?.field, mixed.body.detail]).toEqual([422, "records", expect.stringContaining('"-all" is outside double quotes')]);
    const before = withoutSoa(await recordsOf(c, owner, zone));
    expect(before.filter((l) => l.includes(" TXT "))).toEqual([
      '_dmarc.example.org. 3600 TXT "v=DMARC1; p=reject; rua=mailto:d@example.org"',
      `s1._domainkey.example.org. 3600 TXT "v=DKIM1; k=rsa; p=${"A".repeat(237)}" "${"A".repeat(155)}"`,
      'spf.example.org. 3600 TXT "v=spf1 (a) mx -all"',
    ]);
    // What GET lists can be PUT back as it is; export → import gives the same records.
    const again = await c.send("PUT", `${zone}/rrsets/_dmarc/TXT`, owner, { json: { records: dmarc.body.records } });
    expect(again.body.records).toEqual(dmarc.body.records);
    const exported = (await c.send("GET", `${zone}/export`, owner)).text;
    expect((await c.send("POST", `${zone}/import`, owner, { json: { content: exported } })).status).toBe(200);
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual(before);
  });

  test("quotas: zones per organization (409) and records per zone (409 on a change, 422 on an import), naming the setting; shrinking is always allowed (found in review: none)", async () => {
    const c = await testCitadel({ config: { dns: { max_zones_per_organization: 2, max_records_per_zone: 3 } } });
    const owner = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    for (const name of ["a.test", "b.test"]) expect((await c.send("POST", zones, owner, { json: { name } })).status).toBe(200);
    const third = await c.send("POST", zones, owner, { json: { name: "c.test" } });
    expect([third.status, third.body.detail]).toEqual([409, expect.stringContaining("holds 2 zones, as many as [dns] max_zones_per_organization allows")]);
    const asked = await c.send("DELETE", `${zones}/b.test`, owner);
    expect((await c.send("DELETE", `${zones}/b.test`, owner, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
    expect((await c.send("POST", zones, owner, { json: { name: "c.test" } })).status).toBe(200);

    // a.test holds its apex NS: two more records fit, a third does not.
    const zone = `${zones}/a.test`;
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.1", "192.0.2.2"] } })).status).toBe(200);
    const over = await c.send("PUT", `${zone}/rrsets/mail/A`, owner, { json: { records: ["192.0.2.3"] } });
    expect([over.status, over.body.detail]).toEqual([409, "a.test. would hold 4 records, more than [dns] max_records_per_zone allows (3, its SOA aside): ask an operator to raise the limit."]);
    // Replacing an RRset by one of the same size, or a smaller one, is not growing.
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.7", "192.0.2.8"] } })).status).toBe(200);
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.7"] } })).status).toBe(200);
    const file = "@ NS ns1.example.net.\n" + [1, 2, 3, 4].map((i) => `h${i} A 192.0.2.${i}\n`).join("");
    for (const dry_run of [true, false]) {
      const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: file, dry_run } });
      expect([imported.status, imported.body.errors?.[0]?.field, imported.body.detail]).toEqual([422, "content", expect.stringContaining("would hold 5 records, more than [dns] max_records_per_zone allows (3")]);
    }
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual(["a.test. 3600 NS ns1.a.test.", "www.a.test. 3600 A 192.0.2.7"]);

    // A zone over a limit lowered since: it may shrink, not grow.
    const lowered = await testCitadel({ config: { dns: { max_records_per_zone: 1 } } });
    const session = await lowered.login(lowered.owner.email, lowered.owner.password);
    const big = `/v1/dns/orgs/${lowered.owner.organization}/zones`;
    expect((await lowered.send("POST", big, session, { json: { name: "big.test", ns: ["ns1.example.net.", "ns2.example.net."] } })).status).toBe(200);
    expect((await lowered.send("PUT", `${big}/big.test/rrsets/@/NS`, session, { json: { records: ["ns1.example.net.", "ns2.example.net.", "ns3.example.net."] } })).status).toBe(409);
    expect((await lowered.send("PUT", `${big}/big.test/rrsets/@/NS`, session, { json: { records: ["ns1.example.net."] } })).status).toBe(200);
  });

  test("records equal but for the case of a name are one record (RFC 2181 section 5, RFC 4343): PUT, create and import keep the first spelling (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const mx = await c.send("PUT", `${zone}/rrsets/m/MX`, owner, { json: { records: ["10 mail.example.net.", "10 MAIL.Example.NET.", "20 mail.example.net."] } });
    expect([mx.status, mx.body.records]).toEqual([200, ["10 mail.example.net.", "20 mail.example.net."]]);
    // Text keeps its case: these are two records.
    const txt = await c.send("PUT", `${zone}/rrsets/t/TXT`, owner, { json: { records: ['"v=spf1 A"', '"v=spf1 a"'] } });
    expect(txt.body.records).toEqual(['"v=spf1 A"', '"v=spf1 a"']);
    const created = await c.send("POST", zone.replace("/example.org", ""), owner, { json: { name: "twice.example", ns: ["ns1.example.net.", "NS1.Example.NET."] } });
    expect(created.status).toBe(200);
    const createdRecords = await recordsOf(c, owner, `${zone.replace("/example.org", "")}/twice.example`);
    expect(createdRecords.filter((l) => l.includes(" NS "))).toEqual(["twice.example. 3600 NS ns1.example.net."]);
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}srv IN SRV 0 5 5060 sip.example.org.\nsrv IN SRV 0 5 5060 SIP.EXAMPLE.ORG.\n` } });
    expect(imported.status).toBe(200);
    expect(imported.body.warnings).toEqual(["srv.example.org. SRV: a duplicate record was merged"]);
    expect((await recordsOf(c, owner, zone)).filter((l) => l.startsWith("srv."))).toEqual(["srv.example.org. 300 SRV 0 5 5060 sip.example.org."]); // ($TTL 300)
  });

  test("a wildcard NS or DS is refused (RFC 4592 section 4.2 leaves it undefined; NSD and Knot answer it differently; found in review)", async () => {
    const { c, owner, zone } = await setup();
    const ns = await c.send("PUT", `${zone}/rrsets/${encodeURIComponent("*.wd")}/NS`, owner, { json: { records: ["ns.example.net."] } });
    expect([ns.status, ns.body.detail]).toEqual([422, "*.wd.example.org. NS: a wildcard NS has no defined meaning (RFC 4592 section 4.2): servers answer it differently"]);
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}*.wd IN DS 1 13 2 ${"ab".repeat(32)}\n` } });
    expect(imported.status).toBe(422);
    expect(imported.body.detail).toContain("a wildcard DS has no defined meaning");
    // A wildcard's other data is fine.
    expect((await c.send("PUT", `${zone}/rrsets/${encodeURIComponent("*.wd")}/A`, owner, { json: { records: ["192.0.2.9"] } })).status).toBe(200);
  });

  test("a CNAME beside an A is refused with 422 naming the record, and nothing changes", async () => {
    const { c, owner, zone } = await setup();
    await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.1"] } });
    const before = await recordsOf(c, owner, zone);
    const refused = await c.send("PUT", `${zone}/rrsets/www/CNAME`, owner, { json: { records: ["example.org."] } });
    expect(refused.status).toBe(422);
    expect(refused.body.errors[0].field).toBe("records");
    expect(refused.body.detail).toContain("www.example.org. CNAME");
    expect(refused.body.detail).toContain("cannot sit beside other data (A)");
    expect(await recordsOf(c, owner, zone)).toEqual(before);
    // Other refusals name the record too: bad data, an owner outside the zone, data below a delegation, the apex NS.
    const cases: Array<[string, unknown, string]> = [
      ["/rrsets/www/AAAA", { records: ["192.0.2.1"] }, "www.example.org. AAAA"],
      ["/rrsets/other.example.net./A", { records: ["192.0.2.1"] }, "other.example.net. A"],
      ["/rrsets/sub/NS", { records: ["ns.elsewhere.net."] }, "www"],
      ["/rrsets/@/NS", { records: [] }, "example.org. NS"],
    ];
    await c.send("PUT", `${zone}/rrsets/host.sub/A`, owner, { json: { records: ["192.0.2.9"] } });
    for (const [path, json, named] of cases) {
      const res = await c.send("PUT", `${zone}${path}`, owner, { json });
      expect([path, res.status]).toEqual([path, 422]);
      if (named !== "www") expect(res.body.detail).toContain(named);
    }
    const below = await c.send("PUT", `${zone}/rrsets/sub/NS`, owner, { json: { records: ["ns.elsewhere.net."] } });
    expect(below.body.detail).toContain("host.sub.example.org. A: only glue can sit below the delegation sub.example.org.");
    expect((await c.send("GET", zone, owner)).body.serial).toBe(2026060102); // create, www A, host.sub A
    expect(auditActions(c).map((e) => e.action)).toEqual(["dns.zone.create", "dns.rrset.update", "dns.rrset.update"]);
  });

  test("types that are no zone data and malformed generic data are refused by PUT and import; a stored one can be removed (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const before = await recordsOf(c, owner, zone);
    for (const type of ["TYPE0", "TYPE41", "TYPE128", "TYPE249", "TYPE250", "TYPE251", "TYPE252", "TYPE255"]) {
      const res = await c.send("PUT", `${zone}/rrsets/x/${type}`, owner, { json: { records: ["\\# 0"] } });
      expect([type, res.status, res.body.errors?.[0]?.field, res.body.detail]).toEqual([type, 422, "type", expect.stringMatching(new RegExp(`^${type}: .*not zone data$`))]);
    }
    const loc = await c.send("PUT", `${zone}/rrsets/x/TYPE29`, owner, { json: { records: ["\\# 4 00000000"] } });
    expect([loc.status, loc.body.detail]).toEqual([422, "x.example.org. TYPE29 (records[0]): TYPE29 (LOC): the record data is truncated"]);
    const afsdb = await c.send("PUT", `${zone}/rrsets/x/TYPE18`, owner, { json: { records: ["\\# 2 0001"] } });
    expect([afsdb.status, afsdb.body.detail]).toEqual([422, "x.example.org. TYPE18 (records[0]): TYPE18 (AFSDB): a name in wire form is truncated"]);
    const tsig = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}x IN TYPE250 \\# 0\n` } });
    expect([tsig.status, tsig.body.detail]).toEqual([422, "line 14: TYPE250: TSIG is a query or meta type (128–255, RFC 6895), not zone data"]);
    const hinfo = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}x IN TYPE13 \\# 2 0161\n` } });
    expect([hinfo.status, hinfo.body.detail]).toEqual([422, "line 14: TYPE13 (HINFO): the record data is truncated"]);
    expect(await recordsOf(c, owner, zone)).toEqual(before);
    // Valid data of those types is kept, in the generic form.
    const fine = await c.send("PUT", `${zone}/rrsets/x/TYPE13`, owner, { json: { records: ["\\# 4 01610162"] } });
    expect([fine.status, fine.body.records]).toEqual([200, ["\\# 4 01610162"]]);
    // Stored by an older Citadel: the zone is served without it, and it can be removed.
    const row = (await c.send("GET", zone, owner)).body;
    c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, 'x.example.org.', 41, 60, ?)").run(row.id, new Uint8Array());
    const dns = dnsServiceOf(c.kernel as never);
    expect(dns.loadZones()[0]!.warnings).toEqual(["x.example.org. TYPE41: OPT is the EDNS pseudo-record (RFC 6891), not zone data; not served"]);
    const other = await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.1"] } });
    expect([other.status, other.body.detail]).toEqual([422, expect.stringContaining("x.example.org. TYPE41: OPT is the EDNS pseudo-record")]);
    expect((await c.send("PUT", `${zone}/rrsets/x/TYPE41`, owner, { json: { records: [] } })).status).toBe(200);
    expect(dns.loadZones()[0]!.warnings).toEqual([]);
  });

  test("DNAME is refused by PUT and import: Citadel does not synthesize the CNAMEs it stands for (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const before = await recordsOf(c, owner, zone);
    for (const type of ["DNAME", "TYPE39"]) {
      const res = await c.send("PUT", `${zone}/rrsets/old/${type}`, owner, { json: { records: ["new.example.net."] } });
      expect([type, res.status, res.body.errors?.[0]?.field, res.body.detail]).toEqual([type, 422, "type", "TYPE39: DNAME is not supported: Citadel does not synthesize the CNAMEs it stands for (RFC 6672)"]);
    }
    for (const line of ["old IN DNAME new.example.net.", "old IN TYPE39 \\# 1 00"]) {
      const res = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}${line}\n` } });
      expect([line, res.status, res.body.detail]).toEqual([line, 422, "line 14: TYPE39: DNAME is not supported: Citadel does not synthesize the CNAMEs it stands for (RFC 6672)"]);
    }
    expect(await recordsOf(c, owner, zone)).toEqual(before);
  });

  test("an SVCB/HTTPS parameter of a known key written as keyNNN is checked like the key: 422, and the zone stays readable (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const before = await recordsOf(c, owner, zone);
    const put = await c.send("PUT", `${zone}/rrsets/www/HTTPS`, owner, { json: { records: ["1 . key3=abc"] } });
    expect([put.status, put.body.errors?.[0]?.field, put.body.detail]).toEqual([422, "records", "www.example.org. HTTPS (records[0]): HTTPS: key3 must be two octets"]);
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}www2 IN HTTPS 1 . key4=1\n` } });
    expect([imported.status, imported.body.detail]).toEqual([422, "line 14: HTTPS: key4 must be a list of 4-octet addresses"]);
    // Nothing was written: the zone, its records and its export still answer.
    expect((await c.send("GET", zone, owner)).status).toBe(200);
    expect(await recordsOf(c, owner, zone)).toEqual(before);
    expect((await c.send("GET", `${zone}/export`, owner)).status).toBe(200);
    // A valid value in that form is taken, and shown under the key's name.
    const fine = await c.send("PUT", `${zone}/rrsets/www/HTTPS`, owner, { json: { records: ['1 . key3="\\001\\187"'] } });
    expect([fine.status, fine.body.records]).toEqual([200, ["1 . port=443"]]);
    // Stored by an older Citadel, which took it: shown and exported in the generic form, not a 500.
    const id = (await c.send("GET", zone, owner)).body.id;
    c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, 'bad.example.org.', 65, 60, ?)").run(id, Uint8Array.of(0, 1, 0, 0, 3, 0, 3, 0x61, 0x62, 0x63));
    expect(await recordsOf(c, owner, zone)).toContain("bad.example.org. 60 HTTPS \\# 10 00010000030003616263");
    const exported = await c.send("GET", `${zone}/export`, owner);
    expect([exported.status, exported.text]).toEqual([200, expect.stringContaining("\nbad 60 IN HTTPS \\# 10 00010000030003616263\n")]);
    const again = await c.send("POST", `${zone}/import`, owner, { json: { content: exported.text } });
    expect([again.status, again.body.detail]).toEqual([422, expect.stringMatching(/^line \d+: HTTPS: port must be two octets$/)]);
  });

  test("import a zone file; export and re-import gives the same records; dry run changes nothing", async () => {
    const { c, owner, zone } = await setup();
    const dry = await c.send("POST", `${zone}/import`, owner, { json: { content: ZONE_FILE, dry_run: true } });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dry_run: true, serial: 2026060100, records: 10, added: 9, removed: 0, changed: 1 });
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual(["example.org. 3600 NS ns1.example.org."]);
    const imported = await c.send("POST", `${zone}/import`, owner, { json: { content: ZONE_FILE } });
    expect(imported.status).toBe(200);
    expect(imported.body).toMatchObject({ dry_run: false, serial: 2026060101, records: 10, added: 9, removed: 0, changed: 1 });
    const shown = (await c.send("GET", zone, owner)).body;
    expect(shown.soa).toEqual({ ttl: 300, mname: "ns1.example.org.", rname: "hostmaster.example.org.", refresh: 7200, retry: 900, expire: 1209600, minimum: 60 });
    const first = await recordsOf(c, owner, zone);
    expect(first).toContain("www.example.org. 600 CNAME example.org.");
    expect(first).toContain('txt.example.org. 300 TXT "hello world" "second string"');
    expect(first).toContain("mail.example.org. 300 AAAA 2001:db8::25");
    const exported = (await c.send("GET", `${zone}/export`, owner)).text;
    const again = await c.send("POST", `${zone}/import`, owner, { json: { content: exported } });
    expect(again.body).toMatchObject({ serial: 2026060102, records: 10, added: 0, removed: 0, changed: 0 });
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual(withoutSoa(first));
    // What the listener will serve.
    const [built] = dnsServiceOf(c.kernel as never).loadZones();
    expect(nameToText(built!.origin)).toBe("example.org.");
    expect(built!.serial()).toBe(2026060102);
    expect(built!.lookup([new TextEncoder().encode("www"), new TextEncoder().encode("example"), new TextEncoder().encode("org")], 1).answer.length).toBeGreaterThan(0);
  });

  test("an imported SOA keeps its own TTL, which bounds negative answers; the zone's default TTL stays (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const file = ZONE_FILE.replace("$TTL 300", "$TTL 3000").replace("@        IN SOA ns1 hostmaster 1 7200 900 1209600 60", "@ 45 IN SOA ns1 hostmaster 1 7200 900 1209600 600");
    expect((await c.send("POST", `${zone}/import`, owner, { json: { content: file } })).status).toBe(200);
    const shown = (await c.send("GET", zone, owner)).body;
    expect([shown.ttl, shown.soa.ttl, shown.soa.minimum]).toEqual([3600, 45, 600]);
    expect((await c.send("GET", `${zone}/export`, owner)).text).toContain("\n@ 45 IN SOA ");
    const [built] = dnsServiceOf(c.kernel as never).loadZones();
    const label = (text: string) => new TextEncoder().encode(text);
    const negative = built!.lookup([label("nothing"), label("example"), label("org")], 1);
    expect(negative.authority.map((r: { type: number; ttl: number }) => [r.type, r.ttl])).toEqual([[6, 45]]); // min(45, 600)
    // Created with one, too.
    const created = await c.send("POST", zone.replace("/example.org", ""), owner, { json: { name: "soa-ttl.example", soa: { ttl: 30, mname: "ns1", rname: "hostmaster", refresh: 3600, retry: 900, expire: 1209600, minimum: 300 } } });
    expect([created.status, created.body.soa.ttl, created.body.ttl]).toEqual([200, 30, 3600]);
  });

  test("an imported SOA timer above 2147483647 is refused with its line, plainly or in the generic form; the zone stays readable (found in review)", async () => {
    const { c, owner, zone } = await setup();
    const big = "$ORIGIN example.org.\n@ 300 IN SOA ns1 h 5 4294967295 900 1209600 300\n@ NS ns1.example.net.\n";
    const plain = await c.send("POST", `${zone}/import`, owner, { json: { content: big } });
    expect([plain.status, plain.body.detail]).toEqual([422, "line 2: SOA refresh 4294967295 is above 2147483647 (RFC 2181 section 8)"]);
    // The generic form of ns1. h. 5 7200 900 1209600 4294967295.
    const rdata = "036e733100" + "016800" + "00000005" + "00001c20" + "00000384" + "00127500" + "ffffffff";
    const generic = await c.send("POST", `${zone}/import`, owner, { json: { content: `$ORIGIN example.org.\n@ 300 IN SOA \\# ${rdata.length / 2} ${rdata}\n@ NS ns1.example.net.\n` } });
    expect([generic.status, generic.body.detail]).toEqual([422, "line 2: SOA minimum 4294967295 is above 2147483647 (RFC 2181 section 8)"]);
    expect((await c.send("GET", zone, owner)).status).toBe(200);
    expect((await c.send("GET", zone.replace("/example.org", ""), owner)).status).toBe(200);
  });

  test("a bad zone-file line is refused with its line number, and nothing is imported", async () => {
    const { c, owner, zone } = await setup();
    const before = await recordsOf(c, owner, zone);
    const bad = ZONE_FILE.replace("sip      IN A 192.0.2.60", "sip      IN A 192.0.2.300");
    const res = await c.send("POST", `${zone}/import`, owner, { json: { content: bad } });
    expect(res.status).toBe(422);
    expect(res.body.errors[0].field).toBe("content");
    expect(res.body.detail).toBe("line 13: A: not an IPv4 address: \"192.0.2.300\"");
    // A file that parses but is not a valid zone: 422 naming the record.
    const cname = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}www IN A 192.0.2.80\n` } });
    expect([cname.status, cname.body.errors[0].field]).toEqual([422, "records"]);
    expect(cname.body.detail).toContain("www.example.org. CNAME");
    const outside = await c.send("POST", `${zone}/import`, owner, { json: { content: `${ZONE_FILE}elsewhere.net. IN A 192.0.2.80\n` } });
    expect(outside.status).toBe(422);
    expect(outside.body.detail).toContain("elsewhere.net. A: the owner is outside the zone");
    expect(await recordsOf(c, owner, zone)).toEqual(before);
    expect(auditActions(c).map((e) => e.action)).toEqual(["dns.zone.create"]);
  });

  test("another organization can neither see nor change the zone; its name stays taken", async () => {
    const { c, owner, org, zone, zones } = await setup();
    const operator = owner;
    const outsider = await c.addUser(operator, "outsider@example.org");
    const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other", owner: outsider.id } });
    expect(other.status).toBe(200);
    const otherOrg = other.body.id as string;
    const theirs = `/v1/dns/orgs/${otherOrg}/zones`;
    // Our organization's URLs: the guard refuses.
    expect((await c.send("GET", zone, outsider.token)).status).toBe(403);
    expect((await c.send("PUT", `${zone}/rrsets/www/A`, outsider.token, { json: { records: ["192.0.2.66"] } })).status).toBe(403);
    // Their organization's URLs: the zone is not there.
    expect((await c.send("GET", theirs, outsider.token)).body.items).toEqual([]);
    expect((await c.send("GET", `${theirs}/example.org`, outsider.token)).status).toBe(404);
    expect((await c.send("GET", `${theirs}/example.org/export`, outsider.token)).status).toBe(404);
    expect((await c.send("PUT", `${theirs}/example.org/rrsets/www/A`, outsider.token, { json: { records: ["192.0.2.66"] } })).status).toBe(404);
    expect((await c.send("POST", `${theirs}/example.org/import`, outsider.token, { json: { content: ZONE_FILE } })).status).toBe(404);
    expect((await c.send("POST", theirs, outsider.token, { json: { name: "example.org" } })).status).toBe(409);
    // Nor can it take names over with a zone below ours (the deepest zone answers), or sit above it.
    for (const name of ["www.example.org", "deep.www.EXAMPLE.org"]) {
      const overlap = await c.send("POST", theirs, outsider.token, { json: { name } });
      expect([name, overlap.status, overlap.body.detail]).toEqual([name, 409, expect.stringContaining("overlaps a zone of another organization")]);
    }
    expect((await c.send("POST", theirs, outsider.token, { json: { name: "example.net" } })).status).toBe(200);
    const above = await c.send("POST", zones, operator, { json: { name: "net" } });
    expect([above.status, above.body.detail]).toEqual([409, expect.stringContaining("overlaps a zone of another organization")]);
    // One made before the check (written behind its back) is found, to be told at start-up.
    const dns = dnsServiceOf(c.kernel as never);
    expect(dns.overlappingZones()).toEqual([]);
    c.kernel.store.db.query("UPDATE dns_zones SET name = 'sub.example.org.' WHERE name = 'example.net.'").run();
    expect(dns.overlappingZones()).toEqual([{ above: "example.org.", below: "sub.example.org." }]);
    // Within one organization, zones may nest.
    expect((await c.send("POST", zones, owner, { json: { name: "lab.example.org" } })).status).toBe(200);
    expect(withoutSoa(await recordsOf(c, owner, zone))).toEqual(["example.org. 3600 NS ns1.example.org."]);
    expect(org).not.toBe(otherOrg);
    void zones;
  });

  test("a top-level domain's zone is made only by an operator: the first organization to make com. held every name below it (found in review)", async () => {
    const c = await testCitadel();
    const operator = await c.login(c.owner.email, c.owner.password);
    const outsider = await c.addUser(operator, "outsider@example.org");
    const other = await c.send("POST", "/v1/iam/orgs", operator, { json: { name: "other", owner: outsider.id } });
    const theirs = `/v1/dns/orgs/${other.body.id}/zones`;
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    const editor = await c.addUser(operator, "editor@example.org", "editor");
    for (const [path, token, name] of [[theirs, outsider.token, "com"], [zones, editor.token, "COM."]] as const) {
      const tld = await c.send("POST", path, token, { json: { name } });
      expect([tld.status, tld.body.detail]).toEqual([403, "com. is a top-level domain: only an operator makes a zone for one, as it holds every name below it for one organization."]);
    }
    expect((await c.send("GET", theirs, outsider.token)).body.items).toEqual([]);
    // So the owner of example.com can still make its zone; an operator makes a private top-level one.
    expect((await c.send("POST", zones, editor.token, { json: { name: "example.com" } })).status).toBe(200);
    expect((await c.send("POST", theirs, outsider.token, { json: { name: "example.net" } })).status).toBe(200);
    expect((await c.send("POST", zones, operator, { json: { name: "lan" } })).status).toBe(200);
  });

  test("delete asks for confirmation; the name can be used again; audit events are recorded", async () => {
    const { c, owner, org, zone, zones, created } = await setup();
    await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: ["192.0.2.1"] } });
    await c.send("POST", `${zone}/import`, owner, { json: { content: ZONE_FILE } });
    const ask = await c.send("DELETE", zone, owner);
    expect(ask.status).toBe(428);
    const done = await c.send("DELETE", zone, owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
    expect([done.status, done.body]).toEqual([200, { ok: true }]);
    expect((await c.send("GET", zone, owner)).status).toBe(404);
    expect((await c.send("GET", zones, owner)).body.items).toEqual([]);
    expect(dnsServiceOf(c.kernel as never).loadZones()).toEqual([]);
    expect((await c.send("POST", zones, owner, { json: { name: "example.org" } })).status).toBe(200);
    const events = auditActions(c);
    expect(events.map((e) => e.action)).toEqual(["dns.zone.create", "dns.rrset.update", "dns.zone.import", "dns.zone.delete", "dns.zone.create"]);
    expect(events.every((e) => e.organization === org && e.outcome === "success")).toBe(true);
    expect(events[1]!.reason).toBe("www.example.org. A: 1 record(s), TTL 3600; serial 2026060101");
    const resource = c.kernel.store.db.query("SELECT resource_type, resource_id FROM audit_events WHERE action = 'dns.zone.delete'").get() as { resource_type: string; resource_id: string };
    expect(resource).toEqual({ resource_type: "dns_zone", resource_id: created.id });
  });

  test("a zone deleted and made again continues its serial, whichever organization makes it, so secondaries transfer it (found in review)", async () => {
    const { c, owner, zone, zones } = await setup();
    const remove = async (path: string, token: string) => {
      const ask = await c.send("DELETE", path, token);
      expect((await c.send("DELETE", path, token, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    };
    for (const address of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { records: [address] } });
    const before = (await c.send("GET", zone, owner)).body.serial;
    expect(before).toBe(2026060103);
    await remove(zone, owner);
    const again = await c.send("POST", zones, owner, { json: { name: "example.org" } });
    expect([again.status, again.body.serial]).toEqual([200, 2026060104]);
    // Names are unique across the appliance and secondaries serve every organization's zones.
    const outsider = await c.addUser(owner, "outsider@example.org");
    const other = await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: outsider.id } });
    await remove(zone, owner);
    const theirs = await c.send("POST", `/v1/dns/orgs/${other.body.id}/zones`, outsider.token, { json: { name: "example.org" } });
    expect([theirs.status, theirs.body.serial]).toEqual([200, 2026060105]);
    // Ahead of the date in serial arithmetic (an imported serial), it is still continued.
    c.kernel.store.db.query("UPDATE dns_zones SET serial = 4000000000 WHERE name = 'example.org.' AND deleted_at IS NULL").run();
    await remove(`/v1/dns/orgs/${other.body.id}/zones/example.org`, outsider.token);
    expect((await c.send("POST", zones, owner, { json: { name: "example.org" } })).body.serial).toBe(4000000001);
  });
});

test("serials: YYYYMMDDnn while they keep up with the date, else +1 (RFC 1982)", () => {
  const day = Date.UTC(2026, 5, 1);
  expect(nextSerial(0, day)).toBe(2026060100);
  expect(nextSerial(2026060100, day)).toBe(2026060101);
  expect(nextSerial(2026053199, day)).toBe(2026060100);
  expect(nextSerial(2026060199, day)).toBe(2026060200); // ahead of the date: plain +1
  expect(nextSerial(4_000_000_000, day)).toBe(4_000_000_001);
  expect(nextSerial(4_294_967_295, day)).toBe(2026060100); // behind the date in serial arithmetic
});

describe("the listener", () => {
  test("a DNS address that is taken leaves the API serving and says why in the log", async () => {
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const address = `127.0.0.1:${holder.port}`;
      const c = await testCitadel({ config: { dns: { udp: [], tcp: [address] } } });
      expect((await c.send("GET", "/healthz")).status).toBe(200);
      expect(c.log.lines.some((l) => String(l.msg).startsWith("dns: cannot listen"))).toBe(true);
      await c.stop();
    } finally {
      holder.stop(true);
    }
  });
});
