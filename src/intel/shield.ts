/**
 * The shield: one verdict per client address, the same for the HTTP guard and the DNS server.
 *
 * In order: loopback is allowed (the operator's own CLI; configurable); a manual allow entry wins over
 * everything (allow always wins); else the most severe of the manual deny entries, the decision in
 * force and what the score (policy.ts) calls for — none softens another — and a score past a
 * threshold that calls for more than is done already starts a decision that lasts
 * `decision_minutes`. In shadow mode decisions are made, recorded and audited, and only the
 * manual deny entries are enforced. Verdicts are cached per address for a few seconds (and forgotten at once when the
 * address does something new), so the hot paths pay a map lookup.
 */
import { Behaviour, keysOf, type Keys, type Signal } from "./behaviour.ts";
import type { GeoInfo } from "./geo.ts";
import { ManualIndex, toCidr, type ManualEntry } from "./manual-index.ts";
import { actionFor, score, severity, stronger, type Action, type Reason, type ShieldPolicy } from "./policy.ts";
import { formatCidr, isLoopback, parseIp, unmapIpv4, type Cidr, type IpAddress } from "../net/ip.ts";

export { toCidr, type ManualEntry };

/**
 * Where a verdict is asked. DNS over UDP comes from addresses nobody verified, so what DNS
 * traffic did (floods, NXDOMAIN, refused names) counts toward DNS verdicts only, and throttles
 * at most: a spoofer must not be able to lock a victim out of the API, nor get a resolver refused.
 */
export type Channel = "http" | "dns";

export interface Decision {
  id: string;
  /** The client it is about (an IPv4 address, an IPv6 /64), or the prefix (/24, /56, /48) when its neighbours' doings made it. */
  target: string;
  /** "all": enforced by the HTTP guard and the DNS server; "dns": by the DNS server over UDP only, as a throttle at most (made from DNS evidence, which may be forged). */
  scope: "all" | "dns";
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
  /** The address asked about, in canonical text. */
  address: string;
  /** What it is judged as: the address itself (IPv4), or its /64 (IPv6), whose doings and decisions are its own. */
  judgedAs: string;
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
  geo: { lookup(ip: string): GeoInfo; lookupAddress?(address: IpAddress, text: string): GeoInfo };
  lists: () => readonly ListMatch[];
  policy: () => ShieldPolicy;
  now: () => number;
  /** A decision started or ended: the plugin persists and audits it. */
  onDecision?: (change: "start" | "expire", decision: Decision) => void;
  /** Loopback clients (the operator's own tools) are always allowed. Default true; tests turn it off. */
  trustLoopback?: boolean;
  /** How long an allow verdict is reused for an address that does nothing new (ms). Default 10 s. */
  verdictMs?: number;
  /** Decisions held at most, per scope. Default 10 000; tests lower it. */
  maxDecisions?: number;
  newId?: () => string;
}

const NO_GEO: GeoInfo = { country: null, asn: null, organisation: null, anonymous: null };
const MAX_VERDICTS = 100_000;
/** How soon a DNS signal is reflected in the address's verdict. */
const DNS_REASSESS_MS = 1000;
const NO_LISTS: string[] = [];
/**
 * Decisions held at most, per scope; past it, verdicts are still enforced (from the score) but
 * not recorded one by one. Per scope: a spoofed DNS flood from random addresses makes "dns"
 * decisions, and must not keep one every channel acts on (a brute-forcer's) from being recorded.
 */
const MAX_DECISIONS = 10_000;
const DNS_SIGNALS = new Set<Signal>(["dns_rate_limited", "dns_refused", "dns_nxdomain", "dns_random_subdomain"]);

/** Counts with the DNS signals left out (what the HTTP side may act on). */
function withoutDns(counts: Readonly<Record<Signal, number>>): Readonly<Record<Signal, number>> {
  if (counts.dns_rate_limited === 0 && counts.dns_refused === 0 && counts.dns_nxdomain === 0 && counts.dns_random_subdomain === 0) return counts;
  return { ...counts, dns_rate_limited: 0, dns_refused: 0, dns_nxdomain: 0, dns_random_subdomain: 0 };
}

interface Client {
  ip: IpAddress;
  keys: Keys;
  /** Whether the allow list (or loopback) trusts it, as of `index`, until `until`: observe asks per query. */
  trust?: { index: ManualIndex; until: number; value: boolean };
}

/** A verdict on a client, for one channel. */
export interface Verdict {
  readonly action: Action;
  /** Loopback (when trusted) or on the allow list: exempt from rate limiting and from counting. */
  readonly trusted: boolean;
}

interface CachedVerdict extends Verdict {
  until: number;
}

type Scope = Decision["scope"];

/** A stored decision that lost its place at restore to a stronger one held as the same key (see Shield.restore). */
export interface MergedDecision {
  merged: Decision;
  into: Decision;
  /** The key both are held as: the /64 of an IPv6 address. */
  heldAs: string;
}

export class Shield {
  readonly behaviour: Behaviour;
  /** Decisions in force by scope, each by its target (an address or a prefix). */
  private readonly decisions: Record<Scope, Map<string, Decision>> = { all: new Map(), dns: new Map() };
  private readonly maxDecisions: number;
  private readonly verdicts: Record<Channel, Map<string, CachedVerdict>> = { http: new Map(), dns: new Map() };
  /** Clients as they appear on the wire: the address (IPv4-mapped unmapped) and its keys. */
  private readonly clients = new Map<string, Client | null>();
  private manual = ManualIndex.build([], 0);
  private readonly verdictMs: number;
  private counter = 0;
  /** Decisions the cap kept from being recorded (a flood of new addresses). */
  unrecorded = 0;
  /** Enforced verdicts given, by action (for statistics). */
  readonly counts: Record<Action, number> = { allow: 0, throttle: 0, refuse: 0, drop: 0 };

  constructor(private readonly options: ShieldOptions) {
    this.behaviour = new Behaviour({ now: options.now });
    this.verdictMs = options.verdictMs ?? 10_000;
    this.maxDecisions = options.maxDecisions ?? MAX_DECISIONS;
  }

  /** Replaces the manual allow and deny entries (expired ones and targets that do not parse are skipped). */
  setManual(entries: readonly ManualEntry[]): void {
    this.manual = ManualIndex.build(entries, this.options.now());
    this.invalidate();
  }

  /**
   * Decisions loaded from storage at start (those still in force). One an earlier version made
   * on a single IPv6 address is held as its /64's, as one made now would be. Several of those
   * in one /64 (or one with the /64's own) have one place: the most severe holds it (of equals,
   * the one that lasts longest, then the first by id — whatever order they were read in), and
   * the others are returned, each with the one it was merged into and the place they shared,
   * for the caller to end: held nowhere, they could be neither listed nor lifted, and would come
   * back at every start.
   */
  restore(decisions: readonly Decision[]): MergedDecision[] {
    const now = this.options.now();
    const merged: MergedDecision[] = [];
    for (const d of [...decisions].sort(strongestFirst)) {
      if (d.until <= now) continue;
      const held = this.decisions[d.scope];
      const key = heldAs(d.target);
      const into = held.get(key);
      if (into) merged.push({ merged: d, into, heldAs: key });
      else held.set(key, d);
    }
    this.invalidate();
    return merged;
  }

  /** Forgets cached verdicts (the policy or the lists changed). */
  invalidate(): void {
    this.verdicts.http.clear();
    this.verdicts.dns.clear();
  }

  /** The action enforced on `client` now, for `channel`: the hot path of the HTTP guard. */
  decide(client: string, channel: Channel = "http"): Action {
    return this.verdict(client, channel).action;
  }

  /**
   * Loopback (when trusted) or allowlisted: exempt from rate limiting, never counted against.
   * Not a verdict (none is counted): for a client whose verdict is not asked (a DNS secondary).
   */
  isTrusted(client: string): boolean {
    const known = this.clientOf(client);
    return known !== null && this.trusts(known, this.options.now());
  }

  /**
   * The verdict on `client` now, for `channel` — the action and whether it is trusted, in one
   * lookup (the DNS gate's hot path needs both); counted once in `counts`.
   */
  verdict(client: string, channel: Channel): Verdict {
    const now = this.options.now();
    const verdicts = this.verdicts[channel];
    const cached = verdicts.get(client);
    if (cached !== undefined && cached.until > now) {
      this.counts[cached.action]++;
      return cached;
    }
    const a = this.assess(client, { channel });
    // Reused until whatever made it (a decision, a manual entry) may have ended.
    const until = Math.min(now + this.verdictMs, a.decision?.until ?? Infinity, a.manual?.until ?? Infinity);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    const verdict: CachedVerdict = { action: a.action, until, trusted: a.source === "loopback" || a.source === "allowlist" };
    verdicts.set(client, verdict);
    this.counts[a.action]++;
    return verdict;
  }

  /**
   * Everything known about `ip` and the verdict for `channel`, starting a decision when the
   * score calls for one — unless `dryRun` (an operator looking an address up changes nothing).
   * A decision is on the prefix when the address's own doings would not have made it.
   */
  assess(ip: string, { dryRun = false, channel = "http" as Channel } = {}): Assessment {
    return this.assessWith(ip, { dryRun, channel }, this.manual, this.options.lists());
  }

  /**
   * What the shield would do with `ip` (over HTTP) were its manual entries, its lists or its
   * policy these instead; nothing is started. A change that would lock its maker out is asked
   * about first.
   */
  wouldDo(ip: string, instead: { manual?: readonly ManualEntry[]; lists?: readonly ListMatch[]; policy?: ShieldPolicy }): Action {
    const manual = instead.manual ? ManualIndex.build(instead.manual, this.options.now()) : this.manual;
    return this.assessWith(ip, { dryRun: true, channel: "http" }, manual, instead.lists ?? this.options.lists(), instead.policy ?? this.options.policy()).action;
  }

  private assessWith(ip: string, { dryRun, channel }: { dryRun: boolean; channel: Channel }, manual: ManualIndex, allLists: readonly ListMatch[], policy = this.options.policy()): Assessment {
    const now = this.options.now();
    const parsed = parseIp(ip);
    if (!parsed) return { address: ip, judgedAs: ip, prefix: ip, geo: NO_GEO, lists: [], score: 0, reasons: [], action: "allow", source: "invalid", decision: null, manual: null, shadow: policy.shadow };
    const addr = unmapIpv4(parsed);
    const keys = keysOf(addr);
    const lists = allLists.filter((l) => l.contains(addr));
    const geo = this.options.geo.lookupAddress ? this.options.geo.lookupAddress(addr, keys.ip) : this.options.geo.lookup(keys.ip);
    const own = this.behaviour.counts(keys.address);
    // The neighbourhood's evidence is what was spread over its addresses (see Behaviour.spread):
    // one address's doings are held against that address, not against its idle neighbours.
    const shared = widest(this.behaviour.spread(keys.prefix), keys.wide === null ? NO_COUNTS : this.behaviour.spread(keys.wide));
    const facts = { geo, lists, halfLifeMinutes: this.behaviour.halfLifeMinutes };
    // Evidence every channel may act on (no DNS signals), and the DNS channel's (all of it).
    const forAll = score(policy, { ...facts, address: withoutDns(own), prefix: withoutDns(shared) });
    const scored = channel === "dns" ? score(policy, { ...facts, address: own, prefix: shared }) : forAll;
    const listNames = lists.length === 0 ? NO_LISTS : lists.map((l) => l.name);
    const result = (action: Action, source: Assessment["source"], decision: Decision | null = null, manual: ManualEntry | null = null): Assessment => ({
      address: keys.ip,
      judgedAs: keys.address,
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
    const allowed = manual.allowed(addr, now);
    if (allowed) return result("allow", "allowlist", null, allowed);
    const denied = manual.denied(addr, now);
    const manualAction: Action = denied?.action ?? "allow";

    // A decision is started only when the score calls for more than what is done already.
    let decision = this.inForce("all", keys, now, dryRun);
    // Decisions for every channel are started from requests whose source is proven (HTTP, DNS
    // over TCP), never from a UDP query: a spoofed one from each address of a listed range
    // would fill their places, and a brute-forcer's would no longer be recorded. Nothing is
    // lost: the evidence they rest on (lists, geo, HTTP behaviour) is scored here anyway.
    if (!dryRun && channel !== "dns") decision = this.consider("all", forAll, keys, own, shared, stronger(manualAction, enforced(decision)), policy, now) ?? decision;
    let called = actionFor(policy, forAll.score);
    if (channel === "dns") {
      // DNS evidence (forgeable: see forgeable()) makes decisions of its own, enforced by the DNS server alone.
      let dnsOnly = this.inForce("dns", keys, now, dryRun);
      // What is done already includes what the proven evidence's score calls for (a listed range's refuse).
      const done = stronger(stronger(manualAction, called), stronger(enforced(decision), enforced(dnsOnly)));
      if (!dryRun) dnsOnly = this.consider("dns", scored, keys, own, shared, done, policy, now) ?? dnsOnly;
      if (dnsOnly && severity(enforced(dnsOnly)) > severity(enforced(decision))) decision = dnsOnly;
      called = stronger(called, forgeable(actionFor(policy, scored.score)));
    }
    // The most severe of the deny entry, the decision in force and what the score calls for
    // (a dry run starts nothing, but says so): none softens another — a throttle on a /24 must
    // not turn a listed address's drop into a throttle. Of equals, the operator's entry is named.
    let action: Action = manualAction;
    let source: Assessment["source"] = denied ? "denylist" : "score";
    if (severity(enforced(decision)) > severity(action)) [action, source] = [enforced(decision), "decision"];
    if (severity(called) > severity(action)) [action, source] = [called, "score"];
    // The policy in force says whether the score's doings are enforced, not the mode a decision
    // was made in: one recorded in shadow mode is enforced once shadow mode is off (the same
    // policy made it). Shadow mode tries the policy out; an operator's deny entry is no part of
    // it, but their explicit act, and is enforced in shadow mode too.
    if (policy.shadow) return denied ? result(manualAction, "denylist", decision, denied) : result("allow", source, decision, denied);
    return result(action, source, decision, denied);
  }

  /** The decision of `scope` in force for the address or its prefix (expired ones are ended). */
  private inForce(scope: Scope, keys: Keys, now: number, dryRun: boolean): Decision | null {
    const held = this.decisions[scope];
    let best: Decision | null = null;
    for (const target of keys.wide === null ? [keys.address, keys.prefix] : [keys.address, keys.prefix, keys.wide]) {
      const d = held.get(target);
      if (!d) continue;
      if (d.until <= now) {
        if (!dryRun) {
          held.delete(target);
          this.options.onDecision?.("expire", d);
        }
        continue;
      }
      if (best === null || severity(d.action) > severity(best.action)) best = d;
    }
    return best;
  }

  /** Starts a decision of `scope` when the score calls for more than `done` (what is done already); returns it. */
  private consider(
    scope: Scope,
    scored: { score: number; reasons: Reason[] },
    keys: Keys,
    own: Readonly<Record<Signal, number>>,
    shared: Readonly<Record<Signal, number>>,
    done: Action,
    policy: ShieldPolicy,
    now: number,
  ): Decision | null {
    const wanted = scope === "dns" ? forgeable(actionFor(policy, scored.score)) : actionFor(policy, scored.score);
    if (wanted === "allow" || severity(wanted) <= severity(done)) return null;
    // On the prefix when the address alone would not have earned it: one decision for a
    // neighbourhood, not one per address an attacker rotates through. What the address is
    // (lists, country, ASN, anonymity: `factPoints`) counts once, plus what it did itself.
    const facts = factPoints(scored);
    const ownCounts = scope === "dns" ? own : withoutDns(own);
    const alone = this.behaviourScore(policy, ownCounts, NO_COUNTS);
    const byPrefix = severity(actionFor(policy, alone + facts)) < severity(wanted);
    let target = byPrefix ? keys.prefix : keys.address;
    if (byPrefix && keys.wide !== null) {
      // The /56 alone, or only with the rest of its /48: the decision goes where the evidence is.
      const narrow = this.behaviour.spread(keys.prefix);
      const withNarrow = this.behaviourScore(policy, ownCounts, scope === "dns" ? narrow : withoutDns(narrow));
      if (severity(actionFor(policy, withNarrow + facts)) < severity(wanted)) target = keys.wide;
    }
    const held = this.decisions[scope];
    const previous = held.get(target);
    if (!previous && held.size >= this.maxDecisions) {
      this.unrecorded++;
      return null;
    }
    const decision: Decision = {
      id: this.options.newId?.() ?? `dec_${now.toString(36)}${(this.counter++).toString(36)}`,
      target,
      scope,
      action: wanted,
      score: scored.score,
      reasons: scored.reasons,
      since: now,
      until: now + policy.decision_minutes * 60_000,
      shadow: policy.shadow,
    };
    if (previous) this.options.onDecision?.("expire", previous); // superseded by a stronger one
    held.set(target, decision);
    this.options.onDecision?.("start", decision);
    this.invalidate();
    return decision;
  }

  /** The points behaviour alone earns (no lists, no geo: those are added once by the caller). */
  private behaviourScore(policy: ShieldPolicy, address: Readonly<Record<Signal, number>>, prefix: Readonly<Record<Signal, number>>): number {
    return score(policy, { geo: NO_GEO, lists: [], halfLifeMinutes: this.behaviour.halfLifeMinutes, address, prefix }).score;
  }

  /**
   * Feeds behaviour: the address's verdict is worked out afresh (for DNS signals, within a
   * second). A trusted client's doings (loopback, allowlisted) are not counted: they would be
   * held against its neighbours. Trust is asked directly, not of a channel's cached verdict — a
   * client seen over DNS-over-TCP or HTTP only has no DNS verdict cached.
   */
  observe(client: string, signal: Signal, n = 1): void {
    const known = this.clientOf(client);
    if (!known || this.trusts(known, this.options.now())) return;
    const { keys } = known;
    this.behaviour.add(keys.address, keys.prefix, signal, n, keys.wide);
    if (DNS_SIGNALS.has(signal)) {
      // DNS signals come in floods: the verdict is worked out again within a second, not at
      // every query (which would put a whole assessment on the answer path of each one).
      const cached = this.verdicts.dns.get(client);
      const soon = this.options.now() + DNS_REASSESS_MS;
      if (cached !== undefined && cached.until > soon) cached.until = soon;
      return;
    }
    for (const verdicts of [this.verdicts.http, this.verdicts.dns]) {
      verdicts.delete(client);
      verdicts.delete(keys.ip);
    }
  }

  /**
   * Loopback (when trusted) or on the allow list. Remembered on the client until the allow list
   * changes or the entry that matched ends (entries only end; a new list is a new index): the
   * lookup builds a key per prefix length in use, too much for every query of a flood.
   */
  private trusts(client: Client, now: number): boolean {
    const known = client.trust;
    if (known !== undefined && known.index === this.manual && now < known.until) return known.value;
    if (this.options.trustLoopback !== false && isLoopback(client.ip)) {
      client.trust = { index: this.manual, until: Infinity, value: true };
      return true;
    }
    const entry = this.manual.allowed(client.ip, now);
    client.trust = { index: this.manual, until: entry?.until ?? Infinity, value: entry !== null };
    return entry !== null;
  }

  /** A client as it appears on the wire, parsed once and remembered for the busy ones; null when it is no IP. */
  private clientOf(client: string): Client | null {
    let known = this.clients.get(client);
    if (known === undefined) {
      const parsed = parseIp(client);
      const ip = parsed && unmapIpv4(parsed);
      known = ip && { ip, keys: keysOf(ip) };
      if (this.clients.size >= MAX_VERDICTS) this.clients.clear();
      this.clients.set(client, known);
    }
    return known;
  }

  /** Decisions in force (and, with `all`, those recorded in shadow mode too). */
  activeDecisions(): Decision[] {
    const now = this.options.now();
    return [...this.decisions.all.values(), ...this.decisions.dns.values()].filter((d) => d.until > now);
  }

  /**
   * Ends the decisions on an address or a prefix early, with those on the keys counted with it
   * (see countedWith), and forgets what they did — else the next request would score the same
   * and decide again. With no decision to lift nothing is forgotten: the operator is told so,
   * and no audit event would say why a brute-forcer's record was wiped.
   */
  lift(target: string): Decision[] {
    const cidr = toCidr(target);
    if (!cidr) return [];
    const names = countedWith(cidr);
    const lifted: Decision[] = [];
    const now = this.options.now();
    for (const held of Object.values(this.decisions)) {
      for (const name of names) {
        const d = held.get(name);
        if (!d) continue;
        held.delete(name);
        // Ended already, not yet swept: it expired, it is not lifted (and forgets nothing).
        if (d.until <= now) this.options.onDecision?.("expire", d);
        else lifted.push(d);
      }
    }
    if (lifted.length === 0) return lifted;
    for (const name of names) this.behaviour.forget(name);
    this.invalidate();
    return lifted;
  }

  /**
   * Ends every decision in force early (an operator fixed a policy that made them wrongly), and
   * forgets what their targets did, as lifting each would. Those already ended are reported
   * as expired, not lifted.
   */
  liftAll(): Decision[] {
    const targets = [...this.decisions.all.values(), ...this.decisions.dns.values()].map((d) => d.target);
    return [...new Set(targets)].flatMap((target) => this.lift(target));
  }

  /** Expires what is due (a timer calls it): each expiry is reported. */
  sweep(): void {
    const now = this.options.now();
    for (const held of Object.values(this.decisions)) {
      for (const [target, decision] of held) {
        if (decision.until > now) continue;
        held.delete(target);
        this.options.onDecision?.("expire", decision);
      }
    }
  }
}

/**
 * The keys whose counts a decision on `cidr` may rest on, which lifting it ends and forgets
 * together: an address's own, its prefix's and its /48's; a /56's and its /48's; a /48's and
 * its /56s'. A /56 counted alone would leave its doings in the /48, which the next request
 * would find enough for a wider decision at once; a /48 alone, its /56s for narrower ones.
 */
function countedWith(cidr: Cidr): string[] {
  // An IPv6 address, or its /64, is one client: its /64's keys (see Keys.address).
  if (cidr.prefix === (cidr.family === 4 ? 32 : 128) || (cidr.family === 6 && cidr.prefix === 64)) {
    const keys = keysOf(cidr);
    return [keys.address, keys.prefix, ...(keys.wide ? [keys.wide] : [])];
  }
  if (cidr.family === 6 && cidr.prefix === 56) return [formatCidr(cidr), keysOf(cidr).wide!];
  if (cidr.family === 6 && cidr.prefix === 48) {
    const fiftySixes = Array.from({ length: 256 }, (_, n) => keysOf({ family: 6, bytes: cidr.bytes.with(6, n) }).prefix);
    return [formatCidr(cidr), ...fiftySixes];
  }
  return [formatCidr(cidr)];
}

/** The key a decision on `target` is held under: a single IPv6 address's is its /64 (see Keys.address). */
function heldAs(target: string): string {
  const cidr = toCidr(target);
  return cidr && cidr.family === 6 && cidr.prefix === 128 ? keysOf(cidr).address : target;
}

/** Of decisions competing for one place: the most severe in effect first, then the longest lasting, then by id. */
function strongestFirst(a: Decision, b: Decision): number {
  return severity(enforced(b)) - severity(enforced(a)) || b.until - a.until || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * The most that DNS evidence may do: throttle. It arrives over UDP from addresses anyone can
 * forge, so a flood spoofed "from" a real resolver must not get it refused or dropped. Throttled,
 * it is rate limited with slip: some of its queries get an empty answer with TC, it retries over
 * TCP, and there (a source the handshake verified) DNS evidence does not count. Refusing and
 * dropping over UDP are left to evidence every channel acts on: lists, policy, manual entries, HTTP.
 */
function forgeable(action: Action): Action {
  return severity(action) > severity("throttle") ? "throttle" : action;
}

/** What a decision does: one made from DNS evidence never more than throttle (those stored before that rule included). */
function enforced(decision: Decision | null): Action {
  if (decision === null) return "allow";
  return decision.scope === "dns" ? forgeable(decision.action) : decision.action;
}

/** A /48 needs four times the evidence of a /56 (it may hold several customers). */
const WIDE_DISCOUNT = 4;
/** Per signal, the larger of the prefix's count and the /48's, discounted. */
function widest(prefix: Readonly<Record<Signal, number>>, wide: Readonly<Record<Signal, number>>): Readonly<Record<Signal, number>> {
  if (wide === NO_COUNTS) return prefix;
  const out = { ...prefix };
  for (const signal of Object.keys(out) as Signal[]) out[signal] = Math.max(out[signal], wide[signal] / WIDE_DISCOUNT);
  return out;
}
const NO_COUNTS: Readonly<Record<Signal, number>> = Object.freeze({ failed_login: 0, invalid_token: 0, http_forbidden: 0, http_rate_limited: 0, dns_rate_limited: 0, dns_refused: 0, dns_nxdomain: 0, dns_random_subdomain: 0 });
/** The points a score got from lists, country, ASN and anonymity: facts about the address itself. */
const factPoints = (scored: { reasons: Reason[] }) => scored.reasons.filter((r) => !/ in the last \d/.test(r.text)).reduce((n, r) => n + r.points, 0);

/** The kernel's slot for the shield: the intel plugin fills it, the HTTP guard and the DNS server ask it. */
export class ShieldSlot {
  current: Shield | null = null;
}
