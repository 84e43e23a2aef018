/**
 * A user's E2EE key pair belongs to the whole account: replacing it drops the workspace keys
 * wrapped to the old one in every workspace of every organization. So only a credential for
 * the account (iam:self, restricted to no organization or workspace) replaces it (found in review).
 */
import { expect, test } from "bun:test";
import { generateUserKeyPair } from "../../../plugins/secrets/e2ee.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const keyPair = () => ({ public_key: generateUserKeyPair().publicKey, sealed_private_key: `c1.pk.${"A".repeat(80)}` });

test("a token restricted to an organization or a workspace, or without iam:self, cannot replace the key pair", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const first = keyPair();
  expect((await c.send("PUT", "/v1/secrets/me/keypair", owner, { json: first })).status).toBe(200);
  const pat = async (json: Record<string, unknown>) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "t", ...json } })).body.token as string;

  for (const restriction of [{ workspace: ws }, { organization: org }]) {
    const refused = await c.send("PUT", "/v1/secrets/me/keypair", await pat({ scopes: ["write", "iam:self"], ...restriction }), { json: keyPair() });
    expect([refused.status, refused.body.code]).toEqual([403, "forbidden"]);
  }
  const withoutSelf = await c.send("PUT", "/v1/secrets/me/keypair", await pat({ scopes: ["write"] }), { json: keyPair() });
  expect([withoutSelf.status, withoutSelf.body.code]).toEqual([403, "insufficient_scope"]);
  expect((await c.send("GET", "/v1/secrets/me/keypair", owner)).body.public_key).toBe(first.public_key);

  // A credential for the account replaces it.
  expect((await c.send("PUT", "/v1/secrets/me/keypair", await pat({ scopes: ["iam:self"] }), { json: keyPair() })).status).toBe(200);
});
