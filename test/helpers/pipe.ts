/** Non-blocking pipes in tests: what a reader that reads only when told to would have. */
import { readSync } from "node:fs";

/** Everything waiting in a non-blocking pipe, as text. */
export function drain(fd: number): string {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    try {
      const n = readSync(fd, buffer);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") break;
      throw error;
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}
