import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { FileLockTimeout, withFileLock } from "../../src/file-lock.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function place() {
  const dir = mkdtempSync(join(tmpdir(), "citadel-lock-"));
  dirs.push(dir);
  const path = join(dir, "pins.json");
  return { dir, path, lock: `${path}.lock` };
}

/** A lock as another holder left it, optionally `ageMs` old. */
function heldBy(lock: string, holder: string | null, ageMs = 0) {
  mkdirSync(lock);
  if (holder !== null) writeFileSync(join(lock, holder), "");
  const then = new Date(Date.now() - ageMs);
  utimesSync(lock, then, then);
}

async function deadPid(): Promise<number> {
  const gone = Bun.spawn(["true"]);
  await gone.exited;
  return gone.pid;
}

describe("withFileLock", () => {
  test("runs the function holding the lock, and leaves no lock behind, also when it throws", () => {
    const { path, lock } = place();
    expect(withFileLock(path, () => (existsSync(lock) ? readdirSync(lock) : []))).toEqual([`${process.pid}@${hostname()}`]);
    expect(existsSync(lock)).toBe(false);
    expect(() => withFileLock(path, () => { throw new Error("inside"); })).toThrow("inside");
    expect(existsSync(lock)).toBe(false);
  });

  test("a live holder is waited for, however old its lock (clocks jump; a process either runs or not)", () => {
    const { path, lock } = place();
    heldBy(lock, `${process.pid}@${hostname()}`, 3_600_000);
    expect(() => withFileLock(path, () => "never", { waitMs: 100 })).toThrow(FileLockTimeout);
    expect(readdirSync(lock)).toEqual([`${process.pid}@${hostname()}`]); // still the holder's
  });

  test("a holder that died on this host is taken over at once", async () => {
    const { dir, path, lock } = place();
    heldBy(lock, `${await deadPid()}@${hostname()}`);
    expect(withFileLock(path, () => "mine", { waitMs: 1000 })).toBe("mine");
    expect(readdirSync(dir)).toEqual([]); // nothing left aside
  });

  test("a lock with no holder file (a crash right after mkdir) is stale after 5 s, another host's after a minute", () => {
    const fresh = place();
    heldBy(fresh.lock, null);
    expect(() => withFileLock(fresh.path, () => "never", { waitMs: 100 })).toThrow(FileLockTimeout);
    const old = place();
    heldBy(old.lock, null, 10_000);
    expect(withFileLock(old.path, () => "mine")).toBe("mine");
    const foreign = place();
    heldBy(foreign.lock, "4242@another-host", 10_000);
    expect(() => withFileLock(foreign.path, () => "never", { waitMs: 100 })).toThrow(FileLockTimeout);
    const gone = place();
    heldBy(gone.lock, "4242@another-host", 120_000);
    expect(withFileLock(gone.path, () => "mine")).toBe("mine");
  });

  test("a holder whose lock was taken from it does not remove the new holder's", () => {
    const { path, lock } = place();
    withFileLock(path, () => {
      // As if another process had judged this lock dead and taken it over.
      rmSync(lock, { recursive: true });
      heldBy(lock, `${process.pid + 1}@${hostname()}`);
    });
    expect(readdirSync(lock)).toEqual([`${process.pid + 1}@${hostname()}`]);
  });

  test("processes at the same time each get their turn: no update is lost", async () => {
    const { path } = place();
    writeFileSync(path, "0");
    const module = new URL("../../src/file-lock.ts", import.meta.url).pathname;
    const script = `const { withFileLock } = await import(${JSON.stringify(module)}); const fs = await import("node:fs");
      for (let i = 0; i < 50; i++) withFileLock(${JSON.stringify(path)}, () => fs.writeFileSync(${JSON.stringify(path)}, String(Number(fs.readFileSync(${JSON.stringify(path)}, "utf8")) + 1)));`;
    const runs = [0, 1, 2].map(() => Bun.spawn(["bun", "-e", script], { stderr: "pipe" }));
    for (const run of runs) expect(await run.exited).toBe(0);
    expect(readFileSync(path, "utf8")).toBe("150");
  });
});
