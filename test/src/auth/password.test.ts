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
  expect(await hasher.verify(encoded, "correct-horse-battery")).toBe("composed"); // the queue drained
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

describe("passwords are composed (NFC) before hashing and checking (found in review)", () => {
  const composed = "Grüße-aus-Köln-2026".normalize("NFC");
  const decomposed = composed.normalize("NFD"); // what macOS input gives

  test("a password hashed in one Unicode form matches in the other", async () => {
    const hasher = new PasswordHasher(OWASP_MINIMUM, 1);
    expect(await hasher.verify(await hasher.hash(composed), decomposed)).toBe("composed");
    expect(await hasher.verify(await hasher.hash(decomposed), composed)).toBe("composed");
    expect(await hasher.verify(await hasher.hash(composed), "Grusse-aus-Koln-2026")).toBe(false);
  });

  test("a hash made of the password as typed, before, still matches it as typed: to be replaced", async () => {
    const hasher = new PasswordHasher(OWASP_MINIMUM, 1);
    const before = await (await import("@node-rs/argon2")).hash(decomposed, { memoryCost: OWASP_MINIMUM.memoryKiB, timeCost: OWASP_MINIMUM.iterations, parallelism: 1 });
    expect(await hasher.verify(before, decomposed)).toBe("as-typed");
  });

  test("the length rule counts characters as composed", () => {
    expect(passwordProblem("Köln-Köln-12", "someone@example.org", { minLength: 12 })).toBeNull();
    expect(passwordProblem("Köln-Köln-1".normalize("NFD"), "someone@example.org", { minLength: 12 })).toBe("must be at least 12 characters long");
  });
});
