/**
 * A wrong password for an account whose hash predates stronger argon2 parameters costs what an
 * unknown email costs (found in review: its quicker check told which accounts exist). Asserted
 * by what is checked, not by the time it takes.
 */
import { afterEach, expect, spyOn, test } from "bun:test";
import { OWASP_MINIMUM, PasswordHasher } from "../../../src/auth/password.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const spies: Array<{ mockRestore(): void }> = [];
afterEach(() => spies.splice(0).forEach((spy) => spy.mockRestore()));

/** A Citadel hashing with more passes than OWASP's minimum, its owner's password hashed with the minimum (before the parameters were raised). */
async function raisedParameters() {
  const c = await newCitadel({ config: { iam: { argon2_iterations: 3 } } });
  const oldHash = await new PasswordHasher(OWASP_MINIMUM, 1).hash(c.owner.password);
  c.kernel.store.db.query("UPDATE users SET password_hash = ? WHERE email = ?").run(oldHash, c.owner.email);
  const dummyChecks = spyOn(PasswordHasher.prototype, "verifyNothing");
  spies.push(dummyChecks);
  const login = async (email: string, password: string) => (await c.send("POST", "/v1/iam/login", undefined, { json: { email, password } })).status;
  return { c, dummyChecks, login };
}

test("a wrong password for an account with an older, weaker hash is also checked against the dummy, as an unknown email is", async () => {
  const { c, dummyChecks, login } = await raisedParameters();
  expect(await login("nobody@example.org", "a-wrong-password")).toBe(401);
  expect(dummyChecks).toHaveBeenCalledTimes(1);
  expect(await login(c.owner.email, "a-wrong-password")).toBe(401);
  expect(dummyChecks).toHaveBeenCalledTimes(2);
});

test("a right password is not (and rehashes), nor is a wrong one for an account hashed with the current parameters", async () => {
  const { c, dummyChecks, login } = await raisedParameters();
  expect(await login(c.owner.email, c.owner.password)).toBe(200); // rehashed with the current parameters
  expect(await login(c.owner.email, "a-wrong-password")).toBe(401);
  expect(dummyChecks).not.toHaveBeenCalled();
});
