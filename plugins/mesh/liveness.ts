/**
 * When each node's agent was last heard from: every request it makes with its token (its poll
 * above all, every `[mesh] poll_seconds`, 304s included). Kept in memory, since the poll is the
 * hot path and answered without a write; the periodic check writes it to `last_seen_at` at
 * most once a minute per node (flush), for the operator and for after a restart.
 *
 * A node is online while it was heard from within the window (`[mesh] router_offline_after_seconds`)
 * — counted on the monotonic clock, so that a wall clock stepped by NTP takes no router offline.
 * Nothing is heard while Citadel is down or sealed (the sealed gate answers every poll 503), so
 * the window starts again at each start and unseal: a node not yet heard from since then counts
 * as online until one window has passed, rather than every router looking offline at once
 * and the first agent to poll taking every route it offers.
 */
import type { Clock } from "../../src/plugin.ts";

/** last_seen_at is written when it lags what was heard by this much: a poll every 30 s does not write every 30 s. */
export const LAST_SEEN_WRITE_MS = 60_000;

export class NodeLiveness {
  /** Per node id: when it was last heard from, on the monotonic clock (the wall clock's time is worked out when asked). */
  private readonly heard = new Map<string, number>();
  /** Per node id: the last_seen_at written last (or found stored), so that flush writes only what moved enough. */
  private readonly written = new Map<string, number>();
  /** Since when nodes could be heard from (start, or the last unseal). */
  private since: number;

  constructor(private readonly clock: Clock) {
    this.since = this.elapsed();
  }

  private elapsed(): number {
    return this.clock.elapsed?.() ?? this.clock.now();
  }

  /** The node's agent made a request with its token: on the poll's path, one clock read and a map entry. */
  heardFrom(nodeId: string): void {
    this.heard.set(nodeId, this.elapsed());
  }

  /** Nodes can be heard from again (unsealed): each gets a window from now before it counts as offline. */
  restart(): void {
    this.since = this.elapsed();
  }

  /** Whether the node was heard from within `windowMs` (or, not yet heard from, the window since start or unseal has not passed). */
  online(nodeId: string, windowMs: number): boolean {
    return this.quietFor(nodeId) < windowMs;
  }

  /** Milliseconds since the node was last heard from (or since start or unseal, if later). */
  quietFor(nodeId: string): number {
    return this.elapsed() - Math.max(this.heard.get(nodeId) ?? -Infinity, this.since);
  }

  /** When the node was last heard from in this process (wall clock, ms: now less the time since), or null. */
  lastHeard(nodeId: string): number | null {
    const heard = this.heard.get(nodeId);
    // Whole milliseconds: the monotonic clock has fractions, and last_seen_at is an INTEGER column.
    return heard === undefined ? null : Math.round(this.clock.now() - (this.elapsed() - heard));
  }

  /** The node is gone: forgotten. */
  forget(nodeId: string): void {
    this.heard.delete(nodeId);
    this.written.delete(nodeId);
  }

  /**
   * The last_seen_at values to write: per node heard from, when that is LAST_SEEN_WRITE_MS past
   * what was written for it (or nothing was yet). `stored` gives what the database holds for a
   * node this process has not written yet. Marks them written.
   */
  due(stored: (nodeId: string) => number | null): Array<{ id: string; at: number }> {
    const out: Array<{ id: string; at: number }> = [];
    for (const id of this.heard.keys()) {
      const at = this.lastHeard(id)!;
      let written = this.written.get(id);
      if (written === undefined) {
        written = stored(id) ?? -Infinity;
        this.written.set(id, written);
      }
      if (at - written < LAST_SEEN_WRITE_MS) continue;
      out.push({ id, at });
      this.written.set(id, at);
    }
    return out;
  }
}
