/**
 * Who is told which of the mesh's node names: loopback and [mesh] dns_clients every name, a
 * network's addresses (IPv4 and IPv6) that network's names and the domain itself, nobody else any.
 */
import { expect, test } from "bun:test";
import { DnsClients } from "../../../plugins/mesh/dns-clients.ts";
import { dnsClientPrefixes } from "../../../plugins/mesh/settings.ts";

const PROD = { name: "prod", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" };
const DEV = { name: "dev", ipv4: "100.65.0.0/16", ipv6: "fd7a:115c:a1e1::/48" };
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

test("a client inside two networks' prefixes (overlapping: another organization numbered its network alike) is told both", () => {
  const clients = new DnsClients("mesh.internal.", [], () => [PROD, { name: "ops", ipv4: "100.64.0.0/16", ipv6: "fd00:1::/48" }]);
  expect([clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")]).toEqual([true, true]);
  expect([clients.allows("fd7a:115c:a1e0::9", DB1), clients.allows("fd7a:115c:a1e0::9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
});

test("0.0.0.0/0 tells every IPv4 client, ::/0 every IPv6 one (an IPv4 client on a dual-stack listener is IPv4)", () => {
  const v4 = new DnsClients("mesh.internal.", dnsClientPrefixes(["0.0.0.0/0"]), () => []);
  expect([v4.allows("203.0.113.7", DB1), v4.allows("::ffff:203.0.113.7", DB1), v4.allows("2001:db8::1", DB1)]).toEqual([true, true, false]);
  const v6 = new DnsClients("mesh.internal.", dnsClientPrefixes(["::/0"]), () => []);
  expect([v6.allows("203.0.113.7", DB1), v6.allows("::ffff:203.0.113.7", DB1), v6.allows("2001:db8::1", DB1)]).toEqual([false, false, true]);
});
