/**
 * The first start after `citadel restore`: credentials and users must not come back to life
 * with the restored database. A token revoked after the backup — a leaked one, most likely —
 * or a user deleted since would otherwise work again; the database the restore replaced
 * (src/restore-marker.ts) knows.
 */
import type { Database } from "bun:sqlite";
import { claimRestoreStep, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { IamSettings } from "./settings.ts";
import * as sql from "./store.ts";

export interface AfterRestore {
  /** Credentials revoked in the previous database and revoked again here. */
  revoked: number;
  /** Users deleted in the previous database and deleted again here. */
  deleted: number;
  /** Logins ended (sessions, CLI logins and what was made from them). */
  ended: number;
  /** Whether the previous database could be read: without it, revocations after the backup are unknown. */
  previousRead: boolean;
}

/** What the previous database had ended: revoked credentials and deleted users, each with its time. */
interface Ended {
  credentials: Array<{ id: string; revoked_at: number }>;
  users: Array<{ id: string; deleted_at: number }>;
}

/**
 * Carries the previous database's revocations and user deletions over (each with its own time)
 * and ends every login. Logins are cheap to make again, and a session from the backup's time
 * may have been ended, or stolen, since: everyone logs in again. Personal access tokens and API
 * keys are made on purpose and used by machines: only those revoked since the backup go.
 * Audited once, with the counts. Null when no restore happened, or this one was handled
 * already (a start that failed later, before the marker went).
 */
export async function revokeAfterRestore(k: Kernel<IamSettings>, dataDir: string): Promise<AfterRestore | null> {
  const state = restoreState(dataDir);
  if (state.kind === "none") return null;
  const before = readPrevious(state.previous, endedBefore);
  const now = k.clock.now();
  return k.store.write((tx) => {
    if (!claimRestoreStep(tx, state.id, "iam", now)) return null;
    let revoked = 0;
    for (const row of before?.credentials ?? []) revoked += sql.revokeAt(tx, row.id, row.revoked_at).changes;
    const { deleted, held } = deleteAgain(tx, before?.users ?? [], now);
    const ended = sql.endAllLogins(tx, now).changes;
    const previous =
      before === null
        ? "no previous database to read revocations and deletions from (credentials revoked and users deleted after the backup work again: revoke and delete them)"
        : `${revoked} credential(s) revoked after the backup revoked again, ${deleted} user(s) deleted after the backup deleted again${held.length > 0 ? `; ${held.length} not deleted, being the restored database's last operator or last owner of an organization (${held.join(", ")}): delete or erase them again once another holds that` : ""}`;
    k.audit.record(tx, { action: "iam.restore.revoke", actor: { kind: "system" }, outcome: "success", resource: null, reason: `after a restore: ${previous}; ${ended} login(s) ended` });
    return { revoked, deleted, ended, previousRead: before !== null };
  });
}

/**
 * Deletes again the users the previous database had deleted (their password would log in
 * again), with every credential of theirs — but not the restored database's last operator or an
 * organization's last owner: whoever took that over after the backup is not in it, and the
 * appliance would be left without an operator, the organization without an owner. Those are
 * held, named in the event (their erasure, if one was asked for, is held too: subject plugin).
 */
function deleteAgain(tx: Database, users: Ended["users"], now: number): { deleted: number; held: string[] } {
  let deleted = 0;
  const held: string[] = [];
  for (const user of users) {
    if (!sql.userById(tx, user.id)) continue; // made after the backup: not here
    if (sql.isLastOperator(tx, user.id) || sql.ownedOrganizations(tx, user.id).some((org) => sql.isLastOwner(tx, org, user.id))) {
      held.push(user.id);
      continue;
    }
    if (sql.softDeleteUser(tx, user.id, user.deleted_at).changes === 0) continue; // deleted in the backup too
    sql.revokeUserCredentials(tx, user.id, ["session", "pat", "device", "workload", "console", "service"], now);
    deleted++;
  }
  return { deleted, held };
}

function endedBefore(db: Database): Ended {
  const credentials = hasTable(db, "credentials") ? db.query<{ id: string; revoked_at: number }, []>("SELECT id, revoked_at FROM credentials WHERE revoked_at IS NOT NULL").all() : [];
  const users = hasTable(db, "users") ? db.query<{ id: string; deleted_at: number }, []>("SELECT id, deleted_at FROM users WHERE deleted_at IS NOT NULL").all() : [];
  return { credentials, users };
}
