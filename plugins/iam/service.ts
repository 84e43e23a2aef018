/**
 * The identity service: organizations, users and memberships, workspaces, login sessions
 * and brute-force protection, TOTP, tokens and API keys, service activation. Plain inputs,
 * plain results, domain errors; every change is written with its audit event.
 */
import { createHash } from "node:crypto";
import type { Database } from "bun:sqlite";
import { BoundedMap } from "../../src/bounded-map.ts";
import type { AuditActor, AuditEventInput, AuditRequestContext } from "../../src/audit/event.ts";
import { PasswordHasher, passwordProblem } from "../../src/auth/password.ts";
import { actorOf, roleHolder, type Principal } from "../../src/auth/principal.ts";
import { isRole, permissionForScope, roleAllows, type Role } from "../../src/auth/rbac.ts";
import { isScope, scopeService, scopesGrant, scopesWithin } from "../../src/auth/scopes.ts";
import { generateToken, randomBase62, TOKEN_KINDS } from "../../src/auth/tokens.ts";
import { decodeCursor, DEFAULT_PAGE_ROWS, pageOf, type Page, type PageAsked, type PageEnd } from "../../src/http/cursor.ts";
import { newId } from "../../src/ids.ts";
import { base32Encode, newTotpSecret, otpauthUri, verifyTotp } from "../../src/auth/totp.ts";
import { ConflictError, ForbiddenError, InvalidError, NotFoundError, RateLimitedError, TotpRequiredError, UnauthorizedError } from "../../src/errors.ts";
import { cidrContains, cidrWithin, clientKey, parseClientCidr, parseIp, type Cidr } from "../../src/net/ip.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { Tx } from "../../src/store/store.ts";
import { organizationDeletionsOf, workspaceDeletionsOf } from "../../src/workspace-deletions.ts";
import type { IamIdentity } from "./identity.ts";
import { defaultTokenDays, type IamSettings } from "./settings.ts";
import * as sql from "./store.ts";

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

const DAY_MS = 86_400_000;
const INVITATION_DAYS = 7;
const MAX_INVITATION_DAYS = 30;
/** How long a device login is kept once expired: a CLI still polling hears expired_token, not an unknown code. */
const DEVICE_GRANT_KEPT_MS = 60 * 60 * 1000;
// No control or format character either (an escape sequence, a bidi override): an address is
// shown in tables, prompts and logs, where one could forge a row or rewrite the screen.
const EMAIL = /^[^\s@\p{Cc}\p{Cf}]{1,64}@[^\s@\p{Cc}\p{Cf}]{1,255}$/u;
/**
 * A person's name: anything printable, spaces included; no control character (a line break,
 * tab or escape to forge a row or rewrite the screen with), no line or paragraph separator
 * (U+2028, U+2029: line breaks to a log viewer), and no bidirectional control (an override,
 * embedding, isolate or mark: it reorders what follows it on the line). Other format characters
 * stay: a Persian name needs the zero-width non-joiner, an emoji sequence (👨‍💻) the joiner
 * (found in review: every format character was refused, and the separators were not).
 */
const PERSON_NAME = /^[^\p{Cc}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]*$/u;
const PERSON_NAME_REFUSES = "no control character (line break, tab, escape), line or paragraph separator (U+2028, U+2029) or bidirectional control (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)";
const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,62}$/u;


const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"; // 31: no 0/o, 1/l/i look-alikes
function recoveryCode(): string {
  const chars = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length]).join("");
  return chars.match(/.{4}/g)!.join("-");
}
/**
 * A login session: what it makes stands on its own. What any other credential makes (a device
 * token from `citadel login` included: a stolen one must not mint tokens that outlive it) is
 * revoked with it; logging out ends only the credential itself (`logout`).
 */
const madeByLogin = (p: Principal) => p.kind === "session";

/** Where a page of a list in the order things were made ends (credentials newest first, invitations oldest first): the time, then the row. */
const creationEnd = (r: { created_at: number; row: number }): PageEnd<number> => ({ value: r.created_at, row: r.row });

function memberView(m: { user_id: string; email: string; name: string | null; role: Role; created_at: number; mfa: number }) {
  return { user: m.user_id, email: m.email, name: m.name, role: m.role, mfa: m.mfa === 1, since: new Date(m.created_at).toISOString() };
}

function invitationView(i: sql.InvitationRow) {
  return {
    id: i.id,
    organization: i.organization_id,
    email: i.email,
    role: i.role,
    invited_by: i.invited_by,
    created_at: new Date(i.created_at).toISOString(),
    expires_at: new Date(i.expires_at).toISOString(),
  };
}

/**
 * A child credential's allowlist: the one it asks for, when every range of it lies inside the
 * maker's (it can only narrow); the maker's when it asks for none. Anything wider is refused,
 * not silently replaced by the maker's (which would let it be used from where it was not meant to).
 */
function narrowedAllowlist(parentJson: string, wantedJson: string): string {
  const parent = (JSON.parse(parentJson) as string[]).map((c) => parseClientCidr(c)!);
  const wanted = JSON.parse(wantedJson) as string[];
  if (parent.length === 0) return wantedJson;
  if (wanted.length === 0) return parentJson;
  const outside = wanted.find((c) => !parent.some((p) => cidrWithin(parseClientCidr(c)!, p)));
  if (outside) throw new InvalidError(`${outside} is not within the address ranges of the credential that makes this one (${(JSON.parse(parentJson) as string[]).join(", ")})`, "ip_allowlist");
  return wantedJson;
}

/**
 * In the write that makes a credential: its maker, authenticated before the write, must still be
 * live. A revocation that came first meanwhile would otherwise miss what the maker was making,
 * and revoking a token must take everything it made along.
 */
function requireLiveMaker(tx: Tx, makerId: string, now: number): void {
  const maker = sql.credentialById(tx, makerId);
  if (!maker || maker.revoked_at !== null || (maker.expires_at !== null && maker.expires_at <= now)) {
    throw new UnauthorizedError("The credential making this one was revoked or has expired.");
  }
}

/**
 * In the write that changes an organization or what it holds: the organization, which the guard
 * found before the handler ran, must still be there. A deletion that came first meanwhile keeps
 * the memberships (so the caller's role still reads as it was): without this check, a workspace,
 * an API key, a member or a setting landed in the deleted organization, audited as a success
 * after its deletion (found in review).
 */
function requireLiveOrganization(tx: Tx, orgId: string): void {
  if (!sql.organizationById(tx, orgId)) throw new NotFoundError("No such organization: it was deleted meanwhile.");
}

/** In the write that changes a workspace: the workspace as it is now, refused when it (or its organization) was deleted meanwhile. */
function liveWorkspace(tx: Tx, id: string): sql.WorkspaceRow {
  const ws = sql.workspaceById(tx, id);
  if (!ws) throw new NotFoundError("No such workspace: it was deleted meanwhile.");
  return ws;
}

/**
 * An API key's maker must hold a role in the organization that allows making it, with each of
 * its scopes: checked when asked, and again in the write that makes it, where a removal or a
 * demotion that came first meanwhile is seen (found in review: a key made while its maker was
 * being removed escaped the removal's revocation, and worked again once they rejoined).
 */
function requireRoleForKey(db: Tx, makerId: string | null, orgId: string, scopes: readonly string[]): void {
  const role = makerId ? sql.roleOf(db, orgId, makerId) : null;
  if (!role) throw new ForbiddenError("only a member of the organization (or a token one made) can make its API keys");
  if (!roleAllows(role, "manage_members")) throw new ForbiddenError("your role no longer allows managing members");
  const beyondRole = scopes.find((scope) => !roleAllows(role, permissionForScope(scope)));
  if (beyondRole) throw new ForbiddenError(`your role does not allow making a key with ${beyondRole}`);
}

/** The organization's API key `id`, unrevoked; a revoked one is no such key, as a revoked token is no such token. */
function requireLiveApiKey(db: Tx, orgId: string, id: string): void {
  const c = sql.credentialById(db, id);
  if (!c || c.kind !== "service" || c.organization_id !== orgId || c.revoked_at !== null) throw new NotFoundError("No such API key.");
}

/** The role that bounds the caller in the organization: the user's, or a service key's maker's. */
function actingRole(db: Tx, p: Principal, orgId: string): Role | null {
  const user = roleHolder(p);
  return user ? sql.roleOf(db, orgId, user) : null;
}

/**
 * The organization and workspace a token of `userId` is restricted to: a workspace's token is
 * its organization's too (the organization's rules, MFA required and address allowlist, apply
 * to it on every route, also those that name no organization), and the user must be a member
 * of that organization.
 */
function tokenRestriction(db: Tx, userId: string, wanted: { organization?: string; workspace?: string }): { organization?: string; workspace?: string } {
  if (wanted.workspace) {
    const ws = sql.workspaceById(db, wanted.workspace);
    if (!ws || !sql.roleOf(db, ws.organization_id, userId)) throw new InvalidError("no such workspace among yours", "workspace");
    if (wanted.organization && wanted.organization !== ws.organization_id) throw new InvalidError("that workspace is not in that organization", "workspace");
    return { organization: ws.organization_id, workspace: ws.id };
  }
  if (wanted.organization && !sql.roleOf(db, wanted.organization, userId)) throw new InvalidError("you are not a member of that organization", "organization");
  return wanted;
}

/**
 * Joining an organization is the user's own decision: made logged in (a session, or the CLI's
 * device login), not by a token made for a program, nor by one bound to an organization or a
 * workspace, which must not reach into others.
 */
function requireOwnLogin(p: Principal, what: string): void {
  if ((p.kind !== "session" && p.kind !== "device") || p.organizationId !== null || p.workspaceId !== null) {
    throw new ForbiddenError(`log in (citadel login, or a session) to ${what}: a token made for a program, or bound to an organization or workspace, cannot`);
  }
}

/** An organization as a member sees it (GET /v1/iam/orgs): its settings null from an address its allowlist refuses. */
type OrganizationSeen = Omit<ReturnType<IamService["organizationView"]>, "require_mfa" | "ip_allowlist" | "services"> & {
  require_mfa: boolean | null;
  ip_allowlist: string[] | null;
  services: string[] | null;
  role: Role | null;
};

/** A workspace as the list shows it (GET /v1/iam/orgs/{org}/workspaces): its allowlist and members null from an address its allowlist refuses. */
type WorkspaceSeen = Omit<ReturnType<IamService["workspaceView"]>, "ip_allowlist" | "members"> & {
  ip_allowlist: string[] | null;
  members: ReturnType<IamService["workspaceView"]>["members"] | null;
};

/** An allowlist admits the address (empty: any; an address unknown only to an empty one). */
function admits(allowlist: readonly Cidr[], source: string | null): boolean {
  if (allowlist.length === 0) return true;
  const ip = source ? parseIp(source) : null;
  return ip !== null && allowlist.some((c) => cidrContains(c, ip));
}

/** A scope the route's own (checked by the guard) does not cover, needed for part of what the request asks. */
function requireScope(p: Principal, scope: string, what: string): void {
  if (p.scopes !== "all" && !scopesGrant(p.scopes, scope)) throw new ForbiddenError(`the token lacks the scope ${scope}, which it takes to ${what}`);
}

/** What only the user, logged in, does: not a token made for a program (or stolen from one). */
function requireSession(p: Principal, what: string): void {
  if (p.kind !== "session") throw new ForbiddenError(`log in (a session, not a token) to ${what}`);
}

const hashCode = (code: string) => createHash("sha256").update(code.replace(/[\s-]/g, "").toLowerCase()).digest();
/** True when the user's TOTP is still off, with the enrolment `pending` (its encrypted secret) waiting to be confirmed. */
function isStillPending(user: sql.UserRow | null, pending: Uint8Array): boolean {
  return user !== null && user.totp_enabled_at === null && user.totp_pending !== null && Buffer.from(user.totp_pending).equals(pending);
}

/** The keyring owner of a user's TOTP secret (destroyed when the user is erased). */
export const userKeyOwner = (userId: string) => `iam-user/${userId}`;

/** A login failure, said the same way whatever went wrong (no user enumeration). */
export class LoginFailedError extends UnauthorizedError {}

/** A wrong password and an unknown email get the same answer. */
const WRONG_PASSWORD = "The email or password is wrong.";
/**
 * Only a right password reaches the second factor, and a login without its code says so
 * already (totp_required): naming the code as what is wrong tells nothing more, and guesses at
 * it are counted per account.
 */
const WRONG_TOTP = "The TOTP code is wrong, or was used before.";
const WRONG_RECOVERY_CODE = "The recovery code is wrong, or was used before.";


/** What a failed login's event keeps of an "email" that names no account and is none. */
const NOT_AN_EMAIL = "[not an email address]";
const LOOKS_LIKE_EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * The email a login typed, for its audit event: the account's personal data, under its subject
 * key (erasing the account shreds it too; deleted accounts waiting out their grace period
 * included). When it names no account it is kept only if it looks like an email address (one @,
 * no whitespace, a dot in the domain, at most 254 characters): people type their password into
 * the username field, and the log must not keep it (CloudTrail hides unknown user names for this).
 */
function typedEmail(db: Tx, typed: string, account?: string): { subject: string | undefined; personal: { email: string } } {
  const subject = account ?? sql.subjectOfEmail(db, typed.trim());
  if (subject !== undefined) return { subject, personal: { email: typed } };
  const trimmed = typed.trim();
  return { subject, personal: { email: trimmed.length <= 254 && LOOKS_LIKE_EMAIL.test(trimmed) ? typed : NOT_AN_EMAIL } };
}

/**
 * Failed logins counted per account and address. Each kind of key has its own prefix: an email
 * of blank space made the pair key (`|address`) the address's own, so that each failure counted
 * twice and the pair's lower thresholds held the whole address (found in review). The email is
 * its key: each way of typing one address (case, composed accents) is the same account's count.
 */
const loginPairKey = (email: string, address: string) => `login-pair|${sql.emailKey(email)}|${address}`;

interface Failures {
  count: number;
  /** No attempt is looked at before this time. */
  waitUntil: number;
  /** When the count was last updated (it leaks from then on, for a count that leaks). */
  last: number;
}

/** Who ran `citadel recover` on the host: the accounts by number (uid, sudo's uid), and with the sudo user's name. */
export interface Invoker {
  uids: string;
  named: string;
}
const UNKNOWN_INVOKER: Invoker = { uids: "an unknown user", named: "an unknown user" };

export class IamService {
  readonly hasher: PasswordHasher;
  /** Failed attempts by account, address and pair; bounded, keeping those that failed lately. */
  private readonly failures = new BoundedMap<string, Failures>(200_000);

  constructor(
    private readonly k: Kernel<IamSettings>,
    readonly identity: IamIdentity,
    concurrency: number,
  ) {
    const s = k.settings;
    this.hasher = new PasswordHasher({ memoryKiB: s.argon2_memory_kib, iterations: s.argon2_iterations, parallelism: s.argon2_parallelism }, concurrency);
  }

  private get db() {
    return this.k.store.db;
  }

  private now() {
    return this.k.clock.now();
  }

  private audit(tx: Tx, event: AuditEventInput): void {
    this.k.audit.record(tx, event);
  }

  // --- users ----------------------------------------------------------------------------

  /** Creates a user; without a password, makes a one-time one and returns it (shown once). */
  async createUser(input: { email: string; name?: string; password?: string; operator?: boolean }, actor: AuditActor, request?: AuditRequestContext) {
    // Kept as typed, but composed (NFC); compared by its key, so one mailbox is one account (store.ts emailKey).
    const email = input.email.trim().normalize("NFC");
    if (!EMAIL.test(email)) throw new InvalidError("not an email address", "email");
    if (input.name !== undefined && !PERSON_NAME.test(input.name)) throw new InvalidError(PERSON_NAME_REFUSES, "name");
    if (sql.userByEmail(this.db, email)) throw new ConflictError("a user with this email exists already");
    const password = input.password ?? randomBase62(20);
    if (input.password !== undefined) this.checkPassword(input.password, email);
    const hash = await this.hasher.hash(password);
    const id = newId("usr");
    await this.k.store.write((tx) => {
      if (sql.userByEmail(tx, email)) throw new ConflictError("a user with this email exists already");
      // A password made up for the user is a one-time password: it must be changed at first login.
      sql.insertUser(tx, { id, email, name: input.name ?? null, password_hash: hash, operator: input.operator ? 1 : 0, must_change_password: input.password === undefined ? 1 : 0, created_at: this.now() });
      // The event's personal data is the new user's (their email, erased with them); the
      // creator's address and user agent are not put under that user's key.
      this.audit(tx, { action: "iam.user.create", actor, outcome: "success", resource: { type: "user", id }, request: request ? { id: request.id } : request, subject: id, personal: { email } });
    });
    return { user: this.userView(sql.userById(this.db, id)!), password: input.password === undefined ? password : undefined };
  }

  async deleteUser(userId: string, caller: Caller) {
    await this.k.store.write((tx) => {
      if (!sql.userById(tx, userId)) throw new NotFoundError("No such user.");
      // Nobody could then seal, rotate keys, read the audit log or make users: refused, as erasure refuses it.
      if (sql.isLastOperator(tx, userId)) throw new ConflictError("The user is the last operator: make another operator first.");
      for (const orgId of sql.ownedOrganizations(tx, userId)) {
        if (sql.isLastOwner(tx, orgId, userId)) throw new ConflictError(`the user is the last owner of organization ${orgId}: transfer ownership first`);
      }
      sql.softDeleteUser(tx, userId, this.now());
      sql.revokeUserCredentials(tx, userId, sql.EVERY_USER_CREDENTIAL, this.now());
      this.audit(tx, { action: "iam.user.delete", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: userId }, request: caller.request });
    });
  }

  userView(u: sql.UserRow) {
    return {
      id: u.id,
      email: u.email,
      name: u.name,
      operator: u.operator === 1,
      mfa: u.totp_enabled_at !== null,
      must_change_password: u.must_change_password === 1,
      created_at: new Date(u.created_at).toISOString(),
    };
  }

  private checkPassword(password: string, email: string): void {
    const problem = passwordProblem(password, email, { minLength: this.k.settings.password_min_length });
    if (problem) throw new InvalidError(`the password ${problem}`, "password");
  }

  /** Sets a new password, given the current one; the user's other logins end. */
  async changePassword(caller: Caller, current: string, next: string) {
    const user = this.requireUser(caller.principal);
    await this.requireCurrentPassword(caller, user, current, "iam.password.change");
    // The current password has just been verified: the same one again would change nothing (but
    // end the other logins), and a one-time password, which an operator sent, would count as
    // replaced while it stays the password (found in review).
    if (next.normalize("NFC") === current.normalize("NFC")) throw new InvalidError("the new password must differ from the current one", "new_password");
    this.checkPassword(next, user.email);
    const hash = await this.hasher.hash(next);
    let refused: { reason: string; error: Error } | null = null;
    const refuse = (reason: string, error: Error): never => {
      refused = { reason, error };
      throw error;
    };
    await this.k.store.write((tx) => {
      // Checked outside the transaction: the password may have been set anew meanwhile (and
      // this caller's login ended with it), by the owner locking out whoever else knew it.
      const stored = sql.userById(tx, user.id);
      if (!stored) return refuse("the account was removed meanwhile", new NotFoundError("This account was removed."));
      if (stored.password_version !== user.password_version) refuse("the password was set anew meanwhile", new ConflictError("The password was changed meanwhile: log in with the new one."));
      if (sql.credentialById(tx, caller.principal.tokenId)?.revoked_at !== null) refuse("the caller's login ended meanwhile", new UnauthorizedError("This login has ended: log in again."));
      sql.setPassword(tx, user.id, hash);
      // Every other login ends, a browser's session or a CLI's (device flow), with what it made,
      // and a CLI login approved but not yet picked up is denied: whoever else knew the old
      // password loses the logins it opened. The caller's own credential and those it was made
      // from stay. Personal access tokens and API keys stay too — made on purpose, possibly by
      // that someone: they are listed for review (GET /v1/iam/me/tokens).
      const callers = sql.lineageOf(tx, caller.principal.tokenId);
      for (const c of sql.credentialsOfUser(tx, user.id, ["session", "device"])) if (!callers.has(c.id)) sql.endLogin(tx, c.id, this.now());
      sql.denyApprovedDeviceGrants(tx, user.id);
      this.audit(tx, { action: "iam.password.change", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: user.id }, request: caller.request });
    }).catch(async (error) => {
      // A refusal rolled the transaction back, its audit event with it: recorded on its own.
      const why = refused as { reason: string; error: Error } | null;
      if (why === null) throw error;
      await this.k.store.write((tx) => this.audit(tx, { action: "iam.password.change", actor: actorOf(caller.principal), outcome: "failure", reason: why.reason, resource: { type: "user", id: user.id }, request: caller.request }));
      throw why.error;
    });
  }

  /**
   * The current password, asked again for a change only the account's owner may make (the
   * password, a second factor), is checked like a login: whoever holds a stolen session or
   * token must not get to guess it at the general request rate. Failures are counted before the
   * (slow, asynchronous) check, so that guesses sent at once are counted too; each one is
   * audited as a failed `action`. A right password clears the count.
   */
  private async requireCurrentPassword(caller: Caller, user: sql.UserRow, current: string, action: string): Promise<void> {
    const s = this.k.settings;
    // A login session counts on its own (a stolen token guessing cannot lock the owner's
    // sessions out of changing it; sessions cannot be made without the password); every other
    // credential of the user counts under one key (tokens can be minted, counts cannot). One
    // count for every change that asks: each would otherwise give a guesser a fresh one.
    const key = `password-change|${user.id}|${caller.principal.kind === "session" ? caller.principal.tokenId : "tokens"}`;
    const seconds = this.waitSeconds(key);
    if (seconds > 0) throw new RateLimitedError(`Too many wrong current passwords: try again in ${seconds} s.`, seconds);
    this.countFailure(key, s.login_slowdown_after, s.login_lock_after, s.login_lock_minutes);
    if (!(await this.hasher.verify(user.password_hash, current))) {
      await this.k.store.write((tx) =>
        this.audit(tx, { action, actor: actorOf(caller.principal), outcome: "failure", reason: "wrong current password", resource: { type: "user", id: user.id }, request: caller.request }),
      );
      throw new InvalidError("the current password is wrong", "current_password");
    }
    this.failures.delete(key);
  }

  private requireUser(p: Principal): sql.UserRow {
    const user = p.userId ? sql.userById(this.db, p.userId) : null;
    if (!user) throw new ForbiddenError("this needs a user's credential, not an API key");
    return user;
  }

  // --- login ----------------------------------------------------------------------------

  /**
   * Password (and TOTP) login, answering with a session token. Brute force is slowed per
   * account and address, and per address alone: each failure beyond a few doubles the wait,
   * and enough of them lock the pair out for a while. The account itself is never locked for
   * everyone, so an attacker cannot lock its owner out from elsewhere.
   *
   * One attempt per account and address at a time: failures are counted once the (slow,
   * asynchronous) password check is done, so guesses sent at once would all be checked before
   * the first one counted, and a burst would get as many tries as it sends.
   */
  async login(input: { email: string; password: string; totp?: string; recovery_code?: string }, request: AuditRequestContext) {
    const pairKey = loginPairKey(input.email, clientKey(request.source ?? "unknown"));
    if (this.loginsInFlight.has(pairKey)) {
      throw new RateLimitedError("A login for this account from your address is being checked already: try again in a moment.", 1);
    }
    this.loginsInFlight.add(pairKey);
    try {
      return await this.checkedLogin(input, request);
    } finally {
      this.loginsInFlight.delete(pairKey);
    }
  }

  private readonly loginsInFlight = new Set<string>();

  private async checkedLogin(input: { email: string; password: string; totp?: string; recovery_code?: string }, request: AuditRequestContext) {
    const s = this.k.settings;
    const address = clientKey(request.source ?? "unknown"); // an IPv6 client counts as its /64
    const pairKey = loginPairKey(input.email, address);
    const addressKey = `login-address|${address}`;
    const now = this.now();
    for (const key of [pairKey, addressKey]) {
      const seconds = this.waitSeconds(key);
      if (seconds > 0) {
        // The email is the account's personal data: encrypted under its subject key, so that
        // erasing the account shreds it too.
        await this.k.store.write((tx) =>
          this.audit(tx, { action: "iam.login", actor: { kind: "anonymous" }, outcome: "failure", reason: "throttled after repeated failures", request, ...typedEmail(tx, input.email) }),
        );
        throw new RateLimitedError(`Too many failed logins: try again in ${seconds} s.`, seconds);
      }
    }
    const user = sql.userByEmail(this.db, input.email.trim());
    const passwordOk = user ? await this.hasher.verify(user.password_hash, input.password) : await this.hasher.verifyNothing(input.password);
    // A hash made before the parameters were raised (rehashed only at its next login) is quicker
    // to check than the dummy an unknown email is checked against: a wrong password for it costs
    // the dummy's check too, or the time taken would tell which accounts exist (found in review).
    if (user && !passwordOk && this.hasher.needsRehash(user.password_hash)) await this.hasher.verifyNothing(input.password);
    const fail = async (reason: string, message = WRONG_PASSWORD): Promise<never> => {
      this.countFailure(pairKey, s.login_slowdown_after, s.login_lock_after, s.login_lock_minutes);
      // Leaking: one address is many people's (a NAT, a proxy not in trusted_proxies), and the
      // typos of a long uptime must not add up to throttling all of them. One failure leaks away
      // each fifth of the lock's length (three minutes by default): a guesser who waits out each
      // slowdown is held to about that rate, one who does not is locked.
      this.countFailure(addressKey, s.login_slowdown_after * 5, s.login_lock_after * 5, s.login_lock_minutes, (s.login_lock_minutes * 60_000) / 5);
      await this.k.store.write((tx) =>
        this.audit(tx, { action: "iam.login", actor: user ? { kind: "user", user: user.id } : { kind: "anonymous" }, outcome: "failure", reason, request, ...typedEmail(tx, input.email, user?.id) }),
      );
      throw new LoginFailedError(message);
    };
    if (!user || !passwordOk) return fail(user ? "wrong password" : "unknown email");

    let usedStep: number | null = null;
    let usedRecovery: Buffer | null = null;
    // Second-factor guesses are counted per account, from whatever address: only someone who
    // has the password gets this far, so a stranger cannot lock the owner out with it, and
    // guesses spread over many addresses (a /48 holds 65,536 /64s) still meet a limit.
    const secondFactorKey = `2fa|${user.id}`;
    const failSecondFactor = (reason: string, message = WRONG_TOTP): Promise<never> => {
      this.countFailure(secondFactorKey, s.login_slowdown_after, s.login_lock_after, s.login_lock_minutes);
      return fail(reason, message);
    };
    if (user.totp_enabled_at !== null) {
      const seconds = this.waitSeconds(secondFactorKey);
      if (seconds > 0) {
        await this.k.store.write((tx) =>
          this.audit(tx, { action: "iam.login", actor: { kind: "user", user: user.id }, outcome: "failure", reason: "second factor throttled after repeated wrong codes", request, subject: user.id, personal: { email: input.email } }),
        );
        throw new RateLimitedError(`Too many wrong codes for this account: try again in ${seconds} s.`, seconds);
      }
      if (input.recovery_code) usedRecovery = hashCode(input.recovery_code);
      else if (input.totp) {
        const secret = this.k.seal.keyring().decrypt(userKeyOwner(user.id), `users/${user.id}/totp`, user.totp_secret!);
        usedStep = verifyTotp(secret, input.totp, now);
        if (usedStep === null) return failSecondFactor("wrong TOTP code");
        if (user.totp_last_step !== null && usedStep <= user.totp_last_step) return failSecondFactor("TOTP code used before (replay)");
      } else {
        // Not counted as a guess (a client learns this way that a code is needed), but audited:
        // the password was right, which the account's owner should be able to see.
        await this.k.store.write((tx) =>
          this.audit(tx, { action: "iam.login", actor: { kind: "user", user: user.id }, outcome: "failure", reason: "second factor missing", request, subject: user.id, personal: { email: input.email } }),
        );
        throw new TotpRequiredError("This account uses two-factor authentication: send `totp` (or a `recovery_code`).");
      }
    }

    const session = generateToken(TOKEN_KINDS.session);
    // Replaced when made with weaker parameters, or of the password as typed, before passwords were composed (NFC).
    const rehash = this.hasher.needsRehash(user.password_hash) || passwordOk === "as-typed" ? await this.hasher.hash(input.password) : null;
    let refused: string | null = null;
    const refuse = (reason: string): never => {
      refused = reason;
      throw new LoginFailedError(WRONG_PASSWORD); // caught below, which answers as the reason says
    };
    await this.k.store.write((tx) => {
      // The password was checked outside the transaction (argon2 takes tens of ms): if it was set
      // anew meanwhile, what was checked is the old one, which must not open a session (nor be
      // written back over the new one by the rehash below); a rehash by another login is not a
      // change (password_version). Nor may a login skip a second factor enabled meanwhile.
      const stored = sql.userById(tx, user.id);
      if (!stored) return refuse("the account was removed while the password was being checked");
      if (stored.password_version !== user.password_version) refuse("the password changed while it was being checked");
      if (stored.totp_enabled_at !== user.totp_enabled_at) refuse("two-factor authentication changed while the password was being checked");
      if (usedRecovery && !sql.useRecoveryCode(tx, user.id, usedRecovery, now)) refuse("wrong recovery code");
      // Conditional, in the transaction: two logins racing with one code cannot both pass.
      if (usedStep !== null && !sql.advanceTotpStep(tx, user.id, usedStep)) refuse("TOTP code used before (replay)");
      if (rehash) sql.rehashPassword(tx, user.id, rehash);
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: session.prefix,
          kind: "session",
          hash: session.hash,
          name: "login",
          user_id: user.id,
          created_at: now,
          expires_at: now + s.session_ttl_hours * 3_600_000,
          idle_timeout_ms: s.session_idle_minutes * 60_000,
        }),
      );
      this.audit(tx, {
        action: "iam.login",
        actor: { kind: "user", user: user.id, token: session.prefix },
        outcome: "success",
        reason: usedRecovery ? "with a recovery code" : usedStep !== null ? "with TOTP" : "password",
        request,
      });
    }).catch(async (error) => {
      if (refused === "wrong recovery code") return failSecondFactor(refused, WRONG_RECOVERY_CODE);
      if (refused === "TOTP code used before (replay)") return failSecondFactor(refused);
      if (refused !== null) return fail(refused);
      throw error;
    });
    this.failures.delete(pairKey);
    this.failures.delete(secondFactorKey);
    return { token: session.token, token_id: session.prefix, expires_at: new Date(now + s.session_ttl_hours * 3_600_000).toISOString(), user: this.userView(user) };
  }

  /** How long failures counted under `key` make the next attempt wait, in whole seconds (0: none). */
  private waitSeconds(key: string): number {
    const f = this.failures.get(key);
    const now = this.elapsed();
    return f && f.waitUntil > now ? Math.ceil((f.waitUntil - now) / 1000) : 0;
  }

  /**
   * The clock of the failed-login counts: one that never goes back, so that a wall clock's
   * step (NTP, a VM resumed) neither stretches a wait nor ends a lock early, and the leak
   * neither forgives nor adds (found in review, twice).
   */
  private elapsed(): number {
    return this.k.clock.elapsed?.() ?? this.now();
  }

  /**
   * With `leakMs`, the count leaks: one failure is forgiven every `leakMs` since the last was
   * counted (a leaky bucket). Failures that come more seldom than that never add up — a busy
   * NAT's typos (found in review: a lifetime count, then an all-or-nothing quiet spell, held an
   * office's users out) — while a guesser's faster ones do, to the slowdown and then the lock,
   * which holds once reached: it outlasts what leaks meanwhile. Without, failures add up until
   * cleared.
   */
  private countFailure(key: string, slowAfter: number, lockAfter: number, lockMinutes: number, leakMs = Infinity): void {
    const now = this.elapsed();
    const f = this.failures.get(key) ?? { count: 0, waitUntil: 0, last: now };
    f.count = Math.max(0, f.count - (now - f.last) / leakMs);
    f.count++;
    f.last = now;
    if (f.count >= lockAfter) f.waitUntil = now + lockMinutes * 60_000;
    else if (f.count >= slowAfter) f.waitUntil = now + Math.min(2 ** (f.count - slowAfter) * 1000, lockMinutes * 60_000);
    // Bounded memory (a BoundedMap): what failed longest ago goes first, never every count at
    // once, which would let a spray of addresses reset them.
    this.failures.set(key, f);
  }

  async logout(caller: Caller, everywhere: boolean) {
    // Like listing sessions: a token (a leaked one, say) may end itself, not its owner's logins.
    if (everywhere) requireSession(caller.principal, "log out everywhere");
    // Any credential ends itself, an API key and its workload tokens too, which have no user:
    // only ending a user's other logins needs one.
    const user = everywhere ? this.requireUser(caller.principal) : null;
    await this.k.store.write((tx) => {
      if (user) {
        // Everywhere is every login: sessions and CLI logins (device flow), and those approved
        // but not yet picked up, as a password change ends them (found in review: CLI logins
        // stayed). Personal access tokens and API keys stay: made on purpose, revoked by name.
        sql.endUserLogins(tx, user.id, this.now());
        sql.denyApprovedDeviceGrants(tx, user.id);
      }
      // Logging out ends this credential only: what it made (a CI token made from `citadel
      // login`) stays. An explicit revoke of it takes its children along.
      else sql.revokeOnly(tx, caller.principal.tokenId, this.now());
      this.audit(tx, { action: "iam.logout", actor: actorOf(caller.principal), outcome: "success", reason: everywhere ? "every session and CLI login" : "this session", request: caller.request });
    });
  }

  /**
   * A page of the user's login sessions, newest first, with where they were last used: for a
   * login session to see, not a token (a leaked one would learn where its owner is). Those that
   * no longer let anyone in are passed over, read a page at a time until a page is full.
   */
  sessions(p: Principal, asked: PageAsked) {
    requireSession(p, "list or end your sessions");
    const user = this.requireUser(p);
    const now = this.now();
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const live: Array<sql.CredentialRow & { row: number }> = [];
    let read = decodeCursor(asked.cursor, `sessions:${user.id}`, "number");
    for (let more = true; more && live.length <= limit; ) {
      const rows = sql.credentialsPageOf(this.db, user.id, ["session"], read, limit + 1);
      more = rows.length > limit;
      if (rows.length > 0) read = creationEnd(rows.at(-1)!);
      live.push(...rows.filter((c) => this.stillLetsIn(c, now)));
    }
    return pageOf(live, limit, `sessions:${user.id}`, creationEnd, (c) => ({ ...this.credentialView(c), current: c.id === p.tokenId }));
  }

  /** A session that would still let someone in: not revoked, nor past its lifetime or idle timeout. */
  private stillLetsIn(c: sql.CredentialRow, now: number): boolean {
    return c.revoked_at === null && (c.expires_at === null || c.expires_at > now) && !this.identity.idle(c.id, c, now);
  }

  async revokeSession(caller: Caller, id: string) {
    requireSession(caller.principal, "list or end your sessions");
    const user = this.requireUser(caller.principal);
    const c = sql.credentialById(this.db, id);
    // An ended session is no such session, as a revoked token is no such token: ending it again
    // would answer 200 and record a second success. Ended is what the list leaves out: revoked,
    // or timed out (found in review: one past its lifetime or idle timeout answered 200).
    if (!c || c.user_id !== user.id || c.kind !== "session" || !this.stillLetsIn(c, this.now())) throw new NotFoundError("No such session.");
    await this.k.store.write((tx) => {
      const current = sql.credentialById(tx, id);
      if (!current || !this.stillLetsIn(current, this.now())) throw new NotFoundError("No such session."); // ended meanwhile
      sql.revokeCredential(tx, id, this.now());
      this.audit(tx, { action: "iam.session.revoke", actor: actorOf(caller.principal), outcome: "success", resource: { type: "session", id }, request: caller.request });
    });
  }

  // --- TOTP -------------------------------------------------------------------------------

  /** Starts TOTP enrolment: a new secret (kept encrypted, pending) and its otpauth URI. */
  async startTotp(caller: Caller) {
    requireSession(caller.principal, "change two-factor authentication"); // a leaked token must not lock the person out
    const user = this.requireUser(caller.principal);
    if (user.totp_enabled_at !== null) throw new ConflictError("two-factor authentication is enabled already; disable it first");
    const secret = newTotpSecret();
    await this.k.store.write((tx) => {
      sql.setTotpPending(tx, user.id, this.k.seal.keyring().encrypt(tx, userKeyOwner(user.id), `users/${user.id}/totp_pending`, secret));
      this.audit(tx, { action: "iam.mfa.start", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: user.id }, request: caller.request });
    });
    return { secret: base32Encode(secret), otpauth_uri: otpauthUri("Citadel", user.email, secret) };
  }

  /**
   * Confirms enrolment with a first code and the current password; enables TOTP and returns ten
   * recovery codes, once. The password: a stolen session would otherwise enrol a factor of its
   * own, and its owner's next login would ask for a code they do not have (found in review).
   */
  async confirmTotp(caller: Caller, input: { code: string; current_password: string }) {
    requireSession(caller.principal, "change two-factor authentication"); // a leaked token must not lock the person out
    const user = this.requireUser(caller.principal);
    const pending = user.totp_pending;
    if (!pending) throw new ConflictError("start the enrolment first (POST /v1/iam/me/mfa/totp)");
    await this.requireCurrentPassword(caller, user, input.current_password, "iam.mfa.enable");
    const secret = this.k.seal.keyring().decrypt(userKeyOwner(user.id), `users/${user.id}/totp_pending`, pending);
    const step = verifyTotp(secret, input.code, this.now());
    if (step === null) throw new InvalidError("the code does not match: check the device's clock", "code");
    // 16 characters of a 32-letter alphabet: 80 bits each, beyond offline guessing even as a plain hash.
    const codes = Array.from({ length: 10 }, () => recoveryCode());
    await this.k.store.write((tx) => {
      // The password was checked outside the transaction: a password change or a logout
      // everywhere that ended this session meanwhile (the owner locking a thief out) must win.
      if (sql.credentialById(tx, caller.principal.tokenId)?.revoked_at !== null) throw new UnauthorizedError("This login has ended: log in again.");
      // Two confirmations sent at once both got this far: only the first enables, or the second
      // silently replaced the recovery codes the first had shown (found in review). Nor is a
      // secret enabled that an enrolment started anew meanwhile has replaced.
      if (!isStillPending(sql.userById(tx, user.id), pending)) throw new ConflictError("The enrolment was confirmed, or started anew, meanwhile: nothing changed.");
      // The keyring of the write's moment: a rekey since the decryption above replaced (and wiped) that one.
      sql.enableTotp(tx, user.id, this.k.seal.keyring().encrypt(tx, userKeyOwner(user.id), `users/${user.id}/totp`, secret), step, this.now());
      sql.replaceRecoveryCodes(tx, user.id, codes.map(hashCode));
      this.audit(tx, { action: "iam.mfa.enable", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: user.id }, request: caller.request });
    });
    return { recovery_codes: codes };
  }

  /**
   * Turns TOTP off with a current code or an unused recovery code: the way back for someone
   * who lost their authenticator, who can then enrol a new one.
   */
  async disableTotp(caller: Caller, proof: { code?: string; recovery_code?: string }) {
    requireSession(caller.principal, "change two-factor authentication"); // a leaked token must not lock the person out
    const user = this.requireUser(caller.principal);
    if (user.totp_enabled_at === null) throw new ConflictError("two-factor authentication is not enabled");
    if ((proof.code === undefined) === (proof.recovery_code === undefined)) throw new InvalidError("send a current TOTP `code` or an unused `recovery_code`: one of them", "code");
    // Wrong codes, TOTP or recovery, count against the account as at login, under the same key:
    // a stolen session must not guess its way to turning the factor off (and then enrolling its own).
    const s = this.k.settings;
    const secondFactorKey = `2fa|${user.id}`;
    const wait = this.waitSeconds(secondFactorKey);
    if (wait > 0) throw new RateLimitedError(`Too many wrong codes for this account: try again in ${wait} s.`, wait);
    const recovery = proof.recovery_code !== undefined ? hashCode(proof.recovery_code) : null;
    const wrongCode = recovery ? null : this.wrongTotp(user, proof.code!);
    if (wrongCode === null && (await this.k.store.write((tx) => this.turnTotpOff(tx, caller, user.id, recovery)))) return;
    this.countFailure(secondFactorKey, s.login_slowdown_after, s.login_lock_after, s.login_lock_minutes);
    await this.k.store.write((tx) =>
      this.audit(tx, { action: "iam.mfa.disable", actor: actorOf(caller.principal), outcome: "failure", reason: wrongCode ?? "wrong recovery code", resource: { type: "user", id: user.id }, request: caller.request }),
    );
    throw recovery ? new InvalidError("the recovery code does not match (or was used before)", "recovery_code") : new InvalidError("the code does not match (or was used before)", "code");
  }

  /**
   * Turns the user's TOTP off and deletes their recovery codes; false, nothing done, when the
   * recovery code it is given is not one of theirs still unused. Spent in the same transaction,
   * so that two requests racing with one code cannot both pass.
   */
  private turnTotpOff(tx: Tx, caller: Caller, userId: string, recovery: Buffer | null): boolean {
    if (recovery && !sql.useRecoveryCode(tx, userId, recovery, this.now())) return false;
    sql.disableTotp(tx, userId);
    sql.replaceRecoveryCodes(tx, userId, []);
    this.audit(tx, { action: "iam.mfa.disable", actor: actorOf(caller.principal), outcome: "success", reason: recovery ? "with a recovery code" : "with TOTP", resource: { type: "user", id: userId }, request: caller.request });
    return true;
  }

  /** Why a TOTP code does not prove the user's second factor now, or null when it does. */
  private wrongTotp(user: sql.UserRow, code: string): string | null {
    const secret = this.k.seal.keyring().decrypt(userKeyOwner(user.id), `users/${user.id}/totp`, user.totp_secret!);
    const step = verifyTotp(secret, code, this.now());
    if (step === null) return "wrong TOTP code";
    if (user.totp_last_step !== null && step <= user.totp_last_step) return "TOTP code used before (replay)";
    return null;
  }

  /**
   * An operator turns a user's TOTP off for them (the authenticator and the recovery codes lost):
   * the recovery codes go, and the user's logins end (sessions and CLI logins, with what they
   * made, as a password change ends them), so that whoever held one must log in again, with the
   * password alone, and enrol anew. Not one's own: that takes a code (disableTotp), or a stolen
   * operator session could turn its victim's factor off without one.
   */
  async resetMfa(userId: string, caller: Caller) {
    if (userId === caller.principal.userId) throw new ForbiddenError("an operator cannot reset their own two-factor authentication: turn it off with a code or a recovery code (POST /v1/iam/me/mfa/totp/disable)");
    await this.k.store.write((tx) => {
      const user = sql.userById(tx, userId);
      if (!user) throw new NotFoundError("No such user.");
      if (user.totp_enabled_at === null) throw new ConflictError("two-factor authentication is not enabled for this user");
      sql.disableTotp(tx, userId);
      sql.replaceRecoveryCodes(tx, userId, []);
      sql.endUserLogins(tx, userId, this.now());
      sql.denyApprovedDeviceGrants(tx, userId);
      this.audit(tx, { action: "iam.mfa.reset", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: userId }, request: caller.request });
    });
  }

  /**
   * An operator gives a user who lost their password a one-time password (shown once, in the
   * answer; replaced at their next login) and ends their logins as a password change does:
   * sessions and CLI logins, with what they made, and CLI logins approved but not yet picked up,
   * so that whoever knew the lost password loses what it opened. Personal access tokens and API
   * keys stay, as with an MFA reset: made on purpose, they are reviewed and revoked by name. The
   * second factor stays too: a lost password is no lost authenticator. Not one's own: an operator
   * changes theirs with the current one (or, locked out, recovers on the host), or a stolen
   * operator session could take over its victim's account without it.
   */
  async resetPassword(userId: string, caller: Caller) {
    if (userId === caller.principal.userId) throw new ForbiddenError("an operator cannot reset their own password: change it with the current one (POST /v1/iam/me/password), or, locked out, run citadel recover on the host");
    if (!sql.userById(this.db, userId)) throw new NotFoundError("No such user.");
    const password = randomBase62(20);
    const hash = await this.hasher.hash(password);
    await this.k.store.write((tx) => {
      if (!sql.userById(tx, userId)) throw new NotFoundError("No such user."); // deleted while the password was hashed
      sql.setOneTimePassword(tx, userId, hash);
      sql.endUserLogins(tx, userId, this.now());
      sql.denyApprovedDeviceGrants(tx, userId);
      this.audit(tx, { action: "iam.password.reset", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: userId }, request: caller.request });
    });
    return { user: this.userView(sql.userById(this.db, userId)!), password };
  }

  /**
   * `citadel recover` on the host: what it was given, checked before anything changes, then done
   * in one write — the operator's account (`recoverOperator`), an allowlist (`clearAllowlist`),
   * or both. Checked one after the other, an email with a typo was refused after the allowlist
   * had been emptied and recorded, and the command said only that (found in review).
   */
  async recover(what: { email?: string; clearAllowlist?: string }, invoker: Invoker = UNKNOWN_INVOKER): Promise<{ allowlist?: ClearedAllowlist; operator?: { email: string; password: string } }> {
    const holder = what.clearAllowlist === undefined ? undefined : allowlistToClear(this.db, what.clearAllowlist);
    const user = what.email === undefined ? undefined : operatorToRecover(this.db, what.email);
    const password = user && randomBase62(20);
    const hash = password && (await this.hasher.hash(password));
    const allowlist = holder && { kind: holder.kind, id: holder.id, was: holder.was };
    // An empty list lets in any address: nothing to clear, nothing to record. Anything else (an unreadable one too) is cleared.
    const clearing = holder !== undefined && !(Array.isArray(holder.was) && holder.was.length === 0);
    if (clearing || user) {
      await this.k.store.write((tx) => {
        if (clearing) this.clearAllowlistIn(tx, holder, invoker);
        if (user) this.recoverOperatorIn(tx, user, hash!, invoker);
      });
    }
    return { allowlist, operator: user && { email: user.email, password: password! } };
  }

  /**
   * An operator who can no longer log in (password or second factor lost, no other operator to
   * reset it) gets a one-time password; TOTP goes off, the recovery codes go, and every login
   * session and CLI login ends (whoever held the lost factor loses what it opened). Personal
   * access tokens and API keys stay, as with an MFA reset: made on purpose, they are revoked by
   * name once the operator is back in.
   */
  async recoverOperator(email: string, invoker: Invoker = UNKNOWN_INVOKER): Promise<{ email: string; password: string }> {
    return (await this.recover({ email }, invoker)).operator!;
  }

  private recoverOperatorIn(tx: Tx, user: sql.UserRow, hash: string, invoker: Invoker): void {
    if (sql.userById(tx, user.id)?.operator !== 1) throw new ConflictError(`${user.email} was removed or stopped being an operator meanwhile`);
    sql.setOneTimePassword(tx, user.id, hash);
    sql.disableTotp(tx, user.id);
    sql.replaceRecoveryCodes(tx, user.id, []);
    sql.endUserLogins(tx, user.id, this.now());
    sql.denyApprovedDeviceGrants(tx, user.id);
    // Who ran it: the host accounts by number in the chained reason (the break-glass record
    // must hold them, and `citadel recover` works on a sealed database, where personal data is
    // withheld: there is no key to encrypt it); the sudo user's name is personal data, under
    // the recovered operator's key when the keyring is there.
    this.audit(tx, {
      action: "iam.operator.recover",
      actor: { kind: "system" },
      outcome: "success",
      resource: { type: "user", id: user.id },
      reason: `host-local recovery by ${invoker.uids}: a one-time password, TOTP off, logins ended`,
      subject: user.id,
      personal: { invoker: invoker.named },
    });
  }

  /**
   * `--clear-allowlist`: the address allowlist of an organization (org_...) or a workspace
   * (ws_...) that shuts everyone out (the operators' addresses changed, a proxy now stands in
   * front) is emptied. Through the API nobody could: the guard refuses every request about it
   * from outside the list, the operator's own on loopback too. Recorded as the change it is
   * (iam.organization.update, iam.workspace.update), with who ran it as `recoverOperator`
   * records them and the list it replaced.
   */
  async clearAllowlist(id: string, invoker: Invoker = UNKNOWN_INVOKER): Promise<ClearedAllowlist> {
    return (await this.recover({ clearAllowlist: id }, invoker)).allowlist!;
  }

  private clearAllowlistIn(tx: Tx, holder: NonNullable<ReturnType<typeof allowlistHolder>>, invoker: Invoker): void {
    const current = allowlistHolder(tx, holder.id);
    if (!current) throw new ConflictError(`the ${holder.kind} ${holder.id} was deleted meanwhile`);
    if (current.kind === "organization") sql.updateOrganization(tx, current.id, { ip_allowlist: "[]" });
    else sql.updateWorkspace(tx, current.id, { ip_allowlist: "[]" });
    this.audit(tx, {
      action: current.kind === "organization" ? "iam.organization.update" : "iam.workspace.update",
      actor: { kind: "system" },
      outcome: "success",
      resource: { type: current.kind, id: current.id },
      organization: current.organizationId,
      workspace: current.kind === "workspace" ? current.id : null,
      reason: `host-local recovery by ${invoker.uids}: ${describeChanges({ ip_allowlist: [] })}, ${describeWas(current.was)}`,
      personal: { invoker: invoker.named },
    });
  }

  me(p: Principal) {
    const user = this.requireUser(p);
    return {
      ...this.userView(user),
      recovery_codes_left: sql.unusedRecoveryCodes(this.db, user.id),
      organizations: this.organizationsSeenBy(p, user.id).map((o) => ({ id: o.id, name: o.name, role: o.role })),
    };
  }

  /**
   * The user's organizations, as far as the credential reaches: one restricted to an organization
   * (or to a workspace of one) sees that one alone, not the others' settings, whose allowlists
   * the guard never checked for it.
   */
  private organizationsSeenBy(p: Principal, userId: string) {
    const all = sql.organizationsOf(this.db, userId);
    return p.organizationId === null ? all : all.filter((o) => o.id === p.organizationId);
  }

  // --- tokens -----------------------------------------------------------------------------

  /** A personal access token; its plaintext is in the answer and nowhere else, ever. */
  async createPat(
    caller: Caller,
    input: { name: string; scopes: string[]; expires_in_days?: number; workspace?: string; organization?: string; ip_allowlist?: string[] },
    kind: "pat" | "device" = "pat",
  ) {
    const user = this.requireUser(caller.principal);
    const checked = this.checkTokenInput(input);
    const { scopes } = checked;
    if (caller.principal.scopes !== "all" && !scopesWithin(scopes, caller.principal.scopes)) {
      throw new ForbiddenError("a token cannot grant more than the credential that makes it");
    }
    // A child never escapes its parent: same organization, workspace and allowlist, no later expiry.
    const limits = this.inheritedLimits(caller.principal, { organization: input.organization, workspace: input.workspace, allowlist: checked.allowlist, expiresAt: checked.expiresAt });
    const { expiresAt, allowlist } = limits;
    input = { ...input, ...tokenRestriction(this.db, user.id, { organization: limits.organization ?? undefined, workspace: limits.workspace ?? undefined }) };
    const t = generateToken(TOKEN_KINDS.pat);
    await this.k.store.write((tx) => {
      requireLiveMaker(tx, caller.principal.tokenId, this.now());
      // Deleted meanwhile, its tokens were revoked before this one existed (found in review).
      if (input.workspace && !sql.workspaceById(tx, input.workspace)) throw new InvalidError("no such workspace among yours", "workspace");
      // So with an organization, whose memberships outlive it: deleted, before or meanwhile,
      // it got a token that could never be used (found in review).
      if (input.organization && !sql.organizationById(tx, input.organization)) throw new InvalidError("no such organization among yours", "organization");
      // And with the maker's membership: removed meanwhile, the removal revoked their tokens for
      // the organization before this one existed, which then worked again once they rejoined
      // (found in review).
      tokenRestriction(tx, user.id, input);
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: t.prefix,
          kind,
          hash: t.hash,
          name: input.name,
          user_id: user.id,
          organization_id: input.organization ?? null,
          scopes: JSON.stringify(scopes),
          workspace_id: input.workspace ?? null,
          ip_allowlist: allowlist,
          // Made by another credential (not a login): it is revoked with its maker.
          parent_id: madeByLogin(caller.principal) ? null : caller.principal.tokenId,
          created_at: this.now(),
          expires_at: expiresAt,
        }),
      );
      this.audit(tx, { action: "iam.token.create", actor: actorOf(caller.principal), outcome: "success", resource: { type: "token", id: t.prefix }, reason: `scopes ${scopes.join(" ")}`, request: caller.request });
    });
    return { token: t.token, ...this.credentialView(sql.credentialById(this.db, t.prefix)!) };
  }

  /**
   * The limits a credential made by `p` inherits. A login session is the user itself and
   * passes none on; any other credential passes on its organization, workspace, address
   * allowlist and expiry. Workload and console tokens make nothing.
   */
  private inheritedLimits(p: Principal, wanted: { organization?: string; workspace?: string; allowlist: string; expiresAt: number }) {
    if (p.kind === "session") return { organization: wanted.organization ?? null, workspace: wanted.workspace ?? null, allowlist: wanted.allowlist, expiresAt: wanted.expiresAt };
    if (p.kind === "workload" || p.kind === "console") throw new ForbiddenError("a workload or console token cannot make other credentials");
    const parent = sql.credentialById(this.db, p.tokenId)!;
    const conflict = (mine: string | undefined, theirs: string | null) => mine !== undefined && theirs !== null && mine !== theirs;
    if (conflict(wanted.organization, parent.organization_id) || conflict(wanted.workspace, parent.workspace_id)) {
      throw new ForbiddenError("this token is restricted to another organization or workspace");
    }
    return {
      organization: parent.organization_id ?? wanted.organization ?? null,
      workspace: parent.workspace_id ?? wanted.workspace ?? null,
      allowlist: narrowedAllowlist(parent.ip_allowlist, wanted.allowlist),
      expiresAt: Math.min(wanted.expiresAt, parent.expires_at ?? Infinity),
    };
  }

  private checkTokenInput(input: { name: string; scopes: string[]; expires_in_days?: number; ip_allowlist?: string[] }) {
    const s = this.k.settings;
    if (!NAME.test(input.name)) throw new InvalidError("a short name: letters, digits, space, . _ -", "name");
    if (input.scopes.length === 0) throw new InvalidError("give at least one scope", "scopes");
    const bad = input.scopes.find((scope) => !isScope(scope));
    if (bad) throw new InvalidError(`not a scope: ${bad}`, "scopes");
    // A scope no route requires grants nothing: a typo (secret:read) would make a useless token,
    // and checked against the maker's scopes it read as "more than the credential that makes it".
    const unknown = input.scopes.find((scope) => !this.k.scopes.includes(scope));
    if (unknown) throw new InvalidError(`no such scope: ${unknown}; the scopes are ${this.k.scopes.join(", ")}`, "scopes");
    const days = input.expires_in_days ?? defaultTokenDays(s);
    if (days > s.token_max_days) throw new InvalidError(`at most ${s.token_max_days} days`, "expires_in_days");
    const allowlist = input.ip_allowlist ?? [];
    allowlist.forEach((cidr, i) => {
      if (!parseClientCidr(cidr)) throw new InvalidError("not a CIDR", `ip_allowlist[${i}]`);
    });
    return { expiresAt: this.now() + days * DAY_MS, allowlist: JSON.stringify(allowlist), scopes: [...new Set(input.scopes)].sort() };
  }

  /** A page of the user's personal access tokens (and device and workload tokens), newest first. */
  tokens(p: Principal, asked: PageAsked) {
    const user = this.requireUser(p);
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.credentialsPageOf(this.db, user.id, ["pat", "device", "workload"], decodeCursor(asked.cursor, `tokens:${user.id}`, "number"), limit + 1);
    return pageOf(rows, limit, `tokens:${user.id}`, creationEnd, (c) => this.credentialView(c));
  }

  /**
   * A login session manages all of the user's tokens; any other credential only itself and what
   * was made from it (the CI token `citadel login`'s token made), never a sibling or its maker.
   */
  private mayManageToken(p: Principal, id: string): void {
    if (p.kind === "session" || p.tokenId === id || sql.lineageOf(this.db, id).has(p.tokenId)) return;
    throw new ForbiddenError("a token manages only itself and the tokens made from it; a login session manages all of yours");
  }

  /**
   * The caller's own live token `id` of one of `kinds`, else 404 "No such token." — before the
   * check that this credential may manage it, so that an id that names nothing is not answered
   * "forbidden"; another user's token is no such token too, whose ids stay unknown to the caller.
   */
  private ownToken(p: Principal, id: string, kinds: readonly string[]) {
    const user = this.requireUser(p);
    const c = sql.credentialById(this.db, id);
    if (!c || c.user_id !== user.id || !kinds.includes(c.kind) || c.revoked_at !== null) throw new NotFoundError("No such token.");
    this.mayManageToken(p, id);
    return c;
  }

  async revokeToken(caller: Caller, id: string) {
    this.ownToken(caller.principal, id, ["pat", "device", "workload"]);
    await this.k.store.write((tx) => {
      // A rotation that came first meanwhile made a new token: answering 200 would tell the owner
      // the leak is closed while the copy lives.
      if (sql.credentialById(tx, id)?.revoked_at !== null) throw new ConflictError("That token was revoked or rotated meanwhile: list your tokens (a rotation makes a new one with the same name) and revoke what remains.");
      sql.revokeCredential(tx, id, this.now());
      this.audit(tx, { action: "iam.token.revoke", actor: actorOf(caller.principal), outcome: "success", resource: { type: "token", id }, request: caller.request });
    });
  }

  /** A new token with the same name, scopes, restrictions and expiry; the old one is revoked. */
  async rotateToken(caller: Caller, id: string) {
    const c = this.ownToken(caller.principal, id, ["pat", "device"]);
    const t = generateToken(TOKEN_KINDS.pat);
    await this.k.store.write((tx) => {
      // Checked again in the write: a revocation (the owner answering a leak) or another rotation
      // may have come first since the check above, and must not leave a working copy behind.
      if (sql.credentialById(tx, c.id)?.revoked_at !== null) throw new NotFoundError("No such token.");
      // Rotation replaces the secret, not the lifetime: the expiry stays where it was.
      sql.insertCredential(tx, { ...c, id: t.prefix, hash: t.hash, created_at: this.now() });
      // What the old token made goes with it: rotation is the answer to a leak, and what a thief
      // made with the token must not survive it. (A CI token made from it is made again.)
      sql.revokeCredential(tx, c.id, this.now());
      this.audit(tx, { action: "iam.token.rotate", actor: actorOf(caller.principal), outcome: "success", resource: { type: "token", id: t.prefix }, reason: `replaces ${c.id}`, request: caller.request });
    });
    return { token: t.token, ...this.credentialView(sql.credentialById(this.db, t.prefix)!) };
  }

  /**
   * Token exchange (RFC 8693) for workloads: a short-lived token (at most one hour, and never
   * beyond its parent) whose scopes lie within the parent's.
   */
  async exchange(parent: Principal, scopes: string[], ttlSeconds: number, request: AuditRequestContext) {
    // Workload and console tokens make nothing (docs/identity.md), sessions are for people.
    if (parent.kind === "console" || parent.kind === "session" || parent.kind === "workload") throw new InvalidError("exchange a personal access token, device token or API key", "subject_token");
    if (scopes.length === 0 || scopes.some((s) => !isScope(s))) throw new InvalidError("give the scopes wanted, space-separated", "scope");
    // As for a token or a key: a scope no route requires grants nothing, and must not be issued
    // (found in review: a token with `write` was exchanged for "nosuch:write", which it "covers").
    const unknown = scopes.find((scope) => !this.k.scopes.includes(scope));
    if (unknown) throw new InvalidError(`no such scope: ${unknown}; the scopes are ${this.k.scopes.join(", ")}`, "scope");
    if (parent.scopes !== "all" && !scopesWithin(scopes, parent.scopes)) throw new InvalidError("the scopes asked for exceed the subject token's", "scope");
    const row = sql.credentialById(this.db, parent.tokenId)!;
    const ttl = Math.min(ttlSeconds, 3600) * 1000;
    const expiresAt = Math.min(this.now() + ttl, row.expires_at ?? Infinity);
    const t = generateToken(TOKEN_KINDS.workload);
    await this.k.store.write((tx) => {
      requireLiveMaker(tx, row.id, this.now());
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: t.prefix,
          kind: "workload",
          hash: t.hash,
          name: "workload",
          user_id: row.user_id,
          organization_id: row.organization_id,
          service: row.service,
          scopes: JSON.stringify([...new Set(scopes)].sort()),
          workspace_id: row.workspace_id,
          ip_allowlist: row.ip_allowlist,
          parent_id: row.id,
          created_at: this.now(),
          expires_at: expiresAt,
        }),
      );
      this.audit(tx, { action: "iam.token.exchange", actor: actorOf(parent), outcome: "success", resource: { type: "token", id: t.prefix }, reason: `scopes ${scopes.join(" ")}`, request });
    });
    return { access_token: t.token, issued_token_type: "urn:ietf:params:oauth:token-type:access_token", token_type: "Bearer", expires_in: Math.floor((expiresAt - this.now()) / 1000), scope: scopes.join(" ") };
  }

  /** A console token: single use, two minutes, for `shell:connect`. */
  async consoleToken(caller: Caller) {
    const user = this.requireUser(caller.principal);
    const t = generateToken(TOKEN_KINDS.console);
    const limits = this.inheritedLimits(caller.principal, { allowlist: "[]", expiresAt: this.now() + 120_000 });
    const expiresAt = limits.expiresAt;
    await this.k.store.write((tx) => {
      requireLiveMaker(tx, caller.principal.tokenId, this.now());
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: t.prefix,
          kind: "console",
          hash: t.hash,
          name: "console",
          user_id: user.id,
          organization_id: limits.organization,
          scopes: JSON.stringify(["shell:connect"]),
          workspace_id: limits.workspace,
          ip_allowlist: limits.allowlist,
          parent_id: caller.principal.tokenId,
          created_at: this.now(),
          expires_at: expiresAt,
        }),
      );
      this.audit(tx, { action: "iam.console_token.create", actor: actorOf(caller.principal), outcome: "success", resource: { type: "token", id: t.prefix }, request: caller.request });
    });
    return { token: t.token, expires_at: new Date(expiresAt).toISOString(), single_use: true };
  }

  credentialView(c: sql.CredentialRow) {
    const use = this.identity.lastUse(c);
    return {
      id: c.id,
      kind: c.kind,
      name: c.name,
      service: c.service,
      organization: c.organization_id,
      workspace: c.workspace_id,
      scopes: c.scopes === null ? null : (JSON.parse(c.scopes) as string[]),
      ip_allowlist: shownAllowlist(c.ip_allowlist),
      created_at: new Date(c.created_at).toISOString(),
      expires_at: c.expires_at === null ? null : new Date(c.expires_at).toISOString(),
      last_used_at: use.at === null ? null : new Date(use.at).toISOString(),
      last_used_from: use.from,
    };
  }

  // --- organizations ----------------------------------------------------------------------

  async createOrganization(name: string, ownerId: string, actor: AuditActor, request?: AuditRequestContext) {
    if (!NAME.test(name)) throw new InvalidError("a short name: letters, digits, space, . _ -", "name");
    const id = newId("org");
    await this.k.store.write((tx) => {
      if (sql.organizationByName(tx, name)) throw new ConflictError("an organization with this name exists already");
      if (!sql.userById(tx, ownerId)) throw new InvalidError("no such user", "owner");
      sql.insertOrganization(tx, { id, name, created_at: this.now() });
      sql.upsertMembership(tx, id, ownerId, "owner", this.now());
      this.audit(tx, { action: "iam.organization.create", actor, outcome: "success", resource: { type: "organization", id }, organization: id, request });
    });
    return this.organizationView(id);
  }

  /**
   * An organization as shown to a caller its allowlist admits (the guard checks it on the
   * organization's routes). A stored allowlist that is no JSON list admits nobody: refused here
   * too, not a 500.
   */
  organizationView(id: string) {
    const o = this.organizationRecord(id);
    if (o.ip_allowlist === null) throw new ForbiddenError("The organization does not allow requests from your address.");
    return { ...o, ip_allowlist: o.ip_allowlist };
  }

  /** An organization as stored; its allowlist null when it is no JSON list (see shownAllowlist). */
  private organizationRecord(id: string) {
    const o = sql.organizationById(this.db, id);
    if (!o) throw new NotFoundError("No such organization.");
    return {
      id: o.id,
      name: o.name,
      require_mfa: o.require_mfa === 1,
      ip_allowlist: shownAllowlist(o.ip_allowlist),
      services: sql.activeServices(this.db, id).map((s) => s.service),
      created_at: new Date(o.created_at).toISOString(),
    };
  }

  /**
   * A page of the caller's organizations with their role, by name, as far as the credential
   * reaches (organizationsSeenBy); each one's settings (MFA, allowlist, services) only where its
   * allowlist admits the caller's address, as the guard would for the organization itself: from
   * elsewhere, its id, name, role and creation alone, the settings null.
   */
  organizations(caller: Caller, asked: PageAsked): Page<OrganizationSeen> {
    const p = caller.principal;
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const after = decodeCursor(asked.cursor, `organizations:${p.userId ?? p.organizationId}`, "string");
    const rows: Array<sql.OrganizationRow & { role: Role | null; row: number }> = p.userId
      ? sql.organizationsPageOf(this.db, p.userId, p.organizationId, after, limit + 1)
      : p.organizationId
        ? sql.organizationPage(this.db, p.organizationId, after)
        : [];
    return pageOf(rows, limit, `organizations:${p.userId ?? p.organizationId}`, (o) => ({ value: o.name, row: o.row }), (o) => this.organizationSeenFrom(o.id, o.role, caller.request.source ?? null));
  }

  private organizationSeenFrom(id: string, role: Role | null, source: string | null): OrganizationSeen {
    const view = this.organizationRecord(id);
    if (admits(this.identity.organization(id)?.ipAllowlist ?? [], source)) return { ...view, role };
    return { ...view, require_mfa: null, ip_allowlist: null, services: null, role };
  }

  async updateOrganization(caller: Caller, id: string, changes: { name?: string; require_mfa?: boolean; ip_allowlist?: string[] }) {
    if (changes.name !== undefined && !NAME.test(changes.name)) throw new InvalidError("a short name: letters, digits, space, . _ -", "name");
    const allowlist = changes.ip_allowlist && this.checkAllowlist(changes.ip_allowlist, caller);
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, id);
      if (changes.name !== undefined) {
        const other = sql.organizationByName(tx, changes.name);
        if (other && other.id !== id) throw new ConflictError("an organization with this name exists already");
      }
      sql.updateOrganization(tx, id, { name: changes.name, require_mfa: changes.require_mfa, ip_allowlist: allowlist });
      this.audit(tx, { action: "iam.organization.update", actor: actorOf(caller.principal), outcome: "success", resource: { type: "organization", id }, organization: id, reason: describeChanges(changes), request: caller.request });
    });
    return this.organizationView(id);
  }

  /** An allowlist must let in the address that sets it, or the caller would lock themselves out. */
  private checkAllowlist(list: string[], caller: Caller): string {
    const cidrs = list.map((c, i) => {
      const cidr = parseClientCidr(c);
      if (!cidr) throw new InvalidError("not a CIDR", `ip_allowlist[${i}]`);
      return cidr;
    });
    const from = parseIp(caller.request.source ?? "");
    if (cidrs.length > 0 && !(from && cidrs.some((c) => cidrContains(c, from)))) {
      throw new InvalidError(`the list does not include your own address (${caller.request.source}): you would lock yourself out`, "ip_allowlist");
    }
    return JSON.stringify(list);
  }

  /**
   * Deletes an organization and, as each of its workspaces would be deleted, what they hold;
   * then what it holds itself: the credentials bound to it, and what other services keep under
   * its id (DNS zones, mesh networks). No route reaches a deleted organization's data to remove
   * it later (erasure, for GDPR, also removes the rows the deletion keeps: members, the
   * organization's name).
   */
  async deleteOrganization(caller: Caller, id: string) {
    const workspaces = await this.k.store.write((tx) => {
      // Two confirmed deletions sent at once: the second finds nothing left to delete.
      if (!sql.softDeleteOrganization(tx, id, this.now())) throw new NotFoundError("No such organization: it was deleted meanwhile.");
      const workspaces = sql.workspacesOf(tx, id).map((ws) => ws.id);
      const removed = workspaces.map((ws) => `${ws}: ${this.removeWorkspace(tx, ws).join(", ")}`);
      const held = this.removeOrganizationHoldings(tx, id);
      const reason = [...(removed.length === 0 ? [] : [`${removed.length} workspace(s) deleted with it: ${removed.join("; ")}`]), ...held].join("; ");
      this.audit(tx, { action: "iam.organization.delete", actor: actorOf(caller.principal), outcome: "success", resource: { type: "organization", id }, organization: id, reason, request: caller.request });
      return workspaces;
    });
    for (const ws of workspaces) workspaceDeletionsOf(this.k.store).committed(ws);
    organizationDeletionsOf(this.k.store).committed(id);
  }

  /**
   * What the organization holds beyond its workspaces, inside `tx`: its API keys and the PATs
   * restricted to it (and what they made) stopped authenticating only when they expired, and
   * other services' data (zones still served, mesh node tokens still answered) stayed (found
   * in review). What went.
   */
  private removeOrganizationHoldings(tx: Database, id: string): string[] {
    const revoked = sql.revokeOrganizationCredentials(tx, id, this.now()).changes;
    return [`${revoked} credential(s) for it revoked`, ...organizationDeletionsOf(this.k.store).run(tx, id, this.now())];
  }

  /** Deletes a workspace inside `tx`, with its credentials and what other services hold for it; what went. */
  private removeWorkspace(tx: Database, id: string): string[] {
    // Two confirmed deletions sent at once: the second finds nothing left to delete, and
    // neither runs the handlers nor audits twice.
    if (sql.softDeleteWorkspace(tx, id, this.now()).changes === 0) throw new NotFoundError("No such workspace: it was deleted meanwhile.");
    // Tokens for this workspace alone go with it: they still authenticated, for the routes
    // that name no workspace (found in review).
    const revoked = sql.revokeWorkspaceCredentials(tx, id, this.now()).changes;
    sql.clearWorkspaceRoles(tx, id);
    // What the other services hold for it goes too (the secrets' values and their data key,
    // webhooks): no route reaches a deleted workspace's data to remove it later.
    const removed = workspaceDeletionsOf(this.k.store).run(tx, id, this.now());
    return [`${revoked} credential(s) for it revoked`, ...removed];
  }

  /** A page of the organization's members, by address. */
  members(orgId: string, asked: PageAsked) {
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.membersPage(this.db, orgId, decodeCursor(asked.cursor, `members:${orgId}`, "string"), limit + 1);
    return pageOf(rows, limit, `members:${orgId}`, (m) => ({ value: m.email, row: m.row }), memberView);
  }

  /**
   * Adds a member (operators only: they make the users, so they learn nothing by it; everyone
   * else invites) or changes a member's role. Only an owner makes owners; the last owner stays one.
   */
  async setMember(caller: Caller, orgId: string, input: { user?: string; email?: string; role: string }, mode: "add" | "change") {
    if (!isRole(input.role)) throw new InvalidError("one of viewer, editor, admin, owner", "role");
    const role: Role = input.role;
    if (mode === "add" && !(caller.principal.operator && (caller.principal.scopes === "all" || scopesGrant(caller.principal.scopes, "iam:admin")))) {
      // Adding by email would tell any organization's admin which addresses have an account
      // here, and put people into organizations without asking them.
      throw new ForbiddenError("invite them instead (POST /v1/iam/orgs/{org}/invitations): only operators (with iam:admin, as for listing users) add existing users directly");
    }
    const target = input.user ? sql.userById(this.db, input.user) : input.email ? sql.userByEmail(this.db, input.email) : null;
    if (!target || (mode === "change" && !sql.roleOf(this.db, orgId, target.id))) throw new NotFoundError(mode === "add" ? "No such user." : "That user is not a member.");
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      // Both roles as they are now, in the transaction that writes: two changes sent at once must
      // not both pass checks made before either wrote (an admin unmaking a new owner, no owner left).
      const callerRole = actingRole(tx, caller.principal, orgId);
      const current = sql.roleOf(tx, orgId, target.id);
      if (mode === "change" && !current) throw new NotFoundError("That user is not a member.");
      if (!callerRole || !roleAllows(callerRole, "manage_members")) throw new ForbiddenError("your role no longer allows managing members");
      if ((role === "owner" || current === "owner") && callerRole !== "owner") throw new ForbiddenError("only an owner may make or unmake owners");
      if (current === "owner" && role !== "owner" && sql.isLastOwner(tx, orgId, target.id)) throw new ConflictError("the last owner cannot step down: make someone else owner first");
      sql.upsertMembership(tx, orgId, target.id, role, this.now());
      this.audit(tx, {
        action: current ? "iam.member.update" : "iam.member.add",
        actor: actorOf(caller.principal),
        outcome: "success",
        resource: { type: "user", id: target.id },
        organization: orgId,
        reason: current ? `${current} → ${role}` : role,
        request: caller.request,
      });
    });
    return memberView(sql.membersOf(this.db, orgId).find((m) => m.user_id === target.id)!);
  }

  async removeMember(caller: Caller, orgId: string, userId: string) {
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      // A deleted user's membership, which grants nothing, can still be removed.
      const current = sql.recordedRoleOf(tx, orgId, userId);
      if (!current) throw new NotFoundError("That user is not a member.");
      const callerRole = actingRole(tx, caller.principal, orgId);
      if (!callerRole || !roleAllows(callerRole, "manage_members")) throw new ForbiddenError("your role no longer allows managing members");
      if (current === "owner" && callerRole !== "owner") throw new ForbiddenError("only an owner may remove an owner");
      if (current === "owner" && sql.isLastOwner(tx, orgId, userId)) throw new ConflictError("the last owner cannot leave: make someone else owner first");
      const reason = `${this.endMembership(tx, orgId, userId)} credential(s) for the organization revoked`;
      this.audit(tx, { action: "iam.member.remove", actor: actorOf(caller.principal), outcome: "success", resource: { type: "user", id: userId }, organization: orgId, reason, request: caller.request });
    });
  }

  /**
   * The caller leaves the organization, whatever their role: removing others needs
   * manage_members, leaving does not (found in review: a viewer could not leave at all). Their
   * own decision, so their own credential's — a login, CLI login or personal access token — not
   * an API key, nor a workload or console token made for a program. The last owner stays.
   */
  async leaveOrganization(caller: Caller, orgId: string) {
    const p = caller.principal;
    const user = this.requireUser(p);
    if (p.kind !== "session" && p.kind !== "device" && p.kind !== "pat") throw new ForbiddenError("leave with your own login or personal access token: a workload or console token cannot");
    await this.k.store.write((tx) => {
      // As they are now, in the write: a removal or a role change may have come first.
      const current = sql.organizationById(tx, orgId) ? sql.roleOf(tx, orgId, user.id) : null;
      if (!current) throw new NotFoundError("You are not a member of that organization.");
      if (current === "owner" && sql.isLastOwner(tx, orgId, user.id)) throw new ConflictError("the last owner cannot leave: make someone else owner first, or delete the organization");
      const revoked = this.endMembership(tx, orgId, user.id);
      const reason = `left the organization (was ${current}); ${revoked} credential(s) for the organization revoked`;
      this.audit(tx, { action: "iam.member.remove", actor: actorOf(p), outcome: "success", resource: { type: "user", id: user.id }, organization: orgId, reason, request: caller.request });
    });
  }

  /** Ends the user's membership inside `tx`, with what it held; how many credentials were revoked. */
  private endMembership(tx: Tx, orgId: string, userId: string): number {
    sql.deleteMembership(tx, orgId, userId);
    // Refused only while they were out, their keys and tokens bound to the organization worked
    // again when they rejoined, under any role (found in review): they end with the membership.
    const revoked = sql.revokeMemberCredentials(tx, orgId, userId, this.now()).changes;
    // Nor does a role narrowed in a workspace outlive the membership it narrowed: added back
    // as admin, they were still the viewer they had been there (found in review).
    sql.clearMemberWorkspaceRoles(tx, orgId, userId);
    return revoked;
  }

  // --- invitations ------------------------------------------------------------------------
  //
  // How anyone but an operator adds a member: the answer to an invitation is the same whether
  // or not the address has an account here, and its user joins only by accepting it. The
  // inviter's right to grant the role is checked again when it is accepted.

  async invite(caller: Caller, orgId: string, input: { email: string; role: string; expires_in_days?: number }) {
    const email = input.email.trim().normalize("NFC"); // compared by its key, as users' addresses are
    if (!EMAIL.test(email)) throw new InvalidError("not an email address", "email");
    if (!isRole(input.role)) throw new InvalidError("one of viewer, editor, admin, owner", "role");
    const role: Role = input.role;
    const days = input.expires_in_days ?? INVITATION_DAYS;
    if (!Number.isInteger(days) || days < 1 || days > MAX_INVITATION_DAYS) throw new InvalidError(`whole days from 1 to ${MAX_INVITATION_DAYS}`, "expires_in_days");
    const inviter = roleHolder(caller.principal);
    if (!inviter) throw new ForbiddenError("only a member (or a key one made) can invite");
    const id = newId("inv");
    const now = this.now();
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      sql.purgeExpiredInvitations(tx, now);
      const callerRole = actingRole(tx, caller.principal, orgId);
      if (!callerRole || !roleAllows(callerRole, "manage_members")) throw new ForbiddenError("your role no longer allows managing members");
      if (role === "owner" && callerRole !== "owner") throw new ForbiddenError("only an owner may make owners");
      if (sql.isMemberByEmail(tx, orgId, email)) throw new ConflictError("that address belongs to a member already: change their role instead");
      if (sql.invitationToAddress(tx, orgId, email)) throw new ConflictError("that address is invited already: revoke that invitation first");
      sql.insertInvitation(tx, { id, organization_id: orgId, email, role, invited_by: inviter, created_at: now, expires_at: now + days * DAY_MS });
      // The address is not in the event: it may be no one's here, and the log outlives the invitation.
      this.audit(tx, { action: "iam.invitation.create", actor: actorOf(caller.principal), outcome: "success", resource: { type: "invitation", id }, organization: orgId, reason: role, request: caller.request });
    });
    return invitationView(sql.invitationById(this.db, id)!);
  }

  /** A page of the organization's pending invitations, oldest first. */
  invitations(orgId: string, asked: PageAsked) {
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.invitationsPageOf(this.db, orgId, this.now(), decodeCursor(asked.cursor, `invitations:${orgId}`, "number"), limit + 1);
    return pageOf(rows, limit, `invitations:${orgId}`, creationEnd, invitationView);
  }

  async revokeInvitation(caller: Caller, orgId: string, id: string) {
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      sql.purgeExpiredInvitations(tx, this.now());
      const invitation = sql.invitationById(tx, id);
      if (!invitation || invitation.organization_id !== orgId || invitation.expires_at <= this.now()) throw new NotFoundError("No such invitation.");
      const callerRole = actingRole(tx, caller.principal, orgId);
      if (!callerRole || !roleAllows(callerRole, "manage_members")) throw new ForbiddenError("your role no longer allows managing members");
      if (invitation.role === "owner" && callerRole !== "owner") throw new ForbiddenError("only an owner may revoke an invitation to become owner");
      sql.deleteInvitation(tx, id);
      this.audit(tx, { action: "iam.invitation.revoke", actor: actorOf(caller.principal), outcome: "success", resource: { type: "invitation", id }, organization: orgId, request: caller.request });
    });
  }

  /** Drops expired invitations (their addresses are kept no longer); run now and then. */
  async purgeExpiredInvitations(): Promise<void> {
    if (!sql.anyInvitationExpired(this.db, this.now())) return;
    await this.k.store.write((tx) => void sql.purgeExpiredInvitations(tx, this.now()));
  }

  /**
   * Drops device logins an hour after they expire, consumed ones too: past expiry a row serves
   * only to answer a late poll, and it holds the address of whoever asked (anyone may ask, and
   * no erasure reaches a request no user decided). Run now and then.
   */
  async purgeExpiredDeviceGrants(): Promise<void> {
    const expiredBy = this.now() - DEVICE_GRANT_KEPT_MS;
    if (!sql.anyDeviceGrantExpiredBy(this.db, expiredBy)) return;
    await this.k.store.write((tx) => void sql.purgeDeviceGrantsExpiredBy(tx, expiredBy));
  }

  /** A page of the caller's pending invitations (to their account's address), oldest first. */
  myInvitations(p: Principal, asked: PageAsked) {
    requireOwnLogin(p, "see your invitations");
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const after = decodeCursor(asked.cursor, `my-invitations:${p.userId}`, "number");
    const user = p.userId ? sql.userById(this.db, p.userId) : null;
    const rows = user ? sql.invitationsPageTo(this.db, user.email, this.now(), after, limit + 1) : [];
    return pageOf(rows, limit, `my-invitations:${p.userId}`, creationEnd, (i) => ({
      id: i.id,
      organization: { id: i.organization_id, name: i.organization_name },
      role: i.role,
      invited_by: i.inviter_email,
      created_at: new Date(i.created_at).toISOString(),
      expires_at: new Date(i.expires_at).toISOString(),
    }));
  }

  /** Joins the organization with the invitation's role, if whoever sent it may still grant it. */
  async acceptInvitation(caller: Caller, id: string) {
    let organization = "";
    await this.k.store.write((tx) => {
      sql.purgeExpiredInvitations(tx, this.now());
      const { user, invitation } = this.invitationFor(tx, caller.principal, id);
      const inviterRole = sql.userById(tx, invitation.invited_by) ? sql.roleOf(tx, invitation.organization_id, invitation.invited_by) : null;
      if (!inviterRole || !roleAllows(inviterRole, "manage_members") || (invitation.role === "owner" && inviterRole !== "owner")) {
        throw new ConflictError("this invitation is no longer valid: whoever sent it may no longer grant that role");
      }
      if (sql.roleOf(tx, invitation.organization_id, user.id)) throw new ConflictError("you are a member of that organization already");
      sql.upsertMembership(tx, invitation.organization_id, user.id, invitation.role, this.now());
      sql.deleteInvitation(tx, id);
      organization = invitation.organization_id;
      this.audit(tx, {
        action: "iam.invitation.accept",
        actor: actorOf(caller.principal),
        outcome: "success",
        resource: { type: "invitation", id },
        organization,
        reason: `joined as ${invitation.role}, invited by ${invitation.invited_by}`,
        request: caller.request,
      });
    });
    // As the organization lists show it: its settings null from an address its allowlist refuses
    // (found in review: they were shown, and an unreadable allowlist answered 403 after the join).
    return this.organizationSeenFrom(organization, sql.roleOf(this.db, organization, caller.principal.userId!), caller.request.source ?? null);
  }

  async declineInvitation(caller: Caller, id: string) {
    await this.k.store.write((tx) => {
      sql.purgeExpiredInvitations(tx, this.now());
      const { invitation } = this.invitationFor(tx, caller.principal, id);
      sql.deleteInvitation(tx, id);
      this.audit(tx, { action: "iam.invitation.decline", actor: actorOf(caller.principal), outcome: "success", resource: { type: "invitation", id }, organization: invitation.organization_id, request: caller.request });
    });
  }

  /** A pending invitation addressed to the caller; any other answers as if it did not exist. */
  private invitationFor(tx: Tx, p: Principal, id: string) {
    requireOwnLogin(p, "answer an invitation");
    const user = p.userId ? sql.userById(tx, p.userId) : null;
    const invitation = user ? sql.invitationByIdTo(tx, id, user.email) : null; // compared by their keys (store.ts emailKey)
    if (!user || !invitation || invitation.expires_at <= this.now() || !sql.organizationById(tx, invitation.organization_id)) throw new NotFoundError("No such invitation.");
    return { user, invitation };
  }

  // --- workspaces -------------------------------------------------------------------------

  async createWorkspace(caller: Caller, orgId: string, input: { name: string; ip_allowlist?: string[] }) {
    if (!NAME.test(input.name)) throw new InvalidError("a short name: letters, digits, space, . _ -", "name");
    const allowlist = this.checkAllowlist(input.ip_allowlist ?? [], caller);
    const id = newId("ws");
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      if (sql.workspacesOf(tx, orgId).some((w) => w.name === input.name)) throw new ConflictError("a workspace with this name exists in the organization");
      sql.insertWorkspace(tx, { id, organization_id: orgId, name: input.name, ip_allowlist: allowlist, created_at: this.now() });
      this.audit(tx, { action: "iam.workspace.create", actor: actorOf(caller.principal), outcome: "success", resource: { type: "workspace", id }, organization: orgId, workspace: id, request: caller.request });
    });
    return this.workspaceView(id);
  }

  /** A workspace as shown to a caller its allowlist admits: as organizationView. */
  workspaceView(id: string) {
    const w = this.workspaceRecord(id);
    if (w.ip_allowlist === null) throw new ForbiddenError("The workspace does not allow requests from your address.");
    return { ...w, ip_allowlist: w.ip_allowlist };
  }

  /** A workspace as stored; its allowlist null when it is no JSON list (see shownAllowlist). */
  private workspaceRecord(id: string) {
    const w = sql.workspaceById(this.db, id);
    if (!w) throw new NotFoundError("No such workspace.");
    return {
      id: w.id,
      organization: w.organization_id,
      name: w.name,
      ip_allowlist: shownAllowlist(w.ip_allowlist),
      members: sql.workspaceMembers(this.db, id).map((m) => ({ user: m.user_id, role: m.role })),
      created_at: new Date(w.created_at).toISOString(),
    };
  }

  /**
   * A page of the organization's workspaces, by name; each one's allowlist and members only
   * where its allowlist admits the caller's address, as the guard would for the workspace
   * itself (GET /v1/iam/workspaces/{ws} is 403 from there): from elsewhere they are null.
   */
  workspaces(orgId: string, caller: Caller, asked: PageAsked): Page<WorkspaceSeen> {
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.workspacesPageOf(this.db, orgId, decodeCursor(asked.cursor, `workspaces:${orgId}`, "string"), limit + 1);
    return pageOf(rows, limit, `workspaces:${orgId}`, (w) => ({ value: w.name, row: w.row }), (w) => this.workspaceSeenFrom(w.id, caller.request.source ?? null));
  }

  private workspaceSeenFrom(id: string, source: string | null): WorkspaceSeen {
    const view = this.workspaceRecord(id);
    if (admits(this.identity.workspace(id)?.ipAllowlist ?? [], source)) return view;
    return { ...view, ip_allowlist: null, members: null };
  }

  async updateWorkspace(caller: Caller, id: string, changes: { name?: string; ip_allowlist?: string[] }) {
    // The allowlist is a safeguard, as the organization's is (its route needs iam:admin): a token
    // with `write`, which renames the workspace, must not widen or empty it. Making a workspace
    // with one only shuts addresses out, and stays with iam:write.
    if (changes.ip_allowlist !== undefined) requireScope(caller.principal, "iam:admin", "set a workspace's allowlist");
    if (changes.name !== undefined && !NAME.test(changes.name)) throw new InvalidError("a short name: letters, digits, space, . _ -", "name");
    const allowlist = changes.ip_allowlist && this.checkAllowlist(changes.ip_allowlist, caller);
    await this.k.store.write((tx) => {
      const ws = liveWorkspace(tx, id);
      if (changes.name !== undefined && sql.workspacesOf(tx, ws.organization_id).some((w) => w.name === changes.name && w.id !== id)) {
        throw new ConflictError("a workspace with this name exists in the organization");
      }
      sql.updateWorkspace(tx, id, { name: changes.name, ip_allowlist: allowlist });
      this.audit(tx, { action: "iam.workspace.update", actor: actorOf(caller.principal), outcome: "success", resource: { type: "workspace", id }, organization: ws.organization_id, workspace: id, reason: describeChanges(changes), request: caller.request });
    });
    return this.workspaceView(id);
  }

  async deleteWorkspace(caller: Caller, id: string) {
    const ws = sql.workspaceById(this.db, id)!;
    await this.k.store.write((tx) => {
      const reason = this.removeWorkspace(tx, id).join("; ");
      this.audit(tx, { action: "iam.workspace.delete", actor: actorOf(caller.principal), outcome: "success", resource: { type: "workspace", id }, organization: ws.organization_id, workspace: id, reason, request: caller.request });
    });
    workspaceDeletionsOf(this.k.store).committed(id);
  }

  /** Narrows (or with null, stops narrowing) a member's role in one workspace. */
  async setWorkspaceRole(caller: Caller, workspaceId: string, userId: string, role: string | null) {
    if (role !== null && !isRole(role)) throw new InvalidError("one of viewer, editor, admin, owner", "role");
    await this.k.store.write((tx) => {
      const ws = liveWorkspace(tx, workspaceId);
      // Both roles as they are now, in the write: a removal that came first meanwhile deleted the
      // member's workspace roles before this one was set, which then outlived the membership
      // (found in review).
      const targetRole = sql.roleOf(tx, ws.organization_id, userId);
      if (!targetRole) throw new InvalidError("that user is not a member of the organization", "user");
      const callerRole = caller.principal.userId ? sql.roleOf(tx, ws.organization_id, caller.principal.userId) : null;
      if (targetRole === "owner" && callerRole !== "owner") throw new ForbiddenError("only an owner may narrow an owner's role");
      if (role === null) sql.clearWorkspaceRole(tx, workspaceId, userId);
      else sql.setWorkspaceRole(tx, workspaceId, userId, role);
      this.audit(tx, {
        action: "iam.workspace_member.set",
        actor: actorOf(caller.principal),
        outcome: "success",
        resource: { type: "user", id: userId },
        organization: ws.organization_id,
        workspace: workspaceId,
        reason: role ?? "organization role",
        request: caller.request,
      });
    });
    return this.workspaceView(workspaceId);
  }

  // --- services and API keys ----------------------------------------------------------------

  async setService(caller: Caller, orgId: string, service: string, active: boolean, known: readonly string[]) {
    if (!known.includes(service)) throw new NotFoundError(`No such service; the services are: ${known.join(", ") || "none"}.`);
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      if (active) sql.activateService(tx, orgId, service, this.now());
      else sql.deactivateService(tx, orgId, service);
      this.audit(tx, { action: active ? "iam.service.activate" : "iam.service.deactivate", actor: actorOf(caller.principal), outcome: "success", resource: { type: "service", id: service }, organization: orgId, request: caller.request });
    });
    return this.organizationView(orgId);
  }

  async createApiKey(caller: Caller, orgId: string, input: { service: string; name: string; scopes: string[]; expires_in_days?: number; ip_allowlist?: string[] }, known: readonly string[]) {
    if (!known.includes(input.service)) throw new InvalidError(`no such service; the services are: ${known.join(", ") || "none"}`, "service");
    const { expiresAt, allowlist, scopes } = this.checkTokenInput(input);
    const foreign = scopes.find((scope) => scopeService(scope) !== input.service);
    if (foreign) throw new InvalidError(`an API key for ${input.service} can only carry ${input.service}:* scopes, not ${foreign}`, "scopes");
    // A key carries no more than its maker: the maker's scopes, and what the maker's role allows.
    const p = caller.principal;
    if (p.scopes !== "all" && !scopesWithin(scopes, p.scopes)) throw new ForbiddenError("an API key cannot carry scopes the credential that makes it lacks");
    requireRoleForKey(this.db, p.userId, orgId, scopes);
    // Like a token, a key never escapes the credential that makes it: a workload or console
    // token makes none; any other credential passes on its expiry, allowlist and workspace, and
    // the key is revoked with it. (Else an hour-long workload token could mint a year-long,
    // unrestricted key that outlives everything it came from.)
    const limits = this.inheritedLimits(p, { organization: orgId, allowlist, expiresAt });
    const t = generateToken(input.service);
    await this.k.store.write((tx) => {
      requireLiveOrganization(tx, orgId);
      requireLiveMaker(tx, p.tokenId, this.now());
      requireRoleForKey(tx, p.userId, orgId, scopes);
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: t.prefix,
          kind: "service",
          hash: t.hash,
          name: input.name,
          user_id: p.userId, // its maker: the key acts within their role, and ends with their membership (guard.ts)
          organization_id: orgId,
          service: input.service,
          scopes: JSON.stringify(scopes),
          workspace_id: limits.workspace,
          ip_allowlist: limits.allowlist,
          parent_id: madeByLogin(p) ? null : p.tokenId,
          created_at: this.now(),
          expires_at: limits.expiresAt,
        }),
      );
      this.audit(tx, { action: "iam.api_key.create", actor: actorOf(caller.principal), outcome: "success", resource: { type: "api_key", id: t.prefix }, organization: orgId, reason: `${input.service}: ${scopes.join(" ")}`, request: caller.request });
    });
    // Made before its service is activated, the key is refused until it is: the maker is told.
    const serviceActive = sql.activeServices(this.db, orgId).some((s) => s.service === input.service);
    return { token: t.token, ...this.credentialView(sql.credentialById(this.db, t.prefix)!), service_active: serviceActive };
  }

  /** A page of the organization's live API keys, newest first. */
  apiKeys(orgId: string, asked: PageAsked) {
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.apiKeysPageOf(this.db, orgId, decodeCursor(asked.cursor, `api-keys:${orgId}`, "number"), limit + 1);
    return pageOf(rows, limit, `api-keys:${orgId}`, creationEnd, (c) => this.credentialView(c));
  }

  async revokeApiKey(caller: Caller, orgId: string, id: string) {
    requireLiveApiKey(this.db, orgId, id);
    await this.k.store.write((tx) => {
      // Again in the write: a revocation sent at the same time came first, and a second 200,
      // with a second event, would record a revocation that did nothing (found in review).
      requireLiveApiKey(tx, orgId, id);
      sql.revokeCredential(tx, id, this.now());
      this.audit(tx, { action: "iam.api_key.revoke", actor: actorOf(caller.principal), outcome: "success", resource: { type: "api_key", id }, organization: orgId, request: caller.request });
    });
  }

  /** A page of the live users, by address. */
  users(asked: PageAsked) {
    const limit = asked.limit ?? DEFAULT_PAGE_ROWS;
    const rows = sql.usersPage(this.db, decodeCursor(asked.cursor, "users", "string"), limit + 1);
    return pageOf(rows, limit, "users", (u) => ({ value: u.email, row: u.row }), (u) => this.userView(u));
  }

  /** Whether the appliance has a user yet (setup makes the first). */
  hasUsers(): boolean {
    return sql.anyUser(this.db);
  }

  /** For `roleAllows` checks done in handlers (the guard has already checked the route's own). */
  roleAllows(userId: string, orgId: string, permission: Parameters<typeof roleAllows>[1]): boolean {
    const role = sql.roleOf(this.db, orgId, userId);
    return role !== null && roleAllows(role, permission);
  }
}

/** What `citadel recover --clear-allowlist` cleared: the organization or workspace, and the list it had. */
export interface ClearedAllowlist {
  kind: "organization" | "workspace";
  id: string;
  /** The list's entries; the text stored (truncated) when it is no JSON list of strings, which refused everyone. */
  was: string[] | string;
}

/** The organization or workspace whose allowlist `citadel recover` is to clear; refused when there is none. */
function allowlistToClear(db: Database, id: string) {
  const holder = allowlistHolder(db, id.trim());
  if (!holder) throw new NotFoundError(`no organization or workspace ${id} (citadel recover --clear-allowlist takes an org_... or ws_... id)`);
  return holder;
}

/** The operator `citadel recover` is to let in again; refused when the email names none. */
function operatorToRecover(db: Database, email: string): sql.UserRow {
  const user = sql.userByEmail(db, email.trim());
  if (!user) throw new NotFoundError(`no user ${email} (citadel recover is for operators' accounts)`);
  if (user.operator !== 1) throw new ForbiddenError(`${user.email} is not an operator: citadel recover is for operators; an operator resets anyone else's password (citadel user password-reset) or two-factor authentication (citadel user mfa-reset)`);
  return user;
}

/** The organization or workspace an id names, with its address allowlist; null when there is none. */
function allowlistHolder(db: Database, id: string): { kind: "organization" | "workspace"; id: string; organizationId: string; was: string[] | string } | null {
  const org = sql.organizationById(db, id);
  if (org) return { kind: "organization", id: org.id, organizationId: org.id, was: storedEntries(org.ip_allowlist) };
  const ws = sql.workspaceById(db, id);
  if (ws) return { kind: "workspace", id: ws.id, organizationId: ws.organization_id, was: storedEntries(ws.ip_allowlist) };
  return null;
}

/** How much of an unreadable stored allowlist `citadel recover` says and records. */
const UNREADABLE_SHOWN = 200;

/**
 * A stored allowlist's entries, or its text (truncated) when it is no JSON list of strings:
 * such a value refuses every address (see IamIdentity's allowlist), so it is exactly what
 * `citadel recover --clear-allowlist` is for, and must not stop it.
 */
function storedEntries(json: string): string[] | string {
  try {
    const entries: unknown = JSON.parse(json);
    if (Array.isArray(entries) && entries.every((e) => typeof e === "string")) return entries;
  } catch {
    // Not JSON: the text it is.
  }
  return json.length > UNREADABLE_SHOWN ? `${json.slice(0, UNREADABLE_SHOWN)}…` : json;
}

/**
 * A stored allowlist's entries as a view shows them, each as text (an entry that is no CIDR
 * matches no address, but the list's others still count: see IamIdentity's allowlist); null
 * when it is no JSON list at all, which refuses every address, so nobody is shown it.
 */
function shownAllowlist(json: string): string[] | null {
  let entries: unknown;
  try {
    entries = JSON.parse(json);
  } catch {
    return null;
  }
  return Array.isArray(entries) ? entries.map((e) => (typeof e === "string" ? e : JSON.stringify(e))) : null;
}

/** What a cleared allowlist was, for the audit reason. */
function describeWas(was: string[] | string): string {
  return typeof was === "string" ? `was ${JSON.stringify(was)} (unreadable: it refused every address)` : `was [${was.join(" ")}]`;
}

/**
 * An organization's or workspace's settings change, with the new values, for its audit event:
 * turning MFA off or widening an allowlist must read differently from the opposite (found in
 * review: only the names of the changed fields were recorded). None of them is secret.
 */
function describeChanges(changes: { name?: string; require_mfa?: boolean; ip_allowlist?: string[] }): string {
  const parts: string[] = [];
  if (changes.name !== undefined) parts.push(`name=${changes.name}`);
  if (changes.require_mfa !== undefined) parts.push(`require_mfa=${changes.require_mfa}`);
  if (changes.ip_allowlist !== undefined) parts.push(`ip_allowlist=[${changes.ip_allowlist.join(" ")}]${changes.ip_allowlist.length === 0 ? " (any address)" : ""}`);
  return parts.join(", ");
}
