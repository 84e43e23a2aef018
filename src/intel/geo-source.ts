/**
 * An operator's database file, kept loaded: read at start, then polled (stat every `pollMs`)
 * and reloaded when it changes. A new file is read and checked completely before it replaces
 * the one in use, so lookups never see a half-loaded database; a file that cannot be used
 * (missing, corrupt, the wrong type) is reported and the previous data stays in service.
 *
 * Polling rather than fs.watch: the usual update (geoipupdate, a cron job, configuration
 * management) writes a new file and renames it over the old, which fs.watch on the file loses
 * (the watched inode is gone) and which differs by platform on a directory watch. A stat every
 * few seconds is cheap, sees renames (the inode changes) and in-place writes (size, mtime).
 */
import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../log.ts";
import { OpenedDatabase, type Projection } from "./geo-db.ts";

export type Slot = "city" | "asn" | "anonymous";

const EXPECTED_NAMES: Record<Slot, string> = { city: "a City or Country database", asn: "an ASN database", anonymous: "an Anonymous-IP database" };

export interface SourceState {
  databaseType: string | null;
  buildDate: string | null;
  loadedAt: string | null;
  error: string | null;
}

export interface SourceOptions<Kept> {
  slot: Slot;
  path: string;
  /** The database_type must match, so that an ASN file given as the city database is refused. */
  expectedType: RegExp;
  project: Projection<Kept>;
  /** 0: read once, never reloaded. */
  pollMs: number;
  log: Logger;
  now: () => number;
  /** Called after a new database replaces the old one (answers cached elsewhere are stale). */
  onSwap: () => void;
}

export class DatabaseSource<Kept> {
  /** The database in service; replaced whole, in one assignment, by a successful reload. */
  current: OpenedDatabase<Kept> | null = null;
  readonly state: SourceState = { databaseType: null, buildDate: null, loadedAt: null, error: null };
  /** The file (device, inode, size, mtime) last tried, good or bad: it is not tried again. */
  private tried: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(private readonly options: SourceOptions<Kept>) {}

  get path(): string {
    return this.options.path;
  }

  /** Loads the file (a failure is reported, not thrown) and starts polling. */
  async start(): Promise<void> {
    await this.check();
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.closed || this.options.pollMs <= 0) return;
    // One check at a time: the next is scheduled when this one is done, however long a big file takes.
    const next = () =>
      void this.check()
        .catch((error: unknown) => this.fail(`check failed: ${String(error)}`))
        .finally(() => this.schedule());
    this.timer = setTimeout(next, this.options.pollMs);
    this.timer.unref(); // polling alone must not keep the process alive
  }

  /** Loads the file if it is not the one last tried. */
  private async check(): Promise<void> {
    const { path } = this.options;
    const before = await signature(path);
    if (before instanceof Error) {
      // Reported once per kind of trouble, not at every poll.
      if (this.tried !== before.message) this.fail(`cannot read ${path}: ${before.message}`);
      this.tried = before.message;
      return;
    }
    if (before === this.tried) return;
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (error) {
      this.tried = before;
      this.fail(`cannot read ${path}: ${(error as Error).message}`);
      return;
    }
    // Changed while we read it (a copy still being written): try again at the next poll.
    if ((await signature(path)) !== before) return;
    this.tried = before;
    if (this.closed) return;
    this.load(bytes);
  }

  private load(bytes: Buffer): void {
    const { slot, path, expectedType, project, log, now } = this.options;
    let opened: OpenedDatabase<Kept>;
    try {
      opened = new OpenedDatabase(bytes, project);
    } catch (error) {
      this.fail(`${path} is not a usable MaxMind database: ${(error as Error).message}`);
      return;
    }
    const type = opened.metadata.databaseType;
    if (!expectedType.test(type)) {
      this.fail(`${path} is a ${type} database, where ${EXPECTED_NAMES[slot]} was expected`);
      return;
    }
    this.current = opened;
    Object.assign(this.state, { databaseType: type, buildDate: opened.metadata.buildDate, loadedAt: new Date(now()).toISOString(), error: null });
    log.info("geo database loaded", { database: slot, path, type, built: opened.metadata.buildDate });
    this.options.onSwap();
  }

  private fail(error: string): void {
    this.state.error = error;
    const { slot, path, log } = this.options;
    log.error(this.current ? "geo database not reloaded: keeping the previous data" : "geo database not loaded", { database: slot, path, error });
  }
}

/** What identifies one version of a file (device, inode, size, mtime), or why there is none. */
async function signature(path: string): Promise<string | Error> {
  try {
    const s = await stat(path);
    if (!s.isFile()) return new Error("not a regular file");
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return new Error(code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (error as Error).message);
  }
}
