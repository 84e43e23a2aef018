/**
 * What a failed login's audit event keeps of the "email" typed (found in review: kept verbatim,
 * though people type their password into the username field).
 */
import { expect, test } from "bun:test";
import { listAuditEvents } from "../../../src/audit/query.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const NOT_AN_EMAIL = "[not an email address]"; // as docs/identity.md names it
const emailOf = (event: { personal: unknown }) => (event.personal as { email?: string } | null)?.email;

test("an email that names no account is kept only if it looks like an email address; an account's is kept as typed", async () => {
  const c = await newCitadel();
  const typed = [
    "Tr0ub4dor&3-my-password", // a password in the username field
    "nobody@example.org", // an address with no account: kept (an attack's target)
    "two words@example.org",
    "a@b@example.org",
    "someone@localhost", // no dot in the domain
    `${"x".repeat(250)}@example.org`,
    c.owner.email.toUpperCase(), // the account's, as typed
  ];
  for (const [i, email] of typed.entries()) {
    // From an address each, so that no attempt is throttled.
    const res = await c.send("POST", "/v1/iam/login", undefined, { json: { email, password: "wrong-password-1" }, headers: { "x-test-peer": `198.51.100.${i + 1}` } });
    expect(res.status).toBe(401);
  }
  const events = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.login", outcome: "failure" }, 100).events;
  expect(events.map(emailOf).sort()).toEqual(
    [NOT_AN_EMAIL, "nobody@example.org", NOT_AN_EMAIL, NOT_AN_EMAIL, NOT_AN_EMAIL, NOT_AN_EMAIL, c.owner.email.toUpperCase()].sort(),
  );
});

test("a throttled attempt keeps no password typed as the email either", async () => {
  const c = await newCitadel();
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await c.send("POST", "/v1/iam/login", undefined, { json: { email: "hunter2 hunter2", password: "wrong-password-1" } })).status);
  expect(statuses).toContain(429);
  const events = listAuditEvents(c.kernel.store.db, c.kernel.seal.keyring(), { action: "iam.login", outcome: "failure" }, 100).events;
  expect(events.some((e) => e.reason === "throttled after repeated failures")).toBe(true);
  expect(new Set(events.map(emailOf))).toEqual(new Set([NOT_AN_EMAIL]));
});
