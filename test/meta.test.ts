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
