/**
 * The catalog zone (RFC 9432, producer side): what a view holds, the members' ids, the serial
 * (moves with the members and only then, kept over a restart, never back), who is answered
 * (a secondary from its address with its key, each its own view; REFUSED to anyone else, never
 * from the cache), and the catalog over the API with real secondaries' NOTIFY.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { buildCatalog, Catalog, catalogFingerprint, CatalogSerials, memberIdOfProvider, memberIdOfZone, nextCatalogSerial, type CatalogMember, type CatalogSubscriber } from "../../../plugins/dns/catalog.ts";
import { catalogOf, ServedZones } from "../../../plugins/dns/index.ts";
import { decodeMessage, decodeQuery, Rcode } from "../../../plugins/dns/message.ts";
import { nameEquals, nameToText, parseName, type Name } from "../../../plugins/dns/names.ts";
import { rdataToText, RRType, typeToText } from "../../../plugins/dns/rdata.ts";
import { answerAll, CachingAnswerer, ZoneTable, type AnswerContext } from "../../../plugins/dns/server.ts";
import { catalogName } from "../../../plugins/dns/settings.ts";
import { soaSerial, TYPE_AXFR, TYPE_IXFR } from "../../../plugins/dns/transfer.ts";
import { readTsig, sign, verify, type TsigKey } from "../../../plugins/dns/tsig.ts";
import { Zone } from "../../../plugins/dns/zone.ts";
import { parseZoneFile } from "../../../plugins/dns/zone-file.ts";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { buildQuery } from "../../helpers/reference-dns.ts";

const CATALOG = "catalog.citadel.invalid.";
const origin = parseName(CATALOG, null);
const n = (text: string) => parseName(text, null);
const member = (name: string, id: string, providerOwned = false): CatalogMember => ({ name, origin: parseName(name, null), id, providerOwned });
const target = (secondary: string, port = 53) => ({ secondary, address: "192.0.2.53", port, keyName: n("fleet.") });

/** A subscriber for tests: `zones` null is every hosted zone. */
function subscriber(view: string, zones: string[] | null, targets = [target(view)]): CatalogSubscriber {
  const [address, tsigKey] = view.includes(" ") ? view.split(" ") as [string, string] : ["192.0.2.53", `${view}.`];
  return { view: `${address} ${tsigKey}`, address, tsigKey, secondaries: targets.map((t) => t.secondary), covers: (m) => (zones === null ? !m.providerOwned : zones.includes(m.name)), selection: JSON.stringify(zones), targets };
}

/** Serials kept in memory, as CatalogSerials keeps them (without the store). */
function memorySerials(start = 1_000) {
  const rows = new Map<string, { fingerprint: string; serial: number }>();
  let next = start;
  return {
    rows,
    serialFor(view: string, fingerprint: string) {
      const row = rows.get(view);
      if (row?.fingerprint === fingerprint) return row.serial;
      rows.set(view, { fingerprint, serial: ++next });
      return next;
    },
    retireAllBut(views: ReadonlySet<string>) {
      for (const [view, row] of rows) if (!views.has(view)) row.fingerprint = "";
    },
  };
}

/** A zone's records as "owner TTL TYPE data" lines, in the order records() gives them. */
const lines = (zone: Zone) => zone.records().map((r) => `${nameToText(r.name)} ${r.ttl} ${typeToText(r.type)} ${rdataToText(r.type, r.rdata)}`);

describe("a view's content", () => {
  test("SOA and NS at the apex (invalid.), version TXT \"2\", one PTR per member under zones., TTL 0 throughout (RFC 9432 sections 4.1-4.3)", () => {
    const zone = buildCatalog(origin, 1_750_000_000, [member("a.example.", "61"), member("b.example.", "62")]);
    expect(lines(zone)).toEqual([
      `${CATALOG} 0 SOA invalid. invalid. 1750000000 300 60 2419200 0`,
      `${CATALOG} 0 NS invalid.`,
      `version.${CATALOG} 0 TXT "2"`,
      `61.zones.${CATALOG} 0 PTR a.example.`,
      `62.zones.${CATALOG} 0 PTR b.example.`,
    ]);
    expect(zone.serial()).toBe(1_750_000_000);
  });

  test("an empty view is still a catalog: a secondary that serves none of the zones gets one with no members", () => {
    expect(lines(buildCatalog(origin, 7, []))).toEqual([`${CATALOG} 0 SOA invalid. invalid. 7 300 60 2419200 0`, `${CATALOG} 0 NS invalid.`, `version.${CATALOG} 0 TXT "2"`]);
  });

  test("[dns] catalog: a name, absolute with or without the final dot, lower-cased; empty is none; the root or a wildcard stop start-up naming the key", () => {
    expect(nameToText(catalogName("Catalog.Citadel.INVALID")!)).toBe(CATALOG);
    expect(catalogName("  ")).toBeNull();
    const load = (catalog: string) => () => loadConfig({ schema: configSchema, env: { CITADEL_DNS_CATALOG: catalog }, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });
    expect(load("catalog.citadel.invalid.")).not.toThrow();
    expect(load(".")).toThrow(new ConfigError("dns.catalog: the root cannot be the catalog's name (such as catalog.citadel.invalid.)"));
    expect(load("*.citadel.invalid")).toThrow('dns.catalog: "*.citadel.invalid" has a wildcard label');
    expect(load("a..b")).toThrow('dns.catalog: "a..b" is not a name');
    expect((loadConfig({ schema: configSchema, env: {}, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.dns as { catalog: string }).catalog).toBe(""); // off by default
  });
});

describe("member ids (RFC 9432 section 4.1)", () => {
  test("a stored zone's is its row id in hex: one label, unique where row ids differ only by case, which labels do not tell apart", () => {
    expect(memberIdOfZone("dnsz_AbCdEfGhIjKlMn")).toBe(Buffer.from("dnsz_AbCdEfGhIjKlMn").toString("hex"));
    expect(memberIdOfZone("dnsz_AbCdEfGhIjKlMn")).not.toBe(memberIdOfZone("dnsz_abcdefghijklmn"));
    expect(memberIdOfZone("dnsz_AbCdEfGhIjKlMn")).toMatch(/^[0-9a-f]{38}$/);
  });

  test("a record provider's own zone's: its provider and domain, after p- (never a stored zone's)", () => {
    const id = memberIdOfProvider("mesh", "mesh.internal.");
    expect(id).toMatch(/^p-[0-9a-f]{32}$/);
    expect(memberIdOfProvider("mesh", "mesh.internal.")).toBe(id);
    expect(memberIdOfProvider("mesh", "mesh.lan.")).not.toBe(id);
  });
});

describe("the serial", () => {
  test("the time in seconds, or one more when that is not ahead (RFC 1982)", () => {
    expect(nextCatalogSerial(null, 1_750_000_000_500)).toBe(1_750_000_000);
    expect(nextCatalogSerial(1_700_000_000, 1_750_000_000_000)).toBe(1_750_000_000);
    expect(nextCatalogSerial(1_750_000_000, 1_750_000_000_000)).toBe(1_750_000_001); // two changes in one second
    expect(nextCatalogSerial(2_026_112_500, 1_750_000_000_000)).toBe(2_026_112_501); // moved past the clock by a restore
    expect(nextCatalogSerial(2 ** 32 - 1, 1_000)).toBe(1); // 0xffffffff is before 1 in serial arithmetic
  });

  test("moves when a view's members do, and only that view's; a change to nothing it lists moves nothing, and is announced to no one", () => {
    const serials = memorySerials();
    const catalog = new Catalog(origin, serials);
    const every = subscriber("every", null);
    const some = subscriber("some", ["a.example."]);
    const first = catalog.update([member("a.example.", "01")], [every, some]);
    expect(first.map((a) => a.targets.map((t) => t.secondary))).toEqual([["every"], ["some"]]);
    const [everySerial, someSerial] = first.map((a) => a.zone.serial()) as [number, number];

    // The same members (a record changed in a zone, a restart of the view): the same zone, nothing announced.
    expect(catalog.update([member("a.example.", "01")], [every, some])).toEqual([]);
    expect(catalog.viewFor("192.0.2.53", n("every."))!.serial()).toBe(everySerial);

    // b.example. made: "every" moves, "some" (which does not list it) does not.
    const made = catalog.update([member("a.example.", "01"), member("b.example.", "02")], [every, some]);
    expect(made.map((a) => [a.targets[0]!.secondary, a.zone.serial() > everySerial])).toEqual([["every", true]]);
    expect(catalog.viewFor("192.0.2.53", n("some."))!.serial()).toBe(someSerial);

    // a.example. deleted and made again under its name: another member (another id), both move.
    const remade = catalog.update([member("a.example.", "03"), member("b.example.", "02")], [every, some]);
    expect(remade.map((a) => a.targets[0]!.secondary)).toEqual(["every", "some"]);
    expect(lines(catalog.viewFor("192.0.2.53", n("some."))!).filter((l) => l.includes("PTR"))).toEqual([`03.zones.${CATALOG} 0 PTR a.example.`]);
  });

  test("a secondary's zones changed moves its view; a secondary added to a view that did not move is told, and only it", () => {
    const catalog = new Catalog(origin, memorySerials());
    const members = [member("a.example.", "01"), member("b.example.", "02")];
    catalog.update(members, [subscriber("ns2", ["a.example."])]);
    const before = catalog.viewFor("192.0.2.53", n("ns2."))!.serial();
    expect(catalog.update(members, [subscriber("ns2", ["a.example.", "b.example."])]).map((a) => a.zone.serial() > before)).toEqual([true]);
    // A second secondary of the same address and key: the view is theirs together.
    const both = subscriber("ns2", ["a.example.", "b.example."], [target("ns2"), target("ns2-again", 5353)]);
    expect(catalog.update(members, [both]).map((a) => a.targets.map((t) => t.secondary))).toEqual([["ns2-again"]]);
  });

  test("a zone at or below the catalog's name (stored before it was configured) is not listed", () => {
    const catalog = new Catalog(origin, memorySerials());
    catalog.update([member("x.catalog.citadel.invalid.", "01"), member(CATALOG, "02"), member("citadel.invalid.", "03")], [subscriber("ns2", null)]);
    expect(lines(catalog.viewFor("192.0.2.53", n("ns2."))!).filter((l) => l.includes("PTR"))).toEqual([`03.zones.${CATALOG} 0 PTR citadel.invalid.`]);
  });

  test("kept in the store: a restart serves the same serial for the same members; a new view continues from the highest any had (its secondary may hold one)", async () => {
    const c = await testCitadel();
    try {
      const k = { ...c.kernel, config: c.config, settings: c.config.dns, log: c.kernel.log } as never;
      const before = new CatalogSerials(k);
      const serial = before.serialFor("192.0.2.53 fleet.", "members-1");
      expect(before.serialFor("192.0.2.53 fleet.", "members-1")).toBe(serial);
      c.clock.advance(5_000);
      const moved = before.serialFor("192.0.2.53 fleet.", "members-2");
      expect(moved).toBe(serial + 5);
      await c.kernel.store.write(() => undefined); // the writes behind it are done
      // A restart: read from the store.
      const after = new CatalogSerials(k);
      expect(after.serialFor("192.0.2.53 fleet.", "members-2")).toBe(moved);
      // The clock went back meanwhile (an NTP step): a change still moves forward.
      c.clock.step(-60_000);
      expect(after.serialFor("192.0.2.53 fleet.", "members-3")).toBe(moved + 1);
      expect(after.serialFor("192.0.2.54 fleet.", "members-1")).toBe(moved + 2);
    } finally {
      await c.stop();
    }
  });
});

describe("a change of the zones costs what changed (found in review: every view was built again whole, 10,000 zones and 4 views about a second per zone made)", () => {
  const many = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => member(`zone-${from + i}.example.`, `id${from + i}`));
  const sorted = (zone: Zone) => lines(zone).sort();

  test("a zone made or deleted builds no view again: each follows with the member that came or went; a new view that lists what another does takes its zone", () => {
    const zones = many(0, 1_000);
    const catalog = new Catalog(origin, memorySerials());
    const views = ["every", "star", "also", "more"].map((v) => subscriber(v, null));
    const build = spyOn(Zone, "build");
    try {
      catalog.update(zones, views);
      expect(build.mock.calls.length).toBe(1); // four views alike: one built, three take its zone
      build.mockClear();
      const made = catalog.change([member("new.example.", "idnew")], []);
      const deleted = catalog.change([], [zones[0]!]);
      expect(build.mock.calls.length).toBe(0);
      expect([made.length, deleted.length]).toEqual([4, 4]); // each view moved, and is announced
      const expected = [zones.slice(1), member("new.example.", "idnew")].flat().sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const v of views) {
        const zone = catalog.viewFor("192.0.2.53", n(`${v.tsigKey}`))!;
        expect(sorted(zone)).toEqual(sorted(buildCatalog(origin, zone.serial(), expected)));
      }
    } finally {
      build.mockRestore();
    }
  });

  test("any run of changes — zones made, deleted, made again, a secondary's zones changed, a secondary added or gone — leaves each view as built whole from the members it lists, its serial moved exactly when they did", () => {
    let seed = 7;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    const pool = many(0, 40);
    let listed = pool.slice(0, 20);
    const zonesOf = (i: number) => (i % 3 === 0 ? null : pool.filter((_, j) => (j + i) % (i % 3 === 1 ? 2 : 3) === 0).map((m) => m.name));
    let subs = [subscriber("a", null), subscriber("b", zonesOf(1)), subscriber("c", zonesOf(2))];
    const serials = memorySerials();
    const catalog = new Catalog(origin, serials);
    catalog.update(listed, subs);
    const state = new Map<string, { serial: number; members: string }>();
    const check = (step: number) => {
      for (const sub of subs) {
        const zone = catalog.viewFor("192.0.2.53", n(sub.tsigKey))!;
        const members = listed.filter((m) => sub.covers(m)).sort((a, b) => (a.name < b.name ? -1 : 1));
        expect([step, sub.view, sorted(zone)]).toEqual([step, sub.view, sorted(buildCatalog(origin, zone.serial(), members))]);
        // What is stored is the fingerprint of the members as a start would find them.
        expect([step, sub.view, serials.rows.get(sub.view)!.fingerprint]).toEqual([step, sub.view, catalogFingerprint(origin, members)]);
        const before = state.get(sub.view);
        const now = { serial: zone.serial(), members: members.map((m) => m.id).join() };
        if (before !== undefined) expect([step, sub.view, now.serial === before.serial]).toEqual([step, sub.view, now.members === before.members]);
        state.set(sub.view, now);
      }
    };
    check(0);
    for (let step = 1; step <= 300; step++) {
      const what = random(10);
      if (what < 4) {
        const candidates = pool.filter((m) => !listed.includes(m));
        const made = candidates[random(candidates.length)];
        if (made === undefined) continue;
        listed = [...listed, made];
        catalog.change([made], []);
      } else if (what < 8) {
        const deleted = listed[random(listed.length)];
        if (deleted === undefined) continue;
        listed = listed.filter((m) => m !== deleted);
        catalog.change([], [deleted]);
      } else if (what < 9) {
        // One deleted and made again under its name: another id.
        const i = random(listed.length);
        const old = listed[i];
        if (old === undefined) continue;
        const again = member(old.name, `${old.id}r${step}`);
        pool[pool.indexOf(old)] = again;
        listed = listed.map((m) => (m === old ? again : m));
        catalog.change([again], [old]);
      } else {
        // The secondaries changed: a view's zones, one added, one gone (the others as they were).
        const i = random(6);
        subs = [...subs.filter((s) => s.view !== `192.0.2.53 v${i}.`), ...(random(3) === 0 ? [] : [subscriber(`v${i}`, zonesOf(step))])];
        for (const view of [...state.keys()]) if (!subs.some((s) => s.view === view)) state.delete(view);
        catalog.update(listed, subs);
      }
      check(step);
    }
  });
});

describe("a view that comes back", () => {
  /** The serial ns2 (192.0.2.53) is served with `key` after `members` were listed for it. */
  const served = (catalog: Catalog, members: CatalogMember[], key: string) => {
    catalog.update(members, [subscriber(`192.0.2.53 ${key}.`, null)]);
    return catalog.viewFor("192.0.2.53", n(`${key}.`))!.serial();
  };

  test("ns2's key changed and changed back: each view it is served starts above every serial any view had, so what it holds is never ahead (found in review: the old view's stored serial came back)", async () => {
    const c = await testCitadel();
    try {
      const k = { ...c.kernel, config: c.config, settings: c.config.dns, log: c.kernel.log } as never;
      const a = [member("a.example.", "01")];
      const ab = [...a, member("b.example.", "02")];
      let catalog = new Catalog(origin, new CatalogSerials(k));
      // All within one second: the clock does not move them on.
      const k1 = served(catalog, a, "k1");
      const k2 = served(catalog, a, "k2"); // ns2 removed, and added again with k2
      const k2b = served(catalog, ab, "k2"); // b.example. made: ns2 transfers serial k2b
      expect([k2 > k1, k2b > k2]).toEqual([true, true]);
      const k1again = served(catalog, a, "k1"); // back to k1, with the members k1 last had
      expect(k1again).toBeGreaterThan(k2b);
      const k2again = served(catalog, ab, "k2"); // and to k2, with the members k2 last had
      expect(k2again).toBeGreaterThan(k1again);
      // A restart serves the view in use as it was; the one left is still retired.
      await c.kernel.store.write(() => undefined); // the writes behind it are done
      catalog = new Catalog(origin, new CatalogSerials(k));
      expect(served(catalog, ab, "k2")).toBe(k2again);
      await c.kernel.store.write(() => undefined);
      catalog = new Catalog(origin, new CatalogSerials(k));
      expect(served(catalog, a, "k1")).toBeGreaterThan(k2again);
    } finally {
      await c.stop();
    }
  });
});

describe("who is answered", () => {
  const secondary = "192.0.2.53";
  const now = 1_800_000_000_000;
  const keyOf = (name: string, fill: number): TsigKey => ({ name: n(name), algorithm: "hmac-sha256", secret: new Uint8Array(32).fill(fill) });
  const everyKey = keyOf("every.", 1);
  const someKey = keyOf("some.", 2);
  const strangerKey = keyOf("stranger.", 3);
  const keys = [everyKey, someKey];
  const findKey = (name: Name) => keys.find((k) => nameEquals(k.name, name)) ?? null;
  const hosted = (text: string) => {
    const o = n(text);
    return Zone.build(o, parseZoneFile(`@ 3600 SOA ns1 hostmaster 1 3600 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\n`, { origin: o, defaultTtl: 3600 }));
  };

  function context(): AnswerContext {
    const catalog = new Catalog(origin, memorySerials());
    catalog.update([member("a.example.", "01"), member("b.example.", "02")], [subscriber(`${secondary} every.`, null), subscriber(`${secondary} some.`, ["b.example."])]);
    const zones = new ZoneTable();
    // A hosted zone above the catalog's name: the catalog's names are still the catalog's.
    for (const z of ["a.example.", "b.example.", "citadel.invalid."]) zones.set(hosted(z));
    return { zones, gate: { decide: () => "answer" }, tsigKey: findKey, transfers: { allowed: () => true }, now: () => now, catalog: { origin, viewFor: (client, key) => catalog.viewFor(client, key) } };
  }

  const query = (name: string, type: number) => buildQuery({ name: n(name), type });
  const signed = (packet: Uint8Array, key: TsigKey) => sign(packet, key, { kind: "request" }, now);
  const ixfr = (name: string, serial: number) => {
    // An IXFR carries the secondary's SOA in authority (RFC 1995 section 3).
    const soa = buildCatalog(origin, serial, []).soa();
    const q = query(name, TYPE_IXFR);
    const rr = new Uint8Array([0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 0, soa.rdata.length >> 8, soa.rdata.length & 255, ...soa.rdata]);
    const p = new Uint8Array([...q, ...rr]);
    p[9] = 1; // NSCOUNT
    return p;
  };
  const rcodeOf = (replies: Uint8Array[]) => decodeMessage(replies[0]!).rcode;
  const records = (replies: Uint8Array[]) => replies.flatMap((m) => decodeMessage(m).answer.filter((r) => r.type !== 250).map((r) => `${nameToText(r.name)} ${typeToText(r.type)} ${rdataToText(r.type, r.rdata)}`));

  test("a secondary signing with its key, from its address, transfers its own view (AXFR, signed); another key there gets that key's view", () => {
    const ctx = context();
    const request = signed(query(CATALOG, TYPE_AXFR), everyKey);
    const replies = answerAll(request.message, secondary, "tcp", ctx);
    expect(records(replies).filter((r) => r.includes(" PTR "))).toEqual([`01.zones.${CATALOG} PTR a.example.`, `02.zones.${CATALOG} PTR b.example.`]);
    expect(verify(replies[0]!, readTsig(replies[0]!, decodeQuery(replies[0]!).tsigStart), findKey, { kind: "response", requestMac: request.mac }, now).error).toBe(0);
    const some = answerAll(signed(query(CATALOG, TYPE_AXFR), someKey).message, secondary, "tcp", ctx);
    expect(records(some).filter((r) => r.includes(" PTR "))).toEqual([`02.zones.${CATALOG} PTR b.example.`]);
  });

  test("unsigned, from another address, or with a key of no secondary there: answered exactly as for a name not served here — a transfer NOTAUTH, any query REFUSED; an unknown key: NOTAUTH (BADKEY)", () => {
    const ctx = context();
    /** The reply's header and sections, without the id and question: what tells one name from another. */
    const shape = (replies: Uint8Array[]) => {
      const m = decodeMessage(replies[0]!);
      return { rcode: m.rcode, aa: m.aa, answer: m.answer.length, authority: m.authority.length, additional: m.additional.map((r) => r.type), more: replies.length };
    };
    /** The same request for the catalog and for a name served nowhere here: the same reply (found in review: REFUSED and NOTAUTH told them apart). */
    const likeNotServed = (name: string, type: number, client: string, transport: "udp" | "tcp", key: TsigKey | null) => {
      const ask = (qname: string) => {
        const q = type === TYPE_IXFR ? ixfr(qname, 1) : query(qname, type);
        return shape(answerAll(key === null ? q : signed(q, key).message, client, transport, ctx));
      };
      const notServed = ask(name.replace(CATALOG, "not-served.example."));
      expect([name, type, client, transport, ask(name)]).toEqual([name, type, client, transport, notServed]);
      return notServed.rcode;
    };
    keys.push(strangerKey); // a key Citadel knows, of no secondary at that address
    try {
      for (const [client, key] of [[secondary, null], ["192.0.2.54", everyKey], [secondary, strangerKey]] as const) {
        for (const transport of ["udp", "tcp"] as const) {
          for (const name of [CATALOG, `zones.${CATALOG}`, `CATALOG.citadel.INVALID.`]) {
            expect(likeNotServed(name, TYPE_AXFR, client, transport, key)).toBe(9);
            expect(likeNotServed(name, TYPE_IXFR, client, transport, key)).toBe(9);
          }
          expect(likeNotServed(CATALOG, RRType.SOA, client, transport, key)).toBe(Rcode.REFUSED);
        }
      }
    } finally {
      keys.pop();
    }
    expect(rcodeOf(answerAll(signed(query(CATALOG, TYPE_AXFR), strangerKey).message, secondary, "tcp", ctx))).toBe(9);
    for (const [name, type] of [[CATALOG, RRType.SOA], [CATALOG, RRType.NS], [`version.${CATALOG}`, RRType.TXT], [`01.zones.${CATALOG}`, RRType.PTR], [`nothing.${CATALOG}`, RRType.A]] as const) {
      for (const transport of ["udp", "tcp"] as const) expect([name, transport, rcodeOf(answerAll(query(name, type), secondary, transport, ctx))]).toEqual([name, transport, Rcode.REFUSED]);
    }
    // The hosted zone above it answers its own names to everyone.
    expect(rcodeOf(answerAll(query("www.citadel.invalid.", RRType.A), "198.51.100.1", "udp", ctx))).toBe(Rcode.NOERROR);
  });

  test("a secondary's signed SOA check is answered with its view's serial (Knot checks it before each transfer); IXFR as for any zone", () => {
    const ctx = context();
    const soa = decodeMessage(answerAll(signed(query(CATALOG, RRType.SOA), everyKey).message, secondary, "udp", ctx)[0]!);
    expect([soa.rcode, soa.aa, soa.answer.length]).toEqual([Rcode.NOERROR, true, 1]);
    const serial = soaSerial(soa.answer[0]!.rdata);
    const ptr = decodeMessage(answerAll(signed(query(`02.zones.${CATALOG}`, RRType.PTR), someKey).message, secondary, "udp", ctx)[0]!);
    expect(ptr.answer.map((r) => rdataToText(r.type, r.rdata))).toEqual(["b.example."]);
    // Current: the SOA alone; behind: the whole view in AXFR form; over UDP an AXFR is refused.
    expect(records(answerAll(signed(ixfr(CATALOG, serial), everyKey).message, secondary, "tcp", ctx)).length).toBe(1);
    expect(records(answerAll(signed(ixfr(CATALOG, serial - 1), everyKey).message, secondary, "tcp", ctx)).length).toBe(6);
    expect(rcodeOf(answerAll(signed(query(CATALOG, TYPE_AXFR), everyKey).message, secondary, "udp", ctx))).toBe(Rcode.REFUSED);
    expect(rcodeOf(answerAll(signed(query(`zones.${CATALOG}`, TYPE_AXFR), everyKey).message, secondary, "tcp", ctx))).toBe(9); // not the apex: NOTAUTH
  });

  test("nothing of it is cached: no reply about the catalog's names enters the answer cache, a stranger's refusal or a secondary's answer, while one about a hosted name does", () => {
    const ctx = context();
    const answerer = new CachingAnswerer(ctx);
    const cached = () => (answerer as unknown as { cache: { size: number } }).cache.size;
    const withEdns = (packet: Uint8Array) => {
      const opt = Uint8Array.of(0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0);
      const p = new Uint8Array([...packet, ...opt]);
      p[11] = 1; // ARCOUNT
      return p;
    };
    for (const [name, type] of [[CATALOG, RRType.SOA], [`version.${CATALOG}`, RRType.TXT], [`01.zones.${CATALOG}`, RRType.PTR], [`nothing.${CATALOG}`, RRType.A]] as const) {
      for (const transport of ["udp", "tcp"] as const) {
        for (const packet of [query(name, type), withEdns(query(name, type))]) {
          expect(decodeMessage(answerer.answer(packet, "198.51.100.1", transport)!).rcode).toBe(Rcode.REFUSED);
          expect(decodeMessage(answerer.answer(packet, secondary, transport)!).rcode).toBe(Rcode.REFUSED); // unsigned, from the secondary's address
        }
        expect(decodeMessage(answerer.answer(signed(query(name, type), everyKey).message, secondary, transport)!).rcode).not.toBe(Rcode.REFUSED);
      }
    }
    expect(cached()).toBe(0);
    expect(decodeMessage(answerer.answer(query("www.a.example.", RRType.A), "198.51.100.1", "udp")!).rcode).toBe(Rcode.NOERROR);
    expect(cached()).toBe(1); // the cache is on: a hosted name's reply is kept
  });
});

describe("over the API, with the listener and the secondaries' NOTIFY", () => {
  async function setup(catalog = CATALOG) {
    const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [], catalog } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "fleet" } });
    await c.send("POST", "/v1/dns/tsig-keys", operator, { json: { name: "other" } });
    const views = async () => (await c.send("GET", "/v1/dns/catalog", operator)).body as { name: string | null; served: boolean; views: Array<{ secondaries: string[]; serial: number; zones: Array<{ id: string; name: string }> }> };
    const viewOf = async (secondary: string) => (await views()).views.find((v) => v.secondaries.includes(secondary))!;
    return { c, operator, zones, views, viewOf };
  }

  test("each secondary's view is the zones it is told of: every hosted one (none or *), those it lists, a provider's own zone only when named", async () => {
    const { c, operator, zones, views, viewOf } = await setup();
    try {
      const add = (name: string, address: string, key: string, list?: string[]) => c.send("POST", "/v1/dns/secondaries", operator, { json: { name, address, tsig_key: key, ...(list ? { zones: list } : {}) } });
      await add("all", "192.0.2.1", "fleet");
      await add("star", "192.0.2.2", "fleet", ["*"]);
      await add("star-mesh", "192.0.2.3", "fleet", ["*", "mesh.internal"]);
      await add("one", "192.0.2.4", "fleet", ["b.example", "gone.example"]);
      await add("one-other-key", "192.0.2.4", "other", ["a.example"]);
      const unregister = c.kernel.records.register({ name: "mesh", domain: "mesh.internal.", records: () => [{ name: "db1.mesh.internal.", type: "AAAA", ttl: 60, data: "fd00::1" }] });
      for (const name of ["a.example", "b.example"]) expect((await c.send("POST", zones, operator, { json: { name } })).status).toBe(200);
      const ids = new Map(((await c.send("GET", zones, operator)).body.items as Array<{ id: string; name: string }>).map((z) => [z.name, memberIdOfZone(z.id)]));
      const names = async (secondary: string) => (await viewOf(secondary)).zones.map((z) => z.name);
      expect(await names("all")).toEqual(["a.example.", "b.example."]);
      expect(await names("star")).toEqual(["a.example.", "b.example."]);
      expect(await names("star-mesh")).toEqual(["a.example.", "b.example.", "mesh.internal."]);
      expect(await names("one")).toEqual(["b.example."]);
      expect(await names("one-other-key")).toEqual(["a.example."]);
      expect((await viewOf("all")).zones).toEqual([{ id: ids.get("a.example.")!, name: "a.example." }, { id: ids.get("b.example.")!, name: "b.example." }]);
      expect((await viewOf("star-mesh")).zones[2]!.id).toBe(memberIdOfProvider("mesh", "mesh.internal."));
      // The provider gone, and back under another domain: its own zone goes, and another member comes.
      await add("lan", "192.0.2.5", "fleet", ["mesh.lan"]);
      expect(await names("lan")).toEqual([]);
      unregister();
      expect(await names("star-mesh")).toEqual(["a.example.", "b.example."]);
      c.kernel.records.register({ name: "mesh", domain: "mesh.lan.", records: () => [{ name: "db1.mesh.lan.", type: "AAAA", ttl: 60, data: "fd00::1" }] });
      expect(await names("star-mesh")).toEqual(["a.example.", "b.example."]);
      expect((await viewOf("lan")).zones).toEqual([{ id: memberIdOfProvider("mesh", "mesh.lan."), name: "mesh.lan." }]);
      const all = await views();
      expect([all.name, all.served, all.views.length]).toEqual([CATALOG, true, 6]);
      expect((await c.send("GET", "/v1/dns/secondaries", operator)).body.catalog).toBe(CATALOG);
      // Operators only: it names every organization's zones.
      const admin = await c.addUser(operator, "admin@example.org", "admin");
      expect((await c.send("GET", "/v1/dns/catalog", admin.token)).status).toBe(403);
    } finally {
      await c.stop();
    }
  });

  test("a stored zone that does not build (not served here meanwhile) stays in the catalog: its secondaries keep their copy instead of purging it (found in review)", async () => {
    const { c, operator, zones, viewOf } = await setup();
    try {
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.1", tsig_key: "fleet" } });
      expect((await c.send("POST", zones, operator, { json: { name: "a.example" } })).status).toBe(200);
      const before = await viewOf("ns2");
      expect(before.zones.map((z) => z.name)).toEqual(["a.example."]);
      // A record no zone can hold (a CNAME beside the apex's SOA and NS), as a damaged row would be.
      const db = c.kernel.store.db;
      const id = (db.query("SELECT id FROM dns_zones WHERE name = 'a.example.' AND deleted_at IS NULL").get() as { id: string }).id;
      db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, 'a.example.', 5, 300, ?)").run(id, Uint8Array.of(3, 0x77, 0x77, 0x77, 0));
      db.query("UPDATE dns_zones SET serial = serial + 1 WHERE id = ?").run(id);
      expect((await c.send("POST", zones, operator, { json: { name: "b.example" } })).status).toBe(200); // the zones are read again
      expect(c.log.lines.some((l) => l.msg === "a stored zone does not build; it is not served" && l.zone === "a.example.")).toBe(true);
      const after = await viewOf("ns2");
      expect(after.zones.map((z) => z.name)).toEqual(["a.example.", "b.example."]);
      expect(after.zones[0]).toEqual(before.zones[0]!);
    } finally {
      await c.stop();
    }
  });

  test("a zone deleted and made again under its name is another member; a zone at or below the catalog's name is refused (409)", async () => {
    const { c, operator, zones, viewOf } = await setup();
    try {
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "ns2", address: "192.0.2.1", tsig_key: "fleet" } });
      expect((await c.send("POST", zones, operator, { json: { name: "a.example" } })).status).toBe(200);
      const first = await viewOf("ns2");
      const asked = await c.send("DELETE", `${zones}/a.example`, operator);
      expect((await c.send("DELETE", `${zones}/a.example`, operator, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
      expect((await viewOf("ns2")).zones).toEqual([]);
      c.clock.advance(1_000);
      expect((await c.send("POST", zones, operator, { json: { name: "a.example" } })).status).toBe(200);
      const again = await viewOf("ns2");
      expect(again.zones.map((z) => z.name)).toEqual(["a.example."]);
      expect(again.zones[0]!.id).not.toBe(first.zones[0]!.id);
      expect(again.serial).toBeGreaterThan(first.serial);
      for (const name of ["catalog.citadel.invalid", "x.catalog.citadel.invalid"]) {
        const refused = await c.send("POST", zones, operator, { json: { name } });
        expect([name, refused.status, refused.body.detail]).toEqual([name, 409, expect.stringContaining("the catalog zone's name ([dns] catalog)")]);
      }
    } finally {
      await c.stop();
    }
  });

  test("its secondaries are sent NOTIFY of the catalog, with their view's serial, when a zone they are told of comes or goes; a record's change moves no view, a zone they are not told of not theirs", async () => {
    const received: Array<{ who: string; zone: string; serial: number }> = [];
    const secondaryAt = (who: string) =>
      Bun.udpSocket({ hostname: "127.0.0.1", binaryType: "uint8array", socket: { data: (_s, data) => void received.push({ who, zone: nameToText(decodeQuery(data).question!.name), serial: soaSerial(decodeMessage(data).answer[0]!.rdata) }) } });
    const every = await secondaryAt("every");
    const limited = await secondaryAt("limited");
    const { c, operator, zones, viewOf } = await setup();
    /** Waits until `who` was sent NOTIFY of `zone` with `serial` (they are never answered here: retries may come too). */
    const notified = async (who: string, zone: string, serial: number) => {
      for (let i = 0; i < 500 && !received.some((r) => r.who === who && r.zone === zone && r.serial === serial); i++) await Bun.sleep(10);
      return received.some((r) => r.who === who && r.zone === zone && r.serial === serial);
    };
    const catalogSerials = (who: string) => new Set(received.filter((r) => r.who === who && r.zone === CATALOG).map((r) => r.serial));
    try {
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "every", address: "127.0.0.1", port: every.port, tsig_key: "fleet" } });
      await c.send("POST", "/v1/dns/secondaries", operator, { json: { name: "limited", address: "127.0.0.1", port: limited.port, tsig_key: "other", zones: ["b.example"] } });
      // Each is told of its view as it is added.
      const limitedFirst = (await viewOf("limited")).serial;
      expect([await notified("every", CATALOG, (await viewOf("every")).serial), await notified("limited", CATALOG, limitedFirst)]).toEqual([true, true]);

      c.clock.advance(1_000);
      expect((await c.send("POST", zones, operator, { json: { name: "a.example" } })).status).toBe(200);
      const everyWithA = (await viewOf("every")).serial;
      expect(await notified("every", CATALOG, everyWithA)).toBe(true);
      expect((await viewOf("limited")).serial).toBe(limitedFirst);
      await Bun.sleep(100); // sent in the same turn as every's, had there been one
      expect(catalogSerials("limited")).toEqual(new Set([limitedFirst]));

      // A record's change: the zone's own NOTIFY, no catalog's.
      c.clock.advance(1_000);
      const set = await c.send("PUT", `${zones}/a.example/rrsets/www/A`, operator, { json: { records: ["192.0.2.80"] } });
      expect(await notified("every", "a.example.", set.body.serial)).toBe(true);
      expect((await viewOf("every")).serial).toBe(everyWithA);
      expect(catalogSerials("every").size).toBe(2);

      c.clock.advance(1_000);
      expect((await c.send("POST", zones, operator, { json: { name: "b.example" } })).status).toBe(200);
      const [everyNow, limitedNow] = [(await viewOf("every")).serial, (await viewOf("limited")).serial];
      expect([everyNow > everyWithA, limitedNow > limitedFirst]).toEqual([true, true]);
      expect([await notified("every", CATALOG, everyNow), await notified("limited", CATALOG, limitedNow)]).toEqual([true, true]);
    } finally {
      await c.stop();
      every.close();
      limited.close();
    }
  });

  test("without [dns] catalog there is none: its names are REFUSED like any name not served, and the API says so", async () => {
    const { c, operator, views } = await setup("");
    try {
      expect(await views()).toEqual({ name: null, served: false, views: [] });
      expect(catalogOf({ ...c.kernel, settings: c.config.dns } as never)).toBeNull();
      expect((await c.send("GET", "/v1/dns/secondaries", operator)).body.catalog).toBeNull();
    } finally {
      await c.stop();
    }
  });

  test("without a catalog, the zones that came and went are still taken after each change: they do not pile up while Citadel runs (found in review)", async () => {
    const taken = spyOn(ServedZones.prototype, "takeCatalogChanges");
    const { c, operator, zones } = await setup("");
    try {
      taken.mockClear();
      for (let i = 0; i < 10; i++) {
        const made = await c.send("POST", zones, operator, { json: { name: `z${i}.example` } });
        expect(made.status).toBe(200);
        const asked = await c.send("DELETE", `${zones}/z${i}.example`, operator);
        expect((await c.send("DELETE", `${zones}/z${i}.example`, operator, { headers: { "x-citadel-confirm": asked.body.confirmation_token } })).status).toBe(200);
      }
      const sizes = taken.mock.results.map((r) => {
        const { added, removed } = r.value as { added: unknown[]; removed: unknown[] };
        return added.length + removed.length;
      });
      expect(sizes.length).toBeGreaterThanOrEqual(20);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(1);
    } finally {
      taken.mockRestore();
      await c.stop();
    }
  });
});

test("the answer to an unsigned query from the real listener: as for a name not served here (REFUSED; a transfer NOTAUTH)", async () => {
  const { DnsClient } = await import("../../helpers/reference-dns.ts");
  const c = await testCitadel({ config: { dns: { udp: ["127.0.0.1:0"], tcp: [], catalog: CATALOG } } });
  const port = (c.log.lines.find((l) => l.msg === "dns server listening")!.udp as number[])[0]!;
  const client = await DnsClient.open(port);
  try {
    for (const [name, type, rcode] of [[CATALOG, RRType.SOA, Rcode.REFUSED], [CATALOG, TYPE_AXFR, 9], [`version.${CATALOG}`, RRType.TXT, Rcode.REFUSED]] as const) {
      expect([name, type, (await client.query(buildQuery({ name: n(name), type }))).rcode]).toEqual([name, type, rcode]);
      expect([name, type, (await client.query(buildQuery({ name: n(name.replace(CATALOG, "not-served.example.")), type }))).rcode]).toEqual([name, type, rcode]);
    }
  } finally {
    client.close();
    await c.stop();
  }
});
