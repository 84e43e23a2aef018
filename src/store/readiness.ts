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
 * The kernel's probe: one more in a counter (kernel migration 0008), a page for the disk to
 * take. It must change bytes: SQLite writes nothing for a row set to what it was, and such a
 * "write" commits on a full disk.
 */
export function kernelWriteProbe(tx: Tx): void {
  tx.run("INSERT INTO write_probe (singleton, probes) VALUES (1, 1) ON CONFLICT (singleton) DO UPDATE SET probes = probes + 1");
}

/**
 * `probe` changes bytes that matter to nobody. Its outcome reaches a later check: only a probe
 * that commits answers a refusal (those up to the one it was sent after) — not a request's
 * write that commits, which may have written no page (a row set to what it was, a write rolled
 * back to its savepoint) and so commits on a full disk too (found in review).
 */
export function storeReadiness(store: Store, probe: (tx: Tx) => void = kernelWriteProbe, now: () => number = () => performance.now()): () => string | null {
  let probedAt = -Infinity;
  let answered = 0; // the refusals a committed probe came after
  return () => {
    if (!store.ping()) return "unreachable";
    const last = store.writeFailure();
    if (last === null || last.refusal <= answered) return null;
    const at = now();
    if (at - probedAt >= PROBE_INTERVAL_MS) {
      probedAt = at;
      const after = last.refusal;
      store.write(probe).then(
        () => void (answered = Math.max(answered, after)),
        () => {}, // refused too: the store remembers it
      );
    }
    return `cannot write: ${last.failure.reason}`;
  };
}
