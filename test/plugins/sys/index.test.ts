import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sysPlugin } from "../../../plugins/sys/index.ts";
import { systemPlugin } from "../../../plugins/system/index.ts";
import { formatRootKey, writeRootKeyFile } from "../../../src/crypto/root-key.ts";
import { listAuditEvents } from "../../../src/audit/query.ts";
import type { Kernel } from "../../../src/plugin.ts";
import { testEdge, testKernel } from "../../helpers/http.ts";

const dir = mkdtempSync(join(tmpdir(), "citadel-sys-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function edgeFor(k: Kernel, peer = "127.0.0.1") {
  return testEdge({
    peer,
    sealed: () => k.seal.sealed,
    mounts: [
      { name: "system", routes: systemPlugin.routes!(k) },
      { name: "sys", routes: sysPlugin.routes!(k) },
    ],
  });
}

function keyFileKernel() {
  const k = testKernel();
  const keyFile = join(dir, `root-${Math.random().toString(36).slice(2)}.key`);
  writeRootKeyFile(keyFile, k.rootKey);
  return { ...k, keySource: { ...k.keySource, keyFile } };
}

const actions = (k: Kernel) => listAuditEvents(k.store.db, k.seal.keyring(), {}, 100).events.map((e) => `${e.action}:${e.outcome}`).reverse();

describe("seal and unseal over HTTP", () => {
  test("sealed, every route but health, readiness and unseal answers 503 sealed", async () => {
    const k = keyFileKernel();
    const { send } = edgeFor(k);
    expect((await send("POST", "/v1/sys/seal")).body.sealed).toBe(true);
    const refused = await send("GET", "/v1/system/info");
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe("sealed");
    expect(refused.headers.get("x-request-id")).toBeTruthy();
    expect((await send("GET", "/healthz")).status).toBe(200);
    expect((await send("GET", "/v1/sys/seal-status")).body).toMatchObject({ sealed: true, method: "key_file" });
    const unsealed = await send("POST", "/v1/sys/unseal", { json: {} }); // reloads the key file
    expect(unsealed.body).toMatchObject({ unsealed: true, status: { sealed: false } });
    expect((await send("GET", "/v1/system/info")).status).toBe(200);
    expect(actions(k)).toEqual(["sys.seal:success", "sys.unseal:success"]);
  });

  test("a key file readable by others is refused, naming the file", async () => {
    const k = keyFileKernel();
    chmodSync(k.keySource.keyFile, 0o644);
    const { send } = edgeFor(k);
    await send("POST", "/v1/sys/seal");
    const res = await send("POST", "/v1/sys/unseal", { json: {} });
    expect(res.status).toBe(503); // the host's key is misconfigured: the log says why, the client gets no paths
    expect(res.body.code).toBe("unavailable");
    expect(res.text).not.toContain(k.keySource.keyFile);
    expect(k.seal.sealed).toBe(true);
    chmodSync(k.keySource.keyFile, 0o600);
    expect((await send("POST", "/v1/sys/unseal", { json: {} })).body.unsealed).toBe(true);
    expect(actions(k)).toEqual(["sys.seal:success", "sys.unseal:failure", "sys.unseal:success"]);
  });

  test("Shamir: shares one at a time; wrong ones refused and audited", async () => {
    const kk = testKernel({ sealMethod: "shamir" });
    const shares = kk.shares;
    const { send } = edgeFor(kk);
    const scenarios: Array<[unknown, number, string | number]> = [
      [{}, 422, "invalid"],
      [{ share: "citadel-share-nonsense" }, 422, "invalid"],
      [{ share: shares[0] }, 200, 1],
      [{ share: shares[0] }, 422, "invalid"],
      [{ share: 42 }, 422, "validation_failed"],
      [{ share: shares[3] }, 200, 2],
      [{ share: shares[4] }, 200, 0],
    ];
    for (const [body, status, expected] of scenarios) {
      const res = await send("POST", "/v1/sys/unseal", { json: body });
      expect([JSON.stringify(body).slice(0, 30), res.status]).toEqual([JSON.stringify(body).slice(0, 30), status]);
      if (typeof expected === "string") expect(res.body.code).toBe(expected);
      else expect(res.body.status.progress).toBe(expected);
    }
    expect(kk.seal.sealed).toBe(false);
    expect(actions(kk).filter((a) => a.startsWith("sys.unseal"))).toEqual(["sys.unseal:failure", "sys.unseal:failure", "sys.unseal:success"]);
  });

  test("operator routes refuse clients that are not on this host", async () => {
    const k = keyFileKernel();
    const { send } = edgeFor(k, "203.0.113.9");
    for (const [method, path] of [["POST", "/v1/sys/seal"], ["POST", "/v1/sys/unseal"], ["GET", "/v1/sys/keys"], ["POST", "/v1/sys/keys/rotate"], ["POST", "/v1/sys/keys/rekey"]] as const) {
      const res = await send(method, path, method === "POST" ? { json: {} } : {});
      expect([path, res.status, res.body.code]).toEqual([path, 403, "forbidden"]);
    }
    expect((await send("GET", "/v1/sys/seal-status")).status).toBe(200);
    expect(k.seal.sealed).toBe(false);
  });
});

describe("keys over HTTP", () => {
  test("status, rotation, and rotation's audit event", async () => {
    const k = keyFileKernel();
    await k.store.write((tx) => k.seal.keyring().encrypt(tx, "o", "c", "x"));
    const { send } = edgeFor(k);
    const before = await send("GET", "/v1/sys/keys");
    expect(before.body).toMatchObject({ active_kek: 1, deks: 1, deks_to_rewrap: 0, rotation_days: 90, rotation_due: false, root: { method: "key_file", state: "active" }, pending_root: null });
    const rotated = await send("POST", "/v1/sys/keys/rotate");
    expect(rotated.body).toEqual({ version: 2, rewrapped: 1 });
    const after = await send("GET", "/v1/sys/keys");
    expect(after.body.keks.map((x: { version: number; retired_at: string | null }) => [x.version, x.retired_at !== null])).toEqual([[1, true], [2, false]]);
    expect(actions(k)).toContain("keys.kek.rotate:success");
  });

  test("rekey with a key file: the file is replaced and the new key is in use at once", async () => {
    const k = keyFileKernel();
    const ct = await k.store.write((tx) => k.seal.keyring().encrypt(tx, "o", "c", "kept"));
    const oldFile = readFileSync(k.keySource.keyFile, "utf8");
    const res = await edgeFor(k).send("POST", "/v1/sys/keys/rekey", { json: {} });
    expect(res.body).toMatchObject({ active: true });
    expect(res.body.shares).toBeUndefined();
    expect(res.body.root_key).toBeUndefined(); // never sent: it is in the file
    const newFile = readFileSync(k.keySource.keyFile, "utf8");
    expect(newFile).not.toBe(oldFile);
    expect(newFile).not.toBe(formatRootKey(k.rootKey));
    expect(k.seal.keyring().rootId).toBe(res.body.key_id);
    expect(k.seal.keyring().decrypt("o", "c", ct).toString()).toBe("kept");
    expect(actions(k)).toEqual(["keys.root.rekey:success", "keys.root.promote:success"]);
  });
});
