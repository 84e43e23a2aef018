/**
 * Random-subdomain floods against one zone: NXDOMAIN answers are counted per zone over the last
 * minute, and past the threshold each one marks its asker (the shield then scores it higher).
 */
import { expect, test } from "bun:test";
import { FloodWatch } from "../../../plugins/dns/flood-watch.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { DEFAULT_POLICY, score } from "../../../src/intel/policy.ts";

test("a zone is flooded past the threshold, for the last minute only; other zones are not", () => {
  let now = Date.UTC(2026, 10, 23, 12, 0, 0);
  const watch = new FloodWatch({ perMinute: 100, now: () => now });
  const victim = parseName("example.org.", null);
  const other = parseName("example.net.", null);
  const seen: boolean[] = [];
  for (let i = 0; i < 100; i++) seen.push(watch.nxdomain(victim));
  expect(seen.indexOf(true)).toBe(99); // the 100th in a minute
  expect(watch.nxdomain(other)).toBe(false);
  now += 30_000; // half a minute later, half the previous minute still counts
  expect(watch.nxdomain(victim)).toBe(true);
  now += 120_000; // long after: calm again
  expect(watch.nxdomain(victim)).toBe(false);
  expect(new FloodWatch({ perMinute: 0, now: () => now }).nxdomain(victim)).toBe(false);
});

test("random-subdomain answers weigh more than plain NXDOMAIN in the score, with their own reason", () => {
  const zero = { failed_login: 0, invalid_token: 0, http_forbidden: 0, http_rate_limited: 0, dns_rate_limited: 0, dns_refused: 0, dns_nxdomain: 0, dns_random_subdomain: 0 };
  const geo = { country: null, asn: null, organisation: null, anonymous: null };
  const s = score(DEFAULT_POLICY, { geo, lists: [], address: { ...zero, dns_random_subdomain: 60 }, prefix: zero, halfLifeMinutes: 10 });
  expect(s.reasons.map((r) => r.text)).toEqual(["60 NXDOMAIN answers for a zone under a random-subdomain flood in the last 10 min (decaying) (+30)"]);
});

test("a reload of the zones (new origin objects, any case) keeps a zone's count (found in review: keyed by object, every zone change reset it)", () => {
  const now = Date.UTC(2026, 10, 23, 12, 0, 0);
  const watch = new FloodWatch({ perMinute: 100, now: () => now });
  const seen: boolean[] = [];
  for (let i = 0; i < 60; i++) seen.push(watch.nxdomain(parseName("example.org.", null)));
  for (let i = 0; i < 40; i++) seen.push(watch.nxdomain(parseName("Example.ORG.", null))); // reloaded, twice
  expect(seen.indexOf(true)).toBe(99);
});

test("windows are kept for zones asked about in the last two minutes only (deleted zones drop out)", () => {
  let now = Date.UTC(2026, 10, 23, 12, 0, 0);
  const watch = new FloodWatch({ perMinute: 100, now: () => now });
  for (let i = 0; i < 1000; i++) watch.nxdomain(parseName(`zone${i}.example.`, null));
  expect(watch.size).toBe(1000);
  now += 60_000;
  watch.nxdomain(parseName("zone1.example.", null));
  expect(watch.size).toBe(1000); // the previous minute still counts
  now += 60_000;
  const zone1 = parseName("zone1.example.", null);
  watch.nxdomain(zone1);
  expect(watch.size).toBe(1);
  now += 5 * 60_000; // idle, pruned, then asked again through the same object: counted where a reload finds it
  watch.nxdomain(parseName("other.example.", null));
  for (let i = 0; i < 60; i++) watch.nxdomain(zone1);
  const seen: boolean[] = [];
  for (let i = 0; i < 40; i++) seen.push(watch.nxdomain(parseName("zone1.example.", null)));
  expect(seen.indexOf(true)).toBe(39);
});
