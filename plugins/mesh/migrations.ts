/**
 * The mesh plugin's tables. A network's `version` is bumped in the transaction of every change
 * that can change any node's config (nodes, ACL, settings), so agents' ETags and the server's
 * config cache follow it. Node and pre-auth key secrets are stored as SHA-256 hashes; the
 * preshared-key seed and the control plane's signing key as keyring envelopes.
 */
import type { Migration } from "../../src/store/migrate.ts";

export const meshMigrations: readonly Migration[] = [
  {
    id: "0001_mesh",
    up: `CREATE TABLE mesh_networks (
      id              TEXT PRIMARY KEY,
      organization_id TEXT NOT NULL,
      name            TEXT NOT NULL,
      ipv4            TEXT NOT NULL,              -- the pool, "100.64.0.0/16"
      ipv6            TEXT NOT NULL,              -- the ULA prefix, "fd12:3456:789a::/48"
      listen_port     INTEGER NOT NULL,
      mtu             INTEGER NOT NULL,
      keepalive       INTEGER NOT NULL,
      topology        TEXT NOT NULL CHECK (topology IN ('mesh', 'hub')),
      dns             TEXT NOT NULL,              -- JSON array of resolver addresses
      interface_name  TEXT NOT NULL,
      psk_seed        BLOB,                       -- keyring envelope; NULL: no preshared keys
      version         INTEGER NOT NULL,           -- bumped on every change that changes a config
      acl_version     INTEGER NOT NULL DEFAULT 0, -- 0: no ACL (everyone reaches everyone)
      created_at      INTEGER NOT NULL,
      updated_at      INTEGER NOT NULL,
      UNIQUE (name)                               -- it names a DNS domain: unique across Citadel
    ) STRICT;

    CREATE TABLE mesh_acl_versions (
      network_id TEXT NOT NULL REFERENCES mesh_networks (id) ON DELETE CASCADE,
      version    INTEGER NOT NULL,
      policy     TEXT NOT NULL,                   -- JSON {rules: [...]}
      created_by TEXT,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (network_id, version)
    ) STRICT;

    CREATE TABLE mesh_preauth_keys (
      id           TEXT PRIMARY KEY,
      network_id   TEXT NOT NULL REFERENCES mesh_networks (id) ON DELETE CASCADE,
      prefix       TEXT NOT NULL UNIQUE,
      hash         BLOB NOT NULL,
      description  TEXT,
      reusable     INTEGER NOT NULL,
      tags         TEXT NOT NULL,                 -- JSON array: the tags nodes enrolled with it may take
      hub          INTEGER NOT NULL,              -- nodes enrolled with it relay (hub networks)
      node_ttl     INTEGER,                       -- seconds a node enrolled with it lives; NULL: until removed
      expires_at   INTEGER NOT NULL,
      used         INTEGER NOT NULL DEFAULT 0,
      revoked_at   INTEGER,
      created_by   TEXT,
      created_at   INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE mesh_nodes (
      id                  TEXT PRIMARY KEY,
      network_id          TEXT NOT NULL REFERENCES mesh_networks (id) ON DELETE CASCADE,
      name                TEXT NOT NULL,
      tags                TEXT NOT NULL,          -- JSON array
      host                INTEGER NOT NULL,       -- host number in the pool: both addresses derive from it
      public_key          TEXT NOT NULL UNIQUE,
      next_public_key     TEXT UNIQUE,            -- during a key rotation
      rotation_version    INTEGER,                -- the network version that announced next_public_key
      rotation_started_at INTEGER,
      endpoint            TEXT,
      hub                 INTEGER NOT NULL,
      disabled            INTEGER NOT NULL DEFAULT 0,
      expires_at          INTEGER,
      token_prefix        TEXT NOT NULL UNIQUE,
      token_hash          BLOB NOT NULL,
      preauth_key_id      TEXT,
      applied_version     INTEGER NOT NULL DEFAULT 0,
      last_seen_at        INTEGER,
      created_at          INTEGER NOT NULL,
      updated_at          INTEGER NOT NULL,
      UNIQUE (network_id, name),
      UNIQUE (network_id, host)
    ) STRICT;
    CREATE INDEX mesh_nodes_by_network ON mesh_nodes (network_id);

    CREATE TABLE mesh_signing_key (
      id          INTEGER PRIMARY KEY CHECK (id = 1),
      public_key  TEXT NOT NULL,                  -- base64 of the raw 32-byte Ed25519 key
      private_key BLOB NOT NULL,                  -- keyring envelope of the PKCS#8 DER
      created_at  INTEGER NOT NULL
    ) STRICT;`,
  },
  {
    id: "0002_mesh_expiry_noted",
    // When a node's expiry was acted on (its networks got a new version, it was audited): kept
    // in the database, so that a restart does not act on every past expiry again.
    up: `ALTER TABLE mesh_nodes ADD COLUMN expiry_noted_at INTEGER;`,
  },
  {
    id: "0003_mesh_last_host",
    // The host number given last in each network, so addresses are handed out in turn and a
    // removed node's address is not given to the next node at once (plugins/mesh/addresses.ts).
    up: `ALTER TABLE mesh_networks ADD COLUMN last_host INTEGER NOT NULL DEFAULT 0;
    UPDATE mesh_networks SET last_host = COALESCE((SELECT MAX(host) FROM mesh_nodes WHERE network_id = mesh_networks.id), 0);`,
  },
  {
    id: "0004_mesh_node_listen_port",
    // The port a node listens on when it is not its endpoint's nor the network's: a host in two
    // networks behind NAT (two interfaces, one port each), or a port forward from another number.
    // NULL: as before (the endpoint's port, else the network's).
    up: `ALTER TABLE mesh_nodes ADD COLUMN listen_port INTEGER CHECK (listen_port BETWEEN 1 AND 65535);`,
  },
  {
    id: "0005_mesh_acl_none",
    // A policy without rules let every node reach every node; it now lets nobody reach anybody
    // (deny by default, as Tailscale and Headscale read an empty one), and a version whose policy
    // is JSON null is "no policy", which allows all. Versions stored empty were set under the old
    // meaning: they become "no policy", so that the upgrade changes no network's reachability.
    up: `UPDATE mesh_acl_versions SET policy = 'null' WHERE json_array_length(policy, '$.rules') = 0;`,
  },
  {
    id: "0006_mesh_node_routes",
    // Subnet routes (plugins/mesh/routes.ts): what the node advertises, what an operator approved
    // (JSON arrays of canonical prefixes). Only a route in both is in effect.
    up: `ALTER TABLE mesh_nodes ADD COLUMN advertised_routes TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE mesh_nodes ADD COLUMN approved_routes TEXT NOT NULL DEFAULT '[]';`,
  },
  {
    id: "0007_mesh_route_primaries",
    // Who serves each subnet route several nodes offer (routes.ts electPrimaries): stored, so that
    // a router going offline moves its routes once, by a change with a new version, and one
    // coming back does not take them back; configs are rendered from it, never from the clock.
    // No foreign key on the node: the row of a node removed is how its routes' hand-over is told
    // (the write that removes it moves them). Empty after the upgrade: a route without a row is
    // served by the node enrolled first, as before; the first check stores that.
    up: `CREATE TABLE mesh_route_primaries (
      network_id TEXT NOT NULL REFERENCES mesh_networks (id) ON DELETE CASCADE,
      route      TEXT NOT NULL,                   -- a canonical prefix
      node_id    TEXT NOT NULL,                   -- the node serving it
      PRIMARY KEY (network_id, route)
    ) STRICT;`,
  },
  {
    id: "0008_mesh_node_masquerade",
    // An operator's choice per node (Tailscale's --snat-subnet-routes): its agent masquerades
    // what it forwards from the mesh to the subnet routes it serves, so the LAN needs no route back.
    up: `ALTER TABLE mesh_nodes ADD COLUMN masquerade_routes INTEGER NOT NULL DEFAULT 0;`,
  },
  {
    id: "0009_mesh_exit_nodes",
    // Exit nodes (plugins/mesh/exits.ts): the node offers the default routes (0.0.0.0/0 and ::/0,
    // together), an operator approves them; a node chooses the exit node it uses (its own
    // token, as Tailscale's --exit-node). No foreign key on the choice: the exit node removed,
    // the choice stays, and the node's internet traffic is blocked, not sent out directly,
    // until it chooses again (fail closed).
    up: `ALTER TABLE mesh_nodes ADD COLUMN exit_advertised INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mesh_nodes ADD COLUMN exit_approved INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mesh_nodes ADD COLUMN exit_node_id TEXT;`,
  },
  {
    id: "0010_mesh_node_exit_refused",
    // The agent's word on the exit node its node chose: why it does not route through it on its
    // host (another agent of that host does: one exit-node user per host), NULL while it does.
    // Reported with the applied version; not a config change (no version bump).
    up: `ALTER TABLE mesh_nodes ADD COLUMN exit_refused TEXT;`,
  },
];
