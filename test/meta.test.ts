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
