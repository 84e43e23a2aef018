/**
 * A copy of a workspace key wrapped to a key pair its member replaced meanwhile: the client
 * fetched their public key, they replaced their key pair, the copy landed. It opens with nothing
 * they hold, yet counted them a holder, so the last real holder could then replace their own key
 * pair and the workspace key was lost (found in review). A grant or rotation names the public
 * key each copy is wrapped to, and is refused (409) if it is no longer the member's.
 */
import { describe, expect, test } from "bun:test";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { generateUserKeyPair, newWorkspaceKey, publicKeyFingerprint, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";
import { encryptedForThree } from "../../helpers/e2ee.ts";
import { BOB, e2eeCliFixture, ME, WS } from "../../helpers/e2ee-cli.ts";

const newCitadel = stoppedAfterEach();

/** The owner alone holds the key; Bob, a member with a key pair, holds none (revoked), nor Carol. */
async function heldByOwnerOnly() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const three = await encryptedForThree(c, owner, ws);
  for (const user of [three.bob.id, three.carol.id]) expect((await c.send("DELETE", `${three.base}/e2ee/keys/${user}`, owner)).status).toBe(200);
  const holders = async () => ((await c.send("GET", `${three.base}/e2ee/keys`, owner)).body.items as Array<{ user: string }>).map((h) => h.user);
  const events = (action: string) => c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = ?").get(action) as { n: number };
  const replaceKeyPair = (token: string) => c.send("PUT", "/v1/secrets/me/keypair", token, { json: { public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"B".repeat(80)}` } });
  return { c, owner, ws, ...three, holders, events, replaceKeyPair };
}

const REPLACED = "That member's key pair was replaced meanwhile: the copy is wrapped to the public key it had, which opens nothing now. Nothing was changed; run the command again (it fetches the current public key: check its fingerprint anew).";

describe("a copy wrapped to a key pair replaced meanwhile (found in review)", () => {
  test("a grant naming the public key fetched before Bob replaced his: 409, no holder added, so the owner stays the only holder and cannot replace theirs", async () => {
    const { c, owner, ws, base, me, bob, v1, holders, events, replaceKeyPair } = await heldByOwnerOnly();
    const fetched = (await c.send("GET", `${base}/e2ee/public-keys/${bob.id}`, owner)).body.public_key as string;
    expect((await replaceKeyPair(bob.token)).status).toBe(200);
    const grants = events("secrets.e2ee.grant").n;

    const granted = await c.send("PUT", `${base}/e2ee/keys/${bob.id}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, fetched, { workspace: ws, user: bob.id }), public_key: fetched } });

    expect([granted.status, granted.body.detail]).toEqual([409, REPLACED]);
    expect(await holders()).toEqual([me]);
    expect(events("secrets.e2ee.grant").n).toBe(grants);
    const mine = await replaceKeyPair(owner);
    expect(mine.status).toBe(409);
    expect(mine.body.detail).toStartWith(`You are the only holder of the key of workspace ${ws}`);
  });

  test("a grant naming Bob's current public key: 200, he holds it", async () => {
    const { c, owner, ws, base, me, bob, v1, holders, replaceKeyPair } = await heldByOwnerOnly();
    expect((await replaceKeyPair(bob.token)).status).toBe(200);
    const current = (await c.send("GET", `${base}/e2ee/public-keys/${bob.id}`, owner)).body.public_key as string;

    const granted = await c.send("PUT", `${base}/e2ee/keys/${bob.id}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, current, { workspace: ws, user: bob.id }), public_key: current } });

    expect(granted.status).toBe(200);
    expect((await holders()).sort()).toEqual([me, bob.id].sort());
  });

  test("a rotation naming a public key replaced meanwhile: 409, nothing changed; naming the current ones: 200", async () => {
    const { c, owner, ws, base, me, bob, pairs, holders, replaceKeyPair } = await heldByOwnerOnly();
    const fresh = newWorkspaceKey();
    const copy = (user: string, publicKey: string) => ({ user, wrapped: wrapWorkspaceKey(fresh, publicKey, { workspace: ws, user }), public_key: publicKey });
    const old = pairs.get(bob.id)!.publicKey;
    expect((await replaceKeyPair(bob.token)).status).toBe(200);

    const refused = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [], wrapped: [copy(me, pairs.get(me)!.publicKey), copy(bob.id, old)] } });

    expect([refused.status, refused.body.detail]).toEqual([409, REPLACED.replace("That member's", `${bob.id}'s`)]);
    expect((await c.send("GET", `${base}/settings`, owner)).body.e2ee).toBe(true);
    expect(c.kernel.store.db.query("SELECT e2ee_key_version AS v FROM secrets_workspaces WHERE workspace_id = ?").get(ws)).toEqual({ v: 1 });
    expect(await holders()).toEqual([me]);

    const current = (await c.send("GET", `${base}/e2ee/public-keys/${bob.id}`, owner)).body.public_key as string;
    const rotated = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [], wrapped: [copy(me, pairs.get(me)!.publicKey), copy(bob.id, current)] } });
    expect([rotated.status, rotated.body.key_version]).toEqual([200, 2]);
  });

  test("a copy from a client that names no public key (one from before) is taken as it was", async () => {
    const { c, owner, ws, base, me, bob, pairs, v1, holders } = await heldByOwnerOnly();
    const granted = await c.send("PUT", `${base}/e2ee/keys/${bob.id}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, pairs.get(bob.id)!.publicKey, { workspace: ws, user: bob.id }) } });
    expect(granted.status).toBe(200);
    expect((await holders()).sort()).toEqual([me, bob.id].sort());
  });

  test("a public key that is none: 422 naming the field", async () => {
    const { c, owner, ws, base, me, bob, pairs, v1 } = await heldByOwnerOnly();
    const wrapped = wrapWorkspaceKey(v1, pairs.get(bob.id)!.publicKey, { workspace: ws, user: bob.id });
    const granted = await c.send("PUT", `${base}/e2ee/keys/${bob.id}`, owner, { json: { wrapped, public_key: "not a key" } });
    expect([granted.status, granted.body.errors]).toEqual([422, [{ field: "public_key", message: "the X25519 public key the copy is wrapped to, base64url" }]]);
    const mine = { user: me, wrapped: wrapWorkspaceKey(newWorkspaceKey(), pairs.get(me)!.publicKey, { workspace: ws, user: me }), public_key: "A".repeat(42) };
    const rotated = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [], wrapped: [mine] } });
    expect([rotated.status, rotated.body.errors]).toEqual([422, [{ field: "wrapped.public_key", message: "the X25519 public key the copy is wrapped to, base64url" }]]);
  });
});

describe("citadel secrets e2ee grant and rotate name the public key each copy is wrapped to (found in review)", () => {
  const { mine, bob, workspaceKey, phraseFile, newHome, sealed: sealedKey } = e2eeCliFixture("e2ee-wrapped-for");

  /** Runs a command against a server where I hold the key, and Bob (a member) has a key pair. */
  async function run(words: string, options: Record<string, string>, args: string[] = []) {
    const sealed = await sealedKey();
    const answer = (r: SentRequest): unknown => {
      const route = `${r.method} ${r.path}`;
      if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 1, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
      if (route === "GET /v1/iam/me") return { id: ME };
      if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
      if (route === `GET ${WS}/e2ee/keys`) return { items: [{ user: ME }, { user: BOB }] };
      if (route === `GET ${WS}/e2ee/public-keys/${BOB}`) return { user: BOB, public_key: bob.publicKey };
      if (route === `GET ${WS}/settings`) return { environments: [] };
      if (route === `PUT ${WS}/e2ee/keys/${BOB}`) return { items: [] };
      if (route === `POST ${WS}/e2ee/rotate`) return { key_version: 2, reencrypted: 0, holders: [ME, BOB] };
      throw new Error(`unexpected request ${route}`);
    };
    return runCommand(secretsCommands, words, { args, options: { workspace: "ws_1", "passphrase-file": phraseFile, ...options }, answer, configHome: newHome() });
  }
  const sent = (requests: SentRequest[], method: string) => requests.filter((r) => r.method === method).map((r) => r.body);

  test("grant: the copy names Bob's public key as the server gave it", async () => {
    const granted = await run("secrets e2ee grant", { fingerprint: publicKeyFingerprint(bob.publicKey) }, [BOB]);
    expect([granted.code, granted.error]).toEqual([0, null]);
    expect((sent(granted.requests, "PUT") as Array<{ public_key: string }>).map((b) => b.public_key)).toEqual([bob.publicKey]);
  });

  test("rotate: each copy names the public key it is wrapped to (yours, proven by your private key; Bob's as fetched)", async () => {
    const rotated = await run("secrets e2ee rotate", { trust: `${BOB}=${publicKeyFingerprint(bob.publicKey)}` });
    expect([rotated.code, rotated.error]).toEqual([0, null]);
    const [body] = sent(rotated.requests, "POST") as Array<{ wrapped: Array<{ user: string; public_key: string }> }>;
    expect(body!.wrapped.map((w) => [w.user, w.public_key])).toEqual([
      [ME, mine.publicKey],
      [BOB, bob.publicKey],
    ]);
  });
});
