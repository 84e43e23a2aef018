import { expect, test } from "bun:test";
import { OWASP_MINIMUM, PasswordHasher } from "../../../src/auth/password.ts";
import { RateLimitedError } from "../../../src/errors.ts";

test("a flood of password checks beyond the queue is refused with 429, not queued without end", async () => {
  const hasher = new PasswordHasher(OWASP_MINIMUM, 1);
  const encoded = await hasher.hash("correct-horse-battery");
  const attempts = Array.from({ length: 70 }, () => hasher.verify(encoded, "wrong").then((ok) => ok, (error) => error));
  const results = await Promise.all(attempts);
  const refused = results.filter((r) => r instanceof RateLimitedError);
  expect(refused.length).toBe(70 - 1 - 64); // one running, 64 waiting
  expect(results.filter((r) => r === false).length).toBe(65);
  expect(await hasher.verify(encoded, "correct-horse-battery")).toBe(true); // the queue drained
});
