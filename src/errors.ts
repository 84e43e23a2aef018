/**
 * Domain errors. Services throw these; only a protocol edge maps them (HTTP in
 * src/http/problem.ts, later DNS in its own table). `message` is safe to show a client;
 * anything meant only for the operator travels in `cause` and goes to the log.
 */
export abstract class CitadelError extends Error {
  /** Stable, machine-readable code (the `code` of the HTTP problem body). */
  abstract readonly code: string;
}

/** A thing the caller named does not exist (or is not visible to the caller). */
export class NotFoundError extends CitadelError {
  readonly code = "not_found";
}

/** The request conflicts with the current state (duplicate name). */
export class ConflictError extends CitadelError {
  readonly code = "conflict";
}

/**
 * A write made for one version of a thing found it at another: another write came in between.
 * A client that made the write for that version (an end-to-end-encrypted value names the
 * version it is stored as) reads again and retries; told from other conflicts by its code.
 */
export class VersionConflictError extends CitadelError {
  readonly code = "version_conflict";
}

/** An If-Match precondition failed: the thing changed since the caller read it. */
export class PreconditionFailedError extends CitadelError {
  readonly code = "precondition_failed";
}

/** The thing existed and is gone for good (a used or expired share link). */
export class GoneError extends CitadelError {
  readonly code = "gone";
}

/** The request body is larger than this route accepts. */
export class PayloadTooLargeError extends CitadelError {
  readonly code = "payload_too_large";
}

/** The input is well formed but not acceptable; `field` names the offending input. */
export class InvalidError extends CitadelError {
  readonly code = "invalid";
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The caller is known but not allowed to do this. */
export class ForbiddenError extends CitadelError {
  readonly code = "forbidden";
}

/**
 * The caller is known, and its standing has ended — disabled, expired, its organization
 * deleted — not refused for this request alone: a client (the mesh agent) acts on it for good.
 */
export class StandingEndedError extends CitadelError {
  readonly code = "standing_ended";
}

/** The caller could not be identified. */
export class UnauthorizedError extends CitadelError {
  readonly code = "unauthorized";
}

/** The appliance is sealed: keys are not in memory, so nothing secret can be served. */
export class SealedError extends CitadelError {
  readonly code = "sealed";
  constructor(message = "Citadel is sealed") {
    super(message);
  }
}

/** A dependency the request needs (the store, a listener) is not available right now. */
export class UnavailableError extends CitadelError {
  readonly code = "unavailable";
}

/**
 * The disk holding the data directory cannot take a write (full, or failing): the operator's to
 * fix, not a bug — a 503 `unavailable` whose message names the cause, never the path.
 */
export class StorageUnavailableError extends UnavailableError {}

/** Too many attempts: try again after `retryAfterSeconds`. */
export class RateLimitedError extends CitadelError {
  readonly code = "rate_limited";
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/**
 * Stored data failed its integrity check (a value whose authentication tag does not verify,
 * a key that is gone): it was altered or damaged outside Citadel. Nothing the caller can fix.
 */
export class DataIntegrityError extends CitadelError {
  readonly code = "data_integrity";
}

/** The password was right, and the account also needs its second factor (a TOTP or recovery code). */
export class TotpRequiredError extends CitadelError {
  readonly code = "totp_required";
}
