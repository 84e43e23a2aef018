/** The [iam] config section. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const IamSettings = section("Identity: sessions, tokens, passwords, brute-force protection, device login.", {
  session_ttl_hours: Type.Integer({ default: 12, minimum: 1, maximum: 720, description: "A login session ends this long after it began." }),
  session_idle_minutes: Type.Integer({ default: 60, minimum: 1, maximum: 10_080, description: "...or after this long without use." }),
  token_default_days: Type.Integer({ default: 30, minimum: 1, maximum: 3650, description: "Expiry of a personal access token, API key or device-login token when none is asked for; capped at token_max_days." }),
  token_max_days: Type.Integer({ default: 365, minimum: 1, maximum: 3650, description: "Longest expiry a token or key may be given." }),
  password_min_length: Type.Integer({ default: 12, minimum: 8, maximum: 128, description: "Shortest password accepted." }),
  argon2_memory_kib: Type.Integer({ default: 19_456, minimum: 19_456, maximum: 4_194_304, description: "argon2id memory per hash (OWASP minimum: 19456 KiB)." }),
  argon2_iterations: Type.Integer({ default: 2, minimum: 2, maximum: 20, description: "argon2id passes." }),
  argon2_parallelism: Type.Integer({ default: 1, minimum: 1, maximum: 16, description: "argon2id lanes." }),
  login_slowdown_after: Type.Integer({ default: 3, minimum: 1, maximum: 100, description: "Failed logins (per account and address) before each further attempt must wait, doubling each time." }),
  login_lock_after: Type.Integer({ default: 10, minimum: 2, maximum: 1000, description: "Failed logins (per account and address) before that pair is locked out." }),
  login_lock_minutes: Type.Integer({ default: 15, minimum: 1, maximum: 1440, description: "How long a lock-out lasts; a fifth of it is how long forgives one of the failures counted per address alone." }),
  credential_retention_days: Type.Integer({
    default: 90,
    minimum: 1,
    maximum: 3650,
    description: "A credential (session, token, key) is deleted this long after it expired, revoked or not; the audit log keeps its history. Presented then, it is an unknown token.",
  }),
  device_code_minutes: Type.Integer({ default: 10, minimum: 1, maximum: 60, description: "How long a device login (citadel login) waits for approval." }),
});
export type IamSettings = Static<typeof IamSettings>;

/**
 * The expiry a token, key or device login gets when none is asked for: the default, capped at
 * the maximum. Past the maximum, every token and key made without an expiry was refused for an
 * `expires_in_days` nobody sent, and device logins got tokens beyond it (found in review). Not a
 * config error: a maximum set below the default's own default (30) alone is a sound config.
 */
export function defaultTokenDays(s: Pick<IamSettings, "token_default_days" | "token_max_days">): number {
  return Math.min(s.token_default_days, s.token_max_days);
}
