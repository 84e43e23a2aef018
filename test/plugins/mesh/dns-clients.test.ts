/**
 * Who is told which of the mesh's node names: loopback and [mesh] dns_clients every name, a
 * network's addresses (IPv4 and IPv6) that network's names and the domain itself, nobody else any
 * — nor an address inside networks of two organizations, each such overlap logged once.
 */
import { describe, expect, test } from "bun:test";
import { DnsClients } from "../../../plugins/mesh/dns-clients.ts";
import { dnsClientPrefixes } from "../../../plugins/mesh/settings.ts";

const PROD = { name: "prod", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" };
const DEV = { name: "dev", organization_id: "org_a", ipv4: "100.65.0.0/16", ipv6: "fd7a:115c:a1e1::/48" };
const DB1 = "db1.prod.mesh.internal.";

test("loopback and a dns_clients prefix are told every name; others nothing, a network's addresses aside", () => {
  const clients = new DnsClients("mesh.internal.", dnsClientPrefixes(["10.0.0.0/8"]), () => [PROD, DEV]);
  for (const told of ["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "::ffff:10.1.2.3"]) {
    for (const name of [DB1, "web.dev.mesh.internal.", "mesh.internal.", "nothing.mesh.internal."]) expect({ told, name, allows: clients.allows(told, name) }).toEqual({ told, name, allows: true });
  }
  for (const refused of ["100.66.0.1", "fd7a:115c:a1e2::5", "203.0.113.7", "2001:db8::1", "not an address", "fe80::1%eth0"]) {
    for (const name of [DB1, "mesh.internal."]) expect(clients.allows(refused, name)).toBe(false);
  }
});

test("a network's address (IPv4, mapped or IPv6) is told its network's names and the domain itself, not another network's", () => {
  const clients = new DnsClients("mesh.internal.", [], () => [PROD, DEV]);
  for (const client of ["100.64.3.4", "::ffff:100.64.3.4", "fd7a:115c:a1e0::5"]) {
    for (const name of [DB1, "prod.mesh.internal.", "nothing.prod.mesh.internal.", "a.b.prod.mesh.internal.", "mesh.internal."]) expect({ client, name, allows: clients.allows(client, name) }).toEqual({ client, name, allows: true });
    for (const name of ["web.dev.mesh.internal.", "dev.mesh.internal.", "other.mesh.internal.", "xprod.mesh.internal.", "prod.mesh.internal.x.mesh.internal."]) {
      expect({ client, name, allows: clients.allows(client, name) }).toEqual({ client, name, allows: false });
    }
  }
  expect(clients.allows("100.65.0.9", "web.dev.mesh.internal.")).toBe(true);
  expect(clients.allows("100.65.0.9", DB1)).toBe(false);
});

test("a dot escaped inside a label does not part it from the network's name", () => {
  const clients = new DnsClients("mesh.internal.", [], () => [PROD, DEV]);
  // "dev\.prod" is one label below the domain, a sibling of the networks; "x\\" one label below prod.
  expect(clients.allows("100.65.0.9", "web.dev\\.prod.mesh.internal.")).toBe(false);
  expect(clients.allows("100.64.0.9", "a\\.prod.mesh.internal.")).toBe(false);
  expect(clients.allows("100.64.0.9", "x\\\\.prod.mesh.internal.")).toBe(true);
});

test("the domain is matched whatever the case it is configured in (names come lower-case)", () => {
  const clients = new DnsClients("Mesh.Example.ORG", [], () => [PROD]);
  expect(clients.allows("100.64.0.9", "db1.prod.mesh.example.org.")).toBe(true);
  expect(clients.allows("100.64.0.9", "mesh.example.org.")).toBe(true);
});

test("a network made later is told its names once refreshed", () => {
  const networks: Array<typeof PROD> = [];
  const clients = new DnsClients("mesh.internal.", [], () => networks);
  expect(clients.allows("100.64.0.9", DB1)).toBe(false);
  networks.push(PROD);
  clients.refresh();
  expect(clients.allows("100.64.0.9", DB1)).toBe(true);
});

test("a client inside two networks' prefixes of one organization (overlapping) is told both", () => {
  const clients = new DnsClients("mesh.internal.", [], () => [PROD, { name: "ops", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd00:1::/48" }]);
  expect([clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")]).toEqual([true, true]);
  expect([clients.allows("fd7a:115c:a1e0::9", DB1), clients.allows("fd7a:115c:a1e0::9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
});

describe("networks of two organizations that overlap (made before pools were chosen across organizations)", () => {
  // Both organizations' first networks took 100.64.0.0/16; their IPv6 prefixes differ.
  const OPS = { name: "ops", organization_id: "org_b", ipv4: "100.64.0.0/16", ipv6: "fd00:1::/48" };
  const TEST = { name: "test", organization_id: "org_b", ipv4: "100.64.128.0/17", ipv6: "fd00:2::/48" };

  test("a client inside both is told none of their names, nor the domain; at an address only one holds, that one's", () => {
    const clients = new DnsClients("mesh.internal.", dnsClientPrefixes(["100.64.7.0/24"]), () => [PROD, OPS, DEV]);
    for (const name of [DB1, "db1.ops.mesh.internal.", "web.dev.mesh.internal.", "mesh.internal."]) {
      expect({ name, allows: clients.allows("100.64.0.9", name) }).toEqual({ name, allows: false });
      expect({ name, allows: clients.allows("::ffff:100.64.0.9", name) }).toEqual({ name, allows: false });
    }
    expect([clients.allows("fd7a:115c:a1e0::9", DB1), clients.allows("fd7a:115c:a1e0::9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
    expect([clients.allows("fd00:1::9", "db1.ops.mesh.internal."), clients.allows("fd00:1::9", DB1)]).toEqual([true, false]);
    // Loopback and dns_clients are told every name as before.
    expect([clients.allows("127.0.0.1", DB1), clients.allows("100.64.7.1", "db1.ops.mesh.internal.")]).toEqual([true, true]);
  });

  test("each overlap is logged once, naming both networks: at start, when one arises, not again on a refresh", () => {
    const warnings: Array<{ msg: string; fields: unknown }> = [];
    const log = { warn: (msg: string, fields?: unknown) => warnings.push({ msg, fields }) };
    const networks = [PROD, DEV, OPS];
    const clients = new DnsClients("mesh.internal.", [], () => networks, log);
    const named = () => warnings.map((w) => (w.fields as { networks: Array<{ name: string }> }).networks.map((n) => n.name));
    expect(named()).toEqual([["prod", "ops"]]);
    expect(warnings[0]!.msg).toContain("renumber");
    expect(warnings[0]!.fields).toEqual({ networks: [{ name: "prod", organization: "org_a", ipv4: PROD.ipv4, ipv6: PROD.ipv6 }, { name: "ops", organization: "org_b", ipv4: OPS.ipv4, ipv6: OPS.ipv6 }] });
    clients.refresh();
    expect(named()).toEqual([["prod", "ops"]]);
    networks.push(TEST); // overlaps prod (another organization), and ops (its own: no warning)
    clients.refresh();
    expect(named()).toEqual([["prod", "ops"], ["prod", "test"]]);
    networks.splice(networks.indexOf(OPS), 1);
    clients.refresh();
    networks.push(OPS); // gone and back: said again
    clients.refresh();
    expect(named()).toEqual([["prod", "ops"], ["prod", "test"], ["prod", "ops"]]);
  });

  test("networks of one organization that overlap are not warned of", () => {
    const warnings: string[] = [];
    new DnsClients("mesh.internal.", [], () => [OPS, TEST], { warn: (msg) => warnings.push(msg) });
    expect(warnings).toEqual([]);
  });
});

test("0.0.0.0/0 tells every IPv4 client, ::/0 every IPv6 one (an IPv4 client on a dual-stack listener is IPv4)", () => {
  const v4 = new DnsClients("mesh.internal.", dnsClientPrefixes(["0.0.0.0/0"]), () => []);
  expect([v4.allows("203.0.113.7", DB1), v4.allows("::ffff:203.0.113.7", DB1), v4.allows("2001:db8::1", DB1)]).toEqual([true, true, false]);
  const v6 = new DnsClients("mesh.internal.", dnsClientPrefixes(["::/0"]), () => []);
  expect([v6.allows("203.0.113.7", DB1), v6.allows("::ffff:203.0.113.7", DB1), v6.allows("2001:db8::1", DB1)]).toEqual([false, false, true]);
});
