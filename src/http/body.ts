/**
 * Request bodies: JSON only, never more than the configured limit (counted while reading,
 * so a chunked body without Content-Length cannot exceed it either).
 */
import { isOAuthPath, oauthError } from "./oauth-error.ts";
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
  if (isEncoded(request.headers.get("content-encoding"))) {
    // Refused unread when it declares a length; an empty body has nothing to decode, whatever
    // its Content-Encoding says (found in review: a DELETE without a body was 415).
    if (Number(request.headers.get("content-length") ?? 0) > 0) throw encodedBody();
    if ((await readWithin(request, limit)).byteLength > 0) throw encodedBody();
    return { request: withEmptyBody(request), body: {} };
  }
  const contentType = request.headers.get("content-type");
  // OAuth endpoints take forms (RFC 6749 §4.1.3, RFC 8628 §3.1); they reach the app as JSON.
  const oauth = isOAuthPath(pathOf(request.url));
  if (oauth && isFormMediaType(contentType)) {
    const form = formFields(await readTextWithin(request, limit));
    return { request: jsonRequest(request, JSON.stringify(form)), body: form };
  }
  const wrongType = () => unsupportedMediaType(oauth ? "application/x-www-form-urlencoded or application/json" : "application/json");
  if (contentType !== null && !isJsonMediaType(contentType)) {
    // Refused unread when it declares a length; a body of unknown length (chunked) is read first,
    // within the limit. An empty one is no body to refuse: `curl -X POST -d ''` labels it a form,
    // and was 415 where the same request without -d was 200 (found in review).
    if (Number(request.headers.get("content-length") ?? 0) > 0) throw wrongType();
    if ((await readWithin(request, limit)).byteLength > 0) throw wrongType();
    return { request: withEmptyBody(request), body: {} };
  }
  // A missing type is refused only if there turns out to be a body.
  const text = request.body === null ? "" : await readTextWithin(request, limit);
  let parsed: unknown = {};
  if (text.trim() !== "") {
    if (contentType === null) throw wrongType();
    try {
      parsed = JSON.parse(text);
    } catch {
      throw malformedJson();
    }
    const problem = shapeProblem(parsed, text);
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
 * What is wrong with the parsed body's shape, if anything: nesting deeper than MAX_JSON_DEPTH;
 * a string (keys included) that is not well-formed UTF-16 — "\ud800" is valid JSON but not
 * text: stored as UTF-8 it would come back as U+FFFD, so a value (a secret's, a name) would
 * change on the way in; and a member given twice in one object, of which JSON.parse keeps the
 * last in silence (`{"name":"a","name":"b"}` made organization "b"). A loop, not recursion: a
 * body may nest a hundred thousand deep.
 */
function shapeProblem(body: unknown, text: string): HttpProblem | null {
  const checkStrings = SURROGATE_ESCAPE.test(text);
  const pending: unknown[] = [body];
  const depths: number[] = [1]; // of each pending value, were it an object or array
  let members = 0;
  while (pending.length > 0) {
    const value = pending.pop();
    const depth = depths.pop()!;
    if (typeof value === "string") {
      if (checkStrings && !value.isWellFormed()) return notText();
    } else if (typeof value === "object" && value !== null) {
      if (depth > MAX_JSON_DEPTH) return tooDeep();
      const array = Array.isArray(value);
      if (checkStrings && !array && !Object.keys(value).every((key) => key.isWellFormed())) return notText();
      const inners = array ? value : Object.values(value);
      if (!array) members += inners.length;
      for (const inner of inners) {
        pending.push(inner);
        depths.push(depth + 1);
      }
    }
  }
  // Every member written has a colon after its name: with no more colons in the text than the
  // parsed objects have members, none was dropped, and the text need not be read again.
  return colonsIn(text) > members ? repeatedMember(text) : null;
}

function colonsIn(text: string): number {
  let count = 0;
  for (let at = text.indexOf(":"); at !== -1; at = text.indexOf(":", at + 1)) count++;
  return count;
}

/**
 * The first member given more than once in one object of `text` (valid JSON, nested at most
 * MAX_JSON_DEPTH deep), as a refusal naming it; null if none is. Reads the text's strings and
 * brackets: a string followed by a colon is a member's name, in the innermost open object.
 */
function repeatedMember(text: string): HttpProblem | null {
  const open: Array<{ names: Set<string> | null; at: string | number }> = []; // names: null for an array
  for (const [token, string, colon] of text.matchAll(JSON_TOKENS)) {
    const inner = open.at(-1);
    if (token === "{" || token === "[") open.push({ names: token === "{" ? new Set() : null, at: 0 });
    else if (token === "}" || token === "]") open.pop();
    else if (token === ",") {
      if (inner && inner.names === null) inner.at = (inner.at as number) + 1;
    } else if (colon !== undefined && inner?.names) {
      const name = string!.includes("\\") ? (JSON.parse(string!) as string) : string!.slice(1, -1);
      if (inner.names.has(name)) return givenTwice([...open.slice(0, -1).map((o) => o.at), name]);
      inner.names.add(name);
      inner.at = name;
    }
  }
  return null;
}

/** A string (and the colon after it, if any) or a bracket or comma: valid JSON holds no other quote. */
const JSON_TOKENS = /("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?|[{}[\],]/g;

function givenTwice(path: Array<string | number>): HttpProblem {
  const member = path.reduce<string>((acc, part) => (typeof part === "number" ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
  return new HttpProblem(400, "malformed_json", `The request body gives the member ${JSON.stringify(member.slice(0, 200))} more than once.`);
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

/**
 * A form's fields. A name given twice is refused: RFC 6749 section 3.1 says a parameter MUST NOT
 * be, and the last one was taken in silence (`scope=bogus&scope=secrets:read`).
 */
/** A coding Citadel would have to undo: any but none, an empty value, or identity. */
function isEncoded(contentEncoding: string | null): boolean {
  const coding = contentEncoding?.trim().toLowerCase() ?? "";
  return coding !== "" && coding !== "identity";
}

/**
 * An OAuth form's fields, each at most once (RFC 6749 3.1). A field sent without a value is
 * omitted, as the RFC says it MUST be taken, so `scope=&scope=read` is one scope, not a repeat
 * (found in review).
 */
function formFields(text: string): Record<string, string> {
  const pairs = [...new URLSearchParams(text)].filter(([, value]) => value !== "");
  const names = new Set<string>();
  for (const [name] of pairs) {
    if (names.has(name)) throw oauthError(400, "invalid_request", `${name.slice(0, 100)} is given more than once.`);
    names.add(name);
  }
  return Object.fromEntries(pairs);
}

function isFormMediaType(contentType: string | null): boolean {
  return contentType?.split(";", 1)[0]!.trim().toLowerCase() === "application/x-www-form-urlencoded";
}

async function readTextWithin(request: Request, limit: number): Promise<string> {
  const bytes = await readWithin(request, limit);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw malformedJson();
  }
}

async function readWithin(request: Request, limit: number): Promise<Buffer> {
  if (!request.body) return Buffer.alloc(0);
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
  return Buffer.concat(chunks);
}

/**
 * A body is not decoded: a gzip one was 400 "not valid JSON", and one labelled br but sent plain
 * was taken as it was. RFC 9110 section 15.5.16: 415, saying which coding is taken.
 */
const encodedBody = () => new HttpProblem(415, "unsupported_media_type", "Send the request body without a Content-Encoding.", { "accept-encoding": "identity" });
const unreadableBody = () => new HttpProblem(400, "unreadable_body", "The request body could not be read.");
