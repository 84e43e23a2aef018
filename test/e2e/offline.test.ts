/**
 * The offline proof: the main scenario — init with Shamir shares, unseal, log in, keep and read
 * a secret, answer DNS for a zone, verify the audit chain — run by the compiled binary inside
 * a network namespace that has only a loopback interface, with every connection attempt to
 * another address counted.
 *
 * How attempts are counted: the namespace's only route besides loopback's own is a default
 * route *through lo*, so a packet to any other address is routed (instead of failing with
 * "network unreachable" before any hook sees it) and passes nftables' output hook, where a
 * counter counts it and drops it. Name lookups (UDP/TCP to a resolver), NTP, telemetry, update
 * checks: any of them would show. The counters must be zero at the end.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BINARY, ensureBinary, ROOT, tempDir } from "../helpers/binary.ts";
import { requireTool } from "../helpers/tools.ts";

const tools = [requireTool("ip", "iproute2"), requireTool("nft", "nftables"), requireTool("kdig", "knot-dnsutils")];
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === "true") throw new Error("the offline proof needs root (a network namespace); CI runs as root");
const runnable = isRoot && tools.every((t) => t !== null);

const NS = `cof${process.pid % 100_000}`;
const PATH = `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin`;
const PORT = 8443;
const DNS_PORT = 5353;
const data = tempDir("citadel-e2e-offline-");
const home = tempDir("citadel-e2e-offline-home-");
const env = { PATH, HOME: home.path, XDG_CONFIG_HOME: home.path, CITADEL_SEAL_METHOD: "shamir", CITADEL_HTTP_PORT: String(PORT), CITADEL_DNS_UDP: `127.0.0.1:${DNS_PORT}`, CITADEL_DNS_TCP: `127.0.0.1:${DNS_PORT}` };
let server: Subprocess | null = null;

async function inNs(argv: string[], options: { allowFail?: boolean; stdin?: string; env?: Record<string, string> } = {}) {
  const proc = Bun.spawn(["ip", "netns", "exec", NS, ...argv], {
    env: { ...env, ...options.env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0 && !options.allowFail) throw new Error(`${argv.join(" ")} → ${code}\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

const citadel = (args: string[], options: Parameters<typeof inNs>[1] = {}) => inNs([BINARY, "--data", data.path, ...args], options);

async function api(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await inNs([process.execPath, join(ROOT, "test/helpers/netns-fetch.ts"), `https://127.0.0.1:${PORT}${path}`, join(data.path, "tls", "cert.pem"), method, token, body === undefined ? "" : JSON.stringify(body)]);
  return JSON.parse(r.stdout);
}

/** Packets (and bytes) the namespace tried to send to anything but loopback, by family. */
async function attempts(): Promise<{ ipv4: number; ipv6: number }> {
  const out = (await inNs(["nft", "list", "table", "inet", "offline"])).stdout;
  const count = (family: string) => Number(new RegExp(`${family} daddr != \\S+ counter packets (\\d+)`).exec(out)?.[1] ?? NaN);
  return { ipv4: count("ip"), ipv6: count("ip6") };
}

async function cleanup() {
  server?.kill("SIGKILL");
  const pids = Bun.spawnSync(["ip", "netns", "pids", NS], { env: { PATH } }).stdout.toString();
  for (const pid of pids.split(/\s+/).filter(Boolean)) process.kill(Number(pid), "SIGKILL");
  Bun.spawnSync(["ip", "netns", "del", NS], { env: { PATH } });
}

describe.skipIf(!runnable)("offline: the main scenario in a namespace with only loopback", () => {
  beforeAll(async () => {
    await ensureBinary();
    cleanup();
    const sh = (argv: string[]) => {
      const r = Bun.spawnSync(argv, { env: { PATH } });
      if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
    };
    sh(["ip", "netns", "add", NS]);
    sh(["ip", "-n", NS, "link", "set", "lo", "up"]);
    sh(["ip", "-n", NS, "route", "add", "default", "dev", "lo"]);
    sh(["ip", "-n", NS, "-6", "route", "add", "default", "dev", "lo"]);
    const rules = `table inet offline {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr != 127.0.0.0/8 counter drop
    ip6 daddr != ::1 counter drop
  }
}`;
    await inNs(["nft", "-f", "-"], { stdin: rules });
    expect(await attempts()).toEqual({ ipv4: 0, ipv6: 0 });
  }, 60_000);

  afterAll(async () => {
    await cleanup();
    data.remove();
    home.remove();
  });

  test("the probe works: a connection attempt to another address is counted", async () => {
    const before = await attempts();
    // (The drop makes each send fail with EPERM: one process per family.)
    await inNs([process.execPath, "-e", "const s = await Bun.udpSocket({}); s.send('x', 53, '192.0.2.1');"], { allowFail: true });
    await inNs([process.execPath, "-e", "const s = await Bun.udpSocket({ hostname: '::' }); s.send('x', 53, '2001:db8::1');"], { allowFail: true });
    const after = await attempts();
    expect(after.ipv4).toBe(before.ipv4 + 1);
    expect(after.ipv6).toBe(before.ipv6 + 1);
  });

  test("init, unseal, login, a secret, DNS answers, audit verify — and not one packet leaves loopback", async () => {
    const baseline = await attempts(); // the probe's packets above
    const init = await citadel(["init", "--shares", "3", "--threshold", "2", "--json"]);
    const summary = JSON.parse(init.stdout);
    server = Bun.spawn(["ip", "netns", "exec", NS, BINARY, "serve", "--data", data.path], { env, stdout: Bun.file(join(home.path, "out")), stderr: Bun.file(join(home.path, "err")), stdin: "ignore" });
    const deadline = Date.now() + 20_000;
    while (!readFileSync(join(home.path, "out"), "utf8").includes('"msg":"listening"')) {
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`serve did not start: ${readFileSync(join(home.path, "err"), "utf8")}`);
      await Bun.sleep(50);
    }
    for (const share of summary.shares.slice(0, 2)) await citadel(["unseal"], { stdin: `${share}\n` });
    expect((await api("GET", "/readyz", "")).status).toBe(200);

    const first = (await api("POST", "/v1/iam/login", "", { email: "admin@localhost", password: summary.one_time_password })).body.token;
    await api("POST", "/v1/iam/me/password", first, { current_password: summary.one_time_password, new_password: "owner-passphrase-2026" });
    const token = (await api("POST", "/v1/iam/login", "", { email: "admin@localhost", password: "owner-passphrase-2026" })).body.token as string;
    const org = (await api("GET", "/v1/iam/me", token)).body.organizations[0].id as string;

    const workspace = (await api("POST", `/v1/iam/orgs/${org}/workspaces`, token, { name: "offline" })).body.id as string;
    const secret = `/v1/secrets/workspaces/${workspace}/environments/production/secrets/DB_PASSWORD`;
    expect((await api("PUT", secret, token, { value: "kept-offline" })).status).toBe(200);
    expect((await api("GET", secret, token)).body.value).toBe("kept-offline");

    const zones = `/v1/dns/orgs/${org}/zones`;
    expect((await api("POST", zones, token, { name: "offline.example" })).status).toBe(200);
    expect((await api("PUT", `${zones}/offline.example/rrsets/www/A`, token, { ttl: 300, records: ["192.0.2.80"] })).status).toBe(200);
    const dig = await inNs(["kdig", "@127.0.0.1", "-p", String(DNS_PORT), "+short", "www.offline.example", "A"]);
    expect(dig.stdout.trim()).toBe("192.0.2.80");

    const verify = await citadel(["audit", "verify"]);
    expect(verify.stdout).toStartWith("OK: ");

    expect(await attempts()).toEqual(baseline);
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(await attempts()).toEqual(baseline);
  }, 90_000);
});
