import { expect, test } from "bun:test";
import { Lifecycle } from "../../src/lifecycle.ts";
import { captureLog } from "../helpers/http.ts";

test("stops in reverse order, and a failing stop does not keep the rest running", async () => {
  const { logger, lines } = captureLog();
  const lifecycle = new Lifecycle(logger);
  const order: string[] = [];
  lifecycle.started("store", () => void order.push("store"));
  lifecycle.started("broken", () => {
    throw new Error("boom");
  });
  lifecycle.started("http", async () => void order.push("http"));
  expect(await lifecycle.stopAll()).toBe(true);
  expect(order).toEqual(["http", "store"]);
  expect(lines.find((l) => l.msg === "failed to stop cleanly")?.component).toBe("broken");
});

test("gives up after the deadline, naming what still runs", async () => {
  const { logger, lines } = captureLog();
  const lifecycle = new Lifecycle(logger);
  lifecycle.started("store", () => {});
  lifecycle.started("stuck", () => new Promise<void>(() => {}));
  expect(await lifecycle.stopAll(100)).toBe(false); // "stuck" never ends: false is the deadline
  expect(lines.find((l) => l.msg === "stopping took too long; giving up")?.still_running).toEqual(["store"]);
});
