/**
 * Request bodies: JSON only, never more than the configured limit (counted while reading,
 * so a chunked body without Content-Length cannot exceed it either).
 */
import { HttpProblem, malformedJson, payloadTooLarge, unsupportedMediaType } from "./problem.ts";
import { pathOf } from "./request-meta.ts";

/** application/json, or any application/*+json (merge-patch, problem, ...). */
export function isJsonMediaType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function mayHaveBody(method: string): boolean {
  return BODY_METHODS.has(method);
}

/**
 * Checks a request body before the app sees it: JSON only (else 415), within the limit
 * (else 413), well formed (else 400). Returns the request the app should handle, its body
 * re-sent as checked JSON (an empty body becomes `{}` so a missing field is named), and the
 * body as parsed.
 *
 * This runs in the edge rather than as an Elysia parse hook because any parse hook makes
 * Elysia handle every request asynchronously, GETs included, which costs the hot path.
 */
export async function checkedJsonRequest(request: Request, limit: number): Promise<{ request: Request; body: unknown }> {
  const contentType = request.headers.get("content-type");
  // OAuth endpoints take forms (RFC 6749 §4.1.3, RFC 8628 §3.1); they reach the app as JSON.
  if (isFormMediaType(contentType) && pathOf(request.url).startsWith("/oauth/")) {
    const form = Object.fromEntries(new URLSearchParams(await readTextWithin(request, limit)));
    return { request: jsonRequest(request, JSON.stringify(form)), body: form };
  }
  // A wrong type is refused before reading; a missing one only if there turns out to be a body.
  if (contentType !== null && !isJsonMediaType(contentType)) throw unsupportedMediaType();
  const text = request.body === null ? "" : await readTextWithin(request, limit);
  let parsed: unknown = {};
  if (text.trim() !== "") {
    if (contentType === null) throw unsupportedMediaType();
    try {
      parsed = JSON.parse(text);
    } catch {
      throw malformedJson();
    }
    const problem = shapeProblem(parsed, SURROGATE_ESCAPE.test(text));
    if (problem) throw problem;
    // Every route's body is an object (a test checks their schemas): a bare string, number or
    // array is refused as such, not as each field the route wanted (which Elysia named).
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw notAnObject();
  }
  return { request: jsonRequest(request, text.trim() === "" ? "{}" : text), body: parsed };
}

/**
 * Deeper than any body a route takes. Elysia's validation recurses: building its message for a
 * value nested 5,000 deep (10 KB of brackets) overflowed the stack, a 500 to anyone.
 */
export const MAX_JSON_DEPTH = 64;

/** A \uD800–\uDFFF escape: only a body with one can hold an unpaired surrogate (raw text was decoded strictly). */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * What is wrong with the parsed body's shape, if anything: nesting deeper than MAX_JSON_DEPTH
 * and, when `checkStrings`, a string (keys included) that is not well-formed UTF-16. "\ud800"
 * is valid JSON but not text: stored as UTF-8 it would come back as U+FFFD, so a value (a
 * secret's, a name) would change on the way in. A loop, not recursion: a body may nest a
 * hundred thousand deep.
 */
function shapeProblem(body: unknown, checkStrings: boolean): HttpProblem | null {
  const pending: unknown[] = [body];
  const depths: number[] = [1]; // of each pending value, were it an object or array
  while (pending.length > 0) {
    const value = pending.pop();
    const depth = depths.pop()!;
    if (typeof value === "string") {
      if (checkStrings && !value.isWellFormed()) return notText();
    } else if (typeof value === "object" && value !== null) {
      if (depth > MAX_JSON_DEPTH) return tooDeep();
      const array = Array.isArray(value);
      if (checkStrings && !array && !Object.keys(value).every((key) => key.isWellFormed())) return notText();
      for (const inner of array ? value : Object.values(value)) {
        pending.push(inner);
        depths.push(depth + 1);
      }
    }
  }
  return null;
}

const notText = () => new HttpProblem(400, "malformed_json", "The request body holds a string that is not valid Unicode (an unpaired surrogate escape).");
const notAnObject = () => new HttpProblem(422, "validation_failed", "body: Expected object", {}, { errors: [{ field: "body", message: "Expected object" }] });
const tooDeep = () => new HttpProblem(400, "malformed_json", `The request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.`);

/** The request with `{}` for its body: what the app routes when the edge refused the body it came with. */
export function withEmptyBody(request: Request): Request {
  return jsonRequest(request, "{}");
}

function jsonRequest(request: Request, body: string): Request {
  const headers = new Headers(request.headers);
  headers.set("content-type", "application/json");
  headers.delete("content-length");
  headers.delete("transfer-encoding");
  return new Request(request.url, { method: request.method, headers, body });
}

function isFormMediaType(contentType: string | null): boolean {
  return contentType?.split(";", 1)[0]!.trim().toLowerCase() === "application/x-www-form-urlencoded";
}

async function readTextWithin(request: Request, limit: number): Promise<string> {
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read().catch(() => {
        throw unreadableBody();
      });
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        throw payloadTooLarge(limit);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw malformedJson();
  }
}

const unreadableBody = () => new HttpProblem(400, "unreadable_body", "The request body could not be read.");
