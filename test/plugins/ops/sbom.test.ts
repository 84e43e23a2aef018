/**
 * The SBOM: a CycloneDX 1.5 document of this checkout whose components and versions are the
 * ones bun.lock resolved, with the licences node_modules ships, split by what the bundler
 * really compiles in. Made from source here; test/plugins/ops/binary.test.ts checks the one
 * baked into dist/citadel.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bundledFiles, embeddedSbom, generateSbom, licenceOf, npmPurl, sbomText, type CycloneDxBom } from "../../../plugins/ops/sbom.ts";

const ROOT = new URL("../../..", import.meta.url).pathname;
const lock = Bun.JSONC.parse(readFileSync(join(ROOT, "bun.lock"), "utf8")) as { packages: Record<string, [string, string, Record<string, unknown>, string]> };
/** bun.lock's resolved version and integrity of a top-level package. */
const locked = (name: string) => {
  const [spec, , , integrity] = lock.packages[name]!;
  return { version: spec.slice(spec.lastIndexOf("@") + 1), integrity };
};
const fullName = (c: CycloneDxBom["components"][number]) => (c.group ? `${c.group}/${c.name}` : c.name);

let bom: CycloneDxBom;
beforeAll(async () => {
  bom = generateSbom({ root: ROOT, bundledFiles: await bundledFiles(ROOT), timestamp: "2026-06-01T00:00:00.000Z", bun: { version: Bun.version, revision: Bun.revision }, commit: "test", made: "source" });
});

describe("the CycloneDX document", () => {
  test("has the shape CycloneDX 1.5 requires", () => {
    expect(bom.bomFormat).toBe("CycloneDX");
    expect(bom.specVersion).toBe("1.5");
    expect(bom.version).toBe(1);
    expect(bom.serialNumber).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(bom.metadata.timestamp).toBe("2026-06-01T00:00:00.000Z");
    expect(bom.metadata.component).toMatchObject({ type: "application", name: "citadel" });
    expect(bom.components.length).toBeGreaterThan(20);
    for (const c of bom.components) {
      expect(c.name.length).toBeGreaterThan(0);
      expect(c.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(c.purl).toMatch(/^pkg:(npm|github)\//);
      expect(c["bom-ref"]).toBe(c.purl!);
      expect(["required", "excluded"]).toContain(c.scope!);
      expect(c.licenses!.length).toBeGreaterThan(0);
      for (const l of c.licenses!) expect(l.license?.id ?? l.license?.name ?? l.expression).toBeTruthy();
      for (const h of c.hashes ?? []) expect(h.content).toMatch(h.alg === "SHA-512" ? /^[0-9a-f]{128}$/ : /^[0-9a-f]{64}$/);
    }
  });

  test("bom-refs are unique and every dependency names a component", () => {
    const refs = bom.components.map((c) => c["bom-ref"]);
    expect(new Set(refs).size).toBe(refs.length);
    const known = new Set([...refs, bom.metadata.component["bom-ref"]]);
    for (const d of bom.dependencies) {
      expect(known.has(d.ref)).toBe(true);
      for (const on of d.dependsOn) expect(known.has(on)).toBe(true);
    }
  });

  test("includes elysia and @node-rs/argon2 at the versions bun.lock resolved, with their tarballs' hashes", () => {
    for (const name of ["elysia", "@node-rs/argon2"]) {
      const { version, integrity } = locked(name);
      const c = bom.components.find((x) => fullName(x) === name)!;
      expect(c).toBeDefined();
      expect(c.version).toBe(version);
      expect(c.scope).toBe("required");
      expect(c.purl).toBe(npmPurl(name, version));
      expect(licenceOf(c)).toBe("MIT");
      expect(c.hashes).toEqual([{ alg: "SHA-512", content: Buffer.from(integrity.replace(/^sha512-/, ""), "base64").toString("hex") }]);
    }
    expect(npmPurl("@node-rs/argon2", "2.2.1")).toBe("pkg:npm/%40node-rs/argon2@2.2.1");
  });

  test("every package of package.json's dependencies is in the binary; the Bun runtime is a component", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const required = new Set(bom.components.filter((c) => c.scope === "required").map(fullName));
    for (const name of Object.keys(pkg.dependencies)) expect([name, required.has(name)]).toEqual([name, true]);
    const bun = bom.components.find((c) => c.name === "bun")!;
    expect(bun).toMatchObject({ type: "platform", version: Bun.version, scope: "required", purl: `pkg:github/oven-sh/bun@bun-v${Bun.version}` });
    expect(bom.dependencies.find((d) => d.ref === bom.metadata.component["bom-ref"])!.dependsOn).toContain(bun.purl!);
  });

  test("data vendored into the source is a component with its licence: the common-password list (@zxcvbn-ts/language-common)", () => {
    const list = bom.components.find((c) => c.type === "data" && c.name === "language-common")!;
    expect(list).toMatchObject({ group: "@zxcvbn-ts", version: "4.1.3", scope: "required", licenses: [{ license: { id: "MIT" } }] });
    expect(readFileSync(join(ROOT, "src/auth/common-passwords.txt"), "utf8")).toContain("@zxcvbn-ts/language-common 4.1.3");
    expect(bom.dependencies.find((d) => d.ref === bom.metadata.component["bom-ref"])!.dependsOn).toContain(list["bom-ref"]);
  });

  test("the embedded country database lists both its licences: the package's CC0-1.0 and its data's CC BY 4.0 (NRO), noted as intel status says (found in review)", () => {
    const geo = bom.components.find((c) => fullName(c) === "@ip-location-db/geo-whois-asn-country-mmdb")!;
    expect(geo.scope).toBe("required");
    expect(geo.licenses).toEqual([{ license: { id: "CC0-1.0" } }, { license: { id: "CC-BY-4.0" } }]);
    expect(licenceOf(geo)).toBe("CC0-1.0 AND CC-BY-4.0");
    expect(geo.properties).toEqual([{ name: "citadel:licence-note", value: "CC0-1.0 (package); data CC BY 4.0 NRO (attribution: nro.net)" }]);
  });

  test("what only builds or tests the binary is excluded: the bundler decides, not the declared peers", () => {
    const scope = (name: string) => bom.components.find((c) => fullName(c) === name)?.scope;
    expect(scope("typescript")).toBe("excluded"); // a peer of @elysiajs/openapi, never imported at run time
    expect(scope("fast-check")).toBe("excluded");
    expect(scope("@types/bun")).toBe("excluded");
    expect(scope("tslib")).toBe("required");
  });

  test("only this platform's native addon is listed (the lock names every platform's)", () => {
    const addons = bom.components.filter((c) => fullName(c).startsWith("@node-rs/argon2-"));
    expect(addons.length).toBeGreaterThanOrEqual(1);
    expect(addons.length).toBeLessThan(Object.keys(lock.packages).filter((k) => k.startsWith("@node-rs/argon2-")).length);
    for (const a of addons) expect(a.name).toContain(process.platform === "darwin" ? "darwin" : process.platform);
  });
});

test("from source, the running SBOM is made from the checkout and says so", async () => {
  const running = await embeddedSbom({ commit: "dev", now: Date.UTC(2026, 5, 1) });
  expect(running.metadata.properties).toContainEqual({ name: "citadel:sbom-made", value: "from the source checkout at run time" });
  expect(running.components.map((c) => c.purl)).toEqual(bom.components.map((c) => c.purl));
  expect(JSON.parse(sbomText(running))).toEqual(running);
});
