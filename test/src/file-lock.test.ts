import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DATA_DIRECTORY_LOCK, FileLockTimeout, holdFileLock, lockDataDirectory, withFileLock } from "../../src/file-lock.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function place() {
  const dir = mkdtempSync(join(tmpdir(), "citadel-lock-"));
  dirs.push(dir);
  return join(dir, "pins.json");
}

const MODULE = new URL("../../src/file-lock.ts", import.meta.url).pathname;

/** Another process that takes the lock, says so, and holds it until killed. */
async function holder(path: string) {
  const proc = Bun.spawn([process.execPath, "-e", `const { withFileLock } = await import(${JSON.stringify(MODULE)}); withFileLock(${JSON.stringify(path)}, () => { console.log("held"); Bun.sleepSync(60_000); });`], { stdout: "pipe" });
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain("held");
  return proc;
}

describe("withFileLock", () => {
  test("runs the function holding the lock and lets it go after, also when it throws", () => {
    const path = place();
    expect(withFileLock(path, () => withFileLock(`${path}.other`, () => "nested, another file"))).toBe("nested, another file");
    expect(() => withFileLock(path, () => { throw new Error("inside"); })).toThrow("inside");
    expect(withFileLock(path, () => "again", { waitMs: 0 })).toBe("again"); // not left held
  });

  test("an async function is refused: what it awaits would run after the lock is let go", async () => {
    const path = place();
    let after = false;
    const asyncFn = (async () => {
      await Bun.sleep(1);
      after = true;
    }) as unknown as () => number;
    expect(() => withFileLock(path, asyncFn)).toThrow(/returned a promise/);
    expect(withFileLock(path, () => "free again", { waitMs: 0 })).toBe("free again");
    await Bun.sleep(5);
    expect(after).toBe(true); // it ran on, which is why it is refused loudly
  });

  test("a lock another process holds is waited for, then refused with a clear error", async () => {
    const path = place();
    const other = await holder(path);
    try {
      expect(() => withFileLock(path, () => "never", { waitMs: 200 })).toThrow(FileLockTimeout);
    } finally {
      other.kill("SIGKILL");
      await other.exited;
    }
    // Killed while holding it: the kernel let it go with the process.
    expect(withFileLock(path, () => "mine", { waitMs: 1000 })).toBe("mine");
  });

  test("processes at the same time each get their turn: no update is lost", async () => {
    const path = place();
    writeFileSync(path, "0");
    const script = `const { withFileLock } = await import(${JSON.stringify(MODULE)}); const fs = await import("node:fs");
      for (let i = 0; i < 50; i++) withFileLock(${JSON.stringify(path)}, () => fs.writeFileSync(${JSON.stringify(path)}, String(Number(fs.readFileSync(${JSON.stringify(path)}, "utf8")) + 1)));`;
    const runs = [0, 1, 2].map(() => Bun.spawn([process.execPath, "-e", script], { stderr: "pipe" }));
    for (const run of runs) expect(await run.exited).toBe(0);
    expect(readFileSync(path, "utf8")).toBe("150");
  });
});

describe("lockDataDirectory", () => {
  const dataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-lock-data-"));
    dirs.push(dir);
    return dir;
  };

  test("one holder at a time: the one refused is told who holds it; released, it is free again (found in review)", () => {
    const dir = dataDir();
    const first = lockDataDirectory(dir, "serve");
    if ("refused" in first) throw new Error("the first lock was refused");
    expect(readFileSync(join(dir, DATA_DIRECTORY_LOCK), "utf8")).toBe(`${process.pid} serve\n`);
    // flock(2) belongs to the open file: a second open in this very process is refused as another process is.
    expect(lockDataDirectory(dir, "serve")).toEqual({ refused: `another Citadel is serving this data directory (pid ${process.pid})` });
    expect(lockDataDirectory(dir, "restore")).toEqual({ refused: `another Citadel is serving this data directory (pid ${process.pid})` });
    first.release();
    first.release(); // twice is harmless
    expect(readFileSync(join(dir, DATA_DIRECTORY_LOCK), "utf8")).toBe("");
    const restore = lockDataDirectory(dir, "restore");
    if ("refused" in restore) throw new Error("the lock was not let go");
    expect(lockDataDirectory(dir, "serve")).toEqual({ refused: `citadel restore is running on this data directory (pid ${process.pid})` });
    restore.release();
  });

  test("a holder that was killed let go with its process; what it wrote is replaced", async () => {
    const dir = dataDir();
    const script = `const { lockDataDirectory } = await import(${JSON.stringify(MODULE)}); lockDataDirectory(${JSON.stringify(dir)}, "serve"); console.log("held"); Bun.sleepSync(60_000);`;
    const other = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe" });
    try {
      const { value } = await other.stdout.getReader().read();
      expect(new TextDecoder().decode(value)).toContain("held");
      expect(lockDataDirectory(dir, "init")).toEqual({ refused: `another Citadel is serving this data directory (pid ${other.pid})` });
    } finally {
      other.kill("SIGKILL");
      await other.exited;
    }
    const mine = lockDataDirectory(dir, "init");
    if ("refused" in mine) throw new Error("a killed holder's lock was not let go");
    expect(readFileSync(join(dir, DATA_DIRECTORY_LOCK), "utf8")).toBe(`${process.pid} init\n`);
    mine.release();
  });

  test.if(process.getuid?.() === 0)("a lock file this user may not open is a configuration error naming the chown, not a bare EACCES (found in review)", () => {
    const dir = dataDir();
    chmodSync(dir, 0o777); // the other user may reach the file
    writeFileSync(join(dir, DATA_DIRECTORY_LOCK), "", { mode: 0o600 }); // root's, after a copy as root
    const script = `const { lockDataDirectory } = await import(${JSON.stringify(MODULE)}); try { lockDataDirectory(${JSON.stringify(dir)}, "serve"); console.log("locked"); } catch (e) { console.log(e.name, e.message); }`;
    const other = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bun", "-e", script], { env: { ...process.env, HOME: "/tmp" } });
    expect(other.stdout.toString().trim()).toBe(`ConfigError ${join(dir, DATA_DIRECTORY_LOCK)} cannot be opened by this user (uid 65534): give it to the data directory's owner (chown 65534 ${join(dir, DATA_DIRECTORY_LOCK)}) or remove it`);
  });
});

describe("a lock taken for an instant (found in review: a client's probe of the lock made a start at that instant refuse)", () => {
  /** Another process holds the data directory's lock for `seconds`, as a probe or a real holder would. */
  async function heldElsewhere(dir: string, seconds: number) {
    const path = join(dir, DATA_DIRECTORY_LOCK);
    writeFileSync(path, "");
    const child = Bun.spawn(["flock", "--exclusive", path, "sleep", String(seconds)]);
    // Until it holds it: our own attempt is refused (and let go at once).
    for (let i = 0; i < 200; i++) {
      const attempt = Bun.spawnSync(["flock", "--exclusive", "--nonblock", path, "true"]);
      if (attempt.exitCode !== 0) break;
      await Bun.sleep(5);
    }
    return child;
  }

  test("a lock held for a moment is waited for; one held longer is refused", async () => {
    const dir = dirname(place());
    const brief = await heldElsewhere(dir, 0.03);
    const lock = lockDataDirectory(dir, "serve");
    expect("release" in lock).toBe(true);
    if ("release" in lock) lock.release();
    await brief.exited;

    const long = await heldElsewhere(dir, 2);
    try {
      expect(lockDataDirectory(dir, "serve")).toEqual({ refused: expect.any(String) });
    } finally {
      long.kill();
      await long.exited;
    }
  });
});

describe("holdFileLock (a lock standing for something else: the host's exit routing)", () => {
  test("one holder of an open file at a time, even in one process; the refused read the holder's line; released, the file goes and the next one takes it", () => {
    const path = place();
    const first = holdFileLock(path, "first\n");
    if (first === null || "heldBy" in first) throw new Error("not held");
    expect(holdFileLock(path, "second\n")).toEqual({ heldBy: "first\n" });
    first.release();
    first.release(); // twice is harmless
    expect(existsSync(path)).toBe(false);
    const second = holdFileLock(path, "second\n");
    if (second === null || "heldBy" in second) throw new Error("not held");
    expect(readFileSync(path, "utf8")).toBe("second\n");
    second.release();
  });

  test("its file removed or replaced while held: the holder is told so, and its release removes only its own file, never the next holder's (found in review)", () => {
    const path = place();
    const first = holdFileLock(path, "first\n");
    if (first === null || "heldBy" in first) throw new Error("not held");
    expect(first.intact()).toBe(true);
    rmSync(path);
    expect(first.intact()).toBe(false);
    // A new file at the path, which another takes.
    const second = holdFileLock(path, "second\n");
    if (second === null || "heldBy" in second) throw new Error("not held");
    first.release();
    expect(readFileSync(path, "utf8")).toBe("second\n");
    expect(holdFileLock(path, "third\n")).toEqual({ heldBy: "second\n" });
    // Replaced (a file moved over it): not its own either.
    writeFileSync(`${path}.new`, "");
    renameSync(`${path}.new`, path);
    expect(second.intact()).toBe(false);
    second.release();
    expect(existsSync(path)).toBe(true);
  });

  test("processes taking and letting go at once never hold it two at a time: each holder's release removes the file while a taker may have it open, and that taker opens again (found in review: no test failed without that check)", async () => {
    const dir = dirname(place());
    const path = join(dir, "claim.lock");
    const inside = join(dir, "inside");
    // Each holder makes one marker directory while it holds the lock: EEXIST is two holders at once.
    const script = `const { holdFileLock } = await import(${JSON.stringify(MODULE)}); const fs = await import("node:fs");
      let held = 0, doubles = 0;
      while (Date.now() < Number(process.argv[1])) {
        const lock = holdFileLock(${JSON.stringify(path)}, process.pid + "\\n");
        if (lock === null) throw new Error("no flock here");
        if ("heldBy" in lock) continue;
        held++;
        try { fs.mkdirSync(${JSON.stringify(inside)}); } catch { doubles++; lock.release(); continue; }
        for (let i = 0; i < 200; i++) Math.sqrt(i);
        fs.rmdirSync(${JSON.stringify(inside)});
        lock.release();
      }
      console.log(JSON.stringify({ held, doubles }));`;
    const end = Date.now() + 2500;
    const workers = [0, 1, 2, 3].map(() => Bun.spawn([process.execPath, "-e", script, String(end)], { stdout: "pipe" }));
    const results = await Promise.all(workers.map(async (worker) => JSON.parse(await new Response(worker.stdout).text()) as { held: number; doubles: number }));
    for (const worker of workers) expect(await worker.exited).toBe(0);
    expect(results.reduce((sum, result) => sum + result.held, 0)).toBeGreaterThan(0);
    expect(results.map((result) => result.doubles)).toEqual([0, 0, 0, 0]);
  });

  test("a link at its path is not followed", () => {
    const path = place();
    writeFileSync(`${path}.target`, "x");
    symlinkSync(`${path}.target`, path);
    expect(() => holdFileLock(path, "me\n")).toThrow();
    expect(readFileSync(`${path}.target`, "utf8")).toBe("x");
  });
});
