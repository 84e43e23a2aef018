/**
 * A node for agent tests, with nothing real touched: a fake device (the runner the agent gives
 * ip, wg and nft, keeping a WireGuard device's state in memory) and a fake control plane on
 * 127.0.0.1 that signs the configs it is given.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigDocument } from "../../../plugins/mesh/configs.ts";
import { CONFIG_FORMAT } from "../../../plugins/mesh/configs.ts";
import { parseSetconf, type CommandResult, type DevicePeer, type RunCommand } from "../../../plugins/mesh/device.ts";
import { generateKeyPair, publicKeyOf } from "../../../plugins/mesh/keys.ts";
import { writeState, type NodeState } from "../../../plugins/mesh/node-state.ts";
import { generateSigningKey, Signer } from "../../../plugins/mesh/signing.ts";
import type { NodeConfig, PeerConfig } from "../../../plugins/mesh/types.ts";
import { parseIp } from "../../../src/net/ip.ts";

const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });

/**
 * One WireGuard interface as `wg` and `ip` show it. `wg syncconf` behaves as wg's does where the
 * agent depends on it: a name in an Endpoint that does not resolve fails the whole file (here
 * every name fails: nothing is looked up), peers the file leaves out are removed, and an
 * endpoint the file does not name is kept.
 */
export class FakeDevice {
  exists = false;
  publicKey: string | null = null;
  listenPort = 0;
  /** Set by others (wg-quick's Table=auto), or by the agent for an exit node (`wg set … fwmark`): `wg syncconf` leaves it alone. */
  fwmark = 0;
  peers: DevicePeer[] = [];
  /** Each file `wg syncconf` was given, as written. */
  readonly synced: string[] = [];
  /** Each script `nft -f -` loaded. */
  readonly firewalls: string[] = [];
  /** How many `wg syncconf` calls fail next (a passing failure). */
  failingSyncs = 0;
  /** The link's alias (`ip link set … alias`; the agent marks the links it makes). */
  alias: string | null = null;
  /** false: a link of another type (the host's eth0), which wg cannot read. */
  wireguard = true;

  constructor(readonly name: string) {}

  readonly run: RunCommand = async (argv, stdin) => {
    const line = argv.join(" ");
    if (line === `ip link show dev ${this.name}`) return this.exists ? ok() : { code: 1, stdout: "", stderr: "Device does not exist." };
    if (line === `ip -j link show dev ${this.name}`) return this.exists ? ok(JSON.stringify([{ ifname: this.name, ...(this.alias === null ? {} : { ifalias: this.alias }) }])) : { code: 1, stdout: "", stderr: "Device does not exist." };
    if (line === `ip link add dev ${this.name} type wireguard`) {
      this.exists = true;
      this.alias = null;
      return ok();
    }
    if (line.startsWith(`ip link set dev ${this.name} alias `)) {
      this.alias = argv[6]!;
      return ok();
    }
    if (argv[0] === "wg" && !this.wireguard) return { code: 1, stdout: "", stderr: `Unable to access interface: Operation not supported` };
    if (line === `wg show ${this.name} dump`) return ok(this.dump());
    if (argv[0] === "wg" && argv[1] === "syncconf") return this.syncconf(readFileSync(argv[3]!, "utf8"));
    if (line.startsWith(`wg set ${this.name} fwmark `)) {
      this.fwmark = argv[4] === "off" ? 0 : Number(argv[4]);
      return ok();
    }
    if (line === `ip -j address show dev ${this.name}`) return ok("[]");
    if (argv[0] === "ip") return ok();
    if (line === "nft -f -") {
      this.firewalls.push(stdin ?? "");
      return ok();
    }
    if (argv[0] === "nft" && argv[1] === "list") return { code: 1, stdout: "", stderr: "No such file or directory" };
    throw new Error(`the fake device does not know: ${line}`);
  };

  private dump(): string {
    const peers = this.peers.map((p) => [p.publicKey, p.presharedKey ?? "(none)", p.endpoint ?? "(none)", p.allowedIps.join(",") || "(none)", p.latestHandshake, 0, 0, p.keepalive || "off"].join("\t"));
    return [["(hidden)", this.publicKey ?? "(none)", this.listenPort, this.fwmark === 0 ? "off" : `0x${this.fwmark.toString(16)}`].join("\t"), ...peers, ""].join("\n");
  }

  private async syncconf(text: string): Promise<CommandResult> {
    if (this.failingSyncs > 0) {
      this.failingSyncs--;
      return { code: 1, stdout: "", stderr: "Resource temporarily unavailable" };
    }
    this.synced.push(text);
    const parsed = parseSetconf(text);
    for (const peer of parsed.peers) {
      const host = peer.endpoint?.slice(0, peer.endpoint.lastIndexOf(":"));
      if (host !== undefined && !host.startsWith("[") && parseIp(host) === null) {
        return { code: 1, stdout: "", stderr: `Name or service not known: \`${peer.endpoint}'\nConfiguration parsing error` };
      }
    }
    if (parsed.privateKey !== null) this.publicKey = await publicKeyOf(parsed.privateKey);
    if (parsed.listenPort !== null) this.listenPort = parsed.listenPort;
    const before = new Map(this.peers.map((p) => [p.publicKey, p]));
    this.peers = parsed.peers.map((p) => ({
      publicKey: p.publicKey,
      presharedKey: p.presharedKey,
      endpoint: p.endpoint ?? before.get(p.publicKey)?.endpoint ?? null,
      allowedIps: p.allowedIps,
      latestHandshake: before.get(p.publicKey)?.latestHandshake ?? 0,
      transferRx: 0,
      transferTx: 0,
      keepalive: p.keepalive,
    }));
    return ok();
  }
}

/** A peer of the node under test, with a real key (wg's parser wants one). */
export async function peer(name: string, host: number, endpoint: string | null): Promise<PeerConfig> {
  return { name, publicKey: (await generateKeyPair()).publicKey, nextPublicKey: null, presharedKey: null, allowedIps: [`100.64.0.${host}/32`], endpoint, keepalive: 25 };
}

/** An answer to the node's requests: a problem document, as Citadel answers, unless `contentType` says otherwise (a proxy's page: `body` as text). */
export type Answer = { status: number; body?: unknown; contentType?: string; headers?: Record<string, string> };

/**
 * The control plane's node routes on 127.0.0.1: the config poll answers what `answer` says
 * (a config given to `publish` is signed and served, with its ETag), reports are recorded.
 */
export class FakeControlPlane {
  readonly signingKey = generateSigningKey();
  private readonly signer = new Signer(this.signingKey.privateKeyDer);
  private readonly server: ReturnType<typeof Bun.serve>;
  private version = 0;
  private document: { body: string; signature: string; etag: string } | null = null;
  /** What the next polls get instead of the config (a refusal, an outage); null: the config. */
  refusal: Answer | null = null;
  readonly polls: string[] = [];
  readonly applied: unknown[] = [];
  /** Each enrollment's request body (`citadel mesh join`): answered with the published config. */
  readonly enrollments: Array<{ name: string; public_key: string }> = [];
  /** The answer to a report (POST /node/applied) instead of `{ rotation: null }`; null: that. */
  appliedAnswer: ((report: { version: number; public_key: string }) => Answer | null) | null = null;
  /** Changes each enrollment's answer before it is sent (a stripped signature, a newer format). */
  alterEnrollment: ((answer: Record<string, unknown>) => void) | null = null;

  /** `tls`: served over HTTPS with that certificate (a self-signed control plane a node pins). */
  constructor(
    readonly nodeId = "node_a",
    private readonly tls?: { certPem: string; keyPem: string },
  ) {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => this.answer(request), ...(tls ? { tls: { cert: tls.certPem, key: tls.keyPem } } : {}) });
  }

  get url(): string {
    return `${this.tls ? "https" : "http"}://127.0.0.1:${this.server.port}`;
  }

  /** Serves `config` as the node's next version, asking agents to poll every `pollSeconds`. */
  publish(config: NodeConfig, { pollSeconds = 30, rotation = null }: { pollSeconds?: number; rotation?: ConfigDocument["rotation"] } = {}): ConfigDocument {
    const doc: ConfigDocument = { format: CONFIG_FORMAT, node: this.nodeId, network: "net_a", version: ++this.version, poll_seconds: pollSeconds, config, relay: false, rotation };
    const body = JSON.stringify(doc);
    this.document = { body, signature: this.signer.sign(body), etag: `"${this.version}"` };
    return doc;
  }

  /** The control plane's signature over `body`. */
  sign(body: string): string {
    return this.signer.sign(body);
  }

  get body(): string | null {
    return this.document?.body ?? null;
  }

  stop(): void {
    this.server.stop(true);
  }

  private async answer(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === "/v1/mesh/node/config") this.polls.push(request.headers.get("if-none-match") ?? "");
    if (this.refusal) return refusalResponse(this.refusal);
    if (path === "/v1/mesh/enroll") return this.enroll(request);
    if (path === "/v1/mesh/node/applied") {
      const report = (await request.json()) as { version: number; public_key: string };
      this.applied.push(report);
      const answer = this.appliedAnswer?.(report) ?? null;
      return answer === null ? Response.json({ rotation: null }) : answer.status === 200 ? Response.json(answer.body) : refusalResponse(answer);
    }
    if (path !== "/v1/mesh/node/config" || !this.document) return Response.json({ detail: "No such route.", code: "not_found" }, { status: 404 });
    if (request.headers.get("if-none-match") === this.document.etag) return new Response(null, { status: 304 });
    return new Response(this.document.body, { headers: { etag: this.document.etag, "x-citadel-signature": this.document.signature, "content-type": "application/json" } });
  }

  private async enroll(request: Request): Promise<Response> {
    const body = (await request.json()) as { name: string; public_key: string };
    this.enrollments.push(body);
    if (!this.document) return Response.json({ detail: "No config to enroll with: publish one first.", code: "not_found" }, { status: 404 });
    const node = { id: this.nodeId, name: body.name, network: "office", ipv4: "100.64.0.1", ipv6: "fd7a:115c:a1e0::1", fqdn: null };
    const answer: Record<string, unknown> = { node, token: "citadel_node_test", signing_key: this.signingKey.publicKey, document: this.document.body, signature: this.document.signature };
    this.alterEnrollment?.(answer);
    return Response.json(answer);
  }
}

function refusalResponse({ status, body, contentType, headers }: Answer): Response {
  const text = contentType === undefined ? JSON.stringify(body ?? {}) : String(body ?? "");
  return new Response(text, { status, headers: { "content-type": contentType ?? "application/problem+json", ...headers } });
}

/** The config of the node under test (wgc-test, 100.64.0.1) with these peers. */
export function nodeConfig(peers: PeerConfig[]): NodeConfig {
  return {
    network: { id: "net_a", name: "office", interfaceName: "wgc-test" },
    node: { id: "node_a", name: "a" },
    addresses: ["100.64.0.1/16"],
    listenPort: 51820,
    mtu: 1420,
    dns: [],
    searchDomain: null,
    peers,
    firewall: null,
  };
}

/** A state directory enrolled with `plane`; removed by `remove`. */
export async function enrolledStateDir(plane: FakeControlPlane): Promise<{ dir: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "citadel-agent-"));
  const state: NodeState = {
    server: plane.url,
    certificate: null,
    node_id: plane.nodeId,
    network_id: "net_a",
    network: "office",
    name: "a",
    interface: "wgc-test",
    token: "citadel_node_test",
    signing_key: plane.signingKey.publicKey,
    private_key: (await generateKeyPair()).privateKey,
    next_private_key: null,
    applied_version: 0,
  };
  writeState(dir, state);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
