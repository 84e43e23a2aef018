/**
 * The intel API in process: reputation lists (text and URL — fetched only when a URL is given),
 * the policy, manual entries, status with the embedded geo database's licence and date, lookups
 * that change nothing, and operators only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { intelOf } from "../../../plugins/intel/index.ts";
import { MAX_MANUAL_ENTRIES } from "../../../plugins/intel/service.ts";
import { testCitadel } from "../../helpers/citadel.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;
let c: App;
let operator: string;

beforeAll(async () => {
  c = await testCitadel({ config: { intel: { trust_loopback: false } } });
  // The lists below are served by loopback servers over plain http: allowed for these tests only.
  intelOf(c.kernel as never).listFetching.allowLoopbackHttp = true;
  operator = await c.login(c.owner.email, c.owner.password);
});
afterAll(() => c.stop());

/** Moves the clock on, and logs in again (the session would have timed out). */
async function later(ms: number) {
  c.clock.advance(ms);
  operator = await c.login(c.owner.email, c.owner.password);
}

const audit = (like: string) => c.kernel.store.db.query<{ action: string; reason: string }, [string]>("SELECT action, reason FROM audit_events WHERE action LIKE ? ORDER BY seq").all(like);

describe("reputation lists", () => {
  test("imported from text: entries counted, bad lines reported with their numbers, the score follows", async () => {
    const text = "; Spamhaus DROP\n203.0.113.0/24 ; SBL1\nnot-an-address\n2001:db8:bad::/48 ; SBL2\n";
    const put = await c.send("PUT", "/v1/intel/lists/spamhaus-drop", operator, { json: { weight: 60, content: text } });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ name: "spamhaus-drop", weight: 60, entries: 2, bad_lines: 1, url: null });
    expect(put.body.bad_lines_shown[0]).toMatchObject({ line: 3 });
    const ip = await c.send("GET", "/v1/intel/ip/203.0.113.9", operator);
    expect(ip.body).toMatchObject({ lists: ["spamhaus-drop"], score: 60, reasons: ["on list spamhaus-drop (+60)"], action: "throttle", source: "score" });
    // Looking changes nothing: no decision was started by the lookup.
    expect((await c.send("GET", "/v1/intel/decisions", operator)).body.items).toEqual([]);
    expect((await c.send("GET", "/v1/intel/ip/2001:db8:bad::1", operator)).body.lists).toEqual(["spamhaus-drop"]);
    expect(audit("intel.list.%")).toEqual([{ action: "intel.list.import", reason: "2 entries (spamhaus), weight 60, 1 bad lines skipped" }]);
  });

  test("a list with no valid entry, a bad name, a non-https URL: 422; delete: 404 the second time", async () => {
    expect((await c.send("PUT", "/v1/intel/lists/empty", operator, { json: { weight: 10, content: "# nothing\n" } })).status).toBe(422);
    expect((await c.send("PUT", "/v1/intel/lists/Bad Name", operator, { json: { weight: 10, content: "192.0.2.0/24\n" } })).status).toBe(422);
    // Halves that together name every address, as a /0 would (found in review: taken).
    for (const content of ["0.0.0.0/1\n128.0.0.0/1\n", "::/1\n8000::/1\n"]) {
      const everyone = await c.send("PUT", "/v1/intel/lists/everyone", operator, { json: { weight: 10, content } });
      expect([everyone.status, everyone.body.detail]).toEqual([422, expect.stringContaining("the list covers every IPv")]);
    }
    expect((await c.send("PUT", "/v1/intel/lists/x", operator, { json: { weight: 10, url: "http://lists.example.org/x" } })).status).toBe(422);
    expect((await c.send("PUT", "/v1/intel/lists/tmp", operator, { json: { weight: 10, content: "192.0.2.0/24\n" } })).status).toBe(200);
    expect((await c.send("DELETE", "/v1/intel/lists/tmp", operator)).status).toBe(200);
    expect((await c.send("DELETE", "/v1/intel/lists/tmp", operator)).status).toBe(404);
  });

  test("a refresh period without a URL is a 422 naming it, not ignored (found in review)", async () => {
    const put = await c.send("PUT", "/v1/intel/lists/no-url", operator, { json: { weight: 10, content: "192.0.2.0/24\n", refresh_minutes: 60 } });
    expect([put.status, put.body.detail]).toEqual([422, expect.stringContaining("refresh_minutes is for a list fetched from a url")]);
    expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.map((l: { name: string }) => l.name)).not.toContain("no-url");
  });

  test("from a URL: fetched when given, kept with its refresh period", async () => {
    let fetched = 0;
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (fetched++, new Response("# firehol\n198.51.100.0/24\n")) });
    try {
      const put = await c.send("PUT", "/v1/intel/lists/firehol", operator, { json: { weight: 30, url: `http://127.0.0.1:${server.port}/level1.netset`, refresh_minutes: 60 } });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({ entries: 1, refresh_minutes: 60 });
      expect(fetched).toBe(1);
      expect((await c.send("GET", "/v1/intel/ip/198.51.100.20", operator)).body.lists).toEqual(["firehol"]);
    } finally {
      server.stop(true);
    }
  });
});

test("outside tests a list URL on loopback over plain http is refused, and nothing is fetched: it reached local services (found in review)", async () => {
  let fetched = 0;
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (fetched++, new Response("198.51.100.0/24\n")) });
  const service = intelOf(c.kernel as never);
  service.listFetching.allowLoopbackHttp = false; // as in production, where nothing sets it
  try {
    for (const url of [`http://127.0.0.1:${server.port}/list`, `http://user:pass@127.0.0.1:${server.port}/list`, `http://[::1]:${server.port}/list`]) {
      const put = await c.send("PUT", "/v1/intel/lists/local", operator, { json: { weight: 10, url } });
      expect([url, put.status, put.body.detail]).toEqual([url, 422, "a list's url must be https://"]);
    }
    expect(fetched).toBe(0);
  } finally {
    service.listFetching.allowLoopbackHttp = true;
    server.stop(true);
  }
});

describe("list refresh", () => {
  const record = (i: number) => `{"cidr":"10.${40 + i}.0.0/16","sblid":"SBL${i}","rir":"ripencc"}\n`;
  const spamhaus = (n: number) => `${Array.from({ length: n }, (_, i) => record(i)).join("")}{"type":"metadata","timestamp":1707883156,"records":${n}}\n`;
  const listed = async (ip: string) => (await c.send("GET", `/v1/intel/ip/${ip}`, operator)).body.lists;

  /** A list imported from a local URL that serves `body()`; the refresh is made due. */
  async function served(name: string, first: string, run: (serve: (next: string) => void) => Promise<void>) {
    let body = first;
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(body) });
    try {
      const put = await c.send("PUT", `/v1/intel/lists/${name}`, operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/drop.json`, refresh_minutes: 60 } });
      expect(put.status).toBe(200);
      await later(61 * 60_000);
      await run((next) => void (body = next));
    } finally {
      server.stop(true);
      await c.send("DELETE", `/v1/intel/lists/${name}`, operator);
    }
  }

  test("a Spamhaus JSON download cut short (no metadata line) keeps the list, and is logged and audited", async () => {
    await served("drop-json", spamhaus(50), async (serve) => {
      serve(`${record(0)}${record(1)}${record(2)}{"cidr":"10.4`);
      await intelOf(c.kernel as never).refreshDue();
      expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.find((l: { name: string }) => l.name === "drop-json")).toMatchObject({ entries: 50 });
      expect(await listed("10.40.0.1")).toEqual(["drop-json"]);
      expect(await listed("10.89.0.1")).toEqual(["drop-json"]);
      const failed = c.kernel.store.db.query<{ outcome: string; reason: string }, []>("SELECT outcome, reason FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'drop-json' ORDER BY seq").all();
      expect(failed.map((e) => e.outcome)).toEqual(["success", "failure"]);
      expect(failed[1]!.reason).toContain("no metadata line");
    });
  });

  test("an explicit import of a Spamhaus JSON list whose count does not match is refused too", async () => {
    const put = await c.send("PUT", "/v1/intel/lists/drop-json", operator, { json: { weight: 50, content: spamhaus(5).replace('"records":5', '"records":9') } });
    expect(put.status).toBe(422);
    expect(put.body.detail).toContain("metadata announces 9 records, the file has 5");
  });

  test("a refresh that lost most entries, or whose last line is cut, is refused; the same text imported with PUT is taken", async () => {
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `10.${40 + i}.0.0/16\n`).join("");
    await served("netset", lines(50), async (serve) => {
      const service = intelOf(c.kernel as never);
      serve(lines(10));
      await service.refreshDue();
      expect(await listed("10.89.0.1")).toEqual(["netset"]);
      serve(`${lines(49)}10.2`);
      await later(24 * 60 * 60_000); // (past any back-off)
      await service.refreshDue();
      expect(await listed("10.89.0.1")).toEqual(["netset"]);
      const reasons = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'netset' AND outcome = 'failure' ORDER BY seq").all();
      expect(reasons.map((r) => r.reason)).toEqual([expect.stringContaining("10 entries, fewer than half of the 50"), expect.stringContaining("no newline")]);
      const put = await c.send("PUT", "/v1/intel/lists/netset", operator, { json: { weight: 50, content: lines(10) } });
      expect(put.body).toMatchObject({ entries: 10 });
    });
  });
});

describe("list refresh, reviewed again (found in review)", () => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `10.${40 + i}.0.0/16\n`).join("");
  const listed = async (ip: string) => (await c.send("GET", `/v1/intel/ip/${ip}`, operator)).body.lists;

  test("a smaller list that comes back the same on the next refresh is the publisher's: taken then", async () => {
    let body = lines(50);
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(body) });
    const service = intelOf(c.kernel as never);
    try {
      await c.send("PUT", "/v1/intel/lists/shrinks", operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60 } });
      body = lines(10);
      await later(61 * 60_000);
      await service.refreshDue();
      expect(await listed("10.89.0.1")).toEqual(["shrinks"]); // refused once
      await later(24 * 60 * 60_000);
      await service.refreshDue();
      expect(await listed("10.89.0.1")).toEqual([]); // the same again: taken
      expect(await listed("10.49.0.1")).toEqual(["shrinks"]);
    } finally {
      server.stop(true);
      await c.send("DELETE", "/v1/intel/lists/shrinks", operator);
    }
  });

  test("a cut-off copy served again minutes later (a cache) is still refused: only the same text a refresh period later is taken (found in review)", async () => {
    const whole = lines(50);
    let body = whole;
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(body) });
    const service = intelOf(c.kernel as never);
    try {
      await c.send("PUT", "/v1/intel/lists/cached", operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60 } });
      body = whole.slice(0, -2); // the last line cut
      await later(61 * 60_000);
      await service.refreshDue();
      await later(5 * 60_000); // the back-off's first retry
      await service.refreshDue();
      expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.find((l: { name: string }) => l.name === "cached")).toMatchObject({ entries: 50, bad_lines: 0 });
    } finally {
      server.stop(true);
      await c.send("DELETE", "/v1/intel/lists/cached", operator);
    }
  });

  /** A list whose next download waits until the test lets it go; `during` runs while it waits. */
  async function overtaken(name: string, during: () => Promise<void>, next = lines(50)) {
    let release = () => {};
    let asked = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const arrived = new Promise<void>((resolve) => (asked = resolve));
    let hold = false;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async () => {
        if (hold) {
          asked();
          await held;
          return new Response(next);
        }
        return new Response(lines(50));
      },
    });
    try {
      await c.send("PUT", `/v1/intel/lists/${name}`, operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60 } });
      hold = true;
      await later(61 * 60_000);
      const refresh = intelOf(c.kernel as never).refreshDue();
      await arrived;
      await during();
      release();
      await refresh;
    } finally {
      server.stop(true);
    }
  }

  test("a list deleted while its refresh downloads stays deleted", async () => {
    await overtaken("zombie", async () => {
      expect((await c.send("DELETE", "/v1/intel/lists/zombie", operator)).status).toBe(200);
    });
    expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.map((l: { name: string }) => l.name)).not.toContain("zombie");
    expect(await listed("10.50.0.1")).toEqual([]);
  });

  test("a list deleted while a refresh downloads what would be refused leaves no failure on record (found in review)", async () => {
    await overtaken("gone", async () => {
      expect((await c.send("DELETE", "/v1/intel/lists/gone", operator)).status).toBe(200);
    }, lines(5));
    const failures = c.kernel.store.db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'gone' AND outcome = 'failure'").get()!.n;
    expect(failures).toBe(0);
  });

  test("a list an operator replaced while its refresh downloads keeps the operator's content", async () => {
    await overtaken("edited", async () => {
      expect((await c.send("PUT", "/v1/intel/lists/edited", operator, { json: { weight: 5, content: "10.61.0.0/16\n" } })).status).toBe(200);
    });
    expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.find((l: { name: string }) => l.name === "edited")).toMatchObject({ weight: 5, url: null, entries: 1 });
    await c.send("DELETE", "/v1/intel/lists/edited", operator);
  });
});

describe("a list's given format (found in review: a refresh parsed it as auto)", () => {
  test("a scheduled refresh parses the list in the format it was imported with", async () => {
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("10.70.0.0/16\n10.71.0.0/16\n") });
    const service = intelOf(c.kernel as never);
    try {
      // Without FireHOL's headers, auto would call it plain.
      const put = await c.send("PUT", "/v1/intel/lists/given", operator, { json: { weight: 10, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60, format: "firehol" } });
      expect(put.body).toMatchObject({ format: "firehol", entries: 2 });
      await later(61 * 60_000);
      await service.refreshDue();
      const reasons = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'given' ORDER BY seq").all();
      expect(reasons.map((r) => r.reason.split(",")[0])).toEqual(["2 entries (firehol)", "2 entries (firehol)"]);
      expect((await c.send("GET", "/v1/intel/lists", operator)).body.items.find((l: { name: string }) => l.name === "given")).toMatchObject({ format: "firehol" });
    } finally {
      server.stop(true);
      await c.send("DELETE", "/v1/intel/lists/given", operator);
    }
  });
});

describe("list refresh failures", () => {
  test("a failing source is retried with back-off (5, 10, 20, 40 minutes, then the refresh period), not every minute", async () => {
    let fetched = 0;
    let status = 200;
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (fetched++, new Response("10.40.0.0/16\n", { status })) });
    const service = intelOf(c.kernel as never);
    try {
      await c.send("PUT", "/v1/intel/lists/flaky", operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60 } });
      status = 503;
      c.clock.advance(60 * 60_000);
      const attempts: number[] = []; // the minutes (of the ticks) at which it was fetched
      for (let minute = 0; minute < 180; minute++) {
        const before = fetched;
        await service.refreshDue();
        if (fetched > before) attempts.push(minute);
        c.clock.advance(60_000);
      }
      expect(attempts).toEqual([0, 5, 15, 35, 75, 135]);
      const failures = c.kernel.store.db.query<{ reason: string }, []>("SELECT reason FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'flaky' AND outcome = 'failure' ORDER BY seq").all();
      expect(failures.length).toBe(6);
      expect(failures[0]!.reason).toContain("next attempt in 5 min");
      // Back again: taken at the next attempt, and due on time after that.
      status = 200;
      c.clock.advance(60 * 60_000);
      await service.refreshDue();
      expect(fetched).toBe(8);
      c.clock.advance(59 * 60_000);
      await service.refreshDue();
      expect(fetched).toBe(8);
      c.clock.advance(60_000);
      await service.refreshDue();
      expect(fetched).toBe(9);
    } finally {
      server.stop(true);
      await later(0);
      await c.send("DELETE", "/v1/intel/lists/flaky", operator);
    }
  });

  test("two refreshes at once fetch and import a list once", async () => {
    let fetched = 0;
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async () => (fetched++, fetched > 1 && (await held), new Response("10.40.0.0/16\n10.41.0.0/16\n")) });
    const service = intelOf(c.kernel as never);
    try {
      await c.send("PUT", "/v1/intel/lists/slow", operator, { json: { weight: 50, url: `http://127.0.0.1:${server.port}/list`, refresh_minutes: 60 } });
      await later(60 * 60_000);
      const first = service.refreshDue();
      const second = service.refreshDue();
      release();
      await Promise.all([first, second]);
      expect(fetched).toBe(2); // the import, and one refresh
      const imports = c.kernel.store.db.query<{ outcome: string }, []>("SELECT outcome FROM audit_events WHERE action = 'intel.list.import' AND resource_id = 'slow' ORDER BY seq").all();
      expect(imports.length).toBe(2);
    } finally {
      server.stop(true);
      await c.send("DELETE", "/v1/intel/lists/slow", operator);
    }
  });
});

describe("a list URL's credentials (found in review: written in full to the audit log, the server log and errors)", () => {
  test("neither a query's API key nor a user:password is in an audit row, a log line or a response", async () => {
    let status = 200;
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("10.60.0.0/16\n", { status }) });
    const service = intelOf(c.kernel as never);
    const base = `http://127.0.0.1:${server.port}/list`;
    const urls = { "keyed": `${base}?api_key=query-secret-1`, "userinfo": `http://feeduser:userinfo-secret-2@127.0.0.1:${server.port}/list` };
    const bodies: unknown[] = [];
    try {
      for (const [name, url] of Object.entries(urls)) {
        status = 200;
        const put = await c.send("PUT", `/v1/intel/lists/${name}`, operator, { json: { weight: 10, url, refresh_minutes: 60 } });
        expect([put.status, put.body.url]).toEqual([200, base]);
        status = 503;
        const failed = await c.send("PUT", `/v1/intel/lists/${name}-failed`, operator, { json: { weight: 10, url } });
        expect([failed.status, failed.body.detail]).toEqual([422, expect.stringContaining(`could not be fetched from ${base}`)]);
        bodies.push(put.body, failed.body);
      }
      await later(61 * 60_000);
      await service.refreshDue(); // both fail (503): logged and audited
      bodies.push((await c.send("GET", "/v1/intel/lists", operator)).body, (await c.send("GET", "/v1/intel/status", operator)).body);
      const rows = c.kernel.store.db.query<Record<string, unknown>, []>("SELECT * FROM audit_events WHERE action = 'intel.list.import' AND resource_id IN ('keyed', 'userinfo')").all();
      expect(rows.map((r) => r.outcome)).toEqual(["success", "success", "failure", "failure"]);
      expect(rows[0]!.reason).toContain(`from ${base}`);
      const refreshLogs = c.log.lines.filter((l) => l.msg === "intel: a list could not be refreshed; the previous content stays" && (l.list === "keyed" || l.list === "userinfo"));
      expect(refreshLogs.map((l) => l.url)).toEqual([base, base]);
      const everything = JSON.stringify([rows, c.log.lines, bodies]);
      for (const secret of ["query-secret-1", "api_key", "userinfo-secret-2", "feeduser"]) expect([secret, everything.includes(secret)]).toEqual([secret, false]);
    } finally {
      server.stop(true);
      await later(0);
      for (const name of Object.keys(urls)) await c.send("DELETE", `/v1/intel/lists/${name}`, operator);
    }
  });
});

describe("policy, manual entries, status", () => {
  test("country and ASN rules are validated, stored and audited", async () => {
    expect((await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { germany: 10 } } })).status).toBe(422);
    // A list for a map is refused, not turned into {} that replaces the map (found in review).
    for (const part of ["countries", "asns", "anonymous", "behaviour"]) {
      expect([part, (await c.send("PUT", "/v1/intel/policy", operator, { json: { [part]: [] } })).status]).toEqual([part, 422]);
    }
    const set = await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { NL: 20 }, asns: { "64496": 15 } } });
    expect(set.status).toBe(200);
    expect(set.body.countries).toEqual({ NL: 20 });
    expect(set.body.thresholds).toEqual({ throttle: 40, refuse: 70, drop: 90 });
    // 193.0.0.1 (RIPE NCC) is NL in the embedded database.
    expect((await c.send("GET", "/v1/intel/ip/193.0.0.1", operator)).body).toMatchObject({ country: "NL", score: 20, reasons: ["country NL policy (+20)"] });
    expect(audit("intel.policy.%").length).toBe(1);
  });

  test("AS numbers are taken as the lookup writes them; keys the score never reads are a 422 naming them; the audit says what was set", async () => {
    const set = await c.send("PUT", "/v1/intel/policy", operator, { json: { asns: { "0064496": 10 }, anonymous: { tor: 45 }, behaviour: { failed_login: { per_event: 6, max: 60 } } } });
    expect(set.status).toBe(200);
    expect(set.body.asns).toEqual({ "64496": 10 });
    expect(set.body.anonymous.tor).toBe(45);
    expect(audit("intel.policy.%").at(-1)!.reason).toBe('set asns {"64496":10}; anonymous {"tor":45}; behaviour {"failed_login":{"per_event":6,"max":60}}');
    for (const [json, named] of [
      [{ asns: { AS64496: 10 } }, '"AS64496" is not an AS number'],
      [{ asns: { "4294967296": 10 } }, '"4294967296" is not an AS number'],
      [{ anonymous: { tor_exit: 10 } }, 'anonymous: "tor_exit" is none of'],
      [{ behaviour: { failed_logins: { per_event: 1, max: 10 } } }, 'behaviour: "failed_logins" is none of'],
    ] as const) {
      const refused = await c.send("PUT", "/v1/intel/policy", operator, { json });
      expect(refused.status).toBe(422);
      expect(refused.body.detail).toContain(named);
    }
    expect(Object.keys((await c.send("GET", "/v1/intel/policy", operator)).body.anonymous).sort()).toEqual(["hosting", "public_proxy", "residential_proxy", "tor", "vpn"]);
    // What an earlier version stored unchecked is read as the lookup needs it, or left out.
    c.kernel.store.db.query("UPDATE intel_policy SET policy = ?").run(JSON.stringify({ asns: { "0064497": 5, x: 1 }, anonymous: { bogus: 3 }, behaviour: { nope: { per_event: 1, max: 1 } } }));
    const reread = await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: {} } });
    expect(reread.body.asns).toEqual({ "64497": 5 });
    expect(reread.body.anonymous.bogus).toBeUndefined();
    expect(reread.body.behaviour.nope).toBeUndefined();
    await c.send("PUT", "/v1/intel/policy", operator, { json: { asns: {}, anonymous: { tor: 40 }, behaviour: { failed_login: { per_event: 5, max: 60 } } } });
  });

  test("two changes to the policy at once both take effect, as both audit events say (found in review: the last one written undid the other)", async () => {
    try {
      const [tor, logins] = await Promise.all([
        c.send("PUT", "/v1/intel/policy", operator, { json: { anonymous: { tor: 1 } } }),
        c.send("PUT", "/v1/intel/policy", operator, { json: { behaviour: { failed_login: { per_event: 1, max: 2 } } } }),
      ]);
      expect([tor.status, logins.status]).toEqual([200, 200]);
      const stored = JSON.parse(c.kernel.store.db.query<{ policy: string }, []>("SELECT policy FROM intel_policy").get()!.policy);
      expect([stored.anonymous.tor, stored.behaviour.failed_login]).toEqual([1, { per_event: 1, max: 2 }]);
      const inForce = (await c.send("GET", "/v1/intel/policy", operator)).body;
      expect([inForce.anonymous.tor, inForce.behaviour.failed_login]).toEqual([1, { per_event: 1, max: 2 }]);
    } finally {
      await c.send("PUT", "/v1/intel/policy", operator, { json: { anonymous: { tor: 40 }, behaviour: { failed_login: { per_event: 5, max: 60 } } } });
    }
  });

  test("manual deny with a TTL, removal, and refusal of a bad target", async () => {
    const deny = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "192.0.2.0/28", action: "drop", minutes: 30, reason: "scanner" } });
    expect(deny.status).toBe(200);
    expect(deny.body).toMatchObject({ kind: "deny", target: "192.0.2.0/28", action: "drop", reason: "scanner" });
    expect((await c.send("GET", "/v1/intel/ip/192.0.2.5", operator)).body).toMatchObject({ action: "drop", source: "denylist" });
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "192.0.2.1/24" } })).status).toBe(422);
    expect((await c.send("DELETE", `/v1/intel/manual/${deny.body.id}`, operator)).status).toBe(200);
    expect((await c.send("GET", "/v1/intel/ip/192.0.2.5", operator)).body.action).toBe("allow");
  });

  test("an allow entry with an action is a 422 naming it, not stored with the action dropped (found in review)", async () => {
    const add = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "192.0.2.77", action: "drop" } });
    expect([add.status, add.body.detail]).toEqual([422, 'an allow entry takes no action (it allows); "drop" is for a deny entry']);
    expect((await c.send("GET", "/v1/intel/manual", operator)).body.items.filter((e: { target: string }) => e.target === "192.0.2.77/32")).toEqual([]);
  });

  test("one manual entry per target: a second is a 409 naming the first; an allow entry shows no action", async () => {
    const allow = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.128/25" } });
    expect(allow.body).toMatchObject({ kind: "allow", target: "198.51.100.128/25", action: null });
    for (const json of [{ kind: "allow", target: "198.51.100.128/25" }, { kind: "deny", target: "198.51.100.128/25", action: "drop" }]) {
      const again = await c.send("POST", "/v1/intel/manual", operator, { json });
      expect(again.status).toBe(409);
      expect(again.body.detail).toContain(`198.51.100.128/25 has a manual entry already (${allow.body.id}, allow)`);
    }
    expect((await c.send("GET", "/v1/intel/manual", operator)).body.items.filter((e: { target: string }) => e.target === "198.51.100.128/25")).toEqual([expect.objectContaining({ id: allow.body.id, action: null })]);
    expect((await c.send("GET", "/v1/intel/ip/198.51.100.130", operator)).body.manual).toMatchObject({ kind: "allow", action: null });
    expect((await c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator)).status).toBe(200);
    const deny = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.128/25" } });
    expect(deny.body).toMatchObject({ kind: "deny", action: "refuse" });
    expect((await c.send("DELETE", `/v1/intel/manual/${deny.body.id}`, operator)).status).toBe(200);
  });

  test("a manual entry whose time is up is deleted at the sweep, audited, and no longer listed", async () => {
    const entry = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.64/26", action: "throttle", minutes: 5 } });
    const lasting = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.80" } });
    expect((await c.send("GET", "/v1/intel/ip/198.51.100.70", operator)).body).toMatchObject({ action: "throttle", source: "denylist" });
    c.clock.advance(5 * 60_000);
    expect((await c.send("GET", "/v1/intel/ip/198.51.100.70", operator)).body.action).toBe("allow"); // not applied past its time
    await intelOf(c.kernel as never).sweep();
    expect(c.kernel.store.db.query("SELECT id FROM intel_manual WHERE id = ?").all(entry.body.id)).toEqual([]);
    expect(audit("intel.manual.expire")).toEqual([{ action: "intel.manual.expire", reason: "deny (throttle) 198.51.100.64/26 expired" }]);
    expect((await c.send("GET", "/v1/intel/manual", operator)).body.items.map((e: { id: string }) => e.id)).toEqual([lasting.body.id]);
    await intelOf(c.kernel as never).sweep(); // nothing more to do: nothing more audited
    expect(audit("intel.manual.expire").length).toBe(1);
    expect((await c.send("DELETE", `/v1/intel/manual/${lasting.body.id}`, operator)).status).toBe(200);
  });

  test(`at most ${MAX_MANUAL_ENTRIES} manual entries in force: one more is a conflict (expired ones do not count)`, async () => {
    const db = c.kernel.store.db;
    const insert = db.query("INSERT INTO intel_manual (id, kind, target, action, reason, until, created_at) VALUES (?, 'deny', ?, 'refuse', NULL, ?, 0)");
    db.transaction(() => {
      for (let i = 0; i < MAX_MANUAL_ENTRIES - 1; i++) insert.run(`bulk${i}`, `10.${i >> 8}.${i & 255}.0/24`, null);
      insert.run("bulk-expired", "10.250.0.0/24", c.clock.now() - 1);
    })();
    try {
      expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "192.0.2.200" } })).status).toBe(200);
      const over = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "192.0.2.201" } });
      expect(over.status).toBe(409);
      expect(over.body.detail).toMatch(/reputation list/);
    } finally {
      db.query("DELETE FROM intel_manual WHERE id LIKE 'bulk%' OR target = '192.0.2.200/32'").run();
    }
  });

  test("status shows the embedded database with its licence and date", async () => {
    const s = await c.send("GET", "/v1/intel/status", operator);
    expect(s.status).toBe(200);
    expect(s.body.geo[0]).toMatchObject({ kind: "country-default", path: null, error: null });
    expect(s.body.geo[0].licence).toContain("CC BY 4.0");
    expect(s.body.geo[0].buildDate).toMatch(/^\d{4}-\d{2}-\d{2}/);
  });

  test("members, even admins, get 403; an invalid address 422", async () => {
    const admin = await c.addUser(operator, "admin@example.org", "admin");
    for (const [method, path] of [["GET", "/v1/intel/status"], ["GET", "/v1/intel/ip/192.0.2.1"], ["GET", "/v1/intel/decisions"], ["PUT", "/v1/intel/policy"]] as const) {
      expect((await c.send(method, path, admin.token, method === "PUT" ? { json: {} } : {})).status).toBe(403);
    }
    expect((await c.send("GET", "/v1/intel/ip/not-an-ip", operator)).status).toBe(422);
  });

  test("a lookup shows DNS over UDP too: its decision (scope dns), score and reasons (found in review: only the HTTP channel was shown)", async () => {
    const shield = intelOf(c.kernel as never).shield;
    shield.observe("192.0.2.99", "dns_rate_limited", 200);
    expect(shield.decide("192.0.2.99", "dns")).toBe("throttle"); // starts a DNS-only decision
    try {
      const r = (await c.send("GET", "/v1/intel/ip/192.0.2.99", operator)).body;
      expect(r).toMatchObject({ action: "allow", source: "score", score: 0, reasons: [], decision: null });
      expect(r.dns).toEqual({
        action: "throttle",
        source: "decision",
        score: 40,
        reasons: ["200 rate-limited DNS queries in the last 10 min (decaying) (+40)"],
        decision: expect.objectContaining({ target: "192.0.2.99", scope: "dns", action: "throttle" }),
      });
    } finally {
      expect((await c.send("DELETE", "/v1/intel/decisions/192.0.2.99", operator)).status).toBe(200);
    }
  });

  test("lifting every decision (after a policy that made them wrongly is fixed): asks for confirmation, ends each of both scopes, audits each", async () => {
    const shield = intelOf(c.kernel as never).shield;
    for (let i = 0; i < 20; i++) shield.observe("198.51.100.31", "failed_login");
    shield.observe("192.0.2.98", "dns_rate_limited", 200);
    expect([shield.decide("198.51.100.31", "http"), shield.decide("192.0.2.98", "dns")]).not.toContain("allow"); // (what the earlier tests' policy makes of them)
    const ask = await c.send("DELETE", "/v1/intel/decisions", operator);
    expect(ask.status).toBe(428);
    const done = await c.send("DELETE", "/v1/intel/decisions", operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } });
    expect([done.status, done.body]).toEqual([200, { lifted: 2 }]);
    expect((await c.send("GET", "/v1/intel/decisions", operator)).body.items).toEqual([]);
    expect([shield.decide("198.51.100.31", "http"), shield.decide("192.0.2.98", "dns")]).toEqual(["allow", "allow"]); // what they did is forgotten too
    const lifts = c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'intel.decision.lift' ORDER BY seq DESC LIMIT 2").all() as Array<{ reason: string }>;
    expect(lifts.map((e) => e.reason.replace(/^\w+ /, "")).sort()).toEqual(["192.0.2.98 lifted", "198.51.100.31 lifted"]);
  });

  test("lifting a decision: a target that is no address or CIDR is a 422 naming it; a valid one with nothing in force 404", async () => {
    const bad = await c.send("DELETE", "/v1/intel/decisions/not-an-ip", operator);
    expect(bad.status).toBe(422);
    expect(bad.body.detail).toContain('"not-an-ip" is not an address or CIDR');
    expect((await c.send("DELETE", "/v1/intel/decisions/192.0.2.77", operator)).status).toBe(404);
  });
});
