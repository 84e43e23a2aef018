/**
 * Two Citadels given one backup directory (found in review): each lists, counts, prunes and
 * schedules against its own backups only — the manifest's instance_id tells them apart — and
 * citadel doctor says whose the others are.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { binaryTestScope, firstLogin, freePort, oneTimePassword, runCitadel, startCitadel } from "../helpers/binary.ts";

const { running, dir } = binaryTestScope();

async function start(data: string, env: Record<string, string>) {
  const port = await freePort();
  const citadel = await startCitadel(["--data", data], { CITADEL_HTTP_PORT: String(port), ...env });
  running.push(citadel);
  const token = await firstLogin(citadel.url, readFileSync(join(data, "tls/cert.pem"), "utf8"), oneTimePassword(citadel.stderr()));
  const cli = (args: string[]) => runCitadel(["--data", data, ...args], { CITADEL_TOKEN: token, CITADEL_HTTP_PORT: String(port), ...env });
  return { citadel, cli };
}

describe("a backup directory shared by two Citadels", () => {
  test("neither prunes, lists nor counts the other's backups, and doctor names them (found in review)", async () => {
    const shared = dir("citadel-e2e-backup-shared-");
    const env = { CITADEL_BACKUP_DIR: shared, CITADEL_BACKUP_KEEP: "1" };
    const A = await start(dir("citadel-e2e-backup-shared-a-"), env);
    const B = await start(dir("citadel-e2e-backup-shared-b-"), env);

    const a = await A.cli(["backup", "--json"]);
    expect([a.code, a.stderr]).toEqual([0, ""]);
    const madeByA = JSON.parse(a.stdout).name as string;
    const b = await B.cli(["backup", "--json"]);
    expect([b.code, b.stderr]).toEqual([0, ""]);
    const createdByB = JSON.parse(b.stdout);
    expect(createdByB.pruned).toEqual([]); // A's backup is not B's to delete
    expect(readdirSync(shared).filter((name) => name.endsWith(".backup")).sort()).toEqual([madeByA, createdByB.name].sort());

    const listed = async (cli: typeof A.cli) => JSON.parse((await cli(["backup", "list", "--json"])).stdout).items.map((item: { name: string }) => item.name);
    expect(await listed(A.cli)).toEqual([madeByA]);
    expect(await listed(B.cli)).toEqual([createdByB.name]);

    // A's second backup prunes A's first, not B's.
    const again = await A.cli(["backup", "--json"]);
    expect(JSON.parse(again.stdout).pruned).toEqual([madeByA]);
    expect(await listed(B.cli)).toEqual([createdByB.name]);

    const doctor = await A.cli(["doctor", "--json"]);
    const checks = JSON.parse(doctor.stdout).checks as Array<{ check: string; status: string; message: string; fix: string | null }>;
    expect(checks.filter((c) => c.check === "backup_foreign")).toEqual([
      { check: "backup_foreign", status: "warn", message: expect.stringContaining(`1 backup(s) in ${shared} are another Citadel's (instance ${createdByB.manifest.instance_id})`), fix: expect.any(String) },
    ]);
  }, 60_000);
});
