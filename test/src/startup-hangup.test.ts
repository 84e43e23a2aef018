/**
 * main.ts imports startup-hangup.ts before any other module: ES modules run in the order they
 * are imported, so SIGHUP is caught while the rest load (the binary's behaviour is in
 * test/e2e/startup-hangup.test.ts). An import sorter moving it down would bring back the
 * window in which a `systemctl reload` ended the service.
 */
import { expect, test } from "bun:test";

test("startup-hangup.ts is main.ts's first import (found in review)", async () => {
  const source = await Bun.file(new URL("../../src/main.ts", import.meta.url)).text();
  const imports = [...source.matchAll(/^import\s[^;]*?from\s+"([^"]+)";/gms)].map((m) => m[1]);
  expect(imports[0]).toBe("./startup-hangup.ts");
});

test("importing it catches SIGHUP; endStartupHangups lets go", async () => {
  const before = process.listenerCount("SIGHUP");
  const fresh = await import(`../../src/startup-hangup.ts?fresh=${Date.now()}`); // a module instance of its own
  expect(process.listenerCount("SIGHUP")).toBe(before + 1);
  fresh.endStartupHangups();
  expect(process.listenerCount("SIGHUP")).toBe(before);
});
