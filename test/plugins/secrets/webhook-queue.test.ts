/**
 * The sender's query for the next deliveries runs every second on the event loop: its cost must
 * grow with the webhooks, not with the deliveries waiting (found in review: numbering every due
 * row to keep each webhook's first took 0.3 s with 200,000 waiting).
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { secretsMigrations } from "../../../plugins/secrets/migrations.ts";
import { NEXT_DUE_FAIRLY, nextDueFairly, pruneDeliveries } from "../../../plugins/secrets/store.ts";

function queueDatabase(migrations = secretsMigrations): Database {
  const db = new Database(":memory:");
  for (const m of migrations) typeof m.up === "string" ? db.exec(m.up) : m.up(db);
  return db;
}

/** Webhook "a" in workspace "ws", its deliveries inserted in the states given, oldest first (the ids, in order). */
function withDeliveries(db: Database, states: string[], webhook = "a"): number[] {
  db.query("INSERT OR IGNORE INTO secrets_workspaces (workspace_id, organization_id, e2ee, created_at) VALUES ('ws', 'org', 0, 0)").run();
  db.query("INSERT OR IGNORE INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES (?, 'ws', 'https://x/token', x'00', 0, 'u')").run(webhook);
  const insert = db.query("INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, attempts, next_attempt_at, created_at) VALUES (?, 'e', ?, 0, 0, 0) RETURNING id");
  return states.map((state) => (insert.get(webhook, state) as { id: number }).id);
}

const idsOf = (db: Database, webhook = "a") => (db.query("SELECT id FROM secrets_webhook_deliveries WHERE webhook_id = ? ORDER BY id").all(webhook) as Array<{ id: number }>).map((r) => r.id);

test("a webhook's log is pruned to its newest deliveries; pending ones stay, however old (found in review: never pruned)", () => {
  const db = queueDatabase();
  const states = Array.from({ length: 10 }, (_, i) => (i === 1 ? "pending" : i % 2 ? "failed" : "delivered"));
  const ids = withDeliveries(db, states);
  const others = withDeliveries(db, ["delivered", "delivered"], "b");
  pruneDeliveries(db, "a", 4);
  expect(idsOf(db)).toEqual([ids[1]!, ...ids.slice(6)]);
  expect(idsOf(db, "b")).toEqual(others); // another webhook's log is its own
  pruneDeliveries(db, "b", 4); // fewer than kept: none deleted
  expect(idsOf(db, "b")).toEqual(others);
});

test("migration 0007 deletes a deleted webhook's URL and deliveries, and prunes the others' logs to their newest 100", () => {
  const db = queueDatabase(secretsMigrations.filter((m) => m.id < "0007"));
  const kept = withDeliveries(db, [...Array<string>(30).fill("delivered"), "pending", ...Array<string>(99).fill("failed"), "pending"]);
  withDeliveries(db, ["pending", "delivered"], "deleted");
  db.run("UPDATE secrets_webhooks SET deleted_at = 1 WHERE id = 'deleted'");
  for (const m of secretsMigrations.filter((m) => m.id >= "0007")) typeof m.up === "string" ? db.exec(m.up) : m.up(db);
  expect(idsOf(db)).toEqual([kept[30]!, ...kept.slice(31)]);
  expect(idsOf(db, "deleted")).toEqual([]);
  expect(db.query("SELECT id, url FROM secrets_webhooks ORDER BY id").all()).toEqual([
    { id: "a", url: "https://x/token" },
    { id: "deleted", url: "" },
  ]);
});

test("each webhook's next delivery is one probe of an index, never a scan of the deliveries", () => {
  const plan = queueDatabase()
    .query(`EXPLAIN QUERY PLAN ${NEXT_DUE_FAIRLY}`)
    .all()
    .map((row) => (row as { detail: string }).detail);
  expect(plan).toContain("SEARCH secrets_webhook_deliveries USING COVERING INDEX secrets_webhook_deliveries_pending (webhook_id=?)");
  expect(plan.filter((step) => /^SCAN (d|secrets_webhook_deliveries)\b/.test(step))).toEqual([]);
});

test("the head of each webhook: its oldest pending delivery, and only when it is due", () => {
  const db = queueDatabase();
  db.query("INSERT INTO secrets_workspaces (workspace_id, organization_id, e2ee, created_at) VALUES ('ws', 'org', 0, 0)").run();
  for (const id of ["a", "b", "c"]) db.query("INSERT INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES (?, 'ws', 'https://x', x'00', 0, 'u')").run(id);
  const deliver = (webhook: string, at: number, state = "pending") =>
    db.query("INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, attempts, next_attempt_at, created_at) VALUES (?, 'e', ?, 0, ?, 0) RETURNING id").get(webhook, state, at) as { id: number };
  deliver("a", 50, "delivered"); // not pending: never a head
  const a = deliver("a", 300);
  deliver("a", 100 + 1000); // later than a's head
  const b = deliver("b", 200);
  deliver("c", 5000); // not due yet
  const due = nextDueFairly(db, 1000, { webhooks: [], organizations: {} }, 5, 20);
  expect(due.map((d) => [d.id, d.webhook_id])).toEqual([
    [b.id, "b"],
    [a.id, "a"],
  ]);
  expect(nextDueFairly(db, 1000, { webhooks: ["b"], organizations: { org: 4 } }, 5, 20).map((d) => d.webhook_id)).toEqual(["a"]);
});

test("a webhook's deliveries go out in order: a newer one waits while the oldest pending one waits for its retry (found in review: v2 went out before v1's retry)", () => {
  const db = queueDatabase();
  const [retried, newer] = withDeliveries(db, ["pending", "pending"]) as [number, number];
  const [other] = withDeliveries(db, ["pending"], "b") as [number];
  db.run("UPDATE secrets_webhook_deliveries SET attempts = 1, next_attempt_at = 5000 WHERE id = ?", [retried]);
  // Webhook "a" waits for its retry; "b" is not held up by it.
  expect(nextDueFairly(db, 1000, { webhooks: [], organizations: {} }, 5, 20).map((d) => d.id)).toEqual([other]);
  expect(nextDueFairly(db, 5000, { webhooks: [], organizations: {} }, 5, 20).map((d) => d.id)).toEqual([other, retried]);
  // Once it is delivered (or given up), the next goes.
  db.run("UPDATE secrets_webhook_deliveries SET state = 'failed' WHERE id = ?", [retried]);
  expect(nextDueFairly(db, 1000, { webhooks: ["b"], organizations: {} }, 5, 20).map((d) => d.id)).toEqual([newer]);
});

test("a slot freed goes to the organization with the fewest attempts in flight, not to the oldest delivery (found in review: four organizations with hanging receivers took back every slot they freed, left in stop 21)", () => {
  const db = queueDatabase();
  const deliver = (organization: string, webhook: string, at: number) => {
    db.query("INSERT OR IGNORE INTO secrets_workspaces (workspace_id, organization_id, e2ee, created_at) VALUES (?, ?, 0, 0)").run(`ws-${organization}`, organization);
    db.query("INSERT OR IGNORE INTO secrets_webhooks (id, workspace_id, url, secret, created_at, created_by) VALUES (?, ?, 'https://x', x'00', 0, 'u')").run(webhook, `ws-${organization}`);
    db.query("INSERT INTO secrets_webhook_deliveries (webhook_id, event, state, attempts, next_attempt_at, created_at) VALUES (?, 'e', 'pending', 0, ?, 0)").run(webhook, at);
  };
  // Organization "a" holds 4 attempts (one freed of its 5), and has older deliveries waiting on two more webhooks.
  deliver("a", "a1", 10);
  deliver("a", "a2", 20);
  deliver("e", "e1", 500); // a newcomer's, much later
  const busy = { webhooks: [], organizations: { a: 4, b: 5, c: 5, d: 5 } };
  expect(nextDueFairly(db, 1000, busy, 5, 1).map((d) => d.webhook_id)).toEqual(["e1"]);
  // With room for more: the newcomer, then "a" within its share (one), oldest first.
  expect(nextDueFairly(db, 1000, busy, 5, 3).map((d) => d.webhook_id)).toEqual(["e1", "a1"]);
  // Equally loaded organizations: the oldest first.
  expect(nextDueFairly(db, 1000, { webhooks: [], organizations: {} }, 5, 3).map((d) => d.webhook_id)).toEqual(["a1", "e1", "a2"]);
});
