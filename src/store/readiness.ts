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
 * `probe` changes bytes that matter to nobody. Its outcome reaches a later check: the store
 * remembers a refusal and forgets it when a write that changed rows commits.
 */
export function storeReadiness(store: Store, probe: (tx: Tx) => void = kernelWriteProbe, now: () => number = () => performance.now()): () => string | null {
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
