import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCheckpointer } from "../../../src/audit/checkpointer.ts";
import { createCheckpoint } from "../../../src/audit/checkpoints.ts";
import { rekey } from "../../../src/crypto/key-operations.ts";
import { writeRootKeyFile } from "../../../src/crypto/root-key.ts";
import { Metrics } from "../../../src/metrics.ts";
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

test("a checkpointer that cannot sign says so once, not every second, and a gauge says it fails until it signs again (found in review: an error with its stack every second, no metric)", async () => {
  const k = testKernel();
  await k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success" }));
  await k.store.write((tx) => createCheckpoint(tx, k.seal.keyring(), k.clock.now())); // makes the signing key
  await k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success" }));
  const db = k.store.db;
  db.run("DROP TRIGGER audit_signing_keys_no_update");
  const { private_key: intact } = db.query<{ private_key: Uint8Array }, []>("SELECT private_key FROM audit_signing_keys").get()!;
  db.run("UPDATE audit_signing_keys SET private_key = x'00'");
  let attempts = 0;
  const store: Store = { ...k.store, write: (fn) => (attempts++, k.store.write(fn)) };
  const log = captureLog();
  const metrics = new Metrics();
  const stop = startCheckpointer({ store, seal: k.seal, every: 1, intervalMs: 3_600_000, now: k.clock.now, log: log.logger, metrics, checkMs: 1 });
  try {
    const after = async (done: () => boolean) => {
      for (let i = 0; i < 1000 && !done(); i++) await Bun.sleep(1);
    };
    await after(() => attempts >= 5);
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect(log.lines.filter((l) => l.level === "error")).toHaveLength(1);
    expect(metrics.render()).toContain("citadel_audit_checkpoint_failing 1\n");

    db.run("UPDATE audit_signing_keys SET private_key = ?", [intact]);
    await after(() => metrics.render().includes("citadel_audit_checkpoint_failing 0\n"));
    expect(metrics.render()).toContain("citadel_audit_checkpoint_failing 0\n");
    expect(log.lines.filter((l) => l.level === "info").map((l) => l.msg)).toEqual(["audit checkpoints are signed again"]);
  } finally {
    await stop();
  }
  expect(metrics.render()).not.toContain("citadel_audit_checkpoint"); // removed with the checkpointer
});
