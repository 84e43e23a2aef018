/** [dns] addresses are host:port as the listeners read them: a typo stops start-up (a config error), not DNS. */
import { expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { DnsSettings, udpWithoutTcp } from "../../../plugins/dns/settings.ts";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

test("listener addresses: host:port with IPv6 in brackets and a port up to 65535; anything else refused (found in review: DNS started off)", () => {
  const ok = (list: string[]) => Value.Check(DnsSettings.properties.udp, list) && Value.Check(DnsSettings.properties.resolver_tcp, list);
  expect(ok(["127.0.0.1:5353", "[::1]:53", "0.0.0.0:0", "[fd00::1]:65535", "localhost:53"])).toBe(true);
  for (const bad of ["127.0.0.1:abc", "127.0.0.1", "::1:53", "127.0.0.1:65536", "127.0.0.1:5353 ", "[::1]", ":53", "127.0.0.1 :5353", "my host:53"]) expect([bad, ok([bad])]).toEqual([bad, false]);
});

test("upstreams: an IP address and a port 1–65535, never a name (found in review: a name or port 0 passed, then the resolver stayed off)", () => {
  const ok = (list: string[]) => Value.Check(DnsSettings.properties.resolver_upstreams, list);
  expect(ok(["9.9.9.9:53", "[2620:fe::fe]:53", "127.0.0.1:5300"])).toBe(true);
  for (const bad of ["dns.quad9.net:53", "9.9.9.9:0", "9.9.9.9:00", "9.9.9.9", "localhost:53"]) expect([bad, ok([bad])]).toEqual([bad, false]);
});

const load = (env: Record<string, string>) => () => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" });

test("resolver_clients and the sinkhole addresses are checked when the config is loaded, naming the key (found in review: the resolver stayed off)", () => {
  expect(load({ CITADEL_DNS_RESOLVER_CLIENTS: "100.64.0.0/10,fd7a:115c:a1e0::/48,192.0.2.7", CITADEL_DNS_RESOLVER_SINKHOLE_IPV4: "192.0.2.1", CITADEL_DNS_RESOLVER_SINKHOLE_IPV6: "2001:db8::1" })).not.toThrow();
  expect(load({ CITADEL_DNS_RESOLVER_CLIENTS: "100.64.0.0/33" })).toThrow(new ConfigError('dns.resolver_clients: "100.64.0.0/33" is not an address prefix, such as "100.64.0.0/10" or "fd7a:115c:a1e0::/48"'));
  expect(load({ CITADEL_DNS_RESOLVER_CLIENTS: "mesh" })).toThrow("dns.resolver_clients: \"mesh\" is not an address prefix");
  expect(load({ CITADEL_DNS_RESOLVER_CLIENTS: "100.64.0.1/10" })).toThrow("dns.resolver_clients: \"100.64.0.1/10\" has host bits set");
  expect(load({ CITADEL_DNS_RESOLVER_SINKHOLE_IPV4: "::1" })).toThrow(new ConfigError('dns.resolver_sinkhole_ipv4: "::1" is not an IPv4 address'));
  expect(load({ CITADEL_DNS_RESOLVER_SINKHOLE_IPV6: "0.0.0.0" })).toThrow(new ConfigError('dns.resolver_sinkhole_ipv6: "0.0.0.0" is not an IPv6 address'));
});

test("upstreams are checked as IP addresses when the config is loaded, naming the key (found in review: 999.1.1.1:53 passed, and the resolver stayed off)", () => {
  expect(load({ CITADEL_DNS_RESOLVER_UPSTREAMS: "9.9.9.9:53,[2620:fe::fe]:53,[::ffff:192.0.2.1]:53" })).not.toThrow();
  expect(load({ CITADEL_DNS_RESOLVER_UPSTREAMS: "9.9.9.9:53,999.1.1.1:53" })).toThrow(new ConfigError('dns.resolver_upstreams: "999.1.1.1:53" is not an IP address and port, such as "9.9.9.9:53" or "[2620:fe::fe]:53"'));
  for (const bad of ["[2620:fe::fe::1]:53", "[12345::1]:53", "1.2.3.256:53"]) expect(load({ CITADEL_DNS_RESOLVER_UPSTREAMS: bad })).toThrow(`dns.resolver_upstreams: "${bad}" is not an IP address and port`);
});

test("an upstream that is the resolver itself is refused, naming the key (found in review: it would forward to itself)", () => {
  const refused = (udp: string, tcp: string, upstream: string) =>
    load({ ...(udp ? { CITADEL_DNS_RESOLVER_UDP: udp } : {}), ...(tcp ? { CITADEL_DNS_RESOLVER_TCP: tcp } : {}), CITADEL_DNS_RESOLVER_UPSTREAMS: upstream });
  expect(refused("127.0.0.1:53", "", "127.0.0.1:53")).toThrow(new ConfigError('dns.resolver_upstreams: "127.0.0.1:53" is the resolver\'s own address (dns.resolver_udp): it would forward to itself'));
  expect(refused("", "[::1]:53", "[0:0::1]:53")).toThrow('dns.resolver_upstreams: "[0:0::1]:53" is the resolver\'s own address (dns.resolver_tcp)');
  expect(refused("0.0.0.0:53", "", "127.0.0.1:53")).toThrow("is the resolver's own address (dns.resolver_udp)");
  expect(refused("[::]:53", "", "127.0.0.1:53")).toThrow("is the resolver's own address (dns.resolver_udp)");
  for (const [udp, upstream] of [["127.0.0.1:53", "127.0.0.1:5353"], ["127.0.0.1:53", "9.9.9.9:53"], ["0.0.0.0:53", "9.9.9.9:53"], ["localhost:53", "9.9.9.9:53"]]) {
    expect(refused(udp!, "", upstream!)).not.toThrow();
  }
});

test("udpWithoutTcp: the resolver's UDP addresses with no TCP listener there, where large answers cannot reach their clients (found in review)", () => {
  expect(udpWithoutTcp(["127.0.0.1:53", "100.64.0.1:53"], ["127.0.0.1:53"])).toEqual(["100.64.0.1:53"]);
  expect(udpWithoutTcp(["127.0.0.1:53", "100.64.0.1:53"], ["127.0.0.1:53", "100.64.0.1:53"])).toEqual([]);
  expect(udpWithoutTcp(["100.64.0.1:53", "[fd7a::1]:53"], ["0.0.0.0:53"])).toEqual(["[fd7a::1]:53"]); // 0.0.0.0 takes IPv4 only
  expect(udpWithoutTcp(["100.64.0.1:53", "[fd7a::1]:53"], ["[::]:53"])).toEqual([]);
  expect(udpWithoutTcp(["100.64.0.1:53"], ["100.64.0.1:5353", "0.0.0.0:5353"])).toEqual(["100.64.0.1:53"]);
  expect(udpWithoutTcp(["[::ffff:100.64.0.1]:53", "[0::1]:53", "LocalHost:53"], ["100.64.0.1:53", "[::1]:53", "localhost:53"])).toEqual([]);
});

test("dnssec_parent_delay is at least an hour: it covers the parent's DS TTL, which resolvers may hold after the parent's change (found in review: 0 removed the old key at once)", () => {
  expect(Value.Check(DnsSettings.properties.dnssec_parent_delay, 3600)).toBe(true);
  for (const bad of [0, 60, 3599]) expect([bad, Value.Check(DnsSettings.properties.dnssec_parent_delay, bad)]).toEqual([bad, false]);
  expect(load({ CITADEL_DNS_DNSSEC_PARENT_DELAY: "0" })).toThrow("dns.dnssec_parent_delay");
});
