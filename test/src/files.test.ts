import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileWriteProblem, writeFileAtomic, writeOwnerOnlyFile, writeOwnerOnlyFileFrom } from "../../src/files.ts";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

describe("writeOwnerOnlyFile", () => {
  test("a new file is 0600; an existing world-readable one becomes 0600 before it holds the data (found in review)", () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-files-"));
    dirs.push(dir);
    const fresh = join(dir, "new.ndjson");
    writeOwnerOnlyFile(fresh, "one\n");
    expect([statSync(fresh).mode & 0o777, readFileSync(fresh, "utf8")]).toEqual([0o600, "one\n"]);
    const existing = join(dir, "existing.ndjson");
    writeFileSync(existing, "old content that is longer\n");
    chmodSync(existing, 0o644);
    writeOwnerOnlyFile(existing, "two\n");
    expect([statSync(existing).mode & 0o777, readFileSync(existing, "utf8")]).toEqual([0o600, "two\n"]);
  });

  test("a device is written in place, not replaced", () => {
    expect(() => writeOwnerOnlyFile("/dev/null", "discarded")).not.toThrow();
    expect(statSync("/dev/null").isCharacterDevice()).toBe(true);
  });
});

describe("writeOwnerOnlyFileFrom (found in review: an export was held whole before it was written)", () => {
  test("owner-only before the first piece lands; each piece written as it comes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-files-"));
    dirs.push(dir);
    const path = join(dir, "export.ndjson");
    writeFileSync(path, "old content that is longer\n");
    chmodSync(path, 0o644);
    const seen: Array<[number, string]> = [];
    await writeOwnerOnlyFileFrom(
      path,
      (async function* () {
        for (const piece of ["one\n", "two\n"]) {
          seen.push([statSync(path).mode & 0o777, readFileSync(path, "utf8")]);
          yield Buffer.from(piece);
        }
      })(),
    );
    expect(seen).toEqual([
      [0o600, ""],
      [0o600, "one\n"],
    ]);
    expect(readFileSync(path, "utf8")).toBe("one\ntwo\n");
  });

  test("pieces that fail part-way leave no file that could pass for the whole; a device is written in place", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-files-"));
    dirs.push(dir);
    const path = join(dir, "export.ndjson");
    const failing = async function* () {
      yield Buffer.from("one\n");
      throw new Error("the answer broke off");
    };
    await expect(writeOwnerOnlyFileFrom(path, failing())).rejects.toThrow("the answer broke off");
    expect(readdirSync(dir)).toEqual([]);
    await expect(writeOwnerOnlyFileFrom("/dev/null", failing())).rejects.toThrow("the answer broke off");
    expect(statSync("/dev/null").isCharacterDevice()).toBe(true);
  });
});

describe("writeFileAtomic", () => {
  test("replaces the file whole, 0600, and never writes through a link planted where its temporary file would go (found in review)", () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-files-"));
    dirs.push(dir);
    const path = join(dir, "config.json");
    const victim = join(dir, "victim");
    writeFileSync(victim, "untouched\n");
    // The names a predictable temporary file would have taken (pid and millisecond) over the next 200 ms.
    const now = Date.now();
    for (let ms = now; ms < now + 200; ms++) symlinkSync(victim, `${path}.tmp-${process.pid}-${ms}`);
    writeFileAtomic(path, "new\n");
    expect([readFileSync(path, "utf8"), statSync(path).mode & 0o777, readFileSync(victim, "utf8")]).toEqual(["new\n", 0o600, "untouched\n"]);
    expect(readdirSync(dir).filter((n) => n.startsWith("config.json.tmp-") && !/-\d+$/.test(n))).toEqual([]); // its own temporary file is gone
  });
});

describe("fileWriteProblem: why --out cannot be written, said before a server makes what goes there", () => {
  test("a writable place; a directory there; a missing or non-directory parent; a parent closed to this user", () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-out-"));
    dirs.push(dir);
    writeFileSync(join(dir, "plain"), "x");
    expect(fileWriteProblem(join(dir, "x.backup"))).toBeNull();
    expect(fileWriteProblem(dir)).toBe("is a directory: give the file's name in it");
    // Found in review: these passed the check (resolve() made them the directory above), and the backup was made for nothing.
    for (const notAName of ["", `${join(dir, "nonexistent")}/`, `${dir}/`, ".", "..", `${dir}/..`, "x/."]) expect(fileWriteProblem(notAName)).toBe("is not a file's name");
    expect(fileWriteProblem(join(dir, "nonexistent", "x.backup"))).toBe(`the directory ${join(dir, "nonexistent")} does not exist`);
    expect(fileWriteProblem(join(dir, "plain", "x.backup"))).toBe(`${join(dir, "plain")} is not a directory`);
    expect(fileWriteProblem(join(dir, "plain", "deeper", "x.backup"))).toBe(`cannot write in ${join(dir, "plain", "deeper")}: a path component is not a directory`);
    // No mode bits stop root (these tests run as root in CI): the system's answer to another user, given.
    const denied = () => {
      throw Object.assign(new Error("EACCES: permission denied, access"), { code: "EACCES" });
    };
    expect(fileWriteProblem(join(dir, "x.backup"), { access: denied })).toBe(`cannot write in ${dir}: permission denied`);
  });

  test("in place (found in review: /dev/null and /dev/stdout were refused for their directory): a file there need only be writable itself", () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-out-"));
    dirs.push(dir);
    writeFileSync(join(dir, "made-ahead"), "");
    // The directory closed to this user (as /dev is to all but root), the file open to it.
    const onlyFiles = (at: string) => {
      if (at === dir || at === "/dev") throw Object.assign(new Error("EACCES"), { code: "EACCES" });
    };
    for (const file of [join(dir, "made-ahead"), "/dev/null"]) {
      expect(fileWriteProblem(file, { access: onlyFiles })).toStartWith("cannot write in");
      expect(fileWriteProblem(file, { inPlace: true, access: onlyFiles })).toBeNull();
    }
    expect(fileWriteProblem(join(dir, "new-file"), { inPlace: true, access: onlyFiles })).toBe(`cannot write in ${dir}: permission denied`);
    const closedFile = (at: string) => {
      if (at.endsWith("made-ahead")) throw Object.assign(new Error("EACCES"), { code: "EACCES" });
    };
    expect(fileWriteProblem(join(dir, "made-ahead"), { inPlace: true, access: closedFile })).toBe(`cannot write ${join(dir, "made-ahead")}: permission denied`);
    // Another user's file, though writable: the writer's fchmod would fail after emptying it (found in review).
    const mine = statSync(join(dir, "made-ahead")).uid;
    expect(fileWriteProblem(join(dir, "made-ahead"), { inPlace: true, uid: mine + 1 })).toBe(`is another user's file (uid ${mine}): give a new file's name, or one of yours`);
    expect(fileWriteProblem(join(dir, "made-ahead"), { inPlace: true, uid: mine })).toBeNull();
    expect(fileWriteProblem("/dev/null", { inPlace: true, uid: 12345 })).toBeNull(); // a device: not made owner-only
  });
});
