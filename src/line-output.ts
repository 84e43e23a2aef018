/**
 * Whole lines on a file descriptor that several writers share. Standard output carries the log
 * and, with `[audit.forward] to = "journal"`, the audit events: each line a record for journald
 * or a log shipper. A writer that stops part-way through a line (a pipe full for too long) leaves
 * it open; the next write to that descriptor, whoever's, ends it first, so that no record is
 * glued to the half of another.
 */
import { writeSync } from "node:fs";

/** The descriptors whose last write stopped part-way through a line. */
const endedMidLine = new Set<number>();

/**
 * Writes all of `text` (whole lines) to `fd`, or throws where it stopped: a closed reader at
 * once, a full pipe (EAGAIN) once it has been waited out for `patienceMs`, a millisecond at a
 * time. writeSync may take part of the text (a non-blocking pipe): the rest follows.
 */
export function writeLines(fd: number, text: string, patienceMs: number): void {
  if (endedMidLine.has(fd)) return writeRest(fd, Buffer.from(`\n${text}`), patienceMs);
  // The usual case, without copying the text into a Buffer first: all of it goes at once.
  const written = attempt(fd, text, patienceMs);
  if (written === Buffer.byteLength(text)) return;
  const bytes = Buffer.from(text);
  noteWhereItStopped(fd, bytes, written);
  writeRest(fd, bytes.subarray(written), patienceMs);
}

function writeRest(fd: number, rest: Buffer, patienceMs: number): void {
  while (rest.length > 0) {
    const written = attempt(fd, rest, patienceMs);
    noteWhereItStopped(fd, rest, written);
    rest = rest.subarray(written);
  }
}

/** Whether writing the first `written` bytes of `data` left a line open on `fd`. */
function noteWhereItStopped(fd: number, data: Buffer, written: number): void {
  if (written === 0) return;
  if (data[written - 1] === 0x0a) endedMidLine.delete(fd);
  else endedMidLine.add(fd);
}

/** One write(2), EAGAIN waited out for up to `patienceMs`; any other error, or a wait too long, is thrown. */
function attempt(fd: number, data: string | Buffer, patienceMs: number): number {
  for (let waited = 0; ; waited++) {
    try {
      return typeof data === "string" ? writeSync(fd, data) : writeSync(fd, data);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || waited >= patienceMs) throw error;
      Bun.sleepSync(1);
    }
  }
}
