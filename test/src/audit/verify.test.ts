import { describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { generateKeyPairSync, sign } from "node:crypto";
import { checkpointMessage, createCheckpoint, listCheckpoints, parseCheckpointFile } from "../../../src/audit/checkpoints.ts";
import { eventHash, type StoredEvent } from "../../../src/audit/event.ts";
import { verifyAuditChain, verifyAuditChainInSlices, VerifyBusyError } from "../../../src/audit/verify.ts";
import { testKernel } from "../../helpers/http.ts";

async function logWithEvents(n: number, { checkpoint = false } = {}) {
  const k = testKernel();
  for (let i = 1; i <= n; i++) {
    await k.store.write((tx) => k.audit.record(tx, { action: "audit.note.create", actor: { kind: "operator" }, outcome: "success", reason: `note ${i}` }));
  }
  if (checkpoint) await k.store.write((tx) => createCheckpoint(tx, k.seal.keyring(), k.clock.now()));
  const db = k.store.db;
  // What an attacker with write access to the file does first.
  db.run("DROP TRIGGER audit_events_no_update");
  db.run("DROP TRIGGER audit_events_no_delete");
  db.run("DROP TRIGGER audit_checkpoints_no_delete");
  db.run("DROP TRIGGER audit_checkpoints_no_update");
  db.run("DROP TRIGGER audit_signing_keys_no_delete");
  const idAt = (seq: number) => db.query<{ id: string }, [number]>("SELECT id FROM audit_events WHERE seq = ?").get(seq)!.id;
  return { k, db, idAt };
}

const row = (db: Database, seq: number) => db.query<StoredEvent, [number]>("SELECT * FROM audit_events WHERE seq = ?").get(seq)!;

/** Rewrites every hash from `from` on, as an attacker who knows the algorithm would. */
function rechain(db: Database, from: number) {
  const rows = db.query<StoredEvent, [number]>("SELECT * FROM audit_events WHERE seq >= ? ORDER BY seq").all(from);
  let prev = row(db, from - 1).hash;
  for (const r of rows) {
    const hash = eventHash(prev, r);
    db.query("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?").run(prev, hash, r.seq);
    prev = hash;
  }
}

describe("verifyAuditChain", () => {
  test("an untouched log verifies", async () => {
    const { db } = await logWithEvents(10, { checkpoint: true });
    expect(verifyAuditChain(db)).toMatchObject({ ok: true, events: 10, first_problem: null, checkpoints: { verified: 1, latest_seq: 10 }, unsigned_tail: 0 });
  });

  test("an edited field is found, naming the event", async () => {
    const { db, idAt } = await logWithEvents(10);
    db.run("UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 4");
    expect(verifyAuditChain(db).first_problem).toEqual({ seq: 4, id: idAt(4), problem: "its contents were changed after it was written" });
  });

  test("one damaged event does not hide another: every problem is listed, and counted", async () => {
    const { db, idAt } = await logWithEvents(10);
    db.run("UPDATE audit_events SET reason = 'edited' WHERE seq IN (2, 7)");
    const report = verifyAuditChain(db);
    expect([report.ok, report.problem_count]).toEqual([false, 2]);
    expect(report.problems).toEqual([
      { seq: 2, id: idAt(2), problem: "its contents were changed after it was written" },
      { seq: 7, id: idAt(7), problem: "its contents were changed after it was written" },
    ]);
  });

  test("a deleted event is found, naming the event after the gap", async () => {
    const { db, idAt } = await logWithEvents(10);
    db.run("DELETE FROM audit_events WHERE seq = 5");
    expect(verifyAuditChain(db).first_problem).toMatchObject({ seq: 6, id: idAt(6), problem: expect.stringContaining("missing (deleted)") });
  });

  test("an edited event next to a deleted one is reported for both", async () => {
    const { db, idAt } = await logWithEvents(10);
    db.run("DELETE FROM audit_events WHERE seq = 9");
    db.run("UPDATE audit_events SET reason = 'maintenance approved' WHERE seq = 10");
    expect(verifyAuditChain(db).problems).toEqual([
      { seq: 10, id: idAt(10), problem: "events 9..9 before this one are missing (deleted)" },
      { seq: 10, id: idAt(10), problem: "its contents were changed after it was written" },
    ]);
  });

  test("an edited event that was also moved is reported as edited", async () => {
    const { db, idAt } = await logWithEvents(10);
    const eighth = idAt(8);
    db.run("UPDATE audit_events SET reason = 'edited' WHERE seq = 8");
    db.run("UPDATE audit_events SET seq = 100 WHERE seq = 8");
    db.run("UPDATE audit_events SET seq = 8 WHERE seq = 9");
    db.run("UPDATE audit_events SET seq = 9 WHERE seq = 100");
    expect(verifyAuditChain(db).problems).toContainEqual({ seq: 9, id: eighth, problem: "its contents were changed after it was written" });
  });

  test("rows of a table rebuilt without its constraints are reported, not a crash", async () => {
    const { db, idAt } = await logWithEvents(8);
    db.run("PRAGMA foreign_keys = OFF");
    db.run("CREATE TABLE loose AS SELECT * FROM audit_events"); // no STRICT, no NOT NULL
    db.run("DROP TABLE audit_events");
    db.run("ALTER TABLE loose RENAME TO audit_events");
    db.run("UPDATE audit_events SET hash = NULL WHERE seq = 3");
    db.run("UPDATE audit_events SET prev_hash = 'text' WHERE seq = 6");
    db.run("UPDATE audit_events SET time = 'noon' WHERE seq = 7");
    const report = verifyAuditChain(db);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.seq, p.id])).toEqual([
      [3, idAt(3)],
      [4, idAt(4)], // follows a row whose hash is gone
      [6, idAt(6)], // its own hash is intact: the event after it still links
      [7, idAt(7)], // its time is not the time that was hashed
    ]);
    expect(report.problems[0]!.problem).toContain("malformed");
    expect(report.problems[2]!.problem).toContain("malformed");
    expect(report.problems[3]!.problem).toBe("its contents were changed after it was written");
  });

  test("a checkpoint file that is JSON but not an object is refused with a message", () => {
    for (const text of ["null", "[]", "42", '"checkpoint"']) expect(() => parseCheckpointFile(text)).toThrow("the checkpoint file is not a Citadel audit checkpoint");
    expect(() => parseCheckpointFile("{")).toThrow("the checkpoint file is not JSON");
  });

  test("an inserted event is found", async () => {
    const { db, idAt } = await logWithEvents(10);
    const displaced = idAt(5);
    db.run("UPDATE audit_events SET seq = seq + 100 WHERE seq >= 5");
    db.run("UPDATE audit_events SET seq = seq - 99 WHERE seq >= 105");
    const forged = { ...row(db, 4), seq: 5, id: "evt_forged", reason: "forged" };
    db.query("INSERT INTO audit_events (seq, id, time, actor_kind, action, outcome, reason, subject, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").run(
      5, forged.id, forged.time, forged.actor_kind, forged.action, forged.outcome, forged.reason, forged.subject, row(db, 4).hash, eventHash(row(db, 4).hash, forged),
    );
    expect(verifyAuditChain(db).first_problem).toMatchObject({ seq: 6, id: displaced, problem: expect.stringContaining("does not follow") });
  });

  test("reordered events are found", async () => {
    const { db, idAt } = await logWithEvents(10);
    const fourth = idAt(4);
    db.run("UPDATE audit_events SET seq = 100 WHERE seq = 3");
    db.run("UPDATE audit_events SET seq = 3 WHERE seq = 4");
    db.run("UPDATE audit_events SET seq = 4 WHERE seq = 100");
    expect(verifyAuditChain(db).first_problem).toMatchObject({ seq: 3, id: fourth, problem: expect.stringContaining("does not follow") });
  });

  test("a rewritten chain (hashes recomputed) is caught by the signed checkpoint", async () => {
    const { db, idAt } = await logWithEvents(10, { checkpoint: true });
    db.run("UPDATE audit_events SET reason = 'rewritten' WHERE seq = 7");
    rechain(db, 7);
    expect(verifyAuditChain(db).first_problem).toMatchObject({ seq: 10, id: idAt(10), problem: expect.stringContaining("does not match signed checkpoint 10") });
  });

  test("truncation after a checkpoint is reported", async () => {
    const { db } = await logWithEvents(10, { checkpoint: true });
    db.run("DELETE FROM audit_events WHERE seq > 7");
    expect(verifyAuditChain(db).first_problem).toMatchObject({ seq: 8, problem: expect.stringContaining("3 events were truncated") });
  });

  test("a checkpoint file kept elsewhere catches truncation and rewriting even when the database's checkpoints are gone", async () => {
    const { db, k } = await logWithEvents(10, { checkpoint: true });
    const file = listCheckpoints(db)[0]!;
    db.run("DELETE FROM audit_checkpoints");
    db.run("DELETE FROM audit_events WHERE seq > 8");
    expect(verifyAuditChain(db).ok).toBe(true); // the database alone cannot tell
    expect(verifyAuditChain(db, { checkpoint: file }).first_problem).toMatchObject({ problem: expect.stringContaining("2 events were truncated") });
    // A forged file (another key) is refused.
    const forged = { ...file, signature: Buffer.alloc(64, 1).toString("base64") };
    expect(verifyAuditChain(db, { checkpoint: forged }).first_problem?.problem).toContain("signature of the checkpoint file is not valid");
    void k;
  });

  test("a tampered checkpoint signature is found", async () => {
    const { db } = await logWithEvents(3, { checkpoint: true });
    db.run("UPDATE audit_checkpoints SET time = time + 1");
    expect(verifyAuditChain(db).first_problem?.problem).toContain("signature of checkpoint 3 is not valid");
  });

  test("a rewritten log re-signed with a key pair the attacker added is caught when the keyring is at hand", async () => {
    const { k, db } = await logWithEvents(5, { checkpoint: true });
    db.run("UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 2");
    rechain(db, 2);
    db.run("DELETE FROM audit_checkpoints");
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const raw = publicKey.export({ format: "der", type: "spki" }).subarray(12);
    db.query("INSERT INTO audit_signing_keys (id, public_key, private_key, created_at) VALUES ('ck_forged', ?, x'00', 0)").run(raw);
    const head = row(db, 5);
    db.query("INSERT INTO audit_checkpoints (seq, hash, time, key_id, signature) VALUES (5, ?, 1, 'ck_forged', ?)").run(head.hash, sign(null, checkpointMessage(5, head.hash, 1), privateKey));
    expect(verifyAuditChain(db).ok).toBe(true); // without a key, a perfect forgery: keep a checkpoint file elsewhere
    const report = verifyAuditChain(db, { keyring: k.seal.keyring() });
    expect(report.ok).toBe(false);
    expect(report.first_problem?.problem).toContain("a key this Citadel did not make");
    expect(report.checkpoints.verified).toBe(0);
  });

  test("deleting the signing keys does not silently drop the checkpoints they signed", async () => {
    const { db } = await logWithEvents(5, { checkpoint: true });
    db.run("PRAGMA foreign_keys = OFF");
    db.run("DELETE FROM audit_signing_keys");
    db.run("DELETE FROM audit_events WHERE seq >= 3");
    const report = verifyAuditChain(db);
    expect(report.ok).toBe(false);
    expect(report.first_problem?.problem).toContain("which is gone");
  });

  test("a checkpoint file of another installation is named as such, not taken for a rewrite or a truncation (found in review)", async () => {
    const other = await logWithEvents(10, { checkpoint: true });
    const file = listCheckpoints(other.db)[0]!;
    for (const events of [12, 4]) {
      const { db } = await logWithEvents(events, { checkpoint: true });
      const report = verifyAuditChain(db, { checkpoint: file });
      expect(report.ok).toBe(false);
      expect(report.problems.map((p) => p.problem)).toEqual([`the checkpoint file is signed by key ${file.key_id}, which this log never used: another installation's file? (or this log's signing keys were deleted)`]);
    }
  });

  test("a checkpoint file whose signature fails is reported, not held to the log as an anchor (found in review: an intact log read as rewritten and truncated)", async () => {
    const { db } = await logWithEvents(10, { checkpoint: true });
    const file = listCheckpoints(db)[0]!;
    const flipped = `${file.hash.slice(0, -1)}${file.hash.endsWith("0") ? "1" : "0"}`;
    for (const changed of [{ hash: flipped }, { seq: 300_099 }, { seq: 1e21 }]) {
      const report = verifyAuditChain(db, { checkpoint: { ...file, ...changed } });
      expect([changed, report.problems.map((p) => p.problem)]).toEqual([changed, ["the signature of the checkpoint file is not valid: it anchors nothing"]]);
      expect(report).toMatchObject({ ok: false, unsigned_tail: 0, checkpoints: { verified: 1 } });
    }
    expect(verifyAuditChain(db, { checkpoint: { ...file, seq: 1e21 } }).first_problem?.seq).toBeNull(); // not an event's
  });

  test("only checkpoints whose signature verifies are counted as verified (found in review)", async () => {
    const { db } = await logWithEvents(3, { checkpoint: true });
    const file = listCheckpoints(db)[0]!;
    expect(verifyAuditChain(db, { checkpoint: file }).checkpoints.verified).toBe(2);
    const forgedFile = { ...file, signature: Buffer.alloc(64, 1).toString("base64") };
    expect(verifyAuditChain(db, { checkpoint: forgedFile }).checkpoints.verified).toBe(1);
    db.run("UPDATE audit_checkpoints SET time = time + 1"); // its signature no longer matches
    expect(verifyAuditChain(db).checkpoints.verified).toBe(0);
    db.run("PRAGMA foreign_keys = OFF");
    db.run("DELETE FROM audit_signing_keys");
    expect(verifyAuditChain(db).checkpoints.verified).toBe(0);
  });
});

describe("verifyAuditChainInSlices, for the running instance (found in review: one pass held the event loop ~3 s per million events)", () => {
  const SLICE = 7; // 25 events: four slices, the last one short

  /** Tamperings of a 25-event log with a checkpoint, each crossing or touching a slice's edge. */
  const tamperings: Array<[string, (db: Database) => void]> = [
    ["untouched", () => {}],
    ["an edit in the second slice", (db) => db.run("UPDATE audit_events SET reason = 'edited' WHERE seq = 10")],
    ["a deletion at a slice's edge", (db) => db.run("DELETE FROM audit_events WHERE seq IN (7, 8)")],
    ["events swapped across a slice's edge", (db) => {
      db.run("UPDATE audit_events SET seq = 100 WHERE seq = 7");
      db.run("UPDATE audit_events SET seq = 7 WHERE seq = 8");
      db.run("UPDATE audit_events SET seq = 8 WHERE seq = 100");
    }],
    ["truncation after the checkpoint", (db) => db.run("DELETE FROM audit_events WHERE seq > 20")],
    ["a rebuilt table whose seqs are NULL, text, repeated or past 2^53", (db) => {
      db.run("PRAGMA foreign_keys = OFF");
      db.run("CREATE TABLE loose AS SELECT * FROM audit_events");
      db.run("DROP TABLE audit_events");
      db.run("ALTER TABLE loose RENAME TO audit_events");
      db.run("UPDATE audit_events SET seq = NULL WHERE seq IN (2, 3, 4, 5, 6, 9, 10, 12)"); // more than a slice of them
      db.run("UPDATE audit_events SET seq = 'eleven' WHERE seq = 11");
      db.run("UPDATE audit_events SET seq = 14 WHERE seq = 15");
      db.run("UPDATE audit_events SET seq = 9007199254740993 WHERE seq = 16");
    }],
  ];
  for (const [name, tamper] of tamperings) {
    test(`${name}: the same report as one pass`, async () => {
      const { k, db } = await logWithEvents(25, { checkpoint: true });
      tamper(db);
      let pauses = 0;
      const sliced = await verifyAuditChainInSlices(k.store, { sliceEvents: SLICE, keyring: k.seal.keyring(), pause: async () => void pauses++ });
      expect(sliced).toEqual(verifyAuditChain(db, { keyring: k.seal.keyring() }));
      expect(pauses).toBeGreaterThan(0);
    });
  }

  test("an edit in the second slice is named", async () => {
    const { k, db, idAt } = await logWithEvents(25);
    db.run("UPDATE audit_events SET reason = 'edited' WHERE seq = 10");
    const report = await verifyAuditChainInSlices(k.store, { sliceEvents: SLICE });
    expect(report.problems).toEqual([{ seq: 10, id: idAt(10), problem: "its contents were changed after it was written" }]);
  });

  test("events and checkpoints written during the walk are left to the next one: the log as it stood at the start verifies", async () => {
    const { k } = await logWithEvents(25, { checkpoint: true });
    let written = 0;
    const pause = async () => {
      written++;
      await k.store.write((tx) => {
        k.audit.record(tx, { action: "audit.note.create", actor: { kind: "operator" }, outcome: "success", reason: `during the walk ${written}` });
        createCheckpoint(tx, k.seal.keyring(), k.clock.now());
      });
    };
    const report = await verifyAuditChainInSlices(k.store, { sliceEvents: SLICE, pause });
    expect(written).toBe(3);
    expect(report).toMatchObject({ ok: true, events: 25, head: { seq: 25 }, checkpoints: { latest_seq: 25 }, unsigned_tail: 0 });
    expect((await verifyAuditChainInSlices(k.store, { sliceEvents: SLICE })).events).toBe(28);
  });

  test("one walk of a database at a time", async () => {
    const { k } = await logWithEvents(10);
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const first = verifyAuditChainInSlices(k.store, { sliceEvents: SLICE, pause: () => held });
    await expect(verifyAuditChainInSlices(k.store)).rejects.toBeInstanceOf(VerifyBusyError);
    release();
    expect((await first).ok).toBe(true);
    expect((await verifyAuditChainInSlices(k.store)).ok).toBe(true); // free again once it is done
  });
});
