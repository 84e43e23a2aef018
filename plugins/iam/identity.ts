/**
 * The identity provider the kernel's guard consults: token → principal, and the facts about
 * organizations, workspaces and roles it checks. Every answer is one or two indexed reads.
 *
 * Last-use time and address are tracked in memory and written in one batch every few
 * seconds: writing them on every request would turn every read into a durable write.
 *
 * What a credential's row says (kind, hash, scopes, revocation, its user's state) is cached
 * by prefix for as long as the database's authentication generation is unchanged: triggers
 * move it on every change to a column that row is read from (migrations 0002 and 0003),
 * whoever makes it, so a revocation or a disabled account takes effect on the very next
 * request. Reading the
 * generation is one single-row read instead of the credential query with its four lookups
 * of the user; the token itself is still checked against the hash on every request.
 */
import type { Database } from "bun:sqlite";
import type { AuthResult, IdentityProvider, OrganizationFacts, Principal, PrincipalKind, WorkspaceFacts } from "../../src/auth/principal.ts";
import { hasValidChecksum, TOKEN_KINDS, tokenMatches, tokenShape } from "../../src/auth/tokens.ts";
import type { Logger } from "../../src/log.ts";
import { parseClientCidr, type Cidr } from "../../src/net/ip.ts";
import { ReadMemo } from "../../src/store/read-memo.ts";
import type { Store } from "../../src/store/store.ts";
import * as sql from "./store.ts";

const KIND_OF_PREFIX: Record<string, readonly sql.CredentialKind[]> = {
  [TOKEN_KINDS.pat]: ["pat", "device"],
  [TOKEN_KINDS.session]: ["session"],
  [TOKEN_KINDS.workload]: ["workload"],
  [TOKEN_KINDS.console]: ["console"],
};

export class IamIdentity implements IdentityProvider {
  private readonly recent = new Map<string, { at: number; from: string }>();
  private readonly allowlists = new Map<string, Cidr[]>();
  private readonly scopeLists = new Map<string, readonly string[]>();

  private readonly credentialQuery;
  private readonly generationQuery;
  private readonly rows = new Map<string, CachedCredential>();
  /** The generation and the guard's other facts, read again only once the database changed. */
  private readonly memo: ReadMemo;
  private readonly db: Database;
  /**
   * Console tokens presented to this process, with their expiry. Spending one is a direct write
   * that commits with the request's read snapshot; when that write or its commit fails (a disk
   * full, a lock another process holds) the request fails, and the token must still not work a
   * second time.
   */
  private readonly spentConsoleTokens = new Map<string, number>();

  /** `log` hears of stored allowlists that do not parse (see allowlist). */
  constructor(
    store: Pick<Store, "db" | "changeStamp">,
    private readonly log?: Pick<Logger, "error">,
  ) {
    this.db = store.db;
    this.memo = new ReadMemo(store);
    const db = this.db;
    this.credentialQuery = sql.credentialForAuthentication(db);
    this.generationQuery = sql.authenticationGeneration(db);
    // The cache is only as good as the triggers that move the generation. A table rebuilt the
    // usual SQLite way (create, copy, drop, rename) loses its triggers: refuse to serve then.
    const missing = sql.missingAuthenticationTriggers(db);
    if (missing.length > 0) throw new Error(`the database lacks the triggers that keep authentication current (${missing.join(", ")}): restore them (iam migrations 0002 and 0003) before starting`);
  }

  /**
   * The credential's cache entry, while nothing about credentials or users has changed: its row,
   * and the principal made of it once (the same object for every request of the generation: no
   * principal, scope list or allowlist is looked up or built per request).
   */
  private credential(prefix: string): CachedCredential | null {
    const generation = this.memo.get("generation", "", () => this.generationQuery.get()!.generation);
    const cached = this.rows.get(prefix);
    if (cached !== undefined && cached.generation === generation) return cached;
    const row = this.credentialQuery.get(prefix);
    if (!row) return null; // unknown prefixes are not cached: guessing costs the guesser, not memory
    if (this.rows.size >= MAX_CACHED_CREDENTIALS) this.rows.clear();
    const entry: CachedCredential = { generation, row, principal: null };
    this.rows.set(prefix, entry);
    return entry;
  }

  authenticate(token: string, client: string, now: number): AuthResult {
    const parsed = tokenShape(token);
    if (!parsed) return { ok: false, reason: "malformed" };
    const cached = this.credential(parsed.prefix);
    // The checksum is asked only of a token that matched nothing: one that matches an issued
    // token's hash is that token, checksum and all (tokens.ts).
    if (!cached || !tokenMatches(token, cached.row.hash)) return { ok: false, reason: hasValidChecksum(token) ? "unknown" : "malformed" };
    const row = cached.row;
    const expectedKinds = KIND_OF_PREFIX[parsed.kind];
    const kindMatches = expectedKinds ? expectedKinds.includes(row.kind) : row.kind === "service" && row.service === parsed.kind;
    if (!kindMatches) return { ok: false, reason: "unknown" };
    if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
    if (row.expires_at !== null && row.expires_at <= now) return { ok: false, reason: "expired" };
    if (this.idle(parsed.prefix, row, now)) return { ok: false, reason: "expired" };
    if (row.user_id !== null && row.user_active !== 1) return { ok: false, reason: "disabled" };
    if (row.kind === "console") {
      if (this.spentConsoleTokens.has(parsed.prefix)) return { ok: false, reason: "revoked" };
      this.spendConsoleToken(parsed.prefix, row.expires_at ?? now, now);
      // Single use: spent the moment it is presented. A direct write: no store batch is open
      // here (they run in a turn of their own); inside the request's read snapshot it
      // commits when the request's synchronous part ends, before any answer is sent.
      this.db.query("UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(now, parsed.prefix);
    }
    this.recent.set(parsed.prefix, { at: now, from: client });
    return { ok: true, principal: (cached.principal ??= this.principalOf(parsed.prefix, row)) };
  }

  /** What a credential's row makes of its caller (frozen: one object serves every request until the row changes). */
  private principalOf(prefix: string, row: sql.AuthenticationRow): Principal {
    // A service key's user is its maker, whose role bounds it: it is not them (no operator
    // rights, none of their routes about themselves). So is a workload token exchanged from a
    // key (it carries the key's service): an exchange never widens a key. The maker's MFA is
    // the key's: an organization that requires MFA requires it of whoever the key acts for.
    const key = row.service !== null;
    // Nor is a credential restricted to an organization or a workspace an operator's: operator
    // routes name no organization, so the restriction would confine nothing there. What such a
    // credential makes or is exchanged for carries the restriction, and so stays no operator's.
    const restricted = row.organization_id !== null || row.workspace_id !== null;
    return Object.freeze({
      kind: PRINCIPAL_KIND[row.kind],
      tokenId: prefix,
      userId: key ? null : row.user_id,
      madeBy: key ? row.user_id : null,
      organizationId: row.organization_id,
      scopes: row.scopes === null ? "all" : this.scopes(row.scopes),
      service: row.service,
      workspaceId: row.workspace_id,
      ipAllowlist: this.allowlist(row.ip_allowlist),
      operator: !key && !restricted && row.operator === 1,
      mfa: row.mfa === 1,
      mustChangePassword: !key && row.must_change_password === 1,
    });
  }

  private spendConsoleToken(prefix: string, expiresAt: number, now: number): void {
    // Every console token lives two minutes, so insertion order is expiry order: drop from the front.
    for (const [spent, expiry] of this.spentConsoleTokens) {
      if (expiry > now) break;
      this.spentConsoleTokens.delete(spent);
    }
    this.spentConsoleTokens.set(prefix, expiresAt);
  }

  organization(id: string): OrganizationFacts | null {
    return this.memo.get("organization", id, () => {
      const row = sql.organizationById(this.db, id);
      if (!row) return null;
      return {
        id: row.id,
        ipAllowlist: this.allowlist(row.ip_allowlist),
        requireMfa: row.require_mfa === 1,
        serviceActive: (service: string) => this.memo.get("service activation", JSON.stringify([id, service]), () => sql.serviceActive(this.db, id, service)),
      };
    });
  }

  workspace(id: string): WorkspaceFacts | null {
    return this.memo.get("workspace", id, () => {
      const row = sql.workspaceById(this.db, id);
      return row && { id: row.id, organizationId: row.organization_id, ipAllowlist: this.allowlist(row.ip_allowlist) };
    });
  }

  roleIn(userId: string, organizationId: string) {
    return this.memo.get("role", JSON.stringify([organizationId, userId]), () => sql.roleOf(this.db, organizationId, userId));
  }

  credentialStanding(id: string, now: number) {
    let row = sql.credentialById(this.db, id);
    // A workload token stands for the key it was exchanged from (RFC 8693): a webhook a CI job
    // made with one lives as long as the key, not the hour the token does (found in review).
    for (let hops = 0; row?.kind === "workload" && row.parent_id !== null && hops < 8; hops++) row = sql.credentialById(this.db, row.parent_id);
    if (!row) return null;
    return { id: row.id, actsFor: row.user_id, usable: row.revoked_at === null && (row.expires_at === null || row.expires_at > now) };
  }

  memberSince(userId: string, organizationId: string) {
    return this.memo.get("member since", JSON.stringify([organizationId, userId]), () => sql.memberSince(this.db, organizationId, userId));
  }

  workspaceRole(userId: string, workspaceId: string) {
    return this.memo.get("workspace role", JSON.stringify([workspaceId, userId]), () => sql.workspaceRoleOf(this.db, workspaceId, userId));
  }

  organizationLiveIn(tx: Database, id: string): boolean {
    return sql.organizationById(tx, id) !== null;
  }

  workspaceLiveIn(tx: Database, id: string): boolean {
    return sql.workspaceById(tx, id) !== null;
  }

  /** True when a credential with an idle timeout went unused longer than it allows. */
  idle(id: string, row: Pick<sql.CredentialRow, "idle_timeout_ms" | "last_used_at" | "created_at">, now: number): boolean {
    const lastUse = this.recent.get(id)?.at ?? row.last_used_at ?? row.created_at;
    return row.idle_timeout_ms !== null && now - lastUse > row.idle_timeout_ms;
  }

  /** When a credential was last used, including uses not yet written down. */
  lastUse(row: sql.CredentialRow): { at: number | null; from: string | null } {
    const recent = this.recent.get(row.id);
    return recent ? { at: recent.at, from: recent.from } : { at: row.last_used_at, from: row.last_used_from };
  }

  /**
   * Writes the recorded uses in one transaction. A use stays in memory until it is written (a
   * row read from the database meanwhile does not have it yet), and a newer use of the same
   * credential stays for the next flush. Writing a use does not move the generation, so the
   * cached rows learn it here, or an idle timeout would be measured from the use before.
   */
  async flushUses(store: Store): Promise<void> {
    if (this.recent.size === 0) return;
    const uses = [...this.recent];
    await store.write((tx) => {
      for (const [id, use] of uses) sql.recordUse(tx, id, use.at, use.from);
    });
    for (const [id, use] of uses) {
      if (this.recent.get(id) === use) this.recent.delete(id);
      const cached = this.rows.get(id);
      if (cached && (cached.row.last_used_at ?? -Infinity) < use.at) cached.row = { ...cached.row, last_used_at: use.at };
    }
  }

  /** Scopes are stored as JSON arrays; parsed once per distinct list. */
  private scopes(json: string): readonly string[] {
    let parsed = this.scopeLists.get(json);
    if (!parsed) {
      parsed = Object.freeze(JSON.parse(json) as string[]);
      if (this.scopeLists.size > 10_000) this.scopeLists.clear();
      this.scopeLists.set(json, parsed);
    }
    return parsed;
  }

  /**
   * Allowlists are stored as JSON arrays of CIDRs; parsed once per distinct list. An entry that
   * does not parse (a row edited by hand, or written by a later version with a looser parser)
   * matches no address: left out, a list of nothing else would be empty, and an empty list lets
   * in any address. So an unreadable list refuses everyone; it is logged once, when parsed.
   */
  private allowlist(json: string): Cidr[] {
    if (json === "[]") return EMPTY;
    let parsed = this.allowlists.get(json);
    if (!parsed) {
      parsed = storedAllowlist(json);
      const unreadable = parsed.filter((c) => c === MATCHES_NOTHING).length;
      if (unreadable > 0) {
        this.log?.error("iam: a stored address allowlist has entries that are no CIDR: they match no address, and a list of only such entries refuses every address", {
          allowlist: json.slice(0, 500),
          unreadable,
          entries: parsed.length,
        });
      }
      if (this.allowlists.size > 10_000) this.allowlists.clear();
      this.allowlists.set(json, parsed);
    }
    return parsed;
  }
}

const EMPTY: Cidr[] = [];
/** What an unreadable allowlist entry stands for: no address is of a family other than 4 and 6, so none is in it. */
const MATCHES_NOTHING: Cidr = Object.freeze({ family: 0 as unknown as Cidr["family"], bytes: new Uint8Array(16), prefix: 128 });

/** A stored allowlist's entries, each unreadable one (or the whole list, when it is no JSON array) as MATCHES_NOTHING. */
function storedAllowlist(json: string): Cidr[] {
  let entries: unknown;
  try {
    entries = JSON.parse(json);
  } catch {
    return [MATCHES_NOTHING];
  }
  if (!Array.isArray(entries)) return [MATCHES_NOTHING];
  return entries.map((entry) => (typeof entry === "string" && parseClientCidr(entry)) || MATCHES_NOTHING);
}
/** A credential's row as of one authentication generation, and the principal it makes (built at its first use). */
interface CachedCredential {
  generation: number;
  row: sql.AuthenticationRow;
  principal: Principal | null;
}

/** Credentials in use at once on a busy appliance are far fewer; beyond this the cache starts over. */
const MAX_CACHED_CREDENTIALS = 10_000;

const PRINCIPAL_KIND: Record<sql.CredentialKind, PrincipalKind> = {
  session: "session",
  pat: "pat",
  device: "device",
  service: "service",
  workload: "workload",
  console: "console",
};
