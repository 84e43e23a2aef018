/**
 * The manual entries' index: the same answers as a scan of every entry with `cidrContains`
 * (most specific allow; most severe deny, most specific of equals), both families, any prefix
 * length, expired entries left out.
 */
import { expect, test } from "bun:test";
import { ManualIndex, toCidr, type ManualEntry } from "../../../src/intel/manual-index.ts";
import { severity } from "../../../src/intel/policy.ts";
import { cidrContains, formatCidr, type Cidr, type IpAddress } from "../../../src/net/ip.ts";

const NOW = Date.UTC(2026, 10, 23);
const ACTIONS = ["throttle", "refuse", "drop"] as const;

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number) {
  return () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

function randomAddress(next: () => number, family: 4 | 6): IpAddress {
  // Few distinct leading bytes, so that entries and addresses overlap often.
  const bytes = Uint8Array.from({ length: family === 4 ? 4 : 16 }, (_, i) => (i < 2 ? Math.floor(next() * 3) : Math.floor(next() * 256)));
  return { family, bytes };
}

/** The reference: every entry scanned. */
function scan(entries: Array<{ entry: ManualEntry; cidr: Cidr }>, kind: "allow" | "deny", ip: IpAddress): ManualEntry | null {
  let best: { entry: ManualEntry; prefix: number } | null = null;
  for (const { entry, cidr } of entries) {
    if (entry.kind !== kind || (entry.until !== null && entry.until <= NOW) || !cidrContains(cidr, ip)) continue;
    const better = best === null || (kind === "deny" && severity(entry.action) > severity(best.entry.action)) || ((kind === "allow" || entry.action === best.entry.action) && cidr.prefix > best.prefix);
    if (better) best = { entry, prefix: cidr.prefix };
  }
  return best?.entry ?? null;
}

test("answers as a scan of every entry would, for random entries and addresses of both families", () => {
  const next = random(7);
  const entries: ManualEntry[] = [];
  for (let i = 0; i < 400; i++) {
    const family = next() < 0.5 ? 4 : 6;
    const ip = randomAddress(next, family);
    const target = maskedText(ip, Math.floor(next() * (family === 4 ? 33 : 129)));
    const until = next() < 0.2 ? NOW - 1 : next() < 0.5 ? null : NOW + 60_000;
    entries.push({ id: `m${i}`, kind: next() < 0.3 ? "allow" : "deny", target, action: ACTIONS[Math.floor(next() * 3)]!, until, reason: null });
  }
  const index = ManualIndex.build(entries, NOW);
  const compiled = entries.map((entry) => ({ entry, cidr: toCidr(entry.target)! }));
  const prefixOf = (entry: ManualEntry | null) => (entry === null ? null : toCidr(entry.target)!.prefix);
  for (let i = 0; i < 5000; i++) {
    const ip = randomAddress(next, next() < 0.5 ? 4 : 6);
    const denied = index.denied(ip, NOW);
    const expected = scan(compiled, "deny", ip);
    // Of equally severe, equally specific entries either may be named.
    expect([denied?.action, prefixOf(denied)]).toEqual([expected?.action, prefixOf(expected)]);
    expect(prefixOf(index.allowed(ip, NOW))).toBe(prefixOf(scan(compiled, "allow", ip)));
  }
});

test("expired entries are left out when built, and stop matching when their time comes", () => {
  const entry = (id: string, target: string, until: number | null): ManualEntry => ({ id, kind: "deny", target, action: "refuse", until, reason: null });
  const index = ManualIndex.build([entry("gone", "192.0.2.0/24", NOW), entry("later", "2001:db8::/61", NOW + 1000), entry("bad", "nonsense", null)], NOW);
  expect(index.size).toBe(1);
  const ip = { family: 6 as const, bytes: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1]) };
  expect(index.denied(ip, NOW)?.id).toBe("later");
  expect(index.denied(ip, NOW + 1000)).toBeNull();
  expect(index.denied({ ...ip, bytes: Uint8Array.from([...ip.bytes.subarray(0, 7), 8, ...ip.bytes.subarray(8)]) }, NOW)).toBeNull(); // 2001:db8:0:8::/61 is another network
});

function maskedText(ip: IpAddress, prefix: number): string {
  const bytes = ip.bytes.map((b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff));
  return formatCidr({ family: ip.family, bytes, prefix });
}
