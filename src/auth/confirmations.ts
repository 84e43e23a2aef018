/**
 * Dangerous-operation confirmation: a destructive request first gets a token bound to who
 * asked, what and on which resource; only the same request carrying that token, within
 * 120 seconds and once, goes through. Kept in memory: a restart just means asking again.
 */
import { randomBase62 } from "./tokens.ts";

const TTL_MS = 120_000;

interface Pending {
  binding: string;
  expires: number;
}

export class Confirmations {
  private pending = new Map<string, Pending>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A new confirmation token for `binding` (principal, operation, resource). */
  issue(binding: string): { token: string; expiresInSeconds: number } {
    this.sweep();
    const token = `confirm_${randomBase62(24)}`;
    this.pending.set(token, { binding, expires: this.now() + TTL_MS });
    return { token, expiresInSeconds: TTL_MS / 1000 };
  }

  /** True, once, when `token` was issued for exactly `binding` and has not expired. */
  consume(token: string, binding: string): boolean {
    const entry = this.pending.get(token);
    if (!entry) return false;
    this.pending.delete(token); // single use, even when it does not match
    return entry.binding === binding && entry.expires > this.now();
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, entry] of this.pending) if (entry.expires <= now) this.pending.delete(token);
  }
}
