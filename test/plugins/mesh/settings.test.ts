/** The [mesh] settings as start-up reads them: the domain goes into every wg-quick config, so only a domain name passes. */
import { expect, test } from "bun:test";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

const domainOf = (domain: string) => (loadConfig({ schema: configSchema, env: { CITADEL_MESH_DOMAIN: domain }, cwd: "/nonexistent", dataFlag: "/nonexistent/data" }).config.mesh as { domain: string }).domain;

test("a domain name (or nothing) passes; a line break, which would add a wg-quick directive such as PostUp, does not", () => {
  for (const good of ["mesh.internal.", "example.org", "a-b.c0.example.", ""]) expect(domainOf(good)).toBe(good);
  for (const bad of ["mesh.internal\nPostUp = touch /tmp/owned", "under_score.example.", "-lead.example.", "spa ce.example."]) {
    expect(() => domainOf(bad)).toThrow(/^mesh\.domain: must be a domain name of letters, digits and hyphens, such as "mesh\.internal\." \(or "" for no names\)/);
  }
});
