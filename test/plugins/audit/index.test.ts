import { describe, expect, test } from "bun:test";
import { auditPlugin } from "../../../plugins/audit/index.ts";
import type { Kernel } from "../../../src/plugin.ts";
import { testEdge, testKernel } from "../../helpers/http.ts";

const ACTIONS = [
  { type: "secrets.secret.create", description: "x" },
  { type: "secrets.secret.update", description: "x" },
  { type: "dns.zone.create", description: "x" },
];

async function seeded() {
  const k = testKernel({ actions: ACTIONS });
  const plan = [
    ["secrets.secret.create", "u_alice", "org_1", "success"],
    ["secrets.secret.update", "u_alice", "org_1", "failure"],
    ["dns.zone.create", "u_bob", "org_2", "success"],
    ["secrets.secret.update", "u_bob", "org_1", "success"],
    ["dns.zone.create", "u_alice", "org_1", "success"],
  ] as const;
  for (const [action, user, organization, outcome] of plan) {
    (k.clock as unknown as { advance(ms: number): void }).advance(60_000);
    await k.store.write((tx) =>
      k.audit.record(tx, { action, actor: { kind: "user", user, organization }, outcome, resource: { type: action.split(".")[1]!, id: `${user}-r` }, request: { source: "192.0.2.1", userAgent: "Agent \"quoted\", with comma" } }),
    );
  }
  return k;
}

const edgeFor = (k: Kernel, peer = "127.0.0.1") => testEdge({ peer, mounts: [{ name: "audit", routes: auditPlugin.routes!(k) }] });

describe("GET /v1/audit/events", () => {
  const cases: Array<[string, string, number[]]> = [
    ["everything, newest first", "", [5, 4, 3, 2, 1]],
    ["by action prefix", "?action=secrets", [4, 2, 1]],
    ["by exact action", "?action=secrets.secret.update", [4, 2]],
    ["a prefix only matches whole words", "?action=secr", []],
    ["by actor", "?actor=u_bob", [4, 3]],
    ["by outcome", "?outcome=failure", [2]],
    ["by organization", "?organization=org_2", [3]],
    ["by resource", "?resource_type=zone&resource_id=u_alice-r", [5]],
    ["by time range", `?since=${new Date(Date.UTC(2026, 0, 1, 0, 2)).toISOString()}&until=${new Date(Date.UTC(2026, 0, 1, 0, 4)).toISOString()}`, [3, 2]],
  ];
  for (const [name, query, seqs] of cases) {
    test(name, async () => {
      const res = await edgeFor(await seeded()).send("GET", `/v1/audit/events${query}`);
      expect(res.status).toBe(200);
      expect(res.body.events.map((e: { seq: number }) => e.seq)).toEqual(seqs);
    });
  }

  test("pages with an opaque cursor until the end", async () => {
    const { send } = edgeFor(await seeded());
    const seen: number[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const res = await send("GET", `/v1/audit/events?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      seen.push(...res.body.events.map((e: { seq: number }) => e.seq));
      cursor = res.body.next_cursor;
    }
    expect(seen).toEqual([5, 4, 3, 2, 1]);
  });

  const bad: Array<[string, string]> = [
    ["?limit=0", "query.limit"],
    ["?limit=5000", "query.limit"],
    ["?outcome=maybe", "query.outcome"],
    ["?cursor=bm9wZQ", "query.cursor"],
    ["?since=yesterday", "query.since"],
  ];
  for (const [query, field] of bad) {
    test(`refuses ${query} naming ${field}`, async () => {
      const res = await edgeFor(await seeded()).send("GET", `/v1/audit/events${query}`);
      expect(res.status).toBe(422);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    });
  }

  test("events carry the decrypted personal data and their chain hash", async () => {
    const res = await edgeFor(await seeded()).send("GET", "/v1/audit/events?limit=1");
    expect(res.body.events[0]).toMatchObject({ source_address: "192.0.2.1", user_agent: 'Agent "quoted", with comma', hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });
});

describe("export", () => {
  test("NDJSON: one event per line, the export itself audited", async () => {
    const k = await seeded();
    const { send } = edgeFor(k);
    const res = await send("GET", "/v1/audit/export?action=dns");
    expect(res.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = res.text.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((e) => e.seq)).toEqual([5, 3]);
    const latest = await send("GET", "/v1/audit/events?limit=1");
    expect(latest.body.events[0]).toMatchObject({ action: "audit.export", actor: { kind: "operator" } });
  });

  test("CSV: header row, RFC 4180 quoting", async () => {
    const res = await edgeFor(await seeded()).send("GET", "/v1/audit/export?format=csv&actor=u_bob");
    const rows = res.text.split("\r\n");
    expect(rows[0]).toStartWith("seq,id,time,actor_kind");
    expect(rows).toHaveLength(4); // header, 2 events, final empty
    expect(rows[1]).toContain('"Agent ""quoted"", with comma"');
  });
});

describe("the rest of the audit API", () => {
  test("actions lists every registered type", async () => {
    const res = await edgeFor(await seeded()).send("GET", "/v1/audit/actions");
    expect(res.body.actions.map((a: { type: string }) => a.type)).toEqual(expect.arrayContaining(["sys.unseal", "secrets.secret.update", "audit.subject.erase"]));
  });

  test("notes, checkpoints and verify", async () => {
    const k = await seeded();
    const { send } = edgeFor(k);
    const note = await send("POST", "/v1/audit/notes", { json: { text: "maintenance window starts" } });
    expect(note.body.id).toMatch(/^evt_/);
    expect((await send("POST", "/v1/audit/notes", { json: { text: "" } })).status).toBe(422);
    const checkpoint = await send("POST", "/v1/audit/checkpoints");
    expect(checkpoint.body).toMatchObject({ format: "citadel-audit-checkpoint-v1", seq: 6 });
    expect((await send("GET", "/v1/audit/checkpoints")).body.checkpoints).toHaveLength(1);
    expect((await send("GET", "/v1/audit/verify")).body).toMatchObject({ ok: true, events: 6, unsigned_tail: 0 });
  });

  test("erasing a subject: its personal data reads [erased], the chain verifies, the erasure is audited", async () => {
    const k = await seeded();
    const { send } = edgeFor(k);
    expect((await send("POST", "/v1/audit/subjects/u_alice/erase")).body).toEqual({ subject: "u_alice", keys_destroyed: 1 });
    const events = (await send("GET", "/v1/audit/events")).body.events;
    expect(events.filter((e: { subject: string }) => e.subject === "u_alice").every((e: { source_address: string }) => e.source_address === "[erased]")).toBe(true);
    expect(events.find((e: { subject: string }) => e.subject === "u_bob").source_address).toBe("192.0.2.1");
    expect(events[0]).toMatchObject({ action: "audit.subject.erase", resource: { type: "subject", id: "u_alice" } });
    expect((await send("GET", "/v1/audit/verify")).body.ok).toBe(true);
  });

  test("answers only on this host until identity exists", async () => {
    const { send } = edgeFor(await seeded(), "198.51.100.4");
    for (const path of ["/v1/audit/events", "/v1/audit/export", "/v1/audit/actions", "/v1/audit/verify", "/v1/audit/checkpoints"]) {
      expect([path, (await send("GET", path)).status]).toEqual([path, 403]);
    }
  });

  test("sealed, the personal data cannot be read: 503", async () => {
    const k = await seeded();
    k.seal.seal();
    const res = await edgeFor(k).send("GET", "/v1/audit/events");
    expect(res.status).toBe(503);
    expect(res.body.code).toBe("sealed");
  });
});
