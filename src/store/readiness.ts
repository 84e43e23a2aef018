/**
 * /readyz's view of the store: it answers reads, and it takes writes. Once the disk refused a
 * write (full, failing), every change fails, so the store is not ready until a write commits
 * again. Traffic may not bring one — a load balancer stops sending to a server that is not
 * ready, and the operator who freed space expects the probe to turn green by itself — so a
 * probe write, at most one every PROBE_INTERVAL_MS, asks the disk again.
 */
import type { Store, Tx } from "./store.ts";

export const PROBE_INTERVAL_MS = 5_000;

/**
 * `probe` changes nothing that matters (the kernel rewrites a row unchanged: still a page for
 * the disk to take). Its outcome reaches a later check: the store remembers a refusal and
 * forgets it when a write commits.
 */
export function storeReadiness(store: Store, probe: (tx: Tx) => void, now: () => number = () => performance.now()): () => string | null {
  let probedAt = -Infinity;
  return () => {
    if (!store.ping()) return "unreachable";
    const failure = store.writeFailure();
    if (failure === null) return null;
    const at = now();
    if (at - probedAt >= PROBE_INTERVAL_MS) {
      probedAt = at;
      store.write(probe).catch(() => {}); // a refusal is the store's to remember, not an error to raise here
    }
    return `cannot write: ${failure.reason}`;
  };
}
