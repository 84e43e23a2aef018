/**
 * External tools the interoperability tests run (kdig, knotd, nsd). On a developer machine
 * without one, the test that needs it is skipped with a warning; in CI (CI=true) a missing tool
 * is an error, because .ci/run installs them.
 */
export function requireTool(name: string, debianPackage: string): string | null {
  const path = Bun.which(name) ?? Bun.which(name, { PATH: "/usr/sbin:/sbin:/usr/bin" });
  if (path) return path;
  if (process.env.CI === "true") throw new Error(`${name} is missing: .ci/run should have installed ${debianPackage}`);
  console.warn(`${name} is not installed (apt-get install ${debianPackage}): its interoperability tests are skipped`);
  return null;
}
