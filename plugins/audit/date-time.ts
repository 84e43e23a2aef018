/** The `since` and `until` of the audit filters, as the API and the CLI read them. */

/** An RFC 3339 date-time with its time zone, as the query schema takes it: date and time captured. */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}(:?\d{2})?)$/;

/**
 * The instant (ms since the epoch) an RFC 3339 date-time names, or null when it names none: not
 * of that form, or a day or time that does not exist. Date.parse rolls those over without a
 * word (found in review: since=2026-02-30 filtered from March 2nd), so the date and time must
 * read back as they were given.
 */
export function parseDateTime(value: string): number | null {
  const parts = DATE_TIME.exec(value);
  if (!parts) return null;
  const [year, month, day, hour, minute, second] = parts.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const fields = new Date(0);
  fields.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0-99 as 1900-1999
  fields.setUTCHours(hour, minute, second);
  const exists =
    fields.getUTCFullYear() === year &&
    fields.getUTCMonth() === month - 1 &&
    fields.getUTCDate() === day &&
    fields.getUTCHours() === hour &&
    fields.getUTCMinutes() === minute &&
    fields.getUTCSeconds() === second;
  const ms = Date.parse(value);
  return exists && !Number.isNaN(ms) ? ms : null;
}

/** Why a window is empty by construction: `since` (inclusive) must come before `until` (exclusive). */
export const REVERSED_WINDOW = "since must be before until: the window holds no time";
