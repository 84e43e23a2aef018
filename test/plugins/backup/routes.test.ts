/**
 * The backup API's answers when a backup cannot be made: each reason is a problem with its
 * own status (invalid input, sealed), never a 500. The app is the real one (routes, error
 * mapping) in-process, over a database file, with a stand-in guard that lets an operator in.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KERNEL_ACTIONS } from "../../../src/audit/actions.ts";
import { AuditLog } from "../../../src/audit/log.ts";
import type { Principal } from "../../../src/auth/principal.ts";
import { Keyring } from "../../../src/crypto/keyring.ts";
import { generateRootKey } from "../../../src/crypto/root-key.ts";
import { Seal } from "../../../src/crypto/seal.ts";
import type { Guard } from "../../../src/http/guard.ts";
import { requestMeta } from "../../../src/http/request-meta.ts";
import type { Kernel } from "../../../src/plugin.ts";
import { kernelMigrations } from "../../../src/store/kernel-migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";
import { openStore } from "../../../src/store/store.ts";
import { backupPlugin } from "../../../plugins/backup/index.ts";
import type { BackupSettings } from "../../../plugins/backup/settings.ts";
import { testEdge, testKernel } from "../../helpers/http.ts";

const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
});

const OPERATOR: Principal = {
  kind: "session",
  tokenId: "tok_ops",
  userId: "usr_ops",
  organizationId: null,
  scopes: "all",
  service: null,
  workspaceId: null,
  ipAllowlist: [],
  operator: true,
  mfa: true,
  mustChangePassword: false,
};
const letOperatorIn: Guard = (_spec, request) => {
  requestMeta(request).principal = OPERATOR;
  return undefined;
};

/**
 * The backup routes over a database file. `sealAfterKeysAreMade`: Citadel is sealed at the
 * service's last look at the keyring before it writes (its keys exist by then), so the
 * backup is abandoned while being written, as when an operator seals at that moment.
 */
function app(options: { sealAfterKeysAreMade?: boolean } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "citadel-backup-routes-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const base = testKernel();
  const store = openStore({ path: join(dataDir, "citadel.db") });
  cleanups.push(() => store.close());
  migrate(store.db, [{ owner: "kernel", migrations: kernelMigrations }]);
  const rootKey = generateRootKey();
  store.db.transaction(() => Keyring.initialize(store.db, rootKey, "key_file", base.clock.now()))();
  const seal = new Seal(store.db, base.clock.now);
  seal.unsealWithKey(rootKey);
  const audit = new AuditLog({ now: base.clock.now, keyring: () => seal.keyringIfUnsealed() });
  audit.register([...KERNEL_ACTIONS, ...backupPlugin.actions]);
  let looks = 0;
  const kernelSeal = {
    get sealed() {
      return seal.sealed;
    },
    onSeal: (listener: () => void) => seal.onSeal(listener),
    keyring() {
      const keyring = seal.keyring();
      // 1: refused when sealed; 2: the keys are derived; 3: the last look before writing.
      if (options.sealAfterKeysAreMade && ++looks === 3) seal.seal();
      return keyring;
    },
  };
  const settings: BackupSettings = { enabled: false, interval_hours: 24, keep: 7, dir: "backups" };
  const k = { ...base, store, audit, seal: kernelSeal, settings, config: { ...base.config, data_dir: dataDir } } as unknown as Kernel<BackupSettings>;
  const edge = testEdge({ mounts: [{ name: "backup", routes: backupPlugin.routes!(k) }], guard: letOperatorIn });
  const failures = () => store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'backup.create' AND outcome = 'failure'").all();
  return { edge, dataDir, failures };
}

describe("POST /v1/backup/snapshots", () => {
  test("a passphrase of too few characters is invalid input (422), however JSON counts it (found in review: six emoji were a 500)", async () => {
    const { edge, failures } = app();
    for (const passphrase of ["😀😀😀😀😀😀", "short"]) {
      const res = await edge.send("POST", "/v1/backup/snapshots", { json: { passphrase } });
      expect([passphrase, res.status, res.body.code]).toEqual([passphrase, 422, "invalid"]);
      expect(res.body.errors).toEqual([{ field: "passphrase", message: "a backup passphrase needs at least 12 characters" }]);
    }
    expect(failures()).toEqual([]); // refused as input, as the schema refuses: nothing was attempted
  });

  test("sealed while the backup is written: 503 sealed, and the failure is audited (found in review: a 500)", async () => {
    const { edge, dataDir, failures } = app({ sealAfterKeysAreMade: true });
    const res = await edge.send("POST", "/v1/backup/snapshots", { json: {} });
    expect([res.status, res.body.code, res.body.detail]).toEqual([503, "sealed", "the backup was abandoned: Citadel was sealed while it was being written"]);
    expect(readdirSync(join(dataDir, "backups"))).toEqual([]);
    expect(failures()).toEqual([{ reason: "the backup was abandoned: Citadel was sealed while it was being written" }]);
  });
});
