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
