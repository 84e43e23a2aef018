/**
 * A restore cannot undo crypto-shredding: keys destroyed after the backup (here by
 * `citadel audit erase`, which no erasure ledger records) are destroyed again at the first
 * start after it, once per restore, audited with the counts (found in review: the personal
 * data read again).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subjectKeyOwner } from "../../../src/audit/event.ts";
import { carryOverDestroyedKeys } from "../../../plugins/subject/restore.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const PREVIOUS = "citadel.db.before-restore-20260601T000000Z";

test("keys destroyed by an audit erase after the backup are destroyed again; once per restore", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const frank = await c.addUser(operator, "frank@example.org", "viewer");
  const db = c.kernel.store.db;
  const owner = subjectKeyOwner(frank.id);
  // In the audit log (the profile keeps the address: only the audit data was erased).
  const frankEmailReads = async () => JSON.stringify((await c.send("POST", `/v1/subject/user/${frank.id}/export`, operator)).body.data.audit).includes("frank@example.org");
  expect(await frankEmailReads()).toBe(true);

  // The backup's keys; then the audit erase; the database as it ran then is the previous one.
  const backupKeys = db.query("SELECT version, wrapped FROM deks WHERE owner = ?").all(owner) as Array<{ version: number; wrapped: Uint8Array }>;
  const ask = await c.send("POST", `/v1/audit/subjects/${frank.id}/erase`, operator);
  expect((await c.send("POST", `/v1/audit/subjects/${frank.id}/erase`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  const dir = mkdtempSync(join(tmpdir(), "citadel-restored-"));
  try {
    db.run(`VACUUM INTO '${join(dir, PREVIOUS)}'`);
    // The restore: the backup's keys are back.
    for (const key of backupKeys) db.query("UPDATE deks SET wrapped = ?, destroyed_at = NULL WHERE owner = ? AND version = ?").run(key.wrapped, owner, key.version);
    expect(await frankEmailReads()).toBe(true);
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "rst_keys", backup: "citadel-20260501T000000Z.backup", previous: PREVIOUS }));

    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toEqual({ owners: 1, keys: backupKeys.length, previousRead: true });
    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toBeNull();
    expect(await frankEmailReads()).toBe(false);
    const events = db.query("SELECT reason FROM audit_events WHERE action = 'subject.restore.keys'").all();
    expect(events).toEqual([{ reason: `after a restore: ${backupKeys.length} key(s) of 1 owner(s) destroyed after the backup destroyed again` }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("without a previous database the audit log says keys destroyed after the backup read again", async () => {
  const c = await newCitadel();
  const dir = mkdtempSync(join(tmpdir(), "citadel-restored-"));
  try {
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "rst_none", backup: "citadel-20260501T000000Z.backup", previous: null }));
    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toEqual({ owners: 0, keys: 0, previousRead: false });
    const events = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'subject.restore.keys'").all() as Array<{ reason: string }>;
    expect(events.map((e) => e.reason)).toEqual([expect.stringContaining("audit log keys shredded after the backup (audit erase) read again")]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a workspace deleted after the backup comes back readable: only audit log keys are destroyed again (found in review: every restored secret read 500)", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const db = c.kernel.store.db;
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, operator, { json: { name: "app" } })).body.id as string;
  const secret = `/v1/secrets/workspaces/${ws}/environments/development/secrets/DB_PASSWORD`;
  expect((await c.send("PUT", secret, operator, { json: { value: "hunter2" } })).status).toBe(200);
  const backupKeys = db.query("SELECT owner, version, wrapped FROM deks WHERE wrapped IS NOT NULL").all() as Array<{ owner: string; version: number; wrapped: Uint8Array }>;
  const ask = await c.send("DELETE", `/v1/iam/workspaces/${ws}`, operator);
  expect((await c.send("DELETE", `/v1/iam/workspaces/${ws}`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  const dir = mkdtempSync(join(tmpdir(), "citadel-restored-"));
  try {
    db.run(`VACUUM INTO '${join(dir, PREVIOUS)}'`);
    // The restore, as far as keys go: the backup's are back.
    for (const key of backupKeys) db.query("UPDATE deks SET wrapped = ?, destroyed_at = NULL WHERE owner = ? AND version = ?").run(key.wrapped, key.owner, key.version);
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "rst_ws", backup: "citadel-20260501T000000Z.backup", previous: PREVIOUS }));
    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toEqual({ owners: 0, keys: 0, previousRead: true });
    const readable = db.query("SELECT count(*) AS n FROM deks WHERE owner LIKE ? AND wrapped IS NOT NULL").get(`%${ws}%`) as { n: number };
    expect(readable.n).toBeGreaterThan(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("audit log keys of a subject whose erasure was done in the previous database are left to that erasure (carried over or held), not shredded here (found in review)", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const frank = await c.addUser(operator, "frank@example.org", "viewer");
  const db = c.kernel.store.db;
  const owner = subjectKeyOwner(frank.id);
  const backupKeys = db.query("SELECT version, wrapped FROM deks WHERE owner = ?").all(owner) as Array<{ version: number; wrapped: Uint8Array }>;
  expect(backupKeys.length).toBeGreaterThan(0);
  const ask = await c.send("POST", `/v1/audit/subjects/${frank.id}/erase`, operator);
  expect((await c.send("POST", `/v1/audit/subjects/${frank.id}/erase`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  const dir = mkdtempSync(join(tmpdir(), "citadel-restored-"));
  try {
    db.run(`VACUUM INTO '${join(dir, PREVIOUS)}'`);
    // The previous database's ledger names frank (an erasure of him was asked for there).
    const previous = new (await import("bun:sqlite")).Database(join(dir, PREVIOUS));
    previous.run("CREATE TABLE IF NOT EXISTS subject_erasures (id TEXT PRIMARY KEY, kind TEXT, subject_id TEXT, requested_at INTEGER, requested_by TEXT, due_at INTEGER, erased_at INTEGER, summary TEXT)");
    previous.query("INSERT INTO subject_erasures (id, kind, subject_id, requested_at, requested_by, due_at, erased_at, summary) VALUES ('era_f', 'user', ?, 0, 'usr_op', 0, 0, 'erased')").run(frank.id);
    previous.close();
    for (const key of backupKeys) db.query("UPDATE deks SET wrapped = ?, destroyed_at = NULL WHERE owner = ? AND version = ?").run(key.wrapped, owner, key.version);
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "rst_ledger", backup: "citadel-20260501T000000Z.backup", previous: PREVIOUS }));
    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toEqual({ owners: 0, keys: 0, previousRead: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an audit erase made after the backup is shredded again when the same person's erasure is only pending: it waits for its due date, the keys do not (found in review)", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const erin = await c.addUser(operator, "erin@example.org", "viewer");
  const db = c.kernel.store.db;
  const owner = subjectKeyOwner(erin.id);
  const backupKeys = db.query("SELECT version, wrapped FROM deks WHERE owner = ?").all(owner) as Array<{ version: number; wrapped: Uint8Array }>;
  expect(backupKeys.length).toBeGreaterThan(0);
  const ask = await c.send("POST", `/v1/audit/subjects/${erin.id}/erase`, operator);
  expect((await c.send("POST", `/v1/audit/subjects/${erin.id}/erase`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  // Then her full erasure, pending for the grace period.
  const path = `/v1/subject/user/${erin.id}/erasure`;
  const askErasure = await c.send("POST", path, operator);
  expect((await c.send("POST", path, operator, { headers: { "x-citadel-confirm": askErasure.body.confirmation_token } })).body.erased_at).toBeNull();
  const dir = mkdtempSync(join(tmpdir(), "citadel-restored-"));
  try {
    db.run(`VACUUM INTO '${join(dir, PREVIOUS)}'`);
    for (const key of backupKeys) db.query("UPDATE deks SET wrapped = ?, destroyed_at = NULL WHERE owner = ? AND version = ?").run(key.wrapped, owner, key.version);
    writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ id: "rst_pending", backup: "citadel-20260501T000000Z.backup", previous: PREVIOUS }));
    expect(await carryOverDestroyedKeys(c.kernel as never, dir)).toEqual({ owners: 1, keys: backupKeys.length, previousRead: true });
    const readable = db.query("SELECT count(*) AS n FROM deks WHERE owner = ? AND wrapped IS NOT NULL").get(owner) as { n: number };
    expect(readable.n).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
