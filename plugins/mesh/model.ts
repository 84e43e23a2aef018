/** Request and response schemas of the mesh API (validation and the OpenAPI document). */
import { t } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const Iso = t.String({ format: "date-time" });
const Label = t.String({ minLength: 1, maxLength: 63, description: "Lower-case letters, digits and dashes" });
const Tags = t.Array(Label, { maxItems: 64 });
// The count is the service's to check (MAX_ROUTES_PER_NODE), with a message that says the limit.
// 0.0.0.0/0 and ::/0 together are an exit node's (exits.ts), outside that count.
const Routes = (description: string) => t.Array(t.String({ maxLength: 64 }), { maxItems: 256, description });

/** How long an agent's exit_refused may be (its own text, shown to operators). */
export const EXIT_REFUSED_MAX_LENGTH = 1000;

export const Done = t.Object({ ok: t.Literal(true) });

export const Network = t.Object({
  id: t.String(),
  organization: t.String(),
  name: t.String(),
  ipv4: t.String({ description: "The IPv4 pool (private or shared address space)" }),
  ipv6: t.String({ description: "The IPv6 ULA prefix; a node's IPv6 address has its IPv4 host number" }),
  listen_port: Integer(),
  mtu: Integer(),
  keepalive: Integer({ description: "PersistentKeepalive seconds; 0: off" }),
  topology: t.Union([t.Literal("mesh"), t.Literal("hub")]),
  dns: t.Array(t.String(), { description: "Resolvers written into nodes' wg-quick configs" }),
  interface_name: t.String(),
  preshared_keys: t.Boolean({ description: "Each pair of peers has a preshared key (derived from a keyring-encrypted seed)" }),
  domain: t.Union([t.String(), t.Null()], { description: "Nodes are named <node>.<domain> in DNS" }),
  version: Integer({ description: "Bumped on every change that can change a node's config" }),
  acl_version: Integer({ description: "0: no ACL was ever set, every node reaches every node" }),
  nodes: Integer(),
  created_at: Iso,
  updated_at: Iso,
});
export const NetworkList = t.Object({ items: t.Array(Network) });

const NetworkSettings = {
  listen_port: t.Optional(Integer({ minimum: 1, maximum: 65_535 })),
  mtu: t.Optional(Integer({ minimum: 1280, maximum: 9000 })),
  keepalive: t.Optional(Integer({ minimum: 0, maximum: 3600 })),
  topology: t.Optional(t.Union([t.Literal("mesh"), t.Literal("hub")], { description: "mesh: allowed pairs peer directly; hub: spokes peer with hubs, the first hub relays" })),
  dns: t.Optional(t.Array(t.String({ maxLength: 64 }), { maxItems: 4 })),
  interface_name: t.Optional(t.String({ minLength: 1, maxLength: 15 })),
  preshared_keys: t.Optional(t.Boolean()),
};

export const NewNetwork = t.Object({
  name: Label,
  ipv4: t.Optional(t.String({ maxLength: 18, description: "Default: the first free /16 of 100.64.0.0/10" })),
  ipv6: t.Optional(t.String({ maxLength: 43, description: "Default: a random ULA /48 (RFC 4193)" })),
  ...NetworkSettings,
});

export const NetworkChanges = t.Object({ ...NetworkSettings, rotate_preshared_keys: t.Optional(t.Boolean({ description: "A new seed: every pair gets a new preshared key" })) });

export const NewPreauthKey = t.Object({
  description: t.Optional(t.String({ maxLength: 200 })),
  reusable: t.Optional(t.Boolean({ description: "Default: single use" })),
  tags: t.Optional(Tags),
  hub: t.Optional(t.Boolean({ description: "Nodes enrolled with it relay in a hub network" })),
  expires_minutes: t.Optional(Integer({ minimum: 1, maximum: 129_600, description: "Default 60" })),
  node_ttl_days: t.Optional(Integer({ minimum: 1, maximum: 3650, description: "Nodes enrolled with it expire after this many days; default: never" })),
});

export const PreauthKey = t.Object({
  id: t.String(),
  prefix: t.String(),
  description: t.Union([t.String(), t.Null()]),
  reusable: t.Boolean(),
  tags: t.Array(t.String()),
  hub: t.Boolean(),
  node_ttl_days: t.Union([t.Number(), t.Null()]),
  expires_at: Iso,
  used: Integer(),
  state: t.Union([t.Literal("usable"), t.Literal("used"), t.Literal("expired"), t.Literal("revoked"), t.Literal("maker_gone")], {
    description: "maker_gone: the member it acts for is deleted, removed from the organization or no longer an admin or owner there; it enrolls nothing until they are given the role back — a removal is final: a key made under a membership that ended stays dead",
  }),
  created_at: Iso,
});
export const PreauthKeyList = t.Object({ items: t.Array(PreauthKey) });
export const CreatedPreauthKey = t.Composite([PreauthKey, t.Object({ key: t.String({ description: "Shown this once: citadel_meshkey_..." }) })]);

export const Node = t.Object({
  id: t.String(),
  network: t.String(),
  name: t.String(),
  fqdn: t.Union([t.String(), t.Null()]),
  tags: t.Array(t.String()),
  ipv4: t.String(),
  ipv6: t.String(),
  public_key: t.String(),
  next_public_key: t.Union([t.String(), t.Null()], { description: "During a key rotation: the key peers accept beside the current one" }),
  endpoint: t.Union([t.String(), t.Null()]),
  listen_port: t.Union([Integer(), t.Null()], { description: "The UDP port it listens on; null: its endpoint's port, else the network's" }),
  hub: t.Boolean(),
  advertised_routes: t.Array(t.String(), { description: "Subnet routes the node offers" }),
  approved_routes: t.Array(t.String(), { description: "Subnet routes an operator approved for it (in effect while advertised)" }),
  pending_routes: t.Array(t.String(), { description: "Advertised, not approved: not in effect" }),
  primary_routes: t.Array(t.String(), { description: "Routes in effect this node serves" }),
  standby_routes: t.Array(t.String(), { description: "Routes in effect another node offering them serves: this one takes over when that one goes offline or away" }),
  masquerade_routes: t.Boolean({ description: "Its agent masquerades what it forwards from the mesh to the routes it serves: hosts there see the router's address and need no route back" }),
  exit_node: t.Boolean({ description: "An exit node in effect: it offers 0.0.0.0/0 and ::/0, an operator approved them, it is active (and a hub, in a hub network)" }),
  exit_via: t.Union([t.String(), t.Null()], { description: "The exit node it chose (its own request) to send its internet traffic through; null: none" }),
  exit_refused: t.Union([t.String(), t.Null()], {
    description: "Its agent's report: why its host does not route through the exit node it chose (another agent of the host does; it takes over once that one lets go); null: not refused, or no exit node chosen",
  }),
  exit_via_usable: t.Boolean({ description: "Its choice is usable now (an exit node in effect, and the ACL lets it reach autogroup:internet); false with a choice: its internet traffic is blocked, not sent out directly" }),
  state: t.Union([t.Literal("active"), t.Literal("disabled"), t.Literal("expired")]),
  expires_at: t.Union([Iso, t.Null()]),
  applied_version: Integer({ description: "The network version its agent last applied" }),
  last_seen_at: t.Union([Iso, t.Null()], { description: "When its agent last asked for its config (or made another request with its token)" }),
  online: t.Boolean({ description: "Its agent asked for its config within [mesh] router_offline_after_seconds (a node not heard from since Citadel started or was unsealed counts as online for that long)" }),
  created_at: Iso,
});
export const NodeList = t.Object({ items: t.Array(Node) });

// The range is the service's to check: a union's schema error says only "Expected union value".
const NodeListenPort = t.Union([Integer(), t.Null()], {
  description: "The UDP port it listens on, 1–65535 (behind a port forward from another number; a host in two networks); null: its endpoint's port, else the network's",
});

export const NodeChanges = t.Object({
  tags: t.Optional(Tags),
  disabled: t.Optional(t.Boolean()),
  hub: t.Optional(t.Boolean()),
  endpoint: t.Optional(t.Union([t.String({ maxLength: 300 }), t.Null()])),
  listen_port: t.Optional(NodeListenPort),
  expires_at: t.Optional(t.Union([t.String({ maxLength: 40 }), t.Null()], { description: "An RFC 3339 date-time with its offset (2026-12-31T00:00:00Z); null: never" })),
  cancel_rotation: t.Optional(t.Boolean({ description: "true: call off the node's key rotation (peers drop its next key); disabling a node does too" })),
  approved_routes: t.Optional(Routes("The subnet routes approved for it (replaces them; [] revokes every approval); in effect while it advertises them")),
  masquerade_routes: t.Optional(t.Boolean({ description: "true: its agent masquerades what it forwards from the mesh to the routes it serves (the LAN needs no route back to the mesh); false: off" })),
});

const Rule = t.Object({
  src: t.Array(t.String({ maxLength: 80 }), { minItems: 1, maxItems: 256, description: '"*", "tag:<name>" or "node:<name>"' }),
  dst: t.Array(t.String({ maxLength: 80 }), { minItems: 1, maxItems: 256 }),
  ports: t.Array(t.String({ maxLength: 20 }), { minItems: 1, maxItems: 256, description: '"*", "22", "8000-8100", "tcp/5432", "udp/53", "icmp"' }),
});
export const Policy = t.Object({ rules: t.Array(Rule, { maxItems: 1000 }) }, { description: "Deny by default: what no rule allows is refused, everything when there are no rules" });
/** A policy, or none (null): every node reaches every node. */
const PolicyOrNone = t.Union([Policy, t.Null()], { description: "null: no policy (never set, or removed), every node reaches every node" });
export const Acl = t.Object({ network: t.String(), version: Integer(), policy: PolicyOrNone, updated_at: t.Union([Iso, t.Null()]), updated_by: t.Union([t.String(), t.Null()]) });
export const AclQuery = t.Object({ expected_version: t.Optional(t.Integer({ minimum: 0, description: "Refuse (412) when the ACL is no longer at this version" })) });
export const SetAcl = t.Object({ policy: Policy, expected_version: t.Optional(Integer({ minimum: 0, description: "Refuse (412) when the ACL is no longer at this version" })) });
export const AclHistory = t.Object({ items: t.Array(t.Object({ version: Integer(), policy: PolicyOrNone, created_at: Iso, created_by: t.Union([t.String(), t.Null()]) })) });

export const ConfigQuery = t.Object({ format: t.Optional(t.Union([t.Literal("wg-quick"), t.Literal("setconf"), t.Literal("nftables"), t.Literal("json")], { default: "wg-quick" })) });

// --- the node's side -----------------------------------------------------------------------

export const Enrollment = t.Object({
  key: t.String({ maxLength: 100, description: "The pre-auth key" }),
  name: Label,
  public_key: t.String({ maxLength: 64, description: "The node's WireGuard public key; the private key stays on the node" }),
  endpoint: t.Optional(t.Union([t.String({ maxLength: 300 }), t.Null()])),
  listen_port: t.Optional(NodeListenPort),
  tags: t.Optional(Tags),
  advertise_routes: t.Optional(Routes("Subnet routes this node offers (pending until an operator approves them)")),
});

export const Enrolled = t.Object({
  node: Node,
  token: t.String({ description: "The node's own token (citadel_node_...), shown once: the agent authenticates with it" }),
  signing_key: t.String({ description: "The control plane's Ed25519 public key (base64): configs are signed with it" }),
  document: t.String({ description: "The node's first config document (JSON), signed" }),
  signature: t.String(),
});

export const Applied = t.Object({
  version: Integer({ minimum: 0 }),
  public_key: t.String({ maxLength: 64 }),
  exit_refused: t.Optional(
    t.Union([t.String({ maxLength: EXIT_REFUSED_MAX_LENGTH }), t.Null()], {
      description: "Why the agent does not route through the exit node its node chose (another agent of its host does: one per host); null: it does. Absent: left as last reported",
    }),
  ),
});
export const AppliedResult = t.Object({ rotation: t.Union([t.Literal("completed"), t.Literal("pending"), t.Null()]) });
export const Rotate = t.Object({ public_key: t.String({ maxLength: 64, description: "The next public key" }) });
export const AdvertiseRoutes = t.Object({ routes: Routes("Every subnet route this node offers (replaces them; [] withdraws all)") });
export const AdvertisedRoutes = t.Object({
  advertised_routes: t.Array(t.String()),
  approved_routes: t.Array(t.String()),
  pending_routes: t.Array(t.String(), { description: "Waiting for an operator's approval" }),
});
export const ChooseExitNode = t.Object({
  exit_node: t.Union([t.String({ minLength: 1, maxLength: 63 }), t.Null()], { description: "The exit node (name or id) to send this node's internet traffic through; null: none" }),
});
export const ExitNodeChoice = t.Object({ exit_node: t.Union([t.String(), t.Null()]) });
export const RotateResult = t.Object({ rotation: t.Literal("pending"), version: Integer() });
