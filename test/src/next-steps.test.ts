/**
 * The next steps `citadel init` and `citadel recover` print name the instance they acted on:
 * pasted into a fresh shell, a line without --data/--config would act on ./.citadel and fail.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const root = mkdtempSync(join(tmpdir(), "citadel-next-steps-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function citadel(...argv: string[]) {
  const child = Bun.spawn([process.execPath, MAIN, ...argv], { env: { PATH: process.env.PATH ?? "", HOME: root, XDG_CONFIG_HOME: root, CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

test("init and recover given --data name it, quoted, in the commands they print (found in an operator's walkthrough)", async () => {
  const data = join(root, "my data");
  const init = await citadel("--data", data, "init");
  expect([init.code, init.stderr]).toEqual([0, ""]);
  expect(init.stdout).toContain(`Replace it first: citadel password --email admin@localhost --data '${data}' (or POST /v1/iam/me/password); then citadel login --data '${data}'.`);
  const recover = await citadel("--data", data, "recover", "admin@localhost", "--yes");
  expect([recover.code, recover.stderr]).toEqual([0, ""]);
  expect(recover.stdout).toContain(`Replace it first: citadel password --email admin@localhost --data '${data}'; then log in (citadel login --data '${data}') and enrol two-factor authentication again (citadel mfa enable --data '${data}').`);
});
