/**
 * A node using an exit node routes everything through it as wg-quick does for an AllowedIPs of
 * 0.0.0.0/0 (`Table = auto`): the WireGuard device marks its own packets (fwmark = the table's
 * number, the node's listen port, as wg-quick picks it), a table of that number holds the
 * default route into the interface, and two policy rules per family send there what is not
 * marked — `not fwmark T lookup T` — after the main table has had its say on everything more
 * specific than a default route — `not fwmark T lookup main suppress_prefixlength 0` — so the
 * machine's LAN, a Docker bridge and the tunnel's own packets never loop into the tunnel. The
 * control plane's address (or the proxy the agent reaches it through) is a `throw` route of the
 * table: its lookup there finds nothing and goes on to the main table whole, so that the agent
 * keeps reaching it when the exit node does not answer, and a config that takes the exit node
 * away can still arrive.
 *
 * When the exit node the node chose is not usable (config `exit.via` null), the table's default
 * route is unreachable instead: its internet traffic is refused, not sent out directly.
 *
 * Whose is what: the rules and routes carry the agent's protocol number (83, as its routes do),
 * and the rules name the table's number as their fwmark — the node's listen port, which no other
 * interface on the host can have — so that the agent of one interface never takes another's for
 * its own (a host in two networks runs two agents). What the config no longer asks for (the node
 * stopped using an exit node, its listen port changed) is removed. Another interface's exit rules
 * are refused — or, when the caller holds the host's exit claim (exit-claim.ts), removed as a
 * dead agent's.
 */
import { formatIp, type IpAddress } from "../../src/net/ip.ts";
import { DeviceCommandError, MESH_ROUTE_PROTOCOL, mustRun, readDevice, type RunCommand } from "./device.ts";

/** The rules' priorities: before the main table's (32766), in this order. */
export const EXIT_RULE_PRIORITY = { main: 30_001, exit: 30_002 } as const;

export interface ExitRouting {
  /** The table number and fwmark (the node's listen port). */
  table: number;
  /** True: the default route goes into the interface; false: it is unreachable (the exit node is not usable). */
  through: boolean;
  /** Addresses looked up in the main table whole: the control plane's (or its proxy's). */
  keptOff: readonly IpAddress[];
}

/** A policy rule as `ip -j rule show` prints it (the fields the agent's rules use). */
interface KernelRule {
  priority?: number;
  table?: string;
  suppress_prefixlen?: number;
  not?: null;
  fwmark?: string;
  protocol?: string;
}

/** A route as `ip -j route show table T` prints it. */
interface KernelRoute {
  dst?: string;
  dev?: string;
  type?: string;
  protocol?: string;
}

/** `ip rule` or `ip route` words, the same for add and del (without the protocol). */
type Words = string[];

const FAMILIES = ["-4", "-6"] as const;
type Family = (typeof FAMILIES)[number];

/**
 * Makes the policy routing, the exit table's routes and the device's fwmark what `want` asks
 * (null: none of it), per family; returns whether anything changed. `mine`: the tables this
 * interface may have used (its listen port); the device's fwmark counts too. The device must
 * exist when `want` is not null.
 */
export async function applyExitRouting(name: string, want: ExitRouting | null, run: RunCommand, mine: readonly number[] = [], others: OthersRules = "refuse"): Promise<boolean> {
  const device = await readDevice(name, run).catch(() => null); // gone (a cut-off of a deleted interface): its rules are found by `mine`
  const ours = new Set([...mine, ...(device && device.fwmark !== 0 ? [device.fwmark] : []), ...(want ? [want.table] : [])]);
  // Every family listed before anything changes: another agent's exit rules refuse this one's.
  const listings = new Map<Family, KernelRule[] | null>();
  for (const family of FAMILIES) {
    // A family the kernel does not have (IPv6 disabled at boot: no traffic of it to route) has
    // nothing to add or remove; nothing asked, any failure to list is taken so too.
    listings.set(
      family,
      await listRules(family, run).catch((error: unknown) => {
        if (want === null || familyNotSupported(error)) return null;
        throw error;
      }),
    );
  }
  let changed = false;
  if (want !== null && others === "refuse") refuseAnotherExit(name, [...listings.values()].flatMap((listed) => listed ?? []), ours);
  if (want !== null && others === "remove") changed = await removeOthers(listings, ours, run);
  // The fwmark first, as wg-quick sets it before its rules: from the first rule on, the tunnel's
  // own packets must be marked, or `not fwmark T lookup T` sends them into the tunnel itself and
  // the whole mesh of this host breaks. A failure part-way (a family's `ip` failing) then leaves
  // rules that still let them out (found in review: set last, an `ip -6` failure left IPv4
  // rules with the fwmark off). On a change of table the mark moves to the new one before the
  // former rules go, family by family right after the new ones are in.
  if (want !== null && device !== null && device.fwmark !== want.table) {
    await mustRun(run, ["wg", "set", name, "fwmark", String(want.table)]);
    changed = true;
  }
  const former = new Set<number>();
  for (const family of FAMILIES) {
    const listed = listings.get(family)!;
    if (listed === null) continue;
    const own = listed.filter((rule) => rule.protocol === MESH_ROUTE_PROTOCOL && rule.fwmark !== undefined && ours.has(Number(rule.fwmark)));
    for (const rule of own) former.add(Number(rule.fwmark));
    const desired = want === null ? [] : desiredRules(want.table);
    const present = own.map(wordsOfRule);
    // The table's routes before the rules that send traffic there, and the new rules before the
    // former ones go: no moment where the traffic meant for the exit node goes out directly.
    if (want !== null) changed = (await applyTable(name, family, want, run)) || changed;
    for (const words of desired) {
      if (present.some((p) => same(p, words))) continue;
      await mustRun(run, ["ip", family, "rule", "add", ...words, "protocol", MESH_ROUTE_PROTOCOL]);
      changed = true;
    }
    for (const words of present) {
      if (desired.some((d) => same(d, words))) continue;
      await mustRun(run, ["ip", family, "rule", "del", ...words, "protocol", MESH_ROUTE_PROTOCOL]);
      changed = true;
    }
    // The tables this interface used: those of its rules, and the device's fwmark (its rules gone first, say by hand).
    for (const table of new Set([...former, ...(device && device.fwmark !== 0 ? [device.fwmark] : [])])) {
      if (table === want?.table || (await tableRoutes(family, table, run)).every((route) => route.protocol !== MESH_ROUTE_PROTOCOL)) continue;
      await mustRun(run, ["ip", family, "route", "flush", "table", String(table), "proto", MESH_ROUTE_PROTOCOL]);
      changed = true;
    }
  }
  // The fwmark cleared last, once this agent's rules for it are gone (set first above while exiting).
  if (want !== null || device === null || device.fwmark === 0 || !former.has(device.fwmark)) return changed;
  await mustRun(run, ["wg", "set", name, "fwmark", "off"]);
  return true;
}

/**
 * What to do with another agent's exit rules on the host (see refuseAnotherExit): "refuse" —
 * its agent may be running; "remove" — the caller holds the host's exit claim (exit-claim.ts),
 * so they are the rules of an agent that no longer runs.
 */
export type OthersRules = "refuse" | "remove";

/**
 * Removes the exit rules of agents that no longer run (protocol 83, the exit priorities, a
 * fwmark not this interface's), and their tables' routes, before this agent's go in: left, they
 * would send this tunnel's own packets into a dead agent's table. True when any were there.
 */
async function removeOthers(listings: ReadonlyMap<Family, KernelRule[] | null>, ours: ReadonlySet<number>, run: RunCommand): Promise<boolean> {
  let changed = false;
  for (const [family, listed] of listings) {
    const stale = othersRules(listed ?? [], ours);
    for (const rule of stale) {
      await mustRun(run, ["ip", family, "rule", "del", ...wordsOfRule(rule), "protocol", MESH_ROUTE_PROTOCOL]);
      changed = true;
    }
    for (const table of new Set(stale.map((rule) => Number(rule.fwmark)))) {
      if ((await tableRoutes(family, table, run)).every((route) => route.protocol !== MESH_ROUTE_PROTOCOL)) continue;
      await mustRun(run, ["ip", family, "route", "flush", "table", String(table), "proto", MESH_ROUTE_PROTOCOL]);
    }
  }
  return changed;
}

/** Another interface's exit rules: the agent's protocol, the exit priorities, a fwmark not `ours`. */
function othersRules(rules: readonly KernelRule[], ours: ReadonlySet<number>): KernelRule[] {
  const priorities = new Set<number>(Object.values(EXIT_RULE_PRIORITY));
  return rules.filter((rule) => rule.protocol === MESH_ROUTE_PROTOCOL && priorities.has(rule.priority ?? -1) && rule.fwmark !== undefined && !ours.has(Number(rule.fwmark)));
}

/** `ip -6` on a kernel without IPv6 (ipv6.disable=1): EAFNOSUPPORT. */
const familyNotSupported = (error: unknown) => error instanceof DeviceCommandError && /address family not supported/i.test(error.message);

/** Another agent's exit routing is on this host: two cannot share it (see refuseAnotherExit). */
export class ExitRoutingConflictError extends Error {
  override readonly name = "ExitRoutingConflictError";
}

/**
 * Refuses to route through an exit node while another agent of this host does (its rules: the
 * agent's protocol, the exit priorities, another fwmark): the rules of both would sit at the same
 * priorities, and each one's `not fwmark T lookup T` would send the other tunnel's own packets
 * into its table — each mesh's WireGuard traffic through the other's exit node, or into itself.
 * A host sends its internet through one exit node.
 */
function refuseAnotherExit(name: string, rules: readonly KernelRule[], ours: ReadonlySet<number>): void {
  const priorities = Object.values(EXIT_RULE_PRIORITY);
  const others = [...new Set(othersRules(rules, ours).map((rule) => Number(rule.fwmark)))];
  if (others.length === 0) return;
  throw new ExitRoutingConflictError(
    `another mesh interface of this host routes through an exit node (its policy rules, fwmark ${others.join(", ")}, at priorities ${priorities.join(" and ")}): ` +
      `${name} cannot use one as well, as each interface's rules would send the other's own WireGuard packets into its tunnel. Its exit routing was left as it was (tried again at every round); ` +
      "choose no exit node on one of the two (citadel mesh exit-node --none), or remove the other's rules if its agent is gone: a host sends its internet through one exit node",
  );
}

/** The two rules of a family, in `ip rule` words. */
function desiredRules(table: number): Words[] {
  const mark = ["not", "fwmark", String(table)];
  return [
    ["priority", String(EXIT_RULE_PRIORITY.main), ...mark, "lookup", "main", "suppress_prefixlength", "0"],
    ["priority", String(EXIT_RULE_PRIORITY.exit), ...mark, "lookup", String(table)],
  ];
}

/** A rule of the agent's in the words desiredRules gives, from `ip -j rule show`. */
function wordsOfRule(rule: KernelRule): Words {
  const words = ["priority", String(rule.priority ?? 0)];
  if (rule.not !== undefined) words.push("not");
  words.push("fwmark", String(Number(rule.fwmark)), "lookup", rule.table ?? "main");
  if (rule.suppress_prefixlen !== undefined) words.push("suppress_prefixlength", String(rule.suppress_prefixlen));
  return words;
}

const same = (a: Words, b: Words) => a.join(" ") === b.join(" ");

async function listRules(family: Family, run: RunCommand): Promise<KernelRule[]> {
  const { stdout } = await mustRun(run, ["ip", "-j", family, "rule", "show"]);
  return stdout.trim() === "" ? [] : (JSON.parse(stdout) as KernelRule[]);
}

/** The routes of a table; none when the kernel has no such table yet (it makes one with its first route). */
async function tableRoutes(family: Family, table: number, run: RunCommand): Promise<KernelRoute[]> {
  const result = await run(["ip", "-j", family, "route", "show", "table", String(table)]);
  if (result.code !== 0 && /table does not exist/i.test(result.stderr)) return [];
  if (result.code !== 0) throw new DeviceCommandError(`ip -j ${family} route show table`, result.code, result.stderr.trim());
  return result.stdout.trim() === "" ? [] : (JSON.parse(result.stdout) as KernelRoute[]);
}

/**
 * The exit table of a family made what `want` asks: the default route into the interface (or
 * unreachable), and a throw route per address kept off it; the agent's routes there that are
 * not asked for are removed. True when it changed something.
 */
async function applyTable(name: string, family: Family, want: ExitRouting, run: RunCommand): Promise<boolean> {
  const table = String(want.table);
  const host = family === "-4" ? 32 : 128;
  const desired: Words[] = [
    want.through ? ["default", "dev", name] : ["unreachable", "default"],
    ...want.keptOff.filter((ip) => (ip.family === 4) === (family === "-4")).map((ip) => ["throw", `${formatIp(ip)}/${host}`]),
  ];
  const present = (await tableRoutes(family, want.table, run)).filter((route) => route.protocol === MESH_ROUTE_PROTOCOL).map((route) => wordsOfRoute(route, host));
  let changed = false;
  for (const words of desired) {
    if (present.some((p) => same(p, words))) continue;
    // replace: a default route of one kind takes the other's place at once (never none between).
    await mustRun(run, ["ip", family, "route", "replace", ...words, "table", table, "proto", MESH_ROUTE_PROTOCOL]);
    changed = true;
  }
  for (const words of present) {
    // Gone already when a desired route of the same destination replaced it.
    if (desired.some((d) => same(d, words) || destinationOf(d) === destinationOf(words))) continue;
    await mustRun(run, ["ip", family, "route", "del", ...words, "table", table, "proto", MESH_ROUTE_PROTOCOL]);
    changed = true;
  }
  return changed;
}

/** The destination in a route's words ("default", "203.0.113.7/32"): the word after its type, if any. */
const destinationOf = (words: Words) => (words[0] === "unreachable" || words[0] === "throw" ? words[1] : words[0]);

/** A route of the exit table in the words applyTable gives ("default dev wg0", "unreachable default", "throw 203.0.113.7/32"). */
function wordsOfRoute(route: KernelRoute, host: number): Words {
  const dst = route.dst === undefined || route.dst === "default" || route.dst.includes("/") ? (route.dst ?? "default") : `${route.dst}/${host}`;
  const type = route.type === undefined || route.type === "unicast" ? [] : [route.type];
  return [...type, dst, ...(type.length === 0 && route.dev !== undefined ? ["dev", route.dev] : [])];
}
