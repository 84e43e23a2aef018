/**
 * The audit log's read side: filters, newest-first cursor pages, and streaming export as
 * NDJSON or CSV. Personal data is decrypted on the way out; a subject whose key was erased
 * reads "[erased]", a ciphertext that fails authentication or names no key "[unreadable]".
 */
import type { Database, SQLQueryBindings } from "bun:sqlite";
import { DecryptionError, envelopeKeyVersion } from "../crypto/aead.ts";
import { KeyDestroyedError, type Keyring } from "../crypto/keyring.ts";
import { SealedError } from "../errors.ts";
import { subjectKeyOwner, type StoredEvent } from "./event.ts";

export interface AuditFilter {
  organization?: string;
  workspace?: string;
  /** The acting user's id. */
  actor?: string;
  /** An action type or a dotted prefix of one ("secrets" matches "secrets.secret.update"), in any case. */
  action?: string;
  outcome?: "success" | "failure";
  resource_type?: string;
  resource_id?: string;
  /**
   * The user whose personal data the event holds (under their own key): events about them that
   * others did, anonymous ones included (a throttled login names the account, not its actor).
   * Not indexed: it serves the rare export of a data subject, not the query API.
   */
  subject?: string;
  /** Milliseconds since the epoch, inclusive. */
  since?: number;
  /** Milliseconds since the epoch, exclusive. */
  until?: number;
}

export const ERASED = "[erased]";
/**
 * Personal data whose ciphertext fails authentication: changed after it was written (`citadel
 * audit verify` names the event). One damaged event must not make every page, export or
 * forwarding round that holds it fail.
 */
export const UNREADABLE = "[unreadable]";

type PersonalData = Record<string, string> | typeof ERASED | typeof UNREADABLE | null;

export interface AuditEventView {
  id: string;
  seq: number;
  time: string;
  actor: { kind: string; organization: string | null; user: string | null; token: string | null };
  action: string;
  resource: { type: string; id: string | null } | null;
  organization: string | null;
  workspace: string | null;
  request_id: string | null;
  outcome: string;
  reason: string | null;
  subject: string | null;
  source_address: string | null;
  user_agent: string | null;
  /** Other personal data recorded with the event, "[erased]" after erasure, "[unreadable]" when damaged. */
  personal: PersonalData;
  hash: string;
}

/**
 * The WHERE clause of `filter`. With `actionType`, the events of that one stored type, through
 * the action index — the other filters only tested on what it finds (the unary + keeps SQLite
 * off their indexes; see listAuditEvents for when this way is the cheaper); without, `filter.action`'s type and the
 * types under it ("sys" → "sys", "sys.unseal", not "system.info") as a test of each event
 * walked in seq order — the export's way, which reads them all anyway. Action types are dotted
 * lower-case words (AuditLog.register), and "." is the only character of theirs that sorts
 * before "/", so [sys, sys/) is exactly "sys" and "sys.…"; lowered, "SYS" finds what "sys" finds.
 * The unary + keeps SQLite off the action index there: through it, the events of a common type
 * would all be read and sorted by seq before the first was returned.
 */
export function where(filter: AuditFilter, beforeSeq?: number, actionType?: string, lead?: IndexedKey): { sql: string; params: SQLQueryBindings[] } {
  const clauses: string[] = [];
  const params: SQLQueryBindings[] = [];
  const add = (clause: string, ...values: SQLQueryBindings[]) => {
    clauses.push(clause);
    params.push(...values);
  };
  // The action index leads, or `lead`'s: the other indexed filters are tests of what it finds.
  const led = (key: IndexedKey) => (actionType !== undefined || (lead !== undefined && lead !== key) ? "+" : "");
  if (filter.organization !== undefined) add(`${led("organization")}organization = ?`, filter.organization);
  if (filter.workspace !== undefined) add(`${led("workspace")}workspace = ?`, filter.workspace);
  if (filter.actor !== undefined) add(`${led("actor")}actor_user = ?`, filter.actor);
  if (actionType !== undefined) add("action = ?", actionType);
  else if (filter.action !== undefined) {
    const action = filter.action.toLowerCase();
    add("+action >= ? AND +action < ?", action, `${action}/`);
  }
  if (filter.outcome !== undefined) add(`${led("outcome")}outcome = ?`, filter.outcome);
  // With an id, the id's index finds the few events of that one resource; without statistics
  // SQLite could as well take the type's (every event of the type): the unary + rules it out.
  const typeLed = lead === "resource_type" ? "" : filter.resource_id !== undefined ? "+" : led("resource_type");
  if (filter.resource_type !== undefined) add(`${typeLed}resource_type = ?`, filter.resource_type);
  if (filter.resource_id !== undefined) add(`${led("resource_id")}resource_id = ?`, filter.resource_id);
  if (filter.subject !== undefined) add("subject = ?", filter.subject);
  // Leading, the window gets both its bounds: with one, SQLite takes the range for the whole
  // log and walks the table instead (found in review). Outside them, no event's time (±8.64e15 ms).
  const bounded = lead === "time";
  if (filter.since !== undefined || bounded) add(`${led("time")}time >= ?`, filter.since ?? -8.64e15);
  if (filter.until !== undefined || bounded) add(`${led("time")}time < ?`, filter.until ?? 8.64e15);
  if (beforeSeq !== undefined) add("seq < ?", beforeSeq);
  return { sql: clauses.length ? `WHERE ${clauses.join(" AND ")}` : "", params };
}

export interface AuditPage {
  events: AuditEventView[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  next_cursor: string | null;
}

export function listAuditEvents(db: Database, keyring: Keyring, filter: AuditFilter, limit: number, cursor?: string): AuditPage {
  const before = cursor === undefined ? undefined : decodeCursor(cursor);
  const types = filter.action === undefined ? null : storedActionTypes(db, filter.action.toLowerCase());
  const leader = leadingIndex(db, filter, types);
  const rows = leader === "action" ? newestOfActions(db, filter, types!, before, limit + 1) : newestMatching(db, where(filter, before, undefined, leader), limit + 1);
  const page = rows.slice(0, limit);
  return {
    events: page.map((r) => auditEventView(db, r, keyring)),
    next_cursor: rows.length > limit ? encodeCursor(page.at(-1)!.seq) : null,
  };
}

/**
 * Which index leads: the action's types (each read through the action index, the other filters
 * tested on what it finds), or another filter's (the action tested on what that finds): the
 * action when it has fewer events than the other filters' smallest, which leads otherwise, each
 * counted on its own index up to COUNT_CAP entries (a few thousand at most). Both at the cap, the other leads: an
 * organization, an actor, a resource is narrower than an action type as a rule. Neither way is
 * always right: a rare action in a busy organization walked all the organization's events one
 * way (found in review: 125 ms at 600 k), a common action for one busy actor all that action's
 * events the other (200 ms at 1 M).
 */
function leadingIndex(db: Database, filter: AuditFilter, types: readonly string[] | null): "action" | IndexedKey {
  const smallest = indexedFilters(filter)
    .map((key) => ({ key, events: cappedCount(db, where(key === "time" ? { since: filter.since, until: filter.until } : { [key]: filter[key] })) }))
    // The time index gives its window in time order, which a page must sort whole: it leads a
    // small window only (found in review: a whole log's window read and sorted, 717 ms at 600 k).
    .filter(({ key, events }) => key !== "time" || events < COUNT_CAP)
    .sort((a, b) => a.events - b.events || Number(a.key === "time") - Number(b.key === "time"))[0];
  // The smallest leads, made to by the unary + on the others (without statistics SQLite may take the largest: found in review).
  if (types === null) return smallest?.key ?? "seq";
  let actionEvents = 0;
  for (const type of types) {
    actionEvents += cappedCount(db, { sql: "WHERE action = ?", params: [type] });
    if (smallest && actionEvents >= smallest.events) return smallest.key;
  }
  return "action";
}

const COUNT_CAP = 2_000;

/**
 * The filters with an index of their own (in seq order, but time), and "seq": none of them
 * leads, the log is walked from its newest event back.
 */
type IndexedKey = FilterKey | "time" | "seq";
type FilterKey = "organization" | "workspace" | "actor" | "resource_id" | "resource_type" | "outcome";

/** The filters of `filter` that have an index of their own (outcome: the failures' only). */
function indexedFilters(filter: AuditFilter): Array<FilterKey | "time"> {
  const keys = (["organization", "workspace", "actor", "resource_id", "resource_type"] as const).filter((key) => filter[key] !== undefined);
  return [...keys, ...(filter.outcome === "failure" ? (["outcome"] as const) : []), ...(filter.since !== undefined || filter.until !== undefined ? (["time"] as const) : [])];
}

function cappedCount(db: Database, { sql, params }: { sql: string; params: SQLQueryBindings[] }): number {
  return db.query<{ n: number }, SQLQueryBindings[]>(`SELECT count(*) AS n FROM (SELECT 1 FROM audit_events ${sql} LIMIT ?)`).get(...params, COUNT_CAP)!.n;
}

function newestMatching(db: Database, { sql, params }: { sql: string; params: SQLQueryBindings[] }, limit: number): StoredEvent[] {
  return db.query<StoredEvent, SQLQueryBindings[]>(`SELECT * FROM audit_events ${sql} ORDER BY seq DESC LIMIT ?`).all(...params, limit);
}

/**
 * The newest `limit` events of `filter.action`'s types: the newest `limit` of each stored type,
 * read in the action index's order (action, seq), merged. One query over the prefix's range
 * would read every event of a common type and sort them all first (1 M events: a third of a
 * second, the event loop held); a scan from the newest event, every event for a rare one.
 */
function newestOfActions(db: Database, filter: AuditFilter, types: readonly string[], before: number | undefined, limit: number): StoredEvent[] {
  if (types.length === 0) return [];
  const parts = types.map((type) => where(filter, before, type));
  const sql = parts.map(({ sql }) => `SELECT * FROM (SELECT * FROM audit_events ${sql} ORDER BY seq DESC LIMIT ?)`).join(" UNION ALL ");
  return db.query<StoredEvent, SQLQueryBindings[]>(`${sql} ORDER BY seq DESC LIMIT ?`).all(...parts.flatMap(({ params }) => [...params, limit]), limit);
}

/** The action types stored at or under `action`, by one seek of the action index each (a few hundred types at most), not a walk of the events. */
function storedActionTypes(db: Database, action: string): string[] {
  const types: string[] = [];
  if (db.query("SELECT 1 FROM audit_events WHERE action = ? LIMIT 1").get(action)) types.push(action);
  const next = db.query<{ action: string }, [string, string]>("SELECT action FROM audit_events WHERE action > ? AND action < ? ORDER BY action LIMIT 1");
  for (let row = next.get(action, `${action}/`); row; row = next.get(row.action, `${action}/`)) types.push(row.action);
  return types;
}

/** Events one slice of an export reads at most: about 5 ms of work when each matches (decrypted, then JSON). */
const EXPORT_SLICE = 500;

/**
 * Every matching event of the log as it stood at the first slice, newest first, a slice at a
 * time: the matches among the next `sliceEvents` events, read whole by one statement. The
 * caller yields to the event loop between slices: one statement walked as far as it took to
 * find 500 matches (found in review: ?action=sys read all of 300 k events for its page, 218 ms,
 * the API and DNS held meanwhile). Slices are bounded by the events below them, not by a range of
 * numbers, so a gap in the seqs (a tampered table) costs one slice, not one per missing number.
 * No statement stays open between slices: its read transaction would hold back the WAL's checkpoints.
 */
export function* auditEventSlices(db: Database, keyring: Keyring, filter: AuditFilter, sliceEvents = EXPORT_SLICE): Generator<AuditEventView[]> {
  const { sql, params } = where(filter);
  const matches = db.query<StoredEvent, SQLQueryBindings[]>(`SELECT * FROM audit_events ${sql ? `${sql} AND` : "WHERE"} seq >= ? AND seq < ? ORDER BY seq DESC`);
  const bottom = db.query<{ seq: number | null }, [number, number]>("SELECT min(seq) AS seq FROM (SELECT seq FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT ?)");
  const head = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_events").get()?.seq ?? null;
  for (let top = head === null ? null : head + 1; top !== null; ) {
    const low = bottom.get(top, sliceEvents)?.seq ?? null;
    if (low === null) return;
    yield matches.all(...params, low, top).map((row) => auditEventView(db, row, keyring));
    top = low;
  }
}

/** Every matching event, newest first, without loading them all at once. */
export function* iterateAuditEvents(db: Database, keyring: Keyring, filter: AuditFilter): Generator<AuditEventView> {
  const { sql, params } = where(filter);
  for (const row of db.query<StoredEvent, SQLQueryBindings[]>(`SELECT * FROM audit_events ${sql} ORDER BY seq DESC`).iterate(...params)) {
    yield auditEventView(db, row, keyring);
  }
}

export class BadCursorError extends Error {
  override readonly name = "BadCursorError";
}

const encodeCursor = (seq: number) => Buffer.from(`seq:${seq}`).toString("base64url");

function decodeCursor(cursor: string): number {
  const m = Buffer.from(cursor, "base64url").toString().match(/^seq:(\d{1,15})$/);
  if (!m) throw new BadCursorError("the cursor is not one this API returned");
  return Number(m[1]);
}

/** An event as the API shows it; its personal data decrypted when a keyring is given (else none). */
export function auditEventView(db: Database, row: StoredEvent, keyring: Keyring | null): AuditEventView {
  const personal = keyring ? personalData(db, row, keyring) : null;
  const marker = typeof personal === "string" ? personal : null; // ERASED or UNREADABLE, in every personal field
  const { source_address = null, user_agent = null, ...rest } = typeof personal === "object" && personal !== null ? personal : {};
  return {
    id: row.id,
    seq: row.seq,
    time: new Date(row.time).toISOString(),
    actor: { kind: row.actor_kind, organization: row.actor_org, user: row.actor_user, token: row.actor_token },
    action: row.action,
    resource: row.resource_type === null ? null : { type: row.resource_type, id: row.resource_id },
    organization: row.organization,
    workspace: row.workspace,
    request_id: row.request_id,
    outcome: row.outcome,
    reason: row.reason,
    subject: row.subject,
    source_address: marker ?? source_address,
    user_agent: marker ?? user_agent,
    personal: marker ?? (Object.keys(rest).length ? rest : null),
    hash: Buffer.from(row.hash).toString("hex"),
  };
}

/**
 * The event's personal data, decrypted. Damage to this event or to its subject's key reads
 * UNREADABLE; other errors are thrown, being every event's alike (a sealed keyring).
 */
function personalData(db: Database, row: StoredEvent, keyring: Keyring): PersonalData {
  if (row.personal === null || row.subject === null) return null;
  const owner = subjectKeyOwner(row.subject);
  try {
    return JSON.parse(keyring.decrypt(owner, `audit_events/${row.id}`, row.personal).toString("utf8"));
  } catch (error) {
    if (error instanceof KeyDestroyedError) return wasErased(db, owner, row.personal) ? ERASED : UNREADABLE;
    if (error instanceof DecryptionError) return UNREADABLE;
    if (!(error instanceof SealedError) && namesAbsentKek(db, owner, row.personal, keyring)) return UNREADABLE;
    throw error;
  }
}

/**
 * Whether the subject's key the ciphertext names is under a KEK this root key has no wrap of
 * (its row altered, or that KEK retired): the keyring's plain "not wrapped" error, which is that
 * one key row's damage, not every event's (found in review: each page and export holding such an
 * event failed, and forwarding stopped for good). Told by the rows, as the keyring's re-wrap
 * tells a "kek_gone" DEK, not by the error's message.
 */
function namesAbsentKek(db: Database, owner: string, envelope: Uint8Array, keyring: Keyring): boolean {
  const absent = "SELECT 1 FROM deks WHERE owner = ? AND version = ? AND NOT EXISTS (SELECT 1 FROM kek_wraps WHERE kek_version = deks.kek_version AND root_key_id = ?)";
  return db.query(absent).get(owner, envelopeKeyVersion(envelope), keyring.rootId) !== null;
}

/**
 * Whether the key the ciphertext names is there and destroyed (an erasure). The keyring throws
 * KeyDestroyedError for a key that was never there too: a changed key version, or an event moved
 * to another subject, must read as damage, not pass for a lawful erasure.
 */
function wasErased(db: Database, owner: string, envelope: Uint8Array): boolean {
  return db.query("SELECT 1 FROM deks WHERE owner = ? AND version = ? AND wrapped IS NULL").get(owner, envelopeKeyVersion(envelope)) !== null;
}

export const CSV_COLUMNS = [
  "seq",
  "id",
  "time",
  "actor_kind",
  "actor_organization",
  "actor_user",
  "actor_token",
  "action",
  "resource_type",
  "resource_id",
  "organization",
  "workspace",
  "request_id",
  "outcome",
  "reason",
  "subject",
  "source_address",
  "user_agent",
  "hash",
  // Last, after the columns of old: a reader that goes by position still finds those where they were.
  "personal",
] as const;

export function csvRow(e: AuditEventView): string {
  const values = [
    e.seq,
    e.id,
    e.time,
    e.actor.kind,
    e.actor.organization,
    e.actor.user,
    e.actor.token,
    e.action,
    e.resource?.type,
    e.resource?.id,
    e.organization,
    e.workspace,
    e.request_id,
    e.outcome,
    e.reason,
    e.subject,
    e.source_address,
    e.user_agent,
    e.hash,
    typeof e.personal === "object" && e.personal !== null ? JSON.stringify(e.personal) : e.personal, // JSON, as in NDJSON, or its marker
  ];
  return values.map(csvField).join(",") + "\r\n";
}

/** RFC 4180 quoting, and a leading quote mark on what a spreadsheet would run as a formula. */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
