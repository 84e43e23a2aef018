/**
 * The software bill of materials: CycloneDX 1.5 JSON, made from bun.lock (what was resolved,
 * with each tarball's SHA-512) and node_modules/<name>/package.json (the licence actually
 * shipped), plus the Bun runtime that `bun build --compile` puts into the binary.
 *
 * scripts/build.ts makes it at build time, writes dist/sbom.cdx.json and bakes the same text
 * into the binary (--define CITADEL_SBOM). Run from source there is nothing baked in, so
 * `embeddedSbom()` makes it from the checkout instead: the same function, the same answer.
 *
 * What is in it: every package bun install put in node_modules (so this platform's native
 * argon2 addon, not the twelve others the lock names). Those the bundler compiles into the
 * binary — its module graph, not a guess from declared dependencies, which would count
 * TypeScript (a peer of @elysiajs/openapi) and type-only packages — are scope "required";
 * the rest build, type-check or test it and are "excluded".
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EMBEDDED_COUNTRY_DB } from "../../src/intel/geo-embedded.ts";

declare const CITADEL_SBOM: string | undefined;

export interface CycloneDxLicense {
  license?: { id?: string; name?: string };
  expression?: string;
}

export interface CycloneDxComponent {
  type: "library" | "platform" | "application" | "data";
  "bom-ref": string;
  name: string;
  group?: string;
  version: string;
  scope?: "required" | "optional" | "excluded";
  purl?: string;
  licenses?: CycloneDxLicense[];
  hashes?: Array<{ alg: "SHA-256" | "SHA-512"; content: string }>;
  description?: string;
  externalReferences?: Array<{ type: string; url: string }>;
  properties?: Array<{ name: string; value: string }>;
}

export interface CycloneDxBom {
  bomFormat: "CycloneDX";
  specVersion: "1.5";
  serialNumber: string;
  version: number;
  metadata: {
    timestamp: string;
    tools: { components: Array<{ type: "application"; name: string; version: string }> };
    component: CycloneDxComponent;
    properties: Array<{ name: string; value: string }>;
  };
  components: CycloneDxComponent[];
  dependencies: Array<{ ref: string; dependsOn: string[] }>;
}

export interface SbomInputs {
  /** The checkout: bun.lock, package.json and node_modules/ are read from here. */
  root: string;
  /** What the bundler compiles in (`bundledFiles`): its packages are "required", the rest "excluded". */
  bundledFiles: readonly string[];
  /** When the SBOM was made (ISO 8601): the build time in a build. */
  timestamp: string;
  /** The Bun that runs the build (and so is compiled into the binary). */
  bun: { version: string; revision: string; executable?: string };
  commit: string;
  /** "build" (baked into dist/citadel) or "source" (made from the checkout at run time). */
  made: "build" | "source";
}

/**
 * SPDX identifiers written as `license.id`; anything else goes in as a name, since CycloneDX
 * validators refuse an `id` that is not on the SPDX list.
 */
const SPDX_IDS = new Set([
  "0BSD", "Apache-2.0", "Artistic-2.0", "BlueOak-1.0.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause", "BSL-1.0", "CC-BY-3.0", "CC-BY-4.0",
  "CC0-1.0", "EPL-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "ISC", "LGPL-2.1-only", "LGPL-2.1-or-later",
  "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0", "MPL-2.0", "Python-2.0", "Unlicense", "WTFPL", "Zlib",
]);

/**
 * Licences a package does not declare, by package name. The embedded country database's package
 * says CC0-1.0, but the WHOIS and ASN data it is built from is the NRO's, under CC BY 4.0 with
 * credit to nro.net (docs/intel.md): both are listed, and a note says so in the words of
 * `citadel intel status` and the sovereignty report.
 */
const UNDECLARED_LICENCES: Record<string, { licenses: CycloneDxLicense[]; note: string }> = {
  "@ip-location-db/geo-whois-asn-country-mmdb": { licenses: [{ license: { id: "CC-BY-4.0" } }], note: EMBEDDED_COUNTRY_DB.licence },
};

interface LockPackage {
  key: string;
  name: string;
  version: string;
  integrity: string | null;
  dependencies: string[];
  /** Optional dependencies and optional peers: included only when installed. */
  optional: string[];
}

/** Makes the CycloneDX document for the checkout at `inputs.root`. */
export function generateSbom(inputs: SbomInputs): CycloneDxBom {
  const pkg = JSON.parse(readFileSync(join(inputs.root, "package.json"), "utf8")) as { name: string; version: string; dependencies?: Record<string, string> };
  const lock = readLock(join(inputs.root, "bun.lock"));
  const bundled = bundledPackages(inputs.bundledFiles);
  // Every package bun install put on disk (another platform's native addon is not there).
  const installed = [...lock.keys()].filter((key) => bundled.has(key) || existsSync(join(installedPath(inputs.root, key), "package.json"))).sort();
  const present = new Set(installed);
  const refOf = (key: string) => npmPurl(lock.get(key)!.name, lock.get(key)!.version);

  // One component per name and version (a package nested twice at the same version is one).
  const byRef = new Map<string, { component: CycloneDxComponent; dependsOn: Set<string> }>();
  for (const key of installed) {
    const ref = refOf(key);
    const entry = byRef.get(ref) ?? { component: npmComponent(lock.get(key)!, "excluded", inputs.root), dependsOn: new Set<string>() };
    if (bundled.has(key)) entry.component.scope = "required";
    for (const d of [...lock.get(key)!.dependencies, ...lock.get(key)!.optional]) {
      const found = resolve(lock, key, d);
      if (found && present.has(found)) entry.dependsOn.add(refOf(found));
    }
    byRef.set(ref, entry);
  }
  const components: CycloneDxComponent[] = [bunComponent(inputs.bun), ...VENDORED, ...[...byRef.values()].map((e) => e.component)];
  const selfRef = `pkg:generic/citadel@${pkg.version}`;
  const dependencies = [
    { ref: selfRef, dependsOn: [bunRef(inputs.bun.version), ...VENDORED.map((v) => v["bom-ref"]), ...Object.keys(pkg.dependencies ?? {}).filter((d) => bundled.has(d)).map(refOf).sort()] },
    ...[...byRef].map(([ref, e]) => ({ ref, dependsOn: [...e.dependsOn].sort() })),
  ];
  const body = { components, dependencies };
  return {
    bomFormat: "CycloneDX",
    specVersion: "1.5",
    serialNumber: `urn:uuid:${uuidFrom(`${inputs.timestamp}\n${JSON.stringify(body)}`)}`,
    version: 1,
    metadata: {
      timestamp: inputs.timestamp,
      tools: { components: [{ type: "application", name: "citadel scripts/sbom.ts", version: pkg.version }] },
      component: { type: "application", "bom-ref": selfRef, name: pkg.name, version: pkg.version, purl: selfRef },
      properties: [
        { name: "citadel:commit", value: inputs.commit },
        { name: "citadel:sbom-made", value: inputs.made === "build" ? "at build time, embedded in the binary" : "from the source checkout at run time" },
        { name: "citadel:scope", value: "required: compiled into the binary (the bundler's module graph); excluded: installed to build, type-check or test it" },
      ],
    },
    ...body,
  };
}

/**
 * The files the bundler puts into the binary (its metafile's inputs, relative to `root`):
 * what decides which packages are "required". The same graph `bun build --compile` makes.
 */
export async function bundledFiles(root: string): Promise<string[]> {
  const result = await Bun.build({ entrypoints: [join(root, "src/main.ts")], root, target: "bun", format: "esm", metafile: true });
  if (!result.success) throw new Error(`the module graph could not be built: ${result.logs.map(String).join("; ")}`);
  const meta = (typeof result.metafile === "string" ? JSON.parse(result.metafile) : result.metafile) as { inputs: Record<string, unknown> };
  return Object.keys(meta.inputs);
}

/**
 * The SBOM of what is running: the one baked into the binary, or (from source) one made from
 * the checkout now.
 */
export async function embeddedSbom(options: { commit: string; now: number }): Promise<CycloneDxBom> {
  if (typeof CITADEL_SBOM === "string") return JSON.parse(CITADEL_SBOM) as CycloneDxBom;
  const root = new URL("../..", import.meta.url).pathname;
  if (!existsSync(join(root, "bun.lock"))) throw new Error("this binary carries no SBOM and there is no source checkout to make one from");
  // The module graph takes a bundler run (~0.3 s): once per process is enough.
  sourceFiles ??= bundledFiles(root).catch((error: unknown) => {
    sourceFiles = undefined;
    throw error;
  });
  return generateSbom({
    root,
    bundledFiles: await sourceFiles,
    timestamp: new Date(options.now).toISOString(),
    bun: { version: Bun.version, revision: Bun.revision },
    commit: options.commit,
    made: "source",
  });
}
let sourceFiles: Promise<string[]> | undefined;

/** The CycloneDX text as printed and written (dist/sbom.cdx.json): two-space JSON and a newline. */
export function sbomText(bom: CycloneDxBom): string {
  return `${JSON.stringify(bom, null, 2)}\n`;
}

/** A component's licences as one SPDX-like string ("MIT", "(MIT OR Apache-2.0)"), or "unknown". */
export function licenceOf(component: CycloneDxComponent): string {
  const parts = (component.licenses ?? []).map((l) => l.expression ?? l.license?.id ?? l.license?.name ?? "").filter(Boolean);
  return parts.length === 0 ? "unknown" : parts.join(" AND ");
}

function readLock(path: string): Map<string, LockPackage> {
  const lock = Bun.JSONC.parse(readFileSync(path, "utf8")) as { packages: Record<string, [string, string, Record<string, any>?, string?]> };
  const out = new Map<string, LockPackage>();
  for (const [key, entry] of Object.entries(lock.packages)) {
    const [spec, , info = {}, integrity] = entry;
    const at = spec.lastIndexOf("@");
    const optionalPeers = new Set<string>(info.optionalPeers ?? []);
    const peers = Object.keys(info.peerDependencies ?? {});
    out.set(key, {
      key,
      name: spec.slice(0, at),
      version: spec.slice(at + 1),
      integrity: typeof integrity === "string" ? integrity : null,
      dependencies: [...Object.keys(info.dependencies ?? {}), ...peers.filter((p) => !optionalPeers.has(p))],
      optional: [...Object.keys(info.optionalDependencies ?? {}), ...peers.filter((p) => optionalPeers.has(p))],
    });
  }
  return out;
}

/** The lock key a dependency `name` of package `from` resolves to: nested first, as Node does. */
function resolve(lock: Map<string, LockPackage>, from: string, name: string): string | null {
  const names = splitKey(from);
  for (let n = names.length; n >= 0; n--) {
    const key = [...names.slice(0, n), name].join("/");
    if (lock.has(key)) return key;
  }
  return null;
}

/** "tsyringe/tslib" → ["tsyringe", "tslib"]; "@a/b/@c/d" → ["@a/b", "@c/d"]. */
function splitKey(key: string): string[] {
  const parts = key.split("/");
  const names: string[] = [];
  for (let i = 0; i < parts.length; i++) names.push(parts[i]!.startsWith("@") ? `${parts[i]}/${parts[++i]}` : parts[i]!);
  return names;
}

function installedPath(root: string, key: string): string {
  return join(root, ...splitKey(key).flatMap((name) => ["node_modules", name]));
}

/** Lock keys of the packages that files under node_modules belong to ("a/node_modules/@b/c/x.js" → "a/@b/c"). */
function bundledPackages(files: readonly string[]): Set<string> {
  const keys = new Set<string>();
  for (const file of files) {
    const parts = file.split("/");
    const names: string[] = [];
    for (let i = parts.indexOf("node_modules"); i >= 0 && i < parts.length - 1; i = parts.indexOf("node_modules", i + 1)) {
      names.push(parts[i + 1]!.startsWith("@") ? `${parts[i + 1]}/${parts[i + 2]}` : parts[i + 1]!);
    }
    if (names.length > 0) keys.add(names.join("/"));
  }
  return keys;
}

function npmComponent(p: LockPackage, scope: "required" | "excluded", root: string): CycloneDxComponent {
  const manifestPath = join(installedPath(root, p.key), "package.json");
  const manifest = existsSync(manifestPath) ? (JSON.parse(readFileSync(manifestPath, "utf8")) as Record<string, unknown>) : null;
  const slash = p.name.startsWith("@") ? p.name.indexOf("/") : -1;
  const purl = npmPurl(p.name, p.version);
  const hash = p.integrity ? integrityHash(p.integrity) : null;
  const description = typeof manifest?.description === "string" ? manifest.description : undefined;
  const undeclared = UNDECLARED_LICENCES[p.name];
  const properties = [
    ...(manifest ? [] : [{ name: "citadel:installed", value: "false (not in node_modules: licence unknown)" }]),
    ...(undeclared ? [{ name: "citadel:licence-note", value: undeclared.note }] : []),
  ];
  return {
    type: "library",
    "bom-ref": purl,
    ...(slash > 0 ? { group: p.name.slice(0, slash), name: p.name.slice(slash + 1) } : { name: p.name }),
    version: p.version,
    scope,
    purl,
    licenses: [...licencesOf(manifest), ...(undeclared?.licenses ?? [])],
    ...(hash ? { hashes: [hash] } : {}),
    ...(description ? { description } : {}),
    externalReferences: [{ type: "distribution", url: `https://registry.npmjs.org/${p.name}/-/${p.name.slice(slash + 1)}-${p.version}.tgz` }],
    ...(properties.length > 0 ? { properties } : {}),
  };
}

/** package.json "license" (an SPDX id or expression), or the old "licenses" array. */
function licencesOf(manifest: Record<string, unknown> | null): CycloneDxLicense[] {
  if (!manifest) return [];
  const value = manifest.license ?? manifest.licenses;
  const one = (text: string): CycloneDxLicense => {
    if (SPDX_IDS.has(text)) return { license: { id: text } };
    if (/\s(OR|AND|WITH)\s/.test(text)) return { expression: text };
    return { license: { name: text } };
  };
  if (typeof value === "string") return [one(value.trim())];
  if (value && typeof value === "object" && "type" in value && typeof value.type === "string") return [one(value.type)];
  if (Array.isArray(value)) return value.flatMap((l) => (typeof l?.type === "string" ? [one(l.type)] : typeof l === "string" ? [one(l)] : []));
  return [];
}

/** bun.lock's Subresource Integrity ("sha512-<base64>") as a CycloneDX hash (hex). */
function integrityHash(integrity: string): { alg: "SHA-256" | "SHA-512"; content: string } | null {
  const m = integrity.match(/^sha(256|512)-(.+)$/);
  if (!m) return null;
  return { alg: m[1] === "512" ? "SHA-512" : "SHA-256", content: Buffer.from(m[2]!, "base64").toString("hex") };
}

/** purl of an npm package: the scope's "@" is percent-encoded (pkg:npm/%40node-rs/argon2@2.2.1). */
export function npmPurl(name: string, version: string): string {
  return `pkg:npm/${name.replace(/^@/, "%40")}@${version}`;
}

const bunRef = (version: string) => `pkg:github/oven-sh/bun@bun-v${version}`;

/**
 * Data taken from another project into Citadel's own source, compiled into the binary with it:
 * not in bun.lock, so named here, with its licence.
 */
const VENDORED: CycloneDxComponent[] = [
  {
    type: "data",
    "bom-ref": npmPurl("@zxcvbn-ts/language-common", "4.1.3"),
    group: "@zxcvbn-ts",
    name: "language-common",
    version: "4.1.3",
    scope: "required",
    purl: npmPurl("@zxcvbn-ts/language-common", "4.1.3"),
    licenses: [{ license: { id: "MIT" } }],
    description: "Its passwords list: the 10,000 most common of 8 characters or more, vendored as src/auth/common-passwords.txt (refused as passwords)",
    externalReferences: [{ type: "vcs", url: "https://github.com/zxcvbn-ts/zxcvbn" }],
  },
];

/** The runtime compiled into the binary: `bun build --compile` copies the Bun that runs it. */
function bunComponent(bun: SbomInputs["bun"]): CycloneDxComponent {
  const ref = bunRef(bun.version);
  const hash = bun.executable && existsSync(bun.executable) ? new Bun.CryptoHasher("sha256").update(readFileSync(bun.executable)).digest("hex") : null;
  return {
    type: "platform",
    "bom-ref": ref,
    name: "bun",
    version: bun.version,
    scope: "required",
    purl: ref,
    licenses: [{ license: { id: "MIT" } }],
    ...(hash ? { hashes: [{ alg: "SHA-256" as const, content: hash }] } : {}),
    description: "The JavaScript runtime compiled into the binary (its executable's hash when built)",
    externalReferences: [
      { type: "website", url: "https://bun.com" },
      { type: "license", url: "https://bun.com/docs/project/licensing" },
    ],
    properties: [
      { name: "citadel:bun-revision", value: bun.revision },
      { name: "citadel:licence-note", value: "Bun is MIT-licensed; it statically links JavaScriptCore/WebKit (LGPL-2) and other libraries listed on its licensing page" },
    ],
  };
}

/** A UUID (version 8, RFC 9562) from the SHA-256 of `text`: the same SBOM gets the same serial number. */
function uuidFrom(text: string): string {
  const h = new Bun.CryptoHasher("sha256").update(text).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
