/** What the DNS commands check before they ask the server (the whole flow: test/e2e/dns.test.ts). */
import { describe, expect, test } from "bun:test";
import { generateToken } from "../../../src/auth/tokens.ts";
import { dnsCommands } from "../../../plugins/dns/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("dns tsig create --algorithm (found in review: the server's message named the request's field)", () => {
  test("an algorithm Citadel does not have is a usage error listing those it has, before any request", async () => {
    const run = await runCommand(dnsCommands, "dns tsig create", { args: ["transfer.example"], options: { algorithm: "hmac-md5" } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "--algorithm: one of hmac-sha256, hmac-sha384, hmac-sha512", []]);
  });
});

describe("a service API key names its organization with --org (found in review: asking for it was refused as outside the key's service)", () => {
  const key = { CITADEL_TOKEN: generateToken("dns").token };

  test("without --org: a usage error saying so, before any request", async () => {
    for (const [words, args] of [["dns zone list", []], ["dns zone show", ["example.test"]], ["dns set", ["example.test", "www", "A", "192.0.2.1"]]] as const) {
      const run = await runCommand(dnsCommands, words, { args: [...args], env: key });
      expect([run.code, run.error?.message, run.requests]).toEqual([2, "an API key must be given --org ORG_ID", []]);
    }
  });

  test("with --org it is used; a person's token without --org still asks whose it is", async () => {
    const withOrg = await runCommand(dnsCommands, "dns zone list", { options: { org: "org_1" }, env: key, json: true, answer: () => ({ items: [] }) });
    expect(withOrg.requests.map((r) => r.path)).toEqual(["/v1/dns/orgs/org_1/zones"]);
    const person = await runCommand(dnsCommands, "dns zone list", { env: { CITADEL_TOKEN: generateToken("pat").token }, json: true, answer: (r) => (r.path === "/v1/iam/orgs" ? { items: [{ id: "org_2" }] } : { items: [] }) });
    expect(person.requests.map((r) => r.path)).toEqual(["/v1/iam/orgs", "/v1/dns/orgs/org_2/zones"]);
  });
});

describe("dns zone export --json (found in review: the zone file was printed as it is)", () => {
  test("the zone file as one string in a JSON object; without --json the zone file", async () => {
    const zoneFile = "$ORIGIN example.test.\n@ 3600 IN SOA ns1 hostmaster 1 3600 900 1209600 300\n";
    const run = await runCommand(dnsCommands, "dns zone export", { args: ["example.test"], options: { org: "org_1" }, json: true, answer: () => zoneFile });
    expect(JSON.parse(run.stdout)).toEqual({ zone: "example.test", zone_file: zoneFile });
    const text = await runCommand(dnsCommands, "dns zone export", { args: ["example.test"], options: { org: "org_1" }, answer: () => zoneFile });
    expect(text.stdout).toBe(zoneFile);
  });
});

describe("dns top", () => {
  const snapshot = (sampled: boolean, by_shield: Record<string, number> = {}) => ({
    since: "2026-11-24T10:00:00.000Z",
    until: "2026-11-24T11:00:00.000Z",
    queries: 3,
    by_zone: { "example.test.": 3 },
    by_qtype: { A: 3 },
    by_rcode: { NOERROR: 3 },
    by_transport: { udp: 3 },
    by_shield,
    top_names: [{ name: "www.example.test.", count: 3 }],
    top_clients: [{ prefix: "192.0.2.0/24", count: 3 }],
    top_sampled: sampled,
    series: [],
  });

  test("says when the top lists are estimates (sampled at high rates), and only then", async () => {
    const sampled = await runCommand(dnsCommands, "dns top", { answer: () => snapshot(true) });
    expect(sampled.stdout).toContain("top names (estimated: sampled since more than 1,000 queries came in a second)");
    expect(sampled.stdout).toContain("top clients (estimated:");
    const exact = await runCommand(dnsCommands, "dns top", { answer: () => snapshot(false) });
    expect([exact.code, exact.stdout.includes("estimated")]).toEqual([0, false]);
    expect(exact.stdout).toContain("www.example.test.");
  });

  test("shows what the shield's gate did, a row for each action (found in review: by_shield was left out)", async () => {
    const { code, stdout } = await runCommand(dnsCommands, "dns top", { answer: () => snapshot(false, { slipped: 5, dropped: 2 }) });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^shield +slipped +5$/m);
    expect(stdout).toMatch(/^shield +dropped +2$/m);
  });
});

describe("dns catalog", () => {
  const view = { address: "192.0.2.53", tsig_key: "fleet.", secondaries: ["ns2"], serial: 1764070000, zones: [{ id: "646e737a5f31", name: "example.org." }] };
  const show = (answer: unknown, zones = false) => runCommand(dnsCommands, "dns catalog", { options: zones ? { zones: true } : {}, answer: () => answer });

  test("each view's secondaries, address, key, serial and how many zones; --zones lists them with their member ids", async () => {
    const summary = await show({ name: "catalog.citadel.invalid.", served: true, views: [view] });
    expect(summary.code).toBe(0);
    expect(summary.stdout).toMatch(/^catalog\.citadel\.invalid\., RFC 9432 version 2/);
    expect(summary.stdout).toMatch(/^ns2 +192\.0\.2\.53 +fleet\. +1764070000 +1$/m);
    expect(summary.stdout).not.toContain("646e737a5f31");
    expect((await show({ name: "catalog.citadel.invalid.", served: true, views: [view] }, true)).stdout).toMatch(/^example\.org\. +646e737a5f31$/m);
  });

  test("says why there is nothing to show: no catalog configured, no listener, no secondaries", async () => {
    expect((await show({ name: null, served: false, views: [] })).stdout).toContain("no catalog zone: set [dns] catalog");
    expect((await show({ name: "catalog.citadel.invalid.", served: false, views: [] })).stdout).toContain("not served: the authoritative listener is off");
    expect((await show({ name: "catalog.citadel.invalid.", served: true, views: [] })).stdout).toContain("no secondaries (citadel dns secondary add)");
  });
});
