/**
 * Builds dist/citadel: one self-contained executable (bun build --compile), minified and
 * with bytecode for fast start-up, with the version, commit and build time baked in.
 */
import { $ } from "bun";
import pkg from "../package.json" with { type: "json" };

const root = new URL("..", import.meta.url).pathname;
const commit = (await $`git rev-parse --short=12 HEAD`.cwd(root).nothrow().quiet().text()).trim() || "unknown";
const dirty = (await $`git status --porcelain`.cwd(root).nothrow().quiet().text()).trim() !== "";
const buildTime = new Date().toISOString();
const outfile = `${root}dist/citadel`;

const started = performance.now();
await $`bun build ${root}src/main.ts --compile --minify --bytecode --format=esm --sourcemap=none \
  --define CITADEL_COMMIT=${JSON.stringify(dirty ? `${commit}-dirty` : commit)} \
  --define CITADEL_BUILD_TIME=${JSON.stringify(buildTime)} \
  --outfile ${outfile}`.cwd(root).quiet();
const size = Bun.file(outfile).size;
console.log(`built ${outfile}: citadel ${pkg.version} (${commit}${dirty ? ", dirty tree" : ""}), ${(size / 1e6).toFixed(1)} MB in ${Math.round(performance.now() - started)} ms`);
