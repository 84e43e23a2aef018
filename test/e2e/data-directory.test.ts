/**
 * One data directory, one writer, on the compiled binary: a second `citadel serve` (or `init`)
 * on a directory a Citadel serves is refused while the first serves on; a start never makes a
 * new, empty database where a restore was interrupted; and a start on a full disk says so.
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, binaryTestScope, freePort, runCitadel, startCitadel } from "../helpers/binary.ts";
import { pinnedGet } from "../helpers/pinned-https.ts";

const { running, dir } = binaryTestScope();

async function start(data: string) {
  const citadel = await startCitadel(["--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
  running.push(citadel);
  return citadel;
}

describe("the data directory's lock", () => {
  test("a second serve or init on a directory a Citadel serves exits 2 naming it; the first serves on; once it stops, a start works (found in review)", async () => {
    const data = dir("citadel-e2e-lock-");
    const first = await start(data);
    const refusal = `citadel: another Citadel is serving this data directory (pid ${first.proc.pid}) (${data}): stop it first, or give this one another data directory\n`;
    for (const command of ["serve", "init"]) {
      const second = await runCitadel([command, "--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
      expect([command, second.code, second.stderr]).toEqual([command, 2, refusal]);
    }
    expect((await pinnedGet(first.url, first.fingerprint!, "/readyz")).status).toBe(200);
    expect(first.proc.exitCode).toBeNull();

    expect((await first.stop()).code).toBe(0);
    const again = await start(data);
    expect(readFileSync(join(data, "citadel.lock"), "utf8")).toBe(`${again.proc.pid} serve\n`);
    expect((await pinnedGet(again.url, again.fingerprint!, "/readyz")).status).toBe(200);
    expect((await again.stop()).code).toBe(0);
  });
});

/**
 * Found in review: `citadel restore` killed between putting citadel.db aside and putting the
 * restored database in its place left no citadel.db; the next start made a new, empty instance
 * (a new organization and one-time password) and took the old database's -wal for its own.
 */
describe("a start after a restore was killed part-way", () => {
  const previous = "citadel.db.before-restore-20260601T120000Z";

  test("killed in its swap (its marker names the database it was putting in place): the start finishes the swap, carries the restore over and audits it", async () => {
    const data = dir("citadel-e2e-swap-");
    expect((await runCitadel(["init", "--data", data])).code).toBe(0);
    // What restore leaves when killed right after putting the current database aside: the
    // checked backup beside it, and the marker (written before anything moved).
    copyFileSync(join(data, "citadel.db"), join(data, "citadel.db.restoring-4242"));
    const note = { backup: "citadel-20260601T110000Z.backup", created_at: "2026-06-01T11:00:00.000Z", audit_head_seq: null, previous };
    writeFileSync(join(data, "restored-from-backup.json"), JSON.stringify({ id: crypto.randomUUID(), previous, restores: [note], swapping_in: "citadel.db.restoring-4242" }), { mode: 0o600 });
    renameSync(join(data, "citadel.db"), join(data, previous));

    const citadel = await start(data);
    expect(citadel.stderr()).not.toContain("One-time password"); // not a new instance
    expect(citadel.logs().some((l) => l.msg === "recorded a restore from backup")).toBe(true);
    expect((await citadel.stop()).code).toBe(0);
    expect(readdirSync(data).filter((n) => n.startsWith("citadel.db") || n.startsWith("restored-")).sort()).toEqual(["citadel.db", previous]);
    const db = new Database(join(data, "citadel.db"), { readonly: true });
    try {
      expect(db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'backup.restore'").get()).toEqual({ n: 1 });
    } finally {
      db.close();
    }
  });

  test("an older version's restore killed between its renames (no marker, the database aside, its -wal left): serve and init exit 2 saying what to do, and make nothing", async () => {
    const data = dir("citadel-e2e-lost-");
    const first = await start(data);
    first.proc.kill("SIGKILL"); // the -wal keeps what was not checkpointed
    await first.proc.exited;
    expect(existsSync(join(data, "citadel.db-wal"))).toBe(true);
    renameSync(join(data, "citadel.db"), join(data, previous));
    const before = readdirSync(data).sort();

    for (const command of ["serve", "init"]) {
      const refused = await runCitadel([command, "--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
      expect([command, refused.code]).toEqual([command, 2]);
      expect(refused.stderr).toStartWith(`citadel: ${data} has no citadel.db but holds ${previous}, citadel.db-wal`);
      expect(refused.stderr).toContain(`put the previous database back (rename ${previous} and its -wal and -shm, if any, to citadel.db`);
      expect(refused.stderr).not.toContain("One-time password");
    }
    expect(readdirSync(data).sort()).toEqual(before);
  });
});

/** A mount namespace of its own (unshare -rm: where user namespaces are allowed, no root needed) to mount a tiny tmpfs in. */
const canMountTmpfs = Bun.spawnSync(["unshare", "-rm", "true"], { stderr: "ignore" }).exitCode === 0;

describe("a full disk", () => {
  test.skipIf(!canMountTmpfs)("a start on a data directory whose disk is full names the directory and the cause (found in review: only 'disk I/O error')", async () => {
    const mountPoint = dir("citadel-e2e-full-");
    const data = join(mountPoint, "data");
    // The database and its schema need far more than 200 KiB: the first start fills the disk.
    const script = 'mount -t tmpfs -o size=200k tmpfs "$1" && exec "$2" serve --data "$1/data"';
    const env = { PATH: process.env.PATH ?? "", HOME: mountPoint, CITADEL_HTTP_PORT: String(await freePort()), CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" };
    const proc = Bun.spawn(["unshare", "-rm", "sh", "-c", script, "sh", mountPoint, BINARY], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^citadel: cannot write the database in \S+: the disk holding the data directory (is full \(SQLITE_FULL\)|failed a read or write \(an I\/O error; is it full\?\) \(SQLITE_IOERR\w*\))\n$/);
    expect(stderr).toStartWith(`citadel: cannot write the database in ${data}: `);
  });
});
