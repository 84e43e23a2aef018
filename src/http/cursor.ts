/**
 * Keyset pages of a list: a page is the rows after where the previous one ended, in a stable
 * order, found by a seek of an index, never by skipping rows (OFFSET reads every row it skips,
 * and a row added or removed meanwhile shifts every page after it). Where a page ended travels
 * to the client as an opaque cursor: the list's name (with whose list it is: an organization's
 * members are not another's), its last row's sort value and row id (the tie-break), encrypted (AES-256-GCM) under a key this process made at start. Encrypted, because
 * a sort value can be personal data (a user's email address) and cursors travel in URLs, which
 * proxies log; authenticated, so that only what this API made is taken. A cursor this API did
 * not make, made for another list or before a restart, is 422 naming query.cursor.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { InvalidError } from "../errors.ts";

/** This process's cursor key: cursors live as long as the process does. */
const CURSOR_KEY = randomBytes(32);
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** Where a page ended: its last row's sort value, and its row id among rows of the same value. */
export interface PageEnd<V extends string | number = string | number> {
  value: V;
  row: number;
}

/** What a client asks of a list: `limit` rows (the route's schema bounds it), after `cursor`. */
export interface PageAsked {
  limit?: number;
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

/** As the audit list's and the share list's: 100 rows a page unless asked otherwise. */
export const DEFAULT_PAGE_ROWS = 100;

export function encodeCursor(list: string, end: PageEnd): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", CURSOR_KEY, nonce);
  const sealed = Buffer.concat([cipher.update(JSON.stringify([list, end.value, end.row]), "utf8"), cipher.final()]);
  return Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64url");
}

/**
 * Where `cursor` says the previous page of `list` ended, its sort value of the type `kind`; null
 * without one (the first page). Only what encodeCursor makes is taken, byte for byte.
 */
export function decodeCursor<K extends "string" | "number">(cursor: string | undefined, list: string, kind: K): PageEnd<K extends "string" ? string : number> | null {
  if (cursor === undefined) return null;
  const parts = parsed(cursor);
  const wellFormed = Array.isArray(parts) && parts.length === 3 && parts[0] === list && typeof parts[1] === kind && Number.isSafeInteger(parts[2]);
  if (!wellFormed || (kind === "number" && !Number.isSafeInteger(parts[1]))) throw notOurs();
  return { value: parts[1], row: parts[2] } as PageEnd<K extends "string" ? string : number>;
}

/**
 * The page `rows` hold: read one row more than `limit` (in the list's order, after the cursor),
 * so that a next page is promised only when there is one.
 */
export function pageOf<R, T>(rows: readonly R[], limit: number, list: string, endOf: (row: R) => PageEnd, view: (row: R) => T): Page<T> {
  const page = rows.slice(0, limit);
  return { items: page.map(view), next_cursor: rows.length > limit ? encodeCursor(list, endOf(page.at(-1)!)) : null };
}

/** The cursor's content, when this process made it (base64url decoding skips what is not of its alphabet: checked too). */
function parsed(cursor: string): unknown {
  const bytes = Buffer.from(cursor, "base64url");
  if (bytes.toString("base64url") !== cursor || bytes.length <= NONCE_BYTES + TAG_BYTES) return null;
  try {
    const decipher = createDecipheriv("aes-256-gcm", CURSOR_KEY, bytes.subarray(0, NONCE_BYTES));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString("utf8"));
  } catch {
    return null;
  }
}

const notOurs = () => new InvalidError("the cursor is not one this API returned (or Citadel restarted since): start again from the first page", "query.cursor");
