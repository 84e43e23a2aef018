/**
 * The systemd units: rated by `systemd-analyze security` (offline: the rating reads the unit
 * file, no running systemd needed), checked by `systemd-analyze verify`, and kept consistent
 * with the paths, the user and the credential name the installer and the config use.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SERVICE_USER, TARGET } from "../../../plugins/install/layout.ts";
import { AGENT_UNIT, SERVICE_UNIT, serviceCredential, unitSetting } from "../../../plugins/install/units.ts";
import { SealConfig } from "../../../src/config/schema.ts";
import { requireTool } from "../../helpers/tools.ts";

const CONFIG = new URL("../../../config/", import.meta.url).pathname;
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "citadel-units-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** "→ Overall exposure level for citadel.service: 1.4 OK 🙂" → 1.4 */
function exposure(analyzer: string, unit: string): number {
  const result = Bun.spawnSync([analyzer, "security", "--offline=yes", "--no-pager", join(CONFIG, unit)]);
  const output = `${result.stdout.toString()}${result.stderr.toString()}`;
  const level = output.match(/Overall exposure level for \S+: (\d+(?:\.\d+)?)/)?.[1];
  if (level === undefined) throw new Error(`no exposure level in the output of systemd-analyze security:\n${output}`);
  console.log(`systemd-analyze security --offline=yes config/${unit}: exposure ${level}`);
  return Number(level);
}

test("citadel.service is rated at most 2.0 by systemd-analyze security", () => {
  const analyzer = requireTool("systemd-analyze", "systemd");
  if (!analyzer) return;
  expect(exposure(analyzer, SERVICE_UNIT.name)).toBeLessThanOrEqual(2.0);
});

// The agent manages the host's network: root (with CAP_NET_ADMIN alone), netlink, /dev/net/tun,
// /proc/sys/net on a hub. Those exceptions (docs/install.md) are what separates its 2.2 from
// the service's 1.4 with systemd 252; the bound leaves 0.3 for versions that weigh checks differently.
test("citadel-mesh-agent.service is rated at most 2.5 by systemd-analyze security", () => {
  const analyzer = requireTool("systemd-analyze", "systemd");
  if (!analyzer) return;
  expect(exposure(analyzer, AGENT_UNIT.name)).toBeLessThanOrEqual(2.5);
});

// `verify` checks every directive's syntax and value offline, but also that ExecStart's
// program exists: the copy points at a stand-in, nothing else changes. It prints unknown or
// malformed settings as warnings and still exits 0, so the test wants silence.
test("systemd-analyze verify finds nothing to say about either unit", () => {
  const analyzer = requireTool("systemd-analyze", "systemd");
  if (!analyzer) return;
  const standIn = join(work, "citadel");
  writeFileSync(standIn, "#!/bin/sh\nexit 0\n");
  chmodSync(standIn, 0o755);
  for (const unit of [SERVICE_UNIT, AGENT_UNIT]) {
    const copy = join(work, unit.name);
    writeFileSync(copy, unit.text.replaceAll(TARGET.binary, standIn));
    const result = Bun.spawnSync([analyzer, "verify", copy]);
    expect([unit.name, result.exitCode, result.stderr.toString().trim()]).toEqual([unit.name, 0, ""]);
  }
});

test("the units run what the installer installs, where it installs it", () => {
  expect(unitSetting(SERVICE_UNIT, "ExecStart")).toEqual([`${TARGET.binary} serve --config ${TARGET.configFile}`]);
  expect(unitSetting(AGENT_UNIT, "ExecStart")).toEqual([`${TARGET.binary} mesh agent --state ${TARGET.meshStateDir}`]);
  expect(unitSetting(SERVICE_UNIT, "User")).toEqual([SERVICE_USER]);
  expect(unitSetting(SERVICE_UNIT, "StateDirectory").map((d) => `/var/lib/${d}`)).toEqual([TARGET.dataDir]);
  expect(unitSetting(AGENT_UNIT, "StateDirectory").map((d) => `/var/lib/${d}`)).toEqual([TARGET.meshStateDir]);
  expect(unitSetting(SERVICE_UNIT, "ConfigurationDirectory").map((d) => `/etc/${d}`)).toEqual([TARGET.configDir]);
});

test("the credential the unit loads is the one the config names by default, with a harmless fallback", () => {
  const { name, path } = serviceCredential();
  expect(name).toBe(SealConfig.properties.credential.default);
  expect(path.startsWith(`${TARGET.configDir}/`)).toBe(true);
  // Without the fallback a key-file or Shamir installation (no credential file) would not start.
  expect(unitSetting(SERVICE_UNIT, "SetCredential")).toEqual([`${name}:absent`]);
});

test("neither unit denies W+X memory (Bun's JIT needs it) and the service keeps only CAP_NET_BIND_SERVICE", () => {
  for (const unit of [SERVICE_UNIT, AGENT_UNIT]) expect(unitSetting(unit, "MemoryDenyWriteExecute")).toEqual([]);
  expect(unitSetting(SERVICE_UNIT, "CapabilityBoundingSet")).toEqual(["CAP_NET_BIND_SERVICE"]);
  expect(unitSetting(SERVICE_UNIT, "AmbientCapabilities")).toEqual(["CAP_NET_BIND_SERVICE"]);
  expect(unitSetting(SERVICE_UNIT, "PrivateUsers")).toEqual([]);
  expect(unitSetting(AGENT_UNIT, "CapabilityBoundingSet")).toEqual(["CAP_NET_ADMIN"]);
});

test("the service never dumps core: a core of an unsealed Citadel would hold the root key (found in review: the value read `0.`)", () => {
  expect(unitSetting(SERVICE_UNIT, "LimitCORE")).toEqual(["0"]);
});

test("a SIGHUP that ends the service before it could catch one (its first milliseconds) restarts it: systemd counts that signal a clean stop (found in review)", () => {
  expect(unitSetting(SERVICE_UNIT, "Restart")).toEqual(["on-failure"]);
  expect(unitSetting(SERVICE_UNIT, "RestartForceExitStatus")).toEqual(["SIGHUP"]);
});

test("every setting of citadel.service is explained in docs/install.md, line by line", async () => {
  const doc = await Bun.file(new URL("../../../docs/install.md", import.meta.url)).text();
  const section = doc.slice(doc.indexOf("## The service unit, line by line"), doc.indexOf("## Uninstall"));
  const keys = new Set([...SERVICE_UNIT.text.matchAll(/^([A-Za-z]+)=/gm)].map((m) => m[1]!));
  for (const obvious of ["Description", "WantedBy"]) keys.delete(obvious);
  expect([...keys].filter((key) => !new RegExp(`(^|\`)${key}=`, "m").test(section))).toEqual([]);
});

test("stopping or restarting the agent leaves a wireguard-go it started running (found in review: the default KillMode killed it with the agent, taking a userspace tunnel down at every restart)", () => {
  expect(unitSetting(AGENT_UNIT, "KillMode")).toEqual(["process"]);
});
