import { expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";

const capture = (level: "debug" | "info" | "warn" | "error" = "info") => {
  const lines: string[] = [];
  const log = createLogger({ level, sink: (l) => lines.push(l), now: () => Date.UTC(2026, 0, 2, 3, 4, 5, 6) });
  return { lines, log };
};

test("one JSON object per line, with time, level, message, bound and own fields", () => {
  const { lines, log } = capture();
  log.with({ plugin: "dns" }).info("zone loaded", { zone: "example.org", records: 12 });
  expect(lines).toHaveLength(1);
  expect(lines[0]!.endsWith("\n")).toBe(true);
  expect(JSON.parse(lines[0]!)).toEqual({ time: "2026-01-02T03:04:05.006Z", level: "info", msg: "zone loaded", plugin: "dns", zone: "example.org", records: 12 });
});

test("lines below the level are not written", () => {
  const { lines, log } = capture("warn");
  log.info("quiet");
  log.debug("quieter");
  log.warn("loud");
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["loud"]);
  expect(log.enabled("info")).toBe(false);
  expect(log.enabled("error")).toBe(true);
});

test("errors are spelled out, with their cause, for the operator", () => {
  const { lines, log } = capture();
  log.error("failed", { error: new Error("outer", { cause: new TypeError("inner") }) });
  const error = JSON.parse(lines[0]!).error;
  expect(error).toMatchObject({ name: "Error", message: "outer", cause: { name: "TypeError", message: "inner" } });
  expect(error.stack).toContain("outer");
});

test("a preformatted line is the same JSON as a normal one", () => {
  const { lines, log } = capture();
  log.with({ plugin: "x" }).preformatted("info", "request", `"status":200,"route":"/healthz"`);
  expect(JSON.parse(lines[0]!)).toEqual({ time: "2026-01-02T03:04:05.006Z", level: "info", msg: "request", plugin: "x", status: 200, route: "/healthz" });
});
