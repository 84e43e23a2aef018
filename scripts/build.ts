/**
 * Builds dist/citadel: one self-contained executable (bun build --compile), minified (syntax and whitespace) and
 * with bytecode for fast start-up, with the version, commit and build time baked in — and its
 * software bill of materials (scripts/sbom.ts), written to dist/sbom.cdx.json and baked in
 * too, so `citadel sovereignty sbom` prints what this very binary was built from.
 */
import { mkdirSync, renameSync } from "node:fs";
import { $ } from "bun";
import pkg from "../package.json" with { type: "json" };
import { sbomText } from "../plugins/ops/sbom.ts";
import { buildSbom } from "./sbom.ts";

const root = new URL("..", import.meta.url).pathname;
const commit = (await $`git rev-parse --short=12 HEAD`.cwd(root).nothrow().quiet().text()).trim() || "unknown";
const dirty = (await $`git status --porcelain`.cwd(root).nothrow().quiet().text()).trim() !== "";
const buildTime = new Date().toISOString();
const outfile = `${root}dist/citadel`;
const sbomFile = `${root}dist/sbom.cdx.json`;
// Written beside it, then renamed over it: a test file running the old binary (or a build another
// test worker started at the same moment, under `bun test --parallel`) never sees half a file.
const partial = `${outfile}.${process.pid}.partial`;

const started = performance.now();
const sbom = await buildSbom({ timestamp: buildTime, commit: dirty ? `${commit}-dirty` : commit });
mkdirSync(`${root}dist`, { recursive: true });
await Bun.write(sbomFile, sbomText(sbom));
// Baked in as one command-line argument, which Linux caps at 128 KiB.
const sbomJson = JSON.stringify(sbom);
if (sbomJson.length > 120_000) throw new Error(`the SBOM is ${sbomJson.length} bytes, too large for --define: embed it another way (Bun.build's define)`);

// Not --minify (nor --minify-identifiers): with renamed identifiers Elysia's validator let
// out-of-range integers in query strings through as strings (?limit=-1 was no limit at all),
// while the source, and so every in-process test, refused them (test/e2e/binary.test.ts).
await $`bun build ${root}src/main.ts --compile --minify-syntax --minify-whitespace --bytecode --format=esm --sourcemap=none \
  --define CITADEL_COMMIT=${JSON.stringify(dirty ? `${commit}-dirty` : commit)} \
  --define CITADEL_BUILD_TIME=${JSON.stringify(buildTime)} \
  --define CITADEL_SBOM=${JSON.stringify(sbomJson)} \
  --outfile ${partial}`.cwd(root).quiet();
renameSync(partial, outfile);
const size = Bun.file(outfile).size;
const required = sbom.components.filter((c) => c.scope === "required").length;
console.log(`built ${outfile}: citadel ${pkg.version} (${commit}${dirty ? ", dirty tree" : ""}), ${(size / 1e6).toFixed(1)} MB in ${Math.round(performance.now() - started)} ms`);
console.log(`wrote ${sbomFile}: CycloneDX 1.5, ${required} components in the binary, ${sbom.components.length - required} build and test only`);
