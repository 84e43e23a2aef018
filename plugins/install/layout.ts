/**
 * Where an installation's files go. The paths are those of the target system (what the config
 * and the units name); under --root DIR they are created below DIR instead, for an image or a
 * test, and nothing outside DIR is touched.
 */
import { join, resolve } from "node:path";
import { INSTALLED_CONFIG_FILE } from "../../src/config/load.ts";
import { serviceCredential, UNITS } from "./units.ts";

/** The paths on the installed system: the units and the config name these. */
export const TARGET = {
  configDir: "/etc/citadel",
  configFile: INSTALLED_CONFIG_FILE,
  dataDir: "/var/lib/citadel",
  meshStateDir: "/var/lib/citadel-mesh",
  binary: "/usr/local/bin/citadel",
  unitDir: "/etc/systemd/system",
} as const;

export const SERVICE_USER = "citadel";

export interface Layout {
  root: string;
  /** True when the root is "/": this machine's accounts and systemd are used. */
  onHost: boolean;
  configDir: string;
  configFile: string;
  /** The encrypted root key (seal.method systemd_credential), where the unit loads it from. */
  credentialFile: string;
  dataDir: string;
  meshStateDir: string;
  binary: string;
  units: { name: string; text: string; path: string }[];
}

export function layoutUnder(rootOption: string): Layout {
  const root = resolve(rootOption);
  const at = (path: string) => (root === "/" ? path : join(root, path));
  return {
    root,
    onHost: root === "/",
    configDir: at(TARGET.configDir),
    configFile: at(TARGET.configFile),
    credentialFile: at(serviceCredential().path),
    dataDir: at(TARGET.dataDir),
    meshStateDir: at(TARGET.meshStateDir),
    binary: at(TARGET.binary),
    units: UNITS.map((u) => ({ ...u, path: at(join(TARGET.unitDir, u.name)) })),
  };
}

/** On this machine the accounts, /etc and systemd are root's: say so before the first EACCES. */
export function requireRootOnHost(layout: Layout, command: string): void {
  if (layout.onHost && process.getuid?.() !== 0) throw new Error(`${command} changes this machine and needs root: run it with sudo (or give --root DIR)`);
}
