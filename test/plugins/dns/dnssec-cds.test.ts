/**
 * CDS/CDNSKEY (RFC 7344, RFC 8078) and the automatic key rollover schedule, in-process
 * (docs/dns.md, "CDS and CDNSKEY", "Automatic rollover"): the CDS against BIND's
 * `dnssec-dsfromkey -C`, CDNSKEY = DNSKEY, the delete records; what each mode publishes and when;
 * delv and dnssec-verify on a zone carrying them, kdig's AXFR; the schedule with the test's
 * clock — the start at the key's lifetime, the new key's CDS only once it is ready, no finish
 * without the parent's confirmation however long it waits, the finish after the parent delay —
 * audited as the system; a restart in the middle; nothing while sealed, at once at the unseal.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dnssecServiceOf, dnsServiceOf } from "../../../plugins/dns/index.ts";
import { DnsService } from "../../../plugins/dns/service.ts";
import { DnssecService, parentSignalOf } from "../../../plugins/dns/dnssec-service.ts";
import { DELETE_SIGNAL, dnskeyText, dsOf, dsText, generateSigningKey, parentSignalFor, TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY } from "../../../plugins/dns/dnssec.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { ZoneTable } from "../../../plugins/dns/server.ts";
import { rrToText, type Zone } from "../../../plugins/dns/zone.ts";
import { axfrRecords, delv, delvAgainst, dnssecVerify, listenerFor } from "../../helpers/dnssec-validators.ts";
import { requireTool } from "../../helpers/tools.ts";
import { confirmationToken, stoppedAfterEach } from "../../helpers/citadel.ts";
import { operatorCaller } from "../../helpers/caller.ts";

const citadel = stoppedAfterEach();
type App = Awaited<ReturnType<typeof citadel>>;
const DAY = 86_400_000;

/** A signed zone example.org (TTLs of 60 s, propagation delay 60 s, parent delay 3600 s, its minimum), the clock at the real time (delv checks it). */
async function signedZone(enable: Record<string, unknown> = {}, dns: Record<string, unknown> = {}) {
  const c = await citadel({ config: { dns: { dnssec_propagation_delay: 60, dnssec_parent_delay: 3600, ...dns } } });
  c.clock.advance(Date.now() - c.clock.now());
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "example.org", ttl: 60, ns: ["ns1.example.net."] } });
  expect(created.status).toBe(200);
  const zone = `${zones}/example.org`;
  expect((await c.send("PUT", `${zone}/rrsets/www/A`, owner, { json: { ttl: 60, records: ["192.0.2.10"] } })).status).toBe(200);
  const enabled = await c.send("POST", `${zone}/dnssec`, owner, { json: enable });
  expect(enabled.status).toBe(200);
  return { c, owner, zone, id: created.body.id as string, enabled: enabled.body, dnssec: dnssecServiceOf(c.kernel as never) };
}

const served = (c: App, id: string): Zone => dnsServiceOf(c.kernel as never).zone(id)!;
const apex = (zone: Zone, type: number) => zone.records().filter((r) => r.type === type && r.name.length === zone.origin.length);
const cdsOf = (zone: Zone): string[] => apex(zone, TYPE_CDS).map((r) => dsText(r.rdata));
const cdnskeyOf = (zone: Zone): string[] => apex(zone, TYPE_CDNSKEY).map((r) => dnskeyText(r.rdata));
/** The data of a DS or DNSKEY line as the API gives it ("example.org. IN DS ..."). */
const dataOf = (line: string): string => line.split(/ IN [A-Z]+ /)[1]!;
/** A session of the owner's made now: the test's clock moves by days, past a session's life. */
const fresh = (c: App) => c.login(c.owner.email, c.owner.password);
const serialOf = async (c: App, zone: string) => (await c.send("GET", zone, await fresh(c))).body.serial as number;
const auditOf = (c: App) =>
  c.kernel.store.db.query("SELECT action, reason, actor_kind FROM audit_events WHERE action LIKE 'dns.zone.dnssec.%' ORDER BY seq").all() as Array<{ action: string; reason: string; actor_kind: string }>;
async function confirmed(c: App, method: string, path: string) {
  const session = await fresh(c);
  return c.send(method, path, session, { headers: { "x-citadel-confirm": await confirmationToken(c, method, path, session) } });
}

/** A tool's standard output; spawned, not spawnSync: the listener it asks runs in this process. */
async function output(command: string[]): Promise<string> {
  const run = Bun.spawn(command, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [out] = await Promise.all([new Response(run.stdout).text(), run.exited]);
  return out;
}

describe("CDS and CDNSKEY records", () => {
  const ORIGIN = parseName("example.test.", null);

  test("the CDS is what BIND's dnssec-dsfromkey -C makes of the DNSKEY (SHA-256), the CDNSKEY the DNSKEY's data itself", () => {
    const { pkcs8, dnskey } = generateSigningKey();
    pkcs8.fill(0);
    const signal = parentSignalFor(ORIGIN, [dnskey]);
    expect(signal.cdnskey.map((d) => Buffer.from(d).toString("hex"))).toEqual([Buffer.from(dnskey).toString("hex")]);
    expect(signal.cds.map((d) => Buffer.from(d).toString("hex"))).toEqual([Buffer.from(dsOf(ORIGIN, dnskey)).toString("hex")]);
    const tool = requireTool("dnssec-dsfromkey", "bind9-utils");
    if (tool === null) return;
    const dir = mkdtempSync(join(tmpdir(), "citadel-cds-"));
    try {
      writeFileSync(join(dir, "keys"), `example.test. 3600 IN DNSKEY ${dnskeyText(dnskey)}\n`);
      const run = Bun.spawnSync([tool, "-C", "-2", "-f", join(dir, "keys"), "example.test."]);
      expect(run.stdout.toString().trim()).toBe(`example.test. IN CDS ${dsText(signal.cds[0]!)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("RFC 8078 section 4's delete records: CDS 0 0 0 00 and CDNSKEY 0 3 0 AA==", () => {
    expect(DELETE_SIGNAL.cds.map(dsText)).toEqual(["0 0 0 00"]);
    expect(DELETE_SIGNAL.cdnskey.map(dnskeyText)).toEqual(["0 3 0 AA=="]);
  });

  test("what each mode publishes: none (stored ones served), rollover (the new key once ready, else an empty set), always (the key the parent should point at), delete", () => {
    const [old, next] = [generateSigningKey(), generateSigningKey()];
    const zone = "example.test.";
    const waiting = { dnskey: next.dnskey, ready_at: null };
    const ready = { dnskey: next.dnskey, ready_at: 1 };
    const text = (s: ReturnType<typeof parentSignalOf>) => (s === null ? null : s.cdnskey.map(dnskeyText));
    expect([text(parentSignalOf(zone, { cds: "none", dnskey: old.dnskey }, null)), text(parentSignalOf(zone, { cds: "none", dnskey: old.dnskey }, ready))]).toEqual([null, null]);
    expect([null, waiting, ready].map((i) => text(parentSignalOf(zone, { cds: "rollover", dnskey: old.dnskey }, i)))).toEqual([[], [], [dnskeyText(next.dnskey)]]);
    expect([null, waiting, ready].map((i) => text(parentSignalOf(zone, { cds: "always", dnskey: old.dnskey }, i)))).toEqual([[dnskeyText(old.dnskey)], [dnskeyText(old.dnskey)], [dnskeyText(next.dnskey)]]);
    expect(text(parentSignalOf(zone, { cds: "delete", dnskey: old.dnskey }, null))).toEqual(["0 3 0 AA=="]);
  });
});

describe("CDS/CDNSKEY served", () => {
  test("cds always: served signed at the apex over UDP and TCP; delv validates them; dnssec-verify takes kdig's AXFR carrying them; the export stays what is stored", async () => {
    const { c, owner, zone, id, enabled } = await signedZone({ cds: "always" });
    expect(enabled.cds).toEqual({ mode: "always", since: null, cds: [enabled.ds[0].replace(" DS ", " CDS ")], cdnskey: [enabled.dnskey[0].replace(" DNSKEY ", " CDNSKEY ")] });
    const zoneNow = served(c, id);
    expect(cdnskeyOf(zoneNow)).toEqual(apex(zoneNow, TYPE_DNSKEY).map((r) => dnskeyText(r.rdata)));
    const table = new ZoneTable();
    table.set(zoneNow);
    const verified = dnssecVerify(axfrRecords(table, "example.org."), "example.org.");
    if (verified !== null) expect([verified.code, verified.out]).toEqual([0, expect.stringContaining("Zone fully signed")]);
    const listener = await listenerFor(table, { allowed: () => true } as never);
    try {
      for (const type of ["CDS", "CDNSKEY"]) {
        const verdict = await delv(listener.port, enabled.ds[0], "example.org.", type);
        if (verdict === null) break;
        expect(verdict).toContain("; fully validated");
        expect(verdict).toContain(`example.org.\t\t60\tIN\t${type}\t`);
      }
      const kdig = requireTool("kdig", "knot-dnsutils");
      if (kdig !== null) {
        for (const transport of ["+notcp", "+tcp"]) {
          const answer = await output([kdig, `@127.0.0.1`, "-p", String(listener.port), transport, "+dnssec", "+short", "example.org.", "CDS"]);
          expect(answer).toContain(dataOf(enabled.ds[0]));
          expect(answer).toMatch(/^CDS 13 2 60 \d+ \d+ \d+ example\.org\. /m); // its RRSIG
        }
        const axfr = await output([kdig, `@127.0.0.1`, "-p", String(listener.port), "AXFR", "example.org."]);
        expect(axfr).toMatch(/example\.org\.\s+60\s+IN\s+CDS\s+\d+ 13 2 [0-9A-F]+/);
        expect(axfr).toMatch(/example\.org\.\s+60\s+IN\s+CDNSKEY\s+257 3 13 /);
        expect(axfr).toMatch(/RRSIG\s+CDS 13 2 60/);
        expect(axfr).toMatch(/RRSIG\s+CDNSKEY 13 2 60/);
      }
    } finally {
      await listener.stop();
    }
    // The export is the stored zone, re-importable elsewhere: a CDS in it would ask a parent for a key the importer lacks.
    const exported = await c.send("GET", `${zone}/export`, owner);
    expect(exported.text).toContain("www");
    expect(exported.text).not.toMatch(/CDS|CDNSKEY|DNSKEY/);
  });

  test("default (rollover): none published outside a rollover; a stored CDS at the apex is left out while Citadel manages them, served under cds none", async () => {
    const { c, owner, zone, id, enabled } = await signedZone();
    expect(enabled.cds).toMatchObject({ mode: "rollover", cds: [], cdnskey: [] });
    expect(cdsOf(served(c, id))).toEqual([]);
    // CDS is no mnemonic of the API: stored as RFC 3597 TYPE59 (an import from another signer could hold one).
    const stored = "0 0 0 00";
    const put = await c.send("PUT", `${zone}/rrsets/@/TYPE59`, owner, { json: { ttl: 60, records: ["\\# 5 0000000000"] } });
    expect([put.status, put.body.detail]).toEqual([200, undefined]);
    expect(cdsOf(served(c, id))).toEqual([]);
    const before = await serialOf(c, zone);
    const none = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { cds: "none" } });
    expect([none.status, none.body.cds.mode]).toEqual([200, "none"]);
    expect(await serialOf(c, zone)).toBeGreaterThan(before); // what is served changed: a new serial
    expect(cdsOf(served(c, id))).toEqual([stored]);
    const verified = (() => {
      const table = new ZoneTable();
      table.set(served(c, id));
      return dnssecVerify(axfrRecords(table, "example.org."), "example.org.");
    })();
    if (verified !== null) expect(verified.code).toBe(0);
    expect(auditOf(c).at(-1)).toMatchObject({ action: "dns.zone.dnssec.policy", actor_kind: "user", reason: expect.stringContaining("CDS/CDNSKEY rollover → none") });
  });

  test("a change of the lifetime alone moves no serial; a PATCH asking nothing is 422; delete and a bad lifetime are refused with 422 naming the field", async () => {
    const { c, owner, zone } = await signedZone();
    const before = await serialOf(c, zone);
    const set = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { csk_lifetime_days: 90 } });
    expect([set.status, set.body.csk_lifetime_days, set.body.next_rollover_at]).toEqual([200, 90, new Date(Date.parse(set.body.created_at) + 90 * DAY).toISOString()]);
    expect(await serialOf(c, zone)).toBe(before);
    expect((await c.send("PATCH", `${zone}/dnssec`, owner, { json: {} })).status).toBe(422);
    const short = await c.send("PATCH", `${zone}/dnssec`, owner, { json: { csk_lifetime_days: 3 } });
    expect([short.status, short.body.detail]).toEqual([422, expect.stringContaining("at least 7")]);
    expect((await c.send("PATCH", `${zone}/dnssec`, owner, { json: { cds: "delete" } })).status).toBe(422);
  });
});

describe("asking the parent to remove the DS (RFC 8078 delete)", () => {
  test("ds-removal asks for a confirmation and the delete permission; publishes the delete records signed; refuses a rollover; disable ends it", async () => {
    const { c, owner, zone, id, enabled } = await signedZone({ csk_lifetime_days: 30 });
    const path = `${zone}/dnssec/ds-removal`;
    expect((await c.send("POST", path, owner)).status).toBe(428);
    const before = await serialOf(c, zone);
    const asked = await confirmed(c, "POST", path);
    expect([asked.status, asked.body.cds.mode, asked.body.cds.cds, asked.body.cds.cdnskey, asked.body.next_rollover_at]).toEqual([200, "delete", ["example.org. IN CDS 0 0 0 00"], ["example.org. IN CDNSKEY 0 3 0 AA=="], null]);
    expect(await serialOf(c, zone)).toBeGreaterThan(before);
    const zoneNow = served(c, id);
    expect([cdsOf(zoneNow), cdnskeyOf(zoneNow)]).toEqual([["0 0 0 00"], ["0 3 0 AA=="]]);
    const table = new ZoneTable();
    table.set(zoneNow);
    const verified = dnssecVerify(axfrRecords(table, "example.org."), "example.org.");
    if (verified !== null) expect(verified.code).toBe(0);
    const verdict = await (async () => {
      const listener = await listenerFor(table);
      try {
        return await delv(listener.port, enabled.ds[0], "example.org.", "CDS");
      } finally {
        await listener.stop();
      }
    })();
    if (verdict !== null) expect(verdict).toContain("; fully validated");
    expect((await c.send("POST", `${zone}/dnssec/rollover`, await fresh(c))).status).toBe(409);
    expect((await confirmed(c, "POST", path)).status).toBe(409);
    // No rollover by the schedule either, however old the key.
    c.clock.advance(60 * DAY);
    expect(await dnssecServiceOf(c.kernel as never).runSchedule()).toEqual([]);
    expect(auditOf(c).at(-1)).toMatchObject({ action: "dns.zone.dnssec.policy", reason: expect.stringContaining("→ delete: the parent is asked to remove the DS") });
    const disabled = await confirmed(c, "DELETE", `${zone}/dnssec`);
    expect([disabled.status, disabled.body.enabled]).toEqual([200, false]);
  });

  test("an editor may not ask for it (the delete permission, as disable)", async () => {
    const { c, owner, zone } = await signedZone();
    const editor = await c.addUser(owner, "editor@example.org", "editor");
    const path = `${zone}/dnssec/ds-removal`;
    expect((await c.send("POST", path, editor.token)).status).toBe(403);
  });
});

describe("the automatic rollover schedule", () => {
  test("starts at the key's lifetime; publishes the new key's CDS only once it is ready; never finishes without the parent's confirmation; finishes after the parent delay; every step audited as the system", async () => {
    const { c, zone, id, enabled, dnssec } = await signedZone({ csk_lifetime_days: 7 });
    const oldTag = enabled.key_tag as number;
    expect(enabled.next_rollover_at).toBe(new Date(Date.parse(enabled.created_at) + 7 * DAY).toISOString());
    c.clock.advance(7 * DAY - 1000);
    expect(await dnssec.runSchedule()).toEqual([]);
    c.clock.advance(1000);
    expect(await dnssec.runSchedule()).toEqual([{ zone: "example.org.", step: "rollover started" }]);
    let shown = dnssec.show(c.owner.organization, "example.org");
    const newKey = shown.keys.find((k) => k.state === "incoming")!;
    expect(shown.rollover).toMatchObject({ automatic: true, waiting_for: "propagation", ready_at: null, auto_finish_at: null });
    expect(cdsOf(served(c, id))).toEqual([]); // not before caches hold the new key
    expect(await dnssec.runSchedule()).toEqual([]);
    // Too early to confirm the parent: caches may lack the new key.
    const submit = `${zone}/dnssec/rollover/submitted`;
    expect((await confirmed(c, "POST", submit)).status).toBe(409);

    c.clock.advance(120_000); // replace_ds_from: the DNSKEY TTL and the propagation delay
    const serialBefore = await serialOf(c, zone);
    expect(await dnssec.runSchedule()).toEqual([{ zone: "example.org.", step: "new key ready for the parent" }]);
    expect(await serialOf(c, zone)).toBeGreaterThan(serialBefore);
    expect(cdsOf(served(c, id))).toEqual([dataOf(newKey.ds)]);
    expect(cdnskeyOf(served(c, id))).toEqual([dataOf(newKey.dnskey)]);
    shown = dnssec.show(c.owner.organization, "example.org");
    expect(shown.rollover).toMatchObject({ waiting_for: "parent", can_finish: false });

    // However long it waits, without the parent's confirmation the old key stays; the log says once that it waits.
    c.clock.advance(30 * DAY);
    expect(await dnssec.runSchedule()).toEqual([{ zone: "example.org.", step: "waiting for the parent" }]);
    expect(await dnssec.runSchedule()).toEqual([{ zone: "example.org.", step: "waiting for the parent" }]);
    expect(c.log.lines.filter((l) => String(l.msg).includes("waits for the parent")).length).toBe(1);
    expect(dnssec.waitingForParent()).toBe(1);
    expect(dnssec.show(c.owner.organization, "example.org").keys.map((k) => k.key_tag)).toEqual([oldTag, newKey.key_tag]);

    expect((await c.send("POST", submit, await fresh(c))).status).toBe(428);
    const submitted = await confirmed(c, "POST", submit);
    const submittedAt = c.clock.now();
    expect(submitted.status).toBe(200);
    expect(submitted.body.rollover.waiting).toContain("the parent's DS TTL");
    expect(submitted.body.rollover).toMatchObject({ submitted_at: new Date(submittedAt).toISOString(), auto_finish_at: new Date(submittedAt + 3_600_000).toISOString(), waiting_for: "parent_delay" });
    expect((await confirmed(c, "POST", submit)).status).toBe(409);
    c.clock.advance(3_600_000 - 1000);
    expect(await dnssec.runSchedule()).toEqual([]);
    c.clock.advance(1000);
    expect(await dnssec.runSchedule()).toEqual([{ zone: "example.org.", step: "rollover finished" }]);
    shown = dnssec.show(c.owner.organization, "example.org");
    expect([shown.keys.map((k) => [k.key_tag, k.state]), shown.rollover]).toEqual([[[newKey.key_tag, "active"]], null]);
    expect(cdsOf(served(c, id))).toEqual([]); // rollover mode: nothing once the parent has it
    // The new key's lifetime counts from its activation, the finish: not from its creation.
    expect([shown.activated_at, shown.next_rollover_at]).toEqual([new Date(c.clock.now()).toISOString(), new Date(c.clock.now() + 7 * DAY).toISOString()]);

    expect(auditOf(c).map((e) => [e.action, e.actor_kind])).toEqual([
      ["dns.zone.dnssec.enable", "user"],
      ["dns.zone.dnssec.rollover.start", "system"],
      ["dns.zone.dnssec.rollover.ready", "system"],
      ["dns.zone.dnssec.rollover.submitted", "user"],
      ["dns.zone.dnssec.rollover.finish", "system"],
    ]);
    expect(auditOf(c)[1]!.reason).toContain(`by the schedule: key tag ${oldTag} reached its lifetime (7 days)`);
    expect(auditOf(c)[4]!.reason).toContain("by the schedule: the parent's DS confirmed by an operator");
  });

  test("a slow parent does not make rollovers back to back: the key's lifetime counts from its activation (the finish), not its creation", async () => {
    const { c, zone, dnssec } = await signedZone({ csk_lifetime_days: 7 });
    c.clock.advance(7 * DAY);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover started"]);
    c.clock.advance(120_000);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["new key ready for the parent"]);
    c.clock.advance(10 * DAY); // the parent takes 10 days, more than the lifetime
    expect((await confirmed(c, "POST", `${zone}/dnssec/rollover/submitted`)).status).toBe(200);
    c.clock.advance(3_600_000);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover finished"]);
    const finishedAt = c.clock.now();
    expect(await dnssec.runSchedule()).toEqual([]);
    expect(dnssec.show(c.owner.organization, "example.org").next_rollover_at).toBe(new Date(finishedAt + 7 * DAY).toISOString());
    c.clock.advance(7 * DAY - 1000);
    expect(await dnssec.runSchedule()).toEqual([]);
    c.clock.advance(1000);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover started"]);
  });

  test("a check where nothing is due, or the rollover waits for the parent, takes no write; what it remembers of a wait goes when the rollover ends (found in review)", async () => {
    const { c, zone, dnssec } = await signedZone({ csk_lifetime_days: 7 });
    const dns = dnsServiceOf(c.kernel as never);
    let writes = 0;
    const zoneWrite = dns.zoneWrite.bind(dns);
    dns.zoneWrite = ((fn: never) => (writes++, zoneWrite(fn))) as typeof dns.zoneWrite;
    expect(await dnssec.runSchedule()).toEqual([]);
    expect(writes).toBe(0);
    c.clock.advance(7 * DAY);
    await dnssec.runSchedule();
    c.clock.advance(120_000);
    await dnssec.runSchedule();
    expect(writes).toBe(2); // the start, the ready step
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["waiting for the parent"]);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["waiting for the parent"]);
    expect([writes, dnssec.waitingRemembered()]).toEqual([2, 1]);
    expect((await confirmed(c, "POST", `${zone}/dnssec/rollover/submitted`)).status).toBe(200);
    c.clock.advance(3_600_000);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover finished"]);
    expect(dnssec.waitingRemembered()).toBe(0);
  });

  test("never finishes before finish_possible_at, even when the parent delay is shorter (a zone record of a day's TTL)", async () => {
    const { c, owner, zone, dnssec } = await signedZone({ csk_lifetime_days: 7 });
    expect((await c.send("PUT", `${zone}/rrsets/slow/TXT`, owner, { json: { ttl: 86_400, records: ['"a day"'] } })).status).toBe(200);
    c.clock.advance(7 * DAY);
    await dnssec.runSchedule();
    c.clock.advance(120_000);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["new key ready for the parent"]);
    expect((await confirmed(c, "POST", `${zone}/dnssec/rollover/submitted`)).status).toBe(200);
    const rollover = dnssec.show(c.owner.organization, "example.org").rollover!;
    expect(rollover.auto_finish_at).toBe(rollover.finish_possible_at);
    expect(await dnssec.runSchedule()).toEqual([]);
    c.clock.advance(Date.parse(rollover.finish_possible_at) - c.clock.now());
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover finished"]);
  });

  test("cds always: the zone's key's CDS until the new key is ready, then the new key's alone, then after the finish the new key's", async () => {
    const { c, zone, id, enabled, dnssec } = await signedZone({ cds: "always", csk_lifetime_days: 7 });
    const oldCds = dataOf(enabled.ds[0]);
    c.clock.advance(7 * DAY);
    await dnssec.runSchedule();
    expect(cdsOf(served(c, id))).toEqual([oldCds]);
    c.clock.advance(120_000);
    await dnssec.runSchedule();
    const newCds = dnssec.show(c.owner.organization, "example.org").keys.find((k) => k.state === "incoming")!.ds.split(" IN DS ")[1]!;
    expect(cdsOf(served(c, id))).toEqual([newCds]);
    await confirmed(c, "POST", `${zone}/dnssec/rollover/submitted`);
    c.clock.advance(3_600_000);
    await dnssec.runSchedule();
    expect(cdsOf(served(c, id))).toEqual([newCds]);
  });

  test("a restart in the middle keeps the schedule: new services over the same database resume it where it was", async () => {
    const { c, zone, id, dnssec } = await signedZone({ cds: "always", csk_lifetime_days: 7 });
    c.clock.advance(7 * DAY);
    await dnssec.runSchedule();
    const before = dnssec.show(c.owner.organization, "example.org");
    // What the next process has: the same database and configuration, nothing in memory.
    const kernel = { ...c.kernel, config: c.config, settings: c.config.dns } as never;
    const restartedDns = new DnsService(kernel);
    const restarted = new DnssecService(kernel, restartedDns);
    expect(restarted.show(c.owner.organization, "example.org")).toEqual(before);
    c.clock.advance(120_000);
    expect((await restarted.runSchedule()).map((s) => s.step)).toEqual(["new key ready for the parent"]);
    const readyZone = restartedDns.zone(id)!;
    expect(cdsOf(readyZone)).toEqual([before.keys[1]!.ds.split(" IN DS ")[1]!]);
    // Restarted again, after the confirmation: the finish still comes, from the stored times.
    await restarted.confirmSubmission(operatorCaller("restarted"), c.owner.organization, "example.org");
    const again = new DnssecService(kernel, new DnsService(kernel));
    c.clock.advance(3_600_000);
    expect((await again.runSchedule()).map((s) => s.step)).toEqual(["rollover finished"]);
    expect((await c.send("GET", `${zone}/dnssec`, await fresh(c))).body.keys.map((k: { key_tag: number }) => k.key_tag)).toEqual([before.keys[1]!.key_tag]);
  });

  test("sealed: the schedule does nothing (no key can be made or zone signed); the unseal runs it", async () => {
    const { c, zone, dnssec } = await signedZone({ csk_lifetime_days: 7 });
    c.clock.advance(7 * DAY);
    c.kernel.seal.seal();
    expect(await dnssec.runSchedule()).toEqual([]);
    c.kernel.seal.unsealWithKey(c.kernel.rootKey);
    expect((await dnssec.runSchedule()).map((s) => s.step)).toEqual(["rollover started"]);
    expect((await c.send("GET", `${zone}/dnssec`, await fresh(c))).body.rollover.automatic).toBe(true);
  });
});

/** For the record: a zone's records as lines (debugging a failed expectation). */
export const linesOf = (zone: Zone) => zone.records().map(rrToText);

describe("cancelling a rollover the parent may already follow", () => {
  /** A manual rollover of a zone signed with `cds`, taken to its ready step (replace_ds_from's schedule check). */
  async function readyRollover(cds: string) {
    const signed = await signedZone({ cds });
    const started = await signed.c.send("POST", `${signed.zone}/dnssec/rollover`, await fresh(signed.c));
    expect(started.status).toBe(200);
    signed.c.clock.advance(120_000);
    expect((await signed.dnssec.runSchedule()).map((s) => s.step)).toEqual(["new key ready for the parent"]);
    const newKey = started.body.keys.find((k: { state: string }) => k.state === "incoming") as { key_tag: number; ds: string };
    return { ...signed, newKey };
  }
  const tagsOf = async (c: App, zone: string) => (await c.send("GET", `${zone}/dnssec`, await fresh(c))).body.keys.map((k: { key_tag: number }) => k.key_tag);

  test("once the parent is confirmed to publish the new DS (submitted), a cancel is 409, even forced: the new key stays, delv validates with the new DS", async () => {
    const { c, zone, id, newKey } = await readyRollover("rollover");
    expect((await confirmed(c, "POST", `${zone}/dnssec/rollover/submitted`)).status).toBe(200);
    const before = await tagsOf(c, zone);
    for (const path of [`${zone}/dnssec/rollover`, `${zone}/dnssec/rollover?force=true`]) {
      const cancel = await confirmed(c, "DELETE", path);
      expect([cancel.status, cancel.body.code]).toEqual([409, "conflict"]);
      expect(cancel.body.detail).toContain("the parent publishes the new key's DS");
      expect(cancel.body.detail).toContain("citadel dns zone dnssec rollover finish");
    }
    expect(await tagsOf(c, zone)).toEqual(before);
    expect(before).toContain(newKey.key_tag);
    const verdict = await delvAgainst(served(c, id), newKey.ds, "www.example.org.", "A");
    if (verdict !== null) expect(verdict).toContain("fully validated");
  });

  for (const mode of ["rollover", "always"]) {
    test(`cds ${mode}: once the new key's CDS is published (ready), a cancel is 409 naming the check at the parent; force cancels`, async () => {
      const { c, zone, id, newKey } = await readyRollover(mode);
      expect(cdsOf(served(c, id))).toEqual([dataOf(newKey.ds)]);
      const refused = await confirmed(c, "DELETE", `${zone}/dnssec/rollover`);
      expect([refused.status, refused.body.code]).toEqual([409, "conflict"]);
      expect(refused.body.detail).toContain("dig +norecurse DS example.org. @<parent server>");
      expect(refused.body.detail).toContain("force");
      expect(await tagsOf(c, zone)).toContain(newKey.key_tag);
      const forced = await confirmed(c, "DELETE", `${zone}/dnssec/rollover?force=true`);
      expect(forced.status).toBe(200);
      expect(forced.body.keys.map((k: { key_tag: number }) => k.key_tag)).not.toContain(newKey.key_tag);
      expect(auditOf(c).at(-1)).toMatchObject({ action: "dns.zone.dnssec.rollover.cancel", reason: expect.stringContaining("forced") });
    });
  }

  test("cds none: nothing was published for the parent, so a cancel after ready needs no force; before ready neither", async () => {
    const { c, zone } = await readyRollover("none");
    expect((await confirmed(c, "DELETE", `${zone}/dnssec/rollover`)).status).toBe(200);
    expect((await c.send("POST", `${zone}/dnssec/rollover`, await fresh(c))).status).toBe(200);
    expect((await confirmed(c, "DELETE", `${zone}/dnssec/rollover`)).status).toBe(200);
  });
});
