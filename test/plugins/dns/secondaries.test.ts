/**
 * Secondaries and TSIG keys over the API (operators only): a key's secret is shown once and kept
 * as a keyring envelope, a secondary needs an existing key and an IP address, a key in use
 * cannot be removed, and the transfer policy allows exactly the secondary's address with its key.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { transferServiceOf } from "../../../plugins/dns/index.ts";
import { decodeQuery } from "../../../plugins/dns/message.ts";
import { nameToText, parseName } from "../../../plugins/dns/names.ts";
import { testCitadel } from "../../helpers/citadel.ts";

async function setup() {
  const c = await testCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  return { c, operator };
}

describe("TSIG keys", () => {
  test("a new key's secret is in the creation answer only, and is not stored in the clear", async () => {
    const { c, operator } = await setup();
    const created = await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "Transfer.Example.ORG" } });
    expect(created.status).toBe(200);
    expect(created.body.name).toBe("transfer.example.org.");
    expect(created.body.algorithm).toBe("hmac-sha256");
    const secret = Buffer.from(created.body.secret, "base64");
    expect(secret.length).toBe(32);

    const list = await c.send("GET", "/v1/dns/tsig-keys", operator);
    expect(list.body.items).toEqual([{ name: "transfer.example.org.", algorithm: "hmac-sha256", created_at: expect.any(String) }]);
    expect(list.text).not.toContain(created.body.secret);

    const stored = c.kernel.store.db.query<{ secret: Uint8Array }, []>("SELECT secret FROM dns_tsig_keys").get()!;
    expect(Buffer.from(stored.secret).includes(secret)).toBe(false);
    const audit = c.kernel.store.db.query<{ action: string; reason: string }, []>("SELECT action, reason FROM audit_events WHERE action LIKE 'dns.tsig.%'").all();
    expect(audit).toEqual([{ action: "dns.tsig.create", reason: "hmac-sha256" }]);
    expect(JSON.stringify(c.kernel.store.db.query("SELECT * FROM audit_events").all())).not.toContain(created.body.secret);
  });

  test("import, bad input and duplicates: 422 and 409 naming the field", async () => {
    const { c, operator } = await setup();
    const secret = Buffer.alloc(32, 7).toString("base64");
    const imported = await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet", algorithm: "hmac-sha512", secret } });
    expect(imported.status).toBe(200);
    expect(imported.body.secret).toBe(secret);
    expect((await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } })).status).toBe(409);
    const short = await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "short", secret: "c2hvcnQ=" } });
    expect(short.status).toBe(422);
    expect(short.text).toContain("16 octets");
    expect((await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "x", algorithm: "hmac-md5" } })).status).toBe(422);
    expect((await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "bad..name" } })).status).toBe(422);
  });

  test("members of an organization, even its admins, cannot see or make keys (403)", async () => {
    const { c, operator } = await setup();
    const admin = await c.addUser(operator, "admin@example.org", "admin");
    expect((await c.send("GET", "/v1/dns/tsig-keys", admin.token)).status).toBe(403);
    expect((await c.send("POST", "/v1/dns/tsig-keys", admin.token, { json: { name: "k" } })).status).toBe(403);
    expect((await c.send("POST", "/v1/dns/secondaries", admin.token, { json: { name: "ns2", address: "192.0.2.2", tsig_key: "k" } })).status).toBe(403);
  });
});

describe("secondaries", () => {
  test("a secondary needs an existing key and an IP; its key cannot be removed while it exists", async () => {
    const { c, operator } = await setup();
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    const unknownKey = await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.2", tsig_key: "nokey" } });
    expect(unknownKey.status).toBe(422);
    expect(unknownKey.text).toContain("No TSIG key nokey.");
    expect((await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "ns2.example.net", tsig_key: "fleet" } })).status).toBe(422);

    const added = await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "::FFFF:192.0.2.2", port: 5300, tsig_key: "fleet.", zones: ["Example.org"] } });
    expect(added.status).toBe(200);
    expect(added.body).toEqual({ name: "ns2", address: "192.0.2.2", port: 5300, tsig_key: "fleet.", zones: ["example.org."], created_at: expect.any(String) });
    expect((await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.3", tsig_key: "fleet" } })).status).toBe(409);

    const inUse = await c.send("DELETE", "/v1/dns/tsig-keys/fleet", operator);
    expect(inUse.status).toBe(409);
    expect(inUse.text).toContain("ns2");
    expect((await c.send("DELETE", "/v1/dns/secondaries/ns2", operator)).status).toBe(200);
    expect((await c.send("DELETE", "/v1/dns/tsig-keys/fleet", operator)).status).toBe(200);
    expect((await c.send("GET", "/v1/dns/secondaries", operator)).body.items).toEqual([]);
    expect((await c.send("DELETE", "/v1/dns/secondaries/ns2", operator)).status).toBe(404);
  });

  test("no zones, or an address that is no one host (unspecified, broadcast, multicast): 422 naming the field (found in review)", async () => {
    const { c, operator } = await setup();
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    const add = (fields: Record<string, unknown>) => c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.2", tsig_key: "fleet", ...fields } });
    const noZones = await add({ zones: [] });
    expect([noZones.status, noZones.body.errors[0].field]).toEqual([422, "zones"]);
    for (const address of ["0.0.0.0", "::", "::ffff:0.0.0.0", "255.255.255.255", "224.0.0.251", "239.255.255.250", "ff02::fb", "ff0e::1"]) {
      const refused = await add({ address });
      expect([address, refused.status, refused.body.errors[0].field]).toEqual([address, 422, "address"]);
    }
    for (const address of ["223.255.255.255", "240.0.0.1", "fe80::1"]) expect([address, (await add({ name: `ns-${address.replaceAll(/[.:]/g, "-")}`, address })).status]).toEqual([address, 200]);
    expect((await c.send("GET", "/v1/dns/secondaries", operator)).body.items.length).toBe(3);
  });

  test("* in zones is every hosted zone, so a secondary can serve them all and the mesh's zone, and be told of changes to each (found in review: it had to list every hosted zone)", async () => {
    const { c, operator } = await setup();
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    const made = await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns4", address: "192.0.2.4", tsig_key: "fleet", zones: ["*", "Mesh.Internal"] } });
    expect([made.status, made.body.zones]).toEqual([200, ["*", "mesh.internal."]]);
    await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns5", address: "192.0.2.5", tsig_key: "fleet", zones: ["*"] } });
    const view = transferServiceOf(c.kernel as never).view();
    const n = (text: string) => parseName(text, null);
    expect(view.notifyTargets(n("example.org.")).map((t) => t.secondary)).toEqual(["ns4", "ns5"]);
    expect(view.notifyTargets(n("mesh.internal."), true).map((t) => t.secondary)).toEqual(["ns4"]);
    expect(view.notifyTargets(n("other.internal."), true).map((t) => t.secondary)).toEqual([]);
    for (const zone of ["example.org.", "mesh.internal."]) expect([zone, view.allowed("192.0.2.4", n(zone), n("fleet."), zone === "mesh.internal.")]).toEqual([zone, true]);
    // * alone is the hosted zones: the mesh's own is not transferred to it unless named (found in review).
    expect(view.allowed("192.0.2.5", n("example.org."), n("fleet."))).toBe(true);
    expect(view.allowed("192.0.2.5", n("mesh.internal."), n("fleet."), true)).toBe(false);
    const reasons = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'dns.secondary.create' ORDER BY seq").all();
    expect(reasons.map((r) => r.reason.replace(/^.*, key fleet\., /, ""))).toEqual(["every hosted zone and mesh.internal.", "every hosted zone"]);
    // Nothing else that is no name is taken.
    expect((await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns6", address: "192.0.2.6", tsig_key: "fleet", zones: ["*.example.org"] } })).status).toBe(422);
  });

  test("the transfer policy: the secondary's address with its key, for its zones only; keys decrypt for signing", async () => {
    const { c, operator } = await setup();
    const key = await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "other" } });
    await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.2", tsig_key: "fleet", zones: ["example.org"] } });
    await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns3", address: "2001:db8::3", tsig_key: "fleet" } });
    const view = transferServiceOf(c.kernel as never).view();
    const n = (text: string) => parseName(text, null);
    expect(view.allowed("192.0.2.2", n("example.org."), n("FLEET."))).toBe(true);
    expect(view.allowed("::ffff:192.0.2.2", n("example.org."), n("fleet."))).toBe(true);
    expect(view.allowed("192.0.2.2", n("example.net."), n("fleet."))).toBe(false);
    expect(view.allowed("192.0.2.2", n("example.org."), n("other."))).toBe(false);
    expect(view.allowed("192.0.2.2", n("example.org."), null)).toBe(false);
    expect(view.allowed("192.0.2.9", n("example.org."), n("fleet."))).toBe(false);
    expect(view.allowed("2001:DB8:0::3", n("example.net."), n("fleet."))).toBe(true);
    expect(view.notifyTargets(n("example.net.")).map((t) => t.secondary)).toEqual(["ns3"]);
    expect(view.notifyTargets(n("example.org.")).map((t) => t.secondary)).toEqual(["ns2", "ns3"]);
    // A record provider's own zone: only to a secondary that lists it.
    expect(view.notifyTargets(n("example.net."), true).map((t) => t.secondary)).toEqual([]);
    expect(view.notifyTargets(n("example.org."), true).map((t) => t.secondary)).toEqual(["ns2"]);
    expect(Buffer.from(view.tsigKey(n("Fleet."))!.secret).toString("base64")).toBe(key.body.secret);
    // Decrypted once, not per signed query (they reach this before any rate limit over TCP).
    const decrypts = spyOn(c.kernel.seal.keyring(), "decrypt");
    expect(view.tsigKey(n("fleet."))).toBe(view.tsigKey(n("FLEET.")));
    expect(decrypts).toHaveBeenCalledTimes(0);
    decrypts.mockRestore();
    expect(view.tsigKey(n("missing."))).toBeNull();
    // A newer view overwrites what the one it replaces decrypted.
    const old = view.tsigKey(n("fleet."))!.secret;
    const newer = transferServiceOf(c.kernel as never).view();
    expect(old.every((octet) => octet === 0)).toBe(true);
    // Sealing overwrites the decrypted secret at once, not at the next signed query.
    const decrypted = newer.tsigKey(n("fleet."))!.secret;
    expect(Buffer.from(decrypted).toString("base64")).toBe(key.body.secret);
    c.kernel.seal.seal();
    expect(decrypted.every((octet) => octet === 0)).toBe(true);
    expect(newer.tsigKey(n("fleet."))).toBeNull();
  });
});

test("the DNS shield leaves configured secondaries alone (a spoofer must not get their SOA checks refused); the rate limit does not", async () => {
  const { ShieldGate } = await import("../../../plugins/dns/shield-gate.ts");
  const { ShieldSlot } = await import("../../../src/intel/shield.ts");
  const c = await testCitadel();
  try {
    const operator = await c.login(c.owner.email, c.owner.password);
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.53", tsig_key: "fleet" } });
    const view = transferServiceOf(c.kernel as never).view();
    const gate = new ShieldGate({ shield: new ShieldSlot(), rate: 1, throttledRate: 1, slip: 1, trustLoopback: false, now: () => 0, exempt: (client) => view.isSecondary(client) });
    const decisions = (client: string, transport: "udp" | "tcp") => Array.from({ length: 3 }, () => gate.decide(client, [], 6, transport));
    // Its address is public (an NS of the zone): unlimited UDP answers would make it a reflection target.
    expect(decisions("192.0.2.53", "udp")).toEqual(["answer", "truncate", "truncate"]);
    expect(decisions("192.0.2.53", "tcp")).toEqual(["answer", "answer", "answer"]);
    expect(view.isSecondary("192.0.2.54")).toBe(false);
  } finally {
    await c.stop();
  }
});

describe("NOTIFY goes out only from a listening authoritative server (found in review)", () => {
  /** Counts the NOTIFY messages a secondary's socket receives while a zone is made and changed. */
  async function notifiesWith(dnsUdp: string, sources: string[] = []): Promise<number> {
    let received = 0;
    let arrived = () => {};
    const secondary = await Bun.udpSocket({ hostname: "127.0.0.1", socket: { data: (_s, _data, _port, address) => (received++, sources.push(address), arrived()) } });
    const c = await testCitadel({ config: { dns: { udp: [dnsUdp], tcp: [] } } });
    try {
      const operator = await c.login(c.owner.email, c.owner.password);
      await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "127.0.0.1", port: secondary.port, tsig_key: "fleet" } });
      const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
      expect((await c.send("POST", zones, operator, { json: { name: "corp.example" } })).status).toBe(200);
      expect((await c.send("PUT", `${zones}/corp.example/rrsets/db/A`, operator, { json: { records: ["10.0.0.5"] } })).status).toBe(200);
      // The first one, or a while without any.
      await Promise.race([new Promise<void>((resolve) => (arrived = resolve)), Bun.sleep(500)]);
      return received;
    } finally {
      await c.stop();
      secondary.close();
    }
  }

  test("a secondary of every zone is not told of a record provider's own zone (mesh.internal.), which it never configured; one that lists it is (found in review: NOTAUTH, retried, on every mesh write)", async () => {
    const questions: string[] = [];
    const everyZone = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => void questions.push(`every ${nameToText(decodeQuery(data).question!.name)}`) } });
    const listing = await Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => void questions.push(`listing ${nameToText(decodeQuery(data).question!.name)}`) } });
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
    try {
      const operator = await c.login(c.owner.email, c.owner.password);
      await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "127.0.0.1", port: everyZone.port, tsig_key: "fleet" } });
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns3", address: "127.0.0.1", port: listing.port, tsig_key: "fleet", zones: ["mesh.internal"] } });
      c.kernel.records.register({ name: "mesh", domain: "mesh.internal.", records: () => [{ name: "db1.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::1" }] });
      expect((await c.send("POST", `/v1/dns/orgs/${c.owner.organization}/zones`, operator, { json: { name: "corp.example" } })).status).toBe(200);
      for (let i = 0; i < 200 && !(questions.includes("every corp.example.") && questions.includes("listing mesh.internal.")); i++) await Bun.sleep(10);
      expect(new Set(questions)).toEqual(new Set(["every corp.example.", "listing mesh.internal."]));
    } finally {
      await c.stop();
      everyZone.close();
      listing.close();
    }
  });

  test("listening: the secondary is told", async () => {
    expect(await notifiesWith("127.0.0.1:0")).toBeGreaterThan(0);
  });

  test("from the listener's address, which the secondary knows as its primary's, not from one the system picks (found in review)", async () => {
    const sources: string[] = [];
    expect(await notifiesWith("127.0.0.2:0", sources)).toBeGreaterThan(0);
    expect(new Set(sources)).toEqual(new Set(["127.0.0.2"]));
  });

  test("the listener could not bind (the port is taken): nothing is sent", async () => {
    const taken = await Bun.udpSocket({ hostname: "127.0.0.1" });
    try {
      expect(await notifiesWith(`127.0.0.1:${taken.port}`)).toBe(0);
    } finally {
      taken.close();
    }
  });
});

test("the plugin's stop goes on past a part that fails: the listeners are closed after the notifier threw (found in review)", async () => {
  const { Notifier } = await import("../../../plugins/dns/notify.ts");
  const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [] } } });
  const failing = spyOn(Notifier.prototype, "stop").mockRejectedValue(new Error("bind failed: EAFNOSUPPORT"));
  try {
    const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
    await c.stop();
    expect(c.log.lines.filter((l) => l.msg === "failed to stop cleanly").map((l) => l.component)).toEqual(["dns notifier"]);
    // The listener's port is free again: it was closed after the notifier failed.
    const rebound = await Bun.udpSocket({ hostname: "127.0.0.1", port });
    rebound.close();
  } finally {
    failing.mockRestore();
  }
});
