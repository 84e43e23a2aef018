/**
 * Webhook signatures: what Citadel sends (webhooks.ts) and what a receiver checks.
 *
 *   X-Citadel-Timestamp: <unix seconds>
 *   X-Citadel-Signature-256: sha256=<lowercase hex HMAC-SHA256(secret, `${timestamp}.${body}`)>
 *
 * The HMAC key is the whole secret string as UTF-8, `whsec_` included. The timestamp is
 * signed with the body, and a receiver refuses timestamps more than `toleranceSeconds`
 * (default 300) from its clock, so a captured delivery cannot be replayed later. (Within the
 * window it can, as Citadel's own retries come again: dedupe on the event's id.)
 *
 * A receiver, with Bun.serve:
 *
 * ```ts
 * import { verifyWebhook } from "./webhook-signature.ts";
 * Bun.serve({ port: 8080, async fetch(req) {
 *   const body = await req.text(); // the raw text: re-serialized JSON would not match
 *   const check = verifyWebhook({ secret: WEBHOOK_SECRET, body, // the secret shown when the webhook was made
 *     signature: req.headers.get("x-citadel-signature-256"), timestamp: req.headers.get("x-citadel-timestamp") });
 *   if (!check.ok) return new Response(`refused: ${check.reason}`, { status: 401 });
 *   console.log("citadel says", JSON.parse(body)); // a retried delivery comes again: dedupe on the event's id
 *   return new Response(null, { status: 204 });
 * } });
 * ```
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const TIMESTAMP_HEADER = "x-citadel-timestamp";
export const SIGNATURE_HEADER = "x-citadel-signature-256";
const DEFAULT_TOLERANCE_SECONDS = 300;
const SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;
const TIMESTAMP = /^\d{1,12}$/;

export type WebhookVerification = { ok: true } | { ok: false; reason: "missing" | "malformed" | "stale" | "mismatch" };

/** The two headers of one delivery of `body` at `timestampSeconds`. */
export function signWebhook(secret: string, body: string, timestampSeconds: number): { "x-citadel-timestamp": string; "x-citadel-signature-256": string } {
  if (typeof secret !== "string" || secret.length === 0) throw new TypeError("a webhook secret may not be empty");
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) throw new TypeError("a webhook timestamp is a whole number of seconds since 1970");
  const timestamp = String(timestampSeconds);
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: `sha256=${mac(secret, timestamp, body).toString("hex")}` } as {
    "x-citadel-timestamp": string;
    "x-citadel-signature-256": string;
  };
}

/**
 * Checks a delivery's headers against its raw body. Never throws: missing headers are
 * "missing", unparsable ones "malformed", a signature that does not match "mismatch", and a
 * genuine signature whose timestamp is more than `toleranceSeconds` from `nowSeconds` (past
 * or future) "stale". An empty secret matches nothing.
 */
export function verifyWebhook(options: {
  secret: string;
  body: string;
  signature: string | null;
  timestamp: string | null;
  nowSeconds?: number;
  toleranceSeconds?: number /* default 300 */;
}): WebhookVerification {
  try {
    const { secret, body, signature, timestamp } = options;
    if (signature === null || signature === undefined || signature === "" || timestamp === null || timestamp === undefined || timestamp === "") return { ok: false, reason: "missing" };
    if (typeof signature !== "string" || typeof timestamp !== "string") return { ok: false, reason: "malformed" };
    const sig = SIGNATURE.exec(signature.trim());
    const ts = timestamp.trim();
    if (!sig || !TIMESTAMP.test(ts)) return { ok: false, reason: "malformed" };
    if (typeof secret !== "string" || secret.length === 0 || typeof body !== "string") return { ok: false, reason: "mismatch" };
    const given = Buffer.from(sig[1]!, "hex");
    const expected = mac(secret, ts, body);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: "mismatch" };
    const now = typeof options.nowSeconds === "number" && Number.isFinite(options.nowSeconds) ? options.nowSeconds : Date.now() / 1000;
    const tolerance = typeof options.toleranceSeconds === "number" && Number.isFinite(options.toleranceSeconds) && options.toleranceSeconds >= 0 ? options.toleranceSeconds : DEFAULT_TOLERANCE_SECONDS;
    if (Math.abs(now - Number(ts)) > tolerance) return { ok: false, reason: "stale" };
    return { ok: true };
  } catch {
    return { ok: false, reason: "malformed" };
  }
}

/** A new webhook secret: `whsec_` + 32 random bytes, base64url. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

function mac(secret: string, timestamp: string, body: string): Buffer {
  return createHmac("sha256", Buffer.from(secret, "utf8")).update(`${timestamp}.${body}`, "utf8").digest();
}
