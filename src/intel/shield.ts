/**
 * The shield: one verdict per client address, the same for the HTTP guard and the DNS server.
 *
 * In order: loopback is allowed (the operator's own CLI; configurable); a manual allow entry wins over
 * everything (allow always wins); then a manual deny entry; then a decision in force; else the
 * address is scored (policy.ts) and a score past a threshold starts a decision that lasts
 * `decision_minutes`. In shadow mode decisions are made, recorded and audited, and nothing is
 * enforced. Verdicts are cached per address for a few seconds (and forgotten at once when the
 * address does something new), so the hot paths pay a map lookup.
 */
import { Behaviour, addressAndPrefix, keysOf, type Signal } from "./behaviour.ts";
import type { GeoInfo } from "./geo.ts";
import { actionFor, score, type Action, type Reason, type ShieldPolicy } from "./policy.ts";
import { cidrContains, isLoopback, parseCidr, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../net/ip.ts";

export interface ManualEntry {
  id: string;
  kind: "allow" | "deny";
  /** An address or a CIDR, as given. */
  target: string;
  /** For deny entries: what is done (refuse by default). */
  action: Exclude<Action, "allow">;
  until: number | null;
  reason: string | null;
}

export interface Decision {
  id: string;
  /** The address it is about. */
  target: string;
  action: Exclude<Action, "allow">;
  score: number;
  reasons: Reason[];
  since: number;
  until: number;
  shadow: boolean;
}

export interface ListMatch {
  name: string;
  weight: number;
  contains(ip: IpAddress): boolean;
}

export interface Assessment {
  address: string;
  prefix: string;
  geo: GeoInfo;
  lists: string[];
  score: number;
  reasons: Reason[];
  /** What is enforced now, and why. */
  action: Action;
  source: "loopback" | "allowlist" | "denylist" | "decision" | "score" | "invalid";
  decision: Decision | null;
  manual: ManualEntry | null;
  shadow: boolean;
}

export interface ShieldOptions {
  geo: { lookup(ip: string): GeoInfo };
  lists: () => readonly ListMatch[];
  policy: () => ShieldPolicy;
  now: () => number;
  /** A decision started or ended: the plugin persists and audits it. */
  onDecision?: (change: "start" | "expire", decision: Decision) => void;
  /** Loopback clients (the operator's own tools) are always allowed. Default true; tests turn it off. */
  trustLoopback?: boolean;
  /** How long an allow verdict is reused for an address that does nothing new (ms). Default 10 s. */
  verdictMs?: number;
  newId?: () => string;
}

const NO_GEO: GeoInfo = { country: null, asn: null, organisation: null, anonymous: null };
const MAX_VERDICTS = 100_000;
/** How soon a DNS signal is reflected in the address's verdict. */
const DNS_REASSESS_MS = 1000;
const NO_LISTS: string[] = [];

interface Verdict {
  action: Action;
  until: number;
}

interface CompiledEntry {
  entry: ManualEntry;
  cidr: Cidr;
}

export class Shield {
  readonly behaviour: Behaviour;
  private readonly decisions = new Map<string, Decision>();
  private readonly verdicts = new Map<string, Verdict>();
  private readonly keys = new Map<string, { address: string; prefix: string } | null>();
  private allow: CompiledEntry[] = [];
  private deny: CompiledEntry[] = [];
  private readonly verdictMs: number;
  private counter = 0;
  /** Enforced verdicts given, by action (for statistics). */
  readonly counts: Record<Action, number> = { allow: 0, throttle: 0, refuse: 0, drop: 0 };

  constructor(private readonly options: ShieldOptions) {
    this.behaviour = new Behaviour({ now: options.now });
    this.verdictMs = options.verdictMs ?? 10_000;
  }

  /** Replaces the manual allow and deny entries (entries whose target does not parse are skipped). */
  setManual(entries: readonly ManualEntry[]): void {
    const compile = (kind: "allow" | "deny") =>
      entries.flatMap((entry) => {
        const cidr = entry.kind === kind ? toCidr(entry.target) : null;
        return cidr ? [{ entry, cidr }] : [];
      });
    this.allow = compile("allow");
    this.deny = compile("deny");
    this.verdicts.clear();
  }

  /** Decisions loaded from storage at start (those still in force). */
  restore(decisions: readonly Decision[]): void {
    const now = this.options.now();
    for (const d of decisions) if (d.until > now) this.decisions.set(d.target, d);
    this.verdicts.clear();
  }

  /** Forgets cached verdicts (the policy or the lists changed). */
  invalidate(): void {
    this.verdicts.clear();
  }

  /** The action enforced on `client` now: the hot path of both the guard and the DNS gate. */
  decide(client: string): Action {
    const now = this.options.now();
    const cached = this.verdicts.get(client);
    if (cached !== undefined && cached.until > now) {
      this.counts[cached.action]++;
      return cached.action;
    }
    const a = this.assess(client);
    const until = a.decision ? Math.min(a.decision.until, now + this.verdictMs) : a.manual?.until ? Math.min(a.manual.until, now + this.verdictMs) : now + this.verdictMs;
    if (this.verdicts.size >= MAX_VERDICTS) this.verdicts.clear();
    this.verdicts.set(client, { action: a.action, until });
    this.counts[a.action]++;
    return a.action;
  }

  /**
   * Everything known about `ip` and the verdict, starting a decision when the score calls for
   * one — unless `dryRun` (an operator looking an address up changes nothing).
   */
  assess(ip: string, { dryRun = false } = {}): Assessment {
    const now = this.options.now();
    const parsed = parseIp(ip);
    const policy = this.options.policy();
    if (!parsed) return { address: ip, prefix: ip, geo: NO_GEO, lists: [], score: 0, reasons: [], action: "allow", source: "invalid", decision: null, manual: null, shadow: policy.shadow };
    const addr = unmapIpv4(parsed);
    const keys = keysOf(addr);
    const lists = this.options.lists().filter((l) => l.contains(addr));
    const geo = this.options.geo.lookup(keys.address);
    const scored = score(policy, {
      geo,
      lists,
      address: this.behaviour.counts(keys.address),
      prefix: this.behaviour.counts(keys.prefix),
      halfLifeMinutes: this.behaviour.halfLifeMinutes,
    });
    const listNames = lists.length === 0 ? NO_LISTS : lists.map((l) => l.name);
    const result = (action: Action, source: Assessment["source"], decision: Decision | null = null, manual: ManualEntry | null = null): Assessment => ({
      address: keys.address,
      prefix: keys.prefix,
      geo,
      lists: listNames,
      score: scored.score,
      reasons: scored.reasons,
      action,
      source,
      decision,
      manual,
      shadow: policy.shadow,
    });

    if (isLoopback(addr) && this.options.trustLoopback !== false) return result("allow", "loopback");
    const allowed = this.manualMatch(this.allow, addr, now);
    if (allowed) return result("allow", "allowlist", null, allowed);
    const denied = this.manualMatch(this.deny, addr, now);
    if (denied) return result(policy.shadow ? "allow" : denied.action, "denylist", null, denied);

    let decision = this.decisions.get(keys.address) ?? null;
    if (decision && decision.until <= now && !dryRun) {
      this.decisions.delete(keys.address);
      this.options.onDecision?.("expire", decision);
      decision = null;
    }
    const wanted = actionFor(policy, scored.score);
    if (decision && decision.until <= now) decision = null;
    if (wanted !== "allow" && !dryRun && (decision === null || severity(wanted) > severity(decision.action))) {
      decision = {
        id: this.options.newId?.() ?? `dec_${now.toString(36)}${(this.counter++).toString(36)}`,
        target: keys.address,
        action: wanted,
        score: scored.score,
        reasons: scored.reasons,
        since: now,
        until: now + policy.decision_minutes * 60_000,
        shadow: policy.shadow,
      };
      this.decisions.set(keys.address, decision);
      this.options.onDecision?.("start", decision);
    }
    if (decision) return result(decision.shadow ? "allow" : decision.action, "decision", decision);
    // A dry run starts nothing, but says what the score calls for.
    return result(policy.shadow ? "allow" : wanted, "score");
  }

  /** Feeds behaviour: the address's verdict is worked out afresh (for DNS signals, within a second). */
  observe(client: string, signal: Signal, n = 1): void {
    const keys = this.keysOf(client);
    if (!keys) return;
    this.behaviour.add(keys.address, keys.prefix, signal, n);
    if (signal.startsWith("dns_")) {
      // DNS signals come in floods: the verdict is worked out again within a second, not at
      // every query (which would put a whole assessment on the answer path of each one).
      const soon = this.options.now() + DNS_REASSESS_MS;
      for (const key of [client, keys.address]) {
        const cached = this.verdicts.get(key);
        if (cached !== undefined && cached.until > soon) cached.until = soon;
      }
      return;
    }
    this.verdicts.delete(client);
    this.verdicts.delete(keys.address);
  }

  /** The address and prefix of a client as it appears on the wire, remembered for the busy ones. */
  private keysOf(client: string): { address: string; prefix: string } | null {
    let keys = this.keys.get(client);
    if (keys === undefined) {
      keys = addressAndPrefix(client);
      if (this.keys.size >= MAX_VERDICTS) this.keys.clear();
      this.keys.set(client, keys);
    }
    return keys;
  }

  /** Decisions in force (and, with `all`, those recorded in shadow mode too). */
  activeDecisions(): Decision[] {
    const now = this.options.now();
    return [...this.decisions.values()].filter((d) => d.until > now);
  }

  /** Ends a decision early (a manual change); true when there was one. */
  lift(target: string): Decision | null {
    const keys = addressAndPrefix(target);
    const decision = keys ? this.decisions.get(keys.address) : undefined;
    if (!decision || !keys) return null;
    this.decisions.delete(keys.address);
    this.verdicts.clear();
    return decision;
  }

  /** Expires what is due (a timer calls it): each expiry is reported. */
  sweep(): void {
    const now = this.options.now();
    for (const [address, decision] of this.decisions) {
      if (decision.until > now) continue;
      this.decisions.delete(address);
      this.options.onDecision?.("expire", decision);
    }
  }

  private manualMatch(entries: CompiledEntry[], ip: IpAddress, now: number): ManualEntry | null {
    for (const { entry, cidr } of entries) if ((entry.until === null || entry.until > now) && cidrContains(cidr, ip)) return entry;
    return null;
  }
}

const severity = (a: Action) => ({ allow: 0, throttle: 1, refuse: 2, drop: 3 })[a];

/** An address or CIDR as a CIDR (an address is its /32 or /128; host bits must be zero). */
export function toCidr(text: string): Cidr | null {
  return parseCidr(text.trim());
}

/** The kernel's slot for the shield: the intel plugin fills it, the HTTP guard and the DNS server ask it. */
export class ShieldSlot {
  current: Shield | null = null;
}
