import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { secretsMigrations } from "../../../plugins/secrets/migrations.ts";

test("0009 gives every stored version the time its value was set: its own; for a secret's current copy the time its row kept; for an older copy the newest value set before it (the guess made before)", () => {
  const db = new Database(":memory:");
  db.run("CREATE TABLE secret_versions (secret_id TEXT, version INTEGER, origin TEXT, created_at INTEGER)");
  db.run("CREATE TABLE secrets (id TEXT, version INTEGER, rotated_at INTEGER)");
  // sec_c's current version is a copy of its v1: the rollback set its rotated_at from v1 (found in review: the guess made it v2's).
  for (const row of [["sec_a", 4, 400], ["sec_b", 1, 600], ["sec_c", 3, 700]] as const) db.query("INSERT INTO secrets VALUES (?, ?, ?)").run(...row);
  const rows = [
    ["sec_a", 1, "set", 100],
    ["sec_a", 2, "import", 200],
    ["sec_a", 3, "rollback", 300],
    ["sec_a", 4, "rotate", 400],
    ["sec_a", 5, "rollback", 500],
    ["sec_b", 1, "rollback", 600], // no version before it (a damaged history): its own time
    ["sec_c", 1, "set", 700],
    ["sec_c", 2, "set", 800],
    ["sec_c", 3, "rollback", 900],
  ] as const;
  for (const row of rows) db.query("INSERT INTO secret_versions VALUES (?, ?, ?, ?)").run(...row);
  db.run(secretsMigrations.find((m) => m.id === "0009_version_value_set_at")!.up as string);
  expect(db.query("SELECT secret_id, version, value_set_at FROM secret_versions ORDER BY secret_id, version").all()).toEqual([
    { secret_id: "sec_a", version: 1, value_set_at: 100 },
    { secret_id: "sec_a", version: 2, value_set_at: 200 },
    { secret_id: "sec_a", version: 3, value_set_at: 200 },
    { secret_id: "sec_a", version: 4, value_set_at: 400 },
    { secret_id: "sec_a", version: 5, value_set_at: 400 },
    { secret_id: "sec_b", version: 1, value_set_at: 600 },
    { secret_id: "sec_c", version: 1, value_set_at: 700 },
    { secret_id: "sec_c", version: 2, value_set_at: 800 },
    { secret_id: "sec_c", version: 3, value_set_at: 700 },
  ]);
});
