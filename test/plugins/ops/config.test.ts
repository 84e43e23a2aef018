/**
 * tokenDoubt: whether the doctor and the sovereignty report may send the operator's token to
 * the server the config names — as a client command would (the binary's behaviour is in
 * token-target.test.ts; here, the listener's address, which a stand-in cannot take).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenDoubt } from "../../../plugins/ops/config.ts";
import type { Config } from "../../../src/config/schema.ts";
import { lockDataDirectory, type HeldLock } from "../../../src/file-lock.ts";

const project = mkdtempSync(join(tmpdir(), "citadel-ops-config-"));
const local = join(project, ".citadel");
let running: HeldLock;

beforeAll(() => {
  // What citadel serve makes and holds: a private directory, a private database, the lock.
  mkdirSync(local, { mode: 0o700 });
  writeFileSync(join(local, "citadel.db"), "", { mode: 0o600 });
  writeFileSync(join(local, "citadel.toml"), "", { mode: 0o600 });
  const lock = lockDataDirectory(local, "serve");
  if ("refused" in lock) throw new Error(lock.refused);
  running = lock;
});
afterAll(() => {
  running?.release();
  rmSync(project, { recursive: true, force: true });
});

const listeningOn = (address: string) => ({ http: { address } }) as unknown as Config;

describe("tokenDoubt, for the working directory's running instance of this user's", () => {
  test("a loopback or wildcard listener may have the token", () => {
    for (const address of ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::"]) expect(tokenDoubt({ env: {}, cwd: project }, listeningOn(address))).toBeNull();
  });

  test("any other address may not: the config found in the directory would choose where the token goes (found in review)", () => {
    expect(tokenDoubt({ env: {}, cwd: project }, listeningOn("192.0.2.1"))).toBe("its http.address 192.0.2.1 is not a loopback address");
  });

  test("an instance named with --data, --config, CITADEL_DATA or CITADEL_CONFIG may, at any address: the operator chose it", () => {
    const far = listeningOn("192.0.2.1");
    expect(tokenDoubt({ env: {}, cwd: project, dataFlag: local }, far)).toBeNull();
    expect(tokenDoubt({ env: {}, cwd: project, configFlag: join(local, "citadel.toml") }, far)).toBeNull();
    expect(tokenDoubt({ env: { CITADEL_DATA: local }, cwd: project }, far)).toBeNull();
    expect(tokenDoubt({ env: { CITADEL_CONFIG: join(local, "citadel.toml") }, cwd: project }, far)).toBeNull();
  });
});
