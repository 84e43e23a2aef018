/**
 * A restore must not bring mesh access back: at the first start after it, pre-auth keys
 * revoked or used and nodes removed or disabled after the backup are carried over from the
 * database the restore replaced.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { meshPlugin } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const PREVIOUS = "citadel.db.before-restore-20260601T000000Z";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

type Before = { keys: Array<{ id: string; used: number; revoked_at: number | null }>; nodes: Array<{ id: string; disabled: number }> };

/**
 * A data directory as `citadel restore` leaves it; the previous database had these keys and
 * nodes, and — unless `head` is null (a database of another history) — the backup's audit head.
 */
function restoredDataDir(before: Before | "none", head: { seq: number; hash: Uint8Array } | null = null): string {
  const dir = mkdtempSync(join(tmpdir(), "citadel-mesh-restored-"));
  dirs.push(dir);
  if (before !== "none") {
    const db = new Database(join(dir, PREVIOUS));
    db.run("CREATE TABLE mesh_preauth_keys (id TEXT PRIMARY KEY, used INTEGER, revoked_at INTEGER)");
    db.run("CREATE TABLE mesh_nodes (id TEXT PRIMARY KEY, disabled INTEGER)");
    db.run("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL)");
    for (const k of before.keys) db.query("INSERT INTO mesh_preauth_keys VALUES (?, ?, ?)").run(k.id, k.used, k.revoked_at);
    for (const n of before.nodes) db.query("INSERT INTO mesh_nodes VALUES (?, ?)").run(n.id, n.disabled);
    if (head) db.query("INSERT INTO audit_events VALUES (?, ?)").run(head.seq, head.hash);
    db.close();
  }
  writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ previous: before === "none" ? null : PREVIOUS, audit_head_seq: head?.seq ?? 1, restores: [] }));
  return dir;
}

/** A network as the backup had it: two unused single-use keys, three nodes enrolled with a reusable one. */
async function restoredMesh() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const net = `/v1/mesh/orgs/${c.owner.organization}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${c.owner.organization}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
  const key = async (reusable: boolean) => (await c.send("POST", `${net}/keys`, owner, { json: { reusable } })).body as { id: string; key: string };
  const enroll = async (key: string, name: string) => {
    const res = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey } });
    return { status: res.status, id: res.body.node?.id as string, token: res.body.token as string };
  };
  const reusable = await key(true);
  const nodes = { a: await enroll(reusable.key, "a"), b: await enroll(reusable.key, "b"), c: await enroll(reusable.key, "c") };
  const keys = { revoked: await key(false), used: await key(false), reusable };
  const config = async (token: string) => (await c.send("GET", "/v1/mesh/node/config", token)).status;
  const events = () => (c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'mesh.restore.revoke'").all() as Array<{ reason: string }>).map((e) => e.reason);
  /** Starts the mesh plugin on the data directory a restore left. */
  const start = async (dir: string) => {
    const stop = await meshPlugin.start!({ ...c.kernel, config: { ...c.config, data_dir: dir }, settings: c.config.mesh, log: c.kernel.log } as never);
    await stop();
  };
  /** The restored database's audit head: what a previous database that grew out of this backup holds too. */
  const head = () => c.kernel.store.db.query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Uint8Array };
  return { c, nodes, keys, enroll, config, events, start, head };
}

describe("mesh after a restore (found in review)", () => {
  test("keys revoked or used up and nodes disabled or removed after the backup do not work again; once per restore", async () => {
    const { nodes, keys, enroll, config, events, start, head } = await restoredMesh();
    const dir = restoredDataDir({
      keys: [
        { id: keys.revoked.id, used: 0, revoked_at: 1000 },
        { id: keys.used.id, used: 1, revoked_at: null },
        { id: keys.reusable.id, used: 3, revoked_at: null },
      ],
      nodes: [
        { id: nodes.a.id, disabled: 1 },
        { id: nodes.c.id, disabled: 0 }, // b was removed
      ],
    }, head());
    await start(dir);
    expect([(await enroll(keys.revoked.key, "d")).status, (await enroll(keys.used.key, "e")).status]).toEqual([401, 401]);
    expect([await config(nodes.a.token), await config(nodes.b.token), await config(nodes.c.token)]).toEqual([403, 403, 200]);
    await start(dir); // a start that failed later meets the marker again
    expect(events()).toEqual(["after a restore: 2 pre-auth key(s) revoked or used after the backup carried over, 2 node(s) removed or disabled after the backup disabled"]);
  });

  test("a previous database of another history (an older backup restored and run, a fresh install): only what it records is carried over (found in review: every node it did not know was disabled)", async () => {
    const { nodes, keys, enroll, config, events, start } = await restoredMesh();
    // It knows node a (disabled) and the revoked key only; b, c and the other keys are unknown to it.
    await start(restoredDataDir({ keys: [{ id: keys.revoked.id, used: 0, revoked_at: 1000 }], nodes: [{ id: nodes.a.id, disabled: 1 }] }, null));
    expect([(await enroll(keys.revoked.key, "d")).status, (await enroll(keys.used.key, "e")).status]).toEqual([401, 200]);
    expect([await config(nodes.a.token), await config(nodes.b.token), await config(nodes.c.token)]).toEqual([403, 200, 200]);
    expect(events()).toEqual([expect.stringContaining("1 pre-auth key(s) revoked or used after the backup carried over, 1 node(s) removed or disabled after the backup disabled (the previous database is not this backup's later state")]);
  });

  test("without a previous database every usable key is revoked, the nodes stay, and the event says so", async () => {
    const { nodes, keys, enroll, config, events, start } = await restoredMesh();
    await start(restoredDataDir("none"));
    expect((await enroll(keys.reusable.key, "d")).status).toBe(401);
    expect(await config(nodes.a.token)).toBe(200);
    expect(events()).toEqual([expect.stringContaining("no previous database to read from: 3 pre-auth key(s) still usable revoked")]);
  });
});
