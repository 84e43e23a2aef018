/** Writes config/citadel.example.toml from the config schema (a test keeps it in sync). */
import { configSchema } from "../src/main.ts";
import { EXAMPLE_HEADER, renderConfigToml } from "../src/config/render.ts";

const path = new URL("../config/citadel.example.toml", import.meta.url);
await Bun.write(path, renderConfigToml(configSchema, { commented: true, header: EXAMPLE_HEADER }));
console.log(`wrote ${path.pathname}`);
