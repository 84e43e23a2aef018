/**
 * ACL policies of a mesh network: validation of what an operator sends, and an evaluator that
 * answers "may node a reach node b, and on which ports" for every pair of a large network.
 *
 * Selectors: "*" (every node), "tag:<label>", "node:<label>". A label is lower-case letters,
 * digits and hyphens, 1-63 characters, neither starting nor ending with a hyphen (a DNS label,
 * so node names can double as host names under the network's search domain). In `dst` only, a
 * prefix ("10.1.0.0/24", "fd00:1::/64", or an address alone; an IPv4-mapped one is taken as the
 * IPv4 prefix it spells): addresses behind subnet routers
 * (routes.ts), reached through the node that serves the route. It matches no node, and `*`
 * matches no route: what a policy lets reach a LAN behind the mesh is written as that LAN.
 * In `dst` only too, "autogroup:internet" (Tailscale's name): the internet through an exit node
 * (exits.ts) — public addresses only, never the mesh, a route or a private range; `*` does not
 * hold it, and neither does having no policy: using an exit node needs a rule naming it.
 *
 * Ports: "*" (every protocol, ICMP included), "22" or "8000-8100" (TCP or UDP on those ports),
 * "tcp/5432", "udp/53", "tcp/8000-8100", "tcp/*" / "udp/*" (every port of one protocol) and
 * "icmp" (ICMP and ICMPv6).
 *
 * The evaluator precomputes, per rule, the member sets of `src` and `dst` as bitsets over the
 * nodes (in the order the caller gave them), then per node the union of what it may reach and
 * what may reach it. A pair question is then one bit test; 1,000 nodes and 50 rules compile in
 * a few milliseconds. A selector naming an unknown node or tag matches nothing: the service
 * refuses unknown node names when the policy is saved (see `aclNodeNames`), and a tag nobody
 * carries yet is legitimate.
 */
import { InvalidError } from "../../src/errors.ts";
import { formatCidr, networkOf, parseCidr, unmapCidr, type Cidr } from "../../src/net/ip.ts";
import type { AclPolicy, AclRule, MeshNode, PortMatch } from "./types.ts";

export const MAX_RULES = 1000;
export const MAX_ENTRIES = 256;

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const PORT_FORMS = `"*", "22", "8000-8100", "tcp/5432", "udp/53", "tcp/8000-8100", "tcp/*" or "icmp"`;

/** True for a valid tag or node label (also what the service should require of node names). */
export function isAclLabel(text: string): boolean {
  return LABEL.test(text);
}

/**
 * Parses one port specification. Throws an InvalidError naming the text; parseAclPolicy adds
 * where it was found.
 */
export function parsePort(text: string): PortMatch {
  if (text === "*") return { protocol: "any", from: null, to: null };
  if (text === "icmp") return { protocol: "icmp", from: null, to: null };
  const slash = text.indexOf("/");
  if (slash < 0) return { protocol: "any", ...parseRange(text) };
  const protocol = text.slice(0, slash);
  const rest = text.slice(slash + 1);
  if (protocol !== "tcp" && protocol !== "udp") {
    throw new InvalidError(`${JSON.stringify(text)} is not a port specification (${PORT_FORMS})`);
  }
  if (rest === "*") return { protocol, from: null, to: null };
  return { protocol, ...parseRange(rest, text) };
}

function parseRange(range: string, whole = range): { from: number; to: number } {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(range);
  if (!match) throw new InvalidError(`${JSON.stringify(whole)} is not a port specification (${PORT_FORMS})`);
  const first = match[1]!;
  const last = match[2] ?? first;
  // Leading zeros are refused: "022" reads like an octal typo, and one spelling per port keeps policies comparable.
  const isPort = (digits: string) => !(digits.length > 1 && digits.startsWith("0")) && Number(digits) >= 1 && Number(digits) <= 65535;
  if (!isPort(first) || !isPort(last)) throw new InvalidError(`${JSON.stringify(whole)} is not a port (1-65535)`);
  const from = Number(first);
  const to = Number(last);
  if (to < from) throw new InvalidError(`${JSON.stringify(whole)} is a reversed range (write ${to}-${from})`);
  return { from, to };
}

/** The selector of the internet, through an exit node (dst only). */
export const INTERNET = "autogroup:internet";

/** What a selector matches, once parsed. */
type Selector = { kind: "all" } | { kind: "tag"; label: string } | { kind: "node"; label: string } | { kind: "prefix"; prefix: Cidr } | { kind: "internet" };

function parseSelector(text: string): Selector | null {
  if (text === "*") return { kind: "all" };
  if (text === INTERNET) return { kind: "internet" };
  const prefix = parseCidr(text);
  // ::ffff:10.1.0.0/120 is 10.1.0.0/24: kept IPv6, it would match no route (and slip past the pool check).
  if (prefix) return { kind: "prefix", prefix: unmapCidr(prefix) };
  const colon = text.indexOf(":");
  if (colon < 0) return null;
  const kind = text.slice(0, colon);
  const label = text.slice(colon + 1);
  if ((kind !== "tag" && kind !== "node") || !LABEL.test(label)) return null;
  return { kind, label };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Validates a policy as an operator sent it (already JSON-decoded) and returns a clean copy.
 * Unknown fields are refused rather than ignored: a misspelt "dest" silently dropped would
 * turn a rule into something the operator did not write. Errors are InvalidErrors whose
 * message and `field` name the rule index and field.
 */
export function parseAclPolicy(input: unknown): AclPolicy {
  if (!isRecord(input)) throw new InvalidError(`policy: expected an object with "rules"`, "rules");
  for (const key of Object.keys(input)) {
    if (key !== "rules") throw new InvalidError(`${key}: unknown field (a policy has only "rules")`, key);
  }
  const rules = input.rules;
  if (!Array.isArray(rules)) throw new InvalidError(`rules: expected an array`, "rules");
  if (rules.length > MAX_RULES) throw new InvalidError(`rules: ${rules.length} rules, at most ${MAX_RULES}`, "rules");
  return { rules: rules.map((rule, i) => parseRule(rule, `rules[${i}]`)) };
}

function parseRule(input: unknown, path: string): AclRule {
  if (!isRecord(input)) throw new InvalidError(`${path}: expected an object with "src", "dst" and "ports"`, path);
  for (const key of Object.keys(input)) {
    if (key !== "src" && key !== "dst" && key !== "ports") {
      throw new InvalidError(`${path}.${key}: unknown field (a rule has "src", "dst" and "ports")`, `${path}.${key}`);
    }
  }
  const selectors = (field: "src" | "dst") =>
    stringList(input[field], `${path}.${field}`, (text, at) => {
      const selector = parseSelector(text);
      const forms = field === "dst" ? `"*", "tag:<label>", "node:<label>", a prefix behind a subnet router (10.1.0.0/24) or "${INTERNET}" (through an exit node)` : `"*", "tag:<label>" or "node:<label>"`;
      const network = selector === null && text.includes("/") ? networkOf(text) : null;
      if (network && field === "dst") throw new InvalidError(`${at}: ${JSON.stringify(text)} is not a network address (host bits are set): did you mean ${formatCidr(network)}?`, at);
      if (!selector) throw new InvalidError(`${at}: ${JSON.stringify(text)} is not a selector (${forms})`, at);
      // Traffic from behind a subnet router into the mesh is not routed (only to the routes, with replies).
      if (selector.kind === "prefix" && field === "src") throw new InvalidError(`${at}: ${JSON.stringify(text)}: a prefix names addresses behind a subnet router, which only \`dst\` takes (${forms})`, at);
      // Nor does the internet open connections into the mesh: exit nodes carry what mesh nodes open.
      if (selector.kind === "internet" && field === "src") throw new InvalidError(`${at}: ${JSON.stringify(text)}: the internet through an exit node is a destination, which only \`dst\` takes (${forms})`, at);
    });
  return {
    src: selectors("src"),
    dst: selectors("dst"),
    ports: stringList(input.ports, `${path}.ports`, (text, at) => {
      try {
        parsePort(text);
      } catch (error) {
        throw new InvalidError(`${at}: ${(error as Error).message}`, at);
      }
    }),
  };
}

function stringList(value: unknown, path: string, check: (text: string, at: string) => void): string[] {
  if (value === undefined) throw new InvalidError(`${path}: missing`, path);
  if (!Array.isArray(value)) throw new InvalidError(`${path}: expected an array of strings`, path);
  if (value.length === 0) throw new InvalidError(`${path}: must not be empty`, path);
  if (value.length > MAX_ENTRIES) throw new InvalidError(`${path}: ${value.length} entries, at most ${MAX_ENTRIES}`, path);
  return value.map((item, i) => {
    const at = `${path}[${i}]`;
    if (typeof item !== "string") throw new InvalidError(`${at}: expected a string`, at);
    check(item, at);
    return item;
  });
}

/** The prefixes the policy's `dst` names, so the service can refuse one inside the network's own pools. */
export function aclPrefixes(policy: AclPolicy): Cidr[] {
  return policy.rules.flatMap((rule) => rule.dst.map(parseSelector).flatMap((selector) => (selector?.kind === "prefix" ? [selector.prefix] : [])));
}

/** The names `node:` selectors refer to, sorted and unique, so the service can refuse unknown ones. */
export function aclNodeNames(policy: AclPolicy): string[] {
  const names = new Set<string>();
  for (const rule of policy.rules) {
    for (const text of [...rule.src, ...rule.dst]) {
      const selector = parseSelector(text);
      if (selector?.kind === "node") names.add(selector.label);
    }
  }
  return [...names].sort();
}

/**
 * Whether a node may use an exit node: a rule with autogroup:internet in `dst` has it in `src`.
 * No policy lets no node (deny by default: every node reaching every node is not the internet).
 */
export function mayReachInternet(policy: AclPolicy | null, node: { name: string; tags: readonly string[] }): boolean {
  if (policy === null) return false;
  const matches = (text: string) => {
    const selector = parseSelector(text);
    if (selector?.kind === "all") return true;
    if (selector?.kind === "tag") return node.tags.includes(selector.label);
    return selector?.kind === "node" && selector.label === node.name;
  };
  return policy.rules.some((rule) => rule.dst.includes(INTERNET) && rule.src.some(matches));
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/** A set of node indices as 32-bit words; bit i is node i. */
export type NodeSet = Uint32Array;

export function hasNode(set: NodeSet, index: number): boolean {
  return (set[index >>> 5]! & (1 << (index & 31))) !== 0;
}

/** The members of a set in ascending index order. */
export function nodeSetMembers(set: NodeSet): number[] {
  const out: number[] = [];
  for (let w = 0; w < set.length; w++) {
    let word = set[w]!;
    while (word !== 0) {
      const low = word & -word;
      out.push((w << 5) + 31 - Math.clz32(low));
      word ^= low;
    }
  }
  return out;
}

const ANY_PORT = Object.freeze([Object.freeze<PortMatch>({ protocol: "any", from: null, to: null })]) as PortMatch[];
const NO_PORTS = Object.freeze([]) as unknown as PortMatch[];

/** One rule, resolved against a list of nodes. */
export interface CompiledRule {
  /** Position of the rule in the policy. */
  index: number;
  src: NodeSet;
  dst: NodeSet;
  /** Ascending node indices of `src` and `dst`. */
  srcMembers: number[];
  dstMembers: number[];
  /** The prefixes of `dst` (addresses behind subnet routers), which `dst` as a node set leaves out. */
  dstPrefixes: Cidr[];
  /** `dst` holds autogroup:internet: its sources may use an exit node, on its ports. */
  dstInternet: boolean;
  ports: PortMatch[];
}

/**
 * A policy resolved against one list of nodes. Indices are positions in that list. With no
 * policy (null) everyone may reach everyone (on every port); with one, only what a rule allows
 * — nothing at all when it has no rules (as Tailscale and Headscale read an empty `acls`).
 */
export class AclMatrix {
  /** True when there is no policy (not one without rules, which denies everything). */
  readonly allowAll: boolean;
  readonly rules: readonly CompiledRule[];
  private readonly outgoing: NodeSet[];
  private readonly incoming: NodeSet[];
  /** Per destination node: the rules whose dst holds it, in policy order. */
  private readonly into: CompiledRule[][];
  private readonly indexById = new Map<string, number>();
  /** Per destination node: port lists by the bit mask of its matching rules (see `ports`). */
  private readonly portLists: (Map<number, PortMatch[]> | undefined)[] = [];

  private constructor(
    readonly nodes: readonly MeshNode[],
    policy: AclPolicy | null,
  ) {
    const n = nodes.length;
    const words = (n + 31) >>> 5;
    nodes.forEach((node, i) => this.indexById.set(node.id, i));
    this.allowAll = policy === null;

    const everyone = new Uint32Array(words);
    for (let i = 0; i < n; i++) everyone[i >>> 5]! |= 1 << (i & 31);
    const byTag = new Map<string, NodeSet>();
    const byName = new Map<string, NodeSet>();
    const add = (map: Map<string, NodeSet>, key: string, i: number) => {
      let set = map.get(key);
      if (!set) map.set(key, (set = new Uint32Array(words)));
      set[i >>> 5]! |= 1 << (i & 31);
    };
    nodes.forEach((node, i) => {
      add(byName, node.name, i);
      for (const tag of node.tags) add(byTag, tag, i);
    });
    const empty = new Uint32Array(words);
    const resolve = (selectors: string[]): NodeSet => {
      const out = new Uint32Array(words);
      for (const text of selectors) {
        const selector = parseSelector(text);
        if (!selector) throw new InvalidError(`${JSON.stringify(text)} is not a selector`);
        if (selector.kind === "prefix" || selector.kind === "internet") continue; // a route's addresses, the internet: no node's
        const set = selector.kind === "all" ? everyone : ((selector.kind === "tag" ? byTag : byName).get(selector.label) ?? empty);
        for (let w = 0; w < words; w++) out[w]! |= set[w]!;
      }
      return out;
    };

    this.rules = (policy?.rules ?? []).map((rule, index) => {
      const src = resolve(rule.src);
      const dst = resolve(rule.dst);
      // Frozen because plans hand the same port list to every config that uses the rule.
      const ports = Object.freeze(rule.ports.map((text) => Object.freeze(parsePort(text)))) as PortMatch[];
      const dstPrefixes = rule.dst.map(parseSelector).flatMap((selector) => (selector?.kind === "prefix" ? [selector.prefix] : []));
      const dstInternet = rule.dst.includes(INTERNET);
      return { index, src, dst, srcMembers: nodeSetMembers(src), dstMembers: nodeSetMembers(dst), dstPrefixes, dstInternet, ports };
    });

    this.outgoing = Array.from({ length: n }, () => (this.allowAll ? everyone : new Uint32Array(words)));
    this.incoming = Array.from({ length: n }, () => (this.allowAll ? everyone : new Uint32Array(words)));
    this.into = Array.from({ length: n }, () => []);
    for (const rule of this.rules) {
      for (const i of rule.srcMembers) {
        const out = this.outgoing[i]!;
        for (let w = 0; w < words; w++) out[w]! |= rule.dst[w]!;
      }
      if (rule.srcMembers.length === 0) continue; // lets nobody in: no firewall rule to make
      for (const j of rule.dstMembers) {
        const inc = this.incoming[j]!;
        for (let w = 0; w < words; w++) inc[w]! |= rule.src[w]!;
        this.into[j]!.push(rule);
      }
    }
  }

  /** Resolves `policy` (null: none, everyone reaches everyone) against `nodes` (validate it with parseAclPolicy first). */
  static compile(policy: AclPolicy | null, nodes: readonly MeshNode[]): AclMatrix {
    return new AclMatrix(nodes, policy);
  }

  /** The index of a node id in the list, or -1. */
  indexOf(id: string): number {
    return this.indexById.get(id) ?? -1;
  }

  /** May node `from` open connections to node `to`, on at least one port? */
  mayReach(from: number, to: number): boolean {
    return hasNode(this.outgoing[from]!, to);
  }

  /** The nodes `from` may reach (a shared set: do not modify). A node may appear in its own set. */
  reachableFrom(from: number): NodeSet {
    return this.outgoing[from]!;
  }

  /** The nodes that may reach `to` (a shared set: do not modify). */
  reachingTo(to: number): NodeSet {
    return this.incoming[to]!;
  }

  /** The rules whose `dst` holds node `to` and whose `src` is not empty, in policy order. */
  rulesInto(to: number): readonly CompiledRule[] {
    return this.into[to]!;
  }

  /**
   * The ports `from` may reach `to` on: the port lists of every matching rule, in policy
   * order (not merged). Empty when it may not; `[any]` when there is no policy. The list is
   * shared and frozen: sources matching the same rules into a node get the same array, which
   * keeps an all-pairs walk free of allocation.
   */
  ports(from: number, to: number): PortMatch[] {
    if (this.allowAll) return ANY_PORT;
    const rules = this.into[to]!;
    if (rules.length > 30) return Object.freeze(rules.filter((rule) => hasNode(rule.src, from)).flatMap((rule) => rule.ports)) as PortMatch[];
    let mask = 0;
    for (let k = 0; k < rules.length; k++) if (hasNode(rules[k]!.src, from)) mask |= 1 << k;
    if (mask === 0) return NO_PORTS;
    const cache = (this.portLists[to] ??= new Map());
    let list = cache.get(mask);
    if (!list) {
      list = Object.freeze(rules.filter((_, k) => (mask & (1 << k)) !== 0).flatMap((rule) => rule.ports)) as PortMatch[];
      cache.set(mask, list);
    }
    return list;
  }

  /** The same questions by node id; false / empty for an unknown id. */
  mayReachById(fromId: string, toId: string): boolean {
    const from = this.indexOf(fromId);
    const to = this.indexOf(toId);
    return from >= 0 && to >= 0 && this.mayReach(from, to);
  }

  portsById(fromId: string, toId: string): PortMatch[] {
    const from = this.indexOf(fromId);
    const to = this.indexOf(toId);
    return from >= 0 && to >= 0 ? this.ports(from, to) : [];
  }
}
