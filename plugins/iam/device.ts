/**
 * The OAuth 2.0 device authorization grant (RFC 8628) behind `citadel login`: the CLI asks
 * for a device code, shows the user a short code and a URL, and polls; the user approves on
 * the approval page (or through the API) with their own credentials; the poll then answers
 * with a personal access token for that user. States: authorization_pending, slow_down,
 * expired_token, access_denied, and the token.
 */
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import type { AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, type Principal } from "../../src/auth/principal.ts";
import { generateToken, randomBase62, TOKEN_KINDS } from "../../src/auth/tokens.ts";
import { ForbiddenError, InvalidError, NotFoundError, UnauthorizedError } from "../../src/errors.ts";
import { oauthError } from "../../src/http/oauth-error.ts";
import type { Kernel } from "../../src/plugin.ts";
import { newId } from "../../src/ids.ts";
import { defaultTokenDays, type IamSettings } from "./settings.ts";
import * as sql from "./store.ts";

/** RFC 8628 §6.1: no vowels (no words), no look-alikes; 20^8 ≈ 2.6e10 codes. */
const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";
const DEFAULT_SCOPES = ["read", "write"];
const sha256 = (text: string) => createHash("sha256").update(text).digest();

export function normalizeUserCode(code: string): string {
  return code.toUpperCase().replace(/[^A-Z]/g, "");
}

export class DeviceFlow {
  constructor(private readonly k: Kernel<IamSettings>) {}

  private now() {
    return this.k.clock.now();
  }

  async start(input: { client_name?: string; scope?: string }, request: AuditRequestContext, verificationUri: string) {
    const scopes = this.checkedScopes(input.scope);
    const deviceCode = randomBase62(40);
    const raw = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => USER_CODE_ALPHABET[b % 20]).join("");
    const userCode = `${raw.slice(0, 4)}-${raw.slice(4)}`;
    const expiresIn = this.k.settings.device_code_minutes * 60;
    const id = newId("dev");
    await this.k.store.write((tx) => {
      sql.insertDeviceGrant(tx, {
        id,
        device_code_hash: sha256(deviceCode),
        user_code: raw,
        client_name: clientName(input.client_name),
        client_address: request.source ?? "unknown",
        scopes: JSON.stringify(scopes),
        created_at: this.now(),
        expires_at: this.now() + expiresIn * 1000,
        interval_s: 5,
      });
      // The client's name ("citadel CLI on alices-laptop"), address and user agent are a person's
      // once someone approves: the approval's event carries them under that user's key, which an
      // erasure destroys. Here, before anyone is known, they would sit under the shared anonymous
      // key, linked to the user by the grant's id, out of reach of the erasure (found in review).
      this.k.audit.record(tx, { action: "iam.device.start", actor: { kind: "anonymous" }, outcome: "success", resource: { type: "device_grant", id }, reason: "a device login started", request: { id: request.id ?? null } });
    });
    return {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: verificationUri,
      verification_uri_complete: `${verificationUri}?user_code=${userCode}`,
      expires_in: expiresIn,
      interval: 5,
    };
  }

  /**
   * The scopes a device login asks for, none meaning the default. As when a token is made, each
   * must be one a route requires: a typo (secret:read) would make a token that grants nothing of
   * it, and a list of blank space one that grants nothing at all (RFC 6749 section 5.2's
   * invalid_scope, as RFC 8628 section 3.1 refers to it).
   */
  private checkedScopes(asked: string | undefined): string[] {
    if (asked === undefined) return DEFAULT_SCOPES;
    const scopes = asked.split(/\s+/).filter(Boolean);
    if (scopes.length === 0) throw oauthError(400, "invalid_scope", "scope names no scope: give at least one, or leave it out for the default (read write)");
    const unknown = scopes.find((scope) => !this.k.scopes.includes(scope));
    if (unknown) throw oauthError(400, "invalid_scope", `no such scope: ${unknown}; the scopes are ${this.k.scopes.join(", ")}`);
    return scopes;
  }

  /** What the approval page shows about a pending request. */
  describe(userCode: string) {
    const grant = sql.pendingDeviceGrantByUserCode(this.k.store.db, normalizeUserCode(userCode));
    if (!grant || grant.expires_at <= this.now()) throw new NotFoundError("No pending login with that code (it may have expired).");
    return { client_name: grant.client_name, client_address: grant.client_address, scopes: JSON.parse(grant.scopes) as string[], expires_at: new Date(grant.expires_at).toISOString() };
  }

  /** The user's decision, made with their own credentials. */
  async decide(userCode: string, approve: boolean, principal: Principal, request: AuditRequestContext) {
    if (!principal.userId) throw new InvalidError("a user approves a device login, not an API key", "user_code");
    // The device receives the user's full session rights, so only a session may grant them:
    // a narrowly scoped token must not mint a broader credential by approving its own login.
    if (principal.kind !== "session") throw new ForbiddenError("Approving a device login needs a login session, not a token.");
    // The guard refuses a one-time password's session on the API's route, but the approval page
    // logs in itself and calls this directly: a one-time password must be replaced before it
    // hands out a token (which would not need replacing), on either path.
    if (principal.mustChangePassword) throw new ForbiddenError("Change your one-time password first (citadel password, or POST /v1/iam/me/password), then approve the login.");
    const grant = sql.pendingDeviceGrantByUserCode(this.k.store.db, normalizeUserCode(userCode));
    if (!grant || grant.expires_at <= this.now()) {
      // Guessing user codes is what an attacker with a session would try: each miss is on record
      // (the code itself is not: a near miss would tell a reader of the log most of a live one).
      await this.k.store.write((tx) =>
        this.k.audit.record(tx, { action: "iam.device.approve", actor: actorOf(principal), outcome: "failure", reason: grant ? "the login expired" : "no pending login with that code", request }),
      );
      throw new NotFoundError("No pending login with that code (it may have expired).");
    }
    const record = (tx: Database, outcome: "success" | "failure", reason: string) =>
      this.k.audit.record(tx, {
        action: "iam.device.approve",
        actor: actorOf(principal),
        outcome,
        reason,
        resource: { type: "device_grant", id: grant.id },
        // The device's address and name are personal data: encrypted under the user's key (erasable), not in the chained reason.
        personal: { client_address: grant.client_address, client_name: grant.client_name },
        request,
      });
    let sessionEnded = false;
    await this.k.store.write((tx) => {
      // The session may have ended since the guard saw it (a password change ends every other one).
      if (approve && sql.credentialById(tx, principal.tokenId)?.revoked_at !== null) {
        sessionEnded = true;
        throw new UnauthorizedError("This session has ended: log in again.");
      }
      if (!sql.decideDeviceGrant(tx, grant.id, approve ? "approved" : "denied", principal.userId!, this.now())) throw new NotFoundError("That login was decided already.");
      record(tx, approve ? "success" : "failure", approve ? "approved" : "denied by the user");
    }).catch(async (error) => {
      // Refused inside the write, which rolled back: the refusal is recorded on its own.
      if (sessionEnded) await this.k.store.write((tx) => record(tx, "failure", "the approving session ended meanwhile"));
      throw error;
    });
    return { approved: approve };
  }

  /** The token endpoint's answer to a poll (RFC 8628 §3.4, §3.5). */
  async poll(deviceCode: string, request: AuditRequestContext) {
    const db = this.k.store.db;
    const grant = sql.deviceGrantByCodeHash(db, sha256(deviceCode));
    if (!grant) throw oauthError(400, "invalid_grant", "Unknown device code.");
    const now = this.now();
    if (grant.status === "consumed") throw oauthError(400, "invalid_grant", "This device code was used already.");
    if (grant.status === "denied") throw oauthError(400, "access_denied", "The login was denied, by the user or by a change of their password.");
    if (grant.expires_at <= now) throw oauthError(400, "expired_token", "The device code expired: start again.");
    if (grant.status === "pending") {
      const tooSoon = grant.last_poll_at !== null && now - grant.last_poll_at < grant.interval_s * 1000;
      // slow_down adds 5 seconds to the interval for this and every later poll (§3.5).
      const interval = tooSoon ? grant.interval_s + 5 : grant.interval_s;
      await this.k.store.write((tx) => sql.pollDeviceGrant(tx, grant.id, now, interval));
      if (tooSoon) throw oauthError(400, "slow_down", `Poll at most every ${interval} seconds.`);
      throw oauthError(400, "authorization_pending", "The user has not approved yet.");
    }
    // approved: issue the token once
    const user = sql.userById(db, grant.user_id!);
    if (!user) throw oauthError(400, "access_denied", "The approving account no longer exists.");
    const t = generateToken(TOKEN_KINDS.pat);
    const days = defaultTokenDays(this.k.settings);
    await this.k.store.write((tx) => {
      if (!sql.consumeDeviceGrant(tx, grant.id)) throw oauthError(400, "invalid_grant", "This device code was used already.");
      sql.insertCredential(
        tx,
        sql.credentialRow({
          id: t.prefix,
          kind: "device",
          hash: t.hash,
          name: `device login: ${grant.client_name}`,
          user_id: user.id,
          scopes: grant.scopes,
          created_at: now,
          expires_at: now + days * 86_400_000,
        }),
      );
      this.k.audit.record(tx, { action: "iam.token.create", actor: { kind: "user", user: user.id, token: t.prefix }, outcome: "success", resource: { type: "token", id: t.prefix }, reason: "device login", request });
    });
    return { access_token: t.token, token_type: "Bearer", expires_in: days * 86_400, scope: (JSON.parse(grant.scopes) as string[]).join(" ") };
  }
}

/**
 * The name a device login gives itself, shown on the approval page and in the audit log: any
 * caller on the network chooses it, so control, format and direction characters (a terminal's
 * escape sequences, a right-to-left override) are refused rather than stored.
 */
function clientName(given: string | undefined): string {
  if (given === undefined) return "citadel CLI";
  // Joiners (U+200C, U+200D) are format characters that emoji and many scripts need: allowed.
  if (/[\p{Cc}\p{Zl}\p{Zp}]|(?![\u200c\u200d])\p{Cf}/u.test(given)) throw oauthError(400, "invalid_request", "client_name: printable characters only");
  return given; // at most 100 characters: the request's schema says so
}
