/** The [mesh] settings as start-up reads them: the domain goes into every wg-quick config, so only a domain name passes; dns_clients must be prefixes. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

const domainOf = (domain: string) => (loadConfig({ schema: configSchema, env: { CITADEL_MESH_DOMAIN: domain }, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.mesh as { domain: string }).domain;

test("a domain name (or nothing) passes; a line break, which would add a wg-quick directive such as PostUp, does not", () => {
  for (const good of ["mesh.internal.", "example.org", "a-b.c0.example.", ""]) expect(domainOf(good)).toBe(good);
  for (const bad of ["mesh.internal\nPostUp = touch /tmp/owned", "under_score.example.", "-lead.example.", "spa ce.example."]) {
    expect(() => domainOf(bad)).toThrow(/^mesh\.domain: must be a domain name of letters, digits and hyphens, such as "mesh\.internal\." \(or "" for no names\)/);
  }
});

test("dns_clients: prefixes pass (0.0.0.0/0 and ::/0 too); a bad one stops start-up naming the key and the text", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-mesh-settings-"));
  try {
    const load = (clients: string[]) => {
      writeFileSync(join(dir, "citadel.toml"), `[mesh]\ndns_clients = ${JSON.stringify(clients)}\n`);
      return (loadConfig({ schema: configSchema, env: {}, cwd: dir, configFlag: join(dir, "citadel.toml"), dataFlag: join(dir, "data") }).config.mesh as { dns_clients: string[] }).dns_clients;
    };
    expect(load(["10.0.0.0/8", "fd00::/8", "0.0.0.0/0", "::/0"])).toEqual(["10.0.0.0/8", "fd00::/8", "0.0.0.0/0", "::/0"]);
    expect(() => load(["10.0.0.0/33"])).toThrow('mesh.dns_clients: "10.0.0.0/33" is not an address prefix, such as "10.0.0.0/8" or "fd00::/8"');
    expect(() => load(["mesh"])).toThrow('mesh.dns_clients: "mesh" is not an address prefix');
    expect(() => load(["10.0.0.1/8"])).toThrow('mesh.dns_clients: "10.0.0.1/8" has host bits set (is it the network\'s address?)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("router_offline_after_seconds: at least twice poll_seconds, else start-up stops naming both keys (a router would be offline between two polls)", () => {
  const load = (env: Record<string, string>) => loadConfig({ schema: configSchema, env, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.mesh as { router_offline_after_seconds: number; poll_seconds: number };
  expect(load({})).toMatchObject({ router_offline_after_seconds: 90, poll_seconds: 30 });
  expect(load({ CITADEL_MESH_POLL_SECONDS: "1", CITADEL_MESH_ROUTER_OFFLINE_AFTER_SECONDS: "2" }).router_offline_after_seconds).toBe(2);
  expect(() => load({ CITADEL_MESH_POLL_SECONDS: "60" })).toThrow("mesh.router_offline_after_seconds: 90 is less than twice mesh.poll_seconds (60): a router would be offline between two of its polls; give at least 120");
});
