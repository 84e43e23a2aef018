/**
 * Where `citadel doctor` and `citadel sovereignty report` send the operator's token, on the
 * compiled binary. They look at any instance, a stopped one too; but the token (CITADEL_TOKEN,
 * or the stored login's) goes only where a client command would send it: to an instance named
 * with --data or --config (or the installed one), or to a ./.citadel that is an instance of this
 * user's running here on loopback. A planted one (a checked-out repository) must not choose the
 * listener and the certificate the token goes to.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DoctorReport } from "../../../plugins/ops/doctor.ts";
import { lockDataDirectory, type HeldLock } from "../../../src/file-lock.ts";
import { binaryTestScope, runCitadel } from "../../helpers/binary.ts";

const { dir } = binaryTestScope();
const TOKEN = "citadel_pat_AAAAAAAA_planted0test0token0value0000000000";
const STORED = "citadel_pat_BBBBBBBB_stored00test0token0value0000000000";

/** What reached the stand-in server: each request's path and authorization. */
const seen: Array<{ path: string; authorization: string | null }> = [];
let standIn: ReturnType<typeof Bun.serve>;
let project: string;
let local: string;
/** The CLI's config home, with a stored login to the stand-in's address. */
let home: string;

beforeAll(async () => {
  project = dir("citadel-ops-token-");
  local = join(project, ".citadel");
  mkdirSync(local, { mode: 0o700 });
  expect((await runCitadel(["init", "--data", local])).code).toBe(0);
  // On loopback with the instance's own certificate: it answers as Citadel's /healthz does,
  // refuses the rest, and records what it was sent.
  standIn = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(join(local, "tls/cert.pem"), "utf8"), key: readFileSync(join(local, "tls/key.pem"), "utf8") },
    fetch(request) {
      const path = new URL(request.url).pathname;
      seen.push({ path, authorization: request.headers.get("authorization") });
      return path === "/healthz" ? Response.json({ status: "ok" }) : Response.json({ detail: "no" }, { status: 401 });
    },
  });
  writeFileSync(join(local, "citadel.toml"), `[http]\naddress = "127.0.0.1"\nport = ${standIn.port}\n`);
  home = dir("citadel-ops-token-home-");
  mkdirSync(join(home, "citadel"), { mode: 0o700 });
  const login = { server: `https://127.0.0.1:${standIn.port}`, token: STORED, token_id: "tok_stored" };
  writeFileSync(join(home, "citadel", "config.json"), JSON.stringify(login), { mode: 0o600 });
}, 60_000);
afterAll(() => standIn?.stop(true));

/** The authorizations the stand-in received while `command` ran from the project directory. */
async function sentBy(command: string[], env: Record<string, string>): Promise<{ authorizations: string[]; stdout: string }> {
  seen.length = 0;
  const result = await runCitadel([...command, "--json"], { HOME: home, XDG_CONFIG_HOME: home, ...env }, project);
  expect(result.stderr).toBe("");
  expect(seen.map((s) => s.path)).toContain("/healthz"); // it was asked: only the token is withheld
  return { authorizations: seen.flatMap((s) => (s.authorization ? [s.authorization] : [])), stdout: result.stdout };
}

const DOCTOR = ["doctor"];
const REPORT = ["sovereignty", "report"];

/** Neither command sends either token from the project directory. */
async function withheld(): Promise<void> {
  for (const command of [DOCTOR, REPORT]) {
    expect((await sentBy(command, { CITADEL_TOKEN: TOKEN })).authorizations).toEqual([]);
    expect((await sentBy(command, {})).authorizations).toEqual([]);
  }
}

/** The doctor's key ages, read from the database instead, say why the token was not sent. */
async function doctorSaysWhy(why: string): Promise<void> {
  const report = JSON.parse((await sentBy(DOCTOR, { CITADEL_TOKEN: TOKEN })).stdout) as DoctorReport;
  const keys = report.checks.find((c) => c.check === "keys")!;
  expect(keys.message).toContain(`(from the database file; the token is not sent to it: ${local} is not used to choose the server: ${why}`);
}

describe("the token of citadel doctor and citadel sovereignty report", () => {
  test("is not sent to a ./.citadel others may enter, one with no database, or one on which nothing runs (found in review)", async () => {
    chmodSync(local, 0o755);
    try {
      await withheld();
      await doctorSaysWhy("its group or others may enter it (mode 755");
    } finally {
      chmodSync(local, 0o700);
    }

    renameSync(join(local, "citadel.db"), join(project, "aside.db"));
    try {
      await withheld(); // and with no database, no key ages to show: the doctor says so
    } finally {
      renameSync(join(project, "aside.db"), join(local, "citadel.db"));
    }

    await withheld();
    await doctorSaysWhy("the instance in it is not running");
  }, 60_000);

  test("goes to a ./.citadel of this user's that runs here, holding its lock", async () => {
    const lock = lockDataDirectory(local, "serve");
    if ("refused" in lock) throw new Error(lock.refused);
    try {
      for (const command of [DOCTOR, REPORT]) {
        expect((await sentBy(command, { CITADEL_TOKEN: TOKEN })).authorizations).toEqual([`Bearer ${TOKEN}`]);
        expect((await sentBy(command, {})).authorizations).toEqual([`Bearer ${STORED}`]);
      }
    } finally {
      (lock as HeldLock).release();
    }
  }, 60_000);

  test("goes to an instance named with --data or CITADEL_DATA, running or not: the operator chose it", async () => {
    chmodSync(local, 0o755);
    try {
      for (const command of [DOCTOR, REPORT]) {
        expect((await sentBy(["--data", local, ...command], { CITADEL_TOKEN: TOKEN })).authorizations).toEqual([`Bearer ${TOKEN}`]);
        expect((await sentBy(command, { CITADEL_DATA: local, CITADEL_TOKEN: TOKEN })).authorizations).toEqual([`Bearer ${TOKEN}`]);
      }
    } finally {
      chmodSync(local, 0o700);
    }
  }, 60_000);

  test("CITADEL_TOKEN with CITADEL_SERVER naming another server is that server's: not sent to this instance, and the doctor says so and what to do (found in review)", async () => {
    const remote = "https://citadel.example.com";
    const lock = lockDataDirectory(local, "serve"); // it runs: the ./.citadel would take the token
    if ("refused" in lock) throw new Error(lock.refused);
    try {
      for (const command of [DOCTOR, REPORT]) {
        for (const args of [command, ["--data", local, ...command]]) {
          const { authorizations, stdout } = await sentBy(args, { CITADEL_SERVER: remote, CITADEL_TOKEN: TOKEN });
          expect([args, authorizations]).toEqual([args, []]);
          if (command !== DOCTOR) continue;
          const keys = (JSON.parse(stdout) as DoctorReport).checks.find((c) => c.check === "keys")!;
          expect(keys.message).toContain(
            `the token is not sent to it: CITADEL_TOKEN is CITADEL_SERVER's (${remote}), not this instance's (https://127.0.0.1:${standIn.port}): for this instance with your login to it, CITADEL_TOKEN= citadel ...; with a token of its own, unset CITADEL_SERVER`,
          );
        }
        // CITADEL_SERVER naming this very instance: the token is its own.
        const same = await sentBy(command, { CITADEL_SERVER: `https://127.0.0.1:${standIn.port}/`, CITADEL_TOKEN: TOKEN });
        expect(same.authorizations).toEqual([`Bearer ${TOKEN}`]);
      }
    } finally {
      (lock as HeldLock).release();
    }
  }, 60_000);
});
