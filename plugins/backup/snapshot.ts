/**
 * An online, consistent copy of the live database. `VACUUM INTO` reads the whole database
 * inside one read transaction on a connection of its own: in WAL mode a reader never blocks
 * the writer, so the server keeps committing while the copy is made, and the copy is the
 * database exactly as of the moment that read transaction began — every write acknowledged
 * before it, none after. (It is also compact: free pages are left out.)
 *
 * It runs in a worker thread because it is one synchronous call (about half a second for
 * 40 MB here): on the main thread it would stall every request for that long. The worker is
 * made from source text rather than a file because the compiled binary holds one entry
 * point, and a module that only needs bun:sqlite loads fine from a blob URL.
 */
import { closeSync, openSync } from "node:fs";
import { BackupError } from "./errors.ts";

const WORKER_SOURCE = `
import { Database } from "bun:sqlite";
self.onmessage = (event) => {
  const { source, target } = event.data;
  try {
    const live = new Database(source, { readwrite: true, create: false });
    try {
      live.run("PRAGMA busy_timeout = 10000");
      live.run("VACUUM INTO ?", [target]);
    } finally {
      live.close();
    }
    const copy = new Database(target, { readonly: true });
    let integrity;
    try {
      integrity = copy.query("PRAGMA integrity_check").all().map((row) => row.integrity_check);
    } finally {
      copy.close();
    }
    postMessage({ ok: true, integrity });
  } catch (error) {
    postMessage({ ok: false, error: String(error && error.message ? error.message : error), code: error && typeof error.code === "string" ? error.code : undefined });
  }
};
`;

type WorkerAnswer = { ok: true; integrity: string[] } | { ok: false; error: string; code?: string };

/** The copy failed; `code` is SQLite's (SQLITE_FULL: the data directory's disk is full), when it gave one. */
export class SnapshotError extends BackupError {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/**
 * Copies the database at `source` (open and being written by this process) to `target`, a
 * path that must not exist yet; the copy is created mode 0600 and must pass SQLite's
 * integrity check. The caller removes `target` when this throws.
 */
export async function snapshotDatabase(source: string, target: string): Promise<void> {
  if (source === ":memory:") throw new BackupError("an in-memory database cannot be backed up");
  // VACUUM INTO accepts an existing empty file: creating it first makes it ours alone from the first byte.
  closeSync(openSync(target, "wx", 0o600));
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
  const worker = new Worker(url);
  try {
    const answer = await new Promise<WorkerAnswer>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<WorkerAnswer>) => resolve(event.data);
      worker.onerror = (event) => reject(new BackupError(`the snapshot worker failed: ${event.message}`));
      worker.postMessage({ source, target });
    });
    if (!answer.ok) throw new SnapshotError(`could not copy the database: ${answer.error}`, answer.code);
    if (answer.integrity.join() !== "ok") throw new BackupError(`the database copy fails SQLite's integrity check: ${answer.integrity.slice(0, 3).join("; ")}`);
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
}
