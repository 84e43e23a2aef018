/**
 * `citadel secrets e2ee rotate` and the holders whose public key it cannot fetch: a holder left
 * out loses every version of the workspace key on the server, so only the server's definite
 * answer (not a member, no key pair) leaves one out (found in review: any error did).
 */
import { describe, expect, test } from "bun:test";
import { ApiError } from "../../../src/cli/api-client.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { publicKeyFingerprint, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";
import { BOB, e2eeCliFixture, ME, WS } from "../../helpers/e2ee-cli.ts";

const fixture = e2eeCliFixture("e2ee-rotate");
const { mine, workspaceKey, bob, phraseFile, newHome } = fixture;
const sealed = await fixture.sealed();

/**
 * Runs the rotation against a server that holds the key for me and Bob, and answers Bob's
 * public key with `bobsKey` (an error to throw, or his key). Each run has a machine of its own.
 */
async function rotate(bobsKey: ApiError | string, options: Record<string, string> = {}) {
  const answer = (r: SentRequest): unknown => {
    const route = `${r.method} ${r.path}`;
    if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 1, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
    if (route === "GET /v1/iam/me") return { id: ME };
    if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
    if (route === `GET ${WS}/e2ee/keys`) return { items: [{ user: ME }, { user: BOB }] };
    if (route === `GET ${WS}/e2ee/public-keys/${BOB}`) {
      if (bobsKey instanceof ApiError) throw bobsKey;
      return { user: BOB, public_key: bobsKey };
    }
    if (route === `GET ${WS}/settings`) return { environments: [] };
    if (route === `POST ${WS}/e2ee/rotate`) return { key_version: 2, reencrypted: 0, holders: (r.body as { wrapped: Array<{ user: string }> }).wrapped.map((w) => w.user) };
    throw new Error(`unexpected request ${route}`);
  };
  const configHome = newHome();
  return runCommand(secretsCommands, "secrets e2ee rotate", { options: { workspace: "ws_1", "passphrase-file": phraseFile, ...options }, answer, configHome });
}
const rotationsSent = (requests: SentRequest[]) => requests.filter((r) => r.method === "POST");

describe("secrets e2ee rotate and a holder's public key (found in review)", () => {
  test("a rate limit, a server error, the network or a 404 that is not the definite answer stops the rotation before anything is sent", async () => {
    const failures = [
      new ApiError("rate limited: retry in 3 s (rate_limited)", 429, "rate_limited", { retryAfterSeconds: 3 }),
      new ApiError("The server could not complete the request. (internal_error)", 500, "internal_error"),
      new ApiError("Citadel is sealed (sealed)", 503, "sealed"),
      new ApiError("cannot reach Citadel at https://citadel.test:8443 (ECONNRESET); is it running?"),
      new ApiError("No such workspace. (not_found)", 404, "not_found"),
    ];
    for (const failure of failures) {
      const run = await rotate(failure);
      expect([run.code, run.error?.message]).toEqual([1, `could not fetch the public key of ${BOB}, who holds the workspace key (${failure.message}): nothing was sent and nobody lost access; run the rotation again`]);
      expect(rotationsSent(run.requests)).toEqual([]);
      expect(run.stderr).not.toContain("leaving out");
    }
  });

  test("the server's definite answer (not a member, no key pair) leaves the holder out, said on standard error", async () => {
    for (const code of ["not_a_member", "no_key_pair"]) {
      const run = await rotate(new ApiError(`That user is gone. (${code})`, 404, code));
      expect([run.code, run.error]).toEqual([0, null]);
      expect(run.stderr).toBe(`leaving out ${BOB}: That user is gone. (${code})\n`);
      const sent = rotationsSent(run.requests);
      expect(sent.map((r) => (r.body as { wrapped: Array<{ user: string }> }).wrapped.map((w) => w.user))).toEqual([[ME]]);
    }
  });

  test("a member named in --trust is never left out: even the definite answer stops the rotation", async () => {
    const run = await rotate(new ApiError("That user has no key pair yet. (no_key_pair)", 404, "no_key_pair"), { trust: `${BOB}=${publicKeyFingerprint(bob.publicKey)}` });
    expect(run.code).toBe(1);
    expect(run.error?.message).toStartWith(`${BOB} is named in --trust, but the server says: That user has no key pair yet. (no_key_pair); nothing was sent.`);
    expect(rotationsSent(run.requests)).toEqual([]);
  });

  test("with Bob's key checked, the new key is wrapped for him too", async () => {
    const run = await rotate(bob.publicKey, { trust: `${BOB}=${publicKeyFingerprint(bob.publicKey)}` });
    expect([run.code, run.error]).toEqual([0, null]);
    expect(rotationsSent(run.requests).map((r) => (r.body as { wrapped: Array<{ user: string }> }).wrapped.map((w) => w.user))).toEqual([[ME, BOB]]);
  });
});
