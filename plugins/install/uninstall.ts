/**
 * `citadel uninstall`: stops and removes the units and the binary. The config and the data
 * (the database, the root key or its credential) stay unless --purge: a removed binary is
 * reinstalled in a minute, a deleted root key makes every secret unreadable for good. The
 * system user stays too: files elsewhere (backups) may still carry its uid, and a uid given to
 * another account later would own them.
 */
import { existsSync, rmSync } from "node:fs";
import { layoutUnder, requireRootOnHost, type Layout } from "./layout.ts";
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

function remove(path: string): ReportItem {
  if (!existsSync(path)) return { status: "absent", what: path };
  rmSync(path, { recursive: true, force: true });
  return { status: "removed", what: path };
}
