/** An end-to-end-encrypted workspace held by three members, as the E2EE tests need one. */
import { expect } from "bun:test";
import { createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from "node:crypto";
import { aesGcmEncrypt } from "../../src/crypto/aead.ts";
import { generateUserKeyPair, newWorkspaceKey, wrapWorkspaceKey } from "../../plugins/secrets/e2ee.ts";
import type { testCitadel } from "./citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

/**
 * Turns end-to-end encryption on for workspace `ws` and has its key (v1) held by the owner
 * (logged in as `owner`), Bob and Carol (added as editors), each with a key pair of their own.
 */
export async function encryptedForThree(c: App, owner: string, ws: string) {
  const base = `/v1/secrets/workspaces/${ws}`;
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const bob = await c.addUser(owner, "bob@example.org", "editor");
  const carol = await c.addUser(owner, "carol@example.org", "editor");
  const pairs = new Map([[me, generateUserKeyPair()], [bob.id, generateUserKeyPair()], [carol.id, generateUserKeyPair()]]);
  for (const [token, id] of [[owner, me], [bob.token, bob.id], [carol.token, carol.id]] as const) {
    await c.send("PUT", "/v1/secrets/me/keypair", token, { json: { public_key: pairs.get(id)!.publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` } });
  }
  await c.send("PATCH", `${base}/settings`, owner, { json: { e2ee: true } });
  const v1 = newWorkspaceKey();
  for (const id of [me, bob.id, carol.id]) {
    expect((await c.send("PUT", `${base}/e2ee/keys/${id}`, owner, { json: { wrapped: wrapWorkspaceKey(v1, pairs.get(id)!.publicKey, { workspace: ws, user: id }) } })).status).toBe(200);
  }
  /** `key` wrapped for each of `ids`, as a rotation sends it. */
  const wrappedFor = (key: Uint8Array, ...ids: string[]) => ids.map((id) => ({ user: id, wrapped: wrapWorkspaceKey(key, pairs.get(id)!.publicKey, { workspace: ws, user: id }) }));
  return { base, me, bob, carol, pairs, v1, wrappedFor };
}

/**
 * A value in the format before values named their version (`c1.v.`), as workspaces written
 * then hold them: made here, since citadel writes it no more (test/plugins/secrets/e2ee.test.ts
 * pins a value of the old code to this same format).
 */
export function encryptUnboundValue(workspaceKey: Uint8Array, plaintext: string, context: { workspace: string; environment: string; name: string }): string {
  const key = hkdfSync("sha256", workspaceKey, Buffer.alloc(0), "citadel e2ee value key v1", 32);
  const field = (s: string) => {
    const bytes = Buffer.from(s, "utf8");
    return Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (bytes.length >>> (24 - 8 * i)) & 0xff)), bytes]);
  };
  const aad = Buffer.concat([Buffer.from("c1.v", "ascii"), field(context.workspace), field(context.environment), field(context.name)]);
  const nonce = randomBytes(12);
  return "c1.v." + Buffer.concat([nonce, aesGcmEncrypt(new Uint8Array(key), nonce, Buffer.from(plaintext, "utf8"), aad)]).toString("base64url");
}

/**
 * A workspace key wrapped for `recipientPublicKey` carrying mark byte `mark`, as a later citadel
 * might mark it (wrapWorkspaceKey makes only the marks this one knows): the same X25519, HKDF and
 * AES-GCM as plugins/secrets/e2ee.ts, made here so a test can hand the CLI a mark it does not know.
 */
export function wrapWorkspaceKeyWithMark(workspaceKey: Uint8Array, recipientPublicKey: string, context: { workspace: string; user: string }, mark: number): string {
  const spki = (raw: Uint8Array) => createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b656e032100", "hex"), raw]), format: "der", type: "spki" });
  const rawPublic = (der: Buffer) => der.subarray(der.length - 32);
  const recipient = Buffer.from(recipientPublicKey, "base64url");
  const { privateKey: ephemeral, publicKey } = generateKeyPairSync("x25519");
  const ephemeralPublic = rawPublic(publicKey.export({ format: "der", type: "spki" }));
  const shared = diffieHellman({ privateKey: ephemeral, publicKey: spki(recipient) });
  const key = hkdfSync("sha256", shared, Buffer.concat([ephemeralPublic, recipient]), `citadel e2ee wrap v1|${context.workspace}|${context.user}`, 32);
  const field = (s: string) => {
    const bytes = Buffer.from(s, "utf8");
    return Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (bytes.length >>> (24 - 8 * i)) & 0xff)), bytes]);
  };
  const aad = Buffer.concat([Buffer.from("c1.wk", "ascii"), field(context.workspace), field(context.user)]);
  const nonce = randomBytes(12);
  const sealed = aesGcmEncrypt(new Uint8Array(key), nonce, Buffer.concat([workspaceKey, Buffer.from([mark])]), aad);
  return "c1.wk." + Buffer.concat([ephemeralPublic, nonce, sealed]).toString("base64url");
}
