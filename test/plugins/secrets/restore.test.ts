/**
 * A restore must not open one-time share links again: at the first start after it, what the
 * database it replaced counted (views, wrong passphrases, revocations) is carried over.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { secretsPlugin } from "../../../plugins/secrets/index.ts";
import { testCitadel } from "../../helpers/citadel.ts";

const PREVIOUS = "citadel.db.before-restore-20260601T000000Z";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

type Before = { id: string; views: number; wrong_passphrases: number; revoked_at: number | null };

/** A data directory as `citadel restore` leaves it; the previous database had these share links. */
function restoredDataDir(shares: Before[] | "none"): string {
  const dir = mkdtempSync(join(tmpdir(), "citadel-secrets-restored-"));
  dirs.push(dir);
  if (shares !== "none") {
    const db = new Database(join(dir, PREVIOUS));
    db.run("CREATE TABLE secrets_shares (id TEXT PRIMARY KEY, views INTEGER, wrong_passphrases INTEGER, revoked_at INTEGER)");
    for (const s of shares) db.query("INSERT INTO secrets_shares VALUES (?, ?, ?, ?)").run(s.id, s.views, s.wrong_passphrases, s.revoked_at);
    db.close();
  }
  writeFileSync(join(dir, "restored-from-backup.json"), JSON.stringify({ previous: shares === "none" ? null : PREVIOUS, restores: [] }));
  return dir;
}

/** Share links as the backup had them: each open, one view of `max_views`. */
async function restoredShares(ids: string[], maxViews = 1) {
  const c = await testCitadel();
  const db = c.kernel.store.db;
  const expires = c.clock.now() + 86_400_000;
  for (const id of ids) {
    db.query(
      `INSERT INTO secrets_shares (id, organization_id, created_by, ciphertext, view_proof_hash, passphrase, max_views, views, source, expires_at, created_at, revoked_at, wrong_passphrases)
       VALUES (?, ?, 'usr_x', x'01', x'02', 0, ?, 0, NULL, ?, ?, NULL, 0)`,
    ).run(id, c.owner.organization, maxViews, expires, c.clock.now());
  }
  const share = (id: string) => db.query("SELECT views, wrong_passphrases, revoked_at, length(ciphertext) AS ciphertext FROM secrets_shares WHERE id = ?").get(id);
  const events = () => (db.query("SELECT reason FROM audit_events WHERE action = 'secrets.restore.shares'").all() as Array<{ reason: string }>).map((e) => e.reason);
  /** Starts the secrets plugin on the data directory a restore left. */
  const start = async (dir: string) => {
    const stop = await secretsPlugin.start!({ ...c.kernel, config: { ...c.config, data_dir: dir }, settings: c.config.secrets, log: c.kernel.log } as never);
    await stop();
  };
  return { c, share, events, start };
}

describe("share links after a restore (found in review)", () => {
  test("links viewed, revoked or burned after the backup stay so, their ciphertext gone; others stay open; once per restore", async () => {
    const { share, events, start } = await restoredShares(["shr_viewed", "shr_revoked", "shr_burned", "shr_open"]);
    const dir = restoredDataDir([
      { id: "shr_viewed", views: 1, wrong_passphrases: 0, revoked_at: null },
      { id: "shr_revoked", views: 0, wrong_passphrases: 0, revoked_at: 1000 },
      { id: "shr_burned", views: 0, wrong_passphrases: 5, revoked_at: 2000 },
      { id: "shr_open", views: 0, wrong_passphrases: 0, revoked_at: null },
    ]);
    await start(dir);
    expect(share("shr_viewed")).toEqual({ views: 1, wrong_passphrases: 0, revoked_at: null, ciphertext: 0 });
    expect(share("shr_revoked")).toEqual({ views: 0, wrong_passphrases: 0, revoked_at: 1000, ciphertext: 0 });
    expect(share("shr_burned")).toEqual({ views: 0, wrong_passphrases: 5, revoked_at: 2000, ciphertext: 0 });
    expect(share("shr_open")).toEqual({ views: 0, wrong_passphrases: 0, revoked_at: null, ciphertext: 1 });
    await start(dir); // a start that failed later meets the marker again
    expect(events()).toEqual(["after a restore: 3 share link(s) viewed, revoked or burned after the backup carried over, 3 of them closed (ciphertext dropped)"]);
  });

  test("a link with views left keeps its ciphertext and the higher count", async () => {
    const { share, start } = await restoredShares(["shr_twice"], 3);
    await start(restoredDataDir([{ id: "shr_twice", views: 2, wrong_passphrases: 1, revoked_at: null }]));
    expect(share("shr_twice")).toEqual({ views: 2, wrong_passphrases: 1, revoked_at: null, ciphertext: 1 });
  });

  test("without a previous database every link still open is revoked, and the event says so", async () => {
    const { c, share, events, start } = await restoredShares(["shr_a", "shr_b"]);
    await start(restoredDataDir("none"));
    expect(share("shr_a")).toEqual({ views: 0, wrong_passphrases: 0, revoked_at: c.clock.now(), ciphertext: 0 });
    expect(events()).toEqual(["after a restore: no previous database to read share links from: 2 link(s) still open revoked"]);
  });
});
