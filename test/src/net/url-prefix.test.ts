/** One rule for where webhooks may go: the sender (secrets) and the sovereignty report (ops) both decide with it. */
import { expect, test } from "bun:test";
import { underPrefix } from "../../../src/net/url-prefix.ts";

const prefix = "https://hooks.example.test/citadel";

test("same scheme, host and port, and the prefix's path or a path below it", () => {
  for (const url of ["https://hooks.example.test/citadel", "https://hooks.example.test/citadel/", "https://hooks.example.test/citadel/deploy?x=1", "https://hooks.example.test:443/citadel/a;v=2"]) expect([url, underPrefix(url, prefix)]).toEqual([url, true]);
  for (const url of ["http://hooks.example.test/citadel/a", "https://hooks.example.test:8443/citadel/a", "https://other.example.test/citadel/a", "https://hooks.example.test/citadel-admin", "https://hooks.example.test/"]) expect([url, underPrefix(url, prefix)]).toEqual([url, false]);
  expect(underPrefix(new URL("https://hooks.example.test/citadel/a"), `${prefix}/`)).toBe(true);
});

test("a path a receiver could take for one outside the prefix is refused (found in review: the report's copy of the rule had none of this)", () => {
  for (const path of ["..%2Fadmin", "..%5Cadmin", "%2e%2e/admin", "..;/admin", "..;jsessionid=1/admin", ".;x/y", "%252e%252e/admin", ".%252e/admin", "%00/x"]) {
    expect([path, underPrefix(`${prefix}/${path}`, prefix)]).toEqual([path, false]);
  }
});

test("a malformed URL or prefix allows nothing", () => {
  expect(underPrefix("not a url", prefix)).toBe(false);
  expect(underPrefix("https://hooks.example.test/citadel/a", "hooks.example.test/citadel")).toBe(false);
});
