/**
 * The first start after `citadel restore`: mesh access must not come back to life with the
 * restored database. A pre-auth key revoked or used up after the backup would enroll nodes
 * again, and a node removed or disabled since would have its node token work again; the
 * database the restore replaced (src/restore-marker.ts) knows.
 */
import type { Database } from "bun:sqlite";
import { claimRestoreStep, descendsFromBackup, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { MeshService } from "./service.ts";
import type { MeshSettings } from "./settings.ts";
import * as sql from "./store.ts";

/** What the previous database had: its pre-auth keys' use and revocation, its nodes' state (null: an older version's, without mesh). */
type MeshBefore = {
  keys: Map<string, { used: number; revoked_at: number | null }>;
  nodes: Map<string, { disabled: number }>;
  /** It grew out of the backup now in place (descendsFromBackup): a row it lacks was removed since. */
  descends: boolean;
} | null;

export interface MeshAfterRestore {
  /** Pre-auth keys revoked or used after the backup (or unknown to the previous database), carried over. */
  keys: number;
  /** Nodes disabled or removed after the backup: disabled here. */
  nodes: number;
  previousRead: boolean;
}

/**
 * Carries the previous database's pre-auth keys over (the higher use count, its revocation;
 * a key it no longer had went with its network, and is revoked) and disables every node it had
 * disabled or no longer had (removed, or its network deleted): disabled, not removed, so an
 * operator sees it and removes it again; its network gets a new version, so peers drop it.
 * Without a previous database, every pre-auth key still usable is revoked (keys are cheap and
 * short-lived) and the nodes stay as the backup had them: the event says so. Once per
 * restore, audited once with the counts. Null when no restore happened or this one was handled.
 */
export async function carryOverMesh(k: Kernel<MeshSettings>, mesh: MeshService, dataDir: string): Promise<MeshAfterRestore | null> {
  const state = restoreState(dataDir);
  if (state.kind === "none") return null;
  const before = readPrevious(state.previous, (db) => ({ mesh: meshBefore(db, descendsFromBackup(k.store.db, db, state.auditHeadSeq)) }));
  const now = k.clock.now();
  const result = await k.store.write((tx) => {
    if (!claimRestoreStep(tx, state.id, "mesh", now)) return null;
    const keys = before === null ? revokeUsableKeys(tx, now) : before.mesh ? carryKeys(tx, before.mesh, now) : 0;
    const nodes = before?.mesh ? disableGoneNodes(tx, before.mesh, now) : { disabled: 0, networks: [] };
    for (const networkId of nodes.networks) sql.bumpVersion(tx, networkId, now);
    const reason =
      before === null
        ? `after a restore: no previous database to read from: ${keys} pre-auth key(s) still usable revoked; nodes removed or disabled after the backup work again (disable or remove them)`
        : `after a restore: ${keys} pre-auth key(s) revoked or used after the backup carried over, ${nodes.disabled} node(s) removed or disabled after the backup disabled${before.mesh && !before.mesh.descends ? " (the previous database is not this backup's later state: only what it records as revoked, used or disabled was carried over; nodes and keys it does not know were left alone)" : ""}`;
    k.audit.record(tx, { action: "mesh.restore.revoke", actor: { kind: "system" }, outcome: "success", resource: null, reason });
    return { keys, nodes: nodes.disabled, networks: nodes.networks, previousRead: before !== null };
  });
  if (result === null) return null;
  // The node cache and the listeners (config documents, DNS names) hear of the change.
  mesh.removedElsewhere(result.networks);
  return { keys: result.keys, nodes: result.nodes, previousRead: result.previousRead };
}

function carryKeys(tx: Database, before: NonNullable<MeshBefore>, now: number): number {
  let carried = 0;
  for (const key of sql.allPreauthKeys(tx)) {
    const known = before.keys.get(key.id);
    if (!known && !before.descends) continue; // unknown to a database of another history: says nothing
    const then = known ?? { used: key.used, revoked_at: now }; // gone with its network since the backup
    if (then.used <= key.used && (then.revoked_at === null || key.revoked_at !== null)) continue;
    tx.query("UPDATE mesh_preauth_keys SET used = MAX(used, ?), revoked_at = COALESCE(revoked_at, ?) WHERE id = ?").run(then.used, then.revoked_at, key.id);
    carried++;
  }
  return carried;
}

function revokeUsableKeys(tx: Database, now: number): number {
  return tx.query("UPDATE mesh_preauth_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND expires_at > ?1").run(now).changes;
}

/** Disables the nodes disabled or gone in the previous database; returns how many, and their networks. */
function disableGoneNodes(tx: Database, before: NonNullable<MeshBefore>, now: number): { disabled: number; networks: string[] } {
  const networks = new Set<string>();
  let disabled = 0;
  for (const node of sql.allNodes(tx)) {
    const then = before.nodes.get(node.id);
    if (node.disabled === 1 || then?.disabled === 0) continue;
    if (!then && !before.descends) continue; // unknown to a database of another history: says nothing
    // As a disable does: a disabled node's key rotation ends with it.
    tx.query("UPDATE mesh_nodes SET disabled = 1, next_public_key = NULL, rotation_version = NULL, rotation_started_at = NULL, updated_at = ? WHERE id = ?").run(now, node.id);
    networks.add(node.network_id);
    disabled++;
  }
  return { disabled, networks: [...networks] };
}

function meshBefore(db: Database, descends: boolean): MeshBefore {
  if (!hasTable(db, "mesh_nodes") || !hasTable(db, "mesh_preauth_keys")) return null; // nothing known of mesh there
  const keys = new Map(db.query<{ id: string; used: number; revoked_at: number | null }, []>("SELECT id, used, revoked_at FROM mesh_preauth_keys").all().map((row) => [row.id, row]));
  const nodes = new Map(db.query<{ id: string; disabled: number }, []>("SELECT id, disabled FROM mesh_nodes").all().map((row) => [row.id, row]));
  return { keys, nodes, descends };
}
