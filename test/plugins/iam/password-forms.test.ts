/**
 * A password typed in another Unicode normal form is the same password (found in review: one set
 * composed, with ü and ö as single characters, was refused when typed on macOS, which sends the
 * accents as combining marks).
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const COMPOSED = "Grüße-aus-Köln-2026".normalize("NFC");
const DECOMPOSED = COMPOSED.normalize("NFD");
const EMAIL = "koeln@example.org";

async function withUser(password: string) {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  expect((await c.send("POST", "/v1/iam/users", operator, { json: { email: EMAIL, password } })).status).toBe(200);
  const login = async (typed: string) => (await c.send("POST", "/v1/iam/login", undefined, { json: { email: EMAIL, password: typed } })).status;
  const storedHash = () => (c.kernel.store.db.query("SELECT password_hash FROM users WHERE email = ?").get(EMAIL) as { password_hash: string }).password_hash;
  return { c, login, storedHash };
}

test("set composed, it logs in typed decomposed; set decomposed, typed composed", async () => {
  expect(await (await withUser(COMPOSED)).login(DECOMPOSED)).toBe(200);
  expect(await (await withUser(DECOMPOSED)).login(COMPOSED)).toBe(200);
});

test("a hash made of the password as typed (before passwords were composed) logs in as typed, and is replaced by a composed one", async () => {
  const { c, login, storedHash } = await withUser(COMPOSED);
  const asTyped = await (await import("@node-rs/argon2")).hash(DECOMPOSED, { memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  c.kernel.store.db.query("UPDATE users SET password_hash = ? WHERE email = ?").run(asTyped, EMAIL);
  expect(await login(COMPOSED)).toBe(401); // composed, it is not what that hash was made of
  expect(await login(DECOMPOSED)).toBe(200);
  expect(storedHash()).not.toBe(asTyped);
  expect(await login(COMPOSED)).toBe(200); // rehashed, composed
});
