/**
 * Standard output is shared by the log and the audit journal sink: a line one of them left half
 * written (a full pipe) is ended by the next write, whoever's, so no record is glued to it.
 */
import { afterEach, expect, test } from "bun:test";
import { closeSync, constants, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeLines } from "../../src/line-output.ts";
import { drain } from "../helpers/pipe.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A pipe that holds at most its 64 KiB, read only when a test says so. */
function pipe(): number {
  const dir = mkdtempSync(join(tmpdir(), "citadel-lines-"));
  const fifo = join(dir, "pipe");
  expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK); // its own reader
  cleanups.push(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return fd;
}


const line = (who: string, i: number) => `${JSON.stringify({ who, i, padding: "x".repeat(200) })}\n`;

test("a half line one writer left is ended before another writer's line on the same descriptor", () => {
  const fd = pipe();
  const backlog = Array.from({ length: 400 }, (_, i) => line("journal", i)).join(""); // more than the pipe holds
  expect(() => writeLines(fd, backlog, 0)).toThrow(/EAGAIN/);
  const cut = drain(fd);
  expect(cut).not.toEndWith("\n"); // the pipe was full part-way through a line

  writeLines(fd, line("log", 1), 0); // another writer, the same standard output
  const next = drain(fd);
  expect(next).toBe(`\n${line("log", 1)}`);
  writeLines(fd, line("log", 2), 0);
  expect(drain(fd)).toBe(line("log", 2)); // ended once, not before every line
});

test("a full pipe is waited out for the patience given, and no part is written twice or lost", async () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-lines-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, "pipe");
  expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  // A reader in another process, as journald is, that starts late: the pipe fills first.
  const reader = Bun.spawn(["bash", "-c", `sleep 0.2; exec cat "${fifo}"`], { stdout: "pipe" });
  const lines = Array.from({ length: 600 }, (_, i) => line("journal", i)).join(""); // about twice what the pipe holds
  try {
    writeLines(fd, lines, 5000);
  } finally {
    closeSync(fd); // the reader sees the end
  }
  expect(await new Response(reader.stdout).text()).toBe(lines);
});
