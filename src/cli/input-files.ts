/**
 * What a command sends on (a secret's value, a file to import, a zone, a policy) or reads as a
 * secret (a passphrase), read with a bound:
 * a stream without end (`yes | citadel secrets set X`) or a file larger than any server takes is
 * refused once past that size, not read whole into memory first (found in review: it grew to
 * gigabytes). A file that cannot be read, or that is too large, is a usage error (exit 2, as a
 * file that is not what the command takes) naming it and saying why, not a runtime's ENOENT.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { HttpConfig } from "../config/schema.ts";
import { describeFsError } from "../files.ts";
import { UsageError } from "./command-line.ts";

/** The largest request body any server takes (http.body_limit_bytes at its most): no file sent whole is larger. */
export const MOST_BODY_BYTES = HttpConfig.properties.body_limit_bytes.maximum!;

/** How much may be read, and what to say when there is more. */
export interface Bound {
  bytes: number;
  tooLarge: string;
}

/** The bytes of `path`, or of standard input for "-"; `what` names it in errors. */
export async function boundedInput(path: string, what: string, bound: Bound): Promise<Uint8Array> {
  return path === "-" ? await boundedStdin(bound) : boundedFile(path, what, bound);
}

/** All of standard input, up to the bound: reading stops at the first chunk past it. */
export async function boundedStdin(bound: Bound): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of Bun.stdin.stream()) {
    size += chunk.length;
    if (size > bound.bytes) throw new UsageError(bound.tooLarge);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** A file's bytes, up to the bound: read a block at a time, so that a FIFO or a device without end stops too. */
export function boundedFile(path: string, what: string, bound: Bound): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new UsageError(`${what}: ${describeFsError(error)}`);
  }
  try {
    return readUpTo(fd, bound);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`${what}: ${describeFsError(error)}`); // a directory opens, and fails here
  } finally {
    closeSync(fd);
  }
}

const BLOCK_BYTES = 64 * 1024;

/** What an open file holds, up to the bound: a usage error (bound.tooLarge) once past it. */
export function readUpTo(fd: number, bound: Bound): Uint8Array {
  const blocks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const block = Buffer.allocUnsafe(BLOCK_BYTES);
    const read = readSync(fd, block, 0, BLOCK_BYTES, null);
    if (read === 0) return Buffer.concat(blocks, size);
    blocks.push(block.subarray(0, read));
    size += read;
    if (size > bound.bytes) throw new UsageError(bound.tooLarge);
  }
}
