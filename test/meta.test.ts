/** Facts about the repository that keep the build reproducible. */
import { expect, test } from "bun:test";
import pkg from "../package.json" with { type: "json" };

test("CI installs the Bun version that package.json pins", async () => {
  const ci = await Bun.file(new URL("../.ci/run", import.meta.url)).text();
  const pinned = ci.match(/^BUN_VERSION=(\S+)/m)?.[1];
  expect(`bun@${pinned}`).toBe(pkg.packageManager);
  expect(pkg.engines.bun).toBe(pinned!);
  expect(Bun.version).toBe(pinned!); // the suite itself runs on the pinned Bun
});

test("dependencies are pinned to exact versions", () => {
  for (const [name, version] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
    expect([name, version]).toEqual([name, expect.stringMatching(/^\d+\.\d+\.\d+$/)]);
  }
});

const sources = async (dir: string) => {
  const files: string[] = [];
  for await (const path of new Bun.Glob(`${dir}/**/*.ts`).scan({ cwd: new URL("..", import.meta.url).pathname })) files.push(path);
  return files;
};
const read = (path: string) => Bun.file(new URL(`../${path}`, import.meta.url)).text();

test("nothing below src/main.ts reads process.env (configuration flows one way)", async () => {
  const offenders: string[] = [];
  for (const file of [...(await sources("src")), ...(await sources("plugins"))]) {
    if (file === "src/main.ts") continue;
    if (/process\.env\b|Bun\.env\b|import\.meta\.env\b/.test(await read(file))) offenders.push(file);
  }
  expect(offenders).toEqual([]);
});

test("plugins import from src/, never from another plugin", async () => {
  const offenders: string[] = [];
  for (const file of await sources("plugins")) {
    const own = file.split("/")[1];
    for (const [, target] of (await read(file)).matchAll(/from\s+"([^"]+)"/g)) {
      const other = target!.match(/(?:^|\/)plugins\/([^/]+)\//)?.[1] ?? (target!.startsWith("../") && !target!.startsWith("../../") ? target!.split("/")[1] : undefined);
      if (other && other !== own) offenders.push(`${file} → ${target}`);
    }
  }
  expect(offenders).toEqual([]);
});

test("a migration, once released, is never edited (a database that applied it would refuse to start)", async () => {
  const { plugins } = await import("../src/main.ts");
  const { kernelMigrations } = await import("../src/store/kernel-migrations.ts");
  const pinned = new Map(
    (await read("test/fixtures/migrations.sha256"))
      .trim()
      .split("\n")
      .map((line) => line.split(/\s+/).reverse() as [string, string]),
  );
  const sets = [{ owner: "kernel", migrations: kernelMigrations }, ...plugins.map((p) => ({ owner: p.name, migrations: p.migrations ?? [] }))];
  const problems: string[] = [];
  for (const { owner, migrations } of sets) {
    for (const m of migrations) {
      if (typeof m.up !== "string") continue; // a function migration is not checksummed (src/store/migrate.ts)
      const name = `${owner}/${m.id}`;
      const sha = new Bun.CryptoHasher("sha256").update(m.up).digest("hex");
      if (!pinned.has(name)) problems.push(`${name} is new: add "${sha}  ${name}" to test/fixtures/migrations.sha256`);
      else if (pinned.get(name) !== sha) problems.push(`${name} was edited after its release: restore its text and put the change in a new migration`);
    }
  }
  expect(problems).toEqual([]);
});
