/**
 * A credential is checked when its request arrives and changed in a write that runs later:
 * these requests race a revocation (or each other) in between. Whatever the order, a revoked
 * token makes nothing that outlives it, and a rotation is used once (found in review).
 */
import { describe, expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

const newCitadel = stoppedAfterEach();

async function owner() {
  const c = await newCitadel();
  return { c, session: await c.login(c.owner.email, c.owner.password), org: c.owner.organization };
}

describe("rotation", () => {
  test("a token revoked while it is being rotated stays revoked: the rotation is refused", async () => {
    const { c, session } = await owner();
    const leaked = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "leaked", scopes: ["read", "iam:self"] } })).body;
    const [revoked, rotated] = await Promise.all([
      c.send("DELETE", `/v1/iam/me/tokens/${leaked.id}`, session),
      c.send("POST", `/v1/iam/me/tokens/${leaked.id}/rotate`, leaked.token),
    ]);
    expect([revoked.status, rotated.status]).toEqual([200, 404]);
    expect(rotated.body.token).toBeUndefined();
    const live = (await c.send("GET", "/v1/iam/me/tokens", session)).body.items as Array<{ name: string }>;
    expect(live.filter((t) => t.name === "leaked")).toEqual([]);
    const rotations = c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.token.rotate' AND outcome = 'success'").get();
    expect(rotations).toEqual({ n: 0 });
  });

  test("a revocation that comes after a rotation of the same token says so (409), not 200: the rotated copy lives", async () => {
    const { c, session } = await owner();
    const leaked = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "leaked", scopes: ["read", "iam:self"] } })).body;
    const [rotated, revoked] = await Promise.all([
      c.send("POST", `/v1/iam/me/tokens/${leaked.id}/rotate`, leaked.token),
      c.send("DELETE", `/v1/iam/me/tokens/${leaked.id}`, session),
    ]);
    expect([rotated.status, revoked.status, revoked.body.code]).toEqual([200, 409, "conflict"]);
    expect(revoked.body.detail).toContain("rotated meanwhile");
  });

  test("concurrent rotations of one token: one succeeds, the others find it gone", async () => {
    const { c, session } = await owner();
    const pat = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "ci", scopes: ["read"] } })).body;
    const answers = await Promise.all(Array.from({ length: 5 }, () => c.send("POST", `/v1/iam/me/tokens/${pat.id}/rotate`, session)));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 404, 404, 404, 404]);
    const working = [];
    for (const a of answers) if (a.body.token && (await c.send("GET", "/v1/system/info", a.body.token)).status === 200) working.push(a.body.id);
    expect(working).toHaveLength(1);
  });
});

describe("a credential is not made by a maker revoked meanwhile: it would escape the revocation", () => {
  type Citadel = Awaited<ReturnType<typeof owner>>["c"];
  // The refusal: 401, and for the exchange its OAuth error (400 invalid_request, RFC 8693 section 2.2.2).
  const children: Array<[string, (c: Citadel, maker: string, org: string) => ReturnType<Citadel["send"]>, number]> = [
    ["a token", (c, maker) => c.send("POST", "/v1/iam/me/tokens", maker, { json: { name: "child", scopes: ["iam:self"] } }), 401],
    ["an API key", (c, maker, org) => c.send("POST", `/v1/iam/orgs/${org}/api-keys`, maker, { json: { service: "system", name: "child", scopes: ["system:read"] } }), 401],
    ["a console token", (c, maker) => c.send("POST", "/v1/iam/console-tokens", maker), 401],
    ["a workload token (exchange)", (c, maker) => c.send("POST", "/oauth/token", undefined, { json: { grant_type: TOKEN_EXCHANGE, subject_token: maker, scope: "iam:self" } }), 400],
  ];
  for (const [what, make, refused] of children) {
    test(what, async () => {
      const { c, session, org } = await owner();
      expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session)).status).toBe(200);
      const maker = (await c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "maker", scopes: ["iam:self", "iam:write", "system:read", "shell:connect"] } })).body;
      const [revoked, child] = await Promise.all([c.send("DELETE", `/v1/iam/me/tokens/${maker.id}`, session), make(c, maker.token, org)]);
      expect([revoked.status, child.status]).toEqual([200, refused]);
      const made = c.kernel.store.db.query("SELECT id FROM credentials WHERE parent_id = ? AND revoked_at IS NULL").all(maker.id);
      expect(made).toEqual([]);
    });
  }
});

test("a token made for a workspace while it is being deleted is refused, not left working (found in review)", async () => {
  const { c, session, org } = await owner();
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, session, { json: { name: "gone" } })).body.id as string;
  const confirm = (await c.send("DELETE", `/v1/iam/workspaces/${ws}`, session)).body.confirmation_token as string;
  const [deleted, made] = await Promise.all([
    c.send("DELETE", `/v1/iam/workspaces/${ws}`, session, { headers: { "x-citadel-confirm": confirm } }),
    c.send("POST", "/v1/iam/me/tokens", session, { json: { name: "r", scopes: ["iam:self", "iam:read"], workspace: ws } }),
  ]);
  expect([deleted.status, made.status]).toEqual([200, 422]);
  expect(made.body.token).toBeUndefined();
});

test("an API key revoked twice at once: one revokes it, the other answers 404; one audit event (found in review: 200 twice, two events)", async () => {
  const { c, session, org } = await owner();
  expect((await c.send("PUT", `/v1/iam/orgs/${org}/services/system`, session)).status).toBe(200);
  const key = (await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, session, { json: { service: "system", name: "k", scopes: ["system:read"] } })).body.id as string;
  const answers = await Promise.all([1, 2].map(() => c.send("DELETE", `/v1/iam/orgs/${org}/api-keys/${key}`, session)));
  expect(answers.map((a) => [a.status, a.body.code]).sort()).toEqual([
    [200, undefined],
    [404, "not_found"],
  ]);
  expect(c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'iam.api_key.revoke'").get()).toEqual({ n: 1 });
});
