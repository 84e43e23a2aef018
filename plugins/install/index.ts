/**
 * The `install` plugin: `citadel install` puts this binary on a machine as a hardened systemd
 * service (account, config, data directory, units, root key), and `citadel uninstall` takes
 * it off again. It has no routes, settings or tables: only commands. See docs/install.md.
 */
import { resolve } from "node:path";
import { UsageError } from "../../src/cli/command-line.ts";
import { definePlugin, type Command, type CommandContext } from "../../src/plugin.ts";
import { install, InstallCancelled, type InstallReport } from "./install.ts";
import { formatItem } from "./report.ts";
import { stringOption } from "../../src/cli/output.ts";
import { parseSealOption } from "../../src/cli/seal-option.ts";
import { SystemTools } from "./system-tools.ts";
import { purgeRefusal, uninstall } from "./uninstall.ts";

const ROOT_OPTION = { type: "string", description: 'Install under this directory instead of "/" (an image, a test): no accounts or systemctl are touched' } as const;

const installCommand: Command = {
  words: ["install"],
  summary: "Install this binary as the systemd service citadel: user, /etc/citadel, /var/lib/citadel, units, root key (under --root: binary, config and units)",
  options: {
    root: ROOT_OPTION,
    binary: { type: "string", description: "The binary to install (default: this one, when compiled)" },
    seal: { type: "string", description: "How the root key is kept: credential (systemd-creds, TPM2 when present), shamir or key-file (default: credential when systemd-creds exists, else key-file; always key-file under --root, where credential is refused)" },
    initialize: { type: "boolean", description: "Under --root: also run citadel init into it. The image then carries the root key, the TLS key, the signing keys and the instance id, shared by every machine booted from it (default: the target initializes at its first boot)" },
    yes: { type: "boolean", description: 'Do not ask before installing into "/"' },
  },
  async run(ctx) {
    const tools = new SystemTools(ctx.env);
    const root = stringOption(ctx, "root") ?? "/";
    let report: InstallReport;
    try {
      report = await install(tools, {
        root,
        binary: stringOption(ctx, "binary") ?? runningBinary(),
        seal: parseSealOption(stringOption(ctx, "seal")),
        initialize: ctx.options.initialize === true,
        confirm: (plan) => confirmInstall(ctx, plan),
      });
    } catch (error) {
      if (!(error instanceof InstallCancelled)) throw error;
      ctx.err(`Cancelled: ${error.message}.`);
      return 1;
    }
    printInstallReport(ctx, report);
    return 0;
  },
};

const uninstallCommand: Command = {
  words: ["uninstall"],
  summary: "Stop and remove the units and the binary; keep /etc/citadel and /var/lib/citadel unless --purge",
  options: {
    root: ROOT_OPTION,
    purge: { type: "boolean", description: "Also delete the config, the data and the root key (needs --yes)" },
    yes: { type: "boolean", description: "Yes, --purge may delete the data for good" },
  },
  async run(ctx) {
    const root = stringOption(ctx, "root") ?? "/";
    const purge = ctx.options.purge === true;
    if (purge && ctx.options.yes !== true) {
      throw new UsageError(purgeRefusal(root));
    }
    const report = await uninstall(new SystemTools(ctx.env), { root, purge });
    if (ctx.json) ctx.out(JSON.stringify(report, null, 2));
    else {
      ctx.out(`Uninstalling Citadel from ${report.root}`);
      for (const item of report.items) ctx.out(formatItem(item));
      for (const warning of report.warnings) ctx.err(`warning: ${warning}`);
    }
    return 0;
  },
};

export const installPlugin = definePlugin({
  name: "install",
  scopes: [],
  actions: [],
  migrations: [],
  commands: [installCommand, uninstallCommand],
});

/** The running binary, when it is a compiled Citadel; from source, process.execPath is bun itself. */
function runningBinary(): string {
  if (Bun.main.startsWith("/$bunfs/")) return process.execPath;
  throw new UsageError("running from source: name the binary to install with --binary (bun scripts/build.ts makes dist/citadel)");
}

/**
 * Installing into "/" changes this machine: asked on a terminal, refused elsewhere without
 * --yes. Another root is a directory the caller named, so nothing is asked.
 */
async function confirmInstall(ctx: CommandContext, plan: readonly string[]): Promise<boolean> {
  if (!ctx.json) for (const line of plan) ctx.out(line);
  if (ctx.options.yes === true || resolve(stringOption(ctx, "root") ?? "/") !== "/") return true;
  if (!process.stdin.isTTY) throw new UsageError('installing into "/" changes this machine: add --yes to install without being asked');
  process.stderr.write("Continue? [y/N] ");
  for await (const answer of console) return /^y(es)?$/i.test(answer.trim());
  return false;
}

function printInstallReport(ctx: CommandContext, report: InstallReport): void {
  if (ctx.json) return ctx.out(JSON.stringify(report, null, 2));
  for (const item of report.items) ctx.out(formatItem(item));
  if (report.initOutput.length > 0) {
    ctx.out("\ncitadel init (shown only now):");
    for (const line of report.initOutput) ctx.out(`  ${line}`);
  }
  for (const warning of report.warnings) ctx.err(`warning: ${warning}`);
  ctx.out("\nNext:");
  for (const step of report.nextSteps) ctx.out(`  ${step}`);
}

