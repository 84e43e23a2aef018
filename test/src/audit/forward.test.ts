import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, constants, fstatSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beginAuditForwarding, fileSink, journalSink, startAuditForwarder, type ForwardedEvent } from "../../../src/audit/forward.ts";
import { Metrics } from "../../../src/metrics.ts";
import { captureLog, testKernel } from "../../helpers/http.ts";
import { drain } from "../../helpers/pipe.ts";

type Kernel = ReturnType<typeof testKernel>;

/** An audited act from 198.51.100.7 (its address is personal data, stored encrypted). */
const act = (k: Kernel, reason: string) =>
  k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success", reason, request: { id: "req-1", source: "198.51.100.7", userAgent: "curl/8" } }));

/** A forwarder whose sink collects what it is given; `stop` forwards what is left, then stops. */
function forwarder(k: Kernel, options: { personalData?: boolean; failing?: () => boolean } = {}) {
  const received: ForwardedEvent[] = [];
  const log = captureLog();
  const stop = startAuditForwarder({
    store: k.store,
    seal: k.seal,
    personalData: options.personalData ?? false,
    log: log.logger,
    intervalMs: 60_000, // rounds are driven by stop() here, not by the clock
    sink: (events) => {
      if (options.failing?.()) throw new Error("disk full");
      received.push(...events);
    },
  });
  return { received, stop, log };
}

describe("audit forwarding", () => {
  test("starts with the events written from then on, in order, each once; a restart goes on where it stopped", async () => {
    const k = testKernel();
    await act(k, "before forwarding was on");
    const first = forwarder(k);
    await act(k, "one");
    await act(k, "two");
    await first.stop();
    expect(first.received.map((e) => e.reason)).toEqual(["one", "two"]);
    expect(first.received.map((e) => e.seq)).toEqual([2, 3]);

    await act(k, "while stopped");
    const second = forwarder(k);
    await act(k, "three");
    await second.stop();
    expect(second.received.map((e) => e.reason)).toEqual(["while stopped", "three"]);
  });

  test("an event rolled back with its change is never forwarded", async () => {
    const k = testKernel();
    const f = forwarder(k);
    await expect(
      k.store.write((tx) => {
        k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success", reason: "rolled back" });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    await act(k, "kept");
    await f.stop();
    expect(f.received.map((e) => e.reason)).toEqual(["kept"]);
  });

  test("a sink that fails loses nothing: the same events go out once it works again, and the failure is logged once", async () => {
    const k = testKernel();
    let failing = true;
    const f = forwarder(k, { failing: () => failing });
    await act(k, "one");
    await f.stop(); // fails
    await f.stop(); // fails again, not logged again
    expect(f.received).toEqual([]);
    expect(f.log.lines.filter((l) => String(l.msg).startsWith("could not forward audit events"))).toHaveLength(1);
    failing = false;
    const again = forwarder(k);
    await again.stop();
    expect(again.received.map((e) => e.reason)).toEqual(["one"]);
  });

  test("no personal data unless asked for; asked for, it is decrypted, or withheld while sealed", async () => {
    const k = testKernel();
    const plain = forwarder(k);
    await act(k, "plain");
    await plain.stop();
    expect(plain.received[0]).toMatchObject({ reason: "plain", action: "sys.seal", request_id: "req-1", hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(Object.keys(plain.received[0]!)).not.toContain("source_address");
    expect(JSON.stringify(plain.received)).not.toContain("198.51.100.7");

    const personal = forwarder(k, { personalData: true });
    await act(k, "with personal data");
    await personal.stop();
    expect(personal.received[0]).toMatchObject({ source_address: "198.51.100.7", user_agent: "curl/8" });

    const sealed = forwarder(k, { personalData: true });
    await act(k, "sealed"); // recorded while unsealed, forwarded after the seal
    k.seal.seal();
    await sealed.stop();
    expect(sealed.received[0]).toMatchObject({ reason: "sealed", personal_withheld: "sealed" });
    expect(JSON.stringify(sealed.received)).not.toContain("198.51.100.7");
  });
});

describe("the file sink", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-forward-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("appends JSON lines to a file it makes 0600, and makes a new one after a rotation by renaming", async () => {
    const path = join(dir, "audit.jsonl");
    const k = testKernel();
    const stop = startAuditForwarder({ store: k.store, seal: k.seal, sink: fileSink(path), personalData: false, log: captureLog().logger, intervalMs: 60_000 });
    await act(k, "one");
    await act(k, "two");
    await stop();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, "utf8").trimEnd().split("\n").map((line) => JSON.parse(line).reason)).toEqual(["one", "two"]);

    renameSync(path, `${path}.1`);
    const next = startAuditForwarder({ store: k.store, seal: k.seal, sink: fileSink(path), personalData: false, log: captureLog().logger, intervalMs: 60_000 });
    await act(k, "three");
    await next();
    expect(readFileSync(path, "utf8").trimEnd().split("\n").map((line) => JSON.parse(line).reason)).toEqual(["three"]);
  });
});

describe("what the review found", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-forward-review-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const event = (seq: number) => ({ seq, id: `evt_${seq}`, reason: "x".repeat(200) }) as unknown as ForwardedEvent;

  test("a file write cut short (a full disk) is cut back to whole lines, and the retry leaves every event on a line of its own", async () => {
    const path = join(dir, "full.jsonl");
    writeFileSync(path, `${JSON.stringify(event(1))}\n`);
    // A child whose files may not grow past 1 KiB (ulimit -f counts KiB in bash) (SIGXFSZ ignored: the write fails with EFBIG instead).
    const script = join(dir, "write.ts");
    writeFileSync(script, `import { fileSink } from ${JSON.stringify(join(import.meta.dir, "../../../src/audit/forward.ts"))};
try { fileSink(${JSON.stringify(path)})([2, 3, 4, 5, 6, 7].map((seq) => ({ seq, id: "evt_" + seq, reason: "x".repeat(200) }))); console.log("written"); }
catch (error) { console.log(error.code); }`);
    const child = Bun.spawnSync(["bash", "-c", `trap '' XFSZ; ulimit -f 1; exec "${process.execPath}" "${script}"`], { stdout: "pipe", stderr: "pipe" });
    expect(child.stdout.toString().trim()).toBe("EFBIG");
    expect(readFileSync(path, "utf8")).toBe(`${JSON.stringify(event(1))}\n`); // cut back to where it began

    // A half line a crash left: the next round starts on a line of its own.
    writeFileSync(path, `${JSON.stringify(event(1))}\n{"seq":2,"id":"evt_`);
    fileSink(path)([event(2)]);
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines).toEqual([JSON.stringify(event(1)), '{"seq":2,"id":"evt_', JSON.stringify(event(2))]);
  });

  test("the file is synced with its lines before the round counts as done, and its directory when the round made it (found in review)", () => {
    const path = join(dir, "synced.jsonl");
    const synced: string[] = [];
    const sync = (fd: number) => synced.push(fstatSync(fd).isDirectory() ? "directory" : readFileSync(path, "utf8"));
    fileSink(path, sync)([event(1)]);
    fileSink(path, sync)([event(2)]);
    const [one, two] = [JSON.stringify(event(1)), JSON.stringify(event(2))];
    expect(synced).toEqual([`${one}\n`, "directory", `${one}\n${two}\n`]);
  });

  test("a round that made the file and then failed leaves the next round to sync the directory (found in review: it skipped it, the file existing)", () => {
    const path = join(dir, "first-round-fails.jsonl");
    const synced: string[] = [];
    let fail = true;
    const sync = (fd: number) => {
      if (fail) {
        fail = false;
        throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
      }
      synced.push(fstatSync(fd).isDirectory() ? "directory" : "file");
    };
    expect(() => fileSink(path, sync)([event(1)])).toThrow("EIO");
    fileSink(path, sync)([event(1)]);
    expect(synced).toEqual(["file", "directory"]);
  });

  test("a sync that fails fails the round, its lines cut back (found in review)", () => {
    const path = join(dir, "sync-fails.jsonl");
    writeFileSync(path, `${JSON.stringify(event(1))}\n`);
    const failing = () => {
      throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    };
    expect(() => fileSink(path, failing)([event(2)])).toThrow("EIO");
    expect(readFileSync(path, "utf8")).toBe(`${JSON.stringify(event(1))}\n`);
  });

  test("a file that is not a regular one (a FIFO, whose buffer closing would throw away) is refused, the round failing", () => {
    const fifo = join(dir, "pipe");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    expect(() => fileSink(fifo)([event(1)])).toThrow("is not a regular file");
  });

  test("an event whose subject's key names a KEK that is gone goes out [unreadable], and the events after it go too (found in review: forwarding stopped for good)", async () => {
    const k = testKernel();
    const root = Buffer.from(k.rootKey);
    const f = forwarder(k, { personalData: true });
    const actAs = (user: string) =>
      k.store.write((tx) => k.audit.record(tx, { action: "audit.note.create", actor: { kind: "user", organization: "org_1", user }, outcome: "success", reason: user, request: { source: "198.51.100.7" } }));
    await actAs("u_x");
    k.store.db.run("PRAGMA foreign_keys = OFF");
    k.store.db.run("UPDATE deks SET kek_version = 99 WHERE owner = 'audit-subject/u_x'");
    k.seal.seal();
    k.seal.unsealWithKey(root); // nothing cached: the DEK is unwrapped again
    await actAs("u_y");
    await f.stop();
    expect(f.received.filter((e) => e.reason?.startsWith("u_")).map((e) => [e.reason, e.source_address])).toEqual([
      ["u_x", "[unreadable]"],
      ["u_y", "198.51.100.7"],
    ]);
    expect(f.log.lines.filter((l) => l.level === "error")).toEqual([]);
  });

  test("the metrics say how far behind forwarding is and whether it fails", async () => {
    const k = testKernel();
    const metrics = new Metrics();
    let failing = true;
    const stop = startAuditForwarder({
      store: k.store,
      seal: k.seal,
      personalData: false,
      log: captureLog().logger,
      metrics,
      intervalMs: 5,
      sink: () => {
        if (failing) throw new Error("disk full");
      },
    });
    const until = async (text: string) => {
      for (let i = 0; i < 200 && !metrics.render().includes(text); i++) await Bun.sleep(5);
      return metrics.render();
    };
    await act(k, "one");
    await act(k, "two");
    expect(await until("citadel_audit_forward_failing 1\n")).toContain("citadel_audit_forward_pending_events 2\n");
    failing = false;
    expect(await until("citadel_audit_forward_pending_events 0\n")).toContain("citadel_audit_forward_failing 0\n");
    await stop();
    expect(metrics.render()).not.toContain("citadel_audit_forward"); // removed with the forwarder
  });

  test("a journal that cannot be written makes the round fail (the events are not counted as forwarded)", async () => {
    const readOnly = openSync("/dev/null", "r");
    try {
      expect(() => journalSink(readOnly)([event(1)])).toThrow();
    } finally {
      closeSync(readOnly);
    }
  });

  test("a journal write cut short (a full pipe: EAGAIN) leaves a half line that the next round ends before its own (found in review)", () => {
    const fifo = join(dir, "journal-pipe");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK); // its own reader, which reads only when told to
    try {
      const sink = journalSink(fd);
      const backlog = Array.from({ length: 400 }, (_, i) => event(i + 1)); // more than the pipe's 64 KiB
      expect(() => sink(backlog)).toThrow();
      const cut = drain(fd);
      expect(cut).not.toEndWith("\n"); // the pipe was full part-way through a line
      sink([event(401), event(402)]);
      const next = drain(fd);
      expect(next).toStartWith("\n");
      expect(next.slice(1).trimEnd().split("\n").map((line) => JSON.parse(line).event.seq)).toEqual([401, 402]);
    } finally {
      closeSync(fd);
    }
  });

  test("with personal data, an event whose ciphertext was changed goes out marked [unreadable], and forwarding goes on past it", async () => {
    const k = testKernel();
    const f = forwarder(k, { personalData: true });
    await act(k, "damaged");
    await act(k, "after it");
    const db = k.store.db;
    db.run("DROP TRIGGER audit_events_no_update");
    const row = db.query<{ id: string; personal: Uint8Array }, []>("SELECT id, personal FROM audit_events WHERE reason = 'damaged'").get()!;
    const damaged = Buffer.from(row.personal);
    damaged[damaged.length - 1]! ^= 1; // the tag's last byte
    db.run("UPDATE audit_events SET personal = ? WHERE id = ?", [damaged, row.id]);
    await f.stop();
    expect(f.received.map((e) => [e.reason, e.source_address])).toEqual([
      ["damaged", "[unreadable]"],
      ["after it", "198.51.100.7"],
    ]);
  });

  test("stop forwards one batch more at most: a backlog waits for the next start instead of holding up the shutdown", async () => {
    const k = testKernel();
    beginAuditForwarding(k.store.db);
    await k.store.write((tx) => {
      for (let i = 0; i < 2500; i++) k.audit.record(tx, { action: "sys.seal", actor: { kind: "operator" }, outcome: "success", reason: `backlog ${i}` });
    });
    const first = forwarder(k);
    await first.stop();
    expect(first.received).toHaveLength(1000);
    const next = forwarder(k);
    await new Promise((resolve) => setTimeout(resolve, 0));
    await next.stop();
    expect(next.received[0]?.reason).toBe("backlog 1000");
  });
});

