/**
 * The `mesh` plugin: the control plane of a WireGuard mesh. Operators manage networks,
 * pre-auth keys, nodes and the ACL (under /orgs/:org/networks); nodes enroll with a pre-auth
 * key and then speak for themselves with their node token (/enroll, /node/*): they fetch their
 * signed config, report what they applied and rotate their key. Node names are served by the
 * DNS server through the record provider registry.
 */
import { Elysia } from "elysia";
import { subjectsOf } from "../../src/subjects.ts";
import { organizationDeletionsOf } from "../../src/workspace-deletions.ts";
import { meshOrganizationDeletion, meshSubjects } from "./subject.ts";
import { ConflictError } from "../../src/errors.ts";
import { access } from "../../src/http/access.ts";
import { synchronous } from "../../src/http/synchronous.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, requestMeta } from "../../src/http/request-meta.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import type { ProvidedRecord } from "../../src/record-providers.ts";
import { meshCommands } from "./commands.ts";
import { NodeConfigs, relays } from "./configs.ts";
import { meshMigrations } from "./migrations.ts";
import * as m from "./model.ts";
import { renderNftables, renderSetconf, renderWgQuick } from "./render.ts";
import { isActive, MeshService, type Caller } from "./service.ts";
import { carryOverMesh } from "./restore.ts";
import { dnsClientPrefixes, MeshSettings, routerCheckMs } from "./settings.ts";
import { DnsClients, type ServedNode } from "./dns-clients.ts";
import * as sql from "./store.ts";
import { INTERFACE_NAME_RULE, isInterfaceName, type NodeConfig } from "./types.ts";

const ACTIONS = [
  ["mesh.network.create", "A mesh network was created."],
  ["mesh.network.update", "A mesh network's settings changed (port, MTU, keepalive, topology, DNS, preshared keys)."],
  ["mesh.network.delete", "A mesh network and its nodes, keys and ACL were removed."],
  ["mesh.key.create", "A pre-auth key for enrolling nodes was created."],
  ["mesh.key.revoke", "A pre-auth key was revoked."],
  ["mesh.node.enroll", "A node enrolled with a pre-auth key (or was refused, with the reason)."],
  ["mesh.node.update", "A node's tags, state, role, endpoint or expiry changed, or its key rotation was cancelled."],
  ["mesh.node.delete", "A node was removed: it left every peer's config and its addresses are free."],
  ["mesh.node.routes", "A node advertised subnet routes (its own request), or an operator approved or revoked them."],
  ["mesh.node.rotate", "A node started or completed the rotation of its WireGuard key, or one not completed in time was given up."],
  ["mesh.node.expire", "A node reached its expiry: it left every peer's config and DNS."],
  ["mesh.node.exit", "A node chose the exit node it sends its internet traffic through, or none (its own request)."],
  ["mesh.route.failover", "A subnet route moved to another node offering it: its router went offline (its agent stopped polling), or was disabled, expired, removed, made a spoke, or stopped offering the route."],
  ["mesh.restore.revoke", "At the first start after a restore: pre-auth keys revoked or used and nodes removed or disabled after the backup were carried over (nodes disabled); without the previous database, every usable pre-auth key was revoked."],
  ["mesh.acl.update", "A network's ACL policy was replaced (a new version)."],
  ["mesh.acl.delete", "A network's ACL policy was removed (a new version with none): every node reaches every node."],
] as const;

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });

/** The services made per kernel (per store): routes, the record provider and tests share them. */
const instances = new WeakMap<object, { mesh: MeshService; configs: NodeConfigs }>();
export function meshOf(k: Kernel<MeshSettings>): { mesh: MeshService; configs: NodeConfigs } {
  let s = instances.get(k.store);
  if (!s) {
    const mesh = new MeshService(k);
    s = { mesh, configs: new NodeConfigs(k, mesh) };
    instances.set(k.store, s);
  }
  return s;
}

const N = "/orgs/:org/networks";
const NET = `${N}/:network`;
const tags = ["mesh"];
const READ = { scope: "mesh:read", org: "org" } as const;
const WRITE = { scope: "mesh:write", org: "org" } as const;
const ADMIN = { scope: "mesh:admin", org: "org", permission: "manage_members" } as const;

export const meshPlugin = definePlugin<MeshSettings>({
  name: "mesh",
  service: "mesh",
  settings: MeshSettings,
  scopes: ["mesh:read", "mesh:write", "mesh:admin"],
  actions: ACTIONS.map(([type, description]) => ({ type, description })),
  migrations: meshMigrations,

  async start(k) {
    const { mesh } = meshOf(k);
    // Before any node is served: a node removed or a key revoked after the backup must not work a moment.
    const carried = await carryOverMesh(k, mesh, k.config.data_dir);
    if (carried) k.log.warn("mesh: after a restore, pre-auth keys and nodes revoked, used, removed or disabled since the backup were carried over", { ...carried });
    const unregisterSubjects = subjectsOf(k.store).register(meshSubjects(mesh));
    const unregisterDeletion = organizationDeletionsOf(k.store).register(meshOrganizationDeletion(mesh));
    // Expiry is time, not a write: every 15 s (and when a config is asked for), nodes that
    // expired become a change of their networks (a new version for every peer, their names
    // gone from DNS, an audit event). With or without DNS names. An organization deleted
    // meanwhile (another plugin's write) takes its nodes' names out of DNS then too, and key
    // rotations never completed are given up.
    const expiry = setInterval(() => {
      void mesh.expireNodes().catch((e) => k.log.error("mesh: expiring nodes failed", { error: String(e) }));
      void mesh.expireRotations().catch((e) => k.log.error("mesh: giving up key rotations failed", { error: String(e) }));
      mesh.noticeDeletedOrganizations();
    }, 15_000);
    expiry.unref();
    // Subnet routers are judged by their polls: a third of [mesh] router_offline_after_seconds
    // apart, a router gone quiet hands its routes to an online node offering them. Nothing is
    // heard while sealed: the window starts again at the unseal.
    const unwatchUnseal = k.seal.onUnseal(() => mesh.liveness.restart());
    let checking = false;
    const routers = setInterval(() => {
      if (checking) return;
      checking = true;
      void mesh
        .checkRouters()
        .catch((e) => k.log.error("mesh: judging subnet routers failed", { error: String(e) }))
        .finally(() => (checking = false));
    }, routerCheckMs(k.settings));
    routers.unref();
    const domain = k.settings.domain;
    const stopNames = domain === "" ? () => {} : serveNames(k, mesh, domain);
    return async () => {
      unregisterSubjects();
      unregisterDeletion();
      clearInterval(expiry);
      clearInterval(routers);
      unwatchUnseal();
      stopNames();
    };
  },

  routes: (k) => {
    const { mesh, configs } = meshOf(k);
    const authenticate = (request: Request) => {
      try {
        return mesh.authenticateNode(bearer(request));
      } catch (e) {
        k.shield.current?.observe(requestMeta(request).client, "invalid_token");
        throw e;
      }
    };
    // Routes with a body ask twice (before validation, then in the handler): once is checked.
    const authenticated = new WeakMap<Request, sql.NodeRow>();
    const node = (request: Request) => {
      let row = authenticated.get(request);
      if (!row) authenticated.set(request, (row = authenticate(request)));
      return row;
    };
    // Before the body is validated: a caller without a node token learns nothing about the body's shape.
    const nodeFirst = { transform: ({ request }: { request: Request }) => void node(request) };
    return (
      new Elysia({ name: "mesh" })
        // --- networks --------------------------------------------------------------------
        .get(N, ({ params }) => mesh.list(params.org), { response: m.NetworkList, detail: { summary: "The organization's mesh networks", tags, ...access(READ) } })
        .post(N, ({ params, body, request }) => mesh.create(caller(request), params.org, body), {
          body: m.NewNetwork,
          response: m.Network,
          detail: { summary: "Create a mesh network (its names are unique across Citadel: they name DNS domains)", tags, ...access(ADMIN) },
        })
        .get(NET, ({ params }) => mesh.show(params.org, params.network), { response: m.Network, detail: { summary: "A mesh network (by id or name)", tags, ...access(READ) } })
        .patch(NET, ({ params, body, request }) => mesh.update(caller(request), params.org, params.network, body), {
          body: m.NetworkChanges,
          response: m.Network,
          detail: { summary: "Change a network's port, MTU, keepalive, topology, DNS or preshared keys (every node's config follows); its interface name only while it has no nodes", tags, ...access(ADMIN) },
        })
        .delete(
          NET,
          async ({ params, request }) => {
            await mesh.delete(caller(request), params.org, params.network);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a network with its nodes, keys and ACL (asks for confirmation)", tags, ...access({ ...ADMIN, confirm: true }) } },
        )
        // --- pre-auth keys ---------------------------------------------------------------
        .get(`${NET}/keys`, ({ params }) => mesh.keys(params.org, params.network), {
          response: m.PreauthKeyList,
          detail: { summary: "The network's pre-auth keys (never the keys themselves)", tags, ...access(ADMIN) },
        })
        .post(`${NET}/keys`, ({ params, body, request }) => mesh.createKey(caller(request), params.org, params.network, body), {
          body: m.NewPreauthKey,
          response: m.CreatedPreauthKey,
          detail: { summary: "Create a pre-auth key (single-use unless reusable, expiring, tagged); shown once", tags, ...access(ADMIN) },
        })
        .delete(
          `${NET}/keys/:key`,
          async ({ params, request }) => {
            await mesh.revokeKey(caller(request), params.org, params.network, params.key);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Revoke a pre-auth key (nodes enrolled with it stay)", tags, ...access(ADMIN) } },
        )
        // --- nodes -----------------------------------------------------------------------
        .get(`${NET}/nodes`, ({ params }) => mesh.nodes(params.org, params.network), { response: m.NodeList, detail: { summary: "The network's nodes", tags, ...access(READ) } })
        .get(`${NET}/nodes/:node`, ({ params }) => mesh.showNode(params.org, params.network, params.node), { response: m.Node, detail: { summary: "A node (by id or name)", tags, ...access(READ) } })
        .patch(`${NET}/nodes/:node`, ({ params, body, request }) => mesh.updateNode(caller(request), params.org, params.network, params.node, body), {
          body: m.NodeChanges,
          response: m.Node,
          // Admin: tags are what the ACL grants on, and a hub relays every spoke's traffic.
          detail: { summary: "Change a node's tags, disable or enable it, make it a hub, set its endpoint, listen port or expiry, cancel its key rotation, approve its subnet routes", tags, ...access(ADMIN) },
        })
        .delete(
          `${NET}/nodes/:node`,
          async ({ params, request }) => {
            await mesh.deleteNode(caller(request), params.org, params.network, params.node);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a node: it leaves every peer's config, its addresses are free again", tags, ...access({ ...WRITE, permission: "delete" }) } },
        )
        .get(
          `${NET}/nodes/:node/config`,
          ({ params, query }) => {
            const net = mesh.networkRow(params.org, params.network);
            const row = mesh.nodeRow(net, params.node);
            if (!isActive(row, k.clock.now())) throw new ConflictError(`The node ${row.name} is disabled or expired: it has no config.`);
            const config = withoutPresharedKeys(configs.configOf(row));
            const format = query.format ?? "wg-quick";
            if (format === "nftables" && !isInterfaceName(config.network.interfaceName)) {
              throw new ConflictError(`The network's interface name ${JSON.stringify(config.network.interfaceName)} is not usable on a node (${INTERFACE_NAME_RULE}): set another with PATCH interface_name.`);
            }
            const text =
              format === "json" ? JSON.stringify(config, null, 2) : format === "setconf" ? renderSetconf(config) : format === "nftables" ? renderNftables(config, config.network.interfaceName, { relay: relays(net, row) }) : renderWgQuick(config);
            return new Response(text, { headers: { "content-type": format === "json" ? "application/json" : "text/plain; charset=utf-8" } });
          },
          {
            query: m.ConfigQuery,
            detail: {
              summary: "A node's config as wg-quick, wg setconf, nftables or JSON — without its private key (which never leaves the node) and preshared keys (sent to the node only)",
              tags,
              responses: { 200: { description: "The config", content: { "text/plain": { schema: { type: "string" as const } } } } },
              ...access(READ),
            },
          },
        )
        // --- ACL -------------------------------------------------------------------------
        .get(`${NET}/acl`, ({ params }) => mesh.acl(params.org, params.network), { response: m.Acl, detail: { summary: "The ACL policy in force (null: none, every node reaches every node)", tags, ...access(READ) } })
        .put(`${NET}/acl`, ({ params, body, request }) => mesh.setAcl(caller(request), params.org, params.network, body.policy, body.expected_version), {
          body: m.SetAcl,
          response: m.Acl,
          detail: { summary: "Replace the ACL policy (validated, a new version; deny by default — with no rules, nobody reaches anybody)", tags, ...access(ADMIN) },
        })
        .delete(`${NET}/acl`, ({ params, query, request }) => mesh.deleteAcl(caller(request), params.org, params.network, query.expected_version), {
          query: m.AclQuery,
          response: m.Acl,
          detail: { summary: "Remove the ACL policy (a new version with none): every node reaches every node again", tags, ...access(ADMIN) },
        })
        .get(`${NET}/acl/versions`, ({ params }) => mesh.aclHistory(params.org, params.network), {
          response: m.AclHistory,
          detail: { summary: "Every version of the ACL policy, newest first", tags, ...access(READ) },
        })
        // --- the node's side -------------------------------------------------------------
        .post(
          "/enroll",
          async ({ body, request }) => {
            const signingKey = await configs.signingPublicKey();
            const enrolled = await mesh.enroll(auditRequest(request), body);
            const row = sql.nodeById(k.store.db, enrolled.node.id)!;
            const signed = configs.document(row);
            return { ...enrolled, signing_key: signingKey, document: signed.body, signature: signed.signature };
          },
          {
            body: m.Enrollment,
            response: m.Enrolled,
            detail: { summary: "Enroll a node with a pre-auth key and its public key; answers its token and first signed config", tags, ...access({ public: true, authLimit: true }) },
          },
        )
        .get(
          "/node/config",
          // The agents' poll, every few seconds from every node: answered without a promise.
          // Answered through `set`, not as a Response: Elysia merges its headers into a returned
          // Response by building a second one (1 µs of the poll's 2.5 in process).
          synchronous(({ request, set }: { request: Request; set: { status?: number | string; headers: Record<string, string | number> } }) => {
            const row = authenticate(request);
            const signed = configs.document(row);
            set.headers.etag = signed.etag;
            // A 304 carries the Cache-Control its 200 would (RFC 9110 15.4.5): kept, revalidated.
            set.headers["cache-control"] = "no-cache";
            // The poll's usual answer, kept small: the agent holds the body and its signature already.
            if (request.headers.get("if-none-match") === signed.etag) {
              set.status = 304;
              return null;
            }
            set.headers["x-citadel-signature"] = signed.signature;
            set.headers["x-citadel-version"] = String(signed.version);
            set.headers["content-type"] = "application/json";
            return signed.body;
          }),
          {
            detail: {
              summary: "The calling node's config document (node token), signed (x-citadel-signature: Ed25519 over the body); 304 for If-None-Match",
              tags,
              responses: { 200: { description: "The signed config document", content: { "application/json": { schema: { type: "object" as const } } } }, 304: { description: "Unchanged" } },
              // The node and its document come from memory but once per config version.
              ...access({ public: true, ownCredential: "mesh node token", noReadSnapshot: true }),
            },
          },
        )
        .post("/node/applied", ({ body, request }) => mesh.applied(node(request), auditRequest(request), body.version, body.public_key, body.exit_refused), {
          ...nodeFirst,
          body: m.Applied,
          response: m.AppliedResult,
          detail: { summary: "The agent applied a config version with this public key (completes a key rotation)", tags, ...access({ public: true, ownCredential: "mesh node token" }) },
        })
        .post("/node/routes", ({ body, request }) => mesh.advertiseRoutes(node(request), auditRequest(request), body.routes), {
          ...nodeFirst,
          body: m.AdvertiseRoutes,
          response: m.AdvertisedRoutes,
          detail: { summary: "The subnet routes this node offers (replaces them): pending until an operator approves them", tags, ...access({ public: true, authLimit: true, ownCredential: "mesh node token" }) },
        })
        .post("/node/exit-node", ({ body, request }) => mesh.chooseExitNode(node(request), auditRequest(request), body.exit_node), {
          ...nodeFirst,
          body: m.ChooseExitNode,
          response: m.ExitNodeChoice,
          detail: {
            summary: "The exit node this node sends its internet traffic through (an exit node in effect the ACL lets it use: autogroup:internet), or none",
            tags,
            ...access({ public: true, authLimit: true, ownCredential: "mesh node token" }),
          },
        })
        .post("/node/rotate", ({ body, request }) => mesh.startRotation(node(request), auditRequest(request), body.public_key), {
          ...nodeFirst,
          body: m.Rotate,
          response: m.RotateResult,
          detail: { summary: "Start rotating the node's key: peers accept the next key beside the current one", tags, ...access({ public: true, authLimit: true, ownCredential: "mesh node token" }) },
        })
    );
  },
  commands: meshCommands,
});

function bearer(request: Request): string | null {
  const header = request.headers.get("authorization");
  return header?.startsWith("Bearer ") ? header.slice(7).trim() : null;
}

/** The operator's view of a config: preshared keys are for the two nodes only. */
function withoutPresharedKeys(config: NodeConfig): NodeConfig {
  return { ...config, peers: config.peers.map((p) => ({ ...p, presharedKey: null })) };
}

/**
 * `<node>.<network>.<domain>` served by the DNS server, renewed on every change, and each told
 * only to the clients DnsClients allows it (a network's own to its nodes' addresses: those the
 * records hold, read from the same nodes on the same changes); returns the way to stop.
 */
function serveNames(k: Kernel<MeshSettings>, mesh: MeshService, domain: string): () => void {
  // Read once per change, for the records and their clients alike: every node of every network
  // (10,000 of them take tens of milliseconds on the event loop).
  let served = servedNodes(k, mesh);
  const clients = new DnsClients(domain, dnsClientPrefixes(k.settings.dns_clients), () => served, k.log);
  const unregister = k.records.register({
    name: "mesh",
    domain: domain.endsWith(".") ? domain : `${domain}.`,
    records: () => nodeRecords(served, k.settings.dns_ttl),
    mayAsk: (client, name) => clients.allows(client, name),
    viewOf: (client) => clients.viewOf(client),
    views: () => clients.views(),
  });
  const unsubscribe = mesh.onChange(() => {
    served = servedNodes(k, mesh);
    clients.refresh();
    k.records.changed("mesh");
  });
  return () => {
    unsubscribe();
    unregister();
  };
}

interface NamedNode extends ServedNode {
  /** <node>.<network>.<domain>. */
  name: string;
}

/** Every active node whose name is served: of a live organization's network, with its addresses. */
function servedNodes(k: Kernel<MeshSettings>, mesh: MeshService): NamedNode[] {
  const db = k.store.db;
  const now = k.clock.now();
  const out: NamedNode[] = [];
  for (const network of sql.allNetworks(db)) {
    const domain = mesh.domainOf(network);
    if (domain === null || !mesh.organizationLive(network.organization_id)) continue;
    for (const n of sql.nodes(db, network.id)) {
      if (isActive(n, now)) out.push({ network, name: `${n.name}.${domain}.`, ...mesh.addressesOf(network, n.host) });
    }
  }
  return out;
}

/** A and AAAA of every active node: <node>.<network>.<domain>. */
function nodeRecords(nodes: readonly NamedNode[], ttl: number): ProvidedRecord[] {
  return nodes.flatMap(({ name, ipv4, ipv6 }) => [
    { name, type: "A", ttl, data: ipv4 },
    { name, type: "AAAA", ttl, data: ipv6 },
  ]);
}
