/**
 * The E2EE commands against a server the test plays (runCommand's `answer`): me and Bob with
 * key pairs, a workspace key, a passphrase file, and a machine (config home) of its own for
 * each run, so that no run's pins reach another. Removed after the file's tests.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateUserKeyPair, newWorkspaceKey, sealPrivateKey } from "../../plugins/secrets/e2ee.ts";

export const ME = "usr_AAAAAAAAAAAAAA";
export const BOB = "usr_BBBBBBBBBBBBBB";
export const WS = "/v1/secrets/workspaces/ws_1";
export const PHRASE = "a long passphrase for e2ee";

export function e2eeCliFixture(name: string) {
  const dir = mkdtempSync(join(tmpdir(), `citadel-${name}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const phraseFile = join(dir, "passphrase");
  writeFileSync(phraseFile, `${PHRASE}\n`, { mode: 0o600 });
  const mine = generateUserKeyPair();
  let sealed: Promise<string> | undefined;
  let homes = 0;
  return {
    dir,
    phraseFile,
    mine,
    /** My private key sealed under PHRASE, as the server keeps it (made once: argon2id is slow). */
    sealed: () => (sealed ??= sealPrivateKey(mine.privateKey, PHRASE)),
    bob: generateUserKeyPair(),
    workspaceKey: newWorkspaceKey(),
    /** A machine of its own for a run. */
    newHome: () => join(dir, `home-${++homes}`),
  };
}
