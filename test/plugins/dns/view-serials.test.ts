/**
 * The serial of a view (view-serials.ts): a mesh network's client is told, in the SOA at the
 * domain and in the authority section of every negative answer, a serial that moves only with
 * the names it is told — another organization's network enrolling or removing nodes moves the
 * zone's real serial (told to loopback, [mesh] dns_clients and the secondaries) and nothing the
 * first network's clients see, from the cache or not, signed or not, after a restart too. The
 * clients are told apart by their source address, as the mesh's DnsClients does; the serials
 * live in a real SQLite file, read again by a new ViewSerials as a restart would.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { ProviderHorizon } from "../../../plugins/dns/horizon.ts";
import { decodeMessage, decodeQuery, Rcode, type Message } from "../../../plugins/dns/message.ts";
import { dnsMigrations } from "../../../plugins/dns/migrations.ts";
import { nameEquals, parseName } from "../../../plugins/dns/names.ts";
import { withProvidedRecords } from "../../../plugins/dns/provided.ts";
import { RRType } from "../../../plugins/dns/rdata.ts";
import { CachingAnswerer, ZoneTable } from "../../../plugins/dns/server.ts";
import { TransferView } from "../../../plugins/dns/secondaries.ts";
import * as sql from "../../../plugins/dns/store.ts";
import { soaSerial, TYPE_AXFR } from "../../../plugins/dns/transfer.ts";
import { readTsig, sign, verify, type TsigKey } from "../../../plugins/dns/tsig.ts";
import { nextViewSerial, ViewSerials } from "../../../plugins/dns/view-serials.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { DnsClients, type ServedNode, type StoredNetwork } from "../../../plugins/mesh/dns-clients.ts";
import type { RecordProvider } from "../../../src/record-providers.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";
import { tempDir } from "../../helpers/binary.ts";

const NOW = 1_800_000_000_000;
const log = { debug() {}, info() {}, warn() {}, error() {}, enabled: () => false } as never;

// Two organizations: prod is A's, ops is B's. A client is a node's address.
const PROD: StoredNetwork = { id: "net_prod", created_at: 1, name: "prod", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" };
const OPS: StoredNetwork = { id: "net_ops", created_at: 2, name: "ops", organization_id: "org_b", ipv4: "100.80.0.0/16", ipv6: "fd00:5::/48" };
const A_CLIENT = "100.64.0.1";
const B_CLIENT = "100.80.0.1";
const SECONDARY = "198.51.100.53";
const node = (network: StoredNetwork, host: number, v4: string, v6: string): ServedNode & { name: string } => ({ network, name: `n${host}`, ipv4: `${v4}${host}`, ipv6: `${v6}${host}` });
const aNode = (host: number) => node(PROD, host, "100.64.0.", "fd7a:115c:a1e0::");
const bNode = (host: number) => node(OPS, host, "100.80.0.", "fd00:5::");

const tsigKeys: TsigKey[] = ["transfer-key.", "client-key."].map((name) => ({ name: parseName(name, null), algorithm: "hmac-sha256", secret: new Uint8Array(32).fill(name.length) }));
const [transferKey, clientKey] = tsigKeys as [TsigKey, TsigKey];
const findKey = (name: readonly Uint8Array[]) => tsigKeys.find((k) => nameEquals(k.name, name as never)) ?? null;
// A secondary of every zone and the mesh's (it may transfer it).
const transfers = new TransferView({} as never, [], [{ name: "ns2", address: SECONDARY, notify_port: 53, tsig_key: "transfer-key.", zones: JSON.stringify(["*", "mesh.internal."]), created_at: 0 }]);

const dir = tempDir("citadel-view-serials-");
afterAll(() => dir.remove());

/** The database a restart reads again: the dns plugin's table, made by its migration. */
function openStore(path: string): Database {
  const db = new Database(path);
  const made = db.query("SELECT 1 FROM sqlite_master WHERE name = 'dns_view_serials'").get() !== null;
  if (!made) db.exec(dnsMigrations.find((m) => m.id === "0010_dns_view_serials")!.up as string);
  return db;
}

/**
 * The dns plugin's wiring, reduced to what answers: the mesh's nodes as a provider with the
 * mesh's DnsClients, its own zone (mesh.internal.) whose real serial moves by one at every change
 * of names, or a hosted zone (example.org.) holding mesh.example.org.
 */
class Appliance {
  nodes: Array<ServedNode & { name: string }> = [aNode(1), bNode(1)];
  realSerial = 1_700_000_000;
  hostedSerial = 2026010100;
  readonly table = new ZoneTable();
  readonly horizon = new ProviderHorizon((client, name, key) => transfers.allowed(client, this.table.find(name)!.origin, key, this.domain === "mesh.internal."));
  readonly clients: DnsClients;
  readonly provider: RecordProvider;
  serials!: ViewSerials;
  answerer!: CachingAnswerer;
  db!: Database;
  now = NOW;
  private subscribed = false;

  constructor(
    readonly path: string,
    readonly domain = "mesh.internal.",
  ) {
    this.clients = new DnsClients(domain, [], () => this.nodes);
    this.provider = {
      name: "mesh",
      domain,
      records: () => this.nodes.flatMap((n) => [{ name: `${n.name}.${n.network.name}.${domain}`, type: "A", ttl: 60, data: n.ipv4 }]),
      mayAsk: (client, name) => this.clients.allows(client, name),
      viewOf: (client) => this.clients.viewOf(client),
      views: () => this.clients.views(),
    };
    this.horizon.update([this.provider]);
    this.start();
    this.build();
  }

  /** A (re)start: what was not yet written is (as at a stop), then the serials are read from the store. */
  start(): void {
    this.serials?.flush();
    this.db?.close();
    this.db = openStore(this.path);
    const db = this.db;
    this.serials = new ViewSerials({
      horizon: this.horizon,
      rows: sql.viewSerials(db),
      floors: sql.viewFloors(db),
      persist: (changes) => {
        for (const row of changes.floors) sql.saveViewFloor(db, row);
        for (const { zone, view } of changes.dropped) sql.dropViewSerial(db, zone, view);
        for (const row of changes.saved) sql.saveViewSerial(db, row);
      },
      now: () => this.now,
    });
    // As the dns plugin wires it: a zone's views are worked out as it is built.
    if (!this.subscribed) this.table.onSet((zone) => this.serials.prepare(zone));
    this.subscribed = true;
    this.answerer = new CachingAnswerer({ zones: this.table, gate: { decide: () => "answer" }, horizon: this.horizon, viewSerials: this.serials, transfers: { allowed: (client, zone, key) => transfers.allowed(client, zone, key, this.domain === "mesh.internal.") }, tsigKey: findKey as never, now: () => NOW });
  }

  /** The rows stored, after what waits is written. */
  stored(): Array<{ view: string; serial: number }> {
    this.serials.flush();
    return this.db.query<{ view: string; serial: number }, []>("SELECT view, serial FROM dns_view_serials ORDER BY view").all();
  }

  /** The zones served after a change of the nodes: the real serial moves (withProvidedRecords, as ServedZones). */
  build(): void {
    this.clients.refresh();
    const stored =
      this.domain === "mesh.internal."
        ? []
        : [Zone.build(parseName("example.org.", null), parseZoneFile(`@ 3600 IN SOA ns1 hostmaster ${this.hostedSerial} 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.1\n`, { origin: parseName("example.org.", null), defaultTtl: 3600 }))];
    for (const zone of withProvidedRecords(stored, [this.provider], () => this.realSerial, log)) this.table.set(zone);
  }

  /** Organization B (or A) enrolls or removes nodes: the names change, the real serial with them. */
  change(nodes: Array<ServedNode & { name: string }>): void {
    this.nodes = nodes;
    this.realSerial++;
    this.hostedSerial++;
    this.build();
  }

  ask(client: string, name: string, type: number = RRType.SOA, key?: TsigKey): Message {
    const query = buildQuery({ name: parseName(name, null), type });
    const packet = key ? sign(query, key, { kind: "request" }, NOW) : null;
    const reply = this.answerer.answer(packet ? packet.message : query, client, "udp")!;
    if (packet) {
      // Signed after the serial went in: the client's check of the reply holds.
      expect(verify(reply, readTsig(reply, decodeQuery(reply).tsigStart), findKey as never, { kind: "response", requestMac: packet.mac }, NOW).error).toBe(0);
    }
    return decodeMessage(reply);
  }

  /** The serial a client is told: in the SOA at the domain, or in a negative answer's authority. */
  serial(client: string, name = this.domain, type: number = RRType.SOA, key?: TsigKey): number {
    const reply = this.ask(client, name, type, key);
    const soa = [...reply.answer, ...reply.authority].filter((r) => r.type === RRType.SOA);
    expect(soa).toHaveLength(1);
    return soaSerial(soa[0]!.rdata);
  }
}

const serialAhead = (a: number, b: number) => b !== a && (b - a + 2 ** 32) % 2 ** 32 < 2 ** 31;

describe("another organization's changes", () => {
  test("move neither the SOA serial a network's client is told, at the domain or in a negative answer, cache warm or cold", () => {
    const app = new Appliance(join(dir.path, "a.sqlite"));
    const negative = `nothing.prod.mesh.internal.`;
    const before = { soa: app.serial(A_CLIENT), nxdomain: app.serial(A_CLIENT, negative, RRType.A), nodata: app.serial(A_CLIENT, `n1.prod.mesh.internal.`, RRType.TXT) };
    expect(app.ask(A_CLIENT, negative, RRType.A).rcode).toBe(Rcode.NXDOMAIN);
    const bBefore = app.serial(B_CLIENT);
    // B enrolls two nodes, then removes one: the real serial moves at each.
    app.change([aNode(1), bNode(1), bNode(2), bNode(3)]);
    app.change([aNode(1), bNode(1), bNode(3)]);
    expect(app.serial("127.0.0.1")).toBe(app.realSerial);
    // B's client asks first: its reply (B's view) is cached and must not be handed to A's client.
    const bAfter = app.serial(B_CLIENT);
    expect(serialAhead(bBefore, bAfter)).toBe(true);
    for (let round = 0; round < 2; round++) {
      // The second round from the cache (warm), after B asked the same questions.
      app.serial(B_CLIENT, negative.replace("prod", "ops"), RRType.A);
      expect({ soa: app.serial(A_CLIENT), nxdomain: app.serial(A_CLIENT, negative, RRType.A), nodata: app.serial(A_CLIENT, `n1.prod.mesh.internal.`, RRType.TXT) }).toEqual(before);
      expect(app.serial(B_CLIENT)).toBe(bAfter);
    }
    // And over the same question asked by B: the SOA at the domain.
    expect(app.serial(B_CLIENT)).toBe(bAfter);
    expect(app.serial(A_CLIENT)).toBe(before.soa);
  });

  test("after a restart the same serials are told for the same names; a network's own change moves its serial ahead (RFC 1982), and only its", () => {
    const path = join(dir.path, "restart.sqlite");
    const app = new Appliance(path);
    const a0 = app.serial(A_CLIENT);
    app.change([aNode(1), bNode(1), bNode(2)]);
    const b1 = app.serial(B_CLIENT);
    app.start(); // a restart: memory gone, the store read again, the cache cold
    expect(app.serial(A_CLIENT)).toBe(a0);
    expect(app.serial(B_CLIENT)).toBe(b1);
    app.change([aNode(1), aNode(2), bNode(1), bNode(2)]);
    const a1 = app.serial(A_CLIENT);
    expect(serialAhead(a0, a1)).toBe(true);
    expect(app.serial(B_CLIENT)).toBe(b1);
    app.start();
    expect([app.serial(A_CLIENT), app.serial(B_CLIENT)]).toEqual([a1, b1]);
  });

  test("a signed query of a network's client gets its view's serial, signed after it went in (the MAC verifies)", () => {
    const app = new Appliance(join(dir.path, "signed.sqlite"));
    const a0 = app.serial(A_CLIENT);
    app.change([aNode(1), bNode(1), bNode(2)]);
    expect(app.serial(A_CLIENT, "mesh.internal.", RRType.SOA, clientKey)).toBe(a0);
    expect(app.serial(A_CLIENT, "nothing.prod.mesh.internal.", RRType.A, clientKey)).toBe(a0);
  });
});

describe("who is told every name keeps the zone's real serial", () => {
  test("loopback and a secondary asking with its key (SOA check, negative answer, AXFR), which moves with every change", () => {
    const app = new Appliance(join(dir.path, "real.sqlite"));
    app.change([aNode(1), bNode(1), bNode(2)]);
    expect(app.serial("127.0.0.1")).toBe(app.realSerial);
    expect(app.serial("::1", "nothing.ops.mesh.internal.", RRType.A)).toBe(app.realSerial);
    expect(app.serial(SECONDARY, "mesh.internal.", RRType.SOA, transferKey)).toBe(app.realSerial);
    expect(app.serial(SECONDARY, "nothing.prod.mesh.internal.", RRType.A, transferKey)).toBe(app.realSerial);
    const axfr = app.answerer.answer(sign(buildQuery({ name: parseName("mesh.internal.", null), type: TYPE_AXFR }), transferKey, { kind: "request" }, NOW).message, SECONDARY, "tcp")!;
    const soa = decodeMessage(axfr).answer[0]!;
    expect([soa.type, soaSerial(soa.rdata)]).toEqual([RRType.SOA, app.realSerial]);
    // Unsigned from the secondary's address (spoofable): a stranger, refused the mesh's names.
    expect(app.ask(SECONDARY, "mesh.internal.").rcode).toBe(Rcode.REFUSED);
  });
});

describe("a mesh domain inside a hosted zone (mesh.example.org. in example.org.)", () => {
  test("has no views: strangers and a network's clients are told the zone's real serial, as its secondaries tell anyone", () => {
    const app = new Appliance(join(dir.path, "hosted.sqlite"), "mesh.example.org.");
    const STRANGER = "203.0.113.7";
    expect([app.serial(STRANGER, "example.org."), app.serial(A_CLIENT, "nothing.prod.mesh.example.org.", RRType.A)]).toEqual([2026010100, 2026010100]);
    app.change([aNode(1), bNode(1), bNode(2)]); // the stored serial moves, as bumpSerial does
    for (const client of ["127.0.0.1", STRANGER, A_CLIENT]) expect(app.serial(client, "example.org.")).toBe(app.hostedSerial);
    expect(app.serial(STRANGER, "nope.example.org.", RRType.A)).toBe(app.hostedSerial);
    expect(app.stored()).toEqual([]);
  });
});

const DEV: StoredNetwork = { id: "net_dev", created_at: 3, name: "dev", organization_id: "org_a", ipv4: "100.96.0.0/16", ipv6: "fd00:6::/48" };
const devNode = (host: number) => node(DEV, host, "100.96.0.", "fd00:6::");
const DEV_CLIENT = "100.96.0.1";

describe("a view first seen", () => {
  test("starts from the zone's floor (its serial when it first had views), whatever other organizations changed meanwhile", () => {
    const firstOfNewView = (file: string, bChanges: number) => {
      const app = new Appliance(join(dir.path, file));
      app.serial(A_CLIENT); // the zone has views from here on
      let nodes = [aNode(1), bNode(1)];
      for (let i = 2; i < 2 + bChanges; i++) app.change((nodes = [...nodes, bNode(i)]));
      app.change([...nodes, devNode(1)]); // A makes a network
      return app.serial(DEV_CLIENT);
    };
    const quiet = firstOfNewView("first-quiet.sqlite", 0);
    expect(firstOfNewView("first-busy.sqlite", 38)).toBe(quiet);
    expect(quiet).toBe(nextViewSerial(1_700_000_000, NOW));
  });
});

describe("the work of a change", () => {
  /** Calls of the horizon's hides and of a zone's records while `run` runs. */
  function counted(app: Appliance, run: () => void): { hides: number; records: number } {
    const counts = { hides: 0, records: 0 };
    const hides = app.horizon.hides.bind(app.horizon);
    const records = Zone.prototype.records;
    app.horizon.hides = (...args) => (counts.hides++, hides(...args));
    Zone.prototype.records = function (this: Zone) {
      counts.records++;
      return records.call(this);
    };
    try {
      run();
    } finally {
      app.horizon.hides = hides;
      Zone.prototype.records = records;
    }
    return counts;
  }

  test("is done once when the zone is built: a view's first question after another organization's change reads no record, whatever their number", () => {
    const firstAfterChange = (file: string, bNodes: number) => {
      const app = new Appliance(join(dir.path, file));
      const nodes = [aNode(1), ...Array.from({ length: bNodes }, (_, i) => bNode(i + 1))];
      app.change(nodes);
      app.serial(A_CLIENT);
      const build = counted(app, () => app.change(nodes.slice(0, -1))); // B removes a node
      const answer = counted(app, () => app.serial(A_CLIENT));
      return { build, answer };
    };
    const few = firstAfterChange("work-few.sqlite", 2);
    const many = firstAfterChange("work-many.sqlite", 300);
    expect(few.build.records).toBeGreaterThan(0);
    expect([few.answer.records, many.answer.records]).toEqual([0, 0]);
    expect(many.answer.hides).toBe(few.answer.hides);
    expect(many.answer.hides).toBeLessThanOrEqual(2);
  });

  test("a client's view is asked of the provider once per zone as built, not at every cached reply", () => {
    const app = new Appliance(join(dir.path, "memo.sqlite"));
    let asked = 0;
    const viewOf = app.provider.viewOf!.bind(app.provider);
    app.provider.viewOf = (client) => (asked++, viewOf(client));
    app.horizon.update([app.provider]);
    app.build();
    for (let i = 0; i < 5; i++) app.serial(A_CLIENT, "nothing.prod.mesh.internal.", RRType.A);
    expect(asked).toBe(1);
    app.change([aNode(1), bNode(1), bNode(2)]);
    for (let i = 0; i < 5; i++) app.serial(A_CLIENT, "nothing.prod.mesh.internal.", RRType.A);
    expect(asked).toBe(2);
  });
});

describe("the serials of views no client has any more", () => {
  test("are dropped when the zone is built (a network removed), in memory and in the store", () => {
    const app = new Appliance(join(dir.path, "prune.sqlite"));
    app.serial(A_CLIENT);
    app.serial(B_CLIENT);
    expect(app.stored().map((r) => r.view)).toEqual(["net_ops", "net_prod"]);
    app.change([aNode(1)]); // B's network goes
    expect(app.stored().map((r) => r.view)).toEqual(["net_prod"]);
    expect(app.serial(A_CLIENT)).toBe(nextViewSerial(1_700_000_000, NOW));
  });
});

describe("nextViewSerial", () => {
  test("the time in seconds when it is ahead, else one more, across the wrap (RFC 1982)", () => {
    expect(nextViewSerial(5, NOW)).toBe(NOW / 1000);
    expect(nextViewSerial(NOW / 1000, NOW)).toBe(NOW / 1000 + 1);
    expect(nextViewSerial(2026010100, NOW)).toBe(2026010101); // a dated serial ahead of the clock
    expect(nextViewSerial(2 ** 32 - 1, NOW)).toBe(NOW / 1000); // 2^32 - 1 is before the clock in serial arithmetic
  });
});
