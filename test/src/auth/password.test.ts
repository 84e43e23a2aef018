import { describe, expect, test } from "bun:test";
import { OWASP_MINIMUM, PasswordHasher, passwordProblem } from "../../../src/auth/password.ts";
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

describe("the most common passwords are refused, at every length the rules allow (found in review)", () => {
  const shortest = { minLength: 8 }; // the least iam.password_min_length allows
  const refused = (password: string) => passwordProblem(password, "someone@example.org", shortest);

  test("the commonest of 8 characters and more, in any case", () => {
    for (const password of ["password", "12345678", "qwertyui", "iloveyou", "PassWord", "ILOVEYOU", "sunshine1"]) {
      expect([password, refused(password)]).toEqual([password, "is one of the most common passwords"]);
    }
  });

  test("the whole list, the last entry too, and the longer ones it lacks", () => {
    expect(refused("dalmatio")).toBe("is one of the most common passwords"); // the last of the 10,000
    expect(refused("Correct Horse Battery Staple")).toBe("is one of the most common passwords");
    expect(refused("qwertyqwerty")).toBe("is one of the most common passwords");
  });

  test("a password not on the list passes", () => {
    expect(refused("violet-harbour-27")).toBeNull();
  });
});
