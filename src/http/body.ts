/**
 * Request bodies: JSON only, never more than the configured limit (counted while reading,
 * so a chunked body without Content-Length cannot exceed it either).
 */
import { HttpProblem, malformedJson, payloadTooLarge, unsupportedMediaType } from "./problem.ts";

/** application/json, or any application/*+json (merge-patch, problem, ...). */
export function isJsonMediaType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

/** Parses the body as JSON; an empty body is `{}` so a missing field is reported by name. */
export async function readJsonBody(request: Request, limit: number): Promise<unknown> {
  if (request.body === null || request.headers.get("content-length")?.trim() === "0") return {};
  const contentType = request.headers.get("content-type");
  // A wrong type is refused before reading; a missing one only if there turns out to be a body.
  if (contentType !== null && !isJsonMediaType(contentType)) throw unsupportedMediaType();
  const text = await readTextWithin(request, limit);
  if (text.trim() === "") return {};
  if (contentType === null) throw unsupportedMediaType();
  try {
    return JSON.parse(text);
  } catch {
    throw malformedJson();
  }
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
