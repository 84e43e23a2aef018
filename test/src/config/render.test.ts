import { expect, test } from "bun:test";
import fc from "fast-check";
import { parse } from "smol-toml";
import { configDefaults, EXAMPLE_HEADER, renderConfigToml, tomlValue } from "../../../src/config/render.ts";
import { configSchema } from "../../../src/main.ts";

test("config/citadel.example.toml is the rendering of the schema (run `bun run config:example`)", async () => {
  const committed = await Bun.file(new URL("../../../config/citadel.example.toml", import.meta.url)).text();
  expect(committed).toBe(renderConfigToml(configSchema, { commented: true, header: EXAMPLE_HEADER }));
});

test("every key in the example is documented and names its environment variable", () => {
  const text = renderConfigToml(configSchema, { commented: true });
  const keys = text.split("\n").filter((l) => /^#\w+ = /.test(l));
  expect(keys.length).toBeGreaterThanOrEqual(9);
  const lines = text.split("\n");
  for (const key of keys) {
    const at = lines.indexOf(key);
    expect(lines[at - 1]).toStartWith("# Environment: CITADEL_");
    expect(lines[at - 2]).toMatch(/^# \S/);
  }
});

test("uncommented, the rendering parses back to exactly the defaults", () => {
  const text = renderConfigToml(configSchema, { commented: false });
  expect(parse(text) as unknown).toEqual(configDefaults(configSchema));
});

test("property: any string value survives render then parse", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), fc.array(fc.string({ unit: "grapheme-ascii" }), { maxLength: 4 }), (s, list) => {
      const text = `a = ${tomlValue(s, "a")}\nb = ${tomlValue(list, "b")}\n`;
      expect(parse(text)).toEqual({ a: s, b: list });
    }),
    { numRuns: 500 },
  );
});
