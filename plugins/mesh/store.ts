/** The mesh tables' rows and the SQL on them (the service decides; this only reads and writes). */
import type { Database } from "bun:sqlite";

export interface NetworkRow {
  id: string;
  organization_id: string;
  name: string;
  ipv4: string;
  ipv6: string;
  listen_port: number;
  mtu: number;
  keepalive: number;
  topology: "mesh" | "hub";
  dns: string;
  interface_name: string;
  psk_seed: Uint8Array | null;
  version: number;
  acl_version: number;
  created_at: number;
  updated_at: number;
}

export interface PreauthKeyRow {
  id: string;
  network_id: string;
  prefix: string;
  hash: Uint8Array;
  description: string | null;
  reusable: number;
  tags: string;
  hub: number;
  node_ttl: number | null;
  expires_at: number;
  used: number;
  revoked_at: number | null;
  created_by: string | null;
  created_at: number;
}

export interface NodeRow {
  id: string;
  network_id: string;
  name: string;
  tags: string;
  host: number;
  public_key: string;
  next_public_key: string | null;
  rotation_version: number | null;
  rotation_started_at: number | null;
  endpoint: string | null;
  /** The port it listens on; NULL: its endpoint's, else the network's. */
  listen_port: number | null;
  hub: number;
  disabled: number;
  expires_at: number | null;
  /** When its expiry was acted on (a new version, an audit event); NULL: not yet. */
  expiry_noted_at?: number | null;
  token_prefix: string;
  token_hash: Uint8Array;
  preauth_key_id: string | null;
  applied_version: number;
  last_seen_at: number | null;
  /** JSON arrays of canonical prefixes: the subnet routes the node offers, and those an operator approved. */
  advertised_routes: string;
  approved_routes: string;
  /** 1: its agent masquerades what it forwards from the mesh to the routes it serves. */
  masquerade_routes: number;
  /** 1: it offers to be an exit node (0.0.0.0/0 and ::/0); 1: an operator approved that. */
  exit_advertised: number;
  exit_approved: number;
  /** The exit node it chose to send its internet traffic through (its own request); null: none. */
  exit_node_id: string | null;
  /** Its agent's report: why it does not route through that exit node on its host; NULL: it does (or none reported). Absent before migration 0010. */
  exit_refused?: string | null;
  created_at: number;
  updated_at: number;
}

export interface AclVersionRow {
  network_id: string;
  version: number;
  policy: string;
  created_by: string | null;
  created_at: number;
}

// --- networks ------------------------------------------------------------------------------

export const networks = (db: Database, org: string) =>
  db.query<NetworkRow, [string]>("SELECT * FROM mesh_networks WHERE organization_id = ? ORDER BY name").all(org);

export const allNetworks = (db: Database) => db.query<NetworkRow, []>("SELECT * FROM mesh_networks ORDER BY organization_id, name").all();

/** By id or name, inside the organization. */
export const network = (db: Database, org: string, idOrName: string) =>
  db.query<NetworkRow, [string, string, string]>("SELECT * FROM mesh_networks WHERE organization_id = ? AND (id = ? OR name = ?)").get(org, idOrName, idOrName);

export const networkById = (db: Database, id: string) => db.query<NetworkRow, [string]>("SELECT * FROM mesh_networks WHERE id = ?").get(id);

export const networkVersion = (db: Database, id: string) =>
  db.query<{ version: number }, [string]>("SELECT version FROM mesh_networks WHERE id = ?").get(id)?.version ?? null;

export function insertNetwork(tx: Database, row: NetworkRow): void {
  tx.query(
    `INSERT INTO mesh_networks (id, organization_id, name, ipv4, ipv6, listen_port, mtu, keepalive, topology, dns, interface_name, psk_seed, version, acl_version, created_at, updated_at)
     VALUES ($id, $organization_id, $name, $ipv4, $ipv6, $listen_port, $mtu, $keepalive, $topology, $dns, $interface_name, $psk_seed, $version, $acl_version, $created_at, $updated_at)`,
  ).run(row as any);
}

export function updateNetwork(tx: Database, row: NetworkRow): void {
  tx.query(
    `UPDATE mesh_networks SET listen_port = $listen_port, mtu = $mtu, keepalive = $keepalive, topology = $topology, dns = $dns,
       interface_name = $interface_name, psk_seed = $psk_seed, updated_at = $updated_at WHERE id = $id`,
  ).run({ id: row.id, listen_port: row.listen_port, mtu: row.mtu, keepalive: row.keepalive, topology: row.topology, dns: row.dns, interface_name: row.interface_name, psk_seed: row.psk_seed, updated_at: row.updated_at } as any);
}

/** The network's next version (every node's config may have changed). */
/**
 * A new version of the network's configs: one more than the last, and at least the time now in
 * milliseconds. So versions only grow, even when the database goes back (a backup restored,
 * perhaps on a new machine): agents refuse a version older than the one they applied, and
 * would otherwise refuse every config until the count caught up with theirs.
 */
export function bumpVersion(tx: Database, id: string, now: number): number {
  tx.query("UPDATE mesh_networks SET version = MAX(version + 1, ?), updated_at = ? WHERE id = ?").run(now, now, id);
  return networkVersion(tx, id)!;
}

export const deleteNetwork = (tx: Database, id: string) => tx.query("DELETE FROM mesh_networks WHERE id = ?").run(id).changes > 0;

// --- ACL -----------------------------------------------------------------------------------

export const aclVersion = (db: Database, networkId: string, version: number) =>
  db.query<AclVersionRow, [string, number]>("SELECT * FROM mesh_acl_versions WHERE network_id = ? AND version = ?").get(networkId, version);

export const aclVersions = (db: Database, networkId: string) =>
  db.query<AclVersionRow, [string]>("SELECT * FROM mesh_acl_versions WHERE network_id = ? ORDER BY version DESC").all(networkId);

export function insertAclVersion(tx: Database, row: AclVersionRow): void {
  tx.query("INSERT INTO mesh_acl_versions (network_id, version, policy, created_by, created_at) VALUES (?, ?, ?, ?, ?)").run(row.network_id, row.version, row.policy, row.created_by, row.created_at);
  tx.query("UPDATE mesh_networks SET acl_version = ? WHERE id = ?").run(row.version, row.network_id);
}

// --- pre-auth keys -------------------------------------------------------------------------

export const preauthKeys = (db: Database, networkId: string) =>
  db.query<PreauthKeyRow, [string]>("SELECT * FROM mesh_preauth_keys WHERE network_id = ? ORDER BY created_at, id").all(networkId);

/** Every pre-auth key of every network (the carry-over after a restore). */
export const allPreauthKeys = (db: Database) => db.query<PreauthKeyRow, []>("SELECT * FROM mesh_preauth_keys").all();

export const preauthKeyByPrefix = (db: Database, prefix: string) => db.query<PreauthKeyRow, [string]>("SELECT * FROM mesh_preauth_keys WHERE prefix = ?").get(prefix);

export function insertPreauthKey(tx: Database, row: PreauthKeyRow): void {
  tx.query(
    `INSERT INTO mesh_preauth_keys (id, network_id, prefix, hash, description, reusable, tags, hub, node_ttl, expires_at, used, revoked_at, created_by, created_at)
     VALUES ($id, $network_id, $prefix, $hash, $description, $reusable, $tags, $hub, $node_ttl, $expires_at, $used, $revoked_at, $created_by, $created_at)`,
  ).run(row as any);
}

export const usePreauthKey = (tx: Database, id: string) => tx.query("UPDATE mesh_preauth_keys SET used = used + 1 WHERE id = ?").run(id);

export const revokePreauthKey = (tx: Database, networkId: string, idOrPrefix: string, now: number) =>
  tx.query("UPDATE mesh_preauth_keys SET revoked_at = ? WHERE network_id = ? AND (id = ? OR prefix = ?) AND revoked_at IS NULL").run(now, networkId, idOrPrefix, idOrPrefix).changes > 0;

// --- nodes ---------------------------------------------------------------------------------

/** Every node of every network (the carry-over after a restore). */
export const allNodes = (db: Database) => db.query<NodeRow, []>("SELECT * FROM mesh_nodes").all();

export const nodes = (db: Database, networkId: string) => db.query<NodeRow, [string]>("SELECT * FROM mesh_nodes WHERE network_id = ? ORDER BY name").all(networkId);

export const node = (db: Database, networkId: string, idOrName: string) =>
  db.query<NodeRow, [string, string, string]>("SELECT * FROM mesh_nodes WHERE network_id = ? AND (id = ? OR name = ?)").get(networkId, idOrName, idOrName);

export const nodeById = (db: Database, id: string) => db.query<NodeRow, [string]>("SELECT * FROM mesh_nodes WHERE id = ?").get(id);

export const nodeByTokenPrefix = (db: Database, prefix: string) => db.query<NodeRow, [string]>("SELECT * FROM mesh_nodes WHERE token_prefix = ?").get(prefix);

/** True when some node has `key` as its key or its next key. */
export const keyInUse = (db: Database, key: string) =>
  db.query<{ one: number }, [string, string]>("SELECT 1 AS one FROM mesh_nodes WHERE public_key = ? OR next_public_key = ?").get(key, key) !== null;

export const usedHosts = (db: Database, networkId: string) =>
  db.query<{ host: number }, [string]>("SELECT host FROM mesh_nodes WHERE network_id = ?").all(networkId).map((r) => r.host);

/** The host number the network handed out last (0: none yet). */
export const lastHost = (db: Database, networkId: string) =>
  db.query<{ last_host: number }, [string]>("SELECT last_host FROM mesh_networks WHERE id = ?").get(networkId)?.last_host ?? 0;

export function setLastHost(tx: Database, networkId: string, host: number): void {
  tx.query("UPDATE mesh_networks SET last_host = ? WHERE id = ?").run(host, networkId);
}

export function insertNode(tx: Database, row: NodeRow): void {
  tx.query(
    `INSERT INTO mesh_nodes (id, network_id, name, tags, host, public_key, next_public_key, rotation_version, rotation_started_at, endpoint, listen_port, hub, disabled, expires_at,
       token_prefix, token_hash, preauth_key_id, applied_version, last_seen_at, advertised_routes, approved_routes, masquerade_routes, exit_advertised, exit_approved, exit_node_id, created_at, updated_at)
     VALUES ($id, $network_id, $name, $tags, $host, $public_key, $next_public_key, $rotation_version, $rotation_started_at, $endpoint, $listen_port, $hub, $disabled, $expires_at,
       $token_prefix, $token_hash, $preauth_key_id, $applied_version, $last_seen_at, $advertised_routes, $approved_routes, $masquerade_routes, $exit_advertised, $exit_approved, $exit_node_id, $created_at, $updated_at)`,
  ).run(row as any);
}

/** Writes the node's changeable fields (tags, keys, endpoint, listen port, state, routes, masquerade, exit node). */
export function updateNode(tx: Database, row: NodeRow): void {
  tx.query(
    `UPDATE mesh_nodes SET tags = $tags, public_key = $public_key, next_public_key = $next_public_key, rotation_version = $rotation_version,
       rotation_started_at = $rotation_started_at, endpoint = $endpoint, listen_port = $listen_port, hub = $hub, disabled = $disabled, expires_at = $expires_at,
       advertised_routes = $advertised_routes, approved_routes = $approved_routes, masquerade_routes = $masquerade_routes,
       exit_advertised = $exit_advertised, exit_approved = $exit_approved, exit_node_id = $exit_node_id, updated_at = $updated_at
     WHERE id = $id`,
  ).run({
      id: row.id,
      tags: row.tags,
      public_key: row.public_key,
      next_public_key: row.next_public_key,
      rotation_version: row.rotation_version,
      rotation_started_at: row.rotation_started_at,
      endpoint: row.endpoint,
      listen_port: row.listen_port,
      hub: row.hub,
      disabled: row.disabled,
      expires_at: row.expires_at,
      advertised_routes: row.advertised_routes,
      approved_routes: row.approved_routes,
      masquerade_routes: row.masquerade_routes,
      exit_advertised: row.exit_advertised,
      exit_approved: row.exit_approved,
      exit_node_id: row.exit_node_id,
      updated_at: row.updated_at,
    } as any);
}

/** Completes a rotation: the next key becomes the key. False when the node is no longer rotating to `nextKey`. */
export const completeRotation = (tx: Database, id: string, nextKey: string, now: number) =>
  tx
    .query(
      "UPDATE mesh_nodes SET public_key = next_public_key, next_public_key = NULL, rotation_version = NULL, rotation_started_at = NULL, updated_at = ? WHERE id = ? AND next_public_key = ?",
    )
    .run(now, id, nextKey).changes === 1;

/** Starts (or restarts) a rotation to `nextKey`; false when the node is disabled. */
export const startRotation = (tx: Database, id: string, nextKey: string, version: number, now: number) =>
  tx
    .query("UPDATE mesh_nodes SET next_public_key = ?, rotation_version = ?, rotation_started_at = ?, updated_at = ? WHERE id = ? AND disabled = 0")
    .run(nextKey, version, now, now, id).changes === 1;

/**
 * What an agent reports after applying a config (not a config change: no version bump); with
 * `exitRefused` (undefined: not reported, left as it is), why its exit node is not used on its host.
 */
export function recordApplied(tx: Database, id: string, version: number, now: number, exitRefused?: string | null): void {
  tx.query("UPDATE mesh_nodes SET applied_version = max(applied_version, ?), last_seen_at = ? WHERE id = ?").run(version, now, id);
  if (exitRefused !== undefined) tx.query("UPDATE mesh_nodes SET exit_refused = ? WHERE id = ?").run(exitRefused, id);
}

export const deleteNode = (tx: Database, id: string) => tx.query("DELETE FROM mesh_nodes WHERE id = ?").run(id).changes > 0;

// --- who serves the subnet routes -----------------------------------------------------------

/** Route → the node serving it, as stored (routes.ts electPrimaries). */
export const routePrimaries = (db: Database, networkId: string) =>
  new Map(db.query<{ route: string; node_id: string }, [string]>("SELECT route, node_id FROM mesh_route_primaries WHERE network_id = ?").all(networkId).map((r) => [r.route, r.node_id]));

/** Sets who serves a route; null: nobody (no node offers it any more). */
export function setRoutePrimary(tx: Database, networkId: string, route: string, nodeId: string | null): void {
  if (nodeId === null) tx.query("DELETE FROM mesh_route_primaries WHERE network_id = ? AND route = ?").run(networkId, route);
  else tx.query("INSERT INTO mesh_route_primaries (network_id, route, node_id) VALUES (?, ?, ?) ON CONFLICT (network_id, route) DO UPDATE SET node_id = excluded.node_id").run(networkId, route, nodeId);
}

/** The networks where some node has a route in effect, or a route has a router stored: those whose routers the periodic check judges. */
export const networksWithRoutes = (db: Database) =>
  db
    .query<{ id: string }, []>(
      `SELECT DISTINCT network_id AS id FROM mesh_nodes WHERE advertised_routes != '[]' AND approved_routes != '[]'
       UNION SELECT DISTINCT network_id FROM mesh_route_primaries`,
    )
    .all()
    .map((r) => r.id);

/** When each node was last heard from, as stored. */
export const lastSeen = (db: Database) => new Map(db.query<{ id: string; last_seen_at: number | null }, []>("SELECT id, last_seen_at FROM mesh_nodes").all().map((r) => [r.id, r.last_seen_at]));

/** Writes when a node was last heard from (not a config change: no version); false when it is gone. */
export const recordSeen = (tx: Database, id: string, at: number) => tx.query("UPDATE mesh_nodes SET last_seen_at = max(coalesce(last_seen_at, 0), ?) WHERE id = ?").run(at, id).changes > 0;

// --- the control plane's signing key -------------------------------------------------------

export const signingKey = (db: Database) =>
  db.query<{ public_key: string; private_key: Uint8Array; created_at: number }, []>("SELECT public_key, private_key, created_at FROM mesh_signing_key WHERE id = 1").get();

export const insertSigningKey = (tx: Database, publicKey: string, privateKey: Uint8Array, now: number) =>
  tx.query("INSERT INTO mesh_signing_key (id, public_key, private_key, created_at) VALUES (1, ?, ?, ?)").run(publicKey, privateKey, now);
