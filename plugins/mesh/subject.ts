/**
 * What the mesh holds about an organization (src/subjects.ts): its networks, nodes (public
 * keys, addresses, endpoints), pre-auth keys' metadata and ACL versions. Erasure removes the
 * networks (their nodes, keys and ACLs go with them). Users own nothing here.
 */
import type { Database } from "bun:sqlite";
import type { SubjectContributor } from "../../src/subjects.ts";
import type { OrganizationDeletionHandler } from "../../src/workspace-deletions.ts";
import type { MeshService } from "./service.ts";
import * as sql from "./store.ts";

export function meshSubjects(mesh: MeshService): SubjectContributor {
  return {
    name: "mesh",
    export(subject) {
      if (subject.kind !== "organization") return null;
      const networks = mesh.list(subject.id).items;
      if (networks.length === 0) return null;
      return {
        networks: networks.map((n) => ({
          ...n,
          nodes: mesh.nodes(subject.id, n.id).items,
          preauth_keys: mesh.keys(subject.id, n.id).items,
          acl_versions: mesh.aclHistory(subject.id, n.id).items,
        })),
      };
    },
    erase: (tx, subject) => (subject.kind === "organization" ? deleteNetworksOf(tx, mesh, subject.id) : null),
  };
}

/**
 * What goes of the mesh when iam deletes an organization (src/workspace-deletions.ts): its
 * networks, as their delete route removes them. Their node tokens were still answered and
 * their names stayed in DNS until the periodic check noticed (found in review).
 */
export function meshOrganizationDeletion(mesh: MeshService): OrganizationDeletionHandler {
  return { name: "mesh", deleted: (tx, organizationId) => deleteNetworksOf(tx, mesh, organizationId) };
}

/** Deletes the organization's networks (their nodes, keys and ACLs go with them) inside `tx`; what went, or null. */
function deleteNetworksOf(tx: Database, mesh: MeshService, organizationId: string): string | null {
  const networks = sql.networks(tx, organizationId);
  for (const n of networks) sql.deleteNetwork(tx, n.id);
  // Their nodes' DNS names and cached configs (and tokens) go with them, not at the next mesh change.
  if (networks.length > 0) mesh.removedElsewhere(networks.map((n) => n.id));
  return networks.length === 0 ? null : `${networks.length} network(s) deleted (${networks.map((n) => n.name).join(", ")})`;
}
