/**
 * The intel CLI of the compiled binary against a running instance: the embedded country
 * database works with no download (its licence and date shown), an address is explained, a
 * manual deny and its removal, bad input is a message and a non-zero exit.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cliRunner, ensureBinary, firstLogin, freePort, oneTimePassword, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const data = tempDir("citadel-e2e-intel-");
const home = tempDir("citadel-e2e-intel-home-");
let citadel: RunningCitadel;
let port: number;
let token: string;
const cli = cliRunner({ data: data.path, port: () => port, token: () => token, home: home.path });

beforeAll(async () => {
  await ensureBinary();
  port = await freePort();
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port) });
  token = await firstLogin(citadel.url, readFileSync(join(data.path, "tls/cert.pem"), "utf8"), oneTimePassword(citadel.stderr()));
}, 30_000);

afterAll(() => {
  citadel?.proc.kill("SIGKILL");
  data.remove();
  home.remove();
});

test("citadel intel status, ip, deny and manual", async () => {
  const status = await cli(["intel", "status"]);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(/country-default\s+\(embedded\)\s+\d{4}-\d{2}-\d{2}\s+CC0-1\.0 \(package\); data CC BY 4\.0 NRO/);

  const ip = await cli(["intel", "ip", "193.0.0.1"]);
  expect(ip.code).toBe(0);
  expect(ip.stdout).toContain("193.0.0.1: allow");
  expect(ip.stdout).toContain("country NL");

  const deny = await cli(["intel", "deny", "198.51.100.0/24", "--action", "drop", "--reason", "scanner"]);
  expect(deny.code).toBe(0);
  expect(deny.stdout).toMatch(/^denied \(drop\) 198\.51\.100\.0\/24 \((man_\w+)\)/);
  const id = /\((man_\w+)\)/.exec(deny.stdout)![1]!;
  expect((await cli(["intel", "ip", "198.51.100.7"])).stdout).toContain("198.51.100.7: drop — by denylist");
  expect((await cli(["intel", "manual", "--remove", id])).code).toBe(0);
  expect((await cli(["intel", "manual"])).stdout).toContain("no manual entries");

  const bad = await cli(["intel", "ip", "not-an-ip"]);
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain("is not an IP address");
}, 30_000);
