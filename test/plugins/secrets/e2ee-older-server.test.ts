/**
 * citadel secrets e2ee grant, rotate and enable against a server from before f4eae44, which
 * refuses a copy naming its public key (422 "public_key: unknown field"): they failed, and
 * enable, having turned encryption on, left the workspace encrypted with nobody holding its key
 * and refused to run again (found in review). The copy is sent once more without the field;
 * enable turns encryption off again when its own copy is not stored, whatever the reason.
 */
import { describe, expect, test } from "bun:test";
import { ApiError } from "../../../src/cli/api-client.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { publicKeyFingerprint, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";
import { BOB, e2eeCliFixture, ME, WS } from "../../helpers/e2ee-cli.ts";

const fixture = e2eeCliFixture("e2ee-older-server");
const { phraseFile, mine, bob, workspaceKey, newHome } = fixture;
const sealed = await fixture.sealed();

/** The older server's refusal of a field it does not know, as the CLI's client makes it (the first field named). */
const unknownField = (field: string) => new ApiError(`${field}: unknown field (validation_failed, request 6849abf839be5b55-j)`, 422, "validation_failed");

/** The field the older server names first in a body with copies naming their public key; none when the body has none. */
function publicKeyField(body: unknown): string | null {
  const { public_key, wrapped } = body as { public_key?: string; wrapped?: unknown };
  if (public_key !== undefined) return "public_key";
  const named = Array.isArray(wrapped) ? wrapped.findIndex((w: { public_key?: string }) => w.public_key !== undefined) : -1;
  return named >= 0 ? `wrapped[${named}].public_key` : null;
}

/**
 * A server where I hold the key and Bob, a member, has a key pair: from before f4eae44 unless
 * `older` is false; `write` answers what it takes of a PUT, POST or PATCH (default: a rotation
 * to version 2, {} for the others).
 */
function server(encrypted: boolean, { older = true, write }: { older?: boolean; write?: (r: SentRequest) => unknown } = {}) {
  return (r: SentRequest): unknown => {
    const route = `${r.method} ${r.path}`;
    if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 1, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
    if (route === "GET /v1/iam/me") return { id: ME };
    if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
    if (route === `GET ${WS}/e2ee/keys`) return { items: [{ user: ME }, { user: BOB }] };
    if (route === `GET ${WS}/e2ee/public-keys/${BOB}`) return { user: BOB, public_key: bob.publicKey };
    if (route === `GET ${WS}/settings`) return { e2ee: encrypted, environments: [] };
    if (r.method === "GET") throw new Error(`unexpected request ${route}`);
    const field = older && publicKeyField(r.body);
    if (field) throw unknownField(field);
    if (write) return write(r);
    if (route === `POST ${WS}/e2ee/rotate`) return { key_version: 2, reencrypted: 0, holders: [ME, BOB] };
    return {};
  };
}

const run = (words: string, answer: (r: SentRequest) => unknown, options: Record<string, string> = {}, args: string[] = [], configHome = newHome()) =>
  runCommand(secretsCommands, words, { args, options: { workspace: "ws_1", "passphrase-file": phraseFile, ...options }, answer, configHome });
const writes = (requests: SentRequest[]) => requests.filter((r) => r.method !== "GET").map((r) => [r.method, r.path, r.body]);

describe("citadel secrets e2ee against a server from before copies named their public key (found in review)", () => {
  test("grant: refused naming public_key, sent again without it; Bob gets his copy", async () => {
    const granted = await run("secrets e2ee grant", server(true), { fingerprint: publicKeyFingerprint(bob.publicKey) }, [BOB]);
    expect([granted.code, granted.error]).toEqual([0, null]);
    const puts = writes(granted.requests);
    expect(puts.map(([method, path]) => `${method} ${path}`)).toEqual([`PUT ${WS}/e2ee/keys/${BOB}`, `PUT ${WS}/e2ee/keys/${BOB}`]);
    const [named, plain] = puts.map(([, , body]) => body as { wrapped: string; public_key?: string });
    expect([named!.public_key, Object.keys(plain!)]).toEqual([bob.publicKey, ["wrapped"]]);
    expect(plain!.wrapped).toBe(named!.wrapped);
  });

  test("rotate: refused naming wrapped[0].public_key, sent again with no copy naming one; the new key is version 2", async () => {
    const rotated = await run("secrets e2ee rotate", server(true), { trust: `${BOB}=${publicKeyFingerprint(bob.publicKey)}` });
    expect([rotated.code, rotated.error]).toEqual([0, null]);
    const posts = writes(rotated.requests);
    expect(posts).toHaveLength(2);
    const [named, plain] = posts.map(([, , body]) => body as { from_version: number; wrapped: Array<{ user: string; wrapped: string; public_key?: string }> });
    expect(named!.wrapped.map((w) => w.public_key)).toEqual([mine.publicKey, bob.publicKey]);
    expect(plain!.wrapped).toEqual(named!.wrapped.map(({ user, wrapped }) => ({ user, wrapped })));
    expect(plain!.from_version).toBe(1);
    expect(rotated.stdout).toContain("key version 2");
  });

  test("enable: its own copy refused naming public_key, sent again without it; encryption stays on", async () => {
    const enabled = await run("secrets e2ee enable", server(false));
    expect([enabled.code, enabled.error]).toEqual([0, null]);
    const sent = writes(enabled.requests);
    expect(sent.map(([method, path, body]) => [method, path, Object.keys(body as object)])).toEqual([
      ["PATCH", `${WS}/settings`, ["e2ee"]],
      ["PUT", `${WS}/e2ee/keys/${ME}`, ["wrapped", "public_key"]],
      ["PUT", `${WS}/e2ee/keys/${ME}`, ["wrapped"]],
    ]);
    expect(sent[0]![2]).toEqual({ e2ee: true });
  });

  test("a 422 naming another field is not sent again", async () => {
    const refusal = new ApiError("wrapped: not a wrapped workspace key (validation_failed, request 6849abf839be5b55-j)", 422, "validation_failed");
    const granted = await run("secrets e2ee grant", (r) => {
      if (r.method === "PUT") throw refusal;
      return server(true)(r);
    }, { fingerprint: publicKeyFingerprint(bob.publicKey) }, [BOB]);
    expect(granted.error).toBe(refusal);
    expect(writes(granted.requests)).toHaveLength(1);
  });
});

describe("citadel secrets e2ee enable whose own copy of the key is not stored (found in review)", () => {
  const turnedOn = (failure: Error) => (r: SentRequest) => {
    if (r.method === "PUT") throw failure;
    return {};
  };

  test("encryption turned off again, saying so; run again on the same machine, it is not refused", async () => {
    const home = newHome();
    const failure = new ApiError("The server could not complete the request. (internal_error)", 500, "internal_error");
    const enabled = await run("secrets e2ee enable", server(false, { older: false, write: turnedOn(failure) }), {}, [], home);
    expect(enabled.code).toBe(1);
    expect(enabled.error!.message).toBe(`ws_1: your copy of its new key was not stored (${failure.message}); end-to-end encryption was turned off again, nothing else changed: run the command again`);
    expect(writes(enabled.requests).map(([method, , body]) => [method, method === "PATCH" ? body : undefined])).toEqual([
      ["PATCH", { e2ee: true }],
      ["PUT", undefined],
      ["PATCH", { e2ee: false }],
    ]);

    const again = await run("secrets e2ee enable", server(false), {}, [], home);
    expect([again.code, again.error]).toEqual([0, null]);
  });

  test("turning it off fails too: the error says the workspace is encrypted with nobody holding its key, and how to recover", async () => {
    const enabled = await run(
      "secrets e2ee enable",
      server(false, {
        older: false,
        write: (r) => {
          if (r.method === "PUT") throw new ApiError("cannot reach Citadel at https://citadel.test:8443 (ECONNRESET); is it running?");
          if ((r.body as { e2ee: boolean }).e2ee === false) throw new ApiError("cannot reach Citadel at https://citadel.test:8443 (ECONNREFUSED); is it running?");
          return {};
        },
      }),
    );
    expect(enabled.code).toBe(1);
    expect(enabled.error!.message).toContain("turning end-to-end encryption off again failed (cannot reach Citadel at https://citadel.test:8443 (ECONNREFUSED); is it running?): it is encrypted and nobody holds its key.");
    expect(enabled.error!.message).toContain(`Turn it off (PATCH ${WS}/settings {"e2ee": false}), run citadel secrets e2ee forget -w ws_1, and enable it again`);
  });
});
