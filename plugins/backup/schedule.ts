/**
 * Scheduled backups. A backup is due `interval` after this instance's newest backup in the
 * directory, whoever made it (the schedule or an operator): a restart does not make an extra
 * one, and an operator's backup on demand counts. Another Citadel's backups in a shared
 * directory do not (the service lists only this instance's). While sealed nothing is due (there is no key); after a failure the next
 * try waits `retryMs` rather than failing in a tight loop.
 */
import { CLOCK_SKEW_MS, notAhead } from "../../src/backup-clock.ts";
import type { Logger } from "../../src/log.ts";
import type { Stop } from "../../src/plugin.ts";

export { CLOCK_SKEW_MS };

/**
 * The time of the newest backup that is not dated ahead of `now`: one named while the clock was
 * ahead (a VM that booted with a bad RTC before NTP) would otherwise put off every scheduled
 * backup until that date.
 */
export function newestNotAhead(files: ReadonlyArray<{ time: Date }>, now: number): Date | null {
  return files.find((f) => notAhead(f.time.getTime(), now))?.time ?? null;
}

export interface ScheduleOptions {
  intervalMs: number;
  now: () => number;
  /** The time of this instance's newest backup, or null when there is none. */
  newest: () => Date | null | Promise<Date | null>;
  sealed: () => boolean;
  /** Makes one backup (audited by the caller). */
  run: () => Promise<unknown>;
  log: Logger;
  /** Wait after a failed backup before the next try (default: an hour, or the interval when shorter). */
  retryMs?: number;
}

export class BackupSchedule {
  private running = false;
  private retryAt = 0;

  constructor(private readonly options: ScheduleOptions) {}

  /** When the next backup is due (ms since the epoch); 0: now. */
  async dueAt(): Promise<number> {
    const newest = await this.options.newest();
    return Math.max(newest ? newest.getTime() + this.options.intervalMs : 0, this.retryAt);
  }

  /** Makes a backup when one is due; resolves with whether it made one. Never throws. */
  async tick(): Promise<boolean> {
    const { options } = this;
    if (this.running || options.sealed()) return false;
    this.running = true;
    try {
      if (options.now() < (await this.dueAt())) return false;
      await options.run();
      this.retryAt = 0;
      return true;
    } catch (error) {
      this.retryAt = options.now() + (options.retryMs ?? Math.min(options.intervalMs, 3_600_000));
      options.log.error("scheduled backup failed; will try again", { retry_at: new Date(this.retryAt).toISOString(), error });
      return false;
    } finally {
      this.running = false;
    }
  }

  /** Checks every `everyMs` (default a minute); the returned stop waits for a backup under way. */
  start(everyMs = 60_000): Stop {
    let current: Promise<boolean> | null = null;
    const check = () => {
      if (!current) current = this.tick().finally(() => (current = null));
    };
    const timer = setInterval(check, everyMs);
    timer.unref();
    check();
    return async () => {
      clearInterval(timer);
      await current;
    };
  }
}
