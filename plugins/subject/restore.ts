/**
 * The first start after `citadel restore`: a subject's audit log keys shredded after the backup
 * must stay shredded. `citadel audit erase` is in no ledger — only its keys tell: a `deks` row
 * of owner `audit-subject/<subject>` whose wrapped bytes are gone (NULL) in the database the
 * restore replaced (src/restore-marker.ts). A full erasure is in the erasure ledger, carried
 * over by the service (service.ts), which erases again with every key it takes once due: the
 * keys of an erasure still pending were shredded by `audit erase`, and are shredded again here. Keys destroyed
 * for other reasons are not replayed: a workspace or a webhook deleted after the backup comes
 * back with the backup, readable (a restore is how a deletion by mistake is undone).
 */
import type { Database } from "bun:sqlite";
import { subjectKeyOwner } from "../../src/audit/event.ts";
import { destroyOwnerKeys } from "../../src/crypto/keyring.ts";
import type { Kernel } from "../../src/plugin.ts";
import { claimRestoreStep, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";

export interface KeysAfterRestore {
  /** Key owners destroyed in the previous database and destroyed again here. */
  owners: number;
  /** Key versions destroyed again. */
  keys: number;
  /** Whether the previous database could be read: without it, keys destroyed after the backup read again. */
  previousRead: boolean;
}

/** An owner the previous database destroyed keys of, up to its highest destroyed version. */
interface DestroyedBefore {
  owner: string;
  version: number;
}

/**
 * Destroys again every key owner the previous database had destroyed and the restored one
 * holds undestroyed, as an erasure does (the keyring's destroyOwner; its database half while
 * sealed, as the first start after a restore may be). Once per restore, audited once with the
 * counts. Null when no restore happened, or this one was handled already.
 */
export async function carryOverDestroyedKeys(k: Kernel, dataDir: string): Promise<KeysAfterRestore | null> {
  const state = restoreState(dataDir);
  if (state.kind === "none") return null;
  const before = readPrevious(state.previous, destroyedIn);
  const now = k.clock.now();
  return k.store.write((tx) => {
    if (!claimRestoreStep(tx, state.id, "subject.keys", now)) return null;
    const result = { ...destroyAgain(k, tx, before ?? [], now), previousRead: before !== null };
    const reason =
      before === null
        ? "after a restore: no previous database to read destroyed keys from: audit log keys shredded after the backup (audit erase) read again — erase those subjects again"
        : `after a restore: ${result.keys} key(s) of ${result.owners} owner(s) destroyed after the backup destroyed again`;
    k.audit.record(tx, { action: "subject.restore.keys", actor: { kind: "system" }, outcome: "success", resource: null, reason });
    return result;
  });
}

function destroyAgain(k: Kernel, tx: Database, before: DestroyedBefore[], now: number): { owners: number; keys: number } {
  const keyring = k.seal.keyringIfUnsealed();
  let owners = 0;
  let keys = 0;
  for (const { owner, version } of before) {
    // A version the previous database destroyed, still readable here. Versions after it (the
    // owner's key made anew since) the restored database cannot hold, coming from before.
    if (!tx.query("SELECT 1 FROM deks WHERE owner = ? AND version <= ? AND wrapped IS NOT NULL").get(owner, version)) continue;
    keys += keyring ? keyring.destroyOwner(tx, owner, now) : destroyOwnerKeys(tx, owner, now);
    owners++;
  }
  return { owners, keys };
}

/**
 * The audit log keys the previous database had shredded, but those of subjects its erasure
 * ledger records as erased for good: the keys went with that erasure, which is carried over
 * as one already due (erased again at this start) or held, when its subject is the last
 * operator or owner here — left to it, not shredded here behind its back. A pending erasure
 * destroys no keys: the keys of its subject went by `audit erase`, and are destroyed again now,
 * not up to grace_days later when the erasure falls due.
 */
function destroyedIn(db: Database): DestroyedBefore[] {
  if (!hasTable(db, "deks")) return [];
  const erased = hasTable(db, "subject_erasures")
    ? new Set(db.query<{ subject_id: string }, []>("SELECT subject_id FROM subject_erasures WHERE erased_at IS NOT NULL").all().map((r) => subjectKeyOwner(r.subject_id)))
    : new Set<string>();
  return db
    .query<DestroyedBefore, [string]>("SELECT owner, max(version) AS version FROM deks WHERE wrapped IS NULL AND owner GLOB ? GROUP BY owner")
    .all(`${subjectKeyOwner("")}*`)
    .filter((d) => !erased.has(d.owner));
}
