/** What tests of writes racing a deletion ask: how a write was refused, and what was recorded after. */
import type { Database } from "bun:sqlite";

/** What a promise was refused with: the error's code (the HTTP problem's) and message; null when it was not. */
export async function refusal(settled: Promise<unknown>): Promise<{ code?: string; message?: string } | null> {
  const error = (await settled.then(
    () => null,
    (e: unknown) => e,
  )) as { code?: string; message?: string } | null;
  return error && { code: error.code, message: error.message };
}

/** The actions of the successful audit events recorded after the first `action` (a deletion, an erasure). */
export function successesAfter(db: Database, action: string): string[] {
  const rows = db
    .query<{ action: string }, [string]>("SELECT action FROM audit_events WHERE outcome = 'success' AND rowid > (SELECT min(rowid) FROM audit_events WHERE action = ?) ORDER BY rowid")
    .all(action);
  return rows.map((r) => r.action);
}
