/**
 * The node side of the mesh: what `citadel mesh agent` does to the machine it runs on. Every
 * change goes through the standard tools (ip, wg, wireguard-go, nft) started with argument
 * arrays, never a shell, and through an injectable `run` so the logic is tested without root
 * and the real thing is tested inside a network namespace.
 *
 * The setconf text handed to `syncConfig` holds the node's private key: it is written only to
 * an owner-only temporary file, and neither it nor wg's echo of it appears in any error.
 */
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidError } from "../../src/errors.ts";
import { cidrContains, cidrWithin, formatCidr, formatIp, parseCidr, parseIp, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import { isWireGuardKey, publicKeyOfSync } from "./keys.ts";
import { overlaps, SHORTEST_PREFIX } from "./routes.ts";
import { INTERFACE_NAME_RULE, isInterfaceName } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Running tools

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (argv[0] looked up in PATH) with optional stdin; a missing program is code 127. */
export type RunCommand = (argv: string[], stdin?: string) => Promise<CommandResult>;

/** The real runner: Bun.spawn, output collected, never a shell. */
export const runCommand: RunCommand = async (argv, stdin) => {
  let child;
  try {
    child = Bun.spawn(argv, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  } catch (error) {
    // Bun throws at spawn time for a missing executable; a result keeps one error path for callers.
    return { code: 127, stdout: "", stderr: `${argv[0]}: ${(error as Error).message}` };
  }
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
};

/** A tool the agent ran failed; `message` says which and why (secrets already removed). */
export class DeviceCommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${command} failed (exit ${code})${detail ? `: ${detail}` : ""}`);
  }
}

/** Runs a command; its failure is a DeviceCommandError naming it. */
export async function mustRun(run: RunCommand, argv: string[], stdin?: string): Promise<CommandResult> {
  const result = await run(argv, stdin);
  if (result.code !== 0) throw new DeviceCommandError(argv.slice(0, 3).join(" "), result.code, result.stderr.trim());
  return result;
}

// ---------------------------------------------------------------------------------------------
// Interface lifecycle


/** How long a userspace implementation may take to bring its interface up. */
const INTERFACE_APPEAR_TIMEOUT_MS = 5000;
const INTERFACE_POLL_MS = 100;

function checkInterfaceName(name: string): void {
  if (!isInterfaceName(name)) throw new InvalidError(`${JSON.stringify(name)} is not an interface name (${INTERFACE_NAME_RULE})`, "interfaceName");
}

/** True when a link of that name exists (of any type). */
export async function interfaceExists(name: string, run: RunCommand = runCommand): Promise<boolean> {
  checkInterfaceName(name);
  return (await run(["ip", "link", "show", "dev", name])).code === 0;
}

/** The alias (`ip link show` prints it) the agent gives each link it makes: it takes over no other. */
export function ownLinkAlias(nodeId: string): string {
  return `citadel-mesh:${nodeId}`;
}

/** The link of that name (of any type) with its alias; null when there is none. */
export async function readLink(name: string, run: RunCommand = runCommand): Promise<{ alias: string | null } | null> {
  checkInterfaceName(name);
  const shown = await run(["ip", "-j", "link", "show", "dev", name]);
  if (shown.code !== 0) return null;
  const [link] = JSON.parse(shown.stdout) as Array<{ ifalias?: string }>;
  return { alias: link?.ifalias || null };
}

/** Gives the link its alias (see ownLinkAlias). */
export async function setLinkAlias(name: string, alias: string, run: RunCommand = runCommand): Promise<void> {
  checkInterfaceName(name);
  await mustRun(run, ["ip", "link", "set", "dev", name, "alias", alias]);
}

/**
 * Creates the WireGuard interface: in the kernel when it has WireGuard, otherwise with a
 * userspace implementation as wg-quick falls back to one (the caller passes what
 * WG_QUICK_USERSPACE_IMPLEMENTATION would name). Refuses a name that is already taken rather
 * than guessing whether the existing link is ours. With `alias`, the link is marked at once (see
 * ownLinkAlias); should that fail, it is deleted again: an unmarked link is no one's. Returns
 * which implementation runs it.
 */
export async function createInterface(name: string, userspace = "wireguard-go", run: RunCommand = runCommand, alias?: string): Promise<"kernel" | "userspace"> {
  const how = await addInterface(name, userspace, run);
  if (alias === undefined) return how;
  try {
    await setLinkAlias(name, alias, run);
  } catch (error) {
    await run(["ip", "link", "del", "dev", name]);
    throw error;
  }
  return how;
}

async function addInterface(name: string, userspace: string, run: RunCommand): Promise<"kernel" | "userspace"> {
  checkInterfaceName(name);
  if (await interfaceExists(name, run)) throw new InvalidError(`interface ${name} already exists`, "interfaceName");
  const kernel = await run(["ip", "link", "add", "dev", name, "type", "wireguard"]);
  if (kernel.code === 0) return "kernel";
  // wireguard-go daemonizes (what production wants) and hands the daemon our stdout/stderr
  // when LOG_LEVEL is set, which would keep the pipes open and the runner waiting forever.
  const started = await run(["env", "-u", "LOG_LEVEL", userspace, name]);
  if (started.code !== 0) {
    throw new DeviceCommandError(`${userspace} ${name}`, started.code, `${started.stderr.trim()} (the kernel refused too: ${kernel.stderr.trim()})`);
  }
  const deadline = Date.now() + INTERFACE_APPEAR_TIMEOUT_MS;
  while (!(await interfaceExists(name, run))) {
    if (Date.now() > deadline) throw new Error(`${userspace} started, but interface ${name} did not appear within ${INTERFACE_APPEAR_TIMEOUT_MS / 1000} s`);
    await Bun.sleep(INTERFACE_POLL_MS);
  }
  return "userspace";
}

/** Deletes the interface; a userspace implementation exits when its interface goes. */
export async function removeInterface(name: string, run: RunCommand = runCommand): Promise<void> {
  checkInterfaceName(name);
  await mustRun(run, ["ip", "link", "del", "dev", name]);
}

// ---------------------------------------------------------------------------------------------
// Reading the device

export interface DevicePeer {
  publicKey: string;
  presharedKey: string | null;
  /** "203.0.113.7:51820" or "[2001:db8::7]:51820"; null until configured or learned. */
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds; 0 = never. */
  latestHandshake: number;
  transferRx: number;
  transferTx: number;
  /** Seconds; 0 = off. */
  keepalive: number;
}

/** What `wg show NAME dump` says, without the private key (which is read and dropped). */
export interface DeviceState {
  /** null when the interface has no private key yet. */
  publicKey: string | null;
  listenPort: number;
  /** 0 = off. */
  fwmark: number;
  peers: DevicePeer[];
}

/** The device as it is now, for diffs, handshake ages and key-rotation decisions. */
export async function readDevice(name: string, run: RunCommand = runCommand): Promise<DeviceState> {
  checkInterfaceName(name);
  // stdout starts with the private key, so only stderr may go into an error.
  const { stdout } = await mustRun(run, ["wg", "show", name, "dump"]);
  return parseWgDump(stdout);
}

/**
 * Parses wg(8)'s dump of one interface: a line "private-key public-key listen-port fwmark",
 * then per peer "public-key preshared-key endpoint allowed-ips latest-handshake transfer-rx
 * transfer-tx persistent-keepalive", tab-separated, "(none)" and "off" for absent values.
 */
export function parseWgDump(text: string): DeviceState {
  const lines = text.split("\n").filter((line) => line !== "");
  const fieldsOf = (index: number, count: number): string[] => {
    const fields = lines[index]!.split("\t");
    // Never quote the line: the first one holds the private key.
    if (fields.length !== count) throw new Error(`unexpected wg show dump output: line ${index + 1} has ${fields.length} fields, expected ${count}`);
    return fields;
  };
  if (lines.length === 0) throw new Error("unexpected wg show dump output: it is empty");
  const [, publicKey, listenPort, fwmark] = fieldsOf(0, 4);
  const peers: DevicePeer[] = [];
  for (let i = 1; i < lines.length; i++) {
    const [key, psk, endpoint, allowedIps, handshake, rx, tx, keepalive] = fieldsOf(i, 8);
    peers.push({
      publicKey: key!,
      presharedKey: noneToNull(psk!),
      endpoint: noneToNull(endpoint!),
      allowedIps: allowedIps === "(none)" ? [] : allowedIps!.split(","),
      latestHandshake: Number(handshake),
      transferRx: Number(rx),
      transferTx: Number(tx),
      keepalive: keepalive === "off" ? 0 : Number(keepalive),
    });
  }
  return { publicKey: noneToNull(publicKey!), listenPort: Number(listenPort), fwmark: fwmark === "off" ? 0 : Number(fwmark), peers };
}

function noneToNull(value: string): string | null {
  return value === "(none)" ? null : value;
}

// ---------------------------------------------------------------------------------------------
// Changing the device

/**
 * Makes the device match the setconf text with `wg syncconf`, which (unlike setconf) leaves
 * unchanged peers' sessions alone and removes peers the text no longer has. The file lives
 * in `directory` (default the system's) only for the duration of the call.
 */
export async function syncConfig(name: string, setconfText: string, directory: string = tmpdir(), run: RunCommand = runCommand): Promise<void> {
  checkInterfaceName(name);
  const path = join(directory, `citadel-wg-${Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("hex")}.conf`);
  try {
    // "wx": O_EXCL, so a file or symlink planted at that name in a shared /tmp is never followed.
    const fd = openSync(path, "wx", 0o600);
    try {
      writeSync(fd, Buffer.from(setconfText));
    } finally {
      closeSync(fd);
    }
    const result = await run(["wg", "syncconf", name, path]);
    if (result.code !== 0) throw new DeviceCommandError(`wg syncconf ${name}`, result.code, redactWgMessage(result.stderr.trim()));
  } finally {
    rmSync(path, { force: true });
  }
}

/**
 * wg quotes the offending text of a bad line (`Key is not the correct length or format:
 * \`...'`), which may be a private key: the quoted part and anything key-shaped are removed.
 */
function redactWgMessage(message: string): string {
  return message.replace(/`[^']*'/g, "`(redacted)'").replace(/[A-Za-z0-9+/]{40,}={0,2}/g, "(redacted)");
}

/**
 * Sets exactly `addresses` ("100.64.0.5/16", "fd7a:115c:a1e0::5/48") on the interface and
 * brings it up with `mtu`. Stale addresses go first: deleting a primary IPv4 address also
 * deletes the secondaries of its subnet, which could take a wanted address with it.
 * Link-local addresses are the kernel's and are left alone.
 */
export async function applyAddresses(name: string, addresses: string[], mtu: number, run: RunCommand = runCommand): Promise<void> {
  checkInterfaceName(name);
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) throw new InvalidError(`mtu ${mtu} must be 1280–65535 (IPv6 needs 1280)`, "mtu");
  const wanted = new Set(addresses.map((address) => {
    const canonical = canonicalInterfaceAddress(address);
    if (!canonical) throw new InvalidError(`${JSON.stringify(address)} is not an address with a prefix length`, "addresses");
    return canonical;
  }));
  for (const present of await interfaceAddresses(name, run)) {
    if (!wanted.has(present)) await mustRun(run, ["ip", "address", "del", present, "dev", name]);
  }
  for (const address of wanted) await mustRun(run, ["ip", "address", "replace", address, "dev", name]);
  await mustRun(run, ["ip", "link", "set", "dev", name, "mtu", String(mtu), "up"]);
}

/**
 * The routing protocol number the agent's routes carry (no name in iproute2's list), so that it
 * finds and removes its own and never a route someone else put on the interface.
 */
export const MESH_ROUTE_PROTOCOL = "83";

/** A subnet route the agent did not route into the interface, and why (for a warning). */
export interface SkippedRoute {
  route: string;
  reason: string;
}

/** What `ip -j route show` says of one route (a blackhole has no dev; no protocol is "boot"). */
interface KernelRoute {
  dst?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

/**
 * Makes the kernel route `routes` (subnet routes on peers' AllowedIPs, outside the interface's
 * own prefixes, which its addresses route already) through the interface, as wg-quick adds a
 * route for each AllowedIPs, and removes those it added that are no longer wanted. It takes no
 * route over, nor any part of one: a prefix overlapping a main-table route other than the
 * default and its own (the LAN this machine is on, a Docker bridge, a static route), inside it
 * or around it, is skipped — the more specific route would pull part of that network into the
 * tunnel, or the tunnel would lose it — and so is one covering an address of this machine or a
 * peer's endpoint (the tunnel's own packets would go into the tunnel). Returns the skipped
 * routes; a route of its own that now falls under these is removed.
 */
export async function applyRoutes(name: string, routes: string[], run: RunCommand = runCommand): Promise<SkippedRoute[]> {
  checkInterfaceName(name);
  const asked = new Map<string, Cidr>();
  for (const route of routes) {
    const cidr = parseCidr(route);
    if (!cidr) throw new InvalidError(`${JSON.stringify(route)} is not a prefix`, "routes");
    asked.set(formatCidr(cidr), cidr);
  }
  const kept = asked.size === 0 ? [] : await addressesKeptOffTheMesh(name, run);
  const table = await mainTable(name, run);
  const skipped: SkippedRoute[] = [];
  const wanted = new Set<string>();
  for (const [route, cidr] of asked) {
    const covered = kept.find(({ ip }) => cidrContains(cidr, ip));
    const other = table.others.find((r) => overlaps(r.cidr, cidr));
    if (covered) skipped.push({ route, reason: `it covers ${covered.what}` });
    else if (other) skipped.push({ route, reason: describeOverlap(other, cidr) });
    else wanted.add(route);
  }
  for (const [route, cidr] of table.own) {
    if (!wanted.has(route)) await mustRun(run, ["ip", familyFlag(cidr), "route", "del", route, "dev", name, "proto", MESH_ROUTE_PROTOCOL]);
  }
  for (const route of wanted) {
    // add, never replace: replace would take over a route someone added meanwhile.
    if (!table.own.has(route)) await mustRun(run, ["ip", familyFlag(asked.get(route)!), "route", "add", route, "dev", name, "proto", MESH_ROUTE_PROTOCOL]);
  }
  return skipped;
}

/** A main-table route and the prefix it routes. */
interface TableRoute {
  route: KernelRoute;
  cidr: Cidr;
}

/**
 * The main table, read once per family: the agent's own routes on the interface (its protocol),
 * by canonical prefix, and every other route but the default ones, which any subnet route is
 * more specific than by design (as wg-quick's AllowedIPs are). A default route in pieces counts
 * as one: anything shorter than a subnet route may be (OpenVPN's redirect-gateway def1 routes
 * 0.0.0.0/1 and 128.0.0.0/1, and ::/3, 2000::/4, fc00::/7 for IPv6, into its tunnel), or every
 * subnet route would lie inside one and none would be routed.
 */
async function mainTable(name: string, run: RunCommand): Promise<{ own: Map<string, Cidr>; others: TableRoute[] }> {
  const own = new Map<string, Cidr>();
  const others: TableRoute[] = [];
  for (const family of ["-4", "-6"] as const) {
    const { stdout } = await mustRun(run, ["ip", "-j", family, "route", "show", "table", "main"]);
    for (const route of jsonList<KernelRoute>(stdout)) {
      const cidr = kernelRouteCidr(route.dst, family);
      if (!cidr) continue;
      if (route.dev === name && route.protocol === MESH_ROUTE_PROTOCOL) own.set(formatCidr(cidr), cidr);
      else if (!isDefaultRoutePiece(cidr)) others.push({ route, cidr });
    }
  }
  return { own, others };
}

/** A route's dst as a prefix (a host route is shown without a length, the default route as "default"). */
function kernelRouteCidr(dst: string | undefined, family: "-4" | "-6"): Cidr | null {
  if (dst === undefined) return null;
  if (dst === "default") return parseCidr(family === "-4" ? "0.0.0.0/0" : "::/0");
  return parseCidr(dst.includes("/") ? dst : `${dst}/${family === "-4" ? 32 : 128}`);
}

/** The default route, or a part of one: shorter than any subnet route may be (routes.ts refuses those). */
function isDefaultRoutePiece(cidr: Cidr): boolean {
  return cidr.prefix < SHORTEST_PREFIX[cidr.family];
}

function familyFlag(cidr: Cidr): "-4" | "-6" {
  return cidr.family === 4 ? "-4" : "-6";
}

/** Why a route overlapping another of the main table is skipped: it routes it already, a part of it, or it lies inside it. */
function describeOverlap({ route, cidr }: TableRoute, asked: Cidr): string {
  const where = describeKernelRoute(route);
  if (formatCidr(cidr) === formatCidr(asked)) return `the main table routes it already (${where})`;
  if (cidrWithin(cidr, asked)) return `the main table routes ${formatCidr(cidr)}, a part of it, otherwise (${where})`;
  return `it lies inside ${formatCidr(cidr)}, which the main table routes otherwise (${where})`;
}

/** "on eth0 (proto kernel)", "a blackhole route". */
function describeKernelRoute(route: KernelRoute): string {
  if (route.dev === undefined) return `a${/^[aeiou]/.test(route.type ?? "") ? "n" : ""} ${route.type ?? "device-less"} route`;
  return `on ${route.dev} (proto ${route.protocol ?? "boot"})`;
}

/** This machine's addresses and its peers' endpoints (as the device has them), which no subnet route may cover. */
async function addressesKeptOffTheMesh(name: string, run: RunCommand): Promise<{ ip: IpAddress; what: string }[]> {
  const { stdout } = await mustRun(run, ["ip", "-j", "address", "show"]);
  const links = jsonList<{ ifname?: string; addr_info?: Array<{ local?: string }> }>(stdout);
  const out: { ip: IpAddress; what: string }[] = [];
  for (const link of links) {
    for (const { local } of link.addr_info ?? []) {
      const ip = local === undefined ? null : parseIp(local);
      if (ip) out.push({ ip, what: `${local}, an address of this machine (${link.ifname ?? "?"})` });
    }
  }
  for (const peer of (await readDevice(name, run)).peers) {
    const ip = peer.endpoint === null ? null : parseIp(peer.endpoint.replace(/:\d+$/, "").replace(/^\[|\]$/g, ""));
    if (ip) out.push({ ip, what: `${peer.endpoint}, a peer's endpoint` });
  }
  return out;
}

/** `ip -j` output: a JSON list, or nothing at all. */
function jsonList<T>(stdout: string): T[] {
  return stdout.trim() === "" ? [] : (JSON.parse(stdout) as T[]);
}

/** The interface's non-link-local addresses, canonical "address/prefix". */
async function interfaceAddresses(name: string, run: RunCommand): Promise<string[]> {
  const { stdout } = await mustRun(run, ["ip", "-j", "address", "show", "dev", name]);
  const links = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number; scope?: string }> }>;
  const out: string[] = [];
  for (const info of links.flatMap((link) => link.addr_info ?? [])) {
    if (info.scope === "link" || info.local === undefined || info.prefixlen === undefined) continue;
    const canonical = canonicalInterfaceAddress(`${info.local}/${info.prefixlen}`);
    if (canonical) out.push(canonical);
  }
  return out;
}

/** "100.64.0.5/16" in one spelling (host bits kept: it is an interface address, not a route). */
function canonicalInterfaceAddress(text: string): string | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIp(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(prefix) || Number(prefix) > (ip.family === 4 ? 32 : 128)) return null;
  return `${formatIp(ip)}/${Number(prefix)}`;
}

/** Loads an nftables script atomically (nft applies a whole -f script or none of it). */
export async function applyFirewall(nftScript: string, run: RunCommand = runCommand): Promise<void> {
  await mustRun(run, ["nft", "-f", "-"], nftScript);
}

/** True when the nftables table `inet <table>` exists and filters what arrives on `interfaceName`. */
export async function firewallTableFilters(table: string, interfaceName: string, run: RunCommand = runCommand): Promise<boolean> {
  const listed = await run(["nft", "list", "table", "inet", table]);
  return listed.code === 0 && listed.stdout.includes(`iifname "${interfaceName}"`);
}

/** True when nft is installed and usable here, so the agent can warn instead of failing. */
export async function firewallAvailable(run: RunCommand = runCommand): Promise<boolean> {
  return (await run(["nft", "list", "tables"])).code === 0;
}

// ---------------------------------------------------------------------------------------------
// The setconf format

export interface SetconfPeer {
  publicKey: string;
  presharedKey: string | null;
  /** Canonical CIDRs ("100.64.0.2/32"), in the order written. */
  allowedIps: string[];
  endpoint: string | null;
  /** Seconds; 0 = off. */
  keepalive: number;
  /** Full-line comments ("# laptop") written before or inside the section, kept for rendering. */
  comments: string[];
}

/** A `wg setconf` file as data, so the agent can adjust it (key rotation) and describe it. */
export interface ParsedSetconf {
  privateKey: string | null;
  listenPort: number | null;
  fwmark: number | null;
  comments: string[];
  peers: SetconfPeer[];
}

/**
 * Parses the `wg setconf` format as wg does: section and key names case-insensitive,
 * whitespace ignored, `#` starts a comment, a repeated [Peer] key merges into the first.
 * Errors give the line number but never the line, which may hold the private key.
 */
export function parseSetconf(text: string): ParsedSetconf {
  const parsed: ParsedSetconf = { privateKey: null, listenPort: null, fwmark: null, comments: [], peers: [] };
  let section: "none" | "interface" | SetconfPeer = "none";
  let pending: string[] = [];
  const fail = (lineNumber: number, problem: string): never => {
    throw new InvalidError(`setconf line ${lineNumber}: ${problem}`, "setconf");
  };
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const raw = lines[index]!.trim();
    if (raw.startsWith("#")) {
      pending.push(raw);
      continue;
    }
    const line = raw.replace(/#.*$/, "").replace(/\s+/g, "");
    if (line === "") continue;
    const header = /^\[(\w+)\]$/.exec(line)?.[1]?.toLowerCase();
    if (header === "interface") {
      section = "interface";
      parsed.comments.push(...pending);
      pending = [];
      continue;
    }
    if (header === "peer") {
      section = { publicKey: "", presharedKey: null, allowedIps: [], endpoint: null, keepalive: 0, comments: pending };
      parsed.peers.push(section);
      pending = [];
      continue;
    }
    const equals = line.indexOf("=");
    const key = line.slice(0, equals).toLowerCase();
    const value = line.slice(equals + 1);
    if (equals < 0 || !/^[a-z]{1,32}$/.test(key)) fail(lineNumber, "expected a [section], a key = value or a comment");
    if (section === "none") fail(lineNumber, `"${key}" before any [Interface] or [Peer]`);
    const comments = section === "interface" ? parsed.comments : (section as SetconfPeer).comments;
    comments.push(...pending);
    pending = [];
    if (section === "interface") {
      if (key === "privatekey") parsed.privateKey = isWireGuardKey(value) ? value : fail(lineNumber, "PrivateKey is not a WireGuard key");
      else if (key === "listenport") parsed.listenPort = parsePort(value) ?? fail(lineNumber, "ListenPort must be 0–65535");
      else if (key === "fwmark") parsed.fwmark = value === "off" ? 0 : (parseUint32(value) ?? fail(lineNumber, "FwMark must be off or a 32-bit number"));
      else fail(lineNumber, `unknown [Interface] key "${key}"`);
      continue;
    }
    const peer = section as SetconfPeer;
    if (key === "publickey") peer.publicKey = isWireGuardKey(value) ? value : fail(lineNumber, "PublicKey is not a WireGuard key");
    else if (key === "presharedkey") peer.presharedKey = !isWireGuardKey(value) ? fail(lineNumber, "PresharedKey is not a WireGuard key") : value === NO_PRESHARED_KEY ? null : value;
    else if (key === "allowedips") {
      for (const item of value === "" ? [] : value.split(",")) peer.allowedIps.push(canonicalAllowedIp(item) ?? fail(lineNumber, `"${item}" is not an address or CIDR`));
    } else if (key === "endpoint") peer.endpoint = canonicalEndpoint(value) ?? fail(lineNumber, `Endpoint "${value}" is not host:port`);
    else if (key === "persistentkeepalive") peer.keepalive = value === "off" ? 0 : (parsePort(value) ?? fail(lineNumber, "PersistentKeepalive must be off or 0–65535"));
    else fail(lineNumber, `unknown [Peer] key "${key}"`);
  }
  const peers: SetconfPeer[] = [];
  const byKey = new Map<string, SetconfPeer>();
  for (const peer of parsed.peers) {
    if (peer.publicKey === "") throw new InvalidError("setconf: a [Peer] has no PublicKey", "setconf");
    const first = byKey.get(peer.publicKey);
    if (!first) {
      byKey.set(peer.publicKey, peer);
      peers.push(peer);
      continue;
    }
    // wg applies a repeated peer to the same peer: later values win, allowed IPs add up.
    first.allowedIps.push(...peer.allowedIps.filter((ip) => !first.allowedIps.includes(ip)));
    first.presharedKey = peer.presharedKey ?? first.presharedKey;
    first.endpoint = peer.endpoint ?? first.endpoint;
    first.keepalive = peer.keepalive || first.keepalive;
    first.comments.push(...peer.comments);
  }
  parsed.peers = peers;
  if (pending.length > 0) (parsed.peers.at(-1)?.comments ?? parsed.comments).push(...pending);
  return parsed;
}

/**
 * The all-zero key: what `wg` shows as "(none)", and what WireGuard uses when a pair has no
 * preshared key (the Noise handshake's PSK is then 32 zero bytes), so writing it removes one.
 */
export const NO_PRESHARED_KEY = `${"A".repeat(43)}=`;

/**
 * The inverse of `parseSetconf`: text `wg syncconf` accepts. With `explicit`, a peer's absent
 * preshared key and keepalive are written out as the zero key and 0: `wg syncconf` leaves a
 * setting the file does not name as it is, so a preshared key turned off, or a keepalive set to
 * 0, would otherwise stay on the running device.
 */
export function renderParsedSetconf(parsed: ParsedSetconf, { explicit = false }: { explicit?: boolean } = {}): string {
  const out: string[] = [...parsed.comments, "[Interface]"];
  if (parsed.privateKey !== null) out.push(`PrivateKey = ${parsed.privateKey}`);
  if (parsed.listenPort !== null) out.push(`ListenPort = ${parsed.listenPort}`);
  if (parsed.fwmark !== null) out.push(`FwMark = ${parsed.fwmark === 0 ? "off" : `0x${parsed.fwmark.toString(16)}`}`);
  for (const peer of parsed.peers) {
    out.push("", ...peer.comments, "[Peer]", `PublicKey = ${peer.publicKey}`);
    if (peer.presharedKey !== null || explicit) out.push(`PresharedKey = ${peer.presharedKey ?? NO_PRESHARED_KEY}`);
    if (peer.allowedIps.length > 0) out.push(`AllowedIPs = ${peer.allowedIps.join(", ")}`);
    if (peer.endpoint !== null) out.push(`Endpoint = ${peer.endpoint}`);
    if (peer.keepalive > 0 || explicit) out.push(`PersistentKeepalive = ${peer.keepalive}`);
  }
  return `${out.join("\n")}\n`;
}

function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

function parseUint32(text: string): number | null {
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(text)) return null;
  const value = Number(text);
  return value <= 0xffffffff ? value : null;
}

/** wg's canonical form of an allowed IP: the network (host bits cleared), lower case, with prefix. */
function canonicalAllowedIp(text: string): string | null {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = ip.family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return null;
  const prefix = Number(prefixText);
  const bytes = ip.bytes.map((byte, i) => byte & (0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))));
  return formatCidr({ family: ip.family, bytes, prefix });
}

/** "host:port" with an IP host in canonical form ("[fd00::9]:51820"), a name left as written. */
function canonicalEndpoint(text: string): string | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match || Number(match[3]) > 65535) return null;
  const host = match[1] ?? match[2]!;
  const ip = parseIp(host);
  if (match[1] !== undefined && ip?.family !== 6) return null;
  const port = Number(match[3]);
  if (!ip) return `${host.toLowerCase()}:${port}`;
  return ip.family === 6 ? `[${formatIp(ip)}]:${port}` : `${formatIp(ip)}:${port}`;
}

// ---------------------------------------------------------------------------------------------
// Key rotation overlap

/**
 * During a peer's key rotation the config lists it twice: its current key with AllowedIPs
 * and its next key without (WireGuard routes an address to one peer only). Once the next key
 * has handshaken more recently than the current one, the peer has switched, so the
 * AllowedIPs move to the next key; until then traffic keeps going to the current key.
 */
export function preferHandshakenKeys(desired: ParsedSetconf, device: DeviceState | null, pairs: Array<{ current: string; next: string }>): ParsedSetconf {
  const handshakes = new Map((device?.peers ?? []).map((peer) => [peer.publicKey, peer.latestHandshake]));
  const peers = desired.peers.map((peer) => ({ ...peer, allowedIps: [...peer.allowedIps], comments: [...peer.comments] }));
  for (const { current, next } of pairs) {
    const old = peers.find((peer) => peer.publicKey === current);
    const fresh = peers.find((peer) => peer.publicKey === next);
    if (!old || !fresh || old === fresh) continue;
    if ((handshakes.get(next) ?? 0) > (handshakes.get(current) ?? 0)) {
      fresh.allowedIps = [...fresh.allowedIps, ...old.allowedIps.filter((ip) => !fresh.allowedIps.includes(ip))];
      old.allowedIps = [];
    }
  }
  return { ...desired, comments: [...desired.comments], peers };
}

// ---------------------------------------------------------------------------------------------
// Describing and diffing, for --dry-run

interface CanonicalPeer {
  publicKey: string;
  /** A fingerprint of the preshared key, or null: a rotated key must show as a change. */
  presharedKey: string | null;
  allowedIps: string[];
  endpoint: string | null;
  keepalive: number;
}

/**
 * The device in the canonical text `describeDesired` also produces, so that equal text means
 * "syncconf would change nothing". Secrets are shown only as "(set, …)": the private key by its
 * public key (a different key on the device must show), a preshared key by a fingerprint. A
 * roaming peer's learned endpoint shows up as a difference: syncconf would not change it, but it
 * is true.
 */
export function describeDevice(state: DeviceState, options: DescribeOptions = {}): string {
  return describeCanonical(options, state.publicKey, state.listenPort, state.peers.map((peer) => ({
    publicKey: peer.publicKey,
    presharedKey: pskFingerprint(peer.presharedKey),
    allowedIps: peer.allowedIps.map((ip) => canonicalAllowedIp(ip) ?? ip),
    endpoint: peer.endpoint === null ? null : (canonicalEndpoint(peer.endpoint) ?? peer.endpoint),
    keepalive: peer.keepalive,
  })));
}

/** The setconf text (or its parsed form) in the canonical text of `describeDevice`. */
export function describeDesired(setconf: string | ParsedSetconf, options: DescribeOptions = {}): string {
  const parsed = typeof setconf === "string" ? parseSetconf(setconf) : setconf;
  return describeCanonical(options, parsed.privateKey === null ? null : publicKeyOfSync(parsed.privateKey), parsed.listenPort, parsed.peers.map((peer) => ({
    publicKey: peer.publicKey,
    presharedKey: pskFingerprint(peer.presharedKey),
    allowedIps: peer.allowedIps,
    endpoint: peer.endpoint,
    keepalive: peer.keepalive,
  })));
}

export interface DescribeOptions {
  /**
   * false: leave endpoints out. WireGuard moves a peer's endpoint to wherever its last
   * authenticated packet came from (roaming), so a device that differs from its config only
   * there has not drifted.
   */
  endpoints?: boolean;
}

/**
 * A config without ListenPort leaves the device's port alone, so that line is left out. So is
 * the fwmark: no config file names one (wg-quick's Table=auto sets one, the agent one of its own
 * for an exit node, apart: exit-routing.ts), and a device compared with it would differ from
 * every config for ever, "repaired" at every poll.
 */
function describeCanonical(options: DescribeOptions, publicKey: string | null, listenPort: number | null, peers: CanonicalPeer[]): string {
  const out = ["interface", `  private-key ${publicKey === null ? "(none)" : `(set, public ${publicKey})`}`];
  if (listenPort !== null) out.push(`  listen-port ${listenPort}`);
  for (const peer of [...peers].sort((a, b) => compareText(a.publicKey, b.publicKey))) {
    const allowed = [...new Set(peer.allowedIps)].sort(compareCidrs);
    out.push(
      `peer ${peer.publicKey}`,
      `  allowed-ips ${allowed.length > 0 ? allowed.join(", ") : "(none)"}`,
      ...(options.endpoints === false ? [] : [`  endpoint ${peer.endpoint ?? "(none)"}`]),
      `  keepalive ${peer.keepalive > 0 ? peer.keepalive : "off"}`,
      `  preshared-key ${peer.presharedKey ? `(set, ${peer.presharedKey})` : "(none)"}`,
    );
  }
  return `${out.join("\n")}\n`;
}

/**
 * The first 8 hex digits of the preshared key's SHA-256: enough to tell a rotated key from the
 * one in the kernel (only "(set)" was compared before, so a rotation was never applied), and
 * nothing to guess a random 256-bit key from.
 */
function pskFingerprint(key: string | null): string | null {
  return key === null ? null : new Bun.CryptoHasher("sha256").update(key).digest("hex").slice(0, 8);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** IPv4 before IPv6, then numerically, so "10.0.0.2/32" sorts before "10.0.0.10/32". */
function compareCidrs(a: string, b: string): number {
  const parse = (text: string): [IpAddress | null, number] => [parseIp(text.split("/")[0]!), Number(text.split("/")[1])];
  const [ipA, prefixA] = parse(a);
  const [ipB, prefixB] = parse(b);
  if (!ipA || !ipB) return compareText(a, b);
  if (ipA.family !== ipB.family) return ipA.family - ipB.family;
  for (let i = 0; i < ipA.bytes.length; i++) if (ipA.bytes[i] !== ipB.bytes[i]) return ipA.bytes[i]! - ipB.bytes[i]!;
  return prefixA - prefixB;
}

/**
 * The diff of two descriptions (describeDevice, describeDesired) section by section, so that a
 * changed line says whose it is: the interface's changed lines; a peer added or removed whole
 * ("+ peer KEY (name)" / "- peer KEY (name)" and its lines); a peer that changed as its header
 * ("  peer KEY (name)", neither added nor removed) before its changed lines. `nameOf` gives a
 * peer's name (null when it is not known: a peer the config no longer has).
 */
export function diffDescriptions(before: string, after: string, nameOf: (publicKey: string) => string | null = () => null): string[] {
  const was = sectionsOf(before);
  const now = sectionsOf(after);
  const headers = [...new Set([...was.keys(), ...now.keys()])].sort((a, b) => (a === "interface" ? -1 : b === "interface" ? 1 : compareText(a, b)));
  const label = (header: string) => {
    const name = header.startsWith("peer ") ? nameOf(header.slice(5)) : null;
    return name === null ? header : `${header} (${name})`;
  };
  return headers.flatMap((header) => {
    const old = was.get(header);
    const fresh = now.get(header);
    if (!fresh) return [`- ${label(header)}`, ...old!.map((line) => `- ${line}`)];
    if (!old) return [`+ ${label(header)}`, ...fresh.map((line) => `+ ${line}`)];
    const lines = diffLines(old.join("\n"), fresh.join("\n"));
    return lines.length === 0 || header === "interface" ? lines : [`  ${label(header)}`, ...lines];
  });
}

/** A description's sections: each header line ("interface", "peer KEY") with its indented lines. */
function sectionsOf(text: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of splitLines(text)) {
    if (line.startsWith(" ") && current !== null) current.push(line);
    else sections.set(line, (current = []));
  }
  return sections;
}

/**
 * A line diff by longest common subsequence: "- line" for lines only in `before`, "+ line"
 * for lines only in `after`, in order, removals first at each change. The common prefix and
 * suffix are stripped before the quadratic table, so a few thousand lines stay cheap.
 */
export function diffLines(before: string, after: string): string[] {
  const a = splitLines(before);
  const b = splitLines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const x = a.slice(start, endA);
  const y = b.slice(start, endB);
  const width = y.length + 1;
  // common[i * width + j]: length of the LCS of x[i..] and y[j..].
  const common = new (Math.min(x.length, y.length) < 0xffff ? Uint16Array : Uint32Array)((x.length + 1) * width);
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      common[i * width + j] = x[i] === y[j] ? common[(i + 1) * width + j + 1]! + 1 : Math.max(common[(i + 1) * width + j]!, common[i * width + j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    if (x[i] === y[j]) {
      i++;
      j++;
    } else if (common[(i + 1) * width + j]! >= common[i * width + j + 1]!) out.push(`- ${x[i++]}`);
    else out.push(`+ ${y[j++]}`);
  }
  while (i < x.length) out.push(`- ${x[i++]}`);
  while (j < y.length) out.push(`+ ${y[j++]}`);
  return out;
}

/** Lines of a text; a final newline does not make an extra empty line. */
function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}
