/**
 * `citadel recover EMAIL --clear-allowlist ID` checks everything it was given before it changes
 * anything, and does both in one write: a typo in the email left the allowlist emptied and
 * audited, while the command answered only the error (found in review).
 */
import { expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { binaryTestScope, runCitadel } from "../helpers/binary.ts";

const { dir } = binaryTestScope();

/** An initialized Citadel whose organization's allowlist shuts out the host; its organization's id. */
async function lockedOut(): Promise<{ data: string; org: string }> {
  const data = dir();
  expect((await runCitadel(["init", "--data", data])).code).toBe(0);
  const db = new Database(join(data, "citadel.db"));
  const org = db.query<{ id: string }, []>("SELECT id FROM organizations").get()!.id;
  db.query("UPDATE organizations SET ip_allowlist = '[\"10.0.0.0/8\"]' WHERE id = ?").run(org);
  db.close();
  return { data, org };
}

function state(data: string) {
  const db = new Database(join(data, "citadel.db"), { readonly: true });
  try {
    return {
      allowlists: db.query<{ ip_allowlist: string }, []>("SELECT ip_allowlist FROM organizations").all().map((o) => o.ip_allowlist),
      passwords: db.query<{ password_hash: string }, []>("SELECT password_hash FROM users ORDER BY id").all().map((u) => u.password_hash),
      recoveries: db.query<{ action: string }, []>("SELECT action FROM audit_events WHERE reason LIKE 'host-local%'").all(),
    };
  } finally {
    db.close();
  }
}

test("an unknown email: refused before the allowlist is touched", async () => {
  const { data, org } = await lockedOut();
  const before = state(data);
  const refused = await runCitadel(["recover", "nobody@example.org", "--clear-allowlist", org, "--data", data, "--yes"]);
  expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining("no user nobody@example.org")]);
  expect(state(data)).toEqual(before);
  expect(before.allowlists).toEqual(['["10.0.0.0/8"]']);
});

test("an unknown organization: refused before the operator's account is touched", async () => {
  const { data } = await lockedOut();
  const before = state(data);
  const refused = await runCitadel(["recover", "admin@localhost", "--clear-allowlist", "org_nonexistent", "--data", data, "--yes"]);
  expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining("no organization or workspace org_nonexistent")]);
  expect(state(data)).toEqual(before);
});

test("both right: both done, and recorded", async () => {
  const { data, org } = await lockedOut();
  const done = await runCitadel(["recover", "admin@localhost", "--clear-allowlist", org, "--data", data, "--yes", "--json"]);
  expect([done.code, done.stderr]).toEqual([0, ""]);
  expect(Object.keys(JSON.parse(done.stdout)).sort()).toEqual(["allowlist_cleared", "one_time_password", "operator"]);
  expect(state(data).allowlists).toEqual(["[]"]);
  expect(state(data).recoveries.map((e) => e.action).sort()).toEqual(["iam.operator.recover", "iam.organization.update"]);
});
