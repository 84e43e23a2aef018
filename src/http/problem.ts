/**
 * The one error envelope of the API: RFC 9457 problem details, with a stable `code` and the
 * `request_id` that finds the full story in the log. This file is the only place where an
 * error becomes an HTTP status; what a client sees is built from a fixed table, never from
 * an exception's message, so no stack, path, SQL or library name can leak.
 */
import { Type } from "@sinclair/typebox";
import { t } from "elysia";
import { CitadelError, InvalidError, RateLimitedError } from "../errors.ts";
import { pointerToPath } from "../json-pointer.ts";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

export const ProblemField = t.Object({
  field: t.String({ description: "Where the problem is: a body field path such as `name` or `tags[2]`, or `query.limit`." }),
  message: t.String(),
});

export const Problem = t.Object(
  {
    type: t.String({ description: "URI naming the problem type: `urn:citadel:problem:<code>`." }),
    title: t.String(),
    status: Type.Integer(), // TypeBox's own: Elysia's t.Integer also accepts numeric strings
    detail: t.Optional(t.String()),
    code: t.String({ description: "Stable machine-readable code." }),
    request_id: t.String({ description: "Also in the X-Request-Id header and in the server log." }),
    errors: t.Optional(t.Array(ProblemField)),
  },
  { description: "RFC 9457 problem details" },
);
export type Problem = typeof Problem.static;
export type ProblemFieldError = typeof ProblemField.static;

const TITLES: Record<number, string> = {
  400: "Bad request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not found",
  405: "Method not allowed",
  409: "Conflict",
  410: "Gone",
  412: "Precondition failed",
  413: "Content too large",
  415: "Unsupported media type",
  422: "Unprocessable content",
  428: "Precondition required",
  429: "Too many requests",
  500: "Internal server error",
  503: "Service unavailable",
};

/** An error that already knows its HTTP status; thrown by the edge itself (body limits, parsing). */
export class HttpProblem extends Error {
  override readonly name = "HttpProblem";
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
    /** Extension members of the problem document (RFC 9457 §3.2), such as a confirmation token. */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

export const payloadTooLarge = (limit: number) =>
  new HttpProblem(413, "payload_too_large", `The request body is larger than ${limit} bytes.`);
export const unsupportedMediaType = (types = "application/json") =>
  new HttpProblem(415, "unsupported_media_type", `Send the request body as ${types}.`);
export const malformedJson = () => new HttpProblem(400, "malformed_json", "The request body is not valid JSON.");

/** Domain error → status. Every CitadelError subclass has a row here (a test checks it). */
export const DOMAIN_STATUS: Record<string, number> = {
  not_found: 404,
  conflict: 409,
  version_conflict: 409,
  precondition_failed: 412,
  gone: 410,
  payload_too_large: 413,
  invalid: 422,
  forbidden: 403,
  standing_ended: 403,
  unauthorized: 401,
  sealed: 503,
  unavailable: 503,
  rate_limited: 429,
  totp_required: 401,
  data_integrity: 500,
};

export interface ProblemInit {
  status: number;
  code: string;
  detail?: string;
  errors?: ProblemFieldError[];
  headers?: Record<string, string>;
  extra?: Record<string, unknown>;
}

export function problemBody(init: ProblemInit, requestId: string): Problem {
  return {
    ...init.extra,
    type: `urn:citadel:problem:${init.code}`,
    title: TITLES[init.status] ?? "Error",
    status: init.status,
    ...(init.detail ? { detail: init.detail } : {}),
    code: init.code,
    request_id: requestId,
    ...(init.errors?.length ? { errors: init.errors } : {}),
  };
}

export function problemResponse(init: ProblemInit, requestId: string): Response {
  return new Response(JSON.stringify(problemBody(init, requestId)), {
    status: init.status,
    headers: { "content-type": PROBLEM_CONTENT_TYPE, ...init.headers },
  });
}

/**
 * Maps a thrown value to what the client may see. Unknown errors become a bare 500: the
 * caller logs the error itself under the request id.
 */
export function problemFor(error: unknown): ProblemInit {
  if (error instanceof HttpProblem) {
    return { status: error.status, code: error.code, detail: error.detail, headers: error.headers, extra: error.extra };
  }
  if (error instanceof CitadelError) {
    const status = DOMAIN_STATUS[error.code];
    if (status !== undefined) {
      const init: ProblemInit = { status, code: error.code, detail: error.message };
      if (error instanceof InvalidError && error.field) init.errors = [{ field: error.field, message: error.message }];
      if (error instanceof RateLimitedError) init.headers = { "retry-after": String(Math.max(1, error.retryAfterSeconds)) };
      return init;
    }
  }
  return { status: 500, code: "internal_error", detail: "The server could not complete the request. Quote the request id when reporting it." };
}

const CODE_BY_STATUS: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  410: "gone",
  412: "precondition_failed",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "invalid",
  428: "precondition_required",
  429: "rate_limited",
  503: "unavailable",
};

/** A problem for a bare status (an error response that came without one); 5xx becomes internal_error. */
export function problemForStatus(status: number): ProblemInit {
  const code = CODE_BY_STATUS[status];
  if (!code) return problemFor(new Error("unmapped status")); // 500 and anything unknown: internal_error
  return { status, code, detail: TITLES[status] };
}

/** Elysia's validation issues, reduced to field and message: never the submitted value. */
export function validationProblem(
  location: string,
  issues: ReadonlyArray<{ path: string; message: string }>,
): ProblemInit {
  const seen = new Set<string>();
  const errors: ProblemFieldError[] = [];
  for (const issue of issues) {
    const path = pointerToPath(issue.path);
    const field = location === "body" ? path || "body" : path ? `${location}.${path}` : location;
    if (seen.has(field)) continue; // TypeBox repeats a field once per failed union branch
    seen.add(field);
    errors.push({ field, message: issue.message });
  }
  const first = errors[0];
  return {
    status: 422,
    code: "validation_failed",
    detail: first ? `${first.field}: ${first.message}` : `The ${location} is not valid.`,
    errors,
  };
}
