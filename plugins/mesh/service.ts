/**
 * The mesh's control side: networks, pre-auth keys, nodes, the ACL, enrollment and the node's
 * own requests (applied, rotate). Every change is one store transaction that also records its
 * audit event and, when any node's config can change, bumps the network's version — the
 * version agents see in their config documents (configs.ts).
 *
 * Secrets: pre-auth keys and node tokens are shown once and stored as SHA-256; a node's
 * private key never reaches this side (the node sends its public key); the preshared-key seed
 * is a keyring envelope.
 */
import type { Database } from "bun:sqlite";
import { createHash, randomBytes } from "node:crypto";
import type { AuditActor, AuditEventInput, AuditRequestContext } from "../../src/audit/event.ts";
import { actorOf, roleHolder, type Principal } from "../../src/auth/principal.ts";
import { roleAllows, type Permission } from "../../src/auth/rbac.ts";
import { generateToken, parseToken, tokenMatches, tokenShape } from "../../src/auth/tokens.ts";
import { CitadelError, ConflictError, ForbiddenError, InvalidError, NotFoundError, PreconditionFailedError, StandingEndedError, UnauthorizedError } from "../../src/errors.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { newId } from "../../src/ids.ts";
import { cidrContains, formatCidr, parseCidr, parseIp } from "../../src/net/ip.ts";
import type { Kernel } from "../../src/plugin.ts";
import { addressesOf, allocateHost, randomUlaPrefix, validateNetworkPrefixes } from "./addresses.ts";
import { createdFirst } from "./dns-clients.ts";
import { splitExitRoutes, withExitRoutes } from "./exits.ts";
import { isWireGuardKey } from "./keys.ts";
import { NodeLiveness } from "./liveness.ts";
import { parseDateTime } from "./times.ts";
import { aclNodeNames, aclPrefixes, mayReachInternet, parseAclPolicy } from "./policy.ts";
import { checkRoutes, electPrimaries, overlaps as prefixesOverlap, pendingRoutes, primaryRoutes, routesInEffect, type RouteCandidate } from "./routes.ts";
import type { MeshSettings } from "./settings.ts";
import * as sql from "./store.ts";
import { INTERFACE_NAME_RULE, isInterfaceName, type AclPolicy } from "./types.ts";
import { isUnreachableEndpoint } from "./unreachable.ts";

export type MeshKernel = Kernel<MeshSettings>;

export interface Caller {
  principal: Principal;
  request: AuditRequestContext;
}

export interface NewNetwork {
  name: string;
  ipv4?: string;
  ipv6?: string;
  listen_port?: number;
  mtu?: number;
  keepalive?: number;
  topology?: "mesh" | "hub";
  dns?: string[];
  interface_name?: string;
  preshared_keys?: boolean;
}

/** A network's settings that go into its nodes' configs (a new seed is a new object, so it compares as changed). */
const NETWORK_SETTINGS = ["listen_port", "mtu", "keepalive", "topology", "dns", "interface_name", "psk_seed"] as const;

export type NetworkChanges = Partial<Omit<NewNetwork, "name" | "ipv4" | "ipv6">> & { rotate_preshared_keys?: boolean };

export interface NewPreauthKey {
  description?: string;
  reusable?: boolean;
  tags?: string[];
  hub?: boolean;
  expires_minutes?: number;
  node_ttl_days?: number;
}

export interface Enrollment {
  key: string;
  name: string;
  public_key: string;
  endpoint?: string | null;
  /** The port it listens on; absent or null: its endpoint's, else the network's. */
  listen_port?: number | null;
  tags?: string[];
  /** Subnet routes it offers: pending until an operator approves them. */
  advertise_routes?: string[];
}

export interface NodeChanges {
  tags?: string[];
  disabled?: boolean;
  hub?: boolean;
  endpoint?: string | null;
  /** null: its endpoint's port again, else the network's. */
  listen_port?: number | null;
  /** An RFC 3339 date-time with its offset, or null for never. */
  expires_at?: string | null;
  /** True: the node's key rotation, if any, is called off (peers drop the next key). */
  cancel_rotation?: boolean;
  /** The subnet routes approved for it, replacing those that were; in effect while it advertises them. */
  approved_routes?: string[];
  /** True: its agent masquerades what it forwards from the mesh to the routes it serves (the LAN needs no route back). */
  masquerade_routes?: boolean;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A node's rotation columns when it is not rotating. */
const NO_ROTATION = { next_public_key: null, rotation_version: null, rotation_started_at: null } satisfies Partial<sql.NodeRow>;
/**
 * How long after a rotation's `switch` may come (rotation_wait_minutes) it is given up: a node
 * that started one and went away would otherwise keep every peer holding its next key — and
 * their agents polling every second — for ever.
 */
export const ROTATION_GIVE_UP_MS = 24 * 60 * 60_000;
const PSK_OWNER = "mesh/psk";
const pskContext = (networkId: string) => `mesh/psk/${networkId}`;
const DEFAULT_KEY_MINUTES = 60;
const MAX_KEY_MINUTES = 90 * 24 * 60;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The tag or name rules: DNS labels, so they can name things in DNS and in ACLs alike. */
export function checkLabel(text: unknown, field: string): string {
  if (typeof text !== "string" || !LABEL.test(text)) throw new InvalidError(`${field}: ${JSON.stringify(text)} is not a name (lower-case letters, digits and dashes, 1–63, no dash at either end)`, field);
  return text;
}

function checkTags(tags: unknown, field: string): string[] {
  if (!Array.isArray(tags) || tags.length > 64) throw new InvalidError(`${field}: a list of at most 64 tags`, field);
  return [...new Set(tags.map((t, i) => checkLabel(t, `${field}[${i}]`)))].sort();
}

/**
 * "host:port": an IPv4 address or a DNS name, or an IPv6 address in brackets
 * ("[2001:db8::1]:51820") — exactly what `wg` and the agent's parser accept; null clears it.
 */
export function checkEndpoint(text: string | null | undefined): string | null {
  if (text === null || text === undefined || text === "") return null;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]{1,253})):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : 0;
  const bracketed = match?.[1];
  const plain = match?.[2];
  const ip = parseIp(bracketed ?? plain ?? "");
  const name = plain !== undefined && ip === null && /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(plain) && !/^[0-9.]+$/.test(plain);
  const hostOk = bracketed !== undefined ? ip?.family === 6 : ip?.family === 4 || name;
  if (!match || !hostOk || port < 1 || port > 65_535) throw new InvalidError(`endpoint: ${JSON.stringify(text)} is not host:port (IPv6 in brackets: [2001:db8::1]:51820)`, "endpoint");
  // Every peer sends handshakes and keepalives to a node's endpoint: one pointing at the peers'
  // own loopback, link-local or unspecified addresses would turn them on themselves. So would
  // names a resolver turns into such addresses: localhost, and numbers written as names
  // ("0x7f000001", "0x7f.1"), which getaddrinfo reads as IPv4 addresses.
  const localName = name && (/(^|\.)localhost\.?$|^ip6-(localhost|loopback)$/i.test(plain!) || plain!.split(".").every((label) => /^(0x[0-9a-f]*|[0-9]+)$/i.test(label)));
  if (localName || (ip && isUnreachableEndpoint(ip))) {
    throw new InvalidError(`endpoint: ${JSON.stringify(text)} is a loopback, link-local, multicast, broadcast or unspecified address, which a peer cannot reach this node at`, "endpoint");
  }
  return text;
}

/**
 * An endpoint inside the network's own pools would be reached through the very tunnel it is to
 * set up: peers would send the node's handshakes into the mesh, and none would arrive. (A name
 * resolving there is only known on the nodes.)
 */
function checkEndpointOutside(net: sql.NetworkRow, endpoint: string | null): string | null {
  if (endpoint === null) return null;
  const ip = parseIp(endpoint.slice(0, endpoint.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1"));
  const pools = [parseCidr(net.ipv4), parseCidr(net.ipv6)].filter((pool) => pool !== null);
  if (ip && pools.some((pool) => cidrContains(pool, ip))) {
    throw new InvalidError(`endpoint: ${JSON.stringify(endpoint)} is inside the network's own addresses (${net.ipv4}, ${net.ipv6}): peers would send this node's handshakes into the tunnel they are to set up`, "endpoint");
  }
  return endpoint;
}

/**
 * What an operator changed on a node, for its audit event: tags, hub and disabled as before →
 * after (what the ACL grants on, who relays, who is in the mesh), the other fields by name.
 */
function nodeChangeReason(before: sql.NodeRow, after: sql.NodeRow, changes: NodeChanges): string {
  const tags = (row: sql.NodeRow) => (JSON.parse(row.tags) as string[]).join(",") || "none";
  const shown: Record<string, (row: sql.NodeRow) => string> = {
    tags,
    hub: (row) => String(row.hub === 1),
    disabled: (row) => String(row.disabled === 1),
    masquerade_routes: (row) => String(row.masquerade_routes === 1),
  };
  const fields = Object.keys(changes)
    // Approvals are their own event (mesh.node.routes, routeApprovalReason).
    .filter((field) => field !== "cancel_rotation" && field !== "approved_routes")
    .sort()
    .map((field) => (shown[field] ? `${field} ${shown[field](before)} → ${shown[field](after)}` : field));
  // Asked for, or with a disable: said only when there was one to call off.
  if (before.next_public_key !== null && after.next_public_key === null) fields.push("key rotation cancelled");
  return fields.join(", ");
}

/** The network's own pools, which no subnet route may overlap. */
const poolsOf = (net: sql.NetworkRow) => [net.ipv4, net.ipv6];

/**
 * The routes an operator approves, checked (routes.ts): outside the node's network's pools and
 * those of the organization's other networks, whose addresses a route would take from their
 * nodes. Read in the transaction that writes the approval: a network created meanwhile (which
 * keeps clear of the approved routes it sees, organizationRoutes) is then either seen here or
 * saw these.
 */
function checkApprovedRoutes(tx: Database, net: sql.NetworkRow, list: unknown, field: string): { routes: string[]; exit: boolean } {
  const others = sql.networks(tx, net.organization_id).filter((other) => other.id !== net.id);
  const { routes, exit } = splitExitRoutes(list, field);
  return { routes: checkRoutes(routes, field, poolsOf(net), others.flatMap((other) => poolsOf(other).map((pool) => ({ network: other.name, pool })))), exit };
}

/**
 * The routes a node advertises (at enrollment, or with its token), checked for what no approval
 * could make right: outside its own network's pools, and no special range. One overlapping
 * another network's pool is only pending: the approval refuses it (checkApprovedRoutes). Checked
 * against the other networks here, the node's unchanged advertisement would fail once a network
 * is created over a pending route, which new networks do not keep clear of.
 */
function checkAdvertisedRoutes(net: sql.NetworkRow, list: unknown, field: string): { routes: string[]; exit: boolean } {
  const { routes, exit } = splitExitRoutes(list, field);
  return { routes: checkRoutes(routes, field, poolsOf(net)), exit };
}

const routeList = (json: string) => JSON.parse(json) as string[];

/** What the node offers, as shown: its subnet routes, then 0.0.0.0/0 and ::/0 when it offers to be an exit node. */
const offeredRoutes = (row: sql.NodeRow) => withExitRoutes(routeList(row.advertised_routes), row.exit_advertised === 1);

/** What an operator approved for the node, as shown: its subnet routes, then the exit routes. */
const approvedRoutes = (row: sql.NodeRow) => withExitRoutes(routeList(row.approved_routes), row.exit_approved === 1);

/** An exit node: it offers the default routes and an operator approved them. */
const isExitNode = (row: sql.NodeRow) => row.exit_advertised === 1 && row.exit_approved === 1;

/**
 * 409 for a node made active again (enabled, its expiry moved) with an approved route that
 * overlaps another network's pool: new networks keep clear only of active nodes' routes
 * (organizationRoutes), so one may have been created over it meanwhile.
 */
function refuseApprovedRoutesOverPools(tx: Database, net: sql.NetworkRow, node: sql.NodeRow): void {
  const others = sql.networks(tx, net.organization_id).filter((other) => other.id !== net.id);
  for (const route of routeList(node.approved_routes)) {
    const other = others.find((n) => poolsOf(n).some((pool) => overlaps(pool, route)));
    if (other) {
      throw new ConflictError(
        `The node ${node.name}'s approved route ${route} overlaps the network ${other.name} (${poolsOf(other).join(", ")}), created while the node was not active: revoke that approval (approved_routes, in this request or before) to make the node active.`,
      );
    }
  }
}

/** What an operator's approval changed, for its event: approved and revoked routes, then what is in effect. */
function routeApprovalReason(before: sql.NodeRow, after: sql.NodeRow): string {
  const [was, is] = [approvedRoutes(before), approvedRoutes(after)];
  const approved = is.filter((route) => !was.includes(route));
  const revoked = was.filter((route) => !is.includes(route));
  const parts = [...(approved.length > 0 ? [`approved ${approved.join(",")}`] : []), ...(revoked.length > 0 ? [`revoked ${revoked.join(",")}`] : [])];
  return `${parts.join("; ")}; in effect: ${routesInEffect(offeredRoutes(after), is).join(",") || "none"}`;
}

/** A node's own listen port: 1–65535, or null for none (its endpoint's port, else the network's). */
function checkListenPort(value: number | null | undefined): number | null {
  return value === null || value === undefined ? null : checkInteger(value, 0, 1, 65_535, "listen_port");
}

function checkInteger(value: number | undefined, fallback: number, min: number, max: number, field: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidError(`${field}: an integer from ${min} to ${max}`, field);
  return n;
}

function checkDns(list: unknown): string[] {
  if (!Array.isArray(list) || list.length > 4) throw new InvalidError("dns: at most 4 resolver addresses", "dns");
  return list.map((a, i) => {
    if (typeof a !== "string" || parseIp(a) === null) throw new InvalidError(`dns[${i}]: ${JSON.stringify(a)} is not an IP address`, `dns[${i}]`);
    return a;
  });
}

/** Whether a node takes part in configs now: enabled and not expired. */
export function isActive(row: sql.NodeRow, now: number): boolean {
  return row.disabled === 0 && (row.expires_at === null || row.expires_at > now);
}

/** True when the node's expiry was acted on (expireNodes; its query asks the same): its removal has a version. */
export function expiryNoted(row: sql.NodeRow): boolean {
  return row.expires_at !== null && row.expiry_noted_at != null && row.expiry_noted_at >= row.expires_at;
}

export class MeshService {
  private readonly listeners = new Set<(networkId: string) => void>();
  /** When each node's agent was last heard from (its polls): subnet routers fail over on it. */
  readonly liveness: NodeLiveness;

  constructor(private readonly k: MeshKernel) {
    this.liveness = new NodeLiveness(k.clock);
  }

  private readonly appliedListeners = new Set<(networkId: string) => void>();

  /** Calls `listener` when a node of the network reported an applied version (rotations may now be ready). */
  onApplied(listener: (networkId: string) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /** Calls `listener` after every committed change of a network or its nodes (DNS names, config cache). */
  onChange(listener: (networkId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Nodes by token prefix, for the agents' polls (the hot path: thousands of nodes every 30 s).
   * Emptied after every write, so a disabled or removed node is refused at its next request.
   */
  private readonly nodesByToken = new Map<string, sql.NodeRow>();
  private readonly organizationOfNetwork = new Map<string, string>();

  /** The organization a network belongs to (cached: a network never moves). */
  organizationOf(networkId: string): string {
    let org = this.organizationOfNetwork.get(networkId);
    if (org === undefined) {
      org = sql.networkById(this.k.store.db, networkId)?.organization_id ?? "";
      if (this.organizationOfNetwork.size > 10_000) this.organizationOfNetwork.clear();
      this.organizationOfNetwork.set(networkId, org);
    }
    return org;
  }

  /**
   * Networks were removed by a writer other than this service (a subject's erasure, iam
   * deleting the organization; inside its own transaction): the caches go and the listeners (DNS names, config documents) hear of it
   * once that transaction has had its turn to commit. Should it have rolled back, they reload
   * what is still there, which does no harm.
   */
  removedElsewhere(networkIds: readonly string[]): void {
    setImmediate(() => {
      this.nodesByToken.clear();
      for (const id of networkIds) for (const listener of this.listeners) listener(id);
    });
  }

  private async write<T>(networkId: string | null, fn: (tx: Database) => T): Promise<T> {
    const result = await this.k.store.write(fn);
    this.nodesByToken.clear();
    if (networkId !== null) for (const listener of this.listeners) listener(networkId);
    return result;
  }

  private now(): number {
    return this.k.clock.now();
  }

  // --- networks ----------------------------------------------------------------------------

  list(org: string) {
    const db = this.k.store.db;
    return { items: sql.networks(db, org).map((n) => this.networkView(n)) };
  }

  show(org: string, idOrName: string) {
    return this.networkView(this.networkRow(org, idOrName));
  }

  networkRow(org: string, idOrName: string): sql.NetworkRow {
    const row = sql.network(this.k.store.db, org, idOrName);
    if (!row) throw new NotFoundError(`No mesh network ${idOrName} in this organization.`);
    return row;
  }

  async create(caller: Caller, org: string, input: NewNetwork) {
    const name = checkLabel(input.name, "name");
    // Without ipv4, a placeholder that passes the checks: the pool is chosen in the transaction,
    // else creations at once would all pick the same free pool and all but one be refused.
    let ipv4 = input.ipv4 ?? DEFAULT_POOL;
    let ipv6 = input.ipv6 ?? randomUlaPrefix();
    try {
      ({ ipv4, ipv6 } = validateNetworkPrefixes(ipv4, ipv6));
    } catch (e) {
      throw new InvalidError(e instanceof Error ? e.message : String(e), /ipv6/i.test(String(e)) ? "ipv6" : "ipv4");
    }
    const interfaceName = input.interface_name ?? defaultInterfaceName(name);
    if (!isInterfaceName(interfaceName)) throw new InvalidError(`interface_name: ${INTERFACE_NAME_RULE}`, "interface_name");
    const now = this.now();
    const id = newId("net");
    const row: sql.NetworkRow = {
      id,
      organization_id: org,
      name,
      ipv4,
      ipv6,
      listen_port: checkInteger(input.listen_port, 51_820, 1, 65_535, "listen_port"),
      mtu: checkInteger(input.mtu, 1420, 1280, 9000, "mtu"),
      keepalive: checkInteger(input.keepalive, 25, 0, 3600, "keepalive"),
      topology: input.topology ?? "mesh",
      dns: JSON.stringify(checkDns(input.dns ?? [])),
      interface_name: interfaceName,
      psk_seed: null,
      version: 1,
      acl_version: 0,
      created_at: now,
      updated_at: now,
    };
    if (row.topology !== "mesh" && row.topology !== "hub") throw new InvalidError('topology: "mesh" or "hub"', "topology");
    await this.write(id, (tx) => {
      this.requireLiveOrganization(tx, org);
      if (tx.query("SELECT 1 FROM mesh_networks WHERE name = ?").get(name)) throw new ConflictError(`A mesh network named ${name} exists already (names are unique across Citadel: they name DNS domains).`);
      // In the transaction: two creations at once cannot both take the same pool, nor one a
      // pool overlapping a route approved meanwhile.
      const networks = sql.networks(tx, org);
      const routes = organizationRoutes(tx, networks, now);
      if (input.ipv4 === undefined) row.ipv4 = ipv4 = freePool(sql.allNetworks(tx), org, routes);
      if (input.ipv6 === undefined) row.ipv6 = ipv6 = freeUlaPrefix(ipv6, networks, routes);
      refuseOverlap(networks, ipv4, ipv6);
      refusePoolOverRoute(routes, ipv4, "ipv4");
      refusePoolOverRoute(routes, ipv6, "ipv6");
      refuseInterfaceInUse(tx, org, row);
      if (input.preshared_keys) row.psk_seed = this.k.seal.keyring().encrypt(tx, PSK_OWNER, pskContext(id), randomBytes(32));
      sql.insertNetwork(tx, row);
      this.k.audit.record(tx, event(caller, org, "mesh.network.create", { type: "mesh_network", id }, `${name} ${ipv4} ${ipv6} ${row.topology}`));
    });
    return this.networkView(row);
  }

  async update(caller: Caller, org: string, idOrName: string, changes: NetworkChanges) {
    const { id } = this.networkRow(org, idOrName);
    const what = Object.keys(changes).sort().join(", ");
    const next = await this.write(id, (tx) => {
      // From the row as it is now, in the transaction that writes: two edits at once must not
      // undo each other (a PATCH of the MTU restoring a preshared-key seed the other replaced).
      this.requireLiveOrganization(tx, org);
      const current = networkStill(tx, id, idOrName);
      const next = this.changedNetwork(current, changes);
      refuseInterfaceRename(tx, current, next);
      if (next.interface_name !== current.interface_name) refuseInterfaceInUse(tx, org, next);
      const keepsNoPresharedKeys = changes.preshared_keys === false || (changes.preshared_keys === undefined && current.psk_seed === null);
      // Found in review: a rotation asked of a network without preshared keys answered 200 and did nothing.
      if (changes.rotate_preshared_keys && keepsNoPresharedKeys) throw new ConflictError(`rotate_preshared_keys: the network ${current.name} has no preshared keys (preshared_keys: true gives it some).`);
      if (changes.preshared_keys === false) next.psk_seed = null;
      else if ((changes.preshared_keys === true && current.psk_seed === null) || (changes.rotate_preshared_keys && (current.psk_seed !== null || changes.preshared_keys)))
        next.psk_seed = this.k.seal.keyring().encrypt(tx, PSK_OWNER, pskContext(current.id), randomBytes(32));
      // Nothing different: no new version for every node to fetch and apply, no event.
      if (NETWORK_SETTINGS.every((field) => next[field] === current[field])) return current;
      sql.updateNetwork(tx, next);
      this.k.audit.record(tx, event(caller, org, "mesh.network.update", { type: "mesh_network", id: current.id }, what || null));
      // Made a hub network: its spokes' routes go to hubs offering them (or are no longer served).
      this.settleRoutes(tx, next, next.updated_at, operatorMover(caller));
      next.version = sql.bumpVersion(tx, current.id, next.updated_at);
      return next;
    });
    return this.networkView(next);
  }

  private changedNetwork(current: sql.NetworkRow, changes: NetworkChanges): sql.NetworkRow {
    const next: sql.NetworkRow = {
      ...current,
      listen_port: checkInteger(changes.listen_port, current.listen_port, 1, 65_535, "listen_port"),
      mtu: checkInteger(changes.mtu, current.mtu, 1280, 9000, "mtu"),
      keepalive: checkInteger(changes.keepalive, current.keepalive, 0, 3600, "keepalive"),
      topology: changes.topology ?? current.topology,
      dns: changes.dns === undefined ? current.dns : JSON.stringify(checkDns(changes.dns)),
      interface_name: changes.interface_name ?? current.interface_name,
      updated_at: this.now(),
    };
    if (next.topology !== "mesh" && next.topology !== "hub") throw new InvalidError('topology: "mesh" or "hub"', "topology");
    // Only a name being set is checked: one stored under an older, looser rule must not block
    // every other change (the config route says how to fix it).
    if (changes.interface_name !== undefined && !isInterfaceName(next.interface_name)) throw new InvalidError(`interface_name: ${INTERFACE_NAME_RULE}`, "interface_name");
    return next;
  }

  async delete(caller: Caller, org: string, idOrName: string) {
    const current = this.networkRow(org, idOrName);
    await this.write(current.id, (tx) => {
      // Two deletions at once: the second finds nothing, and is not audited as one.
      if (!sql.deleteNetwork(tx, current.id)) throw new NotFoundError(`No mesh network ${idOrName} in this organization.`);
      this.k.audit.record(tx, event(caller, org, "mesh.network.delete", { type: "mesh_network", id: current.id }, current.name));
    });
  }

  /** The 32-byte seed the network's preshared keys derive from, or null when it has none. */
  pskSeed(row: sql.NetworkRow): Buffer | null {
    return row.psk_seed === null ? null : this.k.seal.keyring().decrypt(PSK_OWNER, pskContext(row.id), row.psk_seed);
  }

  networkView(n: sql.NetworkRow) {
    const nodes = this.k.store.db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM mesh_nodes WHERE network_id = ?").get(n.id)?.n ?? 0;
    return {
      id: n.id,
      organization: n.organization_id,
      name: n.name,
      ipv4: n.ipv4,
      ipv6: n.ipv6,
      listen_port: n.listen_port,
      mtu: n.mtu,
      keepalive: n.keepalive,
      topology: n.topology,
      dns: JSON.parse(n.dns) as string[],
      interface_name: n.interface_name,
      preshared_keys: n.psk_seed !== null,
      domain: this.domainOf(n),
      version: n.version,
      acl_version: n.acl_version,
      nodes,
      created_at: iso(n.created_at)!,
      updated_at: iso(n.updated_at)!,
    };
  }

  /** "<network>.<[mesh] domain>" without the final dot, or null when names are off. */
  domainOf(n: { name: string }): string | null {
    const domain = this.k.settings.domain.replace(/\.$/, "");
    return domain === "" ? null : `${n.name}.${domain}`;
  }

  // --- pre-auth keys -----------------------------------------------------------------------

  keys(org: string, network: string) {
    const net = this.networkRow(org, network);
    return { items: sql.preauthKeys(this.k.store.db, net.id).map((key) => this.keyView(key, net.organization_id)) };
  }

  async createKey(caller: Caller, org: string, network: string, input: NewPreauthKey) {
    // As in identity, short-lived tokens make nothing that outlives them: an hour-long workload
    // token must not mint a reusable key that enrolls nodes for 90 days.
    const kind = caller.principal.kind;
    if (kind === "workload" || kind === "console") throw new ForbiddenError("a workload or console token cannot make pre-auth keys");
    const net = this.networkRow(org, network);
    const minutes = checkInteger(input.expires_minutes, DEFAULT_KEY_MINUTES, 1, MAX_KEY_MINUTES, "expires_minutes");
    const ttlDays = input.node_ttl_days === undefined ? null : checkInteger(input.node_ttl_days, 0, 1, 3650, "node_ttl_days");
    const tags = checkTags(input.tags ?? [], "tags");
    const token = generateToken("meshkey");
    const now = this.now();
    const row: sql.PreauthKeyRow = {
      id: newId("mpk"),
      network_id: net.id,
      prefix: token.prefix,
      hash: token.hash,
      description: input.description?.slice(0, 200) ?? null,
      reusable: input.reusable ? 1 : 0,
      tags: JSON.stringify(tags),
      hub: input.hub ? 1 : 0,
      node_ttl: ttlDays === null ? null : ttlDays * 86_400,
      expires_at: now + minutes * 60_000,
      used: 0,
      revoked_at: null,
      // The member the key acts for (an API key's maker, for a key an API key makes): it enrolls
      // only while they may make keys (makerRefusal).
      created_by: roleHolder(caller.principal),
      created_at: now,
    };
    await this.write(null, (tx) => {
      this.requireLiveOrganization(tx, org);
      networkStill(tx, net.id, network);
      sql.insertPreauthKey(tx, row);
      this.k.audit.record(tx, event(caller, org, "mesh.key.create", { type: "mesh_preauth_key", id: row.id }, `${row.reusable ? "reusable" : "single-use"}, tags ${tags.join(",") || "none"}, ${minutes} min`));
    });
    return { ...this.keyView(row, net.organization_id), key: token.token };
  }

  async revokeKey(caller: Caller, org: string, network: string, idOrPrefix: string) {
    const net = this.networkRow(org, network);
    await this.write(null, (tx) => {
      const key = sql.preauthKeys(tx, net.id).find((k) => k.id === idOrPrefix || k.prefix === idOrPrefix);
      if (!key || !sql.revokePreauthKey(tx, net.id, key.id, this.now())) throw new NotFoundError(`No unrevoked pre-auth key ${idOrPrefix} in ${net.name}.`);
      this.k.audit.record(tx, event(caller, org, "mesh.key.revoke", { type: "mesh_preauth_key", id: key.id }, key.prefix));
    });
  }

  private keyView(key: sql.PreauthKeyRow, organizationId: string) {
    return {
      id: key.id,
      prefix: key.prefix,
      description: key.description,
      reusable: key.reusable === 1,
      tags: JSON.parse(key.tags) as string[],
      hub: key.hub === 1,
      node_ttl_days: key.node_ttl === null ? null : key.node_ttl / 86_400,
      expires_at: iso(key.expires_at)!,
      used: key.used,
      state: this.keyState(key, organizationId),
      created_at: iso(key.created_at)!,
    };
  }

  /** What enrollment would say of the key, in the order it asks (keyRefusal, then makerRefusal). */
  private keyState(key: sql.PreauthKeyRow, organizationId: string): "revoked" | "expired" | "used" | "maker_gone" | "usable" {
    if (key.revoked_at !== null) return "revoked";
    if (key.expires_at <= this.now()) return "expired";
    if (!key.reusable && key.used > 0) return "used";
    // Found in review: a key whose maker left listed as usable, and enrolled nothing.
    if (this.makerRefusal(key, organizationId)) return "maker_gone";
    return "usable";
  }

  // --- nodes -------------------------------------------------------------------------------

  nodes(org: string, network: string) {
    const net = this.networkRow(org, network);
    const [roles, exits] = [this.routeRoles(net), this.exitRoles(net)];
    return { items: sql.nodes(this.k.store.db, net.id).map((n) => this.nodeView(net, n, roles, exits)) };
  }

  /**
   * The network's exit nodes in effect (`serving`: approved, active, a hub in a hub network),
   * the nodes whose choice of one is usable now (`using`: as the planner has it, plan.ts), and
   * every node's name by id.
   */
  exitRoles(net: sql.NetworkRow): { serving: Set<string>; using: Set<string>; names: Map<string, string> } {
    const now = this.now();
    const rows = sql.nodes(this.k.store.db, net.id);
    const serving = new Set(rows.filter((n) => isActive(n, now) && isExitNode(n) && (net.topology !== "hub" || n.hub === 1)).map((n) => n.id));
    const policy = this.policyOf(net);
    const using = new Set(
      rows
        .filter((n) => isActive(n, now) && n.exit_node_id !== null && n.exit_node_id !== n.id && !serving.has(n.id) && serving.has(n.exit_node_id))
        .filter((n) => mayReachInternet(policy, { name: n.name, tags: JSON.parse(n.tags) as string[] }))
        .map((n) => n.id),
    );
    return { serving, using, names: new Map(rows.map((n) => [n.id, n.name])) };
  }

  /**
   * Per node id, the subnet routes it serves (`primary`) and those in effect that another node
   * offering them serves (`standby`): as the planner serves them (plan.ts), by the stored
   * routers (electPrimaries), a route without one by the candidate enrolled first.
   */
  routeRoles(net: sql.NetworkRow): Map<string, { primary: string[]; standby: string[] }> {
    const db = this.k.store.db;
    const candidates = this.routeCandidates(net, sql.nodes(db, net.id), this.now());
    const served = primaryRoutes(candidates, sql.routePrimaries(db, net.id));
    return new Map(candidates.map((c, i) => [c.id, { primary: served[i]!, standby: c.routes.filter((route) => !served[i]!.includes(route)) }]));
  }

  /**
   * The nodes that may serve routes — active; hubs only, in a hub network (spokes peer with hubs
   * alone) — longest enrolled first (then by name, as the relay hub is picked), each with its
   * routes in effect and whether its agent is heard from.
   */
  private routeCandidates(net: sql.NetworkRow, rows: readonly sql.NodeRow[], now: number): RouteCandidate[] {
    const window = this.k.settings.router_offline_after_seconds * 1000;
    return rows
      .filter((n) => isActive(n, now) && (net.topology !== "hub" || n.hub === 1))
      .sort((a, b) => a.created_at - b.created_at || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((n) => ({ id: n.id, routes: routesInEffect(routeList(n.advertised_routes), routeList(n.approved_routes)), online: this.liveness.online(n.id, window) }));
  }

  /**
   * Who serves the network's subnet routes, settled inside a write (electPrimaries): the one that
   * may have moved them — a node disabled, expired, removed, made a spoke, a route withdrawn or
   * its approval revoked — or the periodic check, for a router gone quiet. Each route that goes
   * from one router to another is audited (mesh.route.failover) as the change's `mover`; node
   * names are the organization's personal data (`removed`: the nodes this write removed, whose
   * names the rows no longer give). Returns whether the stored routers changed: the configs
   * change with them, so the write makes a new version (the caller's own change has one).
   */
  settleRoutes(tx: Database, net: sql.NetworkRow, now: number, mover: RouteMover, removed: readonly sql.NodeRow[] = []): boolean {
    const rows = sql.nodes(tx, net.id);
    const { changes } = electPrimaries(this.routeCandidates(net, rows, now), sql.routePrimaries(tx, net.id));
    if (changes.length === 0) return false;
    const byId = new Map([...removed, ...rows].map((row) => [row.id, row]));
    for (const change of changes) {
      sql.setRoutePrimary(tx, net.id, change.route, change.to);
      // First served, or served no more: the change that did it (an approval, a withdrawal) says so.
      if (change.from === null || change.to === null) continue;
      const [from, to] = [byId.get(change.from), byId.get(change.to)!];
      const why = change.why === "offline" ? this.offlineReason(change.from) : goneReason(net, removed.some((row) => row.id === change.from) ? undefined : from, change.route, now);
      this.k.audit.record(tx, {
        action: "mesh.route.failover",
        outcome: "success",
        reason: `${change.route}: ${change.from} → ${change.to} (${why})`,
        actor: mover.actor,
        organization: net.organization_id,
        resource: { type: "mesh_node", id: change.to },
        // The routers' names, as at enrollment: under the organization's key, erasable.
        subject: net.organization_id,
        personal: { ...(from ? { from: from.name } : {}), to: to.name },
        request: mover.request,
      });
    }
    return true;
  }

  private offlineReason(nodeId: string): string {
    const quiet = Math.round(this.liveness.quietFor(nodeId) / 1000);
    return `offline: its agent not heard from for ${quiet} s, [mesh] router_offline_after_seconds is ${this.k.settings.router_offline_after_seconds}`;
  }

  /**
   * The periodic check of the subnet routers: writes when nodes were last heard from (at most
   * once a minute each), then, in every network with routes, moves each route whose router went
   * offline to an online node offering it (settleRoutes), with a new version. Nothing while
   * sealed: no agent is heard from then (liveness restarts its window at the unseal). Returns
   * how many networks' routes moved.
   */
  async checkRouters(): Promise<number> {
    if (this.k.seal.sealed) return 0;
    await this.writeLastSeen();
    const db = this.k.store.db;
    let moved = 0;
    for (const id of sql.networksWithRoutes(db)) {
      const net = sql.networkById(db, id);
      if (!net || !this.organizationLive(net.organization_id)) continue;
      // Read first: most checks move nothing, and a write would queue behind every other.
      if (electPrimaries(this.routeCandidates(net, sql.nodes(db, id), this.now()), sql.routePrimaries(db, id)).changes.length === 0) continue;
      moved += await this.write(id, (tx) => {
        const fresh = sql.networkById(tx, id);
        const now = this.now();
        if (!fresh || !this.settleRoutes(tx, fresh, now, SYSTEM_MOVER)) return 0;
        sql.bumpVersion(tx, id, now);
        return 1;
      });
    }
    return moved;
  }

  /** last_seen_at of the nodes heard from since it was last written, by a minute or more (see NodeLiveness). */
  private async writeLastSeen(): Promise<void> {
    let stored: Map<string, number | null> | null = null;
    const due = this.liveness.due((id) => (stored ??= sql.lastSeen(this.k.store.db)).get(id) ?? null);
    if (due.length === 0) return;
    await this.k.store.write((tx) => {
      for (const { id, at } of due) if (!sql.recordSeen(tx, id, at)) this.liveness.forget(id);
    });
  }

  showNode(org: string, network: string, idOrName: string) {
    const net = this.networkRow(org, network);
    return this.nodeView(net, this.nodeRow(net, idOrName));
  }

  nodeRow(net: sql.NetworkRow, idOrName: string): sql.NodeRow {
    const row = sql.node(this.k.store.db, net.id, idOrName);
    if (!row) throw new NotFoundError(`No node ${idOrName} in the mesh network ${net.name}.`);
    return row;
  }

  async updateNode(caller: Caller, org: string, network: string, idOrName: string, changes: NodeChanges) {
    const net = this.networkRow(org, network);
    const current = this.nodeRow(net, idOrName);
    let expires = current.expires_at;
    if (changes.expires_at !== undefined) {
      expires = changes.expires_at === null ? null : parseDateTime(changes.expires_at);
      if (changes.expires_at !== null && expires === null) throw new InvalidError(`expires_at: ${JSON.stringify(changes.expires_at)} is not an RFC 3339 date-time with its offset (2026-12-31T00:00:00Z), nor null for never`, "expires_at");
    }
    // Only the fields asked for, checked before the transaction; everything else as it is then.
    const asked: Partial<sql.NodeRow> = {};
    if (changes.tags !== undefined) asked.tags = JSON.stringify(checkTags(changes.tags, "tags"));
    if (changes.disabled !== undefined) asked.disabled = changes.disabled ? 1 : 0;
    // A disabled node's rotation ends with it: enabled again, it is not for ever half-rotated
    // (its agent drops the unannounced key; it may rotate again).
    if (changes.cancel_rotation === true || changes.disabled === true) Object.assign(asked, NO_ROTATION);
    if (changes.hub !== undefined) asked.hub = changes.hub ? 1 : 0;
    if (changes.endpoint !== undefined) asked.endpoint = checkEndpointOutside(net, checkEndpoint(changes.endpoint));
    if (changes.listen_port !== undefined) asked.listen_port = checkListenPort(changes.listen_port);
    if (changes.expires_at !== undefined) asked.expires_at = expires;
    if (changes.masquerade_routes !== undefined) asked.masquerade_routes = changes.masquerade_routes ? 1 : 0;
    const updatedAt = this.now();
    const written = await this.write(net.id, (tx) => {
      // On the row as it is now: another change made meanwhile (a disable, a rotation the node
      // made) stands, instead of being overwritten by what this request read before.
      this.requireLiveOrganization(tx, org);
      if (changes.approved_routes !== undefined) {
        const { routes, exit } = checkApprovedRoutes(tx, net, changes.approved_routes, "approved_routes");
        Object.assign(asked, { approved_routes: JSON.stringify(routes), exit_approved: exit ? 1 : 0 });
      }
      const fresh = sql.nodeById(tx, current.id);
      if (!fresh) throw new NotFoundError(`No node ${idOrName} in the mesh network ${net.name}.`);
      // Nothing different (a tag list as it was, a node enabled already): no new version.
      if (Object.entries(asked).every(([field, value]) => fresh[field as keyof sql.NodeRow] === value)) return fresh;
      const row: sql.NodeRow = { ...fresh, ...asked, updated_at: updatedAt };
      if (isActive(row, updatedAt) && !isActive(fresh, updatedAt)) refuseApprovedRoutesOverPools(tx, net, row);
      sql.updateNode(tx, row);
      sql.bumpVersion(tx, net.id, updatedAt);
      const reason = nodeChangeReason(fresh, row, changes);
      if (reason !== "") this.k.audit.record(tx, event(caller, org, "mesh.node.update", { type: "mesh_node", id: current.id }, reason));
      if (row.approved_routes !== fresh.approved_routes || row.exit_approved !== fresh.exit_approved) {
        this.k.audit.record(tx, event(caller, org, "mesh.node.routes", { type: "mesh_node", id: current.id }, routeApprovalReason(fresh, row)));
      }
      // A disable, an expiry, a demotion or a revoked approval hands the node's routes over; an approval may make it serve one.
      this.settleRoutes(tx, sql.networkById(tx, net.id) ?? net, updatedAt, operatorMover(caller));
      return row;
    });
    return this.nodeView(net, written);
  }

  /** Removes the node: its addresses are free again and it leaves every peer's config. */
  async deleteNode(caller: Caller, org: string, network: string, idOrName: string) {
    const net = this.networkRow(org, network);
    const current = this.nodeRow(net, idOrName);
    await this.write(net.id, (tx) => {
      // Otherwise a node enrolled later under the same name would inherit the rules.
      const policy = this.policyOf(networkStill(tx, net.id, network));
      if (policy !== null && aclNodeNames(policy).includes(current.name)) throw new ConflictError(`The ACL names node:${current.name}: change the ACL first, then remove the node.`);
      // Two removals at once: the second finds nothing, and is neither a new version nor audited.
      if (!sql.deleteNode(tx, current.id)) throw new NotFoundError(`No node ${idOrName} in the mesh network ${net.name}.`);
      sql.bumpVersion(tx, net.id, this.now());
      this.k.audit.record(tx, { ...event(caller, org, "mesh.node.delete", { type: "mesh_node", id: current.id }, "removed"), personal: { node: current.name } });
      this.settleRoutes(tx, sql.networkById(tx, net.id) ?? net, this.now(), operatorMover(caller), [current]);
    });
    this.liveness.forget(current.id);
  }

  nodeView(net: sql.NetworkRow, n: sql.NodeRow, roles = this.routeRoles(net), exits = this.exitRoles(net)) {
    const now = this.now();
    const heard = this.liveness.lastHeard(n.id);
    const role = roles.get(n.id);
    const advertised = offeredRoutes(n);
    const approved = approvedRoutes(n);
    const { ipv4, ipv6 } = addressesOf(net.ipv4, net.ipv6, n.host);
    const domain = this.domainOf(net);
    return {
      id: n.id,
      network: net.name,
      name: n.name,
      fqdn: domain === null ? null : `${n.name}.${domain}`,
      tags: JSON.parse(n.tags) as string[],
      ipv4,
      ipv6,
      public_key: n.public_key,
      next_public_key: n.next_public_key,
      endpoint: n.endpoint,
      listen_port: n.listen_port,
      hub: n.hub === 1,
      advertised_routes: advertised,
      approved_routes: approved,
      pending_routes: pendingRoutes(advertised, approved),
      primary_routes: role?.primary ?? [],
      standby_routes: role?.standby ?? [],
      masquerade_routes: n.masquerade_routes === 1,
      exit_node: exits.serving.has(n.id),
      exit_via: n.exit_node_id === null ? null : (exits.names.get(n.exit_node_id) ?? n.exit_node_id),
      exit_via_usable: exits.using.has(n.id),
      exit_refused: n.exit_node_id === null ? null : (n.exit_refused ?? null),
      state: (n.disabled ? "disabled" : n.expires_at !== null && n.expires_at <= now ? "expired" : "active") as "disabled" | "expired" | "active",
      expires_at: iso(n.expires_at),
      applied_version: n.applied_version,
      last_seen_at: iso(heard !== null && (n.last_seen_at === null || heard > n.last_seen_at) ? heard : n.last_seen_at),
      online: this.liveness.online(n.id, this.k.settings.router_offline_after_seconds * 1000),
      created_at: iso(n.created_at)!,
    };
  }

  // --- ACL ---------------------------------------------------------------------------------

  /**
   * The policy in force, or null for none — never set, or removed — when every node reaches
   * every node. A policy is deny by default: one without rules lets nobody reach anybody
   * (found in review: removing the last rule to lock a mesh down opened it to everyone).
   */
  policyOf(net: sql.NetworkRow): AclPolicy | null {
    if (net.acl_version === 0) return null;
    return storedPolicy(sql.aclVersion(this.k.store.db, net.id, net.acl_version)!);
  }

  acl(org: string, network: string) {
    const net = this.networkRow(org, network);
    const row = net.acl_version === 0 ? null : sql.aclVersion(this.k.store.db, net.id, net.acl_version);
    return { network: net.name, version: net.acl_version, policy: this.policyOf(net), updated_at: iso(row?.created_at ?? null), updated_by: row?.created_by ?? null };
  }

  aclHistory(org: string, network: string) {
    const net = this.networkRow(org, network);
    return {
      items: sql.aclVersions(this.k.store.db, net.id).map((v) => ({ version: v.version, policy: storedPolicy(v), created_at: iso(v.created_at)!, created_by: v.created_by })),
    };
  }

  /** Replaces the policy (a new version); `expectedVersion` refuses a write over someone else's. */
  async setAcl(caller: Caller, org: string, network: string, input: unknown, expectedVersion?: number) {
    let policy: AclPolicy;
    try {
      policy = parseAclPolicy(input);
    } catch (e) {
      throw new InvalidError(`policy: ${e instanceof Error ? e.message : String(e)}`, "policy");
    }
    const deny = policy.rules.length === 0 ? " (deny all)" : "";
    return this.writeAcl(caller, org, network, policy, expectedVersion, "mesh.acl.update", `${policy.rules.length} rule(s)${deny}`);
  }

  /**
   * Removes the policy (a new version, with none): every node reaches every node again, as
   * before a policy was ever set. Nothing to remove: no new version, no event.
   */
  async deleteAcl(caller: Caller, org: string, network: string, expectedVersion?: number) {
    return this.writeAcl(caller, org, network, null, expectedVersion, "mesh.acl.delete", "no policy: every node reaches every node");
  }

  private async writeAcl(caller: Caller, org: string, network: string, policy: AclPolicy | null, expectedVersion: number | undefined, action: string, reason: string) {
    const net = this.networkRow(org, network);
    const by = caller.principal.userId ?? caller.principal.tokenId ?? null;
    const written = await this.write(net.id, (tx) => {
      this.requireLiveOrganization(tx, org);
      const current = networkStill(tx, net.id, network);
      if (expectedVersion !== undefined && expectedVersion !== current.acl_version)
        throw new PreconditionFailedError(`The ACL is at version ${current.acl_version}, not ${expectedVersion}: someone changed it; read it again.`);
      if (policy === null && this.policyOf(current) === null) return null;
      const known = new Set(sql.nodes(tx, net.id).map((n) => n.name));
      const unknown = policy === null ? [] : aclNodeNames(policy).filter((name) => !known.has(name));
      if (unknown.length > 0) throw new InvalidError(`policy: no node named ${unknown.join(", ")} in ${net.name}`, "policy");
      // The mesh's own addresses are its nodes': named by tag: or node:, never reached through a router.
      const pools = poolsOf(current).map((pool) => parseCidr(pool)).filter((pool) => pool !== null);
      const inside = policy === null ? undefined : aclPrefixes(policy).find((prefix) => pools.some((pool) => prefixesOverlap(pool, prefix)));
      if (inside) throw new InvalidError(`policy: ${formatCidr(inside)} overlaps the network's own addresses (${current.ipv4}, ${current.ipv6}): name nodes with tag: or node:; a prefix in dst is for addresses behind subnet routers`, "policy");
      const version = current.acl_version + 1;
      sql.insertAclVersion(tx, { network_id: net.id, version, policy: JSON.stringify(policy), created_by: by, created_at: this.now() });
      sql.bumpVersion(tx, net.id, this.now());
      this.k.audit.record(tx, event(caller, org, action, { type: "mesh_network", id: net.id }, `version ${version}, ${reason}`));
      return version;
    });
    if (written === null) return this.acl(org, network);
    return { network: net.name, version: written, policy, updated_at: iso(this.now()), updated_by: by };
  }

  // --- the node's side: enrollment and its own requests --------------------------------------

  /**
   * Enrolls a node with a pre-auth key. Every refusal is audited with its reason; a bad key
   * says little. The key's state is checked again inside the write, so a single-use key
   * enrolls one node even when many requests race with it.
   */
  async enroll(request: AuditRequestContext, input: Enrollment) {
    const parsed = typeof input.key === "string" ? parseToken(input.key) : null;
    const key = parsed?.kind === "meshkey" ? sql.preauthKeyByPrefix(this.k.store.db, parsed.prefix) : null;
    // A refusal for a known key is the organization's (as the enrollment would have been): the
    // name and endpoint sent go under its key, erasable, and the chained reason is a fixed text.
    const organization = key ? this.organizationOf(key.network_id) || null : null;
    const audited = async <T>(error: T, reason: string): Promise<never> => {
      await this.k.store.write((tx) =>
        this.k.audit.record(tx, {
          action: "mesh.node.enroll",
          outcome: "failure",
          reason,
          actor: { kind: "anonymous", token: parsed?.prefix ?? null },
          organization,
          ...(organization === null ? {} : { subject: organization, personal: sentPersonal(input) }),
          resource: key ? { type: "mesh_preauth_key", id: key.id } : null,
          request,
        }),
      );
      throw error;
    };
    if (!key || !tokenMatches(input.key, key.hash)) return audited(new UnauthorizedError("This pre-auth key is not valid."), "unknown pre-auth key");
    const unusable = keyRefusal(key, this.now());
    if (unusable) return audited(new UnauthorizedError(unusable.message), unusable.reason);
    const net = sql.networkById(this.k.store.db, key.network_id)!;
    if (!this.organizationLive(net.organization_id)) return audited(new UnauthorizedError("This pre-auth key is not valid."), "the organization was deleted");
    const makerGone = this.makerRefusal(key, net.organization_id);
    if (makerGone) return audited(new UnauthorizedError(makerGone.message), makerGone.reason);
    try {
      return await this.enrollWith(request, input, key, net);
    } catch (error) {
      if (error instanceof EnrollmentRefused) return audited(error.error, error.reason);
      return audited(error, refusalReason(error));
    }
  }

  private async enrollWith(request: AuditRequestContext, input: Enrollment, key: sql.PreauthKeyRow, net: sql.NetworkRow) {
    const now = this.now();
    const name = checkLabel(input.name, "name");
    if (!isWireGuardKey(input.public_key)) throw new InvalidError("public_key: a WireGuard public key (base64 of 32 bytes, as `wg pubkey` prints)", "public_key");
    const endpoint = checkEndpointOutside(net, checkEndpoint(input.endpoint));
    const listenPort = checkListenPort(input.listen_port);
    const allowed: string[] = JSON.parse(key.tags);
    const tags = input.tags === undefined || input.tags.length === 0 ? allowed : checkTags(input.tags, "tags");
    const extra = tags.filter((t) => !allowed.includes(t));
    if (extra.length > 0) throw new EnrollmentRefused(new ForbiddenError(`This pre-auth key does not grant the tag ${extra.join(", ")} (it grants: ${allowed.join(", ") || "none"}).`), "tag the key does not grant");
    const token = generateToken("node");
    const id = newId("node");
    const row = await this.write(net.id, (tx) => {
      // The key again, now that no other write can run: used, revoked or expired since the check above.
      const fresh = sql.preauthKeyByPrefix(tx, key.prefix);
      // Gone with its network, deleted meanwhile.
      if (!fresh) throw new EnrollmentRefused(new UnauthorizedError("This pre-auth key is not valid."), "pre-auth key removed");
      // Its organization being erased keeps the network until the erasure: checked now, not as remembered.
      if (!this.organizationLiveIn(tx, net.organization_id)) throw new EnrollmentRefused(new UnauthorizedError("This pre-auth key is not valid."), "the organization was deleted");
      const refusal = keyRefusal(fresh, now) ?? this.makerRefusal(fresh, net.organization_id);
      if (refusal) throw new EnrollmentRefused(new UnauthorizedError(refusal.message), refusal.reason);
      const { routes: advertised, exit: exitOffered } = checkAdvertisedRoutes(net, input.advertise_routes ?? [], "advertise_routes");
      if (sql.node(tx, net.id, name)) throw new EnrollmentRefused(new ConflictError(`A node named ${name} is enrolled in ${net.name} already; remove it first to enroll it again.`), "name taken");
      if (sql.keyInUse(tx, input.public_key)) throw new EnrollmentRefused(new ConflictError("This public key belongs to an enrolled node already: generate a new key pair."), "public key in use");
      const used = sql.usedHosts(tx, net.id);
      if (used.length >= this.k.settings.max_nodes_per_network)
        throw new EnrollmentRefused(new ConflictError(`The network ${net.name} has ${used.length} nodes, the most [mesh] max_nodes_per_network allows.`), "network full");
      let host: number;
      try {
        host = freeHost(tx, net, used);
      } catch (e) {
        throw new EnrollmentRefused(new ConflictError(e instanceof Error ? e.message : String(e)), "no free address");
      }
      const row: sql.NodeRow = {
        id,
        network_id: net.id,
        name,
        tags: JSON.stringify(tags),
        host,
        public_key: input.public_key,
        next_public_key: null,
        rotation_version: null,
        rotation_started_at: null,
        endpoint,
        listen_port: listenPort,
        hub: key.hub,
        disabled: 0,
        expires_at: key.node_ttl === null ? null : now + key.node_ttl * 1000,
        token_prefix: token.prefix,
        token_hash: token.hash,
        preauth_key_id: key.id,
        applied_version: 0,
        last_seen_at: now,
        advertised_routes: JSON.stringify(advertised),
        approved_routes: "[]",
        masquerade_routes: 0,
        exit_advertised: exitOffered ? 1 : 0,
        exit_approved: 0,
        exit_node_id: null,
        created_at: now,
        updated_at: now,
      };
      sql.insertNode(tx, row);
      sql.setLastHost(tx, net.id, host);
      sql.usePreauthKey(tx, key.id);
      sql.bumpVersion(tx, net.id, now);
      this.k.audit.record(tx, {
        action: "mesh.node.enroll",
        outcome: "success",
        reason: `with key ${key.prefix}, tags ${tags.join(",") || "none"}${listenPort === null ? "" : `, listen port ${listenPort}`}${advertised.length === 0 && !exitOffered ? "" : `, routes advertised ${withExitRoutes(advertised, exitOffered).join(",")} (pending approval)`}`,
        actor: { kind: "service", organization: net.organization_id, token: key.prefix },
        organization: net.organization_id,
        // A node's name is often its host name ("alices-laptop"): personal data, under the
        // organization's key (its erasure destroys it) with the enrolling address, not in the chain.
        subject: net.organization_id,
        personal: { node: name },
        resource: { type: "mesh_node", id },
        request,
      });
      return row;
    });
    return { node: this.nodeView(net, row), token: token.token };
  }

  /**
   * Why the key's maker no longer vouches for it, or null. A key acts for the member who made
   * it: deleted, removed from the organization or no longer in a role that makes keys, their
   * keys enroll nothing, as their API keys stop (found in review: such keys kept enrolling
   * nodes). A key recorded before its maker was (a key an API key made named that API key, not
   * a user) cannot be asked about: it works as it did until it expires (90 days at most).
   */
  private makerRefusal(key: sql.PreauthKeyRow, organizationId: string): { message: string; reason: string } | null {
    const provider = this.k.identity.provider;
    if (!provider || !isUserId(key.created_by)) return null; // no identity service in this build: nothing to ask
    const role = provider.roleIn(key.created_by, organizationId);
    // A maker removed and added back is back under a new membership: what they made under the
    // one that ended stays dead, as their API keys and tokens do (iam revokes those at removal).
    const since = role ? provider.memberSince(key.created_by, organizationId) : null;
    if (since !== null && since > key.created_at) return { message: "This pre-auth key is not valid.", reason: "its maker left the organization after making it" };
    if (role && roleAllows(role, KEY_MAKING_PERMISSION)) return null;
    const reason = role ? `its maker's role (${role}) no longer makes pre-auth keys` : "its maker is no longer a member of the organization";
    return { message: "This pre-auth key is not valid.", reason };
  }

  /** Whether the organization still exists (a deleted one's mesh stops: enrollment, polls, names). Checked at most every 10 s per organization. */
  organizationLive(organizationId: string): boolean {
    const provider = this.k.identity.provider;
    if (!provider) return true; // no identity service in this build: nothing to ask
    const now = this.now();
    const known = this.liveOrganizations.get(organizationId);
    if (known && now - known.at < 10_000) return known.live;
    const live = provider.organization(organizationId) !== null;
    this.liveOrganizations.set(organizationId, { live, at: now });
    return live;
  }

  private readonly liveOrganizations = new Map<string, { live: boolean; at: number }>();

  /** Whether the organization is live as `tx` has it now: never remembered, for a write to ask inside its transaction. */
  private organizationLiveIn(tx: Database, organizationId: string): boolean {
    return this.k.identity.provider?.organizationLiveIn(tx, organizationId) ?? true; // no identity service in this build: nothing to ask
  }

  /**
   * In the write that makes or changes something of the organization's: the organization, which
   * the guard found before the handler ran, must still be live. A network made after its
   * organization's deletion outlived it, its name taken from every other organization (found in
   * review); one whose organization is being erased is kept until the erasure, and must not
   * take new keys, nodes or rules meanwhile.
   */
  private requireLiveOrganization(tx: Database, organizationId: string): void {
    if (!this.organizationLiveIn(tx, organizationId)) throw new NotFoundError("No such organization: it was deleted meanwhile.");
  }

  /** The networks whose organization was found deleted at the last noticeDeletedOrganizations. */
  private networksOfDeletedOrganizations = new Set<string>();

  /**
   * Deleting an organization now deletes its networks (src/workspace-deletions.ts); one
   * deleted before that, or being erased (its soft delete keeps them until the erasure), still
   * has networks here: the periodic check calls this, and the listeners (DNS names, config
   * documents) hear of each network whose organization was deleted — or is back — since the
   * last call, as of a change. Until then such nodes kept their names in DNS. Returns how many.
   */
  noticeDeletedOrganizations(): number {
    const networks = sql.allNetworks(this.k.store.db);
    const gone = new Set(networks.filter((n) => !this.organizationLive(n.organization_id)).map((n) => n.id));
    const turned = networks.filter((n) => gone.has(n.id) !== this.networksOfDeletedOrganizations.has(n.id)).map((n) => n.id);
    this.networksOfDeletedOrganizations = gone;
    for (const id of turned) for (const listener of this.listeners) listener(id);
    return turned.length;
  }

  /** The node a node token belongs to; 401 for anything else, 403 for a disabled or expired node. */
  authenticateNode(token: string | null): sql.NodeRow {
    // Its shape only: a token that matches the stored hash has the issued token's checksum too,
    // and one that does not is refused the same either way (tokens.ts: tokenShape).
    const parsed = token ? tokenShape(token) : null;
    let row = parsed?.kind === "node" ? (this.nodesByToken.get(parsed.prefix) ?? null) : null;
    if (parsed?.kind === "node" && !row) {
      row = sql.nodeByTokenPrefix(this.k.store.db, parsed.prefix);
      // Only enrolled nodes are kept: unknown prefixes (guesses) never fill the map.
      if (row && this.nodesByToken.size < 100_000) this.nodesByToken.set(parsed.prefix, row);
    }
    if (!row || !tokenMatches(token!, row.token_hash)) throw new UnauthorizedError("Send this node's token: Authorization: Bearer citadel_node_...");
    // standing_ended, not forbidden: the agent cuts the node off on these (and only these 403s).
    if (!this.organizationLive(this.organizationOf(row.network_id))) throw new StandingEndedError("This node's organization was deleted.");
    if (row.disabled) throw new StandingEndedError("This node is disabled.");
    if (row.expires_at !== null && row.expires_at <= this.now()) throw new StandingEndedError("This node has expired: enroll it again.");
    this.liveness.heardFrom(row.id);
    return row;
  }

  /**
   * The agent applied `version` (and runs with `publicKey`). When that is the key the node was
   * rotating to, the rotation is complete: the old key leaves every config. A key that is neither
   * the node's nor its next one is refused (409 key_mismatch): the rotation ended here before the
   * node switched (cancelled, given up, the node disabled), so no peer lists that key, and the
   * agent goes back to the one they do. The operator's cancel stands: the report does not
   * complete a rotation the control plane no longer has.
   */
  async applied(node: sql.NodeRow, request: AuditRequestContext, version: number, publicKey: string, exitRefused?: string | null) {
    const now = this.now();
    const completes = node.next_public_key !== null && publicKey === node.next_public_key;
    const done = await this.write(completes ? node.network_id : null, (tx) => {
      // On the row as it is now: a rotation completed or cancelled meanwhile counts.
      const fresh = sql.nodeById(tx, node.id);
      if (fresh && publicKey !== fresh.public_key && publicKey !== fresh.next_public_key) {
        throw new HttpProblem(409, "key_mismatch", "That is neither this node's key nor the one it is rotating to (the rotation was cancelled, given up or ended by a disable): go back to the node's key.");
      }
      // A version the network never had is not believed (it would make this node look ready for any rotation).
      sql.recordApplied(tx, node.id, Math.min(version, sql.networkVersion(tx, node.network_id) ?? 0), now, exitRefused === undefined ? undefined : printableReport(exitRefused));
      if (!completes) return false;
      // Only the key columns, and only if the rotation is still the one this request saw.
      if (!sql.completeRotation(tx, node.id, publicKey, now)) return false;
      sql.bumpVersion(tx, node.network_id, now);
      this.k.audit.record(tx, nodeEvent(tx, node, "mesh.node.rotate", "completed: the old key is dropped", request));
      return true;
    });
    for (const listener of this.appliedListeners) listener(node.network_id);
    const rotation: "completed" | "pending" | null = done ? "completed" : node.next_public_key !== null ? "pending" : null;
    return { rotation };
  }

  /**
   * The node's own word on the subnet routes it offers (replacing what it offered). A route
   * approved already is in effect at once; one not approved waits for an operator. The
   * network gets a new version only when what is in effect changes.
   */
  async advertiseRoutes(node: sql.NodeRow, request: AuditRequestContext, routes: unknown) {
    const net = sql.networkById(this.k.store.db, node.network_id)!;
    const now = this.now();
    const row = await this.write(node.network_id, (tx) => {
      const offer = checkAdvertisedRoutes(net, routes, "routes");
      const [advertised, exitAdvertised] = [JSON.stringify(offer.routes), offer.exit ? 1 : 0];
      // On the row as it is now: an approval made meanwhile stands.
      const fresh = sql.nodeById(tx, node.id);
      if (!fresh) throw new UnauthorizedError("Send this node's token: Authorization: Bearer citadel_node_...");
      if (fresh.advertised_routes === advertised && fresh.exit_advertised === exitAdvertised) return fresh;
      const row: sql.NodeRow = { ...fresh, advertised_routes: advertised, exit_advertised: exitAdvertised, updated_at: now };
      sql.updateNode(tx, row);
      const approved = approvedRoutes(row);
      const [before, after] = [routesInEffect(offeredRoutes(fresh), approved), routesInEffect(offeredRoutes(row), approved)];
      const pending = pendingRoutes(offeredRoutes(row), approved);
      const reason = `advertised ${offeredRoutes(row).join(",") || "none"}; in effect: ${after.join(",") || "none"}${pending.length > 0 ? `; pending approval: ${pending.join(",")}` : ""}`;
      this.k.audit.record(tx, nodeEvent(tx, node, "mesh.node.routes", reason, request));
      // A route withdrawn goes to a standby; one newly in effect may be served by this node.
      const moved = this.settleRoutes(tx, sql.networkById(tx, node.network_id) ?? net, now, { actor: nodeActor(net, node), request: { id: request.id ?? null } });
      if (before.join() !== after.join() || moved) sql.bumpVersion(tx, node.network_id, now);
      return row;
    });
    const approved = approvedRoutes(row);
    return { advertised_routes: offeredRoutes(row), approved_routes: approved, pending_routes: pendingRoutes(offeredRoutes(row), approved) };
  }

  /**
   * The node's own choice of the exit node it sends its internet traffic through (Tailscale's
   * `--exit-node`), by name or id; null: none (its traffic goes out directly again). Refused
   * (409) unless the one named is an exit node in effect in its network (approved, active, a hub
   * in a hub network), not itself, and the ACL lets this node reach autogroup:internet; an exit
   * node uses none itself. Stored, a new version: its config routes the default routes to that
   * peer. Should the exit node stop being usable later, the choice stays and the node's
   * internet traffic is blocked, not sent out directly, until it chooses again (fail closed).
   */
  async chooseExitNode(node: sql.NodeRow, request: AuditRequestContext, choice: string | null) {
    const now = this.now();
    const row = await this.write(node.network_id, (tx) => {
      const net = sql.networkById(tx, node.network_id)!;
      const fresh = sql.nodeById(tx, node.id);
      if (!fresh) throw new UnauthorizedError("Send this node's token: Authorization: Bearer citadel_node_...");
      let exitId: string | null = null;
      if (choice !== null) {
        const exit = sql.node(tx, net.id, choice);
        if (!exit || exit.id === fresh.id) throw new ConflictError(`${JSON.stringify(choice)} is not another node of the network ${net.name}.`);
        if (!isActive(exit, now) || !isExitNode(exit) || (net.topology === "hub" && exit.hub !== 1)) {
          throw new ConflictError(`${exit.name} is not an exit node now: it must offer 0.0.0.0/0 and ::/0, have them approved, be enabled${net.topology === "hub" ? " and be a hub (a hub network)" : ""}.`);
        }
        if (isExitNode(fresh)) throw new ConflictError("This node is an exit node itself: its own internet traffic goes out directly.");
        if (!mayReachInternet(this.policyOf(net), { name: fresh.name, tags: JSON.parse(fresh.tags) as string[] })) {
          throw new ConflictError(`The network's ACL does not let this node reach autogroup:internet (no policy does not either: an exit node is used only where a rule allows it).`);
        }
        exitId = exit.id;
      }
      if (fresh.exit_node_id === exitId) return fresh;
      const row: sql.NodeRow = { ...fresh, exit_node_id: exitId, updated_at: now };
      sql.updateNode(tx, row);
      sql.bumpVersion(tx, net.id, now);
      this.k.audit.record(tx, nodeEvent(tx, node, "mesh.node.exit", exitId === null ? "uses no exit node" : `uses the exit node ${exitId}`, request));
      return row;
    });
    const names = new Map(sql.nodes(this.k.store.db, node.network_id).map((n) => [n.id, n.name]));
    return { exit_node: row.exit_node_id === null ? null : (names.get(row.exit_node_id) ?? row.exit_node_id) };
  }

  /** Starts a key rotation: peers get the next key beside the current one (the overlap). */
  async startRotation(node: sql.NodeRow, request: AuditRequestContext, nextKey: string) {
    if (!isWireGuardKey(nextKey)) throw new InvalidError("public_key: a WireGuard public key (base64 of 32 bytes)", "public_key");
    if (nextKey === node.public_key) throw new InvalidError("public_key: that is the node's current key", "public_key");
    const now = this.now();
    const version = await this.write(node.network_id, (tx) => {
      if (nextKey !== node.next_public_key && sql.keyInUse(tx, nextKey)) throw new ConflictError("This public key belongs to an enrolled node already.");
      // The version that announces the next key (bumpVersion's, not one more than the last: versions also follow the clock).
      const version = sql.bumpVersion(tx, node.network_id, now);
      // Only the rotation columns, and only while the node is enabled: an operator's disable in between stands (the throw undoes the bump).
      if (!sql.startRotation(tx, node.id, nextKey, version, now)) throw new StandingEndedError("This node is disabled.");
      this.k.audit.record(tx, nodeEvent(tx, node, "mesh.node.rotate", "started: peers accept the next key beside the current one", request));
      return version;
    });
    return { rotation: "pending" as const, version };
  }

  /**
   * Nodes whose expiry passed since the last call: their networks get a new version (peers'
   * configs drop them), DNS drops their names, and each is audited once.
   */
  async expireNodes(): Promise<number> {
    const now = this.now();
    // Not yet acted on: never, or before the expiry it has now (an extended one that passed again).
    const dueQuery = "SELECT * FROM mesh_nodes WHERE disabled = 0 AND expires_at IS NOT NULL AND expires_at <= ? AND (expiry_noted_at IS NULL OR expiry_noted_at < expires_at)";
    const due = this.k.store.db.query<sql.NodeRow, [number]>(dueQuery).all(now);
    let noted = 0;
    for (const networkId of new Set(due.map((n) => n.network_id))) {
      noted += await this.write(networkId, (tx) => {
        // Again in the transaction: another process (or call) may have acted on them meanwhile.
        const still = tx.query<sql.NodeRow, [number]>(dueQuery).all(now).filter((n) => n.network_id === networkId);
        if (still.length === 0) return 0;
        sql.bumpVersion(tx, networkId, now);
        for (const node of still) {
          tx.query("UPDATE mesh_nodes SET expiry_noted_at = ? WHERE id = ?").run(now, node.id);
          const expired = nodeEvent(tx, node, "mesh.node.expire", "expired", {});
          // Its name under the organization's key (erasable), as at enrollment.
          this.k.audit.record(tx, { ...expired, actor: { kind: "system" }, subject: expired.organization ?? null, personal: { node: node.name } });
        }
        const net = sql.networkById(tx, networkId);
        if (net) this.settleRoutes(tx, net, now, SYSTEM_MOVER);
        return still.length;
      });
    }
    return noted;
  }

  /**
   * Rotations not completed ROTATION_GIVE_UP_MS after their node could switch: given up, so that
   * peers drop the next key (a new version) and each is audited once. The node's agent, when it
   * comes back, sees no rotation in its document and may start another.
   */
  async expireRotations(): Promise<number> {
    const due = (db: Database) =>
      db
        .query<sql.NodeRow, [number]>("SELECT * FROM mesh_nodes WHERE next_public_key IS NOT NULL AND rotation_started_at <= ?")
        .all(this.now() - this.k.settings.rotation_wait_minutes * 60_000 - ROTATION_GIVE_UP_MS);
    let given = 0;
    for (const networkId of new Set(due(this.k.store.db).map((n) => n.network_id))) {
      given += await this.write(networkId, (tx) => {
        // Again in the transaction: the node may have completed it meanwhile.
        const still = due(tx).filter((n) => n.network_id === networkId);
        if (still.length === 0) return 0;
        const now = this.now();
        sql.bumpVersion(tx, networkId, now);
        for (const node of still) {
          sql.updateNode(tx, { ...node, ...NO_ROTATION, updated_at: now });
          this.k.audit.record(tx, { ...nodeEvent(tx, node, "mesh.node.rotate", "given up: not completed within a day of the switch being allowed; peers drop the next key", {}), actor: { kind: "system" } });
        }
        return still.length;
      });
    }
    return given;
  }

  /**
   * True when a rotating node may switch to its next key: every active peer has applied a
   * config that accepts it, or the configured wait is over (an offline peer follows later).
   */
  rotationReady(node: sql.NodeRow, peerIds: readonly string[]): boolean {
    if (node.rotation_version === null || node.rotation_started_at === null) return false;
    if (this.now() >= node.rotation_started_at + this.k.settings.rotation_wait_minutes * 60_000) return true;
    const rows = this.k.store.db.query<{ id: string; applied_version: number }, [string]>("SELECT id, applied_version FROM mesh_nodes WHERE network_id = ?").all(node.network_id);
    const applied = new Map(rows.map((r) => [r.id, r.applied_version]));
    return peerIds.every((id) => (applied.get(id) ?? Infinity) >= node.rotation_version!);
  }

  /** The hosts' IPv4/IPv6 for a network (for DNS names and configs). */
  addressesOf(net: sql.NetworkRow, host: number) {
    return addressesOf(net.ipv4, net.ipv6, host);
  }
}

/**
 * A node's agent keeps the interface it was enrolled with (its state file names it; `join
 * --interface` may have chosen another): a new name would be news to none of them, only to nodes
 * enrolled later and to the operator's nftables rendering, which would filter an interface the
 * nodes do not have. So it changes only while no node is enrolled — or from a name stored under
 * an older rule, which no agent could use (the config route asks for this change).
 */
function refuseInterfaceRename(tx: Database, current: sql.NetworkRow, next: sql.NetworkRow): void {
  if (next.interface_name === current.interface_name || !isInterfaceName(current.interface_name)) return;
  const nodes = sql.usedHosts(tx, current.id).length;
  if (nodes > 0) {
    throw new ConflictError(
      `interface_name: ${current.name} has ${nodes} enrolled node(s), whose agents keep the interface they were enrolled with (${current.interface_name}); the name can change only while the network has no nodes.`,
    );
  }
}

/**
 * The network again, inside the write that changes it: a write queued behind the network's
 * deletion finds it gone, and answers as if it had come after (found in review: a TypeError,
 * or a foreign-key failure for a key made in it).
 */
function networkStill(tx: Database, id: string, idOrName: string): sql.NetworkRow {
  const row = sql.networkById(tx, id);
  if (!row) throw new NotFoundError(`No mesh network ${idOrName} in this organization.`);
  return row;
}

/** A stored ACL version's policy: null (JSON null) for a version that removed the policy. */
function storedPolicy(row: sql.AclVersionRow): AclPolicy | null {
  return JSON.parse(row.policy) as AclPolicy | null;
}

/** Linux's limit on an interface's name (IFNAMSIZ less its NUL). */
const INTERFACE_NAME_MAX = 15;

/**
 * `wgc-<name>` when it fits; else the name's start and 4 hex digits of its SHA-256, so that
 * long names sharing their first letters ("production-east", "production-west") do not share
 * an interface — found in review: both were "wgc-production-", and on a host in both networks
 * the two agents managed one interface and one nftables table.
 */
export function defaultInterfaceName(name: string): string {
  const whole = `wgc-${name}`;
  if (whole.length <= INTERFACE_NAME_MAX) return whole;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 4);
  return `${whole.slice(0, INTERFACE_NAME_MAX - 5)}-${hash}`;
}

/**
 * A host may be a node of several networks of the organization, each with its agent: two
 * networks with one interface name would have both agents manage the same interface and
 * nftables table. Networks that already share one (made before this check) keep it.
 */
function refuseInterfaceInUse(tx: Database, org: string, network: sql.NetworkRow): void {
  const other = sql.networks(tx, org).find((n) => n.id !== network.id && n.interface_name === network.interface_name);
  if (other) {
    throw new ConflictError(`interface_name: the network ${other.name} uses ${network.interface_name} already: a host in both networks would have one interface for two; give another interface_name.`);
  }
}

/**
 * The next host number for a node of `net` (allocateHost: in turn after the one given last),
 * passing over those whose IPv4 or IPv6 address a node holds of another organization's network
 * made before `net` (createdFirst). A network's DNS clients are its nodes' addresses (DnsClients),
 * and an address held by nodes of two organizations is told only the older network's names:
 * numbering from 1 in every network, a network made over another organization's (the default
 * pool's fallback, or an admin giving another organization's prefixes) would otherwise share its
 * first nodes' addresses, whose names it would not be told. One way only: were the older network
 * to pass over the newcomer's addresses too, an admin could make a network over another
 * organization's prefix and enroll nodes at every free address of it, and the older network's
 * enrollments would find its pool full. Every node counts, disabled or expired too, as it does in
 * its own network: enabled again, it would share its address otherwise.
 */
function freeHost(tx: Database, net: sql.NetworkRow, used: readonly number[]): number {
  const heldElsewhere = addressesHeldByOlderNetworksOfOtherOrganizations(tx, net);
  const taken = new Set(used);
  const after = sql.lastHost(tx, net.id);
  let skipped = 0;
  for (;;) {
    let host: number;
    try {
      host = allocateHost(net.ipv4, taken, after);
    } catch (e) {
      if (skipped === 0 || !(e instanceof ConflictError)) throw e;
      throw new ConflictError(`${e.message}: ${skipped} of them held by nodes of other organizations' networks over it`);
    }
    const { ipv4, ipv6 } = addressesOf(net.ipv4, net.ipv6, host);
    if (!heldElsewhere.has(ipv4) && !heldElsewhere.has(ipv6)) return host;
    taken.add(host);
    skipped++;
  }
}

/** The addresses (canonical text, as addressesOf gives them) of every node of another organization's network that overlaps `net` and was made before it. */
function addressesHeldByOlderNetworksOfOtherOrganizations(tx: Database, net: sql.NetworkRow): Set<string> {
  const held = new Set<string>();
  for (const other of sql.allNetworks(tx)) {
    if (other.organization_id === net.organization_id || createdFirst(other, net) > 0) continue;
    if (!(overlaps(other.ipv4, net.ipv4) || overlaps(other.ipv6, net.ipv6))) continue;
    for (const node of sql.nodes(tx, other.id)) {
      const { ipv4, ipv6 } = addressesOf(other.ipv4, other.ipv6, node.host);
      held.add(ipv4).add(ipv6);
    }
  }
  return held;
}

/** The first pool freePool tries (a stand-in until the transaction chooses). */
const DEFAULT_POOL = "100.64.0.0/16";

/** Where freePool looks. */
const SHARED_SPACE = "100.64.0.0/10";

/**
 * The first /16 of 100.64.0.0/10 (RFC 6598 shared space, as Tailscale and Headscale use) no
 * network overlaps, whichever organization it belongs to, else the first no network of the
 * organization overlaps. Networks of two organizations may overlap (each admin chooses freely:
 * refusing would let one organization's few large networks shut every other out), but two whose
 * nodes share an address cannot tell them apart in DNS (DnsClients): a new network's default
 * keeps clear of every other while there is room (past that, freeHost keeps its nodes off the
 * addresses of the older networks' nodes). Either way clear of the organization's approved routes; 409 naming those that
 * take part of the space, when there is none.
 */
function freePool(networks: readonly sql.NetworkRow[], org: string, routes: OrganizationRoute[]): string {
  const routed = routes.map(({ route }) => route);
  const pool = firstFreeSlash16(networks, routed) ?? firstFreeSlash16(networks.filter((n) => n.organization_id === org), routed);
  if (pool === null) throw new ConflictError(`Every /16 of ${SHARED_SPACE} is taken${routesWithin(routes, SHARED_SPACE)}: give ipv4.`);
  return pool;
}

/** " (subnet routes among them: R of the node N (network W), ...)" for the routes overlapping `range`; "" for none. */
function routesWithin(routes: OrganizationRoute[], range: string): string {
  const within = routes.filter(({ route }) => overlaps(route, range));
  if (within.length === 0) return "";
  return ` (subnet routes among them: ${within.map(describeOrganizationRoute).join(", ")})`;
}

const describeOrganizationRoute = ({ route, node, network }: OrganizationRoute) => `${route} of the node ${node} (network ${network})`;

/**
 * The random ULA prefix drawn for a network created without ipv6, drawn again while it overlaps
 * another network's or an approved route (an IPv6 route may be as short as /16: one draw in 256
 * falls in an fdXX::/16); 409 naming the routes in fd00::/8, when the draws run out.
 */
function freeUlaPrefix(drawn: string, networks: sql.NetworkRow[], routes: OrganizationRoute[]): string {
  const taken = [...networks.map((n) => n.ipv6), ...routes.map(({ route }) => route)];
  for (let prefix = drawn, tries = 0; tries < 64; prefix = randomUlaPrefix(), tries++) {
    if (!taken.some((t) => overlaps(t, prefix))) return prefix;
  }
  throw new ConflictError(`Every ULA prefix drawn overlaps a network or a subnet route of the organization${routesWithin(routes, "fd00::/8")}: give ipv6.`);
}

/** A subnet route an operator approved for a node of the organization. */
interface OrganizationRoute {
  route: string;
  node: string;
  network: string;
}

/**
 * The routes approved for the organization's active nodes, advertised yet or not: a new
 * network's pools keep clear of them, as an approval keeps clear of the pools
 * (checkApprovedRoutes). Otherwise the route, in effect, would take the new network's addresses
 * from its nodes. Pending routes do not count: a node's token is enough to advertise them, and
 * the pools they would block would be the organization's; one overlapping a pool is refused
 * at its approval instead. Nor do a disabled or expired node's: it is checked again when an
 * operator makes it active (refuseApprovedRoutesOverPools).
 */
function organizationRoutes(tx: Database, networks: sql.NetworkRow[], now: number): OrganizationRoute[] {
  return networks.flatMap((network) =>
    sql
      .nodes(tx, network.id)
      .filter((node) => isActive(node, now))
      .flatMap((node) => routeList(node.approved_routes).map((route) => ({ route, node: node.name, network: network.name }))),
  );
}

/** 409 for a pool asked for that overlaps a route of the organization. */
function refusePoolOverRoute(routes: OrganizationRoute[], pool: string, field: "ipv4" | "ipv6"): void {
  const routed = routes.find(({ route }) => overlaps(route, pool));
  if (routed) throw new ConflictError(`${field}: ${pool} overlaps the subnet route ${describeOrganizationRoute(routed)}, whose addresses are behind that node: give another ${field}, or revoke the route's approval first.`);
}

/** The first /16 of 100.64.0.0/10 that neither a network of `networks` nor a route of `routed` overlaps. */
function firstFreeSlash16(networks: readonly sql.NetworkRow[], routed: readonly string[]): string | null {
  for (let i = 64; i < 128; i++) {
    const candidate = `100.${i}.0.0/16`;
    if (!networks.some((n) => overlaps(n.ipv4, candidate)) && !routed.some((r) => overlaps(r, candidate))) return candidate;
  }
  return null;
}

/** A new network's prefixes overlap no other network of its organization's (a host of both would have two routes to one address). */
function refuseOverlap(networks: readonly sql.NetworkRow[], ipv4: string, ipv6: string): void {
  for (const other of networks) {
    if (overlaps(other.ipv4, ipv4)) throw new ConflictError(`ipv4: ${ipv4} overlaps the network ${other.name} (${other.ipv4}).`);
    if (overlaps(other.ipv6, ipv6)) throw new ConflictError(`ipv6: ${ipv6} overlaps the network ${other.name} (${other.ipv6}).`);
  }
}

function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y || x.family !== y.family) return false;
  return cidrContains(x, y) || cidrContains(y, x);
}

/** Who made the change that moves subnet routes, for their events (mesh.route.failover). */
export interface RouteMover {
  actor: AuditActor;
  /** The request's id only: its address and agent are the caller's personal data, which its own event keeps. */
  request: AuditRequestContext;
}

/** The periodic check, an expiry. */
const SYSTEM_MOVER: RouteMover = { actor: { kind: "system" }, request: {} };

const operatorMover = (caller: Caller): RouteMover => ({ actor: actorOf(caller.principal), request: { id: caller.request.id ?? null } });

/** A node speaking for itself with its token. */
const nodeActor = (net: sql.NetworkRow, node: sql.NodeRow): AuditActor => ({ kind: "service", organization: net.organization_id, token: node.token_prefix });

/** Why a router no longer offers a route it served (electPrimaries' "gone"), for the event: `row` as it is now, undefined once removed. */
function goneReason(net: sql.NetworkRow, row: sql.NodeRow | undefined, route: string, now: number): string {
  if (!row) return "removed";
  if (row.disabled) return "disabled";
  if (!isActive(row, now)) return "expired";
  if (net.topology === "hub" && row.hub !== 1) return "not a hub: in a hub network only hubs serve routes";
  if (!routeList(row.advertised_routes).includes(route)) return "no longer advertised by it";
  if (!routeList(row.approved_routes).includes(route)) return "its approval revoked";
  return "no longer offered by it";
}

function event(caller: Caller, org: string, action: string, resource: { type: string; id: string }, reason: string | null): AuditEventInput {
  return { action, outcome: "success", resource, reason, organization: org, actor: actorOf(caller.principal), request: caller.request };
}

function nodeEvent(tx: Database, node: sql.NodeRow, action: string, reason: string, request: AuditRequestContext): AuditEventInput {
  const org = sql.networkById(tx, node.network_id)?.organization_id ?? null;
  return { action, outcome: "success", reason, actor: { kind: "service", organization: org, token: node.token_prefix }, organization: org, resource: { type: "mesh_node", id: node.id }, request };
}

/** What making a pre-auth key takes (the keys routes' ADMIN access, index.ts): a key enrolls only while its maker has it. */
const KEY_MAKING_PERMISSION: Permission = "manage_members";

/** A user's id (usr_...), not the token prefix a key recorded as its maker before makers were users. */
const isUserId = (id: string | null): id is string => id !== null && id.startsWith("usr_");

/** Why a pre-auth key cannot enroll now (message for the caller, reason for the audit), or null. */
function keyRefusal(key: sql.PreauthKeyRow, now: number): { message: string; reason: string } | null {
  if (key.revoked_at !== null) return { message: "This pre-auth key was revoked.", reason: "revoked pre-auth key" };
  if (key.expires_at <= now) return { message: "This pre-auth key has expired.", reason: "expired pre-auth key" };
  if (!key.reusable && key.used > 0) return { message: "This pre-auth key was used already.", reason: "used single-use pre-auth key" };
  return null;
}

/**
 * An enrollment refused after the key check: the error the caller gets, and the reason the
 * audit chain keeps — a fixed text, never what the client sent (a node's name is often its
 * owner's host name: personal data the organization's erasure could not reach in the chain).
 */
class EnrollmentRefused extends Error {
  constructor(
    readonly error: Error,
    readonly reason: string,
  ) {
    super(error.message);
  }
}

/** The fixed reason of any other refusal: which field was invalid ("invalid endpoint"), else the error's code. */
function refusalReason(error: unknown): string {
  if (error instanceof InvalidError && error.field) return `invalid ${error.field.replace(/\[\d+\]$/, "").replaceAll("_", " ")}`;
  return error instanceof CitadelError ? error.code : "internal error";
}

/** What an enrolling client sent that is personal data, for a refusal's event (as the success event keeps the name). */
function sentPersonal(input: Enrollment): Record<string, string> {
  const personal: Record<string, string> = {};
  if (typeof input.name === "string") personal.node = input.name;
  if (typeof input.endpoint === "string" && input.endpoint !== "") personal.endpoint = input.endpoint;
  return personal;
}

/**
 * A node's own text (its exit_refused), as stored and shown to operators: each run of control
 * (C0, C1), format and line-breaking characters made one space, so that a node token's holder
 * can neither write escape sequences into an operator's terminal or log nor make the text read
 * otherwise than it is — bidirectional controls and marks (U+061C, U+200E/F, U+202A-U+202E,
 * U+2066-U+2069), zero-width characters (U+200B-U+200D), the byte-order mark (U+FEFF), tag
 * characters (U+E0000-U+E007F), the line and paragraph separators. The agent writes plain
 * English: nothing of that kind belongs in it. (src/cli/output.ts's printable escapes what a
 * terminal acts on as the CLI prints; it keeps the format characters a person's name needs.)
 */
function printableReport(text: string | null): string | null {
  if (text === null) return null;
  const clean = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\u{E0000}-\u{E007F}]+/gu, " ").trim();
  return clean === "" ? null : clean;
}
