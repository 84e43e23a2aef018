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

describe("dns zone dnssec rollover start|finish|cancel, and show and ds during a rollover", () => {
  const OLD_DS = `example.test. IN DS 11111 13 2 ${"A".repeat(64)}`;
  const NEW_DS = `example.test. IN DS 22222 13 2 ${"B".repeat(64)}`;
  const key = (key_tag: number, state: string, ds: string) => ({ key_tag, state, ds, dnskey: `example.test. IN DNSKEY 257 3 13 key${key_tag}`, created_at: "2026-11-24T10:00:00.000Z", published_at: "2026-11-24T10:00:00.000Z" });
  const rolling = {
    zone: "example.test.",
    enabled: true,
    algorithm: "ECDSAP256SHA256",
    key_tag: 11111,
    dnskey: ["example.test. IN DNSKEY 257 3 13 key11111", "example.test. IN DNSKEY 257 3 13 key22222"],
    ds: [OLD_DS, NEW_DS],
    signatures_expire_at: "2026-12-08T10:00:00.000Z",
    created_at: "2026-11-01T10:00:00.000Z",
    keys: [key(11111, "retiring", OLD_DS), key(22222, "incoming", NEW_DS)],
    rollover: {
      started_at: "2026-11-24T10:00:00.000Z",
      published_serial: 2026112401,
      replace_ds_from: "2026-11-24T12:00:00.000Z",
      finish_possible_at: "2026-11-25T12:00:00.000Z",
      can_finish: false,
      dnskey_ttl: 3600,
      max_ttl: 86_400,
      propagation_delay: 3600,
    },
  };
  const done = { ...rolling, key_tag: 22222, dnskey: [rolling.dnskey[1]], ds: [NEW_DS], keys: [key(22222, "active", NEW_DS)], rollover: null };
  const org = { org: "org_1" };
  const path = "/v1/dns/orgs/org_1/zones/example.test/dnssec/rollover";

  test("finish and cancel without --yes: a usage error saying what to do at the registrar first, before any request", async () => {
    const finish = await runCommand(dnsCommands, "dns zone dnssec rollover finish", { args: ["example.test"], options: org });
    expect([finish.code, finish.requests]).toEqual([2, []]);
    expect(finish.error?.message).toContain("replace the DS at the registrar with the new key's (citadel dns zone ds example.test), wait for the old DS's TTL to pass, then add --yes");
    const cancel = await runCommand(dnsCommands, "dns zone dnssec rollover cancel", { args: ["example.test"], options: org });
    expect([cancel.code, cancel.requests]).toEqual([2, []]);
    // Resolvers may hold the new DS until the parent's DS TTL passes after it goes: a cancel before then fails them.
    expect(cancel.error?.message).toContain("put the old DS back, wait for the parent's DS TTL, then cancel; leaving the rollover running is always safe (both keys sign)");
    expect(cancel.error?.message).toContain("a parent that scans for them may already hold its DS: check (dig +norecurse DS example.test @<parent server>)");
    expect(cancel.error?.message).toEndWith("Then add --yes (and --force once the CDS is published)");
  });

  test("start prints the new DS and the steps; finish and cancel --yes send the confirmed request and say which key signs", async () => {
    const start = await runCommand(dnsCommands, "dns zone dnssec rollover start", { args: ["example.test"], options: org, answer: () => rolling });
    expect(start.code).toBe(0);
    expect(start.requests).toEqual([{ method: "POST", path, body: undefined, confirmed: false }]);
    expect(start.stdout).toContain("example.test.: key rollover started: key tag 22222 signs beside key tag 11111");
    expect(start.stdout).toContain("1. from 2026-11-24T12:00:00.000Z: give the registrar the new key's DS");
    expect(start.stdout).toContain("3. from 2026-11-25T12:00:00.000Z: citadel dns zone dnssec rollover finish example.test. --yes");
    expect(start.stdout.trimEnd().endsWith(NEW_DS)).toBe(true);
    const finish = await runCommand(dnsCommands, "dns zone dnssec rollover finish", { args: ["example.test"], options: { ...org, yes: true }, answer: () => done });
    expect([finish.code, finish.requests, finish.stdout]).toEqual([0, [{ method: "POST", path: `${path}/finish`, body: undefined, confirmed: true }], "example.test.: key rollover finished: key tag 22222 signs alone\n"]);
    const cancel = await runCommand(dnsCommands, "dns zone dnssec rollover cancel", { args: ["example.test"], options: { ...org, yes: true }, answer: () => ({ ...done, key_tag: 11111 }) });
    expect([cancel.code, cancel.requests, cancel.stdout]).toEqual([0, [{ method: "DELETE", path, body: undefined, confirmed: true }], "example.test.: key rollover cancelled: key tag 11111 signs alone\n"]);
  });

  test("a refusal from the server (a finish too early) is an error: exit 1 with its message", async () => {
    const detail = "example.test.'s key rollover cannot finish yet: 26 h left";
    const run = await runCommand(dnsCommands, "dns zone dnssec rollover finish", {
      args: ["example.test"],
      options: { ...org, yes: true },
      answer: () => {
        throw new Error(detail);
      },
    });
    expect([run.code, run.error?.message]).toEqual([1, detail]);
  });

  test("ds marks each DS and DNSKEY with its key's part (--json: with the keys); show lists the keys with their states and the rollover's steps", async () => {
    // The new key's first (found in review: the one to give the registrar was second), with from when it may replace the old one.
    const ds = await runCommand(dnsCommands, "dns zone ds", { args: ["example.test"], options: org, answer: () => rolling });
    expect(ds.stdout.split("\n").slice(0, 2)).toEqual([
      `${NEW_DS} ; new key: the DS the parent keeps, in place of the old one from 2026-11-24T12:00:00.000Z`,
      `${OLD_DS} ; old key: retiring, the parent drops it as it takes the new one`,
    ]);
    expect(ds.stdout.split("\n").slice(2, 4)).toEqual(["example.test. IN DNSKEY 257 3 13 key22222 ; new key", "example.test. IN DNSKEY 257 3 13 key11111 ; old key"]);
    const json = await runCommand(dnsCommands, "dns zone ds", { args: ["example.test"], options: org, json: true, answer: () => rolling });
    const parsed = JSON.parse(json.stdout);
    expect(parsed.keys.map((k: { key_tag: number; state: string }) => [k.key_tag, k.state])).toEqual([[22222, "incoming"], [11111, "retiring"]]);
    expect(parsed.replace_ds_from).toBe("2026-11-24T12:00:00.000Z");
    const plain = await runCommand(dnsCommands, "dns zone ds", { args: ["example.test"], options: org, answer: () => done });
    expect(plain.stdout).toBe(`${NEW_DS}\nexample.test. IN DNSKEY 257 3 13 key22222\n`);
    const show = await runCommand(dnsCommands, "dns zone dnssec show", { args: ["example.test"], options: org, answer: () => rolling });
    // One time per key (found in review: CREATED and PUBLISHED were always the same: Citadel publishes a key as it makes it).
    expect(show.stdout).toMatch(/^KEY TAG +STATE +CREATED$/m);
    expect(show.stdout).toMatch(/^11111 +retiring +2026-11-24T10:00:00.000Z$/m);
    expect(show.stdout).toMatch(/^22222 +incoming +2026-11-24T10:00:00.000Z$/m);
    // The parent may publish both DS for a while (docs/dns.md, step 3): the old one goes before the finish.
    expect(show.stdout).toContain(
      "1. from 2026-11-24T12:00:00.000Z: give the registrar the new key's DS (citadel dns zone ds example.test.) in place of the old one, or beside it for a while",
    );
    expect(show.stdout).toContain("2. once the parent publishes only the new DS, wait for its DS TTL to pass");
    expect(show.stdout).not.toContain("keep only it");
    expect(show.stdout).toContain("key rollover in progress since 2026-11-24T10:00:00.000Z (new key published in serial 2026112401): key tag 11111 → 22222");
    expect(show.stdout).toContain("(waits: DNSKEY TTL 3600 s + largest TTL 86400 s + propagation delay 3600 s)");
  });
});

describe("dns zone dnssec enable --nsec3 and set --denial: the denial of existence", () => {
  const org = { org: "org_1" };
  const path = "/v1/dns/orgs/org_1/zones/example.test/dnssec";
  const DS = `example.test. IN DS 11111 13 2 ${"A".repeat(64)}`;
  const view = (denial: "nsec" | "nsec3", salt = "") => ({
    zone: "example.test.",
    enabled: true,
    algorithm: "ECDSAP256SHA256",
    key_tag: 11111,
    dnskey: ["example.test. IN DNSKEY 257 3 13 key11111"],
    ds: [DS],
    signatures_expire_at: "2026-12-08T10:00:00.000Z",
    created_at: "2026-11-01T10:00:00.000Z",
    keys: [{ key_tag: 11111, state: "active", ds: DS, dnskey: "example.test. IN DNSKEY 257 3 13 key11111", created_at: "2026-11-01T10:00:00.000Z", published_at: "2026-11-01T10:00:00.000Z" }],
    rollover: null,
    denial,
    nsec3: denial === "nsec3" ? { hash_algorithm: "SHA-1", iterations: 0, salt, opt_out: false, nsec3param: `example.test. IN NSEC3PARAM 1 0 0 ${salt === "" ? "-" : salt}` } : null,
  });

  test("enable asks for NSEC3 with --nsec3 (and its --salt, --iterations), for NSEC without; the output names the denial", async () => {
    const plain = await runCommand(dnsCommands, "dns zone dnssec enable", { args: ["example.test"], options: org, answer: () => view("nsec") });
    expect([plain.code, plain.requests]).toEqual([0, [{ method: "POST", path, body: undefined, confirmed: false }]]);
    expect(plain.stdout).toStartWith("example.test. is signed (key tag 11111). Give the parent zone");
    const nsec3 = await runCommand(dnsCommands, "dns zone dnssec enable", { args: ["example.test"], options: { ...org, nsec3: true }, answer: () => view("nsec3") });
    expect(nsec3.requests).toEqual([{ method: "POST", path, body: { denial: "nsec3" }, confirmed: false }]);
    expect(nsec3.stdout).toStartWith("example.test. is signed (key tag 11111, NSEC3, SHA-1, 0 iterations, no salt, no opt-out (example.test. IN NSEC3PARAM 1 0 0 -)).");
    const salted = await runCommand(dnsCommands, "dns zone dnssec enable", { args: ["example.test"], options: { ...org, nsec3: true, salt: "AABB", iterations: "0" }, answer: () => view("nsec3", "AABB") });
    expect(salted.requests[0]!.body).toEqual({ denial: "nsec3", nsec3: { salt: "AABB", iterations: 0 } });
  });

  test("--salt or --iterations without NSEC3, set without --denial or with another value: usage errors, before any request", async () => {
    for (const [words, options, message] of [
      ["dns zone dnssec enable", { salt: "AABB" }, "--salt and --iterations are NSEC3's parameters: add --nsec3 (enable) or --denial nsec3 (set)"],
      ["dns zone dnssec enable", { iterations: "0" }, "--salt and --iterations are NSEC3's parameters: add --nsec3 (enable) or --denial nsec3 (set)"],
      ["dns zone dnssec set", {}, "usage: citadel dns zone dnssec set <zone> [--denial nsec|nsec3 [--salt HEX]] [--cds none|rollover|always] [--csk-lifetime DAYS]"],
      ["dns zone dnssec set", { denial: "nsec5" }, "--denial: one of nsec, nsec3"],
      ["dns zone dnssec set", { denial: "nsec", salt: "AABB" }, "--salt and --iterations are NSEC3's parameters: add --nsec3 (enable) or --denial nsec3 (set)"],
      ["dns zone dnssec enable", { nsec3: true, iterations: "-1" }, '--iterations: a whole number from 0 to 65535, not "-1"'],
    ] as const) {
      const run = await runCommand(dnsCommands, words, { args: ["example.test"], options: { ...org, ...options } });
      expect([words, run.code, run.error?.message, run.requests]).toEqual([words, 2, message, []]);
    }
  });

  test("set --denial sends the switch (PATCH) and says the DS stays; a refusal from the server (iterations) is exit 1 with its reason", async () => {
    const run = await runCommand(dnsCommands, "dns zone dnssec set", { args: ["example.test"], options: { ...org, denial: "nsec3" }, answer: () => view("nsec3") });
    expect([run.code, run.requests]).toEqual([0, [{ method: "PATCH", path, body: { denial: "nsec3" }, confirmed: false }]]);
    expect(run.stdout).toBe("example.test. proves absence with NSEC3, SHA-1, 0 iterations, no salt, no opt-out (example.test. IN NSEC3PARAM 1 0 0 -): signed again with the new chain in one new serial; the DS stays as it is\n");
    const back = await runCommand(dnsCommands, "dns zone dnssec set", { args: ["example.test"], options: { ...org, denial: "nsec" }, answer: () => view("nsec") });
    expect(back.requests[0]!.body).toEqual({ denial: "nsec" });
    expect(back.stdout).toStartWith("example.test. proves absence with NSEC (anyone can list the zone's names by walking the chain; --denial nsec3 hashes them)");
    const detail = "NSEC3 iterations must be 0 (RFC 9276 section 3.1): ...";
    const refused = await runCommand(dnsCommands, "dns zone dnssec set", {
      args: ["example.test"],
      options: { ...org, denial: "nsec3", iterations: "10" },
      answer: () => {
        throw new Error(detail);
      },
    });
    expect([refused.code, refused.error?.message, refused.requests[0]?.body]).toEqual([1, detail, { denial: "nsec3", nsec3: { iterations: 10 } }]);
  });

  test("show says the denial of existence: NSEC3 with its parameters and NSEC3PARAM, or NSEC and that it lists the names", async () => {
    const nsec3 = await runCommand(dnsCommands, "dns zone dnssec show", { args: ["example.test"], options: org, answer: () => view("nsec3", "AABB") });
    expect(nsec3.stdout).toContain("denial of existence: NSEC3, SHA-1, 0 iterations, salt AABB, no opt-out (example.test. IN NSEC3PARAM 1 0 0 AABB)\n");
    const nsec = await runCommand(dnsCommands, "dns zone dnssec show", { args: ["example.test"], options: org, answer: () => view("nsec") });
    expect(nsec.stdout).toContain("denial of existence: NSEC (anyone can list the zone's names by walking the chain; --denial nsec3 hashes them)\n");
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

describe("dns zone dnssec: CDS/CDNSKEY, the key lifetime, ds-removal and rollover submitted", () => {
  const org = { org: "org_1" };
  const base = "/v1/dns/orgs/org_1/zones/example.test/dnssec";
  const signed = {
    zone: "example.test.",
    enabled: true,
    algorithm: "ECDSAP256SHA256",
    key_tag: 11111,
    dnskey: ["example.test. IN DNSKEY 257 3 13 AAAA"],
    ds: ["example.test. IN DS 11111 13 2 AB"],
    signatures_expire_at: "2026-12-01T00:00:00.000Z",
    created_at: "2026-11-01T00:00:00.000Z",
    keys: [],
    rollover: null,
    denial: "nsec",
    nsec3: null,
    cds: { mode: "always", since: null, cds: ["example.test. IN CDS 11111 13 2 AB"], cdnskey: ["example.test. IN CDNSKEY 257 3 13 AAAA"] },
    csk_lifetime_days: 90,
    next_rollover_at: "2027-01-30T00:00:00.000Z",
  };

  test("set --cds and --csk-lifetime send the PATCH fields and print what is published and when the next rollover starts; a bad --cds is a usage error", async () => {
    const set = await runCommand(dnsCommands, "dns zone dnssec set", { args: ["example.test"], options: { ...org, cds: "always", "csk-lifetime": "90" }, answer: () => signed });
    expect([set.code, set.requests]).toEqual([0, [{ method: "PATCH", path: base, body: { cds: "always", csk_lifetime_days: 90 }, confirmed: false }]]);
    expect(set.stdout).toContain("CDS/CDNSKEY: always published: the key the parent should point at\n  example.test. IN CDS 11111 13 2 AB\n");
    expect(set.stdout).toContain("key lifetime: 90 days; next rollover starts 2027-01-30T00:00:00.000Z");
    const bad = await runCommand(dnsCommands, "dns zone dnssec set", { args: ["example.test"], options: { ...org, cds: "delete" } });
    expect([bad.code, bad.requests]).toEqual([2, []]);
  });

  test("disable --via-cds needs --yes, then asks the parent to remove the DS (confirmed POST ds-removal) and says the second step", async () => {
    const unconfirmed = await runCommand(dnsCommands, "dns zone dnssec disable", { args: ["example.test"], options: { ...org, "via-cds": true } });
    expect([unconfirmed.code, unconfirmed.requests]).toEqual([2, []]);
    const asked = await runCommand(dnsCommands, "dns zone dnssec disable", {
      args: ["example.test"],
      options: { ...org, "via-cds": true, yes: true },
      answer: () => ({ ...signed, cds: { mode: "delete", since: "2026-11-02T00:00:00.000Z", cds: ["example.test. IN CDS 0 0 0 00"], cdnskey: ["example.test. IN CDNSKEY 0 3 0 AA=="] } }),
    });
    expect([asked.code, asked.requests]).toEqual([0, [{ method: "POST", path: `${base}/ds-removal`, body: undefined, confirmed: true }]]);
    expect(asked.stdout).toContain("citadel dns zone dnssec disable example.test. --yes");
  });

  test("rollover submitted needs --yes, then sends the confirmed POST and says from when the schedule finishes", async () => {
    const unconfirmed = await runCommand(dnsCommands, "dns zone dnssec rollover submitted", { args: ["example.test"], options: org });
    expect([unconfirmed.code, unconfirmed.requests]).toEqual([2, []]);
    expect(unconfirmed.error?.message).toContain("then add --yes");
    const rollover = { auto_finish_at: "2026-11-03T00:00:00.000Z" };
    const done = await runCommand(dnsCommands, "dns zone dnssec rollover submitted", { args: ["example.test"], options: { ...org, yes: true }, answer: () => ({ ...signed, rollover }) });
    expect([done.code, done.requests, done.stdout]).toEqual([
      0,
      [{ method: "POST", path: `${base}/rollover/submitted`, body: undefined, confirmed: true }],
      "example.test.: the parent's new DS confirmed; the schedule finishes the rollover from 2026-11-03T00:00:00.000Z, once resolvers can no longer hold the old DS ([dns] dnssec_parent_delay covers the parent's DS TTL: keep it at least that TTL)\n",
    ]);
  });

  test("rollover cancel --force sends force=true (a cancel once the new key's CDS is published), confirmed", async () => {
    const done = await runCommand(dnsCommands, "dns zone dnssec rollover cancel", { args: ["example.test"], options: { ...org, yes: true, force: true }, answer: () => signed });
    expect([done.code, done.requests]).toEqual([0, [{ method: "DELETE", path: `${base}/rollover?force=true`, body: undefined, confirmed: true }]]);
  });

  test("show in delete mode with a lifetime: the schedule is paused while the parent is asked to remove the DS (not \"a rollover is in progress\"), and the hint asks the parent itself (found in review)", async () => {
    const view = { ...signed, cds: { mode: "delete", since: "2026-11-02T00:00:00.000Z", cds: ["example.test. IN CDS 0 0 0 00"], cdnskey: ["example.test. IN CDNSKEY 0 3 0 AA=="] }, csk_lifetime_days: 30, next_rollover_at: null };
    const run = await runCommand(dnsCommands, "dns zone dnssec show", { args: ["example.test"], options: org, answer: () => view });
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain("a rollover is in progress");
    expect(run.stdout).toContain("key lifetime: 30 days; paused while the parent is asked to remove the DS");
    expect(run.stdout).toContain("dig +norecurse DS example.test. @<parent server>");
  });

  test("show during a rollover says a rollover is in progress", async () => {
    const rollover = { started_at: "2026-11-02T00:00:00.000Z", published_serial: 2, replace_ds_from: "2026-11-02T01:00:00.000Z", finish_possible_at: "2026-11-02T02:00:00.000Z", can_finish: false, dnskey_ttl: 60, max_ttl: 60, propagation_delay: 60 };
    const keys = [11111, 22222].map((key_tag, i) => ({ key_tag, state: i === 0 ? "retiring" : "incoming", created_at: "2026-11-01T00:00:00.000Z", dnskey: "x", ds: "y" }));
    const run = await runCommand(dnsCommands, "dns zone dnssec show", { args: ["example.test"], options: org, answer: () => ({ ...signed, keys, rollover, next_rollover_at: null }) });
    expect(run.stdout).toContain("key lifetime: 90 days; a rollover is in progress");
  });

  test("set --csk-lifetime on a key already older than it: says the rollover starts at the schedule's next check (found in review)", async () => {
    const run = await runCommand(dnsCommands, "dns zone dnssec set", { args: ["example.test"], options: { ...org, "csk-lifetime": "30" }, answer: () => ({ ...signed, csk_lifetime_days: 30, next_rollover_at: "2020-01-31T00:00:00.000Z" }) });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("key lifetime: 30 days; the key is older than that: the rollover starts at the schedule's next check (within 10 min)");
  });
});
