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
