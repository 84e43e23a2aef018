/**
 * Times an operator gives (a node's expiry), read strictly: Date.parse takes "12/31" as
 * 2001-12-31 and "1" as the year 2001, in the local zone, so a typo would expire a node at once
 * (its agent then cuts it off the mesh).
 */

/** RFC 3339 section 5.6: date "T" time, optional fraction, and an explicit offset. */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * Milliseconds since the epoch of an RFC 3339 date-time with its offset ("2026-12-31T00:00:00Z",
 * "2026-12-31T01:00:00+01:00"), or null for anything else, impossible dates (February 30th,
 * hour 24) included: each field must come back the same from the date it makes.
 */
export function parseDateTime(text: string): number | null {
  const match = DATE_TIME.exec(text);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const [sign, offsetHours, offsetMinutes] = [match[8], Number(match[9] ?? 0), Number(match[10] ?? 0)];
  if (offsetHours > 23 || offsetMinutes > 59) return null;
  const local = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  local.setUTCFullYear(year); // Date.UTC reads years 0–99 as 1900–1999
  const same = local.getUTCFullYear() === year && local.getUTCMonth() === month - 1 && local.getUTCDate() === day && local.getUTCHours() === hour && local.getUTCMinutes() === minute && local.getUTCSeconds() === second;
  if (!same) return null;
  const fraction = match[7] ? Math.floor(Number(match[7]) * 1000) : 0;
  const offset = (sign === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  return local.getTime() + fraction - offset;
}
