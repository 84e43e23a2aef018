/**
 * A user's email and name are shown in tables, prompts and the audit log: no control or format
 * character in them (a line break forged a row of `citadel user list`, an escape sequence could
 * clear the screen). Invitations check addresses by the same rule.
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach, testCitadel } from "../../helpers/citadel.ts";

test("user create refuses an email or a name with a control character; an invitation refuses such an address too (found in review)", async () => {
  const c = await testCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const create = (json: Record<string, unknown>) => c.send("POST", "/v1/iam/users", operator, { json });
  for (const email of ["x\u001b[2J@example.com", "x@exam\nple.com", "x\u202e@example.com"]) {
    const refused = await create({ email });
    expect([JSON.stringify(email), refused.status, refused.body.detail]).toEqual([JSON.stringify(email), 422, expect.stringContaining("not an email address")]);
    const invited = await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/invitations`, operator, { json: { email, role: "viewer" } });
    expect([JSON.stringify(email), invited.status]).toEqual([JSON.stringify(email), 422]);
  }
  for (const name of ["Eve\nusr_FAKE  boss@example.com  Boss  yes  on", "tab\there", "Eve\u001b[2J"]) {
    const refused = await create({ email: "nl@example.com", name });
    expect([JSON.stringify(name), refused.status, refused.body.detail]).toEqual([JSON.stringify(name), 422, expect.stringContaining("no control character")]);
  }
  // A name with spaces, accents and punctuation is a name.
  expect((await create({ email: "nl@example.com", name: "Ève O'Brien-Smith, Jr." })).status).toBe(200);
  expect((await create({ email: "ünïcode@exämple.com" })).status).toBe(200);
});

const newCitadel = stoppedAfterEach();

test("a name refuses line and paragraph separators and bidirectional controls, and takes the joiners real names and emoji need (found in review)", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const create = (email: string, name: string) => c.send("POST", "/v1/iam/users", operator, { json: { email, name } });
  const refusedNames = ["Eve\u2028usr_FAKE", "Eve\u2029Boss", "Eve\u202eliam", "Eve\u2066x\u2069", "Eve\u200e", "Eve\u200f", "Eve\u061c"];
  for (const name of refusedNames) {
    const refused = await create("x@example.com", name);
    expect([JSON.stringify(name), refused.status, refused.body.detail]).toEqual([JSON.stringify(name), 422, expect.stringContaining("line or paragraph separator (U+2028, U+2029) or bidirectional control")]);
  }
  // A Persian name with the zero-width non-joiner (U+200C); an emoji sequence with the joiner (U+200D).
  for (const [email, name] of [["fa@example.com", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"], ["dev@example.com", "Ada \u{1f468}\u200d\u{1f4bb}"]]) {
    const made = await create(email!, name!);
    expect([made.status, made.body.user?.name]).toEqual([200, name]);
  }
});
