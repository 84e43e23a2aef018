/**
 * BoundedMap: never more than its size, what was used lately survives, the generation used
 * longest ago goes whole — and a flood of new keys far past the bound stays cheap per key.
 */
import { expect, test } from "bun:test";
import { BoundedMap } from "../../src/bounded-map.ts";

test("never holds more than its size", () => {
  const map = new BoundedMap<number, number>(100);
  for (let i = 0; i < 1000; i++) {
    map.set(i, i);
    expect(map.size).toBeLessThanOrEqual(100);
  }
  expect(map.get(999)).toBe(999);
});

test("a key read since the last turn survives the next; one left alone goes with its generation", () => {
  const map = new BoundedMap<string, number>(4); // two generations of two
  map.set("used", 1);
  map.set("idle", 2);
  map.set("a", 3); // the young generation was full: "used" and "idle" are the old one now
  expect(map.get("used")).toBe(1); // read: back among the young
  map.set("b", 4); // full again: "a" and "used" age, "idle" (never read) is dropped
  expect(map.get("idle")).toBeUndefined();
  expect(map.get("used")).toBe(1);
  expect(map.get("a")).toBe(3);
  expect(map.get("b")).toBe(4);
  expect(map.size).toBeLessThanOrEqual(4);
});

test("setting a held key again neither turns a generation nor holds it twice", () => {
  const map = new BoundedMap<string, number>(4);
  map.set("x", 1);
  map.set("y", 2);
  map.set("x", 3); // young is full, but x is in it: an update
  expect(map.size).toBe(2);
  map.set("z", 4); // turns: x, y are old
  map.set("x", 5); // set again from the old generation: one copy, the new value
  expect(map.size).toBe(3);
  expect(map.get("x")).toBe(5);
  map.delete("x");
  expect(map.get("x")).toBeUndefined();
  expect(map.size).toBe(2);
});

test("500,000 new keys through a map of 1,000 finish (each costs the same, however many came before)", () => {
  const map = new BoundedMap<string, number>(1000);
  for (let i = 0; i < 500_000; i++) {
    map.set(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, i);
    if (i % 3 === 0) map.get(`10.0.0.${i & 255}`);
  }
  expect(map.size).toBeLessThanOrEqual(1000);
});
