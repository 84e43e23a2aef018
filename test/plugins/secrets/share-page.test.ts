/**
 * The share page's script, run here with the same WebCrypto API a browser has: it must derive
 * the view proof and decrypt exactly as the CLI does (share-crypto.ts).
 */
import { describe, expect, test } from "bun:test";
import { SHARE_PAGE_CSP, SHARE_PAGE_JS } from "../../../plugins/secrets/share-page.ts";
import { createShareSecret, shareViewProof } from "../../../plugins/secrets/share-crypto.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type PageFunctions = { viewProof(linkKey: string): Promise<string>; openShare(ciphertext: string, linkKey: string): Promise<string> };
const page = new Function(`${SHARE_PAGE_JS}; return { viewProof, openShare };`)() as PageFunctions;

describe("the share page's script", () => {
  test("derives the CLI's view proof and opens what the CLI made", async () => {
    for (const value of ["s3cret", "", "multi\nline ünïcode ✓ \u{1F510}"]) {
      const made = await createShareSecret(value);
      expect(await page.viewProof(made.linkKey)).toBe(shareViewProof(made.linkKey));
      expect(await page.openShare(made.ciphertext, made.linkKey)).toBe(value);
    }
  });

  test("refuses a wrong key, a damaged ciphertext, and a passphrase link (a browser has no argon2id)", async () => {
    const made = await createShareSecret("value");
    const other = await createShareSecret("other");
    await expect(page.openShare(made.ciphertext, other.linkKey)).rejects.toThrow("wrong or damaged");
    // A character in the middle: every one of its bits is data (the last one may be padding bits only).
    const middle = Math.floor(made.ciphertext.length * 0.75);
    const damaged = made.ciphertext.slice(0, middle) + (made.ciphertext[middle] === "A" ? "B" : "A") + made.ciphertext.slice(middle + 1);
    await expect(page.openShare(damaged, made.linkKey)).rejects.toThrow();
    const locked = await createShareSecret("value", "a passphrase");
    await expect(page.openShare(locked.ciphertext, locked.linkKey)).rejects.toThrow("passphrase");
  });
});

describe("the share page over HTTP", () => {
  test("served with a strict CSP; peeking spends no view", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const made = await createShareSecret("peek at me");
    const share = await c.send("POST", `/v1/secrets/orgs/${c.owner.organization}/shares`, owner, { json: { ciphertext: made.ciphertext, view_proof: shareViewProof(made.linkKey), passphrase: false } });
    const html = await c.send("GET", `/v1/secrets/shares/${share.body.id}`);
    expect(html.headers.get("content-type")).toStartWith("text/html");
    expect(html.headers.get("content-security-policy")).toBe(SHARE_PAGE_CSP);
    expect(html.text).toContain('<script src="../share-page.js"');
    expect((await c.send("GET", "/v1/secrets/share-page.js")).text).toBe(SHARE_PAGE_JS);
    const proof = { json: { proof: shareViewProof(made.linkKey) } };
    for (let i = 0; i < 3; i++) expect((await c.send("POST", `/v1/secrets/shares/${share.body.id}/peek`, undefined, proof)).body).toMatchObject({ passphrase: false, views_left: 1 });
    expect((await c.send("POST", `/v1/secrets/shares/${share.body.id}/view`, undefined, proof)).status).toBe(200);
    expect((await c.send("POST", `/v1/secrets/shares/${share.body.id}/peek`, undefined, proof)).status).toBe(410);
  });
});
