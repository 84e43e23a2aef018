/**
 * The first start after `citadel restore`: one-time share links must not open again with the
 * restored database. A link viewed, revoked or burned (too many wrong passphrases) after the
 * backup holds its ciphertext again there; the database the restore replaced
 * (src/restore-marker.ts) knows what became of it.
 */
import type { Database } from "bun:sqlite";
import { claimRestoreStep, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { SecretsSettings } from "./settings.ts";

/** A share link as the previous database left it. */
interface ShareBefore {
  id: string;
  views: number;
  wrong_passphrases: number;
  revoked_at: number | null;
}

export interface SharesAfterRestore {
  /** Links the previous database counted more views, wrong passphrases or a revocation for. */
  carried: number;
  /** Links that can no longer open (used up or revoked): their ciphertext dropped. */
  closed: number;
  /** Whether the previous database could be read: without it every restored link still open was revoked. */
  previousRead: boolean;
}

/**
 * Carries the previous database's share links over: the higher counts of views and wrong
 * passphrases, and its revocation; a link that is then used up or revoked loses its ciphertext,
 * as it did then. Without a previous database nobody knows which links were opened since the
 * backup: every link still open is revoked (a new one is cheap to make; a second view of a
 * one-time secret is not to be had back). Once per restore, audited once with the counts.
 * Null when no restore happened, or this one was handled already.
 */
export async function carryOverShares(k: Kernel<SecretsSettings>, dataDir: string): Promise<SharesAfterRestore | null> {
  const state = restoreState(dataDir);
  if (state.kind === "none") return null;
  const before = readPrevious(state.previous, sharesBefore);
  const now = k.clock.now();
  return k.store.write((tx) => {
    if (!claimRestoreStep(tx, state.id, "secrets", now)) return null;
    const result = before === null ? revokeOpen(tx, now) : applyBefore(tx, before);
    const reason =
      before === null
        ? `after a restore: no previous database to read share links from: ${result.closed} link(s) still open revoked`
        : `after a restore: ${result.carried} share link(s) viewed, revoked or burned after the backup carried over, ${result.closed} of them closed (ciphertext dropped)`;
    k.audit.record(tx, { action: "secrets.restore.shares", actor: { kind: "system" }, outcome: "success", resource: null, reason });
    return result;
  });
}

function applyBefore(tx: Database, before: ShareBefore[]): SharesAfterRestore {
  let carried = 0;
  let closed = 0;
  for (const share of before) {
    const changed = tx
      .query(
        `UPDATE secrets_shares SET views = MAX(views, ?1), wrong_passphrases = MAX(wrong_passphrases, ?2), revoked_at = COALESCE(revoked_at, ?3)
         WHERE id = ?4 AND (views < ?1 OR wrong_passphrases < ?2 OR (revoked_at IS NULL AND ?3 IS NOT NULL))`,
      )
      .run(share.views, share.wrong_passphrases, share.revoked_at, share.id).changes;
    if (changed === 0) continue; // as the backup had it, or made after it
    carried++;
    closed += tx.query("UPDATE secrets_shares SET ciphertext = x'' WHERE id = ? AND (views >= max_views OR revoked_at IS NOT NULL)").run(share.id).changes;
  }
  return { carried, closed, previousRead: true };
}

function revokeOpen(tx: Database, now: number): SharesAfterRestore {
  const closed = tx.query("UPDATE secrets_shares SET revoked_at = ?1, ciphertext = x'' WHERE revoked_at IS NULL AND views < max_views AND expires_at > ?1").run(now).changes;
  return { carried: 0, closed, previousRead: false };
}

function sharesBefore(db: Database): ShareBefore[] {
  if (!hasTable(db, "secrets_shares")) return [];
  const wrong = db.query("SELECT 1 FROM pragma_table_info('secrets_shares') WHERE name = 'wrong_passphrases'").get() !== null; // an older version's has none
  return db.query<ShareBefore, []>(`SELECT id, views, ${wrong ? "wrong_passphrases" : "0 AS wrong_passphrases"}, revoked_at FROM secrets_shares`).all();
}
