/**
 * GET /metrics on the whole application in-process: it parses strictly, its counters move by
 * exactly the traffic sent, who may read it, and what it reports about the appliance (seal
 * state, key ages, the audit log and its checkpoints, backups).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCheckpoint } from "../../../src/audit/checkpoints.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../../../src/metrics.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { parsePrometheusText, sampleValue, type ParsedFamily } from "../../helpers/prometheus-text.ts";
import { backupMadeBy } from "../../helpers/backup-header.ts";

type Citadel = Awaited<ReturnType<typeof testCitadel>>;
const OUTSIDE = "203.0.113.9";
const DAY = 86_400;

async function scrape(c: Citadel, init: { token?: string; peer?: string } = {}): Promise<Map<string, ParsedFamily>> {
  const res = await c.send("GET", "/metrics", init.token, init.peer ? { headers: { "x-test-peer": init.peer } } : {});
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
  return parsePrometheusText(res.text);
}

const pat = async (c: Citadel, token: string, scopes: string[]) => {
  const res = await c.send("POST", "/v1/iam/me/tokens", token, { json: { name: `t-${scopes.join("-").replaceAll(":", "-")}`, scopes } });
  expect(res.status).toBe(200);
  return res.body.token as string;
};

describe("GET /metrics", () => {
  let c: Citadel;
  let operator: string;
  beforeAll(async () => {
    c = await testCitadel({ config: { rate_limit: { per_address: { per_second: 1e6, burst: 1e6 }, auth: { per_second: 1e6, burst: 1e6 } } } });
    operator = await c.login(c.owner.email, c.owner.password);
  });
  afterAll(() => c.stop());

  test("serves every metric in a strictly valid exposition", async () => {
    const families = await scrape(c);
    for (const name of [
      "citadel_http_requests_total",
      "citadel_http_request_duration_seconds",
      "citadel_shield_verdicts_total",
      "citadel_sealed",
      "citadel_key_age_seconds",
      "citadel_key_rotation_due",
      "citadel_audit_events_total",
      "citadel_audit_events_since_checkpoint",
      "citadel_audit_checkpoint_age_seconds",
      "citadel_audit_events_recorded_total",
      "citadel_backups",
      "citadel_backup_age_seconds",
      "citadel_build_info",
      "citadel_start_time_seconds",
      "process_resident_memory_bytes",
    ]) {
      expect(families.has(name)).toBe(true);
    }
    expect(families.get("citadel_http_request_duration_seconds")!.type).toBe("histogram");
    expect(sampleValue(families, "citadel_build_info", { version: "1.2.3", commit: "abc1234" })).toBe(1);
  });

  test("request counters and the latency histogram move by exactly the traffic sent", async () => {
    const count = (f: Map<string, ParsedFamily>, method: string, route: string, status: number) => sampleValue(f, "citadel_http_requests_total", { method, route, status: String(status) }) ?? 0;
    const observed = (f: Map<string, ParsedFamily>, method: string, route: string) => sampleValue(f, "citadel_http_request_duration_seconds_count", { method, route }) ?? 0;
    const before = await scrape(c);
    for (let i = 0; i < 7; i++) expect((await c.send("GET", "/healthz")).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await c.send("HEAD", "/healthz")).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await c.send("GET", `/no/such/path/${i}`)).status).toBe(404);
    expect((await c.send("DELETE", "/healthz")).status).toBe(405);
    expect((await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "not-the-password-1" } })).status).toBe(401);
    expect((await c.send("GET", "/v1/system/info", operator)).status).toBe(200);
    const after = await scrape(c);

    const delta = (method: string, route: string, status: number) => count(after, method, route, status) - count(before, method, route, status);
    expect(delta("GET", "/healthz", 200)).toBe(7);
    expect(delta("HEAD", "/healthz", 200)).toBe(2);
    expect(delta("GET", "unmatched", 404)).toBe(3); // by route pattern, never by path
    expect(delta("DELETE", "unmatched", 405)).toBe(1);
    expect(delta("POST", "/v1/iam/login", 401)).toBe(1);
    expect(delta("GET", "/v1/system/info", 200)).toBe(1);
    expect(delta("GET", "/metrics", 200)).toBe(1); // the first scrape, counted once answered
    expect(observed(after, "GET", "/healthz") - observed(before, "GET", "/healthz")).toBe(7);
    const paths = after.get("citadel_http_requests_total")!.samples.map((s) => s.labels.route);
    expect(paths.some((r) => r!.startsWith("/no/such"))).toBe(false);
  });

  test("the shield's HTTP verdicts are counted by action", async () => {
    const verdicts = (f: Map<string, ParsedFamily>, action: string) => sampleValue(f, "citadel_shield_verdicts_total", { channel: "http", action }) ?? 0;
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.7", reason: "test" } })).status).toBe(200);
    const before = await scrape(c);
    for (let i = 0; i < 4; i++) expect((await c.send("GET", "/healthz", undefined, { headers: { "x-test-peer": "198.51.100.7" } })).status).toBe(403);
    for (let i = 0; i < 3; i++) expect((await c.send("GET", "/healthz", undefined, { headers: { "x-test-peer": "192.0.2.44" } })).status).toBe(200);
    const after = await scrape(c);
    expect(verdicts(after, "refuse") - verdicts(before, "refuse")).toBe(4);
    expect(verdicts(after, "allow") - verdicts(before, "allow")).toBe(3 + 1); // and the scrape before
  });

  test("access: loopback without a token; elsewhere an operator's token with metrics:read", async () => {
    const plain = await c.addUser(operator, "plain@example.org", "owner");
    const scenarios: Array<{ who: string; peer: string; token?: string; status: number }> = [
      { who: "loopback, no token", peer: "127.0.0.1", status: 200 },
      { who: "IPv6 loopback, no token", peer: "::1", status: 200 },
      { who: "IPv4-mapped loopback, no token", peer: "::ffff:127.0.0.1", status: 200 },
      { who: "loopback with a bad token (not looked at)", peer: "127.0.0.1", token: "citadel_pat_nonsense", status: 200 },
      { who: "elsewhere, no token", peer: OUTSIDE, status: 401 },
      { who: "elsewhere, operator PAT with metrics:read", peer: OUTSIDE, token: await pat(c, operator, ["metrics:read"]), status: 200 },
      { who: "elsewhere, operator PAT with read (implies metrics:read)", peer: OUTSIDE, token: await pat(c, operator, ["read"]), status: 200 },
      { who: "elsewhere, operator PAT without it", peer: OUTSIDE, token: await pat(c, operator, ["secrets:read"]), status: 403 },
      { who: "elsewhere, a user who is no operator", peer: OUTSIDE, token: await pat(c, plain.token, ["metrics:read"]), status: 403 },
    ];
    const got = [];
    for (const s of scenarios) got.push({ ...s, status: (await c.send("GET", "/metrics", s.token, { headers: { "x-test-peer": s.peer } })).status });
    // An untrusted reverse proxy on this host: the client it forwards is not local.
    for (const header of ["x-forwarded-for", "forwarded", "x-real-ip"]) {
      const viaProxy = await c.send("GET", "/metrics", undefined, { headers: { "x-test-peer": "127.0.0.1", [header]: header === "forwarded" ? "for=203.0.113.9" : "203.0.113.9" } });
      expect(`${header}: ${viaProxy.status}`).toBe(`${header}: 401`);
    }
    expect(got.map((s) => `${s.who}: ${s.status}`)).toEqual(scenarios.map((s) => `${s.who}: ${s.status}`));
  });

  test("key ages, rotation due and the seal state", async () => {
    const start = c.clock.now();
    let f = await scrape(c);
    expect(sampleValue(f, "citadel_sealed")).toBe(0);
    expect(sampleValue(f, "citadel_key_age_seconds", { key: "kek" })).toBe(0); // the keyring was made at the test clock's start
    c.clock.advance(3 * DAY * 1000);
    f = await scrape(c);
    expect(sampleValue(f, "citadel_key_age_seconds", { key: "root" })).toBe(3 * DAY);
    expect(sampleValue(f, "citadel_key_age_seconds", { key: "kek" })).toBe(3 * DAY);
    expect(sampleValue(f, "citadel_key_rotation_due")).toBe(0);
    c.clock.advance(90 * DAY * 1000); // keys.rotation_days defaults to 90
    expect(sampleValue(await scrape(c), "citadel_key_rotation_due")).toBe(1);
    expect(c.clock.now() - start).toBe(93 * DAY * 1000);
  });

  test("audit: the chain's length, events by action as recorded, and checkpoint lag", async () => {
    const db = c.kernel.store.db;
    await c.kernel.store.write(() => {}); // security events earlier tests queued are in
    let f = await scrape(c);
    const head = db.query<{ seq: number }, []>("SELECT max(seq) AS seq FROM audit_events").get()!.seq;
    expect(sampleValue(f, "citadel_audit_events_total")).toBe(head);
    expect(sampleValue(f, "citadel_audit_events_since_checkpoint")).toBe(head);
    expect(f.get("citadel_audit_checkpoint_age_seconds")!.samples).toEqual([]); // none made yet
    // Every event of this process was recorded after the plugin started: the counts agree.
    for (const row of db.query<{ action: string; outcome: string; n: number }, []>("SELECT action, outcome, count(*) AS n FROM audit_events GROUP BY action, outcome").all()) {
      expect(sampleValue(f, "citadel_audit_events_recorded_total", { action: row.action, outcome: row.outcome })).toBe(row.n);
    }

    const checkpoint = (await c.kernel.store.write((tx) => createCheckpoint(tx, c.kernel.seal.keyring(), c.clock.now())))!;
    c.clock.advance(30_000);
    for (let i = 0; i < 2; i++) await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: "still-not-it-123" } });
    f = await scrape(c);
    const newHead = db.query<{ seq: number }, []>("SELECT max(seq) AS seq FROM audit_events").get()!.seq;
    expect(newHead).toBeGreaterThan(checkpoint.seq);
    expect(sampleValue(f, "citadel_audit_events_total")).toBe(newHead);
    expect(sampleValue(f, "citadel_audit_events_since_checkpoint")).toBe(newHead - checkpoint.seq);
    expect(sampleValue(f, "citadel_audit_checkpoint_age_seconds")).toBe(30);
  });

  test("backups: this instance's, counted and aged by the time in their names, in [backup] dir under the data directory", async () => {
    const data = mkdtempSync(join(tmpdir(), "citadel-metrics-"));
    const config = c.config as { data_dir: string; backup?: { dir?: string } };
    const saved = { dataDir: config.data_dir, backup: config.backup };
    const own = thisInstance(c);
    const backUp = (path: string, instance: string | null = own) => writeFileSync(path, backupMadeBy(instance));
    try {
      config.data_dir = data;
      let f = await scrape(c);
      expect(sampleValue(f, "citadel_backups")).toBe(0); // no directory yet
      expect(f.get("citadel_backup_age_seconds")!.samples).toEqual([]);

      mkdirSync(join(data, "backups"));
      for (const name of ["citadel-20260101T000000Z.backup", "citadel-20260102T030405Z.backup", "citadel-20260231T000000Z.backup", "notes.txt", "citadel-20260103T000000Z.backup.partial"]) {
        backUp(join(data, "backups", name));
      }
      f = await scrape(c);
      expect(sampleValue(f, "citadel_backups")).toBe(2); // not the impossible date, not the partial file
      expect(sampleValue(f, "citadel_backup_age_seconds")).toBe((c.clock.now() - Date.UTC(2026, 0, 2, 3, 4, 5)) / 1000);

      config.backup = { ...config.backup, dir: join(data, "elsewhere") };
      mkdirSync(join(data, "elsewhere"));
      backUp(join(data, "elsewhere", "citadel-20260105T000000Z.backup"));
      f = await scrape(c);
      expect(sampleValue(f, "citadel_backups")).toBe(1);
      expect(sampleValue(f, "citadel_backup_age_seconds")).toBe((c.clock.now() - Date.UTC(2026, 0, 5)) / 1000);

      // Named while the clock was ahead: counted, but the age is the newest real backup's, never
      // negative, so the documented alert still fires (found in review).
      backUp(join(data, "elsewhere", "citadel-20990101T000000Z.backup"));
      f = await scrape(c);
      expect(sampleValue(f, "citadel_backups")).toBe(2);
      expect(sampleValue(f, "citadel_backup_age_seconds")).toBe((c.clock.now() - Date.UTC(2026, 0, 5)) / 1000);
      // Within the backup plugin's skew allowance: the newest, and 0 seconds old.
      const soon = new Date(c.clock.now() + 60_000).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
      backUp(join(data, "elsewhere", `citadel-${soon}.backup`));
      expect(sampleValue(await scrape(c), "citadel_backup_age_seconds")).toBe(0);
    } finally {
      config.data_dir = saved.dataDir;
      config.backup = saved.backup;
      rmSync(data, { recursive: true, force: true });
    }
  });

  test("backups: another Citadel's in a shared directory, and files that do not read as backups, are not this one's (found in review: they kept the age alert quiet)", async () => {
    const data = mkdtempSync(join(tmpdir(), "citadel-metrics-shared-"));
    const config = c.config as { data_dir: string; backup?: { dir?: string } };
    const saved = { dataDir: config.data_dir, backup: config.backup };
    try {
      config.data_dir = data;
      mkdirSync(join(data, "backups"));
      writeFileSync(join(data, "backups", "citadel-20260101T000000Z.backup"), backupMadeBy(thisInstance(c)));
      // The other instance's schedule works; this one's has failed since January.
      writeFileSync(join(data, "backups", "citadel-20260531T000000Z.backup"), backupMadeBy("another-instance"));
      writeFileSync(join(data, "backups", "citadel-20260530T000000Z.backup"), "not a backup's bytes");
      const f = await scrape(c);
      expect(sampleValue(f, "citadel_backups")).toBe(1);
      expect(sampleValue(f, "citadel_backup_age_seconds")).toBe((c.clock.now() - Date.UTC(2026, 0, 1)) / 1000);
    } finally {
      config.data_dir = saved.dataDir;
      config.backup = saved.backup;
      rmSync(data, { recursive: true, force: true });
    }
  });
});

/** The instance's id, as a started Citadel has one (the test kernel's database has none until asked). */
function thisInstance(c: Citadel): string {
  const db = c.kernel.store.db;
  db.query("INSERT OR IGNORE INTO instance (singleton, id, created_at) VALUES (1, ?, ?)").run(crypto.randomUUID(), c.clock.now());
  return db.query<{ id: string }, []>("SELECT id FROM instance").get()!.id;
}

describe("GET /metrics, configured and sealed", () => {
  test("allow_loopback = false: loopback needs a token like everyone else", async () => {
    const c = await testCitadel({ config: { metrics: { allow_loopback: false } } });
    try {
      expect((await c.send("GET", "/metrics")).status).toBe(401);
      const operator = await c.login(c.owner.email, c.owner.password);
      await scrape(c, { token: await pat(c, operator, ["metrics:read"]) });
    } finally {
      await c.stop();
    }
  });

  test("answers while sealed, and says so; key ages are absent without the keyring", async () => {
    const c = await testCitadel({ sealMethod: "shamir" });
    try {
      expect((await c.send("GET", "/v1/system/info")).status).toBe(503);
      const f = await scrape(c);
      expect(sampleValue(f, "citadel_sealed")).toBe(1);
      expect(f.get("citadel_key_age_seconds")!.samples).toEqual([]);
      expect(sampleValue(f, "citadel_http_requests_total", { method: "GET", route: "unmatched", status: "503" })).toBe(1);
    } finally {
      await c.stop();
    }
  });
});
