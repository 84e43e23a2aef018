import { describe, expect, test } from "bun:test";
import { UnknownActionError } from "../../../src/audit/log.ts";
import { ERASED, listAuditEvents } from "../../../src/audit/query.ts";
import { verifyAuditChain } from "../../../src/audit/verify.ts";
import { subjectKeyOwner } from "../../../src/audit/event.ts";
import { testKernel } from "../../helpers/http.ts";

const ACTIONS = [{ type: "widgets.widget.create", description: "A widget was made." }];

function kernel() {
  const k = testKernel({ actions: ACTIONS });
  k.store.db.run("CREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL)");
  return k;
}

const user = { kind: "user" as const, organization: "org_1", user: "u_alice", token: "pat_ab12" };

describe("audit log", () => {
  test("a mutation and its event commit together", async () => {
    const k = kernel();
    const id = await k.store.write((tx) => {
      tx.run("INSERT INTO widgets VALUES ('w1', 'lamp')");
      return k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", resource: { type: "widget", id: "w1" }, request: { id: "req-1", source: "192.0.2.7", userAgent: "curl/8" } });
    });
    const page = listAuditEvents(k.store.db, k.seal.keyring(), {}, 10);
    expect(page.events).toHaveLength(1);
    expect(page.events[0]).toMatchObject({ id, action: "widgets.widget.create", actor: user, resource: { type: "widget", id: "w1" }, request_id: "req-1", source_address: "192.0.2.7", user_agent: "curl/8", subject: "u_alice", organization: "org_1" });
  });

  test("no change without its event: an event that cannot be written fails the change", async () => {
    const k = kernel();
    await expect(
      k.store.write((tx) => {
        tx.run("INSERT INTO widgets VALUES ('w1', 'lamp')");
        k.audit.record(tx, { action: "widgets.widget.explode", actor: user, outcome: "success" });
      }),
    ).rejects.toBeInstanceOf(UnknownActionError);
    expect(k.store.db.query("SELECT count(*) AS n FROM widgets").get()).toEqual({ n: 0 });
    expect(k.store.db.query("SELECT count(*) AS n FROM audit_events").get()).toEqual({ n: 0 });
  });

  test("no event without its change: a change that fails takes its event with it", async () => {
    const k = kernel();
    await k.store.write((tx) => tx.run("INSERT INTO widgets VALUES ('w1', 'lamp')"));
    await expect(
      k.store.write((tx) => {
        k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success" });
        tx.run("INSERT INTO widgets VALUES ('w1', 'duplicate')");
      }),
    ).rejects.toThrow(/UNIQUE/);
    expect(k.store.db.query("SELECT count(*) AS n FROM audit_events").get()).toEqual({ n: 0 });
  });

  test("an event leaves the store's change stamp where it was (what is remembered stays); its change, or a new key for its subject, moves it", async () => {
    const k = kernel();
    const event = { action: "widgets.widget.create", actor: user, outcome: "success" as const, request: { source: "192.0.2.7" } };
    const start = k.store.changeStamp();
    const system = { ...event, actor: { kind: "system" as const } };
    await Promise.all([k.store.write((tx) => k.audit.record(tx, event)), k.store.write((tx) => k.audit.record(tx, system))]); // their first: their audit keys are made
    const keyed = k.store.changeStamp();
    expect(keyed).not.toBe(start);
    await Promise.all([k.store.write((tx) => k.audit.record(tx, event)), k.store.write((tx) => k.audit.record(tx, system))]);
    expect(k.store.changeStamp()).toBe(keyed);
    await k.store.write((tx) => {
      tx.run("INSERT INTO widgets VALUES ('w1', 'lamp')");
      k.audit.record(tx, event);
    });
    expect(k.store.changeStamp()).not.toBe(keyed);
  });

  test("events written by concurrent writers form one chain", async () => {
    const k = kernel();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        k.store.write((tx) => {
          tx.query("INSERT INTO widgets VALUES (?, 'x')").run(`w${i}`);
          k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", resource: { type: "widget", id: `w${i}` } });
        }),
      ),
    );
    const report = verifyAuditChain(k.store.db);
    expect(report).toMatchObject({ ok: true, events: 50, first_problem: null });
  });

  test("text that is not well-formed Unicode (a lone surrogate, sent as \\ud800 in JSON) is hashed as it is stored: the chain still verifies (found in review)", async () => {
    const k = kernel();
    await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", resource: { type: "widget", id: "w\udfff1" }, reason: "cli\ud800" }));
    await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", reason: "after" }));
    expect(k.store.db.query("SELECT reason, resource_id FROM audit_events WHERE seq = 1").get()).toEqual({ reason: "cli\ufffd", resource_id: "w\ufffd1" });
    expect(verifyAuditChain(k.store.db)).toMatchObject({ ok: true, events: 2, first_problem: null });
  });

  test("the table refuses UPDATE and DELETE", async () => {
    const k = kernel();
    await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success" }));
    expect(() => k.store.db.run("UPDATE audit_events SET outcome = 'failure'")).toThrow(/append-only/);
    expect(() => k.store.db.run("DELETE FROM audit_events")).toThrow(/append-only/);
  });

  test("personal data is stored only encrypted; while sealed it is withheld, not stored in clear", async () => {
    const k = kernel();
    await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", request: { source: "198.51.100.23", userAgent: "Marker-UA/1.0" }, personal: { email: "alice@example.org" } }));
    k.seal.seal();
    await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor: user, outcome: "success", request: { source: "198.51.100.99" } }));
    const dump = Buffer.from(k.store.db.serialize());
    for (const marker of ["198.51.100.23", "Marker-UA", "alice@example.org", "198.51.100.99"]) expect(dump.includes(Buffer.from(marker))).toBe(false);
    const sealedRow = k.store.db.query<{ personal: Uint8Array | null }, []>("SELECT personal FROM audit_events WHERE seq = 2").get()!;
    expect(sealedRow.personal).toBeNull();
  });

  test("erasure: the subject's personal data reads [erased] and the chain still verifies", async () => {
    const k = kernel();
    const bob = { ...user, user: "u_bob" };
    for (const actor of [user, bob, user]) {
      await k.store.write((tx) => k.audit.record(tx, { action: "widgets.widget.create", actor, outcome: "success", request: { source: "203.0.113.5", userAgent: "ua" }, personal: { email: `${actor.user}@example.org` } }));
    }
    await k.store.write((tx) => k.seal.keyring().destroyOwner(tx, subjectKeyOwner("u_alice"), 5));
    const events = listAuditEvents(k.store.db, k.seal.keyring(), {}, 10).events;
    const alice = events.filter((e) => e.subject === "u_alice");
    expect(alice.map((e) => [e.source_address, e.user_agent, e.personal])).toEqual([
      [ERASED, ERASED, ERASED],
      [ERASED, ERASED, ERASED],
    ]);
    expect(events.find((e) => e.subject === "u_bob")!.personal).toEqual({ email: "u_bob@example.org" });
    expect(verifyAuditChain(k.store.db).ok).toBe(true);
  });

  test("action types are registered once, in dotted lower case", () => {
    const k = kernel();
    expect(() => k.audit.register(ACTIONS)).toThrow(/twice/);
    expect(() => k.audit.register([{ type: "Bad Type", description: "" }])).toThrow(/dotted/);
    expect(k.audit.registeredActions().map((a) => a.type)).toContain("sys.unseal");
  });
});
