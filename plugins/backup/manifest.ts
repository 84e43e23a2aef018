/**
 * A backup's manifest: what the file holds, readable without the key. It is not secret (no
 * value, no key, no personal data: versions, sizes, a hash, the audit chain's head), and
 * keeping it in clear lets an operator, `citadel doctor` or a script see what a backup is
 * and whether it is the one they want before anyone fetches a key. It is authenticated
 * with the rest of the header, so it cannot be changed without the change being detected
 * once the file is opened with its key.
 */
import type { Database } from "bun:sqlite";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { BackupError } from "./errors.ts";

export const Manifest = Type.Object(
  {
    // A pattern rather than format "date-time": TypeBox's checker knows no formats unless told.
    created_at: Type.String({ pattern: "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{3})?Z$", description: "When the snapshot was taken (ISO 8601, UTC)." }),
    reason: Type.Union([Type.Literal("scheduled"), Type.Literal("on_demand")]),
    citadel: Type.Object({ version: Type.String(), commit: Type.String() }, { description: "The Citadel that made the backup." }),
    instance_id: Type.Union([Type.String(), Type.Null()], { description: "The installation's id (the instance table)." }),
    root_key_id: Type.Union([Type.String(), Type.Null()], { description: "The root key the snapshot's keys are wrapped by: the key a restored instance unseals with." }),
    database: Type.Object({
      bytes: Type.Integer({ minimum: 0 }),
      sha256: Type.String({ pattern: "^[0-9a-f]{64}$", description: "SHA-256 of the database file inside (the plaintext)." }),
    }),
    migrations: Type.Record(Type.String(), Type.String(), { description: "Per owner (kernel, each plugin), the newest migration applied." }),
    audit_head: Type.Union([Type.Object({ seq: Type.Integer({ minimum: 1 }), hash: Type.String() }), Type.Null()], {
      description: "The last audit event in the snapshot: a restored log must verify up to it.",
    }),
  },
  { additionalProperties: false },
);
export type Manifest = Static<typeof Manifest>;

/** What a snapshot says about itself, read from the database file the backup holds. */
export interface SnapshotFacts {
  instance_id: string | null;
  root_key_id: string | null;
  migrations: Record<string, string>;
  audit_head: { seq: number; hash: string } | null;
}

/** Reads the facts a manifest carries from a snapshot (tables that do not exist read as empty). */
export function readSnapshotFacts(db: Database): SnapshotFacts {
  const has = (table: string) => db.query("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(table) !== null;
  const migrations: Record<string, string> = {};
  if (has("citadel_migrations")) {
    for (const row of db.query<{ owner: string; id: string }, []>("SELECT owner, max(id) AS id FROM citadel_migrations GROUP BY owner ORDER BY owner").all()) {
      migrations[row.owner] = row.id;
    }
  }
  const head = has("audit_events") ? db.query<{ seq: number; hash: Uint8Array }, []>("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get() : null;
  return {
    instance_id: has("instance") ? (db.query<{ id: string }, []>("SELECT id FROM instance").get()?.id ?? null) : null,
    root_key_id: has("root_keys") ? (db.query<{ id: string }, []>("SELECT id FROM root_keys WHERE state = 'active'").get()?.id ?? null) : null,
    migrations,
    audit_head: head ? { seq: head.seq, hash: Buffer.from(head.hash).toString("hex") } : null,
  };
}

/** Parses and checks a manifest's JSON; anything else is a damaged or foreign file. */
export function parseManifest(bytes: Uint8Array): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new BackupError("the backup's manifest is not valid JSON: the file is damaged");
  }
  if (!Value.Check(Manifest, value)) {
    const first = Value.Errors(Manifest, value).First();
    throw new BackupError(`the backup's manifest is malformed${first ? ` (${first.path || "/"}: ${first.message})` : ""}: the file is damaged`);
  }
  return value;
}

/** The manifest as lines for a terminal. */
export function describeManifest(m: Manifest): string[] {
  return [
    `created:      ${m.created_at} (${m.reason === "scheduled" ? "scheduled" : "on demand"})`,
    `citadel:      ${m.citadel.version} (commit ${m.citadel.commit})`,
    `instance:     ${m.instance_id ?? "-"}`,
    `root key:     ${m.root_key_id ?? "-"}`,
    `database:     ${m.database.bytes} bytes, sha256 ${m.database.sha256}`,
    `audit head:   ${m.audit_head ? `event ${m.audit_head.seq}, hash ${m.audit_head.hash}` : "(empty log)"}`,
    `migrations:   ${Object.entries(m.migrations).map(([owner, id]) => `${owner}/${id}`).join(", ") || "-"}`,
  ];
}
