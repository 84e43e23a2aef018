/**
 * Export and erasure of a data subject across every plugin (src/subjects.ts):
 *
 * - export: each contributor's part, in one JSON document; secret values only when the
 *   operator confirmed they want them. Audited as `subject.exported` (with or without values).
 * - erasure: at the request each contributor soft-deletes (the user cannot log in, the
 *   organization's credentials stop); after `[subject] grace_days` each contributor deletes or
 *   anonymizes for good and destroys the subject's keys (crypto-shredding: what the audit log
 *   keeps encrypted for the subject becomes unreadable, and the chain still verifies). Both
 *   steps audited as `subject.erased`, with the stage.
 */
import type { Database } from "bun:sqlite";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isPseudoSubject, type AuditActor, type AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, type Principal } from "../../src/auth/principal.ts";
import { ConflictError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import type { Kernel } from "../../src/plugin.ts";
import { openReadOnly } from "../../src/store/read-only.ts";
import { subjectsOf, type Subject, type SubjectKind } from "../../src/subjects.ts";
import type { SubjectSettings } from "./settings.ts";

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

interface ErasureRow {
  id: string;
  kind: SubjectKind;
  subject_id: string;
  requested_at: number;
  requested_by: string | null;
  due_at: number;
  erased_at: number | null;
  summary: string | null;
}

/** The marker `citadel restore` leaves in the data directory (written by the backup plugin). */
const RESTORE_MARKER = "restored-from-backup.json";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const DAY = 86_400_000;

export function checkSubject(kind: unknown, id: unknown): Subject {
  if (kind !== "user" && kind !== "organization") throw new InvalidError('kind: "user" or "organization"', "kind");
  if (typeof id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new InvalidError("id: a user or organization id", "id");
  if (isPseudoSubject(id)) throw new InvalidError(`id: ${id} names no person but a kind of actor (or the shield): its events' personal data is many people's`, "id");
  return { kind, id };
}

export class SubjectService {
  constructor(private readonly k: Kernel<SubjectSettings>) {}

  /** Everything Citadel holds about the subject, by plugin. */
  async export(caller: Caller, subject: Subject, secretValues: boolean) {
    const data: Record<string, unknown> = {};
    for (const contributor of subjectsOf(this.k.store).list()) {
      const part = contributor.export(subject, { secretValues });
      if (part !== null && part !== undefined) data[contributor.name] = part;
    }
    if (Object.keys(data).length === 0) throw new NotFoundError(`Citadel holds nothing about the ${subject.kind} ${subject.id}.`);
    await this.k.store.write((tx) =>
      this.k.audit.record(tx, {
        action: "subject.exported",
        outcome: "success",
        actor: actorOf(caller.principal),
        resource: { type: subject.kind, id: subject.id },
        organization: subject.kind === "organization" ? subject.id : null,
        reason: secretValues ? "with secret values" : "without secret values",
        request: caller.request,
      }),
    );
    return { subject, exported_at: new Date(this.k.clock.now()).toISOString(), secret_values: secretValues, data };
  }

  /** Soft-deletes now and schedules the erasure for after the grace period. */
  async requestErasure(caller: Caller, subject: Subject) {
    const now = this.k.clock.now();
    const row: ErasureRow = {
      id: newId("era"),
      kind: subject.kind,
      subject_id: subject.id,
      requested_at: now,
      requested_by: caller.principal.userId ?? caller.principal.tokenId ?? null,
      due_at: now + this.k.settings.grace_days * DAY,
      erased_at: null,
      summary: null,
    };
    if (subject.kind === "user" && caller.principal.userId === subject.id) throw new ConflictError("An operator cannot erase their own account: ask another operator.");
    const exists = subjectsOf(this.k.store)
      .list()
      .some((c) => {
        const part = c.export(subject, { secretValues: false });
        return part !== null && part !== undefined;
      });
    if (!exists) throw new NotFoundError(`Citadel holds nothing about the ${subject.kind} ${subject.id}.`);
    await this.k.store.write((tx) => {
      if (tx.query("SELECT 1 FROM subject_erasures WHERE kind = ? AND subject_id = ? AND erased_at IS NULL").get(subject.kind, subject.id)) throw new ConflictError(`An erasure of ${subject.id} is pending already.`);
      for (const contributor of subjectsOf(this.k.store).list()) contributor.softDelete?.(tx, subject, now);
      this.recordPending(tx, row, actorOf(caller.principal), `requested: soft-deleted; erased for good from ${iso(row.due_at)}`, caller.request);
    });
    this.committed(subject);
    return view(row);
  }

  /** Tells the contributors a change of the subject is committed (DNS stops serving its zones). */
  private committed(subject: Subject): void {
    for (const contributor of subjectsOf(this.k.store).list()) contributor.committed?.(subject);
  }

  /** A pending erasure into the ledger, with its audit event (the erasure's first stage). */
  private recordPending(tx: Database, row: ErasureRow, actor: AuditActor, reason: string, request?: AuditRequestContext): void {
    tx.query("INSERT INTO subject_erasures (id, kind, subject_id, requested_at, requested_by, due_at, erased_at, summary) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)").run(
      row.id,
      row.kind,
      row.subject_id,
      row.requested_at,
      row.requested_by,
      row.due_at,
    );
    this.k.audit.record(tx, {
      action: "subject.erased",
      outcome: "success",
      actor,
      resource: { type: row.kind, id: row.subject_id },
      organization: row.kind === "organization" ? row.subject_id : null,
      reason,
      request,
    });
  }

  list() {
    return { items: this.k.store.db.query<ErasureRow, []>("SELECT * FROM subject_erasures ORDER BY requested_at DESC").all().map(view) };
  }

  /**
   * After `citadel restore`: erasures the restored database does not know (asked for after the
   * backup was taken) are carried over from the database it replaced, so a restore cannot bring
   * an erased person back. Pending ones are soft-deleted again; `runDue` finishes the rest.
   * The restore leaves a marker naming the replaced database (the backup plugin's contract).
   */
  async carryOverErasures(dataDir: string): Promise<number> {
    const marker = join(dataDir, RESTORE_MARKER);
    if (!existsSync(marker)) return 0;
    let previous: string | null = null;
    try {
      previous = (JSON.parse(readFileSync(marker, "utf8")) as { previous?: string | null }).previous ?? null;
    } catch {
      return 0;
    }
    if (!previous || !existsSync(join(dataDir, previous))) return 0;
    let old: ErasureRow[] = [];
    const db = openReadOnly(join(dataDir, previous));
    try {
      if (db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'subject_erasures'").get()) old = db.query<ErasureRow, []>("SELECT * FROM subject_erasures").all();
    } finally {
      db.close();
    }
    const now = this.k.clock.now();
    let carried = 0;
    for (const row of old) {
      if (this.k.store.db.query("SELECT 1 FROM subject_erasures WHERE id = ?").get(row.id)) continue;
      const subject: Subject = { kind: row.kind, id: row.subject_id };
      await this.k.store.write((tx) => {
        for (const contributor of subjectsOf(this.k.store).list()) {
          try {
            contributor.softDelete?.(tx, subject, now);
          } catch (e) {
            this.k.log.warn("subject: a carried-over erasure could not soft-delete (it is erased for good when due)", { subject: row.subject_id, part: contributor.name, error: String(e) });
          }
        }
        this.recordPending(tx, row, { kind: "system" }, `carried over after a restore: erasure requested ${iso(row.requested_at)}, for good from ${iso(row.due_at)}`);
      });
      this.committed(subject);
      carried++;
    }
    return carried;
  }

  /** Erases every request whose grace period is over; returns how many. Runs hourly and on demand. */
  async runDue(): Promise<number> {
    const now = this.k.clock.now();
    const due = this.k.store.db.query<ErasureRow, [number]>("SELECT * FROM subject_erasures WHERE erased_at IS NULL AND due_at <= ? ORDER BY due_at").all(now);
    let erased = 0;
    for (const row of due) {
      const subject: Subject = { kind: row.kind, id: row.subject_id };
      const done = await this.k.store.write((tx) => {
        // Again inside the write: a run at the same moment (the hourly one, one asked for over
        // the API) may have erased it, or the request was withdrawn, since the list was read.
        const still = tx.query("SELECT 1 FROM subject_erasures WHERE id = ? AND erased_at IS NULL AND due_at <= ?").get(row.id, now);
        if (!still) return false;
        const parts: string[] = [];
        for (const contributor of subjectsOf(this.k.store).list()) {
          const summary = contributor.erase?.(tx, subject, now);
          if (summary) parts.push(`${contributor.name}: ${summary}`);
        }
        const summary = parts.join("; ") || "nothing left to erase";
        tx.query("UPDATE subject_erasures SET erased_at = ?, summary = ? WHERE id = ?").run(now, summary, row.id);
        this.k.audit.record(tx, {
          action: "subject.erased",
          outcome: "success",
          actor: { kind: "system" },
          resource: { type: row.kind, id: row.subject_id },
          organization: row.kind === "organization" ? row.subject_id : null,
          reason: `erased for good: ${summary}`,
        });
        return true;
      });
      if (!done) continue;
      this.committed(subject);
      erased++;
    }
    return erased;
  }
}

function view(row: ErasureRow) {
  return {
    id: row.id,
    kind: row.kind,
    subject: row.subject_id,
    requested_at: iso(row.requested_at)!,
    due_at: iso(row.due_at)!,
    erased_at: iso(row.erased_at),
    summary: row.summary,
  };
}
