/**
 * `citadel help secrets`, `citadel secrets`: a group's name lists its commands, on standard
 * output with exit 0 when help is asked for, on standard error with exit 2 when the group is
 * given as a command; it said "unknown command" and listed everything (found in an operator's
 * walkthrough).
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { main } from "../../../src/main.ts";

let stdout: string[];
let stderr: string[];
let spies: Array<{ mockRestore(): void }>;

beforeEach(() => {
  stdout = [];
  stderr = [];
  spies = [
    spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => (stdout.push(String(chunk)), true)),
    spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => (stderr.push(String(chunk)), true)),
  ];
});
afterEach(() => {
  for (const spy of spies) spy.mockRestore();
});

async function citadel(...argv: string[]) {
  stdout.length = 0;
  stderr.length = 0;
  const code = await main(argv, {});
  return { code, stdout: stdout.join(""), stderr: stderr.join("") };
}

describe("command groups", () => {
  test("help GROUP lists the group's commands with their summaries, exit 0", async () => {
    const run = await citadel("help", "secrets");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Usage: citadel secrets <command>");
    expect(run.stdout).toMatch(/\n {2}secrets get +Print a secret's value/);
    expect(run.stdout).toMatch(/\n {2}secrets e2ee init +/);
    expect(run.stdout).not.toContain("dns zone");
    expect(run.stderr).toBe("");
  });

  test("help GROUP SUBGROUP: dns zone", async () => {
    const run = await citadel("help", "dns", "zone");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/\n {2}dns zone delete +Remove a zone/);
    expect(run.stdout).not.toContain("dns tsig");
  });

  test("a bare group as a command: exit 2, the group's commands on standard error", async () => {
    for (const group of [["secrets"], ["dns"]]) {
      const run = await citadel(...group);
      expect(run.code).toBe(2);
      expect(run.stderr.split("\n")[0]).toBe(`citadel: ${group.join(" ")} is a group of commands: give one of them`);
      expect(run.stderr).toContain(`Usage: citadel ${group.join(" ")} <command>`);
      expect(run.stderr).not.toContain("system info");
      expect(run.stdout).toBe("");
    }
  });
});
