/**
 * Signs a checkpoint of the audit chain every `every` events or `intervalMs`, whichever
 * comes first, while unsealed (the signing key is in the keyring). Checks once a second;
 * each check is one indexed read.
 */
import type { Seal } from "../crypto/seal.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import { createCheckpoint } from "./checkpoints.ts";

export interface CheckpointerOptions {
  store: Store;
  seal: Seal;
  every: number;
  intervalMs: number;
  now: () => number;
  log: Logger;
}

export function startCheckpointer({ store, seal, every, intervalMs, now, log }: CheckpointerOptions): () => Promise<void> {
  let running = false;
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
      if (checkpoint) log.debug("signed an audit checkpoint", { seq: checkpoint.seq });
    } catch (error) {
      log.error("could not sign an audit checkpoint", { error });
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(false), 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await tick(true); // sign what is left, so a clean stop leaves no unsigned tail
  };
}
