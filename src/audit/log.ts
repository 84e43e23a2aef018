/**
 * The audit log's write side. `record` runs inside the caller's store transaction (the one
 * that makes the change), so a change and its event commit together or not at all; if the
 * event cannot be written, the change fails with it.
 */
import type { Database } from "bun:sqlite";
import type { Keyring } from "../crypto/keyring.ts";
import type { AuditActionType } from "../plugin.ts";
import { eventHash, GENESIS_HASH, subjectKeyOwner, type AuditEventInput, type StoredEvent } from "./event.ts";

/** Recording an action type nobody registered is a programming error. */
export class UnknownActionError extends Error {
  override readonly name = "UnknownActionError";
}

export interface AuditLogOptions {
  now: () => number;
  /** The keyring when unsealed: personal data is encrypted with it, or withheld when sealed. */
  keyring: () => Keyring | null;
  /**
   * Told of the rows each event's insert made in `tx`: the store leaves them out of its change
   * stamp (Store.leaveOutOfChangeStamp), since no remembered fact is read from the log.
   */
  inserted?: (tx: Database, rows: number) => void;
}

export class AuditLog {
  private readonly actions = new Map<string, string>();

  private readonly listeners = new Set<(event: AuditEventInput) => void>();

  constructor(private readonly options: AuditLogOptions) {}

  /**
   * Calls `listener` with every event recorded (inside the recording transaction: it must be
   * quick and must not throw). The shield learns failed logins and rejected tokens this way.
   */
  onRecord(listener: (event: AuditEventInput) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds action types (from the kernel and from each plugin). A type registered twice is an error. */
  register(actions: readonly AuditActionType[]): void {
    for (const a of actions) {
      if (this.actions.has(a.type)) throw new Error(`audit action ${a.type} is registered twice`);
      if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/.test(a.type)) throw new Error(`audit action ${a.type}: use dotted lower-case words`);
      this.actions.set(a.type, a.description);
    }
  }

  registeredActions(): AuditActionType[] {
    return [...this.actions].map(([type, description]) => ({ type, description })).sort((a, b) => a.type.localeCompare(b.type));
  }

  /** Appends one event inside `tx`; returns its id. */
  record(tx: Database, input: AuditEventInput): string {
    if (!this.actions.has(input.action)) throw new UnknownActionError(`audit action ${input.action} is not registered`);
    const head = tx.query<{ seq: number; hash: Uint8Array }, []>("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get();
    const seq = (head?.seq ?? 0) + 1;
    // Time-ordered, so the unique index on ids grows at its end instead of at random places.
    const id = `evt_${Bun.randomUUIDv7().replaceAll("-", "")}`;
    const subject = input.subject ?? input.actor.user ?? input.actor.kind;
    // Every text as SQLite will store it (UTF-8): a lone surrogate, which a caller can send
    // in JSON ("\ud800"), is stored as U+FFFD, and the hash must cover what is stored, or the
    // event would fail verification forever after.
    const event: Omit<StoredEvent, "prev_hash" | "hash"> = {
      seq,
      id,
      time: this.options.now(),
      actor_kind: input.actor.kind,
      actor_org: stored(input.actor.organization),
      actor_user: stored(input.actor.user),
      actor_token: stored(input.actor.token),
      action: input.action,
      resource_type: stored(input.resource?.type),
      resource_id: stored(input.resource?.id),
      organization: stored(input.organization ?? input.actor.organization),
      workspace: stored(input.workspace),
      request_id: stored(input.request?.id),
      outcome: input.outcome,
      reason: stored(input.reason),
      subject: stored(subject),
      personal: this.encryptPersonal(tx, subject, id, input),
    };
    const prevHash = head?.hash ?? GENESIS_HASH;
    const { changes } = tx.query(
      `INSERT INTO audit_events (seq, id, time, actor_kind, actor_org, actor_user, actor_token, action, resource_type, resource_id,
         organization, workspace, request_id, outcome, reason, subject, personal, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      event.seq,
      event.id,
      event.time,
      event.actor_kind,
      event.actor_org,
      event.actor_user,
      event.actor_token,
      event.action,
      event.resource_type,
      event.resource_id,
      event.organization,
      event.workspace,
      event.request_id,
      event.outcome,
      event.reason,
      event.subject,
      event.personal,
      prevHash,
      eventHash(prevHash, event),
    );
    this.options.inserted?.(tx, changes);
    for (const listener of this.listeners) listener(input);
    return id;
  }

  /**
   * Source address, user agent and other personal data, as one ciphertext under the
   * subject's key. While sealed there is no key: the data is withheld, not stored in clear.
   */
  private encryptPersonal(tx: Database, subject: string, eventId: string, input: AuditEventInput): Uint8Array | null {
    const personal: Record<string, string> = { ...input.personal };
    if (input.request?.source) personal.source_address = input.request.source;
    if (input.request?.userAgent) personal.user_agent = input.request.userAgent;
    if (Object.keys(personal).length === 0) return null;
    const keyring = this.options.keyring();
    if (!keyring) return null;
    return keyring.encrypt(tx, subjectKeyOwner(subject), `audit_events/${eventId}`, JSON.stringify(personal));
  }
}

/** Text exactly as SQLite stores it: well-formed UTF-16 (lone surrogates become U+FFFD, as UTF-8 encoding makes them). */
function stored(text: string | null | undefined): string | null {
  return text === undefined || text === null ? null : text.toWellFormed();
}
