/** Peers' endpoint names resolved by the agent, not by wg (found in review: one bad name failed every peer's `wg syncconf`). */
import { expect, test } from "bun:test";
import { parseSetconf } from "../../../plugins/mesh/device.ts";
import { resolveEndpoints, type LookupHost } from "../../../plugins/mesh/endpoints.ts";
import { networkOf } from "../../../src/net/ip.ts";

const KEYS = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAM=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQ=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAU=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAY="];
const setconf = (endpoints: string[]) => parseSetconf(["[Interface]", ...endpoints.flatMap((endpoint, i) => ["[Peer]", `PublicKey = ${KEYS[i]}`, `Endpoint = ${endpoint}`])].join("\n"));
const failure = (code: string) => Object.assign(new Error(`getaddrinfo ${code}`), { code });

const names: Record<string, string[] | Error> = {
  "v4.example": ["198.51.100.2", "2001:db8::2"],
  "v6.example": ["2001:DB8:0:0::6", "198.51.100.6"],
  "gone.example": failure("ENOTFOUND"),
  "flaky.example": failure("EAI_AGAIN"),
  "zoned.example": ["fe80::1%eth0"],
};
const lookup: LookupHost = async (host) => {
  const answer = names[host];
  if (answer instanceof Error) throw answer;
  if (!answer) throw failure("ENOTFOUND");
  return answer;
};

test("a name becomes its first address with the port (IPv6 in brackets); one that does not resolve leaves its peer without an endpoint", async () => {
  const { setconf: resolved, unresolved } = await resolveEndpoints(setconf(["v4.example:51820", "v6.example:51821", "gone.example:51822", "203.0.113.9:51823", "[2001:db8::9]:51824"]), lookup);
  expect(resolved.peers.map((p) => p.endpoint)).toEqual(["198.51.100.2:51820", "[2001:db8::6]:51821", null, "203.0.113.9:51823", "[2001:db8::9]:51824"]);
  expect(unresolved).toEqual([{ publicKey: KEYS[2]!, endpoint: "gone.example:51822", reason: "ENOTFOUND" }]);
});

test("a temporary failure, an address wg could not use, and a resolver that does not answer in time: no endpoint, and why", async () => {
  const silent: LookupHost = (host) => (host === "slow.example" ? new Promise<string[]>(() => {}) : lookup(host));
  const { setconf: resolved, unresolved } = await resolveEndpoints(setconf(["flaky.example:1", "zoned.example:2", "slow.example:3"]), silent, 50);
  expect(resolved.peers.map((p) => p.endpoint)).toEqual([null, null, null]);
  expect(unresolved.map((u) => u.reason)).toEqual(["EAI_AGAIN", "no address", "no answer within 0.05 s"]);
});

test("each name is asked once, however many peers share it; nothing is asked without names", async () => {
  const asked: string[] = [];
  const counting: LookupHost = (host) => (asked.push(host), lookup(host));
  await resolveEndpoints(setconf(["v4.example:1", "v4.example:2", "198.51.100.7:3"]), counting);
  expect(asked).toEqual(["v4.example"]);
  const input = setconf(["198.51.100.7:3"]);
  expect((await resolveEndpoints(input, counting)).setconf).toEqual(input);
  expect(asked).toEqual(["v4.example"]);
});

test("a name resolving to an address the control plane refuses as an endpoint (loopback, link-local, unspecified, multicast, IPv4-mapped ones too) counts as unresolved (found in review)", async () => {
  const local: Record<string, string[]> = {
    "lo.example": ["127.0.0.1"],
    "lo6.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "link.example": ["169.254.1.1"],
    "any.example": ["0.0.0.0"],
    "multi.example": ["ff02::1"],
  };
  const { setconf: resolved, unresolved } = await resolveEndpoints(setconf(Object.keys(local).map((name) => `${name}:51820`)), async (host) => local[host]!);
  expect(resolved.peers.map((p) => p.endpoint)).toEqual([null, null, null, null, null, null]);
  expect(unresolved[0]!.reason).toBe("127.0.0.1: a loopback, link-local, multicast, broadcast or unspecified address");
  expect(unresolved).toHaveLength(6);
});

test("a name whose first address is unusable but another is usable gets the usable one (found in review)", async () => {
  const mixed: LookupHost = async (host) => (host === "mixed.example" ? ["fe80::5", "127.0.0.1", "198.51.100.7"] : lookup(host));
  const { setconf: resolved, unresolved } = await resolveEndpoints(setconf(["mixed.example:51820"]), mixed);
  expect([resolved.peers[0]!.endpoint, unresolved]).toEqual(["198.51.100.7:51820", []]);
});

test("a name resolving into the mesh's own prefixes counts as unresolved, saying so; another address of it outside may do (found in review: handshakes went into the tunnel)", async () => {
  const mesh = [networkOf("100.64.0.1/16")!, networkOf("fd7a:115c:a1e0::1/48")!];
  const inside: LookupHost = async (host) => ({ "in.example": ["100.64.0.9"], "in6.example": ["fd7a:115c:a1e0::9"], "both.example": ["100.64.0.9", "198.51.100.8"] })[host] ?? lookup(host);
  const { setconf: resolved, unresolved } = await resolveEndpoints(setconf(["in.example:51820", "in6.example:51820", "both.example:51820", "v4.example:51820"]), inside, undefined, mesh);
  expect(resolved.peers.map((p) => p.endpoint)).toEqual([null, null, "198.51.100.8:51820", "198.51.100.2:51820"]);
  expect(unresolved.map((u) => u.reason)).toEqual([
    "100.64.0.9: inside the mesh's own addresses (100.64.0.0/16, fd7a:115c:a1e0::/48), where its handshakes would go into the tunnel",
    "fd7a:115c:a1e0::9: inside the mesh's own addresses (100.64.0.0/16, fd7a:115c:a1e0::/48), where its handshakes would go into the tunnel",
  ]);
});
