/**
 * Who is told which of the mesh's node names: loopback and [mesh] dns_clients every name, a
 * network's active nodes' addresses (IPv4 and IPv6) that network's names and the domain itself,
 * nobody else any — not an address merely inside a network's prefix; an address of nodes of two
 * organizations' networks only the names of the one made first, each such sharing logged once.
 */
import { describe, expect, test } from "bun:test";
import { DnsClients, type ServedNode, type StoredNetwork } from "../../../plugins/mesh/dns-clients.ts";
import { dnsClientPrefixes } from "../../../plugins/mesh/settings.ts";

const PROD = { id: "net_prod", created_at: 1, name: "prod", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" };
const DEV = { id: "net_dev", created_at: 2, name: "dev", organization_id: "org_a", ipv4: "100.65.0.0/16", ipv6: "fd7a:115c:a1e1::/48" };
const DB1 = "db1.prod.mesh.internal.";

/** A node of `network` at host number `host` (addresses as the mesh gives them: the prefix plus the host). */
function node(network: StoredNetwork, host: number): ServedNode {
  const ipv4 = network.ipv4.replace(/\.0\/\d+$/, `.${host}`);
  return { network, ipv4, ipv6: network.ipv6.replace(/::\/\d+$/, `::${host.toString(16)}`) };
}

/** prod's node at .9 (100.64.0.9, fd7a:115c:a1e0::9), dev's at .9 (100.65.0.9, fd7a:115c:a1e1::9). */
const NODES = [node(PROD, 9), node(DEV, 9)];
test("loopback and a dns_clients prefix are told every name; others nothing, a network's nodes aside", () => {
  const clients = new DnsClients("mesh.internal.", dnsClientPrefixes(["10.0.0.0/8"]), () => NODES);
  for (const told of ["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "::ffff:10.1.2.3"]) {
    for (const name of [DB1, "web.dev.mesh.internal.", "mesh.internal.", "nothing.mesh.internal."]) expect({ told, name, allows: clients.allows(told, name) }).toEqual({ told, name, allows: true });
  }
  for (const refused of ["100.66.0.1", "fd7a:115c:a1e2::5", "203.0.113.7", "2001:db8::1", "not an address", "fe80::1%eth0"]) {
    for (const name of [DB1, "mesh.internal."]) expect(clients.allows(refused, name)).toBe(false);
  }
});

test("a node's address (IPv4, mapped, IPv6 in any form) is told its network's names and the domain itself, not another network's", () => {
  const clients = new DnsClients("mesh.internal.", [], () => NODES);
  for (const client of ["100.64.0.9", "::ffff:100.64.0.9", "fd7a:115c:a1e0::9", "FD7A:115C:A1E0:0:0:0:0:0009"]) {
    for (const name of [DB1, "prod.mesh.internal.", "nothing.prod.mesh.internal.", "a.b.prod.mesh.internal.", "mesh.internal."]) expect({ client, name, allows: clients.allows(client, name) }).toEqual({ client, name, allows: true });
    for (const name of ["web.dev.mesh.internal.", "dev.mesh.internal.", "other.mesh.internal.", "xprod.mesh.internal.", "prod.mesh.internal.x.mesh.internal."]) {
      expect({ client, name, allows: clients.allows(client, name) }).toEqual({ client, name, allows: false });
    }
  }
  expect(clients.allows("100.65.0.9", "web.dev.mesh.internal.")).toBe(true);
  expect(clients.allows("100.65.0.9", DB1)).toBe(false);
});

test("an address inside a network's prefix that is no node's (a host behind a subnet router, another organization's node) is told nothing (found in review)", () => {
  // Any organization admin may choose any prefix, over another's: the prefix alone was a claim to its names.
  const clients = new DnsClients("mesh.internal.", [], () => NODES);
  for (const client of ["100.64.3.4", "100.64.0.10", "::ffff:100.64.3.4", "fd7a:115c:a1e0::5", "fd7a:115c:a1e0:1::9"]) {
    for (const name of [DB1, "prod.mesh.internal.", "mesh.internal."]) expect({ client, name, allows: clients.allows(client, name) }).toEqual({ client, name, allows: false });
  }
});

test("a dot escaped inside a label does not part it from the network's name", () => {
  const clients = new DnsClients("mesh.internal.", [], () => NODES);
  // "dev\.prod" is one label below the domain, a sibling of the networks; "x\\" one label below prod.
  expect(clients.allows("100.65.0.9", "web.dev\\.prod.mesh.internal.")).toBe(false);
  expect(clients.allows("100.64.0.9", "a\\.prod.mesh.internal.")).toBe(false);
  expect(clients.allows("100.64.0.9", "x\\\\.prod.mesh.internal.")).toBe(true);
});

test("the domain is matched whatever the case it is configured in (names come lower-case)", () => {
  const clients = new DnsClients("Mesh.Example.ORG", [], () => [node(PROD, 9)]);
  expect(clients.allows("100.64.0.9", "db1.prod.mesh.example.org.")).toBe(true);
  expect(clients.allows("100.64.0.9", "mesh.example.org.")).toBe(true);
});

test("a node enrolled later is told its names once refreshed, and a node gone (removed, disabled, expired) no longer", () => {
  const nodes: ServedNode[] = [];
  const clients = new DnsClients("mesh.internal.", [], () => nodes);
  expect(clients.allows("100.64.0.9", DB1)).toBe(false);
  nodes.push(node(PROD, 9));
  clients.refresh();
  expect([clients.allows("100.64.0.9", DB1), clients.allows("fd7a:115c:a1e0::9", DB1)]).toEqual([true, true]);
  nodes.pop();
  clients.refresh();
  expect([clients.allows("100.64.0.9", DB1), clients.allows("fd7a:115c:a1e0::9", DB1)]).toEqual([false, false]);
});

test("a refresh that finds every address in the same network as before works nothing out again; an address moved, added or in another network does (found in review)", () => {
  let reads = 0;
  let nodes = NODES;
  const clients = new DnsClients("mesh.internal.", [], () => (reads++, nodes));
  nodes = [node(PROD, 9), node(DEV, 9)]; // read again after a change that moved nothing (a key rotation)
  expect([clients.refresh(), reads]).toEqual([false, 2]);
  nodes = [node(PROD, 9), node(DEV, 10)];
  expect(clients.refresh()).toBe(true);
  expect([clients.allows("100.65.0.10", "web.dev.mesh.internal."), clients.allows("100.65.0.9", "web.dev.mesh.internal.")]).toEqual([true, false]);
  nodes = [...nodes, node(PROD, 10)];
  expect(clients.refresh()).toBe(true);
  // The same addresses, a network now of another organization (what telling sharings apart reads) or of another name.
  nodes = [node(PROD, 9), node({ ...DEV, organization_id: "org_b" }, 10), node(PROD, 10)];
  expect(clients.refresh()).toBe(true);
  nodes = [node({ ...PROD, name: "ops" }, 9), nodes[1]!, node(PROD, 10)];
  expect(clients.refresh()).toBe(true);
  expect([clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")]).toEqual([false, true]);
  expect(clients.refresh()).toBe(false);
});

test("an address of nodes of two networks of one organization (overlapping) is told both", () => {
  const OPS = { id: "net_ops", created_at: 3, name: "ops", organization_id: "org_a", ipv4: "100.64.0.0/16", ipv6: "fd00:1::/48" };
  const clients = new DnsClients("mesh.internal.", [], () => [node(PROD, 9), node(OPS, 9)]);
  expect([clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")]).toEqual([true, true]);
  expect([clients.allows("fd7a:115c:a1e0::9", DB1), clients.allows("fd7a:115c:a1e0::9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
});

describe("networks of two organizations that overlap (each admin chooses prefixes freely)", () => {
  // Both organizations' networks in 100.64.0.0/16; their IPv6 prefixes differ.
  const OPS = { id: "net_ops", created_at: 3, name: "ops", organization_id: "org_b", ipv4: "100.64.0.0/16", ipv6: "fd00:1::/48" };
  const TEST = { id: "net_test", created_at: 4, name: "test", organization_id: "org_b", ipv4: "100.64.128.0/17", ipv6: "fd00:2::/48" };

  test("an address of nodes of both is told the names of the network made first, not the other's; an address only one's nodes have, that one's", () => {
    const clients = new DnsClients("mesh.internal.", dnsClientPrefixes(["100.64.7.0/24"]), () => [...NODES, node(OPS, 9), node(OPS, 10)]);
    for (const [name, allows] of [[DB1, true], ["mesh.internal.", true], ["db1.ops.mesh.internal.", false], ["web.dev.mesh.internal.", false]] as const) {
      expect({ name, allows: clients.allows("100.64.0.9", name) }).toEqual({ name, allows });
      expect({ name, allows: clients.allows("::ffff:100.64.0.9", name) }).toEqual({ name, allows });
    }
    // ops's node at .10 shares no address with prod's: it is ops's client, inside prod's prefix or not.
    expect([clients.allows("100.64.0.10", "db1.ops.mesh.internal."), clients.allows("100.64.0.10", DB1)]).toEqual([true, false]);
    expect([clients.allows("fd7a:115c:a1e0::9", DB1), clients.allows("fd7a:115c:a1e0::9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
    expect([clients.allows("fd00:1::9", "db1.ops.mesh.internal."), clients.allows("fd00:1::9", DB1)]).toEqual([true, false]);
    // Loopback and dns_clients are told every name as before.
    expect([clients.allows("127.0.0.1", DB1), clients.allows("100.64.7.1", "db1.ops.mesh.internal.")]).toEqual([true, true]);
  });

  test("the network made first keeps a shared address, whichever order the nodes are read in: by the time made, then by id (found in review)", () => {
    const newer = { ...OPS, created_at: PROD.created_at + 1 };
    const sameTime = { ...OPS, created_at: PROD.created_at };
    const older = { ...OPS, created_at: PROD.created_at - 1 };
    const told = (ops: StoredNetwork, order: 1 | -1) => {
      const clients = new DnsClients("mesh.internal.", [], () => [node(PROD, 9), node(ops, 9)].toSorted(() => order));
      return [clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")];
    };
    for (const order of [1, -1] as const) {
      expect(told(newer, order)).toEqual([true, false]);
      expect(told(sameTime, order)).toEqual([false, true]); // "net_ops" < "net_prod"
      expect(told(older, order)).toEqual([false, true]);
    }
    // Another network of the first one's organization at the address is told too; the other organization's not.
    const clients = new DnsClients("mesh.internal.", [], () => [node(PROD, 9), node({ ...PROD, id: "net_ops2", name: "ops2", created_at: 9, ipv6: "fd00:3::/48" }, 9), node(newer, 9)]);
    expect(["db1.prod", "db1.ops2", "db1.ops"].map((n) => clients.allows("100.64.0.9", `${n}.mesh.internal.`))).toEqual([true, true, false]);
  });

  test("overlapping prefixes alone are no ambiguity: nodes at different addresses are each told their own network's names", () => {
    const clients = new DnsClients("mesh.internal.", [], () => [node(PROD, 9), node(OPS, 10)]);
    expect([clients.allows("100.64.0.9", DB1), clients.allows("100.64.0.9", "db1.ops.mesh.internal.")]).toEqual([true, false]);
    expect([clients.allows("100.64.0.10", DB1), clients.allows("100.64.0.10", "db1.ops.mesh.internal.")]).toEqual([false, true]);
  });

  test("each sharing of addresses is logged once, naming both networks and the addresses: at start, when one arises, not again on a refresh", () => {
    const warnings: Array<{ msg: string; fields: unknown }> = [];
    const log = { warn: (msg: string, fields?: unknown) => warnings.push({ msg, fields }) };
    const nodes = [...NODES, node(OPS, 9), node(OPS, 200)];
    const clients = new DnsClients("mesh.internal.", [], () => nodes, log);
    const named = () => warnings.map((w) => (w.fields as { networks: Array<{ name: string }> }).networks.map((n) => n.name));
    expect(named()).toEqual([["ops", "prod"]]);
    expect(warnings[0]!.msg).toContain("renumber");
    expect(warnings[0]!.fields).toEqual({ networks: [{ name: "ops", organization: "org_b", ipv4: OPS.ipv4, ipv6: OPS.ipv6 }, { name: "prod", organization: "org_a", ipv4: PROD.ipv4, ipv6: PROD.ipv6 }], addresses: ["100.64.0.9"], shared: 1 });
    nodes.push(node(PROD, 200)); // another address shared by the same two networks: no new warning
    clients.refresh();
    expect(named()).toEqual([["ops", "prod"]]);
    const testNode = { ...node(TEST, 9), ipv4: "100.64.128.9" };
    nodes.push(testNode, { ...node(PROD, 9), ipv4: "100.64.128.9", ipv6: "fd7a:115c:a1e0::8009" }); // shares with prod (another organization)
    clients.refresh();
    expect(named()).toEqual([["ops", "prod"], ["prod", "test"]]);
    for (const gone of nodes.filter((n) => n.network === OPS)) nodes.splice(nodes.indexOf(gone), 1);
    clients.refresh();
    expect(clients.allows("100.64.0.9", DB1)).toBe(true); // no longer shared
    nodes.push(node(OPS, 9)); // gone and back: said again
    clients.refresh();
    expect(named()).toEqual([["ops", "prod"], ["prod", "test"], ["ops", "prod"]]);
  });

  test("a warning names ten of the shared addresses and says how many there are", () => {
    const warnings: unknown[] = [];
    const hosts = Array.from({ length: 12 }, (_, i) => i + 1);
    new DnsClients("mesh.internal.", [], () => [...hosts.map((h) => node(PROD, h)), ...hosts.map((h) => node(OPS, h))], { warn: (_msg, fields) => warnings.push(fields) });
    const [fields] = warnings as Array<{ addresses: string[]; shared: number }>;
    expect([warnings.length, fields!.addresses.length, fields!.shared]).toEqual([1, 10, 12]);
  });

  test("nodes of one organization's networks at one address are not warned of", () => {
    const warnings: string[] = [];
    new DnsClients("mesh.internal.", [], () => [node(OPS, 9), { ...node(TEST, 9), ipv4: "100.64.0.9" }], { warn: (msg) => warnings.push(msg) });
    expect(warnings).toEqual([]);
  });
});

test("0.0.0.0/0 tells every IPv4 client, ::/0 every IPv6 one (an IPv4 client on a dual-stack listener is IPv4)", () => {
  const v4 = new DnsClients("mesh.internal.", dnsClientPrefixes(["0.0.0.0/0"]), () => []);
  expect([v4.allows("203.0.113.7", DB1), v4.allows("::ffff:203.0.113.7", DB1), v4.allows("2001:db8::1", DB1)]).toEqual([true, true, false]);
  const v6 = new DnsClients("mesh.internal.", dnsClientPrefixes(["::/0"]), () => []);
  expect([v6.allows("203.0.113.7", DB1), v6.allows("::ffff:203.0.113.7", DB1), v6.allows("2001:db8::1", DB1)]).toEqual([false, false, true]);
});

test("a client's view (the serial it is told follows it): none for those told every name, its networks' ids and domains for a node's address in any form, \"\" for the rest; the views clients have", () => {
  const OPS = { id: "net_ops", created_at: 3, name: "ops", organization_id: "org_b", ipv4: "100.80.0.0/16", ipv6: "fd00:5::/48" };
  const clients = new DnsClients("mesh.internal.", dnsClientPrefixes(["10.0.0.0/8"]), () => [...NODES, node(OPS, 9)]);
  expect(["127.0.0.1", "::1", "10.1.2.3"].map((c) => clients.viewOf(c))).toEqual([null, null, null]);
  expect(["100.64.0.9", "::ffff:100.64.0.9", "FD7A:115C:A1E0:0:0:0:0:0009"].map((c) => clients.viewOf(c))).toEqual([0, 1, 2].map(() => ({ key: "net_prod", domains: ["prod.mesh.internal."] })));
  expect([clients.viewOf("100.65.0.9")?.key, clients.viewOf("100.80.0.9")?.key]).toEqual(["net_dev", "net_ops"]);
  expect(["100.64.0.200", "203.0.113.7", "not an address"].map((c) => clients.viewOf(c))).toEqual([0, 1, 2].map(() => ({ key: "", domains: [] })));
  expect([...clients.views()].sort()).toEqual(["", "net_dev", "net_ops", "net_prod"]);
  // Two networks of one organization at one address: one view of both.
  const shared = new DnsClients("mesh.internal.", [], () => [node(PROD, 9), { ...node(DEV, 9), ipv4: "100.64.0.9" }]);
  expect(shared.viewOf("100.64.0.9")?.key).toBe("net_dev net_prod");
  expect([...shared.viewOf("100.64.0.9")!.domains].sort()).toEqual(["dev.mesh.internal.", "prod.mesh.internal."]);
});
