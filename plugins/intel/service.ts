/**
 * The intel plugin's service: it owns the running Shield (src/intel/shield.ts) and everything
 * the shield is made from — the geo databases, the reputation lists, the policy, the manual
 * allow/deny entries — and keeps them in the store: every change and every decision (start,
 * expiry, lift) is recorded and audited in the same transaction.
 */
import type { Database } from "bun:sqlite";
import type { AuditEventInput } from "../../src/audit/event.ts";
import { actorOf, type Principal } from "../../src/auth/principal.ts";
import type { AuditRequestContext } from "../../src/audit/event.ts";
import { DecryptionError } from "../../src/crypto/aead.ts";
import { KeyDestroyedError } from "../../src/crypto/keyring.ts";
import { ConflictError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import { CidrSet } from "../../src/intel/cidr-set.ts";
import type { GeoIntel } from "../../src/intel/geo.ts";
import { acceptedListUrl, fetchList, parseList, redactedUrl, refreshProblem, type FetchListOptions, type ListFormat, type ListSize } from "../../src/intel/lists.ts";
import { SIGNALS } from "../../src/intel/behaviour.ts";
import { DEFAULT_POLICY, severity, type Action, type ShieldPolicy } from "../../src/intel/policy.ts";
import { Shield, toCidr, type Decision, type ListMatch, type ManualEntry, type MergedDecision } from "../../src/intel/shield.ts";
import { cidrContains, formatCidr, isLoopback, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { IntelSettings } from "./settings.ts";

export type IntelKernel = Kernel<IntelSettings>;

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

interface ListRow {
  name: string;
  weight: number;
  /** The format found in the text. */
  format: string;
  /** The format the operator gave, which a refresh parses with too; null: auto. */
  format_given: ListFormat | null;
  /**
   * Its URL as it may be shown (redactedUrl: without credentials and query); null: imported from
   * text. Whole in a row an earlier version stored, until encryptStoredListUrls encrypts it.
   */
  url: string | null;
  /** The whole URL, encrypted (it may carry the publisher's credentials): see listUrlKeyOwner. */
  url_encrypted: Uint8Array | null;
  refresh_minutes: number | null;
  content: string;
  entries: number;
  errors: number;
  updated_at: number;
}

interface LoadedList extends ListMatch {
  row: Omit<ListRow, "content">;
  /** Whether its text ends its last line (a refresh that does not looks cut short). */
  endsWithNewline: boolean;
}

/** A scheduled refresh: what the list was when the download began. */
interface RefreshBase extends ListSize {
  /** Its URL as stored (url, url_encrypted): another one stored since is a replacement. */
  stored: StoredUrl;
  updatedAt: number;
  /** The download the last attempts refused as suspect: its SHA-256 and when it was first refused. */
  refused: { hash: string; since: number } | null;
  refreshMinutes: number;
}

type StoredUrl = Pick<ListRow, "url" | "url_encrypted">;

/** Whether an operator deleted or replaced the list since a refresh began (its download is then no concern). */
function listChangedSince(db: Database, name: string, stored: StoredUrl, updatedAt: number): boolean {
  const now = db.query<StoredUrl & { updated_at: number }, [string]>("SELECT url, url_encrypted, updated_at FROM intel_lists WHERE name = ?").get(name);
  // Every store encrypts the URL afresh: the same bytes are the same row.
  return !now || now.url !== stored.url || !sameBytes(now.url_encrypted, stored.url_encrypted) || now.updated_at !== updatedAt;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : Buffer.from(a).equals(b);
}

/**
 * The keyring owner of a list's URL, bound to the row's "url" context (as a webhook's signing
 * secret is to its webhook): a copied database does not give away a publisher's API key. Its
 * keys are destroyed with the list.
 */
export const listUrlKeyOwner = (name: string) => `intel-list:${name}`;

/**
 * The lists the audit event of an encryption run names, the first of them; the rest are
 * counted, the log line names them all (found in review: thousands made one event of hundreds
 * of KB).
 */
const ENCRYPTED_LISTS_NAMED = 20;

/**
 * Encrypts the list URLs an earlier version stored whole, and leaves the shown form in their
 * place; once, as each is found (idempotent). Needs the keys: run at start when unsealed and at
 * each unseal. A run that encrypts any is audited once, naming the lists (the first
 * ENCRYPTED_LISTS_NAMED, and how many more), never a URL (found in review: a change to stored
 * security data with no event). Returns how many it encrypted.
 */
export async function encryptStoredListUrls(k: IntelKernel): Promise<number> {
  const keyring = k.seal.keyringIfUnsealed();
  if (!keyring) return 0;
  const names = await k.store.write((tx) => {
    const rows = tx.query<{ name: string; url: string }, []>("SELECT name, url FROM intel_lists WHERE url IS NOT NULL AND url_encrypted IS NULL").all();
    const update = tx.query("UPDATE intel_lists SET url = ?, url_encrypted = ? WHERE name = ?");
    for (const row of rows) update.run(redactedUrl(row.url), keyring.encrypt(tx, listUrlKeyOwner(row.name), "url", row.url), row.name);
    const names = rows.map((r) => r.name);
    if (names.length > 0) {
      const reason = `list URLs stored whole by an earlier version encrypted: ${names.length} (${firstNamed(names, ENCRYPTED_LISTS_NAMED)})`;
      k.audit.record(tx, { action: "intel.list.encrypt", actor: SYSTEM, outcome: "success", resource: null, reason });
    }
    return names;
  });
  if (names.length > 0) k.log.info("intel: list URLs stored whole by an earlier version are encrypted now", { lists: names });
  return names.length;
}

/** The first `most` names, and how many more there are (as src/crypto/key-operations.ts names a damaged KEK's owners). */
function firstNamed(names: readonly string[], most: number): string {
  const more = names.length - most;
  return more > 0 ? `${names.slice(0, most).join(", ")}, and ${more} more` : names.join(", ");
}

/** The list was deleted or replaced while a refresh downloaded it: the download is dropped. */
class RefreshOvertaken extends Error {}

/** A refresh refused as suspect, with what it downloaded (taken if the next download is the same). */
class SuspectRefresh extends InvalidError {
  constructor(
    message: string,
    readonly contentHash: string,
    /** When this very download was first refused. */
    readonly since: number,
  ) {
    super(message, "content");
  }
}

const SYSTEM = { kind: "system" } as const;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
/** Decisions the shield makes on its own that are stored and audited one by one, a minute at most. */
const DECISION_RECORDS_PER_MINUTE = 120;
/** Ended decisions are kept this long for the record, then deleted. */
const DECISION_RETENTION_MS = 30 * 24 * 60 * 60_000;
/** Bad lines reported back at most (the rest are counted). */
const MAX_REPORTED_ERRORS = 20;
/**
 * Manual entries in force at most. They are for an operator's exceptions (an office, a
 * scanner); thousands of addresses belong in a reputation list, which is built for millions.
 */
export const MAX_MANUAL_ENTRIES = 10_000;
/** The wait after a list's first failed refresh; it doubles with each failure, up to its refresh period. */
const FIRST_RETRY_MINUTES = 5;

export class IntelService {
  readonly shield: Shield;
  private lists: LoadedList[] = [];
  private policy: ShieldPolicy;
  /** The refresh pass under way: one at a time. */
  private refreshing: Promise<void> | null = null;
  /**
   * Lists whose last refresh failed: how many times in a row, and when to try again. In memory:
   * a restart forgets it, which costs one early attempt per failing list, and needs no table.
   */
  private readonly retries = new Map<string, { failures: number; next: number; refused: { hash: string; since: number } | null }>();
  /**
   * How lists are fetched beyond the defaults: tests set allowLoopbackHttp to serve them from a
   * loopback server over plain http. Nothing sets it in production, where list URLs are https://.
   */
  readonly listFetching: Pick<FetchListOptions, "allowLoopbackHttp"> = {};
  /** When the service started: decisions that ran out before are ended by endLapsedDecisions, the rest by the shield. */
  private readonly startedAt: number;
  /** Stored decisions the shield did not take up, merged into a stronger one held for their /64: endLapsedDecisions ends them. */
  private mergedAtStart: MergedDecision[];
  /** The last change to the manual entries or the lists under way (see oneAtATime). */
  private changing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly k: IntelKernel,
    readonly geo: GeoIntel,
  ) {
    this.startedAt = k.clock.now();
    this.policy = this.effectivePolicy(this.storedPolicy());
    this.shield = new Shield({
      geo,
      lists: () => this.lists,
      policy: () => this.policy,
      now: () => k.clock.now(),
      trustLoopback: k.settings.trust_loopback,
      newId: () => newId("dec"),
      onDecision: (change, decision) => void this.recordDecision(change, decision),
    });
    this.reloadManual();
    const held = this.storedDecisions(this.startedAt);
    for (const decision of held) this.stored.add(decision);
    this.mergedAtStart = this.shield.restore(held);
    this.lists = this.loadLists();
  }

  private get db(): Database {
    return this.k.store.db;
  }

  private now(): number {
    return this.k.clock.now();
  }

  // --- policy ----------------------------------------------------------------------------

  private storedPolicy(db: Database = this.db): Partial<ShieldPolicy> {
    const row = db.query<{ policy: string }, []>("SELECT policy FROM intel_policy WHERE singleton = 1").get();
    return row ? (JSON.parse(row.policy) as Partial<ShieldPolicy>) : {};
  }

  /**
   * The config's defaults, then what was set through the API — what an earlier version stored
   * without checking made usable: AS numbers with leading zeros as the lookup writes them, keys
   * nothing reads left out.
   */
  private effectivePolicy(stored: Partial<ShieldPolicy>): ShieldPolicy {
    const s = this.k.settings;
    const asns = Object.entries(stored.asns ?? {}).flatMap(([asn, points]) => (/^\d{1,10}$/.test(asn) ? [[String(Number(asn)), points] as const] : []));
    return {
      ...DEFAULT_POLICY,
      ...stored,
      asns: Object.fromEntries(asns),
      shadow: s.shadow,
      thresholds: { throttle: s.threshold_throttle, refuse: s.threshold_refuse, drop: s.threshold_drop },
      decision_minutes: s.decision_minutes,
      behaviour: { ...DEFAULT_POLICY.behaviour, ...known(stored.behaviour, SIGNALS) },
      anonymous: { ...DEFAULT_POLICY.anonymous, ...known(stored.anonymous, ANONYMITY) },
    };
  }

  policyView() {
    return this.policy;
  }

  /**
   * Sets country and ASN points (each map replaced whole) and anonymity and behaviour points
   * (merged). Only keys the score reads are taken: one it would never match is a 422, not a
   * rule stored to do nothing. Nor, unless `lock_out` says the caller means it, points that
   * would have the shield refuse or drop the caller's own next request (their country's, their
   * network's): asked about as a list that would is. One change at a time, as the lists and
   * manual entries are: the check reads the policy in force.
   */
  async setPolicy(caller: Caller, given: { countries?: Record<string, number>; asns?: Record<string, number>; anonymous?: Partial<ShieldPolicy["anonymous"]>; behaviour?: Partial<ShieldPolicy["behaviour"]>; lock_out?: boolean }) {
    const { lock_out: lockOut, ...points } = given;
    for (const code of Object.keys(points.countries ?? {})) if (!/^[A-Z]{2}$/.test(code)) throw new InvalidError(`"${code}" is not an ISO country code (two capital letters)`, "countries");
    const input = { ...points, ...(points.asns && { asns: asNumbers(points.asns) }) };
    for (const key of Object.keys(input.anonymous ?? {})) if (!ANONYMITY.includes(key)) throw new InvalidError(`anonymous: "${key}" is none of ${ANONYMITY.join(", ")}`, "anonymous");
    for (const key of Object.keys(input.behaviour ?? {})) if (!(SIGNALS as readonly string[]).includes(key)) throw new InvalidError(`behaviour: "${key}" is none of ${SIGNALS.join(", ")}`, "behaviour");
    // What was set, values included (points are not secret): the audit log says what the policy became.
    const changes = Object.entries(input).map(([part, values]) => `${part} ${JSON.stringify(values)}`);
    const merged = (before: Partial<ShieldPolicy>) => ({ ...before, ...input, anonymous: { ...before.anonymous, ...input.anonymous }, behaviour: { ...before.behaviour, ...input.behaviour } }) as Partial<ShieldPolicy>;
    return this.oneAtATime(async () => {
      if (lockOut !== true) this.refusePolicyExposure(caller, this.effectivePolicy(merged(this.storedPolicy())));
      // Merged with what is stored in the same transaction: another change made meanwhile is kept, not undone.
      const stored = await this.k.store.write((tx) => {
        const after = merged(this.storedPolicy(tx));
        tx.query("INSERT INTO intel_policy (singleton, policy, updated_at) VALUES (1, ?, ?) ON CONFLICT (singleton) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at").run(JSON.stringify(after), this.now());
        this.k.audit.record(tx, event(caller, "intel.policy.update", { type: "intel_policy", id: "policy" }, changes.length > 0 ? `set ${changes.join("; ")}` : "nothing set"));
        return after;
      });
      this.policy = this.effectivePolicy(stored);
      this.shield.invalidate();
      return this.policy;
    });
  }

  /** A 409 when `policy` in force would refuse or drop the caller's next request. */
  private refusePolicyExposure(caller: Caller, policy: ShieldPolicy): void {
    const what = (source: string) => `with these points, your next request (from ${source})`;
    this.refuseExposure(caller, { policy }, "refuse", what, 'Send "lock_out": true (citadel intel policy set FILE --yes)');
  }

  // --- decisions -------------------------------------------------------------------------

  private storedDecisions(now: number): Decision[] {
    return this.db
      .query<{ id: string; target: string; scope: string; action: string; score: number; reasons: string; since: number; until: number; shadow: number }, [number]>(
        "SELECT * FROM intel_decisions WHERE ended_at IS NULL AND until > ? ORDER BY since, id",
      )
      .all(now)
      .map((r) => ({ id: r.id, target: r.target, scope: r.scope as Decision["scope"], action: r.action as Decision["action"], score: r.score, reasons: JSON.parse(r.reasons), since: r.since, until: r.until, shadow: r.shadow === 1 }));
  }

  /**
   * Ends the stored decisions the shield does not hold, each audited as `intel.decision.expire`
   * (as sweepManual does for manual entries): those whose time ran out while Citadel was
   * stopped, and those an earlier version made on single addresses of one IPv6 /64 that lost
   * its place to a stronger one (see Shield.restore). Nothing else would end them: they would
   * stay unended in the table for good (retention deletes ended ones only), the audit log would
   * never say they ended, and a merged one would be back in force once the one that held its
   * place was lifted and Citadel restarted. Run once at start.
   */
  async endLapsedDecisions(): Promise<void> {
    const merged = this.mergedAtStart;
    this.mergedAtStart = [];
    try {
      await this.k.store.write((tx) => {
        const rows = tx.query<{ id: string; target: string; action: string; until: number }, [number]>("SELECT id, target, action, until FROM intel_decisions WHERE ended_at IS NULL AND until <= ?").all(this.startedAt);
        for (const row of rows) {
          // Ended when its time ran out, not at the restart: retention counts from then.
          tx.query("UPDATE intel_decisions SET ended_at = ? WHERE id = ?").run(row.until, row.id);
          this.k.audit.record(tx, event(null, "intel.decision.expire", { type: "intel_decision", id: row.id }, `${row.action} ${row.target} expired (at ${iso(row.until)}, while Citadel was stopped)`));
        }
        for (const { merged: decision, into, heldAs } of merged) {
          tx.query("UPDATE intel_decisions SET ended_at = ? WHERE id = ? AND ended_at IS NULL").run(this.startedAt, decision.id);
          const reason = `${decision.action} ${decision.target} ended at start: merged into the decision on ${heldAs} (${into.id}: ${into.action} ${into.target})`;
          this.k.audit.record(tx, event(null, "intel.decision.expire", { type: "intel_decision", id: decision.id }, reason));
        }
      });
    } catch (e) {
      this.k.log.error("intel: decisions that ran out while stopped could not be ended", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /**
   * Decisions the shield makes on its own are recorded one by one up to DECISION_RECORDS_PER_MINUTE;
   * past that (a flood of new addresses) they are counted and summed up in one event a minute,
   * so that nobody can fill the disk or the write queue by sending from many addresses. (Ends
   * are stored past it all the same: one per start recorded, so no more than those.)
   */
  private budget = { minute: 0, used: 0, started: 0, ended: 0 };

  private withinBudget(change: "start" | "expire"): boolean {
    this.rollBudget();
    if (this.budget.used < DECISION_RECORDS_PER_MINUTE) {
      this.budget.used++;
      return true;
    }
    if (change === "start") this.budget.started++;
    else this.budget.ended++;
    return false;
  }

  /**
   * A new minute of the budget once the clock has moved on, the last one's unrecorded decisions
   * summed up in one event naming that minute. Also run by the sweep (every 30 s): a flood's
   * summary is written within the half minute after it, not at some later decision (or never).
   */
  private rollBudget(): void {
    const minute = Math.floor(this.now() / 60_000);
    if (minute === this.budget.minute) return;
    const { minute: last, started, ended } = this.budget;
    this.budget = { minute, used: 0, started: 0, ended: 0 };
    if (started + ended > 0) void this.recordSummary(last, started, ended);
  }

  private async recordSummary(minute: number, started: number, ended: number): Promise<void> {
    const from = new Date(minute * 60_000).toISOString();
    this.k.log.warn("intel: a flood of decisions; not every one was recorded", { started, ended, minute: from });
    await this.k.store
      .write((tx) =>
        this.k.audit.record(tx, {
          action: "intel.decision.start",
          outcome: "success",
          actor: SYSTEM,
          reason: `${started} decisions started and ${ended} ended in the minute from ${from} were not recorded one by one (over ${DECISION_RECORDS_PER_MINUTE} a minute)`,
          subject: "shield",
        }),
      )
      .catch(() => {});
  }

  /** Decisions the shield holds whose start is stored (restored at start, or recorded within the budget): theirs is an end to store. */
  private readonly stored = new WeakSet<Decision>();

  /**
   * A decision started or ended: stored and audited (never blocks the answer path that made it).
   * Past the budget a start is neither; an end is stored all the same (else the row stays open,
   * is kept for good and is said at the next start to have ended while Citadel was stopped),
   * only its audit event is summed up. A decision whose start was never recorded has no expiry
   * to record: the log never said it began.
   */
  private async recordDecision(change: "start" | "expire" | "lift", decision: Decision, caller?: Caller): Promise<void> {
    if (change === "start") {
      if (!this.withinBudget("start")) return;
      this.stored.add(decision);
    } else if (change === "expire" && !this.stored.has(decision)) {
      return;
    }
    const audited = change !== "expire" || this.withinBudget("expire");
    try {
      await this.k.store.write((tx) => {
        if (change === "start") {
          tx.query("INSERT INTO intel_decisions (id, target, scope, action, score, reasons, since, until, shadow) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").run(
            decision.id,
            decision.target,
            decision.scope,
            decision.action,
            decision.score,
            JSON.stringify(decision.reasons),
            decision.since,
            decision.until,
            decision.shadow ? 1 : 0,
          );
        } else {
          tx.query("UPDATE intel_decisions SET ended_at = ? WHERE id = ?").run(this.now(), decision.id);
        }
        if (!audited) return;
        const reason =
          change === "start"
            ? `${decision.shadow ? "shadow: would " : ""}${decision.action} ${decision.target}${decision.scope === "dns" ? " (DNS only)" : ""} until ${iso(decision.until)}: score ${decision.score} — ${decision.reasons.map((r) => r.text).join("; ")}`
            : `${decision.action} ${decision.target} ${change === "lift" ? "lifted" : "expired"}`;
        this.k.audit.record(tx, { action: `intel.decision.${change}`, outcome: "success", actor: caller ? actorOf(caller.principal) : SYSTEM, resource: { type: "intel_decision", id: decision.id }, reason, request: caller?.request ?? null, subject: "shield" });
      });
    } catch (e) {
      this.k.log.error("intel: a decision could not be recorded", { decision: decision.id, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Expires what is due (decisions, manual entries) and deletes decisions that ended more than 30 days ago. */
  async sweep(): Promise<void> {
    this.rollBudget();
    this.shield.sweep();
    await this.sweepManual();
    const cutoff = this.now() - DECISION_RETENTION_MS;
    await this.k.store.write((tx) => tx.query("DELETE FROM intel_decisions WHERE ended_at IS NOT NULL AND ended_at < ?").run(cutoff)).catch((e) => {
      this.k.log.error("intel: old decisions could not be deleted", { error: e instanceof Error ? e.message : String(e) });
    });
  }

  decisions() {
    return { items: this.shield.activeDecisions().map(decisionView) };
  }

  async lift(caller: Caller, target: string) {
    if (!toCidr(target)) throw new InvalidError(`"${target}" is not an address or CIDR (host bits must be zero)`, "ip");
    const lifted = this.shield.lift(target);
    if (lifted.length === 0) throw new NotFoundError(`No decision in force for ${target}.`);
    for (const decision of lifted) await this.recordDecision("lift", decision, caller);
  }

  /** Ends every decision in force early, each audited as lifted; how many. */
  async liftAll(caller: Caller): Promise<number> {
    const lifted = this.shield.liftAll();
    for (const decision of lifted) await this.recordDecision("lift", decision, caller);
    return lifted.length;
  }

  /**
   * Runs a change to the manual entries or the lists once the ones before it are committed and
   * loaded. Their checks (an entry covering every address with those in force, a change that
   * would lock its maker out) read what is in force, then the write commits in a later batch:
   * two changes sent at once each passed against a state without the other, and together did
   * what either alone was refused (found in review). The checks cannot move into the write's
   * transaction as the policy's merge did: they ask the shield what it would do, which rests on
   * more than the tables (behaviour, decisions, geo, the lists parsed). Changes are an
   * operator's or a refresh's, seldom: waiting for one commit each costs nothing that matters.
   */
  private oneAtATime<T>(change: () => Promise<T>): Promise<T> {
    const done = this.changing.then(change);
    this.changing = done.catch(() => {});
    return done;
  }

  // --- manual allow and deny --------------------------------------------------------------

  private manualEntries(): ManualEntry[] {
    return this.db
      .query<{ id: string; kind: "allow" | "deny"; target: string; action: string; reason: string | null; until: number | null }, []>("SELECT * FROM intel_manual ORDER BY created_at")
      .all()
      .map((r) => ({ id: r.id, kind: r.kind, target: r.target, action: r.action as ManualEntry["action"], reason: r.reason, until: r.until }));
  }

  private reloadManual(): void {
    this.shield.setManual(this.manualEntries());
  }

  /**
   * Deletes manual entries whose time is up, each audited as `intel.manual.expire` (Citadel's
   * own doing), as adding and removing one is. The shield stopped applying them at their time
   * already; this keeps the table, the listing and the index to what is in force.
   */
  private async sweepManual(): Promise<void> {
    const now = this.now();
    try {
      await this.oneAtATime(() => this.deleteExpiredManual(now));
    } catch (e) {
      this.k.log.error("intel: expired manual entries could not be deleted", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  private async deleteExpiredManual(now: number): Promise<void> {
    const swept = await this.k.store.write((tx) => {
      const rows = tx.query<{ id: string; kind: string; target: string; action: string }, [number]>("SELECT id, kind, target, action FROM intel_manual WHERE until IS NOT NULL AND until <= ?").all(now);
      for (const row of rows) {
        tx.query("DELETE FROM intel_manual WHERE id = ?").run(row.id);
        this.k.audit.record(tx, event(null, "intel.manual.expire", { type: "intel_manual", id: row.id }, `${row.kind === "allow" ? "allow" : `deny (${row.action})`} ${row.target} expired`));
      }
      return rows.length;
    });
    if (swept > 0) this.reloadManual();
  }

  manual() {
    const now = this.now();
    return { items: this.manualEntries().filter((e) => e.until === null || e.until > now).map(manualView) };
  }

  /**
   * Adds an allow or deny entry. Not one for every address (/0): allowing everything is turning
   * the shield off, denying everything locks everyone out. Nor, unless `lock_out` says the
   * caller means it, a deny on the caller's own address: their next request would be refused.
   */
  async addManual(caller: Caller, input: { kind: "allow" | "deny"; target: string; action?: Exclude<Action, "allow">; minutes?: number; reason?: string; lock_out?: boolean }) {
    const cidr = toCidr(input.target);
    if (!cidr) throw new InvalidError(`"${input.target}" is not an address or CIDR (host bits must be zero)`, "target");
    const target = formatCidr(cidr);
    // Not dropped unsaid: whoever sent it meant something an allow entry does not do.
    if (input.kind === "allow" && input.action !== undefined) throw new InvalidError(`an allow entry takes no action (it allows); "${input.action}" is for a deny entry`, "action");
    const why = input.kind === "allow" ? "allowing everything is turning the shield off ([intel] enabled = false)" : "denying everything would lock everyone out";
    if (cidr.prefix === 0) throw new InvalidError(`${target} is every IPv${cidr.family} address: ${why}, not an entry`, "target");
    return this.oneAtATime(async () => {
      // Nor halves that name every address as much (0.0.0.0/1 next to 128.0.0.0/1), as for a list.
      const everyone = this.coverWith(input.kind, cidr);
      if (everyone) throw new InvalidError(`${target} and the ${input.kind} entries in force cover every IPv${everyone} address together: ${why}`, "target");
      const entry: ManualEntry = { id: newId("man"), kind: input.kind, target, action: input.kind === "deny" ? (input.action ?? "refuse") : "refuse", until: input.minutes ? this.now() + input.minutes * 60_000 : null, reason: input.reason ?? null };
      if (entry.kind === "deny" && input.lock_out !== true) this.refuseLockOut(caller, cidr, entry.action, entry.until);
      await this.insertManual(caller, entry);
      this.reloadManual();
      return manualView(entry);
    });
  }

  private insertManual(caller: Caller, entry: ManualEntry): Promise<void> {
    const target = entry.target;
    return this.k.store.write((tx) => {
      // One entry per target: a second would be a second row to find and remove, and an allow
      // and a deny on the same target contradict each other (the allow would win unseen).
      const same = tx.query<{ id: string; kind: string; action: string }, [string, number]>("SELECT id, kind, action FROM intel_manual WHERE target = ? AND (until IS NULL OR until > ?)").get(target, this.now());
      if (same) throw new ConflictError(`${target} has a manual entry already (${same.id}, ${same.kind === "allow" ? "allow" : `deny ${same.action}`}): remove it first.`);
      const live = tx.query<{ n: number }, [number]>("SELECT COUNT(*) AS n FROM intel_manual WHERE until IS NULL OR until > ?").get(this.now())!.n;
      if (live >= MAX_MANUAL_ENTRIES) throw new ConflictError(`There are ${MAX_MANUAL_ENTRIES} manual entries already: remove some, or put many addresses in a reputation list.`);
      tx.query("INSERT INTO intel_manual (id, kind, target, action, reason, until, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)").run(entry.id, entry.kind, entry.target, entry.action, entry.reason, entry.until, this.now());
      const what = entry.kind === "allow" ? `allow ${target}` : `deny (${entry.action}) ${target}`;
      this.k.audit.record(tx, event(caller, "intel.manual.add", { type: "intel_manual", id: entry.id }, `${what}${entry.until ? ` until ${iso(entry.until)}` : ""}${entry.reason ? `: ${entry.reason}` : ""}`));
    });
  }

  /** The address family the live entries of `kind` would cover whole with `cidr` added, if one. */
  private coverWith(kind: ManualEntry["kind"], cidr: Cidr): 4 | 6 | null {
    const now = this.now();
    const live = this.manualEntries().filter((e) => e.kind === kind && (e.until === null || e.until > now));
    return CidrSet.build([cidr, ...live.flatMap((e) => toCidr(e.target) ?? [])]).coversAFamily();
  }

  /** A 409 when a deny doing `action` on `cidr` until `until` would reach the caller itself (see `shielded`). */
  private refuseLockOut(caller: Caller, cidr: Cidr, action: Exclude<Action, "allow">, until: number | null): void {
    const parsed = caller.request.source ? parseIp(caller.request.source) : null;
    if (!parsed) return;
    const own = unmapIpv4(parsed);
    if (!cidrContains(cidr, own) || this.shielded(own, until)) return;
    throw new ConflictError(`${formatCidr(cidr)} covers your own address (${caller.request.source}): your next request would be ${DONE_TO[action]}. Send "lock_out": true (citadel intel deny --yes) if that is what you mean.`);
  }

  /**
   * A 409 when a change would do more to the caller's own next request than is done now, and at
   * least `least`: the shield is asked what it would do with their address with the manual
   * entries, the lists or the policy the change leaves (`instead`). `what` says why, `meant` how to insist.
   */
  private refuseExposure(caller: Caller, instead: { manual?: readonly ManualEntry[]; lists?: readonly ListMatch[]; policy?: ShieldPolicy }, least: Exclude<Action, "allow">, what: (source: string) => string, meant: string): void {
    const source = caller.request.source;
    if (!source) return;
    const after = this.shield.wouldDo(source, instead);
    if (severity(after) < severity(least) || severity(after) <= severity(this.shield.wouldDo(source, {}))) return;
    throw new ConflictError(`${what(source)} would be ${DONE_TO[after as Exclude<Action, "allow">]}. ${meant} if that is what you mean.`);
  }

  /**
   * Whether no deny entry reaches `ip` for as long as one until `until` lasts: loopback the
   * shield trusts, or an allow entry (allow always wins) that lasts as long.
   */
  private shielded(ip: IpAddress, until: number | null): boolean {
    if (isLoopback(ip) && this.k.settings.trust_loopback) return true;
    const outlasts = (e: ManualEntry) => e.until === null || (until !== null && e.until >= until);
    const covers = (e: ManualEntry) => {
      const allowed = toCidr(e.target);
      return allowed !== null && cidrContains(allowed, ip);
    };
    return this.manualEntries().some((e) => e.kind === "allow" && outlasts(e) && covers(e));
  }

  /**
   * Removes a manual entry. Not, unless `lockOut` says the caller means it, an allow entry that
   * shields the caller's own address: their next request would meet what it held back.
   */
  removeManual(caller: Caller, id: string, lockOut = false): Promise<void> {
    return this.oneAtATime(async () => {
      if (!lockOut) this.refuseRemovalExposure(caller, id);
      await this.k.store.write((tx) => {
        const row = tx.query<{ kind: string; target: string }, [string]>("SELECT kind, target FROM intel_manual WHERE id = ?").get(id);
        if (!row) throw new NotFoundError(`No manual entry ${id}.`);
        tx.query("DELETE FROM intel_manual WHERE id = ?").run(id);
        this.k.audit.record(tx, event(caller, "intel.manual.remove", { type: "intel_manual", id }, `${row.kind} ${row.target}`));
      });
      this.reloadManual();
    });
  }

  /** A 409 when entry `id` is an allow entry without which the caller's next request would be held back. */
  private refuseRemovalExposure(caller: Caller, id: string): void {
    const entries = this.manualEntries();
    const removed = entries.find((e) => e.id === id && e.kind === "allow");
    if (!removed) return;
    const rest = entries.filter((e) => e !== removed);
    const what = (source: string) => `without the allow entry on ${removed.target} your next request (from ${source})`;
    this.refuseExposure(caller, { manual: rest }, "throttle", what, `Add ?lock_out=true (citadel intel manual --remove ${id} --yes)`);
  }

  // --- reputation lists ------------------------------------------------------------------

  private loadLists(): LoadedList[] {
    const rows = this.db.query<ListRow, []>("SELECT * FROM intel_lists ORDER BY name").all();
    return rows.map((row) => {
      const set = CidrSet.build(parseList(row.content, row.format as "auto").cidrs);
      const { content: _content, ...meta } = row;
      return { name: row.name, weight: row.weight, contains: (ip) => set.contains(ip), row: meta, endsWithNewline: row.content.endsWith("\n") };
    });
  }

  listsView() {
    return { items: this.lists.map((l) => listView(l.row)) };
  }

  /**
   * Creates or replaces a list from text (or from its URL, when one is given and `content` is
   * not). A scheduled refresh passes what the list held (`refreshOf`): a download that looks
   * cut short or broken is refused then (refreshProblem), where an operator's import is taken.
   */
  async putList(caller: Caller | null, name: string, input: { weight: number; content?: string; url?: string; refresh_minutes?: number; format?: "auto" | "plain" | "firehol" | "spamhaus"; lock_out?: boolean }, refreshOf?: RefreshBase) {
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) throw new InvalidError("a list's name is 1–63 lower-case letters, digits, dots, dashes or underscores", "name");
    if (input.content === undefined && input.url === undefined) throw new InvalidError("give the list's content, or a url to fetch it from", "content");
    // Not dropped unsaid: whoever sent it expected the list to be fetched again.
    if (input.refresh_minutes !== undefined && input.url === undefined) throw new InvalidError("refresh_minutes is for a list fetched from a url; give the url too, or leave it out", "refresh_minutes");
    if (input.url !== undefined && !acceptedListUrl(URL.parse(input.url), this.listFetching)) throw new InvalidError("a list's url must be https://", "url");
    const content = input.content ?? (await this.fetch(input.url!));
    const parsed = parseList(content, input.format ?? "auto");
    if (parsed.cidrs.length === 0) throw new InvalidError(`the list has no valid entry${parsed.errors[0] ? ` (line ${parsed.errors[0].line}: ${parsed.errors[0].problem})` : ""}`, "content");
    if (parsed.incomplete) throw new InvalidError(`the list is incomplete: ${parsed.incomplete}`, "content");
    // A /0 line is refused already; its halves (0.0.0.0/1, 128.0.0.0/1) name every address as much.
    const set = CidrSet.build(parsed.cidrs);
    const everyone = set.coversAFamily();
    if (everyone) throw new InvalidError(`the list covers every IPv${everyone} address, which no reputation list means (it would score every client, the operator's own included)`, "content");
    const suspect = refreshOf && refreshProblem(refreshOf, content, parsed);
    let taken = "";
    if (suspect) {
      // The same download twice in a row is the publisher's list, not an accident: taken.
      const hash = new Bun.CryptoHasher("sha256").update(content).digest("hex");
      // The same, over a whole refresh period: not a cache serving one cut-off copy for a while.
      const same = refreshOf.refused?.hash === hash;
      if (!same || this.now() - refreshOf.refused!.since < refreshOf.refreshMinutes * 60_000) {
        throw new SuspectRefresh(`the refreshed list was refused: ${suspect} (taken if it is still the same a refresh period later; import it with PUT to take it now)`, hash, same ? refreshOf.refused!.since : this.now());
      }
      taken = `; taken though ${suspect}, as it has been the same for a refresh period`;
    }
    return this.oneAtATime(async () => {
      // Nor, unless the operator means it, a list that would refuse them (a throttle is no lock-out).
      if (caller && input.lock_out !== true) this.refuseListExposure(caller, name, input.weight, set);
      const row: ListRow = {
        name,
        weight: input.weight,
        format: parsed.format,
        format_given: input.format === undefined || input.format === "auto" ? null : input.format,
        url: input.url === undefined ? null : redactedUrl(input.url),
        url_encrypted: null, // by storeList, in its transaction
        refresh_minutes: input.url ? (input.refresh_minutes ?? 1440) : null,
        content,
        entries: parsed.cidrs.length,
        errors: parsed.errorCount,
        updated_at: this.now(),
      };
      await this.storeList(caller, row, input.url ?? null, refreshOf, taken);
      this.retries.delete(name); // fetched and taken: the next refresh is due on time
      this.lists = this.loadLists();
      this.shield.invalidate();
      return { ...listView(row), bad_lines_shown: parsed.errors.slice(0, MAX_REPORTED_ERRORS) };
    });
  }

  /** A 409 when the list `name` holding `set` at `weight` would refuse or drop the caller's next request. */
  private refuseListExposure(caller: Caller, name: string, weight: number, set: CidrSet): void {
    const lists = [...this.lists.filter((l) => l.name !== name), { name, weight, contains: (ip: IpAddress) => set.contains(ip) }];
    const what = (source: string) => `the list ${name} would hold your own address (${source}): your next request`;
    this.refuseExposure(caller, { lists }, "refuse", what, 'Send "lock_out": true (citadel intel list import --yes)');
  }

  /** Stores `row`, its URL (`wholeUrl`, the one fetched from) encrypted: only the shown form is stored as text. */
  private storeList(caller: Caller | null, row: ListRow, wholeUrl: string | null, refreshOf: RefreshBase | undefined, taken: string): Promise<void> {
    const name = row.name;
    return this.k.store.write((tx) => {
      // A refresh downloads for a while: an operator may have deleted or replaced the list since.
      // Then the download is theirs to discard, not to bring back.
      if (refreshOf && listChangedSince(tx, name, refreshOf.stored, refreshOf.updatedAt)) throw new RefreshOvertaken();
      row.url_encrypted = wholeUrl === null ? null : this.k.seal.keyring().encrypt(tx, listUrlKeyOwner(name), "url", wholeUrl);
      tx.query(
        `INSERT INTO intel_lists (name, weight, format, format_given, url, url_encrypted, refresh_minutes, content, entries, errors, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET weight = excluded.weight, format = excluded.format, format_given = excluded.format_given, url = excluded.url, url_encrypted = excluded.url_encrypted,
           refresh_minutes = excluded.refresh_minutes, content = excluded.content, entries = excluded.entries, errors = excluded.errors, updated_at = excluded.updated_at`,
      ).run(row.name, row.weight, row.format, row.format_given, row.url, row.url_encrypted, row.refresh_minutes, row.content, row.entries, row.errors, row.updated_at);
      this.k.audit.record(tx, event(caller, "intel.list.import", { type: "intel_list", id: name }, `${row.entries} entries (${row.format}), weight ${row.weight}${row.errors ? `, ${row.errors} bad lines skipped` : ""}${row.url ? `, from ${redactedUrl(row.url)}` : ""}${taken}`));
    });
  }

  deleteList(caller: Caller, name: string): Promise<void> {
    return this.oneAtATime(async () => {
      await this.k.store.write((tx) => {
        if (tx.query("DELETE FROM intel_lists WHERE name = ?").run(name).changes === 0) throw new NotFoundError(`No list ${name}.`);
        this.k.seal.keyring().destroyOwner(tx, listUrlKeyOwner(name), this.now()); // its URL's credentials go for good
        this.k.audit.record(tx, event(caller, "intel.list.delete", { type: "intel_list", id: name }, null));
      });
      this.retries.delete(name);
      this.lists = this.loadLists();
      this.shield.invalidate();
    });
  }

  /**
   * Lists with a URL whose refresh is due are fetched again; a failure keeps the old content.
   * One pass at a time: a call while one is under way (a slow download, the next tick) waits
   * for it instead of fetching and importing the same lists again.
   */
  refreshDue(): Promise<void> {
    this.refreshing ??= this.refreshPass().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  /** Sealed, none is refreshed: the URLs are encrypted. The first pass once unsealed catches up. */
  private async refreshPass(): Promise<void> {
    for (const list of this.lists) {
      const { url: shownUrl, url_encrypted, refresh_minutes, updated_at } = list.row;
      const now = this.now();
      if (!shownUrl || !refresh_minutes || updated_at + refresh_minutes * 60_000 > now) continue;
      if (this.k.seal.sealed) return;
      const retry = this.retries.get(list.name);
      if (retry && retry.next > now) continue;
      const stored = { url: shownUrl, url_encrypted };
      try {
        const url = this.wholeUrl({ name: list.name, ...stored });
        const base: RefreshBase = { entries: list.row.entries, errors: list.row.errors, endsWithNewline: list.endsWithNewline, stored, updatedAt: updated_at, refused: retry?.refused ?? null, refreshMinutes: refresh_minutes };
        // Parsed as the operator said it is, if they did (a firehol list stays one, a plain one is never read as JSON).
        await this.putList(null, list.name, { weight: list.weight, url, refresh_minutes, format: list.row.format_given ?? "auto" }, base);
      } catch (e) {
        if (e instanceof RefreshOvertaken || listChangedSince(this.db, list.name, stored, updated_at)) {
          this.retries.delete(list.name); // deleted or replaced meanwhile: nothing of this download is kept
          continue;
        }
        // Backs off (5, 10, 20 … minutes, at most the refresh period): a failing source is not asked every minute.
        const failures = (retry?.failures ?? 0) + 1;
        const waitMinutes = Math.min(refresh_minutes, FIRST_RETRY_MINUTES * 2 ** (failures - 1));
        this.retries.set(list.name, { failures, next: this.now() + waitMinutes * 60_000, refused: e instanceof SuspectRefresh ? { hash: e.contentHash, since: e.since } : null });
        await this.refreshFailed(list.name, shownUrl, e instanceof Error ? e.message : String(e), waitMinutes);
      }
    }
  }

  /**
   * The URL a list is fetched from: its encrypted one decrypted (SealedError while sealed), or
   * one an earlier version stored whole and encryptStoredListUrls has yet to encrypt.
   */
  private wholeUrl(row: StoredUrl & { name: string; url: string }): string {
    if (row.url_encrypted === null) return row.url;
    try {
      return this.k.seal.keyring().decrypt(listUrlKeyOwner(row.name), "url", row.url_encrypted).toString("utf8");
    } catch (e) {
      if (e instanceof DecryptionError || e instanceof KeyDestroyedError) throw new InvalidError(`its stored URL cannot be decrypted (${e.message}): import the list again with its URL`, "url");
      throw e;
    }
  }

  /** The lists read again from the store (after encryptStoredListUrls changed their rows). */
  reloadLists(): void {
    this.lists = this.loadLists();
  }

  /** A failed refresh is logged and audited (Citadel's own doing): the previous content stays. */
  private async refreshFailed(name: string, url: string, error: string, waitMinutes: number): Promise<void> {
    this.k.log.warn("intel: a list could not be refreshed; the previous content stays", { list: name, url: redactedUrl(url), error, retry_minutes: waitMinutes });
    await this.k.store
      .write((tx) => this.k.audit.record(tx, { ...event(null, "intel.list.import", { type: "intel_list", id: name }, `refresh failed, the previous content stays (next attempt in ${waitMinutes} min): ${error}`), outcome: "failure" }))
      .catch((e: unknown) => this.k.log.error("intel: a failed list refresh could not be audited", { list: name, error: e instanceof Error ? e.message : String(e) }));
  }

  private fetch(url: string): Promise<string> {
    return fetchList(url, { timeoutMs: 30_000, maxBytes: 64 * 1024 * 1024, ...this.listFetching }).catch((e: unknown) => {
      throw new InvalidError(`the list could not be fetched from ${redactedUrl(url)}: ${e instanceof Error ? e.message : String(e)}`, "url");
    });
  }

  // --- lookups and status ------------------------------------------------------------------

  /**
   * What is known about an address and what the shield does with it (nothing is started by
   * looking): over HTTP (and DNS over TCP), and in `dns` over DNS over UDP, where what DNS
   * traffic did counts too and decisions of scope "dns" apply.
   */
  ip(text: string) {
    const a = this.shield.assess(text, { dryRun: true });
    if (a.source === "invalid") throw new InvalidError(`"${text}" is not an IP address`, "ip");
    const dns = this.shield.assess(text, { dryRun: true, channel: "dns" });
    return {
      ip: a.address,
      prefix: a.prefix,
      country: a.geo.country,
      asn: a.geo.asn,
      organisation: a.geo.organisation,
      anonymous: a.geo.anonymous,
      lists: a.lists,
      score: a.score,
      reasons: a.reasons.map((r) => r.text),
      action: a.action,
      source: a.source,
      shadow: a.shadow,
      decision: a.decision ? decisionView(a.decision) : null,
      manual: a.manual ? manualView(a.manual) : null,
      dns: { action: dns.action, source: dns.source, score: dns.score, reasons: dns.reasons.map((r) => r.text), decision: dns.decision ? decisionView(dns.decision) : null },
    };
  }

  status() {
    return {
      enabled: this.k.settings.enabled,
      shadow: this.policy.shadow,
      geo: this.geo.status(),
      lists: this.lists.map((l) => listView(l.row)),
      decisions: this.shield.activeDecisions().length,
      manual: this.manual().items.length,
      tracked_keys: this.shield.behaviour.size,
      verdicts: { ...this.shield.counts },
    };
  }
}

/** What a deny does to a request, as a 409 puts it. */
const DONE_TO: Record<Exclude<Action, "allow">, string> = { throttle: "throttled", refuse: "refused", drop: "dropped" };

/** The anonymity flags the score reads. */
const ANONYMITY = Object.keys(DEFAULT_POLICY.anonymous);

/** The entries of `values` whose key is one of `keys` (an earlier version stored any). */
function known<V>(values: Record<string, V> | undefined, keys: readonly string[]): Record<string, V> {
  return Object.fromEntries(Object.entries(values ?? {}).filter(([key]) => keys.includes(key)));
}

/** AS numbers as the score looks them up: digits without leading zeros ("0064496" is 64496), at most 4294967295. */
function asNumbers(asns: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [text, points] of Object.entries(asns)) {
    const asn = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
    if (!(asn <= 0xffff_ffff)) throw new InvalidError(`asns: "${text}" is not an AS number (digits, 0 to 4294967295)`, "asns");
    out[String(asn)] = points;
  }
  return out;
}

/** A manual entry as the API shows it: an allow entry has no action. */
function manualView(e: ManualEntry) {
  return { ...e, action: e.kind === "allow" ? null : e.action, until: iso(e.until) };
}

function decisionView(d: Decision) {
  return { id: d.id, target: d.target, scope: d.scope, action: d.action, score: d.score, reasons: d.reasons.map((r) => r.text), since: iso(d.since)!, until: iso(d.until)!, shadow: d.shadow };
}

/** A list as the API shows it: its URL without credentials or query (which may hold an API key). */
function listView(row: Omit<ListRow, "content">) {
  return { name: row.name, weight: row.weight, format: row.format, url: row.url === null ? null : redactedUrl(row.url), refresh_minutes: row.refresh_minutes, entries: row.entries, bad_lines: row.errors, updated_at: iso(row.updated_at)! };
}

/** An audit event; without a caller it is Citadel's own doing (a scheduled list refresh). */
function event(caller: Caller | null, action: string, resource: { type: string; id: string }, reason: string | null): AuditEventInput {
  return { action, outcome: "success", resource, reason, actor: caller ? actorOf(caller.principal) : SYSTEM, request: caller?.request ?? null };
}
