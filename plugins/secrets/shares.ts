/**
 * One-time share links. The client encrypts the value with a key that lives only in the link's
 * fragment (share-crypto.ts), so the server stores a ciphertext it cannot read, wrapped once
 * more by the keyring. A viewer proves they hold the link (a proof derived from the link key,
 * of which the server keeps the SHA-256) before a view is counted: guessing an id burns nothing.
 * A link with a passphrase also needs a proof of the passphrase before a view is counted or the
 * ciphertext handed out, so a link holder without it has nothing to guess at offline; a few
 * wrong ones burn the link. The last allowed view, revocation and expiry drop the ciphertext.
 */
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { constantTimeEqual } from "../../src/crypto/aead.ts";
import { ConflictError, ForbiddenError, GoneError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { newId } from "../../src/ids.ts";
import type { AuditRequestContext } from "../../src/audit/event.ts";
import { roleHolder } from "../../src/auth/principal.ts";
import { roleAllows } from "../../src/auth/rbac.ts";
import { cidrContains, parseIp, type Cidr } from "../../src/net/ip.ts";
import { byWhom, environmentFor, event, mayManageMembers, roleInWorkspace, systemEvent, type Caller, type SecretsKernel } from "./context.ts";
import { shareKdfProblem, type ShareKdf } from "./share-crypto.ts";
import * as sql from "./store.ts";

const HOUR_MS = 3_600_000;
/** Wrong passphrases a link takes before it is burned: an online guess each, after the rate limit. */
const MAX_WRONG_PASSPHRASES = 5;

export interface NewShare {
  ciphertext: string;
  view_proof: string;
  passphrase: boolean;
  /** With passphrase_kdf, for a link with a passphrase (a client from before sends neither). */
  passphrase_proof?: string;
  passphrase_kdf?: ShareKdf;
  ttl_hours?: number;
  max_views?: number;
  /** The secret it carries, for the audit trail: "<workspace>/<environment>/<name>". */
  source?: { workspace: string; environment: string; name: string };
}

export class Shares {
  constructor(private readonly k: SecretsKernel) {}

  async create(caller: Caller, organizationId: string, input: NewShare) {
    const settings = this.k.settings;
    const ttlHours = input.ttl_hours ?? settings.share_default_ttl_hours;
    if (ttlHours > settings.share_max_ttl_hours) throw new InvalidError(`at most ${settings.share_max_ttl_hours} hours (secrets.share_max_ttl_hours)`, "ttl_hours");
    const maxViews = input.max_views ?? 1;
    if (maxViews > settings.share_max_views) throw new InvalidError(`at most ${settings.share_max_views} views (secrets.share_max_views)`, "max_views");
    if (Buffer.byteLength(input.ciphertext) > settings.max_value_bytes * 2 + 1024) throw new InvalidError("larger than a secret value may be", "ciphertext");
    const passphraseCheck = storedPassphraseCheck(input);
    if (input.source) {
      const ws = sql.workspaceRow(this.k.store.db, input.source.workspace);
      if (!ws || ws.organization_id !== organizationId) throw new InvalidError("no such workspace in this organization", "source.workspace");
      // Before anything of the workspace is told (its encryption, whether the secret exists).
      this.requireWorkspaceRead(caller, ws);
      if (ws.e2ee === 1) throw new ConflictError("Values of an end-to-end-encrypted workspace are not shared by link: add the person to the workspace instead.");
      // The audit trail says which secret the link carries: only one the caller may read.
      const env = environmentFor(this.k, caller, ws, input.source.environment);
      const secret = sql.secretByName(this.k.store.db, env.id, input.source.name);
      if (!secret || secret.deleted_at !== null) throw new InvalidError("no such secret in that environment", "source.name");
    }
    const id = newId("shr");
    const now = this.k.clock.now();
    const expiresAt = now + ttlHours * HOUR_MS;
    const source = input.source ? shareSource(input.source.workspace, input.source.environment, input.source.name) : null;
    await this.k.store.write((tx) => {
      this.requireStillThere(tx, organizationId, input.source);
      const wrapped = this.k.seal.keyring().encrypt(tx, shareKeyOwner(organizationId), `secrets_shares:${id}`, input.ciphertext);
      // The passphrase proof's hash, wrapped like the ciphertext: a bare hash in a copy of the
      // database would let whoever also holds the link guess the passphrase offline, past the burn.
      const passphraseProofHash = passphraseCheck.proofHash && this.k.seal.keyring().encrypt(tx, shareKeyOwner(organizationId), passphraseProofContext(id), passphraseCheck.proofHash);
      sql.insertShare(tx, {
        id,
        organization_id: organizationId,
        created_by: byWhom(caller.principal),
        ciphertext: wrapped,
        view_proof_hash: proofHash(input.view_proof, "view_proof"),
        passphrase: input.passphrase ? 1 : 0,
        max_views: maxViews,
        source,
        expires_at: expiresAt,
        created_at: now,
        passphrase_proof_hash: passphraseProofHash,
        passphrase_kdf: passphraseCheck.kdf,
      });
      this.k.audit.record(tx, {
        ...event(caller, null, { action: "secrets.share.create", resource: { type: "share", id }, reason: `${maxViews} view(s), ${ttlHours} h${source ? `, carries ${source}` : ", a one-off value"}` }),
        organization: organizationId,
        workspace: input.source?.workspace ?? null,
      });
    });
    return view(sql.shareById(this.k.store.db, id)!, now);
  }

  /**
   * The organization, and the workspace and secret the link carries, checked again where the
   * link is written: a deletion (or a purge, or a soft delete of the secret) committed since the
   * checks before it would not find the link (found in review: it outlived the deletion, still
   * open, its key made anew). Refused as the guard and the checks before refuse what is gone.
   */
  private requireStillThere(tx: Database, organizationId: string, source: NewShare["source"]): void {
    const identity = this.k.identity.provider;
    if (identity && identity.organization(organizationId) === null) throw new HttpProblem(404, "not_found", "No such organization.");
    if (source === undefined) return;
    if (!sql.workspaceRow(tx, source.workspace) || (identity && identity.workspace(source.workspace) === null)) throw new InvalidError("no such workspace in this organization", "source.workspace");
    const env = sql.environmentByName(tx, source.workspace, source.environment);
    const secret = env && sql.secretByName(tx, env.id, source.name);
    if (!secret || secret.deleted_at !== null) throw new InvalidError("no such secret in that environment", "source.name");
  }

  /**
   * What the guard checks of a read of the workspace's secrets, beyond what it checked of this
   * organization route: the workspace's address allowlist, and the caller's role there (a
   * service key's maker's). A token restricted to a workspace needs no check here: the guard
   * refuses it on every organization route, this one too.
   */
  private requireWorkspaceRead(caller: Caller, ws: sql.WorkspaceRow): void {
    const facts = this.k.identity.provider?.workspace(ws.workspace_id);
    if (!facts) throw new InvalidError("no such workspace in this organization", "source.workspace");
    if (!allowedFrom(caller.request.source, facts.ipAllowlist)) throw new ForbiddenError("The workspace does not allow requests from your address.");
    if (roleHolder(caller.principal) === null) return; // a service key made before keys named their maker: no role to go by, as for the guard
    const role = roleInWorkspace(this.k, caller.principal, ws);
    if (role === null || !roleAllows(role, "view")) throw new ForbiddenError(`Your role (${role ?? "none"}) in the workspace does not allow reading its secrets.`);
  }

  /** One page of the organization's links, newest first; `next_cursor` continues after it (null: the last page). */
  list(organizationId: string, limit: number, cursor?: string) {
    const now = this.k.clock.now();
    const rows = sql.sharesOf(this.k.store.db, organizationId, limit + 1, cursor === undefined ? null : decodeCursor(cursor));
    const page = rows.slice(0, limit);
    return { items: page.map((s) => view(s, now)), next_cursor: rows.length > limit ? encodeCursor(page.at(-1)!) : null };
  }

  /**
   * By whoever made the link, or by someone who may manage the organization's members (who sees
   * every link). A link that no longer opens (revoked, burned, used up, expired) is not revoked
   * again: 409, and no event, as nothing was done (its listed state stays what ended it).
   */
  async revoke(caller: Caller, organizationId: string, id: string) {
    const share = sql.shareById(this.k.store.db, id);
    if (!share || share.organization_id !== organizationId) throw new NotFoundError("No such share link.");
    const maker = share.created_by === byWhom(caller.principal);
    if (!maker && !mayManageMembers(this.k, caller.principal, organizationId)) throw new ForbiddenError("Only whoever made the share link, or an admin of the organization, can revoke it.");
    await this.k.store.write((tx) => {
      const now = this.k.clock.now();
      // Read again where it is written: two revocations sent at once must not both succeed.
      const current = sql.shareById(tx, id);
      const state = current ? stateOf(current, now) : "revoked";
      if (state !== "active") throw new ConflictError(`This share link is ${ENDED[state]} already: there is nothing to revoke.`);
      sql.revokeShare(tx, id, now);
      this.k.audit.record(tx, { ...event(caller, null, { action: "secrets.share.revoke", resource: { type: "share", id } }), organization: organizationId });
    });
  }

  /**
   * What the link is like (passphrase, views left), without spending a view: for the page.
   * For a link with a passphrase proof, also the argon2id salt and parameters to make it with.
   */
  async peek(id: string, proof: string, request: AuditRequestContext) {
    const share = await this.usable(id, proof, request);
    const kdf = share.passphrase_kdf === null ? {} : { passphrase_kdf: JSON.parse(share.passphrase_kdf) as ShareKdf };
    return { passphrase: share.passphrase === 1, ...kdf, views_left: share.max_views - share.views, expires_at: new Date(share.expires_at).toISOString() };
  }

  /**
   * One view: the ciphertext, if the proof (and the passphrase's) matches and views are left.
   * Anyone with the link may view (no account needed); each view is audited, and so is each
   * refused attempt.
   */
  async open(id: string, proof: string, passphraseProof: string | undefined, request: AuditRequestContext) {
    const share = await this.usable(id, proof, request);
    if (share.passphrase_proof_hash !== null && passphraseProof === undefined) await this.refuseWithoutPassphraseProof(share, request);
    const ciphertext = this.k.seal.keyring().decrypt(shareKeyOwner(share.organization_id), `secrets_shares:${id}`, share.ciphertext).toString("utf8");
    const decision = await this.k.store.write((tx) => this.decideView(tx, share, passphraseProof, request));
    if ("refusal" in decision) throw decision.refusal;
    return { ciphertext, passphrase: share.passphrase === 1, views_left: share.max_views - decision.views, expires_at: new Date(share.expires_at).toISOString() };
  }

  /** The share, if the proof matches and it can still be opened; a refusal is audited. */
  private async usable(id: string, proof: string, request: AuditRequestContext): Promise<sql.ShareRow> {
    const share = sql.shareById(this.k.store.db, id);
    const refuse = (s: sql.ShareRow, reason: string) => this.k.store.write((tx) => this.k.audit.record(tx, viewEvent(s, "failure", reason, request)));
    if (!share || !proofMatches(proof, share.view_proof_hash)) {
      if (share) await refuse(share, "the proof does not match the link");
      throw new NotFoundError("No such share link (or the link is not complete).");
    }
    const gone = this.goneReason(share, this.k.clock.now());
    if (gone) {
      await refuse(share, gone);
      throw goneError(gone);
    }
    return share;
  }

  /** Why the share can no longer be opened at `now`, or null while it can. */
  private goneReason(share: sql.ShareRow, now: number): Gone | null {
    // An organization being erased (or deleted) shares nothing more, even before its keys go.
    const orphaned = this.k.identity.provider !== null && this.k.identity.provider.organization(share.organization_id) === null;
    return share.revoked_at !== null || orphaned ? "revoked" : now >= share.expires_at ? "expired" : share.views >= share.max_views ? "used up" : null;
  }

  /** Refused like every other view, on the record; not a wrong passphrase (an older client sends none). */
  private async refuseWithoutPassphraseProof(share: sql.ShareRow, request: AuditRequestContext): Promise<never> {
    await this.k.store.write((tx) => this.k.audit.record(tx, viewEvent(share, "failure", "no passphrase proof", request)));
    throw new InvalidError("This link needs a proof of its passphrase, which a citadel older than this server does not send: open it with `citadel share open` of this server's version.", "passphrase_proof");
  }

  /**
   * Whether this view is allowed, decided and counted in the one transaction that records it:
   * the link read again, its passphrase proof compared, a wrong one counted (the
   * MAX_WRONG_PASSPHRASES-th burns the link), or the view counted. Requests sent at the same
   * moment — a burst of guessed passphrases — each see what the ones before them did: no more than
   * MAX_WRONG_PASSPHRASES wrong ones are ever compared, and once the link is burned every request
   * gets the same refusal, the right passphrase's too. A refusal is returned, not thrown: thrown,
   * it would roll back its own audit event.
   */
  private decideView(tx: Database, before: sql.ShareRow, passphraseProof: string | undefined, request: AuditRequestContext): { views: number } | { refusal: Error } {
    const id = before.id;
    const refuse = (reason: Gone) => {
      this.k.audit.record(tx, viewEvent(before, "failure", reason, request));
      return { refusal: goneError(reason) };
    };
    const share = sql.shareById(tx, id);
    if (!share) return refuse("revoked"); // its organization erased meanwhile: it shares nothing more
    // One reading of the clock for the whole decision: read again for the count, it could pass
    // the expiry the check just allowed (found in review: a view at that instant was a 500).
    const now = this.k.clock.now();
    const gone = this.goneReason(share, now);
    if (gone) return refuse(gone);
    if (share.passphrase_proof_hash !== null) {
      const expected = this.k.seal.keyring().decrypt(shareKeyOwner(share.organization_id), passphraseProofContext(share.id), share.passphrase_proof_hash);
      if (passphraseProof === undefined || !proofMatches(passphraseProof, expected)) return { refusal: this.countWrongPassphrase(tx, share, request) };
    }
    // Which view this is comes from the count itself, not from a read before it (views opened at
    // the same moment would all be "the first"); countView checks again what allows a view.
    const views = sql.countView(tx, id, now);
    // Not counted after all: refused as a link that no longer opens, never a 500.
    if (views === null) return refuse(now >= share.expires_at ? "expired" : "used up");
    this.k.audit.record(tx, viewEvent(share, "success", `view ${views} of ${share.max_views}`, request));
    return { views };
  }

  /** Counts and audits a wrong passphrase of a link still open; the MAX_WRONG_PASSPHRASES-th burns it (revoked, its ciphertext dropped). */
  private countWrongPassphrase(tx: Database, share: sql.ShareRow, request: AuditRequestContext): Error {
    const wrong = sql.countWrongPassphrase(tx, share.id)!; // not revoked: checked in this transaction
    this.k.audit.record(tx, viewEvent(share, "failure", "wrong passphrase", request));
    if (wrong >= MAX_WRONG_PASSPHRASES) {
      sql.revokeShare(tx, share.id, this.k.clock.now());
      this.k.audit.record(tx, { ...anonymousShareEvent(share, request), action: "secrets.share.revoke", outcome: "success", reason: `burned: ${MAX_WRONG_PASSPHRASES} wrong passphrases` });
      return new GoneError(`This share link is revoked: burned after ${MAX_WRONG_PASSPHRASES} wrong passphrases.`);
    }
    const left = MAX_WRONG_PASSPHRASES - wrong;
    return new HttpProblem(403, "wrong_passphrase", `The passphrase is wrong. No view was spent; ${left} more wrong passphrase(s) burn the link.`, {}, { attempts_left: left });
  }

  /**
   * At start, before a link is served: revokes the links still open whose secret is gone
   * (purged or deleted, or purged and set again under its name since), each with its own
   * secrets.share.revoke event, as a purge or delete records it now. Before those revoked their
   * links (ac60c59), a link made earlier outlived its secret and handed out its value (found in
   * review). Needs no key (a revocation drops the ciphertext), so it runs sealed too; once done,
   * it finds nothing. The number revoked.
   */
  async revokeLinksToSecretsGone(): Promise<number> {
    return this.k.store.write((tx) => {
      const now = this.k.clock.now();
      // Link by link, not by source: a link made after its secret was set again carries the live one.
      const gone = sql.openSharesToSecretsGone(tx, now);
      for (const link of gone) {
        sql.revokeShare(tx, link.id, now);
        this.k.audit.record(tx, systemEvent(link, { action: "secrets.share.revoke", resource: { type: "share", id: link.id }, reason: "the secret it carries is gone" }));
      }
      return gone.length;
    });
  }

  /** Drops the ciphertexts of expired links (a timer calls it). */
  async sweep(): Promise<void> {
    if (this.k.seal.sealed) return;
    await this.k.store.write((tx) => sql.dropExpiredShares(tx, this.k.clock.now()));
  }
}

type Gone = "revoked" | "expired" | "used up";

/** The one answer to a view of a link that can no longer be opened, whenever it is found so. */
const goneError = (gone: Gone) => new GoneError(`This share link is ${gone === "used up" ? "used up: it allowed no more views" : gone}.`);

/** Whether the client's address is in the allowlist (empty: any address), as the guard decides it (src/http/guard.ts). */
function allowedFrom(client: string | null | undefined, allowlist: readonly Cidr[]): boolean {
  if (allowlist.length === 0) return true;
  const ip = client ? parseIp(client) : null;
  return ip !== null && allowlist.some((c) => cidrContains(c, ip));
}

/**
 * What a link names as the secret it carries: "<workspace>/<environment>/<name>". Its links are
 * revoked when that secret is purged or deleted (service.ts), found by this string whole.
 */
export const shareSource = (workspaceId: string, environment: string, name: string) => `${workspaceId}/${environment}/${name}`;

/** The keyring owner of an organization's share links (destroyed when the organization is erased). */
export const shareKeyOwner = (organizationId: string) => `shares:${organizationId}`;

/** What a viewer (anyone with the link, no account) did to a share: for the audit trail. */
const anonymousShareEvent = (share: sql.ShareRow, request: AuditRequestContext) => ({
  actor: { kind: "anonymous" as const },
  resource: { type: "share", id: share.id },
  organization: share.organization_id,
  request,
});

const viewEvent = (share: sql.ShareRow, outcome: "success" | "failure", reason: string, request: AuditRequestContext) => ({
  ...anonymousShareEvent(share, request),
  action: "secrets.share.view",
  outcome,
  reason,
});

const wellFormedProof = (proof: string) => proof.length >= 16 && proof.length <= 256;

/** The stored form of a new link's proof; its maker is told when it is not a proof at all. */
function proofHash(proof: string, field: string): Buffer {
  if (!wellFormedProof(proof)) throw new InvalidError("not a share link's proof", field);
  return createHash("sha256").update(proof).digest();
}

/**
 * What a new link keeps of its passphrase: the proof's SHA-256, and the argon2id salt and
 * parameters a viewer needs to make the proof (refused when out of the bounds a viewer accepts).
 * A link with a passphrase but neither (from a client made before) keeps the old behaviour.
 */
function storedPassphraseCheck(input: NewShare): { proofHash: Buffer | null; kdf: string | null } {
  const { passphrase_proof: proof, passphrase_kdf: kdf } = input;
  if (proof === undefined && kdf === undefined) return { proofHash: null, kdf: null };
  if (!input.passphrase) throw new InvalidError("only a link with a passphrase has a passphrase proof", proof === undefined ? "passphrase_kdf" : "passphrase_proof");
  if (proof === undefined) throw new InvalidError("needed with passphrase_kdf", "passphrase_proof");
  if (kdf === undefined) throw new InvalidError("needed with passphrase_proof", "passphrase_kdf");
  const problem = shareKdfProblem(kdf);
  if (problem) throw new InvalidError(problem.message, `passphrase_kdf.${problem.field}`);
  const { salt, memory_kib, iterations, parallelism } = kdf;
  return { proofHash: proofHash(proof, "passphrase_proof"), kdf: JSON.stringify({ salt, memory_kib, iterations, parallelism }) };
}

/** The keyring context of a link's wrapped passphrase proof hash (bound to the link's row). */
const passphraseProofContext = (id: string) => `secrets_shares:${id}:passphrase_proof`;

/**
 * Whether a viewer's proof is the link's. A malformed proof is one more proof that does not
 * match: refused and audited like any other, with the same answer (a distinct 422 would skip
 * the audit trail that every refused view is promised).
 */
function proofMatches(proof: string, hash: Uint8Array): boolean {
  return wellFormedProof(proof) && constantTimeEqual(createHash("sha256").update(proof).digest(), hash);
}

/** A page's end as the client holds it: opaque, as the audit list's (src/audit/query.ts). */
const encodeCursor = (s: sql.ShareKey) => Buffer.from(`share:${s.created_at}:${s.id}`).toString("base64url");

function decodeCursor(cursor: string): sql.ShareKey {
  const m = Buffer.from(cursor, "base64url").toString().match(/^share:(\d{1,15}):(shr_[A-Za-z0-9]{1,40})$/);
  if (!m) throw new InvalidError("the cursor is not one this API returned", "query.cursor");
  return { created_at: Number(m[1]), id: m[2]! };
}

/** A link's state, as the list shows it. */
const stateOf = (s: sql.ShareRow, now: number) => (s.revoked_at !== null ? "revoked" : now >= s.expires_at ? "expired" : s.views >= s.max_views ? "used" : "active");

/** How a refusal names the state that ended a link. */
const ENDED = { revoked: "revoked", expired: "expired", used: "used up" } as const;

function view(s: sql.ShareRow, now: number) {
  const state = stateOf(s, now);
  return { id: s.id, state, views: s.views, max_views: s.max_views, passphrase: s.passphrase === 1, source: s.source, created_by: s.created_by, created_at: new Date(s.created_at).toISOString(), expires_at: new Date(s.expires_at).toISOString() };
}
