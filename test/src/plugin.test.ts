import { expect, test } from "bun:test";
import { checkPlugins, definePlugin, type Plugin } from "../../src/plugin.ts";
import { plugins } from "../../src/main.ts";

const base = { scopes: [], actions: [], migrations: [] };

test("the binary's plugin list is wired correctly", () => {
  expect(() => checkPlugins(plugins)).not.toThrow();
});

test("wiring mistakes stop start-up with a clear message", () => {
  const cases: Array<[Plugin[], RegExp]> = [
    [[definePlugin({ name: "DNS", ...base })], /plugin name "DNS"/],
    [[definePlugin({ name: "dns", ...base }), definePlugin({ name: "dns", ...base })], /two plugins are named dns/],
    [[definePlugin({ name: "dns", ...base, scopes: ["secrets:read"] })], /scope secrets:read must start with "dns:"/],
    [[definePlugin({ name: "dns", ...base, actions: [{ type: "zone.create", description: "" }] })], /action zone.create must start with "dns."/],
    [[definePlugin({ name: "dns", ...base, commands: [{ words: ["serve"], summary: "", run: async () => 0 }] })], /the command "serve" exists already/],
  ];
  for (const [list, message] of cases) expect(() => checkPlugins(list, [{ words: ["serve"], summary: "", run: async () => 0 }])).toThrow(message);
});
