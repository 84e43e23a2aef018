/**
 * `citadel install`: the account, the config, the data directory, the binary, the units and
 * the root key, each put in place only when missing or different. A second run reports every
 * item "unchanged" and touches nothing; the config and the key are never replaced.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Accounts, ROOT_OWNED, SERVICE_OWNED, SERVICE_READABLE } from "./accounts.ts";
import { readInstalledConfig, renderInstalledConfig, type InstalledConfig } from "./config-file.ts";
import { initializeOnce, SHAMIR, type InitializeOutcome } from "./initialize.ts";
import { layoutUnder, requireRootOnHost, TARGET, type Layout } from "./layout.ts";
import { placeDirectory, placeFile, refuseLinks } from "./placement.ts";
import { changed, type ReportItem } from "./report.ts";
import type { SealOption } from "../../src/cli/seal-option.ts";
import { decideSeal, type SealDecision } from "./seal-choice.ts";
import type { SystemTools } from "./system-tools.ts";
import { serviceCredential, AGENT_UNIT, SERVICE_UNIT } from "./units.ts";

export interface InstallOptions {
  root: string;
  /** The binary to install (--binary, or the running one). */
  binary: string;
  seal: SealOption | undefined;
  /**
   * Under another root: run `citadel init` into it as well, which puts this installation's
   * secrets in the image (see imageSecretsWarning). On this machine init always runs.
   */
  initialize: boolean;
  /** Asked once the plan is known, before anything changes; false stops the install. */
  confirm(plan: readonly string[]): Promise<boolean>;
}

export interface InstallReport {
  root: string;
  version: string;
  seal: SealDecision;
  items: ReportItem[];
  /** What `citadel init` printed: the first owner's one-time password, Shamir shares. */
  initOutput: string[];
  warnings: string[];
  nextSteps: string[];
}

export class InstallCancelled extends Error {
  override readonly name = "InstallCancelled";
}

export async function install(tools: SystemTools, options: InstallOptions): Promise<InstallReport> {
  const layout = layoutUnder(options.root);
  requireRootOnHost(layout, "install");
  const version = await binaryVersion(tools, options.binary);
  const installed = readInstalledConfig(layout.configFile);
  if (installed) requireInstalledDataDir(layout, installed);
  const seal = await decideSeal(tools, options.seal, installed && { method: installed.method, configFile: layout.configFile }, layout.onHost);
  const initializeHere = layout.onHost || options.initialize;
  const plan = [`Install ${version} into ${layout.root}`, `seal: ${seal.method}, because ${seal.reason}`];
  if (!initializeHere) plan.push(`not initialized: the root key, the TLS key and the first owner are made on the machine that boots ${layout.root}, not here (--initialize makes them here, into the image)`);
  if (!(await options.confirm(plan))) throw new InstallCancelled("nothing was changed");

  const accounts = new Accounts(tools, layout.onHost);
  const credential = serviceCredential();
  const items: ReportItem[] = [await accounts.ensureServiceUser()];
  for (const path of [layout.configDir, layout.configFile, layout.dataDir, layout.binary, ...layout.units.map((u) => u.path)]) refuseLinks(layout.root, path);
  items.push(await placeDirectory(layout.configDir, 0o750, SERVICE_READABLE, accounts));
  const config = () => renderInstalledConfig({ dataDir: TARGET.dataDir, sealMethod: seal.method, credential: credential.name });
  items.push(await placeFile(layout.configFile, config, { mode: 0o640, owner: SERVICE_READABLE, keepContent: true }, accounts));
  if (initializeHere) items.push(await placeDirectory(layout.dataDir, 0o700, SERVICE_OWNED, accounts));
  else items.push({ status: "skipped", what: layout.dataDir, detail: "--root is not /: made on the target, by citadel init there or by systemd at the first start (StateDirectory=)" });
  items.push(await placeFile(layout.binary, () => readFileSync(options.binary), { mode: 0o755, owner: ROOT_OWNED }, accounts));
  const unitItems = [];
  for (const unit of layout.units) unitItems.push(await placeFile(unit.path, () => unit.text, { mode: 0o644, owner: ROOT_OWNED }, accounts));
  items.push(...unitItems);

  const keys = initializeHere ? await initializeOnce(tools, { layout, binary: layout.binary, seal, keyFile: installed?.keyFile ?? "root.key", credentialName: credential.name, runAs: await accounts.ids(SERVICE_OWNED) }) : NOT_INITIALIZED;
  items.push(...keys.items);

  const warnings = [...keys.warnings];
  const imageSecrets = imageSecretsWarning(layout, seal);
  if (imageSecrets) warnings.push(imageSecrets);
  if (!layout.onHost && seal.method === "systemd_credential" && existsSync(layout.credentialFile)) {
    warnings.push(`${layout.credentialFile} is in the image: a systemd credential decrypts only on the machine that encrypted it (its TPM2 or host key), so it opens nothing on another machine booted from ${layout.root}`);
  }
  if (changed(unitItems)) {
    const reload = await reloadSystemd(tools, layout);
    if (reload) items.push(reload);
  }
  return { root: layout.root, version, seal, items, initOutput: keys.output, warnings, nextSteps: nextSteps(layout, seal) };
}

const NOT_INITIALIZED = { items: [{ status: "skipped", what: "root key", detail: "--root is not /: made on the target (see Next)" }], output: [], warnings: [] } satisfies InitializeOutcome;

/**
 * An initialized Citadel in an image is one installation copied to every machine booted from
 * it: one root key (or one set of shares), one TLS key, the same signing keys and instance id;
 * and the first owner's one-time password was shown on the machine that built it.
 */
function imageSecretsWarning(layout: Layout, seal: SealDecision): string | null {
  const database = join(layout.dataDir, "citadel.db");
  if (layout.onHost || !existsSync(database)) return null;
  const key = seal.method === "shamir" ? "root key (its shares open every copy)" : "root key";
  return `${database} is in the image, initialized: every machine booted from ${layout.root} has the same ${key}, TLS key, signing keys and instance id, and the first owner's one-time password was shown here. Build one image per machine, or remove ${layout.dataDir} and install without --initialize to initialize on each target`;
}

/**
 * The data install sets up and looks for is in /var/lib/citadel, the unit's StateDirectory=.
 * A config whose data_dir says elsewhere means the data is elsewhere: install would not see it
 * and would make a second, empty installation beside it (a new root key, a new first owner).
 */
function requireInstalledDataDir(layout: Layout, installed: InstalledConfig): void {
  if (installed.dataDir === TARGET.dataDir) return;
  throw new Error(
    [
      `${layout.configFile} says data_dir = "${installed.dataDir}", but install sets up and looks for the data in ${layout.dataDir} (the unit's StateDirectory=): it would make a second, empty installation there and never look at yours.`,
      `Either move the data back to ${TARGET.dataDir}, set data_dir = "${TARGET.dataDir}" and run install again,`,
      `or keep it in ${installed.dataDir} and upgrade by hand (docs/install.md, "Another data directory"): under ProtectSystem=strict the service can write there only with a ReadWritePaths=${installed.dataDir} drop-in.`,
    ].join("\n"),
  );
}

/**
 * How the target gets its own root key, TLS key and first owner: `citadel init` there, as the
 * service's user (Citadel refuses a data directory that is not the running user's), in the
 * directory the unit's StateDirectory= also makes. With a key file the first start does it by
 * itself, but prints the one-time password into the journal; Shamir shares and a credential
 * need init, and the service refuses to start (exit 2) until it ran.
 */
function firstBoot(seal: SealDecision): string {
  const init = `install -d -o citadel -g citadel -m 700 ${TARGET.dataDir} && runuser -u citadel -- citadel init --config ${TARGET.configFile}`;
  if (seal.method === "shamir") {
    return `Then, on the target, once: ${init} --shares ${SHAMIR.shares} --threshold ${SHAMIR.threshold} (it prints the root key's shares and the first owner's one-time password, once; until then the service refuses to start), then systemctl restart citadel`;
  }
  if (seal.method === "systemd_credential") {
    const credential = serviceCredential();
    return `Then, on the target, once: ${init} --key-out - | systemd-creds encrypt --name=${credential.name} - ${credential.path} && chmod 600 ${credential.path} (the root key goes straight into that machine's credential; until then the service refuses to start), then systemctl restart citadel`;
  }
  return `The target's first start initializes it (the root key file, the TLS key, the first owner), and the one-time password goes to the journal (journalctl -u citadel); to see it on a terminal instead, before that start: ${init}`;
}

/** `<binary> version`: proves the file is a Citadel that runs here before anything is copied. */
async function binaryVersion(tools: SystemTools, binary: string): Promise<string> {
  if (!existsSync(binary)) throw new Error(`${binary}: no such file (give the Citadel binary with --binary)`);
  const result = await tools.run([binary, "version"]);
  const line = result.stdout.trim().split("\n", 1)[0] ?? "";
  if (result.code !== 0 || !line.startsWith("citadel ")) {
    throw new Error(`${binary} is not a Citadel binary that runs here (\`${binary} version\` said: ${(result.stderr || result.stdout).trim() || `exit ${result.code}`})`);
  }
  return line;
}

/** After a unit file changed, systemd must re-read it; only on this machine, only when systemd runs it. */
async function reloadSystemd(tools: SystemTools, layout: Layout): Promise<ReportItem | null> {
  if (!layout.onHost || !tools.find("systemctl")) return null;
  if (!existsSync("/run/systemd/system")) return { status: "skipped", what: "systemctl daemon-reload", detail: "systemd is not running here" };
  await tools.mustRun(["systemctl", "daemon-reload"]);
  return { status: "done", what: "systemctl daemon-reload" };
}

function nextSteps(layout: Layout, seal: SealDecision): string[] {
  const steps: string[] = [];
  if (!layout.onHost) {
    steps.push(`On the machine that boots ${layout.root}: create the service's account (useradd --system --user-group --home-dir ${TARGET.dataDir} --shell /usr/sbin/nologin citadel) and let it read the config (chgrp citadel ${TARGET.configDir} ${TARGET.configFile})`);
    if (!existsSync(join(layout.dataDir, "citadel.db"))) steps.push(firstBoot(seal));
    steps.push(`Enable the service in the image: systemctl --root=${layout.root} enable ${SERVICE_UNIT.name}`);
  } else {
    steps.push(`Review ${TARGET.configFile} (by default only this machine reaches the API: http.address), then: systemctl enable --now ${SERVICE_UNIT.name}`);
  }
  if (seal.method === "shamir") steps.push(`Citadel starts sealed: ${SHAMIR.threshold} keepers each run \`citadel unseal\` after every start.`);
  steps.push(`On a mesh node: citadel mesh join --state ${TARGET.meshStateDir} ..., then systemctl enable --now ${AGENT_UNIT.name}`);
  return steps;
}

