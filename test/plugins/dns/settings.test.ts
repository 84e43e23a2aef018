/** [dns] addresses are host:port as the listeners read them: a typo stops start-up (a config error), not DNS. */
import { expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { DnsSettings } from "../../../plugins/dns/settings.ts";

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
