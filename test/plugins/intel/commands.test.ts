/** What the shield's commands check before they ask the server (the whole flow: test/e2e/intel-cli.test.ts). */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { intelCommands } from "../../../plugins/intel/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("intel deny --action (found in review: the server's message named the request's field)", () => {
  test("a word outside throttle, refuse, drop is a usage error naming the flag, before any request", async () => {
    const run = await runCommand(intelCommands, "intel deny", { args: ["192.0.2.1"], options: { action: "bogus" } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "--action: one of throttle, refuse, drop", []]);
  });

  test("one of them is sent", async () => {
    const run = await runCommand(intelCommands, "intel deny", { args: ["192.0.2.1"], options: { action: "drop" }, answer: () => ({ id: "man_1", target: "192.0.2.1/32", action: "drop", until: null }) });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([{ method: "POST", path: "/v1/intel/manual", body: { kind: "deny", target: "192.0.2.1", action: "drop" }, confirmed: false }]);
  });
});

describe("intel list import (found in review: the text output named no bad line)", () => {
  test("names the bad lines the server reports, by number, and how many more there are", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-intel-list-"));
    try {
      const file = join(dir, "drop.txt");
      writeFileSync(file, "10.0.0.0/8\n");
      const answer = () => ({ name: "drop", entries: 2, format: "plain", bad_lines: 3, bad_lines_shown: [{ line: 4, text: "10.0.0.1/8", problem: "host bits set" }, { line: 7, text: "nonsense", problem: "not an address or CIDR" }] });
      const run = await runCommand(intelCommands, "intel list import", { args: ["drop", file], options: { weight: "50" }, answer });
      expect(run.code).toBe(0);
      expect(run.stdout).toBe("drop: 2 entries (plain), 3 bad lines skipped:\n  line 4: host bits set: 10.0.0.1/8\n  line 7: not an address or CIDR: nonsense\n  (and 1 more)\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("intel ip (found in review: the DNS channel was not shown)", () => {
  test("prints what DNS over UDP does, with its score and reasons", async () => {
    const decision = { until: "2026-06-01T00:15:00.000Z" };
    const answer = () => ({ ip: "192.0.2.99", country: null, asn: null, organisation: null, lists: [], score: 0, reasons: [], action: "allow", source: "score", shadow: false, decision: null, dns: { action: "throttle", source: "decision", score: 40, reasons: ["200 rate-limited DNS queries in the last 10 min (decaying) (+40)"], decision } });
    const run = await runCommand(intelCommands, "intel ip", { args: ["192.0.2.99"], answer });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      "192.0.2.99: allow — by score\ncountry unknown, ASN unknown\nlists: none\nscore 0\nDNS over UDP: throttle — by decision until 2026-06-01T00:15:00.000Z\n  score 40:\n    200 rate-limited DNS queries in the last 10 min (decaying) (+40)\n",
    );
  });
});

describe("intel list import --url and intel policy (an operator had no CLI for either)", () => {
  test("--url sends the URL, refresh and format for the server to fetch; a file and --url together, or a refresh without a URL, are usage errors", async () => {
    const answer = () => ({ name: "fh", entries: 10, format: "firehol", bad_lines: 0, bad_lines_shown: [] });
    const run = await runCommand(intelCommands, "intel list import", { args: ["fh"], options: { weight: "40", url: "https://lists.example/level1.netset", "refresh-minutes": "60", format: "firehol" }, answer });
    expect([run.code, run.stdout]).toEqual([0, "fh: 10 entries (firehol)\n"]);
    expect(run.requests).toEqual([{ method: "PUT", path: "/v1/intel/lists/fh", body: { weight: 40, url: "https://lists.example/level1.netset", refresh_minutes: 60, format: "firehol" }, confirmed: false }]);
    const both = await runCommand(intelCommands, "intel list import", { args: ["fh", "file.txt"], options: { weight: "40", url: "https://lists.example/x" } });
    expect([both.code, both.error?.message, both.requests]).toEqual([2, "give the list's file or --url, not both", []]);
    const refresh = await runCommand(intelCommands, "intel list import", { args: ["fh", "file.txt"], options: { weight: "40", "refresh-minutes": "60" } });
    expect([refresh.code, refresh.error?.message]).toEqual([2, "--refresh-minutes is for a list fetched from --url"]);
  });

  test("policy shows the policy in force; policy set sends a JSON file as it is, and refuses one that is not JSON", async () => {
    const policy = { shadow: false, countries: { XX: 30 }, asns: {}, anonymous: { tor: 40 }, behaviour: {}, thresholds: { throttle: 40, refuse: 70, drop: 90 }, decision_minutes: 15 };
    const shown = await runCommand(intelCommands, "intel policy", { answer: () => policy });
    expect([shown.code, JSON.parse(shown.stdout), shown.requests.map((r) => `${r.method} ${r.path}`)]).toEqual([0, policy, ["GET /v1/intel/policy"]]);
    const dir = mkdtempSync(join(tmpdir(), "citadel-intel-policy-"));
    try {
      const file = join(dir, "policy.json");
      writeFileSync(file, '{"countries": {"XX": 30}}');
      const set = await runCommand(intelCommands, "intel policy set", { args: [file], answer: () => policy });
      expect([set.code, set.requests]).toEqual([0, [{ method: "PUT", path: "/v1/intel/policy", body: { countries: { XX: 30 } }, confirmed: false }]]);
      writeFileSync(file, "countries: XX");
      const bad = await runCommand(intelCommands, "intel policy set", { args: [file] });
      expect([bad.code, bad.error?.message, bad.requests]).toEqual([2, `${file} is not JSON: give an object such as {"countries": {"XX": 30}}`, []]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("intel decisions --lift-all needs --yes, then ends them all through the confirmed route", async () => {
  const refused = await runCommand(intelCommands, "intel decisions", { options: { "lift-all": true } });
  expect([refused.code, refused.error?.message, refused.requests]).toEqual([2, "this ends every decision in force, and forgets what their addresses did: add --yes", []]);
  const done = await runCommand(intelCommands, "intel decisions", { options: { "lift-all": true, yes: true }, answer: () => ({ lifted: 3 }) });
  expect([done.code, done.stdout, done.requests]).toEqual([0, "3 decision(s) lifted\n", [{ method: "DELETE", path: "/v1/intel/decisions", body: undefined, confirmed: true }]]);
});
