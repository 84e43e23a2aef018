/**
 * Secrets: environments, values and their versions, bulk import and export, rotation, and the
 * re-encryption of a workspace under a new data key. Every change is audited in the same
 * transaction; every read of a value is audited (durably) before the value is returned.
 */
import type { Database } from "bun:sqlite";
import { actorOf } from "../../src/auth/principal.ts";
import { roleAllows } from "../../src/auth/rbac.ts";
import { scopesGrant } from "../../src/auth/scopes.ts";
import { DecryptionError, envelopeKeyVersion } from "../../src/crypto/aead.ts";
import { KeyDestroyedError } from "../../src/crypto/keyring.ts";
import { ReadMemo } from "../../src/store/read-memo.ts";
import { ConflictError, DataIntegrityError, InvalidError, NotFoundError, PayloadTooLargeError, PreconditionFailedError, VersionConflictError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import { byWhom, ensureWorkspace, ENVIRONMENT_NAME, environmentFor, event, liveWorkspaceRow, roleInWorkspace, valueKeyOwner, type Caller, type SecretsKernel } from "./context.ts";
import { isSecretName, parseDotenv, parseJsonSecrets, printDotenv, printJsonSecrets, type SecretEntry } from "./dotenv.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { e2eeCiphertextLength, e2eeValueHeader, isE2eeCiphertext, isMarkedWrappedKey } from "./e2ee.ts";
import { generateValue, type Generator } from "./generators.ts";
import { MAX_IMPORT_ENTRIES } from "./model.ts";
import { shareSource } from "./shares.ts";
import * as sql from "./store.ts";
import type { E2eeKeys, WrappedCopy } from "./e2ee-keys.ts";
import type { Webhooks } from "./webhooks.ts";

const DAY_MS = 86_400_000;
/**
 * The ciphertexts of stored versions kept in memory at most (SecretsService.storedVersions),
 * counted in bytes: a value stored under an earlier, larger max_value_bytes, or an end-to-end
 * encrypted one (base64, a third larger), weighs what it weighs.
 */
const STORED_VERSIONS_KEPT_BYTES = 32 * 1024 * 1024;
/**
 * The largest ciphertext remembered: a sixteenth of the budget, 2 MiB, above any value a server
 * takes today (1 MiB at most, a third more end-to-end encrypted), so that at least 16 are kept
 * before the memo starts over. A larger one (it cannot be written now) is read each time.
 */
const STORED_VERSION_KEPT_MOST_BYTES = STORED_VERSIONS_KEPT_BYTES / 16;
const REENCRYPT_BATCH = 200;
/** The reads of a list the client says it makes for an export: said as its word, which the server cannot check. */
const DECLARED_EXPORT = "export (declared by the client)";

export interface SecretInput {
  value: string;
  note?: string | null;
  rotation_days?: number | null;
  expires_at?: string | null;
}

export interface E2eeRotation {
  from_version?: number;
  values: Array<{ environment: string; name: string; version: number; value: string }>;
  /** Each with the public key it is wrapped to, if the client names it (see WrappedCopy). */
  wrapped: Array<WrappedCopy & { user: string }>;
}

export interface ImportRequest {
  format?: "dotenv" | "json";
  content?: string;
  entries?: SecretEntry[];
  dry_run?: boolean;
  /** Replace values that differ (default); false leaves existing secrets alone. */
  overwrite?: boolean;
}

/** A secret's metadata fields to write, as stored (expires_at in ms since the epoch). */
type MetadataChanges = { note?: string | null; rotation_days?: number | null; expires_at?: number | null };

/**
 * An If-Match precondition: the version the caller last saw, and whether its tag was weak
 * (W/"3"), which never matches — If-Match compares strongly (RFC 9110 13.1.1).
 */
export interface IfMatch {
  version: number;
  weak: boolean;
}

type Change = "secret.created" | "secret.updated" | "secret.deleted" | "secret.restored" | "secret.purged";

export class SecretsService {
  /**
   * What a read of a value looks up — the workspace's secrets row, the environment, the secret
   * — remembered while the database is unchanged (src/store/read-memo.ts), as the guard's facts
   * are. With the stored version below and the data key's row (the keyring's), a read that
   * finds them all reads no table, and so takes no SQLite read lock: about 10 µs of a request
   * on a busy socket (docs/BENCHMARKS.md).
   */
  private readonly found: ReadMemo;
  /**
   * Stored versions read, remembered as `found` is: ciphertexts (a value is only ever decrypted
   * for the request that reads it), at most STORED_VERSIONS_KEPT_BYTES of them together.
   */
  private readonly storedVersions: ReadMemo;

  constructor(
    private readonly k: SecretsKernel,
    private readonly webhooks: Webhooks,
  ) {
    this.found = new ReadMemo(k.store);
    this.storedVersions = new ReadMemo(k.store, {
      maxBytes: STORED_VERSIONS_KEPT_BYTES,
      maxBytesEach: STORED_VERSION_KEPT_MOST_BYTES,
      bytesOf: (row) => (row as sql.VersionRow | null)?.ciphertext.byteLength ?? 0,
    });
  }

  private get db(): Database {
    return this.k.store.db;
  }

  private now(): number {
    return this.k.clock.now();
  }

  // --- workspace settings and environments ------------------------------------------------

  async settings(workspaceId: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const owner = valueKeyOwner(workspaceId);
    const dek = this.k.seal.keyring().dekVersion(this.db, owner);
    const stale = dek === null ? 0 : sql.countToReencrypt(this.db, workspaceId, dek);
    return { workspace: workspaceId, e2ee: ws.e2ee === 1, data_key_version: dek, values_on_older_keys: stale, environments: this.environments(ws) };
  }

  /**
   * End-to-end encryption is chosen while the workspace holds no secrets: values cannot change
   * sides. Turning it on when it is on already is refused, not ignored: a client taking the
   * answer as its own doing would make a second workspace key over the one members hold.
   */
  async setE2ee(caller: Caller, workspaceId: string, on: boolean) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    await this.k.store.write((tx) => {
      const encrypted = liveWorkspaceRow(this.k, tx, workspaceId).e2ee === 1;
      if (encrypted && on) throw new ConflictError("This workspace is end-to-end encrypted already: its key stays as it is (members get it with citadel secrets e2ee grant; citadel secrets e2ee rotate replaces it).");
      if (encrypted === on) return;
      if (sql.secretCountInWorkspace(tx, workspaceId) > 0) throw new ConflictError("End-to-end encryption is chosen while a workspace holds no secrets (purge them first, or use a new workspace).");
      sql.setE2ee(tx, workspaceId, on, caller.principal.userId);
      // No secret is left (deleted ones included), so no value needs any version of the
      // workspace key: the wrapped copies go and the numbering starts again. Kept, the earlier
      // holders would count as holders once encryption is turned on again, and the new first
      // key could not be set.
      if (!on) sql.forgetWorkspaceKeys(tx, workspaceId);
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.workspace.update", resource: { type: "workspace", id: workspaceId }, reason: on ? "end-to-end encryption on" : "end-to-end encryption off" }));
    });
    return this.settings(workspaceId);
  }

  private environments(ws: sql.WorkspaceRow) {
    return sql.environments(this.db, ws.workspace_id).map(environmentView);
  }

  async createEnvironment(caller: Caller, workspaceId: string, input: { name: string; protection?: sql.Protection; allowed_users?: string[] }) {
    if (!ENVIRONMENT_NAME.test(input.name)) throw new InvalidError("lower-case letters, digits, - and _, at most 32", "name");
    const ws = await ensureWorkspace(this.k, workspaceId);
    const protection = input.protection ?? "members";
    const allowed = this.checkAllowedUsers(caller, ws, protection, input.allowed_users ?? []);
    const id = newId("env");
    const created = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      if (sql.environmentByName(tx, workspaceId, input.name)) throw new ConflictError(`The environment ${input.name} exists already.`);
      sql.insertEnvironment(tx, { id, workspace_id: workspaceId, name: input.name, protection, allowed_users: JSON.stringify(allowed), created_at: this.now() });
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.environment.create", resource: { type: "environment", id }, reason: `${input.name} (${protection})` }));
      return sql.environmentByName(tx, workspaceId, input.name)!;
    });
    return environmentView(created);
  }

  async protectEnvironment(caller: Caller, workspaceId: string, name: string, input: { protection: sql.Protection; allowed_users?: string[] }) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    // Only someone the current protection lets in may change it (an admin left out of a
    // `named` environment cannot open it up).
    const env = environmentFor(this.k, caller, ws, name);
    const allowed = this.checkAllowedUsers(caller, ws, input.protection, input.allowed_users ?? []);
    const updated = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      // Deleted since it was looked up (or deleted and made again: another id): nothing changed, nothing to record.
      if (sql.updateEnvironment(tx, env.id, input.protection, allowed).changes === 0) throw environmentGone(name);
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.environment.update", resource: { type: "environment", id: env.id }, reason: `${name}: ${input.protection}` }));
      return sql.environmentByName(tx, workspaceId, name)!;
    });
    return environmentView(updated);
  }

  async deleteEnvironment(caller: Caller, workspaceId: string, name: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, name);
    await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      if (sql.secretCountInEnvironment(tx, env.id) > 0) throw new ConflictError(`The ${name} environment still holds secrets: purge them first.`);
      if (sql.deleteEnvironment(tx, env.id).changes === 0) throw environmentGone(name); // another request's deletion came first: one event
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.environment.delete", resource: { type: "environment", id: env.id }, reason: name }));
    });
  }

  private checkAllowedUsers(caller: Caller, ws: sql.WorkspaceRow, protection: sql.Protection, users: string[]): string[] {
    if (protection !== "named") {
      if (users.length > 0) throw new InvalidError("allowed users are named only with protection 'named'", "allowed_users");
      return [];
    }
    if (users.length === 0) throw new InvalidError("name at least one user", "allowed_users");
    const provider = this.k.identity.provider;
    for (const user of users) {
      if (!provider?.roleIn(user, ws.organization_id)) throw new InvalidError(`${user} is not a member of the organization`, "allowed_users");
    }
    const allowed = [...new Set(users)];
    this.checkNoLockOut(caller, ws, allowed);
    return allowed;
  }

  /**
   * Only someone a `named` environment lets in can reopen or delete it (and while it holds
   * secrets, end-to-end encryption cannot be turned off): if none of those named could, it
   * would stay as it is for good. Whoever narrows it must stay inside (a user names
   * themselves), and one of those named must be an admin or owner of the workspace, the roles
   * that change protection — which is what keeps a service key, never let in, from locking it.
   */
  private checkNoLockOut(caller: Caller, ws: sql.WorkspaceRow, allowed: string[]): void {
    const me = caller.principal.userId;
    if (me && !allowed.includes(me)) throw new InvalidError("name yourself among the allowed users, or you would lock yourself out", "allowed_users");
    const mayChangeIt = (user: string) => {
      const role = roleInWorkspace(this.k, { userId: user }, ws);
      return role !== null && roleAllows(role, "manage_members");
    };
    if (!allowed.some(mayChangeIt)) throw new InvalidError("name an admin or owner of the workspace among the allowed users, or nobody could change the environment's protection again", "allowed_users");
  }

  // --- reading ---------------------------------------------------------------------------

  /**
   * `readAs` names the reads in the audit trail: "list", or "export" (found in review: an export
   * was told from a list by nothing). `purpose` is the client's word for what it reads the values
   * for, recorded as its word: the export of an end-to-end-encrypted workspace, which only the
   * client can decrypt, is a list to the server.
   */
  async list(caller: Caller, workspaceId: string, envName: string, options: { values?: boolean; deleted?: boolean; purpose?: "export"; readAs?: "list" | "export" }) {
    if (options.purpose !== undefined && !options.values) throw new InvalidError("purpose is what the values are read for: give it with values=true", "query.purpose");
    // Every lookup and decryption before the first await: they share the request's snapshot.
    const ws = this.workspaceRow(workspaceId) ?? (await ensureWorkspace(this.k, workspaceId));
    const env = this.environment(caller, ws, envName);
    const rows = sql.secretsIn(this.db, env.id, options.deleted === true);
    const items = rows.map((r) => this.metadata(r, env));
    if (!options.values) return { environment: envName, e2ee: ws.e2ee === 1, items };
    const live = rows.filter((r) => r.deleted_at === null);
    const values = new Map<string, { value: string; key_version: number | null }>();
    for (const r of live) {
      const v = sql.versionOf(this.db, r.id, r.version)!;
      const value = this.valueOrRefusal(caller, ws, env, r, v);
      if (typeof value !== "string") return value;
      values.set(r.id, { value, key_version: v.key_version });
    }
    const how = options.readAs ?? (options.purpose === "export" ? DECLARED_EXPORT : "list");
    await this.auditReads(caller, ws, env, live, how); // the values leave only once their reads are on record
    return {
      environment: envName,
      e2ee: ws.e2ee === 1,
      items: items.map((item, i) => {
        const v = values.get(rows[i]!.id);
        return v ? { ...item, ...v } : item;
      }),
    };
  }

  /** One value (the current version, or an older one), audited before it is returned. */
  async read(caller: Caller, workspaceId: string, envName: string, name: string, version?: number) {
    // Every lookup and the decryption before the first await: they share the request's snapshot.
    const ws = this.workspaceRow(workspaceId) ?? (await ensureWorkspace(this.k, workspaceId));
    const env = this.environment(caller, ws, envName);
    const row = this.liveSecret(env, name);
    const wanted = version ?? row.version;
    const stored = this.storedVersions.get("version", `${row.id} ${wanted}`, () => frozen(sql.versionOf(this.db, row.id, wanted)));
    if (!stored) throw new NotFoundError(`${name} has no version ${wanted}.`);
    const value = this.valueOrRefusal(caller, ws, env, row, stored);
    if (typeof value !== "string") return value;
    await this.auditReads(caller, ws, env, [row], version === undefined ? "read" : `read v${wanted}`); // returned only once on record
    return { ...this.metadata(row, env), value, value_version: wanted, e2ee: ws.e2ee === 1, key_version: stored.key_version };
  }

  async history(caller: Caller, workspaceId: string, envName: string, name: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = sql.secretByName(this.db, env.id, name);
    if (!row) throw new NotFoundError(`No secret named ${name} in ${envName}.`);
    return {
      ...this.metadata(row, env),
      versions: sql.versionsOf(this.db, row.id).map((v) => ({ version: v.version, origin: v.origin, created_at: iso(v.created_at), created_by: v.created_by, current: v.version === row.version })),
    };
  }

  /** The values of an environment as a .env or JSON file; every value read is audited. */
  async export(caller: Caller, workspaceId: string, envName: string, format: "dotenv" | "json") {
    const ws = await ensureWorkspace(this.k, workspaceId);
    if (ws.e2ee === 1) throw new ConflictError("This workspace is end-to-end encrypted: the server cannot export values (citadel secrets export decrypts them on your machine).");
    const listed = await this.list(caller, workspaceId, envName, { values: true, readAs: "export" });
    const entries = (listed.items as Array<{ name: string; value?: string }>).map((i) => ({ name: i.name, value: i.value! }));
    return format === "json" ? printJsonSecrets(entries) : printDotenv(entries);
  }

  private async auditReads(caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, rows: sql.SecretRow[], how: string) {
    if (rows.length === 0) return;
    await this.k.store.write((tx) => {
      for (const r of rows) this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.read", resource: { type: "secret", id: r.id }, reason: `${env.name}/${r.name} ${how}` }));
    });
  }

  // --- writing ---------------------------------------------------------------------------

  /** Creates the secret or adds a version. With `ifMatch`, only if the current version is that one. */
  async set(caller: Caller, workspaceId: string, envName: string, name: string, input: SecretInput, ifMatch?: IfMatch) {
    this.checkName(name);
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    this.checkValue(ws, input.value);
    const metadata = this.checkMetadata(input);
    const written = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const existing = sql.secretByName(tx, env.id, name);
      checkIfMatch(name, existing?.version ?? 0, ifMatch);
      const secretId = this.writeValue(tx, caller, ws, env, existing, name, input.value, "set");
      if (Object.keys(metadata).length > 0) sql.updateMetadata(tx, secretId, metadata, this.now(), byWhom(caller.principal));
      return this.secretById(tx, env, secretId)!; // as this write left it (later writes of the batch may follow)
    });
    return this.metadata(written, env);
  }

  async updateMetadata(caller: Caller, workspaceId: string, envName: string, name: string, input: Omit<SecretInput, "value">, ifMatch?: IfMatch) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = this.liveSecret(env, name);
    const metadata = this.checkMetadata(input);
    const written = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const current = this.stillLive(tx, env, row);
      checkIfMatch(name, current.version, ifMatch);
      // Nothing given, or the values it has already: no change, nothing to record (as for the settings).
      if (!changesMetadata(current, metadata)) return current;
      sql.updateMetadata(tx, row.id, metadata, this.now(), byWhom(caller.principal));
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.update", resource: { type: "secret", id: row.id }, reason: `${envName}/${name} metadata` }));
      return this.secretById(tx, env, row.id)!;
    });
    return this.metadata(written, env);
  }

  /**
   * A new version holding an older version's value. In an end-to-end-encrypted workspace the
   * server cannot make it: each value names the version it is stored as, so the old one's
   * ciphertext copied would name the old version. The client decrypts the old version and
   * sends it re-encrypted as the new one (`value`); the server takes its word that it is the
   * old value, as it takes any value a writer sends.
   */
  async rollback(caller: Caller, workspaceId: string, envName: string, name: string, version: number, ifMatch?: IfMatch, reencrypted?: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = this.liveSecret(env, name);
    const old = sql.versionOf(this.db, row.id, version);
    if (!old) throw new NotFoundError(`${name} has no version ${version}.`);
    const value = ws.e2ee === 1 ? this.reencryptedRollback(ws, name, version, reencrypted) : this.plainRollback(caller, ws, env, row, old, reencrypted);
    if (typeof value !== "string") return value;
    // The value belongs to this secret's history: written only into this very secret, never
    // into one made anew after a purge (that would bring the purged value back).
    const written = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const current = this.stillLive(tx, env, row);
      checkIfMatch(name, current.version, ifMatch);
      // A rollback rotates nothing: the value is as old as it was, and its reminder stays due.
      this.writeValue(tx, caller, ws, env, current, name, value, "rollback", { note: `from v${version}`, valueSetAt: old.value_set_at });
      return this.secretById(tx, env, row.id)!;
    });
    return this.metadata(written, env);
  }

  private reencryptedRollback(ws: sql.WorkspaceRow, name: string, version: number, reencrypted: string | undefined): string {
    if (reencrypted === undefined) {
      throw new ConflictError(
        `This workspace is end-to-end encrypted: the server cannot roll ${name} back (each value names the version it is stored as). A client rolls it back: citadel secrets rollback ${name} ${version} decrypts version ${version} on your machine and sends it re-encrypted as the new version — ` +
          "from a citadel CLI as recent as this server (an older one cannot read values that name their version; upgrade it), with a token that may read secrets (secrets:read) as well as write them.",
      );
    }
    this.checkValue(ws, reencrypted);
    return reencrypted;
  }

  private plainRollback(caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, row: sql.SecretRow, old: sql.VersionRow, reencrypted: string | undefined): string | Promise<never> {
    if (reencrypted !== undefined) throw new InvalidError("a value is sent only to roll back in an end-to-end-encrypted workspace: here the server copies the old one", "value");
    return this.valueOrRefusal(caller, ws, env, row, old);
  }

  /** A new version made by a generator; the value is not returned (read it, audited, if needed). */
  async rotate(caller: Caller, workspaceId: string, envName: string, name: string, generator: Generator, length?: number, ifMatch?: IfMatch) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    if (ws.e2ee === 1) throw new ConflictError("This workspace is end-to-end encrypted: the server never sees values, so it cannot generate them (generate on your machine and set the value).");
    const env = environmentFor(this.k, caller, ws, envName);
    const row = this.liveSecret(env, name);
    const value = generateValue(generator, length);
    this.checkValue(ws, value);
    // Rotating replaces the value of a secret that exists: a purged one is not made again.
    const written = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const current = this.stillLive(tx, env, row);
      checkIfMatch(name, current.version, ifMatch);
      this.writeValue(tx, caller, ws, env, current, name, value, "rotate", { note: `generator ${generator}` });
      return this.secretById(tx, env, row.id)!;
    });
    return this.metadata(written, env);
  }

  async delete(caller: Caller, workspaceId: string, envName: string, name: string, ifMatch?: IfMatch) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = this.liveSecret(env, name);
    await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const current = this.stillLive(tx, env, row); // purged or deleted meanwhile: nothing to delete, nothing to audit
      checkIfMatch(name, current.version, ifMatch);
      sql.softDeleteSecret(tx, row.id, this.now(), byWhom(caller.principal));
      const links = this.revokeLinksTo(tx, caller, ws, env, row.name, "deleted");
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.delete", resource: { type: "secret", id: row.id }, reason: `${envName}/${name}${links}` }));
      this.notify(tx, caller, ws, env, row.name, current.version, "secret.deleted");
    });
  }

  async restore(caller: Caller, workspaceId: string, envName: string, name: string, ifMatch?: IfMatch) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = sql.secretByName(this.db, env.id, name);
    if (!row?.deleted_at) throw new NotFoundError(`No deleted secret named ${name} in ${envName}.`);
    const written = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      const current = this.stillDeleted(tx, env, row);
      checkIfMatch(name, current.version, ifMatch);
      sql.restoreSecret(tx, row.id);
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.restore", resource: { type: "secret", id: row.id }, reason: `${envName}/${name}` }));
      this.notify(tx, caller, ws, env, row.name, current.version, "secret.restored");
      return this.secretById(tx, env, row.id)!;
    });
    return this.metadata(written, env);
  }

  /** Removes a secret and every version for good (the route asks for confirmation). */
  async purge(caller: Caller, workspaceId: string, envName: string, name: string, ifMatch?: IfMatch) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const row = sql.secretByName(this.db, env.id, name);
    if (!row) throw new NotFoundError(`No secret named ${name} in ${envName}.`);
    await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      // Purged meanwhile by another request: nothing left to purge, nothing to audit or announce.
      const current = this.secretById(tx, env, row.id);
      if (!current) throw new ConflictError(`${name} changed meanwhile: it was purged.`);
      checkIfMatch(name, current.version, ifMatch);
      sql.purgeSecret(tx, row.id);
      const links = this.revokeLinksTo(tx, caller, ws, env, row.name, "purged");
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.purge", resource: { type: "secret", id: row.id }, reason: `${envName}/${name}, ${current.version} versions${links}` }));
      this.notify(tx, caller, ws, env, row.name, current.version, "secret.purged");
    });
  }

  /**
   * The share links carrying the secret are revoked with its purge, and with its soft delete
   * too: whoever deletes a leaked credential expects its links to stop handing it out, and a
   * restore does not bring them back (the secret's links are made again if wanted). Each has
   * its own secrets.share.revoke event, as every other revocation does; the caller's event
   * counts them (what this returns: ", N share link(s) revoked", or nothing).
   */
  private revokeLinksTo(tx: Database, caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, name: string, how: "purged" | "deleted"): string {
    const revoked = sql.revokeSharesOf(tx, ws.organization_id, shareSource(ws.workspace_id, env.name, name), this.now());
    for (const id of revoked) this.k.audit.record(tx, event(caller, ws, { action: "secrets.share.revoke", resource: { type: "share", id }, reason: `the secret it carries was ${how}` }));
    return revoked.length > 0 ? `, ${revoked.length} share link(s) revoked` : "";
  }

  /**
   * Imports many values at once, all or nothing. The plan says what each entry would do
   * (create, update, unchanged, skip); a dry run returns the plan and changes nothing.
   */
  async import(caller: Caller, workspaceId: string, envName: string, request: ImportRequest) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const env = environmentFor(this.k, caller, ws, envName);
    const entries = this.importEntries(request);
    for (const e of entries) this.checkValue(ws, e.value, e.name);
    const overwrite = request.overwrite !== false;
    type Step = { name: string; action: "create" | "update" | "unchanged" | "skip"; reason?: string };
    const plan: Step[] = [];
    /** Each name's row as the plan saw it (null: none), so the write can tell whether it still holds. */
    const seen: Array<sql.SecretRow | null> = [];
    const compared: sql.SecretRow[] = [];
    for (const entry of entries) {
      const existing = sql.secretByName(this.db, env.id, entry.name);
      seen.push(existing);
      const changed: Step = overwrite ? { name: entry.name, action: "update" } : { name: entry.name, action: "skip", reason: "exists (overwrite is off)" };
      if (!existing) plan.push({ name: entry.name, action: "create" });
      else if (existing.deleted_at !== null) plan.push({ name: entry.name, action: "skip", reason: "deleted: restore or purge it first" });
      // An end-to-end-encrypted value cannot be compared here, and a write-only caller must not
      // learn from the plan whether a guess equals the stored value: for both, every import is a new version.
      else if (ws.e2ee === 1 || !mayReadValues(caller)) plan.push(changed);
      else {
        compared.push(existing);
        const stored = await this.valueOrRefusal(caller, ws, env, existing, sql.versionOf(this.db, existing.id, existing.version)!);
        plan.push(stored === entry.value ? { name: entry.name, action: "unchanged" } : changed);
      }
    }
    // Whether a value equals a guess is a read of it: on record before the plan says so.
    await this.auditReads(caller, ws, env, compared, "compared by import");
    const summary = { dry_run: request.dry_run === true, plan, created: count(plan, "create"), updated: count(plan, "update"), unchanged: count(plan, "unchanged"), skipped: count(plan, "skip") };
    if (request.dry_run) return summary;
    await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      entries.forEach((entry, i) => {
        const step = plan[i]!;
        const existing = sql.secretByName(tx, env.id, entry.name);
        // The plan is what the answer says was done: if another writer changed a name since
        // (created, updated, deleted, restored or purged it), nothing is written. In an
        // end-to-end-encrypted workspace that is the race its client retries (each value names
        // the version it was made for, which the other write took): a version conflict, as the
        // write's own check would say (found in review: a plain conflict failed 1 of 4 concurrent imports).
        if (!sameRow(existing, seen[i]!)) {
          const why = `${entry.name} ${seen[i] ? "changed" : "was created"} meanwhile: run the import again.`;
          throw ws.e2ee === 1 ? new VersionConflictError(why) : new ConflictError(why);
        }
        if (step.action === "create" || step.action === "update") this.writeValue(tx, caller, ws, env, existing, entry.name, entry.value, "import");
      });
    });
    return summary;
  }

  private importEntries(request: ImportRequest): SecretEntry[] {
    if (request.entries !== undefined && request.content !== undefined) throw new InvalidError("give either entries or content, not both", "content");
    let entries: SecretEntry[];
    if (request.entries !== undefined) entries = request.entries;
    else if (request.content !== undefined) {
      try {
        entries = request.format === "json" ? parseJsonSecrets(request.content) : parseDotenv(request.content);
      } catch (error) {
        throw new InvalidError(error instanceof Error ? error.message : "the file could not be read", "content");
      }
    } else throw new InvalidError("give entries, or content with its format", "content");
    // The schema bounds `entries`; a file sent as content is bounded only once parsed.
    if (entries.length > MAX_IMPORT_ENTRIES) throw new InvalidError(`at most ${MAX_IMPORT_ENTRIES} entries in one import (this one has ${entries.length}): split it`, "content");
    const seen = new Set<string>();
    for (const e of entries) {
      this.checkName(e.name);
      if (seen.has(e.name)) throw new InvalidError(`${e.name} appears twice`, "entries");
      seen.add(e.name);
    }
    return entries;
  }

  // --- data key rotation -----------------------------------------------------------------

  /**
   * A new data key for the workspace, then every stored version re-encrypted with it, in
   * batches (each its own transaction, so reads and writes go on meanwhile). Interrupted, it
   * leaves every value readable (each names its key version) and the next call finishes it.
   */
  async rotateDataKey(caller: Caller, workspaceId: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    if (ws.e2ee === 1) throw new ConflictError("This workspace is end-to-end encrypted: its key is held by the members' clients, not by the server.");
    const owner = valueKeyOwner(workspaceId);
    const version = await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId); // deleted meanwhile, its data key was destroyed with it: none made anew
      const v = this.k.seal.keyring().rotateDek(tx, owner, this.now());
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.key.rotate", resource: { type: "workspace", id: workspaceId }, reason: `data key v${v}` }));
      return v;
    });
    const reencrypted = await this.reencrypt(ws, version, caller);
    return { workspace: workspaceId, data_key_version: version, reencrypted };
  }

  /** Re-encrypts what an interrupted rotation left on older keys (at start-up). */
  async resumeReencryption(): Promise<number> {
    let total = 0;
    for (const ws of this.db.query<sql.WorkspaceRow, []>("SELECT * FROM secrets_workspaces WHERE e2ee = 0").all()) {
      const version = this.k.seal.keyring().dekVersion(this.db, valueKeyOwner(ws.workspace_id));
      if (version !== null) total += await this.reencrypt(ws, version);
    }
    return total;
  }

  /**
   * A version that does not decrypt stays on its old key, and the rotation goes on with the
   * rest: one damaged value must not stop a rotation, nor (as an interrupted rotation is
   * resumed at start-up) the start of Citadel. Each is logged and audited every time it is met.
   */
  private async reencrypt(ws: sql.WorkspaceRow, version: number, caller?: Caller): Promise<number> {
    const owner = valueKeyOwner(ws.workspace_id);
    let total = 0;
    let skipped = 0; // damaged versions stay behind, first in the query's order: the next batch starts after them
    for (;;) {
      const batch = sql.versionsToReencrypt(this.db, ws.workspace_id, version, REENCRYPT_BATCH, skipped);
      if (batch.length === 0) return total;
      const damaged = await this.k.store.write((tx) => {
        // The keyring of this moment: sealed since the last batch, the rotation stops here
        // (503) rather than take every value left for damaged (a wiped keyring decrypts nothing).
        const keyring = this.k.seal.keyring();
        const found: Array<{ version: sql.VersionRow; problem: string; message: string }> = [];
        for (const v of batch) {
          const context = versionContext(v.secret_id, v.version);
          let plaintext: Buffer;
          try {
            plaintext = keyring.decrypt(owner, context, v.ciphertext);
          } catch (error) {
            const problem = damageOf(error);
            if (!problem) throw error;
            found.push({ version: v, problem, message: (error as Error).message });
            this.k.audit.record(tx, {
              action: "secrets.secret.read",
              outcome: "failure",
              actor: caller ? actorOf(caller.principal) : { kind: "system" },
              request: caller?.request,
              organization: ws.organization_id,
              workspace: ws.workspace_id,
              resource: { type: "secret", id: v.secret_id },
              reason: `v${v.version}: the stored value ${problem}; left on data key v${v.dek_version} by the rotation to v${version}`,
            });
            continue;
          }
          const envelope = keyring.encrypt(tx, owner, context, plaintext);
          plaintext.fill(0);
          sql.replaceCiphertext(tx, v.secret_id, v.version, envelope, envelopeKeyVersion(envelope));
        }
        return found;
      });
      for (const d of damaged) this.k.log.error(`secrets: a stored value ${d.problem}; the key rotation leaves it on its old key`, { secret: d.version.secret_id, workspace: ws.workspace_id, version: d.version.version, problem: d.message });
      skipped += damaged.length;
      total += batch.length - damaged.length;
    }
  }

  /**
   * Replaces an end-to-end-encrypted workspace's key (after a member leaves): the caller's
   * client sends every live value re-encrypted with the new key, each with the version it
   * re-encrypted, and the new key wrapped for each member who keeps access. All of it lands in
   * one transaction, or none: a value changed meanwhile (409) means read again and retry.
   * Members left out lose every version of the key; older versions stay with those who keep
   * access, for the history (a rotation that would leave one no member can read is refused).
   */
  async rotateE2eeKey(caller: Caller, workspaceId: string, input: E2eeRotation, keys: E2eeKeys) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    if (ws.e2ee !== 1) throw new ConflictError("This workspace is not end-to-end encrypted.");
    keys.checkNewKeyHolders(caller, ws, input.wrapped);
    const envs = new Map(sql.environments(this.db, workspaceId).map((e) => [e.name, environmentFor(this.k, caller, ws, e.name)]));
    for (const v of input.values) {
      if (!envs.has(v.environment)) throw new InvalidError(`no environment named ${v.environment}`, "values");
      this.checkValue(ws, v.value, v.name);
    }
    const next = ws.e2ee_key_version + 1;
    await this.k.store.write((tx) => {
      const current = liveWorkspaceRow(this.k, tx, workspaceId).e2ee_key_version;
      if (current !== ws.e2ee_key_version || (input.from_version !== undefined && current !== input.from_version)) throw new ConflictError("The workspace key was replaced meanwhile: start again.");
      keys.requireCurrentKeys(tx, input.wrapped);
      const live = [...envs.values()].flatMap((env) => sql.secretsIn(tx, env.id, false).map((secret) => ({ env, secret })));
      const given = new Map(input.values.map((v) => [`${v.environment}/${v.name}`, v]));
      if (given.size !== input.values.length) throw new InvalidError("a value appears twice", "values");
      for (const { env, secret } of live) {
        const v = given.get(`${env.name}/${secret.name}`);
        if (!v) throw new ConflictError(`${env.name}/${secret.name} is missing: every live value is re-encrypted with the new key (list again and retry).`);
        if (v.version !== secret.version) throw new ConflictError(`${env.name}/${secret.name} changed meanwhile (version ${secret.version}): list again and retry.`);
      }
      if (given.size !== live.length) throw new ConflictError("Some values are not live secrets of this workspace (deleted meanwhile?): list again and retry.");
      const keep = new Set(input.wrapped.map((w) => w.user));
      keys.dropHoldersLeftOut(tx, caller, ws, keep, next);
      for (const w of input.wrapped) sql.putWorkspaceKey(tx, workspaceId, next, w.user, w.wrapped, byWhom(caller.principal), this.now());
      sql.setE2eeKeyVersion(tx, workspaceId, next);
      const rotated = { ...ws, e2ee_key_version: next };
      // The values are the same, under a new key: their reminders count on from when they were set.
      for (const { env, secret } of live) {
        const value = given.get(`${env.name}/${secret.name}`)!.value;
        this.writeValue(tx, caller, rotated, env, secret, secret.name, value, "rotate", { note: `workspace key v${next}`, valueSetAt: secret.rotated_at });
      }
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.e2ee.rotate", resource: { type: "workspace", id: workspaceId }, reason: `workspace key v${next}, ${live.length} values, ${keep.size} members keep access` }));
    });
    return { workspace: workspaceId, key_version: next, reencrypted: input.values.length, holders: input.wrapped.map((w) => w.user) };
  }

  // --- helpers ---------------------------------------------------------------------------

  /**
   * Stores `value` as the next version of the secret (made if new); audits and notifies. Runs
   * inside `tx`. `valueSetAt`: when the value was set, if not now (a copy, a re-encryption).
   */
  private writeValue(tx: Database, caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, existing: sql.SecretRow | null, name: string, value: string, origin: sql.VersionOrigin, { note, valueSetAt }: { note?: string; valueSetAt?: number } = {}): string {
    if (existing?.deleted_at) throw new ConflictError(`${name} is deleted: restore it (or purge it) before setting it again.`);
    // The value was checked against the workspace as read before this transaction: if its
    // encryption mode or key changed meanwhile, the check no longer holds.
    // Deleted since it was read: the insert below would meet the foreign key (a 500), not an answer.
    const current = liveWorkspaceRow(this.k, tx, ws.workspace_id);
    if (!sql.environmentExists(tx, env.id)) throw environmentGone(env.name);
    const version = (existing?.version ?? 0) + 1;
    checkNamedVersion(current, name, value, version); // first: its refusals are the ones a client retries
    this.refuseUnboundUnderBindingKey(tx, current, name, value);
    if (current.e2ee !== ws.e2ee || current.e2ee_key_version !== ws.e2ee_key_version) throw new ConflictError("The workspace's encryption changed meanwhile: read its settings again and retry.");
    const now = this.now();
    const by = byWhom(caller.principal);
    const secretId = existing?.id ?? newId("sec");
    if (!existing) {
      sql.insertSecret(tx, { id: secretId, environment_id: env.id, name, version, note: null, rotation_days: null, expires_at: null, rotated_at: now, created_at: now, created_by: by, updated_at: now, updated_by: by, deleted_at: null, deleted_by: null });
    } else if (!sql.advanceVersion(tx, secretId, existing.version, version, now, valueSetAt ?? now, by)) {
      throw new PreconditionFailedError(`${name} changed meanwhile: read it again and retry.`);
    }
    const { ciphertext, dekVersion } = this.encrypt(tx, ws, secretId, version, value);
    // The key version the value names, checked above to be the current one (a value of the format before names none).
    const keyVersion = ws.e2ee === 1 ? current.e2ee_key_version : 0;
    sql.insertVersion(tx, { secret_id: secretId, version, ciphertext, dek_version: dekVersion, key_version: keyVersion, origin, created_at: now, created_by: by, value_set_at: valueSetAt ?? now });
    const action = existing ? (origin === "rollback" ? "secrets.secret.rollback" : origin === "rotate" ? "secrets.secret.rotate" : "secrets.secret.update") : "secrets.secret.create";
    this.k.audit.record(tx, event(caller, ws, { action, resource: { type: "secret", id: secretId }, reason: `${env.name}/${name} v${version}${origin === "import" ? " (import)" : ""}${note ? `, ${note}` : ""}` }));
    this.notify(tx, caller, ws, env, name, version, existing ? "secret.updated" : "secret.created");
    return secretId;
  }

  /**
   * A value of the format before (`c1.v.`, bound to no version) is refused once the workspace's
   * current key was made by a client that binds values (its copies carry the mark: e2ee.ts):
   * its members' clients would refuse it as current anyway, and only a client from before, or
   * a copy of an old value, sends one. Defence in depth: the clients' refusal is what holds.
   */
  private refuseUnboundUnderBindingKey(tx: Database, ws: sql.WorkspaceRow, name: string, value: string): void {
    if (ws.e2ee !== 1 || e2eeValueHeader(value) !== null) return;
    const copies = tx.query<{ wrapped: string }, [string, number]>("SELECT wrapped FROM secrets_workspace_keys WHERE workspace_id = ? AND key_version = ?").all(ws.workspace_id, ws.e2ee_key_version);
    if (!copies.some((c) => isMarkedWrappedKey(c.wrapped))) return;
    throw new InvalidError(`${name}: this workspace's key binds every value to its version (format c2.v.), and this value is of the format before (c1.v.): upgrade citadel, which writes the bound format`, "value");
  }

  private encrypt(tx: Database, ws: sql.WorkspaceRow, secretId: string, version: number, value: string): { ciphertext: Uint8Array; dekVersion: number } {
    if (ws.e2ee === 1) return { ciphertext: Buffer.from(value, "utf8"), dekVersion: 0 }; // the client's ciphertext, checked by checkValue
    const envelope = this.k.seal.keyring().encrypt(tx, valueKeyOwner(ws.workspace_id), versionContext(secretId, version), value);
    return { ciphertext: envelope, dekVersion: envelopeKeyVersion(envelope) };
  }

  /**
   * A stored value that does not decrypt was altered or damaged outside Citadel (its tag binds
   * it to its secret, version and key), or its data key is gone: a security event. The failed
   * read is audited and logged, and the caller gets a data-integrity error naming the secret,
   * never a wrong value (also when the audit write itself fails: then the log says so).
   */
  private async refuseDamaged(caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, row: sql.SecretRow, version: number, error: unknown): Promise<never> {
    const problem = damageOf(error);
    if (!problem) throw error;
    const where = `${env.name}/${row.name} v${version}`;
    const logged = { request_id: caller.request.id, secret: row.id, workspace: ws.workspace_id, version, problem: (error as Error).message };
    this.k.log.error(`secrets: a stored value ${problem}`, logged);
    try {
      await this.k.store.write((tx) => {
        this.k.audit.record(tx, event(caller, ws, { action: "secrets.secret.read", outcome: "failure", resource: { type: "secret", id: row.id }, reason: `${where}: the stored value ${problem}` }));
      });
    } catch (writeError) {
      this.k.log.error("secrets: the failed read of a damaged value could not be recorded", { ...logged, error: writeError });
    }
    throw new DataIntegrityError(`The stored value of ${where} ${problem}. The failed read is in the audit log; restore the database from a backup, or roll back to a good version (or set a new value) and purge the secret's damaged history if it must go.`);
  }

  /**
   * The stored value — synchronously, so that it is read in the request's snapshot — or, when
   * it does not decrypt, a promise that rejects once the refusal is on record.
   */
  private valueOrRefusal(caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, row: sql.SecretRow, stored: sql.VersionRow): string | Promise<never> {
    try {
      return this.decrypt(ws, row, stored);
    } catch (error) {
      return this.refuseDamaged(caller, ws, env, row, stored.version, error);
    }
  }

  private decrypt(ws: sql.WorkspaceRow, secret: sql.SecretRow, stored: sql.VersionRow): string {
    if (stored.dek_version === 0) {
      // A client's ciphertext, handed out as it is: only ever in a workspace encrypted end to
      // end. Elsewhere the column was altered, and the envelope must not pass for the value.
      if (ws.e2ee !== 1) throw new DecryptionError("a value marked as a client's ciphertext in a workspace not encrypted end to end");
      return Buffer.from(stored.ciphertext).toString("utf8");
    }
    const plaintext = this.k.seal.keyring().decrypt(valueKeyOwner(ws.workspace_id), versionContext(secret.id, stored.version), stored.ciphertext);
    const text = plaintext.toString("utf8");
    plaintext.fill(0);
    return text;
  }

  private notify(tx: Database, caller: Caller, ws: sql.WorkspaceRow, env: sql.EnvironmentRow, name: string, version: number, type: Change): void {
    this.webhooks.enqueue(tx, ws.workspace_id, { type, workspace: ws.workspace_id, environment: env.name, name, version, actor: byWhom(caller.principal) });
  }

  /** The workspace's secrets row (see `found`); null until its first use makes it (ensureWorkspace). */
  private workspaceRow(workspaceId: string): sql.WorkspaceRow | null {
    return this.found.get("workspace", workspaceId, () => frozen(sql.workspaceRow(this.db, workspaceId)));
  }

  /** The environment (see `found`), if the caller may use it (environmentFor). */
  private environment(caller: Caller, ws: sql.WorkspaceRow, name: string): sql.EnvironmentRow {
    const env = this.found.get("environment", JSON.stringify([ws.workspace_id, name]), () => frozen(sql.environmentByName(this.db, ws.workspace_id, name)));
    return environmentFor(this.k, caller, ws, name, env);
  }

  private liveSecret(env: sql.EnvironmentRow, name: string): sql.SecretRow {
    const row = this.found.get("secret", JSON.stringify([env.id, name]), () => frozen(sql.secretByName(this.db, env.id, name)));
    if (!row || row.deleted_at !== null) throw new NotFoundError(`No secret named ${name} in ${env.name}.`);
    return row;
  }

  private secretById(db: Database, env: sql.EnvironmentRow, id: string): sql.SecretRow | null {
    return db.query<sql.SecretRow, [string, string]>("SELECT * FROM secrets WHERE id = ? AND environment_id = ?").get(id, env.id);
  }

  /**
   * The secret the request looked up, as the write's transaction sees it, if it is still live.
   * Between the lookup and the write, another request may have purged or deleted it: writing
   * anyway would bring a purged value back (as a secret made anew) or act on a row that is gone.
   */
  private stillLive(tx: Database, env: sql.EnvironmentRow, looked: sql.SecretRow): sql.SecretRow {
    const now = this.secretById(tx, env, looked.id);
    if (!now) throw new ConflictError(`${looked.name} changed meanwhile: it was purged.`);
    if (now.deleted_at !== null) throw new ConflictError(`${looked.name} changed meanwhile: it was deleted (restore it first).`);
    return now;
  }

  /** As stillLive, for a restore: the secret must still be there, and still deleted. */
  private stillDeleted(tx: Database, env: sql.EnvironmentRow, looked: sql.SecretRow): sql.SecretRow {
    const now = this.secretById(tx, env, looked.id);
    if (!now) throw new ConflictError(`${looked.name} changed meanwhile: it was purged.`);
    if (now.deleted_at === null) throw new ConflictError(`${looked.name} changed meanwhile: it was restored already.`);
    return now;
  }

  private checkName(name: string): void {
    if (!isSecretName(name)) throw new InvalidError("a secret's name is an environment variable name: letters, digits and _, not starting with a digit, at most 128", "name");
  }

  private checkValue(ws: sql.WorkspaceRow, value: string, name?: string): void {
    const field = name ? `entries.${name}` : "value";
    // The limit is of the value itself: an end-to-end-encrypted one arrives as base64url of its
    // ciphertext, a third longer, which it must be allowed (a 60 KiB value was refused as over 64).
    const max = this.k.settings.max_value_bytes;
    const limit = ws.e2ee === 1 ? e2eeCiphertextLength(max) : max;
    if (Buffer.byteLength(value, "utf8") > limit) throw new PayloadTooLargeError(`${name ?? "The value"} is larger than ${max} bytes (secrets.max_value_bytes${ws.e2ee === 1 ? ", before encryption" : ""}).`);
    if (ws.e2ee === 1 && !isE2eeCiphertext(value)) throw new InvalidError("this workspace is end-to-end encrypted: send the value encrypted by the client (citadel secrets set does it)", field);
    if (ws.e2ee === 0 && value.includes("\0")) throw new InvalidError("a value may not contain a NUL character", field);
  }

  private checkMetadata(input: Omit<SecretInput, "value">): MetadataChanges {
    const out: MetadataChanges = {};
    if (input.note !== undefined) out.note = input.note;
    if (input.rotation_days !== undefined) out.rotation_days = input.rotation_days;
    if (input.expires_at !== undefined) out.expires_at = input.expires_at === null ? null : expiryOf(input.expires_at);
    return out;
  }

  private metadata(row: sql.SecretRow, env: sql.EnvironmentRow) {
    const now = this.now();
    return {
      id: row.id,
      name: row.name,
      environment: env.name,
      version: row.version,
      note: row.note,
      rotation_days: row.rotation_days,
      rotation_due: row.rotation_days !== null && now >= row.rotated_at + row.rotation_days * DAY_MS,
      expires_at: row.expires_at === null ? null : iso(row.expires_at),
      expired: row.expires_at !== null && now >= row.expires_at,
      rotated_at: iso(row.rotated_at),
      created_at: iso(row.created_at),
      created_by: row.created_by,
      updated_at: iso(row.updated_at),
      updated_by: row.updated_by,
      deleted_at: row.deleted_at === null ? null : iso(row.deleted_at),
    };
  }
}

/**
 * The code of a 409 for a value encrypted with a workspace key version that is no longer the
 * current one (a rotation came in between): its client fetches the key again and retries.
 */
export const KEY_CONFLICT = "key_conflict";

/** The AAD context of a stored value: a ciphertext copied to another secret or version fails. */
export const versionContext = (secretId: string, version: number) => `secret_versions:${secretId}:${version}`;

/** A row as remembered: shared by every request that finds it, so none may change it. */
function frozen<T extends object>(row: T | null): T | null {
  return row && Object.freeze(row);
}

function environmentView(env: sql.EnvironmentRow) {
  return { name: env.name, protection: env.protection, allowed_users: JSON.parse(env.allowed_users) as string[], created_at: iso(env.created_at) };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** An environment looked up before a write, gone when the write came to it. */
const environmentGone = (name: string) => new ConflictError(`The ${name} environment was deleted meanwhile.`);
const count = (plan: Array<{ action: string }>, action: string) => plan.filter((p) => p.action === action).length;

/** Whether writing `changes` would change any of the secret's metadata. */
function changesMetadata(row: sql.SecretRow, changes: MetadataChanges): boolean {
  return (Object.keys(changes) as Array<keyof MetadataChanges>).some((field) => changes[field] !== row[field]);
}

/**
 * With If-Match, a change goes ahead only if the secret is still at the version the caller saw
 * (0: none yet). Called inside the write's transaction, so nothing can come in between.
 */
function checkIfMatch(name: string, current: number, ifMatch: IfMatch | undefined): void {
  if (ifMatch === undefined) return;
  const { version, weak } = ifMatch;
  if (weak) throw new PreconditionFailedError(`If-Match compares versions strongly: a weak tag (W/"${version}") never matches; send "${version}".`);
  if (current !== version) throw new PreconditionFailedError(`${name} is at version ${current}, not ${version}: read it again and retry.`);
}

/**
 * An end-to-end-encrypted value names the version it is stored as and the workspace key
 * version it is encrypted with (its encryption binds both: stored as another, no member's
 * client would take it). Checked in the write's transaction against the workspace as it is
 * (`ws`, read in it): a value made for a version another write took first, or that a purge
 * took back (the versions count from 1 again), or with a key a rotation replaced meanwhile (stored under the new key's number it would open for nobody),
 * is refused, for its client to read again — fetching the key again — and retry. A value of
 * the format before names neither, and goes in as it did.
 */
function checkNamedVersion(ws: sql.WorkspaceRow, name: string, value: string, version: number): void {
  if (ws.e2ee !== 1) return;
  const named = e2eeValueHeader(value);
  if (named === null) return;
  // Ahead of the current key: no race makes that (a key version is never taken back), it is no
  // value for this write. (A header naming version 0 is no well-formed value: refused before.)
  if (named.keyVersion > ws.e2ee_key_version) {
    throw new InvalidError(`${name}: the value was encrypted with version ${named.keyVersion} of the workspace key, but the key is at version ${ws.e2ee_key_version}: encrypt it with the current key`, "value");
  }
  // Behind the version this write makes: another write came in between. Ahead of it: the
  // secret's versions went back meanwhile — it was purged, perhaps made again, and counts from 1.
  if (named.version < version) {
    throw new VersionConflictError(`${name} would be stored as version ${version}, but its value was encrypted as version ${named.version} (another write came in between): read it again and retry.`);
  }
  if (named.version > version) {
    throw new VersionConflictError(`${name} would be stored as version ${version}, but its value was encrypted as version ${named.version} (it was purged meanwhile, and perhaps made again): read it again and retry.`);
  }
  if (named.keyVersion !== ws.e2ee_key_version) {
    throw new HttpProblem(409, KEY_CONFLICT, `${name}'s value was encrypted with version ${named.keyVersion} of the workspace key, but the workspace is at version ${ws.e2ee_key_version} (the key was replaced meanwhile): fetch the key again and retry.`);
  }
}

/** The same secret in the same state: same row, same current version, deleted or not alike. */
function sameRow(now: sql.SecretRow | null, then: sql.SecretRow | null): boolean {
  if (now === null || then === null) return now === then;
  return now.id === then.id && now.version === then.version && now.deleted_at === then.deleted_at;
}

/** An expiry date and time, in ms since the epoch. */
function expiryOf(text: string): number {
  const at = Date.parse(text);
  if (Number.isNaN(at) || !isCalendarDate(text)) throw new InvalidError("an ISO 8601 date and time, on a day its month has", "expires_at");
  return at;
}

/**
 * Whether the date an ISO 8601 text starts with is a day of its month: Date.parse takes
 * 2026-02-30 for 2 March, which would store a date nobody wrote.
 */
function isCalendarDate(text: string): boolean {
  const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  if (!date) return false;
  const [year, month, day] = [Number(date[1]), Number(date[2]), Number(date[3])];
  const asWritten = new Date(Date.UTC(year, month - 1, day));
  return asWritten.getUTCFullYear() === year && asWritten.getUTCMonth() === month - 1 && asWritten.getUTCDate() === day;
}

/** What is wrong with a stored value that failed to decrypt, or null for any other error. */
function damageOf(error: unknown): string | null {
  if (error instanceof DecryptionError) return "does not decrypt (altered or damaged)";
  if (error instanceof KeyDestroyedError) return "cannot be decrypted: its data key is gone";
  return null;
}

/** Comparing a stored value with one offered tells whether they are equal: only for a caller who may read values. */
function mayReadValues(caller: Caller): boolean {
  return caller.principal.scopes === "all" || scopesGrant(caller.principal.scopes, "secrets:read");
}

