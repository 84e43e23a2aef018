/** A node's expiry as an operator writes it: RFC 3339 with its offset, nothing looser (found in review: "12/31" was 2001-12-31). */
import { expect, test } from "bun:test";
import { parseDateTime } from "../../../plugins/mesh/times.ts";

test("RFC 3339 date-times with an explicit offset are read, fractions and offsets included", () => {
  expect(parseDateTime("2026-12-31T00:00:00Z")).toBe(Date.UTC(2026, 11, 31));
  expect(parseDateTime("2026-12-31t00:00:00z")).toBe(Date.UTC(2026, 11, 31));
  expect(parseDateTime("2026-12-31T01:30:00+01:30")).toBe(Date.UTC(2026, 11, 31));
  expect(parseDateTime("2026-12-30T23:00:00-01:00")).toBe(Date.UTC(2026, 11, 31));
  expect(parseDateTime("2026-12-31T00:00:00.250Z")).toBe(Date.UTC(2026, 11, 31) + 250);
  expect(parseDateTime("2028-02-29T12:00:00Z")).toBe(Date.UTC(2028, 1, 29, 12));
});

test("anything looser, or impossible, is refused", () => {
  const refused = ["12/31", "1", "March 7", "-000001-01-01T00:00:00Z", "+002026-12-31T00:00:00Z", "2026-12-31", "2026-12-31T00:00:00", "2026-12-31 00:00:00Z"];
  refused.push("2026-02-29T00:00:00Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-12-31T24:00:00Z", "2026-12-31T23:60:00Z", "2026-12-31T23:59:60Z");
  refused.push("2026-12-31T00:00:00+24:00", "2026-12-31T00:00:00+01:60", "2026-12-31T00:00:00+0100", "2026-12-31T00:00:00Z ", "");
  for (const text of refused) expect([text, parseDateTime(text)]).toEqual([text, null]);
});
