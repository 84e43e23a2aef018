/**
 * All SQL of the ops plugin: read-only looks at the database file, which work with Citadel
 * stopped or sealed (nothing here needs a key). Tables of plugins that are not in this binary
 * (or not migrated yet) read as empty.
 */
import type { Database } from "bun:sqlite";
import { join } from "node:path";
import type { Config } from "../../src/config/schema.ts";

export const DATABASE_FILE = "citadel.db";

/**
 * Why a database that is there was not read: this user may not open it (it is the service
 * user's), or the file is not an SQLite database (damaged, overwritten). A check or report
 * part that needs the database says which, and never takes it for "nothing there".
 */
export type DatabaseProblem = "unreadable" | "not_a_database";

export function describeDatabaseProblem(problem: DatabaseProblem): string {
  return problem === "unreadable" ? "the database cannot be read by this user (run as root or as the service user)" : "the database file is not a readable SQLite database";
}

/** SQLite's word for a file that is not a database, or one whose pages are damaged. */
export function isNotADatabase(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT"));
}

/** citadel.db in the data directory. */
export function databasePath(config: Config): string {
  return join(config.data_dir, DATABASE_FILE);
}

function hasTable(db: Database, name: string): boolean {
  return db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?").get(name)!.n > 0;
}

export interface RootKeyRow {
  id: string;
  verifier: Uint8Array;
  method: string;
  shares: number | null;
  threshold: number | null;
  state: "active" | "pending";
  created_at: number;
}

/** The root keys' verifiers and dates (never the keys). */
export function rootKeys(db: Database): RootKeyRow[] {
  if (!hasTable(db, "root_keys")) return [];
  return db.query<RootKeyRow, []>("SELECT id, verifier, method, shares, threshold, state, created_at FROM root_keys ORDER BY state").all();
}

export interface KekRow {
  version: number;
  created_at: number;
  retired_at: number | null;
}

/** Key-encryption key versions and their dates. */
export function keks(db: Database): KekRow[] {
  if (!hasTable(db, "keks")) return [];
  return db.query<KekRow, []>("SELECT version, created_at, retired_at FROM keks ORDER BY version").all();
}

/** Data keys still wrapped by a KEK older than `active` (a rotation not finished). */
export function deksToRewrap(db: Database, active: number): number {
  if (!hasTable(db, "deks")) return 0;
  return db.query<{ n: number }, [number]>("SELECT count(*) AS n FROM deks WHERE wrapped IS NOT NULL AND kek_version < ?").get(active)!.n;
}

/** When each signing key was made: the audit checkpoints' and the mesh's. */
export function signingKeys(db: Database): Array<{ purpose: string; id: string; created_at: number }> {
  const out: Array<{ purpose: string; id: string; created_at: number }> = [];
  if (hasTable(db, "audit_signing_keys")) {
    for (const row of db.query<{ id: string; created_at: number }, []>("SELECT id, created_at FROM audit_signing_keys ORDER BY created_at").all()) out.push({ purpose: "audit checkpoints", ...row });
  }
  if (hasTable(db, "mesh_signing_key")) {
    for (const row of db.query<{ created_at: number }, []>("SELECT created_at FROM mesh_signing_key").all()) out.push({ purpose: "mesh configs", id: "mesh", created_at: row.created_at });
  }
  return out;
}

/** A zone the DNS server hosts, to ask it for its SOA; null when there is none. */
export function anyHostedZone(db: Database): string | null {
  if (!hasTable(db, "dns_zones")) return null;
  return db.query<{ name: string }, []>("SELECT name FROM dns_zones WHERE deleted_at IS NULL ORDER BY name LIMIT 1").get()?.name ?? null;
}

/**
 * The secrets webhooks Citadel delivers to. `url` is the whole URL only for a row an earlier
 * version stored so (`whole`); since, the URL is encrypted (its path can hold a token) and the
 * row keeps its origin alone, as `https://host/…`.
 */
export function webhooks(db: Database): Array<{ id: string; workspace_id: string; url: string; whole: boolean; created_at: number }> {
  if (!hasTable(db, "secrets_webhooks")) return [];
  const encrypted = db.query<{ n: number }, []>("SELECT count(*) AS n FROM pragma_table_info('secrets_webhooks') WHERE name = 'url_encrypted'").get()!.n > 0;
  return db
    .query<{ id: string; workspace_id: string; url: string; whole: number; created_at: number }, []>(
      `SELECT id, workspace_id, url, ${encrypted ? "url_encrypted IS NULL" : "1"} AS whole, created_at FROM secrets_webhooks WHERE deleted_at IS NULL ORDER BY url, id`,
    )
    .all()
    .map((hook) => ({ ...hook, whole: hook.whole === 1 }));
}

/** Reputation lists refreshed from a URL. */
export function listSources(db: Database): Array<{ name: string; url: string; refresh_minutes: number | null; updated_at: number }> {
  if (!hasTable(db, "intel_lists")) return [];
  return db.query<{ name: string; url: string; refresh_minutes: number | null; updated_at: number }, []>("SELECT name, url, refresh_minutes, updated_at FROM intel_lists WHERE url IS NOT NULL ORDER BY name").all();
}

/** DNS secondaries: NOTIFY goes out to each (UDP), and each may transfer zones in. */
export function secondaries(db: Database): Array<{ name: string; address: string; notify_port: number }> {
  if (!hasTable(db, "dns_secondaries")) return [];
  return db.query<{ name: string; address: string; notify_port: number }, []>("SELECT name, address, notify_port FROM dns_secondaries ORDER BY name").all();
}
