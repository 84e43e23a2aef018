/**
 * How old the keys are: from the running server's GET /v1/sys/keys when it answers an
 * operator, else from the database file (the same rows, read without a key). Rotation is due
 * as the server decides it: the active KEK is at least keys.rotation_days old.
 */
import type { Database } from "bun:sqlite";
import type { KeysView } from "./local-server.ts";
import { deksToRewrap, keks, rootKeys } from "./store.ts";

const DAY_MS = 86_400_000;

export interface KeyAges {
  source: "server" | "database";
  root: { id: string; method: string; shares: number | null; threshold: number | null; created_at: string; age_days: number } | null;
  pending_root: string | null;
  /** The pending key's seal method: another than the root key's for a seal migration. */
  pending_method: string | null;
  active_kek: { version: number; created_at: string; age_days: number } | null;
  rotation_days: number;
  rotation_due: boolean;
  deks_to_rewrap: number;
  /** Data keys that do not unwrap: known to the running server only (the file's are not opened here). */
  deks_damaged: number | null;
}

/** Key ages as GET /v1/sys/keys gives them. */
export function keyAgesFromServer(view: KeysView): KeyAges {
  const kek = view.keks.find((k) => k.version === view.active_kek) ?? null;
  return {
    source: "server",
    root: { id: view.root.id, method: view.root.method, shares: view.root.shares, threshold: view.root.threshold, created_at: view.root.created_at, age_days: view.root.age_days },
    pending_root: view.pending_root?.id ?? null,
    pending_method: view.pending_root?.method ?? null,
    active_kek: kek && { version: kek.version, created_at: kek.created_at, age_days: kek.age_days },
    rotation_days: view.rotation_days,
    rotation_due: view.rotation_due,
    deks_to_rewrap: view.deks_to_rewrap,
    deks_damaged: view.deks_damaged ?? 0,
  };
}

/** Key ages from the database file, computed as the server does. */
export function keyAgesFromDatabase(db: Database, rotationDays: number, now: number): KeyAges {
  const age = (ms: number) => Math.floor(((now - ms) / DAY_MS) * 10) / 10;
  const roots = rootKeys(db);
  const root = roots.find((r) => r.state === "active") ?? null;
  const kek = keks(db).filter((k) => k.retired_at === null).at(-1) ?? null;
  return {
    source: "database",
    root: root && { id: root.id, method: root.method, shares: root.shares, threshold: root.threshold, created_at: new Date(root.created_at).toISOString(), age_days: age(root.created_at) },
    pending_root: roots.find((r) => r.state === "pending")?.id ?? null,
    pending_method: roots.find((r) => r.state === "pending")?.method ?? null,
    active_kek: kek && { version: kek.version, created_at: new Date(kek.created_at).toISOString(), age_days: age(kek.created_at) },
    rotation_days: rotationDays,
    rotation_due: kek !== null && rotationDays > 0 && now - kek.created_at >= rotationDays * DAY_MS,
    deks_to_rewrap: kek ? deksToRewrap(db, kek.version) : 0,
    deks_damaged: null,
  };
}
