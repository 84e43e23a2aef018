/**
 * Every item of a list the API answers a page at a time (`{ items, next_cursor }`, see
 * src/http/cursor.ts), for the commands that show a list whole. The first page is asked as
 * before paging (a server from before it answers the list whole, and would refuse a parameter it
 * does not know); the pages after it, as many rows as a page holds, each after the one before.
 */
import type { ApiClient } from "../plugin.ts";
import { ApiError } from "./api-client.ts";

/** The most rows a page holds (the lists' `limit` maximum): the fewer requests, the fewer against the rate limit. */
const PAGE_ROWS = 1000;

interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export async function allPages<T>(api: ApiClient, path: string): Promise<T[]> {
  try {
    return await everyPage<T>(api, path);
  } catch (error) {
    // The server restarted between two pages: its cursors are gone with it (they are encrypted
    // under a key each process makes). The list is read again from its start, once.
    if (!(error instanceof ApiError && error.status === 422 && error.message.includes("the cursor is not one this API returned"))) throw error;
    return everyPage<T>(api, path);
  }
}

async function everyPage<T>(api: ApiClient, path: string): Promise<T[]> {
  let page = await api.request<Page<T>>("GET", path);
  const items = [...page.items];
  while (page.next_cursor) {
    const cursor = page.next_cursor;
    page = await api.request<Page<T>>("GET", `${path}${path.includes("?") ? "&" : "?"}limit=${PAGE_ROWS}&cursor=${encodeURIComponent(cursor)}`);
    // A server that hands back the cursor it was given would be followed forever.
    if (page.next_cursor === cursor) throw new Error(`The server answered ${path} with the same page again: its list cannot be followed to the end.`);
    items.push(...page.items);
  }
  return items;
}
