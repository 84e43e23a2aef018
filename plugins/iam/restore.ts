/**
 * The first start after `citadel restore`: credentials must not come back to life with the
 * restored database. A token revoked after the backup — a leaked one, most likely — would
 * otherwise work again; the database the restore replaced (src/restore-marker.ts) knows.
 */
import type { Database } from "bun:sqlite";
import { hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { IamSettings } from "./settings.ts";
import * as sql from "./store.ts";

export interface AfterRestore {
  /** Credentials revoked in the previous database and revoked again here. */
  revoked: number;
  /** Logins ended (sessions, CLI logins and what was made from them). */
  ended: number;
  /** Whether the previous database could be read: without it, revocations after the backup are unknown. */
  previousRead: boolean;
}

/**
 * Carries the previous database's revocations over (each with its own revoked_at) and ends
 * every login. Logins are cheap to make again, and a session from the backup's time may have
 * been ended, or stolen, since: everyone logs in again. Personal access tokens and API keys
 * are made on purpose and used by machines: only those revoked since the backup go.
 * Audited once, with the counts. Null when no restore happened.
 */
export async function revokeAfterRestore(k: Kernel<IamSettings>, dataDir: string): Promise<AfterRestore | null> {
  const state = restoreState(dataDir);
  if (state.kind === "none") return null;
  const revokedBefore = readPrevious(state.previous, revokedCredentials);
  const now = k.clock.now();
  return k.store.write((tx) => {
    let revoked = 0;
    for (const row of revokedBefore ?? []) revoked += sql.revokeAt(tx, row.id, row.revoked_at).changes;
    const ended = sql.endAllLogins(tx, now).changes;
    const previous = revokedBefore === null ? "no previous database to read revocations from (credentials revoked after the backup work again: revoke them)" : `${revoked} credential(s) revoked after the backup revoked again`;
    k.audit.record(tx, { action: "iam.restore.revoke", actor: { kind: "system" }, outcome: "success", resource: null, reason: `after a restore: ${previous}; ${ended} login(s) ended` });
    return { revoked, ended, previousRead: revokedBefore !== null };
  });
}

function revokedCredentials(db: Database): Array<{ id: string; revoked_at: number }> {
  if (!hasTable(db, "credentials")) return [];
  return db.query<{ id: string; revoked_at: number }, []>("SELECT id, revoked_at FROM credentials WHERE revoked_at IS NOT NULL").all();
}
