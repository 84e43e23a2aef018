/**
 * 0005: a policy without rules now denies everything (found in review: it allowed all). Versions
 * stored empty were set when that meant "every node reaches every node": the upgrade makes them
 * "no policy" (JSON null), so that no network's reachability changes under its operators.
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { meshMigrations } from "../../../plugins/mesh/migrations.ts";
import { migrate } from "../../../src/store/migrate.ts";

test("0005: ACL versions stored without rules become no policy; the others stay as they were", () => {
  const db = new Database(":memory:");
  try {
    const before = meshMigrations.findIndex((m) => m.id === "0005_mesh_acl_none");
    migrate(db, [{ owner: "mesh", migrations: meshMigrations.slice(0, before) }]);
    db.run(`INSERT INTO mesh_networks (id, organization_id, name, ipv4, ipv6, listen_port, mtu, keepalive, topology, dns, interface_name, version, acl_version, created_at, updated_at)
            VALUES ('net_1', 'org_1', 'office', '100.64.0.0/16', 'fd00::/48', 51820, 1420, 25, 'mesh', '[]', 'wgc-office', 3, 2, 0, 0)`);
    const rule = JSON.stringify({ rules: [{ src: ["*"], dst: ["*"], ports: ["22"] }] });
    const insert = db.query("INSERT INTO mesh_acl_versions (network_id, version, policy, created_at) VALUES ('net_1', ?, ?, 0)");
    insert.run(1, rule);
    insert.run(2, JSON.stringify({ rules: [] }));

    migrate(db, [{ owner: "mesh", migrations: meshMigrations }]);
    expect(db.query("SELECT version, policy FROM mesh_acl_versions ORDER BY version").all()).toEqual([
      { version: 1, policy: rule },
      { version: 2, policy: "null" },
    ]);
  } finally {
    db.close();
  }
});
