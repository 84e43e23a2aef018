/** What the operator's mesh commands check before they ask the server (the whole flow: test/e2e/mesh.test.ts). */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publicKeyPin } from "../../../src/cli/pin.ts";
import { generateSelfSignedCertificate } from "../../../src/http/self-signed.ts";
import { generateToken } from "../../../src/auth/tokens.ts";
import { meshCommands } from "../../../plugins/mesh/commands.ts";
import { runCommand } from "../../helpers/command.ts";

const ORG = { org: "org_1" };

/** A control plane that refuses every pre-auth key (so that join stops there), keeping what each enrollment sent. */
function refusingControlPlane() {
  const enrollments: unknown[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (request) => {
      enrollments.push(await request.json());
      return Response.json({ detail: "This pre-auth key is not valid.", code: "unauthorized" }, { status: 401, headers: { "content-type": "application/problem+json" } });
    },
  });
  return { server, enrollments };
}

describe("flags are checked here, named as flags (found in review: the server's message named the request's fields)", () => {
  const refusals: Array<[string, string[], Record<string, string>, string]> = [
    ["mesh networks create", ["n1"], { topology: "star" }, "--topology: one of mesh, hub"],
    ["mesh networks set", ["n1"], { topology: "ring" }, "--topology: one of mesh, hub"],
    ["mesh networks create", ["n1"], { interface: "a-name-far-too-long" }, "--interface: 1–15 letters"],
    ["mesh config", ["n1", "web1"], { format: "bogus" }, "--format: one of wg-quick, setconf, nftables, json"],
    ["mesh nodes set", ["n1", "web1"], { expires: "tomorrow" }, "--expires: an ISO 8601 time"],
    // Date.parse took these (found in review: "12/31" went out as 2001-12-31, expiring the node at once).
    ["mesh nodes set", ["n1", "web1"], { expires: "12/31" }, "--expires: an ISO 8601 time with its offset"],
    ["mesh nodes set", ["n1", "web1"], { expires: "2026-12-31T00:00:00" }, "--expires: an ISO 8601 time with its offset"],
    ["mesh nodes set", ["n1", "web1"], { expires: "2026-02-30T00:00:00Z" }, "--expires: an ISO 8601 time with its offset"],
    // Numbers name the server's own range (found in review: 70000 reached it, refused as listen_port).
    ["mesh networks create", ["n1"], { port: "70000" }, "--port: a whole number from 1 to 65535"],
    ["mesh networks set", ["n1"], { mtu: "9001" }, "--mtu: a whole number from 1280 to 9000"],
    ["mesh networks set", ["n1"], { keepalive: "5000" }, "--keepalive: a whole number from 0 to 3600"],
    ["mesh keys create", ["n1"], { minutes: "99999999" }, "--minutes: a whole number from 1 to 129600"],
    ["mesh nodes set", ["n1", "web1"], { "listen-port": "70000" }, "--listen-port: a whole number from 1 to 65535"],
    ["mesh join", [], { server: "https://citadel.test:8443", key: "citadel_meshkey_x", "listen-port": "0" }, "--listen-port: a whole number from 1 to 65535"],
  ];
  for (const [words, args, options, message] of refusals) {
    test(`${words} ${JSON.stringify(options)}`, async () => {
      const run = await runCommand(meshCommands, words, { args, options: { ...ORG, ...options } });
      expect(run.code).toBe(2);
      expect(run.error?.message).toStartWith(message);
      expect(run.requests).toEqual([]);
    });
  }

  test("good values are sent", async () => {
    const created = await runCommand(meshCommands, "mesh networks create", { args: ["n1"], options: { ...ORG, topology: "hub" }, json: true });
    expect(created.requests.map((r) => r.body)).toEqual([{ name: "n1", topology: "hub" }]);
    const config = await runCommand(meshCommands, "mesh config", { args: ["n1", "web1"], options: { ...ORG, format: "setconf" }, answer: () => "[Interface]" });
    expect(config.requests.map((r) => r.path)).toEqual(["/v1/mesh/orgs/org_1/networks/n1/nodes/web1/config?format=setconf"]);
    const node = { name: "web1", ipv4: "100.64.0.1", ipv6: "fd00::1", tags: [], state: "active", hub: false, next_public_key: null, applied_version: 3, public_key: "pub-web1-xxxxxxxx", endpoint: null, listen_port: null, expires_at: null };
    const never = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "web1"], options: { ...ORG, expires: "never" }, json: true, answer: () => node });
    expect([never.code, never.requests.map((r) => r.body)]).toEqual([0, [{ expires_at: null }]]); // found in review: the exit code went unchecked
  });
});

test("an empty --tags or --dns clears the list (found in review: it was \"nothing to change\")", async () => {
  const node = { name: "web1", ipv4: "100.64.0.1", ipv6: "fd00::1", tags: [], state: "active", hub: false, next_public_key: null, applied_version: 3, public_key: "pub-web1-xxxxxxxx", endpoint: null, listen_port: null };
  const untagged = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "web1"], options: { ...ORG, tags: "" }, json: true, answer: () => node });
  expect([untagged.code, untagged.requests.map((r) => [r.method, r.body])]).toEqual([0, [["PATCH", { tags: [] }]]]);
  const network = { name: "n1", ipv4: "100.64.0.0/16", ipv6: "fd00::/48", listen_port: 51820, topology: "mesh", preshared_keys: false, domain: null, version: 2, acl_version: 0, nodes: 0, dns: [] };
  const noResolvers = await runCommand(meshCommands, "mesh networks set", { args: ["n1"], options: { ...ORG, dns: "" }, json: true, answer: () => network });
  expect([noResolvers.code, noResolvers.requests.map((r) => [r.method, r.body])]).toEqual([0, [["PATCH", { dns: [] }]]]);
});

test("nodes set --cancel-rotation calls off the node's key rotation", async () => {
  const node = { name: "web1", ipv4: "100.64.0.1", ipv6: "fd00::1", tags: [], state: "active", hub: false, next_public_key: null, applied_version: 3, public_key: "pub-web1-xxxxxxxx", endpoint: null, listen_port: null };
  const run = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "web1"], options: { ...ORG, "cancel-rotation": true }, json: true, answer: () => node });
  expect([run.code, run.requests.map((r) => r.body)]).toEqual([0, [{ cancel_rotation: true }]]);
});

describe("a node's own listen port", () => {
  const node = { name: "web1", ipv4: "100.64.0.1", ipv6: "fd00::1", tags: [], state: "active", hub: false, next_public_key: null, applied_version: 3, public_key: "pub-web1-xxxxxxxx" };

  test("nodes set --listen-port sends the port; empty clears it (null)", async () => {
    for (const [value, sent] of [["443", 443], ["", null]] as const) {
      const run = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "web1"], options: { ...ORG, "listen-port": value }, json: true, answer: () => ({ ...node, endpoint: null, listen_port: sent }) });
      expect([run.code, run.requests.map((r) => r.body)]).toEqual([0, [{ listen_port: sent }]]);
    }
  });

  test("the node listing shows it beside the endpoint, only when set", async () => {
    const items = [
      { ...node, name: "forwarded", endpoint: "203.0.113.7:443", listen_port: 51820 },
      { ...node, name: "second", endpoint: null, listen_port: 51821 },
      { ...node, name: "plain", endpoint: "198.51.100.3:51820", listen_port: null },
    ];
    const run = await runCommand(meshCommands, "mesh nodes", { args: ["n1"], options: ORG, answer: () => ({ items }) });
    const lines = run.stdout.split("\n");
    expect(lines.find((l) => l.startsWith("forwarded"))).toContain("203.0.113.7:443, listens on 51820");
    expect(lines.find((l) => l.startsWith("second"))).toContain(" listens on 51821 ");
    expect(lines.find((l) => l.startsWith("plain"))).not.toContain("listens on");
  });

  test("join --listen-port asks for it at enrollment", async () => {
    const { server, enrollments } = refusingControlPlane();
    // A state directory of its own: join makes it (and proves it writable) before it enrolls.
    const state = mkdtempSync(join(tmpdir(), "citadel-join-"));
    try {
      const run = await runCommand(meshCommands, "mesh join", { options: { server: `http://127.0.0.1:${server.port}`, key: "citadel_meshkey_x", name: "gw", "listen-port": "51820", state } });
      expect(run.code).toBe(1);
      expect(enrollments).toEqual([expect.objectContaining({ name: "gw", listen_port: 51820 })]);
    } finally {
      server.stop(true);
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("subnet routes", () => {
  const node = { name: "gw", ipv4: "100.64.0.1", ipv6: "fd00::1", tags: [], state: "active", hub: false, next_public_key: null, applied_version: 3, public_key: "pub-gw-xxxxxxxx", endpoint: null, listen_port: null };

  test("nodes set --approved-routes sends the list (replacing it); empty revokes every approval", async () => {
    for (const [value, sent] of [["10.1.0.0/24, fd00:1::/64", ["10.1.0.0/24", "fd00:1::/64"]], ["", []]] as const) {
      const run = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "gw"], options: { ...ORG, "approved-routes": value }, json: true, answer: () => node });
      expect([run.code, run.requests.map((r) => r.body)]).toEqual([0, [{ approved_routes: sent }]]);
    }
  });

  test("nodes set --masquerade-routes / --no-masquerade-routes turn masquerading on and off; both at once are refused; the listing says it", async () => {
    for (const [flag, sent] of [["masquerade-routes", true], ["no-masquerade-routes", false]] as const) {
      const run = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "gw"], options: { ...ORG, [flag]: true }, json: true, answer: () => node });
      expect([run.code, run.requests.map((r) => r.body)]).toEqual([0, [{ masquerade_routes: sent }]]);
    }
    const both = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "gw"], options: { ...ORG, "masquerade-routes": true, "no-masquerade-routes": true } });
    expect([both.code, both.requests]).toEqual([2, []]);
    const items = [{ ...node, primary_routes: ["10.1.0.0/24"], pending_routes: [], masquerade_routes: true }];
    const listed = await runCommand(meshCommands, "mesh nodes", { args: ["n1"], options: ORG, answer: () => ({ items }) });
    expect(listed.stdout.split("\n").find((l) => l.startsWith("gw"))).toContain(" 10.1.0.0/24, masquerading ");
  });

  test("the node listing shows the routes a node serves, then those pending", async () => {
    const items = [{ ...node, primary_routes: ["10.1.0.0/24"], pending_routes: ["fd00:1::/64"] }, { ...node, name: "plain", primary_routes: [], pending_routes: [] }];
    const run = await runCommand(meshCommands, "mesh nodes", { args: ["n1"], options: ORG, answer: () => ({ items }) });
    const lines = run.stdout.split("\n");
    expect(lines[0]).toContain(" ROUTES ");
    expect(lines.find((l) => l.startsWith("gw"))).toContain(" 10.1.0.0/24,fd00:1::/64 (pending) ");
  });

  test("the node listing says which active nodes' agents are heard from, and the routes a node stands by for (another serves them)", async () => {
    const items = [
      { ...node, name: "gw-a", online: false, primary_routes: [], standby_routes: ["10.1.0.0/24"], pending_routes: [] },
      { ...node, name: "gw-b", online: true, primary_routes: ["10.1.0.0/24"], standby_routes: [], pending_routes: [] },
      { ...node, name: "off", state: "disabled", online: false, primary_routes: [], standby_routes: [], pending_routes: [] },
      { ...node, name: "older", primary_routes: [], pending_routes: [] }, // a server older than failover
    ];
    const lines = (await runCommand(meshCommands, "mesh nodes", { args: ["n1"], options: ORG, answer: () => ({ items }) })).stdout.split("\n");
    expect(lines.find((l) => l.startsWith("gw-a"))).toMatch(/ active, offline .* 10\.1\.0\.0\/24 \(standby\) /);
    expect(lines.find((l) => l.startsWith("gw-b"))).toMatch(/ active, online .* 10\.1\.0\.0\/24 /);
    expect(lines.find((l) => l.startsWith("off"))).toMatch(/ disabled /);
    expect(lines.find((l) => l.startsWith("older"))).toMatch(/ active /);
  });

  test("join --advertise-routes offers them at enrollment", async () => {
    const { server, enrollments } = refusingControlPlane();
    const state = mkdtempSync(join(tmpdir(), "citadel-join-"));
    try {
      const run = await runCommand(meshCommands, "mesh join", { options: { server: `http://127.0.0.1:${server.port}`, key: "citadel_meshkey_x", name: "gw", "advertise-routes": "192.168.7.0/24,fd00:7::/64", state } });
      expect(run.code).toBe(1);
      expect(enrollments).toEqual([expect.objectContaining({ name: "gw", advertise_routes: ["192.168.7.0/24", "fd00:7::/64"] })]);
    } finally {
      server.stop(true);
      rmSync(state, { recursive: true, force: true });
    }
  });

  test("join --advertise-exit-node offers 0.0.0.0/0 and ::/0 beside the routes", async () => {
    const { server, enrollments } = refusingControlPlane();
    const state = mkdtempSync(join(tmpdir(), "citadel-join-"));
    try {
      await runCommand(meshCommands, "mesh join", { options: { server: `http://127.0.0.1:${server.port}`, key: "citadel_meshkey_x", name: "exit", "advertise-routes": "192.168.7.0/24", "advertise-exit-node": true, state } });
      await runCommand(meshCommands, "mesh join", { options: { server: `http://127.0.0.1:${server.port}`, key: "citadel_meshkey_x", name: "exit", "advertise-exit-node": true, state } });
      expect(enrollments).toEqual([expect.objectContaining({ advertise_routes: ["192.168.7.0/24", "0.0.0.0/0", "::/0"] }), expect.objectContaining({ advertise_routes: ["0.0.0.0/0", "::/0"] })]);
    } finally {
      server.stop(true);
      rmSync(state, { recursive: true, force: true });
    }
  });

  test("mesh exit-node takes a node or --none, not both, not neither", async () => {
    for (const [args, options] of [[[], {}], [["exit"], { none: true }]] as const) {
      const run = await runCommand(meshCommands, "mesh exit-node", { args: [...args], options });
      expect(run.error?.message).toStartWith("usage: citadel mesh exit-node <node>");
    }
  });

  test("the node listing says which node is an exit node and which uses one, when that one is not usable, and when its host refused it", async () => {
    const items = [
      { ...node, name: "exit", primary_routes: [], pending_routes: [], exit_node: true },
      { ...node, name: "laptop", primary_routes: [], pending_routes: [], exit_via: "exit", exit_via_usable: true },
      { ...node, name: "cut", primary_routes: [], pending_routes: [], exit_via: "exit", exit_via_usable: false },
      { ...node, name: "second", primary_routes: [], pending_routes: [], exit_via: "exit", exit_via_usable: true, exit_refused: "the agent of wgc-home (node h of network home, pid 7) routes this host's internet through an exit node" },
    ];
    const lines = (await runCommand(meshCommands, "mesh nodes", { args: ["n1"], options: ORG, answer: () => ({ items }) })).stdout.split("\n");
    expect(lines.find((l) => l.startsWith("exit"))).toContain(" -, exit node ");
    expect(lines.find((l) => l.startsWith("laptop"))).toContain(" -, exit via exit ");
    expect(lines.find((l) => l.startsWith("cut"))).toContain(" -, exit via exit (not usable: blocked) ");
    // Its agent reports why its host does not route through its exit node (another agent there does: one per host).
    expect(lines.find((l) => l.startsWith("second"))).toContain(" -, exit via exit (refused on its host: exit_refused in --json says why) ");
  });

  test("mesh routes without --advertise is a usage error", async () => {
    const run = await runCommand(meshCommands, "mesh routes", { options: {} });
    expect(run.error?.message).toStartWith("usage: citadel mesh routes --advertise");
  });
});

test("join --server must be an http(s) URL without query or fragment: a usage error before anything is made or sent (found in review: a fragment swallowed every path after it; no scheme was a network error)", async () => {
  const { server, enrollments } = refusingControlPlane();
  const work = mkdtempSync(join(tmpdir(), "citadel-join-"));
  const state = join(work, "state");
  try {
    for (const [url, message] of [
      [`127.0.0.1:${server.port}`, "--server: an https:// URL, such as https://citadel.example:8443"],
      [`ftp://127.0.0.1:${server.port}`, "--server: an https:// URL, such as https://citadel.example:8443"],
      [`http://127.0.0.1:${server.port}/citadel#x`, "--server: no query or fragment: the control plane's address, and its path behind a reverse proxy"],
      [`http://127.0.0.1:${server.port}/?a=1`, "--server: no query or fragment: the control plane's address, and its path behind a reverse proxy"],
      [`http://127.0.0.1:${server.port} `, "--server: no spaces or control characters in the URL (nor around it)"],
      // The enrollment key and the node's token in the clear (found in review).
      [`http://192.0.2.1:${server.port}`, "--server: an https:// URL: http:// only to this machine (a loopback address), as a token or a key would cross the network in the clear"],
    ]) {
      const run = await runCommand(meshCommands, "mesh join", { options: { server: url!, key: "citadel_meshkey_x", state } });
      expect([url, run.code, run.error?.message]).toEqual([url, 2, message]);
    }
    expect(enrollments).toEqual([]);
    expect(existsSync(state)).toBe(false);
  } finally {
    server.stop(true);
    rmSync(work, { recursive: true, force: true });
  }
});

test("join --server with user:password@ is a usage error before anything is made or sent: node.json keeps the server, and reports show it (found in review)", async () => {
  const { server, enrollments } = refusingControlPlane();
  const work = mkdtempSync(join(tmpdir(), "citadel-join-"));
  const state = join(work, "state");
  try {
    for (const userinfo of ["user:secret@", "user@", ":secret@"]) {
      const run = await runCommand(meshCommands, "mesh join", { options: { server: `http://${userinfo}127.0.0.1:${server.port}`, key: "citadel_meshkey_x", state } });
      expect([userinfo, run.code, run.error?.message]).toEqual([userinfo, 2, "--server: no user:password@ in the URL: it is kept and shown (the stored login, a node's state, messages); a token or a node's key authenticates"]);
    }
    expect(enrollments).toEqual([]);
    expect(existsSync(state)).toBe(false);
  } finally {
    server.stop(true);
    rmSync(work, { recursive: true, force: true });
  }
});

describe("networks set and nodes set: nothing to change, or opposite flags, are refused (found in review: exit 0 and a new version; the last flag won)", () => {
  test("networks set with no flag is refused before any request", async () => {
    const run = await runCommand(meshCommands, "mesh networks set", { args: ["n1"], options: ORG });
    expect([run.code, run.requests]).toEqual([2, []]);
    expect(run.error?.message).toStartWith("nothing to change: give --port");
  });

  const opposites: Array<[string, string[], string, string]> = [
    ["mesh networks set", ["n1"], "psk", "no-psk"],
    ["mesh networks set", ["n1"], "no-psk", "rotate-psk"],
    ["mesh nodes set", ["n1", "web1"], "enable", "disable"],
    ["mesh nodes set", ["n1", "web1"], "hub", "no-hub"],
  ];
  for (const [words, args, a, b] of opposites) {
    test(`${words} --${a} --${b}`, async () => {
      const run = await runCommand(meshCommands, words, { args, options: { ...ORG, [a]: true, [b]: true } });
      expect([run.code, run.error?.message, run.requests]).toEqual([2, `--${a} and --${b} say opposite things: give one`, []]);
    });
  }

  test("one of each pair is sent", async () => {
    const psk = await runCommand(meshCommands, "mesh networks set", { args: ["n1"], options: { ...ORG, "no-psk": true }, json: true });
    expect(psk.requests.map((r) => r.body)).toEqual([{ preshared_keys: false }]);
    const node = await runCommand(meshCommands, "mesh nodes set", { args: ["n1", "web1"], options: { ...ORG, disable: true, "no-hub": true }, json: true });
    expect(node.requests.map((r) => r.body)).toEqual([{ disabled: true, hub: false }]);
  });
});

describe("a service API key names its organization with --org (found in review)", () => {
  test("without --org: a usage error saying so, before any request; with it, used", async () => {
    const env = { CITADEL_TOKEN: generateToken("mesh").token };
    const refused = await runCommand(meshCommands, "mesh networks", { env });
    expect([refused.code, refused.error?.message, refused.requests]).toEqual([2, "an API key must be given --org ORG_ID", []]);
    const listed = await runCommand(meshCommands, "mesh networks", { options: ORG, env, json: true, answer: () => ({ items: [] }) });
    expect(listed.requests.map((r) => r.path)).toEqual(["/v1/mesh/orgs/org_1/networks"]);
  });
});

describe("--json (found in review: text was printed)", () => {
  test("mesh config --json asks for the json format; with another --format it is refused", async () => {
    const json = await runCommand(meshCommands, "mesh config", { args: ["n1", "web1"], options: ORG, json: true, answer: () => '{"network":{}}' });
    expect(json.requests.map((r) => r.path)).toEqual(["/v1/mesh/orgs/org_1/networks/n1/nodes/web1/config?format=json"]);
    expect(JSON.parse(json.stdout)).toEqual({ network: {} });
    const both = await runCommand(meshCommands, "mesh config", { args: ["n1", "web1"], options: { ...ORG, format: "setconf" }, json: true });
    expect([both.code, both.error?.message, both.requests]).toEqual([2, "--json with --format setconf: give one", []]);
  });

  test("mesh join --qr --json is refused: a QR code is not JSON", async () => {
    const run = await runCommand(meshCommands, "mesh join", { options: { server: "https://citadel.test:8443", key: "citadel_meshkey_x", qr: true }, json: true });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "--qr with --json: a QR code is not JSON; give one", []]);
  });
});

describe("mesh keys create names the join command a node can run (found in review: it left out the server and the fingerprint)", () => {
  const key = { id: "mkey_1", key: "citadel_meshkey_x", reusable: false, tags: [], hub: false, expires_at: "2026-11-24T15:00:00.000Z" };

  test("this server's URL, and the public key pin of the certificate the client pinned (or of the key it pinned)", async () => {
    const { certPem } = await generateSelfSignedCertificate({ dnsNames: ["citadel.example"], ipAddresses: [], validDays: 1, now: new Date() });
    const pin = publicKeyPin(certPem);
    expect(pin).toMatch(/^sha256\/\/[A-Za-z0-9+/]{43}=$/);
    for (const pinned of [certPem, pin]) {
      const run = await runCommand(meshCommands, "mesh keys create", { args: ["n1"], options: ORG, answer: () => key, server: { baseUrl: "https://citadel.example:8443", pinned } });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`On a node: citadel mesh join --server https://citadel.example:8443 --key <the key above> --fingerprint ${pin}`);
    }
  });

  test("a loopback URL is no use to a node elsewhere: a placeholder; no fingerprint without a pinned certificate", async () => {
    const run = await runCommand(meshCommands, "mesh keys create", { args: ["n1"], options: ORG, answer: () => key, server: { baseUrl: "https://127.0.0.1:8443" } });
    expect(run.stdout).toContain("On a node: citadel mesh join --server https://<this server, as the node reaches it>:8443 --key <the key above>\n");
  });
});

describe("acl: a policy is deny by default, --remove goes back to none (found in review: an empty policy allowed all)", () => {
  test("--remove sends DELETE and says every node reaches every node", async () => {
    const run = await runCommand(meshCommands, "mesh acl", { args: ["n1"], options: { ...ORG, remove: true }, answer: () => ({ network: "n1", version: 3, policy: null }) });
    expect([run.code, run.requests.map((r) => [r.method, r.path])]).toEqual([0, [["DELETE", "/v1/mesh/orgs/org_1/networks/n1/acl"]]]);
    expect(run.stdout).toBe("ACL of n1 removed (version 3): every node reaches every node\n");
  });

  test("--set of a policy without rules says it locks the mesh down", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-mesh-acl-"));
    try {
      const file = join(dir, "policy.json");
      await Bun.write(file, '{"rules": []}');
      const run = await runCommand(meshCommands, "mesh acl", { args: ["n1"], options: { ...ORG, set: file }, answer: () => ({ network: "n1", version: 2, policy: { rules: [] } }) });
      expect([run.code, run.requests.map((r) => [r.method, r.body])]).toEqual([0, [["PUT", { policy: { rules: [] } }]]]);
      expect(run.stdout).toBe("ACL of n1 is now version 2: no rules, so no node reaches any other (--remove allows all)\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--history shows a version without a policy as none; one flag at a time", async () => {
    const items = [{ version: 2, policy: null, created_at: "2026-01-02T00:00:00.000Z", created_by: "usr_1" }, { version: 1, policy: { rules: [] }, created_at: "2026-01-01T00:00:00.000Z", created_by: "usr_1" }];
    const run = await runCommand(meshCommands, "mesh acl", { args: ["n1"], options: { ...ORG, history: true }, answer: () => ({ items }) });
    expect(run.stdout).toContain("none (all allowed)");
    const both = await runCommand(meshCommands, "mesh acl", { args: ["n1"], options: { ...ORG, history: true, remove: true } });
    expect([both.code, both.requests]).toEqual([2, []]);
  });
});
