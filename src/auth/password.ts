/**
 * Passwords: argon2id (@node-rs/argon2, which hashes on its own threads so the event loop
 * keeps serving), at least OWASP's m=19 MiB, t=2, p=1. Verifications run through a small
 * queue so that a flood of logins waits its turn instead of eating every core and all memory.
 */
import type { Algorithm } from "@node-rs/argon2";
import { randomBytes } from "node:crypto";
import { RateLimitedError } from "../errors.ts";
// Embedded in the binary by bun build --compile; MIT, from @zxcvbn-ts/language-common (its header says how it was made).
import commonPasswordList from "./common-passwords.txt" with { type: "text" };

/** Hashes waiting beyond this are refused (429): a flood gets told to retry, not queued without end. */
const MAX_WAITING = 64;

const ARGON2ID = 2 as Algorithm; // Algorithm.Argon2id (a const enum, which isolated modules cannot import)

/**
 * The native addon is loaded on first use, not at start-up: loading it (in the compiled
 * binary: extracting it to $TMPDIR, then dlopen) cost a third of the start-up time.
 */
let argon2: Promise<typeof import("@node-rs/argon2")> | undefined;
const loadArgon2 = () => (argon2 ??= import("@node-rs/argon2"));

export interface Argon2Parameters {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

export const OWASP_MINIMUM: Argon2Parameters = { memoryKiB: 19_456, iterations: 2, parallelism: 1 };

/**
 * A 32-byte key derived from a passphrase with argon2id (for client-side encryption: sealed
 * private keys, share links). NFC first: the same passphrase typed on another system may
 * arrive in another Unicode normal form.
 */
export async function passphraseKey(passphrase: string, salt: Uint8Array, p: Argon2Parameters): Promise<Buffer> {
  return (await loadArgon2()).hashRaw(passphrase.normalize("NFC"), {
    algorithm: ARGON2ID,
    memoryCost: p.memoryKiB,
    timeCost: p.iterations,
    parallelism: p.parallelism,
    outputLen: 32,
    salt,
  });
}

/**
 * How a password matched its hash: composed (NFC), as every hash is made now, or only as typed —
 * a hash made before passwords were composed, which a login replaces. False: it did not match.
 */
export type PasswordMatch = false | "composed" | "as-typed";

export class PasswordHasher {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly parameters: Argon2Parameters,
    private readonly concurrency: number,
  ) {}

  /**
   * Hashes the password composed (NFC): typed on another system (macOS input gives decomposed
   * accents), the same password may arrive in another Unicode normal form (found in review).
   */
  hash(password: string): Promise<string> {
    return this.limited(async () =>
      (await loadArgon2()).hash(password.normalize("NFC"), {
        algorithm: ARGON2ID,
        memoryCost: this.parameters.memoryKiB,
        timeCost: this.parameters.iterations,
        parallelism: this.parameters.parallelism,
      }),
    );
  }

  /**
   * Whether `password` matches `encoded`: composed (NFC) first, then, when that differs, as typed
   * (a hash made before passwords were composed); false for a mismatch or a malformed hash.
   */
  async verify(encoded: string, password: string): Promise<PasswordMatch> {
    const composed = password.normalize("NFC");
    if (await this.verifyExactly(encoded, composed)) return "composed";
    return composed !== password && (await this.verifyExactly(encoded, password)) ? "as-typed" : false;
  }

  private verifyExactly(encoded: string, password: string): Promise<boolean> {
    return this.limited(async () => (await loadArgon2()).verify(encoded, password).catch(() => false));
  }

  /**
   * Verifies against a throwaway hash made with the same parameters: a login for an
   * unknown account then takes as long as one for a known account with a wrong password.
   */
  async verifyNothing(password: string): Promise<false> {
    this.dummy ??= this.hash(randomBytes(16).toString("hex"));
    await this.verify(await this.dummy, password);
    return false;
  }

  private dummy: Promise<string> | undefined;

  /** Hashes are upgraded when the configured parameters grow. */
  needsRehash(encoded: string): boolean {
    const m = encoded.match(/^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/);
    if (!m) return true;
    return Number(m[1]) < this.parameters.memoryKiB || Number(m[2]) < this.parameters.iterations || Number(m[3]) < this.parameters.parallelism;
  }

  private async limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= MAX_WAITING) throw new RateLimitedError("Too many password checks at once; retry in a second.", 1);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

export interface PasswordPolicy {
  minLength: number;
}

/** Why a password is refused, or null. The password never appears in the message. */
export function passwordProblem(typed: string, email: string, policy: PasswordPolicy): string | null {
  const password = typed.normalize("NFC"); // as it is hashed: a decomposed accent is no extra character
  if ([...password].length < policy.minLength) return `must be at least ${policy.minLength} characters long`;
  if ([...password].length > 1024) return "must be at most 1024 characters long";
  const lower = password.toLowerCase();
  if (lower === email.toLowerCase() || lower === email.toLowerCase().split("@")[0]) return "must not be the email address";
  if (isCommon(password)) return "is one of the most common passwords";
  if (/^(.)\1+$/.test(password)) return "must not be one character repeated";
  return null;
}

/** True when `password`, in any case and Unicode form, is one of the most common passwords. */
function isCommon(password: string): boolean {
  common ??= new Set([...commonPasswordList.split("\n").filter((line) => line !== "" && !line.startsWith("#")), ...COMMON_AND_LONG]);
  return common.has(password.normalize("NFC").toLowerCase());
}

/** Built at the first check, not at start-up: ten thousand entries that only setting a password needs. */
let common: Set<string> | undefined;

/**
 * Common passwords long enough to pass the default length rule (12), which the list above (mostly
 * shorter) lacks: repetitions and keyboard walks of common ones, and a famous example.
 */
const COMMON_AND_LONG = [
  "123456789012", "1234567890123", "12345678901234", "qwertyuiopasdf", "passwordpassword", "password1234", "password12345",
  "iloveyouiloveyou", "qwertyqwerty", "123123123123", "111111111111", "000000000000", "abcdefghijkl", "abc123abc123",
  "letmeinletmein", "welcomewelcome", "administrator", "administrator1", "changeme1234", "passw0rd1234", "p@ssw0rd1234",
  "qwerty123456", "1q2w3e4r5t6y", "1qaz2wsx3edc", "zaq12wsxcde3", "asdfghjklzxc", "trustno1trustno1", "correcthorsebatterystaple",
  "correct horse battery staple", "superman1234", "football1234", "baseball1234", "princess1234", "sunshine1234", "monkey123456",
];
