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
import { isPseudoSubject, type AuditActor, type AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, type Principal } from "../../src/auth/principal.ts";
import { ConflictError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import type { Kernel } from "../../src/plugin.ts";
import { claimRestoreStep, hasTable, readPrevious, restoreState } from "../../src/restore-marker.ts";
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

export interface ErasuresAfterRestore {
  /** Erasures the previous database knew and this one did not, carried over. */
  carried: number;
  /** Whether the previous database could be read: without it, erasures after the backup are unknown. */
  previousRead: boolean;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const DAY = 86_400_000;

/** The part where users and organizations are made: a subject is one it holds as that kind (an erased one stays there, anonymized). */
const KEEPER = "iam";
/** How the ids of each kind begin (src/ids.ts: newId("usr"), newId("org")). */
const ID_PREFIX: Record<SubjectKind, string> = { user: "usr_", organization: "org_" };

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
    this.refuseUnknown(subject);
    const data: Record<string, unknown> = {};
    for (const contributor of subjectsOf(this.k.store).list()) {
      const part = contributor.export(subject, { secretValues });
      if (part !== null && part !== undefined) data[contributor.name] = part;
    }
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
    this.refuseUnknown(subject);
    await this.k.store.write((tx) => {
      refuseSecondErasure(tx, subject);
      for (const contributor of subjectsOf(this.k.store).list()) contributor.softDelete?.(tx, subject, now);
      this.recordPending(tx, row, actorOf(caller.principal), `requested: soft-deleted; erased for good from ${iso(row.due_at)}`, caller.request);
    });
    this.committed(subject);
    return view(row);
  }

  /**
   * Refuses a subject Citadel does not keep as that kind. Other parts answer for any id: the
   * audit log's holds the events whose subject it is, and an organization's mesh enrollments
   * name the organization. Asked for as a user, an organization's id would export its personal
   * data, and its erasure shred the organization's audit key while the organization lives on.
   */
  private refuseUnknown(subject: Subject): void {
    const keeper = subjectsOf(this.k.store)
      .list()
      .find((c) => c.name === KEEPER);
    const kept = subject.id.startsWith(ID_PREFIX[subject.kind]) ? keeper?.export(subject, { secretValues: false }) : null;
    if (kept === null || kept === undefined) throw new NotFoundError(`no ${subject.kind} ${subject.id}`);
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
   * backup was taken) are carried over from the database it replaced (src/restore-marker.ts),
   * so a restore cannot bring an erased person back. Pending ones are soft-deleted again;
   * `runDue` finishes the rest. Once per restore (a start that fails before the marker goes
   * meets it again). A previous database that does not read — often the damaged one the restore
   * replaced — counts as none: those erasures are then unknown, and the log and the audit log
   * say they must be made again. Null when no restore happened, or this one was handled already.
   */
  async carryOverErasures(dataDir: string): Promise<ErasuresAfterRestore | null> {
    const state = restoreState(dataDir);
    if (state.kind === "none") return null;
    const before = readPrevious(state.previous, erasuresIn);
    const now = this.k.clock.now();
    const carried = await this.k.store.write((tx) => {
      if (!claimRestoreStep(tx, state.id, "subject", now)) return null;
      const rows = (before ?? []).filter((row) => this.carryOver(tx, row, now));
      const reason =
        before === null
          ? "after a restore: no previous database to read erasures from: erasures asked for after the backup are unknown and must be made again (see your records)"
          : `after a restore: ${rows.length} erasure(s) asked for after the backup carried over`;
      this.k.audit.record(tx, { action: "subject.restore.erasures", actor: { kind: "system" }, outcome: "success", resource: null, reason });
      return rows;
    });
    if (carried === null) return null;
    for (const row of carried) this.committed({ kind: row.kind, id: row.subject_id });
    return { carried: carried.length, previousRead: before !== null };
  }

  /** One erasure of the previous database into this one, soft-deleted again; false when this one knows it already. */
  private carryOver(tx: Database, row: ErasureRow, now: number): boolean {
    // The same request, or another for the subject (pending or done): one is enough, and a
    // second pending one would break the ledger's unique index, and with it the start.
    if (tx.query("SELECT 1 FROM subject_erasures WHERE id = ? OR (kind = ? AND subject_id = ?)").get(row.id, row.kind, row.subject_id)) return false;
    const subject: Subject = { kind: row.kind, id: row.subject_id };
    // All of the subject or none of it: a part refusing (the restored database's last operator
    // or last owner — whoever took that over after the backup is not in it) holds the erasure,
    // as a new request would be refused; erased when due anyway, it would leave the appliance
    // without an operator, or an organization without an owner.
    tx.run("SAVEPOINT carried_erasure");
    try {
      for (const contributor of subjectsOf(this.k.store).list()) contributor.softDelete?.(tx, subject, now);
    } catch (e) {
      tx.run("ROLLBACK TO carried_erasure");
      tx.run("RELEASE carried_erasure");
      if (!(e instanceof ConflictError)) throw e;
      this.k.log.warn("subject: a carried-over erasure is held: make it again once resolved", { subject: row.subject_id, reason: e.message });
      this.k.audit.record(tx, {
        action: "subject.restore.erasures",
        outcome: "failure",
        actor: { kind: "system" },
        resource: { type: row.kind, id: row.subject_id },
        reason: `after a restore: the erasure requested ${iso(row.requested_at)} is held, not carried over: ${e.message} Resolve it, then request the erasure again.`,
      });
      return false;
    }
    tx.run("RELEASE carried_erasure");
    this.recordPending(tx, row, { kind: "system" }, `carried over after a restore: erasure requested ${iso(row.requested_at)}, for good from ${iso(row.due_at)}`);
    return true;
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

/** One erasure per subject: pending, or done (what is left of an erased subject is no one's to erase again). */
function refuseSecondErasure(tx: Database, subject: Subject): void {
  const earlier = tx.query<{ erased_at: number | null }, [string, string]>("SELECT erased_at FROM subject_erasures WHERE kind = ? AND subject_id = ? ORDER BY erased_at IS NULL DESC LIMIT 1").get(subject.kind, subject.id);
  if (!earlier) return;
  if (earlier.erased_at === null) throw new ConflictError(`An erasure of ${subject.id} is pending already.`);
  throw new ConflictError(`${subject.id} was erased already (${iso(earlier.erased_at)}).`);
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

/** The previous database's erasure ledger (one from before the subject plugin has none). */
function erasuresIn(db: Database): ErasureRow[] {
  return hasTable(db, "subject_erasures") ? db.query<ErasureRow, []>("SELECT * FROM subject_erasures ORDER BY requested_at").all() : [];
}
