/**
 * Keyset pages of a list: a page is the rows after where the previous one ended, in a stable
 * order, found by a seek of an index, never by skipping rows (OFFSET reads every row it skips,
 * and a row added or removed meanwhile shifts every page after it). Where a page ended travels
 * to the client as an opaque cursor: base64url of the list's name, its last row's sort value and
 * row id (the tie-break). A cursor this API did not make, or made for another list, is 422
 * naming query.cursor.
 */
import { InvalidError } from "../errors.ts";

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
  return Buffer.from(JSON.stringify([list, end.value, end.row])).toString("base64url");
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
  const end = { value: parts[1], row: parts[2] } as PageEnd<K extends "string" ? string : number>;
  if (encodeCursor(list, end) !== cursor) throw notOurs(); // base64url decoding skips what is not of its alphabet
  return end;
}

/**
 * The page `rows` hold: read one row more than `limit` (in the list's order, after the cursor),
 * so that a next page is promised only when there is one.
 */
export function pageOf<R, T>(rows: readonly R[], limit: number, list: string, endOf: (row: R) => PageEnd, view: (row: R) => T): Page<T> {
  const page = rows.slice(0, limit);
  return { items: page.map(view), next_cursor: rows.length > limit ? encodeCursor(list, endOf(page.at(-1)!)) : null };
}

function parsed(cursor: string): unknown {
  try {
    return JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    return null;
  }
}

const notOurs = () => new InvalidError("the cursor is not one this API returned", "query.cursor");
