/** The [mesh] config section: the DNS domain of node names and the timers of key rotation. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const MeshSettings = section("WireGuard mesh: node names in DNS, how agents poll, how long a key rotation waits.", {
  domain: Type.String({
    default: "mesh.internal.",
    maxLength: 200,
    // DNS labels only: the domain goes into every node's wg-quick config (its DNS search line),
    // where a newline would add directives of its own (PostUp runs a shell command as root).
    pattern: "^$|^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?$",
    patternHint: 'a domain name of letters, digits and hyphens, such as "mesh.internal." (or "" for no names)',
    description: 'Nodes are named <node>.<network>.<domain> in the DNS server ("" : no names). ".internal" is reserved for private use (ICANN, 2024).',
  }),
  dns_ttl: Type.Integer({ default: 60, minimum: 0, maximum: 86_400, description: "TTL (seconds) of the nodes' A and AAAA records." }),
  poll_seconds: Type.Integer({ default: 30, minimum: 1, maximum: 3600, description: "How often agents ask for their config (they send its ETag, so an unchanged config costs a 304)." }),
  max_nodes_per_network: Type.Integer({ default: 4096, minimum: 2, maximum: 65_534, description: "Enrollment stops at this many nodes in one network (each change sends every node a new config)." }),
  rotation_wait_minutes: Type.Integer({
    default: 10,
    minimum: 0,
    maximum: 10_080,
    description: "A node rotating its key switches once every peer has applied a config that accepts the new key, or after this many minutes (peers that were offline follow on their next poll).",
  }),
});
export type MeshSettings = Static<typeof MeshSettings>;
