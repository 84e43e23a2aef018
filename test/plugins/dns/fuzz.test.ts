/**
 * A small, seeded sample of the DNS fuzz (scripts/fuzz/dns.ts runs a million cases and more):
 * random, well-formed and mutated packets through the decoder and the answer path, every reply
 * checked. A failing case prints the command that replays it.
 */
import { describe, expect, test } from "bun:test";
import { fuzzCase, runFuzz } from "../../../scripts/fuzz/dns-cases.ts";

const SEED = 20240101;
const CASES = 20_000;

describe("dns fuzz sample", () => {
  const result = runFuzz({ cases: CASES, seed: SEED });

  test("no case fails", () => {
    const report = result.failures.map(
      (f) => `case ${f.index} (bun scripts/fuzz/dns.ts --seed ${SEED} --case ${f.index}): ${f.problems.join("; ")}`,
    );
    expect(report).toEqual([]);
    expect(result.failureCount).toBe(0);
  });

  test("the generators reach every answer path, not only garbage", () => {
    // At least 0.1% of the cases each: a generator that only makes garbage would miss most of these.
    const outcomes = ["null", "FORMERR", "NOERROR", "NXDOMAIN", "REFUSED", "NOTIMP", "BADVERS", "NOTAUTH"] as const;
    const rare = outcomes.filter((outcome) => result.histogram.udp[outcome] < CASES / 1000);
    expect(rare).toEqual([]);
    expect(result.kinds.random + result.kinds.valid + result.kinds.mutated).toBe(CASES);
  });

  test("a case is the same packet on every run", () => {
    expect(fuzzCase(SEED, 12345)).toEqual(fuzzCase(SEED, 12345));
    expect(fuzzCase(SEED, 1).packet).not.toEqual(fuzzCase(SEED, 2).packet);
  });
});
