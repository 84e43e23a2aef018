/**
 * `citadel uninstall`: stops and removes the units and the binary. The config and the data
 * (the database, the root key or its credential) stay unless --purge: a removed binary is
 * reinstalled in a minute, a deleted root key makes every secret unreadable for good. The
 * system user stays too: files elsewhere (backups) may still carry its uid, and a uid given to
 * another account later would own them.
 */
import { existsSync, lstatSync, readdirSync, readlinkSync, rmSync, unlinkSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { readInstalledConfig, type InstalledConfig } from "./config-file.ts";
import { layoutUnder, requireRootOnHost, TARGET, type Layout } from "./layout.ts";
import { refuseLinks } from "./placement.ts";
import type { ReportItem } from "./report.ts";
import type { SystemTools } from "./system-tools.ts";

export interface UninstallOptions {
  root: string;
  purge: boolean;
}

export interface UninstallReport {
  root: string;
  items: ReportItem[];
  warnings: string[];
}

/** What --purge deletes and what each holds, for the refusal without --yes. */
export function purgeTargets(root: string): { path: string; holds: string }[] {
  const layout = layoutUnder(root);
  return [
    { path: layout.configDir, holds: "the config and the encrypted root key credential" },
    { path: layout.dataDir, holds: "the database with every secret and the audit log, the root key file, the TLS key" },
    { path: layout.meshStateDir, holds: "this node's WireGuard private key and mesh enrollment" },
  ];
}

export async function uninstall(tools: SystemTools, options: UninstallOptions): Promise<UninstallReport> {
  const layout = layoutUnder(options.root);
  requireRootOnHost(layout, "uninstall");
  // rmSync follows a link in the middle of a path: `etc -> /etc` in an image would delete the
  // host's config and root key. Every path is checked before the first is removed.
  for (const path of removedPaths(layout, options.purge)) refuseLinks(layout.root, path);
  const items: ReportItem[] = [];
  const warnings: string[] = [];
  const present = layout.units.filter((u) => existsSync(u.path));
  const stop = await disableUnits(tools, layout, present.map((u) => u.name));
  if (stop) {
    items.push(stop.item);
    if (stop.warning) warnings.push(stop.warning);
  }
  for (const unit of layout.units) items.push(remove(unit.path));
  for (const link of enablementLinks(layout)) {
    unlinkSync(link);
    items.push({ status: "removed", what: link });
  }
  if (present.length > 0 && layout.onHost && tools.find("systemctl") && existsSync("/run/systemd/system")) {
    const reload = await tools.run(["systemctl", "daemon-reload"]);
    items.push({ status: reload.code === 0 ? "done" : "failed", what: "systemctl daemon-reload", detail: reload.stderr.trim() || undefined });
  }
  items.push(remove(layout.binary));
  for (const { path } of purgeTargets(layout.root)) {
    if (options.purge) items.push(remove(path));
    else if (existsSync(path)) items.push({ status: "kept", what: path, detail: "delete it with --purge --yes" });
  }
  return { root: layout.root, items, warnings };
}

/** Everything uninstall may remove. */
function removedPaths(layout: Layout, purge: boolean): string[] {
  return [...layout.units.map((u) => u.path), layout.binary, ...(purge ? purgeTargets(layout.root).map((t) => t.path) : [])];
}

/**
 * `systemctl disable --now` when systemd runs this machine; `systemctl disable` when it does
 * not (it still removes the enablement links, offline). Under another root, nothing: this
 * machine's systemd has nothing to do with that tree. A failure is a warning: the files go anyway.
 */
async function disableUnits(tools: SystemTools, layout: Layout, units: string[]): Promise<{ item: ReportItem; warning?: string } | null> {
  if (!layout.onHost || units.length === 0 || !tools.find("systemctl")) return null;
  const argv = existsSync("/run/systemd/system") ? ["systemctl", "disable", "--now", ...units] : ["systemctl", "disable", ...units];
  const result = await tools.run(argv);
  const what = argv.join(" ");
  if (result.code === 0) return { item: { status: "done", what } };
  return { item: { status: "failed", what }, warning: `${what}: ${(result.stderr || result.stdout).trim() || `exit ${result.code}`}` };
}

/**
 * The links `systemctl enable` made for the units (their [Install] WantedBy=, RequiredBy=):
 * <target>.wants/<unit> and <target>.requires/<unit> in the unit directory. Under another root
 * no systemctl disables them — and install's own next step was `systemctl --root=DIR enable` —
 * so they would be left pointing at removed units. Only links in real directories (one that is
 * a link may lead out of the root) that point to one of the units, as the target system sees it.
 */
function enablementLinks(layout: Layout): string[] {
  const unitDir = join(layout.root, TARGET.unitDir);
  const units = new Set(layout.units.map((u) => join(TARGET.unitDir, u.name)));
  const links: string[] = [];
  for (const name of namesIn(unitDir, (n) => n.endsWith(".wants") || n.endsWith(".requires"))) {
    const dir = join(unitDir, name);
    if (!lstatSync(dir).isDirectory()) continue;
    for (const entry of namesIn(dir, () => true)) {
      const path = join(dir, entry);
      if (!lstatSync(path).isSymbolicLink()) continue;
      if (units.has(resolve(TARGET.unitDir, name, readlinkSync(path)))) links.push(path);
    }
  }
  return links.sort();
}

function remove(path: string): ReportItem {
  if (!existsSync(path)) return { status: "absent", what: path };
  rmSync(path, { recursive: true, force: true });
  return { status: "removed", what: path };
}

/**
 * Why --purge needs --yes: what it deletes, and by name what in it is found nowhere else on
 * the host. Local backups ([backup] dir is "backups" in the data directory by
 * default) and the earlier root keys a key file rekey kept beside the key file (the only keys
 * that open the backups made before it) go with the directory they are in.
 */
export function purgeRefusal(root: string): string {
  const targets = purgeTargets(root);
  const lines = ["--purge deletes, for good:", ...targets.map((t) => `  ${t.path}  (${t.holds})`)];
  const inside = backupsAndKeptKeys(layoutUnder(root)).filter((found) => targets.some((t) => isWithin(found.path, t.path)));
  if (inside.length > 0) lines.push("and with them:", ...inside.map((found) => `  ${found.path}  (${found.holds})`));
  lines.push("Without the root key nothing in the database or its backups can be read again: copy the backups and the root keys (the key file, each root.key.<id>) off this host first, then run again with --purge --yes");
  return lines.join("\n");
}

/** Where an install put them unless the config says otherwise. */
const INSTALLED_DEFAULTS: InstalledConfig = { dataDir: TARGET.dataDir, method: "key_file", keyFile: "root.key", backupDir: "backups" };

function backupsAndKeptKeys(layout: Layout): { path: string; holds: string }[] {
  const config = installedConfigOrDefaults(layout);
  const underRoot = (path: string) => (isAbsolute(path) ? join(layout.root, path) : join(layout.root, config.dataDir, path));
  const found: { path: string; holds: string }[] = [];
  const backupDir = underRoot(config.backupDir);
  const backups = namesIn(backupDir, (name) => BACKUP_NAME.test(name));
  if (backups.length > 0) found.push({ path: backupDir, holds: `${backups.length} backup${backups.length === 1 ? "" : "s"}` });
  const keyFile = underRoot(config.keyFile);
  const keptKeyName = (name: string) => name.startsWith(`${basename(keyFile)}.`) && /^[0-9a-f]{8}$/.test(name.slice(basename(keyFile).length + 1));
  for (const name of namesIn(dirname(keyFile), keptKeyName).sort()) {
    found.push({ path: join(dirname(keyFile), name), holds: "an earlier root key kept by a rekey: the only key that opens the backups made under it" });
  }
  return found;
}

/** The refusal must not depend on a config that parses: one that does not leaves the defaults. */
function installedConfigOrDefaults(layout: Layout): InstalledConfig {
  try {
    return readInstalledConfig(layout.configFile) ?? INSTALLED_DEFAULTS;
  } catch {
    return INSTALLED_DEFAULTS;
  }
}

/** The backup plugin's file names (plugins/backup/files.ts calls the pattern a contract). */
const BACKUP_NAME = /^citadel-\d{8}T\d{6}Z\.backup$/;

function namesIn(dir: string, wanted: (name: string) => boolean): string[] {
  try {
    return readdirSync(dir).filter(wanted);
  } catch {
    return []; // no such directory (or none this user may read): nothing to name
  }
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}
