/**
 * Every error line starts with "citadel: " (docs/cli.md), those of the offline checks too:
 * a backup that does not open, an audit chain that does not verify. Exit code 1 as before.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const root = mkdtempSync(join(tmpdir(), "citadel-error-lines-"));
const data = join(root, "data");
const notABackup = join(root, "not.backup");
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function citadel(...argv: string[]) {
  const child = Bun.spawn([process.execPath, MAIN, "--data", data, ...argv], { env: { PATH: process.env.PATH ?? "", HOME: root, XDG_CONFIG_HOME: root, CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

const lines = (text: string) => text.split("\n").filter((line) => line !== "");

beforeAll(async () => {
  expect((await citadel("init")).code).toBe(0);
  writeFileSync(notABackup, "not a backup at all\n".repeat(100));
});

test("backup verify and restore of a file that is no backup: one error line starting citadel: FAILED:, exit 1 (found in an operator's walkthrough)", async () => {
  for (const argv of [["backup", "verify", notABackup], ["restore", notABackup, "--yes"]]) {
    const run = await citadel(...argv);
    expect([argv[0], run.code]).toEqual([argv[0], 1]);
    expect(lines(run.stderr)).toEqual([expect.stringMatching(/^citadel: FAILED: \S/)]);
  }
});

test("audit verify of an edited chain: every line it writes starts citadel:, exit 1 (found in an operator's walkthrough)", async () => {
  const db = new Database(join(data, "citadel.db"));
  db.run("DROP TRIGGER audit_events_no_update");
  db.run("UPDATE audit_events SET reason = 'edited'");
  db.close();
  const run = await citadel("audit", "verify");
  expect(run.code).toBe(1);
  expect(lines(run.stderr).length).toBeGreaterThan(1);
  for (const line of lines(run.stderr)) expect(line).toStartWith("citadel: ");
  expect(run.stderr).toStartWith("citadel: FAILED at event 1 ");
});
