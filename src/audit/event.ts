/**
 * An audit event: who did what to which resource, from where, with what outcome. Personal
 * data (source address, user agent, email) is kept apart, encrypted under a key of the
 * person it is about, so that erasing that person destroys one key and leaves the chain,
 * which hashes only the ciphertext, intact.
 */
export const ACTOR_KINDS = ["operator", "user", "service", "system", "anonymous"] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

/**
 * Subjects that name no person: the actor kinds (events with no person of their own, an unknown
 * caller's or the system's, keep their personal data under that kind's key) and the shield's
 * decisions. Each key is shared by many events and people: erasing one would be no one's erasure
 * and everyone's lost forensics, and exporting one would hand out many people's data.
 */
export const PSEUDO_SUBJECTS: readonly string[] = [...ACTOR_KINDS, "shield"];

export function isPseudoSubject(subject: string): boolean {
  return PSEUDO_SUBJECTS.includes(subject.toLowerCase());
}
export type Outcome = "success" | "failure";

export interface AuditActor {
  kind: ActorKind;
  organization?: string | null;
  user?: string | null;
  /** The token's id (its public prefix), never the token. */
  token?: string | null;
}

export interface AuditRequestContext {
  id?: string | null;
  /** Client address: personal data, stored encrypted. */
  source?: string | null;
  /** Personal data, stored encrypted. */
  userAgent?: string | null;
}

export interface AuditEventInput {
  /** A registered action type, such as "sys.unseal". */
  action: string;
  actor: AuditActor;
  outcome: Outcome;
  /** Why it failed (or a short note); never a secret value. */
  reason?: string | null;
  resource?: { type: string; id?: string | null } | null;
  organization?: string | null;
  workspace?: string | null;
  request?: AuditRequestContext | null;
  /** Whose personal data this event holds; defaults to the acting user, else the actor kind ("operator"). */
  subject?: string | null;
  /** More personal data (an email address typed at login, ...). */
  personal?: Record<string, string> | null;
}

/** A stored event as it is hashed: personal data only as ciphertext. */
export interface StoredEvent {
  seq: number;
  id: string;
  time: number;
  actor_kind: string;
  actor_org: string | null;
  actor_user: string | null;
  actor_token: string | null;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  organization: string | null;
  workspace: string | null;
  request_id: string | null;
  outcome: string;
  reason: string | null;
  subject: string | null;
  personal: Uint8Array | null;
  prev_hash: Uint8Array;
  hash: Uint8Array;
}

export const GENESIS_HASH = new Uint8Array(32);

/** The bytes an event's hash covers: a JSON array of its fields in a fixed order. */
export function canonicalEncoding(e: Omit<StoredEvent, "prev_hash" | "hash">): string {
  return JSON.stringify([
    "citadel-audit-v1",
    e.seq,
    e.id,
    e.time,
    e.actor_kind,
    e.actor_org,
    e.actor_user,
    e.actor_token,
    e.action,
    e.resource_type,
    e.resource_id,
    e.organization,
    e.workspace,
    e.request_id,
    e.outcome,
    e.reason,
    e.subject,
    e.personal === null ? null : Buffer.from(e.personal).toString("base64"),
  ]);
}

/** SHA-256(previous hash ‖ canonical encoding). */
export function eventHash(prevHash: Uint8Array, e: Omit<StoredEvent, "prev_hash" | "hash">): Buffer {
  return new Bun.CryptoHasher("sha256").update(prevHash).update(canonicalEncoding(e)).digest() as Buffer;
}

/** The key owner under which a subject's personal data is encrypted. */
export const subjectKeyOwner = (subject: string) => `audit-subject/${subject}`;
