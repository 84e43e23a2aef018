/**
 * Split horizon on the answer path (server.ts with horizon.ts): a record provider's names are
 * told only to the clients it allows (and a secondary of their zone asking with its key); anyone
 * else is REFUSED for them, whatever the type, the case or the cache, while the rest of the zone
 * that holds them is answered to everyone without what it would carry along from below them.
 */
import { describe, expect, test } from "bun:test";
import { ProviderHorizon } from "../../../plugins/dns/horizon.ts";
import { decodeMessage, Rcode } from "../../../plugins/dns/message.ts";
import { nameEquals, nameToText, parseName } from "../../../plugins/dns/names.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { answerAll, CachingAnswerer, ZoneTable, type AnswerContext } from "../../../plugins/dns/server.ts";
import { TransferView } from "../../../plugins/dns/secondaries.ts";
import { TYPE_AXFR, TYPE_IXFR } from "../../../plugins/dns/transfer.ts";
import { RCODE_NOTAUTH, sign, type TsigKey } from "../../../plugins/dns/tsig.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { DnsClients } from "../../../plugins/mesh/dns-clients.ts";
import type { RecordProvider } from "../../../src/record-providers.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";

const origin = parseName("example.org.", null);
// The hosted zone as withProvidedRecords leaves it: the mesh's names merged in below mesh.example.org.
const zone = Zone.build(
  origin,
  parseZoneFile(
    `@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.53
www A 192.0.2.1
db CNAME db1.prod.mesh
gone CNAME nothing.prod.mesh
@ MX 10 mail.prod.mesh
* TXT "anything"
db1.prod.mesh 60 A 100.64.0.1
db1.prod.mesh 60 AAAA fd7a:115c:a1e0::1
mail.prod.mesh 60 A 100.64.0.2
web.dev.mesh 60 A 100.65.0.1
app.ops.mesh 60 A 100.80.0.1
web CNAME web.dev.mesh
app CNAME app.ops.mesh
`,
    { origin, defaultTtl: 3600 },
  ),
);
const zones = new ZoneTable();
zones.set(zone);

const MESH_CLIENT = "100.64.0.9";
const STRANGER = "203.0.113.7";
const SECONDARY = "198.51.100.53";
const mesh: RecordProvider = { name: "mesh", domain: "mesh.example.org.", records: () => [], mayAsk: (client) => client === MESH_CLIENT || client === "127.0.0.1" };

// Two secondaries, each with its key: one of every zone, one of example.com. only.
const OTHER_SECONDARY = "198.51.100.54";
const NOW = 1_800_000_000_000;
const tsigKeys: TsigKey[] = ["transfer-key.", "other-key."].map((name) => ({ name: parseName(name, null), algorithm: "hmac-sha256", secret: new Uint8Array(32).fill(name.length) }));
const [transferKey, otherKey] = tsigKeys as [TsigKey, TsigKey];
const secondary = (name: string, address: string, key: string, zones: string[] | null) => ({ name, address, notify_port: 53, tsig_key: key, zones: zones && JSON.stringify(zones), created_at: 0 });
// Only allowed() is asked of it here, which reads no kernel.
const transfers = new TransferView({} as never, [], [secondary("ns2", SECONDARY, "transfer-key.", null), secondary("ns3", OTHER_SECONDARY, "other-key.", ["example.com."])]);

function answerer(providers: RecordProvider[] = [mesh]): CachingAnswerer {
  // As the dns plugin wires it: a secondary is told the names of a zone the policy lets it transfer.
  const horizon = new ProviderHorizon((client, name, key) => transfers.allowed(client, zones.find(name)!.origin, key));
  horizon.update(providers);
  return new CachingAnswerer({
    zones,
    gate: { decide: () => "answer" },
    horizon,
    tsigKey: (name) => tsigKeys.find((k) => nameEquals(k.name, name)) ?? null,
    transfers,
    now: () => NOW,
  });
}

const ask = (a: CachingAnswerer, client: string, name: string, type: number = RRType.A, transport: "udp" | "tcp" = "udp", key?: TsigKey) => {
  const query = buildQuery({ name: parseName(name, null), type });
  const reply = a.answer(key ? sign(query, key, { kind: "request" }, NOW).message : query, client, transport);
  return decodeMessage(reply!);
};
const names = (records: Array<{ name: readonly Uint8Array[] }>) => records.map((r) => nameToText(r.name as never));

describe("a name at or below the provider's domain", () => {
  test("is answered to a client the provider allows, and REFUSED to a stranger", () => {
    const a = answerer();
    const told = ask(a, MESH_CLIENT, "db1.prod.mesh.example.org.");
    expect(told.rcode).toBe(Rcode.NOERROR);
    expect(told.answer).toHaveLength(1);
    const refused = ask(a, STRANGER, "db1.prod.mesh.example.org.");
    expect(refused.rcode).toBe(Rcode.REFUSED);
    expect([...refused.answer, ...refused.authority, ...refused.additional]).toEqual([]);
    expect(a.outcome.zone).toBe(zone); // counted under the zone that holds it, not as a name nobody serves
  });

  test("whatever the type (ANY over TCP, AAAA, SOA), a name that is not there, the domain itself, or the case of the letters", () => {
    const a = answerer();
    for (const [name, type, transport] of [
      ["db1.prod.mesh.example.org.", 255, "tcp"],
      ["db1.prod.mesh.example.org.", RRType.AAAA, "udp"],
      ["mesh.example.org.", RRType.SOA, "udp"],
      ["nothing.prod.mesh.example.org.", RRType.A, "udp"], // NXDOMAIN would say which names are not there
      ["prod.mesh.example.org.", RRType.TXT, "udp"],
      ["DB1.Prod.MESH.Example.ORG.", RRType.A, "udp"],
    ] as const) {
      expect(ask(a, STRANGER, name, type, transport).rcode).toBe(Rcode.REFUSED);
      expect(ask(a, MESH_CLIENT, name, type, transport).rcode).not.toBe(Rcode.REFUSED);
    }
  });

  test("a stranger's zone transfer is answered as any transfer: NOTAUTH below an apex whether the name exists or not, REFUSED at the apex", () => {
    const a = answerer();
    for (const type of [TYPE_AXFR, TYPE_IXFR]) {
      for (const name of ["db1.prod.mesh.example.org.", "nothing.prod.mesh.example.org.", "www.example.org."]) {
        expect({ name, type, rcode: ask(a, STRANGER, name, type, "tcp").rcode }).toEqual({ name, type, rcode: RCODE_NOTAUTH });
      }
    }
    expect(ask(a, STRANGER, "example.org.", TYPE_AXFR, "tcp").rcode).toBe(Rcode.REFUSED);
  });

  test("a reply cached for an allowed client is not given to a stranger, nor a refusal to an allowed client", () => {
    const a = answerer();
    expect(ask(a, MESH_CLIENT, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.NOERROR);
    expect(ask(a, STRANGER, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, STRANGER, "mail.prod.mesh.example.org.").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, MESH_CLIENT, "mail.prod.mesh.example.org.").answer).toHaveLength(1);
  });

  test("a secondary of the zone is told when it asks signed with its key, as for a transfer (it transfers them anyway)", () => {
    const a = answerer();
    for (const transport of ["udp", "tcp"] as const) {
      expect(ask(a, SECONDARY, "db1.prod.mesh.example.org.", RRType.A, transport, transferKey).answer).toHaveLength(1);
      expect(ask(a, SECONDARY, "mesh.example.org.", RRType.SOA, transport, transferKey).rcode).toBe(Rcode.NOERROR);
    }
    expect(names(ask(a, SECONDARY, "db.example.org.", RRType.A, "udp", transferKey).answer)).toEqual(["db.example.org.", "db1.prod.mesh.example.org."]);
  });

  test("a secondary's address is not enough: unsigned (spoofable over UDP), signed with another key, or a secondary of other zones only, it is REFUSED", () => {
    const a = answerer();
    expect(ask(a, SECONDARY, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, SECONDARY, "db1.prod.mesh.example.org.", RRType.A, "udp", otherKey).rcode).toBe(Rcode.REFUSED);
    expect(ask(a, OTHER_SECONDARY, "db1.prod.mesh.example.org.", RRType.A, "udp", otherKey).rcode).toBe(Rcode.REFUSED);
    expect(ask(a, OTHER_SECONDARY, "db1.prod.mesh.example.org.", RRType.A, "tcp", otherKey).rcode).toBe(Rcode.REFUSED);
    expect(names(ask(a, OTHER_SECONDARY, "db.example.org.", RRType.A, "udp", otherKey).answer)).toEqual(["db.example.org."]);
    // The same as a stranger: the zone's other names are answered.
    expect(ask(a, OTHER_SECONDARY, "www.example.org.", RRType.A, "udp", otherKey).answer).toHaveLength(1);
  });

  test("a provider without mayAsk tells everyone", () => {
    const open: RecordProvider = { name: "mesh", domain: "mesh.example.org.", records: () => [] };
    expect(ask(answerer([open]), STRANGER, "db1.prod.mesh.example.org.").answer).toHaveLength(1);
  });
});

describe("the rest of the zone", () => {
  test("is answered to everyone", () => {
    const a = answerer();
    for (const client of [STRANGER, MESH_CLIENT]) {
      const reply = ask(a, client, "www.example.org.");
      expect(reply.rcode).toBe(Rcode.NOERROR);
      expect(names(reply.answer)).toEqual(["www.example.org."]);
      expect(ask(a, client, "other.example.org.", RRType.TXT).answer).toHaveLength(1); // the wildcard
    }
  });

  test("a CNAME into the hidden names stops there for a stranger (NOERROR, the CNAME alone), and is followed for an allowed client", () => {
    const a = answerer();
    const stranger = ask(a, STRANGER, "db.example.org.");
    expect(stranger.rcode).toBe(Rcode.NOERROR);
    expect(names(stranger.answer)).toEqual(["db.example.org."]);
    expect(stranger.answer[0]!.type).toBe(RRType.CNAME);
    expect(names(ask(a, MESH_CLIENT, "db.example.org.").answer)).toEqual(["db.example.org.", "db1.prod.mesh.example.org."]);
    expect(names(ask(a, STRANGER, "db.example.org.").answer)).toEqual(["db.example.org."]); // not from the cache
  });

  test("a CNAME into the hidden names tells a stranger nothing of its target: the same reply whether the target exists or not", () => {
    const a = answerer();
    const shape = (reply: ReturnType<typeof ask>) => ({
      rcode: reply.rcode,
      aa: reply.aa,
      answer: reply.answer.map((r) => ({ name: names([r])[0], type: r.type })),
      authority: reply.authority,
      additional: reply.additional,
    });
    // For an allowed client one target is there and the other is not (NXDOMAIN, its SOA); asked
    // first, that reply must not be the stranger's from the cache either.
    expect(ask(a, MESH_CLIENT, "gone.example.org.").rcode).toBe(Rcode.NXDOMAIN);
    for (const transport of ["udp", "tcp"] as const) {
      const existing = shape(ask(a, STRANGER, "db.example.org.", RRType.A, transport));
      const missing = shape(ask(a, STRANGER, "gone.example.org.", RRType.A, transport));
      expect(missing).toEqual({ ...existing, answer: [{ name: "gone.example.org.", type: RRType.CNAME }] });
      expect(existing).toMatchObject({ rcode: Rcode.NOERROR, authority: [], additional: [] });
    }
  });

  test("an MX whose target is hidden is answered without the target's addresses", () => {
    const a = answerer();
    const stranger = ask(a, STRANGER, "example.org.", RRType.MX);
    expect(stranger.answer).toHaveLength(1);
    expect(stranger.additional).toEqual([]);
    expect(names(ask(a, MESH_CLIENT, "example.org.", RRType.MX).additional)).toEqual(["mail.prod.mesh.example.org."]);
  });

  test("a zone transfer to a secondary the policy allows holds the hidden names", () => {
    const ctx: AnswerContext = answerer().context;
    const query = sign(buildQuery({ name: origin, type: TYPE_AXFR }), transferKey, { kind: "request" }, NOW).message;
    const messages = answerAll(query, SECONDARY, "tcp", ctx).map(decodeMessage);
    expect(messages[0]!.rcode).toBe(Rcode.NOERROR);
    expect(messages.flatMap((m) => names(m.answer))).toContain("db1.prod.mesh.example.org.");
  });
});

describe("each mesh network's clients (the mesh's DnsClients as the provider's mayAsk)", () => {
  // prod and dev of one organization, ops of another, a node of each at host 9: the provider is given every organization's nodes.
  const nodes = [
    { network: { id: "net_prod", created_at: 1, name: "prod", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" }, ipv4: "100.64.0.9", ipv6: "fd7a:115c:a1e0::9" },
    { network: { id: "net_dev", created_at: 2, name: "dev", organization_id: "org_a", ipv4: "100.65.0.0/16", ipv6: "fd7a:115c:a1e1::/48" }, ipv4: "100.65.0.9", ipv6: "fd7a:115c:a1e1::9" },
    { network: { id: "net_ops", created_at: 3, name: "ops", organization_id: "org_b", ipv4: "100.80.0.0/16", ipv6: "fd00:5::/48" }, ipv4: "100.80.0.9", ipv6: "fd00:5::9" },
  ];
  const clients = new DnsClients("mesh.example.org.", [], () => nodes);
  const byNetwork: RecordProvider = { name: "mesh", domain: "mesh.example.org.", records: () => [], mayAsk: (client, name) => clients.allows(client, name) };
  const PROD = "100.64.0.9";
  const DEV = "fd7a:115c:a1e1::9";
  const OPS = "100.80.0.9";

  test("a network's client is answered its network's names and REFUSED another's, of its organization or another", () => {
    const a = answerer([byNetwork]);
    expect(names(ask(a, PROD, "db1.prod.mesh.example.org.").answer)).toEqual(["db1.prod.mesh.example.org."]);
    expect(ask(a, PROD, "nothing.prod.mesh.example.org.").rcode).toBe(Rcode.NXDOMAIN);
    expect(names(ask(a, DEV, "web.dev.mesh.example.org.").answer)).toEqual(["web.dev.mesh.example.org."]);
    expect(names(ask(a, OPS, "app.ops.mesh.example.org.").answer)).toEqual(["app.ops.mesh.example.org."]);
    for (const [client, name] of [
      [PROD, "web.dev.mesh.example.org."],
      [PROD, "app.ops.mesh.example.org."],
      [PROD, "dev.mesh.example.org."],
      [PROD, "nothing.dev.mesh.example.org."], // NXDOMAIN would say which names the other network has
      [PROD, "other.mesh.example.org."], // and which networks there are
      [DEV, "db1.prod.mesh.example.org."],
      [OPS, "DB1.Prod.mesh.example.org."],
    ] as const) {
      const reply = ask(a, client, name);
      expect({ client, name, rcode: reply.rcode, records: [...reply.answer, ...reply.authority, ...reply.additional] }).toEqual({ client, name, rcode: Rcode.REFUSED, records: [] });
    }
  });

  test("the domain itself is answered to every network's client (it names none), not to a stranger", () => {
    const a = answerer([byNetwork]);
    for (const client of [PROD, DEV, OPS]) expect(ask(a, client, "mesh.example.org.", RRType.SOA).rcode).toBe(Rcode.NOERROR);
    expect(ask(a, STRANGER, "mesh.example.org.", RRType.SOA).rcode).toBe(Rcode.REFUSED);
  });

  test("a reply cached for one network's client is not given to another network's", () => {
    const a = answerer([byNetwork]);
    expect(ask(a, PROD, "db1.prod.mesh.example.org.").answer).toHaveLength(1);
    expect(ask(a, DEV, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, OPS, "db1.prod.mesh.example.org.", RRType.A, "tcp").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, DEV, "web.dev.mesh.example.org.").answer).toHaveLength(1);
    expect(ask(a, PROD, "web.dev.mesh.example.org.").rcode).toBe(Rcode.REFUSED);
    expect(ask(a, PROD, "db1.prod.mesh.example.org.").answer).toHaveLength(1); // a refusal is not cached either
  });

  test("a CNAME into another network's names stops there (NOERROR, the CNAME alone), and is followed into its own", () => {
    const a = answerer([byNetwork]);
    for (const [client, name, target] of [
      [PROD, "db.example.org.", "db1.prod.mesh.example.org."],
      [DEV, "web.example.org.", "web.dev.mesh.example.org."],
      [OPS, "app.example.org.", "app.ops.mesh.example.org."],
    ] as const) {
      expect(names(ask(a, client, name).answer)).toEqual([name, target]);
      for (const other of [PROD, DEV, OPS].filter((c) => c !== client)) {
        const cut = ask(a, other, name);
        expect({ other, name, rcode: cut.rcode, answer: names(cut.answer), authority: cut.authority, additional: cut.additional }).toEqual({ other, name, rcode: Rcode.NOERROR, answer: [name], authority: [], additional: [] });
      }
    }
    // An MX into prod: its target's addresses only for prod's clients.
    expect(names(ask(a, PROD, "example.org.", RRType.MX).additional)).toEqual(["mail.prod.mesh.example.org."]);
    expect(ask(a, DEV, "example.org.", RRType.MX).additional).toEqual([]);
  });
});

describe("the answer cache asks the horizon only about names it restricts", () => {
  test("a cached reply of a name no provider restricts is served without asking; one of a restricted name is asked for each client; a change of the providers asks again", () => {
    const inner = new ProviderHorizon((client, name, key) => transfers.allowed(client, zones.find(name)!.origin, key));
    inner.update([mesh]);
    let asked = 0;
    // The real horizon, counting what the cached path asks of it.
    const horizon = {
      restricts: (name: Parameters<ProviderHorizon["restricts"]>[0]) => inner.restricts(name),
      hides: (...args: Parameters<ProviderHorizon["hides"]>) => (asked++, inner.hides(...args)),
      get generation() {
        return inner.generation;
      },
    };
    const a = new CachingAnswerer({ zones, gate: { decide: () => "answer" }, horizon, now: () => NOW });
    const outside = "www.example.org.";
    expect(ask(a, STRANGER, outside).rcode).toBe(Rcode.NOERROR); // the miss: answered and cached
    asked = 0;
    for (let i = 0; i < 3; i++) expect(ask(a, STRANGER, outside).rcode).toBe(Rcode.NOERROR);
    expect(asked).toBe(0);
    expect(ask(a, MESH_CLIENT, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.NOERROR); // cached for the mesh's client
    asked = 0;
    expect(ask(a, STRANGER, "db1.prod.mesh.example.org.").rcode).toBe(Rcode.REFUSED); // the hit is asked about
    expect(asked).toBe(1);
    inner.update([mesh]); // the providers changed: what was known of the cached names is asked again
    asked = 0;
    expect(ask(a, STRANGER, outside).rcode).toBe(Rcode.NOERROR);
    expect(asked).toBe(1);
  });
});
