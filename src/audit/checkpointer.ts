/**
 * Signs a checkpoint of the audit chain every `every` events or `intervalMs`, whichever
 * comes first, while unsealed (the signing key is in the keyring). Checks once a second;
 * each check is one indexed read.
 */
import type { Seal } from "../crypto/seal.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Store } from "../store/store.ts";
import { createCheckpoint } from "./checkpoints.ts";

export interface CheckpointerOptions {
  store: Store;
  seal: Seal;
  every: number;
  intervalMs: number;
  now: () => number;
  log: Logger;
  /** Where to expose whether signing fails. */
  metrics?: Metrics;
  /** How often to check whether a checkpoint is due. */
  checkMs?: number;
}

/** A failure is said when signing starts failing, then at most this often: the check runs every second. */
const FAILURE_LOG_MS = 60_000;

export function startCheckpointer({ store, seal, every, intervalMs, now, log, metrics, checkMs = 1000 }: CheckpointerOptions): () => Promise<void> {
  let running = false;
  /** While signing fails: when the failure was last logged (null: the last attempt worked). */
  let failingSince: number | null = null;
  const failed = (error: unknown) => {
    // Found in review: an error with its stack every second, for ever (a damaged signing key: 86k a day).
    const at = performance.now();
    if (failingSince !== null && at - failingSince < FAILURE_LOG_MS) return;
    log.error("could not sign an audit checkpoint: the chain goes on unsigned until this works", { error });
    failingSince = at;
  };
  const tick = async (force: boolean) => {
    if (running || seal.sealed) return;
    const head = store.db.query<{ seq: number }, []>("SELECT max(seq) AS seq FROM audit_events").get()?.seq ?? 0;
    const last = store.db.query<{ seq: number; time: number }, []>("SELECT seq, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").get();
    const pending = head - (last?.seq ?? 0);
    const due = pending >= every || (pending > 0 && (force || now() - (last?.time ?? 0) >= intervalMs));
    if (!due) return;
    running = true;
    try {
      // The keyring of the write's moment, not of the check: a rekey in between replaces (and
      // wipes) the one in memory; sealed in between, there is nothing to sign with.
      const checkpoint = await store.write((tx) => {
        const keyring = seal.keyringIfUnsealed();
        return keyring && createCheckpoint(tx, keyring, now());
      });
      if (checkpoint) {
        log.debug("signed an audit checkpoint", { seq: checkpoint.seq });
        if (failingSince !== null) log.info("audit checkpoints are signed again", { seq: checkpoint.seq });
        failingSince = null;
      }
    } catch (error) {
      failed(error);
    } finally {
      running = false;
    }
  };
  const unregister = metrics?.onScrape({
    name: "citadel_audit_checkpoint_failing",
    type: "gauge",
    help: "1 while signing audit checkpoints fails (the chain grows unsigned), else 0.",
    read: () => (failingSince === null ? 0 : 1),
  });
  const timer = setInterval(() => void tick(false), checkMs);
  timer.unref();
  return async () => {
    unregister?.();
    clearInterval(timer);
    await tick(true); // sign what is left, so a clean stop leaves no unsigned tail
  };
}
