/**
 * Makes Citadel's software bill of materials (CycloneDX 1.5 JSON) from bun.lock, node_modules
 * and the bundler's module graph: `bun scripts/sbom.ts [--out FILE]` prints it or writes it.
 * scripts/build.ts calls `buildSbom` to write dist/sbom.cdx.json and bake the same document
 * into the binary. The generator is plugins/ops/sbom.ts, which also makes it at run time when
 * Citadel runs from source.
 */
import { bundledFiles, generateSbom, sbomText, type CycloneDxBom } from "../plugins/ops/sbom.ts";

const root = new URL("..", import.meta.url).pathname;

/** The SBOM of this checkout as the build makes it: with the hash of the Bun compiled in, the build's time and commit. */
export async function buildSbom(options: { timestamp: string; commit: string }): Promise<CycloneDxBom> {
  return generateSbom({
    root,
    bundledFiles: await bundledFiles(root),
    timestamp: options.timestamp,
    commit: options.commit,
    made: "build",
    bun: { version: Bun.version, revision: Bun.revision, executable: process.execPath },
  });
}

if (import.meta.main) {
  const at = process.argv.indexOf("--out");
  const out = at > 0 ? process.argv[at + 1] : undefined;
  if (at > 0 && !out) throw new Error("--out needs a file name");
  const { $ } = await import("bun");
  const commit = (await $`git rev-parse --short=12 HEAD`.cwd(root).nothrow().quiet().text()).trim() || "unknown";
  const text = sbomText(await buildSbom({ timestamp: new Date().toISOString(), commit }));
  if (out) await Bun.write(out, text);
  else process.stdout.write(text);
}
