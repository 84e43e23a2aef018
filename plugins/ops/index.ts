/**
 * The `ops` plugin: tools for the operator of this machine. `citadel doctor` checks the
 * installation and says how to fix what is wrong; `citadel sovereignty report` says what
 * Citadel is made of, whom it talks to, where its data lives and which keys protect it;
 * `citadel sovereignty sbom` prints the CycloneDX bill of materials baked in at build time.
 * No routes, no tables, no settings: it reads the config, the data directory and the database.
 */
import { definePlugin } from "../../src/plugin.ts";
import { opsCommands } from "./commands.ts";

export const opsPlugin = definePlugin({
  name: "ops",
  scopes: [],
  actions: [],
  migrations: [],
  commands: opsCommands,
});
