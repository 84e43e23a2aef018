import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCheckpointer } from "../../../src/audit/checkpointer.ts";
import { rekey } from "../../../src/crypto/key-operations.ts";
import { writeRootKeyFile } from "../../../src/crypto/root-key.ts";
import type { Store } from "../../../src/store/store.ts";
import { captureLog, testKernel } from "../../helpers/http.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-checkpointer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a rekey between the check and the write: the checkpoint is signed with the new keyring (found in review: the replaced one failed, 'KEK v1 is not wrapped')", async () => {
  const k = testKernel();
  const source = { ...k.keySource, keyFile: join(dir, "root.key") };
  writeRootKeyFile(source.keyFile, k.rootKey);
  await k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success" }));
  let rekeyed = false;
  const store: Store = { ...k.store, write: async (fn) => {
    if (!rekeyed) {
      rekeyed = true;
      await rekey(k.store, k.seal, k.audit, source, { kind: "operator" }, k.clock.now);
    }
    return k.store.write(fn);
  } };
  const log = captureLog();
  const stop = startCheckpointer({ store, seal: k.seal, every: 1, intervalMs: 3_600_000, now: k.clock.now, log: log.logger });
  await stop(); // its last check signs what is left
  expect(rekeyed).toBe(true);
  expect(log.lines.filter((l) => l.level === "error")).toEqual([]);
  expect(k.store.db.query("SELECT count(*) AS n FROM audit_checkpoints").get()).toEqual({ n: 1 });
});

test("sealed between the check and the write: nothing is signed, and nothing is said", async () => {
  const k = testKernel();
  await k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success" }));
  const store: Store = { ...k.store, write: async (fn) => {
    k.seal.seal();
    return k.store.write(fn);
  } };
  const log = captureLog();
  await startCheckpointer({ store, seal: k.seal, every: 1, intervalMs: 3_600_000, now: k.clock.now, log: log.logger })();
  expect(log.lines.filter((l) => l.level === "error")).toEqual([]);
  expect(k.store.db.query("SELECT count(*) AS n FROM audit_checkpoints").get()).toEqual({ n: 0 });
});
