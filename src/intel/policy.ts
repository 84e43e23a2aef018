/**
 * The shield's policy and the score it gives an address: 0–100, the sum of what is known about
 * the address (reputation lists, country, ASN, anonymity) and what it did lately (behaviour),
 * each part with its reason ("on list spamhaus-drop (+60)"), capped at 100. Thresholds turn
 * the score into an action. Pure: the same facts give the same score.
 */
import type { Signal } from "./behaviour.ts";
import type { GeoInfo } from "./geo.ts";

export type Action = "allow" | "throttle" | "refuse" | "drop";

export interface ShieldPolicy {
  /** Record decisions without enforcing them. */
  shadow: boolean;
  /** Points by ISO country code ("XX": 20). */
  countries: Record<string, number>;
  /** Points by AS number ("64496": 30). */
  asns: Record<string, number>;
  /** Points when the Anonymous-IP database says so. */
  anonymous: { tor: number; public_proxy: number; vpn: number; hosting: number; residential_proxy: number };
  /** Points per (decayed) event, and the most one signal can add. */
  behaviour: Record<Signal, { per_event: number; max: number }>;
  /** The lowest score for each action. */
  thresholds: { throttle: number; refuse: number; drop: number };
  /** How long a decision made from the score lasts (minutes). */
  decision_minutes: number;
}

export const DEFAULT_POLICY: ShieldPolicy = {
  shadow: false,
  countries: {},
  asns: {},
  anonymous: { tor: 40, public_proxy: 30, vpn: 10, hosting: 5, residential_proxy: 10 },
  behaviour: {
    failed_login: { per_event: 5, max: 60 },
    invalid_token: { per_event: 5, max: 50 },
    http_forbidden: { per_event: 2, max: 20 },
    http_rate_limited: { per_event: 3, max: 30 },
    dns_rate_limited: { per_event: 0.2, max: 40 },
    dns_refused: { per_event: 0.05, max: 20 },
    dns_nxdomain: { per_event: 0.05, max: 30 },
    dns_random_subdomain: { per_event: 0.5, max: 40 },
  },
  thresholds: { throttle: 40, refuse: 70, drop: 90 },
  decision_minutes: 15,
};

export interface Reason {
  text: string;
  points: number;
}

export interface Facts {
  geo: GeoInfo;
  /** The lists the address is on, with their weights. */
  lists: Array<{ name: string; weight: number }>;
  /** Decayed behaviour counts of the address and of its prefix. */
  address: Record<Signal, number>;
  prefix: Record<Signal, number>;
  halfLifeMinutes: number;
}

const SIGNAL_TEXT: Record<Signal, string> = {
  failed_login: "failed logins",
  invalid_token: "invalid tokens",
  http_forbidden: "forbidden requests",
  http_rate_limited: "rate-limited requests",
  dns_rate_limited: "rate-limited DNS queries",
  dns_refused: "refused DNS queries",
  dns_nxdomain: "NXDOMAIN answers",
  dns_random_subdomain: "NXDOMAIN answers for a zone under a random-subdomain flood",
};

const NOTHING_KNOWN: { score: number; reasons: Reason[] } = Object.freeze({ score: 0, reasons: [] as Reason[] });

/** The score and its reasons, largest first. */
export function score(policy: ShieldPolicy, facts: Facts): { score: number; reasons: Reason[] } {
  const reasons: Reason[] = [];
  const add = (points: number, text: string) => {
    const p = Math.round(points);
    if (p > 0) reasons.push({ points: p, text: `${text} (+${p})` });
  };
  for (const list of facts.lists) add(list.weight, `on list ${list.name}`);
  const country = facts.geo.country;
  if (country && policy.countries[country]) add(policy.countries[country]!, `country ${country} policy`);
  const asn = facts.geo.asn;
  if (asn !== null && policy.asns[String(asn)]) add(policy.asns[String(asn)]!, `AS${asn}${facts.geo.organisation ? ` (${facts.geo.organisation})` : ""} policy`);
  const anon = facts.geo.anonymous;
  if (anon) {
    if (anon.tor) add(policy.anonymous.tor, "Tor exit node");
    if (anon.publicProxy) add(policy.anonymous.public_proxy, "public proxy");
    if (anon.vpn) add(policy.anonymous.vpn, "VPN");
    if (anon.residentialProxy) add(policy.anonymous.residential_proxy, "residential proxy");
    if (anon.hosting) add(policy.anonymous.hosting, "hosting provider");
  }
  for (const signal of Object.keys(policy.behaviour) as Signal[]) {
    const { per_event, max } = policy.behaviour[signal];
    // The address's own count, or its prefix's when the neighbours together did more.
    const own = facts.address[signal] ?? 0;
    const shared = facts.prefix[signal] ?? 0;
    const count = Math.max(own, shared);
    if (count < 1) continue;
    const who = shared > own ? " from its prefix" : "";
    add(Math.min(max, count * per_event), `${Math.round(count)} ${SIGNAL_TEXT[signal]}${who} in the last ${facts.halfLifeMinutes} min (decaying)`);
  }
  if (reasons.length === 0) return NOTHING_KNOWN;
  reasons.sort((a, b) => b.points - a.points);
  return { score: Math.min(100, reasons.reduce((n, r) => n + r.points, 0)), reasons };
}

/** How much an action does: allow < throttle < refuse < drop. */
export function severity(action: Action): number {
  return SEVERITY[action];
}
const SEVERITY: Record<Action, number> = { allow: 0, throttle: 1, refuse: 2, drop: 3 };

/** The one of two actions that does more (the first of equals). */
export function stronger(a: Action, b: Action): Action {
  return SEVERITY[b] > SEVERITY[a] ? b : a;
}

/** The action a score calls for. */
export function actionFor(policy: ShieldPolicy, value: number): Action {
  const t = policy.thresholds;
  if (value >= t.drop) return "drop";
  if (value >= t.refuse) return "refuse";
  if (value >= t.throttle) return "throttle";
  return "allow";
}
