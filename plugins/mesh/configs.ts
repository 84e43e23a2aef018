/**
 * Node config documents: what an agent fetches, signed by the control plane.
 *
 * A document is rendered from the network as it is at one version (nodes, ACL, settings) and
 * cached per node until the network's version moves (or a node in it expires, which is time,
 * not a write). The body is deterministic JSON, so its SHA-256 is a stable ETag: an agent
 * polling with If-None-Match costs a token check and a map lookup.
 *
 * Preshared keys are derived per pair from the network's seed (a keyring envelope):
 * HMAC-SHA256(seed, "citadel-mesh-psk" ‖ lower id ‖ higher id). Nothing per pair is stored, both
 * ends compute the same key, and rotating the seed rotates every pair's key at once.
 */
import { createHash, createHmac } from "node:crypto";
import type { Keyring } from "../../src/crypto/keyring.ts";
import { MeshPlan } from "./plan.ts";
import { routesInEffect } from "./routes.ts";
import { expiryNoted, isActive, type MeshKernel, type MeshService } from "./service.ts";
import { generateSigningKey, Signer } from "./signing.ts";
import * as sql from "./store.ts";
import type { MeshNetwork, MeshNode, NodeConfig } from "./types.ts";

export const CONFIG_FORMAT = "citadel-mesh-config/1";
const SIGNING_OWNER = "mesh/signing";
const SIGNING_CONTEXT = "mesh/signing/1";

/** The signed body an agent receives. */
export interface ConfigDocument {
  format: typeof CONFIG_FORMAT;
  node: string;
  network: string;
  /** The network's version this was rendered from; agents refuse to go back. */
  version: number;
  poll_seconds: number;
  config: NodeConfig;
  /** This node relays between spokes (a hub of a hub network): it must forward IP packets. */
  relay: boolean;
  /** This node's own rotation: switch to the next key when `switch` says peers are ready. */
  rotation: { next_public_key: string; switch: boolean } | null;
}

export interface SignedConfig {
  body: string;
  etag: string;
  signature: string;
  version: number;
}

/** A network at one version, as the planner sees it. */
interface NetworkView {
  version: number;
  /** The view is stale from this time on (the next node expiry). */
  validUntil: number;
  network: MeshNetwork;
  nodes: MeshNode[];
  /** The planner over this view, built once per version. */
  plan: MeshPlan;
  idByName: Map<string, string>;
}

export class NodeConfigs {
  private readonly views = new Map<string, NetworkView>();
  private readonly documents = new Map<string, { version: number; validUntil: number; signed: SignedConfig; rotating: boolean; networkId: string }>();
  private signerOf: { keyring: Keyring; signer: Signer } | null = null;
  private expiring: Promise<unknown> | null = null;

  constructor(
    private readonly k: MeshKernel,
    private readonly mesh: MeshService,
  ) {
    mesh.onChange((networkId) => this.views.delete(networkId));
    // Preshared keys and the signer are dropped when Citadel seals, not at the next request.
    k.seal.onSeal(() => this.forgetSecrets());
    // A peer's report can make a rotating node's `switch` true: its document is made again.
    mesh.onApplied((networkId) => {
      for (const [nodeId, entry] of this.documents) if (entry.rotating && entry.networkId === networkId) this.documents.delete(nodeId);
    });
  }

  /** The control plane's public key (base64 Ed25519), made on first use. */
  async signingPublicKey(): Promise<string> {
    const existing = sql.signingKey(this.k.store.db);
    if (existing) return existing.public_key;
    const key = generateSigningKey();
    await this.k.store.write((tx) => {
      if (sql.signingKey(tx)) return; // another request made it first
      const envelope = this.k.seal.keyring().encrypt(tx, SIGNING_OWNER, SIGNING_CONTEXT, key.privateKeyDer);
      sql.insertSigningKey(tx, key.publicKey, envelope, this.k.clock.now());
    });
    key.privateKeyDer.fill(0);
    return sql.signingKey(this.k.store.db)!.public_key;
  }

  /** The signer, decrypted with the keyring in memory now: sealing drops it with the keyring. */
  private signer(): Signer {
    const keyring = this.k.seal.keyring();
    if (this.signerOf?.keyring === keyring) return this.signerOf.signer;
    const row = sql.signingKey(this.k.store.db);
    if (!row) throw new Error("the mesh signing key does not exist yet");
    const der = keyring.decrypt(SIGNING_OWNER, SIGNING_CONTEXT, row.private_key);
    this.signerOf = { keyring, signer: new Signer(der) };
    der.fill(0);
    return this.signerOf.signer;
  }

  /**
   * The network's state now. Cached until the service reports a change of the network (every
   * write that bumps its version does) or a node in it expires; one process owns the database.
   */
  view(networkId: string): NetworkView {
    const now = this.k.clock.now();
    const cached = this.views.get(networkId);
    if (cached && now < cached.validUntil) return cached;
    const view = this.load(networkId, now);
    this.views.set(networkId, view);
    return view;
  }

  private load(networkId: string, now: number): NetworkView {
    const db = this.k.store.db;
    const row = sql.networkById(db, networkId)!;
    const dns: string[] = JSON.parse(row.dns);
    const network: MeshNetwork = {
      id: row.id,
      name: row.name,
      ipv4: row.ipv4,
      ipv6: row.ipv6,
      listenPort: row.listen_port,
      mtu: row.mtu,
      keepalive: row.keepalive,
      topology: row.topology,
      dns,
      searchDomain: dns.length > 0 ? this.mesh.domainOf(row) : null,
      interfaceName: row.interface_name,
    };
    let validUntil = Infinity;
    let expiredUnnoted = false;
    const nodes: MeshNode[] = [];
    // Who serves each route, as stored: the planner serves them so (routes.ts electPrimaries).
    const served = new Map<string, string[]>();
    for (const [route, nodeId] of sql.routePrimaries(db, networkId)) served.set(nodeId, [...(served.get(nodeId) ?? []), route]);
    for (const n of sql.nodes(db, networkId)) {
      if (n.disabled !== 0) continue;
      if (!isActive(n, now)) {
        // Gone only with the new version that says so: a config must never change under the
        // same version, or an agent would take the older one, replayed, for current. Until its
        // expiry is noted (at once, below), an expired node stays listed.
        if (expiryNoted(n)) continue;
        expiredUnnoted = true;
      } else if (n.expires_at !== null) validUntil = Math.min(validUntil, n.expires_at);
      nodes.push(meshNode(this.mesh, row, n, served.get(n.id) ?? []));
    }
    if (expiredUnnoted) this.expireNow();
    const seed = this.mesh.pskSeed(row);
    const policy = this.mesh.policyOf(row);
    return { version: row.version, validUntil, network, nodes, plan: new MeshPlan(network, nodes, policy, seed ? pairKey(seed) : undefined), idByName: new Map(nodes.map((n) => [n.name, n.id])) };
  }

  /** Acts on expiries now (a new version of their networks), once at a time; the write's change clears the views. */
  private expireNow(): void {
    this.expiring ??= this.mesh
      .expireNodes()
      .catch((error) => this.k.log.error("mesh: expiring nodes failed", { error: String(error) }))
      .finally(() => (this.expiring = null));
  }

  private forgetSecrets(): void {
    this.views.clear();
    this.documents.clear();
    this.signerOf = null;
  }

  /** One node's config at the network's current version (for the operator: no private key anywhere). */
  configOf(node: sql.NodeRow): NodeConfig {
    const view = this.view(node.network_id);
    const config = view.plan.config(node.id);
    if (!config) throw new Error(`node ${node.id} is not active`);
    return config;
  }

  /** The signed document for the node (which authenticated itself), from the cache when still current. */
  document(node: sql.NodeRow): SignedConfig {
    const view = this.view(node.network_id);
    const cached = this.documents.get(node.id);
    const now = this.k.clock.now();
    const rotating = node.next_public_key !== null;
    if (cached && cached.version === view.version && now < cached.validUntil) return cached.signed;
    const config = this.configOf(node);
    const rotation = rotating
      ? {
          next_public_key: node.next_public_key!,
          switch: this.mesh.rotationReady(
            node,
            config.peers.map((p) => view.idByName.get(p.name) ?? ""),
          ),
        }
      : null;
    const relay = relays(view.network, node);
    const document: ConfigDocument = { format: CONFIG_FORMAT, node: node.id, network: node.network_id, version: view.version, poll_seconds: this.k.settings.poll_seconds, config, relay, rotation };
    const body = JSON.stringify(document);
    const signed: SignedConfig = { body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`, signature: this.signer().sign(body), version: view.version };
    // A rotating node's document is made again when a peer reports in, or after a second (the wait may run out).
    this.documents.set(node.id, { version: view.version, validUntil: rotating ? Math.min(view.validUntil, now + 1000) : view.validUntil, signed, rotating, networkId: node.network_id });
    if (this.documents.size > 100_000) this.documents.clear();
    return signed;
  }
}

function meshNode(mesh: MeshService, net: sql.NetworkRow, n: sql.NodeRow, primaryRoutes: string[]): MeshNode {
  const { ipv4, ipv6 } = mesh.addressesOf(net, n.host);
  return {
    id: n.id,
    name: n.name,
    tags: JSON.parse(n.tags),
    publicKey: n.public_key,
    nextPublicKey: n.next_public_key,
    ipv4,
    ipv6,
    endpoint: n.endpoint,
    listenPort: n.listen_port,
    hub: n.hub === 1,
    enrolledAt: n.created_at,
    routes: routesInEffect(JSON.parse(n.advertised_routes), JSON.parse(n.approved_routes)),
    primaryRoutes,
    masqueradeRoutes: n.masquerade_routes === 1,
    exitNode: n.exit_advertised === 1 && n.exit_approved === 1,
    exitVia: n.exit_node_id,
  };
}

/** The preshared key of a pair: the same from either end. */
export function pairKey(seed: Uint8Array): (a: MeshNode, b: MeshNode) => string {
  return (a, b) => {
    const [low, high] = a.id < b.id ? [a.id, b.id] : [b.id, a.id];
    return createHmac("sha256", seed).update(`citadel-mesh-psk\0${low}\0${high}`).digest("base64");
  };
}

/** A hub of a hub network relays between spokes: it forwards IP packets (and must not forward out of the mesh). */
export function relays(network: { topology: string }, node: { hub: number }): boolean {
  return network.topology === "hub" && node.hub === 1;
}
