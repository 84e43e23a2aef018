/** Share links over HTTP, in-process: what review found of guessing, revoking, listing and sources. */
import { describe, expect, test } from "bun:test";
import { createShareSecret, sharePassphraseProof, shareViewProof, type ShareKdf } from "../../../plugins/secrets/share-crypto.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

async function setup(config: Record<string, Record<string, unknown>> = {}) {
  const c = await testCitadel({ config });
  const owner = await c.login(c.owner.email, c.owner.password);
  return { c, owner, org: c.owner.organization };
}

const PHRASE = "tell-them-by-phone";

/** A link made as `citadel share --passphrase` makes it. */
async function lockedShare(c: App, owner: string, org: string, json: Record<string, unknown> = {}) {
  const sealed = await createShareSecret("locked value", PHRASE);
  const body = { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true, passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf, ...json };
  const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: body });
  expect(made.status).toBe(200);
  return { id: made.body.id as string, linkKey: sealed.linkKey, proof: shareViewProof(sealed.linkKey), kdf: sealed.passphraseKdf as ShareKdf };
}

const view = (c: App, id: string, proof: string, passphraseProof: string) => c.send("POST", `/v1/secrets/shares/${id}/view`, undefined, { json: { proof, passphrase_proof: passphraseProof } });
/** A problem document, less what differs from one request to the next. */
const answer = (res: { status: number; body: Record<string, unknown> }) => {
  const { request_id: _, ...rest } = res.body;
  return { status: res.status, ...rest };
};
const viewReasons = (c: App, id: string) =>
  (c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'secrets.share.view' AND resource_id = ? ORDER BY seq").all(id) as Array<{ reason: string }>).map((e) => e.reason);

describe("a burst of guessed passphrases (found in review: every guess in a burst was compared, and the right one answered differently)", () => {
  test("no more than 5 wrong ones are compared; once burned, the right one gets the very answer the wrong ones get", async () => {
    // More tries from one address than the per-address auth bucket allows: lifted here, to send the burst.
    const { c, owner, org } = await setup({ rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } });
    const link = await lockedShare(c, owner, org);
    const right = await sharePassphraseProof(link.linkKey, PHRASE, link.kdf);
    const guesses = Array.from({ length: 20 }, (_, i) => `wrong-guess-${i}`.padEnd(43, "x"));
    const answers = await Promise.all([...guesses, right].map((guess) => view(c, link.id, link.proof, guess)));
    const reasons = viewReasons(c, link.id);
    expect(reasons.filter((r) => r === "wrong passphrase")).toHaveLength(5); // compared: 5 wrong ones, no more
    expect(reasons.filter((r) => r === "revoked")).toHaveLength(16); // the 15 other wrong ones and the right one, refused uncompared
    const afterTheBurn = answers.filter((a) => a.status === 410 && a.body.detail === "This share link is revoked.");
    expect(afterTheBurn).toHaveLength(16);
    expect(answer(answers.at(-1)!)).toEqual(answer(afterTheBurn[0]!));
    expect(answers.map((a) => a.body.ciphertext)).toEqual(Array(21).fill(undefined));
  });
});

describe("revoking a link that no longer opens (found in review: a second revoke answered 200 and was audited as one more)", () => {
  const revoke = (c: App, token: string, org: string, id: string) => c.send("DELETE", `/v1/secrets/orgs/${org}/shares/${id}`, token);
  const revokeEvents = (c: App, id: string) => c.kernel.store.db.query("SELECT outcome, reason FROM audit_events WHERE action = 'secrets.share.revoke' AND resource_id = ? ORDER BY seq").all(id);
  const stateOf = async (c: App, token: string, org: string, id: string) =>
    ((await c.send("GET", `/v1/secrets/orgs/${org}/shares`, token)).body.items as Array<{ id: string; state: string }>).find((s) => s.id === id)?.state;

  test("revoked, burned, used up or expired: 409 conflict naming why, no event, its state as it was", async () => {
    const { c, owner, org } = await setup({ rate_limit: { auth: { per_second: 1e6, burst: 1e6 } } });
    const revoked = await lockedShare(c, owner, org);
    expect((await revoke(c, owner, org, revoked.id)).status).toBe(200);
    const again = await revoke(c, owner, org, revoked.id);
    expect([again.status, again.body.code, again.body.detail]).toEqual([409, "conflict", "This share link is revoked already: there is nothing to revoke."]);
    expect(revokeEvents(c, revoked.id)).toEqual([{ outcome: "success", reason: null }]);

    const burned = await lockedShare(c, owner, org);
    for (let i = 0; i < 5; i++) await view(c, burned.id, burned.proof, `wrong-guess-${i}`.padEnd(43, "x"));
    expect((await revoke(c, owner, org, burned.id)).status).toBe(409);
    expect(revokeEvents(c, burned.id)).toEqual([{ outcome: "success", reason: "burned: 5 wrong passphrases" }]);

    const used = await lockedShare(c, owner, org);
    expect((await view(c, used.id, used.proof, await sharePassphraseProof(used.linkKey, PHRASE, used.kdf))).status).toBe(200);
    const usedUp = await revoke(c, owner, org, used.id);
    expect([usedUp.status, usedUp.body.detail]).toEqual([409, "This share link is used up already: there is nothing to revoke."]);
    expect([revokeEvents(c, used.id), await stateOf(c, owner, org, used.id)]).toEqual([[], "used"]);

    const timed = await lockedShare(c, owner, org, { ttl_hours: 1 });
    c.clock.advance(3_600_000);
    const expired = await revoke(c, owner, org, timed.id);
    expect([expired.status, expired.body.detail]).toEqual([409, "This share link is expired already: there is nothing to revoke."]);
    expect([revokeEvents(c, timed.id), await stateOf(c, owner, org, timed.id)]).toEqual([[], "expired"]);
  });

  test("two revocations sent at once: one succeeds, one event", async () => {
    const { c, owner, org } = await setup();
    const link = await lockedShare(c, owner, org);
    const both = await Promise.all([revoke(c, owner, org, link.id), revoke(c, owner, org, link.id)]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(revokeEvents(c, link.id)).toHaveLength(1);
  });
});

describe("a link carrying a stored secret (found in review: its source was looked up past the workspace's allowlist)", () => {
  test("the workspace's address allowlist is checked before the secret is looked up: from outside it, a name that exists and one that does not get the same 403", async () => {
    const { c, owner, org } = await setup();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "locked" } })).body.id as string;
    expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/REAL`, owner, { json: { value: "v" } })).status).toBe(200);
    expect((await c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: ["203.0.113.0/24"] }, headers: { "x-test-peer": "203.0.113.5" } })).status).toBe(200); // set from inside it (no lockout)
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const share = (name: string, peer = "127.0.0.1") =>
      c.send("POST", `/v1/secrets/orgs/${org}/shares`, editor.token, { json: { ciphertext: "c1.sh.x", view_proof: "p".repeat(43), passphrase: false, source: { workspace: ws, environment: "production", name } }, headers: { "x-test-peer": peer } });
    const read = await c.send("GET", `/v1/secrets/workspaces/${ws}/environments/production/secrets/REAL`, editor.token);
    const [real, missing] = [await share("REAL"), await share("MISSING")];
    expect([real.status, real.body.detail]).toEqual([403, read.body.detail]);
    expect([missing.status, missing.body.detail]).toEqual([403, read.body.detail]);
    expect(read.body.detail).toBe("The workspace does not allow requests from your address.");
    // From inside it, as before: made for a secret that exists, refused for one that does not.
    expect((await share("REAL", "203.0.113.5")).status).toBe(200);
    expect((await share("MISSING", "203.0.113.5")).status).toBe(422);
    expect(c.kernel.store.db.query("SELECT count(*) AS n FROM secrets_shares").get()).toEqual({ n: 1 });
  });

  test("a token restricted to a workspace makes no link at all: the guard refuses it on the organization's route (what made a check of it in the handler dead code)", async () => {
    const { c, owner, org } = await setup();
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "one" } })).body.id as string;
    await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/REAL`, owner, { json: { value: "v" } });
    const narrow = await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "one workspace", scopes: ["secrets:read", "secrets:write"], workspace: ws } });
    expect(narrow.status).toBe(200);
    const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, narrow.body.token, { json: { ciphertext: "c1.sh.x", view_proof: "p".repeat(43), passphrase: false, source: { workspace: ws, environment: "production", name: "REAL" } } });
    expect([made.status, made.body.detail]).toEqual([403, "This token is restricted to another workspace."]);
  });
});

describe("the list of share links, one page at a time (found in review: it stopped at 500, silently)", () => {
  /** `n` links of the organization, made straight in the store (the list reads no content), some at the same moment. */
  function manyLinks(c: App, org: string, n: number): string[] {
    const ids: string[] = [];
    const insert = c.kernel.store.db.query(
      "INSERT INTO secrets_shares (id, organization_id, created_by, ciphertext, view_proof_hash, passphrase, max_views, source, expires_at, created_at) VALUES (?, ?, 'usr_x', x'', x'00', 0, 1, NULL, ?, ?)",
    );
    for (let i = 0; i < n; i++) {
      const id = `shr_${String(i).padStart(14, "0")}`;
      insert.run(id, org, c.clock.now() + 3_600_000, c.clock.now() - Math.floor(i / 3) * 1000); // three to a moment
      ids.push(id);
    }
    return ids;
  }
  const list = (c: App, token: string, org: string, query = "") => c.send("GET", `/v1/secrets/orgs/${org}/shares${query}`, token);

  test("newest first, 100 to a page by default, next_cursor to the end: every link once, past 500", async () => {
    const { c, owner, org } = await setup();
    const ids = manyLinks(c, org, 510);
    // Newest first; among links made at the same moment, the greater id first.
    const moment = (id: string) => Math.floor(Number(id.slice(4)) / 3); // 0: the newest
    const expected = [...ids].sort((a, b) => moment(a) - moment(b) || b.localeCompare(a));
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const page = await list(c, owner, org, cursor === null ? "" : `?cursor=${cursor}`);
      expect(page.status).toBe(200);
      sizes.push(page.body.items.length);
      seen.push(...page.body.items.map((s: { id: string }) => s.id));
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    expect(sizes).toEqual([100, 100, 100, 100, 100, 10]);
    expect(seen).toEqual(expected);
    const whole = await list(c, owner, org, "?limit=1000");
    expect([whole.body.items.length, whole.body.next_cursor]).toEqual([510, null]);
  });

  test("a page ending between links made at the same moment goes on with the next of them; a cursor not made by the API, or a limit out of range, is refused naming it", async () => {
    const { c, owner, org } = await setup();
    manyLinks(c, org, 7);
    const first = await list(c, owner, org, "?limit=2");
    const second = await list(c, owner, org, `?limit=2&cursor=${first.body.next_cursor}`);
    expect([...first.body.items, ...second.body.items].map((s: { id: string }) => s.id)).toEqual(["shr_00000000000002", "shr_00000000000001", "shr_00000000000000", "shr_00000000000005"]);
    for (const query of ["?cursor=bm90IG1pbmU", `?cursor=${Buffer.from("share:1:shr_x'--").toString("base64url")}`]) {
      const bad = await list(c, owner, org, query);
      expect([bad.status, bad.body.errors?.[0]]).toEqual([422, { field: "query.cursor", message: "the cursor is not one this API returned" }]);
    }
    for (const limit of ["0", "1001"]) expect((await list(c, owner, org, `?limit=${limit}`)).status).toBe(422);
  });
});

describe("a view at the moment its link expires (found in review: 500, where it was 410)", () => {
  test("the clock reaching expires_at during the view's transaction: the view is decided on one reading of it (the last millisecond: counted), never a 500", async () => {
    const { c, owner, org } = await setup();
    const link = await lockedShare(c, owner, org, { ttl_hours: 1 });
    const right = await sharePassphraseProof(link.linkKey, PHRASE, link.kdf);
    const expiresAt = c.clock.now() + 3_600_000;
    c.clock.advance(3_600_000 - 1);
    // Inside the view's transaction, the first reading of the clock is the link's last
    // millisecond and every later one its expiry: as if the clock ticked mid-transaction.
    const { store } = c.kernel;
    const write = store.write;
    const writeNow = write.bind(store);
    const now = c.clock.now;
    store.write = (fn) =>
      writeNow((tx) => {
        let readings = 0;
        c.clock.now = () => (readings++ === 0 ? expiresAt - 1 : expiresAt);
        try {
          return fn(tx);
        } finally {
          c.clock.now = now;
        }
      });
    const answered = await view(c, link.id, link.proof, right).finally(() => (store.write = write));
    expect([answered.status, answered.body.ciphertext === undefined]).toEqual([200, false]);
    expect(viewReasons(c, link.id)).toEqual(["view 1 of 1"]);
  });
});
