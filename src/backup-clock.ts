/**
 * How the backup plugin, metrics and doctor agree on "the newest backup" (plugins do not import
 * each other). A backup is named by the clock when it was taken; one named while the clock was
 * ahead (a VM that booted with a bad RTC before NTP) lies in the future, and taken for the
 * newest it would hold the schedule off, give a negative age and hide how old the real newest is.
 */

/** How far ahead of the clock a backup's name may be before it is taken for one made while the clock was wrong. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** Whether a backup taken at `at` (the time in its name) counts at `now`: not ahead by more than the skew allowed. */
export const notAhead = (at: number, now: number): boolean => at <= now + CLOCK_SKEW_MS;
