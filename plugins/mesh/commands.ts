/**
 * CLI: the operator's side (networks, keys, nodes, acl, config) talks to the API with the
 * stored login; the node's side (join, agent, rotate) is in node-commands.ts. The organization
 * is --org, else the user's only one.
 */
import { UsageError } from "../../src/cli/command-line.ts";
import { choiceOption, fileOrStdinText, integerOption, needArgs, organizationOf, print, table } from "../../src/cli/output.ts";
import { keyPinOf } from "../../src/cli/pin.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";
import { nodeCommands } from "./node-commands.ts";
import { parseDateTime } from "./times.ts";
import { INTERFACE_NAME_RULE, isInterfaceName } from "./types.ts";

const ORG = { org: { type: "string", description: "The organization (org_...); default: your only one" } } as const;

interface NetworkView {
  id: string;
  name: string;
  ipv4: string;
  ipv6: string;
  listen_port: number;
  topology: string;
  preshared_keys: boolean;
  domain: string | null;
  version: number;
  acl_version: number;
  nodes: number;
}

interface KeyView {
  id: string;
  prefix: string;
  reusable: boolean;
  tags: string[];
  hub: boolean;
  expires_at: string;
  used: number;
  state: string;
  key?: string;
}

interface NodeView {
  id: string;
  name: string;
  fqdn: string | null;
  tags: string[];
  ipv4: string;
  ipv6: string;
  public_key: string;
  next_public_key: string | null;
  endpoint: string | null;
  listen_port: number | null;
  hub: boolean;
  /** Absent from a server older than subnet routes. */
  primary_routes?: string[];
  pending_routes?: string[];
  /** Absent from a server older than failover on liveness. */
  standby_routes?: string[];
  online?: boolean;
  /** Absent from a server older than masquerade. */
  masquerade_routes?: boolean;
  /** Absent from a server older than exit nodes. */
  exit_node?: boolean;
  exit_via?: string | null;
  exit_via_usable?: boolean;
  /** Absent from a server older than the report of it. */
  exit_refused?: string | null;
  state: string;
  applied_version: number;
  last_seen_at: string | null;
}

const base = (org: string) => `/v1/mesh/orgs/${encodeURIComponent(org)}/networks`;
const networkPath = (org: string, network: string, rest = "") => `${base(org)}/${encodeURIComponent(network)}${rest}`;
/** The node named by the arguments `<network> <node>`. */
const nodePath = (org: string, ctx: CommandContext, rest = "") => networkPath(org, ctx.args[0]!, `/nodes/${encodeURIComponent(ctx.args[1]!)}${rest}`);

async function client(ctx: CommandContext) {
  const api = await ctx.api();
  return { api, org: await organizationOf(ctx, api) };
}

/** A comma-separated list; empty is the empty list (clears tags or resolvers, as --endpoint "" clears the endpoint). */
const csv = (value: string | boolean | undefined) => (typeof value === "string" ? value.split(",").map((s) => s.trim()).filter(Boolean) : undefined);

const networkLine = (n: NetworkView) => `${n.name}: ${n.ipv4} ${n.ipv6}, port ${n.listen_port}, ${n.topology}${n.preshared_keys ? ", preshared keys" : ""}; ${n.nodes} node(s); version ${n.version}, ACL ${n.acl_version || "none"}${n.domain ? `; names *.${n.domain}` : ""}`;

/** Its endpoint, and the port it listens on when that is set for it (not the endpoint's or the network's). */
function endpointColumn(n: NodeView): string {
  if (n.listen_port === null) return n.endpoint ?? "-";
  return n.endpoint === null ? `listens on ${n.listen_port}` : `${n.endpoint}, listens on ${n.listen_port}`;
}

/**
 * The subnet routes it serves, then those it stands by for (another node serves them), those
 * waiting for approval (an exit node's 0.0.0.0/0,::/0 among them), whether it is an exit node,
 * and the exit node it uses.
 */
function routesColumn(n: NodeView): string {
  const parts = [...(n.primary_routes ?? []), ...(n.standby_routes ?? []).map((route) => `${route} (standby)`), ...(n.pending_routes ?? []).map((route) => `${route} (pending)`)];
  const notes = [
    ...(n.masquerade_routes ? ["masquerading"] : []),
    ...(n.exit_node ? ["exit node"] : []),
    ...(n.exit_via ? [`exit via ${n.exit_via}${n.exit_via_usable ? "" : " (not usable: blocked)"}${n.exit_refused ? " (refused on its host: exit_refused in --json says why)" : ""}`] : []),
  ];
  return [parts.join(",") || "-", ...notes].join(", ");
}

/** Active, disabled or expired; for an active node, whether its agent is heard from (a router offline hands its routes over), and a key rotation. */
function stateColumn(n: NodeView): string {
  const heard = n.state === "active" && n.online !== undefined ? (n.online ? ", online" : ", offline") : "";
  return n.state + heard + (n.next_public_key ? ", rotating" : "");
}

function nodeTable(nodes: NodeView[]): string {
  if (nodes.length === 0) return "no nodes";
  return table([
    ["NODE", "IPV4", "IPV6", "TAGS", "STATE", "ENDPOINT", "ROUTES", "APPLIED", "KEY"],
    ...nodes.map((n) => [n.name + (n.hub ? " (hub)" : ""), n.ipv4, n.ipv6, n.tags.join(",") || "-", stateColumn(n), endpointColumn(n), routesColumn(n), `v${n.applied_version}`, n.public_key.slice(0, 10) + "…"]),
  ]);
}

const NETWORK_OPTIONS = {
  ...ORG,
  port: { type: "string", description: "UDP listen port (default 51820)" },
  mtu: { type: "string", description: "MTU (default 1420)" },
  keepalive: { type: "string", description: "PersistentKeepalive seconds, 0 off (default 25)" },
  topology: { type: "string", description: "mesh (default) or hub" },
  dns: { type: "string", description: "Resolver addresses for the nodes' wg-quick configs, comma-separated (empty: none)" },
  interface: { type: "string", description: "The interface name on nodes (default wgc-<name>)" },
  psk: { type: "boolean", description: "Preshared keys for every pair of peers" },
} as const;

/** --format, else wg-quick; --json asks for the json format, and refuses another. */
function configFormat(ctx: CommandContext): string {
  const format = choiceOption(ctx, "format", ["wg-quick", "setconf", "nftables", "json"]);
  if (ctx.json && format !== undefined && format !== "json") throw new UsageError(`--json with --format ${format}: give one`);
  return format ?? (ctx.json ? "json" : "wg-quick");
}

/** Two flags that say opposite things: refused rather than one of them silently winning. */
function refuseBoth(ctx: CommandContext, a: string, b: string): void {
  if (ctx.options[a] === true && ctx.options[b] === true) throw new UsageError(`--${a} and --${b} say opposite things: give one`);
}

/** --expires: an RFC 3339 date-time with its offset, as the server takes it, or "never" (null). */
function expiresOption(value: string): string | null {
  if (value === "never") return null;
  if (parseDateTime(value) === null) throw new UsageError("--expires: an ISO 8601 time with its offset, such as 2026-12-31T00:00:00Z (RFC 3339), or never");
  return value;
}

/** --listen-port: a port, or empty for none (null: the endpoint's port, else the network's). */
function listenPortOption(ctx: CommandContext): number | null | undefined {
  return ctx.options["listen-port"] === "" ? null : integerOption(ctx, "listen-port", 1, 65_535);
}

function networkSettings(ctx: CommandContext): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const port = integerOption(ctx, "port", 1, 65_535);
  if (port !== undefined) body.listen_port = port;
  const mtu = integerOption(ctx, "mtu", 1280, 9000);
  if (mtu !== undefined) body.mtu = mtu;
  const keepalive = integerOption(ctx, "keepalive", 0, 3600);
  if (keepalive !== undefined) body.keepalive = keepalive;
  const topology = choiceOption(ctx, "topology", ["mesh", "hub"]);
  if (topology !== undefined) body.topology = topology;
  const dns = csv(ctx.options.dns);
  if (dns) body.dns = dns;
  if (typeof ctx.options.interface === "string") {
    if (!isInterfaceName(ctx.options.interface)) throw new UsageError(`--interface: ${INTERFACE_NAME_RULE}`);
    body.interface_name = ctx.options.interface;
  }
  if (ctx.options.psk === true) body.preshared_keys = true;
  return body;
}

/**
 * The join command for a node: this server's URL, unless it is a loopback address a node
 * elsewhere cannot reach, and the public key pin of a pinned (self-signed) certificate, without
 * which the node could not trust it.
 */
function joinCommand(api: { baseUrl: string; pinned?: string }): string {
  const host = new URL(api.baseUrl).hostname;
  const loopback = host === "localhost" || host === "[::1]" || host.startsWith("127.");
  const server = loopback ? "https://<this server, as the node reaches it>:" + (new URL(api.baseUrl).port || "443") : api.baseUrl;
  const pin = api.pinned ? ` --fingerprint ${keyPinOf(api.pinned)}` : "";
  return `citadel mesh join --server ${server} --key <the key above>${pin}`;
}

export const meshCommands: Command[] = [
  {
    words: ["mesh", "networks"],
    summary: "The organization's mesh networks",
    options: ORG,
    async run(ctx) {
      const { api, org } = await client(ctx);
      const list = await api.request<{ items: NetworkView[] }>("GET", base(org));
      print(ctx, list, list.items.length === 0 ? "no mesh networks" : list.items.map(networkLine).join("\n"));
      return 0;
    },
  },
  {
    words: ["mesh", "networks", "create"],
    summary: "Create a mesh network",
    args: "<name>",
    maxArgs: 1,
    options: { ...NETWORK_OPTIONS, ipv4: { type: "string", description: "IPv4 pool (default: a free /16 of 100.64.0.0/10)" }, ipv6: { type: "string", description: "IPv6 ULA prefix (default: a random /48)" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh networks create <name>");
      const body: Record<string, unknown> = { name: ctx.args[0], ...networkSettings(ctx) };
      if (typeof ctx.options.ipv4 === "string") body.ipv4 = ctx.options.ipv4;
      if (typeof ctx.options.ipv6 === "string") body.ipv6 = ctx.options.ipv6;
      const { api, org } = await client(ctx);
      const n = await api.request<NetworkView>("POST", base(org), body);
      print(ctx, n, `created ${networkLine(n)}`);
      return 0;
    },
  },
  {
    words: ["mesh", "networks", "set"],
    summary: "Change a network's port, MTU, keepalive, topology, DNS or preshared keys",
    args: "<network>",
    maxArgs: 1,
    options: { ...NETWORK_OPTIONS, "no-psk": { type: "boolean", description: "No preshared keys" }, "rotate-psk": { type: "boolean", description: "New preshared keys for every pair" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh networks set <network> [flags]");
      refuseBoth(ctx, "psk", "no-psk");
      refuseBoth(ctx, "no-psk", "rotate-psk");
      const body = networkSettings(ctx);
      if (ctx.options["no-psk"] === true) body.preshared_keys = false;
      if (ctx.options["rotate-psk"] === true) body.rotate_preshared_keys = true;
      if (Object.keys(body).length === 0) throw new UsageError("nothing to change: give --port, --mtu, --keepalive, --topology, --dns, --interface, --psk, --no-psk or --rotate-psk");
      const { api, org } = await client(ctx);
      const n = await api.request<NetworkView>("PATCH", networkPath(org, ctx.args[0]!), body);
      print(ctx, n, networkLine(n));
      return 0;
    },
  },
  {
    words: ["mesh", "networks", "delete"],
    summary: "Remove a network with its nodes, keys and ACL",
    args: "<network>",
    maxArgs: 1,
    options: { ...ORG, yes: { type: "boolean", description: "Confirm" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh networks delete <network> --yes");
      if (ctx.options.yes !== true) throw new UsageError("this removes the network and every node in it: add --yes to confirm");
      const { api, org } = await client(ctx);
      await api.request("DELETE", networkPath(org, ctx.args[0]!), undefined, { confirmed: true });
      print(ctx, { ok: true }, `removed ${ctx.args[0]}`);
      return 0;
    },
  },
  {
    words: ["mesh", "keys"],
    summary: "A network's pre-auth keys",
    args: "<network>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh keys <network>");
      const { api, org } = await client(ctx);
      const list = await api.request<{ items: KeyView[] }>("GET", networkPath(org, ctx.args[0]!, "/keys"));
      const text = list.items.length === 0 ? "no pre-auth keys" : table([["ID", "PREFIX", "USE", "TAGS", "EXPIRES", "USED", "STATE"], ...list.items.map((k) => [k.id, k.prefix, k.reusable ? "reusable" : "single", k.tags.join(",") || "-", k.expires_at, String(k.used), k.state + (k.hub ? " (hub)" : "")])]);
      print(ctx, list, text);
      return 0;
    },
  },
  {
    words: ["mesh", "keys", "create"],
    summary: "Create a pre-auth key for enrolling nodes (shown once)",
    args: "<network>",
    maxArgs: 1,
    options: {
      ...ORG,
      reusable: { type: "boolean", description: "Usable for many nodes (default: once)" },
      tags: { type: "string", description: "Tags the nodes may take, comma-separated" },
      hub: { type: "boolean", description: "Nodes enrolled with it relay (hub networks)" },
      minutes: { type: "string", description: "The key expires after this many minutes (default 60)" },
      "node-days": { type: "string", description: "Nodes enrolled with it expire after this many days (default never)" },
      description: { type: "string", description: "What it is for" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh keys create <network>");
      const { api, org } = await client(ctx);
      const body: Record<string, unknown> = { reusable: ctx.options.reusable === true, hub: ctx.options.hub === true };
      const tags = csv(ctx.options.tags);
      if (tags) body.tags = tags;
      const minutes = integerOption(ctx, "minutes", 1, 129_600);
      if (minutes !== undefined) body.expires_minutes = minutes;
      const days = integerOption(ctx, "node-days", 1, 3650);
      if (days !== undefined) body.node_ttl_days = days;
      if (typeof ctx.options.description === "string") body.description = ctx.options.description;
      const key = await api.request<KeyView>("POST", networkPath(org, ctx.args[0]!, "/keys"), body);
      print(ctx, key, `${key.key}\n(${key.reusable ? "reusable" : "single-use"}, tags ${key.tags.join(",") || "none"}, expires ${key.expires_at}; shown this once)\nOn a node: ${joinCommand(api)}`);
      return 0;
    },
  },
  {
    words: ["mesh", "keys", "revoke"],
    summary: "Revoke a pre-auth key",
    args: "<network> <key id or prefix>",
    maxArgs: 2,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 2, "citadel mesh keys revoke <network> <key>");
      const { api, org } = await client(ctx);
      await api.request("DELETE", networkPath(org, ctx.args[0]!, `/keys/${encodeURIComponent(ctx.args[1]!)}`));
      print(ctx, { ok: true }, `revoked ${ctx.args[1]}`);
      return 0;
    },
  },
  {
    words: ["mesh", "nodes"],
    summary: "A network's nodes",
    args: "<network>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh nodes <network>");
      const { api, org } = await client(ctx);
      const list = await api.request<{ items: NodeView[] }>("GET", networkPath(org, ctx.args[0]!, "/nodes"));
      print(ctx, list, nodeTable(list.items));
      return 0;
    },
  },
  {
    words: ["mesh", "nodes", "set"],
    summary: "Change a node: --tags, --disable/--enable, --hub/--no-hub, --endpoint, --listen-port, --expires, --cancel-rotation, --approved-routes, --masquerade-routes/--no-masquerade-routes",
    args: "<network> <node>",
    maxArgs: 2,
    options: {
      ...ORG,
      tags: { type: "string", description: "Its tags, comma-separated (replaces them; empty: none)" },
      disable: { type: "boolean", description: "Take it out of every config" },
      enable: { type: "boolean", description: "Put it back" },
      hub: { type: "boolean", description: "Make it a hub" },
      "no-hub": { type: "boolean", description: "Make it a spoke" },
      endpoint: { type: "string", description: "host:port others reach it at (empty: none)" },
      "listen-port": { type: "string", description: "The UDP port it listens on (empty: its endpoint's, else the network's)" },
      expires: { type: "string", description: "When it expires (2026-12-31T00:00:00Z, with its offset), or never" },
      "cancel-rotation": { type: "boolean", description: "Call off its key rotation (peers drop its next key)" },
      "approved-routes": { type: "string", description: "The subnet routes approved for it, comma-separated (replaces them; empty: none): in effect while it advertises them" },
      "masquerade-routes": { type: "boolean", description: "Its agent masquerades what it forwards from the mesh to the routes it serves (hosts there need no route back)" },
      "no-masquerade-routes": { type: "boolean", description: "Stop masquerading (hosts there need a route back to the mesh through it)" },
    },
    async run(ctx) {
      needArgs(ctx, 2, "citadel mesh nodes set <network> <node> [flags]");
      refuseBoth(ctx, "enable", "disable");
      refuseBoth(ctx, "hub", "no-hub");
      refuseBoth(ctx, "masquerade-routes", "no-masquerade-routes");
      const body: Record<string, unknown> = {};
      const tags = csv(ctx.options.tags);
      if (tags) body.tags = tags;
      if (ctx.options.disable === true) body.disabled = true;
      if (ctx.options.enable === true) body.disabled = false;
      if (ctx.options.hub === true) body.hub = true;
      if (ctx.options["no-hub"] === true) body.hub = false;
      if (typeof ctx.options.endpoint === "string") body.endpoint = ctx.options.endpoint === "" ? null : ctx.options.endpoint;
      const listenPort = listenPortOption(ctx);
      if (listenPort !== undefined) body.listen_port = listenPort;
      if (typeof ctx.options.expires === "string") body.expires_at = expiresOption(ctx.options.expires);
      if (ctx.options["cancel-rotation"] === true) body.cancel_rotation = true;
      const routes = csv(ctx.options["approved-routes"]);
      if (routes) body.approved_routes = routes;
      if (ctx.options["masquerade-routes"] === true) body.masquerade_routes = true;
      if (ctx.options["no-masquerade-routes"] === true) body.masquerade_routes = false;
      if (Object.keys(body).length === 0) {
        throw new UsageError("nothing to change: give --tags, --disable, --enable, --hub, --no-hub, --endpoint, --listen-port, --expires, --cancel-rotation, --approved-routes, --masquerade-routes or --no-masquerade-routes");
      }
      const { api, org } = await client(ctx);
      const node = await api.request<NodeView>("PATCH", nodePath(org, ctx), body);
      print(ctx, node, nodeTable([node]));
      return 0;
    },
  },
  {
    words: ["mesh", "nodes", "delete"],
    summary: "Remove a node from the network and every peer's config",
    args: "<network> <node>",
    maxArgs: 2,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 2, "citadel mesh nodes delete <network> <node>");
      const { api, org } = await client(ctx);
      await api.request("DELETE", nodePath(org, ctx));
      print(ctx, { ok: true }, `removed ${ctx.args[1]}`);
      return 0;
    },
  },
  {
    words: ["mesh", "acl"],
    summary: "A network's ACL policy (null: none, every node reaches every node); --set FILE replaces it (JSON {rules:[{src,dst,ports}]}, deny by default: no rules, no traffic), --remove removes it, --history lists versions",
    args: "<network>",
    maxArgs: 1,
    options: {
      ...ORG,
      set: { type: "string", description: "A JSON policy file (- for standard input)" },
      remove: { type: "boolean", description: "Remove the policy: every node reaches every node again" },
      history: { type: "boolean", description: "Every version" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel mesh acl <network> [--set FILE | --remove | --history]");
      if ([ctx.options.set !== undefined, ctx.options.remove === true, ctx.options.history === true].filter(Boolean).length > 1) throw new UsageError("give one of --set, --remove and --history");
      const { api, org } = await client(ctx);
      const path = networkPath(org, ctx.args[0]!, "/acl");
      if (ctx.options.history === true) {
        const h = await api.request<{ items: Array<{ version: number; created_at: string; created_by: string | null; policy: { rules: unknown[] } | null }> }>("GET", `${path}/versions`);
        const rules = (policy: { rules: unknown[] } | null) => (policy === null ? "none (all allowed)" : String(policy.rules.length));
        print(ctx, h, h.items.length === 0 ? "no ACL versions (every node reaches every node)" : table([["VERSION", "RULES", "WHEN", "BY"], ...h.items.map((v) => [String(v.version), rules(v.policy), v.created_at, v.created_by ?? ""])]));
        return 0;
      }
      if (ctx.options.remove === true) {
        const acl = await api.request<{ version: number }>("DELETE", path);
        print(ctx, acl, `ACL of ${ctx.args[0]} removed (version ${acl.version}): every node reaches every node`);
        return 0;
      }
      if (typeof ctx.options.set === "string") {
        const text = await fileOrStdinText(ctx.options.set, `--set ${ctx.options.set}`);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (e) {
          // A usage error, as every command's input file that is not what it takes.
          throw new UsageError(`--set ${ctx.options.set === "-" ? "standard input" : ctx.options.set} is not JSON: ${e instanceof Error ? e.message : String(e)}`);
        }
        const policy = parsed && typeof parsed === "object" && "policy" in parsed ? (parsed as { policy: unknown }).policy : parsed;
        const acl = await api.request<{ version: number; policy: { rules: unknown[] } }>("PUT", path, { policy });
        const denyAll = acl.policy.rules.length === 0 ? ": no rules, so no node reaches any other (--remove allows all)" : "";
        print(ctx, acl, `ACL of ${ctx.args[0]} is now version ${acl.version}${denyAll}`);
        return 0;
      }
      const acl = await api.request<{ version: number; policy: unknown }>("GET", path);
      ctx.out(JSON.stringify(ctx.json ? acl : acl.policy, null, 2));
      return 0;
    },
  },
  {
    words: ["mesh", "config"],
    summary: "A node's config as wg-quick (default), setconf, nftables or json — no private or preshared keys",
    args: "<network> <node>",
    maxArgs: 2,
    options: { ...ORG, format: { type: "string", description: "wg-quick, setconf, nftables or json" } },
    async run(ctx) {
      needArgs(ctx, 2, "citadel mesh config <network> <node> [--format F]");
      const format = configFormat(ctx);
      const { api, org } = await client(ctx);
      ctx.out(await api.requestText("GET", nodePath(org, ctx, `/config?format=${encodeURIComponent(format)}`)));
      return 0;
    },
  },
  ...nodeCommands,
];
