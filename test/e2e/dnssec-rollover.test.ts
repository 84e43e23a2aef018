/**
 * A DNSSEC key rollover with the CLI on the compiled binary (docs/dns.md, "Key rollover"):
 * started, shown, the DS of both keys, a finish refused without --yes (exit 2) and too early
 * with it (exit 1, the time left), the binary restarted in the middle — the rollover still there,
 * delv validating its answers with either DS — and cancelled. The finish that succeeds needs
 * the TTLs to pass: test/plugins/dns/dnssec-rollover.test.ts moves its clock.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { callApi, cliRunner, ensureBinary, firstLogin, freePort, oneTimePassword, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { delv } from "../helpers/dnssec-validators.ts";

const data = tempDir("citadel-e2e-rollover-");
const home = tempDir("citadel-e2e-rollover-home-");
let citadel: RunningCitadel;
let httpPort: number;
let dnsPort: number;
let token: string;

const cli = cliRunner({ data: data.path, port: () => httpPort, token: () => token, home: home.path });
const start = () => {
  const address = `127.0.0.1:${dnsPort}`;
  return startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(httpPort), CITADEL_DNS_UDP: address, CITADEL_DNS_TCP: address });
};

beforeAll(async () => {
  await ensureBinary();
  httpPort = await freePort();
  dnsPort = await freePort();
  citadel = await start();
  const ca = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
  token = await firstLogin(citadel.url, ca, oneTimePassword(citadel.stderr()));
  const org = (await callApi(citadel.url, ca, token, "GET", "/v1/iam/me")).body.organizations[0].id;
  expect((await callApi(citadel.url, ca, token, "POST", `/v1/dns/orgs/${org}/zones`, { name: "example.test" })).status).toBe(200);
  expect((await callApi(citadel.url, ca, token, "PUT", `/v1/dns/orgs/${org}/zones/example.test/rrsets/www/A`, { ttl: 300, records: ["192.0.2.10"] })).status).toBe(200);
}, 120_000);

afterAll(() => {
  citadel?.proc.kill("SIGKILL");
  data.remove();
  home.remove();
});

/** delv's verdicts on an answer and on a name that does not exist, from the binary's listener, trusting `ds`; null without delv. */
async function validates(ds: string): Promise<boolean[] | null> {
  const verdicts: boolean[] = [];
  for (const [qname, verdict] of [["www.example.test.", "; fully validated"], ["nothere.example.test.", "; negative response, fully validated"]] as const) {
    const out = await delv(dnsPort, ds, qname, "A");
    if (out === null) return null;
    verdicts.push(out.includes(verdict));
  }
  return verdicts;
}

test("a key rollover with the CLI: start, ds and show, finish refused (no --yes: exit 2; too early: exit 1), a restart in the middle, delv with either DS, cancel", async () => {
  const enabled = await cli(["dns", "zone", "dnssec", "enable", "example.test"]);
  expect(enabled.code).toBe(0);
  const oldDs = enabled.stdout.split("\n").find((l) => l.includes(" IN DS "))!;

  const started = await cli(["dns", "zone", "dnssec", "rollover", "start", "example.test"]);
  expect([started.code, started.stderr]).toEqual([0, ""]);
  expect(started.stdout).toContain("example.test.: key rollover started: key tag ");
  const newDs = started.stdout.trimEnd().split("\n").at(-1)!;
  expect(newDs).toMatch(/^example\.test\. IN DS \d+ 13 2 [0-9A-F]{64}$/);
  expect(newDs).not.toBe(oldDs);

  const ds = await cli(["dns", "zone", "ds", "example.test"]);
  const replaceFrom = JSON.parse((await cli(["dns", "zone", "dnssec", "show", "example.test", "--json"])).stdout).rollover.replace_ds_from;
  expect(ds.stdout.split("\n").slice(0, 2)).toEqual([`${newDs} ; new key: the DS the parent keeps, in place of the old one from ${replaceFrom}`, `${oldDs} ; old key: retiring, the parent drops it as it takes the new one`]);
  const shown = await cli(["dns", "zone", "dnssec", "show", "example.test"]);
  expect(shown.stdout).toMatch(/^\d+ +retiring +\S+$/m);
  expect(shown.stdout).toMatch(/^\d+ +incoming +\S+$/m);
  expect(shown.stdout).toContain("(waits: DNSKEY TTL 3600 s + largest TTL 3600 s + propagation delay 3600 s)");

  const unconfirmed = await cli(["dns", "zone", "dnssec", "rollover", "finish", "example.test"]);
  expect([unconfirmed.code, unconfirmed.stderr]).toEqual([2, expect.stringContaining("replace the DS at the registrar with the new key's")]);
  const early = await cli(["dns", "zone", "dnssec", "rollover", "finish", "example.test", "--yes"]);
  expect(early.code).toBe(1);
  expect(early.stderr).toMatch(/example\.test\.'s key rollover cannot finish yet: (2 h 59 min|3 h) left/);
  const during = [await validates(oldDs), await validates(newDs)];

  // A restart in the middle: the rollover is in the database, and both keys sign after it.
  const before = JSON.parse((await cli(["dns", "zone", "dnssec", "show", "example.test", "--json"])).stdout);
  expect((await citadel.stop()).code).toBe(0);
  citadel = await start();
  const after = JSON.parse((await cli(["dns", "zone", "dnssec", "show", "example.test", "--json"])).stdout);
  expect([after.keys, after.rollover]).toEqual([before.keys, before.rollover]);
  const restarted = [await validates(oldDs), await validates(newDs)];

  const cancelled = await cli(["dns", "zone", "dnssec", "rollover", "cancel", "example.test", "--yes"]);
  expect([cancelled.code, cancelled.stdout]).toEqual([0, `example.test.: key rollover cancelled: key tag ${before.key_tag} signs alone\n`]);
  const single = await cli(["dns", "zone", "ds", "example.test"]);
  expect(single.stdout.split("\n")[0]).toBe(oldDs);
  const afterCancel = [await validates(oldDs), await validates(newDs)];

  if (during[0] === null) return; // no delv
  expect(during).toEqual([
    [true, true],
    [true, true],
  ]);
  expect(restarted).toEqual(during);
  expect(afterCancel).toEqual([
    [true, true],
    [false, false],
  ]);
}, 120_000);
