import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { generateWebhookSecret, signWebhook, verifyWebhook } from "../../../plugins/secrets/webhook-signature.ts";

const secret = "whsec_test_secret";
const body = JSON.stringify({ id: "evt_1", type: "secret.updated", data: { name: "DB_PASSWORD" } });
const now = 1_750_000_000;

function delivery(at = now, b = body, s = secret) {
  const headers = signWebhook(s, b, at);
  return { secret, body: b, signature: headers["x-citadel-signature-256"], timestamp: headers["x-citadel-timestamp"], nowSeconds: now };
}

describe("signWebhook", () => {
  test("HMAC-SHA256 over `${timestamp}.${body}` with the whole secret string", () => {
    const headers = signWebhook(secret, body, now);
    const expected = createHmac("sha256", secret).update(`${now}.${body}`).digest("hex");
    expect(headers).toEqual({ "x-citadel-timestamp": String(now), "x-citadel-signature-256": `sha256=${expected}` });
    expect(headers["x-citadel-signature-256"]).toMatch(/^sha256=[0-9a-f]{64}$/);
  });

  test("refuses an empty secret and a non-integer timestamp", () => {
    expect(() => signWebhook("", body, now)).toThrow("may not be empty");
    expect(() => signWebhook(secret, body, 1.5)).toThrow("whole number");
    expect(() => signWebhook(secret, body, Number.NaN)).toThrow("whole number");
  });
});

describe("verifyWebhook", () => {
  test("a good delivery passes, at the edges of the window too", () => {
    expect(verifyWebhook(delivery())).toEqual({ ok: true });
    expect(verifyWebhook(delivery(now - 300))).toEqual({ ok: true });
    expect(verifyWebhook(delivery(now + 300))).toEqual({ ok: true });
    expect(verifyWebhook({ ...delivery(), signature: delivery().signature.toUpperCase().replace("SHA256=", "sha256=") })).toEqual({ ok: true });
    // Without nowSeconds, the clock is used.
    const fresh = signWebhook(secret, body, Math.floor(Date.now() / 1000));
    expect(verifyWebhook({ secret, body, signature: fresh["x-citadel-signature-256"], timestamp: fresh["x-citadel-timestamp"] })).toEqual({ ok: true });
  });

  test("a tampered body, a different secret or a re-dated signature is a mismatch", () => {
    expect(verifyWebhook({ ...delivery(), body: body.replace("DB_PASSWORD", "API_KEY") })).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhook({ ...delivery(), body: body + " " })).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhook({ ...delivery(), secret: "whsec_other" })).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhook({ ...delivery(), secret: "" })).toEqual({ ok: false, reason: "mismatch" });
    expect(verifyWebhook({ ...delivery(now - 3600), timestamp: String(now) })).toEqual({ ok: false, reason: "mismatch" });
    const sig = delivery().signature;
    const flipped = sig.slice(0, -1) + (sig.endsWith("0") ? "1" : "0");
    expect(verifyWebhook({ ...delivery(), signature: flipped })).toEqual({ ok: false, reason: "mismatch" });
  });

  test("an old or future timestamp is stale (replay)", () => {
    expect(verifyWebhook(delivery(now - 301))).toEqual({ ok: false, reason: "stale" });
    expect(verifyWebhook(delivery(now - 86_400))).toEqual({ ok: false, reason: "stale" });
    expect(verifyWebhook(delivery(now + 301))).toEqual({ ok: false, reason: "stale" });
    expect(verifyWebhook({ ...delivery(now - 60), toleranceSeconds: 30 })).toEqual({ ok: false, reason: "stale" });
    expect(verifyWebhook({ ...delivery(now - 1000), toleranceSeconds: 3600 })).toEqual({ ok: true });
    expect(verifyWebhook({ ...delivery(now - 301), toleranceSeconds: Number.NaN })).toEqual({ ok: false, reason: "stale" }); // falls back to 300
  });

  test("missing and malformed headers; junk never throws", () => {
    const good = delivery();
    expect(verifyWebhook({ ...good, signature: null })).toEqual({ ok: false, reason: "missing" });
    expect(verifyWebhook({ ...good, timestamp: null })).toEqual({ ok: false, reason: "missing" });
    expect(verifyWebhook({ ...good, signature: "" })).toEqual({ ok: false, reason: "missing" });
    for (const signature of ["sha256=", "sha256=zz", good.signature.slice(7), "sha1=" + good.signature.slice(7), good.signature + "00", "sha256=" + "g".repeat(64), `${good.signature},${good.signature}`]) {
      expect(verifyWebhook({ ...good, signature })).toEqual({ ok: false, reason: "malformed" });
    }
    for (const timestamp of ["soon", "-1", "1.5", "1e9", "0x10", "9".repeat(20), String(now) + "x"]) {
      expect(verifyWebhook({ ...good, timestamp })).toEqual({ ok: false, reason: "malformed" });
    }
    const junk = [undefined, 42, {}, [], Symbol("x")] as unknown as string[];
    for (const j of junk) {
      expect(() => verifyWebhook({ ...good, signature: j })).not.toThrow();
      expect(() => verifyWebhook({ ...good, timestamp: j })).not.toThrow();
      expect(() => verifyWebhook({ ...good, secret: j })).not.toThrow();
      expect(() => verifyWebhook({ ...good, body: j })).not.toThrow();
      expect(verifyWebhook({ ...good, body: j }).ok).toBe(false);
    }
    expect(() => verifyWebhook(null as never)).not.toThrow();
  });

  test("the receiver in the doc comment works against a signed delivery", async () => {
    const whsec = generateWebhookSecret();
    using server = Bun.serve({
      port: 0,
      async fetch(req) {
        const body = await req.text();
        const check = verifyWebhook({ secret: whsec, body, signature: req.headers.get("x-citadel-signature-256"), timestamp: req.headers.get("x-citadel-timestamp") });
        if (!check.ok) return new Response(`refused: ${check.reason}`, { status: 401 });
        return new Response(null, { status: 204 });
      },
    });
    const headers = { "content-type": "application/json", ...signWebhook(whsec, body, Math.floor(Date.now() / 1000)) };
    expect((await fetch(server.url, { method: "POST", body, headers })).status).toBe(204);
    const tampered = await fetch(server.url, { method: "POST", body: body + "x", headers });
    expect([tampered.status, await tampered.text()]).toEqual([401, "refused: mismatch"]);
    const bare = await fetch(server.url, { method: "POST", body });
    expect(await bare.text()).toBe("refused: missing");
  });
});

describe("generateWebhookSecret", () => {
  test("whsec_ + 32 random bytes, base64url", () => {
    const a = generateWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.slice(6), "base64url").length).toBe(32);
    expect(generateWebhookSecret()).not.toBe(a);
  });
});

describe("the HMAC key, as a receiver must use it (found in review: docs/secrets.md never said what it is)", () => {
  test("is the whole secret string, whsec_ included, as UTF-8: the bytes base64-decoded after the prefix (as Svix keys) never match", () => {
    const whole = generateWebhookSecret();
    const { "x-citadel-signature-256": signature } = signWebhook(whole, body, now);
    expect(signature).toBe(`sha256=${createHmac("sha256", Buffer.from(whole, "utf8")).update(`${now}.${body}`).digest("hex")}`);
    expect(signature).not.toBe(`sha256=${createHmac("sha256", Buffer.from(whole.slice("whsec_".length), "base64url")).update(`${now}.${body}`).digest("hex")}`);
  });

  test("docs/secrets.md says so, and its receiver acts on an event id once", async () => {
    const docs = await Bun.file(new URL("../../../docs/secrets.md", import.meta.url)).text();
    const webhooks = docs.slice(docs.indexOf("## Webhooks"), docs.indexOf("## Configuration"));
    expect(webhooks).toContain("key is the whole secret string as shown, `whsec_` included, as UTF-8 bytes: it is not decoded.");
    const receiver = webhooks.slice(webhooks.indexOf("```ts"));
    expect(receiver).toContain("if (seen.has(event.id))");
  });
});
