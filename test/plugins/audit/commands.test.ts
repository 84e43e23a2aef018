/** What the audit commands check before they ask the server (the server's side: index.test.ts and test/e2e/keys-audit.test.ts). */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { auditCommands } from "../../../plugins/audit/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("audit erase (found in review: the route asks for confirmation, the command could not give it)", () => {
  test("without --yes: a usage error, and nothing is sent", async () => {
    const run = await runCommand(auditCommands, "audit erase", { args: ["usr_alice"] });
    expect(run.code).toBe(2);
    expect(run.error?.message).toBe("this destroys the key of usr_alice's personal data in the audit log, for good: add --yes");
    expect(run.requests).toEqual([]);
  });

  test("with --yes: sent as confirmed, so the server's 428 is answered", async () => {
    const run = await runCommand(auditCommands, "audit erase", { args: ["usr_alice"], options: { yes: true }, answer: () => ({ subject: "usr_alice", keys_destroyed: 1 }) });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([{ method: "POST", path: "/v1/audit/subjects/usr_alice/erase", body: undefined, confirmed: true }]);
    expect(run.stdout).toBe("Erased usr_alice: 1 keys destroyed.\n");
  });
});

describe("flags are checked here, named as flags (found in review: the server's message named query fields)", () => {
  const refusals: Array<[string, Record<string, string>, string]> = [
    ["audit list", { limit: "abc" }, "--limit: a whole number from 1 to 1000"],
    ["audit list", { limit: "0" }, "--limit: a whole number from 1 to 1000"],
    ["audit list", { limit: "1001" }, '--limit: a whole number from 1 to 1000, not "1001" (--cursor continues after a page)'],
    ["audit list", { outcome: "bogus" }, "--outcome: one of success, failure"],
    ["audit export", { outcome: "ok" }, "--outcome: one of success, failure"],
    ["audit list", { since: "yesterday" }, "--since: an ISO 8601 date and time with its zone, such as 2026-06-01T00:00:00Z"],
    ["audit export", { until: "2026-06-01" }, "--until: an ISO 8601 date and time with its zone, such as 2026-06-01T00:00:00Z"],
    ["audit export", { format: "bogus" }, "--format: one of ndjson, csv"],
    // Found in review: Date.parse rolls a day that does not exist over (2026-02-30 is March 2nd).
    ["audit list", { since: "2026-02-30T00:00:00Z" }, "--since: an ISO 8601 date and time with its zone, such as 2026-06-01T00:00:00Z (a day and time that exist)"],
    ["audit export", { until: "2026-06-01T23:60:00Z" }, "--until: an ISO 8601 date and time with its zone"],
    ["audit list", { since: "2026-06-02T00:00:00Z", until: "2026-06-01T00:00:00Z" }, "--until: since must be before until"],
  ];
  for (const [words, options, message] of refusals) {
    test(`${words} ${JSON.stringify(options)}`, async () => {
      const run = await runCommand(auditCommands, words, { options });
      expect(run.code).not.toBe(0);
      expect(run.error?.message).toStartWith(message);
      expect(run.requests).toEqual([]);
    });
  }

  test("good values are sent as they are", async () => {
    const page = { events: [], next_cursor: null };
    const list = await runCommand(auditCommands, "audit list", { options: { limit: "1000", outcome: "failure", since: "2026-06-01T00:00:00Z" }, json: true, answer: () => page });
    expect(list.requests.map((r) => r.path)).toEqual(["/v1/audit/events?outcome=failure&since=2026-06-01T00%3A00%3A00Z&limit=1000"]);
    const exported = await runCommand(auditCommands, "audit export", { options: { format: "csv", out: "/dev/null" }, answer: () => "" });
    expect(exported.requests.map((r) => r.path)).toEqual(["/v1/audit/export?format=csv"]);
  });
});

describe("audit export --json (found in review)", () => {
  test("with --format csv it is refused (the export is JSON lines unless csv)", async () => {
    const run = await runCommand(auditCommands, "audit export", { options: { format: "csv" }, json: true });
    expect(run.code).toBe(2);
    expect(run.error?.message).toStartWith("--json with --format csv: give one");
    expect(run.requests).toEqual([]);
  });
});

describe("audit verify --checkpoint with a file that is not one (found in review: exit 1, as for a tampered log, with a raw ENOENT)", () => {
  test("a missing file, or one that is not a checkpoint, is a usage error naming the flag and the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-checkpoint-"));
    try {
      const missing = join(dir, "missing.json");
      const notJson = join(dir, "not-json.json");
      writeFileSync(notJson, "{");
      const notACheckpoint = join(dir, "other.json");
      writeFileSync(notACheckpoint, '{"format":"something else"}');
      const cases: Array<[string, string]> = [
        [missing, `--checkpoint ${missing}: no such file`],
        [notJson, `--checkpoint ${notJson}: the checkpoint file is not JSON`],
        [notACheckpoint, `--checkpoint ${notACheckpoint}: the checkpoint file is not a Citadel audit checkpoint`],
        // Without end: refused once past a bound, not read until memory runs out (found in review).
        ["/dev/zero", "--checkpoint /dev/zero: larger than 1 MiB, more than any checkpoint file"],
      ];
      for (const [file, message] of cases) {
        const run = await runCommand(auditCommands, "audit verify", { options: { checkpoint: file } });
        expect([run.code, run.error?.message]).toEqual([2, message]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("audit list (found in review: a note with a line break read as a second event)", () => {
  test("each event is one line: line breaks and tabs in what the server sends are shown as escapes", async () => {
    const event = (seq: number, reason: string) => ({ seq, time: "2026-06-01T00:00:00.000Z", outcome: "success", action: "audit.note.create", actor: { kind: "operator", user: "usr_op" }, resource: null, reason });
    const forged = "hello\n    99  2026-06-01T00:00:00.000Z  ok    sys.seal                 usr_boss";
    const run = await runCommand(auditCommands, "audit list", { answer: () => ({ events: [event(2, forged), event(1, "tab\there")], next_cursor: null }) });
    expect(run.code).toBe(0);
    expect(run.stdout.split("\n").filter(Boolean)).toEqual([
      "     2  2026-06-01T00:00:00.000Z  ok    audit.note.create        usr_op  — hello\\n    99  2026-06-01T00:00:00.000Z  ok    sys.seal                 usr_boss",
      "     1  2026-06-01T00:00:00.000Z  ok    audit.note.create        usr_op  — tab\\there",
    ]);
  });
});

describe("audit export and checkpoint --out (found in review: the server made and audited them, then the file could not be written)", () => {
  test("a path that cannot be written is a usage error and nothing is asked of the server; a device such as /dev/null is fine", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-audit-out-"));
    try {
      for (const [words, consequence] of [["audit export", "nothing was exported"], ["audit checkpoint", "no checkpoint was made"]] as const) {
        for (const [out, problem] of [
          [join(dir, "missing", "x"), `the directory ${join(dir, "missing")} does not exist`],
          [`${dir}/`, "is not a file's name"],
          [dir, "is a directory: give the file's name in it"],
        ]) {
          const run = await runCommand(auditCommands, words, { options: { out } });
          expect([run.code, run.error?.message, run.requests]).toEqual([2, `--out ${out}: ${problem}; ${consequence}`, []]);
        }
      }
      const exported = await runCommand(auditCommands, "audit export", { options: { out: "/dev/null" }, answer: () => "" });
      expect(exported.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
