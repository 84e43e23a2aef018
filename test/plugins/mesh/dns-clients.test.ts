/** Who is told the mesh's node names: loopback, the networks' own prefixes (IPv4 and IPv6), and [mesh] dns_clients. */
import { expect, test } from "bun:test";
import { DnsClients } from "../../../plugins/mesh/dns-clients.ts";
import { dnsClientPrefixes } from "../../../plugins/mesh/settings.ts";

test("loopback and the addresses of every network are told; others only inside a configured prefix", () => {
  const networks = [{ ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" }];
  const clients = new DnsClients(dnsClientPrefixes(["10.0.0.0/8"]), () => networks);
  for (const told of ["127.0.0.1", "127.0.0.2", "::1", "100.64.3.4", "::ffff:100.64.3.4", "fd7a:115c:a1e0::5", "10.1.2.3", "::ffff:10.1.2.3"]) expect(clients.allows(told)).toBe(true);
  for (const refused of ["100.65.0.1", "fd7a:115c:a1e1::5", "203.0.113.7", "2001:db8::1", "not an address", "fe80::1%eth0"]) expect(clients.allows(refused)).toBe(false);
});

test("a network made later is told once refreshed", () => {
  const networks: Array<{ ipv4: string; ipv6: string }> = [];
  const clients = new DnsClients([], () => networks);
  expect(clients.allows("100.64.0.9")).toBe(false);
  networks.push({ ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" });
  clients.refresh();
  expect(clients.allows("100.64.0.9")).toBe(true);
});

test("0.0.0.0/0 tells every IPv4 client, ::/0 every IPv6 one (an IPv4 client on a dual-stack listener is IPv4)", () => {
  const v4 = new DnsClients(dnsClientPrefixes(["0.0.0.0/0"]), () => []);
  expect([v4.allows("203.0.113.7"), v4.allows("::ffff:203.0.113.7"), v4.allows("2001:db8::1")]).toEqual([true, true, false]);
  const v6 = new DnsClients(dnsClientPrefixes(["::/0"]), () => []);
  expect([v6.allows("203.0.113.7"), v6.allows("::ffff:203.0.113.7"), v6.allows("2001:db8::1")]).toEqual([false, false, true]);
});
