/**
 * CLI for a person's own account, where the API asks for a login session rather than a
 * token (a leaked token must not be able to change the password or lock its owner out of
 * two-factor authentication):
 *   citadel password      change my password (the first thing to do with a one-time one)
 *   citadel mfa enable    enrol TOTP: a QR code for the authenticator app, then recovery codes
 *   citadel mfa disable
 * Each logs in with the password for one short session, does its one thing and logs out.
 * Passwords and codes are read without echo, or line by line from standard input.
 */
import { createApiClient, ApiError } from "../../src/cli/api-client.ts";
import { UsageError } from "../../src/cli/command-line.ts";
import { print } from "../../src/cli/output.ts";
import { secretPrompter } from "../../src/cli/prompt.ts";
import type { ApiClient, Command, CommandContext } from "../../src/plugin.ts";
import type { LoginResponse, Me, RecoveryCodes, TotpEnrolment } from "./model.ts";

const EMAIL = { email: { type: "string", description: "The account's email (default: that of the stored login)" } } as const;

type Ask = (prompt: string) => Promise<string>;

/** A TOTP code is digits; anything else given there is taken for a recovery code (a lost phone logs in with one, dashes or not). */
const TOTP_CODE = /^\d{6,8}$/;

/**
 * A code as the server is to get it: a TOTP code typed as an authenticator app shows it
 * ("123 456") is a TOTP code, its spaces dropped (found in review: sent as a recovery code).
 */
function secondFactor(typed: string): { totp: string } | { recovery_code: string } {
  const digits = typed.replace(/\s+/g, "");
  return TOTP_CODE.test(digits) ? { totp: digits } : { recovery_code: typed };
}

/** The account to act on: --email, else the stored login's. */
async function emailOf(ctx: CommandContext, server: ApiClient): Promise<string> {
  if (typeof ctx.options.email === "string" && ctx.options.email !== "") return ctx.options.email;
  try {
    const me = await (await ctx.api()).request<typeof Me.static>("GET", "/v1/iam/me");
    if (me.email) return me.email;
  } catch {
    // no stored login, or it no longer works
  }
  throw new UsageError(`say whose account: --email ADDRESS (${server.baseUrl})`);
}

/**
 * A login session for one action, ended afterwards whatever happens. A one-time password
 * logs in too (only to change it); with TOTP on, a code is asked for.
 */
async function withSession<T>(ctx: CommandContext, ask: Ask, action: (session: ApiClient, password: string) => Promise<T>): Promise<T> {
  const server = await ctx.api({ anonymous: true });
  const email = await emailOf(ctx, server);
  const password = await ask(`Password for ${email}: `);
  let login: typeof LoginResponse.static;
  try {
    login = await server.request<typeof LoginResponse.static>("POST", "/v1/iam/login", { email, password });
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "totp_required")) throw error;
    const code = (await ask("TOTP code (or a recovery code): ")).trim();
    const second = secondFactor(code);
    login = await server.request<typeof LoginResponse.static>("POST", "/v1/iam/login", { email, password, ...second });
  }
  const session = createApiClient({ baseUrl: server.baseUrl, trust: server.pinned, token: login.token });
  try {
    return await action(session, password);
  } finally {
    await session.request("POST", "/v1/iam/logout", {}).catch(() => undefined); // a password change may have ended it already
  }
}

export const accountCommands: Command[] = [
  {
    words: ["password"],
    summary: "Change my password (asked without echo; the first thing to do with a one-time password)",
    options: EMAIL,
    async run(ctx) {
      const ask = secretPrompter();
      await withSession(ctx, ask, async (session, current) => {
        const next = await ask("New password: ");
        if (process.stdin.isTTY && (await ask("New password again: ")) !== next) throw new Error("the two new passwords differ: nothing changed");
        await session.request("POST", "/v1/iam/me/password", { current_password: current, new_password: next });
      });
      print(ctx, { ok: true }, "password changed; your other sessions and device logins have ended");
      return 0;
    },
  },
  {
    words: ["mfa", "enable"],
    summary: "Turn on two-factor authentication (TOTP): scan the QR code, give a first code, keep the recovery codes",
    options: EMAIL,
    async run(ctx) {
      const ask = secretPrompter();
      const codes = await withSession(ctx, ask, async (session, password) => {
        const enrolment = await session.request<typeof TotpEnrolment.static>("POST", "/v1/iam/me/mfa/totp");
        const { renderUnicodeCompact } = await import("uqr");
        ctx.err(renderUnicodeCompact(enrolment.otpauth_uri));
        ctx.err(`Scan this with an authenticator app, or enter the secret by hand: ${enrolment.secret}`);
        ctx.err(`(${enrolment.otpauth_uri})`);
        const code = await ask("First code from the app: ");
        // The password it logged in with: the API asks for it again, so that a stolen session cannot enrol a factor of its own.
        return session.request<typeof RecoveryCodes.static>("POST", "/v1/iam/me/mfa/totp/confirm", { code: code.trim(), current_password: password });
      });
      if (ctx.json) ctx.out(JSON.stringify(codes, null, 2));
      else {
        ctx.out("two-factor authentication is on. Recovery codes, each good once instead of a code (shown only now; keep them apart from this machine):");
        for (const code of codes.recovery_codes) ctx.out(`  ${code}`);
      }
      return 0;
    },
  },
  {
    words: ["mfa", "disable"],
    summary: "Turn off two-factor authentication (needs the password, a code to log in, and a later code or another recovery code to confirm)",
    options: EMAIL,
    async run(ctx) {
      const ask = secretPrompter();
      await withSession(ctx, ask, async (session) => {
        // A code works once: after logging in with one, the next one the app shows confirms
        // (the app lost, another recovery code does: then enrol a new app with `mfa enable`).
        const code = (await ask("TOTP code to confirm (if you logged in with one, the next one the app shows), or another recovery code: ")).trim();
        const second = secondFactor(code);
        await session.request("POST", "/v1/iam/me/mfa/totp/disable", "totp" in second ? { code: second.totp } : second);
      });
      print(ctx, { ok: true, mfa: false }, "two-factor authentication is off");
      return 0;
    },
  },
];
