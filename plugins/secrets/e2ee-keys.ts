/**
 * The server's side of end-to-end-encrypted workspaces: it keeps what clients made (each
 * user's public key and passphrase-sealed private key, and the workspace key wrapped to each
 * member's public key) and hands it back to whoever may have it. It never holds a key it can
 * use: see e2ee.ts for the cryptography, done on the client.
 */
import type { Database } from "bun:sqlite";
import { ConflictError, ForbiddenError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { byWhom, ensureWorkspace, event, liveWorkspaceRow, type Caller, type SecretsKernel } from "./context.ts";
import * as sql from "./store.ts";

const PUBLIC_KEY = /^[A-Za-z0-9_-]{43}$/; // 32 bytes, base64url without padding
const SEALED = /^c1\.[a-z]{1,4}\.[A-Za-z0-9_-]{16,4096}$/;

/**
 * The codes of publicKey's two 404s: a definite "no key can be wrapped for this user", on which
 * a rotating client leaves a holder out (commands.ts). Any other refusal (no such workspace, a
 * rate limit, a server error) is not that answer, and stops the rotation instead.
 */
export const NOT_A_MEMBER = "not_a_member";
export const NO_KEY_PAIR = "no_key_pair";

/**
 * A copy of a workspace key for one member, wrapped by a client; `public_key`, when the client
 * names it, the member's public key it was wrapped to. A client fetches that key, wraps, then
 * sends: the member's key pair replaced in between, the copy opens with nothing they hold, yet
 * counted them a holder — and the last real holder could then replace their own key pair, losing
 * the workspace key (found in review). Named, it is refused unless it is still theirs. A client
 * from before (no `public_key`) is taken at its word, as before: the server cannot tell from a
 * copy which key it was wrapped to, and keeps no record of it to count only usable copies.
 */
export interface WrappedCopy {
  wrapped: string;
  public_key?: string;
}

export class E2eeKeys {
  constructor(private readonly k: SecretsKernel) {}

  /** The caller's key pair (public key and sealed private key), made on their machine. */
  async setKeyPair(caller: Caller, input: { public_key: string; sealed_private_key: string }) {
    const user = this.userOf(caller);
    if (!PUBLIC_KEY.test(input.public_key)) throw new InvalidError("an X25519 public key, base64url", "public_key");
    if (!SEALED.test(input.sealed_private_key)) throw new InvalidError("a private key sealed by citadel (c1.pk....)", "sealed_private_key");
    await this.k.store.write((tx) => {
      // Checked in the transaction that deletes: two holders replacing their key pairs at once
      // must not both pass a check made before either wrote, and lose the workspace key.
      const previous = sql.userKey(tx, user);
      if (previous?.public_key === input.public_key && previous.sealed_private_key === input.sealed_private_key) return; // the same again: nothing changes
      // The sealed private key is the only copy of the private key: another one under the same
      // public key is a replacement too (the server cannot tell whether it seals the same key).
      if (previous !== null) {
        // A new key pair cannot open the workspace keys wrapped to the old one: if this user is
        // the only member left holding some version of some workspace's key, it would be lost.
        const sole = this.soleHolding(tx, user);
        if (sole) {
          throw new ConflictError(
            sole.current
              ? `You are the only holder of the key of workspace ${sole.workspace_id}: give it to another member first (citadel secrets e2ee grant), or its values would be lost.`
              : `You are the only holder of version ${sole.key_version} of the key of workspace ${sole.workspace_id}, which older values are still encrypted with: a new key pair would make them unreadable (purge them, or keep this key pair).`,
          );
        }
        this.dropKeysWrappedTo(tx, caller, user);
      }
      sql.putUserKey(tx, user, input.public_key, input.sealed_private_key, this.k.clock.now());
      this.k.audit.record(tx, event(caller, null, { action: "secrets.e2ee.keypair", resource: { type: "user", id: user }, reason: previous ? "replaced" : "created" }));
    });
    return this.keyPair(caller);
  }

  /**
   * The workspace keys wrapped to the old key pair are useless now (or, under the same public
   * key, of no use unless the new seal holds the same private key): they go, and another member
   * wraps them again for the new key pair. Each workspace that loses a holder records it as a
   * revoke of its own (found in review: the keypair event names no workspace, so a holder
   * vanished from the workspace's trail), as a rotation's holders left out are.
   */
  private dropKeysWrappedTo(tx: Database, caller: Caller, user: string): void {
    for (const ws of sql.workspacesKeyedFor(tx, user)) {
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.e2ee.revoke", resource: { type: "user", id: user }, reason: "their key pair was replaced" }));
    }
    sql.deleteKeysWrappedTo(tx, user);
  }

  /**
   * A workspace key version `user` is the only one to hold among the members of its
   * organization (a holder who left it can no longer use theirs), or null.
   */
  private soleHolding(tx: Database, user: string, workspaceId?: string): { workspace_id: string; key_version: number; current: number } | null {
    const isMember = (other: string, organization: string) => this.k.identity.provider?.roleIn(other, organization) != null;
    for (const held of sql.keysHeldWithOthers(tx, user, workspaceId)) {
      const others = held.others === null ? [] : held.others.split(" ");
      if (!others.some((other) => isMember(other, held.organization_id))) return held;
    }
    return null;
  }

  keyPair(caller: Caller) {
    const row = sql.userKey(this.k.store.db, this.userOf(caller));
    if (!row) throw new NotFoundError("You have no key pair yet: citadel secrets e2ee init makes one.");
    return { public_key: row.public_key, sealed_private_key: row.sealed_private_key, created_at: new Date(row.created_at).toISOString() };
  }

  /** A member's public key, to wrap the workspace key for them. */
  async publicKey(workspaceId: string, userId: string) {
    const ws = await this.e2eeWorkspace(workspaceId);
    if (!this.k.identity.provider?.roleIn(userId, ws.organization_id)) throw new HttpProblem(404, NOT_A_MEMBER, "That user is not a member of this workspace's organization.");
    const row = sql.userKey(this.k.store.db, userId);
    if (!row) throw new HttpProblem(404, NO_KEY_PAIR, "That user has no key pair yet (citadel secrets e2ee init).");
    return { user: userId, public_key: row.public_key };
  }

  /** Gives a member the workspace key, wrapped by the caller's client to the member's public key. */
  async grant(caller: Caller, workspaceId: string, userId: string, copy: WrappedCopy) {
    const ws = await this.e2eeWorkspace(workspaceId);
    checkWrappedCopy(copy, "");
    if (!this.k.identity.provider?.roleIn(userId, ws.organization_id)) throw new InvalidError("that user is not a member of the organization", "user");
    const me = this.userOf(caller);
    await this.k.store.write((tx) => {
      // Every check in the transaction that writes: two first keys sent at once must not both land.
      const row = liveWorkspaceRow(this.k, tx, workspaceId);
      if (!sql.userKey(tx, userId)) throw new ConflictError("That user has no key pair yet: they run citadel secrets e2ee init first.");
      const version = row.e2ee_key_version;
      const holders = sql.workspaceKeyHolders(tx, workspaceId, version);
      // The first key is set by whoever turned encryption on; after that only holders can wrap it.
      if (holders.length > 0 && !holders.some((h) => h.user_id === me)) throw new ForbiddenError("Only a member who holds the workspace key can give it to another.");
      if (holders.length === 0) {
        // The first key is set once, before any value exists: were it allowed later, an admin
        // could remove every holder and install a key of their own.
        if (userId !== me) throw new ConflictError("The workspace has no key yet: its first key is your own.");
        if (row.e2ee_enabled_by != null && row.e2ee_enabled_by !== me) throw new ForbiddenError("The workspace's first key is set by whoever turned end-to-end encryption on.");
        const everKeyed = tx.query<{ n: number }, [string]>("SELECT count(*) AS n FROM secrets_workspace_keys WHERE workspace_id = ?").get(workspaceId)!.n > 0;
        if (everKeyed || version !== 1 || sql.secretCountInWorkspace(tx, workspaceId) > 0) {
          throw new ConflictError("This workspace's key is set already: only a member who holds it can give it to another.");
        }
      }
      // A holder's copy is theirs: another holder replacing it with a key of their own making
      // would leave them unable to read what is written next. Their own copy neither: a client
      // sending a new key over it (enable run again) would lose what the old one encrypted.
      if (holders.some((h) => h.user_id === userId)) throw new ConflictError(userId === me ? "You hold the workspace key already." : "That member holds the workspace key already.");
      this.requireCurrentKey(tx, userId, copy, userId === me ? "Your" : "That member's");
      sql.putWorkspaceKey(tx, workspaceId, version, userId, copy.wrapped, byWhom(caller.principal), this.k.clock.now());
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.e2ee.grant", resource: { type: "user", id: userId } }));
    });
    return this.holders(workspaceId);
  }

  async revoke(caller: Caller, workspaceId: string, userId: string) {
    const ws = await this.e2eeWorkspace(workspaceId);
    await this.k.store.write((tx) => {
      liveWorkspaceRow(this.k, tx, workspaceId);
      // Any version this user is the last member to hold would be lost with their copies.
      const sole = this.soleHolding(tx, userId, workspaceId);
      if (sole) throw new ConflictError(`That is the last member who holds version ${sole.key_version} of the workspace key: removing it would make values unreadable.`);
      if (sql.deleteWorkspaceKeys(tx, workspaceId, userId) === 0) throw new NotFoundError("That user holds no key of this workspace.");
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.e2ee.revoke", resource: { type: "user", id: userId } }));
    });
  }

  /**
   * The caller's wrapped workspace key: the current version, or an older one (for values written
   * before a rotation). The guard has checked they are still a member.
   */
  async myKey(caller: Caller, workspaceId: string, version?: number) {
    const ws = await this.e2eeWorkspace(workspaceId);
    const keyVersion = version ?? ws.e2ee_key_version;
    const row = sql.workspaceKey(this.k.store.db, workspaceId, keyVersion, this.userOf(caller));
    if (!row) {
      throw new NotFoundError(
        keyVersion === ws.e2ee_key_version
          ? "No key of this workspace is wrapped for you yet: a member who has it runs citadel secrets e2ee grant."
          : `You hold no copy of version ${keyVersion} of this workspace's key (it was replaced before you joined).`,
      );
    }
    return { workspace: workspaceId, key_version: keyVersion, wrapped: row.wrapped, wrapped_by: row.wrapped_by };
  }

  async holders(workspaceId: string) {
    const ws = await this.e2eeWorkspace(workspaceId);
    return sql.workspaceKeyHolders(this.k.store.db, workspaceId, ws.e2ee_key_version).map((h) => ({ user: h.user_id, wrapped_by: h.wrapped_by, created_at: new Date(h.created_at).toISOString() }));
  }

  /**
   * Checks the wrapped copies of a new workspace key: the caller's among them, each for a
   * member with a key pair. Used by the rotation (service.ts), which stores them.
   */
  checkNewKeyHolders(caller: Caller, ws: sql.WorkspaceRow, wrapped: ReadonlyArray<WrappedCopy & { user: string }>): void {
    const me = this.userOf(caller);
    if (!sql.workspaceKey(this.k.store.db, ws.workspace_id, ws.e2ee_key_version, me)) throw new ForbiddenError("Only a member who holds the workspace key can replace it.");
    if (!wrapped.some((w) => w.user === me)) throw new InvalidError("wrap the new key for yourself too, or nobody could read the workspace", "wrapped");
    const seen = new Set<string>();
    for (const w of wrapped) {
      if (seen.has(w.user)) throw new InvalidError(`${w.user} appears twice`, "wrapped");
      seen.add(w.user);
      checkWrappedCopy(w, "wrapped");
      if (!this.k.identity.provider?.roleIn(w.user, ws.organization_id)) throw new InvalidError(`${w.user} is not a member of the organization`, "wrapped");
      if (!sql.userKey(this.k.store.db, w.user)) throw new InvalidError(`${w.user} has no key pair`, "wrapped");
    }
  }

  /**
   * In the rotation's transaction (service.ts): each new copy that names the public key it is
   * wrapped to, refused (409) if its holder's key pair was replaced since the client fetched it.
   */
  requireCurrentKeys(tx: Database, wrapped: ReadonlyArray<WrappedCopy & { user: string }>): void {
    for (const w of wrapped) this.requireCurrentKey(tx, w.user, w, `${w.user}'s`);
  }

  /** If the copy names the public key it is wrapped to, that is the user's key pair's (`whose`: "Your", "That member's"). */
  private requireCurrentKey(tx: Database, userId: string, copy: WrappedCopy, whose: string): void {
    if (copy.public_key === undefined || sql.userKey(tx, userId)?.public_key === copy.public_key) return;
    throw new ConflictError(`${whose} key pair was replaced meanwhile: the copy is wrapped to the public key it had, which opens nothing now. Nothing was changed; run the command again (it fetches the current public key: check its fingerprint anew).`);
  }

  /**
   * Deletes every copy held by those a new key leaves out (the rotation, service.ts, in its
   * transaction). Those who stay keep the older versions, so the history still reads: a member
   * left out who holds a version stored values still use, which nobody who stays holds, is
   * refused (409) rather than dropped with it. A holder who left the organization is no member's
   * way to that version any more, and does not hold up the rotation that shuts them out. Each
   * holder dropped is audited as a revoke, as removing them by hand is: the rotation's own event
   * counts only who stays.
   */
  dropHoldersLeftOut(tx: Database, caller: Caller, ws: sql.WorkspaceRow, staying: ReadonlySet<string>, nextVersion: number): void {
    for (const { user_id: holder } of sql.workspaceKeyHoldersOfAnyVersion(tx, ws.workspace_id)) {
      if (staying.has(holder)) continue;
      if (this.k.identity.provider?.roleIn(holder, ws.organization_id)) {
        for (const held of sql.keysHeldWithOthers(tx, holder, ws.workspace_id)) {
          const others = held.others === null ? [] : held.others.split(" ");
          if (!others.some((other) => staying.has(other))) {
            throw new ConflictError(`${holder} is the last holder of version ${held.key_version} of the workspace key, which stored values (older versions, deleted secrets) are still encrypted with, and nobody who stays holds it: wrap the new key for ${holder} too, or purge those values first.`);
          }
        }
      }
      sql.deleteWorkspaceKeys(tx, ws.workspace_id, holder);
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.e2ee.revoke", resource: { type: "user", id: holder }, reason: `left out of the rotation to v${nextVersion}` }));
    }
  }

  private async e2eeWorkspace(workspaceId: string): Promise<sql.WorkspaceRow> {
    const ws = await ensureWorkspace(this.k, workspaceId);
    if (ws.e2ee !== 1) throw new ConflictError("This workspace is not end-to-end encrypted.");
    return ws;
  }

  private userOf(caller: Caller): string {
    if (!caller.principal.userId) throw new ForbiddenError("End-to-end encryption keys belong to users, not to service keys.");
    return caller.principal.userId;
  }
}

/** A wrapped copy's form: the wrapped key, and the public key it names if any (`field`: where it is in the body, "" at the top). */
function checkWrappedCopy(copy: WrappedCopy, field: string): void {
  const at = (name: string) => (field ? `${field}.${name}` : name);
  if (!SEALED.test(copy.wrapped)) throw new InvalidError("a workspace key wrapped by citadel (c1.wk....)", field || "wrapped");
  if (copy.public_key !== undefined && !PUBLIC_KEY.test(copy.public_key)) throw new InvalidError("the X25519 public key the copy is wrapped to, base64url", at("public_key"));
}
