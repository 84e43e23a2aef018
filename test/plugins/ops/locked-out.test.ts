/**
 * The doctor and the sovereignty report run by a user who cannot look inside the data
 * directory (it is the service user's, 0700): what is in it is unknown, never missing and
 * never fine (found in review: the report said "nothing leaves this host" and the doctor
 * "no database"). The CLI runs from source in a child process; the data directory is closed
 * to it with mode 0000, and as root (whom no mode stops) the child runs as another uid.
 */
import { expect, test } from "bun:test";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DoctorReport } from "../../../plugins/ops/doctor.ts";
import type { SovereigntyReport } from "../../../plugins/ops/sovereignty.ts";
import { requireTool } from "../../helpers/tools.ts";
import { opsFixture } from "./fixture.ts";

const fx = opsFixture("citadel-locked-out-", { dns: false });
const MAIN = join(import.meta.dir, "../../../src/main.ts");
const OTHER_UID = "4321";
const isRoot = process.getuid?.() === 0;
const setpriv = isRoot ? requireTool("setpriv", "util-linux") : null;

/** `citadel --config <readable config> <argv> --json` as a user who may not enter the data directory. */
async function lockedOut(argv: string[]): Promise<{ dir: string; code: number; stdout: string; stderr: string }> {
  const dir = fx.dataDir();
  const home = join(fx.work, `home-${argv.join("-")}`);
  mkdirSync(home);
  chmodSync(home, 0o755); // modes are set, not asked of mkdir and writeFile: the umask would narrow them
  const config = join(fx.work, `config-${argv.join("-")}.toml`);
  writeFileSync(config, `data_dir = "${dir}"\n`);
  chmodSync(config, 0o644); // as /etc/citadel/citadel.toml, which the group citadel reads
  chmodSync(fx.work, 0o711); // the other uid reaches the config, and finds the data directory closed
  chmodSync(dir, 0o000);
  const user = setpriv ? [setpriv, `--reuid=${OTHER_UID}`, `--regid=${OTHER_UID}`, "--clear-groups"] : [];
  const env = { ...fx.env, PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, XDG_CONFIG_HOME: home };
  try {
    const child = Bun.spawn([...user, process.execPath, MAIN, "--config", config, ...argv, "--json"], { env, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    return { dir, code, stdout, stderr };
  } finally {
    chmodSync(dir, 0o700); // so that the fixture can remove it
  }
}

test.skipIf(isRoot && !setpriv)("sovereignty report: the outbound list is unknown, not none, and the exit code says so", async () => {
  const run = await lockedOut(["sovereignty", "report"]);
  expect(run.code).toBe(1);
  const report = JSON.parse(run.stdout) as SovereigntyReport;
  expect(report.outbound.none).toBe(false);
  expect(report.outbound.unknown).toEqual(["the database cannot be read by this user (run as root or as the service user): its webhooks, reputation lists and DNS secondaries are not listed"]);
  const database = report.data.find((d) => d.what === "database")!;
  expect(database.kind).toBe("unreadable");
});

test.skipIf(isRoot && !setpriv)("doctor: the data directory's checks warn that this user cannot look inside, none fails or vouches for it", async () => {
  const run = await lockedOut(["doctor"]);
  const report = JSON.parse(run.stdout) as DoctorReport;
  const byCheck = Object.fromEntries(report.checks.map((c) => [c.check, c]));
  const closed = { status: "warn" as const, message: `cannot look inside ${run.dir} as this user`, fix: "run citadel doctor as root or as the user Citadel runs as" };
  for (const check of ["database", "root_key", "tls_key", "file_mode", "backup"]) {
    expect(byCheck[check]).toEqual({ check, ...closed, message: check === "backup" ? `${closed.message}: backups not checked` : closed.message });
  }
  expect(byCheck.audit).toMatchObject({ status: "skip", message: expect.stringContaining("cannot be read by this user") });
  expect(report.checks.filter((c) => c.status === "fail")).toEqual([]);
});
