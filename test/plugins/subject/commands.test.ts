/**
 * `citadel subject export --out FILE`: a file that cannot be written is refused before the
 * server is asked (found in review: the export was audited as made, then nothing was written);
 * a write that fails after says the export was made, and the file, in words.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subjectCommands } from "../../../plugins/subject/commands.ts";
import { runCommand } from "../../helpers/command.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-subject-out-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const exported = { subject: { kind: "user", id: "usr_erin" }, data: {} };

test("an --out whose directory does not exist, or that is a directory, is refused before anything is exported", async () => {
  for (const [out, problem] of [
    [join(root, "nonexistent", "x.json"), `the directory ${join(root, "nonexistent")} does not exist`],
    [root, "is a directory: give the file's name in it"],
  ]) {
    const run = await runCommand(subjectCommands, "subject export", { args: ["user", "usr_erin"], options: { out }, answer: () => exported });
    expect([run.code, run.error?.message]).toEqual([2, `--out ${out}: ${problem}; nothing was exported`]);
    expect(run.requests).toEqual([]);
  }
});

test("a write that fails once exported says so, naming the file, in words", async () => {
  const going = join(root, "going");
  mkdirSync(going);
  const out = join(going, "x.json");
  const answer = () => {
    rmSync(going, { recursive: true }); // the directory goes while the server exports
    return exported;
  };
  const run = await runCommand(subjectCommands, "subject export", { args: ["user", "usr_erin"], options: { out }, answer });
  expect([run.code, run.error?.message]).toEqual([1, `the export of user usr_erin was made (audited as subject.exported), but it could not be written to ${out}: no such file; export again`]);
});

test("a writable --out receives the export", async () => {
  const out = join(root, "ok.json");
  const run = await runCommand(subjectCommands, "subject export", { args: ["user", "usr_erin"], options: { out }, answer: () => exported });
  expect([run.code, JSON.parse(readFileSync(out, "utf8"))]).toEqual([0, exported]);
});
