/**
 * Split horizon with real sockets: the compiled binary serves DNS in a network namespace whose
 * interface holds addresses of every kind of client — a stranger's, a mesh network's node's
 * (IPv4 and IPv6), another network's node's of the same organization and one of another
 * organization's, one inside a network's prefix that is no node's (a host behind a subnet
 * router), one inside [mesh] dns_clients, a secondary's — and kdig asks from each
 * (`-b`), over UDP and TCP. The mesh's names sit inside a hosted zone (mesh.example.org. in
 * example.org.): the stranger is REFUSED them but still gets the rest of the zone, a network's
 * client is REFUSED the other networks' names, and the secondary still transfers the whole zone,
 * mesh names included.
 *
 * A namespace, because the server sees loopback for any query sent to 127.0.0.1, and loopback
 * is always told: the other sources need addresses of their own, which a test must not add to
 * the host.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BINARY, ensureBinary, ROOT, tempDir } from "../helpers/binary.ts";
import { requireTool } from "../helpers/tools.ts";

const tools = [requireTool("ip", "iproute2"), requireTool("kdig", "knot-dnsutils")];
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === "true") throw new Error("the split-horizon test needs root (a network namespace); CI runs as root");
const runnable = isRoot && tools.every((t) => t !== null);

const NS = `csh${process.pid % 100_000}`;
const PATH = `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin`;
const PORT = 8443;
const DNS_PORT = 5353;
const RESOLVER_PORT = 5354; // the filtering resolver, on the same addresses
const STRANGER = "198.51.100.7";
const STRANGER_V6 = "2001:db8::7";
const SECONDARY = "203.0.113.53";
const OTHER_SECONDARY = "203.0.113.54"; // a secondary of example.com. only
// A network's clients are its nodes' addresses: each network's first node gets host 1.
const MESH_V4 = "100.64.0.1"; // prod's node db1
const MESH_V6 = "fd7a:115c:a1e0::1";
const DEV_V4 = "100.65.0.1"; // the network dev's node web1, of the same organization as prod
const OPS_V4 = "100.80.0.1"; // the network ops's node app1, of another organization
const BEHIND = "100.64.0.200"; // inside prod's prefix, no node's: a host behind a subnet router
const CONFIGURED = "10.9.0.1";
const LISTEN = ["127.0.0.1", "[::1]", STRANGER, SECONDARY, OTHER_SECONDARY, MESH_V4, DEV_V4, OPS_V4, BEHIND, CONFIGURED, `[${STRANGER_V6}]`, `[${MESH_V6}]`].map((a) => `${a}:${DNS_PORT}`).join(",");
const data = tempDir("citadel-e2e-horizon-");
const home = tempDir("citadel-e2e-horizon-home-");
const env = {
  PATH,
  HOME: home.path,
  CITADEL_HTTP_ADDRESS: "127.0.0.1",
  CITADEL_HTTP_PORT: String(PORT),
  // Every address of the namespace: a client asks at its own address, so its packets leave from it.
  CITADEL_DNS_UDP: LISTEN,
  CITADEL_DNS_TCP: LISTEN,
  // The filtering resolver, open to every address here: the horizon, not its client list, decides.
  CITADEL_DNS_RESOLVER_UDP: LISTEN.replaceAll(`:${DNS_PORT}`, `:${RESOLVER_PORT}`),
  CITADEL_DNS_RESOLVER_TCP: LISTEN.replaceAll(`:${DNS_PORT}`, `:${RESOLVER_PORT}`),
  CITADEL_DNS_RESOLVER_CLIENTS: "0.0.0.0/0,::/0",
  CITADEL_MESH_DOMAIN: "mesh.example.org.",
  CITADEL_MESH_DNS_CLIENTS: "10.9.0.0/16",
};
let server: Subprocess | null = null;
let token = "";
let org = "";

async function inNs(argv: string[], options: { allowFail?: boolean } = {}) {
  const proc = Bun.spawn(["ip", "netns", "exec", NS, ...argv], { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !options.allowFail) throw new Error(`${argv.join(" ")} → ${code}\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

async function api(method: string, path: string, body?: unknown, bearer = token): Promise<{ status: number; body: any }> {
  const r = await inNs([process.execPath, join(ROOT, "test/helpers/netns-fetch.ts"), `https://127.0.0.1:${PORT}${path}`, join(data.path, "tls", "cert.pem"), method, bearer, body === undefined ? "" : JSON.stringify(body)]);
  return JSON.parse(r.stdout);
}

/** kdig from `source` to the server (on the namespace's own address of that family): status and answer lines. */
async function dig(source: string, name: string, type = "A", extra: string[] = [], port = DNS_PORT): Promise<{ status: string; answers: string[] }> {
  const server = source.includes(":") ? "::1" : "127.0.0.1";
  const target = source.startsWith("127.") || source === "::1" ? server : source; // a query to an address of its own stays off loopback
  const out = (await inNs(["kdig", "-b", source, `@${target}`, "-p", String(port), "+retry=0", "+timeout=3", "+noall", "+header", "+answer", ...extra, name, type])).stdout;
  const status = /status: (\w+)/.exec(out)?.[1] ?? `no reply: ${out}`;
  const answers = out.split("\n").filter((line) => line !== "" && !line.startsWith(";;"));
  return { status, answers };
}

async function cleanup() {
  server?.kill("SIGKILL");
  const pids = Bun.spawnSync(["ip", "netns", "pids", NS], { env: { PATH } }).stdout.toString();
  for (const pid of pids.split(/\s+/).filter(Boolean)) process.kill(Number(pid), "SIGKILL");
  Bun.spawnSync(["ip", "netns", "del", NS], { env: { PATH } });
}

describe.skipIf(!runnable)("split horizon: the mesh's names, asked from every kind of client", () => {
  let secret = "";
  let otherSecret = "";

  beforeAll(async () => {
    await ensureBinary();
    await cleanup();
    const sh = (argv: string[]) => {
      const r = Bun.spawnSync(argv, { env: { PATH } });
      if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
    };
    sh(["ip", "netns", "add", NS]);
    sh(["ip", "-n", NS, "link", "set", "lo", "up"]);
    // A veth pair of the namespace's own (the dummy driver may not be there): its addresses are all local.
    sh(["ip", "-n", NS, "link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    for (const address of [`${STRANGER}/24`, `${SECONDARY}/24`, `${OTHER_SECONDARY}/24`, `${MESH_V4}/16`, `${DEV_V4}/16`, `${OPS_V4}/16`, `${BEHIND}/16`, `${CONFIGURED}/16`]) sh(["ip", "-n", NS, "address", "add", address, "dev", "d0"]);
    for (const address of [`${STRANGER_V6}/64`, `${MESH_V6}/48`]) sh(["ip", "-n", NS, "address", "add", address, "dev", "d0", "nodad"]);
    for (const link of ["d0", "d1"]) sh(["ip", "-n", NS, "link", "set", link, "up"]);

    server = Bun.spawn(["ip", "netns", "exec", NS, BINARY, "serve", "--data", data.path], { env, stdout: Bun.file(join(home.path, "out")), stderr: Bun.file(join(home.path, "err")), stdin: "ignore" });
    const deadline = Date.now() + 20_000;
    const out = () => {
      try {
        return readFileSync(join(home.path, "out"), "utf8");
      } catch {
        return "";
      }
    };
    while (!out().includes('"msg":"listening"')) {
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`serve did not start: ${readFileSync(join(home.path, "err"), "utf8")}`);
      await Bun.sleep(50);
    }
    const oneTime = /One-time password for \S+: (\S+)/.exec(readFileSync(join(home.path, "err"), "utf8"))![1]!;
    const first = (await api("POST", "/v1/iam/login", { email: "admin@localhost", password: oneTime }, "")).body.token;
    await api("POST", "/v1/iam/me/password", { current_password: oneTime, new_password: "owner-passphrase-2026" }, first);
    token = (await api("POST", "/v1/iam/login", { email: "admin@localhost", password: "owner-passphrase-2026" }, "")).body.token;
    org = (await api("GET", "/v1/iam/me")).body.organizations[0].id;

    // The hosted zone that holds the mesh's domain, with a name of its own.
    const zones = `/v1/dns/orgs/${org}/zones`;
    expect((await api("POST", zones, { name: "example.org" })).status).toBe(200);
    expect((await api("PUT", `${zones}/example.org/rrsets/www/A`, { ttl: 300, records: ["192.0.2.80"] })).status).toBe(200);
    // A network numbered where the namespace has addresses, and one node in it.
    const networks = `/v1/mesh/orgs/${org}/networks`;
    expect((await api("POST", networks, { name: "prod", ipv4: "100.64.0.0/16", ipv6: "fd7a:115c:a1e0::/48" })).status).toBe(200);
    const key = (await api("POST", `${networks}/prod/keys`, {})).body.key;
    const enrolled = await api("POST", "/v1/mesh/enroll", { key, name: "db1", public_key: Buffer.from(new Uint8Array(32).fill(7)).toString("base64") }, "");
    expect([enrolled.status, enrolled.body.node.ipv4, enrolled.body.node.ipv6]).toEqual([200, MESH_V4, MESH_V6]);
    // Two more networks, each with a node: dev beside prod, ops in an organization of its own.
    const other = (await api("POST", "/v1/iam/orgs", { name: "other" })).body.id as string;
    for (const [owner, network, ipv4, ipv6, node, fill, address] of [
      [org, "dev", "100.65.0.0/16", "fd7a:115c:a1e1::/48", "web1", 8, DEV_V4],
      [other, "ops", "100.80.0.0/16", "fd00:5::/48", "app1", 9, OPS_V4],
    ] as const) {
      const path = `/v1/mesh/orgs/${owner}/networks`;
      expect((await api("POST", path, { name: network, ipv4, ipv6 })).status).toBe(200);
      const networkKey = (await api("POST", `${path}/${network}/keys`, {})).body.key;
      const joined = await api("POST", "/v1/mesh/enroll", { key: networkKey, name: node, public_key: Buffer.from(new Uint8Array(32).fill(fill)).toString("base64") }, "");
      expect([joined.status, joined.body.node.ipv4]).toEqual([200, address]);
    }
    // A name of the zone that leads into prod's.
    expect((await api("PUT", `${zones}/example.org/rrsets/db/CNAME`, { ttl: 300, records: ["db1.prod.mesh.example.org."] })).status).toBe(200);
    // A secondary with its TSIG key, at an address no other rule tells the names to.
    secret = (await api("POST", "/v1/dns/tsig-keys", { name: "transfer-key" })).body.secret;
    expect((await api("POST", "/v1/dns/secondaries", { name: "ns2", address: SECONDARY, tsig_key: "transfer-key" })).status).toBe(200);
    otherSecret = (await api("POST", "/v1/dns/tsig-keys", { name: "other-key" })).body.secret;
    expect((await api("POST", "/v1/dns/secondaries", { name: "ns3", address: OTHER_SECONDARY, tsig_key: "other-key", zones: ["example.com."] })).status).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await cleanup();
    data.remove();
    home.remove();
  });

  test("loopback, the mesh network's node's addresses (IPv4 and IPv6) and a dns_clients prefix are told the node's name, over UDP and TCP", async () => {
    for (const source of ["127.0.0.1", "::1", MESH_V4, MESH_V6, CONFIGURED]) {
      for (const transport of [[], ["+tcp"]]) {
        const reply = await dig(source, "db1.prod.mesh.example.org.", "A", transport);
        expect({ source, transport, ...reply }).toMatchObject({ status: "NOERROR", answers: [expect.stringMatching(/^db1\.prod\.mesh\.example\.org\.\s+\d+\s+IN\s+A\s+100\.64\.0\.\d+$/)] });
      }
    }
  }, 60_000);

  test("an address inside prod's prefix that is no node's (a host behind a subnet router) is REFUSED its names, as a stranger", async () => {
    for (const transport of [[], ["+tcp"]]) {
      for (const [name, type] of [
        ["db1.prod.mesh.example.org.", "A"],
        ["mesh.example.org.", "SOA"],
      ] as const) {
        expect({ name, transport, ...(await dig(BEHIND, name, type, transport)) }).toMatchObject({ status: "REFUSED", answers: [] });
      }
      expect(await dig(BEHIND, "db1.prod.mesh.example.org.", "A", transport, RESOLVER_PORT)).toMatchObject({ status: "REFUSED", answers: [] });
    }
  }, 60_000);

  test("a stranger (IPv4 or IPv6, UDP or TCP) is REFUSED the node's name, in any case of letters, for ANY, and whatever an ECS option claims", async () => {
    for (const source of [STRANGER, STRANGER_V6]) {
      for (const [name, type, extra] of [
        ["db1.prod.mesh.example.org.", "A", []],
        ["db1.prod.mesh.example.org.", "AAAA", ["+tcp"]],
        ["DB1.Prod.Mesh.EXAMPLE.org.", "A", []],
        ["db1.prod.mesh.example.org.", "ANY", ["+tcp"]],
        ["mesh.example.org.", "SOA", []],
        ["db1.prod.mesh.example.org.", "A", ["+subnet=100.64.0.0/16"]],
      ] as const) {
        expect({ source, name, type, extra, ...(await dig(source, name, type, [...extra])) }).toMatchObject({ status: "REFUSED", answers: [] });
      }
    }
  }, 60_000);

  test("a network's client is told its network's names and REFUSED another's (same organization or another), the cache and a CNAME included", async () => {
    const own = { [MESH_V4]: "db1.prod.mesh.example.org.", [DEV_V4]: "web1.dev.mesh.example.org.", [OPS_V4]: "app1.ops.mesh.example.org." };
    for (const transport of [[], ["+tcp"]]) {
      // Each name asked first by its own network's client (the reply then cached), then by the others.
      for (const [client, name] of Object.entries(own)) {
        expect({ client, name, ...(await dig(client, name, "A", transport)) }).toMatchObject({ status: "NOERROR", answers: [expect.stringMatching(/\sIN\s+A\s+100\./)] });
        for (const other of Object.keys(own).filter((c) => c !== client)) {
          expect({ other, name, ...(await dig(other, name, "A", transport)) }).toMatchObject({ status: "REFUSED", answers: [] });
        }
      }
      // The domain itself names no network: every network's client is told it.
      for (const client of Object.keys(own)) expect({ client, ...(await dig(client, "mesh.example.org.", "SOA", transport)) }).toMatchObject({ status: "NOERROR" });
      // A CNAME into prod's names: followed for prod's client, cut after the CNAME for the others.
      expect((await dig(MESH_V4, "db.example.org.", "A", transport)).answers).toEqual([expect.stringContaining("CNAME"), expect.stringContaining("100.64.0.")]);
      for (const other of [DEV_V4, OPS_V4]) expect({ other, ...(await dig(other, "db.example.org.", "A", transport)) }).toMatchObject({ status: "NOERROR", answers: [expect.stringContaining("CNAME")] });
    }
  }, 60_000);

  test("the filtering resolver keeps to the same horizon: a stranger it serves is REFUSED the mesh's names, a network's client is told its own only", async () => {
    for (const transport of [[], ["+tcp"]]) {
      expect(await dig(STRANGER, "db1.prod.mesh.example.org.", "A", transport, RESOLVER_PORT)).toMatchObject({ status: "REFUSED", answers: [] });
      expect(await dig(MESH_V4, "db1.prod.mesh.example.org.", "A", transport, RESOLVER_PORT)).toMatchObject({ status: "NOERROR", answers: [expect.stringContaining("100.64.0.")] });
      expect(await dig(DEV_V4, "db1.prod.mesh.example.org.", "A", transport, RESOLVER_PORT)).toMatchObject({ status: "REFUSED", answers: [] });
      // The rest of the hosted zone is the resolver's to answer to the stranger.
      expect(await dig(STRANGER, "www.example.org.", "A", transport, RESOLVER_PORT)).toMatchObject({ status: "NOERROR", answers: [expect.stringContaining("192.0.2.80")] });
    }
  }, 60_000);

  test("the rest of the zone still answers the stranger", async () => {
    expect(await dig(STRANGER, "www.example.org.")).toMatchObject({ status: "NOERROR", answers: [expect.stringContaining("192.0.2.80")] });
  });

  test("the listed secondary transfers the zone with the mesh's names (AXFR signed with its key)", async () => {
    const out = (await inNs(["kdig", "-b", SECONDARY, `@${SECONDARY}`, "-p", String(DNS_PORT), "-y", `hmac-sha256:transfer-key:${secret}`, "+retry=0", "+timeout=5", "example.org.", "AXFR"])).stdout;
    expect(out).toMatch(/^db1\.prod\.mesh\.example\.org\.\s+\d+\s+IN\s+A\s+100\.64\.0\.\d+$/m);
    expect(out).toMatch(/^www\.example\.org\./m);
    expect(out).not.toContain("REFUSED");
    // The stranger asking the same is refused by the transfer policy.
    const refused = (await inNs(["kdig", "-b", STRANGER, `@${STRANGER}`, "-p", String(DNS_PORT), "+retry=0", "+timeout=5", "example.org.", "AXFR"], { allowFail: true })).stdout;
    expect(refused).not.toContain("db1.prod.mesh");
  }, 30_000);

  test("a secondary is told the node's name only as it transfers the zone: signed with its key, and only a secondary of that zone", async () => {
    const signedBy = (key: string, keySecret: string) => ["-y", `hmac-sha256:${key}:${keySecret}`];
    for (const transport of [[], ["+tcp"]]) {
      expect(await dig(SECONDARY, "db1.prod.mesh.example.org.", "A", [...transport, ...signedBy("transfer-key", secret)])).toMatchObject({ status: "NOERROR", answers: [expect.stringContaining("100.64.0.")] });
      // Its address alone (spoofable over UDP) is not enough.
      expect(await dig(SECONDARY, "db1.prod.mesh.example.org.", "A", transport)).toMatchObject({ status: "REFUSED", answers: [] });
      // A secondary of other zones, with its own key, is a stranger to these names.
      expect(await dig(OTHER_SECONDARY, "db1.prod.mesh.example.org.", "A", [...transport, ...signedBy("other-key", otherSecret)])).toMatchObject({ status: "REFUSED", answers: [] });
    }
  }, 30_000);

  test("the refusals are counted as REFUSED in the query analytics", async () => {
    const analytics = (await api("GET", "/v1/dns/analytics")).body;
    expect(analytics.by_rcode.REFUSED).toBeGreaterThanOrEqual(12);
  });
});
