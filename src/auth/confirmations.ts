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

  /**
   * When `token` was issued for exactly `binding` and has not expired: a function that gives it
   * back unspent (for a request refused before it did anything); else null. Once either way.
   */
  consume(token: string, binding: string): (() => void) | null {
    const entry = this.pending.get(token);
    if (!entry) return null;
    this.pending.delete(token); // single use, even when it does not match
    if (entry.binding !== binding || entry.expires <= this.now()) return null;
    return () => void this.pending.set(token, entry);
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, entry] of this.pending) if (entry.expires <= now) this.pending.delete(token);
  }
}
