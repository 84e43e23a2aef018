/** The networks and nodes the planner and renderer tests build on. */
import type { MeshNetwork, MeshNode } from "../../../plugins/mesh/types.ts";

export function meshNetwork(overrides: Partial<MeshNetwork> = {}): MeshNetwork {
  return {
    id: "net-1",
    name: "office",
    ipv4: "100.64.0.0/16",
    ipv6: "fd7a:115c:a1e0::/48",
    listenPort: 51820,
    mtu: 1380,
    keepalive: 25,
    topology: "mesh",
    dns: ["100.64.0.53"],
    searchDomain: "office.mesh.internal",
    interfaceName: "wgc-office",
    ...overrides,
  };
}

/** A node whose host number is `host` in both families; its key a readable stand-in unless given. */
export function meshNode(name: string, host: number, extra: Partial<MeshNode> = {}): MeshNode {
  return {
    id: `id-${name}`,
    name,
    tags: [],
    publicKey: `pub-${name}`,
    nextPublicKey: null,
    ipv4: `100.64.${host >> 8}.${host & 255}`,
    ipv6: `fd7a:115c:a1e0::${host.toString(16)}`,
    endpoint: null,
    hub: false,
    ...extra,
  };
}
