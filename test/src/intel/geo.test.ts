import { afterAll, afterEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Reader } from "maxmind";
import { createLogger } from "../../../src/log.ts";
import { benchmarkGeo } from "../../../src/intel/geo-bench.ts";
import { dateFromVersion, EMBEDDED_COUNTRY_DB, readEmbeddedCountryDb } from "../../../src/intel/geo-embedded.ts";
import { GeoIntel, type GeoOptions } from "../../../src/intel/geo.ts";
import { isNonGlobal } from "../../../src/intel/geo-special.ts";
import { cidrContains, formatIp, parseCidr, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../../../src/net/ip.ts";
import { encode, uint16, writeMmdb, type MmdbNetwork } from "../../helpers/mmdb-writer.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-geo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Replaces `name` the way geoipupdate does: a new file renamed over the old one. */
let written = 0;
function place(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  const temporary = `${path}.tmp${written++}`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
  return path;
}

const city = (iso: string, name: string, continent: string) => ({
  continent: { code: continent, geoname_id: 1, names: { en: continent } },
  country: { iso_code: iso, geoname_id: 2, names: { en: iso, de: `${iso} (de)` } },
  registered_country: { iso_code: iso, geoname_id: 2, names: { en: iso } },
  city: { geoname_id: 3, names: { en: name, "zh-CN": "城市" } },
  location: { latitude: 52.5, longitude: 13.4, accuracy_radius: uint16(100) },
});
const CITY_NETWORKS: MmdbNetwork[] = [
  { network: "8.8.8.0/24", data: city("DE", "Berlin", "EU") }, // disagrees with the embedded "US": the operator's wins
  { network: "203.0.113.0/24", data: city("JP", "Tokyo", "AS") },
  { network: "2001:db8::/32", data: city("FR", "Paris", "EU") },
  { network: "192.0.2.0/24", data: { registered_country: { iso_code: "SE", geoname_id: 4, names: { en: "Sweden" } } } }, // anycast: no location country
];
const ASN_NETWORKS: MmdbNetwork[] = [
  { network: "8.8.8.0/24", data: { autonomous_system_number: 15169, autonomous_system_organization: "GOOGLE" } },
  { network: "203.0.113.0/24", data: { autonomous_system_number: 64500, autonomous_system_organization: "Example Ünïcode Net" } },
  { network: "2001:db8:1::/48", data: { autonomous_system_number: 4200000000, autonomous_system_organization: "Big ASN" } },
];
const ANONYMOUS_NETWORKS: MmdbNetwork[] = [
  { network: "203.0.113.0/25", data: { is_anonymous: true, is_anonymous_vpn: true, is_hosting_provider: true } },
  { network: "203.0.113.128/25", data: { is_anonymous: true, is_tor_exit_node: true } },
  { network: "2001:db8:bad::/48", data: { is_public_proxy: true, is_residential_proxy: true } }, // no is_anonymous: still "any"
];

const cityDb = (networks = CITY_NETWORKS, databaseType = "GeoLite2-City") => writeMmdb({ databaseType, networks });
const asnDb = () => writeMmdb({ databaseType: "GeoLite2-ASN", networks: ASN_NETWORKS, recordSize: 24 });
const anonymousDb = () => writeMmdb({ databaseType: "GeoIP2-Anonymous-IP", networks: ANONYMOUS_NETWORKS, recordSize: 32 });

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, log: createLogger({ level: "debug", sink: (l) => lines.push(JSON.parse(l)) }) };
}

const opened: GeoIntel[] = [];
afterEach(() => opened.splice(0).forEach((g) => g.close()));
async function open(options: Partial<GeoOptions> = {}) {
  const { lines, log } = capture();
  const geo = await GeoIntel.open({ log, now: () => Date.UTC(2026, 5, 1), ...options });
  opened.push(geo);
  return { geo, lines };
}

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await Bun.sleep(5);
  }
}

describe("the MMDB writer", () => {
  test("writes what the maxmind Reader reads: types, nesting, prefixes, IPv4 inside IPv6", () => {
    for (const [recordSize, pointers] of [[24, false], [28, true], [32, true]] as const) {
      const reader = new Reader<Record<string, unknown>>(
        writeMmdb({
          databaseType: "Test-Types",
          recordSize,
          pointers,
          description: { en: "types" },
          networks: [
            { network: "10.0.0.0/8", data: { s: "wide", n: 7, big: 4_000_000_000, yes: true, no: false, u16: uint16(65535), list: [1, "two"], nested: { deep: { x: "y" } } } },
            { network: "10.1.0.0/16", data: { s: "narrow", negative: -5, half: 0.5, long: "é".repeat(200), again: { deep: { x: "y" } }, list: [1, "two"] } },
            { network: "2001:db8::/32", data: { s: "v6" } },
            { network: "2001:db8:1::/48", data: { s: "v6 narrow" } },
          ],
        }),
      );
      expect(reader.metadata).toMatchObject({ databaseType: "Test-Types", ipVersion: 6, recordSize, binaryFormatMajorVersion: 2, description: { en: "types" }, languages: ["en"] });
      expect(reader.metadata.buildEpoch.toISOString()).toBe("2026-01-02T00:00:00.000Z");
      // 10.1.0.0/16 split 10/8: 10.200.0.1 is under the 10.128.0.0/9 that remains.
      expect(reader.getWithPrefixLength("10.200.0.1")).toEqual([{ s: "wide", n: 7, big: 4_000_000_000, yes: true, no: false, u16: 65535, list: [1, "two"], nested: { deep: { x: "y" } } }, 9]);
      expect(reader.getWithPrefixLength("10.1.2.3")).toEqual([{ s: "narrow", negative: -5, half: 0.5, long: "é".repeat(200), again: { deep: { x: "y" } }, list: [1, "two"] }, 16]);
      // Beside the narrow network, the wide one still answers, under the prefix the split left.
      expect(reader.getWithPrefixLength("10.0.0.1")).toEqual([expect.objectContaining({ s: "wide" }), 16]);
      expect(reader.get("11.0.0.1")).toBeNull();
      expect(reader.get("::10.1.2.3")).toEqual(expect.objectContaining({ s: "narrow" })); // IPv4 lives at ::/96
      expect(reader.getWithPrefixLength("2001:db8:1::5")).toEqual([{ s: "v6 narrow" }, 48]);
      expect(reader.getWithPrefixLength("2001:db8:2::5")).toEqual([{ s: "v6" }, 47]);
      expect(reader.get("2001:db9::1")).toBeNull();
    }
  });

  test("writes repeats as pointers, as MaxMind does", () => {
    const record = (i: number) => ({ country: { iso_code: "DE", names: { en: "Germany", de: "Deutschland" } }, n: i });
    const networks = Array.from({ length: 50 }, (_, i) => ({ network: `10.0.${i}.0/24`, data: record(i) }));
    const plain = writeMmdb({ databaseType: "Test", networks, pointers: false });
    const shared = writeMmdb({ databaseType: "Test", networks });
    expect(shared.length).toBeLessThan(plain.length / 2);
    expect(new Reader<Record<string, unknown>>(shared).get("10.0.42.1")).toEqual(record(42));
  });

  test("writes IPv4-only trees", () => {
    const reader = new Reader<Record<string, unknown>>(writeMmdb({ databaseType: "Test-V4", ipVersion: 4, recordSize: 24, networks: [{ network: "192.0.2.0/24", data: { s: "v4" } }] }));
    expect(reader.metadata.ipVersion).toBe(4);
    expect(reader.getWithPrefixLength("192.0.2.9")).toEqual([{ s: "v4" }, 24]);
    expect(reader.get("192.0.3.9")).toBeNull();
  });
});

describe("the embedded country database", () => {
  test("answers for stable, well-known networks with no file configured", async () => {
    const { geo } = await open();
    expect(geo.lookup("193.0.0.1").country).toBe("NL"); // RIPE NCC, Amsterdam
    expect(geo.lookup("200.160.0.1").country).toBe("BR"); // NIC.br
    expect(geo.lookup("8.8.8.8").country).toBe("US"); // Google
    expect(geo.lookup("2001:67c:2e8::1").country).toBe("NL"); // RIPE NCC, IPv6
    expect(geo.lookup("::ffff:193.0.0.1").country).toBe("NL"); // IPv4 as a dual-stack socket reports it
    expect(geo.lookup("8.8.8.8")).toEqual({ country: "US", continent: null, city: null, asn: null, organisation: null, anonymous: null });
  });

  test("reports its type, date and licence, both the package's and the data's", async () => {
    const { geo } = await open();
    const [embedded] = geo.status();
    expect(embedded).toEqual({
      kind: "country-default",
      path: null,
      databaseType: "country ipvAll",
      buildDate: "2026-06-17",
      licence: "CC0-1.0 (package); data CC BY 4.0 NRO (attribution: nro.net)",
      loadedAt: "2026-06-01T00:00:00.000Z",
      error: null,
    });
    // The package version is the date too: they must agree.
    expect(EMBEDDED_COUNTRY_DB.date).toBe("2026-06-17");
    expect(EMBEDDED_COUNTRY_DB.source).toBe("@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719");
    expect(dateFromVersion("2.3.2026061719")).toBe("2026-06-17");
    expect(dateFromVersion("3.0.0")).toBeNull();
  });

  test("our tree walk gives the maxmind Reader's answer, for any address", async () => {
    const { geo } = await open({ cacheSize: 0 });
    const reader = new Reader<Record<string, unknown>>(await readEmbeddedCountryDb());
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const address = unmapIpv4(parseIp(ip)!);
        const expected = isNonGlobal(address) ? null : ((reader.get(formatIp(address))?.country_code as string | undefined) ?? null);
        expect(geo.lookup(ip).country).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  test("gives no country to private, documentation and other non-global addresses", async () => {
    const { geo } = await open();
    // The data itself says AU for these (and JP for 2001:db8::/32): a LAN client is not Australian.
    for (const ip of ["192.168.1.1", "172.16.0.1", "10.0.0.1", "100.64.0.1", "203.0.113.1", "2001:db8::1", "fd00::1", "fe80::1"]) expect(geo.lookup(ip).country).toBeNull();
  });

  test("but an operator's database may place internal networks", async () => {
    const { geo } = await open({ city: place("internal.mmdb", cityDb([{ network: "192.168.0.0/16", data: city("DE", "Office", "EU") }])) });
    expect(geo.lookup("192.168.1.1")).toMatchObject({ country: "DE", city: "Office" });
  });
});

describe("non-global addresses", () => {
  const SPECIAL = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    "::/96", "64:ff9b:1::/48", "100::/64", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/6",
  ].map((c) => parseCidr(c)!);
  const reference = (ip: IpAddress) => SPECIAL.some((c) => cidrContains(c, ip));
  /** The first and last address of a prefix, and their neighbours outside it. */
  const edges = (c: Cidr): IpAddress[] => {
    const first = BigInt(`0x${Buffer.from(c.bytes).toString("hex")}`);
    const bits = BigInt(c.bytes.length * 8);
    const last = first + (1n << (bits - BigInt(c.prefix))) - 1n;
    const toIp = (n: bigint): IpAddress => ({ family: c.family, bytes: Uint8Array.from(Buffer.from(n.toString(16).padStart(c.bytes.length * 2, "0"), "hex")) });
    return [first - 1n, first, last, last + 1n].filter((n) => n >= 0n && n < 1n << bits).map(toIp);
  };

  test("match IANA's special-purpose prefixes exactly, at their edges", () => {
    for (const cidr of SPECIAL) for (const ip of edges(cidr)) expect([formatIp(ip), isNonGlobal(ip)]).toEqual([formatIp(ip), reference(ip)]);
  });

  test("match them for any address", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        const ip = parseIp(text)!;
        expect(isNonGlobal(ip)).toBe(reference(ip));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe("operator databases", () => {
  test("merge: country, continent and city from the City database, ASN, anonymity", async () => {
    const { geo, lines } = await open({ city: place("city.mmdb", cityDb()), asn: place("asn.mmdb", asnDb()), anonymous: place("anon.mmdb", anonymousDb()) });
    expect(geo.lookup("8.8.8.8")).toEqual({
      country: "DE", // the operator's City database wins over the embedded "US"
      continent: "EU",
      city: "Berlin",
      asn: 15169,
      organisation: "GOOGLE",
      anonymous: { any: false, vpn: false, hosting: false, publicProxy: false, residentialProxy: false, tor: false },
    });
    expect(geo.lookup("8.8.4.4")).toMatchObject({ country: "US", continent: null, city: null, asn: null }); // not in the City database: embedded
    expect(geo.lookup("203.0.113.7")).toEqual({
      country: "JP",
      continent: "AS",
      city: "Tokyo",
      asn: 64500,
      organisation: "Example Ünïcode Net",
      anonymous: { any: true, vpn: true, hosting: true, publicProxy: false, residentialProxy: false, tor: false },
    });
    expect(geo.lookup("::ffff:203.0.113.200").anonymous).toEqual({ any: true, vpn: false, hosting: false, publicProxy: false, residentialProxy: false, tor: true });
    expect(geo.lookup("192.0.2.1")).toMatchObject({ country: "SE", continent: null, city: null }); // registered country when there is no location
    expect(geo.lookup("2001:db8:1::1")).toMatchObject({ country: "FR", city: "Paris", asn: 4200000000, organisation: "Big ASN" });
    expect(geo.lookup("2001:db8:bad::1").anonymous).toEqual({ any: true, vpn: false, hosting: false, publicProxy: true, residentialProxy: true, tor: false });
    expect(geo.status().map((s) => [s.kind, s.databaseType, s.buildDate, s.error])).toEqual([
      ["country-default", "country ipvAll", "2026-06-17", null],
      ["city", "GeoLite2-City", "2026-01-02", null],
      ["asn", "GeoLite2-ASN", "2026-01-02", null],
      ["anonymous", "GeoIP2-Anonymous-IP", "2026-01-02", null],
    ]);
    expect(lines.filter((l) => l.msg === "geo database loaded").map((l) => l.database)).toEqual(expect.arrayContaining(["city", "asn", "anonymous"]));
  });

  test("a Country database in the city slot is reported as one", async () => {
    const { geo } = await open({ city: place("country.mmdb", writeMmdb({ databaseType: "GeoLite2-Country", networks: [{ network: "8.8.8.0/24", data: { country: { iso_code: "CH" } } }] })) });
    expect(geo.lookup("8.8.8.8").country).toBe("CH");
    expect(geo.status()[1]).toMatchObject({ kind: "country", databaseType: "GeoLite2-Country", licence: null, error: null });
  });

  test("invalid input answers all nulls and never throws", async () => {
    const { geo } = await open({ anonymous: place("anon-invalid.mmdb", anonymousDb()) });
    const nothing = { country: null, continent: null, city: null, asn: null, organisation: null, anonymous: null };
    for (const bad of ["", "junk", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.0.0.1", "fe80::1%eth0", "1::2::3", " 8.8.8.8"]) expect(geo.lookup(bad)).toEqual(nothing);
    expect(geo.lookup(undefined as unknown as string)).toEqual(nothing);
    fc.assert(fc.property(fc.string(), (s) => void geo.lookup(s)));
  });

  test("answers are frozen: they are shared through the cache", async () => {
    const { geo } = await open({ anonymous: place("anon-frozen.mmdb", anonymousDb()) });
    const info = geo.lookup("203.0.113.1");
    expect(Object.isFrozen(info) && Object.isFrozen(info.anonymous)).toBe(true);
    expect(geo.lookup("203.0.113.1")).toBe(info);
  });

  test("our tree walk gives the maxmind Reader's answer with 28- and 32-bit records past 2^24", async () => {
    // Two 8.4 MB strings push the second record's offset past 2^24: the top bits of the records are used.
    const [x, y] = ["x".repeat(8_400_000), "y".repeat(8_400_000)];
    for (const recordSize of [28, 32] as const) {
      const bytes = writeMmdb({
        databaseType: "GeoLite2-ASN",
        recordSize,
        networks: [
          { network: "10.0.0.0/8", data: { autonomous_system_number: 1, autonomous_system_organization: "first", a: x, b: y } },
          { network: "11.0.0.0/8", data: { autonomous_system_number: 2, autonomous_system_organization: "second" } },
        ],
      });
      const { geo } = await open({ asn: place(`big-${recordSize}.mmdb`, bytes) });
      expect(new Reader<Record<string, unknown>>(bytes).get("11.1.1.1")?.autonomous_system_number).toBe(2);
      expect(geo.lookup("11.1.1.1")).toMatchObject({ asn: 2, organisation: "second" });
      expect(geo.lookup("10.1.1.1")).toMatchObject({ asn: 1, organisation: "first" });
    }
  });
});

describe("against the maxmind Reader as the reference", () => {
  const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : null);
  const flag = fc.option(fc.oneof(fc.boolean(), fc.constant("true")), { nil: undefined });
  const code = fc.oneof(fc.constantFrom("DE", "FR", "NL", ""), fc.nat(5));
  const names = fc.record({ en: fc.constantFrom("Berlin", "Paris", "Zürich", ""), de: fc.constantFrom("Berlin", "Paris") }, { requiredKeys: [] });
  const cityRecord = fc.record(
    {
      continent: fc.record({ code, geoname_id: fc.nat(), names }, { requiredKeys: [] }),
      country: fc.record({ iso_code: code, names }, { requiredKeys: [] }),
      registered_country: fc.record({ iso_code: code, is_in_european_union: fc.boolean() }, { requiredKeys: [] }),
      city: fc.record({ names, geoname_id: fc.nat() }, { requiredKeys: [] }),
      location: fc.record({ latitude: fc.double({ noNaN: true }), longitude: fc.double({ noNaN: true }), accuracy_radius: fc.nat(1000).map(uint16) }),
      subdivisions: fc.array(fc.record({ iso_code: code, names }), { maxLength: 2 }),
    },
    { requiredKeys: [] },
  );
  const asnRecord = fc.record(
    { autonomous_system_number: fc.oneof(fc.nat(), fc.constant(4_294_967_295), fc.constant("AS1"), fc.constant(-1)), autonomous_system_organization: fc.constantFrom("Org A", "Org B", "Ørg", "") },
    { requiredKeys: [] },
  );
  const anonymousRecord = fc.record(
    { is_anonymous: flag, is_anonymous_vpn: flag, is_hosting_provider: flag, is_public_proxy: flag, is_residential_proxy: flag, is_tor_exit_node: flag },
    { requiredKeys: [] },
  ).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as MmdbNetwork["data"]);
  // Networks crowded into 81.0.0.0/14 and 2a00::/30 so that they overlap and nest.
  const network = fc.oneof(
    fc.tuple(fc.nat(3), fc.nat(255), fc.integer({ min: 14, max: 28 })).map(([a, b, prefix]) => maskedCidr([81, a, b, 0x5a], prefix)),
    fc.tuple(fc.nat(3), fc.nat(0xffff), fc.integer({ min: 30, max: 64 })).map(([a, b, prefix]) => maskedCidr([0x2a, 0, 0, a, b >> 8, b & 0xff, 0x12, 0x34, ...new Array(8).fill(0x56)], prefix)),
  );
  const address = fc.oneof(
    fc.tuple(fc.nat(3), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `81.${a}.${b}.${c}`),
    fc.tuple(fc.nat(3), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `::ffff:81.${a}.${b}.${c}`),
    fc.tuple(fc.nat(3), fc.nat(0xffff), fc.nat(0xffff)).map(([a, b, c]) => `2a00:${a.toString(16)}:${b.toString(16)}:${c.toString(16)}::1`),
  );
  const database = <T,>(record: fc.Arbitrary<T>) => fc.array(fc.record({ network, data: record }), { maxLength: 12 });

  test("every lookup merges exactly what the Reader finds in each database", async () => {
    const embedded = new Reader<Record<string, unknown>>(await readEmbeddedCountryDb());
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({ recordSize: fc.constantFrom(24 as const, 28 as const, 32 as const), pointers: fc.boolean() }),
        database(cityRecord),
        database(asnRecord),
        fc.option(database(anonymousRecord), { nil: null }),
        fc.array(address, { minLength: 30, maxLength: 30 }),
        async (format, cities, asns, anonymous, addresses) => {
          run++;
          const files = {
            city: writeMmdb({ databaseType: "GeoIP2-City", networks: cities as MmdbNetwork[], ...format }),
            asn: writeMmdb({ databaseType: "GeoLite2-ASN", networks: asns as MmdbNetwork[], ...format }),
            anonymous: anonymous && writeMmdb({ databaseType: "GeoIP2-Anonymous-IP", networks: anonymous, ...format }),
          };
          const { geo } = await open({
            city: place(`ref-city-${run}.mmdb`, files.city),
            asn: place(`ref-asn-${run}.mmdb`, files.asn),
            anonymous: files.anonymous ? place(`ref-anon-${run}.mmdb`, files.anonymous) : undefined,
            pollMs: 0,
          });
          const readers = { city: new Reader<Record<string, any>>(files.city), asn: new Reader<Record<string, any>>(files.asn), anonymous: files.anonymous && new Reader<Record<string, any>>(files.anonymous) };
          // Probe the networks' own addresses too: they are where the answers change.
          const probes = [...addresses, ...[...cities, ...asns, ...(anonymous ?? [])].map((n) => n.network.split("/")[0]!)];
          for (const probe of probes) {
            const ip = formatIp(unmapIpv4(parseIp(probe)!));
            const located = readers.city.get(ip);
            const network = readers.asn.get(ip);
            const asn = network?.autonomous_system_number;
            const flags = readers.anonymous ? (readers.anonymous.get(ip) ?? {}) : null;
            const anonymity = flags && {
              vpn: flags.is_anonymous_vpn === true,
              hosting: flags.is_hosting_provider === true,
              publicProxy: flags.is_public_proxy === true,
              residentialProxy: flags.is_residential_proxy === true,
              tor: flags.is_tor_exit_node === true,
            };
            expect(geo.lookup(probe)).toEqual({
              country: str(located?.country?.iso_code) ?? str(located?.registered_country?.iso_code) ?? str(embedded.get(ip)?.country_code),
              continent: str(located?.continent?.code),
              city: str(located?.city?.names?.en),
              asn: typeof asn === "number" && asn >= 0 ? asn : null,
              organisation: str(network?.autonomous_system_organization),
              anonymous: anonymity && { any: flags!.is_anonymous === true || Object.values(anonymity).includes(true), ...anonymity },
            });
          }
          geo.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  test("follows pointers of each size a 1 MB data section uses", async () => {
    // Each organisation first appears after ever more padding, then nine records point back at it.
    const networks = Array.from({ length: 300 }, (_, i) => ({
      network: `81.${i >> 8}.${i & 0xff}.0/24`,
      data: { autonomous_system_number: i, autonomous_system_organization: `Org ${Math.floor(i / 10)}`, padding: `${i}`.repeat(1000) },
    }));
    const bytes = writeMmdb({ databaseType: "GeoLite2-ASN", networks });
    const { geo } = await open({ asn: place("pointers.mmdb", bytes) });
    const reader = new Reader<Record<string, unknown>>(bytes);
    for (const { network } of networks) {
      const ip = network.replace(".0/24", ".1");
      expect(geo.lookup(ip)).toMatchObject({ asn: reader.get(ip)!.autonomous_system_number, organisation: reader.get(ip)!.autonomous_system_organization });
    }
    expect(bytes.length).toBeGreaterThan(526_336 + 16); // pointers with two and three extra bytes were needed
  });

  test("a damaged data section gives no answer for that record, and never throws", async () => {
    const record = { autonomous_system_number: 64500, autonomous_system_organization: "first record" };
    for (const damage of [[0x20, 0x00] /* a pointer to itself */, [0x38, 0xff, 0xff, 0xff, 0xf0] /* a pointer past the end */, [0xff, 0xff, 0xff] /* nonsense */]) {
      // Without pointers: else the second record would share (and lose) the first one's key.
      const networks = [{ network: "81.0.0.0/16", data: record }, { network: "81.1.0.0/16", data: { autonomous_system_number: 2 } }];
      const bytes = writeMmdb({ databaseType: "GeoLite2-ASN", networks, pointers: false });
      const at = bytes.indexOf(encode(record));
      bytes.set(damage, at);
      const { geo } = await open({ asn: place(`damaged-${damage[0]}.mmdb`, bytes) });
      expect(geo.lookup("81.0.0.1")).toMatchObject({ asn: null, organisation: null });
      expect(geo.lookup("81.1.0.1").asn).toBe(2);
    }
  });
});

function maskedCidr(bytes: number[], prefix: number): string {
  const masked = bytes.map((b, i) => b & (0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff);
  const ip: IpAddress = { family: bytes.length === 4 ? 4 : 6, bytes: Uint8Array.from(masked) };
  return `${formatIp(ip)}/${prefix}`;
}

describe("reloading", () => {
  test("a file renamed over the old one is served within the poll interval, and the cache forgets old answers", async () => {
    const path = place("reload.mmdb", cityDb());
    const { geo, lines } = await open({ city: path, pollMs: 20 });
    expect(geo.lookup("8.8.8.8").country).toBe("DE");
    const first = geo.status()[1]!.loadedAt;
    place("reload.mmdb", cityDb([{ network: "8.8.8.0/24", data: city("IT", "Roma", "EU") }]));
    await until(() => geo.lookup("8.8.8.8").country === "IT");
    expect(geo.lookup("8.8.8.8").city).toBe("Roma");
    expect(geo.lookup("203.0.113.1").country).toBe(null); // gone from the new file; a documentation address has no embedded answer
    expect(geo.status()[1]).toMatchObject({ error: null, databaseType: "GeoLite2-City" });
    expect(geo.status()[1]!.loadedAt).toBe(first!); // `now` is fixed in these tests
    expect(lines.filter((l) => l.msg === "geo database loaded")).toHaveLength(2);
  });

  test("a corrupt file is reported and the previous data keeps serving, until a good one comes", async () => {
    const path = place("corrupt.mmdb", asnDb());
    const { geo, lines } = await open({ asn: path, pollMs: 20 });
    expect(geo.lookup("8.8.8.8").asn).toBe(15169);
    place("corrupt.mmdb", new Uint8Array(Buffer.from("this is not a database".repeat(50))));
    await until(() => geo.status()[1]!.error !== null);
    expect(geo.status()[1]).toMatchObject({ kind: "asn", databaseType: "GeoLite2-ASN", error: `${path} is not a usable MaxMind database: no MaxMind DB metadata (not an .mmdb file?)` });
    expect(geo.lookup("8.8.8.8").asn).toBe(15169);
    expect(geo.lookup("203.0.113.9").asn).toBe(64500);
    const failure = lines.find((l) => l.level === "error")!;
    expect(failure).toMatchObject({ msg: "geo database not reloaded: keeping the previous data", database: "asn", path });
    // Reported once, not at every poll.
    await Bun.sleep(100);
    expect(lines.filter((l) => l.level === "error")).toHaveLength(1);
    // A truncated database (cut before its metadata) is refused too.
    const good = asnDb();
    place("corrupt.mmdb", good.subarray(0, good.length - 40));
    await until(() => lines.filter((l) => l.level === "error").length === 2);
    expect(geo.lookup("8.8.8.8").asn).toBe(15169);
    place("corrupt.mmdb", writeMmdb({ databaseType: "GeoLite2-ASN", networks: [{ network: "8.8.8.0/24", data: { autonomous_system_number: 3, autonomous_system_organization: "new" } }] }));
    await until(() => geo.lookup("8.8.8.8").asn === 3);
    expect(geo.status()[1]!.error).toBeNull();
  });

  test("a file of the wrong type is refused, at start and on reload", async () => {
    const { geo, lines } = await open({ city: place("wrong.mmdb", asnDb()) });
    expect(geo.status()[1]).toMatchObject({ kind: "city", databaseType: null, loadedAt: null, error: `${join(dir, "wrong.mmdb")} is a GeoLite2-ASN database, where a City or Country database was expected` });
    expect(geo.lookup("8.8.8.8").country).toBe("US"); // the embedded data serves
    expect(lines.find((l) => l.level === "error")).toMatchObject({ msg: "geo database not loaded", database: "city" });

    const path = place("wrong-later.mmdb", anonymousDb());
    const later = await open({ anonymous: path, pollMs: 20 });
    place("wrong-later.mmdb", cityDb());
    await until(() => later.geo.status()[1]!.error !== null);
    expect(later.geo.status()[1]!.error).toBe(`${path} is a GeoLite2-City database, where an Anonymous-IP database was expected`);
    expect(later.geo.lookup("203.0.113.1").anonymous?.vpn).toBe(true);
  });

  test("a file missing at start is reported, the embedded data serves, and the file is loaded when it appears", async () => {
    const path = join(dir, "later.mmdb");
    const { geo, lines } = await open({ city: path, pollMs: 20 });
    expect(geo.status()[1]).toMatchObject({ kind: "city", path, databaseType: null, error: `cannot read ${path}: no such file` });
    expect(lines.find((l) => l.level === "error")).toMatchObject({ msg: "geo database not loaded", database: "city", path });
    expect(geo.lookup("8.8.8.8").country).toBe("US");
    place("later.mmdb", cityDb());
    await until(() => geo.lookup("8.8.8.8").country === "DE");
    expect(geo.status()[1]!.error).toBeNull();
  });

  test("a file deleted later is reported; the data in service stays", async () => {
    const path = place("deleted.mmdb", cityDb());
    const { geo } = await open({ city: path, pollMs: 20 });
    rmSync(path);
    await until(() => geo.status()[1]!.error !== null);
    expect(geo.status()[1]).toMatchObject({ error: `cannot read ${path}: no such file`, databaseType: "GeoLite2-City" });
    expect(geo.lookup("8.8.8.8").country).toBe("DE");
  });

  test("a gzip download gets a clear error", async () => {
    const path = place("city.mmdb.gz", gzipSync(cityDb()));
    const { geo } = await open({ city: path });
    expect(geo.status()[1]!.error).toBe(`${path} is not a usable MaxMind database: the file is gzip-compressed (a .tar.gz or .mmdb.gz download?): unpack the .mmdb`);
  });

  test("close() stops polling", async () => {
    place("closed.mmdb", cityDb());
    const { geo } = await open({ city: join(dir, "closed.mmdb"), pollMs: 20 });
    geo.close();
    place("closed.mmdb", cityDb([{ network: "8.8.8.0/24", data: city("IT", "Roma", "EU") }]));
    await Bun.sleep(150);
    expect(geo.lookup("8.8.8.8").country).toBe("DE");
  });
});

test("bun build --compile embeds the country database: a binary answers with no node_modules in sight", async () => {
  // The same flags as scripts/build.ts, on a small entry point (main.ts may not load geo at all).
  const work = mkdtempSync(join(tmpdir(), "citadel-geo-binary-"));
  try {
    const entry = join(work, "entry.ts");
    writeFileSync(
      entry,
      `import { GeoIntel, EMBEDDED_COUNTRY_DB } from ${JSON.stringify(new URL("../../../src/intel/geo.ts", import.meta.url).pathname)};
       import { silentLogger } from ${JSON.stringify(new URL("../../../src/log.ts", import.meta.url).pathname)};
       const geo = await GeoIntel.open({ log: silentLogger });
       console.log(JSON.stringify({ path: EMBEDDED_COUNTRY_DB.path, error: geo.status()[0].error, nl: geo.lookup("193.0.0.1").country, v6: geo.lookup("2001:67c:2e8::1").country }));`,
    );
    const binary = join(work, "geo-check");
    const build = Bun.spawnSync([process.execPath, "build", entry, "--compile", "--minify", "--bytecode", "--format=esm", "--sourcemap=none", "--outfile", binary], { stderr: "pipe", stdout: "pipe" });
    expect(build.exitCode, build.stderr.toString()).toBe(0);
    const run = Bun.spawnSync([binary], { cwd: work, env: { PATH: "/usr/bin:/bin" }, stderr: "pipe", stdout: "pipe" });
    expect(run.exitCode, run.stderr.toString()).toBe(0);
    const out = JSON.parse(run.stdout.toString());
    expect(out).toEqual({ path: expect.stringContaining("$bunfs"), error: null, nl: "NL", v6: "NL" });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test("benchmarkGeo measures cached and uncached lookups", async () => {
  const result = await benchmarkGeo(20_000, { asn: place("bench-asn.mmdb", asnDb()) });
  expect(result.uncachedPerSecond).toBeGreaterThan(0);
  expect(result.cachedPerSecond).toBeGreaterThan(0);
});
