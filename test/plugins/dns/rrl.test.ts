/** Response rate limiting: a bucket per client prefix, and what a flood of new prefixes does to them. */
import { expect, test } from "bun:test";
import { ResponseRateLimiter } from "../../../plugins/dns/rrl.ts";

test("a prefix gets `rate` answers, then every slip-th limited query is truncated and the rest dropped", () => {
  const rrl = new ResponseRateLimiter({ slip: 2, now: () => 1_000 });
  const verdicts = Array.from({ length: 6 }, () => rrl.take("192.0.2.7", 3));
  expect(verdicts).toEqual(["answer", "answer", "answer", "drop", "truncate", "drop"]);
  expect(rrl.take("192.0.2.200", 3)).not.toBe("answer"); // the same /24
  expect(rrl.take("198.51.100.1", 3)).toBe("answer"); // another
});

test("a spray of spoofed prefixes does not refill the victim's bucket (found in review: the map was emptied when full)", () => {
  const rrl = new ResponseRateLimiter({ slip: 0, now: () => 1_000 }); // the clock stands: no refill
  const victim = "203.0.113.9";
  for (let i = 0; i < 5; i++) rrl.take(victim, 5);
  const victimAnswered: number[] = [];
  for (let i = 0; i < 300_000; i++) {
    rrl.take(`${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.1`, 5);
    if (i % 1_000 === 0 && rrl.take(victim, 5) === "answer") victimAnswered.push(i);
  }
  expect(victimAnswered).toEqual([]);
});

test("a clock stepped back an hour counts as no time passed: an empty bucket refills from the step on (found in review: it stayed empty for the hour)", () => {
  let now = 10_000_000;
  const rrl = new ResponseRateLimiter({ slip: 0, now: () => now });
  const answered = () => Array.from({ length: 4 }, () => rrl.take("192.0.2.7", 3)).filter((v) => v === "answer").length;
  expect(answered()).toBe(3); // the burst, then empty
  now -= 3_600_000;
  expect(rrl.take("192.0.2.7", 3)).toBe("drop"); // the step gave nothing back
  now += 1_000;
  expect(answered()).toBe(3); // a second after the step, a second's worth
});
